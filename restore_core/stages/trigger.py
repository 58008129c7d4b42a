"""Stage trigger: start the Azure restore exactly once.

Consumes: a validated restore (status ``restoring``, no job id yet).
Does: records the intent with an ETag-guarded write, triggers (``restore`` or ``crossRegionRestore``), and the
pipeline records the job id. When a retry finds an intent without a job id (crash between trigger and state write,
or an answer lost on the wire), it looks up the job this restore already started — client-side match on backup
instance, operation, target and start time — and adopts it instead of triggering again. Only when no such job has
appeared after ``RESTORE_TRIGGER_GRACE_SECONDS`` (longer than any trigger call can run) is the trigger repeated.
Next: monitor.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from .. import restore_requests as rr
from ..arm_ids import same_id
from ..deps import Deps
from ..dp_client import JobInfo
from ..errors import AzureRejection, RetryableError
from ..fixes import explain
from ..models import Region
from ..records import RestoreRecord
from ..transitions import Outcome, StageResult
from . import Claim
from .common import bi_ref, identity_label, identity_principal, plan_of, request_of, vault_info, vault_ref
from .monitor import expected_seconds

CLOCK_SKEW = timedelta(minutes=5)


def _matches(job: JobInfo, rec: RestoreRecord) -> bool:
    if rec.trigger_intent_at is None:
        return False
    if (job.operation_category or job.operation or "").lower() not in ("restore", "crossregionrestore") and \
            "restore" not in (job.operation or "").lower():
        return False
    if job.backup_instance_id and not same_id(job.backup_instance_id, rec.backup_instance_id):
        return False
    if job.start_time is None or job.start_time < rec.trigger_intent_at - CLOCK_SKEW:
        return False
    dest, target = (job.destination or "").lower().rstrip("/"), (rec.target_resource or "").lower().rstrip("/")
    return bool(dest) and dest == target  # exact: prefix "x_1" must never adopt the job of "x_10"


def find_started_job(rec: RestoreRecord, deps: Deps) -> JobInfo | None:
    vault = vault_info(rec)
    if rec.region == Region.SECONDARY.value:
        assert rec.restore_location
        jobs = deps.dp.fetch_cross_region_jobs(vault_ref(rec), secondary=rec.restore_location, primary=vault.location)
    else:
        jobs = deps.dp.list_jobs(vault_ref(rec))
    found = sorted((j for j in jobs if _matches(j, rec)), key=lambda j: j.start_time or rec.created_at)
    return found[0] if found else None


def _first_check(deps: Deps, rec: RestoreRecord, since: datetime) -> tuple[float, float | None]:
    """Delay of the first monitor message: when jobs of this instance usually end (else the minimum interval)."""
    expected = expected_seconds(deps, rec.backup_instance_id)
    if expected is None:
        return deps.settings.poll_min_seconds, None
    now = deps.clock()
    left = expected - (now - since).total_seconds()
    until_deadline = (rec.deadline - now).total_seconds()
    return max(deps.settings.poll_min_seconds, min(left, until_deadline)), expected


def run(rec: RestoreRecord, deps: Deps, claim: Claim) -> StageResult:
    now = deps.clock()
    s = deps.settings
    if rec.azure_job_id:
        return StageResult(Outcome.ADOPTED, f"job {rec.azure_job_id} already recorded")
    if rec.trigger_intent_at is not None:
        job = find_started_job(rec, deps)
        if job is not None:
            delay, expected = _first_check(deps, rec, rec.trigger_intent_at)
            return StageResult(Outcome.ADOPTED, f"adopted job {job.name} started by an earlier attempt "
                                                f"(no second trigger)",
                               changes={"azure_job_id": job.id or job.name, "job_status": job.status,
                                        "job_start": job.start_time, "triggered_at": rec.trigger_intent_at,
                                        "expected_job_seconds": expected}, delay=delay)
        age = (now - rec.trigger_intent_at).total_seconds()
        if age < s.trigger_grace_seconds:
            delay = min(s.trigger_grace_seconds - age, max(s.poll_min_seconds, s.poll_max_seconds / 4))
            return StageResult(Outcome.NOT_READY, f"an earlier trigger may still be in flight; looking again in "
                                                  f"{delay:.0f}s", delay=delay)
    req = request_of(rec)
    plan = plan_of(rec, req)
    vault = vault_info(rec)
    rec = claim({"trigger_intent_at": now})
    try:
        if rec.region == Region.SECONDARY.value:
            assert rec.restore_location
            job_id = deps.dp.trigger_cross_region_restore(vault_ref(rec), rec.restore_location,
                                                          rr.cross_region_request(plan, vault.location))
        else:
            job_id = deps.dp.trigger_restore(bi_ref(rec), rr.restore_request(plan))
    except RetryableError as exc:
        if exc.throttled:  # ARM refused before doing anything: no job can exist, trigger again after Retry-After
            claim({"trigger_intent_at": None})
            delay = max(exc.retry_after or 0.0, s.poll_min_seconds)
            return StageResult(Outcome.NOT_READY, f"trigger throttled by ARM; trying again in {delay:.1f}s",
                               delay=delay)
        return StageResult(Outcome.NOT_READY, f"trigger answer not received ({exc}); will look for the job before "
                                              f"triggering again",
                           delay=max(exc.retry_after or 0.0, s.poll_min_seconds))
    except AzureRejection as exc:
        ex = explain(exc.code, exc.message, request=req, principal_id=identity_principal(vault, rec.identity_id),
                     azure_fix=exc.fix, identity=identity_label(rec.identity_id))
        return StageResult(Outcome.FAILED, f"trigger refused: {ex.code}", error_code=ex.code,
                           error_message=ex.message, error_fix=ex.fix)
    if not job_id:
        return StageResult(Outcome.NOT_READY, "trigger accepted without a job id; looking the job up",
                           delay=s.poll_min_seconds)
    done = deps.clock()
    delay, expected = _first_check(deps, rec, done)
    return StageResult(Outcome.TRIGGERED, f"restore triggered: job {job_id.rsplit('/', 1)[-1]}"
                                          + (f"; first check in {delay:.1f}s (usual duration)" if expected else ""),
                       changes={"azure_job_id": job_id, "job_status": "InProgress", "polls": 0,
                                "triggered_at": done, "expected_job_seconds": expected}, delay=delay)
