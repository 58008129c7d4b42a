"""HTTP handlers behind the thin triggers: kickoff, status, list, cancel.

Each returns an :class:`ApiResponse` (status, JSON body, headers); ``function_app.py`` only converts it.
- ``POST /api/restores`` → 202 + ``Location`` of the status resource; the same idempotency key answers with the
  same restore (200 when it already existed); 400/409/413 with ``{"error": {code, message, field, fix}}``.
- ``GET /api/restores/{id}`` → the status resource with its timeline; 404 when unknown.
- ``GET /api/restores?status=&since=&until=&source=&target=&region=&started_by=&limit=&continuation=`` →
  ``{"items": [...], "continuation"}``, newest first (:mod:`restore_core.listing`); each item and the status
  resource say what the restore is (:mod:`restore_core.views`).
- ``POST /api/restores/preview`` → 200 with ``would_start`` and the plan or the refusal (restore_core/preview.py);
  400/413 for malformed input, 429 with ``Retry-After`` past the caller's preview budget; creates nothing.
- ``POST /api/restores/{id}/cancel`` → 200 when cancelled before the trigger; 409 afterwards (Azure cannot
  cancel a restore job) or when already terminal.
- ``POST /api/alerts`` (function key; excluded from the platform's authentication) → an Azure Monitor common alert
  schema payload through the restore plans (restore_core/intake.py ``from_alert_http``): 202 with the restore it
  started, 200 when the alert was handled before (the same restore or record), 200 with ``rejected`` and the reason
  when it starts nothing (no plan, deduplicated, about this service); 400 for a body that is no alert.
- who may call (:func:`authorized`, restore_core/principal.py): with ``RESTORE_AUTH_MODE=entra`` 401 without the
  platform's principal, 403 without the action's app role, 503 when the platform's authentication is off.
- storage that does not answer → 503 with ``Retry-After`` (every handler).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ParamSpec

from . import guards, intake, listing, preview, principal, telemetry
from .deps import Deps
from .errors import RequestError, RetryableError
from .guards import Caller
from .intake import submit
from .models import Status, parse_request, reserved_key_problem
from .pipeline import finish
from .records import RestoreRecord, TimelineEvent
from .stages import registry
from .stages.registry import CANCELLABLE
from .store import ConcurrencyError
from .views import view

log = telemetry.get_logger("api")
P = ParamSpec("P")
_ID = re.compile(r"^\d{8}T\d{6}-[0-9a-f]{10}$")


@dataclass
class ApiResponse:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> str:
        return json.dumps(self.body, separators=(",", ":"))


def _error(exc: RequestError) -> ApiResponse:
    return ApiResponse(exc.status, {"error": exc.to_dict()})


def _storage_unavailable_is_503(handler: Callable[P, ApiResponse]) -> Callable[P, ApiResponse]:
    """Storage that does not answer (after the bounded timeouts and retries of every storage call) is a 503 with
    Retry-After, not a 500: the request may simply be sent again (with the same Idempotency-Key for a POST)."""

    @functools.wraps(handler)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> ApiResponse:
        try:
            return handler(*args, **kwargs)
        except RetryableError as exc:
            log.warning("%s: storage unavailable: %s", handler.__name__, exc)
            return ApiResponse(503, {"error": {
                "code": "StorageUnavailable", "message": f"the service's storage did not answer ({exc})",
                "field": None, "fix": "send the request again in a few seconds (a POST with the same "
                                      "Idempotency-Key never starts a second restore)"}}, {"Retry-After": "5"})

    return wrapper


def _not_found(restore_id: str) -> ApiResponse:
    return ApiResponse(404, {"error": {"code": "RestoreNotFound", "message": f"no restore {restore_id!r}",
                                       "field": "id", "fix": "check the id returned by POST /api/restores"}})


def authorized(action: str, headers: dict[str, str], deps: Deps,
               handler: Callable[[Caller], ApiResponse]) -> ApiResponse:
    """Run ``handler`` for the caller when it may do ``action`` (restore_core/principal.py), else the refusal."""
    try:
        caller = principal.authorize(headers, action, deps.settings.auth)
    except principal.Denied as denied:
        log.info("http %s refused: %s", action, denied.code)
        extra = {"WWW-Authenticate": "Bearer"} if denied.status == 401 else {}
        return ApiResponse(denied.status, denied.body(), extra)
    return handler(caller)


@_storage_unavailable_is_503
def alert(body: bytes, *, base_url: str, deps: Deps) -> ApiResponse:
    """``POST /api/alerts``: an action group's webhook (contract in the module docstring)."""
    try:
        rec, created = intake.from_alert_http(body, deps=deps)
    except RequestError as exc:
        return _error(exc)
    out = {**view(rec), "status_url": status_url(base_url, rec.id), "created": created}
    started = created and rec.status != Status.REJECTED
    return ApiResponse(202 if started else 200, out, {"Location": status_url(base_url, rec.id)})


def status_url(base_url: str, restore_id: str) -> str:
    return f"{base_url.rstrip('/')}/restores/{restore_id}"


@_storage_unavailable_is_503
def create(body: bytes, *, headers: dict[str, str], base_url: str, deps: Deps,
           caller: Caller | None = None) -> ApiResponse:
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        req = parse_request(body)
        key = lower.get("idempotency-key")
        if key is not None and not (0 < len(key) <= 200 and re.fullmatch(r"[\x21-\x7e]+", key)):
            raise RequestError("Idempotency-Key header must be 1-200 visible ASCII characters",
                               field="Idempotency-Key", fix="send a shorter key without spaces")
        if key is not None and (problem := reserved_key_problem(key)):
            raise RequestError(f"Idempotency-Key: {problem}", field="Idempotency-Key",
                               fix="choose a key with another prefix")
        with telemetry.stage_span("intake", restore_id="pending", traceparent=lower.get("traceparent")) as span:
            rec, created = submit(req, source="http", deps=deps, idempotency_key=key, traceparent=span.traceparent,
                                  caller=caller or guards.caller_from_http(headers, deps.settings.auth))
            span.set("id", rec.id)
    except RequestError as exc:
        return _error(exc)
    url = status_url(base_url, rec.id)
    body_out = {"id": rec.id, "status": rec.status.value, "status_url": url, "created": created}
    return ApiResponse(202 if created else 200, body_out, {"Location": url, "Retry-After": "5"})


@_storage_unavailable_is_503
def preview_restore(body: bytes, *, headers: dict[str, str], deps: Deps, caller: Caller | None = None) -> ApiResponse:
    """``POST /api/restores/preview``: the dry run (restore_core/preview.py); creates nothing."""
    status, out, extra = preview.handle(body, caller=caller or guards.caller_from_http(headers, deps.settings.auth),
                                        deps=deps)
    return ApiResponse(status, out, extra)


@_storage_unavailable_is_503
def get(restore_id: str, *, deps: Deps) -> ApiResponse:
    if not _ID.match(restore_id or ""):
        return _not_found(restore_id)
    rec = deps.store.get(restore_id)
    if rec is None:
        return _not_found(restore_id)
    body = view(rec, deps.clock())
    body["timeline"] = [ev.to_dict() for ev in deps.store.timeline(restore_id)]
    return ApiResponse(200, body)


@_storage_unavailable_is_503
def list_restores(params: dict[str, str], *, deps: Deps) -> ApiResponse:
    try:
        query = listing.parse_query(params, deps.clock())
    except RequestError as exc:
        return _error(exc)
    items, next_token = listing.page(query, deps)
    return ApiResponse(200, {"items": items, "continuation": next_token})


def stages() -> ApiResponse:
    """The queue-triggered stages in pipeline order, from the registry (the dashboard and ``restorectl`` read it)."""
    return ApiResponse(200, {"stages": [s.describe() for s in registry.REGISTRY]})


def _not_cancellable(rec: RestoreRecord) -> ApiResponse | None:
    if rec.terminal:
        return ApiResponse(409, {"error": {
            "code": "RestoreAlreadyFinished", "message": f"restore {rec.id} already ended {rec.status.value}",
            "field": None, "fix": "nothing to cancel"}})
    if rec.stage not in CANCELLABLE or rec.trigger_intent_at is not None or rec.azure_job_id:
        return ApiResponse(409, {"error": {
            "code": "RestoreJobNotCancellable",
            "message": "the Azure restore has been triggered"
                       + (f" (job {rec.azure_job_id})" if rec.azure_job_id else "")
                       + "; Azure Backup offers no API to cancel a restore job",
            "field": None,
            "fix": "wait for the job to finish (GET this restore); the restored database or files are new and "
                   "touch nothing else, so they can be kept or removed later by their owners"}})
    return None


def _cancelled_by(caller: Caller) -> str:
    """The timeline line of a cancel: the principal by name; a function-key holder stays "operator" (the host does
    not say which key), its record in the entry's data."""
    return "cancelled by operator" + (f" {caller.label()}" if caller.kind == "principal" else "")


@_storage_unavailable_is_503
def cancel(restore_id: str, *, deps: Deps, caller: Caller = guards.FUNCTION_KEY) -> ApiResponse:
    """Cancel before the trigger; the row, its timeline and the log record who cancelled."""
    rec = deps.store.get(restore_id) if _ID.match(restore_id or "") else None
    for _ in range(5):  # each lost race hands back the row as it is now: decide again, no re-read
        if rec is None:
            return _not_found(restore_id)
        refused = _not_cancellable(rec)
        if refused is not None:
            return refused
        now = deps.clock()
        who = caller.record()
        done = rec.copy(status=Status.CANCELLED, stage=None, updated_at=now, next_check_at=None,
                        error_code="CancelledByOperator",
                        error_message=f"cancelled by {intake.describe(who)} before the restore was triggered",
                        error_fix="submit a new request if the restore is needed after all")
        try:
            done = deps.store.update(done, [TimelineEvent(now, Status.CANCELLED.value, None, _cancelled_by(caller),
                                                          {"cancelled_by": who})])
        except ConcurrencyError as lost:
            rec = lost.current
            continue
        log.info("restore %s cancelled by %s", done.id, intake.describe(who),
                 extra={"restore_id": done.id, **intake.audit_fields(who, "cancel")})
        finish(deps, done)  # the same terminal bookkeeping as the pipeline: event, index row, metrics
        return get(restore_id, deps=deps)
    return ApiResponse(409, {"error": {"code": "Conflict", "message": "the restore kept changing; try again",
                                       "field": None, "fix": "retry the cancel"}})


@_storage_unavailable_is_503
def redrive(restore_id: str, *, deps: Deps, who: str = "function-key") -> ApiResponse:
    """``POST /api/restores/{id}/redrive``: re-send an active restore's current stage message
    (:mod:`restore_core.redrive`); 409 when it ended or a replay runner holds it."""
    from . import redrive as operator

    rec = deps.store.get(restore_id) if _ID.match(restore_id or "") else None
    if rec is None:
        return _not_found(restore_id)
    try:
        rec = operator.redrive(deps, rec, who=who)
    except operator.RedriveRefused as refused:
        return ApiResponse(refused.status, {"error": {"code": refused.code, "message": refused.message,
                                                      "field": None, "fix": refused.fix}})
    return ApiResponse(202, operator.describe(rec))

