"""The pipeline: the one place that maps stage outcomes and errors to state changes and queue behaviour.

``handle(stage, body, ...)`` is what every queue trigger calls. It decodes the envelope, loads the row, ignores
stale or duplicate messages (the row's stage/attempt no longer match, or the restore is terminal), runs the stage
inside its span, applies the transition with an ETag-guarded write, then sends the next message (delayed for
"not ready yet"). Errors:
- ``AzureRejection`` → rejected (validate) or failed (later stages), with code, explanation and fix;
- ``RetryableError`` (throttling, 5xx, unreadable answers, token hiccups) → the same stage is re-sent with
  ``Retry-After`` or a growing delay — no exception, no poison, no queue delivery spent (those are for crashes);
  after ``MAX_THROTTLED_REQUEUES`` re-sends it is re-raised like any other error, except throttling (429), which
  is re-sent with a growing, jittered delay until the deadline;
- unexpected exceptions → re-raised so the queue redelivers; on the last allowed delivery the restore is first
  marked failed with the reason, so nothing reaches the poison queue unrecorded;
- ``PermanentError`` (malformed message) → logged and dropped with a record in the log (nothing to update);
- ``StoreRejected`` (the table refuses a write of this restore as such, a 4xx) → the restore fails at once with the
  table's reason and what the stage had found (:func:`_give_up_unstorable`), never redelivered until the deadline.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from typing import Any

from . import late_outcomes, lease, locks, telemetry
from .backup import JobInfo
from .deps import Deps
from .drills import evidence as drill_evidence
from .errors import AzureRejection, PermanentError, RestoreError, RetryableError, require
from .events import publish_completion
from .limits import clip
from .messages import Envelope
from .models import Stage, Status
from .records import RestoreRecord, TimelineEvent, iso, parse_time
from .stages import monitor, registry
from .stages.common import backoff
from .store import ConcurrencyError, StoreRejected
from .transitions import Outcome, StageResult, next_step

log = telemetry.get_logger("pipeline")

MAX_THROTTLED_REQUEUES = 50


def queue_for(deps: Deps, stage: Stage) -> str:
    return deps.settings.queue(registry.spec(stage).queue_setting)


def send_stage(deps: Deps, rec: RestoreRecord, *, delay: float = 0, traceparent: str | None = None) -> None:
    stage = require(rec.stage, "only an active restore is sent to a stage")
    env = Envelope(rec.id, stage, rec.attempt, traceparent or rec.traceparent, deps.clock())
    deps.queues.send(queue_for(deps, stage), env.encode(), delay_seconds=delay)


def check_after(deps: Deps, now: datetime, delay: float) -> datetime:
    """When the watchdog should consider the next message lost: after its delay plus a generous slack."""
    return now + timedelta(seconds=delay + deps.settings.redrive_slack_seconds)


def _current(stage: Stage, body: bytes | str, message_id: str, deps: Deps) -> tuple[Envelope, RestoreRecord] | None:
    """The message and its restore, or None for a message to drop (malformed, unknown restore, stale, duplicate)."""
    try:
        env = Envelope.decode(body, stage)
    except PermanentError as exc:
        log.error("dropping malformed %s message %s: %s", stage.value, message_id, exc,
                  extra={"stage": stage.value, "message_id": message_id})
        return None
    rec = deps.store.get(env.restore_id)
    if rec is None:
        log.error("message %s names unknown restore %s; dropped", message_id, env.restore_id)
        return None
    if rec.terminal or rec.stage != env.stage or rec.attempt != env.attempt:
        log.info("stale or duplicate %s message for %s (row: %s/%s attempt %s, message attempt %s); ignored",
                 stage.value, rec.id, rec.status.value, rec.stage.value if rec.stage else "-", rec.attempt,
                 env.attempt, extra={"restore_id": rec.id})
        return None
    return env, rec


def _attributes(rec: RestoreRecord) -> dict[str, telemetry.AttrValue]:
    return {k: v for k, v in {
        "backup_instance": rec.backup_instance_id, "recovery_point": rec.recovery_point_id, "tier": rec.tier,
        "target_kind": rec.target_kind or rec.request.get("target", {}).get("kind"), "region": rec.region,
        "azure_job_id": rec.azure_job_id}.items() if v}


def _throttled(exc: RetryableError, rec: RestoreRecord, deps: Deps) -> StageResult | None:
    """A transient failure (throttling, a 5xx, an unreadable answer, a token hiccup): the same stage again after
    ARM's ``Retry-After``, else after a growing, capped delay — no exception, so the queue's deliveries are kept for
    crashes. After ``MAX_THROTTLED_REQUEUES`` such re-sends an error that is not throttling goes to the queue (and, on
    the last delivery, the give-up path). Throttling (429) never fails a restore: it is re-sent until the deadline,
    after ``Retry-After`` or a growing delay with jitter, whichever is longer — several hosts sharing one ARM budget
    must not retry in step (the chaos campaign's three hosts failed 19 of 30 restores when only ``Retry-After``
    spaced them and the re-sends were capped)."""
    n = rec.transient_failures
    if exc.throttled:
        delay = max(exc.retry_after or 0.0, backoff(deps, n) * random.uniform(1.0, 1.25))  # noqa: S311 - jitter
    elif n >= MAX_THROTTLED_REQUEUES:
        return None
    else:
        delay = exc.retry_after if exc.retry_after is not None else backoff(deps, n)
    delay = max(delay, deps.settings.poll_min_seconds)
    return StageResult(Outcome.NOT_READY, f"throttled or unavailable ({exc}); retrying in {delay:.0f}s",
                       changes={"transient_failures": n + 1}, delay=delay, log_event=False)


class _Run:
    """One stage run on one restore: the claims it makes, and the error mapping of the pipeline."""

    def __init__(self, stage: Stage, rec: RestoreRecord, deps: Deps, dequeue_count: int) -> None:
        self.stage, self.current, self.deps, self.dequeue_count = stage, rec, deps, dequeue_count

    def claim(self, changes: dict[str, Any]) -> RestoreRecord:
        self.current = self.deps.store.update(self.current.copy(**changes, updated_at=self.deps.clock()))
        return self.current

    def _stage_result(self, now: datetime) -> StageResult:
        rec = self.current
        if now >= rec.deadline:
            return deadline_result(rec, self.deps)
        if self.stage == Stage.VALIDATE and rec.status == Status.ACCEPTED:
            rec = self.claim({"status": Status.VALIDATING})  # visible progress, and a claim before ARM calls
        return registry.spec(self.stage).run(rec, self.deps, self.claim)

    def result(self, now: datetime, span: telemetry.StageSpan) -> StageResult | None:
        """The stage's result (errors mapped); None when there is nothing more to do. Re-raises what the queue must
        redeliver (after recording the failure on the last allowed delivery)."""
        try:
            return self._stage_result(now)
        except ConcurrencyError:
            span.set_outcome("duplicate")
            log.info("another delivery of %s for %s got there first; nothing to do", self.stage.value,
                     self.current.id)
        except (lease.LeaseHeld, lease.LeaseLost) as exc:  # another runner replays it (or took it over)
            span.set_outcome("leased")
            log.info("%s of %s: %s; nothing to do", self.stage.value, self.current.id, exc)
        except StoreRejected as exc:
            _give_up_unstorable(self.deps, self.current, self.stage, exc, None)
        except PermanentError as exc:  # a broken invariant: retrying cannot help
            _give_up_if_last(self.deps, self.current, self.stage, self.deps.settings.max_dequeue_count, exc)
        except AzureRejection as exc:
            outcome = Outcome.REJECTED if self.stage == Stage.VALIDATE else Outcome.FAILED
            return StageResult(outcome, f"{exc.code}: {exc.message}", error_code=exc.code,
                               error_message=exc.message, error_fix=exc.fix or "see the Azure error message")
        except RetryableError as exc:
            throttled = _throttled(exc, self.current, self.deps)
            if throttled is None:
                _give_up_if_last(self.deps, self.current, self.stage, self.dequeue_count, exc)
                raise
            span.set_outcome("throttled")
            return throttled
        except Exception as exc:
            _give_up_if_last(self.deps, self.current, self.stage, self.dequeue_count, exc)
            raise
        return None


def handle(stage: Stage, body: bytes | str, *, message_id: str, dequeue_count: int, deps: Deps,
           inserted_at: datetime | None = None) -> None:
    found = _current(stage, body, message_id, deps)
    if found is None:
        return
    env, rec = found
    now = deps.clock()
    telemetry.record_queue_lag(stage=stage.value, seconds=max(0.0, (now - (inserted_at or env.sent_at))
                                                               .total_seconds()))
    following, traceparent = _run_stage(stage, rec, deps, dequeue_count, now, env.traceparent)
    while following is not None:
        following, traceparent = _continue_inline(following, deps, traceparent)


def _continue_inline(rec: RestoreRecord, deps: Deps, traceparent: str | None) \
        -> tuple[RestoreRecord | None, str | None]:
    """Run the stage ``rec`` was just moved to in this invocation (registry ``inline``: one queue hop less). Its
    message is already on the queue, delayed by ``inline_safety_net_seconds``; whatever happens here, that message
    finishes the job: stale (dropped after one row read) when this run moved the restore on, the stage's normal
    delivery when it did not (an error, a crash, a host stop). So nothing here is re-raised: the invocation that
    brought us here has done its own stage, and its message must not be delivered again for this one. Claims,
    ETag-guarded writes and the trigger's intent/adoption make a run that overlaps the delayed message safe, as for
    any duplicate delivery. ``dequeue_count`` 0: this is no queue delivery, so it never gives the restore up."""
    stage = require(rec.stage, "an inline continuation has a stage")
    try:
        return _run_stage(stage, rec, deps, 0, deps.clock(), traceparent)
    except Exception as exc:  # noqa: BLE001 - the delayed message is the retry (docstring)
        log.warning("%s of %s, run inline, failed (%s: %s); its delayed message runs it again in %.0fs",
                    stage.value, rec.id, type(exc).__name__, exc, deps.settings.inline_safety_net_seconds,
                    extra={"restore_id": rec.id})
        return None, None


def _inline(deps: Deps, stage: Stage, next_stage: Stage | None, delay: float) -> bool:
    """Whether ``next_stage`` runs in this invocation (``RESTORE_CONTINUE_INLINE`` and the registry's rule)."""
    return deps.settings.continue_inline and registry.continues_inline(stage, next_stage, delay)


def _run_stage(stage: Stage, rec: RestoreRecord, deps: Deps, dequeue_count: int, now: datetime,
               traceparent: str | None) -> tuple[RestoreRecord | None, str | None]:
    """Run ``stage`` on ``rec`` inside its span and apply the outcome. Returns the new row when the next stage
    continues in this invocation (:func:`_inline`), else None; and this span's traceparent."""
    with telemetry.stage_span(stage.value, restore_id=rec.id, traceparent=traceparent, attempt=rec.attempt,
                              attributes=_attributes(rec)) as span:
        run = _Run(stage, rec, deps, dequeue_count)
        result = run.result(now, span)
        if result is None:
            return None, span.traceparent
        span.set_outcome(result.outcome.value)
        try:
            new = apply(deps, run.current, stage, result, traceparent=span.traceparent, continue_here=True)
        except StoreRejected as exc:
            _give_up_unstorable(deps, run.current, stage, exc, result)
            return None, span.traceparent
        if new is not None and new.azure_job_id:
            span.set("azure_job_id", new.azure_job_id)
        if new is not None and _inline(deps, stage, new.stage, result.delay):
            return new, span.traceparent
        return None, span.traceparent


def deadline_result(rec: RestoreRecord, deps: Deps) -> StageResult:
    """Past the deadline. A restore whose Azure job we know is checked once more first: a job that has ended is
    recorded with its real outcome, not failed for being late."""
    job_status = None
    if rec.azure_job_id and rec.stage in (Stage.MONITOR, Stage.WAIT):
        try:
            job = monitor.read_job(rec, deps)
        except RestoreError as exc:
            log.warning("last check of %s before its deadline failed: %s", rec.id, exc)
            job = None
        if isinstance(job, JobInfo) and job.terminal:
            return monitor.classify(job, rec, deps)
        job_status = job.status if isinstance(job, JobInfo) else None
    return _deadline_result(rec, job_status)


def _deadline_result(rec: RestoreRecord, job_status: str | None = None) -> StageResult:
    seen = f" ({job_status} at the last check)" if job_status else ""
    where = f" (Azure job {rec.azure_job_id}{seen} may still be running; Azure cannot cancel it)" \
        if rec.azure_job_id else ""
    return StageResult(Outcome.FAILED, f"deadline {iso(rec.deadline)} passed{where}", error_code="DeadlineExceeded",
                       error_message=f"the restore did not finish by its deadline {iso(rec.deadline)}{where}",
                       error_fix="check the vault's jobs in Azure; submit again with a longer deadline_hours if "
                                 "the restore legitimately needs more time" + _databases_left(rec))


def _databases_left(rec: RestoreRecord) -> str:
    """A restore into a server that ran out of time while replaying or verifying may have created databases on the
    target: say which (they carry its mark), so that none is left behind without its owner saying so."""
    if rec.stage not in (Stage.REPLAY, Stage.VERIFY):
        return ""
    names = sorted(str(n) for n in (rec.server_plan.get("names") or {}).values())
    return (f". Databases this restore may have created on the target (they carry its mark; drop them or keep "
            f"them): {', '.join(names)}") if names else ""


def _give_up_if_last(deps: Deps, rec: RestoreRecord, stage: Stage, dequeue_count: int, exc: BaseException) -> None:
    if dequeue_count < deps.settings.max_dequeue_count:
        log.warning("%s of %s failed (delivery %s of %s), will be retried: %s", stage.value, rec.id, dequeue_count,
                    deps.settings.max_dequeue_count, exc)
        return
    latest = deps.store.get(rec.id) or rec
    if latest.terminal:
        return
    if isinstance(exc, PermanentError):
        result = StageResult(Outcome.FAILED, f"stopped: {exc}", error_code="InternalInvariantBroken",
                             error_message=f"stage {stage.value} cannot go on: {exc}",
                             error_fix="a bug or a row changed by hand: report it with this restore id and the logs; "
                                       "submit the restore again")
    else:
        result = StageResult(Outcome.FAILED, f"gave up after {dequeue_count} deliveries: {type(exc).__name__}: "
                                             f"{exc}", error_code="StageRetriesExhausted",
                             error_message=f"stage {stage.value} failed {dequeue_count} times: "
                                           f"{type(exc).__name__}: {exc}",
                             error_fix="check the logs for this restore id; the message went to the poison queue")
    try:
        apply(deps, latest, stage, result, traceparent=None)
    except Exception:  # noqa: BLE001 - recording the failure must not hide the original error
        log.exception("could not record the failure of %s", rec.id)


def _give_up_unstorable(deps: Deps, rec: RestoreRecord, stage: Stage, exc: StoreRejected,
                        found: StageResult | None) -> None:
    """The table refused a write of this restore as such: retrying cannot help. End it failed now, keeping what the
    stage had found (Azure's error code and message when there was one) and saying that the table refused the
    write. This write carries none of the stage's changes (the likely culprit), only the bounded error texts."""
    log.error("the table refused to store the %s outcome of %s: %s", stage.value, rec.id, exc,
              extra={"restore_id": rec.id})
    latest = deps.store.get(rec.id) or rec
    if latest.terminal or latest.etag != rec.etag:  # ended, or moved on by another delivery: nothing of ours to record
        return
    what = f"; the stage had found: {found.message}" if found is not None else ""
    code, message, fix = "OutcomeNotStored", "", None
    if found is not None and found.error_code:  # Azure's reason (or ours) stays the reason
        code, message, fix = found.error_code, f"{clip(found.error_message or '', 1024)} ", found.error_fix
    result = StageResult(Outcome.FAILED, f"the outcome of stage {stage.value} could not be stored ({exc.code}){what}",
                         error_code=code,
                         error_message=f"{message}(stage {stage.value} could not store its full outcome: {exc}{what})",
                         error_fix=fix or "check the Azure job (azure_job_id) for the real state of the restore "
                                          "before submitting again, and report this restore id with the table error")
    try:
        apply(deps, latest, stage, result, traceparent=None)
    except Exception:  # noqa: BLE001 - the original refusal is logged above; the deadline still ends the restore
        log.exception("could not record that %s's outcome was refused by the table", rec.id)


def apply(deps: Deps, rec: RestoreRecord, stage: Stage, result: StageResult,
          *, traceparent: str | None, continue_here: bool = False) -> RestoreRecord | None:
    """Write the transition (ETag-guarded) and send the next message. Returns the new row, or None if lost.

    ``continue_here``: the caller runs the next stage itself when the registry allows it inline (only a stage's own
    invocation, :func:`_run_stage`, does); the next message is then the delayed safety net. Every other caller (the
    watchdog's batched checks, the give-up paths) sends it due after ``result.delay`` as always: nothing else would
    run the stage until the safety net's delay had passed."""
    now = deps.clock()
    next_stage, status = next_step(stage, result.outcome)
    changes = dict(result.changes)
    times = {k: dict(v) for k, v in rec.stage_times.items()}
    if next_stage != stage:
        times.setdefault(stage.value, {})["finished"] = iso(now)
        if next_stage is not None:
            times.setdefault(next_stage.value, {"started": iso(now), "finished": None})
            changes.setdefault("polls", 0)
    # a next stage that runs inline in this invocation: its message is the delayed safety net (registry ``inline``)
    delay = deps.settings.inline_safety_net_seconds \
        if continue_here and _inline(deps, stage, next_stage, result.delay) else result.delay
    new = rec.copy(**changes, status=status, stage=next_stage, attempt=rec.attempt + 1, updated_at=now,
                   stage_times=times, next_check_at=check_after(deps, now, delay) if next_stage else None)
    if result.error_code:
        new.error_code, new.error_message, new.error_fix = result.error_code, result.error_message, result.error_fix
    events = []
    if result.log_event or status != rec.status or next_stage != stage:
        events.append(TimelineEvent(now, status.value, stage.value, result.message,
                                    {"error_code": result.error_code} if result.error_code else {}))
    try:
        new = deps.store.update(new, events)
    except ConcurrencyError:
        log.info("%s of %s lost a race to another delivery; its result is discarded", stage.value, rec.id)
        return None
    if stage == Stage.WAIT and next_stage != Stage.WAIT and result.outcome in REHYDRATION_DONE:
        _record_rehydration_wait(new, now)
    if next_stage is not None:
        send_stage(deps, new, delay=delay, traceparent=traceparent)
    if status.terminal:
        finish(deps, new)
    log.info("%s %s → %s (%s): %s", rec.id, stage.value, next_stage.value if next_stage else status.value,
             result.outcome.value, result.message, extra={"restore_id": rec.id, "outcome": result.outcome.value})
    return new


#: Outcomes of the wait stage that mean the archived point is back (stand-alone, or a one-request job's first phase).
REHYDRATION_DONE = frozenset({Outcome.REHYDRATED, Outcome.RESTORING})


def _record_rehydration_wait(rec: RestoreRecord, now: datetime) -> None:
    """``restore.rehydration.wait``: from the rehydrate stage's start until the point was seen rehydrated."""
    started = parse_time((rec.stage_times.get(Stage.REHYDRATE.value) or {}).get("started"))
    if started is not None:
        priority = str((rec.request.get("rehydration") or {}).get("priority") or "Standard")
        telemetry.record_rehydration_wait(seconds=(now - started).total_seconds(), priority=priority)


def finish(deps: Deps, rec: RestoreRecord) -> None:
    """Terminal bookkeeping after the winning terminal write: the completion event, then the active index row goes
    (a crash in between leaves the index row; the watchdog then publishes), then metrics."""
    publish_completion(deps, rec)
    locks.release(deps, rec)  # the destination is free for the next restore (a lost release goes stale: harmless)
    if rec.status == Status.FAILED and rec.error_code == "DeadlineExceeded" and rec.azure_job_id:
        late_outcomes.watch(deps, rec)  # its Azure job may still end: record how, on the timeline
    drill_evidence.on_restore_finished(deps, rec)  # a drill's restore: its evidence (never raises)
    deps.store.remove_active(rec.id)
    rto = (rec.job_end or rec.updated_at) - rec.created_at
    job_seconds = (rec.job_end - rec.job_start).total_seconds() if rec.job_end and rec.job_start else None
    telemetry.record_restore_finished(outcome=rec.status.value, target_kind=rec.target_kind or "unknown",
                                      region=rec.region, error_code=rec.error_code,
                                      rto_seconds=rto.total_seconds() if rec.status == Status.SUCCEEDED else None,
                                      job_seconds=job_seconds, source=rec.source)
    log.info("restore finished: %s %s", rec.id, rec.status.value, extra=finished_fields(rec, rto.total_seconds()))


def _stage_seconds(rec: RestoreRecord) -> dict[str, float]:
    out: dict[str, float] = {}
    for stage, times in rec.stage_times.items():
        start, end = parse_time((times or {}).get("started")), parse_time((times or {}).get("finished"))
        if start is not None and end is not None:
            out[stage] = round((end - start).total_seconds(), 3)
    return out


def finished_fields(rec: RestoreRecord, rto_seconds: float) -> dict[str, Any]:
    """The ``restore finished`` log record's fields (Application Insights ``traces.customDimensions``): one row per
    restore for the workbook's restores table and the failure alert, which names the restore and its target. No
    secret: ids, names, codes and durations only."""
    databases = ",".join(sorted((rec.server_plan.get("names") or {}).values())) if rec.server_plan else ""
    return {"event": "restore.finished", "restore_id": rec.id, "outcome": rec.status.value, "source": rec.source,
            "source_resource": rec.source_datasource_id or rec.backup_instance_id or "",
            "target": rec.target_resource or "", "target_databases": databases,
            "target_kind": rec.target_kind or "", "region": rec.region, "error_code": rec.error_code or "",
            "stage_seconds": json.dumps(_stage_seconds(rec), separators=(",", ":")),
            "rto_seconds": round(rto_seconds, 3)}
