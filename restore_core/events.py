"""Completion events on ``restore-events``: one per restore that reaches a terminal state, success or failure.

Schema ``restore.completed`` version 1 (documented in the README). Contains ids, outcome, Azure job, error and
timings — never a secret (the request holds a Key Vault secret *URI* only, which is not included either).
"""

from __future__ import annotations

import json
from typing import Any

from .deps import Deps
from .records import RestoreRecord, iso

EVENT_TYPE = "restore.completed"
EVENT_VERSION = 1


def completion_event(rec: RestoreRecord) -> dict[str, Any]:
    rto = (rec.job_end or rec.updated_at) - rec.created_at
    return {
        "type": EVENT_TYPE,
        "schema_version": EVENT_VERSION,
        "restore_id": rec.id,
        "status": rec.status.value,
        "succeeded": rec.status.value == "succeeded",
        "source": rec.source,
        "backup_instance_id": rec.backup_instance_id,
        "recovery_point": {"id": rec.recovery_point_id, "time": iso(rec.recovery_point_time), "tier": rec.tier},
        "target": {"kind": rec.target_kind, "resource": rec.target_resource},
        "region": rec.region,
        "azure_job_id": rec.azure_job_id,
        "job_status": rec.job_status,
        "error": {"code": rec.error_code, "message": rec.error_message, "fix": rec.error_fix}
        if rec.error_code else None,
        "warnings": rec.warnings,
        "created_at": iso(rec.created_at),
        "finished_at": iso(rec.updated_at),
        "rto_seconds": round(rto.total_seconds(), 3),
        "traceparent": rec.traceparent,
    }


def publish_completion(deps: Deps, rec: RestoreRecord) -> None:
    deps.queues.send(deps.settings.queue("RESTORE_QUEUE_EVENTS"),
                     json.dumps(completion_event(rec), separators=(",", ":")))
