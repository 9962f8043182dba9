"""Usage readers on fixture files in the CLIs' real on-disk formats."""

from __future__ import annotations

import itertools
import json
import os
from datetime import datetime
from pathlib import Path

from nightshift_tasks import state
from nightshift_tasks.agents.claude import read_history as read_claude
from nightshift_tasks.agents.codex import billable as codex_billable
from nightshift_tasks.agents.codex import read_history as read_codex
from nightshift_tasks.agents.readings import local_day, read_ledger

AT = datetime(2026, 11, 28, 3, 0).astimezone()


IDS = itertools.count(1)


def claude_line(ts: str, inp: int, out: int, cache_write: int = 0, cache_read: int = 0) -> str:
    """An assistant line as Claude Code 2.1 writes it, with a message id of its own."""
    return json.dumps({
        "parentUuid": "p", "isSidechain": False, "type": "assistant", "uuid": "u", "timestamp": ts,
        "message": {"id": f"msg_{next(IDS)}", "type": "message", "role": "assistant",
                    "model": "claude-opus-4-8",
                    "content": [{"type": "text", "text": "hello"}], "stop_reason": "end_turn",
                    "usage": {"input_tokens": inp, "cache_creation_input_tokens": cache_write,
                              "cache_read_input_tokens": cache_read, "output_tokens": out,
                              "service_tier": "standard"}},
        "userType": "external", "entrypoint": "sdk-cli", "cwd": "/w", "sessionId": "s",
        "version": "2.1.197"}) + "\n"


USER = json.dumps({"type": "user", "message": {"role": "user", "content": "assistant usage"},
                   "timestamp": "2026-11-28T01:00:00.000Z"}) + "\n"


def local_iso(day: str, hour: int) -> str:
    return datetime.fromisoformat(f"{day}T{hour:02d}:00:00").astimezone().isoformat()


def test_stats_cache_first(tmp_path: Path) -> None:
    conn = state.connect(tmp_path / "s.db")
    (tmp_path / "stats-cache.json").write_text(json.dumps({"dailyModelTokens": [
        {"date": "2026-11-28", "tokensByModel": {"opus": 1000, "haiku": 20}},
        {"date": "2026-11-27", "tokensByModel": {"opus": 5}}], "dailyActivity": []}))
    reading = read_claude(conn, tmp_path)
    assert (reading.source, reading.by_day) == ("stats-cache.json",
                                                {"2026-11-28": 1020, "2026-11-27": 5})


def test_claude_jsonl_by_local_day_skipping_corrupt_lines(tmp_path: Path) -> None:
    conn = state.connect(tmp_path / "s.db")
    session = tmp_path / "projects" / "-w" / "s1.jsonl"
    session.parent.mkdir(parents=True)
    session.write_text(USER + claude_line(local_iso("2026-11-28", 1), 100, 10, 5, 999)
                       + '{"type": "assistant", "message": {"usage": \n'
                       + claude_line(local_iso("2026-11-27", 23), 7, 3))
    (tmp_path / "projects" / "-w" / "s2.jsonl").write_text(claude_line(local_iso("2026-11-28", 2), 1, 1))
    reading = read_claude(conn, tmp_path)
    assert reading.source == "projects/*.jsonl"
    assert reading.by_day == {"2026-11-28": 117, "2026-11-27": 10}
    assert reading.skipped_lines == 1


def test_rescan_reads_only_appended_bytes(tmp_path: Path) -> None:
    conn = state.connect(tmp_path / "s.db")
    session = tmp_path / "projects" / "-w" / "s1.jsonl"
    session.parent.mkdir(parents=True)
    first = claude_line(local_iso("2026-11-28", 1), 100, 10)
    session.write_text(first + claude_line(local_iso("2026-11-28", 2), 1, 1)[:40])  # half-written
    assert read_claude(conn, tmp_path).by_day == {"2026-11-28": 110}
    # Garble the bytes already counted (same length): a rescan must not read them again.
    with session.open("r+b") as fh:
        fh.write(b"x" * len(first))
        fh.seek(0, os.SEEK_END)
        fh.write(claude_line(local_iso("2026-11-28", 2), 1, 1)[40:].encode())
        fh.write(claude_line(local_iso("2026-11-28", 3), 20, 2).encode())
    reading = read_claude(conn, tmp_path)
    assert reading.by_day == {"2026-11-28": 134} and reading.skipped_lines == 0
    offset = conn.execute("SELECT offset FROM usage_files").fetchone()[0]
    assert offset == session.stat().st_size


def test_a_replaced_file_is_read_again(tmp_path: Path) -> None:
    conn = state.connect(tmp_path / "s.db")
    session = tmp_path / "projects" / "-w" / "s1.jsonl"
    session.parent.mkdir(parents=True)
    session.write_text(claude_line(local_iso("2026-11-28", 1), 100, 10))
    read_claude(conn, tmp_path)
    replacement = session.with_suffix(".new")
    replacement.write_text(claude_line(local_iso("2026-11-28", 1), 5, 5))
    replacement.replace(session)
    assert read_claude(conn, tmp_path).by_day == {"2026-11-28": 10}


def codex_event(inp: int, cached: int, out: int, reasoning: int, limits: object = None) -> str:
    total = {"input_tokens": inp, "cached_input_tokens": cached, "cache_write_input_tokens": 0,
             "output_tokens": out, "reasoning_output_tokens": reasoning,
             "total_tokens": inp + out}
    return json.dumps({"timestamp": "2026-11-28T01:00:00.000Z", "ordinal": 3, "type": "event_msg",
                       "payload": {"type": "token_count",
                                   "info": {"total_token_usage": total, "last_token_usage": total,
                                            "model_context_window": 258400},
                                   "rate_limits": limits or {"limit_id": "codex", "primary": None,
                                                             "secondary": None}}}) + "\n"


def test_codex_sessions_last_minus_first_and_rate_limits(tmp_path: Path) -> None:
    conn = state.connect(tmp_path / "s.db")
    day = tmp_path / "sessions" / "2026" / "11" / "28"
    day.mkdir(parents=True)
    limits = {"primary": {"used_percent": 12.5, "window_minutes": 300, "resets_at": 1800000000},
              "secondary": {"used_percent": 40.0, "window_minutes": 10080, "resets_at": 1800500000}}
    (day / "rollout-a.jsonl").write_text(codex_event(100, 20, 10, 5) + "garbage\n"
                                         + codex_event(300, 50, 40, 15, limits))
    (day / "rollout-b.jsonl").write_text(codex_event(1000, 0, 100, 0))
    old = tmp_path / "sessions" / "2026" / "11" / "20"
    old.mkdir(parents=True)
    (old / "rollout-c.jsonl").write_text(codex_event(10, 0, 1, 0))
    reading = read_codex(conn, tmp_path)
    # a: (300-100) - (50-20) + (40-10) = 200 (reasoning is part of output); b: one event,
    # 1000 + 100.
    assert reading.by_day == {"2026-11-28": 200 + 1100, "2026-11-20": 11}
    assert reading.rate_limits["secondary"]["used_percent"] == 40.0
    assert reading.skipped_lines == 0  # garbage without a token_count marker is not even parsed


def test_codex_counters_that_go_down_count_as_a_new_session() -> None:
    up = {"input_tokens": 500, "cached_input_tokens": 0, "output_tokens": 50,
          "reasoning_output_tokens": 0}
    down = {"input_tokens": 100, "cached_input_tokens": 0, "output_tokens": 5,
            "reasoning_output_tokens": 0}
    assert codex_billable({"first": up, "last": down, "events": 2, "bad": 0}) == 105


def test_ledger_reader_for_command_and_copilot(tmp_path: Path) -> None:
    conn = state.connect(tmp_path / "s.db")
    chain = state.open_chain(conn, "/p", "2026-11-28", ["lint-fix"], "copilot", "r")
    attempt = state.start_attempt(conn, chain, "r", "/p", "lint-fix", "copilot", 1, "log")
    for requests in (2, 0):
        state.record_call(conn, attempt, "plan", "copilot", state.now(), 0, "ok", None,
                          {"tokens": 40, "requests": requests})
    reading = read_ledger(conn, "copilot", state.now())
    assert reading.by_day == {state.now().date().isoformat(): 80}
    assert reading.requests_this_month == 3


def test_local_day() -> None:
    assert local_day("not a time") is None
    assert local_day(local_iso("2026-11-28", 23)) == "2026-11-28"


def test_one_message_split_over_lines_counts_once(tmp_path: Path) -> None:
    """Claude Code writes a line per content block, each with the message's usage."""
    conn = state.connect(tmp_path / "s.db")
    session = tmp_path / "projects" / "-w" / "s1.jsonl"
    session.parent.mkdir(parents=True)
    first = claude_line(local_iso("2026-11-28", 1), 100, 10)
    second = claude_line(local_iso("2026-11-28", 2), 7, 3)
    odd = claude_line("0001-01-01T00:30:00.000Z", 5, 5)
    session.write_text(first + first + second + odd)
    reading = read_claude(conn, tmp_path)  # year 1 overflows west of UTC: a bad line, no crash
    assert reading.by_day["2026-11-28"] == 120
    assert reading.skipped_lines + len(reading.by_day) == 2


def test_stale_stats_cache_leaves_the_missing_days_to_the_jsonl(tmp_path: Path) -> None:
    # stats-cache.json was last computed on the 27th: the 28th must come from the logs, and
    # the 27th from the cache alone (never both).
    conn = state.connect(tmp_path / "s.db")
    (tmp_path / "stats-cache.json").write_text(json.dumps({
        "version": 2, "lastComputedDate": "2026-11-27",
        "dailyModelTokens": [{"date": "2026-11-27", "tokensByModel": {"opus": 5000}}]}))
    session = tmp_path / "projects" / "-w" / "s1.jsonl"
    session.parent.mkdir(parents=True)
    session.write_text(claude_line(local_iso("2026-11-27", 10), 700, 70)
                       + claude_line(local_iso("2026-11-28", 1), 100, 10, 5))
    reading = read_claude(conn, tmp_path)
    assert reading.by_day == {"2026-11-27": 5000, "2026-11-28": 115}
    assert reading.source == "stats-cache.json + projects/*.jsonl"
    assert reading.since(AT.date(), AT.date()) == 115


def test_a_final_line_without_newline_counts_once(tmp_path: Path) -> None:
    conn = state.connect(tmp_path / "s.db")
    session = tmp_path / "projects" / "-w" / "s1.jsonl"
    session.parent.mkdir(parents=True)
    first = claude_line(local_iso("2026-11-28", 1), 100, 10)
    last = claude_line(local_iso("2026-11-28", 2), 20, 2).rstrip("\n")
    session.write_text(first + last)  # the writer stopped without a final newline
    for _ in range(2):  # the file no longer changes: counted, and counted once
        reading = read_claude(conn, tmp_path)
        assert reading.by_day == {"2026-11-28": 132} and reading.skipped_lines == 0
    with session.open("a") as fh:
        fh.write("\n")  # the line is terminated later
    assert read_claude(conn, tmp_path).by_day == {"2026-11-28": 132}
    with session.open("a") as fh:
        fh.write(claude_line(local_iso("2026-11-28", 3), 1, 1)[:50])  # half of the next line
    reading = read_claude(conn, tmp_path)
    assert reading.by_day == {"2026-11-28": 132} and reading.skipped_lines == 0


def test_a_final_line_later_extended_is_not_counted_twice(tmp_path: Path) -> None:
    conn = state.connect(tmp_path / "s.db")
    day = tmp_path / "sessions" / "2026" / "11" / "28"
    day.mkdir(parents=True)
    rollout = day / "rollout-a.jsonl"
    rollout.write_text(codex_event(100, 0, 10, 0).rstrip("\n"))
    assert read_codex(conn, tmp_path).by_day == {"2026-11-28": 110}
    with rollout.open("a") as fh:  # the same line grows (whitespace), then a second event
        fh.write("  \n" + codex_event(300, 0, 30, 0).rstrip("\n"))
    assert read_codex(conn, tmp_path).by_day == {"2026-11-28": 330 - 110}
    offset = conn.execute("SELECT offset FROM usage_files").fetchone()[0]
    assert offset == rollout.stat().st_size - len(codex_event(300, 0, 30, 0).rstrip("\n"))
