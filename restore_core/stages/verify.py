"""Stage verify and clean-up (restore into a server).

Consumes: a restore whose databases were replayed (message on ``restore-verify``).
Does: per restored database, checks that every table, index, constraint, sequence, view and function of the replay
plan exists in the target; counts the rows of every restored table and compares them with the archive's own counts
where the replay could read them within its budget (in a read-only transaction); runs the request's checks (SQL with
an expected first value) as the read-only role ``RESTORE_CHECK_ROLE`` (restore_core/checkrole.py), in a read-only
transaction with a statement timeout. Then, when all passed, deletes the restore's staged files and its
plan (kept on failure, their location in the status).
Writes: ``verify_result`` (per database: objects missing, row counts, count mismatches, check results).
Next: ``succeeded`` (the completion event says what was created where and who owns it), or ``failed``.
"""

from __future__ import annotations

from typing import Any

from .. import checkrole, pgtarget, telemetry
from ..deps import Deps
from ..errors import require
from ..models import ServerTarget, UserCheck
from ..pgtarget import TargetConn, quote_ident
from ..records import RestoreRecord
from ..staging import owned_by, plan_blob
from ..transitions import Outcome, StageResult
from . import Claim
from .common import request_of

log = telemetry.get_logger("verify")
CHECK_TIMEOUT_MS = 60_000

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


def _missing_objects(c: Any, entry: dict[str, Any]) -> list[str]:
    missing = []
    for kind, sql in _EXISTS.items():
        for obj in entry.get(kind, []):
            if c.execute(sql, (obj["schema"], obj["name"])).fetchone() is None:
                missing.append(f"{kind[:-1]} {obj['schema']}.{obj['name']}")
    return missing


def _row_counts(c: Any, entry: dict[str, Any]) -> dict[str, int]:
    counts = {}
    for t in entry.get("tables", []):
        if c.execute(_EXISTS["tables"], (t["schema"], t["name"])).fetchone() is not None:
            table = f"{quote_ident(t['schema'])}.{quote_ident(t['name'])}"  # quoted identifiers from the catalog
            row = c.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608
            counts[f"{t['schema']}.{t['name']}"] = int(row[0])
    return counts


def _mismatches(counts: dict[str, int], archive: dict[str, Any]) -> list[str]:
    rows = archive.get("rows") or {}
    return [f"{name}: {counts.get(name)} rows in the target, {n} in the archive" for name, n in rows.items()
            if name in counts and counts[name] != n]


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


ROW_COUNTS_ON_ROW = 100  # per-table counts kept in the status for up to this many tables (else totals only)


def _verify_database(conn: TargetConn, entry: dict[str, Any]) -> dict[str, Any]:
    """Objects and row counts, as the connecting role in a read-only transaction (rolled back)."""
    import psycopg

    with pgtarget.connect(conn, entry["target"], autocommit=False) as c:
        c.execute("SET TRANSACTION READ ONLY")
        try:
            missing = _missing_objects(c, entry)
            counts = _row_counts(c, entry)
        except psycopg.errors.ReadOnlySqlTransaction as exc:  # e.g. a row-security policy whose function writes
            c.rollback()
            first = str(exc).strip().splitlines()[0][:300]
            return {"database": entry["target"], "tables": 0, "rows": 0, "objects_checked": 0, "missing": [],
                    "missing_total": 0, "count_mismatches": [f"reading it tried to write (nothing was written): "
                                                             f"{first}"], "mismatches_total": 1}
        c.rollback()
    archive = entry.get("archive_counts") or {}
    mismatches = _mismatches(counts, archive)
    out = {"database": entry["target"], "tables": len(counts), "rows": sum(counts.values()),
           "objects_checked": sum(len(entry.get(k, [])) for k in _EXISTS), "missing": missing[:20],
           "missing_total": len(missing), "count_mismatches": mismatches[:20], "mismatches_total": len(mismatches),
           "compared_with_archive": len(archive.get("rows") or {}),
           "archive_counts_complete": bool(archive.get("complete"))}
    if len(counts) <= ROW_COUNTS_ON_ROW:
        out["row_counts"] = counts
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
    return area.delete([*names, plan_blob(rec.id)])


def run(rec: RestoreRecord, deps: Deps, claim: Claim) -> StageResult:
    t = request_of(rec).target
    assert isinstance(t, ServerTarget)
    staging = require(rec.staging or None, "validate chose the staging container")
    plan = deps.server_access().staging(staging["region"]).get_json(plan_blob(rec.id))
    if plan is None:
        return StageResult(Outcome.FAILED, "ReplayPlanMissing: the replay plan is gone", error_code="ReplayPlanMissing",
                           error_message="the replay plan is gone from the staging container",
                           error_fix="the databases were replayed; check them by hand")
    conn = deps.server_access().target_conn(t)
    results = [_verify_database(conn, e) for e in plan["databases"]]
    restored = {e["target"] for e in plan["databases"]}
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
