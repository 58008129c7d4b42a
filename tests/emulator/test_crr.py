"""Cross Region Restore in the secondary location (northeurope) through the SDK's CRR operation groups."""

from __future__ import annotations

import psycopg
import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.dataprotection.models import (
    AzureBackupDiscreteRecoveryPoint,
    CrossRegionRestoreDetails,
    CrossRegionRestoreJobRequest,
    CrossRegionRestoreJobsRequest,
    CrossRegionRestoreRequestObject,
    FetchSecondaryRPsRequestParameters,
    ValidateCrossRegionRestoreRequestObject,
)

from .conftest import BI_HR, BI_SALES, DR, KV_NE, RG, SUB1, VAULT, VAULT_ID
from .helpers import archive_rp, db_target, files_target, new_name, rp_request, vault_rp

BI_ID = f"{VAULT_ID}/backupInstances/{BI_SALES}"
SECONDARY = "northeurope"


def dr_target(name: str):
    return db_target(f"{DR}/pgsrv-dr", name, f"{KV_NE}/pgsrv-dr-conn", location=SECONDARY)


def crr_body(rp_id: str, target, bi_id: str = BI_ID) -> CrossRegionRestoreRequestObject:
    return CrossRegionRestoreRequestObject(
        restore_request_object=rp_request(rp_id, target),
        cross_region_restore_details=CrossRegionRestoreDetails(source_region="westeurope",
                                                               source_backup_instance_id=bi_id))


def wait_crr_job(client, job_id: str, timeout: float = 60):
    import time
    deadline = time.time() + timeout
    req = CrossRegionRestoreJobRequest(source_region="westeurope", source_backup_vault_id=VAULT_ID,
                                       job_id=job_id.rsplit("/", 1)[-1])
    while True:
        job = client.fetch_cross_region_restore_job.get(RG, SECONDARY, req)
        if job.properties.status != "InProgress":
            return job
        assert time.time() < deadline, "CRR job did not finish"
        time.sleep(0.1)


def test_fetch_secondary_recovery_points_pages_with_get_next_link(emu, client):
    emu.admin.reset_metering()
    got = list(client.fetch_secondary_recovery_points.list(
        RG, SECONDARY, FetchSecondaryRPsRequestParameters(source_region="westeurope",
                                                          source_backup_instance_id=BI_ID)))
    assert len(got) >= 6 and all(isinstance(r.properties, AzureBackupDiscreteRecoveryPoint) for r in got)
    assert {r.name for r in got} >= {vault_rp(client).name}
    assert emu.admin.metering()["by_operation"]["FetchSecondaryRecoveryPoints_List"] >= 3


def test_crr_validate_trigger_and_track_job_in_secondary_region_only(emu, client):
    rp = vault_rp(client, 1)
    name = new_name("dr")
    client.backup_instances.begin_validate_cross_region_restore(
        RG, SECONDARY, ValidateCrossRegionRestoreRequestObject(
            restore_request_object=rp_request(rp.name, dr_target(name)),
            cross_region_restore_details=CrossRegionRestoreDetails(source_region="westeurope",
                                                                   source_backup_instance_id=BI_ID))).result()
    poller = client.backup_instances.begin_trigger_cross_region_restore(RG, SECONDARY, crr_body(rp.name,
                                                                                                dr_target(name)))
    assert f"/locations/{SECONDARY}/operationStatus/" in poller.polling_method()._operation.get_polling_url()
    res = poller.result()
    job = wait_crr_job(client, res.job_id)
    assert job.properties.status == "Completed", job.properties.error_details
    with psycopg.connect(emu.dsn("pgsrv-dr", name)) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] > 0
    # not visible through the primary vault's backupJobs
    with pytest.raises(ResourceNotFoundError):
        client.jobs.get(RG, VAULT, res.job_id.rsplit("/", 1)[-1])
    assert res.job_id not in {j.id for j in client.jobs.list(RG, VAULT)}
    listed = list(client.fetch_cross_region_restore_jobs.list(
        RG, SECONDARY, CrossRegionRestoreJobsRequest(source_region="westeurope", source_backup_vault_id=VAULT_ID)))
    assert res.job_id in {j.id for j in listed}


def test_crr_restore_as_files_to_secondary_container(client):
    rp = vault_rp(client)
    res = client.backup_instances.begin_trigger_cross_region_restore(
        RG, SECONDARY, crr_body(rp.name, files_target("stpgrestorene", "pg-restores", new_name("drf"),
                                                      location=SECONDARY))).result()
    assert wait_crr_job(client, res.job_id).properties.status == "Completed"


def test_crr_of_archived_point_is_rejected(client, admin):
    admin.advance("P31D")  # make sure no earlier rehydration is still valid
    with pytest.raises(HttpResponseError) as ei:
        client.backup_instances.begin_trigger_cross_region_restore(
            RG, SECONDARY, crr_body(archive_rp(client).name, dr_target(new_name()))).result()
    assert ei.value.error.code == "UserErrorCrossRegionRestoreNotSupportedForArchivedRecoveryPoint"


def test_crr_target_in_primary_region_is_rejected(client):
    from .conftest import KV_WE, TGT
    target = db_target(f"{TGT}/pgsrv-restore", new_name(), f"{KV_WE}/pgsrv-restore-conn", location=SECONDARY)
    with pytest.raises(HttpResponseError) as ei:
        client.backup_instances.begin_validate_cross_region_restore(
            RG, SECONDARY, ValidateCrossRegionRestoreRequestObject(
                restore_request_object=rp_request(vault_rp(client).name, target),
                cross_region_restore_details=CrossRegionRestoreDetails(source_region="westeurope",
                                                                       source_backup_instance_id=BI_ID))).result()
    assert ei.value.error.code == "UserErrorRestoreTargetRegionMismatch"


def test_crr_on_lrs_vault_fails(client):
    lrs_vault = f"/subscriptions/{SUB1}/resourceGroups/{RG}/providers/Microsoft.DataProtection/backupVaults/bv-lrs"
    rp = next(iter(client.recovery_points.list(RG, "bv-lrs", BI_HR)))
    with pytest.raises(HttpResponseError) as ei:
        client.backup_instances.begin_trigger_cross_region_restore(
            RG, SECONDARY, crr_body(rp.name, dr_target(new_name()), bi_id=f"{lrs_vault}/backupInstances/{BI_HR}")
        ).result()
    assert ei.value.error.code == "UserErrorCrossRegionRestoreNotEnabled"
    with pytest.raises(HttpResponseError) as ei2:
        list(client.fetch_secondary_recovery_points.list(RG, SECONDARY, FetchSecondaryRPsRequestParameters(
            source_region="westeurope", source_backup_instance_id=f"{lrs_vault}/backupInstances/{BI_HR}")))
    assert ei2.value.status_code == 400 and ei2.value.error.code == "UserErrorCrossRegionRestoreNotEnabled"
