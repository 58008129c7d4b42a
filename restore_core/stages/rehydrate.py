"""Stage rehydrate: bring an archived point back, in one of two flows (``RESTORE_REHYDRATION_FLOW``).

Consumes: a restore whose chosen point sits in the archive tier (status ``rehydrating``).
Does, in both flows: reuses a rehydration that already completed and does not expire before the restore can finish
(next: trigger, from the rehydrated point), or waits for one already running (next: wait, watching the point) —
a point is never paid for twice. Otherwise:
- ``one-request`` (default; the route of the portal, the az CLI and the REST docs): sends one
  ``AzureBackupRestoreWithRehydrationRequest`` from the ArchiveStore, with the requested priority and retention,
  exactly once (:func:`restore_core.stages.trigger.start_job`: intent claimed first, a lost answer adopts the job,
  never a second trigger). Next: wait, which follows the job through its rehydration phase.
- ``two-step``: sends a stand-alone ``rehydrate`` (claimed first with ``rehydration_requested_at``). Next: wait,
  which watches the recovery point until a data store entry reports the rehydration completed; then trigger.
Azure's CLI offers only ``Standard`` priority for PostgreSQL; ``High`` is sent as asked (intake warns that Azure may
refuse it).
"""

from __future__ import annotations

from datetime import timedelta

from ..deps import Deps
from ..errors import RetryableError, require
from ..records import RestoreRecord
from ..transitions import Outcome, StageResult
from . import Claim
from .common import backoff, bi_ref, plan_of, request_of
from .trigger import start_job

#: A reused rehydration must outlive the restore by at least this much.
REUSE_MARGIN = timedelta(days=1)


def _first_check(deps: Deps, rec: RestoreRecord, since: object) -> tuple[float, float | None]:
    return backoff(deps, 0), None


def _one_request(rec: RestoreRecord, deps: Deps, claim: Claim) -> StageResult:
    req = request_of(rec)
    plan = plan_of(rec, req)
    return start_job(rec, deps, claim, lambda: deps.dp.trigger_restore(plan, req.rehydration),
                     what="restore with rehydration", first_check=_first_check)


def _two_step(rec: RestoreRecord, deps: Deps, claim: Claim, point_id: str) -> StageResult:
    now = deps.clock()
    req = request_of(rec)
    if rec.rehydration_requested_at is not None:
        # an earlier attempt of this restore already asked; never ask twice
        return StageResult(Outcome.REHYDRATION_STARTED, "rehydration already requested by an earlier attempt")
    claim({"rehydration_requested_at": now})  # claim first: a duplicate message now sees the request
    try:
        deps.dp.trigger_rehydrate(bi_ref(rec), point_id, req.rehydration.priority.value,
                                  req.rehydration.retention_days)
    except RetryableError as exc:
        if exc.throttled:  # refused before doing anything: ask again later
            claim({"rehydration_requested_at": None})
            delay = max(exc.retry_after or 0.0, deps.settings.poll_min_seconds)
            return StageResult(Outcome.NOT_READY, f"rehydration request throttled; asking again in {delay:.0f}s",
                               delay=delay)
        return StageResult(Outcome.REHYDRATION_STARTED, f"rehydration request sent, answer not received ({exc}); "
                                                        f"watching the recovery point", changes={
                                                            "rehydration_requested_at": now})
    return StageResult(Outcome.REHYDRATION_STARTED,
                       f"rehydration of {point_id} requested (priority {req.rehydration.priority.value}, kept "
                       f"{req.rehydration.retention_days} days)", changes={"rehydration_requested_at": now})


def run(rec: RestoreRecord, deps: Deps, claim: Claim) -> StageResult:
    if rec.trigger_intent_at is not None or rec.azure_job_id:
        return _one_request(rec, deps, claim)  # an earlier attempt sent (or was sending) the one-request restore
    now = deps.clock()
    point = deps.dp.get_recovery_point(bi_ref(rec), require(rec.recovery_point_id, "validate chose the point"))
    if point.rehydrated and point.rehydration_expiry and point.rehydration_expiry > now + REUSE_MARGIN:
        return StageResult(Outcome.ALREADY_REHYDRATED,
                           f"reusing the completed rehydration of {point.id} (usable until "
                           f"{point.rehydration_expiry.isoformat()})",
                           changes={"rehydration_expiry": point.rehydration_expiry})
    if (point.rehydration_status or "").upper() == "CREATE_IN_PROGRESS":
        return StageResult(Outcome.REHYDRATION_STARTED, f"a rehydration of {point.id} is already running; waiting "
                                                        f"for it (never paid twice)",
                           changes={"rehydration_requested_at": rec.rehydration_requested_at or now})
    if deps.settings.rehydration_flow == "two-step" or rec.rehydration_requested_at is not None:
        return _two_step(rec, deps, claim, point.id)
    return _one_request(rec, deps, claim)
