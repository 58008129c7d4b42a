"""Every read operation through the real SDK: typed results, paging, filters, auth, path casing, LRO mechanics."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from azure.core.exceptions import ClientAuthenticationError, ResourceNotFoundError
from azure.mgmt.dataprotection.models import (
    AzureBackupDiscreteRecoveryPoint,
    AzureBackupJob,
    BackupInstance,
    OperationJobExtendedInfo,
    ValidateRestoreRequestObject,
)

from .conftest import BI_EXT, BI_FLEX, BI_SALES, RG, SUB1, VAULT, VAULT_ID
from .helpers import new_name, rp_request, rps, sales_db_target, vault_rp, wait_job


def test_vault_get_returns_typed_vault_with_crr_settings(client):
    v = client.backup_vaults.get(RG, VAULT)
    assert v.id == VAULT_ID and v.location == "westeurope"
    assert v.identity.principal_id == "11111111-1111-4111-8111-111111111111"
    assert v.properties.storage_settings[0].type == "GeoRedundant"
    assert v.properties.feature_settings.cross_region_restore_settings.state == "Enabled"
    assert v.properties.replicated_regions == ["northeurope"]
    lrs = client.backup_vaults.get(RG, "bv-lrs")
    assert lrs.properties.storage_settings[0].type == "LocallyRedundant"
    assert lrs.properties.replicated_regions == []


def test_backup_instances_list_and_get_both_kinds(client):
    items = {b.name: b for b in client.backup_instances.list(RG, VAULT)}
    assert set(items) == {BI_SALES, BI_FLEX, BI_EXT}
    single = client.backup_instances.get(RG, VAULT, BI_SALES)
    assert isinstance(single.properties, BackupInstance)
    assert single.properties.friendly_name == "pgsrv01\\salesdb"
    assert single.properties.data_source_info.datasource_type == "Microsoft.DBforPostgreSQL/servers/databases"
    assert single.properties.data_source_set_info.resource_id.endswith("/servers/pgsrv01")
    flex = items[BI_FLEX]
    assert flex.properties.data_source_info.datasource_type == "Microsoft.DBforPostgreSQL/flexibleServers"


def test_recovery_points_are_typed_and_paged_through_next_link(emu, client):
    emu.admin.reset_metering()
    points = rps(client)
    assert len(points) >= 6
    assert all(isinstance(p.properties, AzureBackupDiscreteRecoveryPoint) for p in points)
    times = [p.properties.recovery_point_time for p in points]
    assert times == sorted(times, reverse=True), "newest first"
    tiers = [p.properties.recovery_point_data_stores_details[0].type for p in points]
    assert "ArchiveStore" in tiers and tiers.count("VaultStore") >= 5
    pages = emu.admin.metering()["by_operation"]["RecoveryPoints_List"]
    assert pages == -(-len(points) // emu.admin.config()["page_size"])  # ceil: one call per page


def test_recovery_points_filter_by_start_and_end_date(client):
    now = datetime.now(UTC)
    fmt = "%Y-%m-%dT%H:%M:%S.%f0Z"
    start, end = (now - timedelta(days=22)).strftime(fmt), (now - timedelta(days=6)).strftime(fmt)
    flt = f"startDate eq '{start}' and endDate eq '{end}'"
    got = list(client.recovery_points.list(RG, VAULT, BI_SALES, filter=flt))
    assert len(got) == 3  # -P21D, -P14D, -P7D
    assert all(now - timedelta(days=22) <= p.properties.recovery_point_time <= now - timedelta(days=6) for p in got)


def test_recovery_points_bad_filter_is_a_clear_400(client):
    from azure.core.exceptions import HttpResponseError
    with pytest.raises(HttpResponseError) as ei:
        list(client.recovery_points.list(RG, VAULT, BI_SALES, filter="foo eq 'bar'"))
    assert ei.value.status_code == 400 and ei.value.error.code == "UserErrorInvalidFilter"
    assert "startDate" in ei.value.error.message


def test_recovery_point_get_and_unknown_ids_are_404(client):
    rp = vault_rp(client)
    got = client.recovery_points.get(RG, VAULT, BI_SALES, rp.name)
    assert got.properties.recovery_point_id == rp.name
    meta = got.properties.recovery_point_data_stores_details[0].meta_data
    assert '"postgresVersion": "11"' in meta
    with pytest.raises(ResourceNotFoundError):
        client.recovery_points.get(RG, VAULT, BI_SALES, "0" * 32)
    with pytest.raises(ResourceNotFoundError):
        client.backup_instances.get(RG, VAULT, "nope")
    with pytest.raises(ResourceNotFoundError):
        client.backup_vaults.get(RG, "no-such-vault")


def test_wrong_or_missing_token_is_401_arm_style(emu):
    bad = emu.client(token="not-a-token")
    with pytest.raises(ClientAuthenticationError) as ei:
        bad.backup_vaults.get(RG, VAULT)
    assert ei.value.error.code == "InvalidAuthenticationToken"
    r = httpx.get(f"{emu.endpoint}{VAULT_ID}?api-version=2026-06-01", verify=emu.ssl)
    assert r.status_code == 401 and r.json()["error"]["code"] == "InvalidAuthenticationToken"


def test_paths_match_case_insensitively_and_any_api_version(emu):
    url = (f"{emu.endpoint}/SUBSCRIPTIONS/{SUB1}/resourcegroups/RG-BACKUP/providers/microsoft.dataprotection/"
           f"BACKUPVAULTS/BV-PROD?api-version=2021-07-01")
    r = httpx.get(url, verify=emu.ssl, headers={"Authorization": f"Bearer {emu.token}"})
    assert r.status_code == 200 and r.json()["name"] == VAULT


def test_validate_lro_sends_both_headers_and_scaled_retry(emu, client):
    rp = vault_rp(client)
    body = {"restoreRequestObject": rp_request(rp.name, sales_db_target(new_name())).as_dict()}
    hdr = {"Authorization": f"Bearer {emu.token}"}
    r = httpx.post(f"{emu.endpoint}{VAULT_ID}/backupInstances/{BI_SALES}/validateRestore?api-version=2026-06-01",
                   json=body, headers=hdr, verify=emu.ssl)
    assert r.status_code == 202
    aso, loc = r.headers["Azure-AsyncOperation"], r.headers["Location"]
    assert aso.startswith(f"{emu.endpoint}/subscriptions/{SUB1}/providers/Microsoft.DataProtection/locations/"
                          "westeurope/operationStatus/")
    assert "/operationResults/" in loc
    # scaled clock: a delay under one real second cannot be a whole-second Retry-After (as ARM sends it), so only
    # retry-after-ms is sent (azure-core falls back to it); never a fractional Retry-After
    assert "Retry-After" not in r.headers
    assert 0 < int(r.headers["retry-after-ms"]) < 1000
    status = httpx.get(aso, headers=hdr, verify=emu.ssl).json()
    assert status["status"] in ("Inprogress", "Succeeded")
    op_id = aso.split("/operationStatus/")[1].split("?")[0]
    deadline = time.time() + 10
    while client.operation_status.get("westeurope", op_id).status != "Succeeded":
        assert time.time() < deadline
        time.sleep(0.02)


def test_sdk_lro_is_fast_with_default_polling_interval(client):
    """retry-after-ms (scaled) is honoured by azure-core, so the default 30 s polling interval never applies."""
    rp = vault_rp(client)
    t0 = time.monotonic()
    res = client.backup_instances.begin_validate_for_restore(
        RG, VAULT, BI_SALES, ValidateRestoreRequestObject(restore_request_object=rp_request(
            rp.name, sales_db_target(new_name())))).result()
    assert isinstance(res, OperationJobExtendedInfo)
    assert time.monotonic() - t0 < 5


def test_jobs_list_is_paged_and_get_is_typed(emu, client, admin):
    admin.set_config(job_page_size=2)
    rp = vault_rp(client)
    ids = []
    for _ in range(3):
        res = client.backup_instances.begin_trigger_restore(
            RG, VAULT, BI_SALES, rp_request(rp.name, sales_db_target(new_name()))).result()
        ids.append(res.job_id)
    emu.admin.reset_metering()
    jobs = list(client.jobs.list(RG, VAULT))
    listed = {j.id for j in jobs}
    assert set(ids) <= listed
    assert emu.admin.metering()["by_operation"]["Jobs_List"] == -(-len(jobs) // 2)
    admin.set_config(job_page_size=10)
    job = client.jobs.get(RG, VAULT, ids[0].rsplit("/", 1)[-1])
    assert isinstance(job.properties, AzureBackupJob)
    assert job.properties.operation_category == "Restore" and job.properties.vault_name == VAULT
    for j in ids:
        assert wait_job(client, j).properties.status == "Completed"
    with pytest.raises(ResourceNotFoundError):
        client.jobs.get(RG, VAULT, "00000000-0000-0000-0000-00000000dead")


def test_integer_retry_after_mode_sends_whole_seconds(emu, client, admin):
    admin.set_config(integer_retry_after=True)
    try:
        rp = vault_rp(client)
        body = {"restoreRequestObject": rp_request(rp.name, sales_db_target(new_name())).as_dict()}
        r = httpx.post(f"{emu.endpoint}{VAULT_ID}/backupInstances/{BI_SALES}/validateRestore?api-version=2026-06-01",
                       json=body, headers={"Authorization": f"Bearer {emu.token}"}, verify=emu.ssl)
        assert r.status_code == 202 and r.headers["Retry-After"] == "1" and "retry-after-ms" not in r.headers
    finally:
        admin.set_config(integer_retry_after=False)


def test_operation_result_and_continuation_token_resume(emu, client):
    rp = vault_rp(client)
    poller = client.backup_instances.begin_trigger_restore(RG, VAULT, BI_SALES,
                                                           rp_request(rp.name, sales_db_target(new_name())))
    token = poller.continuation_token()
    resumed = emu.client().backup_instances.begin_trigger_restore(RG, VAULT, BI_SALES, None,
                                                                  continuation_token=token)
    res = resumed.result()
    assert res.job_id.startswith(f"{VAULT_ID}/backupJobs/")
    assert poller.result().job_id == res.job_id
    op_id = poller.polling_method()._operation.get_polling_url().split("/operationStatus/")[1].split("?")[0]
    assert client.operation_result.get(op_id, "westeurope").job_id == res.job_id
    assert client.operation_status.get("westeurope", op_id).properties.job_id == res.job_id
    assert wait_job(client, res.job_id).properties.status == "Completed"
