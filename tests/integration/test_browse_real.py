"""Browse before restoring on the real local stack: instances (configured vaults, one vault, the instances protecting
a server through the emulator's extension-routing list), recovery points newest first, a restore started from a
point's own restore request, the RecoveryPointNotFound range, and the CLI in a terminal-less run."""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from localdev import restorectl
from localdev import scenarios as sc

from .helpers import start, wait_for

SALES = sc.BI_SALES.rsplit("/", 1)[-1]


def cli(local_stack: Any, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    env = {"RESTORE_API_URL": local_stack.env["RESTORE_API_URL"], "RESTORE_API_KEY": local_stack.env["RESTORE_API_KEY"]}
    code = restorectl.main(list(argv), out=out, err=err, env=env)
    return code, out.getvalue(), err.getvalue()


def test_instances_of_the_configured_vaults_one_vault_and_a_server(local_stack, api):
    status, body, _ = api.get("/backup-instances")
    assert status == 200, body
    names = {i["name"] for i in body["items"]}
    assert {SALES, sc.BI_FLEX.rsplit("/", 1)[-1], sc.BI_HR_LRS.rsplit("/", 1)[-1]} <= names
    status, body, _ = api.get(f"/backup-instances?vault={quote(sc.VAULT_LRS, safe='')}")
    assert status == 200 and [i["id"] for i in body["items"]] == [sc.BI_HR_LRS]
    status, body, _ = api.get(f"/backup-instances?datasource={quote(sc.SRC_SERVER, safe='')}")
    assert status == 200, body
    assert sc.BI_SALES in {i["id"] for i in body["items"]} and sc.BI_CRM_PARTIAL in {i["id"] for i in body["items"]}
    assert sc.VAULT_PARTIAL in body["vaults"], "the extension-routing list finds instances in any vault"
    status, body, _ = api.get("/backup-instances?vualt=x")
    assert status == 400 and "`vault`" in body["error"]["fix"]


def test_points_newest_first_and_a_restore_from_a_points_own_request(local_stack, api):
    status, body, _ = api.get(f"/backup-instances/{SALES}/recovery-points")
    assert status == 200, body
    times = [p["time"] for p in body["items"]]
    assert len(times) >= 6 and times == sorted(times, reverse=True)
    oldest = body["items"][-1]
    # an archived point's request rehydrates it, unless an earlier test of this session already did
    rehydrated = (oldest.get("rehydration") or {}).get("status") == "COMPLETED"
    assert oldest["tier"] == "archive" and ("rehydration" in oldest["restore_request"]) == (not rehydrated)
    incident = datetime.now(UTC) - timedelta(days=2)  # "incident two days ago": the point before it
    status, before, _ = api.get(f"/backup-instances/{SALES}/recovery-points?until={quote(incident.isoformat())}"
                                "&limit=1")
    assert status == 200 and before["continuation"] and len(before["items"]) == 1
    point = before["items"][0]
    assert datetime.fromisoformat(point["time"].replace("Z", "+00:00")) < incident
    request = point["restore_request"]
    assert point["fill_in"] == ["target.server_id", "target.database_name", "target.secret_uri"]
    request["target"].update({"server_id": sc.TARGET_SERVER, "secret_uri": sc.SECRET_RESTORE,
                              "database_name": f"it_browse_{uuid.uuid4().hex[:6]}"})
    rid = start(api, request)
    done = wait_for(api, rid)
    assert done["status"] == "succeeded", done
    assert done["recovery_point"]["id"] == point["id"] and done["point_time"] == point["time"]
    assert done["source_resource"]["name"] == "pgsrv01/salesdb" and done["started_by"]["door"] == "http"


def test_secondary_points_and_a_missing_point_names_the_range(local_stack, api):
    status, body, _ = api.get(f"/backup-instances/{SALES}/recovery-points?region=secondary")
    assert status == 200 and body["location"] == "northeurope", body
    assert all(p["region"] == "secondary" for p in body["items"])
    rid = start(api, sc.as_database(f"it_nopoint_{uuid.uuid4().hex[:6]}") | {"recovery_point": {"id": "nope"}})
    done = wait_for(api, rid)
    assert done["status"] == "rejected" and done["error"]["code"] == "RecoveryPointNotFound"
    assert "the oldest" in done["error"]["message"] and "the newest" in done["error"]["message"]
    assert done["reason"] == done["error"]


def test_cli_instances_points_and_the_request_of_one_point(local_stack, api):
    code, out, err = cli(local_stack, "instances", "--datasource", sc.SRC_SALES_DB)
    assert code == 0, err
    assert SALES in out and "pgsrv01/salesdb" in out
    code, out, err = cli(local_stack, "points", sc.BI_SALES, "--limit", "3")
    assert code == 0, err
    assert "newest first, times in UTC" in out and len([ln for ln in out.splitlines() if ln[:1].isalnum()]) >= 3
    point_id = out.splitlines()[2].split()[0]
    code, out, err = cli(local_stack, "points", SALES, "--request", point_id)
    assert code == 0, err
    request = json.loads(out.split("\n#", 1)[0])
    assert request["recovery_point"] == {"id": point_id} and request["backup_instance"]["id"] == sc.BI_SALES
    code, _, err = cli(local_stack, "points", "nosuch-instance")
    assert code == 1 and "BackupInstanceNotFound" in err and "GET /api/backup-instances" in err


def test_list_newest_first_with_filters_and_show_exit_codes(local_stack, api):
    db = f"it_filter_{uuid.uuid4().hex[:6]}"
    rid = start(api, sc.as_database(db, server=sc.TARGET_NOREADER, secret=sc.SECRET_NOREADER))
    wait_for(api, rid)
    status, body, _ = api.get(f"/restores?target={db}")
    assert status == 200 and [i["id"] for i in body["items"]] == [rid]
    assert body["items"][0]["status"] == "rejected" and body["items"][0]["reason"]["fix"]
    status, body, _ = api.get("/restores?limit=200")
    ids = [i["id"] for i in body["items"]]
    assert ids == sorted(ids, reverse=True)
    code, out, _ = cli(local_stack, "show", rid)
    assert code == 1 and "fix:" in out
    code, out, _ = cli(local_stack, "list", "--target", db)
    assert code == 0 and rid in out and "pgsrv-noreader/" + db in out
    key = f"it-key-{uuid.uuid4().hex[:6]}"
    body_json = json.dumps(sc.as_database(f"it_idem_{uuid.uuid4().hex[:6]}", server=sc.TARGET_NOREADER,
                                          secret=sc.SECRET_NOREADER) | {"idempotency_key": key})
    first = restorectl.main(["start", "--json", "-"], out=io.StringIO(), err=io.StringIO(),
                            stdin=io.StringIO(body_json), env={k: local_stack.env[k] for k in
                                                              ("RESTORE_API_URL", "RESTORE_API_KEY")})
    out = io.StringIO()
    again = restorectl.main(["start", "--json", "-"], out=out, err=io.StringIO(), stdin=io.StringIO(body_json),
                            env={k: local_stack.env[k] for k in ("RESTORE_API_URL", "RESTORE_API_KEY")})
    assert first == 0 and again == 0 and out.getvalue().startswith("existing restore ")
