"""Issue 14 item 3, who asked: the platform's principal headers, app roles, what each may do, and the caller recorded
on the row, the timeline, the completion event and the cancel."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from restore_core import api, guards, principal
from restore_core.config import AuthSettings, SettingsError
from restore_core.events import completion_event
from restore_core.models import Status

from .fakes import TARGET_SERVER_ID, Harness, database_body, settings

ROLE_URI = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
ENTRA = AuthSettings(mode="entra", platform_auth=True)
BASE = "https://app.example/api"
OTHER_SERVER = TARGET_SERVER_ID.replace("pgsrv-restore", "pgsrv-other")


def principal_headers(*roles: str, oid: str = "11111111-2222-3333-4444-555555555555", name: str = "alice@contoso.com",
                      role_typ: str = ROLE_URI, role_claim: str | None = None) -> dict[str, str]:
    """What App Service passes on for an Entra caller (configure-authentication-user-identities: base64 JSON with
    auth_typ, claims [{typ, val}], name_typ, role_typ; plus -ID, -NAME, -IDP)."""
    body = {"auth_typ": "aad", "name_typ": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
            "role_typ": role_typ,
            "claims": [{"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": oid},
                       {"typ": "name", "val": name},
                       *({"typ": role_claim or role_typ, "val": r} for r in roles)]}
    return {"X-MS-CLIENT-PRINCIPAL": base64.b64encode(json.dumps(body).encode()).decode(),
            "X-MS-CLIENT-PRINCIPAL-ID": oid, "X-MS-CLIENT-PRINCIPAL-NAME": name, "X-MS-CLIENT-PRINCIPAL-IDP": "aad"}


# ------------------------------------------------------------------------------------------------ parsing
def test_the_principal_header_is_read_with_its_roles_id_and_name() -> None:
    caller = principal.caller_of(principal_headers("Operator", "reader"))
    assert caller is not None and caller.kind == "principal"
    assert caller.id == "11111111-2222-3333-4444-555555555555" and caller.name == "alice@contoso.com"
    assert caller.roles == frozenset({"operator", "reader"}) and caller.idp == "aad"
    assert caller.record() == {"kind": "principal", "id": caller.id, "name": "alice@contoso.com", "idp": "aad"}


def test_roles_under_the_plain_roles_claim_type_count_too() -> None:
    caller = principal.caller_of(principal_headers("admin", role_typ=ROLE_URI, role_claim="roles"))
    assert caller is not None and caller.roles == frozenset({"admin"})


def test_header_names_are_matched_case_insensitively_and_the_id_falls_back_to_the_oid_claim() -> None:
    headers = {k.lower(): v for k, v in principal_headers("reader").items() if k != "X-MS-CLIENT-PRINCIPAL-ID"}
    caller = principal.caller_of(headers)
    assert caller is not None and caller.id == "11111111-2222-3333-4444-555555555555"


@pytest.mark.parametrize("value", ["not base64 at all!!", base64.b64encode(b"[1, 2]").decode(),
                                   base64.b64encode(b'{"claims": "no"}').decode()])
def test_an_unreadable_principal_is_refused_not_guessed(value: str) -> None:
    with pytest.raises(ValueError):
        principal.caller_of({"X-MS-CLIENT-PRINCIPAL": value, "X-MS-CLIENT-PRINCIPAL-ID": "x"})
    with pytest.raises(principal.Denied) as denied:
        principal.authorize({"X-MS-CLIENT-PRINCIPAL": value, "X-MS-CLIENT-PRINCIPAL-ID": "x"}, "read", ENTRA)
    assert denied.value.status == 401


# ------------------------------------------------------------------------------------------------ decisions
@pytest.mark.parametrize(("roles", "allowed"), [
    ((), set()),
    (("reader",), {"read", "preview", "browse"}),
    (("operator",), {"read", "preview", "browse", "start", "cancel", "redrive"}),
    (("admin",), set(principal.ACTIONS)),
    (("Restore.Unknown",), set()),
])
def test_roles_are_cumulative_and_decide_each_action(roles: tuple[str, ...], allowed: set[str]) -> None:
    headers = principal_headers(*roles)
    for action in principal.ACTIONS:
        if action in allowed:
            assert principal.authorize(headers, action, ENTRA).id.startswith("1111"), action
        else:
            with pytest.raises(principal.Denied) as denied:
                principal.authorize(headers, action, ENTRA)
            assert denied.value.status == 403 and denied.value.code == "RoleRequired", action
            assert principal.ACTIONS[action] in denied.value.fix


def test_without_a_principal_entra_mode_answers_401_with_how_to_get_a_token() -> None:
    with pytest.raises(principal.Denied) as denied:
        principal.authorize({"x-functions-key": "k"}, "read", ENTRA)
    assert denied.value.status == 401 and "Bearer" in denied.value.fix


def test_entra_mode_without_the_platforms_authentication_trusts_no_header() -> None:
    with pytest.raises(principal.Denied) as denied:
        principal.authorize(principal_headers("admin"), "read", AuthSettings(mode="entra", platform_auth=False))
    assert denied.value.status == 503 and "WEBSITE_AUTH_ENABLED" in denied.value.message


def test_in_key_mode_a_client_sent_principal_is_ignored() -> None:
    forged = principal_headers("admin", name="mallory")
    assert principal.authorize(forged, "beside_source", AuthSettings()) == guards.FUNCTION_KEY
    assert guards.caller_from_http(forged, AuthSettings(mode="key", platform_auth=True)) == guards.FUNCTION_KEY
    assert guards.caller_from_http(forged) == guards.FUNCTION_KEY
    assert guards.caller_from_http(forged, ENTRA).name == "mallory"  # only behind the platform


# ------------------------------------------------------------------------------------------------ settings
def test_auth_mode_and_the_beside_source_role_default() -> None:
    key, entra = settings(), settings(RESTORE_AUTH_MODE="entra", WEBSITE_AUTH_ENABLED="True")
    assert key.auth == AuthSettings(mode="key", platform_auth=False) and key.guards.beside_source_role == ""
    assert entra.auth == ENTRA and entra.guards.beside_source_role == "admin"
    assert settings(RESTORE_AUTH_MODE="entra", RESTORE_BESIDE_SOURCE_ROLE="none").guards.beside_source_role == ""
    assert settings(RESTORE_BESIDE_SOURCE_ROLE="operator").guards.beside_source_role == "operator"
    with pytest.raises(SettingsError, match="RESTORE_AUTH_MODE"):
        settings(RESTORE_AUTH_MODE="aad")


# ------------------------------------------------------------------------------------------------ through the API
@pytest.fixture
def h() -> Harness:
    return Harness(settings=settings(RESTORE_AUTH_MODE="entra", WEBSITE_AUTH_ENABLED="True",
                                     RESTORE_PROTECTED_SERVERS=TARGET_SERVER_ID))


def call(h: Harness, action: str, headers: dict[str, str], run: Any) -> api.ApiResponse:
    resp = api.authorized(action, headers, h.deps, run)
    h.collect()
    return resp


def start(h: Harness, headers: dict[str, str], body: dict[str, Any] | None = None) -> api.ApiResponse:
    raw = json.dumps(body or database_body(target={**database_body()["target"], "server_id": OTHER_SERVER})).encode()
    return call(h, "start", headers, lambda caller: api.create(raw, headers=headers, base_url=BASE, deps=h.deps,
                                                               caller=caller))


def test_a_restore_records_the_principal_on_its_row_timeline_listing_and_event(h: Harness) -> None:
    resp = start(h, principal_headers("operator"))
    assert resp.status == 202, resp.body
    rec = h.deps.store.get(resp.body["id"])
    assert rec is not None and rec.caller["kind"] == "principal" and rec.caller["name"] == "alice@contoso.com"
    first = h.deps.store.timeline(rec.id)[0]
    assert "alice@contoso.com" in first.message and first.data["started_by"]["id"] == rec.caller["id"]
    shown = api.get(rec.id, deps=h.deps).body
    assert shown["started_by"]["principal"]["name"] == "alice@contoso.com"
    assert completion_event(rec)["started_by"]["name"] == "alice@contoso.com"


def test_a_reader_cannot_start_a_restore_and_nothing_is_created(h: Harness) -> None:
    resp = start(h, principal_headers("reader"))
    assert resp.status == 403 and resp.body["error"]["code"] == "RoleRequired"
    assert h.pending == [] and api.list_restores({}, deps=h.deps).body["items"] == []


def test_beside_source_needs_the_admin_role_with_entra_callers(h: Harness) -> None:
    beside = database_body(target={**database_body()["target"], "beside_source": True})
    refused = start(h, principal_headers("operator"), beside)
    assert refused.status == 400 and refused.body["error"]["code"] == "BesideSourceNotPermitted"
    assert start(h, principal_headers("admin"), beside).status == 202


def test_a_cancel_records_who_cancelled(h: Harness) -> None:
    rid = start(h, principal_headers("operator")).body["id"]
    bob = principal_headers("operator", oid="99999999-0000-0000-0000-000000000000", name="bob@contoso.com")
    resp = call(h, "cancel", bob, lambda caller: api.cancel(rid, deps=h.deps, caller=caller))
    assert resp.status == 200 and resp.body["status"] == Status.CANCELLED.value
    last = resp.body["timeline"][-1]
    assert "bob@contoso.com" in last["message"] and last["data"]["cancelled_by"]["name"] == "bob@contoso.com"
    assert "bob@contoso.com" in resp.body["error"]["message"]
