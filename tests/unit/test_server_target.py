"""Restore into a server: the request's server target and the decisions made before anything is paid for."""

from __future__ import annotations

import pytest

from restore_core.errors import RequestError
from restore_core.models import RolesMode, ServerTarget, parse_request
from restore_core.pgtarget import TargetConn, TargetFacts, parse_connection_string
from restore_core.stages import server_checks

FLEX = "/subscriptions/s2/resourceGroups/rg-target/providers/Microsoft.DBforPostgreSQL/flexibleServers/pgflex-target"
SRC_FLEX = "/subscriptions/s1/resourceGroups/rg-data/providers/Microsoft.DBforPostgreSQL/flexibleServers/pgflex01"
SRC_SINGLE_DB = ("/subscriptions/s1/resourceGroups/rg-data/providers/Microsoft.DBforPostgreSQL/servers/pgsrv01/"
                 "databases/salesdb")
BI = ("/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-backup/providers/Microsoft.DataProtection/"
      "backupVaults/bv-prod/backupInstances/pgflex01-x")
FLEX_TYPE = "Microsoft.DBforPostgreSQL/flexibleServers"
SINGLE_TYPE = "Microsoft.DBforPostgreSQL/servers/databases"


def _req(**target: object) -> dict[str, object]:
    return {"backup_instance": {"id": BI}, "target": {"kind": "server", "server_id": FLEX, **target}}


def _target(**kw: object) -> ServerTarget:
    t = parse_request(_req(**kw)).target
    assert isinstance(t, ServerTarget)
    return t


def test_server_target_defaults_are_entra_roles_skip_and_not_beside_the_source() -> None:
    t = _target()
    assert t.auth.kind == "entra" and t.roles == RolesMode.SKIP and t.beside_source is False and t.checks == []
    assert t.server_name == "pgflex-target"


@pytest.mark.parametrize(("target", "field", "words"), [
    ({"server_id": SRC_SINGLE_DB.rsplit("/databases", 1)[0]}, "target.server_id", "Flexible Server"),
    ({"databases": [{"source": "a"}, {"source": "a"}]}, "target", "twice"),
    ({"databases": [{"source": "a", "target": "x"}, {"source": "b", "target": "x"}]}, "target", "same target"),
    ({"databases": [{"source": "a", "target": "postgres"}]}, "target", "reserved"),
    ({"databases": [{"source": "1bad"}]}, "target.databases.0.source", "not a database name"),
    ({"owner": "azure_pg_admin"}, "target.owner", "platform role"),
    ({"suffix": "bad suffix!"}, "target.suffix", "suffix"),
    ({"auth": {"kind": "secret", "secret_uri": "https://user@evil.example/secrets/x"}}, "target.auth.secret_uri",
     "Key Vault"),
    ({"auth": {"kind": "password"}}, "target.auth.kind", "entra"),
    ({"roles": "all"}, "target.roles", "skip"),
    ({"checks": [{"name": "x", "database": "d", "sql": "", "expect": "1"}]}, "target.checks.0.sql", "at least"),
])
def test_bad_server_targets_are_refused_naming_the_field(target: dict[str, object], field: str, words: str) -> None:
    with pytest.raises(RequestError) as err:
        parse_request(_req(**target))
    assert err.value.field == field, err.value
    assert words.lower() in str(err.value).lower()


def test_name_plan_defaults_to_each_source_with_the_suffix_and_honours_explicit_names() -> None:
    assert server_checks.name_plan(_target(), ["appdb", "inventory"], "_restored") == \
        {"appdb": "appdb_restored", "inventory": "inventory_restored"}
    assert server_checks.name_plan(_target(suffix="_drill"), ["appdb"], "_restored") == {"appdb": "appdb_drill"}
    t = _target(databases=[{"source": "appdb", "target": "app_copy"}, {"source": "inventory"}])
    assert server_checks.name_plan(t, ["appdb", "inventory", "other"], "_r") == \
        {"appdb": "app_copy", "inventory": "inventory_r"}


def test_restoring_onto_the_source_server_needs_beside_source_and_never_takes_a_source_name() -> None:
    beside = _target(server_id=SRC_FLEX)
    refused = server_checks.source_rules(beside, FLEX_TYPE, SRC_FLEX)
    assert refused is not None and refused.error_code == "RestoreBesideSourceNotRequested"
    assert "beside_source" in (refused.error_fix or "")
    ok = _target(server_id=SRC_FLEX, beside_source=True)
    assert server_checks.source_rules(ok, FLEX_TYPE, SRC_FLEX) is None
    same_name = _target(server_id=SRC_FLEX, beside_source=True, databases=[{"source": "appdb", "target": "appdb"}])
    refused = server_checks.source_rules(same_name, FLEX_TYPE, SRC_FLEX)
    assert refused is not None and refused.error_code == "RestoreToSourceNotAllowed"
    assert server_checks.source_rules(_target(), FLEX_TYPE, SRC_FLEX) is None  # another server: fine


def test_a_single_server_point_holds_its_one_database_only() -> None:
    assert server_checks.single_server_database(SINGLE_TYPE, SRC_SINGLE_DB) == "salesdb"
    assert server_checks.single_server_database(FLEX_TYPE, SRC_FLEX) is None
    wrong = _target(databases=[{"source": "hrdb"}])
    refused = server_checks.source_rules(wrong, SINGLE_TYPE, SRC_SINGLE_DB)
    assert refused is not None and refused.error_code == "SourceDatabaseNotInPoint" and "salesdb" in refused.message


def _facts(**kw: object) -> TargetFacts:
    base: dict[str, object] = {"user": "restore-service", "superuser": False, "createdb": True, "createrole": False,
                               "server_version": 150000, "databases": {"postgres": None, "appdb_restored": None},
                               "roles": {"restore-service", "app_owner"}, "member_of": set()}
    base.update(kw)
    return TargetFacts(**base)  # type: ignore[arg-type]


CONN = TargetConn("pgflex-target.postgres.database.azure.com", 5432, "restore-service", "s3cr3t-t0ken")


@pytest.mark.parametrize(("target", "facts", "names", "code", "fix_words"), [
    ({}, {"createdb": False}, {"a": "a_r"}, "TargetMissingCreateDb", 'ALTER ROLE "restore-service" CREATEDB'),
    ({"roles": "clean"}, {}, {"a": "a_r"}, "TargetMissingCreateRole", "CREATEROLE"),
    ({}, {}, {"appdb": "appdb_restored"}, "TargetDatabaseExists", "never dropped"),
    ({"owner": "nobody"}, {}, {"a": "a_r"}, "TargetOwnerMissing", 'CREATE ROLE "nobody"'),
    ({"owner": "app_owner"}, {}, {"a": "a_r"}, "TargetOwnerNotGranted", 'GRANT "app_owner" TO "restore-service"'),
])
def test_target_checks_refuse_with_the_exact_fix(target: dict[str, object], facts: dict[str, object],
                                                 names: dict[str, str], code: str, fix_words: str) -> None:
    refused = server_checks.target_rules(_target(**target), CONN, _facts(**facts), names)
    assert refused is not None and refused.error_code == code
    assert fix_words in (refused.error_fix or "")
    assert "drop" not in (refused.error_fix or "").lower().replace("never dropped", "")


def test_target_checks_pass_when_privileges_names_and_owner_are_fine() -> None:
    assert server_checks.target_rules(_target(owner="app_owner"), CONN, _facts(member_of={"app_owner"}),
                                      {"a": "a_r"}) is None
    # roles: clean may bring the owner from the point's roles: checked again by the replay
    assert server_checks.target_rules(_target(owner="new_owner", roles="clean"), CONN, _facts(createrole=True),
                                      {"a": "a_r"}) is None


@pytest.mark.parametrize(("text", "expected"), [
    ("postgresql://pgadmin:s%40cret@127.0.0.1:5433/postgres?sslmode=verify-full",
     {"host": "127.0.0.1", "port": "5433", "user": "pgadmin", "password": "s@cret", "dbname": "postgres",
      "sslmode": "verify-full"}),
    ("host=srv.postgres.database.azure.com port=5432 user=admin password='p w' sslmode=require",
     {"host": "srv.postgres.database.azure.com", "port": "5432", "user": "admin", "password": "p w",
      "sslmode": "require"}),
    ("Server=srv.postgres.database.azure.com;Database=postgres;Port=5432;User Id=admin;Password=pw;Ssl Mode=Require;",
     {"host": "srv.postgres.database.azure.com", "port": "5432", "user": "admin", "password": "pw",
      "dbname": "postgres", "sslmode": "require"}),
])
def test_connection_strings_in_the_three_documented_forms(text: str, expected: dict[str, str]) -> None:
    assert parse_connection_string(text) == expected


def test_a_malformed_connection_string_error_never_echoes_the_value() -> None:
    with pytest.raises(ValueError) as err:
        parse_connection_string("password=hunter2 dbname=x")
    assert "hunter2" not in str(err.value)


def test_a_target_connection_never_shows_its_password() -> None:
    assert "s3cr3t" not in repr(CONN) and "s3cr3t" not in CONN.label


def test_on_postgresql_16_createrole_alone_no_longer_lets_the_service_act_as_another_owner() -> None:
    """PostgreSQL 16+: CREATEROLE grants only roles held WITH ADMIN OPTION; validation asks for the GRANT instead."""
    pg15 = _facts(createrole=True, server_version=150008)
    assert server_checks.target_rules(_target(owner="app_owner"), CONN, pg15, {"a": "a_r"}) is None
    pg16 = _facts(createrole=True, server_version=160004)
    refused = server_checks.target_rules(_target(owner="app_owner"), CONN, pg16, {"a": "a_r"})
    assert refused is not None and refused.error_code == "TargetOwnerNotGranted"


def test_a_database_carrying_this_restores_own_mark_is_not_taken() -> None:
    from restore_core.pgtarget import mark_of

    f = _facts(databases={"appdb_restored": mark_of("r1"), "other_restored": "someone else's comment"})
    assert server_checks.taken_names(f, {"appdb": "appdb_restored", "other": "other_restored"}, "r1") == \
        ["other_restored"]
    assert server_checks.taken_names(f, {"appdb": "appdb_restored"}, "r2") == ["appdb_restored"]


def test_by_default_a_points_system_databases_are_not_restored() -> None:
    from restore_core.stages import inventory

    from .fakes import Harness

    dbs = [{"source": n} for n in ("postgres", "appdb", "azure_maintenance", "inventory")]
    chosen = inventory._map_names(_target(), dbs, Harness().deps)
    assert [d["source"] for d in chosen] == ["appdb", "inventory"]
    named = inventory._map_names(_target(databases=[{"source": "postgres", "target": "pg_copy"}]), dbs,
                                 Harness().deps)
    assert [(d["source"], d["target"]) for d in chosen] == [("appdb", "appdb_restored"),
                                                             ("inventory", "inventory_restored")]
    assert [(d["source"], d["target"]) for d in named] == [("postgres", "pg_copy")]


@pytest.mark.parametrize(("body", "field", "suggestion"), [
    ({"backup_instance": {"id": BI}, "target": {"kind": "database", "server_id": SRC_SINGLE_DB.split("/databases")[0],
                                                "databse_name": "x", "secret_uri": "https://kv1.vault.azure.net/secrets/s"}},
     "target.databse_name", "database_name"),
    ({"backup_instance": {"id": BI}, "target": {"kind": "server", "server_id": FLEX, "owners": "a"}},
     "target.owners", "owner"),
    ({"backup_instance": {"id": BI}, "target": {"kind": "server", "server_id": FLEX,
                                                "databases": [{"source": "a", "tagret": "b"}]}},
     "target.databases.0.tagret", "target"),
    ({"backup_instance": {"id": BI}, "regoin": "secondary", "target": {"kind": "server", "server_id": FLEX}},
     "regoin", "region"),
])
def test_a_misspelt_field_is_refused_with_the_nearest_valid_name(body: dict[str, object], field: str,
                                                                 suggestion: str) -> None:
    with pytest.raises(RequestError) as err:
        parse_request(body)
    assert err.value.field == field and f"did you mean `{suggestion}`?" in str(err.value)


def test_an_unknown_field_with_no_near_name_says_to_remove_it() -> None:
    with pytest.raises(RequestError) as err:
        parse_request({"backup_instance": {"id": BI}, "zzz": 1, "target": {"kind": "server", "server_id": FLEX}})
    assert "did you mean" not in str(err.value) and "remove it" in (err.value.fix or "")
