"""Stage rehydrate.

Consumes: a restore whose chosen point sits in the archive tier (status ``rehydrating``).
Does: reuses a rehydration that already completed and does not expire before the restore can finish, or one
already in progress; otherwise triggers one with the requested priority (Standard by default) and retention
(10-30 days, default 15). Claims first (``rehydration_requested_at``) so a duplicate message never triggers twice.
Next: wait (rehydration running) or trigger (reusable rehydration found).
"""

from __future__ import annotations

from datetime import timedelta

from .. import restore_requests as rr
from ..deps import Deps
from ..records import RestoreRecord
from ..transitions import Outcome, StageResult
from . import Claim
from .common import bi_ref, request_of

#: A reused rehydration must outlive the restore by at least this much.
REUSE_MARGIN = timedelta(days=1)


def run(rec: RestoreRecord, deps: Deps, claim: Claim) -> StageResult:
    now = deps.clock()
    req = request_of(rec)
    assert rec.recovery_point_id
    point = deps.dp.get_recovery_point(bi_ref(rec), rec.recovery_point_id)
    if point.rehydrated and point.rehydration_expiry and point.rehydration_expiry > now + REUSE_MARGIN:
        return StageResult(Outcome.ALREADY_REHYDRATED,
                           f"reusing the completed rehydration of {point.id} (usable until "
                           f"{point.rehydration_expiry.isoformat()})",
                           changes={"rehydration_expiry": point.rehydration_expiry})
    status = (point.rehydration_status or "").upper()
    if status == "CREATE_IN_PROGRESS":
        return StageResult(Outcome.REHYDRATION_STARTED, f"a rehydration of {point.id} is already running; waiting",
                           changes={"rehydration_requested_at": rec.rehydration_requested_at or now})
    if rec.rehydration_requested_at is not None:
        # an earlier attempt of this restore already asked; never ask twice
        return StageResult(Outcome.REHYDRATION_STARTED, "rehydration already requested by an earlier attempt")
    claim({"rehydration_requested_at": now})  # claim first: a duplicate message now sees the request
    deps.dp.trigger_rehydrate(bi_ref(rec), rr.rehydration_request(point.id, req.rehydration.priority.value,
                                                                  req.rehydration.retention_days))
    return StageResult(Outcome.REHYDRATION_STARTED,
                       f"rehydration of {point.id} requested (priority {req.rehydration.priority.value}, kept "
                       f"{req.rehydration.retention_days} days)", changes={"rehydration_requested_at": now})
