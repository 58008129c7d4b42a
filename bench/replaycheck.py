"""Replays under chaos and at fleet scale (issue 17 items 3 and 5): the local job runner as a process the bench can
kill, a killer of replay executions mid-``pg_restore``, and the checks of what the replays did on the target server.

Overlapping replays of one restore are found from the target server's own session log, which cannot miss one: the
replay's sessions carry ``pg-restore-replay <restore id> <runner>`` as application_name
(:func:`restore_core.stages.replay.application_name`; ``pg_restore`` and ``psql`` get it as ``PGAPPNAME``), and the
server logs every session's end with its length (``log_disconnections``, with the application name and the backend pid
in the line prefix) whatever ended it: the client's exit, a dropped socket, ``pg_terminate_backend``. Every session of
every runner is therefore an interval [end − session time, end]; sessions still open at the end are read from
``pg_stat_activity``. Two runners of one restore replay at the same time exactly when an interval of one overlaps an
interval of the other. A runner the bench SIGKILLed (with its ``pg_restore``) is over when it was killed: a backend
that has not yet noticed its client is gone finishes its statement alone (or is terminated by the next attempt's
``DROP DATABASE … WITH (FORCE)``); both counts are reported (``overlaps`` after that clip, ``raw_overlaps`` without).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from localdev.stack import REPO, pid_alive, stop_pid
from restore_core.pgtarget import MARK_PREFIX
from restore_core.stages.replay import REPLAY_APPLICATION

RUNNER_MARKER = "localdev.jobrunner"
#: the server settings that make every session's end visible (ALTER SYSTEM on the target cluster, then a reload)
SESSION_LOG = {"log_disconnections": "on", "log_line_prefix": "%m [%p] %a ", "log_timezone": "UTC"}
_DISCONNECT = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) \S+ \[(?P<pid>\d+)\] " + re.escape(REPLAY_APPLICATION) +
    r" (?P<rid>\S+) (?P<runner>\S+) LOG:\s+disconnection: session time: (?P<h>\d+):(?P<m>\d+):(?P<s>[\d.]+) "
    r"user=(?P<user>\S+) database=(?P<db>\S+)")


@dataclass(frozen=True)
class Session:
    restore_id: str
    runner: str
    database: str
    start: float  # epoch seconds
    end: float
    backend_pid: int
    open: bool = False


def enable_session_log(superuser_dsn: str) -> None:
    """Log the end of every session with its application name and backend pid (new sessions, after the reload)."""
    with psycopg.connect(superuser_dsn, autocommit=True, connect_timeout=10) as c:
        for name, value in SESSION_LOG.items():
            c.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
        c.execute("SELECT pg_reload_conf()")


def sessions_from_log(lines: Iterable[str]) -> list[Session]:
    found = []
    for line in lines:
        m = _DISCONNECT.match(line)
        if not m:
            continue
        end = datetime.strptime(m["ts"], "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC).timestamp()
        length = int(m["h"]) * 3600 + int(m["m"]) * 60 + float(m["s"])
        found.append(Session(m["rid"], m["runner"], m["db"], end - length, end, int(m["pid"])))
    return found


def open_sessions(superuser_dsn: str) -> list[Session]:
    """Replay sessions still connected (their end is now)."""
    with psycopg.connect(superuser_dsn, autocommit=True, connect_timeout=10) as c:
        rows = c.execute("SELECT application_name, datname, backend_start, pid, now() FROM pg_stat_activity "
                         "WHERE application_name LIKE %s", (REPLAY_APPLICATION + " %",)).fetchall()
    out = []
    for app, db, started, pid, now in rows:
        parts = str(app).split(" ")
        if len(parts) == 3:
            out.append(Session(parts[1], parts[2], str(db), started.timestamp(), now.timestamp(), int(pid), True))
    return out


def overlaps(sessions: Iterable[Session], killed_at: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
    """Pairs of runners of one restore whose sessions overlap in time. ``killed_at`` (runner → epoch): a runner the
    bench killed is over from that moment (see the module docstring); ``{}`` gives the raw overlaps."""
    killed_at = killed_at or {}
    by_restore: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    for s in sessions:
        end = min(s.end, killed_at.get(s.runner, s.end))
        if end > s.start:
            by_restore[s.restore_id][s.runner].append((s.start, end))
    found = []
    for rid, runners in sorted(by_restore.items()):
        names = sorted(runners)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                worst = max((min(ea, eb) - max(sa, sb) for sa, ea in runners[a] for sb, eb in runners[b]),
                            default=0.0)
                if worst > 0:
                    found.append({"restore_id": rid, "runners": [a, b], "overlap_seconds": round(worst, 3)})
    return found


def runners_per_restore(sessions: Iterable[Session]) -> dict[str, int]:
    runners: dict[str, set[str]] = defaultdict(set)
    for s in sessions:
        runners[s.restore_id].add(s.runner)
    return {rid: len(r) for rid, r in sorted(runners.items())}


def orphan_databases(databases: Mapping[str, str | None], restores: Mapping[str, Mapping[str, Any]],
                     mine: Any) -> list[dict[str, Any]]:
    """Databases on the target that no terminal restore owns. ``databases``: name → comment (a restore marks what
    it creates with ``MARK_PREFIX + id``); ``restores``: id → status body; ``mine(name)``: a database this run asked
    for (by name). Owned: marked by a restore of the run that is terminal, and either succeeded with the database
    among its replayed ones, or failed/cancelled naming the database it kept (its error). Anything else of the run
    (unmarked, marked by an unknown or active restore, kept silently) is an orphan."""
    orphans = []
    for name, comment in sorted(databases.items()):
        marked = bool(comment) and str(comment).startswith(MARK_PREFIX)
        if not marked and not mine(name):
            continue
        rid = str(comment)[len(MARK_PREFIX):] if marked else None
        body = restores.get(rid or "")
        why = _orphan_reason(name, rid, body)
        if why:
            orphans.append({"database": name, "restore_id": rid, "why": why})
    return orphans


def _orphan_reason(name: str, rid: str | None, body: Mapping[str, Any] | None) -> str | None:
    if rid is None:
        return "no restore's mark"
    if body is None:
        return "marked by a restore this run does not know"
    status = body.get("status")
    if status not in ("succeeded", "failed", "rejected", "cancelled"):
        return f"its restore is {status}, not terminal"
    replayed = {d.get("database") for d in ((body.get("server") or {}).get("replay") or {}).get("databases") or []}
    if status == "succeeded":
        return None if name in replayed else "its restore succeeded without reporting this database"
    error = json.dumps(body.get("error") or {})
    return None if name in error else f"its restore is {status} and does not name this database"


def table_counts(dsn: str) -> dict[str, int]:
    """Rows per user table (schema.table) of one database."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as c:
        tables = c.execute("SELECT schemaname, tablename FROM pg_tables WHERE schemaname NOT IN "
                           "('pg_catalog', 'information_schema') ORDER BY 1, 2").fetchall()
        count = "SELECT count(*) FROM {}.{}"
        return {f"{s}.{t}": int(c.execute(sql.SQL(count).format(sql.Identifier(s), sql.Identifier(t))).fetchone()[0])
                for s, t in tables}


def dsn_for(base: str, db: str) -> str:
    return base.rsplit("/", 1)[0] + "/" + db


# ---------------------------------------------------------------------- processes
def children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                out += [int(c) for c in (task / "children").read_text().split()]
    return out


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for c in children(todo.pop()):
            found.append(c)
            todo.append(c)
    return found


def comm(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/comm").read_text().strip()
    return ""


def environ_value(pid: int, name: str) -> str | None:
    with contextlib.suppress(OSError):
        for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
            if item.startswith(name.encode() + b"="):
                return item.split(b"=", 1)[1].decode("utf-8", "replace")
    return None


class JobRunnerProcess:
    """The local job runner (``python -m localdev.jobrunner``) as a process the bench starts, kills and restarts. A
    SIGKILL kills the runner only: its running executions go on (as replicas outlive a dead KEDA poll)."""

    name = "jobrunner"

    def __init__(self, settings: Path, state: Path, log: Path, log_dir: Path, *, parallelism: int,
                 duplicate_delivery: bool = False, poll: float = 0.25) -> None:
        self.settings, self.state, self.log, self.log_dir = settings, state, log, log_dir
        self.parallelism, self.duplicate_delivery, self.poll = parallelism, duplicate_delivery, poll
        self.proc: subprocess.Popen[bytes] | None = None
        self.up = False
        self.starts = 0
        self.executions: set[int] = set()  # every execution pid seen (they outlive a killed runner)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self, timeout: float = 60) -> int:
        self.state.unlink(missing_ok=True)  # (its ``.seen`` file stays: a restart copies no message twice)
        cmd = [sys.executable, "-m", RUNNER_MARKER, "--settings", str(self.settings), "--parallelism",
               str(self.parallelism), "--poll", str(self.poll), "--state", str(self.state), "--log-dir",
               str(self.log_dir)] + (["--duplicate-delivery"] if self.duplicate_delivery else [])
        env = {**os.environ, "PYTHONPATH": str(REPO) + (os.pathsep + os.environ["PYTHONPATH"]
                                                        if os.environ.get("PYTHONPATH") else "")}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        self.starts += 1
        deadline = time.monotonic() + timeout
        while not self.state.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the job runner did not start (exit {self.proc.poll()}); see {self.log}")
            time.sleep(0.05)
        self.up = True
        return self.proc.pid

    def kill(self) -> None:
        self.up = False
        self.live_executions()  # remember the executions it leaves behind
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        self.up = False
        if pid_alive(self.pid, RUNNER_MARKER):
            stop_pid(self.pid, RUNNER_MARKER, popen=self.proc, timeout=20)

    def live_executions(self) -> list[int]:
        if self.pid is not None and self.up:
            self.executions.update(children(self.pid))
        self.executions = {p for p in self.executions if pid_alive(p, RUNNER_MARKER)}
        return sorted(self.executions)

    def duplicates_sent(self) -> int:
        """Copies sent over all of the runner's lives (its ``.seen`` file: each copy adds the original and the copy)."""
        with contextlib.suppress(OSError):
            return len(self.state.with_suffix(".seen").read_text().split()) // 2
        return 0


class ReplayKiller:
    """SIGKILLs replay executions while their ``pg_restore`` runs: at most ``budget`` kills, one per restore, each
    restore picked with ``probability`` when its first ``pg_restore`` is seen. The execution and everything it
    started (``pg_restore`` and its ``-j`` workers) die together, as a replica's container does."""

    def __init__(self, runner: JobRunnerProcess, rng: Any, *, budget: int, probability: float = 1.0,
                 interval: float = 0.02) -> None:
        self.runner, self.rng, self.budget, self.probability, self.interval = runner, rng, budget, probability, \
            interval
        self.decided: dict[str, bool] = {}
        self.kills: list[dict[str, Any]] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self._last_refresh = 0.0

    def killed_at(self) -> dict[str, float]:
        return {k["runner"]: k["at"] for k in self.kills}

    def run(self) -> None:
        while not self.stop.wait(self.interval) and len(self.kills) < self.budget:
            with contextlib.suppress(Exception):
                self.scan()

    def scan(self) -> None:
        now = time.monotonic()
        if now - self._last_refresh > 0.5:
            self._last_refresh = now
            self.runner.live_executions()
        elif self.runner.pid is not None and self.runner.up:
            self.runner.executions.update(children(self.runner.pid))
        for execution in list(self.runner.executions):
            for child in children(execution):
                if comm(child) == "pg_restore":
                    self.consider(execution, child)

    def consider(self, execution: int, pg_restore: int) -> None:
        app = environ_value(pg_restore, "PGAPPNAME") or ""
        parts = app.split(" ")
        if len(parts) != 3 or parts[0] != REPLAY_APPLICATION:
            return
        rid, runner = parts[1], parts[2]
        if rid not in self.decided:
            self.decided[rid] = self.rng.random() < self.probability
        if not self.decided[rid] or len(self.kills) >= self.budget:
            return
        self.decided[rid] = False  # once per restore
        tree = [execution, *descendants(execution)]
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.kills.append({"restore_id": rid, "runner": runner, "execution_pid": execution, "pids": tree,
                           "at": time.time()})


def iso_seconds(a: str | None, b: str | None) -> float | None:
    """Seconds from ISO time ``a`` to ``b``."""
    if not a or not b:
        return None
    ta = datetime.fromisoformat(a.replace("Z", "+00:00"))
    tb = datetime.fromisoformat(b.replace("Z", "+00:00"))
    return (tb - ta) / timedelta(seconds=1)


def read_lines(paths: Iterable[Path]) -> Iterable[str]:
    for path in paths:
        with contextlib.suppress(OSError):
            yield from path.read_text(errors="replace").splitlines()
