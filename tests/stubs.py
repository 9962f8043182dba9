"""Local stand-ins for the paid APIs the real agent CLIs talk to, on 127.0.0.1.

`ApiStub` serves the Anthropic Messages API (Claude Code), the OpenAI Responses API
(Codex) and the Gemini API (Gemini CLI) as server-sent events, answers each nightshift
phase with the JSON that phase asks for, and can answer 429s, slowly, or with garbage.
Every request that carries a nightshift prompt is logged with its start and end time, for
concurrency assertions.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PHASES = ("plan", "implement", "review")
REPLIES = {
    "plan": '{"description": "tidy the imports", "steps": ["edit"], "files": ["a.py"]}',
    "implement": 'Done. {"summary": "tidied the imports", "files_modified": ["a.py"]}',
    "review": '{"passed": true, "feedback": "fine", "issues": []}',
}
# Distinct usage per phase, so sums in the ledger can be checked against what was sent.
USAGE = {"plan": (1000, 100, 7, 5), "implement": (2000, 200, 11, 3), "review": (1500, 50, 13, 0)}


@dataclass
class Behaviour:
    """How one API answers: `fail` 429s first (-1: always), then normally or with garbage.

    With `hold` N, agent requests are held until N are in flight at once (the first time
    only, at most HOLD_TIMEOUT s): proof that N concurrent agents can happen, so that a cap
    of N is seen to bind rather than merely never reached. With a `gate`, agent requests
    wait until the test opens it (at most HOLD_TIMEOUT s).
    """

    fail: int = 0
    status: int = 429
    malformed: bool = False
    hold: int = 0
    gate: threading.Event | None = None
    arrived: threading.Event = field(default_factory=threading.Event)  # an agent request came
    failed: int = 0
    in_flight: int = 0
    held: threading.Condition = field(default_factory=threading.Condition)


HOLD_TIMEOUT = 30.0


@dataclass
class Request:
    api: str
    phase: str
    start: float
    end: float = 0.0
    status: int = 200
    body: str = ""
    path: str = ""


@dataclass
class ApiStub:
    anthropic: Behaviour = field(default_factory=Behaviour)
    openai: Behaviour = field(default_factory=Behaviour)
    gemini: Behaviour = field(default_factory=Behaviour)
    log: list[Request] = field(default_factory=list)
    error_headers: dict[str, str] = field(default_factory=dict)  # sent with every error answer
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> ApiStub:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
                stub.answer(self, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def requests(self, api: str) -> list[Request]:
        with self.lock:
            return [r for r in self.log if r.api == api and r.phase]

    def answer(self, handler: BaseHTTPRequestHandler, body: str) -> None:
        api = ("anthropic" if handler.path.startswith("/v1/messages") else
               "gemini" if handler.path.startswith("/v1beta/models/") else "openai")
        phase = next((p for p in PHASES if f"# nightshift: {p} phase" in body), "")
        if api == "anthropic" and not json.loads(body or "{}").get("tools"):
            phase = ""  # Claude Code's small side request (no tools), not the agent's turn
        behaviour: Behaviour = getattr(self, api)
        request = Request(api, phase, time.monotonic(), body=body, path=handler.path)
        if phase:
            behaviour.arrived.set()
        with self.lock:
            self.log.append(request)
            failing = phase and (behaviour.fail < 0 or behaviour.failed < behaviour.fail)
            if failing:
                behaviour.failed += 1
        with behaviour.held:
            behaviour.in_flight += bool(phase)
            if phase and behaviour.hold:
                if behaviour.in_flight >= behaviour.hold:
                    behaviour.hold = 0
                    behaviour.held.notify_all()
                else:
                    behaviour.held.wait_for(lambda: not behaviour.hold, HOLD_TIMEOUT)
        if phase and behaviour.gate:
            behaviour.gate.wait(HOLD_TIMEOUT)
        try:
            if failing:
                request.status = behaviour.status
                self._error(handler, api, behaviour.status)
                return
            if behaviour.malformed and phase:
                self._send(handler, 200, "text/event-stream", b"data: {not json\n\n")
                return
            usage = USAGE.get(phase, (3, 1, 0, 0))
            text = REPLIES.get(phase, "ok")
            if api == "gemini" and "alt=sse" not in handler.path:  # :generateContent
                self._send(handler, 200, "application/json", gemini_json(text, usage).encode())
                return
            events = {"anthropic": anthropic_events, "openai": openai_events,
                      "gemini": gemini_events}[api](text, usage)
            self._send(handler, 200, "text/event-stream", events.encode())
        finally:
            request.end = time.monotonic()
            with behaviour.held:
                behaviour.in_flight -= bool(phase)

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, kind: str, data: bytes,
              headers: dict[str, str] | None = None) -> None:
        handler.send_response(status)
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.send_header("content-type", kind)
        handler.send_header("content-length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _error(self, handler: BaseHTTPRequestHandler, api: str, status: int) -> None:
        if api == "anthropic":
            body = {"type": "error", "error": {"type": "rate_limit_error", "message": "rate limited"}}
        elif api == "gemini":
            body = {"error": {"code": status, "message": f"stub error {status}",
                              "status": GEMINI_STATUS.get(status, "UNKNOWN")}}
        else:
            body = {"error": {"message": "Rate limit reached", "type": "requests",
                              "code": "rate_limit_exceeded"}}
        self._send(handler, status, "application/json", json.dumps(body).encode(), self.error_headers)


def _sse(events: list[tuple[str, dict[str, Any]]]) -> str:
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)


def anthropic_events(text: str, usage: tuple[int, int, int, int]) -> str:
    inp, out, cache_read, cache_write = usage
    return _sse([
        ("message_start", {"type": "message_start", "message": {
            "id": "msg_stub", "type": "message", "role": "assistant", "model": "stub", "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": inp, "output_tokens": 1, "cache_read_input_tokens": cache_read,
                      "cache_creation_input_tokens": cache_write}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": text}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn",
                                                              "stop_sequence": None},
                           "usage": {"output_tokens": out}}),
        ("message_stop", {"type": "message_stop"}),
    ])


def openai_events(text: str, usage: tuple[int, int, int, int]) -> str:
    inp, out, cached, reasoning = usage
    item = {"id": "msg_stub", "type": "message", "role": "assistant", "status": "in_progress",
            "content": []}
    done = {**item, "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}
    response = {"id": "resp_stub", "object": "response", "created_at": 1, "status": "in_progress",
                "model": "stub", "output": []}
    return _sse([
        ("response.created", {"type": "response.created", "response": response}),
        ("response.output_item.added", {"type": "response.output_item.added", "output_index": 0,
                                        "item": item}),
        ("response.output_text.delta", {"type": "response.output_text.delta", "item_id": "msg_stub",
                                        "output_index": 0, "content_index": 0, "delta": text}),
        ("response.output_item.done", {"type": "response.output_item.done", "output_index": 0,
                                       "item": done}),
        ("response.completed", {"type": "response.completed", "response": {
            **response, "status": "completed", "output": [done],
            "usage": {"input_tokens": inp, "input_tokens_details": {"cached_tokens": cached},
                      "output_tokens": out, "output_tokens_details": {"reasoning_tokens": reasoning},
                      "total_tokens": inp + out}}}),
    ])


# The Gemini API's error status names for the HTTP statuses the stub can answer.
GEMINI_STATUS = {429: "RESOURCE_EXHAUSTED", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED"}


def gemini_json(text: str, usage: tuple[int, int, int, int]) -> str:
    """One GenerateContentResponse: the reply in one candidate, and its usageMetadata
    (promptTokenCount includes the cached tokens, as the real API counts them)."""
    prompt, candidates, cached, thoughts = usage
    return json.dumps({
        "candidates": [{"content": {"role": "model", "parts": [{"text": text}]},
                        "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": prompt, "candidatesTokenCount": candidates,
                          "cachedContentTokenCount": cached, "thoughtsTokenCount": thoughts,
                          "totalTokenCount": prompt + candidates + thoughts},
        "modelVersion": "stub-gemini"})


def gemini_events(text: str, usage: tuple[int, int, int, int]) -> str:
    """`:streamGenerateContent?alt=sse`: the same response as one server-sent event."""
    return f"data: {gemini_json(text, usage)}\n\n"
