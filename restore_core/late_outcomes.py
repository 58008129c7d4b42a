"""Late outcomes: how an Azure job ended after its restore was failed by the deadline.

Consumes: restores that the pipeline failed with ``DeadlineExceeded`` while their Azure job was still running (Azure
cannot cancel a restore job, so it may still complete or fail). :func:`watch` registers them (a ``latejob`` meta
row); the watchdog calls :func:`check` each tick.
Does: at most every ``RESTORE_POLL_MAX_SECONDS`` per restore, one job read; when the job has ended, appends a
timeline event naming its outcome to the restore (its status stays ``failed``: terminal rows never change) and drops
the watch. A watch older than :data:`LATE_WATCH` is dropped with a log line. Cost: O(watched restores), a few.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from . import telemetry
from .arm_ids import job_name
from .backup import JobInfo
from .deps import Deps
from .errors import RestoreError
from .records import RestoreRecord, TimelineEvent, iso, parse_time
from .stages.monitor import read_job

log = telemetry.get_logger("late_outcomes")
KIND = "latejob"
LATE_WATCH = timedelta(days=7)
MAX_PER_TICK = 50


def watch(deps: Deps, rec: RestoreRecord) -> None:
    """Keep an eye on the job a restore failed by its deadline left running."""
    now = deps.clock()
    deps.store.put_meta(KIND, rec.id, {"restore_id": rec.id, "until": iso(now + LATE_WATCH),
                                       "next_check_at": iso(now + timedelta(seconds=deps.settings.poll_max_seconds))})


def _ended(deps: Deps, rec: RestoreRecord, job: JobInfo, now: datetime) -> None:
    end = f" at {job.end_time.isoformat()}" if job.end_time else ""
    codes = [str(e.get("code")) for e in job.errors if e.get("code")]
    message = (f"after this restore was failed by its deadline, Azure job {job_name(rec.azure_job_id or '')} ended "
               f"{job.status}{end}" + (f" ({', '.join(codes)})" if codes else ""))
    deps.store.add_events(rec, [TimelineEvent(now, rec.status.value, None, message, {"late_job_status": job.status})])
    log.warning("restore %s: %s", rec.id, message, extra={"restore_id": rec.id})


def _check_one(deps: Deps, row: dict[str, Any], now: datetime) -> str | None:
    """One watched restore; returns its id when the job's outcome was recorded."""
    rid = str(row.get("restore_id") or "")
    due = parse_time(row.get("next_check_at"))
    if due is not None and now < due:
        return None
    rec = deps.store.get(rid) if rid else None
    if rec is None or not rec.azure_job_id:
        deps.store.delete_meta(KIND, rid)
        return None
    job = read_job(rec, deps)
    if isinstance(job, JobInfo) and job.terminal:
        _ended(deps, rec, job, now)
        deps.store.delete_meta(KIND, rid)
        return rid
    until = parse_time(row.get("until"))
    if until is not None and now >= until:
        log.warning("stopped watching the Azure job of restore %s (still not ended %s after its deadline)", rid,
                    LATE_WATCH, extra={"restore_id": rid})
        deps.store.delete_meta(KIND, rid)
        return None
    deps.store.put_meta(KIND, rid, {**row, "next_check_at": iso(now + timedelta(
        seconds=deps.settings.poll_max_seconds))})
    return None


def check(deps: Deps) -> tuple[list[str], list[str]]:
    """Check the watched restores that are due; returns (recorded ids, errors as "<id>: <error type>")."""
    now = deps.clock()
    recorded: list[str] = []
    errors: list[str] = []
    for row in deps.store.list_meta(KIND, limit=MAX_PER_TICK):
        try:
            rid = _check_one(deps, row, now)
        except RestoreError as exc:
            log.warning("late outcome check of %s failed: %s", row.get("restore_id"), exc)
            errors.append(f"{row.get('restore_id')}: {type(exc).__name__}")
            continue
        if rid:
            recorded.append(rid)
    return recorded, errors
