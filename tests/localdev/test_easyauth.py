"""The local host plays App Service built-in authentication (issue 14 item 3): clients' X-MS-* headers never reach
the app, bearer tokens of the local issuer are validated and turned into the platform's principal headers, 401 as
the platform answers; excluded paths pass untouched. Token checks offline, the front through a real host."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localdev import localissuer
from localdev.azurite import Azurite
from localdev.funchost import FunctionsHost
from localdev.funchost.easyauth import AuthConfig, TokenError, b64url, front, principal_headers, verify
from restore_core import principal
from tests.localdev.conftest import APPS, Queues
from tests.localdev.test_funchost import fetch, host_json, settings


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("issuer")
    localissuer.create(d, require_authentication=True)
    return d


@pytest.fixture(scope="module")
def cfg(issuer: Path) -> AuthConfig:
    return AuthConfig.load(issuer / "auth" / "auth.json")


def test_the_issuer_key_is_private_and_the_auth_file_excludes_the_alert_door(issuer: Path, cfg: AuthConfig) -> None:
    assert (issuer / "auth" / "issuer.key").stat().st_mode & 0o077 == 0
    assert cfg.excluded("/api/alerts") and cfg.excluded("/API/alerts/") and not cfg.excluded("/api/alertsx")
    assert not cfg.excluded("/api/restores") and cfg.require_authentication
    assert "PRIVATE" not in (issuer / "auth" / "jwks.json").read_text()


def test_a_token_of_the_local_issuer_verifies_and_becomes_the_platforms_principal(issuer: Path,
                                                                                   cfg: AuthConfig) -> None:
    token = localissuer.mint(issuer, name="alice@contoso.com", roles=["operator"])
    claims = verify(token, cfg)
    assert claims["preferred_username"] == "alice@contoso.com" and claims["roles"] == ["operator"]
    caller = principal.caller_of(principal_headers(claims))  # the app's reader understands what the host sets
    assert caller is not None and caller.name == "alice@contoso.com" and caller.roles == frozenset({"operator"})
    assert caller.id == claims["oid"] and caller.idp == "aad"


def _tampered(token: str) -> str:
    head, body, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["roles"] = ["admin"]
    return f"{head}.{b64url(json.dumps(claims).encode())}.{sig}"


@pytest.mark.parametrize(("make", "why"), [
    (lambda d: _tampered(localissuer.mint(d, name="eve", roles=["reader"])), "signature"),
    (lambda d: localissuer.mint(d, name="eve", ttl=-3600), "expired"),
    (lambda d: localissuer.mint(d, name="eve", audience="api://someone-else"), "audience"),
    (lambda d: localissuer.mint(d, name="eve", issuer="https://login.example/evil/v2.0"), "issuer"),
    (lambda d: localissuer.mint(d, name="eve", nbf=int(time.time()) + 3600), "not valid yet"),
    (lambda d: b64url(b'{"alg":"none","kid":"local-1"}') + "." + b64url(b'{"roles":["admin"]}') + ".", "RS256"),
    (lambda d: "not-a-jwt", "three"),
])
def test_bad_tokens_are_refused_saying_why(issuer: Path, cfg: AuthConfig, make: Any, why: str) -> None:
    with pytest.raises(TokenError, match=why):
        verify(make(issuer), cfg)


def test_a_token_signed_by_another_key_is_refused(tmp_path: Path, cfg: AuthConfig) -> None:
    localissuer.create(tmp_path, require_authentication=True)  # another issuer key, same kid
    with pytest.raises(TokenError, match="signature"):
        verify(localissuer.mint(tmp_path, name="eve", roles=["admin"]), cfg)


def test_the_front_strips_client_principal_headers_everywhere(issuer: Path, cfg: AuthConfig) -> None:
    forged = {"X-MS-CLIENT-PRINCIPAL": "e30=", "x-ms-client-principal-id": "mallory", "X-Ms-Token-Aad-Id-Token": "t"}
    passed, why = front({**forged, "Accept": "x"}, "/api/alerts", cfg)  # excluded: passes, but without them
    assert why == "" and passed == {"Accept": "x"}
    assert front(forged, "/api/restores", cfg) == (None, "authentication required")
    token = localissuer.mint(issuer, name="bob", roles=["reader"])
    passed, _ = front({**forged, "Authorization": f"Bearer {token}"}, "/api/restores", cfg)
    assert passed is not None and passed["X-MS-CLIENT-PRINCIPAL-NAME"] == "bob"
    assert "mallory" not in json.dumps(passed) and "x-ms-client-principal-id" not in passed


# ------------------------------------------------------------------------------------------------ a real host
@pytest.fixture(scope="module")
def authed(azurite: Azurite, cfg: AuthConfig) -> Iterator[FunctionsHost]:
    q = Queues(azurite.connection_string)
    with FunctionsHost(APPS / "basic", settings(q), function_keys=["fkey"], host_json=host_json(), auth=cfg) as h:
        yield h


def test_the_host_sets_the_principal_from_a_token_and_drops_a_forged_one(authed: FunctionsHost,
                                                                          issuer: Path) -> None:
    url = authed.base_url + "/api/whoami"
    token = localissuer.mint(issuer, name="carol@contoso.com", roles=["admin"])
    forged = base64.b64encode(json.dumps({"claims": [{"typ": "roles", "val": "admin"}]}).encode()).decode()
    status, body, _ = fetch(url, headers={"x-functions-key": "fkey", "Authorization": f"Bearer {token}",
                                          "X-MS-CLIENT-PRINCIPAL-NAME": "mallory"})
    seen = json.loads(body)
    assert status == 200 and seen["auth_enabled"] == "True", body
    assert seen["headers"]["x-ms-client-principal-name"] == "carol@contoso.com"
    assert seen["headers"]["x-ms-client-principal-idp"] == "aad"
    # no token: the platform answers 401 before the app (and before the key check), whatever the client claims
    status, body, headers = fetch(url, headers={"x-functions-key": "fkey", "X-MS-CLIENT-PRINCIPAL": forged,
                                                "X-MS-CLIENT-PRINCIPAL-ID": "mallory"})
    assert status == 401 and headers.get("WWW-Authenticate") == "Bearer"
    # a bad token: 401 too
    assert fetch(url, headers={"x-functions-key": "fkey", "Authorization": "Bearer x.y.z"})[0] == 401
    # the key check still follows the platform's: a valid token without a key on a function-level route is 401
    assert fetch(url, headers={"Authorization": f"Bearer {token}"})[0] == 401


def test_without_auth_the_host_says_the_platform_authentication_is_off(azurite: Azurite) -> None:
    q = Queues(azurite.connection_string)
    with FunctionsHost(APPS / "basic", {**settings(q), "WEBSITE_AUTH_ENABLED": "True"}, function_keys=["fkey"],
                       host_json=host_json()) as h:
        status, body, _ = fetch(h.base_url + "/api/whoami", headers={"x-functions-key": "fkey",
                                                                     "X-MS-CLIENT-PRINCIPAL-NAME": "mallory"})
        seen = json.loads(body)
        assert status == 200 and seen["auth_enabled"] == "False"  # only the platform sets it
        assert seen["headers"] == {"x-ms-client-principal-name": "mallory"}  # no platform: nothing stripped
