"""The status resource, the list, cancel, and key enforcement — over HTTP through the local Functions host."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import quote

import pytest

from localdev import scenarios as sc

from .helpers import admin, completion_events, jobs_restoring_to, start, wait_for


def test_unknown_restore_is_404_and_calls_without_key_are_401(local_stack, api):
    status, body, _ = api.get("/restores/20260101T000000-0000000000")
    assert status == 404 and body["error"]["code"] == "RestoreNotFound"
    assert api.get("/restores/not-an-id")[0] == 404
    assert api.get("/restores", with_key=False)[0] == 401
    assert api.post("/restores", sc.as_database("x_nokey"), with_key=False)[0] == 401


def test_list_filters_by_status_and_pages_with_a_continuation(local_stack, api):
    ids = {start(api, sc.as_database(f"it_list_{uuid.uuid4().hex[:6]}", server=sc.TARGET_NOREADER,
                                     secret=sc.SECRET_NOREADER)) for _ in range(3)}
    for rid in ids:
        wait_for(api, rid)
    seen: list[str] = []
    token = None
    for _ in range(50):
        path = "/restores?status=rejected&limit=2" + (f"&continuation={token}" if token else "")
        status, page, _ = api.get(path)
        assert status == 200, page
        assert len(page["items"]) <= 2
        assert all(i["status"] == "rejected" for i in page["items"])
        seen += [i["id"] for i in page["items"]]
        token = page["continuation"]
        if not token:
            break
    assert ids <= set(seen)
    assert len(seen) == len(set(seen)), "no restore appears on two pages"
    assert seen == sorted(seen, reverse=True), "pages are newest first"
    assert api.get("/restores?status=bogus")[0] == 400
    assert api.get("/restores?limit=0")[0] == 400


def test_cancel_before_trigger_cancels_and_publishes(local_stack, api):
    adm = admin(local_stack.env)
    adm.clear_faults()
    adm.add_fault("delay", "BackupInstances_Get", count=1, delay_seconds=4)  # hold the restore in validation
    name = f"it_cancel_{uuid.uuid4().hex[:6]}"
    rid = start(api, sc.as_database(name))
    assert wait_for(api, rid, statuses={"accepted", "validating"})["azure_job_id"] is None
    status, body, _ = api.post(f"/restores/{rid}/cancel")
    assert status == 200, body
    assert body["status"] == "cancelled" and body["timeline"][-1]["message"] == "cancelled by operator"
    assert api.post(f"/restores/{rid}/cancel")[0] == 409  # already finished
    events = completion_events(local_stack.env, rid)
    assert [e["status"] for e in events] == ["cancelled"]
    # the validation still in flight finishes, finds the row changed under it, and its result is discarded
    time.sleep(5)
    final = wait_for(api, rid)
    assert final["status"] == "cancelled" and final["azure_job_id"] is None
    assert jobs_restoring_to(local_stack.env, name) == []
    adm.clear_faults()


@pytest.fixture
def slow_jobs(local_stack):
    adm = admin(local_stack.env)
    before = adm.config()["restore_job_duration"]
    adm.set_config(restore_job_duration="PT6H")  # ~6 s of real time at the default scale
    yield
    adm.set_config(restore_job_duration=before)


def test_cancel_after_trigger_is_409_explaining_azure_cannot_cancel(local_stack, api, slow_jobs):
    rid = start(api, sc.as_database(f"it_nocancel_{uuid.uuid4().hex[:6]}"))
    body = wait_for(api, rid, statuses={"restoring", "succeeded", "failed"})
    for _ in range(100):
        if body["azure_job_id"] or body["status"] != "restoring":
            break
        body = wait_for(api, rid, statuses={"restoring", "succeeded", "failed"})
    status, resp, _ = api.post(f"/restores/{rid}/cancel")
    assert status == 409, resp
    assert resp["error"]["code"] == "RestoreJobNotCancellable"
    assert "no API to cancel" in resp["error"]["message"]
    assert wait_for(api, rid)["status"] == "succeeded"


def test_status_resource_shows_where_a_restore_stands(local_stack, api):
    rid = start(api, sc.as_database(f"it_status_{uuid.uuid4().hex[:6]}"), **{"Idempotency-Key": uuid.uuid4().hex})
    body = wait_for(api, rid)
    for key in ("id", "status", "stage", "backup_instance_id", "recovery_point", "target", "region",
                "azure_job_id", "created_at", "updated_at", "deadline", "stage_times", "error", "timeline"):
        assert key in body, key
    assert body["backup_instance_id"].lower() == sc.BI_SALES.lower()
    assert body["target"]["kind"] == "database" and body["target"]["server_id"] == sc.TARGET_SERVER
    assert body["stage_times"]["validate"]["started"] <= body["stage_times"]["monitor"]["finished"]
    assert "secret" not in str(body).lower().replace("secret_uri", "").replace("/secrets/", "")


def test_list_with_since_in_another_zone_finds_todays_restores(local_stack, api):
    rid = start(api, sc.as_database(f"it_zone_{uuid.uuid4().hex[:6]}", server=sc.TARGET_NOREADER,
                                    secret=sc.SECRET_NOREADER))
    since_utc = datetime.now(UTC) - timedelta(minutes=5)
    # a zone in which `since` falls on another calendar day than in UTC (the day partitions are UTC days)
    zone = timezone(timedelta(hours=14)) if since_utc.hour >= 10 else timezone(timedelta(hours=-12))
    since = since_utc.astimezone(zone)
    assert since.date() != since_utc.date()
    status, page, _ = api.get(f"/restores?limit=200&since={quote(since.isoformat())}")
    assert status == 200, page
    assert rid in {i["id"] for i in page["items"]}
