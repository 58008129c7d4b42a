"""The drill timer (``RESTORE_DRILL_SCHEDULE``): evaluates due drills, starts their runs as ordinary restores into
the drill's server, follows the runs to their evidence and their clean-up.

Each tick, for each enabled drill:
1. the schedule's latest occurrence at or before now, if it is not older than the definition's last change (a new or
   changed drill never fires for the past). Only the latest occurrence counts: after downtime a missed schedule runs
   once, late, and its evidence says by how much (``late_by_seconds``);
2. the occurrence's plan, written once (``meta-drillplan``): the backup instances (explicit, or listed from the vaults
   and filtered by datasource name) and each one's due time, spread evenly over the start window;
3. every planned instance that is due, not started and within the throttles (``max_concurrent`` open restores per
   drill, ``RESTORE_DRILL_MAX_STARTS_PER_TICK`` starts per tick, so the fleet stays inside ARM's budget) is started:
   the run row first (with the chosen recovery point), then the restore through :func:`restore_core.intake.submit`
   with source ``drill``, caller :data:`restore_core.guards.DRILL` and idempotency key ``drill:<run key>``. A re-run
   tick finds the run row and submits the same request again under the same key: nothing starts twice.

Then it follows the open runs: a run whose restore ended without evidence gets it (the finish hook was lost); a run
whose validation window has passed is cleaned up (:mod:`.cleanup`); a clean-up that fails is retried on the next
tick and logged as an error (the alert). A run still restoring past its RTO target is logged as such, once (the
alert); a run whose completion event was claimed but never sent gets it (:mod:`.completion`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .. import guards, telemetry
from ..arm_ids import parse_backup_instance_id, parse_vault_id
from ..backup import RecoveryPointInfo
from ..deps import Deps
from ..errors import AzureRejection, RequestError
from ..intake import submit
from ..models import Region, RestoreRequest
from ..records import iso, parse_time
from ..regions import paired_region
from . import cleanup, completion, evidence, store
from .model import DrillDefinition, PointSelect, PointSelection

log = telemetry.get_logger("drills")
#: a run started this much after its due time is "late" (its evidence says so)
LATE_AFTER = timedelta(minutes=2)


@dataclass
class DrillTickReport:
    started: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)
    cleanup_failed: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------ pure decisions
def due_occurrence(d: DrillDefinition, now: datetime, since: datetime) -> datetime | None:
    """The occurrence to run now: the latest at or before ``now``, unless it is before ``since`` (the definition's
    last change)."""
    at = d.cron().previous(now)
    return at if at is not None and at >= since.replace(microsecond=0) else None


def spread(instances: list[str], scheduled: datetime, window_minutes: float) -> list[tuple[str, datetime]]:
    """Each instance (sorted) with its due time, evenly over the start window: n instances start at
    scheduled + i * window / n."""
    ordered = sorted(instances, key=str.lower)
    step = timedelta(minutes=window_minutes) / len(ordered) if ordered else timedelta(0)
    return [(bi, scheduled + step * i) for i, bi in enumerate(ordered)]


def select_point(points: list[RecoveryPointInfo], sel: PointSelection, *, now: datetime,
                 seed: str) -> RecoveryPointInfo | None:
    """The recovery point a run restores: complete points only (a partial point is no proof); ``latest``, ``oldest``
    retained, or ``random`` among those of the last ``within_days`` days — the same for the same ``seed`` (the run
    key), so a re-run tick picks the same point."""
    usable = sorted((p for p in points if (p.state or "Completed") != "Partial"), key=lambda p: (p.time, p.id))
    if sel.select == PointSelect.LATEST:
        return usable[-1] if usable else None
    if sel.select == PointSelect.OLDEST:
        return usable[0] if usable else None
    assert sel.within_days is not None
    recent = [p for p in usable if p.time >= now - timedelta(days=sel.within_days)]
    return random.Random(seed).choice(recent) if recent else None  # noqa: S311 - a sample, not a secret


def request_for(d: DrillDefinition, backup_instance_id: str, point_id: str, key: str) -> dict[str, Any]:
    """The restore request of a run: the drill's server, the run's database suffix, the drill's checks."""
    suffix = d.target.suffix_for(store.run_token(key))
    target: dict[str, Any] = {"kind": "server", "server_id": d.target.server_id, "suffix": suffix,
                              "roles": d.target.roles.value, "auth": d.target.auth.model_dump(mode="json"),
                              "checks": [c.for_run(suffix).model_dump(mode="json") for c in d.checks]}
    if d.target.owner:
        target["owner"] = d.target.owner
    body: dict[str, Any] = {"backup_instance": {"id": backup_instance_id}, "recovery_point": {"id": point_id},
                            "target": target, "region": d.region.value,
                            "description": f"restore drill {d.id} run {key}"}
    if d.deadline_hours:
        body["deadline_hours"] = d.deadline_hours
    return body


# ------------------------------------------------------------------------------------------------- the plan
def _instances(deps: Deps, d: DrillDefinition) -> list[str]:
    sel = d.backup_instances
    if sel.ids:
        return list(sel.ids)
    found: list[str] = []
    for vault in sel.vaults or []:
        for bi in deps.dp.list_backup_instances(parse_vault_id(vault)):
            if sel.matches(bi.datasource_id.rstrip("/").rsplit("/", 1)[-1]):
                found.append(bi.id)
    return found


def plan_for(deps: Deps, d: DrillDefinition, scheduled: datetime) -> dict[str, Any]:
    plan = store.get_plan(deps, d.id, scheduled)
    if plan is not None:
        return plan
    due = spread(_instances(deps, d), scheduled, d.start_window_minutes)
    return store.put_plan(deps, d.id, scheduled, {"scheduled_at": iso(scheduled),
                                                  "due": [[bi, iso(t)] for bi, t in due]})


# ------------------------------------------------------------------------------------------------ starting
def points_of(deps: Deps, bi: str, region: Region) -> list[RecoveryPointInfo]:
    """The recovery points a run chooses from: the primary list, or for ``region: secondary`` (Cross Region Restore)
    the secondary region's own list (``fetchSecondaryRecoveryPoints``), as validation will look the point up there.
    A vault without Cross Region Restore or a secondary region refuses (a failed run with the reason)."""
    ref = parse_backup_instance_id(bi)
    if region != Region.SECONDARY:
        return deps.dp.list_recovery_points(ref)
    vault = deps.dp.get_vault(ref.vault)
    secondary = vault.secondary_region or paired_region(vault.location)
    if not vault.crr_enabled or secondary is None:
        raise AzureRejection("CrossRegionRestoreNotEnabled",
                             f"vault {ref.vault.vault} has no secondary region to restore from (Cross Region Restore "
                             f"{'enabled' if vault.crr_enabled else 'disabled'}, redundancy {vault.redundancy})",
                             fix="set the drill's region to primary, or enable Cross Region Restore on a "
                                 "geo-redundant vault")
    return deps.dp.fetch_secondary_recovery_points(ref, secondary=secondary, primary=vault.location)


def _new_run(deps: Deps, d: DrillDefinition, bi: str, scheduled: datetime, due: datetime, key: str,
             *, manual: bool) -> dict[str, Any]:
    now = deps.clock()
    late = (now - due).total_seconds() if now - due > LATE_AFTER else 0
    run: dict[str, Any] = {
        "run_key": key, "drill_id": d.id, "state": "starting", "manual": manual, "scheduled_at": iso(scheduled),
        "due_at": iso(due), "started_at": iso(now), "late_by_seconds": round(late, 1), "backup_instance_id": bi,
        "target_server": d.target.server_id, "rto_target_seconds": d.rto_target_minutes * 60,
        "validation_window_seconds": d.validation_window_minutes * 60,
        "selection": d.recovery_point.model_dump(mode="json", exclude_none=True)}
    try:
        points = points_of(deps, bi, d.region)
    except AzureRejection as exc:  # Azure refuses (e.g. the instance is gone): a failed run; a transient error raises
        return {**run, "state": "error", "error": f"{exc.code}: {exc.message}"}
    point = select_point(points, d.recovery_point, now=now, seed=key)
    if point is None:
        return {**run, "state": "error", "error": f"NoRecoveryPoint: no complete recovery point matches "
                                                  f"{d.recovery_point.select.value}"}
    return {**run, "request": request_for(d, bi, point.id, key)}


def start_run(deps: Deps, d: DrillDefinition, bi: str, scheduled: datetime, due: datetime, *,
              manual: bool = False) -> dict[str, Any]:
    """Start (or find) the run of ``bi`` for ``scheduled``: the run row first, then the restore, idempotently."""
    key = store.run_key(d.id, scheduled, bi)
    found = store.get_run(deps, d.id, key)
    if found is None:
        run = _new_run(deps, d, bi, scheduled, due, key, manual=manual)
        if run["state"] == "error":  # nothing to restore: a failed run, with its reason and evidence
            return _fail_before_restore(deps, run, run["error"])
        if not store.insert_run(deps, run):
            found = store.get_run(deps, d.id, key)
    if found is not None:
        run, _ = found
        if run["state"] != "starting":
            return run
    return _submit(deps, run)


def _submit(deps: Deps, run: dict[str, Any]) -> dict[str, Any]:
    found = store.get_run(deps, run["drill_id"], run["run_key"])
    assert found is not None
    run, etag = found
    try:
        req = RestoreRequest.model_validate(run["request"])
        rec, _ = submit(req, source="drill", deps=deps, idempotency_key=store.idempotency_key(run["run_key"]),
                        caller=guards.DRILL)
    except RequestError as exc:
        return _fail_before_restore(deps, run, f"{exc.code}: {exc.message}", etag=etag)
    run.update(state="running", restore_id=rec.id)
    store.update_run(deps, run, etag)
    log.info("drill %s started run %s: restore %s", run["drill_id"], run["run_key"], rec.id,
             extra={"restore_id": rec.id, "drill_id": run["drill_id"]})
    if rec.terminal:  # the same key found a restore that already ended: its evidence now
        evidence.record_finish(deps, rec)
    return run


def _fail_before_restore(deps: Deps, run: dict[str, Any], reason: str, *, etag: str | None = None) -> dict[str, Any]:
    """A run that could not start a restore: a failed run with its reason, evidence, and nothing to clean."""
    now = deps.clock()
    doc = {"schema": evidence.SCHEMA, **{k: run.get(k) for k in ("drill_id", "run_key", "scheduled_at", "due_at",
                                                                  "backup_instance_id", "late_by_seconds")},
           "restore_id": None, "outcome": {"status": "not-started", "passed": False, "error_message": reason},
           "cleanup": {"status": "done", "note": "nothing was restored"},
           "product_version": evidence.product_version(), "written_at": iso(now)}
    name = evidence.blob_prefix(run) + "evidence.json"
    if deps.evidence is not None:
        deps.evidence.put_once(name, doc)
    run = {**run, "state": "done", "evidence_blob": name, "error": reason,
           "result": {"passed": False, "status": "not-started", "error_code": reason.split(":", 1)[0]},
           "cleanup": {"status": "done", "note": "nothing was restored"},
           "completion_event": completion.claim(run, now)}
    written = store.insert_run(deps, run) if etag is None else store.update_run(deps, run, etag) is not None
    if written:  # the open-index row goes once the event is out (store.update_run)
        completion.announce(deps, run)  # the "drill finished" record (failed: the alert) and the event
    return run


def run_now(deps: Deps, d: DrillDefinition) -> list[dict[str, Any]]:
    """``POST /api/drills/{id}/run``: every instance of the drill at once, outside the schedule (``manual``)."""
    now = deps.clock().replace(microsecond=0)
    return [start_run(deps, d, bi, now, now, manual=True) for bi in sorted(_instances(deps, d), key=str.lower)]


# ---------------------------------------------------------------------------------------------------- a tick
def _open_count(deps: Deps, drill_id: str, open_runs: list[tuple[str, str]]) -> int:
    n = 0
    for did, key in open_runs:
        if did == drill_id:
            found = store.get_run(deps, did, key)
            n += bool(found and found[0].get("state") in ("starting", "running"))
    return n


def _evaluate(deps: Deps, sd: store.StoredDrill, now: datetime, open_runs: list[tuple[str, str]],
              report: DrillTickReport) -> None:
    d = sd.definition
    scheduled = due_occurrence(d, now, sd.updated_at) if d.enabled else None
    if scheduled is None:
        return
    plan = plan_for(deps, d, scheduled)
    if plan.get("complete"):
        return
    running = _open_count(deps, d.id, open_runs)
    pending = 0
    for bi, due_text in plan["due"]:
        due = parse_time(due_text)
        assert due is not None
        if store.get_run(deps, d.id, store.run_key(d.id, scheduled, bi)) is not None:
            continue
        pending += 1
        if due > now:
            continue
        if running >= d.max_concurrent or len(report.started) >= deps.settings.drills.max_starts_per_tick:
            report.deferred.append(store.run_key(d.id, scheduled, bi))
            continue
        run = start_run(deps, d, bi, scheduled, due)
        report.started.append(run["run_key"])
        pending -= 1
        running += run["state"] in ("starting", "running")
    if pending == 0:
        store.mark_plan_complete(deps, d.id, scheduled, plan)


def _follow(deps: Deps, drill_id: str, key: str, now: datetime, report: DrillTickReport) -> None:
    found = store.get_run(deps, drill_id, key)
    if found is None:
        deps.store.delete_meta(store.OPEN, key)
        return
    run, etag = found
    if completion.catch_up(deps, run, etag):  # an event its writer did not send: sent first, the rest next tick
        return
    if run["state"] == "starting":
        _submit(deps, run)
    elif run["state"] == "running":
        rec = deps.store.get(run["restore_id"])
        if rec is not None and rec.terminal:
            evidence.record_finish(deps, rec)
            report.evidence.append(key)
        else:
            completion.note_overrun(deps, run, etag, now)  # still restoring past its RTO target: the alert
    elif run["state"] == "validating":
        after = parse_time(run.get("cleanup_after"))
        if after is None or now >= after:
            _clean(deps, run, etag, report)
    elif run["state"] == "done":
        deps.store.delete_meta(store.OPEN, key)


def _clean(deps: Deps, run: dict[str, Any], etag: str, report: DrillTickReport) -> None:
    attempts = int((run.get("cleanup") or {}).get("attempts", 0)) + 1
    try:
        done = cleanup.clean(deps, run)
    except Exception as exc:  # noqa: BLE001 - recorded on the run, retried next tick, alerted
        error = f"{type(exc).__name__}: {exc}"
        run["cleanup"] = {"status": "failed", "attempts": attempts, "error": error[:1000], "at": iso(deps.clock())}
        store.update_run(deps, run, etag)
        report.cleanup_failed.append(run["run_key"])
        log.error("drill %s run %s: clean-up failed (attempt %d, retried next tick): %s", run["drill_id"],
                  run["run_key"], attempts, error, extra={"drill_id": run["drill_id"], "drill_cleanup": "failed",
                                                          "restore_id": run.get("restore_id")})
        return
    done = {**done, "attempts": attempts, "at": iso(deps.clock())}
    blob = evidence.record_cleanup(deps, run, done)
    run.update(state="done", cleanup={**done, "evidence_blob": blob})
    store.update_run(deps, run, etag)
    report.cleaned.append(run["run_key"])
    log.info("drill %s run %s cleaned up: dropped %s", run["drill_id"], run["run_key"], done.get("dropped"),
             extra={"drill_id": run["drill_id"], "restore_id": run.get("restore_id")})


def tick(deps: Deps) -> DrillTickReport:
    """One pass of the drill timer; each drill and each open run on its own (one failure never stops the others)."""
    report = DrillTickReport()
    now = deps.clock()
    open_runs = store.open_runs(deps)
    for sd in store.list_drills(deps):
        _isolated(report, sd.definition.id, _evaluate, deps, sd, now, open_runs, report)
    for drill_id, key in store.open_runs(deps):
        _isolated(report, key, _follow, deps, drill_id, key, now, report)
    return report


def _isolated(report: DrillTickReport, what: str, fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except Exception as exc:  # noqa: BLE001 - isolation is the point; logged with its traceback
        log.exception("drill timer: %s failed: %s", what, exc)
        report.errors.append(f"{what}: {type(exc).__name__}")

