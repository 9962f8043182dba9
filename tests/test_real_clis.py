"""The real `claude` and `codex` binaries (npm, pinned in tests/npm) against local API stubs,
driven by the real doit command line. Copilot cannot be pointed at a local API, so its
adapter runs against a stand-in that prints Copilot's real output formats."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nightshift_tasks import agents, progress, state
from tests.conftest import Env, max_overlap, require_npm_cli, require_program, summary_rows
from tests.stubs import USAGE, ApiStub


@pytest.fixture
def stub() -> Iterator[ApiStub]:
    server = ApiStub().start()
    yield server
    server.stop()


def cli_config(env: Env, stub: ApiStub, preference: list[str], **extra: dict[str, object]) -> None:
    if "codex" in preference:
        require_program("node")  # its launcher is a node script
    codex_provider = (f'model_providers.stub={{name="stub",base_url="{stub.url}/v1",'
                      'wire_api="responses",env_key="OPENAI_API_KEY"}')
    providers: dict[str, object] = {
        "preference": preference,
        "command": {"enabled": False},
        "claude": {"binary": require_npm_cli("claude"), "timeout": "90s", "max_retries": 1,
                   "retry_delay": "10ms", **extra.get("claude", {})},
        "codex": {"binary": require_npm_cli("codex"), "model": "stub-model", "timeout": "90s",
                  "extra_args": ["-c", 'model_provider="stub"', "-c", codex_provider],
                  "max_retries": 0, "retry_delay": "10ms", **extra.get("codex", {})},
    }
    env.write_config({"providers": providers})


def run(env: Env, stub: ApiStub, *args: str) -> tuple[int, str]:
    result = env.doit("run", *args, HOME=str(env.tmp / "home-cli"), ANTHROPIC_BASE_URL=stub.url,
                      ANTHROPIC_API_KEY="test-key", OPENAI_API_KEY="test-key")
    return result.returncode, result.stdout + result.stderr


def calls(env: Env) -> list[sqlite3.Row]:
    conn = sqlite3.connect(env.home / "state.db")
    conn.row_factory = sqlite3.Row
    return conn.execute("SELECT c.*, a.project_path FROM calls c JOIN attempts a "
                        "ON a.id = c.attempt_id ORDER BY c.id").fetchall()


def phase(row: sqlite3.Row) -> str:
    return str(row["phase"]).split()[0]


def loop_over(env: Env, stub: ApiStub, provider: str, names: list[str]) -> tuple[str, list[sqlite3.Row]]:
    """Run every project's one task through `provider`; the output and the ledger's calls."""
    env.projects(names)
    cli_config(env, stub, [provider])
    code, out = run(env, stub, "-n", str(len(names)))
    assert code == 0, out
    rows = calls(env)
    assert len(rows) == 3 * len(names) and {r["provider"] for r in rows} == {provider}
    return out, rows


def test_claude_completes_the_loop_and_the_ledger_has_the_stub_usage(env: Env, stub: ApiStub) -> None:
    out, rows = loop_over(env, stub, "claude", ["alpha", "beta", "gamma"])
    for row in rows:
        inp, outp, cache_read, cache_write = USAGE[phase(row)]
        assert (row["input_tokens"], row["output_tokens"], row["cache_read_tokens"],
                row["cache_write_tokens"], row["outcome"]) == (inp, outp, cache_read, cache_write, "ok")
        assert row["tokens"] == inp + cache_write + outp and row["cost_usd"] > 0
    per_task = sum(u[0] + u[1] + u[3] for u in USAGE.values())
    assert summary_rows(out)["alpha"][:6] == ["claude", "1", "0", "0", "0", str(per_task)]
    history = sqlite3.connect(env.home / "state.db").execute(
        "SELECT SUM(tokens_used) FROM run_history").fetchone()[0]
    assert history == 3 * per_task
    assert len(stub.requests("anthropic")) == 9


def test_codex_completes_the_loop_with_measured_usage(env: Env, stub: ApiStub) -> None:
    _, rows = loop_over(env, stub, "codex", ["alpha", "beta"])
    for row in rows:
        inp, outp, cached, reasoning = USAGE[phase(row)]
        assert (row["input_tokens"], row["output_tokens"], row["cache_read_tokens"],
                row["reasoning_tokens"]) == (inp, outp, cached, reasoning)
        assert row["tokens"] == inp - cached + outp  # the API's output holds the reasoning
    assert len(stub.requests("openai")) == 6


def test_a_429_is_retried_then_the_chain_fails_over(env: Env, stub: ApiStub) -> None:
    env.projects(["alpha"], schedule={"max_tasks": 2})
    cli_config(env, stub, ["claude", "codex"])
    stub.anthropic.fail = -1
    code, out = run(env, stub)
    assert code == 0, out
    assert "claude→codex" in out
    rows = calls(env)
    # plan: claude twice (first try + one retry), both 429, then codex for everything left.
    assert [(r["provider"], phase(r), r["outcome"]) for r in rows] == [
        ("claude", "plan", "transient"), ("claude", "plan", "transient"),
        ("codex", "plan", "ok"), ("codex", "implement", "ok"), ("codex", "review", "ok"),
        ("codex", "plan", "ok"), ("codex", "implement", "ok"), ("codex", "review", "ok")]
    assert all(r.status == 429 for r in stub.requests("anthropic"))
    chain = sqlite3.connect(env.home / "state.db").execute("SELECT provider FROM chains").fetchone()
    assert chain == ("codex",)
    log = next((env.home / "logs").rglob("alpha--lint-fix--*.log")).read_text()
    assert "switching to codex for the rest of the chain" in log


def test_only_provider_trouble_leaves_the_project_for_the_next_run(env: Env, stub: ApiStub) -> None:
    env.projects(["alpha"])
    cli_config(env, stub, ["claude"], claude={"max_retries": 0})
    stub.anthropic.fail = -1
    code, out = run(env, stub)
    assert code == 1
    assert "no other provider to fail over to" in out
    stub.anthropic.fail = 0
    code, out = run(env, stub)
    assert code == 0, out
    assert [r["outcome"] for r in calls(env)] == ["transient", "ok", "ok", "ok"]


def test_an_agent_error_fails_the_task_with_the_cli_message(env: Env, stub: ApiStub) -> None:
    env.projects(["alpha"])
    cli_config(env, stub, ["claude"])
    stub.anthropic.malformed = True
    code, out = run(env, stub)
    assert code == 1
    (row,) = calls(env)
    assert row["outcome"] == "agent"
    # The CLI's own message (from its JSON result), not prefixed with its exit status.
    assert row["error"].startswith("API Error: API returned an empty or malformed response")
    assert f"alpha:lint-fix: failed: planning failed: plan: {row['error']}" in out


def test_provider_caps_hold_across_workers(env: Env, stub: ApiStub) -> None:
    names = [f"p{i}" for i in range(8)]
    repos = env.projects(names)
    for repo in repos[1::2]:  # every other project may not use claude, so it runs on codex
        (repo / "nightshift.yaml").write_text("providers: {claude: {enabled: false}}\n")
    cli_config(env, stub, ["claude", "codex"], claude={"max_concurrent": 2},
               codex={"max_concurrent": 3})
    stub.anthropic.hold, stub.openai.hold = 2, 3
    # Claude's calls are also held until a third claude task was seen waiting for a slot.
    stub.anthropic.gate = threading.Event()
    done: list[tuple[int, str]] = []
    runner = threading.Thread(target=lambda: done.append(run(env, stub, "-n", "6")))
    runner.start()
    waiting = "waiting for a claude slot (providers.claude.max_concurrent = 2)"
    deadline = time.monotonic() + 120
    while waiting not in logs(env) and time.monotonic() < deadline:
        time.sleep(0.05)  # polling the logs for the waiting task, not a timing guess
    stub.anthropic.gate.set()
    runner.join(300)
    ((code, out),) = done
    assert code == 0, out
    claude = [(r.start, r.end) for r in stub.requests("anthropic")]
    codex = [(r.start, r.end) for r in stub.requests("openai")]
    assert len(claude) == len(codex) == 12
    assert max_overlap(claude) == 2
    assert max_overlap(codex) == 3
    assert waiting in logs(env)


def logs(env: Env) -> str:
    return "".join(p.read_text() for p in (env.home / "logs").rglob("*.log"))


# A custom task whose description alone is over Linux's 128 KiB limit on one argument.
LONG = " ".join(f"step{i:06d}" for i in range(14_000)) + " END-OF-THE-LONG-TASK"
LONG_TASK = {"enabled": ["long-spec"],
             "custom": [{"type": "long-spec", "name": "Long spec", "description": LONG}]}


@pytest.mark.parametrize(("provider", "api"), [("claude", "anthropic"), ("codex", "openai")])
def test_a_prompt_over_the_argument_limit_reaches_the_cli_on_stdin(env: Env, stub: ApiStub,
                                                                  provider: str, api: str) -> None:
    assert len(LONG.encode()) > agents.MAX_ARG_BYTES
    env.projects(["alpha"], tasks=LONG_TASK)
    cli_config(env, stub, [provider])
    code, out = run(env, stub)
    assert code == 0, out
    assert [r["outcome"] for r in calls(env)] == ["ok"] * 3
    requests = stub.requests(api)
    assert [r.phase for r in requests] == ["plan", "implement", "review"]
    assert all(LONG in r.body for r in requests)


COPILOT = r"""#!/bin/sh
# Stand-in for `copilot -p ... --output-format json --usage-output-file F`: prints Copilot's
# JSONL events and writes its usage report, in the shapes the real CLI uses.
report=""
if [ "$1" = --version ]; then
  echo "GitHub Copilot CLI 1.0.102."; echo "Run 'copilot update' to check for updates."; exit 0
fi
while [ $# -gt 0 ]; do
  case "$1" in --usage-output-file) report="$2"; shift ;; -p) prompt="$2"; shift ;; esac
  shift
done
[ -n "$prompt" ] || prompt=$(cat)  # no -p: the prompt is on stdin
printf '%s\n' "$prompt" >> "$RECORD.copilot"
# Copilot's real failure output (1.0.102): its error first, then advice, on stderr, exit 1.
advice="To authenticate, you can use any of the following methods:
  • Start 'copilot' and run the '/login' command
  • Set the COPILOT_GITHUB_TOKEN, GH_TOKEN, or GITHUB_TOKEN environment variable
  • Run 'gh auth login' to authenticate with the GitHub CLI"
case "$STANDIN_FAIL" in
  auth) cat >&2 <<'ERR'
Error: No authentication information found.

Copilot can be authenticated with GitHub using an OAuth Token or a Fine-Grained Personal Access Token.

ERR
    printf '%s\n' "$advice" >&2
    exit 1 ;;
  network) cat >&2 <<'ERR'
Error: Authentication token found but could not be validated.

  Failed to fetch PAT user login: network fetch failed: request failed: error sending request for url (https://api.github.com/copilot_internal/user)
  Failed to fetch GitHub CLI user login: network fetch failed: request failed: error sending request for url (https://api.github.com/copilot_internal/user)

Your token may still be valid. Check your network connection and try again.

ERR
    printf '%s\n' "$advice" >&2
    exit 1 ;;
esac
case "$prompt" in
  *"# nightshift: plan phase"*) text='{\"description\": \"d\", \"steps\": [], \"files\": []}' ;;
  *"# nightshift: implement phase"*) text='{\"summary\": \"s\", \"files_modified\": []}' ;;
  *) text='{\"passed\": true, \"feedback\": \"ok\"}' ;;
esac
echo '{"type":"session.start","data":{"sessionId":"s1"}}'
printf '{"type":"assistant.message","data":{"messageId":"m1","content":"%s","toolRequests":[]}}\n' "$text"
cat > "$report" <<'EOF'
{"totalPremiumRequestCost": 1, "totalUserRequests": 1, "totalNanoAiu": 0, "totalApiDurationMs": 5,
 "sessionStartTime": "2026-11-28T00:00:00.000Z",
 "codeChanges": {"linesAdded": 0, "linesRemoved": 0, "filesModifiedCount": 0, "filesModified": []},
 "modelMetrics": {"gpt-5": {"requests": {"count": 1, "cost": 1},
                            "usage": {"inputTokens": 400, "outputTokens": 40, "cacheReadTokens": 0,
                                      "cacheWriteTokens": 0}}},
 "agentMetrics": {}, "providerModelMetrics": [], "lastCallInputTokens": 400, "lastCallOutputTokens": 40}
EOF
"""


def copilot_standin(env: Env) -> Path:
    copilot = env.tmp / "copilot"
    copilot.write_text(COPILOT)
    copilot.chmod(0o755)
    return copilot


def copilot_config(env: Env) -> None:
    env.write_config({"providers": {"preference": ["copilot"], "command": {"enabled": False},
                                    "copilot": {"binary": str(copilot_standin(env))}}})


def test_copilot_adapter_reads_events_and_the_usage_report(env: Env) -> None:
    env.projects(["alpha"])
    copilot_config(env)
    result = env.doit("run")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = calls(env)
    assert [(r["input_tokens"], r["output_tokens"], r["tokens"], r["requests"]) for r in rows] == [
        (400, 40, 440, 1)] * 3
    assert json.loads(json.dumps([r["outcome"] for r in rows])) == ["ok"] * 3


def test_copilot_gets_a_prompt_over_the_argument_limit_on_stdin(env: Env) -> None:
    env.projects(["alpha"], tasks=LONG_TASK)
    copilot_config(env)
    result = env.doit("run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert [r["outcome"] for r in calls(env)] == ["ok"] * 3
    assert Path(f"{env.record}.copilot").read_text().count(LONG) == 3


def test_parallel_projects_stop_at_the_allowance(env: Env, stub: ApiStub) -> None:
    """K = 8 and an allowance that fits exactly three tasks' measured usage."""
    seed = env.repo("seed")
    repos = [env.repo(f"p{i}") for i in range(8)]
    env.write_config({"projects": [{"path": str(seed)}]})
    cli_config(env, stub, ["claude"])
    code, out = run(env, stub)  # one measured run of lint-fix teaches its estimate
    assert code == 0, out
    per_task = sum(u[0] + u[1] + u[3] for u in USAGE.values())
    view = subprocess.run([sys.executable, "-m", "nightshift_tasks", "budget", "--json",
                           f"config={env.config}"], env=env.environ(HOME=str(env.tmp / "home-cli")),
                          capture_output=True, text=True, check=True)
    (claude,) = json.loads(view.stdout)
    assert claude["reader"] == "projects/*.jsonl" and claude["used_today"] >= per_task
    weekly = (claude["used_today"] + 3 * per_task + 100) * 7  # daily allowance: 3 tasks + 100
    env.write_config({"projects": [{"path": str(r)} for r in repos],
                      "budget": {"weekly_tokens": weekly, "max_percent": 100, "reserve_percent": 0}})
    code, out = run(env, stub, "-n", "8")
    assert code == 0, out
    rows = summary_rows(out)
    assert sum(rows[f"p{i}"][1] == "1" for i in range(8)) == 3
    assert sum(rows[f"p{i}"][4] == "1" for i in range(8)) == 5
    assert out.count(f"skipped: budget: needs ~{per_task:,} tokens, 100 left of "
                     f"{3 * per_task + 100:,} (claude)") == 5
    assert f"budget claude: {claude['used_today'] + 3 * per_task + 100:,} daily" in out
    assert f"this run used {3 * per_task:,}" in out


def test_copilot_network_failure_is_retried_then_fails_over(env: Env) -> None:
    """Copilot prints "network fetch failed" in the middle of its output, not at the end."""
    env.projects(["alpha"])
    env.write_config({"providers": {"preference": ["copilot", "command"], "copilot": {
        "binary": str(copilot_standin(env)), "max_retries": 1, "retry_delay": "10ms"}}})
    result = env.doit("run", STANDIN_FAIL="network")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = calls(env)
    assert [(r["provider"], phase(r), r["outcome"]) for r in rows] == [
        ("copilot", "plan", "transient"), ("copilot", "plan", "transient"),
        ("command", "plan", "ok"), ("command", "implement", "ok"), ("command", "review", "ok")]
    assert rows[0]["error"] == (
        "exit 1: Error: Authentication token found but could not be validated. (Failed to fetch "
        "PAT user login: network fetch failed: request failed: error sending request for url "
        "(https://api.github.com/copilot_internal/user))")
    assert summary_rows(result.stdout)["alpha"][:2] == ["copilot→command", "1"]


def test_copilot_without_login_fails_with_its_own_error_on_one_row(env: Env) -> None:
    env.projects(["alpha", "beta"])
    env.write_config({"providers": {"preference": ["copilot"], "command": {"enabled": False},
                                    "copilot": {"binary": str(copilot_standin(env))}}})
    result = env.doit("run", "-n", "2", STANDIN_FAIL="auth")
    assert result.returncode == 1
    assert [(r["outcome"], r["error"]) for r in calls(env)] == [
        ("auth", "exit 1: Error: No authentication information found.")] * 2
    rows = summary_rows(result.stdout)
    assert set(rows) == {"alpha", "beta", "TOTAL"}  # no row split by a newline
    assert rows["alpha"][:6] == ["copilot", "0", "1", "0", "0", "0"]
    assert rows["TOTAL"][:2] == ["0", "2"]
    assert ("alpha:lint-fix: failed: planning failed: plan: copilot: exit 1: Error: No "
            "authentication information found.; no other provider to fail over to") in result.stdout


def doctor(env: Env, **extra: str) -> subprocess.CompletedProcess[str]:
    home = env.tmp / "home-doctor"
    home.mkdir(exist_ok=True)
    unset = dict.fromkeys(("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN",
                           "CODEX_API_KEY", "OPENAI_API_KEY", "COPILOT_GITHUB_TOKEN", "GH_TOKEN",
                           "GITHUB_TOKEN", "COPILOT_PROVIDER_BASE_URL", "COPILOT_HOME",
                           "GH_CONFIG_DIR"), "")
    return subprocess.run([sys.executable, "-m", "nightshift_tasks", "doctor", f"config={env.config}"],
                          env=env.environ(HOME=str(home), **{**unset, **extra}),
                          capture_output=True, text=True, timeout=180)


def test_doctor_tells_which_clis_are_not_logged_in(env: Env, stub: ApiStub) -> None:
    env.projects(["alpha"])
    cli_config(env, stub, ["claude", "codex", "copilot"])
    env.write_config({"providers": {"copilot": {"binary": str(copilot_standin(env))}}})
    out = doctor(env)
    assert out.returncode == 1, out.stdout
    lines = out.stdout.splitlines()
    assert [line.split(":")[0] for line in lines if line.split("] ")[1].startswith("login")] == [
        "[WARN] login claude", "[WARN] login codex", "[WARN] login copilot"]
    assert "[FAIL] providers: no enabled provider is logged in" in lines
    assert "[OK] provider copilot: GitHub Copilot CLI 1.0.102." in lines
    secrets = {"ANTHROPIC_API_KEY": "sk-ant-secret-1", "CODEX_API_KEY": "sk-secret-2",
               "COPILOT_GITHUB_TOKEN": "github_pat_secret3"}
    out = doctor(env, **secrets)
    assert out.returncode == 0, out.stdout
    assert "[OK] login claude: logged in (ANTHROPIC_API_KEY)" in out.stdout
    assert "[OK] login codex: API key in $CODEX_API_KEY" in out.stdout
    assert "[OK] login copilot: token in $COPILOT_GITHUB_TOKEN" in out.stdout
    assert not any(secret in out.stdout + out.stderr for secret in secrets.values())


def codex_tokens(env: Env) -> int:
    return sum(r["tokens"] for r in calls(env) if r["provider"] == "codex")


def budget_config(env: Env, codex_allowance: int) -> None:
    """claude: plenty; codex: `codex_allowance` tokens a day (max_percent 100, no reserve)."""
    env.write_config({"budget": {"max_percent": 100, "reserve_percent": 0,
                                 "per_provider": {"codex": 7 * codex_allowance}}})


def test_fail_over_reserves_from_the_provider_it_runs_on(env: Env, stub: ApiStub) -> None:
    """claude only 429s; codex's allowance (700) is far below a task's estimate: the first task
    of each chain is skipped when it fails over, the second before it starts, and codex spends
    nothing. Skipped before a token was spent, the chains stay open for the next run."""
    env.projects(["alpha", "beta"], schedule={"max_tasks": 2})
    cli_config(env, stub, ["claude", "codex"])
    budget_config(env, 700)
    stub.anthropic.fail = -1
    code, out = run(env, stub, "-n", "2")
    assert code == 0, out
    assert stub.requests("openai") == [] and codex_tokens(env) == 0
    rows = summary_rows(out)
    assert rows["alpha"][:6] == rows["beta"][:6] == ["claude→codex", "0", "0", "0", "2", "0"]
    assert out.count("skipped: budget: needs ~50,000 tokens, 700 left of 700 (codex)") == 4
    listed = env.doit("list").stdout
    assert ("alpha   lint-fix, docs-backfill via codex (resuming: 0/2 done today; last run "
            "lint-fix skipped: budget: needs ~50,000 tokens, 700 left of 700 (codex); last run "
            "docs-backfill skipped: budget: needs ~50,000 tokens, 700 left of 700 (codex))") in listed
    budget_config(env, 1_000_000)  # the next run of the day has room: it takes the chains up
    code, out = run(env, stub, "-n", "2")
    assert code == 0, out
    rows = summary_rows(out)
    assert rows["alpha"][:5] == rows["beta"][:5] == ["codex", "2", "0", "0", "0"]
    assert len(stub.requests("openai")) == 12
    assert "done today" in env.doit("list").stdout.split("alpha", 1)[1].splitlines()[0]


def test_usage_is_charged_to_the_provider_that_made_the_call(env: Env, stub: ApiStub) -> None:
    """Codex's allowance fits one task's estimate (50,000 tier max) but not two: the first task
    reserves from codex when it fails over mid-task and runs; the second starts on codex and is
    skipped. The header and the report charge codex, not the planned claude."""
    env.projects(["alpha"], schedule={"max_tasks": 2})
    cli_config(env, stub, ["claude", "codex"])
    budget_config(env, 52_000)
    stub.anthropic.fail = -1
    code, out = run(env, stub)
    assert code == 0, out
    spent = codex_tokens(env)
    assert 0 < spent < 52_000 - 50_000 + spent  # one task ran on codex, measured
    assert [(r["provider"], phase(r)) for r in calls(env)] == [
        ("claude", "plan"), ("claude", "plan"),
        ("codex", "plan"), ("codex", "implement"), ("codex", "review")]
    assert summary_rows(out)["alpha"][:6] == ["claude→codex", "1", "0", "0", "1", str(spent)]
    assert (f"skipped: budget: needs ~50,000 tokens, {52_000 - spent:,} left of 52,000 (codex)"
            in out)
    header = [line for line in out.splitlines() if line.startswith("budget ")]
    assert [line.split(";")[-1] for line in header] == [" this run used 0",
                                                      f" this run used {spent:,}"]
    assert header[1].startswith("budget codex: 52,000 daily")
    (report,) = (env.home / "reports").glob("run-*.json")
    record = json.loads(report.read_text())
    assert {k: b["used_by_run"] for k, b in record["budget"].items()} == {"claude": 0, "codex": spent}
    assert [(t["task_type"], t["provider"], t["tokens_used"]) for t in record["tasks"]] == [
        ("lint-fix", "claude→codex", spent), ("docs-backfill", "codex", 0)]


def stalled_line(db: Path) -> str:
    """The live line once two tasks wait for the budget (or were skipped), else ""."""
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    except sqlite3.OperationalError:  # the ledger is not created yet
        return ""
    try:
        stalled = conn.execute("SELECT COUNT(*), MAX(run_id) FROM attempts WHERE phase = "
                               "'waiting for claude budget' OR status = 'skipped'").fetchone()
    except sqlite3.OperationalError:  # not migrated yet
        return ""
    finally:
        conn.close()
    if stalled[0] < 2:
        return ""
    return progress.in_flight(state.connect(db), stalled[1], state.now()) or "none in flight"


def test_a_task_waits_for_reservations_that_settle_below_their_estimate(env: Env,
                                                                       stub: ApiStub) -> None:
    """Three projects at once, an allowance of 70,000 and an estimate of 50,000: the first task
    reserves, the other two wait (in their log and on the live line) instead of being skipped,
    and run once it settled far below its estimate."""
    env.projects(["alpha", "beta", "gamma"])
    cli_config(env, stub, ["claude"])
    env.write_config({"budget": {"weekly_tokens": 7 * 70_000, "max_percent": 100,
                                 "reserve_percent": 0}})
    stub.anthropic.gate = threading.Event()  # the first task's agent is held until the others wait
    done: list[tuple[int, str]] = []
    runner = threading.Thread(target=lambda: done.append(run(env, stub, "-n", "3")))
    runner.start()
    line = ""
    deadline = time.monotonic() + 60
    while not line and time.monotonic() < deadline:
        line = stalled_line(env.home / "state.db")
        time.sleep(0.05)  # polling the ledger for the other two tasks' state
    stub.anthropic.gate.set()
    runner.join(120)
    ((code, out),) = done
    assert code == 0, out
    assert line.count("waiting for claude budget") == 2
    rows = summary_rows(out)
    assert [rows[p][:5] for p in ("alpha", "beta", "gamma")] == [["claude", "1", "0", "0", "0"]] * 3
    assert logs(env).count("waiting for running tasks to settle their claude reservations: needs "
                           "~50,000 tokens, 20,000 left of 70,000 while they hold 50,000") == 2
