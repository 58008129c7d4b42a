"""Stage wait: wait for an archived point to be rehydrated.

Consumes: a restore in status ``waiting``. Two cases (see the rehydrate stage):
- a one-request restore job is running (``azure_job_id`` set): one job read per check. When the job's rehydration
  sub-task reports completed, the restore phase follows in monitor; when the job ends (Azure may report nothing in
  between), its outcome is recorded here as monitor would.
- a stand-alone rehydration (or one that was already running): one recovery-point read per check, completed when
  any data store entry of the point reports ``COMPLETED`` (Azure does not say which entry does). Nothing is ever
  requested again from here: a point is never paid for twice.
Each "not yet" says when the rehydration is expected (:mod:`restore_core.expectations`: Azure's documented bound for
the priority, counted from the request). Checks are delayed self-messages after a growing, capped interval (never
sleeps, never throws to retry); the watchdog batches long waits per backup instance.
Next: trigger (stand-alone rehydration done), monitor (job in its restore phase), wait (not yet), or terminal.
"""

from __future__ import annotations

from ..backup import JobInfo, RecoveryPointInfo
from ..deps import Deps
from ..errors import require
from ..expectations import rehydration_note
from ..records import RestoreRecord
from ..transitions import Outcome, StageResult
from . import Claim
from .common import backoff, bi_ref
from .monitor import classify, read_job


def rehydrated(point: RecoveryPointInfo, seen_by: str = "") -> StageResult:
    """The result for a completed rehydration (shared with the watchdog's per-instance batch check)."""
    return StageResult(Outcome.REHYDRATED, f"rehydration of {point.id} completed{seen_by}"
                       + (f"; usable until {point.rehydration_expiry.isoformat()}" if point.rehydration_expiry else ""),
                       changes={"rehydration_expiry": point.rehydration_expiry, "polls": 0})


def job_phase(job: JobInfo, rec: RestoreRecord, deps: Deps) -> StageResult:
    """A one-request restore job seen while waiting: ended, in its restore phase, or still rehydrating."""
    if not job.terminal and job.subtask_done("rehydrat"):
        return StageResult(Outcome.RESTORING, f"job {job.name}: rehydration completed; restore phase running",
                           changes={"job_status": job.status, "polls": 0}, delay=backoff(deps, 0))
    return classify(job, rec, deps)  # ended, or still rehydrating (paused jobs are reported as such)


def run(rec: RestoreRecord, deps: Deps, claim: Claim) -> StageResult:
    result = _check(rec, deps)
    if result.outcome is Outcome.NOT_READY:  # still rehydrating: say when it is expected (Azure's documented bound)
        result.message += rehydration_note(rec, deps.clock())
    return result


def _check(rec: RestoreRecord, deps: Deps) -> StageResult:
    if rec.azure_job_id:
        job = read_job(rec, deps)
        return job if isinstance(job, StageResult) else job_phase(job, rec, deps)
    point = deps.dp.get_recovery_point(bi_ref(rec), require(rec.recovery_point_id, "validate chose the point"))
    status = (point.rehydration_status or "").upper()
    if point.rehydrated:
        return rehydrated(point)
    if status in ("FAILED", "DELETED", "DELETE_IN_PROGRESS"):
        return StageResult(Outcome.FAILED, f"rehydration of {point.id} ended {status}",
                           error_code="RehydrationFailed", error_message=f"rehydration ended {status}",
                           error_fix="submit the restore again; if it fails again, check the vault's jobs in Azure")
    delay = backoff(deps, rec.polls)
    return StageResult(Outcome.NOT_READY, f"rehydration {status or 'not reported yet'}; next check in {delay:.1f}s",
                       changes={"polls": rec.polls + 1}, delay=delay, log_event=rec.polls == 0)
