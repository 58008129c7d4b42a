"""``models.parse_request``: every restore kind is accepted; every rejection names the field and says what to change."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from restore_core.errors import RequestError
from restore_core.models import MAX_BODY_BYTES, DatabaseTarget, FilesTarget, Region, parse_request

from .fakes import (
    BI_ID,
    CONTAINER_ID,
    CONTAINER_URL,
    FLEX_SERVER_ID,
    SECRET_URI,
    SOURCE_DB_ID,
    TARGET_SERVER_ID,
    VAULT_ID,
    database_body,
    files_body,
)


def rejected(body: Any) -> RequestError:
    with pytest.raises(RequestError) as info:
        parse_request(body)
    err = info.value
    assert err.fix, f"rejection without a fix: {err.message}"
    return err


def with_target(**changes: Any) -> dict[str, Any]:
    body = database_body()
    body["target"] = {**body["target"], **changes}
    return body


def with_files_target(**changes: Any) -> dict[str, Any]:
    body = files_body()
    body["target"] = {**body["target"], **changes}
    return body


# --- accepted kinds

def test_database_target_by_backup_instance_id_defaults_to_latest_primary_standard_rehydration() -> None:
    req = parse_request(database_body())
    assert isinstance(req.target, DatabaseTarget)
    assert req.target.database_id == f"{TARGET_SERVER_ID}/databases/salesdb_restored"
    assert req.backup_instance.id == BI_ID
    assert req.recovery_point.mode == "latest"
    assert req.region is Region.PRIMARY
    assert req.rehydration.priority.value == "Standard"
    assert req.rehydration.retention_days == 15


def test_files_target_with_container_id_is_accepted() -> None:
    req = parse_request(files_body())
    assert isinstance(req.target, FilesTarget)
    assert req.target.container_url == CONTAINER_URL
    assert req.target.container_id == CONTAINER_ID
    assert req.target.file_prefix == "salesdb_20261124"


def test_files_target_to_flexible_server_backup_without_container_id_is_accepted() -> None:
    body = files_body()
    del body["target"]["container_id"]
    body["target"]["container_url"] = CONTAINER_URL + "/"
    req = parse_request(body)
    assert isinstance(req.target, FilesTarget)
    assert req.target.container_url == CONTAINER_URL  # trailing slash dropped
    assert req.target.container_id is None


def test_backup_instance_by_vault_and_datasource_is_accepted() -> None:
    req = parse_request(database_body(backup_instance={"vault_id": VAULT_ID, "datasource_id": SOURCE_DB_ID}))
    assert req.backup_instance.id is None
    assert req.backup_instance.vault_id == VAULT_ID


def test_explicit_recovery_point_id_secondary_region_and_high_priority_are_accepted() -> None:
    req = parse_request(database_body(recovery_point={"id": "9da55e757af94261afa009b43cd3222a"}, region="secondary",
                                      rehydration={"priority": "High", "retention_days": 30},
                                      idempotency_key="ticket-42", deadline_hours=6, description="drill"))
    assert req.recovery_point.mode == "id"
    assert req.region is Region.SECONDARY
    assert req.rehydration.priority.value == "High"
    assert req.rehydration.retention_days == 30
    assert req.idempotency_key == "ticket-42"


def test_latest_before_is_converted_to_utc() -> None:
    req = parse_request(database_body(recovery_point={"latest_before": "2026-11-24T10:00:00+02:00"}))
    assert req.recovery_point.mode == "latest_before"
    assert req.recovery_point.latest_before == datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
    assert req.recovery_point.latest_before.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


@pytest.mark.parametrize("shorthand", ["latest", None])
def test_latest_shorthand_means_latest_point(shorthand: str | None) -> None:
    req = parse_request(database_body(recovery_point=shorthand))
    assert req.recovery_point.mode == "latest"
    assert req.recovery_point.id is None and req.recovery_point.latest_before is None


def test_body_may_be_bytes_or_str() -> None:
    raw = json.dumps(files_body())
    assert parse_request(raw) == parse_request(raw.encode()) == parse_request(files_body())


# --- unknown fields

def test_unknown_top_level_field_is_named() -> None:
    err = rejected(database_body(colour="blue"))
    assert err.field == "colour" and "unknown field" in err.message and err.status == 400


@pytest.mark.parametrize(("where", "field"), [
    ("backup_instance", "backup_instance.vault"),
    ("target", "target.password"),
    ("recovery_point", "recovery_point.time"),
    ("rehydration", "rehydration.speed"),
])
def test_unknown_nested_field_is_named_with_its_path(where: str, field: str) -> None:
    body = database_body(recovery_point={}, rehydration={})
    body[where] = {**body[where], field.split(".")[1]: "x"}
    err = rejected(body)
    assert err.field == field
    assert "remove it" in (err.fix or "")


def test_missing_target_field_is_named() -> None:
    body = database_body()
    del body["target"]["secret_uri"]
    err = rejected(body)
    assert err.field == "target.secret_uri" and "missing" in err.message


def test_unknown_target_kind_says_which_kinds_exist() -> None:
    err = rejected(with_target(kind="tape"))
    assert err.field == "target.kind"
    assert "database" in (err.fix or "") and "files" in (err.fix or "")


# --- ARM ids

@pytest.mark.parametrize("bad", [
    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.DataProtection/backupVaults/v",  # vault, not a BI
    BI_ID.replace("Microsoft.DataProtection", "Microsoft.RecoveryServices"),
    BI_ID + "/recoveryPoints/x",
    "pgsrv01-salesdb",
])
def test_malformed_backup_instance_id_is_rejected_with_the_expected_shape(bad: str) -> None:
    err = rejected(database_body(backup_instance={"id": bad}))
    assert err.field == "backup_instance.id"
    assert "backupInstances/{name}" in (err.fix or "")


@pytest.mark.parametrize("bad", [
    VAULT_ID.replace("backupVaults", "vaults"),
    VAULT_ID + "/backupInstances/x",
    VAULT_ID.replace("bv-prod", "1vault"),
    "bv-prod",
])
def test_malformed_vault_id_is_rejected(bad: str) -> None:
    err = rejected(database_body(backup_instance={"vault_id": bad, "datasource_id": SOURCE_DB_ID}))
    assert err.field == "backup_instance.vault_id"
    assert "backupVaults/{vault}" in (err.fix or "")


def test_malformed_datasource_id_is_rejected() -> None:
    err = rejected(database_body(backup_instance={"vault_id": VAULT_ID, "datasource_id": "salesdb"}))
    assert err.field == "backup_instance.datasource_id"


@pytest.mark.parametrize("selector", [{"id": BI_ID, "vault_id": VAULT_ID}, {"vault_id": VAULT_ID}, {}])
def test_backup_instance_needs_exactly_one_way_to_find_it(selector: dict[str, str]) -> None:
    err = rejected(database_body(backup_instance=selector))
    assert err.field == "backup_instance"
    assert "vault_id" in err.message


@pytest.mark.parametrize("bad", [
    TARGET_SERVER_ID.replace("Microsoft.DBforPostgreSQL", "Microsoft.DBforMySQL"),
    TARGET_SERVER_ID + "/databases/x",
    TARGET_SERVER_ID.replace("pgsrv-restore", "PG_SRV"),
    "pgsrv-restore",
])
def test_malformed_target_server_id_is_rejected(bad: str) -> None:
    err = rejected(with_target(server_id=bad))
    assert err.field == "target.server_id"
    assert "Microsoft.DBforPostgreSQL/servers/{server}" in (err.fix or "")


def test_flexible_server_database_target_is_rejected_with_files_advice() -> None:
    err = rejected(with_target(server_id=FLEX_SERVER_ID))
    assert err.field == "target.server_id"
    assert "files" in err.message


@pytest.mark.parametrize("bad", [
    CONTAINER_ID.replace("blobServices/default/containers", "containers"),
    CONTAINER_ID.replace("pg-restores", "PG_Restores"),
    CONTAINER_ID.replace("stpgrestore01", "st"),
    "pg-restores",
])
def test_malformed_container_id_is_rejected(bad: str) -> None:
    err = rejected(with_files_target(container_id=bad))
    assert err.field == "target.container_id"
    assert "containers/{container}" in (err.fix or "")


# --- database names

@pytest.mark.parametrize(("name", "why"), [
    ("postgres", "reserved"),
    ("Template1", "reserved"),
    ("azure_maintenance", "reserved"),
    ("a" * 64, "1-63"),
    ("1sales", "not starting with a digit"),
    ("sales db", "letters, digits"),
    ("", "1-63"),
])
def test_bad_database_name_is_rejected_with_the_rule(name: str, why: str) -> None:
    err = rejected(with_target(database_name=name))
    assert err.field == "target.database_name"
    assert why in err.message
    assert (err.fix or "").startswith("change target.database_name")


def test_longest_allowed_database_name_is_accepted() -> None:
    req = parse_request(with_target(database_name="a" * 63))
    assert isinstance(req.target, DatabaseTarget) and len(req.target.database_name) == 63


# --- secret URIs

@pytest.mark.parametrize("uri", [
    SECRET_URI,
    SECRET_URI + "/0123456789abcdef0123456789abcdef",
    "https://kv-restore.vault.azure.cn/secrets/conn",
])
def test_key_vault_secret_uri_shapes_are_accepted(uri: str) -> None:
    req = parse_request(with_target(secret_uri=uri))
    assert isinstance(req.target, DatabaseTarget) and req.target.secret_uri == uri


@pytest.mark.parametrize("uri", [
    "http://kv-restore.vault.azure.net/secrets/conn",
    "https://kv-restore.vault.azure.net/keys/conn",
    "https://kv-restore.vault.azure.net/secrets/",
    "https://kv-restore.vault.azure.net/secrets/conn/notahexversion",
    "https://kv-restore.vault.azure.net/secrets/conn?api-version=7.4",
    "Server=pg;Password=hunter2",
])
def test_non_secret_uri_is_rejected(uri: str) -> None:
    err = rejected(with_target(secret_uri=uri))
    assert err.field == "target.secret_uri"
    assert "vault.azure.net/secrets" in err.message


def test_rejected_secret_uri_value_is_not_echoed() -> None:
    err = rejected(with_target(secret_uri="Server=pg;Password=hunter2"))
    assert "hunter2" not in err.message and "hunter2" not in (err.fix or "")


# --- container URLs

@pytest.mark.parametrize("url", [
    CONTAINER_URL + "?sv=2024-01-01&sig=abc",
    CONTAINER_URL + "/sub/dir",
    "http://stpgrestore01.blob.core.windows.net/pg-restores",
    "https://stpgrestore01.blob.core.windows.net/",
    CONTAINER_URL + "#frag",
])
def test_container_url_with_sas_path_or_plain_http_is_rejected(url: str) -> None:
    err = rejected(with_files_target(container_url=url))
    assert err.field == "target.container_url"
    assert "no SAS" in err.message


def test_rejected_sas_is_not_echoed() -> None:
    err = rejected(with_files_target(container_url=CONTAINER_URL + "?sig=SECRETSIG"))
    assert "SECRETSIG" not in err.message and "SECRETSIG" not in (err.fix or "")


@pytest.mark.parametrize("prefix", ["../etc", "", "-x" * 101, "a b"])
def test_bad_file_prefix_is_rejected(prefix: str) -> None:
    err = rejected(with_files_target(file_prefix=prefix))
    assert err.field == "target.file_prefix"


# --- rehydration

@pytest.mark.parametrize("days", [9, 31, 0])
def test_rehydration_retention_outside_10_to_30_days_is_rejected(days: int) -> None:
    err = rejected(database_body(rehydration={"retention_days": days}))
    assert err.field == "rehydration.retention_days"
    assert ("10" in err.message) or ("30" in err.message)


@pytest.mark.parametrize("days", [10, 30])
def test_rehydration_retention_bounds_are_accepted(days: int) -> None:
    assert parse_request(database_body(rehydration={"retention_days": days})).rehydration.retention_days == days


@pytest.mark.parametrize("priority", ["Low", "standard", "Invalid"])
def test_unknown_rehydration_priority_is_rejected(priority: str) -> None:
    err = rejected(database_body(rehydration={"priority": priority}))
    assert err.field == "rehydration.priority"
    assert "Standard" in err.message and "High" in err.message


# --- recovery point

def test_recovery_point_id_and_latest_before_together_are_rejected() -> None:
    err = rejected(database_body(recovery_point={"id": "abc", "latest_before": "2026-11-24T08:00:00Z"}))
    assert err.field == "recovery_point"
    assert "either id or latest_before" in err.message


def test_naive_latest_before_is_rejected_with_an_example() -> None:
    err = rejected(database_body(recovery_point={"latest_before": "2026-11-24T08:00:00"}))
    assert err.field == "recovery_point.latest_before"
    assert "timezone" in err.message and "Z" in err.message


@pytest.mark.parametrize("value", ["oldest", "Latest"])
def test_unknown_recovery_point_shorthand_is_rejected(value: str) -> None:
    err = rejected(database_body(recovery_point=value))
    assert err.field == "recovery_point"
    assert '"latest"' in err.message


@pytest.mark.parametrize(("extra", "field"), [
    ({"region": "tertiary"}, "region"),
    ({"schema_version": "2025-01-01"}, "schema_version"),
    ({"idempotency_key": "has space"}, "idempotency_key"),
    ({"deadline_hours": 0}, "deadline_hours"),
    ({"deadline_hours": 24 * 31}, "deadline_hours"),
])
def test_other_bad_fields_are_named(extra: dict[str, Any], field: str) -> None:
    assert rejected(database_body(**extra)).field == field


# --- body level

def test_oversize_body_is_413_request_too_large() -> None:
    body = json.dumps(database_body(description="x" * 100)).encode() + b" " * MAX_BODY_BYTES
    err = rejected(body)
    assert err.status == 413 and err.code == "RequestTooLarge" and err.field == "body"
    assert str(MAX_BODY_BYTES) in err.message


def test_body_at_the_limit_is_parsed() -> None:
    raw = json.dumps(database_body()).encode()
    raw += b" " * (MAX_BODY_BYTES - len(raw))
    assert len(raw) == MAX_BODY_BYTES
    assert parse_request(raw).target.kind == "database"


@pytest.mark.parametrize("raw", [b"{not json", b"\xff\xfe", ""])
def test_invalid_json_is_rejected_as_body(raw: bytes | str) -> None:
    err = rejected(raw)
    assert err.field == "body" and err.status == 400
    assert "JSON" in err.message


@pytest.mark.parametrize("raw", [b"[1, 2]", b"\"restore\"", b"null", b"42"])
def test_non_object_json_is_rejected(raw: bytes) -> None:
    err = rejected(raw)
    assert err.field == "body" and err.message == "body must be a JSON object"


# --- inputs that used to be 500s (issue 16.6) ----------------------------------------------------------------------
@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",
                                  "0001-01-01T00:59:59.999999+01:00"])
def test_latest_before_at_the_edge_of_the_calendar_with_an_offset_is_a_400(when: str) -> None:
    err = rejected(database_body(recovery_point={"latest_before": when}))
    assert (err.status, err.field) == (400, "recovery_point.latest_before") and "UTC" in err.message


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59+00:00"])
def test_latest_before_at_the_edge_of_the_calendar_in_utc_is_accepted(when: str) -> None:
    assert parse_request(database_body(recovery_point={"latest_before": when})).recovery_point.latest_before


@pytest.mark.parametrize("raw", [
    b'{"deadline_hours": ' + b"9" * 5000 + b"}",
    json.dumps(database_body()).encode()[:-1] + b', "deadline_hours": ' + b"1" * 4301 + b"}",
    b'[' + b"7" * 10000 + b"]",
])
def test_numbers_with_thousands_of_digits_are_a_400(raw: bytes) -> None:
    err = rejected(raw)
    assert (err.status, err.field) == (400, "body") and "digits" in err.message


def test_body_under_the_byte_limit_whose_stored_form_is_too_large_is_413() -> None:
    body = database_body(backup_instance={"vault_id": VAULT_ID, "datasource_id": SOURCE_DB_ID + "\u00e9" * 7000})
    raw = json.dumps(body, ensure_ascii=False).encode()
    assert len(raw) <= MAX_BODY_BYTES
    err = rejected(raw)
    assert (err.status, err.code, err.field) == (413, "RequestTooLarge", "body")
    assert "stored" in err.message and "limit" in err.message
