"""Who asked, over HTTP: the platform's principal headers, app roles, and what each role may do (issue 14 item 3).

Consumes: the request headers and :class:`~restore_core.config.AuthSettings`.
Produces: a :class:`~restore_core.guards.Caller`, or a refusal (401/403/503 with a fix) from :func:`authorize`.

``RESTORE_AUTH_MODE=key`` (the default): the Functions host checked a function key; the app cannot tell which key
(the host does not say), so every key holder is :data:`~restore_core.guards.FUNCTION_KEY` and may do everything.

``RESTORE_AUTH_MODE=entra``: App Service built-in authentication ("Easy Auth") validates the caller's Microsoft
Entra ID token in front of the app, strips any ``X-MS-*`` header a client sent, and passes the caller on as

- ``X-MS-CLIENT-PRINCIPAL``: base64 of JSON ``{"auth_typ", "claims": [{"typ", "val"}...], "name_typ",
  "role_typ"}``; every app role is one claim whose ``typ`` is ``role_typ`` (or ``roles``);
- ``X-MS-CLIENT-PRINCIPAL-ID`` (the object id), ``-NAME`` (a human-readable name) and ``-IDP`` (``aad``).

The app refuses a user request without a principal (401) and, as those headers are trustworthy only behind the
platform, any request at all while the platform says its authentication is off (``WEBSITE_AUTH_ENABLED``; 503).
Roles (app roles of the app registration, values below) are cumulative: an operator may read, an admin operate.

=========  =========================================================================================
reader     preview, list, show, browse backup instances and recovery points, the stage list
operator   start a restore, cancel, re-drive
admin      restore beside a protected source (``RESTORE_BESIDE_SOURCE_ROLE``, default ``admin`` here),
           manage drills
=========  =========================================================================================
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from .config import AuthSettings
from .guards import FUNCTION_KEY, Caller

READER, OPERATOR, ADMIN = "reader", "operator", "admin"
ROLES = (READER, OPERATOR, ADMIN)
_RANK = {r: i for i, r in enumerate(ROLES)}

#: What each action needs (the HTTP handlers name their action).
ACTIONS: dict[str, str] = {
    "read": READER, "preview": READER, "browse": READER,
    "start": OPERATOR, "cancel": OPERATOR, "redrive": OPERATOR,
    "beside_source": ADMIN, "drills": ADMIN,
}

HEADER = "x-ms-client-principal"
HEADER_ID = "x-ms-client-principal-id"
HEADER_NAME = "x-ms-client-principal-name"
HEADER_IDP = "x-ms-client-principal-idp"
_ROLE_TYPES = ("roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role")
_OID_TYPES = ("http://schemas.microsoft.com/identity/claims/objectidentifier", "oid")


class Denied(Exception):
    """A request the caller may not make: HTTP status, code, message, fix."""

    def __init__(self, status: int, code: str, message: str, fix: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.fix = status, code, message, fix

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "field": None, "fix": self.fix}}


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def decode_principal(value: str) -> dict[str, Any]:
    """The JSON behind ``X-MS-CLIENT-PRINCIPAL``; :class:`ValueError` when it is not base64 of a JSON object with a
    list of claims."""
    try:
        data = json.loads(base64.b64decode(value + "=" * (-len(value) % 4), validate=False))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"X-MS-CLIENT-PRINCIPAL is not base64 of JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict) or not isinstance(data.get("claims"), list):
        raise ValueError("X-MS-CLIENT-PRINCIPAL has no claims list")
    return data


def claims(principal: Mapping[str, Any], typ: str | tuple[str, ...]) -> list[str]:
    types = (typ,) if isinstance(typ, str) else typ
    return [str(c.get("val")) for c in principal.get("claims", [])
            if isinstance(c, dict) and c.get("typ") in types and c.get("val") is not None]


def roles_of(principal: Mapping[str, Any]) -> frozenset[str]:
    """The app roles of a principal: claims of its ``role_typ`` (or ``roles``), lower case."""
    types = tuple({str(principal.get("role_typ") or "roles"), *_ROLE_TYPES})
    return frozenset(r.strip().lower() for r in claims(principal, types) if r.strip())


def caller_of(headers: Mapping[str, str]) -> Caller | None:
    """The principal the platform passed on, or None when there is none."""
    h = _lower(headers)
    raw = h.get(HEADER)
    if not raw:
        return None
    principal = decode_principal(raw)
    oid = h.get(HEADER_ID) or next(iter(claims(principal, _OID_TYPES)), "")
    if not oid:
        raise ValueError("the platform's principal has no id (X-MS-CLIENT-PRINCIPAL-ID)")
    name = h.get(HEADER_NAME) or next(iter(claims(principal, str(principal.get("name_typ") or "name"))), None)
    return Caller(oid, "principal", roles_of(principal), name=name,
                  idp=h.get(HEADER_IDP) or str(principal.get("auth_typ") or "") or None)


def holds(caller: Caller, role: str) -> bool:
    """Roles are cumulative: admin ⊃ operator ⊃ reader. A caller without roles (a function key) holds none."""
    if caller.roles is None:
        return False
    need = _RANK.get(role.lower())
    if need is None:
        return caller.holds(role)
    return any(_RANK.get(r, -1) >= need for r in caller.roles)


def authorize(headers: Mapping[str, str], action: str, auth: AuthSettings) -> Caller:
    """The caller of an HTTP request allowed to do ``action``; :class:`Denied` otherwise."""
    if auth.mode != "entra":
        return FUNCTION_KEY  # the host checked the key; key holders may do everything, as before
    if not auth.platform_auth:
        raise Denied(503, "PlatformAuthenticationOff",
                     "RESTORE_AUTH_MODE is entra but the platform's built-in authentication is off "
                     "(WEBSITE_AUTH_ENABLED is not true), so no caller can be trusted",
                     "turn on App Service authentication with the app registration (docs/deploy.md \"Entra "
                     "callers\"), or set RESTORE_AUTH_MODE=key")
    try:
        caller = caller_of(headers)
    except ValueError as exc:
        raise Denied(401, "PrincipalUnreadable", str(exc), "sign in again; the platform's headers were not "
                                                          "readable") from None
    if caller is None:
        raise Denied(401, "AuthenticationRequired", "this API needs a Microsoft Entra ID caller",
                     "send an access token for the app registration (Authorization: Bearer ...), e.g. "
                     "az account get-access-token --resource api://<client-id>")
    role = ACTIONS[action]
    if not holds(caller, role):
        raise Denied(403, "RoleRequired",
                     f"{action} needs the {role} app role, and {caller.name or caller.id} holds "
                     f"{', '.join(sorted(caller.roles or ())) or 'no role'}",
                     f"ask an owner of the app registration to assign you the {role} role (docs/deploy.md "
                     "\"Entra callers\")")
    return caller
