"""The state database's schema, as versioned migrations: each runs once, in order, and an
existing one is never edited (a change is a new migration at the end). state.migrate
applies them."""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: the original tool's tables, plus chains and the per-attempt ledger.
    """
    CREATE TABLE projects (
        path TEXT PRIMARY KEY,
        last_run TEXT,
        run_count INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE task_history (
        project_path TEXT NOT NULL,
        task_type TEXT NOT NULL,
        last_run TEXT NOT NULL,
        PRIMARY KEY (project_path, task_type)
    );
    CREATE TABLE assigned_tasks (
        task_id TEXT PRIMARY KEY,
        project TEXT NOT NULL,
        task_type TEXT NOT NULL,
        assigned_at TEXT NOT NULL
    );
    CREATE TABLE run_history (
        id TEXT PRIMARY KEY,
        start_time TEXT NOT NULL,
        end_time TEXT,
        project TEXT NOT NULL,
        tasks TEXT NOT NULL,
        tokens_used INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL,
        error TEXT,
        provider TEXT NOT NULL DEFAULT '',
        branch TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX idx_run_history_time ON run_history(start_time DESC);
    CREATE TABLE chains (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        project_path TEXT NOT NULL,
        day TEXT NOT NULL,
        tasks TEXT NOT NULL,
        provider TEXT NOT NULL,
        run_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        finished_at TEXT,
        UNIQUE (project_path, day)
    );
    CREATE TABLE attempts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        chain_id INTEGER NOT NULL REFERENCES chains(id),
        run_id TEXT NOT NULL,
        project_path TEXT NOT NULL,
        task TEXT NOT NULL,
        status TEXT NOT NULL,
        provider TEXT NOT NULL DEFAULT '',
        planned_at TEXT NOT NULL,
        started_at TEXT,
        ended_at TEXT,
        iterations INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        output_ref TEXT,
        log_path TEXT,
        pid INTEGER
    );
    CREATE INDEX idx_attempts_chain ON attempts(chain_id, task);
    """,
    # 2: measured usage per agent call, provider-only failures, provider slot leases.
    """
    ALTER TABLE attempts ADD COLUMN failure TEXT;
    ALTER TABLE attempts ADD COLUMN tokens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE attempts ADD COLUMN cost_usd REAL NOT NULL DEFAULT 0;
    CREATE TABLE calls (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        attempt_id INTEGER NOT NULL REFERENCES attempts(id),
        phase TEXT NOT NULL,
        provider TEXT NOT NULL,
        started_at TEXT NOT NULL,
        ended_at TEXT NOT NULL,
        exit_code INTEGER,
        outcome TEXT NOT NULL,
        error TEXT,
        input_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        cache_read_tokens INTEGER NOT NULL DEFAULT 0,
        cache_write_tokens INTEGER NOT NULL DEFAULT 0,
        reasoning_tokens INTEGER NOT NULL DEFAULT 0,
        tokens INTEGER NOT NULL DEFAULT 0,
        cost_usd REAL NOT NULL DEFAULT 0,
        requests INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX idx_calls_attempt ON calls(attempt_id);
    CREATE TABLE leases (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        provider TEXT NOT NULL,
        pid INTEGER NOT NULL,
        acquired_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );
    """,
    # 3: the usage readers' per-file scan cache, and run-time budget reservations.
    """
    CREATE TABLE usage_files (
        path TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        inode INTEGER NOT NULL,
        offset INTEGER NOT NULL,
        summary TEXT NOT NULL
    );
    CREATE TABLE reservations (
        attempt_id INTEGER PRIMARY KEY REFERENCES attempts(id),
        run_id TEXT NOT NULL,
        provider TEXT NOT NULL,
        estimate INTEGER NOT NULL,
        pid INTEGER NOT NULL,
        open INTEGER NOT NULL DEFAULT 1,
        created_at TEXT NOT NULL
    );
    CREATE INDEX idx_reservations_run ON reservations(run_id, provider);
    """,
    # 4: pull requests nightshift opened or updated, for the PR caps.
    """
    CREATE TABLE prs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        project_path TEXT NOT NULL,
        branch TEXT NOT NULL,
        url TEXT NOT NULL,
        action TEXT NOT NULL,
        at TEXT NOT NULL
    );
    CREATE INDEX idx_prs_at ON prs(at);
    """,
    # 5: the process group of the agent a task is running, for recovery after a crash.
    """
    ALTER TABLE attempts ADD COLUMN agent_pgid INTEGER;
    """,
    # 6: the phase a running task is in, for live progress.
    """
    ALTER TABLE attempts ADD COLUMN phase TEXT;
    """,
    # 7: PR slots held by running tasks (prs rows with action 'reserved'), and the commit
    # nightshift last set each task branch to, so that it replaces nothing but its own.
    """
    ALTER TABLE prs ADD COLUMN attempt_id INTEGER;
    ALTER TABLE prs ADD COLUMN pid INTEGER;
    CREATE INDEX idx_prs_action ON prs(action);
    CREATE TABLE branch_heads (
        project_path TEXT NOT NULL,
        branch TEXT NOT NULL,
        commit_id TEXT NOT NULL,
        own INTEGER NOT NULL,
        at TEXT NOT NULL,
        PRIMARY KEY (project_path, branch)
    );
    """,
    # 8: a reservation per attempt and provider: a task that fails over reserves again.
    """
    CREATE TABLE reservations_by_provider (
        attempt_id INTEGER NOT NULL REFERENCES attempts(id),
        run_id TEXT NOT NULL,
        provider TEXT NOT NULL,
        estimate INTEGER NOT NULL,
        pid INTEGER NOT NULL,
        open INTEGER NOT NULL DEFAULT 1,
        created_at TEXT NOT NULL,
        PRIMARY KEY (attempt_id, provider)
    );
    INSERT INTO reservations_by_provider SELECT attempt_id, run_id, provider, estimate, pid, open,
        created_at FROM reservations;
    DROP TABLE reservations;
    ALTER TABLE reservations_by_provider RENAME TO reservations;
    CREATE INDEX idx_reservations_run ON reservations(run_id, provider);
    """,
    # 9: whether a call's usage is known (0: a command reported none, or a malformed one).
    """
    ALTER TABLE calls ADD COLUMN usage_known INTEGER NOT NULL DEFAULT 1;
    """,
    # 10: a fleet on one ledger: the host of every row a process holds, each run's lease
    # (extended by its heartbeat), and one claim per project and day.
    """
    ALTER TABLE attempts ADD COLUMN host TEXT NOT NULL DEFAULT '';
    ALTER TABLE leases ADD COLUMN host TEXT NOT NULL DEFAULT '';
    ALTER TABLE reservations ADD COLUMN host TEXT NOT NULL DEFAULT '';
    ALTER TABLE prs ADD COLUMN host TEXT NOT NULL DEFAULT '';
    CREATE TABLE runners (
        host TEXT NOT NULL,
        run_id TEXT NOT NULL,
        pid INTEGER NOT NULL,
        started_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        PRIMARY KEY (host, run_id)
    );
    CREATE TABLE claims (
        project_path TEXT NOT NULL,
        day TEXT NOT NULL,
        host TEXT NOT NULL,
        run_id TEXT NOT NULL,
        pid INTEGER NOT NULL,
        claimed_at TEXT NOT NULL,
        PRIMARY KEY (project_path, day)
    );
    """,
]
