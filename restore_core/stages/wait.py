"""Stage wait.

Consumes: a restore waiting for its archived point to be rehydrated (status ``waiting``).
Does: one recovery-point read; if not rehydrated yet, asks to be called again after a growing, capped interval
(a delayed self-message; never sleeps, never throws to retry). Past the deadline it fails with the reason.
Next: trigger (rehydrated), wait (not yet), or ``failed``.
"""

from __future__ import annotations

from .. import restore_requests as rr
from ..deps import Deps
from ..dp_client import RecoveryPointInfo
from ..records import RestoreRecord
from ..transitions import Outcome, StageResult
from . import Claim
from .common import backoff, bi_ref, request_of


def rehydrated(point: RecoveryPointInfo, seen_by: str = "") -> StageResult:
    """The result for a completed rehydration (shared with the watchdog's per-instance batch check)."""
    return StageResult(Outcome.REHYDRATED, f"rehydration of {point.id} completed{seen_by}"
                       + (f"; usable until {point.rehydration_expiry.isoformat()}" if point.rehydration_expiry else ""),
                       changes={"rehydration_expiry": point.rehydration_expiry, "polls": 0})


def run(rec: RestoreRecord, deps: Deps, claim: Claim) -> StageResult:
    assert rec.recovery_point_id
    point = deps.dp.get_recovery_point(bi_ref(rec), rec.recovery_point_id)
    status = (point.rehydration_status or "").upper()
    if point.rehydrated:
        return rehydrated(point)
    if status in ("FAILED", "DELETED", "DELETE_IN_PROGRESS"):
        return StageResult(Outcome.FAILED, f"rehydration of {point.id} ended {status}",
                           error_code="RehydrationFailed", error_message=f"rehydration ended {status}",
                           error_fix="submit the restore again; if it fails again, check the vault's jobs in Azure")
    now = deps.clock()
    requested = rec.rehydration_requested_at
    if not status and (requested is None or (now - requested).total_seconds() > deps.settings.trigger_grace_seconds):
        # nothing running: the earlier request never took effect (lost answer, crash) - ask once more
        req = request_of(rec)
        claim({"rehydration_requested_at": now})
        deps.dp.trigger_rehydrate(bi_ref(rec), rr.rehydration_request(point.id, req.rehydration.priority.value,
                                                                      req.rehydration.retention_days))
    delay = backoff(deps, rec.polls)
    return StageResult(Outcome.NOT_READY, f"rehydration {status or 'pending'}; next check in {delay:.1f}s",
                       changes={"polls": rec.polls + 1}, delay=delay, log_event=rec.polls == 0)
