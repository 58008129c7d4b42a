"""HTTPS front door: auth, faults, throttling, metering, LRO headers, admin API (routing: :mod:`.routing`).

Consumes: an :class:`Engine` and :class:`Controls`. Produces: an ASGI app served by uvicorn over TLS.
Every ARM call goes: route -> auth -> injected latency -> token bucket -> pre-faults -> handler -> "lost answer"
faults -> metering. Admin calls (``/admin/...``) need the main token and are never metered.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from . import render
from .control import FAULT_MODES, JOB_BEHAVIOUR_MODES, POST_MODES, PRE_MODES, ControlError, Controls, Fault
from .engine import Engine
from .model import BadRequest, JobBehaviour, NotFound, Operation
from .parsing import decode_token, encode_token
from .routing import ArmRoute, build_router
from .timeutil import iso, parse_duration
from .world import check_emulation_choices

log = logging.getLogger("dpemu.server")

LRO_OPS = {"BackupInstances_ValidateForRestore", "BackupInstances_TriggerRestore", "BackupInstances_TriggerRehydrate",
           "BackupInstances_ValidateCrossRegionRestore", "BackupInstances_TriggerCrossRegionRestore"}
JOB_OPS = {"BackupInstances_TriggerRestore", "BackupInstances_TriggerRehydrate",
           "BackupInstances_TriggerCrossRegionRestore"}
LRO_RETRY_SIM_SECONDS = {"BackupInstances_TriggerRestore": 30, "BackupInstances_TriggerCrossRegionRestore": 30}
#: The api-versions ARM serves for Microsoft.DataProtection backup vaults (the stable and preview folders of
#: Azure/azure-rest-api-specs specification/dataprotection). Anything else is refused as ARM refuses it.
API_VERSIONS = frozenset({
    "2021-01-01", "2021-02-01-preview", "2021-06-01-preview", "2021-07-01", "2021-10-01-preview", "2021-12-01-preview",
    "2022-01-01", "2022-02-01-preview", "2022-03-01", "2022-03-31-preview", "2022-04-01", "2022-05-01",
    "2022-09-01-preview", "2022-10-01-preview", "2022-11-01-preview", "2022-12-01", "2023-01-01",
    "2023-04-01-preview", "2023-05-01", "2023-06-01-preview", "2023-08-01-preview", "2023-11-01",
    "2023-12-01", "2024-02-01-preview", "2024-03-01", "2024-04-01", "2025-01-01", "2025-02-01-preview",
    "2025-07-01", "2025-09-01", "2026-03-01", "2026-04-01-preview", "2026-06-01",
})
#: What ARM sends with a 401 (RFC 6750 challenge; azure-mgmt-core's challenge policy reads it).
WWW_AUTHENTICATE = ('Bearer authorization_uri="https://login.microsoftonline.com/common", error="invalid_token", '
                    'error_description="The access token is missing, invalid or expired."')
HTML_PAGE = (b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1>"
             b"<p>The upstream server returned an invalid response.</p></body></html>")


def cloud_error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "target": None, "details": [], "additionalInfo": []}}


def _pre_fault_reply(fault: Fault, rl: dict[str, str]) -> Reply:
    """The answer of an injected fault that replaces the call (the operation has no effect)."""
    mode = fault.mode
    if mode == "throttle":
        return Reply(429, cloud_error("TooManyRequests", "Injected throttling. Retry after Retry-After."),
                     {"Retry-After": str(fault.retry_after), **rl})
    if mode == "error503":
        return Reply(503, cloud_error("ServiceUnavailable", fault.error_message),
                     {"Retry-After": str(fault.retry_after)})
    if mode == "drop":
        return Reply(0, drop=True)
    if mode == "malformed":
        return Reply(200, raw=b'{"id": "/subscriptions/truncated', media_type="application/json")
    if mode == "html":
        return Reply(200, raw=HTML_PAGE, media_type="text/html")
    if mode == "error401":
        return Reply(401, cloud_error("ExpiredAuthenticationToken", "The access token expiry UTC time is earlier "
                                                                    "than current UTC time."),
                     {"WWW-Authenticate": WWW_AUTHENTICATE})
    if mode == "error403":
        return Reply(403, cloud_error("AuthorizationFailed", fault.error_message if fault.error_message !=
                                      "Injected fault." else "The client does not have authorization to perform "
                                      "this action (injected)."))
    if mode == "error404":
        return Reply(404, cloud_error("ResourceNotFound", "The resource was not found (injected)."))
    return Reply(500, cloud_error("InternalServerError", fault.error_message))


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    raw: bytes | None = None  # sent verbatim instead of the JSON body (fault injection)
    media_type: str | None = None


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    params: dict[str, str]
    operation: str
    api_version: str


async def _drop(send: Send) -> None:
    """Abort the TCP connection without any answer (uvicorn's send is bound to its protocol cycle)."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is not None:
        transport.abort()
        return
    # fallback: announce a body and never send it, then break the stream
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1000")]})
    raise ConnectionAbortedError("dropped by fault injection")


class Endpoint:
    """An ASGI app that answers with the :class:`Reply` of ``handler(request, body)``. A class, not a function,
    so starlette's router hands it the server's own ``send`` (needed to drop a connection)."""

    def __init__(self, handler: Callable[[Request, bytes], Awaitable[Reply]]) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        raw = await request.body()
        try:
            reply = await self.handler(request, raw)
        except Exception:  # noqa: BLE001 - an emulator bug must still answer like ARM would
            log.exception("unhandled error for %s %s", request.method, request.url.path)
            reply = Reply(500, cloud_error("InternalServerError", "The emulator hit an internal error."))
        if reply.drop:
            await _drop(send)
            return
        data = reply.raw if reply.raw is not None else b"" if reply.body is None else json.dumps(reply.body).encode()
        headers = {"x-ms-request-id": request.headers.get("x-ms-client-request-id", ""), **reply.headers}
        resp = Response(data, status_code=reply.status, headers=headers,
                        media_type=reply.media_type or ("application/json" if data else None))
        await resp(scope, receive, send)


class Server:
    def __init__(self, engine: Engine, controls: Controls, base_url: str) -> None:
        self.engine = engine
        self.controls = controls
        self.base_url = base_url.rstrip("/")
        self.integer_retry_after = False
        self.router = build_router(Endpoint(self._arm_call), Endpoint(self._admin_call), Endpoint(self._no_route))

    # ------------------------------------------------------------------ ASGI entry point
    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        await self.router(scope, receive, send)

    # ------------------------------------------------------------------ endpoints
    def _caller(self, request: Request) -> str | None:
        token = None
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            token = auth[7:].strip()
        return self.controls.caller_for(token)

    async def _admin_call(self, request: Request, raw: bytes) -> Reply:
        if self._caller(request) != "default":
            return Reply(401, cloud_error("InvalidAuthenticationToken",
                                          "Admin calls need 'Authorization: Bearer <the --token value>'."))
        return await run_in_threadpool(self.admin, request.method, request.url.path, raw)

    @staticmethod
    async def _no_route(request: Request, raw: bytes) -> Reply:
        return Reply(404, cloud_error("NotFound", f"The emulator does not implement {request.method.upper()} "
                                                  f"{request.url.path}."))

    async def _arm_call(self, request: Request, raw: bytes) -> Reply:
        route: ArmRoute = request.scope["route"]
        op, kind = route.operation, route.kind
        caller = self._caller(request)
        if caller is None:
            self.controls.record(op, kind, 401, "unauthenticated")
            return Reply(401, cloud_error("InvalidAuthenticationToken",
                                          "The access token is missing or invalid. Send 'Authorization: Bearer "
                                          "<token>' with a token issued by this emulator."),
                         {"WWW-Authenticate": WWW_AUTHENTICATE})
        refused = self._check_api_version(request, op)
        if refused is not None:
            self.controls.record(op, kind, refused.status, caller)
            return refused
        reply = await self._arm(request, raw, dict(request.path_params), op, kind, caller)
        self.controls.record(op, kind, 0 if reply.drop else reply.status, caller)
        return reply

    async def _arm(self, request: Request, raw: bytes, params: dict[str, str], op: str, kind: str,
                   caller: str) -> Reply:
        c = self.controls
        if c.arm_latency_seconds > 0:
            await asyncio.sleep(c.arm_latency_seconds)
        allowed, remaining, wait = c.throttle(caller, kind)
        rl = {f"x-ms-ratelimit-remaining-subscription-{'reads' if kind == 'read' else 'writes'}": str(remaining)}
        if not c.throttling["enabled"]:
            rl = {}
        if not allowed:
            return Reply(429, cloud_error("TooManyRequests", f"The request is throttled ({kind}s for caller "
                                                             f"'{caller}'). Retry after the Retry-After period."),
                         {"Retry-After": str(max(1, math.ceil(wait))), "retry-after-ms": str(max(1, math.ceil(
                             wait * 1000))), **rl})
        fault = c.take_fault(op, PRE_MODES)
        if fault is not None:
            if fault.mode == "delay":
                await asyncio.sleep(fault.delay_seconds)
            else:
                return _pre_fault_reply(fault, rl)
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError:
            return Reply(400, cloud_error("InvalidRequestContent", "The request body is not valid JSON."), rl)
        query = {k: v for k, v in request.query_params.items()}
        call = Call(request.method.upper(), request.url.path, query, body, params, op,
                    next((v for k, v in query.items() if k.lower() == "api-version"), "2026-06-01"))
        try:
            reply = await run_in_threadpool(self.dispatch, call)
        except BadRequest as e:
            reply = Reply(e.status, cloud_error(e.code, e.message))
        reply.headers.update(rl)
        if 200 <= reply.status < 300:
            lost = c.take_fault(op, POST_MODES)
            if lost is not None:
                return Reply(0, drop=True) if lost.mode == "lost_drop" else Reply(
                    500, cloud_error("InternalServerError", lost.error_message))
        return reply

    @staticmethod
    def _check_api_version(request: Request, op: str) -> Reply | None:
        """ARM refuses a missing or unknown api-version before the resource provider sees the call. Polling URLs
        (operationStatus/operationResults) carry the version the emulator put in them, so they pass too."""
        version = next((v for k, v in request.query_params.items() if k.lower() == "api-version"), None)
        if version is None:
            return Reply(400, cloud_error("MissingApiVersionParameter",
                                          "The api-version query parameter (?api-version=) is required for all "
                                          "requests."))
        if version not in API_VERSIONS:
            return Reply(400, cloud_error(
                "NoRegisteredProviderFound",
                f"No registered resource provider found for API version '{version}' and operation '{op}'. The "
                f"supported api-versions are '{', '.join(sorted(API_VERSIONS))}'."))
        return None

    def _q(self, call: Call, name: str) -> str | None:
        return next((v for k, v in call.query.items() if k.lower() == name.lower()), None)

    def _next_link(self, call: Call, token: dict[str, Any], extra: str = "") -> str:
        q = f"api-version={quote(call.api_version)}&$skipToken={encode_token(token)}{extra}"
        return f"{self.base_url}{call.path}?{q}"

    def _retry_headers(self, call: Call) -> dict[str, str]:
        """Scaled LRO poll delay. ``Retry-After`` is always a whole number of seconds, as ARM sends it. Under a
        scaled clock a delay below one real second cannot be said that way: then only ``retry-after-ms`` is sent
        (azure-core reads ``Retry-After`` first and falls back to ``retry-after-ms``). ``integer_retry_after``
        (admin config) sends exactly what Azure would: ``Retry-After`` in whole seconds (>= 1), nothing else."""
        sim = LRO_RETRY_SIM_SECONDS.get(call.operation, 10)
        real_ms = max(20, math.ceil(sim * 1000 / self.engine.clock.scale))
        if self.integer_retry_after:
            return {"Retry-After": str(max(1, math.ceil(real_ms / 1000)))}
        if real_ms >= 1000:
            return {"Retry-After": str(math.ceil(real_ms / 1000)), "retry-after-ms": str(real_ms)}
        return {"retry-after-ms": str(real_ms)}

    def _lro(self, call: Call, op: Operation) -> Reply:
        base = f"{self.base_url}/subscriptions/{op.subscription}/providers/Microsoft.DataProtection/locations/" \
               f"{op.location}"
        q = f"?api-version={quote(call.api_version)}"
        return Reply(202, None, {
            "Azure-AsyncOperation": f"{base}/operationStatus/{op.id}{q}",
            "Location": f"{base}/operationResults/{op.id}{q}",
            **self._retry_headers(call),
        })

    def _faults_for(self, op: str) -> tuple[tuple[str, str] | None, tuple[str, str] | None]:
        lro = self.controls.take_fault(op, {"lro_fail"})
        job = self.controls.take_fault(op, {"job_fail"}) if op in JOB_OPS else None
        return ((lro.error_code, lro.error_message) if lro else None,
                (job.error_code, job.error_message) if job else None)

    def _job_behaviour(self, op: str) -> JobBehaviour | None:
        """A job_pause / job_warn / job_cancel fault for a restore trigger, as the job's behaviour."""
        if op not in ("BackupInstances_TriggerRestore", "BackupInstances_TriggerCrossRegionRestore"):
            return None
        f = self.controls.take_fault(op, JOB_BEHAVIOUR_MODES)
        if f is None:
            return None
        b = JobBehaviour(f.mode.removeprefix("job_"))
        if f.mode == "job_warn" and f.error_code:
            b = JobBehaviour("warn", f.error_code, f.error_message)
        if f.mode == "job_pause" and f.duration:
            b = JobBehaviour("pause", pause_for=parse_duration(f.duration))
        return b

    def dispatch(self, call: Call) -> Reply:  # noqa: C901 - a flat routing table
        e = self.engine
        p = call.params
        op = call.operation
        if op in ("OperationStatus_Get", "OperationResult_Get"):
            o = e.get_op(p["sub"], p["loc"], p["op"])
            if op == "OperationStatus_Get":
                # azure-core takes each poll's delay from the latest response: scaled retry-after-ms here too
                return Reply(200, render.op_status_json(o, e.clock.now()), self._retry_headers(call))
            if not e.op_done(o):
                r = self._lro(call, o)
                return Reply(202, None, r.headers)
            if o.error:
                return Reply(400, {"error": o.error})
            return Reply(200, render.op_result_json(o))  # the spec's OperationResult_Get answers 200 or 202, never 204
        if "loc" in p:
            return self._crr(call)
        v = e.vault(p["sub"], p["rg"], p["vault"])
        if op == "BackupVaults_Get":
            return Reply(200, render.vault_json(e.world, v))
        if op == "BackupInstances_List":
            return Reply(200, {"value": [render.bi_json(e.world, v, b) for b in v.backup_instances]})
        if op == "Jobs_List":
            tok = self._q(call, "$skipToken")
            offset = int(decode_token(tok).get("o", 0)) if tok else 0
            items, nxt = e.list_jobs(v, offset)
            return Reply(200, {"value": items, **({"nextLink": self._next_link(call, {"o": nxt})} if nxt else {})})
        if op == "Jobs_Get":
            return Reply(200, render.job_json(e.world, e.get_job(v, p["job"]), e.clock.now()))
        b = e.bi(v, p["bi"])
        if op == "BackupInstances_Get":
            return Reply(200, render.bi_json(e.world, v, b))
        if op == "RecoveryPoints_List":
            filt = self._q(call, "$filter")
            items, nxt = e.list_rps(v, b, filt, self._q(call, "$skipToken"))
            extra = f"&$filter={quote(filt)}" if filt else ""
            return Reply(200, {"value": items, **({"nextLink": self._next_link(call, {"o": nxt}, extra)}
                                                  if nxt else {})})
        if op == "RecoveryPoints_Get":
            return Reply(200, render.rp_json(e.settings, b, e.rp(b, p["rp"]), e.clock.now()))
        forced, job_fault = self._faults_for(op)
        if op == "BackupInstances_ValidateForRestore":
            return self._lro(call, e.validate(v, b, call.body, forced=forced))
        if op == "BackupInstances_TriggerRestore":
            return self._lro(call, e.restore(v, b, call.body, forced=forced, job_fault=job_fault,
                                             behaviour=self._job_behaviour(op)))
        if op == "BackupInstances_TriggerRehydrate":
            return self._lro(call, e.rehydrate(v, b, call.body, forced=forced, job_fault=job_fault))
        raise NotFound(f"unhandled operation {op}")

    def _crr(self, call: Call) -> Reply:
        e = self.engine
        p = call.params
        op = call.operation
        loc = p["loc"].lower()
        body = call.body if isinstance(call.body, dict) else {}
        if op in ("FetchSecondaryRecoveryPoints_List", "FetchCrossRegionRestoreJobs_List"):
            tok = self._q(call, "$skipToken")
            state = decode_token(tok) if tok else {}
            if call.method == "GET" and not tok:
                raise BadRequest("UserErrorInvalidRequestParameter", f"{op} is a POST; GET is only for nextLink pages")
            key = "sourceBackupInstanceId" if op == "FetchSecondaryRecoveryPoints_List" else "sourceBackupVaultId"
            src = {"sourceRegion": state["r"], key: state["s"]} if tok else body
            v, b = e.crr_source(p["sub"], p["rg"], loc, src, key)
            next_state = {"r": v.location, "s": src[key]}
            if b is not None:
                filt = self._q(call, "$filter")
                items, nxt = e.list_rps(v, b, filt, encode_token({"o": state.get("o", 0)}), secondary=True)
            else:
                items, nxt = e.list_jobs(v, int(state.get("o", 0)), crr_location=loc)
            return Reply(200, {"value": items, **({"nextLink": self._next_link(call, {**next_state, "o": nxt})}
                                                  if nxt else {})})
        if op == "FetchCrossRegionRestoreJob_Get":
            v, _ = e.crr_source(p["sub"], p["rg"], loc, body, "sourceBackupVaultId")
            job_id = body.get("jobId")
            if not isinstance(job_id, str) or not job_id:
                raise BadRequest("UserErrorInvalidRequestParameter", "body.jobId: give the CRR job's GUID or ARM id")
            return Reply(200, render.job_json(e.world, e.get_job(v, job_id, crr_location=loc), e.clock.now()))
        details = body.get("crossRegionRestoreDetails")
        v, b = e.crr_source(p["sub"], p["rg"], loc, details, "sourceBackupInstanceId", check_enabled=False)
        assert b is not None
        forced, job_fault = self._faults_for(op)
        if op == "BackupInstances_ValidateCrossRegionRestore":
            return self._lro(call, e.validate(v, b, body, crr_location=loc, forced=forced))
        return self._lro(call, e.restore(v, b, body.get("restoreRequestObject"), crr_location=loc, forced=forced,
                                         job_fault=job_fault, behaviour=self._job_behaviour(op)))

    # ------------------------------------------------------------------ admin API
    def admin(self, method: str, path: str, raw: bytes) -> Reply:  # noqa: C901 - a flat routing table
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return Reply(400, {"error": "body is not valid JSON"})
        parts = [x for x in path.lower().split("/") if x][1:]
        key = "/".join(parts[:1]) if parts else ""
        c, e = self.controls, self.engine
        try:
            if method == "GET" and not parts:
                return Reply(200, {"endpoint": self.base_url, "now": iso(e.clock.now()),
                                   "time_scale": e.clock.scale, "jobs": len(e.jobs), "operations": len(e.ops)})
            if key == "config":
                if method == "PUT":
                    self._set_config(body)
                return Reply(200, self._config())
            if key == "clock":
                if method == "POST" and parts[1:] == ["advance"]:
                    e.clock.advance(parse_duration(str(body.get("duration", ""))))
                return Reply(200, {"now": iso(e.clock.now()), "time_scale": e.clock.scale})
            if key == "faults":
                if method == "POST":
                    return Reply(201, c.add_fault(body).to_json())
                if method == "DELETE":
                    return Reply(200, {"removed": c.clear_faults(parts[1] if len(parts) > 1 else None)})
                return Reply(200, {"faults": [f.to_json() for f in c.faults], "modes": sorted(FAULT_MODES)})
            if key == "metering":
                if method == "DELETE":
                    c.reset_metering()
                return Reply(200, c.metering())
            if key == "tokens" and method == "POST":
                caller = body.get("caller")
                return Reply(201, {"caller": caller, "token": c.issue_token(str(caller or ""))})
            if key == "throttling":
                if method == "PUT":
                    return Reply(200, c.set_throttling(body))
                return Reply(200, c.throttling)
            if key == "backups" and method == "POST":
                ref = body.get("backup_instance")
                if not isinstance(ref, str):
                    raise ControlError("backup_instance: give the backup instance name or ARM id")
                sql = body.get("seed_sql")
                if sql:
                    _, bi = e.find_bi_any(ref)
                    srv = e.world.servers[bi.server_id.lower()]
                    e.data.run_sql(srv.cluster, bi.database or srv.databases[0].name, str(sql))
                return Reply(201, e.backup_now(ref, str(body.get("state") or "Completed"),
                                               str(body.get("tier") or "vault"),
                                               parse_duration(str(body.get("age") or "PT0S"))))
            if key == "role-assignments" and method in ("POST", "DELETE"):
                return Reply(200, e.add_role(body, remove=method == "DELETE"))
            if key == "world" and method == "GET":
                return Reply(200, self._world_summary())
        except (ControlError, ValueError) as exc:
            return Reply(400, {"error": str(exc)})
        except BadRequest as exc:
            return Reply(exc.status, {"error": exc.message})
        return Reply(404, {"error": f"unknown admin call {method} {path}; see docs/emulator.md"})

    def _config(self) -> dict[str, Any]:
        s = self.engine.settings
        return {"time_scale": self.engine.clock.scale, "page_size": s.page_size, "job_page_size": s.job_page_size,
                "lro_duration": f"PT{s.lro_duration.total_seconds():g}S",
                "restore_job_duration": f"PT{s.restore_job_duration.total_seconds():g}S",
                "rehydration_duration_standard": f"PT{s.rehydration_standard.total_seconds():g}S",
                "rehydration_duration_high": f"PT{s.rehydration_high.total_seconds():g}S",
                "crr_replication_lag": f"PT{s.crr_replication_lag.total_seconds():g}S",
                "arm_latency_seconds": self.controls.arm_latency_seconds,
                "integer_retry_after": self.integer_retry_after,
                "job_destination_format": s.job_destination_format,
                "rehydration_reported_on": list(s.rehydration_reported_on),
                "strict_identity_details": s.strict_identity_details}

    def _set_config(self, body: dict[str, Any]) -> None:
        s = self.engine.settings
        durations = {"lro_duration": "lro_duration", "restore_job_duration": "restore_job_duration",
                     "rehydration_duration_standard": "rehydration_standard",
                     "rehydration_duration_high": "rehydration_high", "crr_replication_lag": "crr_replication_lag"}
        for k, v in body.items():
            if k in durations:
                d = parse_duration(str(v))
                if d.total_seconds() < 0:
                    raise ValueError(f"{k}: give a non-negative ISO-8601 duration like PT1H")
                setattr(s, durations[k], d)
            elif k == "integer_retry_after":
                if not isinstance(v, bool):
                    raise ValueError("integer_retry_after: give true or false")
                self.integer_retry_after = v
            elif k == "job_destination_format":
                s.job_destination_format, _ = check_emulation_choices(v, s.rehydration_reported_on)
            elif k == "rehydration_reported_on":
                _, s.rehydration_reported_on = check_emulation_choices(s.job_destination_format, v)
            elif k == "strict_identity_details":
                if not isinstance(v, bool):
                    raise ValueError("strict_identity_details: give true or false")
                s.strict_identity_details = v
            elif k == "time_scale":
                self.engine.clock.set_scale(float(v))
            elif k in ("page_size", "job_page_size"):
                if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                    raise ValueError(f"{k}: give a positive integer")
                setattr(s, k, v)
            elif k == "arm_latency_seconds":
                if float(v) < 0:
                    raise ValueError("arm_latency_seconds: give a number >= 0")
                self.controls.arm_latency_seconds = float(v)
            else:
                known = sorted([*durations, "time_scale", "page_size", "job_page_size", "arm_latency_seconds",
                                "integer_retry_after", "job_destination_format", "rehydration_reported_on",
                                "strict_identity_details"])
                raise ValueError(f"unknown config key '{k}'; known: {known}")

    def _world_summary(self) -> dict[str, Any]:
        w = self.engine.world
        return {
            "servers": {s.id: {"cluster": s.cluster, "location": s.location, "postgres_version": s.postgres_version,
                               "kind": s.kind, "databases": [d.name for d in s.databases]}
                        for s in w.servers.values()},
            "containers": {c.url: {"id": c.id, "azurite_container": c.azurite_container, "location": c.location}
                           for c in w.containers.values()},
            "secrets": [s.uri for s in w.secrets.values()],
            "vaults": {v.id: {"location": v.location, "principal_id": v.principal_id,
                              "user_assigned_identities": {u.id: u.principal_id for u in v.user_identities},
                              "backup_instances": [b.id for b in v.backup_instances]} for v in w.vaults.values()},
            "datastore_container": w.settings.datastore_container,
        }
