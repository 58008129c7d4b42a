"""Cross-subscription restore Disabled on a vault: targets must be in the vault's subscription, and a files target
must carry its container ARM id (``targetResourceArmId``) because a blob URL does not name a subscription."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import yaml
from azure.core.exceptions import HttpResponseError
from azure.mgmt.dataprotection.models import ValidateRestoreRequestObject
from azure.storage.blob import BlobServiceClient

from localdev.dpemu.world import WorldError, parse_world

from .conftest import RG, SUB1, SUB2, VAULT, WORLD
from .helpers import files_target, new_name, rp_request, sales_db_target, wait_job

VAULT_CSR = "bv-csr-off"
BI_OPS = "pgsrv01-opsdb-6f1c2d3e-0000-4000-8000-000000000006"
SUB1_CONTAINER_ID = (f"/subscriptions/{SUB1}/resourceGroups/rg-backup-targets/providers/Microsoft.Storage/"
                     "storageAccounts/stpgsub1we/blobServices/default/containers/pg-restores")
SUB2_CONTAINER_ID = (f"/subscriptions/{SUB2}/resourceGroups/rg-target/providers/Microsoft.Storage/storageAccounts/"
                     "stpgrestorewe/blobServices/default/containers/pg-restores")


def _files(account: str, prefix: str, arm_id: str | None):
    target = files_target(account, "pg-restores", prefix)
    if arm_id:
        target.target_details.target_resource_arm_id = arm_id
    return target


def _request(client, target):
    rp = next(iter(client.recovery_points.list(RG, VAULT_CSR, BI_OPS))).name
    return rp_request(rp, target)


def _validate_error(client, target) -> HttpResponseError:
    with pytest.raises(HttpResponseError) as ei:
        client.backup_instances.begin_validate_for_restore(
            RG, VAULT_CSR, BI_OPS, ValidateRestoreRequestObject(restore_request_object=_request(client, target))
        ).result()
    return ei.value


def test_vaults_show_their_cross_subscription_restore_state(client):
    state = client.backup_vaults.get(RG, VAULT_CSR).properties.feature_settings \
        .cross_subscription_restore_settings.state
    assert state == "Disabled"
    assert client.backup_vaults.get(RG, VAULT).properties.feature_settings \
        .cross_subscription_restore_settings.state == "Enabled"


def test_files_without_the_container_arm_id_are_refused(client):
    err = _validate_error(client, _files("stpgsub1we", new_name("ops").replace("_", "-"), None))
    assert err.error.code == "UserErrorCrossSubscriptionRestoreDisabled"
    assert "targetResourceArmId" in err.message and "cannot be identified" in err.message


def test_files_into_the_vaults_own_subscription_restore(emu, client):
    prefix = new_name("ops").replace("_", "-")
    target = _files("stpgsub1we", prefix, SUB1_CONTAINER_ID)
    assert client.backup_instances.begin_validate_for_restore(
        RG, VAULT_CSR, BI_OPS, ValidateRestoreRequestObject(restore_request_object=_request(client, target))
    ).result().object_type == "OperationJobExtendedInfo"
    res = client.backup_instances.begin_trigger_restore(RG, VAULT_CSR, BI_OPS, _request(client, target)).result()
    assert wait_job(client, res.job_id, vault=VAULT_CSR).properties.status == "Completed"
    blobs = BlobServiceClient.from_connection_string(emu.storage).get_container_client("stpgsub1we-pg-restores")
    assert [b.name for b in blobs.list_blobs(name_starts_with=prefix)] == [f"{prefix}.dump"]


def test_files_into_another_subscription_are_refused_on_validate_and_trigger(client):
    target = _files("stpgrestorewe", new_name("ops").replace("_", "-"), SUB2_CONTAINER_ID)
    err = _validate_error(client, target)
    assert err.error.code == "UserErrorCrossSubscriptionRestoreDisabled" and SUB1 in err.message
    before = {j.name for j in client.jobs.list(RG, VAULT_CSR)}
    with pytest.raises(HttpResponseError) as ei:
        client.backup_instances.begin_trigger_restore(RG, VAULT_CSR, BI_OPS, _request(client, target)).result()
    assert ei.value.error.code == "UserErrorCrossSubscriptionRestoreDisabled"
    assert {j.name for j in client.jobs.list(RG, VAULT_CSR)} == before  # nothing started


def test_a_database_in_another_subscription_is_refused(client):
    err = _validate_error(client, sales_db_target(new_name("ops")))
    assert err.error.code == "UserErrorCrossSubscriptionRestoreDisabled" and "pgsrv-restore" in err.message


def test_world_rejects_an_unknown_cross_subscription_state():
    raw = yaml.safe_load(WORLD.read_text())
    next(v for v in raw["vaults"] if v["id"].endswith("/" + VAULT_CSR))["cross_subscription_restore"] = "Off"
    with pytest.raises(WorldError, match="cross_subscription_restore: use Enabled, Disabled, PermanentlyDisabled"):
        parse_world(raw, datetime(2026, 11, 24, tzinfo=UTC))
