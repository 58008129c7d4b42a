"""Completion events on ``restore-events``: one per restore that reaches a terminal state, success or failure.

Schema ``restore.completed`` version 1 (documented in the README). Contains ids, outcome, Azure job, error and
timings — never a secret (the request holds a Key Vault secret *URI* only, which is not included either).

Delivery is **at least once**: the pipeline publishes after the winning terminal write and then removes the active
index row; a crash in between, or a watchdog tick that read the index row just before it went, makes the watchdog
publish the same outcome again. Every event therefore carries ``event_id`` (:func:`event_id`), the same UUID for the
same restore outcome whoever publishes it and however often: consumers deduplicate on it.

Every event fits a queue message (64 KiB of base64, so :data:`EVENT_MAX_BYTES` of JSON): free text (the error
message and fix, the warnings) is bounded first; an event still too large (long ids, many warnings) goes out
*reduced* — every string clipped, at most a few warnings, ``"truncated": true`` — and the full record stays readable
at ``GET /api/restores/{id}``. An event the queue still refuses (a 4xx) is logged as an error and dropped, so the
terminal bookkeeping (and the watchdog) never stalls on it; transient queue errors still raise (retried).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from . import telemetry
from .deps import Deps
from .errors import PermanentError
from .limits import CODE_COST, JSON_COST, QUEUE_MESSAGE_BYTES, TEXT_COST, clip, clip_leaves, clip_optional
from .records import RestoreRecord, iso

log = telemetry.get_logger("events")

EVENT_TYPE = "restore.completed"
EVENT_VERSION = 1
#: JSON bytes of the largest event: 64 KiB of base64 carries 48 KiB; keep a margin.
EVENT_MAX_BYTES = QUEUE_MESSAGE_BYTES * 3 // 4 - 4096
#: In a reduced event: the longest string, and the longest string and JSON size of the warnings kept.
REDUCED_TEXT_COST = 1024
REDUCED_WARNING_TEXT_COST = 256
REDUCED_WARNINGS_COST = 4096
#: Namespace of the UUIDv5 event ids (fixed forever: changing it changes every id).
EVENT_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:restore-orchestrator:event:" + EVENT_TYPE)


def event_id(restore_id: str, status: str) -> str:
    """The id of the completion event of ``restore_id`` ending ``status``: a UUIDv5 of both, so every publication
    of the same outcome (the pipeline's, the watchdog's after a crash, a duplicate) carries the same id."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{restore_id}:{status}"))


def completion_event(rec: RestoreRecord) -> dict[str, Any]:
    rto = (rec.job_end or rec.updated_at) - rec.created_at
    return {
        "type": EVENT_TYPE,
        "schema_version": EVENT_VERSION,
        "event_id": event_id(rec.id, rec.status.value),
        "restore_id": rec.id,
        "status": rec.status.value,
        "succeeded": rec.status.value == "succeeded",
        "source": rec.source,
        "started_by": clip_leaves(rec.caller, TEXT_COST) if rec.caller else None,
        "backup_instance_id": rec.backup_instance_id,
        "recovery_point": {"id": rec.recovery_point_id, "time": iso(rec.recovery_point_time), "tier": rec.tier},
        "target": {"kind": rec.target_kind, "resource": rec.target_resource},
        "region": rec.region,
        "azure_job_id": rec.azure_job_id,
        "job_status": clip_optional(rec.job_status, CODE_COST),
        "error": {"code": clip(rec.error_code, CODE_COST), "message": clip_optional(rec.error_message, TEXT_COST),
                  "fix": clip_optional(rec.error_fix, TEXT_COST)} if rec.error_code else None,
        "warnings": _bounded_warnings(rec.warnings, TEXT_COST, JSON_COST),
        "created_at": iso(rec.created_at),
        "finished_at": iso(rec.updated_at),
        "rto_seconds": round(rto.total_seconds(), 3),
        "traceparent": rec.traceparent,
        "server": server_summary(rec),
    }


def server_summary(rec: RestoreRecord) -> dict[str, Any] | None:
    """Restore into a server: what was created where and who owns it, what verify found, where the staged files are
    (kept after a failure, deleted after success). None for other target kinds."""
    if not rec.staging:
        return None
    replayed = rec.replay_result.get("databases") or []
    verified = {d.get("database"): d for d in (rec.verify_result.get("databases") or [])}
    return {
        "target_server": rec.target_resource,
        "databases": [{"source": d.get("source"), "database": d.get("database"), "owner": d.get("owner"),
                       "tables": (verified.get(d.get("database")) or {}).get("tables"),
                       "rows": (verified.get(d.get("database")) or {}).get("rows")}
                      for d in replayed],
        "roles": {"mode": (rec.replay_result.get("roles") or {}).get("mode"),
                  "created": (rec.replay_result.get("roles") or {}).get("created", [])},
        "connected_as": rec.replay_result.get("connected_as"),
        "verified": rec.verify_result.get("passed"),
        "checks": [{"name": c.get("name"), "ok": c.get("ok")} for c in rec.verify_result.get("checks") or []],
        "staging": {"container_url": rec.staging.get("container_url"), "prefix": rec.id,
                    "kept": bool(rec.staging.get("kept", True))},
    }


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))  # ASCII only: its length is its size in bytes


def _bounded_warnings(warnings: list[Any], text_cost: int, budget: int) -> list[Any]:
    """The first warnings, each string clipped to ``text_cost``, as many as fit ``budget`` bytes of JSON."""
    kept: list[Any] = []
    used = 0
    for w in warnings:
        item = clip_leaves(w, text_cost)
        used += len(_dumps(item)) + 1
        if used > budget:
            break
        kept.append(item)
    return kept


def reduced(event: dict[str, Any]) -> dict[str, Any]:
    """The same event with every string clipped hard and only the warnings that fit a few KiB: this always fits a
    queue message (about twenty fields of at most ~1 KiB each)."""
    small: dict[str, Any] = clip_leaves({k: v for k, v in event.items() if k != "warnings"}, REDUCED_TEXT_COST)
    small["warnings"] = _bounded_warnings(event.get("warnings") or [], REDUCED_WARNING_TEXT_COST,
                                          REDUCED_WARNINGS_COST)
    small["truncated"] = True
    return small


def encode_event(rec: RestoreRecord) -> str:
    """The JSON text of the completion event, within :data:`EVENT_MAX_BYTES` (reduced when it has to be)."""
    event = completion_event(rec)
    text = _dumps(event)
    if len(text) <= EVENT_MAX_BYTES:
        return text
    log.warning("completion event of %s is %d bytes of JSON; publishing a reduced event (the status resource keeps "
                "every field)", rec.id, len(text), extra={"restore_id": rec.id})
    return _dumps(reduced(event))


def publish_completion(deps: Deps, rec: RestoreRecord) -> None:
    try:
        deps.queues.send(deps.settings.queue("RESTORE_QUEUE_EVENTS"), encode_event(rec))
    except PermanentError as exc:
        log.error("the completion event of %s was refused by the queue and is dropped (the restore row keeps the "
                  "outcome): %s", rec.id, exc, extra={"restore_id": rec.id})
