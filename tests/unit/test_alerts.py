"""``alerts.alert_to_request``: a common-alert-schema payload maps through a restore plan to a valid request."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from restore_core.alerts import alert_to_request, fired_at, is_alert
from restore_core.errors import RequestError
from restore_core.models import DatabaseTarget, parse_request

from .fakes import BI_ID, SECRET_URI, SOURCE_SERVER_ID, TARGET_SERVER_ID

SAMPLE = json.loads((Path(__file__).parent / "samples" / "alert_fired.json").read_text())
ALERT_ID = SAMPLE["data"]["essentials"]["alertId"]
FIRED = datetime(2026, 11, 24, 7, 41, 32, 371321, tzinfo=UTC)


def plan(**extra: Any) -> dict[str, Any]:
    p: dict[str, Any] = {
        "backup_instance": {"id": BI_ID},
        "target": {"kind": "database", "server_id": TARGET_SERVER_ID, "secret_uri": SECRET_URI,
                   "database_name": "salesdb_alert_{fired:%Y%m%d%H%M}_{alert_short}"},
    }
    p.update(extra)
    return {SOURCE_SERVER_ID: p}  # the alert names the resource in lower case: matching ignores case


def alert(**essentials: Any) -> dict[str, Any]:
    data = copy.deepcopy(SAMPLE)
    for k, v in essentials.items():
        if v is None:
            data["data"]["essentials"].pop(k, None)
        else:
            data["data"]["essentials"][k] = v
    return data


def refused(data: Any, plans: dict[str, Any]) -> RequestError:
    with pytest.raises(RequestError) as info:
        alert_to_request(data, plans)
    assert info.value.fix
    return info.value


def test_sample_is_recognised_as_an_alert() -> None:
    assert is_alert(SAMPLE)
    assert not is_alert({"backup_instance": {"id": BI_ID}})
    assert fired_at(SAMPLE) == FIRED


def test_fired_alert_maps_to_a_valid_request_restoring_the_point_before_the_alert() -> None:
    body, key = alert_to_request(SAMPLE, plan(deadline_hours=12, rehydration={"priority": "High"}))
    assert key == f"alert:{ALERT_ID}"
    req = parse_request(body)
    assert req.recovery_point.latest_before == FIRED
    assert isinstance(req.target, DatabaseTarget)
    assert req.target.database_name == "salesdb_alert_202611240741_b9569717"
    assert req.backup_instance.id == BI_ID
    assert req.deadline_hours == 12 and req.rehydration.priority.value == "High"
    assert req.description == "alert pgsrv01-data-loss fired 2026-11-24T07:41:32.371321Z"


def test_plan_may_choose_the_latest_point_instead() -> None:
    body, _ = alert_to_request(SAMPLE, plan(recovery_point="latest"))
    assert "recovery_point" not in body
    assert parse_request(body).recovery_point.mode == "latest"


def test_resource_name_placeholder_is_rendered() -> None:
    plans = plan()
    plans[SOURCE_SERVER_ID]["target"]["database_name"] = "{resource_name}_restored"
    body, _ = alert_to_request(SAMPLE, plans)
    assert body["target"]["database_name"] == "pgsrv01_restored"


def test_same_alert_gives_the_same_key_and_body() -> None:
    assert alert_to_request(SAMPLE, plan()) == alert_to_request(copy.deepcopy(SAMPLE), plan())


@pytest.mark.parametrize("data", [
    {"schemaId": "azureMonitorCommonAlertSchema"},
    {"schemaId": "azureMonitorCommonAlertSchema", "data": "oops"},
    {"schemaId": "azureMonitorCommonAlertSchema", "data": {"essentials": []}},
])
def test_missing_essentials_is_invalid_alert(data: dict[str, Any]) -> None:
    err = refused(data, plan())
    assert (err.code, err.field) == ("InvalidAlert", "data.essentials")


@pytest.mark.parametrize("value", [None, "", 42])
def test_missing_alert_id_is_invalid_alert(value: Any) -> None:
    err = refused(alert(alertId=value), plan())
    assert (err.code, err.field) == ("InvalidAlert", "data.essentials.alertId")


@pytest.mark.parametrize("targets", [None, [], [42], "not-a-list"])
def test_missing_targets_is_invalid_alert(targets: Any) -> None:
    err = refused(alert(alertTargetIDs=targets), plan())
    assert (err.code, err.field) == ("InvalidAlert", "data.essentials.alertTargetIDs")


@pytest.mark.parametrize("fired", [None, "yesterday", "2026-13-45T00:00:00Z"])
def test_missing_or_bad_fired_time_is_invalid_alert(fired: Any) -> None:
    err = refused(alert(firedDateTime=fired), plan())
    assert (err.code, err.field) == ("InvalidAlert", "data.essentials.firedDateTime")


@pytest.mark.parametrize("fired", [12345, ["2026-11-24T07:41:32Z"]])
def test_non_string_fired_time_is_invalid_alert(fired: Any) -> None:
    err = refused(alert(firedDateTime=fired), plan())
    assert (err.code, err.field) == ("InvalidAlert", "data.essentials.firedDateTime")


def test_resolved_alert_starts_nothing() -> None:
    err = refused(alert(monitorCondition="Resolved"), plan())
    assert err.code == "AlertNotFired" and err.field == "data.essentials.monitorCondition"
    assert "Resolved" in err.message


def test_unknown_placeholder_in_plan_is_named() -> None:
    plans = plan()
    plans[SOURCE_SERVER_ID]["target"]["database_name"] = "db_{severity}"
    err = refused(SAMPLE, plans)
    assert err.code == "InvalidRestorePlan" and err.field == "target.database_name"
    assert "{severity}" in err.message and "alert_short" in (err.fix or "")


def test_alert_for_a_resource_without_plan_is_refused() -> None:
    err = refused(SAMPLE, {"/subscriptions/x/resourceGroups/y/providers/Microsoft.DBforPostgreSQL/servers/other": {}})
    assert err.code == "NoRestorePlan" and err.field == "RESTORE_PLANS"
    assert SAMPLE["data"]["essentials"]["alertTargetIDs"][0] in err.message


def test_no_plans_at_all_is_refused() -> None:
    assert refused(SAMPLE, {}).code == "NoRestorePlan"


@pytest.mark.parametrize("entry", ["oops", {"target": "database"}])
def test_malformed_plan_entry_is_invalid_restore_plan(entry: Any) -> None:
    err = refused(SAMPLE, {SOURCE_SERVER_ID: entry})
    assert err.code == "InvalidRestorePlan"


@pytest.mark.parametrize("fired", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
def test_fired_time_that_overflows_in_utc_is_invalid_alert(fired: str) -> None:
    err = refused(alert(firedDateTime=fired), plan())
    assert (err.code, err.field) == ("InvalidAlert", "data.essentials.firedDateTime")


def test_fired_time_in_another_zone_is_rendered_in_utc() -> None:
    body, _ = alert_to_request(alert(firedDateTime="2026-11-24T08:41:32+01:00"), plan())
    assert body["recovery_point"] == {"latest_before": "2026-11-24T07:41:32Z"}
    assert body["target"]["database_name"].startswith("salesdb_alert_202611240741_")
