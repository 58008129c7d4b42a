"""The evidence of a drill run: an immutable JSON document per run, written to a write-once blob container
(``RESTORE_DRILL_EVIDENCE_CONTAINER``; infra puts a time-based immutability policy on it), and the run's row.

Two documents per run, each written once and never changed (blob names under ``<drill id>/<run key>/``):
``evidence.json`` when the restore ends — recovery point id, time and tier; the point's age when the run started
(RPO observed); time per stage and in total (RTO observed) against the target; the restore's outcome and the check
results of its verify stage; the clean-up planned; the product version — and ``cleanup.json`` when the clean-up is
done (what was dropped). A write that finds the document already there (a retry) keeps the first one.

:func:`on_restore_finished` is called by :func:`restore_core.pipeline.finish` for every restore whose source is
``drill``; the scheduler calls :func:`record_finish` again for a run whose restore ended without it (a crash between
the terminal write and the hook), so no run stays without evidence. The write that records the result also claims
the run's completion event and its ``drill finished`` log record (:mod:`.completion`): a retry publishes nothing.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta
from importlib import metadata
from typing import Any

from .. import telemetry
from ..deps import Deps
from ..models import Status
from ..records import RestoreRecord, iso, parse_time
from . import completion, store
from .ports import EvidenceSink

log = telemetry.get_logger("drills")
SCHEMA = "drill-evidence/2026-12-01"


class BlobEvidenceSink:
    """The adapter: a blob container (``azure.storage.blob.ContainerClient``), created if missing."""

    def __init__(self, container: Any) -> None:
        self._c = container
        self._ensured = False

    def _ensure(self) -> None:
        from azure.core.exceptions import ResourceExistsError

        if not self._ensured:
            try:
                self._c.create_container()
            except ResourceExistsError:
                pass
            self._ensured = True

    def put_once(self, name: str, document: dict[str, Any]) -> bool:
        from azure.core.exceptions import ResourceExistsError
        from azure.storage.blob import ContentSettings

        self._ensure()
        data = json.dumps(document, indent=1, sort_keys=True).encode()
        try:
            self._c.upload_blob(name, data, overwrite=False,
                                content_settings=ContentSettings(content_type="application/json"))
        except ResourceExistsError:
            return False
        return True

    def get(self, name: str) -> dict[str, Any] | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            value: dict[str, Any] = json.loads(self._c.download_blob(name).readall())
        except ResourceNotFoundError:
            return None
        return value


class MemoryEvidenceSink:
    """In-memory twin (unit tests): refuses to overwrite, as the immutable container does."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.docs: dict[str, dict[str, Any]] = {}

    def put_once(self, name: str, document: dict[str, Any]) -> bool:
        with self._lock:
            if name in self.docs:
                return False
            self.docs[name] = json.loads(json.dumps(document))
            return True

    def get(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self.docs.get(name)


def product_version() -> str:
    try:
        return metadata.version("pg-restore-orchestrator")
    except metadata.PackageNotFoundError:
        return "unknown"


def blob_prefix(run: dict[str, Any]) -> str:
    return f"{run['drill_id']}/{run['run_key'].replace(':', '_')}/"


def _seconds(a: datetime | None, b: datetime | None) -> float | None:
    return round((b - a).total_seconds(), 3) if a and b else None


def stage_seconds(rec: RestoreRecord) -> dict[str, float]:
    out: dict[str, float] = {}
    for stage, times in rec.stage_times.items():
        took = _seconds(parse_time(times.get("started")), parse_time(times.get("finished")))
        if took is not None:
            out[stage] = took
    return out


def build(run: dict[str, Any], rec: RestoreRecord, *, now: datetime) -> dict[str, Any]:
    """The evidence document of a run whose restore ``rec`` ended."""
    total = _seconds(rec.created_at, rec.updated_at)
    target = float(run["rto_target_seconds"])
    verify = rec.verify_result or {}
    passed = rec.status == Status.SUCCEEDED and verify.get("passed") is not False
    cleanup_after = rec.updated_at + timedelta(seconds=float(run["validation_window_seconds"]))
    return {
        "schema": SCHEMA, "drill_id": run["drill_id"], "run_key": run["run_key"], "restore_id": rec.id,
        "scheduled_at": run["scheduled_at"], "due_at": run["due_at"], "started_at": iso(rec.created_at),
        "late_by_seconds": run.get("late_by_seconds", 0), "manual": bool(run.get("manual")),
        "backup_instance_id": run["backup_instance_id"], "region": rec.region,
        "recovery_point": {"id": rec.recovery_point_id, "time": iso(rec.recovery_point_time),
                           "tier": rec.tier.value if rec.tier else None, "selection": run.get("selection")},
        "rpo_observed_seconds": _seconds(rec.recovery_point_time, rec.created_at),
        "rto": {"target_seconds": target, "observed_seconds": total,
                "within_target": total is not None and total <= target, "stages": stage_seconds(rec)},
        "outcome": {"status": rec.status.value, "passed": passed, "error_code": rec.error_code,
                    "error_message": rec.error_message},
        "checks": {"verified": verify.get("passed"), "role": verify.get("checks_role"),
                   "checks": verify.get("checks") or [],
                   "databases": [{k: d.get(k) for k in ("database", "tables", "rows", "objects_checked", "missing",
                                                         "count_mismatches") if k in d}
                                 for d in verify.get("databases") or []]},
        "databases": [d.get("database") for d in rec.replay_result.get("databases") or []],
        "target_server": rec.target_resource or run.get("target_server"),
        "cleanup": {"status": "scheduled", "after": iso(cleanup_after)},
        "product_version": product_version(), "written_at": iso(now),
    }


def _sink(deps: Deps) -> EvidenceSink:
    if deps.evidence is None:
        raise RuntimeError("this process was built without the drill evidence container")
    return deps.evidence


def record_finish(deps: Deps, rec: RestoreRecord) -> dict[str, Any] | None:
    """Write the evidence of the drill run of ``rec`` (a terminal restore) and move the run to ``validating``.
    Idempotent: a run past ``running`` is left as it is. Returns the run (None: no such run)."""
    key = store.run_key_of_restore(rec.idempotency_key)
    if key is None:
        return None
    found = store.get_run(deps, key.split(":", 1)[0], key)
    if found is None:
        log.warning("drill restore %s has no run row %s", rec.id, key, extra={"restore_id": rec.id})
        return None
    run, etag = found
    if run.get("state") not in ("starting", "running"):
        return run
    now = deps.clock()
    doc = build(run, rec, now=now)
    sink = _sink(deps)
    name = blob_prefix(run) + "evidence.json"
    if not sink.put_once(name, doc):
        doc = sink.get(name) or doc  # a retry: the first document stands
    run.update(state="validating", restore_id=rec.id, finished_at=iso(rec.updated_at), evidence_blob=name,
               cleanup_after=doc["cleanup"]["after"], result=_result(doc),
               cleanup={"status": "scheduled", "attempts": 0}, completion_event=completion.claim(run, now))
    if store.update_run(deps, run, etag) is None:  # another writer was first: its run (and its event) stand
        again = store.get_run(deps, run["drill_id"], key)
        return again[0] if again else run
    completion.announce(deps, run)  # the winner: the "drill finished" record and the completion event
    return run


def _result(doc: dict[str, Any]) -> dict[str, Any]:
    """What the run row and the API show of the evidence."""
    return {"passed": doc["outcome"]["passed"], "status": doc["outcome"]["status"],
            "error_code": doc["outcome"]["error_code"], "rto_seconds": doc["rto"]["observed_seconds"],
            "rto_target_seconds": doc["rto"]["target_seconds"], "rto_within_target": doc["rto"]["within_target"],
            "rpo_seconds": doc["rpo_observed_seconds"], "recovery_point": doc["recovery_point"],
            "checks": [{"name": c.get("name"), "ok": c.get("ok"), "got": c.get("got")}
                       for c in doc["checks"]["checks"]], "verified": doc["checks"]["verified"],
            "databases": doc["databases"]}


def record_cleanup(deps: Deps, run: dict[str, Any], cleanup: dict[str, Any]) -> str:
    """The clean-up document (written once); returns its blob name."""
    name = blob_prefix(run) + "cleanup.json"
    _sink(deps).put_once(name, {"schema": SCHEMA, "drill_id": run["drill_id"], "run_key": run["run_key"],
                                "restore_id": run.get("restore_id"), **cleanup,
                                "product_version": product_version(), "written_at": iso(deps.clock())})
    return name


def on_restore_finished(deps: Deps, rec: RestoreRecord) -> None:
    """The pipeline's finish hook: evidence for a drill's restore. Never raises (the scheduler catches up)."""
    if rec.source != "drill":
        return
    try:
        record_finish(deps, rec)
    except Exception:  # noqa: BLE001 - the restore's own bookkeeping must not fail for its evidence
        log.exception("could not record the evidence of drill restore %s; the drill timer will", rec.id,
                      extra={"restore_id": rec.id})
