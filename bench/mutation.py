"""Mutation testing of the core modules: how many small code changes the tests catch.

Runs Cosmic Ray (the `mutation` extra: `pip install -e '.[mutation]'`) on a copy of this
checkout, one module at a time. Each mutant of a module is tested only by the test files
that exercise that module (MODULES below), so a module costs (its mutants) x (those tests'
time), not the whole suite per mutant. The mutants run in a PID namespace of their own
(unshare) where the system has one: a mutant of the teardown can signal every process.
Cosmic Ray mutates the file on disk and runs the tests in a subprocess, so the mutant is
also what the tests' `doit` subprocesses import (PYTHONPATH points at the copy): most of the
behaviour here is only reached that way, which is why an in-process tool that maps tests to
functions by tracing calls does not fit.

Prints, per module, killed / survived / timeout / incompetent and the score (killed and
timed out over all tested mutants), then every survivor with its diff, to be killed by a
test or shown equivalent. Mutants inside annotations (`int | None` -> `int + None`, never
evaluated under `from __future__ import annotations`) are skipped up front. Too slow for
CI: minutes to an hour per module. Run it niced on a shared machine.

Usage: python bench/mutation.py [MODULE ...] [--jobs N] [--operators-excluded REGEX ...] [--keep DIR]
       MODULE is a key of MODULES (e.g. guard); none means all of them.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tabulate import tabulate

ROOT = Path(__file__).resolve().parent.parent

# Module -> the pytest arguments (files or node ids) whose tests exercise it. Update this
# when modules split or move: it is the only place that names them.
MODULES: dict[str, tuple[str, list[str]]] = {
    "guard": ("nightshift_tasks/guard.py", [
        "tests/test_guard.py", "tests/test_doit_verbs.py",
        "tests/test_graph.py::test_second_run_same_day_skips_and_a_forces",
        "tests/test_graph.py::test_a_failure_does_not_stop_its_chain_or_other_projects"]),
    "runlock": ("nightshift_tasks/runlock.py", ["tests/test_recovery.py", "tests/test_doit_verbs.py"]),
    "leases": ("nightshift_tasks/leases.py", ["tests/test_leases.py"]),
    "select": ("nightshift_tasks/select.py", [
        "tests/test_select.py", "tests/test_plan.py::test_priority_orders_projects",
        "tests/test_plan.py::test_max_projects_counts_only_projects_with_tasks",
        "tests/test_plan.py::test_info_explains_every_pick_and_skip",
        "tests/test_plan.py::test_random_task_and_ignore_budget"]),
    "recovery": ("nightshift_tasks/recovery.py", ["tests/test_recovery.py"]),
    "budget": ("nightshift_tasks/budget.py", ["tests/test_budget.py",
                                              "tests/test_plan.py::test_random_task_and_ignore_budget"]),
    "plan": ("nightshift_tasks/plan.py", ["tests/test_plan.py", "tests/test_days.py",
                                          "tests/test_select.py"]),
    # test_shutdown.py exercises process.py too, but takes four times as long per mutant: the
    # score with test_process.py alone is a lower bound.
    "process": ("nightshift_tasks/process.py", ["tests/test_process.py"]),
    "signals": ("nightshift_tasks/signals.py", ["tests/test_signals.py", "tests/test_shutdown.py",
                                                "tests/test_process.py"]),
    # test_publish.py exercises git.py too, at four times the cost per mutant: its survivors
    # are re-run against it by hand. The fast files first: -x stops at the first failure.
    "git": ("nightshift_tasks/git.py", ["tests/test_git.py", "tests/test_repo_files.py",
                                        "tests/test_git_safety.py"]),
    "leftovers": ("nightshift_tasks/leftovers.py", ["tests/test_leftovers.py", "tests/test_repo_files.py"]),
    "publish": ("nightshift_tasks/publish.py", ["tests/test_publish.py", "tests/test_git_safety.py",
                                                "tests/test_publish_lease.py"]),
    "execute": ("nightshift_tasks/execute.py", [
        "tests/test_graph.py", "tests/test_loop.py", "tests/test_publish.py", "tests/test_agents.py",
        "tests/test_execute.py",
        # the paths only a fault reaches: a full disk, a read-only log directory, Ctrl-C, the
        # window closing, a mirror's fetch
        "tests/test_storage.py::test_a_disk_filled_during_a_task_is_recorded_and_the_chain_goes_on",
        "tests/test_storage.py::test_a_task_log_that_cannot_be_made_fails_the_task_with_one_line",
        "tests/test_shutdown.py::test_ctrl_c_twice_stops_the_run_its_agents_group_included_with_exit_130",
        "tests/test_window.py::test_a_window_that_closes_mid_run_starts_no_new_task_and_the_overrun_is_noted",
        "tests/test_mirrors.py::test_a_failed_fetch_fails_that_task_and_the_next_run_tries_again"]),
    # test_real_clis.py's provider paths only (the whole file takes 85 s a mutant): retry
    # and fail-over, the agent error, the usage report file, the budget after a fail-over
    # and the wait for reservations. test_leases.py never reaches provider_agent.py.
    "provider_agent": ("nightshift_tasks/provider_agent.py", [
        "tests/test_provider_agent.py", "tests/test_execute.py",
        "tests/test_agents.py::test_an_oversized_prompt_for_the_prompt_slot_fails_naming_the_key",
        "tests/test_agents.py::test_a_long_prompt_reaches_a_command_by_file_or_stdin",
        "tests/test_agents.py::test_a_cli_in_local_bin_is_found_and_run_under_crons_bare_path",
        *(f"tests/test_real_clis.py::test_{name}" for name in (
            "copilot_adapter_reads_events_and_the_usage_report",
            "copilot_without_login_fails_with_its_own_error_on_one_row",
            "copilot_network_failure_is_retried_then_fails_over",
            "an_agent_error_fails_the_task_with_the_cli_message",
            "a_429_is_retried_then_the_chain_fails_over",
            "usage_is_charged_to_the_provider_that_made_the_call",
            "fail_over_reserves_from_the_provider_it_runs_on",
            "a_task_waits_for_reservations_that_settle_below_their_estimate")),
        # usage known, unknown, and of a call that never started
        "tests/test_usage_report.py::test_reported_usage_is_recorded_and_settles_the_reservation",
        "tests/test_usage_report.py::test_unknown_usage_keeps_the_reservation",
        "tests/test_usage_report.py::test_a_call_that_never_started_used_nothing"]),
}

# Turning one binary operator into each of the ten others adds near-copies of one mutant
# (and `|` of sets or `/` of paths into a shift only raises TypeError): only the
# replacements by `+` and `-` are kept.
DEFAULT_EXCLUDED = [
    r"core/ReplaceBinaryOperator_\w+_(Pow|RShift|LShift|BitOr|BitAnd|BitXor|FloorDiv|Mod|Div|Mul)$",
]
SKIP = {"__pycache__", ".git", ".mypy_cache", ".ruff_cache", ".pytest_cache"}


@dataclass
class Tally:
    module: str
    mutants: int = 0
    killed: int = 0
    survived: int = 0
    timeout: int = 0
    incompetent: int = 0
    seconds: float = 0.0
    survivors: list[str] = field(default_factory=list)
    untested: bool = False  # its tests failed unmutated, so no mutant was tried

    @property
    def score(self) -> float:
        tested = self.killed + self.survived + self.timeout
        return 100.0 * (self.killed + self.timeout) / tested if tested else float("nan")


def copy_tree(dest: Path) -> Path:
    """A copy of the checkout to mutate in place (Cosmic Ray edits the file on disk)."""
    shutil.copytree(ROOT, dest, symlinks=True, ignore=lambda _d, names: [n for n in names if n in SKIP])
    return dest


def cosmic(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    tool = Path(sys.executable).parent / "cosmic-ray"
    return subprocess.run([str(tool) if tool.exists() else "cosmic-ray", *args], cwd=repo,
                          capture_output=True, text=True, env=test_env(repo))


def test_env(repo: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NIGHTSHIFT_")}
    env["PYTHONPATH"] = str(repo)
    return env


def pytest_command(tests: list[str]) -> list[str]:
    return [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:randomly", *tests]


def baseline(repo: Path, tests: list[str]) -> float | None:
    """The selected tests on the unmutated copy: they must pass, and their time sets the
    per-mutant timeout."""
    start = time.monotonic()
    result = subprocess.run(pytest_command(tests), cwd=repo, env=test_env(repo),
                            capture_output=True, text=True)
    if result.returncode != 0:
        print(f"mutation: skipped: its tests fail unmutated:\n{result.stdout[-3000:]}", flush=True)
        return None
    return time.monotonic() - start


def run_module(name: str, work: Path, excluded: list[str], jobs: int) -> Tally:
    path, tests = MODULES[name]
    repo = copy_tree(work / name)
    took = baseline(repo, tests)
    if took is None:
        return Tally(name, untested=True)
    timeout = max(3 * took, took + 30)
    config = repo / "mutation.toml"
    config.write_text(
        "[cosmic-ray]\n"
        f"module-path = {json.dumps(path)}\n"
        f"timeout = {timeout:.0f}\n"
        "excluded-modules = []\n"
        f"test-command = {json.dumps(shlex.join(pytest_command(tests)))}\n"
        "[cosmic-ray.distributor]\nname = \"local\"\n"
        "[cosmic-ray.filters.operators-filter]\n"
        f"exclude-operators = {json.dumps(excluded)}\n")
    start = time.monotonic()
    result = cosmic(repo, "init", "mutation.toml", "session.sqlite")
    if result.returncode != 0:
        sys.exit(f"mutation: cosmic-ray init failed for {name}:\n{result.stderr[-3000:]}")
    tool = Path(sys.executable).parent / "cr-filter-operators"
    subprocess.run([str(tool) if tool.exists() else "cr-filter-operators", "session.sqlite",
                    "mutation.toml"], cwd=repo, check=True, capture_output=True)
    skip_annotations(repo, path)
    exec_sharded(repo, jobs)
    tally = tally_session(name, cosmic(repo, "dump", "session.sqlite").stdout)
    tally.seconds = time.monotonic() - start
    return tally


def confined() -> list[str]:
    """The prefix that runs the mutants in a PID namespace of their own, where there is one.
    A mutant of the teardown (signals.py, process.py) can turn "stop our children" into
    "stop every process we may signal": without it, one took this machine's shell and
    every other job with it."""
    prefix = ["unshare", "--pid", "--fork", "--mount-proc"]
    if os.geteuid() != 0:
        prefix[1:1] = ["--user", "--map-root-user"]
    try:
        subprocess.run([*prefix, "true"], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        print("mutation: warning: no PID namespace here (unshare); a mutant may signal any "
              "process of yours", file=sys.stderr, flush=True)
        return []
    return prefix


def exec_sharded(repo: Path, jobs: int) -> None:
    """Test the session's pending mutants in `jobs` copies of the checkout at once (Cosmic
    Ray's local distributor runs one at a time, and the tests mostly wait on subprocesses),
    then gather every copy's results into the session."""
    from cosmic_ray.work_db import use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    with use_db(str(repo / "session.sqlite")) as db:
        pending = sorted(item.job_id for item in db.pending_work_items)
    shards = []
    for i in range(jobs):
        shard = repo.with_name(f"{repo.name}.{i}")
        shutil.rmtree(shard, ignore_errors=True)
        shutil.copytree(repo, shard, symlinks=True)
        mine = set(pending[i::jobs])
        with use_db(str(shard / "session.sqlite")) as db:
            db.set_multiple_results([j for j in pending if j not in mine], WorkResult(
                output="another copy's", worker_outcome=WorkerOutcome.SKIPPED))
        shards.append((shard, mine))
    tool = Path(sys.executable).parent / "cosmic-ray"
    procs = [subprocess.Popen([*confined(), str(tool) if tool.exists() else "cosmic-ray", "exec",
                               "mutation.toml", "session.sqlite"], cwd=shard, env=test_env(shard),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for shard, _ in shards]
    errors = [proc.communicate()[1] for proc in procs]
    failed = [err[-3000:] for proc, err in zip(procs, errors, strict=True) if proc.returncode != 0]
    with use_db(str(repo / "session.sqlite")) as db:  # what every copy finished, even on failure
        for shard, mine in shards:
            with use_db(str(shard / "session.sqlite")) as done:
                for job_id, result in done.results:
                    if job_id in mine:
                        db.set_result(job_id, result)
    if failed:
        sys.exit(f"mutation: cosmic-ray exec failed in {repo}:\n{failed[0]}")


Span = tuple[tuple[int, int], tuple[int, int]]


def annotation_spans(source: str) -> list[Span]:
    """Where a module's annotations are, as (line, column) ranges. Under `from __future__
    import annotations` none is ever evaluated, so a mutant there is equivalent by
    construction (`int | None` -> `int + None`) and only dilutes the score."""
    tree = ast.parse(source)
    if not any(isinstance(node, ast.ImportFrom) and node.module == "__future__"
               and any(alias.name == "annotations" for alias in node.names) for node in tree.body):
        return []
    found: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            found += [arg.annotation for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]
                      if arg is not None and arg.annotation is not None]
            found += [node.returns] if node.returns is not None else []
        elif isinstance(node, ast.AnnAssign):
            found.append(node.annotation)
    return [((n.lineno, n.col_offset), (n.end_lineno or n.lineno, n.end_col_offset or 0)) for n in found]


def in_annotation(spans: list[Span], start: tuple[int, int]) -> bool:
    return any(begin <= start < end for begin, end in spans)


def skip_annotations(repo: Path, path: str) -> None:
    """Mark the session's mutants inside annotations as skipped, as cr-filter-operators
    does for excluded operators."""
    from cosmic_ray.work_db import use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    spans = annotation_spans((repo / path).read_text())
    with use_db(str(repo / "session.sqlite")) as db:
        for item in list(db.pending_work_items):
            if all(in_annotation(spans, tuple(m.start_pos)) for m in item.mutations):
                db.set_result(item.job_id, WorkResult(output="in an annotation: never evaluated",
                                                      worker_outcome=WorkerOutcome.SKIPPED))


def tally_session(name: str, dump: str) -> Tally:
    """Count a session's outcomes from `cosmic-ray dump` (one [work item, result] a line)."""
    tally = Tally(name)
    for line in dump.splitlines():
        item, result = json.loads(line)
        if result is None or result["worker_outcome"] == "skipped":
            continue  # filtered out (an excluded operator)
        tally.mutants += 1
        if result["worker_outcome"] != "normal":
            tally.incompetent += 1
        elif result["test_outcome"] == "survived":
            tally.survived += 1
            (mutation,) = item["mutations"]
            tally.survivors.append(f"{mutation['module_path']}:{mutation['start_pos'][0]} "
                                   f"{mutation['operator_name']}\n{result['diff']}")
        elif result["output"] == "timeout":
            tally.timeout += 1
        elif result["test_outcome"] == "killed":
            tally.killed += 1
        else:
            tally.incompetent += 1
    return tally


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", metavar="MODULE", help=f"one of: {', '.join(MODULES)}")
    parser.add_argument("--operators-excluded", nargs="*", default=DEFAULT_EXCLUDED, metavar="REGEX")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="test N mutants at once, each in its own copy")
    parser.add_argument("--keep", type=Path, help="work in DIR and keep the copies and sessions")
    args = parser.parse_args()
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module {unknown[0]!r}; known: {', '.join(MODULES)}")
    work = args.keep or Path(tempfile.mkdtemp(prefix="mutation-"))
    work.mkdir(parents=True, exist_ok=True)
    tallies = []
    try:
        for name in args.modules or list(MODULES):
            tallies.append(run_module(name, work, args.operators_excluded, max(1, args.jobs)))
            report([tallies[-1]], survivors=False)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    report(tallies, survivors=True)
    return 0


def report(tallies: list[Tally], survivors: bool) -> None:
    print(tabulate([(t.module, t.mutants, t.killed, t.survived, t.timeout, t.incompetent,
                     "tests fail unmutated" if t.untested else f"{t.score:.1f}%", f"{t.seconds / 60:.1f}")
                    for t in tallies],
                   headers=["module", "mutants", "killed", "survived", "timeout", "incompetent",
                            "score", "minutes"]), flush=True)
    if survivors:
        for tally in tallies:
            for survivor in tally.survivors:
                print(f"\nsurvived: {survivor}")


if __name__ == "__main__":
    sys.exit(main())
