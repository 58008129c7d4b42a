"""Issue 13 item 2: the HTTP alert door (``POST /api/alerts``, Azure Monitor's common alert schema from an action
group), mapped through the restore plans, idempotent on the alert id, never started by alerts about this service, and
alerts that start nothing counted for the failure alert."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from restore_core import alerts, api, intake
from restore_core.models import Stage, Status

from .fakes import BI_ID, SECRET_URI, SOURCE_SERVER_ID, TARGET_SERVER_ID, Harness, database_body, settings

ALERT = json.loads((Path(__file__).parent / "samples" / "alert_fired.json").read_text())
PLANS = {SOURCE_SERVER_ID: {"backup_instance": {"id": BI_ID},
                            "target": {"kind": "database", "server_id": TARGET_SERVER_ID, "secret_uri": SECRET_URI,
                                       "database_name": "salesdb_{fired:%Y%m%d%H%M}"}}}
BASE = "https://app.example/api"
FUNC_APP = "/subscriptions/s/resourceGroups/rg-restore/providers/Microsoft.Web/sites/func-restore-abc"
INSIGHTS = "/subscriptions/s/resourceGroups/rg-restore/providers/Microsoft.Insights/components/appi-restore-abc"


@pytest.fixture
def h() -> Harness:
    return Harness(settings=settings(RESTORE_PLANS=json.dumps(PLANS),
                                     RESTORE_OWN_RESOURCE_IDS=json.dumps([FUNC_APP, INSIGHTS])))


def alert(**essentials: Any) -> dict[str, Any]:
    data = copy.deepcopy(ALERT)
    data["data"]["essentials"].update(essentials)
    return data


def door(h: Harness, body: Any) -> api.ApiResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    resp = api.alert(raw, base_url=BASE, deps=h.deps)
    h.collect()
    return resp


def test_an_alert_starts_one_restore_through_its_plan_and_its_repeat_starts_nothing(h: Harness) -> None:
    first = door(h, ALERT)
    assert first.status == 202 and first.body["created"] is True, first.body
    assert first.body["status"] == "accepted" and first.body["source"] == "alert"
    assert first.body["target"]["database_name"] == "salesdb_202611240741"  # the plan's template, fired time
    assert first.headers["Location"] == f"{BASE}/restores/{first.body['id']}"
    assert first.body["started_by"]["alert_id"] == ALERT["data"]["essentials"]["alertId"]
    assert first.body["started_by"]["alert_rule"] == "pgsrv01-data-loss"
    assert first.body["started_by"]["plan"].lower() == SOURCE_SERVER_ID.lower()
    assert h.stages_of(h.pending) == [Stage.VALIDATE]
    h.step()  # the restore is being worked on
    before = h.stages_of(h.pending)
    again = door(h, ALERT)  # the action group's retry, or the same alert re-sent
    assert again.status == 200 and again.body["id"] == first.body["id"] and again.body["created"] is False
    assert h.stages_of(h.pending) == before  # no new work
    # the queue door with the same alert finds the same restore too: one alert, one restore, whichever door
    assert intake.from_queue(json.dumps(ALERT), message_id="m-9", deps=h.deps).id == first.body["id"]


def test_the_plans_cooldown_applies_at_the_http_door(h: Harness) -> None:
    limited = {SOURCE_SERVER_ID: {**PLANS[SOURCE_SERVER_ID], "cooldown_minutes": 30}}
    hh = Harness(settings=settings(RESTORE_PLANS=json.dumps(limited)))
    first = door(hh, ALERT)
    storm = door(hh, alert(alertId=ALERT["data"]["essentials"]["alertId"].replace("b9569717", "c9569717")))
    assert first.status == 202 and storm.status == 200
    assert storm.body["status"] == "rejected" and storm.body["error"]["code"] == "AlertDeduplicated"
    assert first.body["id"] in storm.body["error"]["fix"]


@pytest.mark.parametrize(("essentials", "why"), [
    ({"alertTargetIDs": [FUNC_APP]}, "resource of this service"),
    ({"alertTargetIDs": [FUNC_APP.upper() + "/slots/staging"]}, "resource of this service"),
    ({"alertTargetIDs": [INSIGHTS]}, "resource of this service"),
    ({"alertRule": "alert-restore-failed-abc123"}, "own alert rules"),
])
def test_an_alert_about_this_service_never_starts_a_restore(h: Harness, essentials: dict[str, Any],
                                                            why: str) -> None:
    plans = {**PLANS, FUNC_APP: PLANS[SOURCE_SERVER_ID], INSIGHTS: PLANS[SOURCE_SERVER_ID]}  # even with a plan
    hh = Harness(settings=settings(RESTORE_PLANS=json.dumps(plans),
                                   RESTORE_OWN_RESOURCE_IDS=f"{FUNC_APP},{INSIGHTS}"))
    resp = door(hh, alert(**essentials))
    assert resp.status == 200 and resp.body["status"] == "rejected", resp.body
    assert resp.body["error"]["code"] == "AlertAboutThisService" and why in resp.body["error"]["message"]
    assert hh.pending == []
    queued = intake.from_queue(json.dumps(alert(**essentials, alertId="/x/alerts/other")), message_id="q", deps=hh.deps)
    assert queued.status is Status.REJECTED and queued.error_code == "AlertAboutThisService"


def test_the_feedback_rule_leaves_other_alerts_alone() -> None:
    assert alerts.feedback_loop(ALERT, (FUNC_APP, INSIGHTS), ("alert-restore-",)) is None
    assert alerts.feedback_loop(alert(alertTargetIDs=[FUNC_APP + "x"]), (FUNC_APP,), ()) is None  # not under it
    assert alerts.feedback_loop(alert(alertRule="my-alert-restore-x"), (), ("alert-restore-",)) is None


def test_a_body_that_is_no_alert_is_a_400_recording_nothing(h: Harness) -> None:
    resp = door(h, database_body())
    assert resp.status == 400 and resp.body["error"]["code"] == "NotACommonAlert"
    assert "common alert schema" in resp.body["error"]["fix"]
    assert door(h, b"{not json").status == 400
    assert api.list_restores({}, deps=h.deps).body["items"] == []


def test_an_alert_that_starts_nothing_is_recorded_once_and_counted_for_the_failure_alert(
        h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    counted: list[dict[str, Any]] = []
    monkeypatch.setattr(intake.telemetry, "record_restore_finished", lambda **kw: counted.append(kw))
    unplanned = alert(alertTargetIDs=["/subscriptions/s/resourceGroups/r/providers/Microsoft.Sql/servers/other"])
    first = door(h, unplanned)
    assert first.status == 200 and first.body["status"] == "rejected" and first.body["created"] is True
    assert first.body["error"]["code"] == "NoRestorePlan"
    again = door(h, unplanned)
    assert again.body["id"] == first.body["id"] and again.body["created"] is False
    assert [(c["outcome"], c["source"], c["error_code"]) for c in counted] == [("rejected", "alert", "NoRestorePlan")]


def test_an_alert_without_an_id_is_keyed_by_its_body(h: Harness) -> None:
    broken = alert(alertId="")
    first, again = door(h, broken), door(h, broken)
    assert first.body["status"] == "rejected" and first.body["error"]["code"] == "InvalidAlert"
    assert again.body["id"] == first.body["id"]


def test_an_alert_restore_refused_in_validation_is_counted_with_its_door(monkeypatch: pytest.MonkeyPatch) -> None:
    """A guard that needs Azure refuses in the validate stage: the restore ends rejected there, still before anything
    is paid for, and the failure alert must see that it came from an alert."""
    from restore_core import pipeline

    hh = Harness(settings=settings(RESTORE_PLANS=json.dumps(PLANS)))
    rid = door(hh, ALERT).body["id"]
    counted: list[dict[str, Any]] = []
    monkeypatch.setattr(pipeline.telemetry, "record_restore_finished", lambda **kw: counted.append(kw))
    rec = hh.deps.store.get(rid)
    assert rec is not None
    done = hh.deps.store.update(rec.copy(status=Status.REJECTED, stage=None, error_code="TargetServerProtected"))
    pipeline.finish(hh.deps, done)
    assert [(c["outcome"], c["source"], c["error_code"]) for c in counted] == \
        [("rejected", "alert", "TargetServerProtected")]
