"""Each restore rule -> its Azure error code, as a Failed LRO on validate (and trigger), or a sync 400."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.dataprotection.models import ValidateRestoreRequestObject

from .conftest import BI_FLEX, BI_SALES, DR, KV_NE, KV_WE, RG, TGT, VAULT
from .helpers import (
    archive_rp,
    db_target,
    files_target,
    new_name,
    rehydration_request,
    rp_request,
    sales_db_target,
    vault_rp,
)

PRINCIPAL = "11111111-1111-4111-8111-111111111111"
SRC = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-data/providers/" \
      "Microsoft.DBforPostgreSQL/servers/pgsrv01"


def validate_error(client, request, bi=BI_SALES) -> HttpResponseError:
    with pytest.raises(HttpResponseError) as ei:
        client.backup_instances.begin_validate_for_restore(
            RG, VAULT, bi, ValidateRestoreRequestObject(restore_request_object=request)).result()
    return ei.value


def test_valid_request_validates(client):
    res = client.backup_instances.begin_validate_for_restore(
        RG, VAULT, BI_SALES, ValidateRestoreRequestObject(
            restore_request_object=rp_request(vault_rp(client).name, sales_db_target(new_name())))).result()
    assert res.object_type == "OperationJobExtendedInfo"


@pytest.mark.parametrize(("case", "code"), [
    ("wrong_restore_location", "UserErrorRestoreTargetRegionMismatch"),
    ("server_in_other_region", "UserErrorRestoreTargetRegionMismatch"),
    ("source_database", "UserErrorOriginalLocationRestoreNotSupported"),
    ("existing_name", "UserErrorDatabaseNameAlreadyInUse"),
    ("unknown_server", "UserErrorDBNotFound"),
    ("lower_version", "UserErrorRestoreToLowerVersion"),
    ("unknown_secret", "UserErrorInvalidSecret"),
    ("unknown_key_vault", "UserErrorInvalidSecretStore"),
    ("malformed_secret", "UserErrorSecretValueInUnsupportedFormat"),
    ("unknown_recovery_point", "UserErrorRecoveryPointNotFound"),
    ("archive_store_on_vault_point", "UserErrorInvalidSourceDataStore"),
])
def test_rule_violation_fails_validate_with_azure_code(client, case, code):
    rp = vault_rp(client).name
    target = {
        "wrong_restore_location": db_target(f"{TGT}/pgsrv-restore", new_name(), f"{KV_WE}/pgsrv-restore-conn",
                                            location="northeurope"),
        "server_in_other_region": db_target(f"{DR}/pgsrv-dr", new_name(), f"{KV_NE}/pgsrv-dr-conn"),
        "source_database": db_target(SRC, "salesdb", f"{KV_WE}/pgsrv-restore-conn"),
        "existing_name": sales_db_target("postgres"),
        "unknown_server": db_target(f"{TGT}/pgsrv-nowhere", new_name(), f"{KV_WE}/pgsrv-restore-conn"),
        "lower_version": sales_db_target(new_name(), server="pgsrv-legacy", secret_name="pgsrv-legacy-conn"),
        "unknown_secret": sales_db_target(new_name(), secret_name="no-such-secret"),
        "unknown_key_vault": db_target(f"{TGT}/pgsrv-restore", new_name(), "https://kv-gone.vault.azure.net/secrets/x"),
        "malformed_secret": sales_db_target(new_name(), secret_name="malformed-conn"),
    }.get(case, sales_db_target(new_name()))
    if case == "unknown_recovery_point":
        rp = "f" * 32
    store = "ArchiveStore" if case == "archive_store_on_vault_point" else "VaultStore"
    err = validate_error(client, rp_request(rp, target, store))
    assert err.error.code == code, err.message
    info = err.response.json()["error"]["additionalInfo"][0]
    assert info["type"] == "UserFacingError"
    assert info["info"]["code"] == code and info["info"]["recommendedAction"]


def test_missing_reader_names_role_and_scope_and_granting_fixes_it(client, admin):
    target = sales_db_target(new_name(), server="pgsrv-noreader", secret_name="pgsrv-noreader-conn")
    err = validate_error(client, rp_request(vault_rp(client).name, target))
    assert err.error.code == "UserErrorMSIMissingPermissions"
    assert "'Reader'" in err.error.message and f"{TGT}/pgsrv-noreader" in err.error.message
    admin.grant(PRINCIPAL, "Reader", f"{TGT}/pgsrv-noreader")
    try:
        client.backup_instances.begin_validate_for_restore(
            RG, VAULT, BI_SALES, ValidateRestoreRequestObject(restore_request_object=rp_request(
                vault_rp(client).name, target))).result()
    finally:
        admin.revoke(PRINCIPAL, "Reader", f"{TGT}/pgsrv-noreader")


def test_missing_key_vault_role_is_reported_with_role_and_scope(client):
    target = db_target(f"{TGT}/pgsrv-restore", new_name(), "https://kv-norole-we.vault.azure.net/secrets/pgsrv-restore-conn")
    err = validate_error(client, rp_request(vault_rp(client).name, target))
    assert err.error.code == "UserErrorMissingPermissionsOnSecretStore"
    assert "Key Vault Secrets User" in err.error.message and "kv-norole-we" in err.error.message


def test_container_without_blob_role_is_not_accessible(client):
    err = validate_error(client, rp_request(vault_rp(client).name,
                                            files_target("stpgrestorewe", "pg-locked", new_name())))
    assert err.error.code == "UserErrorContainerNotAccessible"
    assert "Storage Blob Data Contributor" in err.error.message


def test_flexible_server_restores_only_as_files(client):
    from .helpers import rps
    rp = rps(client, BI_FLEX)[0].name
    err = validate_error(client, rp_request(rp, sales_db_target(new_name())), bi=BI_FLEX)
    assert err.error.code == "UserErrorUnsupportedRestoreTargetType"


def test_archived_point_from_vault_store_without_rehydration_is_rejected(client):
    err = validate_error(client, rp_request(archive_rp(client).name, sales_db_target(new_name())))
    assert err.error.code == "UserErrorRecoveryPointNotRehydrated"


@pytest.mark.parametrize(("priority", "duration", "code"), [
    ("Urgent", "P15D", "UserErrorInvalidRehydrationPriority"),
    ("Standard", "P9D", "UserErrorInvalidRehydrationDuration"),
    ("Standard", "P31D", "UserErrorInvalidRehydrationDuration"),
    ("High", "7D", "UserErrorInvalidRehydrationDuration"),
])
def test_rehydration_priority_and_duration_are_checked(client, priority, duration, code):
    req = rehydration_request(archive_rp(client).name, sales_db_target(new_name()), priority, duration)
    assert validate_error(client, req).error.code == code


def test_trigger_with_rule_violation_is_a_failed_lro_and_creates_no_job(client):
    before = {j.name for j in client.jobs.list(RG, VAULT)}
    with pytest.raises(HttpResponseError) as ei:
        client.backup_instances.begin_trigger_restore(RG, VAULT, BI_SALES,
                                                      rp_request(vault_rp(client).name,
                                                                 sales_db_target("postgres"))).result()
    assert ei.value.error.code == "UserErrorDatabaseNameAlreadyInUse"
    assert {j.name for j in client.jobs.list(RG, VAULT)} == before


@pytest.mark.parametrize(("mutate", "needle"), [
    (lambda b: b.pop("restoreTargetInfo"), "restoreTargetInfo"),
    (lambda b: b["restoreTargetInfo"].update(recoveryOption="Overwrite"), "recoveryOption"),
    (lambda b: b.update(objectType="AzureBackupRecoveryTimeBasedRestoreRequest"), "objectType"),
    (lambda b: b["restoreTargetInfo"]["datasourceInfo"].update(resourceID="/bad/id"), "resourceID"),
])
def test_malformed_body_is_sync_400_naming_the_field(client, mutate, needle):
    body = rp_request(vault_rp(client).name, sales_db_target(new_name())).as_dict()
    body = __import__("json").loads(__import__("json").dumps(body))
    mutate(body)
    with pytest.raises(HttpResponseError) as ei:
        client.backup_instances.begin_trigger_restore(RG, VAULT, BI_SALES, body)
    assert ei.value.status_code == 400
    assert ei.value.error.code == "UserErrorInvalidRequestParameter"
    assert needle in ei.value.error.message
