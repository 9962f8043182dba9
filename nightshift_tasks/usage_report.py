"""The usage protocol of the `command` provider: how any program tells nightshift what a
call used, so that the budget sees it.

The agent either writes one JSON object to the file named by $NIGHTSHIFT_USAGE_FILE, or
prints it as the last non-empty line of its stdout behind the word NIGHTSHIFT_USAGE:

    NIGHTSHIFT_USAGE {"input_tokens": 1200, "output_tokens": 300}

The file wins when the agent wrote anything to it. The usage line is taken out of the reply
the loop reads, so it can never be mistaken for a phase's JSON answer. `input_tokens` and
`output_tokens` are required; `cache_read_tokens`, `cache_write_tokens` and
`reasoning_tokens` default to 0; `cost_usd` is optional. Any other key, or a value that is
not a non-negative number (an integer for tokens), makes the report malformed: the call's
usage is then unknown, never zero.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass

USAGE_ENV = "NIGHTSHIFT_USAGE_FILE"
LINE_PREFIX = "NIGHTSHIFT_USAGE"
REPORT_BYTES = 64 * 1024  # a usage report is a few hundred bytes; more is not one
TOKEN_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
                "reasoning_tokens")
REQUIRED = ("input_tokens", "output_tokens")
LIMIT = 10**12  # no single call uses more; a larger figure is garbage, and SQLite's cap is 2**63
UNREADABLE = (f"${USAGE_ENV} was removed, replaced by something other than a regular file, or "
              f"holds more than {REPORT_BYTES:,} bytes")


class Malformed(ValueError):
    """The report is there but does not follow the protocol."""


@dataclass(frozen=True)
class Report:
    text: str  # stdout without the usage line
    fields: dict[str, float]  # TOKEN_FIELDS and cost_usd; empty when the usage is unknown
    problem: str | None = None  # why the usage is unknown


def read(path: str) -> str | None:
    """The report file's text, or None when the agent made it unusable. The agent is
    untrusted: a symlink is not followed, a FIFO never blocks us, a huge file is not read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = os.read(fd, REPORT_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    return data.decode("utf-8", "replace") if len(data) <= REPORT_BYTES else None


def _last_line(stdout: str) -> tuple[str, str | None]:
    """(stdout without a final usage line, that line's JSON), or (stdout, None)."""
    body = stdout.rstrip()
    cut = body.rfind("\n") + 1
    parts = body[cut:].split(None, 1)
    if not parts or parts[0] != LINE_PREFIX:
        return stdout, None
    return body[:cut], parts[1] if len(parts) > 1 else ""


def _number(doc: dict[str, object], key: str, integer: bool) -> float:
    value = doc.get(key, 0)
    kind = "integer" if integer else "number"
    if isinstance(value, bool) or not isinstance(value, int if integer else int | float):
        raise Malformed(f"{key} must be a non-negative {kind}, not {type(value).__name__}")
    if not 0 <= value <= LIMIT:  # NaN and infinities fail this too
        raise Malformed(f"{key} must be {'an' if integer else 'a'} {kind} from 0 to {LIMIT:,}")
    return value


def fields(text: str) -> dict[str, float]:
    """The usage a report states; Malformed says what is wrong with it, without echoing it."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Malformed(f"not JSON ({exc.msg})") from None
    except (ValueError, RecursionError):  # an integer of thousands of digits, deep nesting
        raise Malformed("not usable JSON (a huge number or deep nesting)") from None
    if not isinstance(doc, dict):
        raise Malformed(f"a JSON object is expected, not {type(doc).__name__}")
    unknown = sorted(str(k) for k in doc if k not in (*TOKEN_FIELDS, "cost_usd"))
    if unknown:
        raise Malformed(f"unknown key(s) {', '.join(json.dumps(k[:40]) for k in unknown[:5])}; allowed: "
                        f"{', '.join(TOKEN_FIELDS)}, cost_usd")
    missing = [k for k in REQUIRED if k not in doc]
    if missing:
        raise Malformed(f"missing {' and '.join(missing)}")
    out = {k: _number(doc, k, True) for k in TOKEN_FIELDS}
    out["cost_usd"] = float(_number(doc, "cost_usd", False))
    return out


def parse(stdout: str, file_text: str | None) -> Report:
    """The reply text and the usage of one `command` call. `file_text` is what the agent
    left in $NIGHTSHIFT_USAGE_FILE (None: it made the file unusable)."""
    text, line = _last_line(stdout)
    if file_text is None:
        return Report(text, {}, f"malformed usage report: {UNREADABLE}")
    where, source = (f"${USAGE_ENV}", file_text) if file_text.strip() else (
        f"the last {LINE_PREFIX} line", line)
    if source is None:
        return Report(text, {}, f"no usage reported (neither ${USAGE_ENV} nor a last "
                                f"{LINE_PREFIX} line)")
    try:
        return Report(text, fields(source))
    except Malformed as exc:
        return Report(text, {}, f"malformed usage report in {where}: {exc}")
