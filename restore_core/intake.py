"""Intake: the two doors (HTTP and the ``restore-requests`` queue), idempotent.

Consumes: a restore request body (or an Azure Monitor alert payload on the queue).
Writes: the restore row (status ``accepted``) with the idempotency index, then the first stage message
(``restore-validate``). The same idempotency key (client key, alert id, or the queue message id when none is
given) always answers with the same restore; a key reused for a different request is refused.
Rejected input changes nothing except, for queue input, a ``rejected`` row that records why (nothing is dropped
without a record). Nothing is enqueued for a rejected request.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

from . import telemetry
from .alerts import alert_to_request, is_alert
from .deps import Deps
from .errors import RequestError
from .models import RestoreRequest, Stage, Status, decode_body, parse_request
from .pipeline import check_after, send_stage
from .records import RestoreRecord, TimelineEvent, iso, new_restore_id

log = telemetry.get_logger("intake")


def request_hash(req: RestoreRequest) -> str:
    data = req.model_dump(mode="json", exclude={"idempotency_key"})
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def submit(req: RestoreRequest, *, source: str, deps: Deps, idempotency_key: str | None = None,
           traceparent: str | None = None) -> tuple[RestoreRecord, bool]:
    """Record a valid request and start it. Returns (restore, created)."""
    key = req.idempotency_key or idempotency_key
    if req.idempotency_key and idempotency_key and req.idempotency_key != idempotency_key:
        raise RequestError("the Idempotency-Key header and body idempotency_key differ", field="idempotency_key",
                           fix="send the same key in both places, or only one of them")
    now = deps.clock()
    deadline_hours = req.deadline_hours or deps.settings.deadline_hours
    rec = RestoreRecord(
        id=new_restore_id(now), status=Status.ACCEPTED, stage=Stage.VALIDATE, source=source, created_at=now,
        updated_at=now, deadline=now + timedelta(hours=deadline_hours),
        request=req.model_dump(mode="json", exclude_none=True), attempt=1,
        next_check_at=check_after(deps, now, 0), idempotency_key=key, traceparent=traceparent,
        target_kind=req.target.kind, region=req.region.value,
        stage_times={Stage.VALIDATE.value: {"started": iso(now), "finished": None}},
    )
    event = TimelineEvent(now, Status.ACCEPTED.value, None, f"accepted from {source}")
    rec, created = deps.store.create(rec, event, idempotency_key=key, request_hash=request_hash(req))
    if created:
        telemetry.record_restore_started(target_kind=req.target.kind, region=req.region.value, source=source)
        send_stage(deps, rec)
        log.info("restore %s accepted from %s", rec.id, source, extra={"restore_id": rec.id})
    elif rec.status == Status.ACCEPTED and rec.stage == Stage.VALIDATE and rec.attempt == 1:
        send_stage(deps, rec)  # the first attempt may have died before enqueuing; a duplicate is a no-op
    return rec, created


def record_rejection(deps: Deps, *, source: str, error: RequestError, key: str,
                     extra: dict[str, Any] | None = None) -> RestoreRecord:
    """A queue input we cannot accept still leaves a ``rejected`` row saying why."""
    now = deps.clock()
    rec = RestoreRecord(
        id=new_restore_id(now), status=Status.REJECTED, stage=None, source=source, created_at=now, updated_at=now,
        deadline=now, request=dict(extra or {}), idempotency_key=key, error_code=error.code,
        error_message=error.message, error_fix=error.fix)
    event = TimelineEvent(now, Status.REJECTED.value, None, f"rejected: {error.code}: {error.message}")
    found, created = deps.store.create(rec, event, idempotency_key=key,
                                       request_hash=hashlib.sha256(key.encode()).hexdigest())
    if created:
        telemetry.record_restore_finished(outcome="rejected", target_kind="unknown", region="primary",
                                          error_code=error.code, rto_seconds=None, job_seconds=None)
        log.warning("queue input rejected (%s): %s", error.code, error.message, extra={"restore_id": found.id})
    return found


def from_queue(body: bytes | str, *, message_id: str, deps: Deps) -> RestoreRecord:
    """Handle one ``restore-requests`` message: a request body or an alert payload."""
    key = f"msg:{message_id}"
    source = "queue"
    try:
        data = decode_body(body)
        if is_alert(data):
            source = "alert"
            payload, key = alert_to_request(data, dict(deps.settings.restore_plans))
            req = parse_request(payload)
        else:
            req = parse_request(data)
    except RequestError as exc:
        return record_rejection(deps, source=source, error=exc, key=key)
    with telemetry.stage_span("intake", restore_id="pending", traceparent=None) as span:
        rec, _ = submit(req, source=source, deps=deps, idempotency_key=None if req.idempotency_key else key,
                        traceparent=span.traceparent)
        span.set("id", rec.id)
        return rec
