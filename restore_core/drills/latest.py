"""``GET /api/drills/runs/latest``: the last run of every drill per backup instance, with its RTO trend — what the
dashboard's drills panel and a status page show. Read-only; pure functions over the run rows (no I/O here).

Each item, one per (drill, backup instance), sorted by drill id then instance:
``{drill_id, backup_instance_id, backup_instance_name, target_server, rto_target_seconds, runs, last, trend}``:
- ``last``: the newest run (whatever its state; ``passed`` is null until its result is known): its state, restore,
  pass/fail, status and error code, RTO observed against the target, RPO observed, check counts, clean-up status and
  evidence blob;
- ``trend``: the RTO of the newest ``trend`` runs that have one, oldest first (``run_key``, ``scheduled_at``,
  ``rto_seconds``, ``passed``, ``rto_within_target``);
- ``runs``: how many runs of that instance the answer looked at (bounded by the run list's bound).

Only defined drills are listed (a deleted drill's runs stay readable at ``GET /api/drills/{id}/runs``).
"""

from __future__ import annotations

from typing import Any

from ..errors import RequestError
from ..limits import clip

DEFAULT_LIMIT, MAX_LIMIT = 50, 200
DEFAULT_TREND, MAX_TREND = 10, 30


def _int_param(params: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise RequestError(f"{name}={raw!r} is not a whole number from {low} to {high}", field=name,
                           fix=f"pass {name} between {low} and {high}, or leave it out (default {default})")
    return int(raw)


def parse_params(params: dict[str, str]) -> tuple[int, int, int]:
    """(limit, offset, trend) of the query string; a :class:`RequestError` naming the parameter otherwise."""
    limit = _int_param(params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    offset = _int_param(params, "continuation", 0, 0, 10**9)
    return limit, offset, _int_param(params, "trend", DEFAULT_TREND, 1, MAX_TREND)


def summary(run: dict[str, Any]) -> dict[str, Any]:
    """What the panel shows of one run."""
    res = run.get("result") or {}
    checks = res.get("checks") or []
    return {"run_key": run["run_key"], "state": run.get("state"), "manual": bool(run.get("manual")),
            "scheduled_at": run.get("scheduled_at"), "started_at": run.get("started_at"),
            "finished_at": run.get("finished_at"), "restore_id": run.get("restore_id"),
            "passed": res.get("passed") if res else None, "status": res.get("status"),
            "error_code": res.get("error_code"), "rto_seconds": res.get("rto_seconds"),
            "rto_target_seconds": run.get("rto_target_seconds", res.get("rto_target_seconds")),
            "rto_within_target": res.get("rto_within_target"), "rpo_seconds": res.get("rpo_seconds"),
            "checks_passed": sum(1 for c in checks if c.get("ok")),
            "checks_failed": sum(1 for c in checks if not c.get("ok")),
            "cleanup_status": (run.get("cleanup") or {}).get("status"), "evidence_blob": run.get("evidence_blob"),
            "late_by_seconds": run.get("late_by_seconds", 0),
            "error": clip(str(run["error"]), 500) if run.get("error") else None}


def _item(drill_id: str, target: dict[str, Any], runs: list[dict[str, Any]], trend: int) -> dict[str, Any]:
    """``runs``: one instance's runs, newest first."""
    newest = runs[0]
    timed = [r for r in runs if (r.get("result") or {}).get("rto_seconds") is not None][:trend]
    bi = str(newest.get("backup_instance_id") or "")
    return {"drill_id": drill_id, "backup_instance_id": bi, "backup_instance_name": bi.rstrip("/").rsplit("/", 1)[-1],
            "target_server": newest.get("target_server") or target.get("server_id"),
            "rto_target_seconds": target.get("rto_target_seconds", newest.get("rto_target_seconds")),
            "runs": len(runs), "last": summary(newest),
            "trend": [{"run_key": r["run_key"], "scheduled_at": r.get("scheduled_at"),
                       "rto_seconds": r["result"]["rto_seconds"], "passed": r["result"].get("passed"),
                       "rto_within_target": r["result"].get("rto_within_target")} for r in reversed(timed)]}


def latest(drills: list[tuple[str, dict[str, Any]]], runs_of: dict[str, list[dict[str, Any]]],
           trend: int) -> list[dict[str, Any]]:
    """Every (drill, instance) item. ``drills``: (id, {server_id, rto_target_seconds}) of each defined drill;
    ``runs_of``: each drill's runs, newest first (as :func:`restore_core.drills.store.list_runs` gives them)."""
    items: list[dict[str, Any]] = []
    for drill_id, target in sorted(drills, key=lambda d: d[0]):
        by_instance: dict[str, list[dict[str, Any]]] = {}
        for run in runs_of.get(drill_id) or []:
            by_instance.setdefault(str(run.get("backup_instance_id") or "").lower(), []).append(run)
        items += [_item(drill_id, target, by_instance[bi], trend) for bi in sorted(by_instance)]
    return items


def page(items: list[dict[str, Any]], limit: int, offset: int) -> dict[str, Any]:
    chunk = items[offset:offset + limit]
    more = offset + limit < len(items)
    return {"items": chunk, "continuation": str(offset + limit) if more else None}
