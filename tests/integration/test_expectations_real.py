"""Issue 13 items 4 and 5 on the real local stack: a Cross Region Restore behind the primary says the data-loss gap
and where its job is visible; ``latest_before`` says its gap; a rehydration shows its expected window while it runs
(started with ``restorectl start --wait --retention-days``); a failure the Azure job reports is explained like a
validation error; a request time in another form than ISO-8601 with a zone is refused."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest

from localdev import restorectl
from localdev import scenarios as sc

from .helpers import admin, start, wait_for

SALES = sc.BI_SALES.rsplit("/", 1)[-1]


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.fixture
def emulator(local_stack: Any) -> Iterator[Any]:
    adm = admin(local_stack.env)
    adm.clear_faults()
    before = adm.config()
    yield adm
    adm.clear_faults()
    adm.set_config(crr_replication_lag=before["crr_replication_lag"])


def _complete_vault_points(api: Any) -> list[dict[str, Any]]:
    status, body, _ = api.get(f"/backup-instances/{SALES}/recovery-points?limit=50")
    assert status == 200, body
    return [p for p in body["items"] if p["tier"] == "vault" and p.get("state") in (None, "Completed")]


def cli(local_stack: Any, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    env = {"RESTORE_API_URL": local_stack.env["RESTORE_API_URL"], "RESTORE_API_KEY": local_stack.env["RESTORE_API_KEY"]}
    code = restorectl.main(list(argv), out=out, err=err, env=env)
    return code, out.getvalue(), err.getvalue()


def test_a_cross_region_restore_behind_the_primary_says_the_gap_and_where_its_job_is(local_stack, api, emulator):
    newest, previous = _complete_vault_points(api)[:2]
    now = _time(emulator.clock()["now"])
    # the secondary region has not received the newest point yet (Azure: replication can take up to 12 h)
    lag = (now - _time(newest["time"])) + (_time(newest["time"]) - _time(previous["time"])) / 2
    emulator.set_config(crr_replication_lag=f"PT{int(lag.total_seconds())}S")
    rid = start(api, sc.as_database(f"it_gap_{uuid.uuid4().hex[:6]}", server=sc.TARGET_DR, secret=sc.SECRET_DR,
                                    region="secondary"))
    done = wait_for(api, rid, timeout=120)
    assert done["status"] == "succeeded", done
    assert done["recovery_point"]["id"] == previous["id"]
    gap = (_time(newest["time"]) - _time(previous["time"])).total_seconds()
    behind = [w for w in done["warnings"] if w["code"] == "SecondaryRegionBehind"]
    assert len(behind) == 1 and behind[0]["primary_recovery_point"] == newest["id"], done["warnings"]
    assert done["data_loss_gap_seconds"] == pytest.approx(gap)
    assert done["azure_job_visible_in"].startswith("secondary region northeurope only")
    assert "--use-secondary-region" in done["azure_job_visible_in"]
    code, out, _ = cli(local_stack, "show", rid)
    assert code == 0
    assert "job visible in:  secondary region northeurope only" in out and "data-loss gap:   " in out


def test_latest_before_says_the_gap_between_the_asked_time_and_the_point(local_stack, api):
    newest = _complete_vault_points(api)[0]
    asked = _time(newest["time"]) + timedelta(minutes=30)
    rid = start(api, sc.as_database(f"it_before_{uuid.uuid4().hex[:6]}",
                                    recovery_point={"latest_before": asked.isoformat().replace("+00:00", "Z")}))
    done = wait_for(api, rid)
    assert done["status"] == "succeeded", done
    assert done["recovery_point"]["id"] == newest["id"] and done["data_loss_gap_seconds"] == 1800
    validated = [e["message"] for e in done["timeline"] if e["stage"] == "validate"]
    assert any("30m00s before the asked time" in m for m in validated), validated


def test_a_rehydration_shows_its_expected_window_while_restorectl_start_waits(local_stack, api, emulator):
    point = str(emulator.take_backup(sc.BI_SALES, tier="archive", age="P400D")["name"])
    env = {**os.environ, "RESTORE_API_URL": local_stack.env["RESTORE_API_URL"],
           "RESTORE_API_KEY": local_stack.env["RESTORE_API_KEY"]}
    proc = subprocess.Popen([sys.executable, "-m", "localdev.restorectl", "start", "--backup-instance", sc.BI_SALES,
                             "--recovery-point", point, "--server", sc.TARGET_SERVER, "--database",
                             f"it_rehyd_{uuid.uuid4().hex[:6]}", "--secret-uri", sc.SECRET_RESTORE,
                             "--retention-days", "12", "--wait", "--interval", "0.3"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first.startswith("accepted "), first
    rid = first.split()[1]
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not seen:
        _, body, _ = api.get(f"/restores/{rid}")
        if body.get("expected"):
            seen.append(body)
        elif body["status"] in ("succeeded", "failed", "rejected"):
            break
        time.sleep(0.2)
    rest, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, rest + err  # --wait: watch's exit code, 0 for a success
    assert rest.strip().splitlines()[-1] == "all 1 restore(s) ended"
    assert seen, "the status never showed the rehydration window"
    exp = seen[0]["expected"]
    assert exp["what"] == "rehydration, priority Standard" and exp["documented_hours"] == 15.0
    assert _time(exp["latest"]) - _time(exp["started"]) == timedelta(hours=15)
    done = wait_for(api, rid)
    assert done["status"] == "succeeded" and done["expected"] is None
    waits = [e["message"] for e in done["timeline"] if e["stage"] == "wait"]
    assert any("; expected by " in m for m in waits), waits


def test_a_failure_reported_by_the_azure_job_is_explained_like_a_validation_error(local_stack, api, emulator):
    emulator.add_fault("job_fail", "BackupInstances_TriggerRestore", count=1,
                       error_code="UserErrorDatabaseNameAlreadyInUse")
    rid = start(api, sc.as_database(f"it_jobexpl_{uuid.uuid4().hex[:6]}"))
    done = wait_for(api, rid)
    assert done["status"] == "failed" and done["error"]["code"] == "UserErrorDatabaseNameAlreadyInUse", done
    assert done["error"]["message"].startswith("a database with the target name already exists")
    assert done["error"]["fix"].startswith("choose a new target.database_name")
    assert done["reason"] == done["error"]


@pytest.mark.parametrize(("value", "says"), [(1764057600, "unix timestamp"), ("2026-11-24", "date without a time"),
                                             ("2026-11-24 08:00:00Z", "not in that form")])
def test_a_request_time_in_another_form_is_refused_and_nothing_starts(local_stack, api, value, says):
    name = f"it_badtime_{uuid.uuid4().hex[:6]}"
    status, body, _ = api.post("/restores", sc.as_database(name, recovery_point={"latest_before": value}))
    assert status == 400, body
    assert body["error"]["field"] == "recovery_point.latest_before" and says in body["error"]["message"]
    _, listed, _ = api.get(f"/restores?target={quote(name)}")
    assert listed["items"] == []
