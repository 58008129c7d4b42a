"""Issue 14 on the real local stack (host, Azurite, Data Protection emulator, PostgreSQL): a refusal for every case
named in the issue's "Why", the preview through the API and ``restorectl plan``."""

from __future__ import annotations

import io
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from localdev import restorectl
from localdev import scenarios as sc

from .helpers import dsn, jobs_restoring_to, queue, start, wait_for


def uniq(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def rows_since(api: Any, t0: datetime) -> list[dict[str, Any]]:
    status, page, _ = api.get(f"/restores?limit=200&since={t0.isoformat().replace('+00:00', 'Z')}")
    assert status == 200, page
    return list(page["items"])


def depth(env: dict[str, str], name: str) -> int:
    return int(queue(env, name).get_queue_properties().approximate_message_count)


STAGE_QUEUES = ("restore-validate", "restore-rehydrate", "restore-wait", "restore-trigger", "restore-monitor")


def test_salesdb_copy_on_the_production_source_server_is_refused(local_stack: Any, api: Any) -> None:
    name = uniq("salesdb_copy")
    rid = start(api, sc.as_database(name, server=sc.SRC_SERVER))
    body = wait_for(api, rid)
    assert body["status"] == "rejected", body
    assert body["error"]["code"] == "RestoreBesideSourceNotRequested", body["error"]
    assert "beside_source" in body["error"]["fix"] and "drop" not in body["error"]["fix"].lower()
    assert jobs_restoring_to(local_stack.env, name) == []  # nothing was paid for: no Azure job


def test_three_identical_requests_without_a_key_start_one_restore(local_stack: Any, api: Any) -> None:
    name = uniq("it_thrice")
    request = sc.as_database(name)
    with ThreadPoolExecutor(3) as pool:
        ids = list(pool.map(lambda _: start(api, request), range(3)))
    assert len(set(ids)) == 3  # three requests, three records: no key says they are the same
    ends = {rid: wait_for(api, rid, timeout=120) for rid in ids}
    ran = [rid for rid, b in ends.items() if b["status"] == "succeeded"]
    assert len(ran) == 1, {rid: (b["status"], b.get("error")) for rid, b in ends.items()}
    for rid, b in ends.items():
        if rid not in ran:
            assert b["status"] == "rejected" and b["error"]["code"] == "DestinationBusy", b["error"]
            assert ran[0] in b["error"]["message"] and ran[0] in b["error"]["fix"]
    assert len(jobs_restoring_to(local_stack.env, name)) == 1  # one Azure restore job, not three


def test_a_preview_answers_no_at_once_and_the_plan_otherwise_creating_nothing(local_stack: Any, api: Any) -> None:
    env = local_stack.env
    t0 = datetime.now(UTC) - timedelta(seconds=2)
    before, depths = {r["id"] for r in rows_since(api, t0)}, {q: depth(env, q) for q in STAGE_QUEUES}
    refused_name, planned_name = uniq("pv_copy"), uniq("pv_plan")

    status, no, _ = api.post("/restores/preview", sc.as_database(refused_name, server=sc.SRC_SERVER))
    assert status == 200 and no["would_start"] is False, no
    assert no["error"]["code"] == "RestoreBesideSourceNotRequested" and no["error"]["fix"]

    status, plan, _ = api.post("/restores/preview", sc.as_database(planned_name, recovery_point={
        "latest_before": sc.days_ago(3).isoformat()}))
    assert status == 200 and plan["would_start"] is True, plan
    assert plan["recovery_point"]["tier"] in ("vault", "archive") and plan["recovery_point"]["time"]
    assert plan["data_loss"]["to_what"] == "latest_before" and plan["data_loss"]["seconds"] > 0
    assert plan["azure_request"]["path"].startswith(sc.BI_SALES + "/restore?api-version=2026-06-01")
    target = plan["azure_request"]["body"]["restoreTargetInfo"]
    assert target["datasourceInfo"]["resourceName"] == planned_name and target["recoveryOption"] == "FailIfExists"
    assert "Azure validate" in plan["guards_passed"]

    status, bad, _ = api.post("/restores/preview", {"target": {}})
    assert status == 400 and bad["error"]["field"]

    assert {r["id"] for r in rows_since(api, t0)} == before  # no restore row
    assert {q: depth(env, q) for q in STAGE_QUEUES} == depths  # no message
    assert jobs_restoring_to(env, planned_name) == [] and jobs_restoring_to(env, refused_name) == []


def test_a_name_clash_is_answered_by_the_preview_with_a_fix_that_drops_nothing(local_stack: Any, api: Any) -> None:
    name = uniq("pv_clash")
    with psycopg.connect(dsn(local_stack.env, "pgsrv-restore", "postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    status, body, _ = api.post("/restores/preview", sc.as_database(name))
    assert status == 200 and body["would_start"] is False, body
    assert body["error"]["code"] == "UserErrorDatabaseNameAlreadyInUse"
    assert "new target.database_name" in body["error"]["fix"] and "drop" not in body["error"]["fix"].lower()


def test_a_server_target_preview_connects_and_plans_the_names(local_stack: Any, api: Any) -> None:
    suffix = "_" + uuid.uuid4().hex[:6]
    status, body, _ = api.post("/restores/preview", sc.into_server(databases=[{"source": "inventory"}],
                                                                   suffix=suffix))
    assert status == 200 and body["would_start"] is True, body
    assert body["server"]["plan"]["names"] == {"inventory": f"inventory{suffix}"}
    assert body["server"]["plan"]["connect_as"]  # the live connection and privilege checks ran
    assert body["azure_request"]["body"]["restoreTargetInfo"]["objectType"] == "RestoreFilesTargetInfo"
    with psycopg.connect(dsn(local_stack.env, "pgflex-target", "postgres")) as conn:
        made = conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (f"inventory{suffix}",)).fetchone()
    assert made == (0,)  # nothing created
    status, body, _ = api.post("/restores/preview", sc.into_server(bi=sc.BI_FLEX, server=sc.SRC_FLEX))
    assert body["would_start"] is False and body["error"]["code"] == "RestoreBesideSourceNotRequested"


def test_restorectl_plan_prints_the_plan_or_the_refusal(local_stack: Any) -> None:
    env = {"RESTORE_API_URL": local_stack.env["RESTORE_API_URL"], "RESTORE_API_KEY": local_stack.env["RESTORE_API_KEY"]}
    t0 = datetime.now(UTC) - timedelta(seconds=2)
    common = ["plan", "--backup-instance", sc.BI_SALES, "--secret-uri", sc.SECRET_RESTORE]
    out, err = io.StringIO(), io.StringIO()
    code = restorectl.main([*common, "--server", sc.TARGET_SERVER, "--database", uniq("cli_plan")], out=out, err=err,
                           env=env)
    assert code == 0, err.getvalue()
    text = out.getvalue()
    assert text.startswith("would start:") and "recovery point" in text and "/restore?api-version=" in text
    out = io.StringIO()
    code = restorectl.main([*common, "--server", sc.SRC_SERVER, "--database", "salesdb_copy"], out=out, err=err,
                           env=env)
    assert code == restorectl.EXIT_FAILED
    assert "would NOT start: RestoreBesideSourceNotRequested" in out.getvalue() and "fix:" in out.getvalue()
    out = io.StringIO()
    code = restorectl.main(["--json", *common, "--server", sc.SRC_SERVER, "--database", "salesdb_copy",
                            "--beside-source"], out=out, err=err, env=env)
    assert code == 0, out.getvalue()
    assert json.loads(out.getvalue())["would_start"] is True
    api = restorectl.ApiClient(env["RESTORE_API_URL"].rstrip("/"), env["RESTORE_API_KEY"])
    assert not [r for r in api.list_all(since=t0.isoformat()) if r.get("source") == "http"
                and "cli_plan" in json.dumps(r)]


STORM_DB = "salesdb_storm_{alert_short}"


@pytest.fixture(scope="module")
def guarded_host(local_stack: Any) -> Any:
    plan = sc.alert_plan(database_pattern=STORM_DB)
    plan[sc.SRC_SERVER]["cooldown_minutes"] = 30
    local_stack.restart_host({"RESTORE_PLANS": sc.plans_setting(plan), "RESTORE_PREVIEW_PER_MINUTE": "2",
                              "RESTORE_PROTECTED_SERVERS": sc.TARGET_LEGACY})
    yield local_stack
    local_stack.restart_host()


def test_five_alerts_within_a_second_start_one_restore(guarded_host: Any, api: Any) -> None:
    env = guarded_host.env
    t0 = datetime.now(UTC) - timedelta(seconds=2)
    fired = sc.days_ago(3)
    guids = [str(uuid.uuid4()) for _ in range(5)]
    q = queue(env, "restore-requests")
    began = time.monotonic()
    for guid in guids:
        q.send_message(json.dumps(sc.alert_payload(guid, fired)))
    assert time.monotonic() - began < 1.0
    rows: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rows = [r for r in rows_since(api, t0) if r["source"] == "alert"]
        if len(rows) >= 5:
            break
        time.sleep(0.3)
    assert len(rows) == 5, rows
    runs = [r for r in rows if r["status"] != "rejected"]
    deduped = [r for r in rows if r["status"] == "rejected"]
    assert len(runs) == 1 and len(deduped) == 4, [(r["status"], r.get("error")) for r in rows]
    for r in deduped:
        assert r["error"]["code"] == "AlertDeduplicated" and runs[0]["id"] in r["error"]["message"], r["error"]
    assert wait_for(api, runs[0]["id"], timeout=120)["status"] == "succeeded"


def test_a_protected_server_is_refused_at_once_with_400(guarded_host: Any, api: Any) -> None:
    status, body, _ = api.post("/restores", sc.as_database(uniq("x_prot"), server=sc.TARGET_LEGACY,
                                                          secret=sc.SECRET_LEGACY))
    assert status == 400 and body["error"]["code"] == "TargetServerProtected", body
    assert "beside_source" in body["error"]["fix"] and "drop" not in body["error"]["fix"].lower()


def test_previews_beyond_the_budget_answer_429_with_retry_after(guarded_host: Any, api: Any) -> None:
    # 5 within a second: even split by a minute boundary, one side holds 3 > the budget of 2
    answers = [api.post("/restores/preview", sc.as_database(uniq("pv_budget"))) for _ in range(5)]
    statuses = [a[0] for a in answers]
    assert 429 in statuses, statuses
    refused = answers[statuses.index(429)]
    assert refused[1]["error"]["code"] == "PreviewBudgetExceeded" and int(refused[2]["retry-after"]) >= 1
