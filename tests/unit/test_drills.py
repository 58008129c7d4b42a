"""Restore drills (issue 15): definitions, schedule, point selection, idempotent starts, evidence, clean-up safety."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from croniter import croniter

from restore_core import api
from restore_core.backup import BackupInstanceInfo, RecoveryPointInfo
from restore_core.drills import api as drills_api
from restore_core.drills import cleanup, evidence, ncrontab, scheduler, store
from restore_core.drills.evidence import MemoryEvidenceSink
from restore_core.drills.model import PointSelection, parse_drill
from restore_core.errors import RequestError
from restore_core.models import Stage, Status, Tier
from restore_core.pgtarget import mark_of, pending_name, pending_prefix
from restore_core.records import RestoreRecord, iso
from restore_core.restore_requests import SINGLE_SERVER_DB

from .fakes import BI_ID, SOURCE_SERVER_ID, SUB, SUB2, T0, VAULT_ID, Harness, settings

DRILL_SERVER = (f"/subscriptions/{SUB2}/resourceGroups/rg-target/providers/Microsoft.DBforPostgreSQL/"
                "flexibleServers/pgflex-drills")
OTHER_FLEX = (f"/subscriptions/{SUB2}/resourceGroups/rg-target/providers/Microsoft.DBforPostgreSQL/"
              "flexibleServers/pgflex-other")


def definition(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "nightly", "schedule": "0 0 2 * * *", "start_window_minutes": 60,
        "backup_instances": {"ids": [BI_ID]}, "recovery_point": {"select": "latest"},
        "target": {"server_id": DRILL_SERVER, "database_suffix": "_drill_{run}"},
        "checks": [{"name": "orders", "database": "salesdb", "sql": "SELECT count(*) > 0 FROM orders",
                    "expect": "t"}],
        "rto_target_minutes": 30, "validation_window_minutes": 60,
    }
    body.update(changes)
    return body


def harness(**env: str) -> Harness:
    h = Harness(settings=settings(**{"RESTORE_DRILL_TARGETS": DRILL_SERVER, **env}))
    h.deps.evidence = MemoryEvidenceSink()
    return h


# ------------------------------------------------------------------------------------------------ NCRONTAB
@pytest.mark.parametrize("expr", ["0 */5 * * * *", "*/10 * * * * *", "0 30 2 * * *", "15 0 9-17/2 * * mon-fri",
                                  "0 0 0 1,15 * *", "0 0 3 * jan,jul *", "0 0 0 29 2 *", "0 0 4 * * 0",
                                  "0 0 4 * * 7", "5 4 3 * * sun,wed"])
def test_ncrontab_agrees_with_croniter_on_previous_and_next(expr: str) -> None:
    s = ncrontab.parse(expr)
    rnd = random.Random(expr)
    for _ in range(25):
        at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=rnd.randrange(0, 3 * 366 * 86400))
        at = at.replace(microsecond=0)
        ref = croniter(expr, at, second_at_beginning=True)
        assert s.next(at) == ref.get_next(datetime), (expr, at)
        # previous(at) includes ``at`` itself; croniter's get_prev is strictly before
        ref_prev = croniter(expr, at + timedelta(seconds=1), second_at_beginning=True).get_prev(datetime)
        assert s.previous(at) == ref_prev, (expr, at)


@pytest.mark.parametrize(("expr", "says"), [
    ("0 0 2 * *", "six"), ("0 0 25 * * *", "hour field: 25 is outside 0-23"), ("0 0 2 1 * mon", "both restricted"),
    ("0 0 0 31 2 *", "never fires"), ("0 */0 * * * *", "step"), ("0 0 5-2 * * *", "backwards"),
    ("0 0 x * * *", "not a number")])
def test_ncrontab_refuses_bad_expressions_saying_what_to_change(expr: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        ncrontab.parse(expr)


# --------------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize(("changes", "field"), [
    ({"schedule": "every night"}, "schedule"),
    ({"schedule": "0 0 2 1 * mon"}, "schedule"),
    ({"id": "Nightly!"}, "id"),
    ({"colour": "blue"}, "colour"),
    ({"recovery_point": {"select": "random"}}, "recovery_point"),
    ({"recovery_point": {"select": "latest", "within_days": 3}}, "recovery_point"),
    ({"backup_instances": {"ids": [BI_ID], "vaults": [VAULT_ID]}}, "backup_instances"),
    ({"backup_instances": {"vaults": ["/subscriptions/x"]}}, "backup_instances.vaults.0"),
    ({"target": {"server_id": DRILL_SERVER, "database_suffix": "_drill"}}, "target.database_suffix"),
    ({"target": {"server_id": SOURCE_SERVER_ID}}, "target.server_id"),
    ({"rto_target_minutes": 0}, "rto_target_minutes"),
    ({"validation_window_minutes": -1}, "validation_window_minutes"),
    ({"start_window_minutes": 2000}, "start_window_minutes"),
])
def test_an_invalid_definition_is_refused_naming_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(RequestError) as err:
        parse_drill(json.dumps(definition(**changes)))
    assert err.value.field == field and err.value.fix


def test_a_definition_without_rto_target_is_refused_as_missing() -> None:
    body = definition()
    del body["rto_target_minutes"]
    with pytest.raises(RequestError, match="missing field 'rto_target_minutes'"):
        parse_drill(body)


def test_path_id_and_body_id_must_agree() -> None:
    with pytest.raises(RequestError, match="differs") as err:
        parse_drill(definition(), drill_id="other")
    assert err.value.field == "id"
    assert parse_drill({k: v for k, v in definition().items() if k != "id"}, drill_id="weekly").id == "weekly"


def test_api_refuses_a_target_that_is_no_drill_target_and_stores_nothing() -> None:
    h = harness()
    resp = drills_api.create(json.dumps(definition(target={"server_id": OTHER_FLEX})).encode(), deps=h.deps)
    assert resp.status == 400 and resp.body["error"]["code"] == "NotADrillTarget"
    assert resp.body["error"]["field"] == "target.server_id" and "RESTORE_DRILL_TARGETS" in resp.body["error"]["fix"]
    assert drills_api.list_all(deps=h.deps).body["items"] == []


def test_api_refuses_drills_when_no_drill_target_is_configured() -> None:
    h = Harness()
    h.deps.evidence = MemoryEvidenceSink()
    resp = drills_api.create(json.dumps(definition()).encode(), deps=h.deps)
    assert resp.status == 400 and "RESTORE_DRILL_TARGETS is empty" in resp.body["error"]["message"]


def test_api_refuses_an_unknown_backup_instance_or_vault() -> None:
    h = harness()
    unknown = BI_ID.replace("salesdb", "nosuchdb")
    resp = drills_api.create(json.dumps(definition(backup_instances={"ids": [unknown]})).encode(), deps=h.deps)
    assert resp.status == 400 and resp.body["error"]["code"] == "UnknownBackupResource"
    assert resp.body["error"]["field"] == "backup_instances.ids.0"
    from restore_core.errors import AzureRejection
    h.dp.fail_before["get_vault"] = [AzureRejection("ResourceNotFound", "vault bv-nope not found")]
    resp = drills_api.create(json.dumps(definition(backup_instances={"vaults": [VAULT_ID]})).encode(), deps=h.deps)
    assert resp.status == 400 and resp.body["error"]["field"] == "backup_instances.vaults.0"


def test_api_refuses_a_drill_target_that_is_the_source_of_a_protected_instance() -> None:
    src = DRILL_SERVER.replace("pgflex-drills", "pgflex01")  # a drill target by mistake, and a protected source
    h = harness(RESTORE_DRILL_TARGETS=src)
    h.dp.instances.append(BackupInstanceInfo(f"{VAULT_ID}/backupInstances/pgflex01-x", "pgflex01-x", "pgflex01",
                                             "Microsoft.DBforPostgreSQL/flexibleServers", src, src, "Protected"))
    resp = drills_api.create(json.dumps(definition(target={"server_id": src},
                                                   backup_instances={"vaults": [VAULT_ID]})).encode(), deps=h.deps)
    assert resp.status == 400 and resp.body["error"]["code"] == "TargetServerProtected", resp.body


def test_api_create_get_replace_list_delete() -> None:
    h = harness()
    created = drills_api.create(json.dumps(definition()).encode(), deps=h.deps)
    assert created.status == 201, created.body
    assert created.body["next_run_at"] == "2026-11-25T02:00:00Z"  # T0 is 2026-11-24T08:00Z
    assert drills_api.create(json.dumps(definition()).encode(), deps=h.deps).status == 409
    changed = drills_api.replace("nightly", json.dumps(definition(enabled=False)).encode(), deps=h.deps)
    assert changed.status == 200 and changed.body["enabled"] is False and changed.body["next_run_at"] is None
    assert [d["id"] for d in drills_api.list_all(deps=h.deps).body["items"]] == ["nightly"]
    assert drills_api.delete("nightly", deps=h.deps).status == 204
    assert drills_api.get("nightly", deps=h.deps).status == 404


# ------------------------------------------------------------------------------------------------- guards
def test_an_ordinary_restore_into_a_drill_target_is_refused() -> None:
    h = harness()
    body = {"backup_instance": {"id": BI_ID}, "target": {"kind": "server", "server_id": DRILL_SERVER}}
    resp = api.create(json.dumps(body).encode(), headers={}, base_url="http://x/api", deps=h.deps)
    assert resp.status == 400 and resp.body["error"]["code"] == "DrillTargetReserved"
    assert resp.body["error"]["field"] == "target.server_id"
    assert h.store.active() == []


def test_a_client_may_not_use_the_drill_key_prefix() -> None:
    h = harness()
    body = {"backup_instance": {"id": BI_ID}, "target": {"kind": "server", "server_id": OTHER_FLEX}}
    resp = api.create(json.dumps(body).encode(), headers={"Idempotency-Key": "drill:nightly:x"},
                      base_url="http://x/api", deps=h.deps)
    assert resp.status == 400 and "reserved" in resp.body["error"]["message"]


# ---------------------------------------------------------------------------------------------- scheduling
def test_a_new_drill_never_fires_for_the_past() -> None:
    d = parse_drill(definition(schedule="0 0 * * * *"))
    created = datetime(2026, 11, 24, 8, 30, tzinfo=UTC)
    assert scheduler.due_occurrence(d, created + timedelta(minutes=10), created) is None
    assert scheduler.due_occurrence(d, created + timedelta(minutes=31), created) == datetime(2026, 11, 24, 9,
                                                                                              tzinfo=UTC)


def test_a_missed_schedule_runs_once_the_latest_occurrence() -> None:
    d = parse_drill(definition(schedule="0 0 * * * *"))
    since = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
    after_downtime = datetime(2026, 11, 24, 5, 17, tzinfo=UTC)  # 01:00 .. 05:00 were missed
    assert scheduler.due_occurrence(d, after_downtime, since) == datetime(2026, 11, 24, 5, 0, tzinfo=UTC)


def test_starts_are_spread_evenly_over_the_window() -> None:
    s = datetime(2026, 11, 24, 2, tzinfo=UTC)
    due = scheduler.spread(["c", "a", "b", "d"], s, 60)
    assert due == [("a", s), ("b", s + timedelta(minutes=15)), ("c", s + timedelta(minutes=30)),
                   ("d", s + timedelta(minutes=45))]
    assert scheduler.spread(["x"], s, 0) == [("x", s)]


def test_run_keys_name_the_drill_the_time_and_the_instance() -> None:
    s = datetime(2026, 11, 24, 2, tzinfo=UTC)
    key = store.run_key("nightly", s, BI_ID)
    assert key.startswith("nightly:20261124T020000Z:") and key == store.run_key("nightly", s, BI_ID.upper())
    assert store.idempotency_key(key) == "drill:" + key
    assert key != store.run_key("nightly", s + timedelta(days=1), BI_ID)


def points() -> list[RecoveryPointInfo]:
    return [RecoveryPointInfo(f"p{i}", T0 - timedelta(days=i), Tier.ARCHIVE if i > 20 else Tier.VAULT)
            for i in range(30)] + [RecoveryPointInfo("partial", T0, Tier.VAULT, state="Partial")]


def test_point_selection_latest_oldest_and_random_within_days() -> None:
    pts = points()
    assert scheduler.select_point(pts, PointSelection(), now=T0, seed="k").id == "p0"  # partial is no proof
    assert scheduler.select_point(pts, PointSelection(select="oldest"), now=T0, seed="k").id == "p29"
    sel = PointSelection(select="random", within_days=7)
    picks = {scheduler.select_point(pts, sel, now=T0, seed=f"k{i}").id for i in range(200)}
    assert picks == {f"p{i}" for i in range(8)}  # every point of the last 7 days, none older
    assert scheduler.select_point(pts, sel, now=T0, seed="same") == scheduler.select_point(pts, sel, now=T0,
                                                                                          seed="same")
    assert scheduler.select_point([], PointSelection(), now=T0, seed="k") is None


def define(h: Harness, **changes: Any) -> None:
    resp = drills_api.create(json.dumps(definition(**changes)).encode(), deps=h.deps)
    assert resp.status == 201, resp.body


def test_a_due_drill_starts_one_restore_and_a_rerun_tick_starts_nothing_twice() -> None:
    h = harness()
    define(h, schedule="0 0 9 * * *", start_window_minutes=0)
    assert scheduler.tick(h.deps).started == []  # 08:00: not due yet
    h.clock.now = datetime(2026, 11, 24, 9, 0, 30, tzinfo=UTC)
    report = scheduler.tick(h.deps)
    assert len(report.started) == 1, report
    (run,) = store.list_runs(h.deps, "nightly")
    rec = h.store.get(run["restore_id"])
    assert rec is not None and rec.source == "drill" and rec.idempotency_key == "drill:" + run["run_key"]
    assert rec.request["target"]["server_id"] == DRILL_SERVER
    token = store.run_token(run["run_key"])
    assert rec.request["target"]["suffix"] == f"_drill_{token}"
    assert rec.request["target"]["checks"][0]["database"] == f"salesdb_drill_{token}"
    assert rec.request["recovery_point"] == {"id": "9da55e757af94261afa009b43cd3222a"}
    listed = api.list_restores({"started_by": "drill"}, deps=h.deps).body["items"]
    assert [i["id"] for i in listed] == [rec.id]
    assert listed[0]["started_by"] == {"door": "drill", "drill_run": run["run_key"]}
    # the tick again, and a tick that lost the run's state (a crash after the submit): no second restore
    assert scheduler.tick(h.deps).started == []
    found = store.get_run(h.deps, "nightly", run["run_key"])
    assert found is not None
    store.update_run(h.deps, {**found[0], "state": "starting"}, found[1])
    scheduler.tick(h.deps)
    assert [e.restore_id for e in h.store.active()] == [rec.id]


def test_instances_of_a_vault_are_filtered_spread_and_throttled() -> None:
    h = harness(RESTORE_DRILL_MAX_STARTS_PER_TICK="1")
    for name in ("hrdb", "crmdb", "salesdb2"):
        h.dp.instances.append(BackupInstanceInfo(f"{VAULT_ID}/backupInstances/pgsrv01-{name}", f"pgsrv01-{name}",
                                                 name, SINGLE_SERVER_DB, f"{SOURCE_SERVER_ID}/databases/{name}",
                                                 SOURCE_SERVER_ID, "Protected"))
    define(h, schedule="0 0 9 * * *", start_window_minutes=30, max_concurrent=5,
           backup_instances={"vaults": [VAULT_ID], "datasource_pattern": "sales*"})
    listed = h.dp.calls["list_backup_instances"]  # the definition's check of the vault's sources
    h.clock.now = datetime(2026, 11, 24, 9, 0, 0, tzinfo=UTC)
    first = scheduler.tick(h.deps)
    assert len(first.started) == 1 and first.deferred == []  # salesdb now, salesdb2 in 15 minutes
    h.clock.now += timedelta(minutes=20)
    assert len(scheduler.tick(h.deps).started) == 1
    runs = store.list_runs(h.deps, "nightly")
    assert {r["backup_instance_id"] for r in runs} == {BI_ID, f"{VAULT_ID}/backupInstances/pgsrv01-salesdb2"}
    assert h.dp.calls["list_backup_instances"] == listed + 1  # the plan is written once
    assert scheduler.tick(h.deps).started == []


def test_the_concurrency_limit_defers_and_a_late_start_says_so() -> None:
    h = harness()
    h.dp.instances.append(BackupInstanceInfo(f"{VAULT_ID}/backupInstances/pgsrv01-b", "pgsrv01-b", "b",
                                             SINGLE_SERVER_DB, f"{SOURCE_SERVER_ID}/databases/b", SOURCE_SERVER_ID,
                                             "Protected"))
    define(h, schedule="0 0 9 * * *", start_window_minutes=0, max_concurrent=1,
           backup_instances={"vaults": [VAULT_ID]})
    h.clock.now = datetime(2026, 11, 24, 9, 0, 0, tzinfo=UTC)
    report = scheduler.tick(h.deps)
    assert len(report.started) == 1 and len(report.deferred) == 1
    # the first run's restore ends; the second starts late
    (run,) = store.list_runs(h.deps, "nightly")
    finish_restore(h, run["restore_id"], Status.SUCCEEDED)
    h.clock.now += timedelta(minutes=10)
    assert len(scheduler.tick(h.deps).started) == 1
    late = [r for r in store.list_runs(h.deps, "nightly") if r["run_key"] != run["run_key"]][0]
    assert late["late_by_seconds"] == 600


def test_run_now_starts_every_instance_marked_manual() -> None:
    h = harness()
    define(h)
    resp = drills_api.run_now("nightly", deps=h.deps)
    assert resp.status == 202 and len(resp.body["items"]) == 1 and resp.body["items"][0]["manual"] is True
    assert "request" not in resp.body["items"][0]
    assert len(h.store.active()) == 1


# ------------------------------------------------------------------------------------------------ evidence
def finish_restore(h: Harness, restore_id: str, status: Status, *, verify: dict[str, Any] | None = None) -> None:
    rec = h.store.get(restore_id)
    assert rec is not None
    start = rec.created_at
    times = {"validate": {"started": iso(start), "finished": iso(start + timedelta(seconds=20))},
             "replay": {"started": iso(start + timedelta(seconds=20)), "finished": iso(start + timedelta(minutes=9))},
             "verify": {"started": iso(start + timedelta(minutes=9)), "finished": iso(start + timedelta(minutes=10))}}
    done = rec.copy(status=status, stage=None, updated_at=start + timedelta(minutes=10), stage_times=times,
                    recovery_point_id="9da55e757af94261afa009b43cd3222a", tier="vault",
                    recovery_point_time=start - timedelta(hours=6), target_resource=DRILL_SERVER,
                    verify_result=verify or {"passed": True, "checks": [{"name": "orders", "ok": True, "got": "t",
                                                                         "expect": "t"}],
                                             "databases": [{"database": "salesdb_drill_x", "tables": 2,
                                                            "rows": 340}]},
                    replay_result={"databases": [{"source": "salesdb", "database": "salesdb_drill_x"}]},
                    error_code=None if status == Status.SUCCEEDED else "VerificationFailed")
    from restore_core.pipeline import finish
    done = h.store.update(done)
    finish(h.deps, done)


def started_run(h: Harness, **changes: Any) -> dict[str, Any]:
    define(h, schedule="0 0 9 * * *", start_window_minutes=0, **changes)
    h.clock.now = datetime(2026, 11, 24, 9, 0, 0, tzinfo=UTC)
    scheduler.tick(h.deps)
    (run,) = store.list_runs(h.deps, "nightly")
    return run


def test_the_finish_hook_writes_immutable_evidence_with_rto_rpo_and_checks() -> None:
    h = harness()
    run = started_run(h)
    finish_restore(h, run["restore_id"], Status.SUCCEEDED)
    (run,) = store.list_runs(h.deps, "nightly")
    assert run["state"] == "validating" and run["result"]["passed"] is True
    sink = h.deps.evidence
    assert isinstance(sink, MemoryEvidenceSink)
    doc = sink.get(run["evidence_blob"])
    assert doc is not None
    assert doc["recovery_point"]["id"] == "9da55e757af94261afa009b43cd3222a" and doc["recovery_point"]["tier"] == \
        "vault"
    assert doc["rpo_observed_seconds"] == 6 * 3600
    assert doc["rto"] == {"target_seconds": 1800, "observed_seconds": 600, "within_target": True,
                          "stages": {"validate": 20, "replay": 520, "verify": 60}}
    assert doc["checks"]["checks"][0]["ok"] is True and doc["outcome"]["status"] == "succeeded"
    assert doc["cleanup"] == {"status": "scheduled", "after": "2026-11-24T10:10:00Z"}
    assert doc["product_version"]
    # written once: a second hook call (a redelivery) changes nothing
    rec = h.store.get(run["restore_id"])
    assert rec is not None
    evidence.record_finish(h.deps, rec)
    assert sink.get(run["evidence_blob"]) == doc and len(sink.docs) == 1


def test_a_failed_drill_or_an_rto_over_target_is_recorded_as_such() -> None:
    h = harness()
    run = started_run(h, rto_target_minutes=5)
    finish_restore(h, run["restore_id"], Status.FAILED,
                   verify={"passed": False, "checks": [{"name": "orders", "ok": False, "got": "f", "expect": "t"}]})
    (run,) = store.list_runs(h.deps, "nightly")
    assert run["result"]["passed"] is False and run["result"]["rto_within_target"] is False
    assert run["result"]["checks"] == [{"name": "orders", "ok": False, "got": "f"}]


def test_a_lost_finish_hook_is_caught_up_by_the_timer() -> None:
    h = harness()
    run = started_run(h)
    sink = h.deps.evidence
    h.deps.evidence = None  # the hook fails (logged), the restore's bookkeeping goes on
    finish_restore(h, run["restore_id"], Status.SUCCEEDED)
    assert store.list_runs(h.deps, "nightly")[0]["state"] == "running"
    h.deps.evidence = sink
    assert scheduler.tick(h.deps).evidence == [run["run_key"]]
    assert store.list_runs(h.deps, "nightly")[0]["state"] == "validating"


def test_a_run_without_a_recovery_point_is_a_failed_run_with_evidence() -> None:
    h = harness()
    h.dp.points.clear()
    run = started_run(h)
    assert run["state"] == "done" and run["result"]["passed"] is False and "NoRecoveryPoint" in run["error"]
    assert h.store.active() == [] and store.open_runs(h.deps) == []


def test_a_transient_arm_error_retries_the_start_on_the_next_tick_and_a_refusal_fails_the_run() -> None:
    from restore_core.errors import AzureRejection, RetryableError

    h = harness()
    define(h, schedule="0 0 9 * * *", start_window_minutes=0)
    h.clock.now = datetime(2026, 11, 24, 9, 0, 0, tzinfo=UTC)
    h.dp.fail_before["list_recovery_points"] = [RetryableError("ARM 503")]
    report = scheduler.tick(h.deps)
    assert report.started == [] and report.errors and store.list_runs(h.deps, "nightly") == []
    assert len(scheduler.tick(h.deps).started) == 1 and store.list_runs(h.deps, "nightly")[0]["state"] == "running"
    h2 = harness()
    define(h2, schedule="0 0 9 * * *", start_window_minutes=0)
    h2.clock.now = h.clock.now
    h2.dp.fail_before["list_recovery_points"] = [AzureRejection("ResourceNotFound", "backup instance is gone")]
    scheduler.tick(h2.deps)
    (run,) = store.list_runs(h2.deps, "nightly")
    assert run["state"] == "done" and run["error"].startswith("ResourceNotFound") and not run["result"]["passed"]


# ------------------------------------------------------------------------------------------------ clean-up
def test_clean_up_selects_only_databases_carrying_this_restores_mark() -> None:
    rid = "20261124T090000-0123456789"
    dbs = {"salesdb_drill_ab": mark_of(rid), "decoy": None, "salesdb_drill_cd": mark_of("20261124T090000-ffffffffff"),
           "people": "created by someone else", "prefix_of_mark": mark_of(rid)[:-1], "postgres": None,
           "longer_mark": mark_of(rid) + "0"}
    assert cleanup.databases_to_drop(dbs, rid) == ["salesdb_drill_ab"]


def test_clean_up_also_drops_this_restores_unmarked_pending_database_and_nobody_elses() -> None:
    """A replay killed between CREATE DATABASE and its COMMENT leaves a database under the restore's pending name."""
    rid = "20261124T090000-0123456789"
    other = "20261124T090000-ffffffffff"
    mine = pending_name(rid, "salesdb_drill_ab")
    dbs = {mine: None, pending_name(other, "salesdb_drill_ab"): None,
           pending_name(rid, "hrdb_drill_ab"): "created by someone else", "restore_pending_": None}
    assert cleanup.databases_to_drop(dbs, rid) == [mine]
    assert mine.startswith(pending_prefix(rid)) and len(mine) <= 63


def test_clean_up_waits_for_the_window_retries_a_failure_and_records_it(monkeypatch: pytest.MonkeyPatch) -> None:
    h = harness()
    run = started_run(h, validation_window_minutes=30)
    finish_restore(h, run["restore_id"], Status.SUCCEEDED)
    calls: list[str] = []

    def failing(deps: Any, r: dict[str, Any]) -> dict[str, Any]:
        calls.append(r["run_key"])
        raise ConnectionError("server unreachable")

    monkeypatch.setattr(cleanup, "clean", failing)
    h.clock.now += timedelta(minutes=10)  # restore ended 09:10, window 30 min
    assert scheduler.tick(h.deps).cleanup_failed == [] and calls == []
    h.clock.now += timedelta(minutes=31)
    assert scheduler.tick(h.deps).cleanup_failed == [run["run_key"]]
    (failed,) = store.list_runs(h.deps, "nightly")
    assert failed["state"] == "validating" and failed["cleanup"]["status"] == "failed"
    assert failed["cleanup"]["attempts"] == 1 and "server unreachable" in failed["cleanup"]["error"]
    monkeypatch.setattr(cleanup, "clean", lambda deps, r: {"status": "done", "dropped": ["salesdb_drill_x"],
                                                            "left_unmarked": [], "staged_deleted": 0})
    assert scheduler.tick(h.deps).cleaned == [run["run_key"]]
    (done,) = store.list_runs(h.deps, "nightly")
    assert done["state"] == "done" and done["cleanup"]["attempts"] == 2
    assert h.deps.evidence.get(done["cleanup"]["evidence_blob"])["dropped"] == ["salesdb_drill_x"]  # type: ignore
    assert store.open_runs(h.deps) == []
    assert drills_api.runs("nightly", deps=h.deps).body["items"][0]["cleanup"]["status"] == "done"


def test_runs_of_a_deleted_drill_are_still_cleaned_up(monkeypatch: pytest.MonkeyPatch) -> None:
    h = harness()
    run = started_run(h, validation_window_minutes=0)
    drills_api.delete("nightly", deps=h.deps)
    finish_restore(h, run["restore_id"], Status.FAILED)
    monkeypatch.setattr(cleanup, "clean", lambda deps, r: {"status": "done", "dropped": [], "left_unmarked": [],
                                                            "staged_deleted": 0})
    h.clock.now += timedelta(minutes=11)
    assert scheduler.tick(h.deps).cleaned == [run["run_key"]]


def test_restore_record_of_a_drill_keeps_its_stage_times() -> None:
    # guard for finish_restore above: the fields it sets are real record fields
    assert {"stage_times", "verify_result", "replay_result"} <= set(RestoreRecord.model_fields)
    assert Stage.VERIFY.value == "verify" and SUB


# ------------------------------------------------------------------------- region: secondary (Cross Region Restore)
def secondary_points() -> list[RecoveryPointInfo]:
    """The secondary region's own list: other ids, and behind the primary (replication lag), plus a Partial point."""
    return [RecoveryPointInfo(f"s{i}", T0 - timedelta(days=i, hours=6), Tier.VAULT) for i in range(10)] + \
        [RecoveryPointInfo("s-partial", T0 - timedelta(hours=1), Tier.VAULT, state="Partial")]


@pytest.mark.parametrize(("selection", "expected"), [
    ({"select": "latest"}, {"s0"}), ({"select": "oldest"}, {"s9"}),
    ({"select": "random", "within_days": 3}, {"s0", "s1", "s2"})])
def test_a_secondary_region_drill_chooses_its_point_from_the_secondary_list(
        monkeypatch: pytest.MonkeyPatch, selection: dict[str, Any], expected: set[str]) -> None:
    h = harness()
    asked: list[tuple[str, str]] = []

    def fetch(bi: Any, *, secondary: str, primary: str) -> list[RecoveryPointInfo]:
        asked.append((secondary, primary))
        return secondary_points()

    monkeypatch.setattr(h.dp, "fetch_secondary_recovery_points", fetch)
    define(h, schedule="0 0 9 * * *", start_window_minutes=0, region="secondary", recovery_point=selection)
    h.clock.now = datetime(2026, 11, 24, 9, 0, 0, tzinfo=UTC)
    scheduler.tick(h.deps)
    (run,) = store.list_runs(h.deps, "nightly")
    assert asked == [("northeurope", "westeurope")], "the vault's replicated region, for its primary location"
    assert run["request"]["region"] == "secondary"
    assert run["request"]["recovery_point"]["id"] in expected
    assert run["state"] == "running", run


def test_a_secondary_region_drill_of_a_vault_without_cross_region_restore_is_a_failed_run_with_the_reason() -> None:
    from dataclasses import replace

    h = harness()
    h.dp.vault = replace(h.dp.vault, crr_enabled=False)
    define(h, schedule="0 0 9 * * *", start_window_minutes=0, region="secondary")
    h.clock.now = datetime(2026, 11, 24, 9, 0, 0, tzinfo=UTC)
    scheduler.tick(h.deps)
    (run,) = store.list_runs(h.deps, "nightly")
    assert run["state"] == "done" and run["error"].startswith("CrossRegionRestoreNotEnabled"), run
    assert run["result"]["passed"] is False and h.store.active() == []


def test_a_primary_region_drill_never_reads_the_secondary_list(monkeypatch: pytest.MonkeyPatch) -> None:
    h = harness()
    monkeypatch.setattr(h.dp, "fetch_secondary_recovery_points", lambda *a, **k: pytest.fail("secondary read"))
    define(h, schedule="0 0 9 * * *", start_window_minutes=0)
    h.clock.now = datetime(2026, 11, 24, 9, 0, 0, tzinfo=UTC)
    scheduler.tick(h.deps)
    (run,) = store.list_runs(h.deps, "nightly")
    assert run["request"]["recovery_point"] == {"id": "9da55e757af94261afa009b43cd3222a"}
