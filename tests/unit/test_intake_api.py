"""Intake doors (HTTP handler and the request queue, alerts included) and the status API over in-memory twins."""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from restore_core import api, intake
from restore_core.models import MAX_BODY_BYTES, Stage, Status

from .fakes import BI_ID, SECRET_URI, SOURCE_SERVER_ID, TARGET_SERVER_ID, Harness, database_body, settings

ALERT = json.loads((Path(__file__).parent / "samples" / "alert_fired.json").read_text())
PLANS = {SOURCE_SERVER_ID: {"backup_instance": {"id": BI_ID},
                            "target": {"kind": "database", "server_id": TARGET_SERVER_ID, "secret_uri": SECRET_URI,
                                       "database_name": "salesdb_{fired:%Y%m%d%H%M}"}}}
BASE = "https://app.example/api"


@pytest.fixture
def h() -> Harness:
    return Harness(settings=settings(RESTORE_PLANS=json.dumps(PLANS)))


def post(h: Harness, body: Any, headers: dict[str, str] | None = None) -> api.ApiResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    resp = api.create(raw, headers=headers or {}, base_url=BASE, deps=h.deps)
    h.collect()
    return resp


def test_create_answers_202_with_location_and_enqueues_validate(h: Harness) -> None:
    resp = post(h, database_body())
    assert resp.status == 202 and resp.body["created"] is True and resp.body["status"] == "accepted"
    assert resp.headers["Location"] == f"{BASE}/restores/{resp.body['id']}"
    assert h.stages_of(h.pending) == [Stage.VALIDATE]


def test_same_idempotency_key_answers_200_with_the_same_restore_and_no_new_work(h: Harness) -> None:
    first = post(h, database_body(), {"Idempotency-Key": "t-1"})
    h.step()  # the first one is already being worked on
    pending = list(h.pending)
    again = post(h, database_body(), {"idempotency-key": "t-1"})
    assert again.status == 200 and again.body["id"] == first.body["id"] and again.body["created"] is False
    h.collect()
    assert h.pending == pending and Stage.VALIDATE not in h.stages_of(h.pending)


def test_same_key_for_a_different_request_is_409(h: Harness) -> None:
    post(h, database_body(idempotency_key="t-2"))
    resp = post(h, database_body(idempotency_key="t-2", description="other"))
    assert resp.status == 409 and resp.body["error"]["code"] == "IdempotencyKeyReused"


def test_header_and_body_keys_that_differ_are_400(h: Harness) -> None:
    resp = post(h, database_body(idempotency_key="a"), {"Idempotency-Key": "b"})
    assert resp.status == 400 and resp.body["error"]["field"] == "idempotency_key"
    assert h.store.active() == []


def test_bad_idempotency_header_is_400_naming_the_header(h: Harness) -> None:
    resp = post(h, database_body(), {"Idempotency-Key": "has space"})
    assert resp.status == 400 and resp.body["error"]["field"] == "Idempotency-Key"


def test_oversize_body_is_413(h: Harness) -> None:
    resp = post(h, b"{" + b" " * MAX_BODY_BYTES + b"}")
    assert resp.status == 413 and resp.body["error"]["code"] == "RequestTooLarge"


def test_get_unknown_or_malformed_id_is_404(h: Harness) -> None:
    assert api.get("20261124T080000-0000000000", deps=h.deps).status == 404
    assert api.get("../etc/passwd", deps=h.deps).status == 404
    assert api.cancel("nope", deps=h.deps).status == 404


def test_get_returns_summary_with_timeline(h: Harness) -> None:
    rid = post(h, database_body()).body["id"]
    h.run(until=Stage.MONITOR)
    resp = api.get(rid, deps=h.deps)
    assert resp.status == 200 and resp.body["status"] == "restoring" and resp.body["stage"] == "monitor"
    assert [e["status"] for e in resp.body["timeline"]][:2] == ["accepted", "restoring"]
    assert resp.body["target"]["database_name"] == "salesdb_restored"


def test_queue_request_is_accepted_and_a_redelivery_starts_nothing_new(h: Harness) -> None:
    raw = json.dumps(database_body()).encode()
    rec = intake.from_queue(raw, message_id="m-1", deps=h.deps)
    h.collect()
    assert rec.status is Status.ACCEPTED and rec.source == "queue" and rec.idempotency_key == "msg:m-1"
    h.step()
    again = intake.from_queue(raw, message_id="m-1", deps=h.deps)
    assert again.id == rec.id and h.collect() == []


@pytest.mark.parametrize(("raw", "code"), [
    (b"not json", "InvalidRequest"),
    (json.dumps(database_body(colour="red")).encode(), "InvalidRequest"),
    (b"[" + b" " * MAX_BODY_BYTES + b"]", "RequestTooLarge"),
])
def test_bad_queue_input_leaves_a_rejected_row_and_enqueues_nothing(h: Harness, raw: bytes, code: str) -> None:
    rec = intake.from_queue(raw, message_id="bad-1", deps=h.deps)
    assert rec.status is Status.REJECTED and rec.error_code == code and rec.error_fix
    assert h.collect() == [] and h.store.active() == []
    assert intake.from_queue(raw, message_id="bad-1", deps=h.deps).id == rec.id  # redelivery: same record


def test_alert_on_the_queue_starts_one_restore_per_alert(h: Harness) -> None:
    rec = intake.from_queue(json.dumps(ALERT), message_id="m-1", deps=h.deps)
    assert rec.source == "alert" and rec.status is Status.ACCEPTED
    assert rec.idempotency_key == "alert:" + ALERT["data"]["essentials"]["alertId"]
    assert rec.request["target"]["database_name"] == "salesdb_202611240741"
    assert rec.request["recovery_point"]["latest_before"].startswith("2026-11-24T07:41:32")
    refired = intake.from_queue(json.dumps(ALERT), message_id="m-2", deps=h.deps)
    assert refired.id == rec.id


def test_resolved_alert_is_recorded_as_rejected(h: Harness) -> None:
    resolved = copy.deepcopy(ALERT)
    resolved["data"]["essentials"]["monitorCondition"] = "Resolved"
    rec = intake.from_queue(json.dumps(resolved), message_id="m-3", deps=h.deps)
    assert rec.status is Status.REJECTED and rec.error_code == "AlertNotFired" and rec.source == "alert"


def test_list_filters_by_status_and_pages_with_a_continuation(h: Harness) -> None:
    ids = []
    for i in range(5):
        ids.append(post(h, database_body(idempotency_key=f"k{i}")).body["id"])
        h.clock.advance(60)
    api.cancel(ids[1], deps=h.deps)
    seen: list[str] = []
    params = {"limit": "2"}
    for _ in range(5):
        resp = api.list_restores(params, deps=h.deps)
        assert resp.status == 200
        seen += [item["id"] for item in resp.body["items"]]
        if not resp.body["continuation"]:
            break
        params = {"limit": "2", "continuation": resp.body["continuation"]}
    assert seen == sorted(ids, reverse=True)  # newest first
    cancelled = api.list_restores({"status": "cancelled"}, deps=h.deps).body["items"]
    assert [i["id"] for i in cancelled] == [ids[1]]


def test_list_window_spanning_days_finds_older_restores(h: Harness) -> None:
    old = post(h, database_body(idempotency_key="old")).body["id"]
    h.clock.advance(timedelta(days=2).total_seconds())
    new = post(h, database_body(idempotency_key="new")).body["id"]
    assert [i["id"] for i in api.list_restores({}, deps=h.deps).body["items"]] == [new]
    since = (h.clock() - timedelta(days=3)).isoformat()
    assert [i["id"] for i in api.list_restores({"since": since}, deps=h.deps).body["items"]] == [new, old]


@pytest.mark.parametrize(("params", "field"), [
    ({"status": "done"}, "status"),
    ({"limit": "0"}, "limit"),
    ({"limit": "many"}, "query"),
    ({"since": "2026-11-24T08:00:00Z", "until": "2026-11-23T08:00:00Z"}, "until"),
    ({"since": "2026-01-01T00:00:00Z", "until": "2026-11-23T08:00:00Z"}, "since"),
    ({"continuation": "!!!"}, "continuation"),
])
def test_bad_list_parameters_are_400_naming_the_parameter(h: Harness, params: dict[str, str], field: str) -> None:
    resp = api.list_restores(params, deps=h.deps)
    assert resp.status == 400 and resp.body["error"]["field"] == field and resp.body["error"]["fix"]


# --- the queue door records every decoding or request error (issue 16.4) ------------------------------------------
HUGE_INT = b'{"deadline_hours": 1' + b"0" * 5000 + b"}"  # json: ValueError (more than 4300 digits)
# 14 KB of body, 42 KB once stored (escaped): over the stored limit
WIDE_ID = (f"/subscriptions/{'0' * 8}-0000-0000-0000-000000000001/resourceGroups/rg/providers/"
           "Microsoft.DBforPostgreSQL/servers/" + "\U0001f600" * 3500)


def fired_alert(**essentials: Any) -> dict[str, Any]:
    data = copy.deepcopy(ALERT)
    data["data"]["essentials"].update(essentials)
    return data


@pytest.mark.parametrize(("raw", "code"), [
    (HUGE_INT, "InvalidRequest"),
    (json.dumps(fired_alert(firedDateTime="9999-12-31T23:59:59-01:00")).encode(), "InvalidAlert"),
    (json.dumps(database_body(idempotency_key="alert:" + ALERT["data"]["essentials"]["alertId"])).encode(),
     "InvalidRequest"),
    (json.dumps(database_body(idempotency_key="msg:m-other")).encode(), "InvalidRequest"),
    (json.dumps({"backup_instance": {"vault_id": BI_ID.split("/backupInstances/")[0], "datasource_id": WIDE_ID},
                 "target": database_body()["target"]}, ensure_ascii=False).encode(), "RequestTooLarge"),
])
def test_queue_input_that_used_to_go_to_poison_leaves_a_rejected_record(h: Harness, raw: bytes, code: str) -> None:
    assert len(raw) <= MAX_BODY_BYTES
    rec = intake.from_queue(raw, message_id="bad-2", deps=h.deps)  # must not raise: a raise means poison
    assert rec.status is Status.REJECTED and rec.error_code == code and rec.error_message and rec.error_fix
    assert h.collect() == [] and h.store.active() == []
    assert intake.from_queue(raw, message_id="bad-2", deps=h.deps).id == rec.id  # redelivery: the same record


def test_queue_key_reused_for_another_body_leaves_a_rejected_record_and_keeps_the_first(h: Harness) -> None:
    first = intake.from_queue(json.dumps(database_body(idempotency_key="q-1")), message_id="m-1", deps=h.deps)
    h.collect()
    other = json.dumps(database_body(idempotency_key="q-1", description="another restore"))
    rec = intake.from_queue(other, message_id="m-2", deps=h.deps)
    assert rec.status is Status.REJECTED and rec.error_code == "IdempotencyKeyReused" and rec.id != first.id
    assert "q-1" in (rec.error_message or "") and rec.idempotency_key == "msg:m-2"
    assert intake.from_queue(other, message_id="m-2", deps=h.deps).id == rec.id
    assert h.collect() == [] and h.record(first.id).status is Status.ACCEPTED


@pytest.mark.parametrize("key", ["alert:" + ALERT["data"]["essentials"]["alertId"], "msg:m-1", "Poison:x", "ALERT:x"])
def test_http_keys_that_imitate_a_door_key_are_400(h: Harness, key: str) -> None:
    resp = post(h, database_body(), {"Idempotency-Key": key})
    assert resp.status == 400 and resp.body["error"]["field"] == "Idempotency-Key"
    assert "reserved" in resp.body["error"]["message"] and resp.body["error"]["fix"]
    resp = post(h, database_body(idempotency_key=key))
    assert resp.status == 400 and resp.body["error"]["field"] == "idempotency_key"
    assert "reserved" in resp.body["error"]["message"]
    assert h.store.active() == [] and h.pending == []


def test_an_alert_is_never_taken_over_by_an_http_request_with_its_key(h: Harness) -> None:
    post(h, database_body(), {"Idempotency-Key": "alert:" + ALERT["data"]["essentials"]["alertId"]})
    rec = intake.from_queue(json.dumps(ALERT), message_id="m-1", deps=h.deps)
    assert rec.source == "alert" and rec.status is Status.ACCEPTED
    assert rec.request["target"]["database_name"] == "salesdb_202611240741"


# --- list windows in any zone (issue 16.5) -------------------------------------------------------------------------
@pytest.mark.parametrize("params", [
    {"since": "2026-11-24T01:00:00+05:00"},  # = 2026-11-23T20:00Z: the restore's UTC day is the 23rd
    {"since": "2026-11-24T01:00:00 05:00"},  # the same, with the '+' not URL-encoded (it arrives as a space)
    {"since": "2026-11-23T15:00:00-05:00", "until": "2026-11-23T17:30:00-05:00"},  # 20:00Z..22:30Z
    {"since": "2026-11-23 21:00", "until": "2026-11-23 23:00"},  # no zone (UTC), space separator: unchanged
])
def test_list_windows_in_other_zones_find_restores_across_utc_day_boundaries(h: Harness,
                                                                             params: dict[str, str]) -> None:
    h.clock.now = h.clock.now.replace(day=23, hour=22, minute=0)  # created 2026-11-23T22:00Z (partition d20261123)
    late = post(h, database_body(idempotency_key="late")).body["id"]
    h.clock.now = h.clock.now.replace(day=24, hour=8)
    resp = api.list_restores(params, deps=h.deps)
    assert resp.status == 200 and [i["id"] for i in resp.body["items"]] == [late]


def test_list_until_in_a_western_zone_reaches_the_next_utc_day(h: Harness) -> None:
    h.clock.now = h.clock.now.replace(hour=3)  # 2026-11-24T03:00Z, still the 23rd in New York
    early = post(h, database_body(idempotency_key="early")).body["id"]
    resp = api.list_restores({"since": "2026-11-23T12:00:00-05:00", "until": "2026-11-23T23:00:00-05:00"},
                             deps=h.deps)
    assert [i["id"] for i in resp.body["items"]] == [early]


@pytest.mark.parametrize("params", [
    {"since": "9999-12-30T00:00:00Z", "until": "9999-12-31T23:59:59.999999Z"},
    {"since": "9999-12-31T23:00:00Z", "until": "9999-12-31T23:59:59Z"},
])
def test_list_window_at_the_end_of_the_calendar_is_an_empty_page(h: Harness, params: dict[str, str]) -> None:
    resp = api.list_restores(params, deps=h.deps)
    assert resp.status == 200 and resp.body == {"items": [], "continuation": None}


@pytest.mark.parametrize("params", [{"since": "0001-01-01T00:00:00+01:00"}, {"until": "9999-12-31T23:59:59-01:00"}])
def test_list_times_that_cannot_be_expressed_in_utc_are_400(h: Harness, params: dict[str, str]) -> None:
    resp = api.list_restores(params, deps=h.deps)
    assert resp.status == 400 and resp.body["error"]["fix"] and "UTC" in resp.body["error"]["message"]


def test_http_body_whose_stored_form_is_too_large_is_413_and_leaves_its_key_free(h: Harness) -> None:
    wide = {"backup_instance": {"vault_id": BI_ID.split("/backupInstances/")[0], "datasource_id": WIDE_ID},
            "target": database_body()["target"]}
    resp = post(h, json.dumps(wide, ensure_ascii=False).encode(), {"Idempotency-Key": "k-wide"})
    assert resp.status == 413 and resp.body["error"]["code"] == "RequestTooLarge"
    assert h.store.active() == [] and h.pending == []
    assert post(h, database_body(), {"Idempotency-Key": "k-wide"}).status == 202


def test_stages_are_served_from_the_registry_in_pipeline_order() -> None:
    from restore_core.stages import registry

    resp = api.stages()
    assert resp.status == 200
    listed = resp.body["stages"]
    assert [s["stage"] for s in listed] == [s.stage.value for s in registry.REGISTRY]
    assert listed[0] == {"stage": "validate", "label": "Validate", "status": "validating", "cancellable": True,
                         "queue_setting": "RESTORE_QUEUE_VALIDATE", "consumer": "function"}
    assert next(s for s in listed if s["stage"] == "replay")["consumer"] == "job"
    assert [s["stage"] for s in listed if s["cancellable"]] == ["validate", "rehydrate", "wait"]
