"""Intake: the doors (HTTP, the ``restore-requests`` queue, and the HTTP alert door), idempotent.

Consumes: a restore request body (or an Azure Monitor alert payload on the queue or at ``POST /api/alerts``, which
:func:`from_alert_http` handles exactly as the queue does; alerts about this service itself are refused,
:func:`restore_core.alerts.feedback_loop`). Every row, its first timeline entry and its log line record who started
it (the caller, or an alert's id, rule and plan).
Writes: the restore row (status ``accepted``) with the idempotency index, then the first stage message
(``restore-validate``). The same idempotency key (client key, alert id, or the queue message id when none is
given) always answers with the same restore; a key reused for a different request is refused.
Rejected input changes nothing except, for queue input, a ``rejected`` row that records why (nothing is dropped
without a record): every decoding or request error on the queue door, including a key reused for another request
and a request too large to store. Nothing is enqueued for a rejected request. The key prefixes ``alert:``, ``msg:``
and ``poison:`` belong to the doors; a client key using them is refused. Messages that reached
``restore-requests-poison`` are handled by the watchdog through :func:`from_poison`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from . import alert_plans, alerts, guards, telemetry
from .alerts import alert_to_request, is_alert, plan_of_alert
from .deps import Deps
from .errors import RequestError
from .guards import Caller
from .models import (
    MESSAGE_KEY_PREFIX,
    POISON_KEY_PREFIX,
    RestoreRequest,
    Stage,
    Status,
    TargetKind,
    decode_body,
    parse_request,
    stored_form,
)
from .pipeline import check_after, send_stage
from .records import RestoreRecord, TimelineEvent, iso, new_restore_id

log = telemetry.get_logger("intake")


def request_hash(req: RestoreRequest) -> str:
    data = req.model_dump(mode="json", exclude={"idempotency_key"})
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def submit(req: RestoreRequest, *, source: str, deps: Deps, idempotency_key: str | None = None,
           traceparent: str | None = None, caller: Caller | None = None,
           restore_id: str | None = None, who: dict[str, Any] | None = None) -> tuple[RestoreRecord, bool]:
    """Record a valid request and start it. Returns (restore, created). The guards that need no Azure call
    (:func:`restore_core.guards.check_intake`) refuse first, with a :class:`RequestError`; ``caller`` defaults to
    the door's (a function-key holder for HTTP, the queue otherwise); ``restore_id``: an id chosen beforehand (an
    alert plan's reservation). The row, its first timeline entry and its log line record who started it: ``who``
    (an alert's id, rule and plan) or the caller."""
    key = req.idempotency_key or idempotency_key
    if req.idempotency_key and idempotency_key and req.idempotency_key != idempotency_key:
        raise RequestError("the Idempotency-Key header and body idempotency_key differ", field="idempotency_key",
                           fix="send the same key in both places, or only one of them")
    caller = caller or (guards.FUNCTION_KEY if source == "http" else guards.QUEUE)
    refused = guards.check_intake(req, caller, deps.settings.guards)
    if refused is not None:
        raise refused
    now = deps.clock()
    deadline_hours = req.deadline_hours or deps.settings.deadline_hours
    rec = RestoreRecord(
        id=restore_id or new_restore_id(now), status=Status.ACCEPTED, stage=Stage.VALIDATE, source=source,
        created_at=now, updated_at=now, deadline=now + timedelta(hours=deadline_hours),
        request=stored_form(req), attempt=1,
        next_check_at=check_after(deps, now, 0), idempotency_key=key, traceparent=traceparent,
        target_kind=TargetKind(req.target.kind), region=req.region.value,
        stage_times={Stage.VALIDATE.value: {"started": iso(now), "finished": None}},
        caller=who or caller.record(),
    )
    event = TimelineEvent(now, Status.ACCEPTED.value, None, f"accepted from {source} by {describe(rec.caller)}",
                          {"started_by": rec.caller})
    rec, created = deps.store.create(rec, event, idempotency_key=key, request_hash=request_hash(req))
    if created:
        telemetry.record_restore_started(target_kind=req.target.kind, region=req.region.value, source=source)
        send_stage(deps, rec)
        log.info("restore %s accepted from %s by %s", rec.id, source, describe(rec.caller),
                 extra={"restore_id": rec.id, **audit_fields(rec.caller, "start")})
    elif rec.status == Status.ACCEPTED and rec.stage == Stage.VALIDATE and rec.attempt == 1:
        send_stage(deps, rec)  # the first attempt may have died before enqueuing; a duplicate is a no-op
    return rec, created


def describe(who: dict[str, Any]) -> str:
    """A caller record in a timeline line: ``alice@contoso.com (oid)``, ``alert <id> (rule ...)``, ``function-key``."""
    if who.get("kind") == "alert":
        return f"alert {who.get('id')}" + (f" (rule {who['rule']})" if who.get("rule") else "")
    name, ident = who.get("name"), who.get("id") or who.get("kind") or "unknown"
    return f"{name} ({ident})" if name else str(ident)


def audit_fields(who: dict[str, Any], action: str) -> dict[str, Any]:
    """The log fields of an audited action (customDimensions; the workbook's audit view reads them)."""
    return {"audit_action": action, "actor_kind": who.get("kind") or "", "actor_id": who.get("id") or "",
            "actor_name": who.get("name") or "", "actor_rule": who.get("rule") or "",
            "actor_plan": who.get("plan") or ""}


def record_rejection(deps: Deps, *, source: str, error: RequestError, key: str, fallback_key: str | None = None,
                     extra: dict[str, Any] | None = None, who: dict[str, Any] | None = None) -> RestoreRecord:
    """See :func:`_rejection` (which also says whether this call created the record)."""
    return _rejection(deps, source=source, error=error, key=key, fallback_key=fallback_key, extra=extra, who=who)[0]


def _rejection(deps: Deps, *, source: str, error: RequestError, key: str, fallback_key: str | None = None,
               extra: dict[str, Any] | None = None, who: dict[str, Any] | None = None) -> tuple[RestoreRecord, bool]:
    """A queue input we cannot accept still leaves a ``rejected`` row saying why. ``key`` makes a redelivery find the
    same record; when another request already holds ``key`` (e.g. a key reused for a different body), the record is
    kept under ``fallback_key`` (the message's own key) instead."""
    now = deps.clock()
    rec = RestoreRecord(
        id=new_restore_id(now), status=Status.REJECTED, stage=None, source=source, created_at=now, updated_at=now,
        deadline=now, request=dict(extra or {}), idempotency_key=key, error_code=error.code,
        error_message=error.message, error_fix=error.fix, caller=who or {"kind": source, "id": source})
    event = TimelineEvent(now, Status.REJECTED.value, None, f"rejected: {error.code}: {error.message}",
                          {"started_by": rec.caller})
    try:
        found, created = deps.store.create(rec, event, idempotency_key=key,
                                           request_hash=hashlib.sha256(key.encode()).hexdigest())
    except RequestError:
        if fallback_key is None or fallback_key == key:
            raise
        return _rejection(deps, source=source, error=error, key=fallback_key, extra=extra, who=who)
    if created:
        telemetry.record_restore_finished(outcome="rejected", target_kind="unknown", region="primary",
                                          error_code=error.code, rto_seconds=None, job_seconds=None, source=source)
        log.warning("%s input rejected (%s): %s", source, error.code, error.message,
                    extra={"restore_id": found.id, **audit_fields(found.caller, "rejected")})
    return found, created


@dataclass
class QueueInput:
    """What a ``restore-requests`` message says: a request (or why not), where it came from, and the key of its
    own it carries (the alert id for an alert; else None, and the message decides)."""

    source: str
    req: RestoreRequest | None = None
    error: RequestError | None = None
    key: str | None = None
    plan: tuple[str, dict[str, Any]] | None = None  # an alert's (alerted resource, restore plan)
    who: dict[str, Any] | None = None  # an alert's id, rule and plan: who started the restore


def read_queue_input(body: bytes | str, deps: Deps) -> QueueInput:
    """Decode a queue message; every decoding or request error becomes :attr:`QueueInput.error` (never raises)."""
    inp = QueueInput("queue")
    try:
        data = decode_body(body)
        if is_alert(data):
            inp.source = "alert"
            plans = dict(deps.settings.restore_plans)
            inp.key, inp.who = alerts.alert_key(data), alerts.who(data, plans)
            door = deps.settings.alert_door
            loop = alerts.feedback_loop(data, door.own_resource_ids, door.own_rule_prefixes)
            if loop is not None:
                raise loop
            payload, inp.key = alert_to_request(data, plans)
            inp.req = parse_request(payload)
            inp.plan = plan_of_alert(data, dict(deps.settings.restore_plans))
            alert_plans.limits_of(inp.plan[1])  # a plan with nonsense limits is refused here, with a record
        else:
            inp.req = parse_request(data)
    except RequestError as exc:
        inp.error = exc
    except Exception as exc:  # noqa: BLE001 - nothing is dropped without a record, whatever broke the decoding
        inp.error = RequestError(f"the message could not be read: {type(exc).__name__}: {exc}", field="body",
                                 code="UnreadableRequest",
                                 fix="send a restore request body or an Azure Monitor common alert schema payload "
                                     "(see the README)")
    return inp


def _submit_queued(deps: Deps, inp: QueueInput, *, key: str, fallback_key: str) -> tuple[RestoreRecord, bool]:
    assert inp.req is not None
    with telemetry.stage_span("intake", restore_id="pending", traceparent=None) as span:
        try:
            restore_id = alert_plans.admit(deps, inp.plan[0], inp.plan[1], key) if inp.plan and inp.key else None
            rec, created = submit(inp.req, source=inp.source, deps=deps, restore_id=restore_id,
                                  idempotency_key=None if inp.req.idempotency_key else key,
                                  traceparent=span.traceparent, caller=guards.PLAN if inp.plan else None, who=inp.who)
        except RequestError as exc:  # a key reused for another request, a stored form too large, ...
            # a deduplicated alert is recorded under its own alert key: the action group's retries find that record
            if exc.code == "AlertDeduplicated":  # kept with the request it would have started
                return _rejection(deps, source=inp.source, error=exc, key=key, fallback_key=fallback_key,
                                  extra=stored_form(inp.req), who=inp.who)
            return _rejection(deps, source=inp.source, error=exc, key=fallback_key, who=inp.who)
        span.set("id", rec.id)
        return rec, created


def from_queue(body: bytes | str, *, message_id: str, deps: Deps) -> RestoreRecord:
    """Handle one ``restore-requests`` message: a request body or an alert payload. Never raises for bad input:
    every decoding or request error leaves a ``rejected`` record (only storage/queue outages raise, to be retried)."""
    return _from_queue(body, message_id=message_id, deps=deps)[0]


def _from_queue(body: bytes | str, *, message_id: str, deps: Deps) -> tuple[RestoreRecord, bool]:
    msg_key = f"{MESSAGE_KEY_PREFIX}{message_id}"
    inp = read_queue_input(body, deps)
    if inp.error is not None:
        return _rejection(deps, source=inp.source, error=inp.error, key=inp.key or msg_key, fallback_key=msg_key,
                          who=inp.who)
    return _submit_queued(deps, inp, key=inp.key or msg_key, fallback_key=msg_key)


def from_alert_http(body: bytes, *, deps: Deps) -> tuple[RestoreRecord, bool]:
    """``POST /api/alerts``: an Azure Monitor common alert schema payload as an action group's webhook sends it,
    handled exactly as the queue door handles an alert (the same plans, limits, feedback-loop rule and records).
    Returns (the restore or the ``rejected`` record, whether this call created it). A body that is not a common
    alert schema payload raises :class:`RequestError` (the sender gets a 400; nothing is recorded)."""
    data = decode_body(body)
    if not is_alert(data):
        raise RequestError("the body is not an Azure Monitor common alert schema payload (schemaId "
                           f"{str(data.get('schemaId'))[:80]!r})", field="schemaId", code="NotACommonAlert",
                           fix="turn on \"Enable the common alert schema\" for this receiver in the action group, "
                               "or send restore requests to POST /api/restores")
    # an alert without an id is keyed by its body, so that the sender's retries find the same record
    return _from_queue(body, message_id=f"alert-http-{hashlib.sha256(body).hexdigest()[:40]}", deps=deps)


def from_poison(body: bytes | str, *, message_id: str, deps: Deps) -> RestoreRecord:
    """Handle one message of ``restore-requests-poison`` (the host moved it there after its last failed delivery;
    the copy has a new message id). Called by the watchdog, which then deletes the message.

    - unreadable or invalid input: a ``rejected`` record, as :func:`from_queue` leaves;
    - a request with a key of its own (a client key, an alert id): submitted again, idempotently, so a restore its
      first deliveries created is found, never doubled;
    - a request keyed only by its original message id cannot be matched to what its first deliveries did: it is not
      started again (it might run twice) but recorded as ``rejected`` (``IntakeRetriesExhausted``) with the request,
      saying how to resubmit it.
    """
    poison_key = f"{POISON_KEY_PREFIX}{message_id}"
    inp = read_queue_input(body, deps)
    if inp.error is not None:
        return record_rejection(deps, source=inp.source, error=inp.error, key=inp.key or poison_key,
                                fallback_key=poison_key)
    assert inp.req is not None
    own_key = inp.req.idempotency_key or inp.key
    if own_key:
        return _submit_queued(deps, inp, key=own_key, fallback_key=poison_key)[0]
    request = stored_form(inp.req)
    error = RequestError(
        "this queue message failed every delivery and reached the poison queue; it has no idempotency key, so it "
        "is not started again (its first deliveries may have started it already)", field="idempotency_key",
        code="IntakeRetriesExhausted",
        fix="look for a restore of this request (GET /api/restores around the time it was sent); if there is none, "
            "send it again with an idempotency_key, so that a retry can never start it twice")
    return record_rejection(deps, source=inp.source, error=error, key=poison_key, extra=request)
