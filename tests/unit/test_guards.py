"""Issue 14: guards (protected servers, allow-list, beside-source role, one restore per destination, alert plan
cooldown and cap), the preview, and inputs that could mislead or leak — on in-memory twins."""

from __future__ import annotations

import json
from typing import Any

import pytest

from restore_core import alert_plans, guards, intake, locks, pipeline, preview
from restore_core.api import cancel, create
from restore_core.backup import BackupInstanceInfo
from restore_core.errors import RequestError
from restore_core.fixes import _PLAIN, explain
from restore_core.models import Stage, Status, parse_request
from restore_core.restore_requests import SINGLE_SERVER_DB
from restore_core.store import MemoryStateStore
from tests.unit.fakes import (
    BI_ID,
    SOURCE_SERVER_ID,
    SUB,
    TARGET_SERVER_ID,
    Harness,
    database_body,
    files_body,
    settings,
)

OTHER_VAULT = f"/subscriptions/{SUB}/resourceGroups/rg-backup/providers/Microsoft.DataProtection/backupVaults/bv-hr"
HR_SERVER = f"/subscriptions/{SUB}/resourceGroups/rg-data/providers/Microsoft.DBforPostgreSQL/servers/pghr01"


def _harness(**env: str) -> Harness:
    return Harness(settings=settings(**env))


def _db_target(**target: Any) -> dict[str, Any]:
    body = database_body()
    body["target"] = {**body["target"], **target}
    return body


def _complete(h: Harness) -> None:
    """Pump until the Azure jobs run, end them Completed, pump to the end."""
    h.run(until=Stage.MONITOR)
    for name, job in list(h.dp.jobs.items()):
        if not job.terminal:
            h.dp.finish_job(name, "Completed")
    h.run()


def _rejected(h: Harness, body: dict[str, Any]) -> Any:
    h.submit(body)
    rec = h.run()
    assert rec.status == Status.REJECTED, rec
    return rec


# ------------------------------------------------------------------------------------------ item 4: inputs
@pytest.mark.parametrize("uri", [
    "https://kv-restore-we.vault.azure.net/secrets/pgsrv-restore-conn",  # the local stack's form
    "https://kv-restore-we.vault.azure.net/secrets/pgsrv-restore-conn/0123456789abcdef0123456789abcdef",
    "https://kv-cn.vault.azure.cn/secrets/conn",
    "https://kv-gov.vault.usgovcloudapi.net/secrets/conn",
])
def test_key_vault_secret_uris_of_azure_clouds_pass(uri: str) -> None:
    parse_request(_db_target(secret_uri=uri))


@pytest.mark.parametrize("uri", [
    "https://kv-restore.vault.azure.net:8443/secrets/conn",  # a port
    "https://kv-restore.vault.evil.example/secrets/conn",  # not a Key Vault host of an Azure cloud
    "https://kv-restore.vault.azure.net.evil.example/secrets/conn",
    "https://user:pw@kv-restore.vault.azure.net/secrets/conn",
    "http://kv-restore.vault.azure.net/secrets/conn",
])
def test_other_secret_uris_are_refused(uri: str) -> None:
    with pytest.raises(RequestError) as exc:
        parse_request(_db_target(secret_uri=uri))
    assert exc.value.field == "target.secret_uri"
    assert "pw" not in exc.value.message


def _files(url: str) -> dict[str, Any]:
    body = files_body()
    body["target"] = {**body["target"], "container_url": url}
    body["target"].pop("container_id")
    return body


@pytest.mark.parametrize(("url", "secret"), [
    ("https://admin:S3cretPa55@stpgrestore01.blob.core.windows.net/pg-restores", "S3cretPa55"),
    ("https://sv=2024&sig=abcDEF123@stpgrestore01.blob.core.windows.net/pg-restores", "abcDEF123"),
])
def test_container_url_with_user_info_is_refused_without_echoing_it(url: str, secret: str) -> None:
    with pytest.raises(RequestError) as exc:
        parse_request(_files(url))
    text = json.dumps(exc.value.to_dict())
    assert exc.value.field == "target.container_url"
    assert "user info" in exc.value.message
    assert secret not in text and "admin" not in text


def test_container_url_with_user_info_through_the_http_door_stores_nothing() -> None:
    h = _harness()
    resp = create(json.dumps(_files("https://a:TopSecret@stpgrestore01.blob.core.windows.net/c1")).encode(),
                  headers={}, base_url="http://x/api", deps=h.deps)
    assert resp.status == 400 and "TopSecret" not in resp.json()
    assert h.store.writes == 0 and not h.queues.take()


@pytest.mark.parametrize("url", [
    "https://stpgrestore01.blob.core.windows.net:443/pg-restores",
    "https://stpgrestore01.blob.core.windows.net:/pg-restores",
])
def test_container_url_with_a_port_is_refused(url: str) -> None:
    with pytest.raises(RequestError, match="port"):
        parse_request(_files(url))


@pytest.mark.parametrize("url", ["https://evil.example.com/pg-restores", "https://stpg.blob.evil.example/c1"])
def test_container_url_outside_the_blob_endpoints_is_refused_at_intake(url: str) -> None:
    h = _harness()
    with pytest.raises(RequestError) as exc:
        h.submit(_files(url))
    assert exc.value.field == "target.container_url"
    assert h.store.writes == 0


@pytest.mark.parametrize("url", ["https://stpgrestore01.blob.core.windows.net/pg-restores",
                                 "https://stcn.blob.core.chinacloudapi.cn/c1",
                                 "https://stgov.blob.core.usgovcloudapi.net/c1"])
def test_container_urls_of_azure_clouds_pass_the_intake(url: str) -> None:
    h = _harness()
    assert h.submit(_files(url)).status == Status.ACCEPTED


def test_a_configured_blob_suffix_admits_another_host() -> None:
    h = _harness(RESTORE_BLOB_HOST_SUFFIXES="blob.core.windows.net,blob.local.test")
    assert h.submit(_files("https://stpg.blob.local.test/c1")).status == Status.ACCEPTED


@pytest.mark.parametrize("server", [
    f"/subscriptions/{SUB}/resourceGroups/../providers/Microsoft.DBforPostgreSQL/servers/pgsrv01",
    f"/subscriptions/{SUB}/resourceGroups/./providers/Microsoft.DBforPostgreSQL/servers/pgsrv01",
    f"/subscriptions/{SUB}/resourceGroups/rg-data./providers/Microsoft.DBforPostgreSQL/servers/pgsrv01",
    f"/subscriptions/{SUB}/resourceGroups/rg<x>/providers/Microsoft.DBforPostgreSQL/servers/pgsrv01",
])
def test_arm_ids_with_dot_segments_or_forbidden_characters_are_refused(server: str) -> None:
    with pytest.raises(RequestError) as exc:
        parse_request(_db_target(server_id=server))
    assert exc.value.field == "target.server_id"


@pytest.mark.parametrize("bi", [BI_ID.rsplit("/", 1)[0] + "/..", BI_ID.rsplit("/", 1)[0] + "/.",
                                BI_ID + "%2f..", BI_ID + "?x"])
def test_backup_instance_ids_with_dot_segments_or_forbidden_characters_are_refused(bi: str) -> None:
    with pytest.raises(RequestError):
        parse_request({**database_body(), "backup_instance": {"id": bi}})


def test_datasource_ids_with_dot_segments_are_refused() -> None:
    with pytest.raises(RequestError) as exc:
        parse_request({**database_body(), "backup_instance": {
            "vault_id": BI_ID.split("/backupInstances")[0], "datasource_id": SOURCE_SERVER_ID + "/databases/.."}})
    assert exc.value.field == "backup_instance.datasource_id"


# --------------------------------------------------------------------------- item 1: fixes never drop
def test_no_fix_suggests_dropping_anything() -> None:
    for code in _PLAIN:
        fix = explain(code, "m", request=None, principal_id=None).fix.lower()
        assert "drop" not in fix.replace("never dropped", ""), code


def test_the_name_clash_fix_says_choose_a_new_name() -> None:
    fix = explain("UserErrorDatabaseNameAlreadyInUse", "exists", request=None, principal_id=None).fix
    assert "new target.database_name" in fix and "drop" not in fix.lower()


def test_the_cancel_refusal_after_the_trigger_suggests_no_drop() -> None:
    h = _harness()
    rec = h.submit()
    h.run(until=Stage.MONITOR)
    body = cancel(rec.id, deps=h.deps).body
    assert "drop" not in body["error"]["fix"].lower()


# ------------------------------------------------------------------------------ item 1: protected servers
def test_a_database_on_the_backups_own_source_server_is_refused_without_beside_source() -> None:
    h = _harness()
    rec = _rejected(h, _db_target(server_id=SOURCE_SERVER_ID, database_name="salesdb_copy"))
    assert rec.error_code == "RestoreBesideSourceNotRequested"
    assert "beside_source" in (rec.error_fix or "") and "drop" not in (rec.error_fix or "").lower()
    assert h.dp.trigger_calls == 0 and not h.dp.validations


def test_beside_source_allows_a_new_name_on_the_source_server() -> None:
    h = _harness()
    h.submit(_db_target(server_id=SOURCE_SERVER_ID, database_name="salesdb_copy", beside_source=True))
    _complete(h)
    assert h.record().status == Status.SUCCEEDED


def test_beside_source_never_takes_the_source_databases_own_name() -> None:
    h = _harness()
    rec = _rejected(h, _db_target(server_id=SOURCE_SERVER_ID, database_name="salesdb", beside_source=True))
    assert rec.error_code == "RestoreToSourceNotAllowed"


def test_a_configured_protected_server_is_refused_at_intake() -> None:
    h = _harness(RESTORE_PROTECTED_SERVERS=TARGET_SERVER_ID)
    with pytest.raises(RequestError) as exc:
        h.submit()
    assert exc.value.code == "TargetServerProtected" and exc.value.status == 400
    assert h.store.writes == 0
    assert h.submit(_db_target(beside_source=True)).status == Status.ACCEPTED


def test_source_servers_of_a_protected_vault_are_refused_and_cached() -> None:
    h = _harness(RESTORE_PROTECTED_VAULTS=OTHER_VAULT)
    h.dp.instances.append(BackupInstanceInfo(f"{OTHER_VAULT}/backupInstances/pghr01-hrdb", "pghr01-hrdb", None,
                                             SINGLE_SERVER_DB, f"{HR_SERVER}/databases/hrdb", HR_SERVER,
                                             "ProtectionConfigured"))
    rec = _rejected(h, _db_target(server_id=HR_SERVER, database_name="salesdb_copy",
                                  secret_uri="https://kv-hr.vault.azure.net/secrets/conn"))
    assert rec.error_code == "TargetServerProtected" and "bv-hr" in (rec.error_message or "")
    calls = h.dp.calls["list_backup_instances"]
    h2 = Harness(settings=h.settings, store=h.store, clock=h.clock)  # another process: the meta row is the cache
    h2.dp.instances = h.dp.instances
    _rejected(h2, _db_target(server_id=HR_SERVER, database_name="salesdb_copy2",
                             secret_uri="https://kv-hr.vault.azure.net/secrets/conn"))
    assert h2.dp.calls["list_backup_instances"] == 0 and calls == 1
    beside = _db_target(server_id=HR_SERVER, database_name="hrdb", beside_source=True,
                        secret_uri="https://kv-hr.vault.azure.net/secrets/conn")
    assert _rejected(h2, beside).error_code == "RestoreToSourceNotAllowed"


def test_beside_source_needs_the_configured_role() -> None:
    h = _harness(RESTORE_BESIDE_SOURCE_ROLE="admin")
    body = parse_request(_db_target(server_id=SOURCE_SERVER_ID, database_name="salesdb_copy", beside_source=True))
    with pytest.raises(RequestError) as exc:
        intake.submit(body, source="http", deps=h.deps)  # a function-key caller carries no roles
    assert exc.value.code == "BesideSourceNotPermitted"
    admin = guards.Caller("alice@contoso", "principal", frozenset({"Admin"}))
    rec, created = intake.submit(body, source="http", deps=h.deps, caller=admin)
    assert created and rec.status == Status.ACCEPTED


# ------------------------------------------------------------------------------------ item 1: allow-list
def test_allow_list_refuses_other_targets_and_admits_matching_ones() -> None:
    h = _harness(RESTORE_ALLOWED_TARGETS=json.dumps(["*/resourcegroups/rg-target/*/servers/pgsrv-*",
                                                     "https://stpgrestore01.blob.core.windows.net/*"]))
    assert h.submit().status == Status.ACCEPTED
    assert h.submit(files_body()).status == Status.ACCEPTED
    with pytest.raises(RequestError) as exc:
        h.submit(_db_target(server_id=TARGET_SERVER_ID.replace("rg-target", "rg-prod")))
    assert exc.value.code == "TargetNotAllowed"
    with pytest.raises(RequestError):
        h.submit(_files("https://stother01.blob.core.windows.net/pg-restores"))


# ------------------------------------------------------------------------ item 1: one per destination
def test_identical_requests_without_a_key_run_once_and_name_the_first() -> None:
    h = _harness()
    first, second, third = (h.submit() for _ in range(3))
    for _ in range(3):  # every validate runs before any restore ends
        h.step()
    assert h.record(first.id).status == Status.RESTORING
    for other in (second, third):
        rec = h.record(other.id)
        assert rec.status == Status.REJECTED and rec.error_code == "DestinationBusy"
        assert first.id in (rec.error_message or "") and first.id in (rec.error_fix or "")
    _complete(h)
    assert h.record(first.id).status == Status.SUCCEEDED and h.dp.trigger_calls == 1
    assert h.store.get_meta_row(locks.KIND, locks.destinations(parse_request(database_body()))[0]) is None


def test_the_lock_is_released_at_the_end_and_the_next_restore_runs() -> None:
    h = _harness()
    first = h.submit()
    _complete(h)
    assert h.record(first.id).status == Status.SUCCEEDED
    second = h.submit()
    h.run(until=Stage.MONITOR)
    assert h.record(second.id).status == Status.RESTORING


def test_a_rejected_restore_releases_its_lock() -> None:
    h = _harness()
    from restore_core.errors import AzureRejection

    h.dp.fail_before["validate_restore"] = [AzureRejection("UserErrorMSIMissingPermissions", "no reader")]
    rec = _rejected(h, database_body())
    assert rec.locks  # taken before Azure's validate call ...
    assert h.store.get_meta_row(locks.KIND, rec.locks[0]) is None  # ... and given back at the end


def test_a_stale_lock_is_taken_over() -> None:
    h = _harness()
    key = locks.destinations(parse_request(database_body()))[0]
    h.store.insert_meta(locks.KIND, key, {"restore_id": "20261124T080000-0000000000", "destination": key})
    rec = h.submit()
    h.run(until=Stage.MONITOR)
    assert h.record(rec.id).status == Status.RESTORING
    row = h.store.get_meta_row(locks.KIND, key)
    assert row is not None and row[0]["restore_id"] == rec.id


def test_files_destinations_differ_by_prefix_and_server_targets_lock_each_name() -> None:
    a = parse_request(files_body())
    b = parse_request({**files_body(), "target": {**files_body()["target"], "file_prefix": "other"}})
    assert locks.destinations(a) != locks.destinations(b)
    server = parse_request({"backup_instance": {"id": BI_ID}, "target": {
        "kind": "server", "server_id": TARGET_SERVER_ID.replace("servers/", "flexibleServers/")}})
    assert len(locks.destinations(server, ["a_restored", "b_restored"])) == 2
    assert locks.destinations(server, [], names_final=False)[0].startswith("server:")


def test_take_is_all_or_nothing() -> None:
    h = _harness()
    first = h.submit()
    held = locks.take(h.deps, first.id, ["db:c"])
    assert held is None
    busy = locks.take(h.deps, "20261124T080000-aaaaaaaaaa", ["db:d", "db:c"])
    assert busy == ("db:c", first.id)
    assert h.store.get_meta_row(locks.KIND, "db:d") is None


# --------------------------------------------------------------------- item 1: alert plan cooldown/cap
def _alert(guid: str) -> str:
    return json.dumps({"schemaId": "azureMonitorCommonAlertSchema", "data": {"essentials": {
        "alertId": f"/subscriptions/{SUB}/providers/Microsoft.AlertsManagement/alerts/{guid}",
        "alertRule": "corruption", "monitorCondition": "Fired", "alertTargetIDs": [SOURCE_SERVER_ID.lower()],
        "firedDateTime": "2026-11-24T07:59:00Z"}}})


def _plans(**limits: Any) -> str:
    return json.dumps({SOURCE_SERVER_ID: {"backup_instance": {"id": BI_ID}, "target": {
        "kind": "database", "server_id": TARGET_SERVER_ID, "secret_uri": "https://kv-r.vault.azure.net/secrets/c",
        "database_name": "salesdb_alert_{alert_short}"}, **limits}})


def test_an_alert_storm_starts_one_restore_and_deduplicates_the_others() -> None:
    h = _harness(RESTORE_PLANS=_plans(cooldown_minutes=30))
    recs = [intake.from_queue(_alert(f"0000000{i}-aaaa-4bbb-8ccc-000000000000"), message_id=f"m{i}", deps=h.deps)
            for i in range(5)]
    started = [r for r in recs if r.status == Status.ACCEPTED]
    deduped = [r for r in recs if r.status == Status.REJECTED]
    assert len(started) == 1 and len(deduped) == 4
    assert all(r.error_code == "AlertDeduplicated" and started[0].id in (r.error_message or "") for r in deduped)
    assert all("drop" not in (r.error_fix or "").lower() for r in deduped)
    assert all(r.request["target"]["database_name"].startswith("salesdb_alert_") for r in deduped)
    # the action group retries an alert: the same record each time, nothing new
    again = [intake.from_queue(_alert(f"0000000{i}-aaaa-4bbb-8ccc-000000000000"), message_id=f"r{i}",
                               deps=h.deps) for i in range(5)]
    assert [r.id for r in again] == [r.id for r in recs]
    h.clock.advance(31 * 60)
    later = intake.from_queue(_alert("00000009-aaaa-4bbb-8ccc-000000000000"), message_id="m9", deps=h.deps)
    assert later.status == Status.ACCEPTED


def test_max_active_caps_concurrent_alert_restores() -> None:
    h = _harness(RESTORE_PLANS=_plans(max_active=2))
    recs = [intake.from_queue(_alert(f"0000000{i}-aaaa-4bbb-8ccc-000000000000"), message_id=f"m{i}", deps=h.deps)
            for i in range(3)]
    assert [r.status for r in recs] == [Status.ACCEPTED, Status.ACCEPTED, Status.REJECTED]
    assert recs[2].error_code == "AlertDeduplicated"
    h.collect()
    _complete(h)
    assert all(h.record(r.id).status == Status.SUCCEEDED for r in recs[:2])
    assert intake.from_queue(_alert("00000008-aaaa-4bbb-8ccc-000000000000"), message_id="m8",
                             deps=h.deps).status == Status.ACCEPTED


def test_a_plan_without_limits_starts_one_restore_per_alert() -> None:
    h = _harness(RESTORE_PLANS=_plans())
    recs = [intake.from_queue(_alert(f"0000000{i}-aaaa-4bbb-8ccc-000000000000"), message_id=f"m{i}", deps=h.deps)
            for i in range(3)]
    assert all(r.status == Status.ACCEPTED for r in recs)


@pytest.mark.parametrize("limits", [{"cooldown_minutes": -1}, {"max_active": 0}, {"max_active": "2"}])
def test_nonsense_plan_limits_are_refused_with_a_record(limits: dict[str, Any]) -> None:
    h = _harness(RESTORE_PLANS=_plans(**limits))
    rec = intake.from_queue(_alert("00000001-aaaa-4bbb-8ccc-000000000000"), message_id="m1", deps=h.deps)
    assert rec.status == Status.REJECTED and rec.error_code == "InvalidRestorePlan"


def test_a_reserved_alert_restore_whose_row_is_missing_counts_until_the_grace_ends() -> None:
    h = _harness()
    plan = json.loads(_plans(max_active=1))[SOURCE_SERVER_ID]
    rid = alert_plans.admit(h.deps, SOURCE_SERVER_ID, plan, "alert:a")
    assert rid is not None
    with pytest.raises(RequestError):
        alert_plans.admit(h.deps, SOURCE_SERVER_ID, plan, "alert:b")
    h.clock.advance(alert_plans.PENDING_GRACE.total_seconds() + 1)
    assert alert_plans.admit(h.deps, SOURCE_SERVER_ID, plan, "alert:b") not in (None, rid)


# ------------------------------------------------------------------------------------------- item 2: preview
def _nothing_written(h: Harness, writes_before: int) -> None:
    assert h.store.writes == writes_before, "a restore row was written"
    assert not h.queues.take(), "a message was sent"
    assert not h.store.list_meta(locks.KIND), "a lock was taken"


def test_preview_answers_the_plan_and_creates_nothing() -> None:
    h = _harness()
    status, body, _ = preview.handle(json.dumps(database_body(recovery_point={"latest_before": "2026-11-24T07:00:00Z"}))
                                     .encode(), caller=guards.FUNCTION_KEY, deps=h.deps)
    assert status == 200 and body["would_start"] is True, body
    assert body["recovery_point"]["tier"] == "vault" and body["recovery_point"]["state"] == "Completed"
    assert body["data_loss"]["seconds"] == 5 * 3600 and body["data_loss"]["to_what"] == "latest_before"
    assert body["rehydration"]["needed"] is False
    req = body["azure_request"]
    assert req["method"] == "POST" and req["path"].startswith(BI_ID + "/restore?api-version=")
    assert req["body"]["objectType"] == "AzureBackupRecoveryPointBasedRestoreRequest"
    assert req["body"]["restoreTargetInfo"]["recoveryOption"] == "FailIfExists"
    assert "Azure validate" in body["guards_passed"]
    assert len(h.dp.validations) == 1 and h.dp.trigger_calls == 0
    _nothing_written(h, 0)


def test_preview_of_an_archived_point_names_the_rehydration_window() -> None:
    h = _harness()
    rp = h.dp.add_archive_point().id
    status, body, _ = preview.handle(json.dumps(database_body(recovery_point={"id": rp})).encode(),
                                     caller=guards.FUNCTION_KEY, deps=h.deps)
    assert status == 200 and body["rehydration"] == {"needed": True, "priority": "Standard", "retention_days": 15,
                                                     "expected_window": "up to 15 hours"}
    assert body["azure_request"]["body"]["objectType"] == "AzureBackupRestoreWithRehydrationRequest"


def test_preview_answers_no_with_the_code_and_fix_and_creates_nothing() -> None:
    h = _harness()
    status, body, _ = preview.handle(json.dumps(_db_target(server_id=SOURCE_SERVER_ID, database_name="salesdb_copy"))
                                     .encode(), caller=guards.FUNCTION_KEY, deps=h.deps)
    assert status == 200 and body["would_start"] is False
    assert body["error"]["code"] == "RestoreBesideSourceNotRequested" and "beside_source" in body["error"]["fix"]
    assert not h.dp.validations
    _nothing_written(h, 0)


def test_preview_reports_a_busy_destination_with_the_holder() -> None:
    h = _harness()
    first = h.submit()
    h.step()  # validate: the lock is taken
    writes = h.store.writes
    h.queues.take()
    h.pending.clear()
    status, body, _ = preview.handle(json.dumps(database_body()).encode(), caller=guards.FUNCTION_KEY, deps=h.deps)
    assert body["would_start"] is False and body["error"]["code"] == "DestinationBusy"
    assert first.id in body["error"]["message"]
    assert h.store.writes == writes


def test_preview_refuses_malformed_input_with_400_and_counts_it_not() -> None:
    h = _harness(RESTORE_PREVIEW_PER_MINUTE="1")
    status, body, _ = preview.handle(b"{}", caller=guards.FUNCTION_KEY, deps=h.deps)
    assert status == 400 and body["error"]["code"] == "InvalidRequest"
    status, _, _ = preview.handle(json.dumps(database_body()).encode(), caller=guards.FUNCTION_KEY, deps=h.deps)
    assert status == 200


def test_preview_budget_per_caller_answers_429_with_retry_after() -> None:
    h = _harness(RESTORE_PREVIEW_PER_MINUTE="2")
    body = json.dumps(database_body()).encode()
    assert [preview.handle(body, caller=guards.FUNCTION_KEY, deps=h.deps)[0] for _ in range(3)] == [200, 200, 429]
    status, err, headers = preview.handle(body, caller=guards.FUNCTION_KEY, deps=h.deps)
    assert status == 429 and err["error"]["code"] == "PreviewBudgetExceeded" and int(headers["Retry-After"]) >= 1
    other = guards.Caller("bob", "principal")
    assert preview.handle(body, caller=other, deps=h.deps)[0] == 200
    h.clock.advance(60)
    assert preview.handle(body, caller=guards.FUNCTION_KEY, deps=h.deps)[0] == 200
    assert h.dp.calls["validate_restore"] == 4


def test_preview_includes_no_secret_and_names_the_secret_by_uri_only() -> None:
    h = _harness()
    _, body, _ = preview.handle(json.dumps(database_body()).encode(), caller=guards.FUNCTION_KEY, deps=h.deps)
    creds = body["azure_request"]["body"]["restoreTargetInfo"]["datasourceAuthCredentials"]
    assert creds["secretStoreResource"]["uri"].startswith("https://kv-restore.vault.azure.net/secrets/")
    assert set(creds["secretStoreResource"]) == {"uri", "secretStoreType"}


# ------------------------------------------------------------------------------------- the store primitives
def test_conditional_meta_rows() -> None:
    store = MemoryStateStore()
    assert store.insert_meta("k", "a", {"v": 1}) and not store.insert_meta("k", "a", {"v": 2})
    row = store.get_meta_row("k", "a")
    assert row is not None and row[0] == {"v": 1}
    assert store.replace_meta("k", "a", {"v": 3}, row[1]) and not store.replace_meta("k", "a", {"v": 4}, row[1])
    newer = store.get_meta_row("k", "a")
    assert newer is not None and not store.delete_meta_if("k", "a", row[1])
    assert store.delete_meta_if("k", "a", newer[1]) and store.get_meta_row("k", "a") is None


def test_finish_releases_only_what_the_restore_holds() -> None:
    h = _harness()
    rec = h.submit()
    h.store.insert_meta(locks.KIND, "db:x", {"restore_id": "someone-else"})
    pipeline.finish(h.deps, rec.copy(locks=["db:x"], status=Status.CANCELLED))
    assert h.store.get_meta_row(locks.KIND, "db:x") is not None


# ------------------------------------------------------------------------------------------------- settings
def test_guard_settings_parse_lists_and_refuse_bad_ids() -> None:
    from restore_core.config import SettingsError

    s = settings(RESTORE_PROTECTED_VAULTS=json.dumps([OTHER_VAULT]), RESTORE_PROTECTED_SERVERS=f"{HR_SERVER}, "
                 f"{TARGET_SERVER_ID}", RESTORE_PREVIEW_PER_MINUTE="3").guards
    assert s.protected_vaults == (OTHER_VAULT,) and s.protected_servers == (HR_SERVER, TARGET_SERVER_ID)
    assert s.preview_per_minute == 3 and "blob.core.windows.net" in s.blob_host_suffixes
    with pytest.raises(SettingsError, match="RESTORE_PROTECTED_VAULTS"):
        settings(RESTORE_PROTECTED_VAULTS="/subscriptions/x/not-a-vault")
    with pytest.raises(SettingsError, match="RESTORE_PROTECTED_SERVERS"):
        settings(RESTORE_PROTECTED_SERVERS=HR_SERVER.replace("rg-data", ".."))
    with pytest.raises(SettingsError):
        settings(RESTORE_PREVIEW_PER_MINUTE="0")


def test_the_http_caller_is_the_function_key_until_entra_callers_exist() -> None:
    caller = guards.caller_from_http({"x-functions-key": "secret-key", "X-MS-CLIENT-PRINCIPAL-NAME": "mallory"})
    assert caller == guards.FUNCTION_KEY and caller.roles is None and "secret" not in caller.id
