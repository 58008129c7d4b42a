"""HTTPS front door: routing, auth, api-version, injected latency and faults, throttling, metering.

Consumes: an :class:`Engine` and :class:`Controls`. Produces: an ASGI app served by uvicorn over TLS.
Every ARM call goes: route (:mod:`.routing`) -> auth -> api-version -> injected latency -> token bucket ->
pre-faults -> handler (:mod:`.arm`) -> "lost answer" faults -> metering. Admin calls (``/admin/...``,
:mod:`.adminapi`) need the main token and are never metered.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .adminapi import AdminApi
from .arm import ArmHandlers
from .control import POST_MODES, PRE_MODES, Controls, Fault
from .engine import Engine
from .keyvault import KeyVault
from .model import BadRequest
from .replies import Call, Reply, cloud_error
from .routing import ArmRoute, build_router

log = logging.getLogger("dpemu.server")

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
    """``entra_token``: the bearer token the emulated Key Vault accepts (default: the main token)."""

    def __init__(self, engine: Engine, controls: Controls, base_url: str, entra_token: str | None = None) -> None:
        self.engine = engine
        self.controls = controls
        self.base_url = base_url.rstrip("/")
        self.arm = ArmHandlers(engine, controls, self.base_url)
        self.admin = AdminApi(engine, controls, self.base_url)
        main = next(iter(controls.tokens))
        self.keyvault = KeyVault(engine, entra_token or main)
        self.router = build_router(Endpoint(self._arm_call), Endpoint(self._admin_call), Endpoint(self._no_route),
                                   Endpoint(self._keyvault_call))

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
        return await run_in_threadpool(self.admin.handle, request.method, request.url.path, raw)

    async def _keyvault_call(self, request: Request, raw: bytes) -> Reply:
        p = request.path_params
        return self.keyvault.get_secret(p["vault"], p["name"], p.get("version"),
                                        request.headers.get("authorization", ""), dict(request.query_params))

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
        refused, rl = await self._admit(op, kind, caller)
        if refused is not None:
            return refused
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError:
            return Reply(400, cloud_error("InvalidRequestContent", "The request body is not valid JSON."), rl)
        query = {k: v for k, v in request.query_params.items()}
        call = Call(request.method.upper(), request.url.path, query, body, params, op,
                    next((v for k, v in query.items() if k.lower() == "api-version"), "2026-06-01"))
        try:
            reply = await run_in_threadpool(self.arm.handle, call)
        except BadRequest as e:
            reply = Reply(e.status, cloud_error(e.code, e.message))
        reply.headers.update(rl)
        if 200 <= reply.status < 300:
            lost = self.controls.take_fault(op, POST_MODES)
            if lost is not None:
                return Reply(0, drop=True) if lost.mode == "lost_drop" else Reply(
                    500, cloud_error("InternalServerError", lost.error_message))
        return reply

    async def _admit(self, op: str, kind: str, caller: str) -> tuple[Reply | None, dict[str, str]]:
        """Injected latency, the token bucket, then the faults that replace the call. Returns the refusal (or None)
        and the rate-limit headers every answer carries while throttling is enabled."""
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
                             wait * 1000))), **rl}), rl
        fault = c.take_fault(op, PRE_MODES)
        if fault is not None and fault.mode != "delay":
            return _pre_fault_reply(fault, rl), rl
        if fault is not None:
            await asyncio.sleep(fault.delay_seconds)
        return None, rl

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
