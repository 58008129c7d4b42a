"""Stage monitor: follow the Azure job to its end.

Consumes: a restore with an Azure job id (status ``restoring``).
Does: one job read per check (primary: ``jobs.get``; secondary: ``fetchCrossRegionRestoreJob``). The first check
lands when restore jobs of this backup instance usually end (the trigger stage delays the first monitor message by
the learned duration; with nothing learned, after ``RESTORE_POLL_MIN_SECONDS``); while the job still runs, the
next check lands between the earliest and the latest end the job's own progress allows (``taskProgress``, bytes
moved against the point's size: :mod:`restore_core.progress`; on this service's clock, never Azure's), at most
``RESTORE_POLL_OVERDUE_SECONDS`` after the earliest (:func:`plan`), then every
``RESTORE_POLL_MIN_SECONDS`` growing to at most ``RESTORE_POLL_OVERDUE_SECONDS`` while the job overruns it; a job
that shows no progress is checked with a geometric back-off from ``RESTORE_POLL_MIN_SECONDS`` up to
``RESTORE_POLL_MAX_SECONDS``; throttling (``Retry-After``) is honoured by the
pipeline. Durations are learned on this service's own clock (trigger → end): when the first check already finds
the job done, the next expectation shrinks by 5% (the true end may have been earlier); otherwise it becomes the
middle of the end as our checks and its progress bound it (:func:`_end_seen`), not when we noticed it. So the
estimate hugs the real duration and most warm restores cost one read.
On a terminal state records the outcome (``Completed``/``Succeeded``, ``CompletedWithWarnings`` with the warnings,
``Failed`` with Azure's error code explained and fixed as validation errors are (:func:`restore_core.fixes.explain`),
``Cancelled``); the pipeline publishes the completion event on
``restore-events``. Not terminal: ``InProgress``/``Started`` (back off), ``Paused`` (timeline event, ``job_status``
and a ``JobPaused`` warning with the fix; checked at ``RESTORE_POLL_MAX_SECONDS`` until it resumes, ends or the
deadline fails the restore), ``Cancelling`` (timeline event; checked until ``Cancelled``), and any status Azure does
not document (timeline event; checked like InProgress).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from ..arm_ids import job_name
from ..backup import JOB_CANCELLED, JOB_RUNNING, JOB_SUCCEEDED, JobInfo
from ..deps import Deps
from ..errors import AzureRejection, require
from ..fixes import Explanation, explain
from ..models import Region, Stage
from ..progress import earliest_end, fastest_pace, latest_end, reading
from ..records import RestoreRecord, iso, parse_time
from ..transitions import Outcome, StageResult
from . import Claim
from .common import backoff, identity_label, identity_principal, request_of, vault_info, vault_ref

ANY_INSTANCE = "*"


def _ewma(deps: Deps, key: str) -> float | None:
    memo = deps.memo.get("jobstats", key)
    if isinstance(memo, float):
        return memo
    row = deps.store.get_meta("jobstats", key)
    try:
        value = float(row["ewma_seconds"]) if row else None
    except (KeyError, TypeError, ValueError):
        value = None
    if value is not None:
        deps.memo.put("jobstats", key, value)
    return value


def expected_seconds(deps: Deps, backup_instance_id: str | None) -> float | None:
    """How long restore jobs of this backup instance take (else: of any instance), on this service's clock."""
    own = _ewma(deps, (backup_instance_id or "").lower())
    return own if own is not None else _ewma(deps, ANY_INSTANCE)


SHRINK_ON_HIT = 0.95


def learn(deps: Deps, rec: RestoreRecord) -> None:
    """After a successful job: remember how long it took from the trigger until it ended as our checks tell
    (:func:`_end_seen`). A one-request
    archive restore (started by the rehydrate stage) is not learned from: its hours of rehydration would make every
    later restore of the instance wait that long for its first check."""
    if rec.triggered_at is None or Stage.TRIGGER.value not in rec.stage_times:
        return
    now = deps.clock()
    observed = (_end_seen(rec, now) - rec.triggered_at).total_seconds()
    hit_first_time = rec.polls == 0 and rec.expected_job_seconds is not None
    value = rec.expected_job_seconds * SHRINK_ON_HIT if hit_first_time and rec.expected_job_seconds else observed
    for key in ((rec.backup_instance_id or "").lower(), ANY_INSTANCE):
        deps.store.put_meta("jobstats", key, {"ewma_seconds": value})
        deps.memo.put("jobstats", key, value)


def _end_seen(rec: RestoreRecord, now: datetime) -> datetime:
    """When the job ended, on our clock, as closely as our checks tell: after the last check that saw it running and
    the earliest end its progress allowed then, before ``now`` (when we saw it ended) and the latest end its
    progress allowed; the middle of that. Learning ``now`` would add our own notice delay to every later restore's
    first check; learning the earliest bound, a check early and a read more. A job that showed no progress is
    bounded by our checks alone: the middle of (last seen running, seen ended], so a later restore's first check
    lands at most half that interval from its end either way."""
    p = rec.job_progress or {}
    try:
        running_at = parse_time(str(p.get("at") or ""))
        estimated, latest = parse_time(str(p.get("end") or "")), parse_time(str(p.get("latest") or ""))
    except ValueError:  # a row written by hand or by an older version: what we saw is all we know
        return now
    if running_at is None or running_at >= now:
        return now
    if estimated is None and not p.get("running"):
        return running_at  # a reading without its estimate: the last check that saw the job running
    lower = min(now, max(running_at, estimated or running_at))
    upper = max(lower, min(now, latest or now))
    return lower + (upper - lower) / 2


def read_job(rec: RestoreRecord, deps: Deps) -> JobInfo | StageResult:
    """One read of the restore's Azure job; a refusal to show a job we hold the id of (404 while Azure catches up,
    403 while a token or role assignment settles) is checked again later, never final: the deadline bounds it."""
    job_id = require(rec.azure_job_id, "a restore being followed has its Azure job id")
    try:
        if rec.region == Region.SECONDARY.value:
            return deps.dp.fetch_cross_region_job(
                vault_ref(rec), secondary=require(rec.restore_location, "a cross-region restore has its region"),
                primary=vault_info(rec).location, job_id=job_id)
        return deps.dp.get_job(vault_ref(rec), job_id)
    except AzureRejection as exc:
        delay = backoff(deps, rec.polls)
        return StageResult(Outcome.NOT_READY, f"could not read job {job_name(job_id)} ({exc.code}: "
                                              f"{exc.message}); checking again in {delay:.1f}s",
                           changes={"polls": rec.polls + 1, "transient_failures": rec.transient_failures + 1},
                           delay=delay, log_event=rec.transient_failures == 0)


def run(rec: RestoreRecord, deps: Deps, claim: Claim) -> StageResult:
    asked_at = deps.clock()
    job = read_job(rec, deps)
    return job if isinstance(job, StageResult) else classify(job, rec, deps, asked_at=asked_at)


def _still_running(job: JobInfo, rec: RestoreRecord, deps: Deps, changes: dict[str, Any],
                   asked_at: datetime | None = None) -> StageResult:
    """A job that has not finished. InProgress/Started: back off as usual. Paused: say so (timeline, ``job_status``,
    a ``JobPaused`` warning with what to do) and check at the longest interval until it resumes, ends or the
    deadline fails the restore. Cancelling: say so and keep checking until Cancelled. A status nobody documents:
    say so once and keep checking."""
    name = job_name(rec.azure_job_id or job.id)
    status = job.status.lower()
    changed = job.status != rec.job_status
    changes["polls"] = rec.polls + 1
    if status == "paused":
        delay = float(deps.settings.poll_max_seconds)
        fix = (f"Azure Backup resumes or fails a paused job: look at it with az dataprotection job show --ids "
               f"{rec.azure_job_id} (or Backup center > Backup jobs); this restore checks it every {delay:.0f}s and "
               f"fails with the reason at its deadline {iso(rec.deadline)}")
        if changed and not any(w.get("code") == "JobPaused" for w in rec.warnings):
            changes["warnings"] = [*rec.warnings, {"code": "JobPaused", "message": f"the Azure job {name} was "
                                                   f"Paused at {iso(deps.clock())}", "fix": fix}]
        return StageResult(Outcome.NOT_READY, f"Azure job {name} is Paused; {fix}", changes=changes, delay=delay,
                           log_event=changed)
    delay, note = (backoff(deps, rec.polls), "") if status not in JOB_RUNNING else \
        plan(job, rec, deps, changes, asked_at)
    if status == "cancelling":
        message = f"Azure job {name} is being cancelled in Azure (Cancelling); next check in {delay:.1f}s"
    elif status not in JOB_RUNNING:
        message = (f"Azure job {name} reports status {job.status!r}, which Azure documents nowhere; treated as still "
                   f"running, next check in {delay:.1f}s")
    elif (rec.job_status or "").lower() == "paused":
        message = f"Azure job {name} resumed ({job.status}); next check in {delay:.1f}s"
    else:
        message = f"job {name} {job.status}{note}; next check in {delay:.1f}s"
    return StageResult(Outcome.NOT_READY, message, changes=changes, delay=delay,
                       log_event=rec.polls == 0 or changed)


def plan(job: JobInfo, rec: RestoreRecord, deps: Deps, changes: dict[str, Any],
         asked_at: datetime | None = None) -> tuple[float, str]:
    """The next check of a running job, from the end its progress allows (:mod:`restore_core.progress`): between the
    earliest end (at the fastest pace consistent with what was seen) and the latest (the slowest), the check lands at
    the latest end when that is within ``RESTORE_POLL_OVERDUE_SECONDS`` of the earliest (one read, noticed at most
    that late if the job keeps its pace), else that long after the earliest (a read that narrows it). Once that end is
    near, one check just after it, then every ``RESTORE_POLL_MIN_SECONDS`` growing to at most
    ``RESTORE_POLL_OVERDUE_SECONDS`` while the job overruns it. No progress shown: the usual back-off. Times are on
    this service's clock only (Azure's ``startTime`` is on Azure's: a skew would shift every estimate). From one
    reading a start error d moves the estimate by d·(1/share − 1), so the start is bracketed as tightly as Azure
    allows (:func:`_start_bounds`); later readings use the pace between readings (which needs no start). Records the
    reading (``job_progress``) for the next estimate's pace and for learning the duration."""
    now, s = deps.clock(), deps.settings
    # Azure measured the progress between our request and its answer: for the earliest end, at the request (a read
    # that took 50 ms would otherwise put an 8-hour job's first estimate 50 ms × 1/share late)
    read_at = asked_at if asked_at is not None and asked_at <= now else now
    seen = reading(job, rec.source_bytes)
    bounds = _start_bounds(rec, job, now, asked_at)
    fastest = fastest_pace(seen, bounds[0], read_at, rec.job_progress) if seen is not None and bounds else None
    end = earliest_end(seen, bounds[0], read_at, rec.job_progress, latest_start=bounds[1], fastest=fastest) \
        if seen is not None and bounds is not None else None
    if seen is None or end is None or bounds is None:
        # nothing to estimate from: the end is after the request (kept for learning: see _end_seen)
        changes["job_progress"] = {"at": iso(read_at), "running": True}
        return backoff(deps, rec.polls), ""
    latest = latest_end(seen, bounds[0], now, rec.job_progress)
    margin = s.poll_min_seconds / 10  # land just after the estimated end, not just before it
    allowance = max(margin, s.poll_overdue_seconds)
    target = end + timedelta(seconds=allowance) if latest is None else \
        min(max(latest, end) + timedelta(seconds=margin), end + timedelta(seconds=allowance))
    left = (end - now).total_seconds()
    overdue = 0 if left >= s.poll_min_seconds else int(rec.job_progress.get("overdue", 0)) + 1
    delay = (target - now).total_seconds() if overdue <= 1 else overdue_interval(deps, overdue - 2)
    delay = max(margin, min(delay, (rec.deadline - now).total_seconds()))
    changes["job_progress"] = {"at": iso(read_at), "fraction": round(seen.fraction, 6), "overdue": overdue,
                               "end": iso(end), **({"fastest": fastest} if fastest else {}),
                               **({"latest": iso(latest)} if latest is not None else {})}
    return delay, f" ({seen.fraction:.1%} done by {seen.source}; earliest end {iso(end)})"


def _start_bounds(rec: RestoreRecord, job: JobInfo, now: datetime,
                  asked_at: datetime | None) -> tuple[datetime, datetime] | None:
    """When the job started, on our clock: (earliest, latest). Surely after the trigger's intent and before the
    trigger returned with the job's id (an adopted job: before the monitoring began). When Azure shows the running
    job's ``duration`` (its run time on Azure's own clock) and it fits there, the start is between (this read's
    request − duration) and (its answer − duration): as tight as one read's round trip. Otherwise the latest start is
    taken as the POST's answer (``trigger_accepted_at``: the emulator starts the job there; Azure documents nothing
    either way), which saves a read early in a job when the trigger's operation takes long."""
    earliest = rec.trigger_intent_at or rec.triggered_at
    if rec.trigger_sent_at is not None and earliest is not None and rec.triggered_at != rec.trigger_intent_at:
        earliest = max(earliest, rec.trigger_sent_at)  # the POST was sent after the intent's write
    surely = _latest_start(rec)
    if earliest is None or surely is None:
        return None
    ran = job.duration_seconds
    by_azure = now - timedelta(seconds=ran) if ran is not None and ran > 0 else None
    if by_azure is not None and earliest <= by_azure <= surely:
        if asked_at is not None:
            earliest = max(earliest, min(by_azure, asked_at - timedelta(seconds=ran or 0.0)))
        return earliest, by_azure
    accepted = rec.trigger_accepted_at if rec.triggered_at != rec.trigger_intent_at else None
    latest = min(surely, accepted) if accepted is not None else surely
    return earliest, max(earliest, latest)


def _latest_start(rec: RestoreRecord) -> datetime | None:
    """The latest the job can have started: the trigger's return (with the job's id); for an adopted job (its answer
    was lost, and ``triggered_at`` is the intent) when the monitoring began, after the job was found."""
    if rec.triggered_at is not None and rec.triggered_at != rec.trigger_intent_at:
        return rec.triggered_at
    try:
        return parse_time((rec.stage_times.get(Stage.MONITOR.value) or {}).get("started")) or rec.triggered_at
    except ValueError:
        return rec.triggered_at


def overdue_interval(deps: Deps, n: int) -> float:
    """The n-th re-check (from 0) of a job past its estimated end: the back-off, capped at the overdue interval."""
    return min(backoff(deps, n), deps.settings.poll_overdue_seconds)


def _done(rec: RestoreRecord, message: str, changes: dict[str, Any]) -> StageResult:
    """The vault's job ended well: the restore is done, or (a server target) its files are staged for inventory."""
    if rec.staging:
        where = f"{rec.staging.get('container_url')}/{rec.id}*"
        return StageResult(Outcome.STAGED, f"{message}; files staged in {where}", changes=changes)
    return StageResult(Outcome.SUCCEEDED, message, changes=changes)


def classify(job: JobInfo, rec: RestoreRecord, deps: Deps, *, asked_at: datetime | None = None) -> StageResult:
    """Turn a job read into the stage result (shared with the watchdog's per-vault batch checks); ``asked_at``:
    when the read was sent (bounds the job's start with its ``duration``)."""
    changes: dict[str, Any] = {"job_status": job.status, "job_start": job.start_time or rec.job_start,
                               "job_end": job.end_time}
    name = job_name(require(rec.azure_job_id, "a restore being followed has its Azure job id"))
    status = job.status.lower()
    if not job.terminal:
        return _still_running(job, rec, deps, changes, asked_at)
    if status in JOB_SUCCEEDED:
        learn(deps, rec)
    if status == "completedwithwarnings":
        changes["warnings"] = [*rec.warnings, *job.warnings]  # keep earlier warnings (e.g. a Partial point)
        codes = ", ".join(str(w.get("code")) for w in job.warnings)
        return _done(rec, f"job {name} completed with {len(job.warnings)} warning(s)"
                     + (f": {codes}" if codes else ""), changes)
    if status in JOB_SUCCEEDED:
        return _done(rec, f"job {name} completed", changes)
    if status in JOB_CANCELLED:
        return StageResult(Outcome.CANCELLED, f"job {name} was cancelled in Azure", changes=changes,
                           error_code="JobCancelled", error_message="the Azure restore job was cancelled outside "
                           "this service", error_fix="submit the restore again if it is still needed")
    ex = job_failure(job, rec)
    return StageResult(Outcome.FAILED, f"job {name} failed: {ex.code}", changes=changes, error_code=ex.code,
                       error_message=ex.message, error_fix=ex.fix)


def job_failure(job: JobInfo, rec: RestoreRecord) -> Explanation:
    """A failed job's first error through the same explanations and fixes as a validation refusal (``fixes.explain``):
    e.g. ``UserErrorDBUserAuthFailed`` says the secret's credentials were refused and how to fix the secret, a missing
    permission gives the exact role assignment; Azure's recommended action is the fix of a code we do not know."""
    err = job.errors[0] if job.errors else {}
    code = str(err.get("code") or "JobFailed")
    message = str(err.get("message") or f"Azure job ended {job.status}")
    recommended = " ".join(err.get("recommended_action") or [])
    azure_fix = recommended or "see the Azure error; fix the cause and submit again"
    try:
        request, vault = request_of(rec), vault_info(rec)
    except (ValueError, KeyError, TypeError):  # a row without its request or vault facts: Azure's words only
        return Explanation(code, message, azure_fix)
    ex = explain(code, message, request=request, principal_id=identity_principal(vault, rec.identity_id),
                 azure_fix=azure_fix, identity=identity_label(rec.identity_id),
                 vault_subscription=vault_ref(rec).subscription)
    if recommended and recommended not in ex.fix:  # keep Azure's own advice beside ours
        return Explanation(ex.code, ex.message, f"{ex.fix} (Azure recommends: {recommended})")
    return ex
