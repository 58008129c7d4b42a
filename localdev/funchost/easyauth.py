"""The platform's built-in authentication ("Easy Auth"), played by the local host in front of the app.

Consumes: an auth file (``--auth-file``, JSON; the local counterpart of App Service ``authsettingsV2``)::

    {"issuer": "https://127.0.0.1/local-entra/v2.0", "audience": "api://restore-local",
     "jwks_file": ".local/auth/jwks.json", "require_authentication": true, "excluded_paths": ["/api/alerts"]}

Per request, as App Service does: every ``X-MS-*`` header a client sent is removed (the app can trust those headers
only because nobody but the platform sets them); a ``Authorization: Bearer`` token is validated — RS256 signature
with a key of the JWKS (by ``kid``), ``iss``, ``aud``, ``exp``/``nbf`` (5 minutes of clock skew) — and its claims
are passed on as ``X-MS-CLIENT-PRINCIPAL`` (base64 JSON ``{auth_typ, claims: [{typ, val}], name_typ, role_typ}``),
``X-MS-CLIENT-PRINCIPAL-ID`` (``oid``), ``-NAME`` (``preferred_username``/``name``/``appid``) and ``-IDP``
(``aad``). An invalid token is answered 401; a request without a token on a path that is not excluded is answered
401 when ``require_authentication`` (App Service: ``unauthenticatedClientAction: Return401``), else passed on
without principal. Excluded paths pass untouched (still without client ``X-MS-*`` headers).

Tokens come from the local issuer (localdev/localissuer.py), which keeps the private key; this module only reads the
public JWKS. No JWT library: RS256 verification with ``cryptography``.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

SKEW_SECONDS = 300
ROLE_TYP = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
NAME_TYP = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"
OID_TYP = "http://schemas.microsoft.com/identity/claims/objectidentifier"


class TokenError(ValueError):
    """A bearer token that is not valid here; the message says why (never the token)."""


def b64url_decode(part: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        raise TokenError("the token is not base64url") from None


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int(value: str) -> int:
    return int.from_bytes(b64url_decode(value), "big")


def public_keys(jwks: Mapping[str, Any]) -> dict[str, rsa.RSAPublicKey]:
    """``kid`` → RSA public key of a JWKS document (``kty: RSA`` keys only)."""
    keys = {}
    for k in jwks.get("keys", []):
        if isinstance(k, dict) and k.get("kty") == "RSA" and k.get("kid"):
            keys[str(k["kid"])] = rsa.RSAPublicNumbers(_int(k["e"]), _int(k["n"])).public_key()
    return keys


@dataclass
class AuthConfig:
    issuer: str
    audience: str
    keys: dict[str, rsa.RSAPublicKey] = field(repr=False)
    require_authentication: bool = True
    excluded_paths: tuple[str, ...] = ()

    @classmethod
    def load(cls, path: Path) -> AuthConfig:
        doc = json.loads(Path(path).read_text())
        jwks_file = Path(doc["jwks_file"])
        if not jwks_file.is_absolute():
            jwks_file = Path(path).parent / jwks_file
        return cls(str(doc["issuer"]), str(doc["audience"]), public_keys(json.loads(jwks_file.read_text())),
                   bool(doc.get("require_authentication", True)),
                   tuple(str(p).rstrip("/").lower() for p in doc.get("excluded_paths", [])))

    def excluded(self, path: str) -> bool:
        p = path.rstrip("/").lower()
        return any(p == e or p.startswith(e + "/") for e in self.excluded_paths)


def verify(token: str, cfg: AuthConfig, now: float | None = None) -> dict[str, Any]:
    """The claims of a valid RS256 token; :class:`TokenError` naming what is wrong."""
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("the token is not a JWT (three dot-separated parts)")
    try:
        header, claims = json.loads(b64url_decode(parts[0])), json.loads(b64url_decode(parts[1]))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise TokenError("the token's header or claims are not JSON") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise TokenError("the token's header or claims are not JSON objects")
    if header.get("alg") != "RS256":
        raise TokenError(f"the token's alg is {header.get('alg')!r}; only RS256 is accepted")
    key = cfg.keys.get(str(header.get("kid")))
    if key is None:
        raise TokenError("the token's kid is not in the issuer's JWKS")
    try:
        key.verify(b64url_decode(parts[2]), f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise TokenError("the token's signature does not verify") from None
    _check_claims(claims, cfg, time.time() if now is None else now)
    return claims


def _check_claims(claims: Mapping[str, Any], cfg: AuthConfig, now: float) -> None:
    if claims.get("iss") != cfg.issuer:
        raise TokenError("the token's issuer is not the configured one")
    aud = claims.get("aud")
    if cfg.audience not in (aud if isinstance(aud, list) else [aud]):
        raise TokenError("the token's audience is not this app")
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if not isinstance(exp, int | float) or now > exp + SKEW_SECONDS:
        raise TokenError("the token has expired (or has no exp)")
    if isinstance(nbf, int | float) and now < nbf - SKEW_SECONDS:
        raise TokenError("the token is not valid yet (nbf)")


def principal_headers(claims: Mapping[str, Any]) -> dict[str, str]:
    """The headers App Service passes on for a validated Entra token (claims mapped as its default mapping does for
    the ones the app reads: ``oid`` → objectidentifier, ``roles`` → one role claim each)."""
    out: list[dict[str, str]] = []
    for typ, val in claims.items():
        if typ == "roles" and isinstance(val, list):
            out.extend({"typ": ROLE_TYP, "val": str(r)} for r in val)
        elif typ == "oid":
            out.append({"typ": OID_TYP, "val": str(val)})
        elif typ == "name":
            out.append({"typ": NAME_TYP, "val": str(val)})
        elif isinstance(val, str | int | float | bool):
            out.append({"typ": typ, "val": str(val)})
    principal = {"auth_typ": "aad", "claims": out, "name_typ": NAME_TYP, "role_typ": ROLE_TYP}
    name = claims.get("preferred_username") or claims.get("name") or claims.get("appid") or ""
    headers = {"X-MS-CLIENT-PRINCIPAL": base64.b64encode(json.dumps(principal).encode()).decode(),
               "X-MS-CLIENT-PRINCIPAL-ID": str(claims.get("oid") or claims.get("sub") or ""),
               "X-MS-CLIENT-PRINCIPAL-IDP": "aad"}
    if name:
        headers["X-MS-CLIENT-PRINCIPAL-NAME"] = str(name)
    return headers


def strip_platform_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers without any ``X-MS-*`` a client sent."""
    return {k: v for k, v in headers.items() if not k.lower().startswith("x-ms-")}


def front(headers: Mapping[str, str], path: str, cfg: AuthConfig) -> tuple[dict[str, str] | None, str]:
    """What the platform does with a request: (headers to pass on, "") or (None, why it is answered 401)."""
    clean = strip_platform_headers(headers)
    if cfg.excluded(path):
        return clean, ""
    auth = next((v for k, v in clean.items() if k.lower() == "authorization"), "")
    if not auth:
        return (None, "authentication required") if cfg.require_authentication else (clean, "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None, "the Authorization header is not a bearer token"
    try:
        claims = verify(token.strip(), cfg)
    except TokenError as exc:
        return None, str(exc)
    return {**clean, **principal_headers(claims)}, ""
