"""Stage verify and clean-up (restore into a server).

Consumes: a restore whose databases were replayed (message on ``restore-verify``).
Does: per restored database, checks that every table, index, constraint, sequence, view and function of the replay
plan exists in the target; counts the rows of every restored table and compares them with the archive's own counts
where the replay could read them within its budget; runs the request's checks (SQL with an expected first value) in
a read-only transaction with a statement timeout. Then, when all passed, deletes the restore's staged files and its
plan (kept on failure, their location in the status).
Writes: ``verify_result`` (per database: objects missing, row counts, count mismatches, check results).
Next: ``succeeded`` (the completion event says what was created where and who owns it), or ``failed``.
"""

from __future__ import annotations

from typing import Any

from .. import pgtarget, telemetry
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


def _run_check(conn: TargetConn, check: UserCheck, restored: set[str]) -> dict[str, Any]:
    import psycopg

    if check.database not in restored:
        return {"name": check.name, "ok": False, "error": f"database {check.database} is not one this restore "
                f"created ({', '.join(sorted(restored))}); checks run only there"}
    try:
        with pgtarget.connect(conn, check.database, autocommit=False) as c:
            c.execute("SET TRANSACTION READ ONLY")
            c.execute(f"SET LOCAL statement_timeout = {CHECK_TIMEOUT_MS}")
            got = _first_value(c, check.sql)
            c.rollback()
    except (psycopg.Error, _CheckError) as exc:
        return {"name": check.name, "ok": False, "error": str(exc).strip().splitlines()[0][:300]}
    return {"name": check.name, "ok": got == check.expect, "got": got, "expect": check.expect}


ROW_COUNTS_ON_ROW = 100  # per-table counts kept in the status for up to this many tables (else totals only)


def _verify_database(conn: TargetConn, entry: dict[str, Any]) -> dict[str, Any]:
    with pgtarget.connect(conn, entry["target"]) as c:
        missing = _missing_objects(c, entry)
        counts = _row_counts(c, entry)
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
    checks = [_run_check(conn, ck, restored) for ck in t.checks]
    problems = _problems(results, checks)
    summary = {"databases": results, "checks": checks, "passed": not problems}
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
