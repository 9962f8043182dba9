#!/usr/bin/env python3
"""A stand-in for the `gh` CLI: the PR commands nightshift uses, with PR state kept in the
JSON file $GH_STATE and every call logged to $GH_STATE.log. Output follows gh's
`--json <fields>` format: a JSON array of objects with exactly the fields asked for."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def option(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def main(args: list[str]) -> int:
    state_file = Path(os.environ["GH_STATE"])
    every: list[dict[str, object]] = json.loads(state_file.read_text()) if state_file.exists() else []
    # gh runs in the project's checkout, or is told the repository: one PR list per repository
    repo = Path(os.environ.get("GH_REPO") or Path.cwd()).name
    prs = [p for p in every if p.get("repo", repo) == repo]
    with open(f"{state_file}.log", "a") as log:
        log.write(json.dumps(args) + "\n")
    if args[:2] == ["api", "user"]:
        print(os.environ.get("GH_USER", "alice"))
        return 0
    if args[:2] == ["pr", "list"]:
        wanted_state = (option(args, "--state") or "open").upper()
        head = option(args, "--head")
        fields = (option(args, "--json") or "number").split(",")
        found = [p for p in prs if (wanted_state == "ALL" or p["state"] == wanted_state)
                 and head in (None, p["headRefName"])]
        print(json.dumps([{f: p.get(f) for f in fields} for p in found]))
        return 0
    if args[:2] == ["pr", "create"]:
        head, base = option(args, "--head"), option(args, "--base")
        if any(p["headRefName"] == head and p["state"] == "OPEN" for p in prs):
            print(f"a pull request for branch \"{head}\" already exists", file=sys.stderr)
            return 1
        number = len(every) + 1
        url = f"https://github.com/alice/{repo}/pull/{number}"
        every.append({"number": number, "url": url, "state": "OPEN", "headRefName": head,
                      "baseRefName": base, "title": option(args, "--title"),
                      "body": option(args, "--body"), "repo": repo})
        state_file.write_text(json.dumps(every))
        print(url)
        return 0
    if args[:2] == ["pr", "edit"]:
        number = int(args[2])
        for pr in prs:
            if pr["number"] == number:
                pr["body"] = option(args, "--body")
        state_file.write_text(json.dumps(every))
        print(f"https://github.com/alice/{repo}/pull/{number}")
        return 0
    print(f"fake gh: unsupported: {args}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
