"""Routing: which ARM operation a request names, through starlette's router.

Consumes: ASGI endpoints from the server (one shared by every ARM operation, one for ``/admin``, one for anything
else). Produces: a :class:`starlette.routing.Router` whose ARM routes are :class:`ArmRoute` s. The endpoint reads
the matched route from ``scope["route"]`` (its ``operation`` and ``kind``) and the path parameters from
``scope["path_params"]``.

ARM matches paths case-insensitively, accepts a trailing slash and answers ``404 NotFound`` (not 405) for a method
it does not serve; :class:`ArmRoute` matches the same way (no implied ``HEAD``, no redirects).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from starlette.routing import BaseRoute, Match, Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

_SUB = "/subscriptions/{sub}"
_RG = _SUB + "/resourceGroups/{rg}"
_V = _RG + "/providers/Microsoft.DataProtection/backupVaults/{vault}"
_BI = _V + "/backupInstances/{bi}"
_LOC_SUB = _SUB + "/providers/Microsoft.DataProtection/locations/{loc}"
_LOC_RG = _RG + "/providers/Microsoft.DataProtection/locations/{loc}"


@dataclass(frozen=True)
class ArmOperation:
    """One ARM operation: the methods it serves, its path template, its operationId and its metering kind."""

    methods: tuple[str, ...]
    path: str
    operation: str
    kind: str  # read | write (metering and throttling class)


ARM_OPERATIONS: tuple[ArmOperation, ...] = (
    ArmOperation(("GET",), _V, "BackupVaults_Get", "read"),
    ArmOperation(("GET",), _V + "/backupInstances", "BackupInstances_List", "read"),
    ArmOperation(("GET",), _BI, "BackupInstances_Get", "read"),
    ArmOperation(("GET",), _BI + "/recoveryPoints", "RecoveryPoints_List", "read"),
    ArmOperation(("GET",), _BI + "/recoveryPoints/{rp}", "RecoveryPoints_Get", "read"),
    ArmOperation(("POST",), _BI + "/validateRestore", "BackupInstances_ValidateForRestore", "write"),
    ArmOperation(("POST",), _BI + "/restore", "BackupInstances_TriggerRestore", "write"),
    ArmOperation(("POST",), _BI + "/rehydrate", "BackupInstances_TriggerRehydrate", "write"),
    ArmOperation(("GET",), _V + "/backupJobs", "Jobs_List", "read"),
    ArmOperation(("GET",), _V + "/backupJobs/{job}", "Jobs_Get", "read"),
    ArmOperation(("GET",), _LOC_SUB + "/operationStatus/{op}", "OperationStatus_Get", "read"),
    ArmOperation(("GET",), _LOC_SUB + "/operationResults/{op}", "OperationResult_Get", "read"),
    ArmOperation(("POST", "GET"), _LOC_RG + "/fetchSecondaryRecoveryPoints", "FetchSecondaryRecoveryPoints_List",
                 "read"),
    ArmOperation(("POST",), _LOC_RG + "/validateCrossRegionRestore", "BackupInstances_ValidateCrossRegionRestore",
                 "write"),
    ArmOperation(("POST",), _LOC_RG + "/crossRegionRestore", "BackupInstances_TriggerCrossRegionRestore", "write"),
    ArmOperation(("POST",), _LOC_RG + "/fetchCrossRegionRestoreJob", "FetchCrossRegionRestoreJob_Get", "read"),
    ArmOperation(("POST", "GET"), _LOC_RG + "/fetchCrossRegionRestoreJobs", "FetchCrossRegionRestoreJobs_List",
                 "read"),
    # extension routing on the protected resource (any ARM id): "Gets a list of backup instances associated with a
    # tracked resource"; last, so a vault's own backupInstances path never reaches it
    ArmOperation(("GET",), "/{resource:path}/providers/Microsoft.DataProtection/backupInstances",
                 "BackupInstancesExtensionRouting_List", "read"),
)


class LenientRoute(Route):
    """A route matched as ARM matches: case-insensitive, optional trailing slash, exactly ``methods`` (compared
    upper-cased; ``None``: any), and a method it does not serve is no match at all (no 405)."""

    def __init__(self, path: str, endpoint: ASGIApp, methods: Collection[str] | None, name: str) -> None:
        super().__init__(path, endpoint, methods=methods, name=name)
        self.methods = None if methods is None else {m.upper() for m in methods}  # no implied HEAD
        self.path_regex = re.compile(self.path_regex.pattern.removesuffix("$") + "/?$", re.IGNORECASE)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http":
            scope = {**scope, "method": str(scope["method"]).upper()}
        match, child_scope = super().matches(scope)
        return (match, child_scope) if match is Match.FULL else (Match.NONE, {})

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)  # the method was checked when matching


class ArmRoute(LenientRoute):
    """The route of one :class:`ArmOperation`."""

    def __init__(self, spec: ArmOperation, endpoint: ASGIApp) -> None:
        super().__init__(spec.path, endpoint, spec.methods, spec.operation)
        self.operation = spec.operation
        self.kind = spec.kind


def build_router(arm: ASGIApp, admin: ASGIApp, default: ASGIApp, keyvault: ASGIApp | None = None) -> Router:
    """``/admin`` and ``/admin/...`` (any method) go to ``admin``, ARM operations to ``arm``, Key Vault secret reads
    (``GET /keyvault/{vault}/secrets/{name}[/{version}]``) to ``keyvault``, the rest to ``default``. The endpoints
    are ASGI apps (not request functions), so they get the server's own ``send``."""
    routes: list[BaseRoute] = [LenientRoute("/admin", admin, None, "admin"),
                               LenientRoute("/admin/{rest:path}", admin, None, "admin")]
    if keyvault is not None:
        routes += [LenientRoute("/keyvault/{vault}/secrets/{name}", keyvault, ("GET",), "keyvault"),
                   LenientRoute("/keyvault/{vault}/secrets/{name}/{version}", keyvault, ("GET",), "keyvault")]
    routes += [ArmRoute(spec, arm) for spec in ARM_OPERATIONS]
    return Router(routes, redirect_slashes=False, default=default)
