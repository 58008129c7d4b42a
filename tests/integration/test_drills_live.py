"""Restore drills on the real local stack (issue 15): a drill defined through the API is started by the drill timer
of the local Functions host, restores into the drill-only server, leaves its evidence in the write-once container,
and after its validation window its databases are dropped while decoys stay."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from azure.storage.blob import BlobServiceClient

from localdev import restorectl
from localdev import scenarios as sc
from restore_core.drills import store
from restore_core.pgtarget import mark_of

from .helpers import admin, completion_events, dsn, replay_pids

CLUSTER = "pgflex-drills"  # the drill-only server of the demo world (localdev/worlds/demo.yaml)
DRILL_SERVER = sc.TARGET_FLEX.replace("pgflex-target", "pgflex-drills")


def q(env: dict[str, str], sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn(env, CLUSTER, "postgres"), connect_timeout=10, autocommit=True) as c:
        cur = c.execute(sql, args or None)
        return cur.fetchall() if cur.description else []


def databases(env: dict[str, str]) -> dict[str, str | None]:
    return dict(q(env, "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database"))


def wait_run(api: Any, drill_id: str, done: Any, timeout: float) -> dict[str, Any]:
    deadline, items = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        status, body, _ = api.get(f"/drills/{drill_id}/runs")
        assert status == 200, body
        items = body["items"]
        if items and done(items[0]):
            return dict(items[0])
        time.sleep(0.5)
    raise AssertionError(f"drill {drill_id}: runs {json.dumps(items, indent=1)} after {timeout}s")


def wait_for_events(env: dict[str, str], run_key: str, timeout: float = 30) -> list[dict[str, Any]]:
    """The drill run's completion events (received with a 5 s visibility: polled every 6 s)."""
    deadline = time.monotonic() + timeout
    while True:
        found = completion_events(env, run_key, event_type="drill.run.finished", key="run_key")
        if found or time.monotonic() > deadline:
            return found
        time.sleep(6)


def evidence(env: dict[str, str], name: str) -> dict[str, Any]:
    blobs = BlobServiceClient.from_connection_string(env["AZURE_STORAGE_CONNECTION_STRING"])
    doc: dict[str, Any] = json.loads(blobs.get_container_client("drill-evidence").download_blob(name).readall())
    return doc


def test_a_drill_defined_through_the_api_runs_on_a_tick_leaves_evidence_and_is_cleaned_up(local_stack, api):
    env = local_stack.env
    tag = uuid.uuid4().hex[:6]
    decoy = f"inventory_drill_{tag}"  # a drill-like name nobody marked
    foreign = f"appdb_drill_{tag}"  # marked by another restore
    q(env, f'CREATE DATABASE "{decoy}"')
    q(env, f'CREATE DATABASE "{foreign}"')
    q(env, f"""COMMENT ON DATABASE "{foreign}" IS '{mark_of("20261124T090000-0123456789")}'""")
    fire = datetime.now(UTC) + timedelta(seconds=12)  # a daily schedule that fires once, a few seconds from now
    drill_id = f"live-{tag}"
    body = {"id": drill_id, "schedule": f"{fire.second} {fire.minute} {fire.hour} * * *", "start_window_minutes": 0,
            "backup_instances": {"ids": [sc.BI_FLEX]}, "recovery_point": {"select": "latest"},
            "target": {"server_id": DRILL_SERVER, "database_suffix": "_d{run}"},
            "checks": [{"name": "items", "database": "inventory", "sql": "SELECT count(*) FROM items",
                        "expect": "50"}],
            "rto_target_minutes": 10, "validation_window_minutes": 0.15}
    status, created, _ = api.post("/drills", body)
    assert status == 201, created
    # an ordinary restore into the drill server is refused
    status, refused, _ = api.post("/restores", sc.into_server(server=DRILL_SERVER))
    assert status == 400 and refused["error"]["code"] == "DrillTargetReserved", refused

    run = wait_run(api, drill_id, lambda r: r["state"] in ("validating", "done"), timeout=200)
    assert run["result"]["passed"] is True, json.dumps(run, indent=1)
    assert run["manual"] is False and run["scheduled_at"] == fire.strftime("%Y-%m-%dT%H:%M:%SZ")
    status, restore, _ = api.get(f"/restores/{run['restore_id']}")
    assert restore["status"] == "succeeded" and restore["source"] == "drill"
    doc = evidence(env, run["evidence_blob"])
    assert doc["restore_id"] == run["restore_id"] and doc["recovery_point"]["id"]
    assert doc["rpo_observed_seconds"] > 0 and doc["rto"]["observed_seconds"] > 0
    assert doc["rto"]["within_target"] is True and {"validate", "replay", "verify"} <= set(doc["rto"]["stages"])
    assert doc["checks"]["checks"][0]["name"] == "items" and doc["checks"]["checks"][0]["ok"] is True
    restored = set(doc["databases"])
    assert restored and all(n.startswith(("appdb_d", "inventory_d")) for n in restored)
    # one completion event for the run on the events queue, with the result the evidence holds
    (event,) = wait_for_events(env, run["run_key"])
    assert event["event_id"] == run["completion_event"]["id"] and event["restore_id"] == run["restore_id"]
    assert event["passed"] is True and event["rto_within_target"] is True and event["checks_passed"] == 1
    assert event["rto_seconds"] == doc["rto"]["observed_seconds"] and event["evidence_blob"] == run["evidence_blob"]
    # the dashboard's read: the last run of the drill's instance, through the real host's routing
    status, latest, _ = api.get("/drills/runs/latest?trend=5")
    mine = [i for i in latest["items"] if i["drill_id"] == drill_id]
    assert status == 200 and len(mine) == 1 and mine[0]["last"]["run_key"] == run["run_key"], latest
    assert mine[0]["last"]["passed"] is True and [t["run_key"] for t in mine[0]["trend"]] == [run["run_key"]]

    run = wait_run(api, drill_id, lambda r: r["state"] == "done", timeout=90)
    assert run["cleanup"]["status"] == "done" and sorted(run["cleanup"]["dropped"]) == sorted(restored)
    after = databases(env)
    assert not restored & set(after), "the drill's databases are dropped"
    assert decoy in after and after[foreign] == mark_of("20261124T090000-0123456789"), "the decoys stay"
    cleanup_doc = evidence(env, run["cleanup"]["evidence_blob"])
    assert sorted(cleanup_doc["dropped"]) == sorted(restored)
    # restorectl shows the run with its verdict, RTO against the target and clean-up
    out = io.StringIO()
    cli_env = {"RESTORE_API_URL": env["RESTORE_API_URL"], "RESTORE_API_KEY": env["RESTORE_API_KEY"]}
    assert restorectl.main(["drills", "runs", drill_id], out=out, env=cli_env) == 0
    assert "PASS" in out.getvalue() and "clean-up done" in out.getvalue() and run["restore_id"] in out.getvalue()
    # one occurrence, one run: later ticks start nothing more
    time.sleep(6)
    status, runs, _ = api.get(f"/drills/{drill_id}/runs")
    assert len(runs["items"]) == 1
    assert len(completion_events(env, run["run_key"], event_type="drill.run.finished", key="run_key")) == 1
    assert api.request("DELETE", f"/drills/{drill_id}", None, None)[0] == 204


def staged(env: dict[str, str], restore_id: str) -> list[str]:
    c = BlobServiceClient.from_connection_string(env["AZURE_STORAGE_CONNECTION_STRING"]).get_container_client(
        sc.STAGING_WE)
    return [b.name for b in c.list_blobs(name_starts_with=restore_id)] + \
        [b.name for b in c.list_blobs(name_starts_with=f"_plans/{restore_id}")]


def test_run_now_with_a_check_that_tries_to_write_fails_as_a_check_changes_nothing_and_still_cleans_up(
        local_stack, api):
    env = local_stack.env
    drill_id = f"write-{uuid.uuid4().hex[:6]}"
    body = {"id": drill_id, "schedule": "0 0 0 1 1 *", "start_window_minutes": 0,
            "backup_instances": {"ids": [sc.BI_FLEX]}, "target": {"server_id": DRILL_SERVER},
            "checks": [{"name": "writes", "database": "inventory", "sql": "DELETE FROM items RETURNING 1",
                        "expect": "1"}],
            "rto_target_minutes": 10, "validation_window_minutes": 0.1}
    status, created, _ = api.post("/drills", body)
    assert status == 201, created
    status, started, _ = api.post(f"/drills/{drill_id}/run", None)
    assert status == 202 and len(started["items"]) == 1 and started["items"][0]["manual"] is True, started

    run = wait_run(api, drill_id, lambda r: r["state"] in ("validating", "done"), timeout=200)
    assert run["result"]["passed"] is False and run["result"]["status"] == "failed", json.dumps(run, indent=1)
    (check,) = evidence(env, run["evidence_blob"])["checks"]["checks"]
    assert check["name"] == "writes" and check["ok"] is False and "read-only" in check["error"]
    inventory = next(n for n in run["result"]["databases"] if n.startswith("inventory"))
    with psycopg.connect(dsn(env, CLUSTER, inventory), connect_timeout=10) as c:
        assert c.execute("SELECT count(*) FROM items").fetchone() == (50,)  # the check changed nothing
    assert staged(env, run["restore_id"]), "a failed restore keeps its staged files until the drill's clean-up"

    run = wait_run(api, drill_id, lambda r: r["state"] == "done", timeout=90)
    assert sorted(run["cleanup"]["dropped"]) == sorted(run["result"]["databases"])
    assert not set(run["result"]["databases"]) & set(databases(env))
    assert staged(env, run["restore_id"]) == [] and run["cleanup"]["staged_deleted"] > 0


def test_a_secondary_region_drill_restores_the_latest_point_of_the_secondary_list(local_stack, api):
    """Cross Region Restore: the secondary region has not received the primary's newest point yet (a replication
    lag); a drill with region secondary and select latest restores the secondary list's latest point."""
    env = local_stack.env
    adm = admin(env)
    before = adm.config()["crr_replication_lag"]
    name = sc.BI_FLEX.rsplit("/", 1)[-1]
    status, listed, _ = api.get(f"/backup-instances/{name}/recovery-points?limit=50")
    assert status == 200, listed
    points = sorted((p for p in listed["items"] if p["tier"] == "vault" and p.get("state") in (None, "Completed")),
                    key=lambda p: p["time"], reverse=True)
    newest, previous = points[:2]
    now = _time(adm.clock()["now"])
    lag = (now - _time(newest["time"])) + (_time(newest["time"]) - _time(previous["time"])) / 2
    adm.set_config(crr_replication_lag=f"PT{int(lag.total_seconds())}S")
    drill_id = f"crr-{uuid.uuid4().hex[:6]}"
    try:
        body = {"id": drill_id, "schedule": "0 0 0 1 1 *", "start_window_minutes": 0,
                "backup_instances": {"ids": [sc.BI_FLEX]}, "recovery_point": {"select": "latest"},
                "region": "secondary", "target": {"server_id": DRILL_SERVER, "database_suffix": "_c{run}"},
                "rto_target_minutes": 10, "validation_window_minutes": 0}
        assert api.post("/drills", body)[0] == 201
        status, started, _ = api.post(f"/drills/{drill_id}/run", None)
        assert status == 202, started
        run = wait_run(api, drill_id, lambda r: r["state"] in ("validating", "done"), timeout=240)
    finally:
        adm.set_config(crr_replication_lag=before)
    assert run["result"]["passed"] is True, json.dumps(run, indent=1)
    doc = evidence(env, run["evidence_blob"])
    assert doc["region"] == "secondary" and doc["recovery_point"]["id"] == previous["id"] != newest["id"]
    status, restore, _ = api.get(f"/restores/{run['restore_id']}")
    assert restore["restore_location"] == "northeurope"
    run = wait_run(api, drill_id, lambda r: r["state"] == "done", timeout=90)
    assert sorted(run["cleanup"]["dropped"]) == sorted(doc["databases"])
    assert api.request("DELETE", f"/drills/{drill_id}", None, None)[0] == 204


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_a_host_killed_during_a_drill_leaves_no_orphan_database_after_the_next_timer_pass(local_stack, api):
    """The Functions host and the replay execution die (SIGKILL) while a drill's restore is in replay and its
    database exists. After the restart the run ends with one evidence document, and once the validation window (0)
    has passed no database of the run is left on the drill server and its staged files are gone."""
    env = local_stack.env
    drill_id = f"kill-{uuid.uuid4().hex[:6]}"
    body = {"id": drill_id, "schedule": "0 0 0 1 1 *", "start_window_minutes": 0,
            "backup_instances": {"ids": [sc.BI_FLEX]}, "recovery_point": {"select": "latest"},
            "target": {"server_id": DRILL_SERVER, "database_suffix": "_k{run}"},
            "checks": [{"name": "whoami", "database": "inventory", "sql": "SELECT current_user",
                        "expect": "restore_checks"}],
            "rto_target_minutes": 10, "validation_window_minutes": 0}
    assert api.post("/drills", body)[0] == 201
    status, started, _ = api.post(f"/drills/{drill_id}/run", None)
    assert status == 202, started
    (first,) = started["items"]
    rid, token = first["restore_id"], store.run_token(first["run_key"])
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline and mark_of(rid) not in databases(env).values():
        time.sleep(0.05)
    assert mark_of(rid) in databases(env).values(), "the replay never created its database"
    pids = replay_pids(local_stack)
    local_stack.kill_host()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    local_stack.restart_host()

    run = wait_run(api, drill_id, lambda r: r["state"] == "done", timeout=300)
    assert run["result"]["passed"] is True or run.get("error") or run["result"].get("error_code"), run
    blobs = BlobServiceClient.from_connection_string(env["AZURE_STORAGE_CONNECTION_STRING"]).get_container_client(
        "drill-evidence")
    names = [b.name for b in blobs.list_blobs(name_starts_with=f"{drill_id}/")]
    assert sorted(n.rsplit("/", 1)[-1] for n in names) == ["cleanup.json", "evidence.json"], names
    doc = evidence(env, run["evidence_blob"])
    if run["result"]["passed"]:
        assert doc["checks"]["role"] == "restore_checks"
        assert doc["checks"]["checks"] == [{"name": "whoami", "ok": True, "got": "restore_checks",
                                            "expect": "restore_checks", "role": "restore_checks"}]
    after = databases(env)
    assert not [n for n, c in after.items() if c == mark_of(rid) or token in n], after
    assert staged(env, rid) == []
    assert run["cleanup"]["status"] == "done"
    assert api.request("DELETE", f"/drills/{drill_id}", None, None)[0] == 204
