#!/usr/bin/env python3
"""A stand-in for the `gh` CLI: the PR commands nightshift uses and `issue list`, with PR
state kept in the JSON file $GH_STATE (issues in $GH_STATE.issues) and every call logged to
$GH_STATE.log. Output follows gh's `--json <fields>` format: a JSON array of objects with
exactly the fields asked for.

Like gh (its cobra flag parsing and pkg/cmdutil/json_flags.go), it refuses a flag the
subcommand does not have (`unknown flag: --x`, a blank line and the usage, exit 1) and a
`--json` field it does not have (`Unknown JSON field: "x"` and the sorted list of available
fields, exit 1). A flag gh has but this stand-in does not implement fails loudly (exit 2)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

# gh's fields for `--json` (api/query_builder.go: sharedIssuePRFields plus the PR or issue ones).
SHARED_FIELDS = ["assignees", "author", "body", "closed", "comments", "createdAt", "closedAt", "id",
                 "labels", "milestone", "number", "projectCards", "projectItems", "reactionGroups",
                 "state", "title", "updatedAt", "url"]
FIELDS = {
    ("issue", "list"): [*SHARED_FIELDS, "isPinned", "stateReason"],
    ("pr", "list"): [*SHARED_FIELDS, "additions", "autoMergeRequest", "baseRefName", "baseRefOid",
                     "changedFiles", "commits", "deletions", "files", "fullDatabaseId", "headRefName",
                     "headRefOid", "headRepository", "headRepositoryOwner", "isCrossRepository",
                     "isDraft", "latestReviews", "maintainerCanModify", "mergeable", "mergeCommit",
                     "mergedAt", "mergedBy", "mergeStateStatus", "potentialMergeCommit",
                     "reviewDecision", "reviewRequests", "reviews", "statusCheckRollup"],
}
# Each subcommand's flags as gh has them: long name -> (short name, takes a value).
REPO = {"--repo": ("-R", True), "--help": ("-h", False)}  # inherited by pr and issue commands
LIST = {"--app": ("", True), "--assignee": ("-a", True), "--author": ("-A", True),
        "--jq": ("-q", True), "--json": ("", True), "--label": ("-l", True), "--limit": ("-L", True),
        "--search": ("-S", True), "--state": ("-s", True), "--template": ("-t", True),
        "--web": ("-w", False), **REPO}
FLAGS: dict[tuple[str, str], dict[str, tuple[str, bool]]] = {
    ("api", "user"): {
        "--cache": ("", True), "--field": ("-F", True), "--header": ("-H", True), "--help": ("-h", False),
        "--hostname": ("", True), "--include": ("-i", False), "--input": ("", True), "--jq": ("-q", True),
        "--method": ("-X", True), "--paginate": ("", False), "--preview": ("-p", True),
        "--raw-field": ("-f", True), "--silent": ("", False), "--slurp": ("", False),
        "--template": ("-t", True), "--verbose": ("", False)},
    ("issue", "list"): {**LIST, "--mention": ("", True), "--milestone": ("-m", True)},
    ("pr", "list"): {**LIST, "--base": ("-B", True), "--draft": ("-d", False), "--head": ("-H", True)},
    ("pr", "create"): {
        "--assignee": ("-a", True), "--base": ("-B", True), "--body": ("-b", True),
        "--body-file": ("-F", True), "--draft": ("-d", False), "--dry-run": ("", False),
        "--editor": ("-e", False), "--fill": ("-f", False), "--fill-first": ("", False),
        "--fill-verbose": ("", False), "--head": ("-H", True), "--label": ("-l", True),
        "--milestone": ("-m", True), "--no-maintainer-edit": ("", False), "--project": ("-p", True),
        "--recover": ("", True), "--reviewer": ("-r", True), "--template": ("-T", True),
        "--title": ("-t", True), "--web": ("-w", False), **REPO},
    ("pr", "edit"): {
        "--add-assignee": ("", True), "--add-label": ("", True), "--add-project": ("", True),
        "--add-reviewer": ("", True), "--base": ("-B", True), "--body": ("-b", True),
        "--body-file": ("-F", True), "--milestone": ("-m", True), "--remove-assignee": ("", True),
        "--remove-label": ("", True), "--remove-milestone": ("", False), "--remove-project": ("", True),
        "--remove-reviewer": ("", True), "--title": ("-t", True), **REPO},
}
# The flags this stand-in implements; any other flag gh has is refused with exit 2.
IMPLEMENTED = {"--jq", "--json", "--state", "--head", "--limit", "--label", "--base", "--title", "--body"}


def refuse(message: str, usage: str | None = None) -> int:
    print(message, file=sys.stderr)
    if usage is not None:
        print(f"\nUsage:  gh {usage} [flags]\n", file=sys.stderr)
    return 1


def parse(command: tuple[str, str], args: list[str]) -> tuple[dict[str, str], list[str]] | int:
    """The flags given (by long name) and the positional arguments, or gh's exit status for
    a flag the subcommand does not have."""
    known = FLAGS[command]
    by_short = {short: name for name, (short, _) in known.items() if short}
    options: dict[str, str] = {}
    positional: list[str] = []
    rest = iter(args)
    for arg in rest:
        if not arg.startswith("-") or arg == "-":
            positional.append(arg)
            continue
        flag, _, inline = arg.partition("=")
        name = flag if flag.startswith("--") else by_short.get(flag)
        if name not in known:
            message = (f"unknown flag: {flag}" if flag.startswith("--")
                       else f"unknown shorthand flag: {flag[1:2]!r} in {arg}")
            return refuse(message, " ".join(command))
        assert name is not None
        if name not in IMPLEMENTED:
            print(f"fake gh: {name} is a real flag of gh {' '.join(command)} but not implemented here",
                  file=sys.stderr)
            return 2
        options[name] = inline if inline or "=" in arg else (next(rest, "") if known[name][1] else "")
    return options, positional


def project(command: tuple[str, str], options: dict[str, str], rows: list[dict[str, object]]) -> int:
    """Print the rows with exactly the `--json` fields asked for, as gh does."""
    fields = options.get("--json", "number").split(",")
    available = sorted(FIELDS[command])
    for field in fields:
        if field not in available:
            return refuse(f"Unknown JSON field: {json.dumps(field)}\nAvailable fields:\n  "
                          + "\n  ".join(available))
    print(json.dumps([{f: row.get(f) for f in fields} for row in rows]))
    return 0


def main(args: list[str]) -> int:
    state_file = Path(os.environ["GH_STATE"])
    every: list[dict[str, object]] = json.loads(state_file.read_text()) if state_file.exists() else []
    # gh runs in the project's checkout, or is told the repository: one PR list per repository
    repo = Path(os.environ.get("GH_REPO") or Path.cwd()).name
    prs = [p for p in every if p.get("repo", repo) == repo]
    with open(f"{state_file}.log", "a") as log:
        log.write(json.dumps(args) + "\n")
    command = (args[0], args[1]) if len(args) > 1 else ("", "")
    if command not in FLAGS:
        print(f"fake gh: unsupported: {args}", file=sys.stderr)
        return 2
    parsed = parse(command, args[2:])
    if isinstance(parsed, int):
        return parsed
    options, positional = parsed
    if command == ("api", "user"):
        print(os.environ.get("GH_USER", "alice"))
        return 0
    if command == ("issue", "list"):
        issues = Path(f"{state_file}.issues")
        found = json.loads(issues.read_text()) if issues.exists() else []
        wanted = options.get("--label")
        return project(command, options, [i for i in found if wanted is None or wanted in
                                          [label["name"] for label in i["labels"]]])
    if command == ("pr", "list"):
        wanted_state = options.get("--state", "open").upper()
        head = options.get("--head")
        return project(command, options, [p for p in prs if wanted_state in ("ALL", p["state"])
                                          and head in (None, p["headRefName"])])
    if command == ("pr", "create"):
        head, base = options.get("--head"), options.get("--base")
        if any(p["headRefName"] == head and p["state"] == "OPEN" for p in prs):
            print(f"a pull request for branch \"{head}\" already exists", file=sys.stderr)
            return 1
        number = len(every) + 1
        url = f"https://github.com/alice/{repo}/pull/{number}"
        every.append({"number": number, "url": url, "state": "OPEN", "headRefName": head,
                      "baseRefName": base, "title": options.get("--title"),
                      "body": options.get("--body"), "repo": repo})
        state_file.write_text(json.dumps(every))
        print(url)
        return 0
    number = int(positional[0])  # pr edit
    for pr in prs:
        if pr["number"] == number:
            pr["body"] = options.get("--body")
    state_file.write_text(json.dumps(every))
    print(f"https://github.com/alice/{repo}/pull/{number}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
