"""Stage trigger: start the Azure restore exactly once.

Consumes: a validated restore (status ``restoring``, no job id yet).
Does: records the intent with an ETag-guarded write, triggers (``restore`` or ``crossRegionRestore``), and the
pipeline records the job id. When a retry finds an intent without a job id (crash between the intent and the state
write, an answer lost on the wire, an error while following the accepted operation), it looks for the job this
restore started and adopts it instead of triggering again. A job is this restore's when it matches on everything
Azure specifies — a restore operation, the backup instance, the recovery point, a start not before the intent
(less a clock skew) — and on its destination when the destination can be compared (``recoveryDestination`` has no
specified format: an ARM id or a URL is compared exactly, anything else is left out of the match). When exactly one job
matches it is adopted; when several match, or none has appeared after ``RESTORE_TRIGGER_GRACE_SECONDS`` (longer than
any trigger call can run), the restore is **never triggered again**: it ends ``failed`` with code
``TriggerOutcomeUnknown``, naming the jobs it found, for an operator to decide. Only a trigger ARM refused before
doing anything (429/503) is sent again.
Next: monitor.

:func:`start_job` is the same exactly-once start for any request that creates a restore job (the one-request
archive restore of the rehydrate stage uses it too).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from enum import Enum

from .. import restore_requests as rr
from ..arm_ids import job_name, same_id
from ..backup import JobInfo, Triggered
from ..deps import Deps
from ..errors import AzureRejection, RetryableError, require
from ..fixes import explain
from ..models import Region
from ..records import RestoreRecord
from ..transitions import Outcome, StageResult
from . import Claim
from .common import identity_label, identity_principal, plan_of, request_of, vault_info, vault_ref, vault_target
from .monitor import expected_seconds

CLOCK_SKEW = timedelta(minutes=5)
MAX_NAMED_JOBS = 5


class Match(Enum):
    NO = "no"
    CERTAIN = "certain"
    """Every specified field and the destination match."""
    LIKELY = "likely"
    """Every specified field matches; the destination could not be compared (missing or in another format)."""


def _comparable(destination: str) -> bool:
    d = destination.strip().lower()
    return d.startswith("/subscriptions/") or d.startswith("https://")


def _destination(rec: RestoreRecord) -> str:
    """Where this restore's vault job writes (a server target's vault job writes into its staging container)."""
    if rec.staging:
        return rr.destination_of(vault_target(rec, request_of(rec)))
    return rec.target_resource or ""


def match(job: JobInfo, rec: RestoreRecord) -> Match:
    """How surely ``job`` is the one this restore's trigger started."""
    if rec.trigger_intent_at is None or "restore" not in (job.operation_category or job.operation or "").lower():
        return Match.NO
    if job.backup_instance_id and not same_id(job.backup_instance_id, rec.backup_instance_id):
        return Match.NO
    if job.recovery_point_id and rec.recovery_point_id and \
            job.recovery_point_id.lower() != rec.recovery_point_id.lower():
        return Match.NO
    # no upper bound: Azure may start a queued job late, and its clock is not ours
    if job.start_time is None or job.start_time < rec.trigger_intent_at - CLOCK_SKEW:
        return Match.NO
    dest = (job.destination or "").strip()
    if not dest or not _comparable(dest):
        return Match.LIKELY
    target = _destination(rec).lower().rstrip("/")
    return Match.CERTAIN if dest.lower().rstrip("/") == target else Match.NO  # exact: "x_1" never adopts "x_10"


def _jobs(rec: RestoreRecord, deps: Deps) -> list[JobInfo]:
    vault = vault_info(rec)
    if rec.region == Region.SECONDARY.value:
        return deps.dp.fetch_cross_region_jobs(vault_ref(rec), primary=vault.location, secondary=require(
            rec.restore_location, "a cross-region restore has its region"))
    return deps.dp.list_jobs(vault_ref(rec))


OWNER = "jobowner"


def own(deps: Deps, rec: RestoreRecord, job_id: str) -> None:
    """Record which restore a job belongs to, so another restore's adoption never takes it."""
    deps.store.put_meta(OWNER, job_name(job_id).lower(), {"restore_id": rec.id})


def _owned_by_another(deps: Deps, rec: RestoreRecord, job: JobInfo) -> bool:
    owner = deps.store.get_meta(OWNER, job.name.lower())
    return owner is not None and owner.get("restore_id") != rec.id


def find_candidates(rec: RestoreRecord, deps: Deps) -> tuple[list[JobInfo], list[JobInfo]]:
    """Jobs that are surely this restore's, and jobs that may be (oldest first); jobs another restore recorded as
    its own are never candidates."""
    matched = [(j, match(j, rec)) for j in _jobs(rec, deps)]
    found = sorted(((j, how) for j, how in matched if how != Match.NO and not _owned_by_another(deps, rec, j)),
                   key=lambda pair: pair[0].start_time or rec.created_at)
    return [j for j, how in found if how == Match.CERTAIN], [j for j, how in found if how == Match.LIKELY]


def _needs_operator(rec: RestoreRecord, found: list[JobInfo]) -> StageResult:
    if found:
        names = ", ".join(f"{j.name} ({j.status}, started {j.start_time.isoformat() if j.start_time else '?'}, "
                          f"destination {j.destination or 'not shown'})" for j in found[:MAX_NAMED_JOBS])
        more = f" and {len(found) - MAX_NAMED_JOBS} more" if len(found) > MAX_NAMED_JOBS else ""
        what = f"{len(found)} Azure jobs could each be this restore's: {names}{more}"
    else:
        what = ("no Azure job of this restore appeared within the trigger grace period after the trigger was sent "
                "(its answer was lost, or the process stopped around the trigger)")
    return StageResult(Outcome.FAILED, f"trigger outcome unknown: {what}", error_code="TriggerOutcomeUnknown",
                       error_message=f"it is not certain whether the Azure restore was started: {what}; this service "
                                     f"never triggers a restore twice when unsure",
                       error_fix="look at the vault's restore jobs (Backup center > Backup jobs, or az dataprotection "
                                 "job list): follow the job that is this restore's there; if none is, submit the "
                                 "restore again with a new idempotency key")


FirstCheck = Callable[[Deps, RestoreRecord, datetime], tuple[float, float | None]]


def learned_first_check(deps: Deps, rec: RestoreRecord, since: datetime) -> tuple[float, float | None]:
    """Delay of the first monitor message: when jobs of this instance usually end (else the minimum interval)."""
    expected = expected_seconds(deps, rec.backup_instance_id)
    if expected is None:
        return deps.settings.poll_min_seconds, None
    now = deps.clock()
    left = expected - (now - since).total_seconds()
    until_deadline = (rec.deadline - now).total_seconds()
    return max(deps.settings.poll_min_seconds, min(left, until_deadline)), expected


def _adopt(rec: RestoreRecord, deps: Deps, first_check: FirstCheck) -> StageResult | None:
    """The outcome of looking for the job an earlier attempt started; None: nothing found yet, look again later."""
    intent = require(rec.trigger_intent_at, "a restore looking for its job recorded its trigger intent")
    try:
        certain, likely = find_candidates(rec, deps)
    except (AzureRejection, RetryableError) as exc:  # the trigger may have run: never decide on a failed look-up,
        # and never spend the message's deliveries on it (host kills spend them too): look again later
        delay = max(deps.settings.poll_min_seconds, deps.settings.poll_max_seconds / 4,
                    getattr(exc, "retry_after", None) or 0.0)
        return StageResult(Outcome.NOT_READY, f"could not list the jobs to adopt ({exc}); looking again in "
                                              f"{delay:.0f}s", delay=delay,
                           changes={"transient_failures": rec.transient_failures + 1})
    job = certain[0] if len(certain) == 1 else likely[0] if not certain and len(likely) == 1 else None
    if job is not None:
        own(deps, rec, job.id or job.name)
        delay, expected = first_check(deps, rec, intent)
        how = "" if certain else " (matched on instance, point and time; its destination is not comparable)"
        return StageResult(Outcome.ADOPTED, f"adopted job {job.name} started by an earlier attempt{how} "
                                            f"(no second trigger)",
                           changes={"azure_job_id": job.id or job.name, "job_status": job.status,
                                    "job_start": job.start_time, "triggered_at": intent,
                                    "expected_job_seconds": expected}, delay=delay)
    if len(certain) > 1 or len(likely) > 1:
        return _needs_operator(rec, certain or likely)
    return None


def start_job(rec: RestoreRecord, deps: Deps, claim: Claim, send: Callable[[], Triggered], *, what: str,
              first_check: FirstCheck = learned_first_check) -> StageResult:
    """Start one Azure restore job exactly once: adopt what an earlier attempt started, never trigger when unsure."""
    now = deps.clock()
    s = deps.settings
    if rec.azure_job_id:
        return StageResult(Outcome.ADOPTED, f"job {rec.azure_job_id} already recorded")
    if rec.trigger_intent_at is not None:
        adopted = _adopt(rec, deps, first_check)
        if adopted is not None:
            return adopted
        age = (now - rec.trigger_intent_at).total_seconds()
        if age >= s.trigger_grace_seconds:
            return _needs_operator(rec, [])
        delay = min(s.trigger_grace_seconds - age, max(s.poll_min_seconds, s.poll_max_seconds / 4))
        return StageResult(Outcome.NOT_READY, f"an earlier trigger may still be in flight; looking again in "
                                              f"{delay:.0f}s", delay=delay)
    rec = claim({"trigger_intent_at": now})
    try:
        sent = send()
    except RetryableError as exc:
        if exc.throttled:  # ARM refused before doing anything: no job can exist, trigger again after Retry-After
            claim({"trigger_intent_at": None})
            delay = max(exc.retry_after or 0.0, s.poll_min_seconds)
            return StageResult(Outcome.NOT_READY, f"{what} throttled by ARM; trying again in {delay:.1f}s",
                               delay=delay)
        return StageResult(Outcome.NOT_READY, f"{what}: answer not received ({exc}); will look for the job before "
                                              f"anything else", delay=max(exc.retry_after or 0.0, s.poll_min_seconds))
    except AzureRejection as exc:
        req = request_of(rec)
        ex = explain(exc.code, exc.message, request=req,
                     principal_id=identity_principal(vault_info(rec), rec.identity_id), azure_fix=exc.fix,
                     identity=identity_label(rec.identity_id), vault_subscription=vault_ref(rec).subscription)
        return StageResult(Outcome.FAILED, f"{what} refused: {ex.code}", error_code=ex.code,
                           error_message=ex.message, error_fix=ex.fix)
    job_id = sent.job_id
    if not job_id:
        return StageResult(Outcome.NOT_READY, f"{what} accepted without a job id; looking the job up",
                           delay=s.poll_min_seconds)
    own(deps, rec, job_id)
    done = deps.clock()
    # the POST's answer: the latest the job can have started (the operation it then followed took the rest); the
    # POST's sending: the earliest (later than the intent by the intent's own write)
    accepted = max(rec.trigger_intent_at or done, done - timedelta(seconds=max(0.0, sent.after_answer_seconds)))
    posted = max(rec.trigger_intent_at or accepted, accepted - timedelta(seconds=max(0.0, sent.post_seconds)))
    delay, expected = first_check(deps, rec, done)
    return StageResult(Outcome.TRIGGERED, f"{what} triggered: job {job_id.rsplit('/', 1)[-1]}"
                                          + (f"; first check in {delay:.1f}s (usual duration)" if expected else ""),
                       changes={"azure_job_id": job_id, "job_status": "InProgress", "polls": 0,
                                "triggered_at": done, "trigger_sent_at": posted, "trigger_accepted_at": accepted,
                                "expected_job_seconds": expected}, delay=delay)


def run(rec: RestoreRecord, deps: Deps, claim: Claim) -> StageResult:
    plan = plan_of(rec, request_of(rec))

    def send() -> Triggered:
        if rec.region == Region.SECONDARY.value:
            return deps.dp.trigger_cross_region_restore(plan, vault_info(rec).location)
        return deps.dp.trigger_restore(plan)

    return start_job(rec, deps, claim, send, what="restore")
