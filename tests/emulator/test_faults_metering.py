"""Fault injection, metering per caller and the ARM-style token bucket, all observed through the real SDK."""

from __future__ import annotations

import time

import pytest
from azure.core.exceptions import AzureError, HttpResponseError, ServiceRequestError, ServiceResponseError
from azure.mgmt.dataprotection.models import (
    FetchSecondaryRPsRequestParameters,
    ValidateRestoreRequestObject,
)

from .conftest import BI_SALES, RG, VAULT, VAULT_ID
from .helpers import new_name, rp_request, sales_db_target, vault_rp, wait_job

GET_VAULT = "BackupVaults_Get"
TRIGGER = "BackupInstances_TriggerRestore"


@pytest.fixture()
def bare(emu):
    """SDK client without retries, so each injected fault is visible once."""
    return emu.client(retry_total=0)


def _job_ids(client) -> set[str]:
    return {j.id for j in client.jobs.list(RG, VAULT)}


@pytest.mark.parametrize(("mode", "status"), [("throttle", 429), ("error500", 500), ("error503", 503)])
def test_status_faults_reach_the_sdk(bare, admin, mode, status):
    admin.add_fault(mode, GET_VAULT, count=1, retry_after=2)
    with pytest.raises(HttpResponseError) as ei:
        bare.backup_vaults.get(RG, VAULT)
    assert ei.value.status_code == status
    if status != 500:
        assert ei.value.response.headers["Retry-After"] == "2"
    assert bare.backup_vaults.get(RG, VAULT).name == VAULT  # count=1: next call is clean


def test_default_sdk_retry_rides_over_counted_503s_and_metering_shows_them(emu, client, admin):
    admin.reset_metering()
    admin.add_fault("error503", GET_VAULT, count=2, retry_after=1)
    assert client.backup_vaults.get(RG, VAULT).name == VAULT
    m = admin.metering()["by_caller"]["default"]
    assert m["by_operation"][GET_VAULT] == 3 and m["by_status"] == {"503": 2, "200": 1}


def test_dropped_connection_is_a_transport_error(bare, admin):
    admin.add_fault("drop", GET_VAULT, count=1)
    with pytest.raises((ServiceRequestError, ServiceResponseError)):
        bare.backup_vaults.get(RG, VAULT)
    assert bare.backup_vaults.get(RG, VAULT).name == VAULT


def test_slow_answer_and_global_latency(client, admin):
    admin.add_fault("delay", GET_VAULT, count=1, delay_seconds=0.6)
    t0 = time.monotonic()
    client.backup_vaults.get(RG, VAULT)
    assert time.monotonic() - t0 >= 0.6
    admin.set_config(arm_latency_seconds=0.25)
    t0 = time.monotonic()
    client.backup_instances.get(RG, VAULT, BI_SALES)
    assert time.monotonic() - t0 >= 0.25


def test_failed_lro_with_chosen_code_has_no_effect(client, admin):
    before = _job_ids(client)
    admin.add_fault("lro_fail", TRIGGER, count=1, error_code="UserErrorServerConnectionClosed")
    with pytest.raises(HttpResponseError) as ei:
        client.backup_instances.begin_trigger_restore(
            RG, VAULT, BI_SALES, rp_request(vault_rp(client).name, sales_db_target(new_name()))).result()
    assert ei.value.error.code == "UserErrorServerConnectionClosed"
    assert _job_ids(client) == before


def test_job_failing_with_chosen_code(client, admin):
    admin.add_fault("job_fail", TRIGGER, count=1, error_code="UserErrorMissingNetworkSecurityPermissions",
                    error_message="No line of sight.")
    res = client.backup_instances.begin_trigger_restore(
        RG, VAULT, BI_SALES, rp_request(vault_rp(client).name, sales_db_target(new_name()))).result()
    job = wait_job(client, res.job_id)
    assert job.properties.status == "Failed"
    assert job.properties.error_details[0].code == "UserErrorMissingNetworkSecurityPermissions"
    assert job.properties.error_details[0].message == "No line of sight."


@pytest.mark.parametrize("mode", ["lost_500", "lost_drop"])
def test_executed_but_answer_lost_still_starts_the_restore(bare, client, admin, mode):
    before = _job_ids(client)
    admin.add_fault(mode, TRIGGER, count=1)
    with pytest.raises(AzureError) as ei:
        bare.backup_instances.begin_trigger_restore(
            RG, VAULT, BI_SALES, rp_request(vault_rp(client).name, sales_db_target(new_name())))
    if mode == "lost_500":
        assert isinstance(ei.value, HttpResponseError) and ei.value.status_code == 500
    else:
        assert isinstance(ei.value, ServiceRequestError | ServiceResponseError)
    new = _job_ids(client) - before
    assert len(new) == 1
    assert wait_job(client, new.pop()).properties.status == "Completed"


def test_fault_by_probability_and_wildcard_operation(bare, admin):
    f = admin.add_fault("error500", "*", probability=1.0)
    for call in (lambda: bare.backup_vaults.get(RG, VAULT), lambda: bare.backup_instances.get(RG, VAULT, BI_SALES)):
        with pytest.raises(HttpResponseError):
            call()
    assert next(x for x in admin.faults() if x["id"] == f["id"])["fired"] == 2
    admin.clear_faults(f["id"])
    assert bare.backup_vaults.get(RG, VAULT).name == VAULT


def test_bad_fault_definition_is_rejected_with_a_clear_message(admin):
    from localdev.dpemu.admin import AdminError
    with pytest.raises(AdminError, match="mode"):
        admin.add_fault("explode", GET_VAULT)
    with pytest.raises(AdminError, match="error_code"):
        admin.add_fault("lro_fail", TRIGGER)


def test_metering_counts_calls_by_operation_kind_status_and_caller(emu, client, admin):
    baseline = emu.client(token=admin.issue_token("baseline"))
    admin.reset_metering()
    client.backup_vaults.get(RG, VAULT)
    client.backup_instances.get(RG, VAULT, BI_SALES)
    list(client.fetch_secondary_recovery_points.list(RG, "northeurope", FetchSecondaryRPsRequestParameters(
        source_region="westeurope", source_backup_instance_id=f"{VAULT_ID}/backupInstances/{BI_SALES}")))
    rp_id = vault_rp(baseline).name
    baseline.backup_instances.begin_validate_for_restore(RG, VAULT, BI_SALES, ValidateRestoreRequestObject(
        restore_request_object=rp_request(rp_id, sales_db_target(new_name())))).result()
    m = admin.metering()
    d, b = m["by_caller"]["default"], m["by_caller"]["baseline"]
    assert d["by_operation"][GET_VAULT] == 1 and d["by_operation"]["BackupInstances_Get"] == 1
    pages = d["by_operation"]["FetchSecondaryRecoveryPoints_List"]
    assert pages >= 3 and d["write"] == 0 and d["read"] == 2 + pages  # fetch* POSTs count as reads
    assert b["by_operation"]["BackupInstances_ValidateForRestore"] == 1 and b["write"] == 1
    assert b["by_operation"]["OperationStatus_Get"] >= 1 and b["by_operation"]["OperationResult_Get"] == 1
    assert m["total"] == d["total"] + b["total"]
    assert m["by_status"]["202"] == 1


def test_token_bucket_throttles_reads_with_arm_headers(emu, admin):
    bare = emu.client(token=admin.issue_token("bucket"), retry_total=0)
    admin.set_throttling(enabled=True, read_burst=3, read_rate=0.5)
    for expected in (2, 1, 0):
        resp = {}
        bare.backup_vaults.get(RG, VAULT, raw_response_hook=lambda pr, resp=resp: resp.update(pr.http_response.headers))
        assert resp["x-ms-ratelimit-remaining-subscription-reads"] == str(expected)
    with pytest.raises(HttpResponseError) as ei:
        bare.backup_vaults.get(RG, VAULT)
    assert ei.value.status_code == 429
    assert int(ei.value.response.headers["Retry-After"]) >= 1
    assert ei.value.response.headers["x-ms-ratelimit-remaining-subscription-reads"] == "0"
    other = emu.client(token=admin.issue_token("other-caller"), retry_total=0)
    assert other.backup_vaults.get(RG, VAULT).name == VAULT  # buckets are per caller
