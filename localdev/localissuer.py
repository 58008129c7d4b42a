"""A small local token issuer standing in for Microsoft Entra ID (issue 14 item 3).

``create(dir)`` (called by ``localdev.stack up``) makes ``DIR/auth/``: an RSA key (``issuer.key``, 0600), its public
JWKS (``jwks.json``) and the local host's auth file (``auth.json``, the local ``authsettingsV2``: issuer, audience,
JWKS, excluded paths, whether authentication is required). :func:`mint` signs an RS256 access token shaped like an
Entra one (``iss``, ``aud``, ``oid``, ``sub``, ``tid``, ``name``, ``preferred_username``, ``roles``, ``iat``/``nbf``/
``exp``), which the local host (localdev/funchost/easyauth.py) validates as App Service would.

CLI: ``python -m localdev.localissuer token [--dir .local] --name alice@contoso.com --roles operator [--oid ID]``
prints a token (for ``RESTORE_API_TOKEN``, which ``restorectl`` sends as ``Authorization: Bearer``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from localdev.funchost.easyauth import b64url

ISSUER = "https://127.0.0.1/local-entra/v2.0"
AUDIENCE = "api://restore-local"
TENANT = "00000000-0000-0000-0000-00000000e17a"
KID = "local-1"
ALERT_DOOR = "/api/alerts"


def _private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def create(directory: Path, *, require_authentication: bool) -> Path:
    """Make the key, JWKS and auth file under ``directory/auth``; returns the auth file's path."""
    auth = Path(directory) / "auth"
    auth.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _private(auth / "issuer.key", key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
    nums = key.public_key().public_numbers()
    jwk = {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": KID,
           "n": b64url(nums.n.to_bytes((nums.n.bit_length() + 7) // 8, "big")),
           "e": b64url(nums.e.to_bytes((nums.e.bit_length() + 7) // 8, "big"))}
    (auth / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    return write_auth_file(directory, require_authentication=require_authentication)


def write_auth_file(directory: Path, *, require_authentication: bool) -> Path:
    path = Path(directory) / "auth" / "auth.json"
    path.write_text(json.dumps({"issuer": ISSUER, "audience": AUDIENCE, "jwks_file": "jwks.json",
                                "require_authentication": require_authentication,
                                "excluded_paths": [ALERT_DOOR]}, indent=2))
    return path


def sign(claims: dict[str, Any], key_pem: bytes, kid: str = KID) -> str:
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    head = b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": kid}).encode())
    body = b64url(json.dumps(claims).encode())
    sig = key.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{head}.{body}.{b64url(sig)}"


def mint(directory: Path, *, name: str, roles: Iterable[str] = (), oid: str | None = None, ttl: float = 3600,
         audience: str = AUDIENCE, issuer: str = ISSUER, **extra: Any) -> str:
    """An access token for ``name`` holding ``roles``, signed with the stack's issuer key."""
    now = int(time.time())
    oid = oid or str(uuid.uuid5(uuid.NAMESPACE_DNS, name))
    claims = {"iss": issuer, "aud": audience, "tid": TENANT, "oid": oid, "sub": oid, "name": name,
              "preferred_username": name, "roles": list(roles), "iat": now, "nbf": now, "exp": now + int(ttl),
              **extra}
    return sign(claims, (Path(directory) / "auth" / "issuer.key").read_bytes())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m localdev.localissuer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("token", help="print an access token of the local issuer")
    t.add_argument("--dir", type=Path, default=Path(__file__).resolve().parents[1] / ".local")
    t.add_argument("--name", required=True, help="the caller's name (preferred_username)")
    t.add_argument("--roles", default="", help="app roles, comma-separated: reader, operator, admin")
    t.add_argument("--oid", help="object id (default: derived from the name)")
    t.add_argument("--ttl", type=float, default=3600)
    args = p.parse_args(argv)
    if not (args.dir / "auth" / "issuer.key").exists():
        print(f"localissuer: no issuer key in {args.dir / 'auth'}; start the stack first (make up)", file=sys.stderr)
        return 2
    roles = [r.strip() for r in args.roles.split(",") if r.strip()]
    print(mint(args.dir, name=args.name, roles=roles, oid=args.oid, ttl=args.ttl))
    return 0


if __name__ == "__main__":
    sys.exit(main())
