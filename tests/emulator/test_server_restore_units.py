"""Pure logic behind the local stack's restore-into-a-server parts: the Key Vault handler, secret rendering, the
files layout choice and the new world fields (no processes)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
import yaml

from localdev.dpemu.engine import render_connection_string
from localdev.dpemu.keyvault import CHALLENGE, KeyVault
from localdev.dpemu.state import State
from localdev.dpemu.timeutil import SimClock
from localdev.dpemu.world import WorldError, check_files_layout, parse_world

from .conftest import WORLD

NOW = datetime(2026, 11, 24, tzinfo=UTC)
QUERY = {"api-version": "7.5"}


def _demo() -> dict[str, Any]:
    return yaml.safe_load(WORLD.read_text())


@pytest.fixture
def kv() -> KeyVault:
    state = State(parse_world(_demo(), NOW), SimClock(1.0), None)  # type: ignore[arg-type]
    state.put_secret(state.secret_uri("kv-restore-we", "conn"), "v1")
    return KeyVault(state, "entra-token")


def test_keyvault_challenges_an_unauthenticated_call_with_the_vault_resource(kv):
    reply = kv.get_secret("kv-restore-we", "conn", None, "", QUERY)
    assert reply.status == 401
    assert reply.headers["WWW-Authenticate"] == CHALLENGE
    assert 'resource="https://vault.azure.net"' in CHALLENGE and 'authorization="https://login.microsoftonline.com/' \
        in CHALLENGE
    assert reply.body["error"]["code"] == "Unauthorized"


def test_keyvault_forbids_another_token_and_serves_versions_to_the_entra_token(kv):
    assert kv.get_secret("kv-restore-we", "conn", None, "Bearer other", QUERY).status == 403
    first = kv.get_secret("kv-restore-we", "CONN", None, "Bearer entra-token", QUERY)  # names are case-insensitive
    assert first.status == 200 and first.body["value"] == "v1"
    v1 = first.body["id"].rsplit("/", 1)[1]
    assert first.body["id"] == f"https://kv-restore-we.vault.azure.net/secrets/CONN/{v1}"
    assert first.body["attributes"]["enabled"] is True
    kv.state.put_secret(kv.state.secret_uri("kv-restore-we", "conn"), "v2")
    assert kv.get_secret("kv-restore-we", "conn", None, "Bearer entra-token", QUERY).body["value"] == "v2"
    assert kv.get_secret("kv-restore-we", "conn", v1, "Bearer entra-token", QUERY).body["value"] == "v1"


@pytest.mark.parametrize(("vault", "name", "version", "query", "status", "code"), [
    ("kv-restore-we", "missing", None, QUERY, 404, "SecretNotFound"),
    ("kv-restore-we", "conn", "0" * 32, QUERY, 404, "SecretNotFound"),
    ("kv-nowhere", "conn", None, QUERY, 404, "VaultNotFound"),
    ("kv-restore-we", "conn", None, {}, 400, "BadParameter"),
])
def test_keyvault_errors_carry_key_vault_codes(kv, vault, name, version, query, status, code):
    reply = kv.get_secret(vault, name, version, "Bearer entra-token", query)
    assert (reply.status, reply.body["error"]["code"]) == (status, code)


def test_connection_strings_render_in_each_form_libpq_and_the_product_read():
    uri = render_connection_string("uri", "127.0.0.1", 5433, "pg admin", "p@ss/w:rd", "verify-full")
    assert uri == "postgresql://pg%20admin:p%40ss%2Fw%3Ard@127.0.0.1:5433/postgres?sslmode=verify-full"
    kv = render_connection_string("keyvalue", "127.0.0.1", 5433, "u", "it's \\x", "require")
    for text in (uri, kv):
        params = psycopg.conninfo.conninfo_to_dict(text)
        assert params["host"] == "127.0.0.1" and params["port"] == "5433"
    assert psycopg.conninfo.conninfo_to_dict(uri)["password"] == "p@ss/w:rd"
    assert psycopg.conninfo.conninfo_to_dict(kv)["password"] == "it's \\x"
    assert render_connection_string("ado", "h", 1, "u", "p", "disable") == \
        "Server=h;Port=1;Database=postgres;User Id=u;Password=p;Ssl Mode=Disable;"


def test_files_layout_choice_is_validated():
    assert [check_files_layout(x) for x in ("custom", "custom-stream", "plain")] == ["custom", "custom-stream",
                                                                                     "plain"]
    with pytest.raises(ValueError, match="custom-stream"):
        check_files_layout("directory")
    raw = _demo()
    raw["settings"]["files_layout"] = "tar"
    with pytest.raises(WorldError, match="settings.files_layout"):
        parse_world(raw, NOW)


@pytest.mark.parametrize(("mutate", "needle"), [
    (lambda s: s["databases"][0].update(owner="nobody"), "owner: 'nobody' is not declared"),
    (lambda s: s["roles"].append({"name": "x", "options": "SUPERUSER"}), "roles[2].options"),
    (lambda s: s["roles"].append({"name": "Bad Name"}), "roles[2].name"),
])
def test_flexible_source_roles_and_owners_are_validated(mutate, needle):
    raw = _demo()
    mutate(next(s for s in raw["servers"] if s["id"].endswith("/pgflex01")))
    with pytest.raises(WorldError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        parse_world(raw, NOW)


def test_demo_world_declares_the_flexible_target_its_secret_and_the_staging_containers():
    w = parse_world(_demo(), NOW)
    target = next(s for s in w.servers.values() if s.name == "pgflex-target")
    assert (target.kind, target.location, target.cluster) == ("flexibleServers", "westeurope", "pgflex-target")
    secret = w.secrets["https://kv-restore-we.vault.azure.net/secrets/pgflex-target-conn"]
    assert (secret.user, secret.format, secret.sslmode, secret.server_id) == ("pgadmin", "uri", "verify-full",
                                                                              target.id)
    staging = {c.account: c for c in w.containers.values() if c.name == "restore-staging"}
    assert {a: c.location for a, c in staging.items()} == {"stpgstagingwe": "westeurope",
                                                           "stpgstagingne": "northeurope"}
    for principal in ("11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"):
        for c in staging.values():
            assert any(r.principal == principal and r.role == "Storage Blob Data Contributor" and r.scope == c.id
                       for r in w.role_assignments)
