"""Issue 14 item 3 (who asked) and issue 13 item 2 (alerts in) on the real local stack: the host plays App Service
authentication with tokens of the stack's local issuer, the app runs with RESTORE_AUTH_MODE=entra; the alert door
is keyed and excluded from the platform's authentication."""

from __future__ import annotations

import base64
import io
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from localdev import localissuer, restorectl
from localdev import scenarios as sc
from localdev.apiclient import Api

from .helpers import wait_for


def uniq(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def entra_host(local_stack: Any) -> Iterator[Any]:
    local_stack.restart_host({"RESTORE_AUTH_MODE": "entra"})
    yield local_stack
    local_stack.restart_host()


def bearer(stack: Any, name: str, *roles: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {localissuer.mint(stack.dir, name=name, roles=roles)}"}


def anonymous(stack: Any) -> Api:
    """A client without the function key (user routes are anonymous at the Functions level in entra mode)."""
    return Api(stack.env["RESTORE_API_URL"], "")


def test_a_restore_started_with_a_token_records_its_principal(entra_host: Any) -> None:
    client, name = anonymous(entra_host), uniq("who_op")
    status, body, _ = client.post("/restores", sc.as_database(name), bearer(entra_host, "olivia@contoso.com",
                                                                             "operator"), with_key=False)
    assert status == 202, body
    shown = wait_for(_Authed(client, bearer(entra_host, "rita@contoso.com", "reader")), body["id"], timeout=120)
    assert shown["started_by"]["door"] == "http"
    assert shown["started_by"]["principal"]["name"] == "olivia@contoso.com"
    assert "olivia@contoso.com" in shown["timeline"][0]["message"]
    status, page, _ = client.get("/restores?limit=50", bearer(entra_host, "rita@contoso.com", "reader"),
                                 with_key=False)
    assert status == 200 and any(i["id"] == body["id"] and i["started_by"]["principal"]["name"] ==
                                 "olivia@contoso.com" for i in page["items"])


class _Authed:
    """``wait_for`` needs an object with ``get``: this one sends a bearer token."""

    def __init__(self, api: Api, headers: dict[str, str]) -> None:
        self.api, self.headers = api, headers

    def get(self, path: str) -> Any:
        return self.api.get(path, self.headers, with_key=False)


def test_a_client_sent_principal_is_ignored(entra_host: Any) -> None:
    client = anonymous(entra_host)
    forged = base64.b64encode(json.dumps({"auth_typ": "aad", "role_typ": "roles", "claims": [
        {"typ": "roles", "val": "admin"}]}).encode()).decode()
    headers = {"X-MS-CLIENT-PRINCIPAL": forged, "X-MS-CLIENT-PRINCIPAL-ID": "mallory",
               "X-MS-CLIENT-PRINCIPAL-NAME": "mallory"}
    status, _, resp_headers = client.post("/restores", sc.as_database(uniq("who_forged")), headers, with_key=False)
    assert status == 401 and resp_headers.get("www-authenticate") == "Bearer"
    # with a reader's token the forged admin principal is dropped: the reader stays a reader
    status, body, _ = client.post("/restores", sc.as_database(uniq("who_forged")),
                                  {**headers, **bearer(entra_host, "rita@contoso.com", "reader")}, with_key=False)
    assert status == 403 and body["error"]["code"] == "RoleRequired" and "rita@contoso.com" in body["error"]["message"]
    # the function key alone opens nothing either: entra mode needs a principal
    status, body, _ = Api(entra_host.env["RESTORE_API_URL"], entra_host.env["RESTORE_API_KEY"]).get("/restores")
    assert status == 401


def test_a_reader_cannot_start_a_restore_but_can_preview_and_list(entra_host: Any) -> None:
    client, reader = anonymous(entra_host), bearer(entra_host, "rita@contoso.com", "reader")
    name = uniq("who_reader")
    status, body, _ = client.post("/restores", sc.as_database(name), reader, with_key=False)
    assert status == 403 and body["error"]["code"] == "RoleRequired" and "operator" in body["error"]["fix"]
    status, plan, _ = client.post("/restores/preview", sc.as_database(name), reader, with_key=False)
    assert status == 200 and plan["would_start"] is True, plan
    status, page, _ = client.get("/restores?limit=200", reader, with_key=False)
    assert status == 200 and not [i for i in page["items"] if (i.get("target") or {}).get("database_name") == name]


def test_restorectl_sends_the_token_and_shows_the_refusal(entra_host: Any) -> None:
    out, err = io.StringIO(), io.StringIO()
    env = {"RESTORE_API_URL": entra_host.env["RESTORE_API_URL"],
           "RESTORE_API_TOKEN": localissuer.mint(entra_host.dir, name="rita@contoso.com", roles=["reader"])}
    code = restorectl.main(["list", "--json"], out=out, err=err, env=env)
    assert code == 0, err.getvalue()
    code = restorectl.main(["cancel", "20261124T080000-0000000000"], out=out, err=err, env=env)
    assert code != 0 and "RoleRequired" in err.getvalue()


def test_an_alert_post_starts_one_restore_and_its_repeat_starts_nothing(entra_host: Any) -> None:
    keyed = Api(entra_host.env["RESTORE_API_URL"], entra_host.env["RESTORE_API_KEY"])
    guid = str(uuid.uuid4())
    payload = sc.alert_payload(guid, sc.days_ago(3))
    status, first, _ = keyed.post("/alerts", payload)  # no token: the door is excluded from the platform's auth
    assert status == 202 and first["created"] is True and first["source"] == "alert", first
    assert first["started_by"]["alert_id"].endswith(guid) and first["started_by"]["alert_rule"]
    status, again, _ = keyed.post("/alerts", payload)
    assert status == 200 and again["id"] == first["id"] and again["created"] is False
    assert keyed.post("/alerts", payload, with_key=False)[0] == 401  # the door stays keyed
    reader = _Authed(anonymous(entra_host), bearer(entra_host, "rita@contoso.com", "reader"))
    status, page, _ = reader.api.get("/restores?started_by=alert&limit=200", reader.headers, with_key=False)
    assert [i["id"] for i in page["items"] if i["started_by"].get("alert_id", "").endswith(guid)] == [first["id"]]
    done = wait_for(reader, first["id"], timeout=180)
    assert done["status"] == "succeeded", done


def test_an_alert_from_the_services_own_rule_starts_nothing(entra_host: Any) -> None:
    keyed = Api(entra_host.env["RESTORE_API_URL"], entra_host.env["RESTORE_API_KEY"])
    payload = sc.alert_payload(str(uuid.uuid4()), sc.days_ago(1))
    payload["data"]["essentials"]["alertRule"] = "alert-restore-failed-abc123"
    status, body, _ = keyed.post("/alerts", payload)
    assert status == 200 and body["status"] == "rejected", body
    assert body["error"]["code"] == "AlertAboutThisService" and body["started_by"]["alert_rule"].startswith("alert-")
