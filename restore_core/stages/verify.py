"""Stage verify and clean-up (restore into a server).

Consumes: a restore whose databases were replayed (message on ``restore-verify``).
Does: per restored database, checks that every table, index, constraint, sequence, view and function of the replay
plan exists in the target; counts the rows of every restored table and compares them with the archive's own counts
where the replay could read them within its budget (in a read-only transaction); runs the request's checks (SQL with
an expected first value) as the read-only role ``RESTORE_CHECK_ROLE`` (restore_core/checkrole.py), in a read-only
transaction with a statement timeout. Then, when all passed, deletes the restore's staged files and its
plan (kept on failure, their location in the status). The plan is read one database and one line at a time
(:mod:`restore_core.plans`), so memory stays bounded whatever the number of objects.
Writes: ``verify_result`` (per database: objects missing, row counts, count mismatches, check results).
Next: ``succeeded`` (the completion event says what was created where and who owns it), or ``failed``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .. import checkrole, pgtarget, plans, telemetry
from ..deps import Deps
from ..errors import require
from ..models import ServerTarget, UserCheck
from ..pgtarget import TargetConn, quote_ident
from ..records import RestoreRecord
from ..staging import owned_by
from ..transitions import Outcome, StageResult
from . import Claim
from .common import request_of

log = telemetry.get_logger("verify")
CHECK_TIMEOUT_MS = 60_000
ROW_COUNTS_ON_ROW = 100  # per-table counts kept in the status for up to this many tables (else totals only)
_SINGULAR = {"indexes": "index"}
SHOWN = 20  # missing objects and count mismatches named in the status per database (the totals count them all)

_EXISTS = {
    "tables": "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND "
              "c.relname = %s AND c.relkind IN ('r', 'p', 'f')",
    "indexes": "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND "
               "c.relname = %s AND c.relkind IN ('i', 'I')",
    "sequences": "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND "
                 "c.relname = %s AND c.relkind = 'S'",
    "views": "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND "
             "c.relname = %s AND c.relkind IN ('v', 'm')",
    "constraints": "SELECT 1 FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace WHERE n.nspname = %s "
                   "AND k.conname = %s",
    "functions": "SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = %s AND "
                 "p.proname = %s",
}


@dataclass
class _Tally:
    """What verify keeps of one database while it walks the plan's lists: totals, and the first few of each list
    (memory stays bounded whatever the number of objects)."""

    archive: plans.ArchiveRows
    objects_checked: int = 0
    missing: list[str] = field(default_factory=list)
    missing_total: int = 0
    tables: int = 0
    rows: int = 0
    row_counts: dict[str, int] = field(default_factory=dict)
    mismatches: list[str] = field(default_factory=list)
    mismatches_total: int = 0

    def gone(self, kind: str, schema: str, name: str) -> None:
        self.missing_total += 1
        if len(self.missing) < SHOWN:
            self.missing.append(f"{_SINGULAR.get(kind, kind[:-1])} {schema}.{name}")

    def counted(self, name: str, n: int) -> None:
        self.tables += 1
        self.rows += n
        if len(self.row_counts) <= ROW_COUNTS_ON_ROW:
            self.row_counts[name] = n
        expected = self.archive.get(name)
        if expected is not None and expected != n:
            self.mismatches_total += 1
            if len(self.mismatches) < SHOWN:
                self.mismatches.append(f"{name}: {n} rows in the target, {expected} in the archive")


def _walk(c: Any, objects: Iterator[list[Any]], tally: _Tally) -> None:
    """Every object of the plan must exist; every table that exists is counted and compared with the archive (the
    plan's tables and the archive's counts both come sorted by ``schema.name``)."""
    for kind, schema, name, *_ in objects:
        sql = _EXISTS.get(kind)
        if sql is None:
            continue
        tally.objects_checked += 1
        if c.execute(sql, (schema, name)).fetchone() is None:
            tally.gone(kind, schema, name)
        elif kind == "tables":
            table = f"{quote_ident(schema)}.{quote_ident(name)}"  # quoted identifiers from the catalog
            row = c.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608
            tally.counted(f"{schema}.{name}", int(row[0]))


def _first_value(c: Any, sql: str) -> str | None:
    """The first column of the first row of ONE statement, sent with the extended query protocol: PostgreSQL refuses
    several statements there ("cannot insert multiple commands into a prepared statement"), so a check cannot
    ``COMMIT`` its read-only transaction and go on writing."""
    from psycopg import pq

    res = c.pgconn.exec_params(sql.encode(), [])
    if res.status == pq.ExecStatus.FATAL_ERROR:
        raise _CheckError((res.error_message or b"").decode("utf-8", "replace").strip().removeprefix("ERROR:  "))
    if res.status != pq.ExecStatus.TUPLES_OK:
        raise _CheckError("the check must be one query that returns rows (a SELECT)")
    if res.ntuples == 0 or res.nfields == 0:
        return None
    value = res.get_value(0, 0)
    return None if value is None else bytes(value).decode("utf-8", "replace")


class _CheckError(Exception):
    pass


def _run_check(conn: TargetConn, check: UserCheck, restored: set[str], reader: str) -> dict[str, Any]:
    """One check, as the reader (``SET LOCAL ROLE``) in a read-only transaction with a statement timeout, rolled
    back. A check that left the reader's role (``set_config('role', 'none', true)``, ``RESET ROLE`` in a function)
    fails and its value is discarded."""
    import psycopg

    if check.database not in restored:
        return {"name": check.name, "ok": False, "error": f"database {check.database} is not one this restore "
                f"created ({', '.join(sorted(restored))}); checks run only there"}
    try:
        with pgtarget.connect(conn, check.database, autocommit=False) as c:
            c.execute("SET TRANSACTION READ ONLY")
            c.execute(f"SET LOCAL statement_timeout = {CHECK_TIMEOUT_MS}")
            c.execute(f"SET LOCAL ROLE {quote_ident(reader)}")
            got = _first_value(c, check.sql)
            ran_as = str(c.execute("SELECT current_user").fetchone()[0])
            c.rollback()
    except (psycopg.Error, _CheckError) as exc:
        return {"name": check.name, "ok": False, "error": str(exc).strip().splitlines()[0][:300], "role": reader}
    if ran_as != reader:
        return {"name": check.name, "ok": False, "role": reader,
                "error": f"the check left the role {reader} (it ended as {ran_as}); checks must not change role, "
                         "its value is discarded"}
    return {"name": check.name, "ok": got == check.expect, "got": got, "expect": check.expect, "role": ran_as}


def _run_checks(conn: TargetConn, checks: list[UserCheck], restored: set[str],
                reader_name: str) -> list[dict[str, Any]]:
    """The request's checks as the read-only reader (restore_core/checkrole.py): the reader is ensured, granted
    reading on the checked databases for the checks' time, and the grants revoked after. When the reader cannot be
    used, every check fails with the reason and the fix."""
    if not checks:
        return []
    import psycopg

    dbs = sorted({ck.database for ck in checks} & restored)
    try:
        reader = checkrole.ensure(conn, reader_name)
        for db in dbs:
            checkrole.grant_reading(conn, db, reader.name)
    except (checkrole.CheckRoleError, psycopg.errors.InsufficientPrivilege) as exc:
        reason = str(exc).strip().splitlines()[0][:600]
        return [{"name": ck.name, "ok": False, "error": f"the checks' role cannot be used: {reason}",
                 "role": reader_name} for ck in checks]
    try:
        return [_run_check(conn, ck, restored, reader.name) for ck in checks]
    finally:
        for db in dbs:
            try:
                checkrole.grant_reading(conn, db, reader.name, grant=False)
            except Exception as exc:  # noqa: BLE001 - the checks' verdict stands; the grants only allow reading
                log.warning("verify: revoking the checks' role's reading on %s failed: %s", db, exc)


def _verify_database(conn: TargetConn, plan: plans.Plan, n: int) -> dict[str, Any]:
    """Objects and row counts, as the connecting role in a read-only transaction (rolled back)."""
    import psycopg

    target = plan.databases[n]["target"]
    tally = _Tally(plan.archive_rows(n))
    with pgtarget.connect(conn, target, autocommit=False) as c:
        c.execute("SET TRANSACTION READ ONLY")
        try:
            _walk(c, plan.objects(n), tally)
        except psycopg.errors.ReadOnlySqlTransaction as exc:  # e.g. a row-security policy whose function writes
            c.rollback()
            first = str(exc).strip().splitlines()[0][:300]
            return {"database": target, "tables": 0, "rows": 0, "objects_checked": 0, "missing": [],
                    "missing_total": 0, "count_mismatches": [f"reading it tried to write (nothing was written): "
                                                             f"{first}"], "mismatches_total": 1}
        c.rollback()
    out = {"database": target, "tables": tally.tables, "rows": tally.rows, "objects_checked": tally.objects_checked,
           "missing": tally.missing, "missing_total": tally.missing_total, "count_mismatches": tally.mismatches,
           "mismatches_total": tally.mismatches_total, "compared_with_archive": tally.archive.finish(),
           "archive_counts_complete": tally.archive.complete}
    if tally.tables <= ROW_COUNTS_ON_ROW:
        out["row_counts"] = tally.row_counts
    return out


def _problems(results: list[dict[str, Any]], checks: list[dict[str, Any]]) -> list[str]:
    out = []
    for r in results:
        out += [f"{r['database']}: {m} is missing" for m in r["missing"]]
        out += [f"{r['database']}: {m}" for m in r["count_mismatches"]]
    for ck in checks:
        if not ck["ok"]:
            out.append(f"check {ck['name']}: " + (f"error {ck['error']}" if "error" in ck else
                                                   f"got {ck['got']!r}, expected {ck['expect']!r}"))
    return out


def _clean_up(rec: RestoreRecord, deps: Deps) -> int:
    area = deps.server_access().staging(rec.staging["region"])
    names = [b.name for b in area.files(rec.id) if owned_by(b.name, rec.id)]
    return area.delete([*names, *plans.plan_blob_names(area, rec.id)])


def run(rec: RestoreRecord, deps: Deps, claim: Claim) -> StageResult:
    t = request_of(rec).target
    assert isinstance(t, ServerTarget)
    staging = require(rec.staging or None, "validate chose the staging container")
    plan = plans.read_plan(deps.server_access().staging(staging["region"]), rec.id)
    conn = deps.server_access().target_conn(t)
    try:
        if plan is None:
            raise plans.PlanMissing(f"_plans/{rec.id}.json")
        results = [_verify_database(conn, plan, n) for n in range(len(plan.databases))]
    except plans.PlanMissing as gone:
        return StageResult(Outcome.FAILED, "ReplayPlanMissing: the replay plan is gone", error_code="ReplayPlanMissing",
                           error_message=f"the replay plan is gone from the staging container ({gone})",
                           error_fix="the databases were replayed; check them by hand")
    restored = {e["target"] for e in plan.databases}
    checks = _run_checks(conn, t.checks, restored, deps.settings.server.check_role)
    problems = _problems(results, checks)
    summary: dict[str, Any] = {"databases": results, "checks": checks, "passed": not problems}
    if checks:
        summary["checks_role"] = deps.settings.server.check_role
    if problems:
        return StageResult(Outcome.FAILED, f"verification failed: {'; '.join(problems[:5])}",
                           error_code="VerificationFailed", error_message="; ".join(problems[:20]),
                           error_fix="inspect the restored databases (they are kept) and the staged files (kept in "
                                     f"{staging['container_url']}/{rec.id}*)",
                           changes={"verify_result": summary, "staging": {**staging, "kept": True}})
    deleted = _clean_up(rec, deps)
    tables = sum(r["tables"] for r in results)
    rows = sum(r["rows"] for r in results)
    dbs = ", ".join(r["database"] for r in results)
    return StageResult(Outcome.SUCCEEDED, f"verified {dbs} on {t.server_name}: {tables} tables, {rows} rows, "
                       f"{sum(r['objects_checked'] for r in results)} objects present, {len(checks)} check(s) "
                       f"passed; {deleted} staged file(s) deleted",
                       changes={"verify_result": summary, "staging": {**staging, "kept": False, "deleted": deleted}})
