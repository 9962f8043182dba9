"""Usage-scan benchmark: `read_claude` over a synthetic Claude Code history of ~1 GB.

It writes `projects/-home-user-projNN/<session>.jsonl` files in Claude Code's real JSONL
format (assistant, user, attachment and queue-operation lines; text, thinking and tool_use
blocks; tool results of a few KB; a few truncated lines as left by a crash), then times

  first scan        read_claude on a fresh state DB                       -> MB/s
  rescan after 1 MB 1 MB of new lines appended to a few live sessions     -> s
  no-change rescan  nothing changed since the last scan                   -> s

and checks every reading against the totals the generator recorded: tokens (input + cache
creation + output) per local day of each complete assistant line, and the corrupt lines.
MB = 2**20 bytes. The first scan reads from the page cache unless --cold is given.

Usage: python bench/usage_scan.py [--size-mb N] [--repeat R] [--seed S] [--cold] [--profile] [--keep]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from parallel import machine  # bench/ is sys.path[0] when run as a script
from tabulate import tabulate

from nightshift_tasks import state
from nightshift_tasks.agents.claude import read_history as read_claude
from nightshift_tasks.agents.readings import Reading, local_day

MB = 1 << 20
FIRST_TARGET_MBS = 150.0
RESCAN_TARGET_S = 0.2
FILES = 300
PROJECTS = 30
DAYS = 30
APPEND_BYTES = 1 * MB
APPEND_FILES = 4
APPEND_ROUNDS = 3
NO_CHANGE_ROUNDS = 5
POOL = 600  # pre-rendered content blocks per kind
CORRUPT_EVERY = 20  # about one truncated assistant line per this many files

VOCABULARY = ("the a of to in is that for it with as on be at by this we not but or an are from "
              "def return self import class if else elif None True False value path file line error "
              "test config data result json usage assistant timestamp type message content tokens "
              "-> => == != <= >= {} [] () : ; , . = + - * / % < > & | ^ ~ ! ? @ # $ 0 1 2 42 3.14 "
              "\"quoted\" 'single' back\\slash \\n\\t tab\there `code` "
              "src/nightshift_tasks/usage.py tests/test_usage.py README.md pyproject.toml")
WORDS = tuple(VOCABULARY.split(" ")) + ("\n",) * 6
# Most blocks are plain ASCII; some hold typographic characters, a few emoji or CJK text
# (an emoji makes Python decode its whole line to 4-byte characters).
NON_ASCII = ((0.60, ()), (0.95, ("→", "✓", "—", "é", "ü", "ß")), (1.0, ("→", "日本語", "😀")))
MODELS = ("claude-opus-4-8", "claude-sonnet-4-6", "claude-haiku-4-5")
TOOLS = ("Bash", "Read", "Edit", "Write", "Grep", "Glob", "TodoWrite")

# Claude Code 2.1.x field order (the line the brief quotes), and a 1.0.x-style order with
# the session fields first and a requestId, so no parser can rely on one layout.
ASSISTANT_NEW = (
    '{"parentUuid":"%s","isSidechain":false,"message":{"id":"msg_%s","type":"message",'
    '"role":"assistant","model":"%s","content":%s,"stop_reason":"%s","stop_sequence":null,'
    '"usage":{"input_tokens":%d,"cache_creation_input_tokens":%d,"cache_read_input_tokens":%d,'
    '"output_tokens":%d,"server_tool_use":{"web_search_requests":0,"web_fetch_requests":0},'
    '"service_tier":"standard","cache_creation":{"ephemeral_1h_input_tokens":%d,'
    '"ephemeral_5m_input_tokens":0},"inference_geo":"","iterations":[],"speed":"standard"},'
    '"stop_details":null},"type":"assistant","uuid":"%s","timestamp":"%s","userType":"external",'
    '"entrypoint":"sdk-cli","cwd":"%s","sessionId":"%s","version":"%s","gitBranch":"%s"}\n')
ASSISTANT_OLD = (
    '{"parentUuid":"%s","isSidechain":false,"userType":"external","cwd":"%s","sessionId":"%s",'
    '"version":"%s","gitBranch":"%s","message":{"id":"msg_%s","type":"message","role":"assistant",'
    '"model":"%s","content":%s,"stop_reason":"%s","stop_sequence":null,"usage":{"input_tokens":%d,'
    '"cache_creation_input_tokens":%d,"cache_read_input_tokens":%d,"output_tokens":%d,'
    '"service_tier":"standard"}},"requestId":"req_%s","type":"assistant","uuid":"%s",'
    '"timestamp":"%s"}\n')
USER = (
    '{"parentUuid":"%s","isSidechain":false,"promptId":"%s","type":"user","message":{"role":"user",'
    '"content":%s},"uuid":"%s","timestamp":"%s"%s,"permissionMode":"%s","userType":"external",'
    '"entrypoint":"sdk-cli","cwd":"%s","sessionId":"%s","version":"%s","gitBranch":"%s"}\n')
ATTACHMENT = (
    '{"parentUuid":"%s","isSidechain":false,"attachment":%s,"type":"attachment","uuid":"%s",'
    '"timestamp":"%s","userType":"external","entrypoint":"sdk-cli","cwd":"%s","sessionId":"%s",'
    '"version":"%s","gitBranch":"%s"}\n')
QUEUE = '{"type":"queue-operation","operation":"%s","timestamp":"%s","sessionId":"%s"%s}\n'


def dumps(value: object) -> str:
    """Compact UTF-8 JSON, as Claude Code's JSON.stringify writes it."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@dataclass
class Expected:
    """What the generator wrote: the reader must find exactly this."""

    days: dict[str, int] = field(default_factory=dict)
    bad: int = 0
    lines: int = 0
    assistant: int = 0
    bytes: int = 0

    def add(self, timestamp: str, tokens: int) -> None:
        day = local_day(timestamp)
        if day is None:
            raise AssertionError(f"generator wrote an unreadable timestamp {timestamp!r}")
        self.days[day] = self.days.get(day, 0) + tokens


@dataclass
class Session:
    path: Path
    session_id: str
    cwd: str
    branch: str
    version: str
    old_layout: bool
    clock: datetime
    parent: str = ""
    last_assistant: bool = False
    pending: tuple[bytes, str, int] | None = None  # the unwritten rest of a half-written line


class Generator:
    """Claude Code session lines from pre-rendered content blocks (json.dumps once per block)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.assistant_blocks = [self._assistant_content(self._size(60, 6000)) for _ in range(POOL)]
        # A few tool calls whose input holds misleading keys (an MCP payload, say): a parser
        # must take type, timestamp and usage from the line, not from the first match.
        self.assistant_blocks += [dumps([{
            "type": "tool_use", "id": self.tool_id(), "name": "mcp__store__put",
            "input": {"type": "user", "timestamp": "2001-02-03T04:05:06.000Z",
                      "usage": {"input_tokens": 999999, "output_tokens": 999999},
                      "message": {"usage": {"input_tokens": 77}}, "note": self.text(300)}}])
            for _ in range(POOL // 100)]
        self.user_blocks = [self._user_content(self._size(100, 7500)) for _ in range(POOL)]
        self.attachments = [dumps({
            "type": "hook_success", "hookName": "SessionStart:startup", "toolUseID": self.uuid(),
            "hookEvent": "SessionStart", "content": "", "stdout": self.text(self._size(50, 1500)),
            "stderr": "", "exitCode": 0}) for _ in range(POOL // 10)]
        self.attachments += [dumps({
            "type": "todo_reminder", "content": [{"content": self.text(60), "status": "pending",
                                                  "activeForm": self.text(40)} for _ in range(4)],
            "itemCount": 4}) for _ in range(POOL // 10)]
        self.prompts = [dumps(self.text(self._size(20, 1200))) for _ in range(POOL // 10)]

    # ---- content --------------------------------------------------------------------------

    def _size(self, low: int, high: int) -> int:
        """Log-uniform: many small blocks, some large ones."""
        return int(low * (high / low) ** self.rng.random())

    def text(self, chars: int) -> str:
        draw = self.rng.random()
        extra = next(words for limit, words in NON_ASCII if draw < limit)
        return " ".join(self.rng.choices(WORDS + extra, k=chars // 4 + 1))[:chars]

    def uuid(self) -> str:
        h = f"{self.rng.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"

    def tool_id(self) -> str:
        return "toolu_01" + f"{self.rng.getrandbits(110):028x}"[:24]

    def _assistant_content(self, size: int) -> str:
        kind = self.rng.random()
        if kind < 0.45:
            return dumps([{"type": "text", "text": self.text(size)}])
        if kind < 0.60:
            return dumps([{"type": "thinking", "thinking": self.text(size),
                           "signature": "Eu8B" + self.text(min(size, 400)).encode().hex()[:400]}])
        tool = self.rng.choice(TOOLS)
        inputs: dict[str, object]
        if tool == "Bash":
            inputs = {"command": self.text(min(size, 300)), "description": self.text(50)}
        elif tool == "Edit":
            inputs = {"file_path": "/home/user/src/app.py", "old_string": self.text(size // 2),
                      "new_string": self.text(size // 2)}
        elif tool == "Write":
            inputs = {"file_path": "/home/user/src/new.py", "content": self.text(size)}
        elif tool == "TodoWrite":
            inputs = {"todos": [{"content": self.text(80), "status": "in_progress",
                                 "activeForm": self.text(60)} for _ in range(max(1, size // 200))]}
        else:
            inputs = {"pattern": self.text(30), "path": "/home/user/src"}
        return dumps([{"type": "tool_use", "id": self.tool_id(), "name": tool, "input": inputs}])

    def _user_content(self, size: int) -> tuple[str, str]:
        """(message.content, extra top-level fields) of a user line."""
        kind, tool_id = self.rng.random(), self.tool_id()
        if kind < 0.15:
            return dumps(self.text(size)), ""
        if kind < 0.25:  # a sub-agent's result: carries a usage object, but no "assistant"
            out = self.text(size // 2)
            return (dumps([{"tool_use_id": tool_id, "type": "tool_result",
                            "content": [{"type": "text", "text": out}]}]),
                    ',"toolUseResult":' + dumps({
                        "status": "completed", "prompt": self.text(200), "agentId": self.uuid()[:8],
                        "content": [{"type": "text", "text": out}], "totalDurationMs": 51234,
                        "totalTokens": 48210, "totalToolUseCount": 7,
                        "usage": {"input_tokens": 12, "cache_creation_input_tokens": 3000,
                                  "cache_read_input_tokens": 40000, "output_tokens": 900}}))
        out = self.text(size // 2)  # tool output appears twice, as Claude Code writes it
        return (dumps([{"tool_use_id": tool_id, "type": "tool_result", "content": out,
                        "is_error": kind > 0.95}]),
                ',"toolUseResult":' + dumps({"stdout": out, "stderr": "", "interrupted": False,
                                             "isImage": False})
                + f',"sourceToolAssistantUUID":"{self.uuid()}"')

    # ---- lines ----------------------------------------------------------------------------

    def session(self, path: Path, cwd: str, clock: datetime) -> Session:
        old = self.rng.random() < 0.2
        return Session(path, path.stem, cwd, self.rng.choice(("main", "HEAD", "feature/x")),
                       "1.0.98" if old else "2.1.197", old, clock, parent=self.uuid())

    @staticmethod
    def stamp(moment: datetime) -> str:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"

    def assistant_line(self, s: Session, ts: str) -> tuple[str, int]:
        rng = self.rng
        content = rng.choice(self.assistant_blocks)
        inp = rng.randint(1, 60) if rng.random() < 0.9 else rng.randint(1000, 30000)
        write = 0 if rng.random() < 0.5 else rng.randint(100, 30000)
        read = rng.randint(0, 200000)
        out = rng.randint(1, 4000)
        me = self.uuid()
        msg = f"{rng.getrandbits(96):024x}"
        stop = "tool_use" if '"tool_use"' in content[:40] else "end_turn"
        if s.old_layout:
            line = ASSISTANT_OLD % (s.parent, s.cwd, s.session_id, s.version, s.branch, msg,
                                    MODELS[1], content, stop, inp, write, read, out,
                                    f"{rng.getrandbits(96):024x}", me, ts)
        else:
            line = ASSISTANT_NEW % (s.parent, msg, rng.choice(MODELS), content, stop, inp, write,
                                    read, out, write, me, ts, s.cwd, s.session_id, s.version,
                                    s.branch)
        s.parent = me
        return line, inp + write + out

    def other_line(self, s: Session, ts: str) -> str:
        rng, me = self.rng, self.uuid()
        kind = rng.random()
        if kind < 0.84:
            content, extra = (rng.choice(self.prompts), "") if kind < 0.08 else rng.choice(self.user_blocks)
            line = USER % (s.parent, self.uuid(), content, me, ts, extra, "acceptEdits", s.cwd,
                           s.session_id, s.version, s.branch)
        elif kind < 0.94:
            line = ATTACHMENT % (s.parent, rng.choice(self.attachments), me, ts, s.cwd, s.session_id,
                                 s.version, s.branch)
        elif kind < 0.97:
            return QUEUE % ("enqueue", ts, s.session_id, ',"content":' + rng.choice(self.prompts))
        else:
            return QUEUE % ("dequeue", ts, s.session_id, "")
        s.parent = me
        return line

    def lines(self, s: Session, budget: int, expected: Expected, corrupt: bool = False) -> bytes:
        """Complete lines worth about `budget` bytes, continuing the session's clock."""
        rng, out, size = self.rng, [], 0
        corrupt_at = rng.randint(0, max(0, budget - 1)) if corrupt else -1
        while size < budget:
            s.clock += timedelta(milliseconds=rng.randint(500, 60000))
            ts = self.stamp(s.clock)
            s.last_assistant = rng.random() < (0.2 if s.last_assistant else 0.8)  # ~50% assistant
            if s.last_assistant:
                text, tokens = self.assistant_line(s, ts)
                data = text.encode()
                if 0 <= corrupt_at <= size:  # a line cut short, as a crash leaves it
                    data = data[:rng.randint(data.index(b'"usage"') + 10, len(data) - 3)] + b"\n"
                    corrupt_at, expected.bad = -1, expected.bad + 1
                else:
                    expected.add(ts, tokens)
                    expected.assistant += 1
            else:
                data = self.other_line(s, ts).encode()
            out.append(data)
            size += len(data)
        expected.lines += len(out)
        expected.bytes += size
        return b"".join(out)


def generate(root: Path, size: int, gen: Generator, now: datetime) -> tuple[list[Session], Expected]:
    rng, expected = gen.rng, Expected()
    weights = [rng.lognormvariate(0, 1.0) for _ in range(FILES)]
    scale = size / sum(weights)
    sessions = []
    for i, weight in enumerate(weights):
        project = f"-home-user-proj{i % PROJECTS:02d}"
        budget = max(1000, int(weight * scale))
        hours = budget / 2600 * 30 / 3600  # ~2.6 KB per line, ~30 s apart
        start = now - timedelta(hours=rng.uniform(hours + 1, max(hours + 2, DAYS * 24)))
        path = root / "projects" / project / f"{gen.uuid()}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        s = gen.session(path, f"/home/user/proj{i % PROJECTS:02d}", start)
        path.write_bytes(gen.lines(s, budget, expected, corrupt=rng.randrange(CORRUPT_EVERY) == 0))
        sessions.append(s)
    return sessions, expected


def append(live: list[Session], gen: Generator, expected: Expected, now: datetime) -> None:
    """1 MB of new lines over a few live sessions; the last one ends mid-line (being written)."""
    for i, s in enumerate(live):
        s.clock = max(s.clock, now - timedelta(minutes=10))
        before = expected.bytes
        data = b""
        if s.pending:  # the rest of the line left half-written last time
            data, ts, tokens = s.pending
            expected.add(ts, tokens)
            expected.assistant += 1
            s.pending = None
        data += gen.lines(s, APPEND_BYTES // len(live), expected)
        if i == len(live) - 1:
            s.clock += timedelta(seconds=1)
            ts = gen.stamp(s.clock)
            text, tokens = gen.assistant_line(s, ts)
            line = text.encode()
            data += line[:len(line) // 2]
            s.pending = (line[len(line) // 2:], ts, tokens)
        with s.path.open("ab") as fh:
            fh.write(data)
        expected.bytes = before + len(data)


def check(label: str, reading: Reading, expected: Expected) -> None:
    problems = []
    if reading.source != "projects/*.jsonl":
        problems.append(f"source {reading.source!r}")
    if reading.by_day != expected.days:
        days = sorted(set(reading.by_day) | set(expected.days))
        problems += [f"{d}: read {reading.by_day.get(d)}, wrote {expected.days.get(d)}"
                     for d in days if reading.by_day.get(d) != expected.days.get(d)]
    if reading.skipped_lines != expected.bad:
        problems.append(f"skipped lines: read {reading.skipped_lines}, wrote {expected.bad} corrupt")
    if reading.skipped_files:
        problems.append(f"skipped files: {reading.skipped_files}")
    if problems:
        sys.exit(f"bench/usage_scan.py: WRONG RESULT after {label}:\n  " + "\n  ".join(problems))


def drop_cache(root: Path) -> None:
    """Evict the history from the page cache (per file, no root needed)."""
    os.sync()
    for path in (root / "projects").rglob("*.jsonl"):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def timed(conn_path: Path, data: Path, profile: bool = False) -> tuple[float, float, Reading]:
    """(wall s, CPU s, reading) of one read_claude call on the state DB at conn_path."""
    conn = state.connect(conn_path)
    try:
        profiler = cProfile.Profile() if profile else None
        start, cpu = time.perf_counter(), time.process_time()
        if profiler:
            profiler.enable()
        reading = read_claude(conn, data)
        if profiler:
            profiler.disable()
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        conn.close()
    if profiler:
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(15)
    return elapsed, cpu, reading


def seconds(times: list[float]) -> str:
    return ", ".join(f"{t:.3f}" for t in times) + " s"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="history size (default 1024)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cold", action="store_true", help="evict the files from the page cache "
                        "before the first scan")
    parser.add_argument("--repeat", type=int, default=3, help="first scans, each on a fresh DB; "
                        "the median is reported (default 3)")
    parser.add_argument("--profile", action="store_true", help="cProfile the first scan (stderr)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (its path is printed)")
    args = parser.parse_args()
    if args.size_mb < 1 or args.repeat < 1:
        parser.error("--size-mb and --repeat must be at least 1")
    print(machine(), flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="ns-usage-bench-"))
    try:
        now = datetime.now(UTC)
        gen = Generator(args.seed)
        started = time.perf_counter()
        sessions, expected = generate(tmp, args.size_mb * MB, gen, now)
        size, lines = expected.bytes, expected.lines
        print(f"generated {size / MB:.0f} MB, {len(sessions)} files, {lines} lines "
              f"({expected.assistant} assistant, {expected.bad} corrupt) in "
              f"{time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
        firsts, first_cpu = [], []
        for i in range(args.repeat):
            os.sync()  # no writeback of the fresh files during the timed scan
            if args.cold:
                drop_cache(tmp)
            db = tmp / f"state{i}.db"  # a fresh DB each time: every run is a first scan
            elapsed, cpu, reading = timed(db, tmp, args.profile and i == 0)
            check("the first scan", reading, expected)
            firsts.append(elapsed)
            first_cpu.append(cpu)
        rescans, live = [], sorted(sessions, key=lambda s: s.clock)[-APPEND_FILES:]
        for _ in range(APPEND_ROUNDS):
            append(live, gen, expected, now)
            os.sync()
            elapsed, _, reading = timed(db, tmp)
            check("a rescan after appending 1 MB", reading, expected)
            rescans.append(elapsed)
        idle = []
        for _ in range(NO_CHANGE_ROUNDS):
            elapsed, _, reading = timed(db, tmp)
            check("a no-change rescan", reading, expected)
            idle.append(elapsed)
    finally:
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    first = statistics.median(firsts)
    rate = size / MB / first
    rescan, no_change = statistics.median(rescans), statistics.median(idle)
    flags = [f"first scan < {FIRST_TARGET_MBS:g} MB/s"] * (rate < FIRST_TARGET_MBS)
    flags += [f"rescan >= {RESCAN_TARGET_S:g} s"] * (max(rescan, no_change) >= RESCAN_TARGET_S)
    row = [round(size / MB), len(sessions), lines, first, rate, rescan, no_change,
           "MISSED: " + ", ".join(flags) if flags else "ok"]
    headers = ["size MB", "files", "lines", "first scan s", "MB/s", "rescan after 1 MB s",
               "no-change rescan s", "targets"]
    print(tabulate([row], headers=headers, floatfmt=".3f"))
    print(f"targets: first scan >= {FIRST_TARGET_MBS:g} MB/s ({'cold' if args.cold else 'warm'} "
          f"page cache), rescans < {RESCAN_TARGET_S:g} s")
    print(f"medians of {len(firsts)} first scans (wall {seconds(firsts)}; CPU {seconds(first_cpu)} = "
          f"{size / MB / statistics.median(first_cpu):.0f} MB/s), {APPEND_ROUNDS} rescans after 1 MB "
          f"({seconds(rescans)}) and {NO_CHANGE_ROUNDS} no-change rescans ({seconds(idle)}); "
          "every reading matched the generator's totals")
    return 0


if __name__ == "__main__":
    sys.exit(main())
