"""The emulator is as strict as ARM where our product could otherwise lean on a guess: api-versions, 401 challenges,
whole-second Retry-After, operationResults codes; and it can show each way Azure might report what no spec example
settles (job destinations in another format, where a completed rehydration appears), plus the odd answers of the
hardening fault modes (malformed and HTML bodies, 401, 403, 404 on a named operation)."""

from __future__ import annotations

import json

import httpx
import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError

from .conftest import BI_SALES, RG, VAULT, VAULT_ID
from .helpers import archive_rp, new_name, rehydration_request, rp_request, sales_db_target, vault_rp, wait_job


def get(emu, path: str, query: str = "?api-version=2026-06-01", *, signed: bool = True) -> httpx.Response:
    headers = {"Authorization": f"Bearer {emu.token}"} if signed else {}
    return httpx.get(f"{emu.endpoint}{path}{query}", headers=headers, verify=emu.ssl)


@pytest.mark.parametrize(("query", "code"), [("?api-version=2099-01-01", "NoRegisteredProviderFound"),
                                              ("", "MissingApiVersionParameter")])
def test_unknown_or_missing_api_version_is_refused_as_arm_refuses_it(emu, query, code):
    r = get(emu, VAULT_ID, query)
    assert r.status_code == 400 and r.json()["error"]["code"] == code


def test_an_older_published_api_version_is_served(emu):
    assert get(emu, VAULT_ID, "?api-version=2025-07-01").status_code == 200


def test_401_carries_a_bearer_challenge(emu):
    r = get(emu, VAULT_ID, signed=False)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer ")


def test_stand_alone_rehydrate_result_is_200_never_204(emu, client):
    from azure.mgmt.dataprotection.models import AzureBackupRehydrationRequest
    rp = archive_rp(client)
    poller = client.backup_instances.begin_trigger_rehydrate(RG, VAULT, BI_SALES, AzureBackupRehydrationRequest(
        recovery_point_id=rp.name, rehydration_priority="Standard", rehydration_retention_duration="P15D"))
    poller.result()
    loc = poller.polling_method()._operation._location_url  # the Location URL the emulator sent
    r = httpx.get(loc, headers={"Authorization": f"Bearer {emu.token}"}, verify=emu.ssl)
    assert r.status_code == 200 and r.json()["objectType"] == "OperationJobExtendedInfo"


@pytest.fixture()
def bare(emu):
    return emu.client(retry_total=0)


@pytest.mark.parametrize("mode", ["malformed", "html"])
def test_malformed_and_html_answers_come_with_status_200(emu, admin, mode):
    admin.add_fault(mode, "BackupVaults_Get", count=1)
    r = get(emu, VAULT_ID)
    assert r.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.text)
    if mode == "html":
        assert r.headers["content-type"].startswith("text/html")
    assert get(emu, VAULT_ID).json()["name"] == VAULT  # count=1


def test_401_403_404_faults_reach_the_sdk_as_arm_errors(bare, admin, client):
    job = client.backup_instances.begin_trigger_restore(
        RG, VAULT, BI_SALES, rp_request(vault_rp(client).name, sales_db_target(new_name()))).result().job_id
    guid = job.rsplit("/", 1)[-1]
    admin.add_fault("error401", "Jobs_Get", count=1)
    with pytest.raises(ClientAuthenticationError):
        bare.jobs.get(RG, VAULT, guid)
    admin.add_fault("error403", "Jobs_Get", count=1)
    with pytest.raises(HttpResponseError) as ei:
        bare.jobs.get(RG, VAULT, guid)
    assert ei.value.status_code == 403 and ei.value.error.code == "AuthorizationFailed"
    admin.add_fault("error404", "Jobs_Get", count=1)
    with pytest.raises(ResourceNotFoundError):
        bare.jobs.get(RG, VAULT, guid)
    assert bare.jobs.get(RG, VAULT, guid).name == guid  # the job was there all along


@pytest.mark.parametrize(("fmt", "expected"), [("name", "db"), ("none", None), ("arm", "arm")])
def test_job_destination_can_take_another_format(client, admin, fmt, expected):
    name = new_name()
    admin.set_config(job_destination_format=fmt)
    try:
        job_id = client.backup_instances.begin_trigger_restore(
            RG, VAULT, BI_SALES, rp_request(vault_rp(client).name, sales_db_target(name))).result().job_id
        dest = wait_job(client, job_id).properties.extended_info.recovery_destination
    finally:
        admin.set_config(job_destination_format="arm")
    if expected == "db":
        assert dest == name
    elif expected is None:
        assert dest is None
    else:
        assert dest.startswith("/subscriptions/") and dest.endswith(f"/databases/{name}")


def test_bad_emulation_choices_are_refused_with_the_allowed_values(admin):
    with pytest.raises(Exception, match="job_destination_format"):
        admin.set_config(job_destination_format="guid")
    with pytest.raises(Exception, match="rehydration_reported_on"):
        admin.set_config(rehydration_reported_on=["somewhere"])


def _stores(client, rp_name: str) -> list[dict]:
    rp = client.recovery_points.get(RG, VAULT, BI_SALES, rp_name)
    return [dict(d) for d in rp.properties.recovery_point_data_stores_details]


def test_completed_rehydration_can_be_reported_on_a_vault_entry_or_nowhere(client, admin, emu):
    rp = archive_rp(client)
    admin.set_config(rehydration_reported_on=["vault_entry"])
    try:
        job_id = client.backup_instances.begin_trigger_restore(
            RG, VAULT, BI_SALES, rehydration_request(rp.name, sales_db_target(new_name()))).result().job_id
        admin.advance("PT11H")  # past the Standard rehydration time of the world
        stores = _stores(client, rp.name)
        assert [s["type"] for s in stores] == ["ArchiveStore", "VaultStore"]
        assert stores[0].get("rehydrationStatus") is None and stores[1]["rehydrationStatus"] == "COMPLETED"
        job = client.jobs.get(RG, VAULT, job_id.rsplit("/", 1)[-1])
        assert all(t.task_status != "Completed" for t in job.properties.extended_info.sub_tasks
                   if job.properties.status == "InProgress")
        admin.set_config(rehydration_reported_on=[])
        assert all(s.get("rehydrationStatus") is None for s in _stores(client, rp.name))
    finally:
        admin.set_config(rehydration_reported_on=["archive_entry", "job_subtask"])


def test_a_config_change_with_one_bad_key_changes_nothing(admin):
    before = admin.config()
    with pytest.raises(Exception, match="page_size"):
        admin.set_config(job_destination_format="name", page_size=0)
    assert admin.config() == before
