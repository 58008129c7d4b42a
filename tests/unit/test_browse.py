"""Browse before restoring (restore_core/browse.py): instances, recovery points newest first with their restore
requests, the ARM budget (brief cache, bounded reads) and the RecoveryPointNotFound note."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest

from restore_core import browse
from restore_core.backup import BackupInstanceInfo, RecoveryPointInfo
from restore_core.errors import AzureRejection, RetryableError
from restore_core.models import Status, Tier, parse_request
from restore_core.restore_requests import FLEXIBLE_SERVER

from .fakes import (
    BI_ID,
    BI_NAME,
    SECRET_URI,
    SOURCE_SERVER_ID,
    SUB,
    T0,
    TARGET_SERVER_ID,
    VAULT_ID,
    VAULT_POINT,
    Harness,
    database_body,
    settings,
)

BASE = "http://host/api"
FLEX_ID = f"/subscriptions/{SUB}/resourceGroups/rg-data/providers/Microsoft.DBforPostgreSQL/flexibleServers/pgflex01"


@pytest.fixture
def h() -> Harness:
    return Harness(settings=settings(RESTORE_VAULTS=VAULT_ID))


def add_points(h: Harness, n: int) -> list[str]:
    ids = []
    for i in range(n):
        rp_id = f"p{i:03d}"
        h.dp.points[rp_id] = RecoveryPointInfo(rp_id, T0 - timedelta(days=n - i), Tier.VAULT, state="Completed")
        ids.append(rp_id)
    return ids


def fill(request: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(request)
    body["target"].update({"server_id": TARGET_SERVER_ID, "database_name": "salesdb_copy", "secret_uri": SECRET_URI})
    return body


def test_instances_of_the_configured_vaults_carry_a_ready_restore_request(h: Harness) -> None:
    resp = browse.list_instances({}, base_url=BASE, deps=h.deps)
    assert resp.status == 200 and resp.body["vaults"] == [VAULT_ID]
    [item] = resp.body["items"]
    assert item["id"] == BI_ID and item["datasource"]["name"] == "pgsrv01/salesdb"
    assert item["datasource"]["kind"] == "database" and item["restorable"] is True
    assert item["recovery_points_url"] == f"{BASE}/backup-instances/{BI_NAME}/recovery-points?vault={VAULT_ID}"
    assert item["fill_in"] == ["target.server_id", "target.database_name", "target.secret_uri"]
    req = parse_request(fill(item["restore_request"]))  # the placeholders filled in: a valid request
    assert req.backup_instance.id == BI_ID and req.recovery_point.id is None


def test_no_configured_vault_and_no_vault_parameter_is_a_400_naming_the_fix(h: Harness) -> None:
    h.deps.settings = settings()
    resp = browse.list_instances({}, base_url=BASE, deps=h.deps)
    assert resp.status == 400 and resp.body["error"]["field"] == "vault"
    assert "RESTORE_VAULTS" in resp.body["error"]["fix"]
    assert browse.list_instances({"vault": VAULT_ID}, base_url=BASE, deps=h.deps).status == 200


def test_instances_protecting_a_server_use_the_extension_routing_list(h: Harness) -> None:
    resp = browse.list_instances({"datasource": SOURCE_SERVER_ID}, base_url=BASE, deps=h.deps)
    assert [i["id"] for i in resp.body["items"]] == [BI_ID] and resp.body["vaults"] == [VAULT_ID]
    assert h.dp.calls["list_protecting_instances"] == 1 and h.dp.calls["list_backup_instances"] == 0
    other = SOURCE_SERVER_ID.replace("pgsrv01", "pgsrv02")
    assert browse.list_instances({"datasource": other}, base_url=BASE, deps=h.deps).body["items"] == []


def test_a_flexible_server_instance_restores_as_files(h: Harness) -> None:
    h.dp.instances.append(BackupInstanceInfo(f"{VAULT_ID}/backupInstances/pgflex01-x", "pgflex01-x", "pgflex01",
                                             FLEXIBLE_SERVER, FLEX_ID, FLEX_ID, "ProtectionConfigured"))
    items = browse.list_instances({}, base_url=BASE, deps=h.deps).body["items"]
    flex = next(i for i in items if i["name"] == "pgflex01-x")
    assert flex["restore_request"]["target"]["kind"] == "files" and flex["datasource"]["kind"] == "server"


@pytest.mark.parametrize(("params", "field", "hint"), [
    ({"vualt": VAULT_ID}, "vualt", "`vault`"),
    ({"datasource": "not-an-id"}, "datasource", "/subscriptions/"),
])
def test_bad_instance_queries_are_400_with_the_nearest_field(h: Harness, params: dict[str, str], field: str,
                                                             hint: str) -> None:
    resp = browse.list_instances(params, base_url=BASE, deps=h.deps)
    assert resp.status == 400 and resp.body["error"]["field"] == field and hint in resp.body["error"]["fix"]
    assert h.dp.calls["list_backup_instances"] == 0


def test_points_are_newest_first_paged_and_each_restores_exactly_that_point(h: Harness) -> None:
    ids = add_points(h, 5)
    seen: list[dict[str, Any]] = []
    params: dict[str, str] = {"limit": "2"}
    for _ in range(5):
        resp = browse.list_points(BI_NAME, params, deps=h.deps)
        assert resp.status == 200, resp.body
        seen += resp.body["items"]
        if not resp.body["continuation"]:
            break
        params = {"limit": "2", "continuation": resp.body["continuation"]}
    assert [p["id"] for p in seen] == [VAULT_POINT, *reversed(ids)]  # VAULT_POINT (T0-6h) is the newest
    assert [p["time"] for p in seen] == sorted((p["time"] for p in seen), reverse=True)
    assert all(p["restore_request"]["recovery_point"] == {"id": p["id"]} for p in seen)
    assert parse_request(fill(seen[0]["restore_request"])).recovery_point.id == VAULT_POINT
    assert h.dp.calls["browse_recovery_points"] == 1, "paging is served from the brief cache"


def test_the_cache_expires_so_new_points_show_up(h: Harness) -> None:
    browse.list_points(BI_NAME, {}, deps=h.deps)
    add_points(h, 1)
    assert len(browse.list_points(BI_NAME, {}, deps=h.deps).body["items"]) == 1
    h.clock.advance(browse.CACHE_SECONDS + 1)
    assert len(browse.list_points(BI_NAME, {}, deps=h.deps).body["items"]) == 2
    assert h.dp.calls["browse_recovery_points"] == 2


def test_a_time_window_and_a_bounded_read(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    add_points(h, 10)
    since, until = (T0 - timedelta(days=6)).isoformat(), (T0 - timedelta(days=3)).isoformat()
    resp = browse.list_points(BI_NAME, {"since": since, "until": until}, deps=h.deps)
    assert [p["id"] for p in resp.body["items"]] == ["p007", "p006", "p005", "p004"]
    assert resp.body["complete"] is True
    monkeypatch.setattr(browse, "MAX_POINTS", 3)
    resp = browse.list_points(BI_NAME, {"since": (T0 - timedelta(days=30)).isoformat()}, deps=h.deps)
    assert len(resp.body["items"]) == 3 and resp.body["complete"] is False and "narrow" in resp.body["note"]


def test_archived_points_show_rehydration_and_the_request_carries_it(h: Harness) -> None:
    archived = h.dp.add_archive_point()
    rehydrated = RecoveryPointInfo("rehydrated1", T0 - timedelta(days=200), Tier.ARCHIVE, "COMPLETED",
                                   T0 + timedelta(days=10))
    h.dp.points[rehydrated.id] = rehydrated
    items = {p["id"]: p for p in browse.list_points(BI_NAME, {}, deps=h.deps).body["items"]}
    assert items[archived.id]["tier"] == "archive" and items[archived.id]["rehydration"] is None
    assert items[archived.id]["restore_request"]["rehydration"] == {"priority": "Standard", "retention_days": 15}
    assert items[rehydrated.id]["rehydration"]["status"] == "COMPLETED"
    assert items[rehydrated.id]["rehydration"]["expiry"] == "2026-12-04T08:00:00Z"
    assert "rehydration" not in items[rehydrated.id]["restore_request"]


def test_secondary_region_lists_the_paired_regions_points(h: Harness) -> None:
    h.dp.add_archive_point()
    resp = browse.list_points(BI_NAME, {"region": "secondary"}, deps=h.deps)
    assert resp.status == 200 and resp.body["location"] == "northeurope"
    assert [p["tier"] for p in resp.body["items"]] == ["vault"]
    assert resp.body["items"][0]["restore_request"]["region"] == "secondary"


def test_secondary_region_of_a_vault_without_crr_is_a_400(h: Harness) -> None:
    from dataclasses import replace

    h.dp.vault = replace(h.dp.vault, crr_enabled=False)
    resp = browse.list_points(BI_NAME, {"region": "secondary"}, deps=h.deps)
    assert resp.status == 400 and resp.body["error"]["field"] == "region"


@pytest.mark.parametrize(("name", "params", "status", "field"), [
    ("nosuch", {}, 404, "instance"),
    ("a/b", {}, 400, "instance"),
    (BI_NAME, {"since": "yesterday"}, 400, "since"),
    (BI_NAME, {"until": "2026-01-01T00:00:00Z", "since": "2026-02-01T00:00:00Z"}, 400, "until"),
    (BI_NAME, {"limit": "0"}, 400, "limit"),
    (BI_NAME, {"region": "west"}, 400, "region"),
    (BI_NAME, {"continuation": "!!"}, 400, "continuation"),
    (BI_NAME, {"sinse": "2026-01-01T00:00:00Z"}, 400, "sinse"),
])
def test_bad_point_queries_name_the_parameter(h: Harness, name: str, params: dict[str, str], status: int,
                                              field: str) -> None:
    resp = browse.list_points(name, params, deps=h.deps)
    assert resp.status == status and resp.body["error"]["field"] == field and resp.body["error"]["fix"]


def test_arm_throttling_is_a_503_with_retry_after_and_azure_404_keeps_its_code(h: Harness) -> None:
    h.dp.fail_before["browse_recovery_points"] = [RetryableError("throttled", retry_after=7, throttled=True)]
    resp = browse.list_points(BI_NAME, {}, deps=h.deps)
    assert resp.status == 503 and resp.headers["Retry-After"] == "7"
    h.dp.fail_before["get_backup_instance"] = [AzureRejection("ResourceNotFound", "no such instance", status=404)]
    resp = browse.list_points("other-instance", {"vault": VAULT_ID}, deps=h.deps)
    assert resp.status == 404 and resp.body["error"]["code"] == "ResourceNotFound"


def test_recovery_point_not_found_names_the_oldest_and_newest_points(h: Harness) -> None:
    add_points(h, 3)
    h.submit(database_body(recovery_point={"id": "nope"}))
    rec = h.run()
    assert rec.status is Status.REJECTED and rec.error_code == "RecoveryPointNotFound"
    assert "the oldest p000 of 2026-11-21T08:00:00Z" in (rec.error_message or "")
    assert f"the newest {VAULT_POINT} of 2026-11-24T02:00:00Z" in (rec.error_message or "")
    assert f"restorectl points {BI_NAME}" in (rec.error_fix or "")


def test_latest_before_a_time_older_than_every_point_names_the_oldest(h: Harness) -> None:
    h.submit(database_body(recovery_point={"latest_before": "2020-01-01T00:00:00Z"}))
    rec = h.run()
    assert rec.error_code == "RecoveryPointNotFound" and f"the oldest {VAULT_POINT}" in (rec.error_message or "")


def test_restore_vaults_setting_takes_commas_or_the_bicep_json_array_and_refuses_other_ids() -> None:
    from restore_core.config import SettingsError

    other = VAULT_ID.replace("bv-prod", "bv-lrs")
    assert settings(RESTORE_VAULTS=f"{VAULT_ID}, {other}").vaults == (VAULT_ID, other)
    assert settings(RESTORE_VAULTS=f'["{VAULT_ID}","{other}"]').vaults == (VAULT_ID, other)
    assert settings().vaults == ()
    with pytest.raises(SettingsError, match="RESTORE_VAULTS"):
        settings(RESTORE_VAULTS=BI_ID)
