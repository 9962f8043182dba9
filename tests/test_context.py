from __future__ import annotations

from pathlib import Path

from nightshift_tasks.catalog import build_catalog
from nightshift_tasks.context import read_context

CATALOG = build_catalog([])

CLAUDE = """# Project guide
## Coding conventions
- Use type hints everywhere.
## Architecture
- Not a hint section, but conventions carry on in CLAUDE.md.
## Tasks for agents
- Run the dead-code sweep on src/legacy
- Documentation Backfiller for the public API
## Safety constraints
- Never touch migrations/.
"""

AGENTS = """# Rules
## Allowed
- Edit files under src/
## Never do this
- Push to main
## Tools
- No network access
## Background
- Plain text that is no rule.
"""


def test_tasks_named_in_task_sections_and_notes(tmp_path: Path) -> None:
    (tmp_path / "CLAUDE.md").write_text(CLAUDE)
    (tmp_path / "AGENTS.md").write_text(AGENTS)
    ctx = read_context(tmp_path, CATALOG, claude_md=True, agents_md=True)
    assert ctx.mentioned == {"dead-code", "docs-backfill"}
    assert ctx.files == ("CLAUDE.md", "AGENTS.md")
    assert ctx.notes == (
        "Convention: Use type hints everywhere.",
        "Convention: Not a hint section, but conventions carry on in CLAUDE.md.",
        "Constraint: Never touch migrations/.",
        "Allowed: Edit files under src/",
        "Forbidden: Push to main",
        "Tool restriction: No network access",
    )


def test_switched_off_and_absent(tmp_path: Path) -> None:
    (tmp_path / "CLAUDE.md").write_text(CLAUDE)
    assert read_context(tmp_path, CATALOG, claude_md=False, agents_md=True).mentioned == frozenset()
    assert read_context(tmp_path / "none", CATALOG, True, True).notes == ()


def test_slug_must_be_a_whole_word(tmp_path: Path) -> None:
    (tmp_path / "claude.md").write_text("## TODO\n- improve the lint-fixer tool\n- lint-fix\n")
    assert read_context(tmp_path, CATALOG, True, True).mentioned == {"lint-fix"}
    (tmp_path / "claude.md").write_text("## TODO\n- improve the lint-fixer tool\n")
    assert read_context(tmp_path, CATALOG, True, True).mentioned == frozenset()
