"""Built Azure request objects, serialised with the SDK's own encoder: exact wire names and casing
(docs/dataprotection-api.md §3 and §9)."""

from __future__ import annotations

import json
from typing import Any

from azure.mgmt.dataprotection._utils.model_base import SdkJSONEncoder

from restore_core import dp_client as dpc
from restore_core import restore_requests as rr
from restore_core.models import Rehydration, RehydrationPriority, parse_request

from .fakes import (
    BI_ID,
    CONTAINER_ID,
    CONTAINER_URL,
    SECRET_URI,
    SOURCE_DB_ID,
    TARGET_SERVER_ID,
    VAULT_POINT,
    database_body,
    files_body,
)

DB_TYPE = "Microsoft.DBforPostgreSQL/servers/databases"


def wire(obj: Any) -> dict[str, Any]:
    return json.loads(json.dumps(obj, cls=SdkJSONEncoder, exclude_readonly=True))


def plan(body: dict[str, Any], *, store: str = "VaultStore", location: str = "westeurope",
         source: str | None = SOURCE_DB_ID) -> rr.RestorePlan:
    return rr.RestorePlan(backup_instance_id=BI_ID, source_datasource_id=source, datasource_type=DB_TYPE,
                          recovery_point_id=VAULT_POINT, source_store=store, restore_location=location,
                          target=parse_request(body).target)


def database_target_wire(location: str = "westeurope") -> dict[str, Any]:
    return {
        "objectType": "RestoreTargetInfo",
        "recoveryOption": "FailIfExists",
        "restoreLocation": location,
        "datasourceInfo": {
            "objectType": "Datasource",
            "resourceID": f"{TARGET_SERVER_ID}/databases/salesdb_restored",
            "resourceName": "salesdb_restored",
            "resourceType": DB_TYPE,
            "resourceLocation": location,
            "datasourceType": DB_TYPE,
        },
        "datasourceSetInfo": {
            "objectType": "DatasourceSet",
            "resourceID": TARGET_SERVER_ID,
            "resourceName": "pgsrv-restore",
            "resourceType": "Microsoft.DBforPostgreSQL/servers",
            "resourceLocation": location,
            "datasourceType": DB_TYPE,
        },
        "datasourceAuthCredentials": {
            "objectType": "SecretStoreBasedAuthCredentials",
            "secretStoreResource": {"secretStoreType": "AzureKeyVault", "uri": SECRET_URI},
        },
    }


def test_restore_as_database_matches_the_documented_body() -> None:
    assert wire(dpc.restore_request(plan(database_body()))) == {
        "objectType": "AzureBackupRecoveryPointBasedRestoreRequest",
        "sourceDataStoreType": "VaultStore",
        "recoveryPointId": VAULT_POINT,
        "sourceResourceId": SOURCE_DB_ID,
        "restoreTargetInfo": database_target_wire(),
    }


def test_restore_as_files_uses_target_details_with_container_arm_id() -> None:
    assert wire(dpc.restore_request(plan(files_body(), source=None))) == {
        "objectType": "AzureBackupRecoveryPointBasedRestoreRequest",
        "sourceDataStoreType": "VaultStore",
        "recoveryPointId": VAULT_POINT,
        "restoreTargetInfo": {
            "objectType": "RestoreFilesTargetInfo",
            "recoveryOption": "FailIfExists",
            "restoreLocation": "westeurope",
            "targetDetails": {
                "url": CONTAINER_URL,
                "filePrefix": "salesdb_20261124",
                "restoreTargetLocationType": "AzureBlobs",
                "targetResourceArmId": CONTAINER_ID,
            },
        },
    }


def test_restore_as_files_without_container_id_omits_target_resource_arm_id() -> None:
    body = files_body()
    del body["target"]["container_id"]
    details = wire(dpc.restore_request(plan(body)))["restoreTargetInfo"]["targetDetails"]
    assert "targetResourceArmId" not in details and details["url"] == CONTAINER_URL


def test_database_target_uses_lower_case_s_datasource_info_and_capital_id() -> None:
    text = json.dumps(wire(dpc.restore_request(plan(database_body()))))
    assert '"datasourceInfo"' in text and '"datasourceSetInfo"' in text
    assert '"dataSourceInfo"' not in text and '"resourceId"' not in text and '"resourceID"' in text


def test_archive_point_restore_reads_from_archive_store() -> None:
    assert wire(dpc.restore_request(plan(database_body(), store="ArchiveStore")))["sourceDataStoreType"] == \
        "ArchiveStore"


def test_validate_request_wraps_the_restore_request_without_object_type() -> None:
    got = wire(dpc.validate_request(plan(database_body())))
    assert list(got) == ["restoreRequestObject"]
    assert got["restoreRequestObject"] == wire(dpc.restore_request(plan(database_body())))


def test_validating_an_archived_point_uses_the_one_shot_rehydration_form() -> None:
    p = plan(database_body(), store="ArchiveStore")
    got = wire(dpc.validate_request(p, Rehydration(priority=RehydrationPriority.HIGH, retention_days=20)))
    inner = got["restoreRequestObject"]
    assert inner["objectType"] == "AzureBackupRestoreWithRehydrationRequest"
    assert inner["sourceDataStoreType"] == "ArchiveStore"
    assert (inner["rehydrationPriority"], inner["rehydrationRetentionDuration"]) == ("High", "P20D")
    assert inner["restoreTargetInfo"] == wire(dpc.restore_request(p))["restoreTargetInfo"]
    crr = wire(dpc.validate_cross_region_request(p, "westeurope", Rehydration()))
    assert crr["restoreRequestObject"]["rehydrationRetentionDuration"] == "P15D"


def test_cross_region_restore_wraps_with_source_region_and_backup_instance() -> None:
    p = plan(database_body(), location="northeurope")
    got = wire(dpc.cross_region_request(p, "westeurope"))
    assert got == {
        "restoreRequestObject": {
            "objectType": "AzureBackupRecoveryPointBasedRestoreRequest",
            "sourceDataStoreType": "VaultStore",
            "recoveryPointId": VAULT_POINT,
            "sourceResourceId": SOURCE_DB_ID,
            "restoreTargetInfo": database_target_wire("northeurope"),
        },
        "crossRegionRestoreDetails": {"sourceRegion": "westeurope", "sourceBackupInstanceId": BI_ID},
    }
    assert wire(dpc.validate_cross_region_request(p, "westeurope")) == got


def test_rehydration_request_uses_iso_duration() -> None:
    assert wire(dpc.rehydration_request(VAULT_POINT, "Standard", 15)) == {
        "recoveryPointId": VAULT_POINT, "rehydrationPriority": "Standard", "rehydrationRetentionDuration": "P15D"}
    assert wire(dpc.rehydration_request(VAULT_POINT, "High", 30))["rehydrationRetentionDuration"] == "P30D"


def test_recovery_option_is_always_fail_if_exists() -> None:
    for body in (database_body(), files_body()):
        assert wire(dpc.target_info(plan(body)))["recoveryOption"] == "FailIfExists"


def test_destination_names_what_the_job_reports() -> None:
    assert rr.destination_of(parse_request(database_body()).target) == f"{TARGET_SERVER_ID}/databases/salesdb_restored"
    assert rr.destination_of(parse_request(files_body()).target) == f"{CONTAINER_URL}/salesdb_20261124"
