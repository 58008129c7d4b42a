"""What a restore is, everywhere (restore_core/views.py) and the list newest first with filters and paging
(restore_core/listing.py)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from restore_core import api, intake, listing
from restore_core.models import Stage, Status

from .fakes import BI_ID, SOURCE_DB_ID, Harness, database_body, files_body


@pytest.fixture
def h() -> Harness:
    return Harness()


def post(h: Harness, body: dict[str, Any], key: str | None = None) -> api.ApiResponse:
    headers = {"Idempotency-Key": key} if key else {}
    return api.create(json.dumps(body).encode(), headers=headers, base_url="http://x/api", deps=h.deps)


def ids(resp: api.ApiResponse) -> list[str]:
    assert resp.status == 200, resp.body
    return [i["id"] for i in resp.body["items"]]


def test_an_item_names_source_target_point_time_who_started_it_and_the_reason(h: Harness) -> None:
    h.submit(database_body(recovery_point={"id": "nope"}), idempotency_key="ticket-42")
    rec = h.run()
    item = api.get(rec.id, deps=h.deps).body
    assert item["source_resource"] == {"id": SOURCE_DB_ID, "name": "pgsrv01/salesdb", "kind": "database",
                                       "backup_instance": BI_ID.rsplit("/", 1)[-1]}
    assert item["target_name"] == "pgsrv-restore/salesdb_restored"
    assert item["started_by"] == {"door": "http", "idempotency_key": "ticket-42"}
    assert item["reason"]["code"] == "RecoveryPointNotFound" and item["reason"]["fix"]
    listed = api.list_restores({}, deps=h.deps).body["items"][0]
    assert {k: listed[k] for k in ("source_resource", "target_name", "started_by", "reason")} == \
        {k: item[k] for k in ("source_resource", "target_name", "started_by", "reason")}


def test_a_succeeded_restore_shows_its_point_time_and_no_reason(h: Harness) -> None:
    h.submit()
    h.run(until=Stage.MONITOR)
    h.dp.finish_job(h.dp.only_job().name, "Completed")
    rec = h.run()
    item = api.get(rec.id, deps=h.deps).body
    assert rec.status is Status.SUCCEEDED and item["reason"] is None
    assert item["point_time"] == "2026-11-24T02:00:00Z" and item["region"] == "primary"


def test_alerts_name_their_alert_id(h: Harness) -> None:
    from restore_core.views import started_by

    rec = h.submit()
    assert started_by(rec.copy(source="alert", idempotency_key="alert:abc")) == {"door": "alert", "alert_id": "abc"}
    assert started_by(rec.copy(source="queue", idempotency_key="msg:m-1")) == {"door": "queue", "message_id": "m-1"}


def test_newest_first_across_days_and_pages_never_repeat_or_skip(h: Harness) -> None:
    made = []
    for i in range(7):
        made.append(post(h, database_body(), key=f"k{i}").body["id"])
        h.clock.advance(timedelta(hours=5).total_seconds())  # crosses slices and a day
    seen: list[str] = []
    params = {"limit": "3", "since": "2026-11-23T00:00:00Z", "until": "2026-11-26T00:00:00Z"}
    while True:
        resp = api.list_restores(params, deps=h.deps)
        seen += ids(resp)
        if not resp.body["continuation"]:
            break
        params = {**params, "continuation": resp.body["continuation"]}
    assert seen == list(reversed(made))
    post(h, database_body(), key="late")  # a restore created while paging does not shift the next page
    assert ids(api.list_restores({**params, "continuation": listing.token_after(made[3])}, deps=h.deps)) \
        == list(reversed(made[:3]))


def test_a_narrow_window_reads_only_its_slice(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    post(h, database_body(), key="a")
    calls: list[tuple[str | None, str | None]] = []
    real = h.store.list_day

    def spy(day: Any, *, after_id: str | None, before_id: str | None = None) -> Any:
        calls.append((after_id, before_id))
        return real(day, after_id=after_id, before_id=before_id)

    monkeypatch.setattr(h.store, "list_day", spy)
    api.list_restores({"since": "2026-11-24T07:00:00Z", "until": "2026-11-24T09:00:00Z"}, deps=h.deps)
    assert calls == [("20261124T06", "20261124T12")]


def test_filters_by_source_target_region_and_door(h: Harness) -> None:
    db = post(h, database_body(), key="db").body["id"]
    h.clock.advance(1)
    files = post(h, files_body(region="secondary"), key="files").body["id"]
    h.clock.advance(1)
    queued, _ = intake.submit(intake.parse_request(database_body()), source="queue", deps=h.deps,
                              idempotency_key="msg:m1")
    assert ids(api.list_restores({"target": "PG-RESTORES"}, deps=h.deps)) == [files]
    assert ids(api.list_restores({"target": "salesdb_restored"}, deps=h.deps)) == [queued.id, db]
    assert ids(api.list_restores({"region": "secondary"}, deps=h.deps)) == [files]
    assert ids(api.list_restores({"started_by": "queue"}, deps=h.deps)) == [queued.id]
    assert ids(api.list_restores({"source": "salesdb"}, deps=h.deps)) == [queued.id, files, db]
    assert ids(api.list_restores({"source": "hrdb"}, deps=h.deps)) == []


def test_active_lists_every_active_restore_whatever_its_age_or_the_count_of_finished_ones(h: Harness) -> None:
    old_active = post(h, database_body(), key="old").body["id"]
    h.clock.advance(timedelta(days=3).total_seconds())
    for i in range(30):
        rid = post(h, database_body(), key=f"done{i}").body["id"]
        api.cancel(rid, deps=h.deps)
    assert ids(api.list_restores({"status": "active"}, deps=h.deps)) == [old_active]
    assert old_active not in ids(api.list_restores({"limit": "200"}, deps=h.deps))  # outside the default window


@pytest.mark.parametrize(("params", "field", "hint"), [
    ({"stauts": "failed"}, "stauts", "`status`"),
    ({"started_by": "cron"}, "started_by", "http"),
    ({"continuation": "MjAyNjExMjR8eA=="}, "continuation", "older version"),  # an old "day|id" token
    ({"status": "active,bogus"}, "status", "active"),
])
def test_bad_list_queries_name_the_nearest_valid_value(h: Harness, params: dict[str, str], field: str,
                                                        hint: str) -> None:
    resp = api.list_restores(params, deps=h.deps)
    assert resp.status == 400 and resp.body["error"]["field"] == field and hint in resp.body["error"]["fix"]


def test_the_function_key_parameter_is_not_an_unknown_parameter(h: Harness) -> None:
    assert api.list_restores({"code": "secret-key"}, deps=h.deps).status == 200
