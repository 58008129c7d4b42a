"""Each restore path end to end on the real local stack, and each rejection with its error code."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import psycopg
import pytest
from azure.storage.blob import BlobServiceClient

from localdev import scenarios as sc

from .helpers import dsn, order_batches, queue, start, wait_for

ALL = {"b0", "b1", "b2", "b3", "b4", "b5"}


def uniq(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def test_restore_as_database_from_latest_point_brings_back_the_backed_up_rows(local_stack, api):
    name = uniq("it_latest")
    rid = start(api, sc.as_database(name))
    body = wait_for(api, rid)
    assert body["status"] == "succeeded", body
    assert body["recovery_point"]["tier"] == "vault"
    assert body["azure_job_id"] and body["job_status"] == "Completed"
    assert order_batches(local_stack.env, "pgsrv-restore", name) == ALL
    assert [e["status"] for e in body["timeline"]][0] == "accepted"
    assert body["timeline"][-1]["status"] == "succeeded"
    assert set(body["stage_times"]) >= {"validate", "trigger", "monitor"}


def test_restore_as_files_writes_the_flexible_server_dump_set(local_stack, api):
    prefix = uniq("it-files").replace("_", "-")
    rid = start(api, sc.as_files(prefix))
    body = wait_for(api, rid)
    assert body["status"] == "succeeded", body
    container = BlobServiceClient.from_connection_string(local_stack.env["AZURE_STORAGE_CONNECTION_STRING"]) \
        .get_container_client(sc.AZURITE_CONTAINER[sc.CONTAINER_WE_URL])
    names = {b.name for b in container.list_blobs(name_starts_with=prefix)}
    assert any("appdb" in n for n in names) and any("inventory" in n for n in names), names
    assert any("roles" in n for n in names), names


def test_archived_point_is_rehydrated_then_restored(local_stack, api):
    name = uniq("it_archive")
    rid = start(api, sc.as_database(name, recovery_point={"latest_before": sc.days_ago(100).isoformat()},
                                    rehydration={"priority": "Standard", "retention_days": 12}))
    body = wait_for(api, rid, timeout=120)
    assert body["status"] == "succeeded", body
    assert body["recovery_point"]["tier"] == "archive"
    stages = [e["stage"] for e in body["timeline"]]
    assert "rehydrate" in stages and "wait" in stages, stages
    assert order_batches(local_stack.env, "pgsrv-restore", name) == {"b0"}


def test_cross_region_restore_lands_in_the_paired_region(local_stack, api):
    name = uniq("it_dr")
    rid = start(api, sc.as_database(name, server=sc.TARGET_DR, secret=sc.SECRET_DR, region="secondary"))
    body = wait_for(api, rid)
    assert body["status"] == "succeeded", body
    assert body["restore_location"] == "northeurope"
    assert order_batches(local_stack.env, "pgsrv-dr", name) == ALL


def test_alert_on_intake_queue_restores_latest_point_before_it_fired_once(local_stack, api):
    # the stack's RESTORE_PLANS comes from local.settings.sample.json; the plan under test is the demo's
    guid = str(uuid.uuid4())
    fired = sc.days_ago(3)
    payload = json.dumps(sc.alert_payload(guid, fired))
    q = queue(local_stack.env, "restore-requests")
    q.send_message(payload)
    q.send_message(payload)  # the action group retried: still one restore
    db = f"salesdb_alert_{guid.replace('-', '')[:8]}"
    found: list[dict] = []
    for _ in range(100):
        _, page, _ = api.get("/restores?limit=200")
        found = [i for i in page["items"] if i["source"] == "alert" and i["target"].get("database_name") == db]
        if found and all(i["status"] in ("succeeded", "failed", "rejected") for i in found):
            break
        import time

        time.sleep(0.3)
    assert len(found) == 1, found
    body = wait_for(api, found[0]["id"])
    assert body["status"] == "succeeded", body
    assert body["recovery_point"]["time"] < fired.isoformat().replace("+00:00", "Z")
    assert order_batches(local_stack.env, "pgsrv-restore", db) == ALL - {"b5"}


@pytest.mark.parametrize(("case", "body", "code"), [
    ("no Reader on target server",
     sc.as_database("x_noreader", server=sc.TARGET_NOREADER, secret=sc.SECRET_NOREADER),
     "UserErrorMSIMissingPermissions"),
    ("no Key Vault Secrets User",
     sc.as_database("x_nokv", secret="https://kv-norole-we.vault.azure.net/secrets/pgsrv-restore-conn"),
     "UserErrorMissingPermissionsOnSecretStore"),
    ("no Blob Data Contributor",
     sc.as_files("it-locked", url=sc.CONTAINER_LOCKED_URL, container_id=None), "UserErrorContainerNotAccessible"),
    ("lower PostgreSQL version",
     sc.as_database("x_legacy", server=sc.TARGET_LEGACY, secret=sc.SECRET_LEGACY), "UserErrorRestoreToLowerVersion"),
    ("flexible server as database",
     sc.as_database("x_flex", bi=sc.BI_FLEX), "FlexibleServerRestoreAsFilesOnly"),
    ("cross-region from an LRS vault",
     sc.as_database("x_lrs", bi=sc.BI_HR_LRS, region="secondary", server=sc.TARGET_DR, secret=sc.SECRET_DR),
     "CrossRegionRestoreNotEnabled"),
    ("unknown recovery point",
     sc.as_database("x_norp", recovery_point={"id": "0123456789abcdef0123456789abcdef"}), "RecoveryPointNotFound"),
    ("unknown secret",
     sc.as_database("x_nosecret", secret="https://kv-restore-we.vault.azure.net/secrets/does-not-exist"),
     "UserErrorInvalidSecret"),
])
def test_rejections_carry_the_azure_error_code_and_a_fix(local_stack, api, case, body, code):
    rid = start(api, body)
    final = wait_for(api, rid)
    assert final["status"] == "rejected", (case, final)
    assert final["error"]["code"] == code, (case, final["error"])
    assert final["error"]["fix"], case
    assert final["azure_job_id"] is None
    if code in ("UserErrorMSIMissingPermissions", "UserErrorMissingPermissionsOnSecretStore",
                "UserErrorContainerNotAccessible"):
        assert final["error"]["fix"].startswith("az role assignment create --assignee-object-id "
                                                "11111111-1111-4111-8111-111111111111")


def test_existing_database_name_is_refused_without_overwriting(local_stack, api):
    name = uniq("it_exists")
    with psycopg.connect(dsn(local_stack.env, "pgsrv-restore", "postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(dsn(local_stack.env, "pgsrv-restore", name), autocommit=True) as conn:
        conn.execute("CREATE TABLE keep_me(x int); INSERT INTO keep_me VALUES (42)")
    final = wait_for(api, start(api, sc.as_database(name)))
    assert final["status"] in ("rejected", "failed")
    assert final["error"]["code"] == "UserErrorDatabaseNameAlreadyInUse"
    with psycopg.connect(dsn(local_stack.env, "pgsrv-restore", name)) as conn:
        assert conn.execute("SELECT x FROM keep_me").fetchall() == [(42,)]


@pytest.mark.parametrize(("body", "field"), [
    ({"backup_instance": {"id": sc.BI_SALES}, "target": {"kind": "database"}, "surprise": 1}, "surprise"),
    ({"backup_instance": {"id": "/subscriptions/x/not-an-arm-id"},
      "target": {"kind": "files", "container_url": sc.CONTAINER_WE_URL, "file_prefix": "p"}}, "backup_instance.id"),
    (sc.as_database("1starts_with_digit"), "target.database_name"),
    (sc.as_database("ok_name", rehydration={"retention_days": 45}), "rehydration.retention_days"),
])
def test_bad_requests_get_400_naming_the_field_and_start_nothing(local_stack, api, body, field):
    _, before, _ = api.get("/restores?limit=200&since=" + (sc.days_ago(0) - timedelta(minutes=30)).isoformat()
                           .replace("+00:00", "Z"))
    status, resp, _ = api.post("/restores", body)
    assert status == 400, resp
    assert resp["error"]["field"] == field and resp["error"]["fix"], resp
    _, after, _ = api.get("/restores?limit=200&since=" + (sc.days_ago(0) - timedelta(minutes=30)).isoformat()
                          .replace("+00:00", "Z"))
    assert len(after["items"]) == len(before["items"])


def test_oversize_body_is_refused_with_413(local_stack, api):
    status, resp, _ = api.post("/restores", b"{" + b" " * 20000 + b"}")
    assert status == 413 and resp["error"]["code"] == "RequestTooLarge"


def test_malformed_queue_input_leaves_a_rejected_record(local_stack, api):
    marker = uuid.uuid4().hex
    queue(local_stack.env, "restore-requests").send_message('{"not json": ' + marker)
    queue(local_stack.env, "restore-requests").send_message(json.dumps({"backup_instance": {"id": sc.BI_SALES},
                                                                        "target": {"kind": "files"}}))
    import time

    for _ in range(60):
        _, page, _ = api.get("/restores?status=rejected&limit=200")
        queue_rejections = [i for i in page["items"] if i["source"] == "queue"]
        codes = {i["error"]["message"].split(":")[0] for i in queue_rejections}
        if any("not valid JSON" in i["error"]["message"] for i in queue_rejections) and \
                any("target.container_url" in i["error"]["message"] or "missing field" in i["error"]["message"]
                    for i in queue_rejections):
            return
        time.sleep(0.3)
    raise AssertionError(f"queue rejections not recorded: {codes}")
