"""``GET /api/drills/runs/latest`` (issue 15 item 3, the dashboard's drills panel): the last run per drill and backup
instance, pass/fail, RTO against the target, and the RTO trend of the last runs; paged and bounded; bad parameters
refused naming the parameter."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from restore_core.drills import api as drills_api
from restore_core.drills import latest, scheduler, store
from restore_core.models import Status

from .fakes import BI_ID, Harness
from .test_drills import DRILL_SERVER, define, finish_restore, harness


def run_days(h: Harness, days: int, *, slow_on: tuple[int, ...] = (), fail_on: tuple[int, ...] = ()) -> None:
    """One run a day at 09:00 for ``days`` days; each restore ends 10 minutes later (30 on a slow day)."""
    for day in range(days):
        h.clock.now = h.clock.now.replace(hour=9, minute=0, second=0) + timedelta(days=1 if day else 0)
        scheduler.tick(h.deps)
        run = next(r for r in store.list_runs(h.deps, "nightly") if r["state"] == "running")
        finish_restore(h, run["restore_id"], Status.FAILED if day in fail_on else Status.SUCCEEDED)
        if day in slow_on:  # the restore took 30 minutes: the run row says so
            found = store.get_run(h.deps, "nightly", run["run_key"])
            assert found is not None
            res = {**found[0]["result"], "rto_seconds": 1800.0, "rto_within_target": False}
            store.update_run(h.deps, {**found[0], "result": res}, found[1])


def latest_body(h: Harness, **params: str) -> dict[str, Any]:
    resp = drills_api.latest_runs(params, deps=h.deps)
    assert resp.status == 200, resp.body
    body: dict[str, Any] = resp.body
    return body


def test_the_last_run_per_drill_and_instance_with_pass_fail_rto_against_target_and_its_trend() -> None:
    h = harness()
    define(h, schedule="0 0 9 * * *", start_window_minutes=0, rto_target_minutes=20, validation_window_minutes=600)
    run_days(h, 4, slow_on=(1,), fail_on=(3,))
    (item,) = latest_body(h, trend="3")["items"]
    runs = store.list_runs(h.deps, "nightly")
    assert item["drill_id"] == "nightly" and item["backup_instance_id"] == BI_ID and item["runs"] == 4
    assert item["backup_instance_name"] == BI_ID.rsplit("/", 1)[-1] and item["target_server"] == DRILL_SERVER
    assert item["rto_target_seconds"] == 1200
    last = item["last"]
    assert last["run_key"] == runs[0]["run_key"] and last["restore_id"] == runs[0]["restore_id"]
    assert last["passed"] is False and last["status"] == "failed" and last["error_code"] == "VerificationFailed"
    assert last["rto_seconds"] == 600 and last["rto_target_seconds"] == 1200 and last["rto_within_target"] is True
    assert last["checks_passed"] == 1 and last["checks_failed"] == 0 and last["cleanup_status"] == "scheduled"
    assert last["evidence_blob"] == runs[0]["evidence_blob"] and last["state"] == "validating"
    assert [(t["run_key"], t["rto_seconds"], t["rto_within_target"]) for t in item["trend"]] == [
        (runs[2]["run_key"], 1800, False), (runs[1]["run_key"], 600, True), (runs[0]["run_key"], 600, True)]
    assert len(latest_body(h)["items"][0]["trend"]) == 4  # default: the last 10


def test_a_run_still_restoring_is_the_last_run_without_a_verdict_and_keeps_the_trend() -> None:
    h = harness()
    define(h, schedule="0 0 9 * * *", start_window_minutes=0)
    run_days(h, 1)
    h.clock.now += timedelta(days=1)
    scheduler.tick(h.deps)
    (item,) = latest_body(h)["items"]
    assert item["last"]["state"] == "running" and item["last"]["passed"] is None
    assert item["last"]["rto_seconds"] is None and len(item["trend"]) == 1 and item["runs"] == 2


def test_items_are_sorted_and_paged_with_a_continuation() -> None:
    runs = {f"d{i}": [{"run_key": f"d{i}:k{j}", "backup_instance_id": f"/x/backupInstances/bi{j}",
                       "state": "done", "result": {"passed": True, "rto_seconds": 60.0 * j}}
                      for j in range(3)] for i in range(3)}
    drills = [(d, {"server_id": "s", "rto_target_seconds": 600}) for d in reversed(sorted(runs))]
    items = latest.latest(drills, runs, trend=5)
    assert [(i["drill_id"], i["backup_instance_name"]) for i in items] == [
        (f"d{i}", f"bi{j}") for i in range(3) for j in range(3)]
    first = latest.page(items, 4, 0)
    second = latest.page(items, 4, int(first["continuation"]))
    third = latest.page(items, 4, int(second["continuation"]))
    assert first["items"] + second["items"] + third["items"] == items and third["continuation"] is None


@pytest.mark.parametrize(("params", "field"), [({"limit": "0"}, "limit"), ({"limit": "201"}, "limit"),
                                               ({"limit": "ten"}, "limit"), ({"trend": "31"}, "trend"),
                                               ({"continuation": "-1"}, "continuation")])
def test_a_bad_parameter_is_refused_naming_it(params: dict[str, str], field: str) -> None:
    resp = drills_api.latest_runs(params, deps=harness().deps)
    assert resp.status == 400 and resp.body["error"]["field"] == field and resp.body["error"]["fix"]


def test_no_drills_no_items() -> None:
    assert latest_body(harness()) == {"items": [], "continuation": None}
