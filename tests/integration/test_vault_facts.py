"""Azure behaviours the emulator now shows (issue 10 items 3, 4, 5, 8, 10), each end to end on the real local stack:
partial recovery points, user-assigned vault identities, cross-subscription restore off, vaults without
replicatedRegions, and jobs that pause, warn or are cancelled."""

from __future__ import annotations

import time
import uuid

import psycopg
from azure.storage.blob import BlobServiceClient

from localdev import scenarios as sc

from .helpers import admin, completion_events, dsn, start, wait_for


def uniq(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def _notes(env: dict[str, str], cluster: str, db: str) -> set[str]:
    with psycopg.connect(dsn(env, cluster, db), connect_timeout=10) as conn:
        return {r[0] for r in conn.execute("SELECT batch FROM notes").fetchall()}


def _codes(items: list[dict]) -> list[str]:
    return [w["code"] for w in items]


def test_latest_skips_the_partial_newest_point_and_warns_everywhere(local_stack, api):
    name = uniq("it_crm")
    rid = start(api, sc.as_database(name, bi=sc.BI_CRM_PARTIAL))
    body = wait_for(api, rid)
    assert body["status"] == "succeeded", body
    assert _notes(local_stack.env, "pgsrv-restore", name) == {"c1", "c2"}  # the Partial c3 point was not used
    assert _codes(body["warnings"]) == ["PartialRecoveryPointSkipped"]
    assert any("PartialRecoveryPointSkipped" in e["message"] for e in body["timeline"]), body["timeline"]
    events = completion_events(local_stack.env, rid)
    assert events and _codes(events[0]["warnings"]) == ["PartialRecoveryPointSkipped"]


def test_an_explicit_partial_point_is_restored_with_a_warning(local_stack, api):
    first = wait_for(api, start(api, sc.as_database(uniq("it_crm_latest"), bi=sc.BI_CRM_PARTIAL)))
    partial_id = first["warnings"][0]["recovery_point"]
    name = uniq("it_crm_partial")
    body = wait_for(api, start(api, sc.as_database(name, bi=sc.BI_CRM_PARTIAL,
                                                   recovery_point={"id": partial_id})))
    assert body["status"] == "succeeded", body
    assert body["recovery_point"]["id"] == partial_id
    assert _codes(body["warnings"]) == ["PartialRecoveryPoint"]
    assert _notes(local_stack.env, "pgsrv-restore", name) == {"c1", "c2", "c3"}


def test_a_backup_instance_with_a_user_assigned_identity_restores_as_that_identity(local_stack, api):
    # bv-uami's system-assigned identity holds no role: only identityDetails naming id-bv-uami can succeed
    name = uniq("it_uami")
    body = wait_for(api, start(api, sc.as_database(name, bi=sc.BI_BILLING_UAMI)))
    assert body["status"] == "succeeded", body
    assert _notes(local_stack.env, "pgsrv-restore", name) == {"u1"}
    assert any("user-assigned identity id-bv-uami" in e["message"] for e in body["timeline"]), body["timeline"]


def test_a_missing_role_of_the_user_assigned_identity_gets_a_fix_for_that_identity(local_stack, api):
    body = wait_for(api, start(api, sc.as_database(uniq("it_uami_noreader"), bi=sc.BI_BILLING_UAMI,
                                                   server=sc.TARGET_NOREADER, secret=sc.SECRET_NOREADER)))
    assert body["status"] == "rejected", body
    assert body["error"]["code"] == "UserErrorMSIMissingPermissions"
    assert body["error"]["fix"].startswith(f"az role assignment create --assignee-object-id {sc.UAMI_PRINCIPAL} ")
    assert "--role \"Reader\"" in body["error"]["fix"] and sc.TARGET_NOREADER in body["error"]["fix"]


def _blobs(env: dict[str, str], container_url: str, prefix: str) -> list[str]:
    container = BlobServiceClient.from_connection_string(env["AZURE_STORAGE_CONNECTION_STRING"]) \
        .get_container_client(sc.AZURITE_CONTAINER[container_url])
    return [b.name for b in container.list_blobs(name_starts_with=prefix)]


def test_cross_subscription_restore_off_needs_the_container_id_and_keeps_to_its_subscription(local_stack, api):
    prefix = uniq("it-csr").replace("_", "-")
    no_id = wait_for(api, start(api, sc.as_files(prefix, bi=sc.BI_OPS_CSR_OFF, url=sc.CONTAINER_SUB1_URL,
                                                 container_id=None)))
    assert no_id["status"] == "rejected" and no_id["error"]["code"] == "TargetContainerIdRequired", no_id
    assert no_id["error"]["message"].startswith("target.container_id is required")
    other_sub = wait_for(api, start(api, sc.as_database(uniq("it_csr"), bi=sc.BI_OPS_CSR_OFF)))
    assert other_sub["status"] == "rejected" and other_sub["error"]["code"] == "CrossSubscriptionRestoreDisabled"
    assert "az resource update" in other_sub["error"]["fix"]
    ok = wait_for(api, start(api, sc.as_files(prefix, bi=sc.BI_OPS_CSR_OFF, url=sc.CONTAINER_SUB1_URL,
                                              container_id=sc.CONTAINER_SUB1_ID)))
    assert ok["status"] == "succeeded", ok
    assert _blobs(local_stack.env, sc.CONTAINER_SUB1_URL, prefix) == [f"{prefix}.dump"]


def test_cross_region_restore_from_a_vault_without_replicated_regions_uses_the_paired_region(local_stack, api):
    prefix = uniq("it-geo").replace("_", "-")
    body = wait_for(api, start(api, sc.as_files(prefix, bi=sc.BI_GEO_NOREPL, url=sc.CONTAINER_NE_URL,
                                                container_id=None, region="secondary")))
    assert body["status"] == "succeeded", body
    assert body["restore_location"] == "northeurope"
    assert any("lists no replicatedRegions" in e["message"] for e in body["timeline"]), body["timeline"]
    assert _blobs(local_stack.env, sc.CONTAINER_NE_URL, prefix) == [f"{prefix}.dump"]


def _watch_for_job_status(api, rid: str, wanted: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, body, _ = api.get(f"/restores/{rid}")
        if body["job_status"] == wanted or body["status"] in ("succeeded", "failed", "rejected"):
            return body
        time.sleep(0.2)
    raise AssertionError(f"restore {rid} never showed job_status {wanted}")


def test_a_paused_job_shows_as_paused_with_a_fix_then_completes(local_stack, api):
    emu = admin(local_stack.env)
    # ~20 s at 3600x: longer than any duration the service may have learned for its first job check (it must see
    # the job while paused)
    emu.add_fault("job_pause", "BackupInstances_TriggerRestore", count=1, duration="PT20H")
    try:
        name = uniq("it_paused")
        rid = start(api, sc.as_database(name))
        seen = _watch_for_job_status(api, rid, "Paused")
        assert (seen["status"], seen["job_status"]) == ("restoring", "Paused"), seen
        assert any("is Paused" in e["message"] and "az dataprotection job show" in e["message"]
                   for e in seen["timeline"]), seen["timeline"]
        body = wait_for(api, rid)
    finally:
        emu.clear_faults()
    assert body["status"] == "succeeded" and body["job_status"] == "Completed", body
    assert _codes(body["warnings"]) == ["JobPaused"]
    events = completion_events(local_stack.env, rid)
    assert events and _codes(events[0]["warnings"]) == ["JobPaused"]


def test_a_job_that_warns_succeeds_with_its_warnings_and_a_cancelled_one_fails(local_stack, api):
    emu = admin(local_stack.env)
    try:
        emu.add_fault("job_warn", "BackupInstances_TriggerRestore", count=1,
                      error_code="UserErrorSomeRolesNotRestored", error_message="2 roles were not restored")
        warned = wait_for(api, start(api, sc.as_database(uniq("it_warned"))))
        emu.add_fault("job_cancel", "BackupInstances_TriggerRestore", count=1)
        cancelled = wait_for(api, start(api, sc.as_database(uniq("it_cancelled"))))
    finally:
        emu.clear_faults()
    assert warned["status"] == "succeeded" and warned["job_status"] == "CompletedWithWarnings", warned
    assert _codes(warned["warnings"]) == ["UserErrorSomeRolesNotRestored"]
    assert cancelled["status"] == "failed" and cancelled["job_status"] == "Cancelled", cancelled
    assert cancelled["error"]["code"] == "JobCancelled"
