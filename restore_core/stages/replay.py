"""Stage replay (restore into a server). Runs in the replay container job (``python -m restore_core.replay``), not
in a Function: it may take hours and needs PostgreSQL's client tools.

Consumes: a restore whose replay plan is stored (message on ``restore-replay``).
Does, holding a fenced lease on the restore (:mod:`restore_core.lease`; claimed, then renewed by heartbeats):
1. roles (``roles: clean``): the point's ``roles.sql`` cleaned as Microsoft's recipe says
   (:mod:`restore_core.pgroles`: no Azure platform roles, no superuser/replication/BYPASSRLS, no passwords), created
   only where missing, in one transaction;
2. per database: ``CREATE DATABASE`` and a mark (``COMMENT ON DATABASE``: created by this restore); a database of the
   same name that carries THIS restore's mark is an earlier, interrupted attempt and is dropped and recreated; one
   without the mark is never touched (the restore fails);
3. ``pg_restore --no-owner`` (``--role`` = the owner; ``--no-acl`` when roles are skipped, since the grantees do not
   exist), or ``psql`` for a plain dump, fed one of two ways:
   - **download**: the file fits in ``RESTORE_REPLAY_DISK_BUDGET_MB`` and the free disk of the work directory (size
     + 5 % + 64 MiB): downloaded, then restored from disk (``-j RESTORE_REPLAY_JOBS`` when the archive has data
     offsets; an archive written to a pipe has none and is restored single-threaded);
   - **stream**: otherwise the blob is streamed into the tool's stdin, a bounded chunk at a time, single-threaded
     (no seeking). A stream that breaks (blob read error, short blob) kills the tool and raises
     :class:`RetryableError` (the message comes back; the marked database is recreated), never a success;
   the output (kept to its first and last 1 MiB, :class:`_CappedOutput`) is classified (:mod:`restore_core.pgerrors`):
   benign errors become warnings, an extension that is not allow-listed fails with the ``azure.extensions`` fix,
   anything else fails with PostgreSQL's message; a tool killed by a signal fails;
4. the archive's own row counts, within ``RESTORE_VERIFY_COUNT_BUDGET_MB`` (for verify): read from the downloaded
   file while pg_restore runs, or teed from the stream as it passes (:func:`restore_core.archive.count_rows_stream`).
Memory stays bounded whatever the archive size (no step holds the archive or pg_restore's whole output).
Writes: ``replay_result`` (databases created, owner, roles created, warnings, archive row counts).
Next: verify; or ``failed`` (staged files kept; a partly loaded database keeps its mark and is named in the fix).
"""

from __future__ import annotations

import collections
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .. import archive, lease, locks, pgerrors, pgroles, pgtarget, telemetry
from ..deps import Deps
from ..errors import AzureRejection, RetryableError, require
from ..models import RolesMode, ServerTarget
from ..pgtarget import TargetConn, mark_of, pending_name, quote_ident, quote_literal
from ..records import RestoreRecord, iso
from ..staging import StagingArea, plan_blob
from ..transitions import Outcome, StageResult
from . import Claim
from .common import request_of

log = telemetry.get_logger("replay")


class _Fail(Exception):
    def __init__(self, code: str, message: str, fix: str) -> None:
        super().__init__(message)
        self.code, self.message, self.fix = code, message, fix


@dataclass
class _Context:
    rec: RestoreRecord
    deps: Deps
    target: ServerTarget
    conn: TargetConn
    area: StagingArea
    workdir: Path
    lost: threading.Event
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)

    def check_lease(self) -> None:
        if self.lost.is_set():
            raise lease.LeaseLost(self.rec.id)

    def kill(self) -> None:
        self.lost.set()
        for p in self.procs:
            if p.poll() is None:
                p.kill()


def _bindir(deps: Deps) -> Path | None:
    b = deps.settings.server.pg_bindir
    return Path(b) if b else None


def _tool(deps: Deps, name: str) -> str:
    b = _bindir(deps)
    found = str(b / name) if b else shutil.which(name)
    if not found or not Path(found).exists():
        raise _Fail("ReplayClientMissing", f"{name} not found (RESTORE_PG_BINDIR={b})",
                    "the replay image must carry the PostgreSQL client (postgresql-client-18); set RESTORE_PG_BINDIR")
    return found


@dataclass
class _ToolRun:
    code: int
    stderr: str
    dropped_failures: int = 0  # failure lines of the output that were not kept (plain dumps)
    warnings: int = 0  # set by the diagnosis


def _run_tool(ctx: _Context, args: list[str], env: dict[str, str],
              feed: Callable[[subprocess.Popen[bytes]], None] | None = None,
              failure_line: Callable[[str], bool] | None = None) -> _ToolRun:
    """Run a client tool; ``feed`` (streaming) writes its stdin. The output is kept capped (first and last 1 MiB)."""
    ctx.check_lease()
    proc = subprocess.Popen(args, env={**os.environ, **env}, stdin=subprocess.PIPE if feed else subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ctx.procs.append(proc)
    assert proc.stderr is not None
    output = _CappedOutput(proc.stderr, failure_line)
    try:
        if feed is not None:
            feed(proc)
    finally:
        code = proc.wait()
        # a killed tool's own children may hold its stderr open a little longer: do not wait for them forever
        text = output.text(timeout=5.0 if ctx.lost.is_set() else None)
    ctx.check_lease()
    return _ToolRun(code, text, output.dropped_failures)


class _CappedOutput:
    """A tool's stderr read in a thread, keeping its first and last ``cap`` bytes of lines (memory stays bounded
    when a tool reports millions of errors); the lines dropped between are counted, and those ``failure_line``
    calls failures too (pg_restore's own count of ignored errors covers its dropped lines)."""

    def __init__(self, stream: IO[bytes], failure_line: Callable[[str], bool] | None = None,
                 cap: int = 1 << 20) -> None:
        self._stream, self._failure, self._cap = stream, failure_line, cap
        self._head: list[str] = []
        self._tail: collections.deque[str] = collections.deque()
        self._head_bytes = self._tail_bytes = 0
        self.dropped_lines = self.dropped_failures = 0
        self._thread = threading.Thread(target=self._run, name="tool-output", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for raw in self._stream:
            self._add(raw.decode("utf-8", "replace"))
        self._stream.close()

    def _add(self, line: str) -> None:
        if self._head_bytes + len(line) <= self._cap and not self._tail:
            self._head.append(line)
            self._head_bytes += len(line)
            return
        self._tail.append(line)
        self._tail_bytes += len(line)
        while self._tail_bytes > self._cap and len(self._tail) > 1:
            gone = self._tail.popleft()
            self._tail_bytes -= len(gone)
            self.dropped_lines += 1
            if self._failure is not None and self._failure(gone):
                self.dropped_failures += 1

    def text(self, timeout: float | None = None) -> str:
        self._thread.join(timeout)
        gap = [f"[{self.dropped_lines} lines of output not kept]\n"] if self.dropped_lines else []
        return "".join([*self._head, *gap, *self._tail])


# ---------------------------------------------------------------- roles

def _replay_roles(ctx: _Context, plan: dict[str, Any]) -> dict[str, Any]:
    if ctx.target.roles != RolesMode.CLEAN:
        return {"mode": "skip"}
    name = plan.get("roles_file")
    if not name:
        ctx.warnings.append({"code": "RolesFileMissing", "message": "roles: clean was asked for, but the staged "
                             "files hold no roles file; no role was created"})
        return {"mode": "clean", "created": []}
    path = ctx.workdir / "roles.sql"
    ctx.area.download_to(name, path)
    with pgtarget.connect(ctx.conn) as c:
        existing = [r[0] for r in c.execute("SELECT rolname FROM pg_roles").fetchall()]
        cleaned = pgroles.clean_roles(path.read_text("utf-8", "replace"), exclude=[ctx.conn.user])
        statements = cleaned.statements_for(existing)
        with c.transaction():
            for sql in statements:
                c.execute(sql)
    created = [r for r in cleaned.role_names if r not in existing]
    for note in cleaned.notes:
        ctx.warnings.append({"code": "RolesWithoutPassword", "message": note})
    return {"mode": "clean", "created": created, **{k: v for k, v in cleaned.summary().items() if k != "roles"}}


# ---------------------------------------------------------------- databases

_COMMENT_SQL = "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s"


def _prepare_database(ctx: _Context, name: str) -> str:
    """Create ``name`` with this restore's mark; an earlier attempt's marked database is dropped first; anyone
    else's database is never touched. The database is created under the restore's pending name, marked, then
    renamed, so no kill leaves an unmarked database behind. Returns what was done."""
    mark = mark_of(ctx.rec.id)
    done = "created"
    with pgtarget.connect(ctx.conn) as c:
        row = c.execute(_COMMENT_SQL, (name,)).fetchone()
        if row is not None:
            if row[0] != mark:
                raise _Fail("TargetDatabaseExists", f"database {name} appeared on the target after validation and "
                            "was not created by this restore; it was not touched",
                            "submit again with other target names")
            ctx.check_lease()
            c.execute(f"DROP DATABASE {quote_ident(name)} WITH (FORCE)")
            done = "recreated (an interrupted earlier attempt of this restore had created it)"
        pending = pending_name(ctx.rec.id, name)
        row = c.execute(_COMMENT_SQL, (pending,)).fetchone()
        if row is not None and row[0] not in (None, mark):
            raise _Fail("TargetDatabaseExists", f"database {pending} (the name this restore creates {name} under) "
                        "exists with another comment; it was not touched", "submit again as a new restore")
        ctx.check_lease()
        if row is not None:  # an earlier attempt was killed between CREATE and RENAME: its name says it is ours
            c.execute(f"DROP DATABASE {quote_ident(pending)} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {quote_ident(pending)}")
        c.execute(f"COMMENT ON DATABASE {quote_ident(pending)} IS {quote_literal(mark)}")
        c.execute(f"ALTER DATABASE {quote_ident(pending)} RENAME TO {quote_ident(name)}")
    return done


def _owner(ctx: _Context) -> str:
    return ctx.target.owner or ctx.conn.user


def _grant_owner(ctx: _Context, db: str) -> None:
    """Let the connecting role act as the owner (needed by --role and ALTER DATABASE … OWNER)."""
    owner = _owner(ctx)
    if owner == ctx.conn.user:
        return
    with pgtarget.connect(ctx.conn) as c:
        if c.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (owner,)).fetchone() is None:
            raise _Fail("TargetOwnerMissing", f"owner role {owner} does not exist on the target (it was not in the "
                        "point's roles either)", f"create it (CREATE ROLE {quote_ident(owner)};) and submit again")
        if not c.execute("SELECT pg_has_role(current_user, %s, 'MEMBER')", (owner,)).fetchone()[0]:
            c.execute(f"GRANT {quote_ident(owner)} TO {quote_ident(ctx.conn.user)}")
        c.execute(f"ALTER DATABASE {quote_ident(db)} OWNER TO {quote_ident(owner)}")


def _restore_args(ctx: _Context, entry: dict[str, Any], path: Path | None, db: str) -> list[str]:
    """The tool's arguments; ``path`` None: the archive comes on stdin (single-threaded, no seeking)."""
    owner = _owner(ctx)
    source = str(path) if path is not None else "-"
    if entry["format"] == "plain":
        return [_tool(ctx.deps, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=0", "-d", db, "-f", source]
    args = [_tool(ctx.deps, "pg_restore"), "--no-owner", "-d", db]
    if ctx.target.roles == RolesMode.SKIP:
        args.append("--no-acl")
    if owner != ctx.conn.user:
        args.append(f"--role={owner}")
    jobs = ctx.deps.settings.server.replay_jobs
    if jobs > 1 and entry.get("data_offsets") and path is not None:
        args.append(f"--jobs={jobs}")
    return args if path is None else [*args, source]


_MIB = 1024 * 1024


def _disk_needed(entry: dict[str, Any]) -> int:
    return int(entry["size"] * 1.05) + 64 * _MIB


def _load_mode(ctx: _Context, entry: dict[str, Any]) -> str:
    """``download`` when the file fits in RESTORE_REPLAY_DISK_BUDGET_MB and the work directory's free disk,
    else ``stream`` (into the tool's stdin: no temporary disk at all)."""
    budget = int(ctx.deps.settings.server.replay_disk_budget_mb * _MIB)
    free = shutil.disk_usage(ctx.workdir).free
    return "download" if _disk_needed(entry) <= min(budget, free) else "stream"


def _replay_database(ctx: _Context, entry: dict[str, Any]) -> dict[str, Any]:
    db = entry["target"]
    mode = _load_mode(ctx, entry)
    path: Path | None = None
    if mode == "download":
        path = ctx.workdir / f"{entry['source']}.{'dump' if entry['format'] == 'custom' else 'sql'}"
        ctx.area.download_to(entry["file"], path)
    done = _prepare_database(ctx, db)
    _grant_owner(ctx, db)
    env = ctx.conn.env(db)
    if entry["format"] == "plain" and _owner(ctx) != ctx.conn.user:
        env["PGOPTIONS"] = f"-c role={_owner(ctx)}"
    args = _restore_args(ctx, entry, path, db)
    failure_line = _plain_failure_line if entry["format"] == "plain" else None
    if path is not None:
        # the archive's own row counts (for verify) are read while pg_restore runs: a separate thread, so the two
        # overlap instead of adding up (bench/replay.py measured the counts at ~20% of the restore when run after it)
        counting = _Background(lambda: _archive_counts(ctx, entry, path))
        run = _run_tool(ctx, args, env, failure_line=failure_line)
        counts = counting.result()
    else:
        stream = _Stream(ctx, entry)
        run = _run_tool(ctx, args, env, feed=stream.feed, failure_line=failure_line)
        stream.check(run.code)
        counts = stream.counts()
    _check_run(ctx, entry, db, args, run)
    if path is not None:
        path.unlink(missing_ok=True)
    entry["archive_counts"] = counts  # kept in the plan blob for verify (per table: too large for the row)
    return {"source": entry["source"], "database": db, "owner": _owner(ctx), "done": done, "load": mode,
            "warnings": run.warnings, "tables_counted": len(counts["rows"]),
            "archive_counts_complete": counts["complete"]}


_WARNINGS_PER_CODE = 20  # more of one code become one summary warning (the record's warnings stay small)


def _check_run(ctx: _Context, entry: dict[str, Any], db: str, args: list[str], run: _ToolRun) -> None:
    diagnosis = _diagnose(ctx, entry, run.stderr, run.dropped_failures)
    per_code = collections.Counter(w.code for w in diagnosis.warnings)
    seen: collections.Counter[str] = collections.Counter()
    for w in diagnosis.warnings:
        seen[w.code] += 1
        if seen[w.code] <= _WARNINGS_PER_CODE:
            ctx.warnings.append({"code": w.code, "database": db, "message": w.message})
        elif seen[w.code] == _WARNINGS_PER_CODE + 1:
            extra = per_code[w.code] - _WARNINGS_PER_CODE
            ctx.warnings.append({"code": w.code, "database": db,
                                 "message": f"and {extra} more warnings of this kind (see the replay log)"})
    run.warnings = len(diagnosis.warnings)
    if diagnosis.failures:
        first = diagnosis.failures[0]
        more = f" (and {len(diagnosis.failures) - 1} more errors)" if len(diagnosis.failures) > 1 else ""
        raise _Fail(first.code, f"loading {entry['source']} into {db} failed: {first.message}{more}"
                    + (f"; command: {first.command}" if first.command else ""),
                    f"{first.fix}. The partly loaded database {db} carries this restore's mark and is kept for "
                    "inspection; the staged files are kept too, so a new restore under another name can start "
                    "at once")
    if run.code < 0 or (run.code != 0 and not diagnosis.warnings):
        how = f"was killed by signal {-run.code}" if run.code < 0 else f"exited {run.code}"
        raise _Fail("ReplayToolFailed", f"{Path(args[0]).name} {how}: {run.stderr.strip()[-500:]}",
                    "see the message; the staged files are kept")


class _Background:
    """Runs ``fn`` in a thread; :meth:`result` waits for it and re-raises what it raised."""

    def __init__(self, fn: Any) -> None:
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), name="archive-counts", daemon=True)
        self._thread.start()

    def _run(self, fn: Any) -> None:
        try:
            self._value = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller by result()
            self._error = exc

    def result(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


_PSQL_ERROR = re.compile(r"^psql:[^\n]*?:\d+: ERROR:\s+(?P<msg>[^\n]*)$", re.M)
_ROLE_MISSING = re.compile(r'role ".*" does not exist')


def _plain_failure_line(line: str) -> bool:
    m = _PSQL_ERROR.match(line.rstrip("\n"))
    return bool(m) and not _ROLE_MISSING.match(m.group("msg").strip()) if m else False


def _diagnose(ctx: _Context, entry: dict[str, Any], stderr: str, dropped_failures: int = 0
              ) -> pgerrors.ReplayDiagnosis:
    """pg_restore's output through the documented rules; psql's (plain dumps): ownership and grants to roles the
    target lacks are warnings (a plain dump cannot be restored --no-owner), anything else fails."""
    m = re.search(r"(?i)^/subscriptions/([^/]+)/resourceGroups/([^/]+)/", ctx.target.server_id)
    target = pgerrors.Target(m.group(2) if m else "<resource group>", ctx.target.server_name,
                             m.group(1) if m else None)
    if entry["format"] != "plain":
        return pgerrors.classify_output(stderr, target=target)
    diag = pgerrors.ReplayDiagnosis()
    for found in _PSQL_ERROR.finditer(stderr):
        msg = found.group("msg").strip()
        if _ROLE_MISSING.match(msg):
            diag.warnings.append(pgerrors.Issue("plain-dump-ownership", msg, "", "objects are owned by the owner "
                                                "role instead; grants to roles the target lacks were skipped"))
        else:
            diag.failures.append(pgerrors.Issue("plain-sql-error", msg, "", "fix the cause on the target (or the "
                                                "dump) and submit again"))
    if dropped_failures:
        diag.failures.append(pgerrors.Issue("plain-sql-error", f"psql reported {dropped_failures} more errors "
                                            "than its kept output shows", "", "fix the errors shown and submit "
                                            "again; the replay log of the job has psql's output"))
    return diag


class _Stream:
    """The staged file streamed into the tool's stdin (:meth:`feed`), its bytes teed to the archive row counter
    (a thread reading through a bounded queue, :func:`archive.count_rows_stream`). :meth:`check` turns a broken
    stream into a :class:`RetryableError`; :meth:`counts` gives the counts like :func:`_archive_counts`."""

    QUEUE_CHUNKS = 4  # chunks waiting for the counter at most (the SDK's chunks: 4 MiB, the first up to 32 MiB)

    def __init__(self, ctx: _Context, entry: dict[str, Any]) -> None:
        self.ctx, self.entry = ctx, entry
        self.sent = 0
        self.error: BaseException | None = None
        self.tool_closed = False
        self._queue: queue.Queue[bytes | None] = queue.Queue(self.QUEUE_CHUNKS)
        self._counter: _Background | None = None

    def _count(self, budget: int) -> archive.RowCounts:
        def chunks() -> Iterator[bytes]:
            while (chunk := self._queue.get()) is not None:
                yield chunk
            self._ended = True

        self._ended = False
        try:
            return archive.count_rows_stream(chunks(), None, budget)
        finally:
            while not self._ended and self._queue.get() is not None:  # done early: let the feeder go on
                pass

    def feed(self, proc: subprocess.Popen[bytes]) -> None:
        stdin = proc.stdin
        assert stdin is not None
        _widen_pipe(stdin)
        if self.entry["format"] == "custom":  # started here: a tool that never starts leaves no thread waiting
            budget = int(self.ctx.deps.settings.server.verify_count_budget_mb * _MIB)
            self._counter = _Background(lambda: self._count(budget))
        try:
            for chunk in self.ctx.area.chunks(self.entry["file"]):
                if self.ctx.lost.is_set():
                    break
                stdin.write(chunk)
                self.sent += len(chunk)
                if self._counter is not None:
                    self._queue.put(chunk)
        except (BrokenPipeError, ConnectionResetError):
            self.tool_closed = True  # the tool stopped reading: its exit code tells why
        except Exception as exc:  # noqa: BLE001 - the blob read broke: the tool must not see a clean end of input
            self.error = exc
            proc.kill()
        finally:
            if self._counter is not None:
                self._queue.put(None)
            try:
                stdin.close()
            except OSError:
                self.tool_closed = True

    def check(self, code: int) -> None:
        """A stream that broke is retried (never reported as a success)."""
        self.ctx.check_lease()
        size = int(self.entry["size"])
        why = ""
        if self.error is not None:
            first = str(self.error).strip().splitlines()[0] if str(self.error).strip() else ""
            why = f"{type(self.error).__name__}: {first}"
        elif not self.tool_closed and self.sent != size:
            why = f"the blob gave {self.sent} bytes, the plan says {size}"
        elif self.tool_closed and code == 0 and self.entry["format"] == "plain":
            why = "psql stopped reading its input before the end"
        if why:
            raise RetryableError(f"streaming {self.entry['file']} into {self.entry['target']} broke after "
                                 f"{self.sent} of {size} bytes ({why}); the replay is retried (the partly loaded "
                                 "database carries this restore's mark and is recreated)")

    def counts(self) -> dict[str, Any]:
        if self.entry["format"] == "plain":
            return _plain_counts(self.entry)
        if self._counter is None:
            return {"complete": False, "bytes_read": 0, "rows": {}, "skipped": {"*": "the archive was not read"}}
        try:
            counts: archive.RowCounts = self._counter.result()
        except archive.ArchiveError as exc:
            return {"complete": False, "bytes_read": 0, "rows": {}, "skipped": {"*": str(exc)}}
        if self.tool_closed and self.sent < int(self.entry["size"]):
            counts.complete = False  # the tool finished early: the tables past that point were not counted
        return _counts_dict(counts)


def _widen_pipe(stdin: IO[bytes]) -> None:
    """A 1 MiB pipe (Linux) so the tool keeps reading while the next chunk is fetched."""
    try:
        import fcntl

        fcntl.fcntl(stdin.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), _MIB)
    except (ImportError, OSError):
        pass


def _archive_counts(ctx: _Context, entry: dict[str, Any], path: Path) -> dict[str, Any]:
    if entry["format"] == "plain":
        return _plain_counts(entry)
    budget = int(ctx.deps.settings.server.verify_count_budget_mb * _MIB)
    return _counts_dict(archive.count_rows(path, None, budget))


def _plain_counts(entry: dict[str, Any]) -> dict[str, Any]:
    return {"complete": bool(entry.get("complete_summary")),
            "rows": {f"{r['schema']}.{r['name']}": r["rows"] for r in entry.get("copy_rows", [])}}


def _counts_dict(counts: archive.RowCounts) -> dict[str, Any]:
    return {"complete": counts.complete, "bytes_read": counts.bytes_read,
            "rows": {f"{s}.{t}": n for (s, t), n in counts.rows.items()},
            "skipped": {f"{s}.{t}": why for (s, t), why in counts.skipped.items()}}


# ---------------------------------------------------------------- the stage

def _context(rec: RestoreRecord, deps: Deps, workdir: Path, lost: threading.Event) -> _Context:
    t = request_of(rec).target
    assert isinstance(t, ServerTarget)
    staging = require(rec.staging or None, "validate chose the staging container")
    access = deps.server_access()
    return _Context(rec, deps, t, access.target_conn(t), access.staging(staging["region"]), workdir, lost)


def _sql_errors(ctx: _Context) -> Any:
    """PostgreSQL errors of the replay's own statements: a lost connection is retried (the stage is sent again), a
    refusal (privileges, objects) fails the restore with PostgreSQL's message."""
    import contextlib

    import psycopg

    @contextlib.contextmanager
    def guard() -> Any:
        try:
            yield
        except psycopg.OperationalError as exc:
            raise RetryableError(f"connection to {ctx.conn.host} lost during the replay: "
                                 f"{str(exc).strip().splitlines()[0] if str(exc).strip() else exc}") from None
        except psycopg.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise _Fail("ReplaySqlFailed", f"on {ctx.target.server_name} as {ctx.conn.user}: {first}",
                        "grant what the message names to the connecting role (or ask the server admin), then "
                        "submit again; the staged files are kept") from None

    return guard()


def _work(ctx: _Context) -> dict[str, Any]:
    plan = ctx.area.get_json(plan_blob(ctx.rec.id))
    if plan is None:
        raise _Fail("ReplayPlanMissing", "the replay plan written by inventory is gone from the staging container",
                    "submit the restore again")
    with _sql_errors(ctx):
        roles = _replay_roles(ctx, plan)
        databases = [_replay_database(ctx, entry) for entry in plan["databases"]]
    ctx.area.put_json(plan_blob(ctx.rec.id), plan)
    return {"roles": roles, "databases": databases, "owner": _owner(ctx), "connected_as": ctx.conn.user,
            "finished_at": iso(ctx.deps.clock())}


def slot_keys(server_id: str, limit: int) -> list[str]:
    """The replay slots of a target server (``RESTORE_REPLAY_MAX_PER_SERVER`` of them; lock rows, meta ``lock``)."""
    return [f"replayslot:{server_id.lower()}:{i}" for i in range(limit)]


def take_slot(deps: Deps, rec: RestoreRecord, server_id: str) -> str | None:
    """One free replay slot of the target server for ``rec`` (the one it holds already, after a re-drive), or None
    when every slot is held by another active restore. A slot of a restore that ended is stale and taken over."""
    keys = slot_keys(server_id, deps.settings.server.replay_max_per_server)
    for key in keys:
        if locks.take(deps, rec.id, [key]) is None:
            return key
    return None


def release_slot(deps: Deps, rec: RestoreRecord, key: str) -> None:
    locks.release_keys(deps, rec.id, [key])


def _no_slot(deps: Deps, rec: RestoreRecord, server: str) -> StageResult:
    limit = deps.settings.server.replay_max_per_server
    delay = max(deps.settings.poll_min_seconds, 30.0 if deps.settings.poll_min_seconds >= 30 else
                deps.settings.poll_min_seconds * 2)
    first = rec.replay_result.get("waiting_for_slot") is None
    return StageResult(Outcome.NOT_READY, f"waiting for a replay slot on {server} ({limit} replays run there at most, "
                       "RESTORE_REPLAY_MAX_PER_SERVER)", delay=delay, log_event=first,
                       changes={"replay_result": {**rec.replay_result, "waiting_for_slot": iso(deps.clock())}})


def run(rec: RestoreRecord, deps: Deps, claim: Claim) -> StageResult:
    target = request_of(rec).target
    assert isinstance(target, ServerTarget)
    slot = take_slot(deps, rec, target.server_id)
    if slot is None:
        return _no_slot(deps, rec, target.server_name)
    try:
        result = _run_in_slot(rec, deps, claim)
    except (lease.LeaseHeld, lease.LeaseLost):
        raise  # the runner holding this restore's lease holds its slot too: leave both to it
    except BaseException:
        release_slot(deps, rec, slot)
        raise
    release_slot(deps, rec, slot)
    return result


def _run_in_slot(rec: RestoreRecord, deps: Deps, claim: Claim) -> StageResult:
    held = lease.acquire(deps, rec, deps.settings.server.replay_lease_seconds)
    rec = claim({"replay_result": {"runner": held.owner, "started_at": iso(deps.clock()),
                                   "attempts": int(rec.replay_result.get("attempts", 0)) + 1}})
    base = deps.settings.server.replay_workdir
    if base:
        Path(base).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"replay-{rec.id}-", dir=base or None) as tmp:
        try:
            ctx = _context(rec, deps, Path(tmp), held.lost)
            with lease.Heartbeat(deps, held, rec, on_lost=ctx.kill):
                result = _work(ctx)
        except _Fail as f:
            lease.release(deps, held)
            return StageResult(Outcome.FAILED, f"{f.code}: {f.message}", error_code=f.code, error_message=f.message,
                               error_fix=f.fix, changes={"staging": {**rec.staging, "kept": True}})
        except RetryableError:
            lease.release(deps, held)  # the message comes back; the next attempt need not wait for the lease
            raise
        except AzureRejection as exc:
            lease.release(deps, held)
            return StageResult(Outcome.FAILED, f"{exc.code}: {exc.message}", error_code=exc.code,
                               error_message=exc.message, error_fix=exc.fix or "see the message",
                               changes={"staging": {**rec.staging, "kept": True}})
    lease.release(deps, held)
    names = ", ".join(f"{d['database']} ({d['done']})" for d in result["databases"])
    warnings = [*rec.warnings, *ctx.warnings]
    return StageResult(Outcome.REPLAYED, f"replayed into {ctx.target.server_name}: {names}; owner {result['owner']}"
                       + (f"; {len(ctx.warnings)} warning(s)" if ctx.warnings else ""),
                       changes={"replay_result": {**rec.replay_result, **result}, "warnings": warnings})
