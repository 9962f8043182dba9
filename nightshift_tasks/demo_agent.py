"""An offline stand-in agent for the demo: real, deterministic work, no network, no AI.

Called as `python -m nightshift_tasks.demo_agent "<prompt>"` by the `command` provider.
It reads the phase and task from the prompt and answers with the JSON each phase asks for:
`tech-debt-classify` gets a report of TODO/FIXME/HACK/XXX markers, any other task a map of
the tree with its oversized files. Reports go to .nightshift/reports/<slug>.md.

Like any agent of the `command` provider it reports its usage by the protocol (see
usage_report.py): plausible, deterministic figures for what a real agent would have read
and written, so the demo's budget has something to count.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from nightshift_tasks.usage_report import LINE_PREFIX, USAGE_ENV

MARKERS = re.compile(r"\b(TODO|FIXME|HACK|XXX)\b(?:\([^)]*\))?:?\s*(.*)")
OVERSIZED_LINES = 200
PROMPT_TOKENS = 1_500  # the phase's prompt
SYSTEM_TOKENS = 11_800  # a real agent's system prompt and tools: cached by the plan call
REASONING = {"plan": 400, "implement": 600, "review": 300}


def tracked_files(root: Path) -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True,
                         check=False).stdout
    return [root / line for line in sorted(out.splitlines()) if (root / line).is_file()]


def read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (UnicodeDecodeError, OSError):
        return []


def markers_report(root: Path) -> tuple[str, int]:
    found = []
    for path in tracked_files(root):
        for number, line in enumerate(read_lines(path), 1):
            match = MARKERS.search(line)
            if match:
                found.append((match.group(1), str(path.relative_to(root)), number,
                              match.group(2).strip()))
    lines = ["# Tech-debt markers", "", f"{len(found)} marker(s) found.", ""]
    if found:
        lines += ["| kind | file | line | note |", "|---|---|---|---|"]
        lines += [f"| {k} | {f} | {n} | {t} |" for k, f, n, t in sorted(found)]
    return "\n".join(lines) + "\n", len(found)


def topology_report(root: Path) -> tuple[str, int]:
    sizes = [(len(read_lines(p)), str(p.relative_to(root))) for p in tracked_files(root)]
    big = sorted((s for s in sizes if s[0] > OVERSIZED_LINES), reverse=True)
    dirs: dict[str, int] = {}
    for _, name in sizes:
        top = name.split("/")[0] if "/" in name else "."
        dirs[top] = dirs.get(top, 0) + 1
    lines = ["# Repository map", "", f"{len(sizes)} tracked file(s).", "", "| directory | files |",
             "|---|---|"]
    lines += [f"| {d} | {n} |" for d, n in sorted(dirs.items())]
    lines += ["", f"Files over {OVERSIZED_LINES} lines: {len(big)}", ""]
    lines += [f"- {name}: {count} lines" for count, name in big]
    return "\n".join(lines) + "\n", len(big)


def main(argv: list[str]) -> int:
    prompt = argv[0] if argv else ""
    phase = re.search(r"# nightshift: (\w+) phase", prompt)
    slug = re.search(r"^Task: .* \[([a-z0-9-]+)\]$", prompt, re.MULTILINE)
    if not phase or not slug:
        print("demo agent: prompt has no phase or task line", file=sys.stderr)
        return 2
    root = Path.cwd()
    report = Path(".nightshift/reports") / f"{slug.group(1)}.md"
    build = markers_report if slug.group(1) == "tech-debt-classify" else topology_report
    reply: dict[str, object]
    if phase.group(1) == "plan":
        reply = {"description": f"Scan the tracked files and write {report}.",
                 "steps": ["list tracked files", "scan them", f"write {report}"],
                 "files": [str(report)]}
    elif phase.group(1) == "implement":
        text, count = build(root)
        (root / report).parent.mkdir(parents=True, exist_ok=True)
        (root / report).write_text(text, encoding="utf-8")
        reply = {"summary": f"Wrote {report} ({count} finding(s)).", "files_modified": [str(report)]}
    else:
        expected, _ = build(root)
        ok = (root / report).is_file() and (root / report).read_text(encoding="utf-8") == expected
        reply = {"passed": ok, "feedback": "report matches the tree" if ok else "report is stale",
                 "issues": [] if ok else [f"{report} missing or out of date"]}
    answer = json.dumps(reply)
    print(f"Demo agent, {phase.group(1)} phase.\n{answer}")
    report_usage(usage(phase.group(1), root, report, answer))
    return 0


def usage(phase: str, root: Path, report: Path, answer: str) -> dict[str, int]:
    """About four characters a token: the prompt, what the phase reads, what it writes."""
    tree = sum(len("\n".join(read_lines(p))) for p in tracked_files(root)) // 4
    written = len((root / report).read_text(encoding="utf-8")) // 4 if (root / report).is_file() else 0
    read = {"plan": 0, "implement": tree, "review": tree + written}[phase]
    wrote = written if phase == "implement" else 0
    return {"input_tokens": PROMPT_TOKENS + read,
            "output_tokens": len(answer) // 4 + wrote,
            "cache_read_tokens": 0 if phase == "plan" else SYSTEM_TOKENS,
            "cache_write_tokens": SYSTEM_TOKENS if phase == "plan" else 0,
            "reasoning_tokens": REASONING[phase]}


def report_usage(figures: dict[str, int]) -> None:
    """To the file nightshift names, else as the last line of the output."""
    path = os.environ.get(USAGE_ENV)
    if path:
        Path(path).write_text(json.dumps(figures), encoding="utf-8")
    else:
        print(f"{LINE_PREFIX} {json.dumps(figures)}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
