"""What a project puts into prompts is capped: each item, and each section as a whole."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from nightshift_tasks.prompts import PART_MAX_BYTES, SECTION_MAX_BYTES, bounded
from tests.conftest import Env, summary_rows


def test_parts_under_the_caps_pass_unchanged() -> None:
    parts = ("Convention: short functions", "é" * (PART_MAX_BYTES // 2))
    assert bounded(parts, "rules") == (parts, None)


def test_a_long_part_is_cut_on_a_character_boundary_with_a_marker() -> None:
    part = "a" + "é" * 3000  # 6,001 bytes; a cut at 4,096 would split an é
    (kept,), warning = bounded((part,), "rules")
    assert kept == "a" + "é" * 2047 + " [… 1,906 bytes omitted]"
    assert warning == ("rules: 1,906 of 6,001 bytes left out of the prompts (at most 4,096 bytes "
                       "per item, 16,384 in all)")


def test_parts_beyond_the_section_cap_are_dropped_in_order() -> None:
    parts = tuple(f"{i}" * 3000 for i in range(10))
    kept, warning = bounded(parts, "requests for lint-fix")
    assert kept == (*parts[:5], "[… 5 more, 15,000 bytes omitted]")
    assert warning == ("requests for lint-fix: 15,000 of 30,000 bytes left out of the prompts "
                       "(at most 4,096 bytes per item, 16,384 in all)")


RULE = "Convention: rule {:05d}: keep each function short and name it for what it does."
RULES = 3000  # about 240 KiB of bullets, next to as many task bullets


def huge_project(env: Env) -> tuple[Path, str]:
    """A CLAUDE.md far over 128 KiB and a task-source file with one 200 KB line; the
    request as it reaches the prompt."""
    (repo,) = env.projects(["alpha"], tasks={"enabled": ["lint-fix"]},
                           integrations={"task_sources": [{"file": "todo.txt"}]})
    tasks = "".join(f"- lint-fix module {i:05d} of the legacy tree\n" for i in range(RULES))
    rules = "".join(f"- {RULE.format(i).removeprefix('Convention: ')}\n" for i in range(RULES))
    (repo / "CLAUDE.md").write_text(f"# Guide\n## Tasks\n{tasks}## Coding conventions\n{rules}")
    assert (repo / "CLAUDE.md").stat().st_size > 2 * 128 * 1024
    line = "lint-fix: " + "tidy " * 40_000 + "up"
    (repo / "todo.txt").write_text(line + "\n")
    return repo, f"todo.txt:1: {line}"


def test_a_huge_claude_md_and_task_source_give_a_bounded_prompt(env: Env) -> None:
    _, request = huge_project(env)
    result = env.doit("run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert summary_rows(result.stdout)["alpha"][:2] == ["command", "1"]
    prompt = Path(f"{env.record}.prompt.lint-fix.plan").read_text(encoding="utf-8")
    size = len(RULE.format(0))
    fit = SECTION_MAX_BYTES // size  # whole rules that fit the section
    left = (RULES - fit) * size
    assert f"- {RULE.format(fit - 1)}\n- [… {RULES - fit:,} more, {left:,} bytes omitted]\n" in prompt
    assert RULE.format(fit) not in prompt
    assert f"- {request[:PART_MAX_BYTES]} [… {len(request) - PART_MAX_BYTES:,} bytes omitted]\n" in prompt
    assert len(prompt.encode()) < SECTION_MAX_BYTES + PART_MAX_BYTES + 4096
    assert (f"nightshift: warning: alpha: conventions and constraints (CLAUDE.md, AGENTS.md): "
            f"{left:,} of {RULES * size:,} bytes left out of the prompts") in result.stderr
    assert (f"nightshift: warning: alpha: requests for lint-fix: {len(request) - PART_MAX_BYTES:,} "
            f"of {len(request):,} bytes left out of the prompts") in result.stderr


def test_tasks_show_prints_the_bounded_prompt_and_the_warnings(env: Env) -> None:
    repo, request = huge_project(env)
    shown = subprocess.run([sys.executable, "-m", "nightshift_tasks", "tasks", "show", "lint-fix",
                            "--project", str(repo), f"config={env.config}"], cwd=env.tmp,
                           env=env.environ(), capture_output=True, text=True, check=True)
    assert shown.stdout.count(f"{len(request) - PART_MAX_BYTES:,} bytes omitted]") == 3
    assert len(shown.stdout.encode()) < 3 * (SECTION_MAX_BYTES + PART_MAX_BYTES + 4096)
    assert shown.stderr.splitlines() == [
        f"warning: conventions and constraints (CLAUDE.md, AGENTS.md): "
        f"{(RULES - SECTION_MAX_BYTES // len(RULE.format(0))) * len(RULE.format(0)):,} of "
        f"{RULES * len(RULE.format(0)):,} bytes left out of the prompts (at most 4,096 bytes per "
        "item, 16,384 in all)",
        f"warning: requests for lint-fix: {len(request) - PART_MAX_BYTES:,} of {len(request):,} "
        "bytes left out of the prompts (at most 4,096 bytes per item, 16,384 in all)"]
