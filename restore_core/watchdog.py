"""Timer watchdog (schedule ``RESTORE_WATCHDOG_SCHEDULE``): the safety net and the batcher.

Reads only the ``active`` index partition, so its cost grows with active restores, never with history. Each tick:
- fails restores past their deadline, with the reason;
- re-drives restores whose ``next_check_at`` is overdue (a lost, delayed or poisoned message): it re-sends the
  message for the row's current stage and attempt — a duplicate is a no-op thanks to the claims;
- batches checks that are cheaper per vault than per restore: one ``fetchCrossRegionRestoreJobs`` per vault and
  secondary region for cross-region jobs, one recovery-point list per backup instance for rehydrations; results
  are applied directly (the in-flight self-message then finds itself stale);
- records the ``restore.active`` (by stage) and ``restore.poison.depth`` (by queue) gauges.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

from . import telemetry
from .arm_ids import job_name, parse_backup_instance_id, parse_vault_id
from .deps import Deps
from .errors import PermanentError, RestoreError
from .events import publish_completion
from .messages import Envelope
from .models import Region, Stage, Status
from .pipeline import STAGE_QUEUE_SETTING, _deadline_result, apply, send_stage
from .records import ActiveEntry, RestoreRecord
from .stages.common import vault_info
from .stages.monitor import classify
from .stages.wait import rehydrated

log = telemetry.get_logger("watchdog")
QUEUE_SETTINGS = (*STAGE_QUEUE_SETTING.values(), "RESTORE_QUEUE_REQUESTS")


@dataclass
class TickReport:
    active: int = 0
    redriven: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    batched_finished: list[str] = field(default_factory=list)
    poison_removed: list[str] = field(default_factory=list)
    arm_calls: int = 0


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


def sweep_poison(deps: Deps, queue: str, report: TickReport) -> int:
    """Remove poison stage messages that carry no failure: their restore succeeded, or is still active (the
    watchdog re-drives it). Messages of failed restores, and undecodable ones, stay for the operator (the
    poison-queue alert points at them; the restore row already says why it failed)."""
    removed = 0
    for msg in deps.queues.receive(queue, max_messages=32, visibility_seconds=30):
        try:
            env = Envelope.decode(msg.text)
        except PermanentError:
            continue
        rec = deps.store.get(env.restore_id)
        if rec is None or rec.status in (Status.FAILED, Status.REJECTED, Status.CANCELLED):
            continue
        deps.queues.delete(queue, msg)
        removed += 1
        report.poison_removed.append(rec.id)
        log.warning("removed a poison %s message of restore %s (now %s): it was redelivered too often (host "
                    "crashes or restarts), not failed", env.stage.value, rec.id, rec.status.value,
                    extra={"restore_id": rec.id})
    return removed


def _batch_lead(deps: Deps) -> float:
    """How long before an entry's ``next_check_at`` (message due + in-flight time + pick-up slack) its rehydration
    is checked in the batch: from about when its own delayed check message is due."""
    return deps.settings.message_in_flight_seconds + deps.settings.poll_max_seconds


def tick(deps: Deps, *, past_due: bool = False) -> TickReport:
    now = deps.clock()
    report = TickReport()
    entries = deps.store.active()
    report.active = len(entries)
    telemetry.set_active_restores(Counter(e.stage or e.status for e in entries))
    depths = {deps.settings.queue(s) + "-poison": deps.queues.depth(deps.settings.queue(s) + "-poison")
              for s in QUEUE_SETTINGS}
    for setting in STAGE_QUEUE_SETTING.values():
        poison = deps.settings.queue(setting) + "-poison"
        if depths.get(poison):
            depths[poison] -= sweep_poison(deps, poison, report)
    telemetry.set_poison_depth(depths)
    calls_before = deps.dp.meter.total()
    handled: set[str] = set()

    # 1. deadlines
    for e in entries:
        if now >= e.deadline:
            rec = _load(deps, e)
            if rec is not None and rec.stage is not None:
                apply(deps, rec, rec.stage, _deadline_result(rec), traceparent=rec.traceparent)
                report.expired.append(e.restore_id)
            handled.add(e.restore_id)

    # 2. batched checks, per vault (CRR jobs) and per backup instance (rehydrations)
    crr: dict[str, list[ActiveEntry]] = defaultdict(list)  # per vault (a vault has one secondary region)
    for e in entries:
        if e.restore_id not in handled and e.stage == Stage.MONITOR.value and e.region == Region.SECONDARY.value \
                and e.vault_id and e.azure_job_id:
            crr[e.vault_id.lower()].append(e)
    for group in crr.values():
        recs = [r for r in (_load(deps, e) for e in group) if r is not None and r.restore_location]
        if not recs:
            continue
        try:
            jobs = deps.dp.fetch_cross_region_jobs(parse_vault_id(recs[0].vault_id or ""),
                                                   secondary=recs[0].restore_location or "",
                                                   primary=vault_info(recs[0]).location)
        except RestoreError as exc:
            log.warning("batched cross-region job check failed: %s", exc)
            continue
        by_name = {j.name.lower(): j for j in jobs}
        for rec in recs:
            job = by_name.get(job_name(rec.azure_job_id or "").lower())
            if job is not None and job.terminal:
                apply(deps, rec, Stage.MONITOR, classify(job, rec, deps), traceparent=rec.traceparent)
                report.batched_finished.append(rec.id)
                handled.add(rec.id)

    by_bi: dict[str, list[RestoreRecord]] = defaultdict(list)
    for e in entries:
        if e.restore_id not in handled and e.stage == Stage.WAIT.value and e.next_check_at and \
                now >= e.next_check_at - timedelta(seconds=_batch_lead(deps)):
            rec = _load(deps, e)
            if rec is not None and rec.backup_instance_id:
                by_bi[rec.backup_instance_id.lower()].append(rec)
    for recs in by_bi.values():
        try:
            points = {p.id.lower(): p for p in deps.dp.list_recovery_points(
                parse_backup_instance_id(recs[0].backup_instance_id or ""))}
        except RestoreError as exc:
            log.warning("batched rehydration check failed: %s", exc)
            continue
        for rec in recs:
            point = points.get((rec.recovery_point_id or "").lower())
            if point is not None and point.rehydrated:
                apply(deps, rec, Stage.WAIT, rehydrated(point, " (seen by the watchdog)"),
                      traceparent=rec.traceparent)
                report.batched_finished.append(rec.id)
                handled.add(rec.id)

    # 3. re-drive overdue restores (lost or poisoned messages)
    for e in entries:
        if e.restore_id in handled or e.next_check_at is None or now < e.next_check_at:
            continue
        rec = _load(deps, e)
        if rec is None or rec.stage is None:
            continue
        send_stage(deps, rec)
        slack = deps.settings.redrive_slack_seconds
        deps.store.put_active(ActiveEntry.of(rec.copy(next_check_at=now + timedelta(seconds=slack))))
        report.redriven.append(rec.id)
        log.warning("re-drove %s at stage %s attempt %s (next check was due %s)", rec.id, rec.stage.value,
                    rec.attempt, e.next_check_at.isoformat(), extra={"restore_id": rec.id})
    report.arm_calls = deps.dp.meter.total() - calls_before
    return report
