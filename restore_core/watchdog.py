"""Timer watchdog (schedule ``RESTORE_WATCHDOG_SCHEDULE``): the safety net and the batcher.

Reads only the ``active`` index partition, so its cost grows with active restores, never with history. Each tick:
- fails restores past their deadline, with the reason;
- re-drives restores whose ``next_check_at`` is overdue (a lost, delayed or poisoned message): it re-sends the
  message for the row's current stage and attempt — a duplicate is a no-op thanks to the claims;
- batches checks that are cheaper per vault than per restore: one ``fetchCrossRegionRestoreJobs`` per vault and
  secondary region for cross-region jobs, one recovery-point list per backup instance for rehydrations; results
  are applied directly (the in-flight self-message then finds itself stale);
- sweeps the poison queues: stage messages that carry no failure are removed; every ``restore-requests-poison``
  message is recorded (the restore it is, or a ``rejected`` row saying why it is not started) and removed;
- records the ``restore.active`` (by stage) and ``restore.poison.depth`` (by queue) gauges;
- looks at the Azure jobs that deadline failures left running and records how they ended (late outcomes).

Each entry (and each batch, each poison message) is handled on its own: an error is logged and reported in
``TickReport.errors`` and the tick goes on, so one bad entry never stops the re-drives and deadlines of the others.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from . import intake, late_outcomes, telemetry
from .arm_ids import job_name, parse_backup_instance_id, parse_vault_id
from .backup import JobInfo, RecoveryPointInfo
from .config import QUEUE_REQUESTS
from .deps import Deps
from .errors import PermanentError, RestoreError
from .events import publish_completion
from .messages import Envelope
from .models import Region, Stage, Status
from .pipeline import apply, deadline_result, send_stage
from .queues import Received
from .records import ActiveEntry, RestoreRecord
from .stages import registry
from .stages.common import vault_info
from .stages.monitor import classify
from .stages.wait import rehydrated

log = telemetry.get_logger("watchdog")
T = TypeVar("T")
QUEUE_SETTINGS = (*registry.QUEUE_SETTINGS, QUEUE_REQUESTS)


@dataclass
class TickReport:
    active: int = 0
    redriven: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    batched_finished: list[str] = field(default_factory=list)
    poison_removed: list[str] = field(default_factory=list)
    #: restores (or rejected records) of the messages taken from the intake poison queue
    intake_poison: list[str] = field(default_factory=list)
    #: restores whose Azure job ended after their deadline failure (recorded on their timeline)
    late_outcomes: list[str] = field(default_factory=list)
    arm_calls: int = 0
    #: units of work that raised (logged with their traceback), as "<restore id or ->: <what>: <error type>"
    errors: list[str] = field(default_factory=list)


def _load(deps: Deps, entry: ActiveEntry) -> RestoreRecord | None:
    rec = deps.store.get(entry.restore_id)
    if rec is not None and rec.terminal:
        # the process died between the terminal write and the completion event: publish it now
        log.warning("restore %s ended %s without its completion event; publishing it", rec.id, rec.status.value)
        publish_completion(deps, rec)
    if rec is None or rec.terminal:
        deps.store.remove_active(entry.restore_id)
        return None
    return rec


def _isolated(report: TickReport, what: str, restore_id: str | None, fn: Callable[..., T], *args: Any) -> T | None:
    """Run one unit of the tick (one entry, one batch, one poison message); an error is logged and reported, and the
    tick goes on with the next unit: one bad entry never stops the safety net for the others."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - isolation is the point; the error is logged with its traceback
        log.exception("watchdog: %s failed%s: %s: %s", what, f" for restore {restore_id}" if restore_id else "",
                      type(exc).__name__, exc, extra={"restore_id": restore_id} if restore_id else None)
        report.errors.append(f"{restore_id or '-'}: {what}: {type(exc).__name__}")
        return None


def _sweep_one(deps: Deps, queue: str, msg: Received, report: TickReport) -> bool:
    try:
        env = Envelope.decode(msg.text)
    except PermanentError:
        return False
    rec = deps.store.get(env.restore_id)
    if rec is None or rec.status in (Status.FAILED, Status.REJECTED, Status.CANCELLED):
        return False
    deps.queues.delete(queue, msg)
    report.poison_removed.append(rec.id)
    log.warning("removed a poison %s message of restore %s (now %s): it was redelivered too often (host "
                "crashes or restarts), not failed", env.stage.value, rec.id, rec.status.value,
                extra={"restore_id": rec.id})
    return True


def sweep_poison(deps: Deps, queue: str, report: TickReport) -> int:
    """Remove poison stage messages that carry no failure: their restore succeeded, or is still active (the
    watchdog re-drives it). Messages of failed restores, and undecodable ones, stay for the operator (the
    poison-queue alert points at them; the restore row already says why it failed)."""
    removed = 0
    for msg in deps.queues.receive(queue, max_messages=32, visibility_seconds=30):
        if _isolated(report, f"poison sweep of {queue}", None, _sweep_one, deps, queue, msg, report):
            removed += 1
    return removed


def _record_intake_poison(deps: Deps, queue: str, msg: Received, report: TickReport) -> bool:
    rec = intake.from_poison(msg.text, message_id=msg.id, deps=deps)
    deps.queues.delete(queue, msg)
    report.intake_poison.append(rec.id)
    log.warning("handled a poison restore-requests message: restore %s (%s%s)", rec.id, rec.status.value,
                f", {rec.error_code}" if rec.error_code else "", extra={"restore_id": rec.id})
    return True


def sweep_intake_poison(deps: Deps, queue: str, report: TickReport) -> int:
    """Every message of the intake poison queue is recorded (:func:`intake.from_poison`: the restore it is, or a
    ``rejected`` record saying why it is not started), then removed: the record is its trace."""
    done = 0
    for msg in deps.queues.receive(queue, max_messages=32, visibility_seconds=30):
        if _isolated(report, f"poison sweep of {queue}", None, _record_intake_poison, deps, queue, msg, report):
            done += 1
    return done


def _gauges(deps: Deps, entries: list[ActiveEntry], report: TickReport) -> None:
    telemetry.set_active_restores(Counter(e.stage or e.status for e in entries))
    depths = {deps.settings.queue(s) + "-poison": deps.queues.depth(deps.settings.queue(s) + "-poison")
              for s in QUEUE_SETTINGS}
    for setting in QUEUE_SETTINGS:
        poison = deps.settings.queue(setting) + "-poison"
        sweep = sweep_intake_poison if setting == QUEUE_REQUESTS else sweep_poison
        if depths.get(poison):
            depths[poison] -= _isolated(report, f"poison sweep of {poison}", None, sweep, deps, poison, report) or 0
    telemetry.set_poison_depth(depths)


def _expire(deps: Deps, e: ActiveEntry, report: TickReport) -> None:
    rec = _load(deps, e)
    if rec is not None and rec.stage is not None:
        apply(deps, rec, rec.stage, deadline_result(rec, deps), traceparent=rec.traceparent)
        report.expired.append(e.restore_id)


def _apply_job(deps: Deps, rec: RestoreRecord, job: JobInfo) -> bool:
    apply(deps, rec, Stage.MONITOR, classify(job, rec, deps), traceparent=rec.traceparent)
    return True


def _apply_rehydrated(deps: Deps, rec: RestoreRecord, point: RecoveryPointInfo) -> bool:
    apply(deps, rec, Stage.WAIT, rehydrated(point, " (seen by the watchdog)"), traceparent=rec.traceparent)
    return True


def _check_crr_group(deps: Deps, group: list[ActiveEntry], report: TickReport, handled: set[str]) -> None:
    loaded = [_isolated(report, "loading", e.restore_id, _load, deps, e) for e in group]
    handled.update(e.restore_id for e, r in zip(group, loaded, strict=True) if r is None)
    recs = [r for r in loaded if r is not None and r.restore_location]
    if not recs:
        return
    try:
        jobs = deps.dp.fetch_cross_region_jobs(parse_vault_id(recs[0].vault_id or ""),
                                               secondary=recs[0].restore_location or "",
                                               primary=vault_info(recs[0]).location)
    except RestoreError as exc:
        log.warning("batched cross-region job check failed: %s", exc)
        return
    by_name = {j.name.lower(): j for j in jobs}
    for rec in recs:
        job = by_name.get(job_name(rec.azure_job_id or "").lower())
        if job is not None and job.terminal:
            handled.add(rec.id)
            if _isolated(report, "applying a batched job result", rec.id, _apply_job, deps, rec, job):
                report.batched_finished.append(rec.id)


def _check_rehydration_group(deps: Deps, recs: list[RestoreRecord], report: TickReport, handled: set[str]) -> None:
    try:
        points = {p.id.lower(): p for p in deps.dp.list_recovery_points(
            parse_backup_instance_id(recs[0].backup_instance_id or ""))}
    except RestoreError as exc:
        log.warning("batched rehydration check failed: %s", exc)
        return
    for rec in recs:
        point = points.get((rec.recovery_point_id or "").lower())
        if point is not None and point.rehydrated:
            handled.add(rec.id)
            if _isolated(report, "applying a batched rehydration result", rec.id, _apply_rehydrated, deps, rec,
                         point):
                report.batched_finished.append(rec.id)


def _redrive(deps: Deps, e: ActiveEntry, now: datetime, report: TickReport) -> None:
    rec = _load(deps, e)
    if rec is None or rec.stage is None:
        return
    send_stage(deps, rec)
    deps.store.put_active(ActiveEntry.of(rec.copy(next_check_at=now + timedelta(seconds=redrive_wait(deps, rec,
                                                                                                     now)))))
    report.redriven.append(rec.id)
    log.warning("re-drove %s at stage %s attempt %s (next check was due %s)", rec.id, rec.stage.value,
                rec.attempt, e.next_check_at.isoformat() if e.next_check_at else "-", extra={"restore_id": rec.id})


#: the longest wait between two re-drives of one restore, in re-drive slacks
REDRIVE_BACKOFF_CAP = 8


def redrive_wait(deps: Deps, rec: RestoreRecord, now: datetime) -> float:
    """Seconds until the next re-drive may follow this one: as long as the restore has already waited since its row
    last moved (at least the re-drive slack, at most ``REDRIVE_BACKOFF_CAP`` slacks). A restore re-driven again and
    again without moving is most likely queued behind a backlog (a saturated replay job), not lost, and every re-send
    adds one more message to that backlog: with a fixed interval the re-sends grow with the wait and can outrun the
    consumer (bench/chaos.py measured the job queues growing from 230 to 610 messages in 5 minutes for 10 restores);
    backing off makes them grow with its logarithm."""
    slack = deps.settings.redrive_slack_seconds
    waited = (now - rec.updated_at).total_seconds() if rec.updated_at else 0.0
    return min(max(slack, waited), REDRIVE_BACKOFF_CAP * slack)


def _batch_lead(deps: Deps) -> float:
    """How long before an entry's ``next_check_at`` (message due + in-flight time + pick-up slack) its rehydration
    is checked in the batch: from about when its own delayed check message is due."""
    return deps.settings.message_in_flight_seconds + deps.settings.poll_max_seconds


def expire_overdue(deps: Deps, entries: list[ActiveEntry], now: datetime, report: TickReport,
                   handled: set[str]) -> None:
    """Job 1: restores past their deadline end ``failed`` (after one last look at their Azure job)."""
    for e in entries:
        if now >= e.deadline:
            handled.add(e.restore_id)
            _isolated(report, "expiring", e.restore_id, _expire, deps, e, report)


def check_cross_region_jobs(deps: Deps, entries: list[ActiveEntry], report: TickReport, handled: set[str]) -> None:
    """Job 2a: cross-region jobs, one ``fetchCrossRegionRestoreJobs`` per vault (a vault has one secondary region)."""
    crr: dict[str, list[ActiveEntry]] = defaultdict(list)
    for e in entries:
        if e.restore_id not in handled and e.stage == Stage.MONITOR.value and e.region == Region.SECONDARY.value \
                and e.vault_id and e.azure_job_id:
            crr[e.vault_id.lower()].append(e)
    for group in crr.values():
        _isolated(report, "batched cross-region job check", None, _check_crr_group, deps, group, report, handled)


def _due_rehydration(deps: Deps, e: ActiveEntry, now: datetime, handled: set[str]) -> bool:
    return e.restore_id not in handled and e.stage == Stage.WAIT.value and not e.azure_job_id and \
        e.next_check_at is not None and now >= e.next_check_at - timedelta(seconds=_batch_lead(deps))


def check_rehydrations(deps: Deps, entries: list[ActiveEntry], now: datetime, report: TickReport,
                       handled: set[str]) -> None:
    """Job 2b: stand-alone rehydrations, one recovery-point list per backup instance."""
    by_bi: dict[str, list[RestoreRecord]] = defaultdict(list)
    for e in (e for e in entries if _due_rehydration(deps, e, now, handled)):
        rec = _isolated(report, "loading", e.restore_id, _load, deps, e)
        if rec is None:
            handled.add(e.restore_id)
        elif rec.backup_instance_id:
            by_bi[rec.backup_instance_id.lower()].append(rec)
    for recs in by_bi.values():
        _isolated(report, "batched rehydration check", None, _check_rehydration_group, deps, recs, report, handled)


def redrive_lost(deps: Deps, entries: list[ActiveEntry], now: datetime, report: TickReport,
                 handled: set[str]) -> None:
    """Job 3: re-drive restores whose next check is overdue (a lost or poisoned message)."""
    for e in entries:
        if e.restore_id in handled or e.next_check_at is None or now < e.next_check_at:
            continue
        _isolated(report, "re-driving", e.restore_id, _redrive, deps, e, now, report)


def record_late_outcomes(deps: Deps, report: TickReport) -> None:
    """Job 4: how Azure jobs left running by deadline failures ended (:mod:`restore_core.late_outcomes`)."""
    found = _isolated(report, "late outcomes", None, late_outcomes.check, deps)
    if found is not None:
        report.late_outcomes.extend(found[0])
        report.errors.extend(found[1])


def tick(deps: Deps, *, past_due: bool = False) -> TickReport:
    """One watchdog run: gauges and poison sweeps, then the jobs above, each entry on its own."""
    now = deps.clock()
    report = TickReport()
    entries = deps.store.active()
    report.active = len(entries)
    _gauges(deps, entries, report)
    calls_before = deps.dp.meter.total()
    handled: set[str] = set()
    expire_overdue(deps, entries, now, report, handled)
    check_cross_region_jobs(deps, entries, report, handled)
    check_rehydrations(deps, entries, now, report, handled)
    redrive_lost(deps, entries, now, report, handled)
    record_late_outcomes(deps, report)
    report.arm_calls = deps.dp.meter.total() - calls_before
    return report
