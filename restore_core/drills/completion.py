"""What a drill run says when its result is known: one ``drill.run.finished`` event on the product's events queue
(``RESTORE_QUEUE_EVENTS``, beside ``restore.completed``) and one ``drill finished`` log record (Application Insights
``traces``, ``customDimensions.event == "drill.finished"``: the workbook's drill charts and the drill alert).

**Exactly once in effect.** The run row carries the event's marker, ``completion_event``: ``{id, claimed_at,
published_at}``. It is written in the same ETag-guarded update that records the run's result (:func:`claim`), so
only the writer that wins that update publishes, and a retried hook or tick finds the result there and publishes
nothing. After the send, ``published_at`` is set. A writer that dies between the two leaves a *stale claim*: the drill
timer takes it over once it is :data:`CLAIM_STALE_AFTER` old (:func:`catch_up`, an ETag-guarded re-claim, so one
tick wins) and publishes. Only a claimant that takes longer than that between its claim and its send could make a
second publication; for that case every publication of a run carries the same ``event_id`` (a UUIDv5 of the run
key), and consumers deduplicate on it, as for ``restore.completed``. A run stays in the open-run index until its event
is published (:func:`restore_core.drills.store.update_run`).

The event fits a queue message: its strings are ids, codes and at most 20 check names (the definition's bounds), the
error text is clipped to 4 KiB; should it still be too large, every string is clipped to 1 KiB (``"truncated"``).
An event the queue refuses for good (a 4xx) is logged as an error and marked as not published (``refused``), so the
run goes on; the run row and the evidence keep every field.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from .. import telemetry
from ..deps import Deps
from ..errors import PermanentError
from ..events import EVENT_MAX_BYTES
from ..limits import CODE_COST, TEXT_COST, clip, clip_leaves
from ..records import iso, parse_time
from . import store

log = telemetry.get_logger("drills")

EVENT_TYPE = "drill.run.finished"
EVENT_VERSION = 1
LOG_EVENT = "drill.finished"
#: Namespace of the UUIDv5 event ids (fixed forever: changing it changes every id).
EVENT_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:restore-orchestrator:event:" + EVENT_TYPE)
#: A claim not published after this long is taken over by the drill timer (its writer died before the send).
CLAIM_STALE_AFTER = timedelta(minutes=5)
MARKER = "completion_event"


def event_id(run_key: str) -> str:
    """The id of a run's completion event: the same for every publication of it."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, run_key))


def claim(run: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The marker a result-writing update puts on the run row: this writer publishes the event."""
    return {"id": event_id(run["run_key"]), "claimed_at": iso(now), "published_at": None}


def pending(run: dict[str, Any]) -> bool:
    """Claimed and not yet published."""
    return store.event_pending(run)


def facts(run: dict[str, Any]) -> dict[str, Any]:
    """The facts of a finished run, from its row: what the event and the log record both carry."""
    res = run.get("result") or {}
    checks = res.get("checks") or []
    rto, target = res.get("rto_seconds"), run.get("rto_target_seconds", res.get("rto_target_seconds"))
    return {
        "drill_id": run["drill_id"], "run_key": run["run_key"], "restore_id": run.get("restore_id"),
        "backup_instance_id": run.get("backup_instance_id"), "target_server": run.get("target_server"),
        "scheduled_at": run.get("scheduled_at"), "finished_at": run.get("finished_at"),
        "manual": bool(run.get("manual")), "late_by_seconds": run.get("late_by_seconds", 0),
        "passed": bool(res.get("passed")), "status": res.get("status"),
        "error_code": clip(str(res["error_code"]), CODE_COST) if res.get("error_code") else None,
        "rto_seconds": rto, "rto_target_seconds": target,
        "rto_within_target": res.get("rto_within_target", None if rto is None or target is None
                                     else float(rto) <= float(target)) if rto is not None else None,
        "rpo_seconds": res.get("rpo_seconds"),
        "checks_passed": sum(1 for c in checks if c.get("ok")),
        "checks_failed": sum(1 for c in checks if not c.get("ok")),
        "evidence_blob": run.get("evidence_blob"), "cleanup_status": (run.get("cleanup") or {}).get("status"),
    }


def build_event(run: dict[str, Any]) -> dict[str, Any]:
    res = run.get("result") or {}
    point = res.get("recovery_point") or {}
    return {"type": EVENT_TYPE, "schema_version": EVENT_VERSION, "event_id": event_id(run["run_key"]),
            **facts(run),
            "recovery_point": {"id": point.get("id"), "time": point.get("time"), "tier": point.get("tier")},
            "failed_checks": [c.get("name") for c in res.get("checks") or [] if not c.get("ok")][:20],
            "error": clip(str(run["error"]), TEXT_COST) if run.get("error") else None}


def encode_event(run: dict[str, Any]) -> str:
    """The event's JSON, within :data:`restore_core.events.EVENT_MAX_BYTES`."""
    event = build_event(run)
    text = json.dumps(event, separators=(",", ":"))
    if len(text) <= EVENT_MAX_BYTES:
        return text
    return json.dumps({**clip_leaves(event, 1024), "truncated": True}, separators=(",", ":"))


def log_fields(run: dict[str, Any]) -> dict[str, Any]:
    """The ``drill finished`` log record's fields (``traces.customDimensions``): the event's facts as text and numbers
    (absent values as ""), plus ``drill_outcome`` (passed/failed) and ``drill_rto`` (within/over, "" when the run
    never restored) that the drill alert reads. No secret: ids, codes, counts and durations only."""
    f = facts(run)
    within = f.pop("rto_within_target")
    out: dict[str, Any] = {"event": LOG_EVENT, "drill_outcome": "passed" if f.pop("passed") else "failed",
                           "drill_rto": "" if within is None else ("within" if within else "over")}
    for k, v in f.items():
        out[k] = ("true" if v else "false") if isinstance(v, bool) else ("" if v is None else v)
    return out


def log_finished(run: dict[str, Any]) -> None:
    """The ``drill finished`` record: info when the run passed within its RTO target, else error (the alert)."""
    fields = log_fields(run)
    ok = fields["drill_outcome"] == "passed" and fields["drill_rto"] == "within"
    (log.info if ok else log.error)(
        "drill finished: %s run %s %s, RTO %ss (target %ss), RPO %ss%s", run["drill_id"], run["run_key"],
        fields["drill_outcome"], fields["rto_seconds"], fields["rto_target_seconds"], fields["rpo_seconds"],
        f": {clip(str(run['error']), TEXT_COST)}" if run.get("error") else "", extra=fields)


def announce(deps: Deps, run: dict[str, Any]) -> None:
    """After the winning write of a run's result (with its claim): the log record, then the event. Never raises: a
    send that fails leaves the claim, and the drill timer publishes once it is stale."""
    log_finished(run)
    try:
        publish(deps, run)
    except Exception:  # noqa: BLE001 - the run is recorded; the timer catches up on the event
        log.exception("drill %s run %s: the completion event could not be sent; the drill timer will send it",
                      run["drill_id"], run["run_key"], extra={"drill_id": run["drill_id"]})


def publish(deps: Deps, run: dict[str, Any]) -> None:
    """Send the event of ``run`` (claimed by this writer), then mark it published on the row."""
    refused = False
    try:
        deps.queues.send(deps.settings.queue("RESTORE_QUEUE_EVENTS"), encode_event(run))
    except PermanentError as exc:
        refused = True
        log.error("the completion event of drill run %s was refused by the queue and is dropped (the run row and the "
                  "evidence keep the result): %s", run["run_key"], exc, extra={"drill_id": run["drill_id"]})
    _mark_published(deps, run, refused=refused)


def _mark_published(deps: Deps, run: dict[str, Any], *, refused: bool) -> None:
    for _ in range(5):  # another writer (the clean-up) may change the row in between: read again, set the mark
        found = store.get_run(deps, run["drill_id"], run["run_key"])
        if found is None or not pending(found[0]):
            return
        current, etag = found
        marker = {**current[MARKER], "published_at": iso(deps.clock())}
        if refused:
            marker["refused"] = True
        if store.update_run(deps, {**current, MARKER: marker}, etag) is not None:
            return
    raise RuntimeError(f"drill run {run['run_key']}: could not mark its completion event published")


def stale(run: dict[str, Any], now: datetime) -> bool:
    """A claim nobody published within :data:`CLAIM_STALE_AFTER` (its writer died)."""
    if not pending(run):
        return False
    claimed = parse_time(run[MARKER].get("claimed_at"))
    return claimed is None or now - claimed >= CLAIM_STALE_AFTER


def catch_up(deps: Deps, run: dict[str, Any], etag: str) -> bool:
    """The drill timer's take-over of a stale claim: re-claim (ETag-guarded: one tick wins), then publish. True when
    the run's event was pending (the caller handles the run's next step on a later tick)."""
    now = deps.clock()
    if not pending(run):
        return False
    if not stale(run, now):
        return True
    taken = {**run, MARKER: {**run[MARKER], "claimed_at": iso(now)}}
    if store.update_run(deps, taken, etag) is None:
        return True  # another writer was first
    log.warning("drill %s run %s: publishing the completion event its writer did not send", run["drill_id"],
                run["run_key"], extra={"drill_id": run["drill_id"], "restore_id": run.get("restore_id")})
    log_finished(taken)  # its writer may have died before the record too (the workbook keeps one per run key)
    publish(deps, taken)
    return True


def note_overrun(deps: Deps, run: dict[str, Any], etag: str, now: datetime) -> None:
    """A run still restoring past its RTO target: one error record with ``drill_rto`` ``over`` (the drill alert fires
    now, not when the restore ends or reaches its deadline), once per run (``rto_overrun_at`` on the row)."""
    started, target = parse_time(run.get("started_at")), run.get("rto_target_seconds")
    if run.get("rto_overrun_at") or started is None or target is None:
        return
    elapsed = (now - started).total_seconds()
    if elapsed <= float(target) or store.update_run(deps, {**run, "rto_overrun_at": iso(now)}, etag) is None:
        return
    log.error("drill %s run %s is still restoring after %.0fs, over its RTO target (%ss)", run["drill_id"],
              run["run_key"], elapsed, target,
              extra={"event": "drill.overrun", "drill_id": run["drill_id"], "run_key": run["run_key"],
                     "restore_id": run.get("restore_id") or "", "drill_rto": "over",
                     "rto_seconds": round(elapsed, 3), "rto_target_seconds": target})
