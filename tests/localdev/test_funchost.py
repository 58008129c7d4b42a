"""Local Functions host against real Azurite, with the fixture app in apps/basic (in-process and as a CLI)."""

from __future__ import annotations

import http.client
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import ContainerClient

from localdev.azurite import Azurite
from localdev.funchost import FunctionsHost, HostError
from localdev.funchost.config import host_config, parse_timespan
from localdev.funchost.httpfront import route_regex
from tests.localdev.conftest import APPS, Queues, wait_for

REPO = Path(__file__).resolve().parents[2]
RARE = "0 0 0 1 1 *"  # the fixture timer stays quiet unless a test sets a schedule


def settings(q: Queues, **extra: str) -> dict[str, str]:
    return {"AzureWebJobsStorage": q.conn, "WORK_QUEUE": q.name("work"), "OUT_QUEUE": q.name("out"),
            "TICK_SCHEDULE": RARE, **extra}


def host_json(**queues: Any) -> dict[str, Any]:
    base = {"batchSize": 4, "newBatchThreshold": 0, "maxPollingInterval": "00:00:00.5",
            "visibilityTimeout": "00:00:00", "maxDequeueCount": 3}
    return {"version": "2.0", "extensions": {"queues": {**base, **queues}}}


def events(h: FunctionsHost, tag: str | None = None) -> list[dict[str, Any]]:
    assert h.module is not None
    with h.module.LOCK:
        return [e for e in h.module.EVENTS if tag is None or e["tag"] == tag]


def fetch(url: str, method: str = "GET", headers: dict[str, str] | None = None,
         body: bytes | None = None) -> tuple[int, bytes, dict[str, str]]:
    """Raw HTTP (http.client does not normalise paths, so traversal attempts reach the server as sent)."""
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port, timeout=10)
    try:
        conn.request(method, u.path + (f"?{u.query}" if u.query else ""), body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read(), dict(r.getheaders())
    finally:
        conn.close()


# ---------------------------------------------------------------- pure logic
def test_timespan_and_host_json_defaults_follow_the_real_host() -> None:
    assert parse_timespan("00:00:02", "x") == 2
    assert parse_timespan("1.00:00:00.5", "x") == 86400.5
    cfg = host_config({})
    assert (cfg.queues.batch_size, cfg.queues.new_batch_threshold, cfg.queues.max_dequeue_count) == (16, 8, 5)
    assert cfg.queues.visibility_timeout == 0 and cfg.route_prefix == "api"
    assert host_config({"extensions": {"queues": {"batchSize": 10}}}).queues.new_batch_threshold == 5


@pytest.mark.parametrize("bad, hint", [
    ({"extensions": {"queues": {"batchSize": 64}}}, "between 1 and 32"),
    ({"extensions": {"queues": {"messageEncoding": "utf8"}}}, "base64"),
    ({"extensions": {"queues": {"maxPollingInterval": "2s"}}}, "hh:mm:ss"),
    ({"telemetryMode": "ApplicationInsights"}, "only value is \"OpenTelemetry\""),
    ({"singleton": {"listenerLockPeriod": "00:02:00"}}, "15 to 60 seconds"),
    ({"singleton": {"listenerLockRecoveryPollingInterval": "00:00:05"}}, ">= 15 s"),
    ({"functionTimeout": "00:00:00"}, "positive"),
])
def test_bad_host_json_is_rejected_with_what_to_change(bad: dict[str, Any], hint: str) -> None:
    with pytest.raises(HostError, match=hint):
        host_config(bad)


def test_telemetry_mode_is_read_from_host_json() -> None:
    assert host_config({}).telemetry_mode is None
    assert host_config({"telemetryMode": "openTelemetry"}).telemetry_mode == "OpenTelemetry"
    assert host_config(json.loads((REPO / "host.json").read_text())).telemetry_mode == "OpenTelemetry"


def test_route_templates_match_params_and_constraints() -> None:
    rx = route_regex("restores/{id:guid}/events/{*rest}")
    m = rx.fullmatch("restores/0f8fad5b-d9cb-469f-a165-70867728950e/events/a/b")
    assert m and m.group("id") == "0f8fad5b-d9cb-469f-a165-70867728950e" and m.group("rest") == "a/b"
    assert rx.fullmatch("restores/not-a-guid/events/x") is None
    opt = route_regex("items/{id?}")
    assert opt.fullmatch("items") and opt.fullmatch("items/7").group("id") == "7"  # type: ignore[union-attr]


def test_missing_setting_in_binding_expression_names_the_setting(azurite: Azurite, queues: Queues) -> None:
    s = settings(queues)
    del s["WORK_QUEUE"]
    os.environ.pop("WORK_QUEUE", None)
    with pytest.raises(HostError, match="WORK_QUEUE"):
        FunctionsHost(APPS / "basic", s).start()


# ---------------------------------------------------------------- queues
def test_failing_message_is_retried_then_moved_to_poison_after_max_dequeue_count(queues: Queues) -> None:
    s = settings(queues)
    with FunctionsHost(APPS / "basic", s, host_json=host_json(maxDequeueCount=3)) as h:
        queues.send(s["WORK_QUEUE"], {"tag": "bad", "action": "fail"})
        poison = s["WORK_QUEUE"] + "-poison"
        texts = wait_for(lambda: queues.drain(poison), what="poison message")
        assert [e["dequeue_count"] for e in events(h, "bad")] == [1, 2, 3]
        assert json.loads(texts[0]) == {"tag": "bad", "action": "fail"}
        assert queues.count(s["WORK_QUEUE"]) == 0
        assert queues.drain(s["OUT_QUEUE"]) == []  # outputs are not flushed by failed invocations


def test_failed_message_reappears_only_after_visibility_timeout(queues: Queues) -> None:
    s = settings(queues)
    with FunctionsHost(APPS / "basic", s, host_json=host_json(visibilityTimeout="00:00:02")) as h:
        queues.send(s["WORK_QUEUE"], {"tag": "once", "action": "fail_once"})
        wait_for(lambda: len(events(h, "once")) == 2, what="second delivery")
        first, second = events(h, "once")
        assert (first["dequeue_count"], second["dequeue_count"]) == (1, 2)
        assert second["start"] - first["end"] >= 2.0
        out = wait_for(lambda: queues.drain(s["OUT_QUEUE"]), what="output after retry")
        assert json.loads(out[0])["dequeue_count"] == 2


@pytest.mark.parametrize("threshold, limit", [(0, 4), (2, 6)])
def test_concurrency_is_bounded_by_batch_size_and_new_batch_threshold(queues: Queues, threshold: int,
                                                                      limit: int) -> None:
    s = settings(queues)
    with FunctionsHost(APPS / "basic", s, host_json=host_json(batchSize=4, newBatchThreshold=threshold)) as h:
        for i in range(12):
            queues.send(s["WORK_QUEUE"], {"tag": f"m{i}", "action": "sleep", "secs": 0.4})
        wait_for(lambda: len(events(h)) == 12, what="12 invocations")
        assert h.module is not None
        # never more than batchSize (+ newBatchThreshold refill) at once, and the batch really runs in parallel
        assert 4 <= h.module.CONCURRENCY["worker_max"] <= limit


def test_message_fields_and_queue_output_binding(queues: Queues) -> None:
    s = settings(queues)
    with FunctionsHost(APPS / "basic", s, host_json=host_json()) as h:
        sent_id = queues.send(s["WORK_QUEUE"], {"tag": "fields"})
        out = wait_for(lambda: queues.drain(s["OUT_QUEUE"]), what="output message")
        assert json.loads(out[0]) == {"tag": "fields", "id": sent_id, "dequeue_count": 1}
        (ev,) = events(h, "fields")
        assert ev["pop_receipt"] and ev["insertion_time"] is not None and len(ev["invocation_id"]) == 36


def test_duplicate_delivery_knob_redelivers_each_original_exactly_once(queues: Queues) -> None:
    s = settings(queues, FUNCHOST_DUPLICATE_DELIVERY="1")
    with FunctionsHost(APPS / "basic", s, host_json=host_json()) as h:
        assert h.duplicate_delivery
        for i in range(3):
            queues.send(s["WORK_QUEUE"], {"tag": f"d{i}"})
        wait_for(lambda: len(events(h)) == 6, what="3 originals + 3 duplicates")
        time.sleep(1.5)  # a duplicate of a duplicate would show up by now (polling interval 0.5 s)
        tags = sorted(e["tag"] for e in events(h))
        assert tags == ["d0", "d0", "d1", "d1", "d2", "d2"]
        assert len({e["id"] for e in events(h)}) == 6  # copies are new messages


@pytest.mark.parametrize("mode, worker_otel, exported", [
    (None, "true", True),               # Application Insights SDK mode: the host exports what the worker forwards
    ("OpenTelemetry", "false", True),   # OpenTelemetry mode, but the worker announced no capability
    ("OpenTelemetry", "true", False),   # both: the host leaves the worker's logs to the app
])
def test_host_exports_forwarded_function_logs_as_the_real_host_does(queues: Queues, mode: str | None,
                                                                     worker_otel: str, exported: bool) -> None:
    s = settings(queues, APPLICATIONINSIGHTS_CONNECTION_STRING="InstrumentationKey=00000000-0000-0000-0000-0",
                 PYTHON_ENABLE_OPENTELEMETRY=worker_otel)
    doc = host_json() if mode is None else {**host_json(), "telemetryMode": mode}
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.INFO)  # as in the Python worker (and the CLI): INFO records reach the host
    try:
        with FunctionsHost(APPS / "basic", s, host_json=doc) as h:
            queues.send(s["WORK_QUEUE"], {"tag": "log"})
            wait_for(lambda: queues.drain(s["OUT_QUEUE"]), what="output")
            assert h.host_log_export is not None
            counts = dict(h.host_log_export.exported)
    finally:
        root.setLevel(level)
    assert (counts.get("Function.worker.User", 0) >= 1) is exported
    assert set(counts) <= {"Function.worker.User"}


# ---------------------------------------------------------------- timers
def test_timer_from_setting_schedule_never_overlaps_and_reports_past_due(queues: Queues) -> None:
    s = settings(queues, TICK_SCHEDULE="*/1 * * * * *", TICK_SLEEP="1.3")
    with FunctionsHost(APPS / "basic", s, host_json=host_json()) as h:
        wait_for(lambda: len(events(h, "tick")) >= 3, timeout=10, what="3 timer runs")
        assert h.module is not None
        assert h.module.CONCURRENCY["tick_max"] == 1
    ticks = events(h, "tick")
    for a, b in zip(ticks, ticks[1:], strict=False):
        assert b["start"] >= a["end"] - 0.01  # one at a time
    assert any(t["past_due"] for t in ticks)  # 1.3 s runs on a 1 s schedule miss occurrences


def _container(q: Queues) -> ContainerClient:
    container = ContainerClient.from_connection_string(q.conn, "azure-webjobs-hosts")
    try:
        container.create_container()
    except ResourceExistsError:
        pass
    return container


def _status(container: ContainerClient, hid: str) -> dict[str, Any]:
    blob = container.get_blob_client(f"timers/{hid}/Host.Functions.tick/status")
    return dict(json.loads(blob.download_blob().readall()))


def _utc(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_timer_status_is_written_to_storage_on_start(queues: Queues) -> None:
    hid = f"t{queues.suffix}"
    s = settings(queues, TICK_SCHEDULE="0 */5 * * * *", AzureFunctionsWebHost__hostid=hid)  # 5 min: useMonitor
    container = _container(queues)
    with FunctionsHost(APPS / "basic", s, host_json=host_json()) as h:
        status = wait_for(lambda: _blob_json(container, hid), what="timer status blob")
        assert events(h, "tick") == []
    nxt = _utc(status["Next"])
    assert status["Last"].startswith("0001-01-01") and nxt % 300 == 0 and 0 < nxt - time.time() <= 300


def _blob_json(container: ContainerClient, hid: str) -> dict[str, Any] | None:
    try:
        return _status(container, hid)
    except ResourceNotFoundError:
        return None


def test_occurrence_missed_while_no_host_ran_runs_at_start_past_due(queues: Queues) -> None:
    hid = f"t{queues.suffix}"
    s = settings(queues, TICK_SCHEDULE="0 */5 * * * *", AzureFunctionsWebHost__hostid=hid)
    container = _container(queues)
    boundary = time.time() // 300 * 300
    earlier = {"Last": datetime.fromtimestamp(boundary - 600, UTC).isoformat(),
               "Next": datetime.fromtimestamp(boundary - 300, UTC).isoformat(),
               "LastUpdated": datetime.fromtimestamp(boundary - 600, UTC).isoformat()}
    container.get_blob_client(f"timers/{hid}/Host.Functions.tick/status").upload_blob(json.dumps(earlier))
    with FunctionsHost(APPS / "basic", s, host_json=host_json()) as h:
        ticks = wait_for(lambda: events(h, "tick"), timeout=10, what="the missed occurrence")
        assert ticks[0]["past_due"] is True
        status = wait_for(lambda: (st := _status(container, hid))["Last"] != earlier["Last"] and st,
                          what="status after the run")
    assert abs(_utc(status["Last"]) - ticks[0]["start"]) < 5
    assert _utc(status["Next"]) == (_utc(status["Last"]) // 300 + 1) * 300


def test_timer_runs_on_one_host_instance_at_a_time(queues: Queues) -> None:
    hid = f"t{queues.suffix}"
    s = settings(queues, TICK_SCHEDULE="*/1 * * * * *", AzureFunctionsWebHost__hostid=hid)
    doc = {**host_json(), "singleton": {"listenerLockPeriod": "00:00:15",
                                        "listenerLockRecoveryPollingInterval": "00:00:15"}}
    first = FunctionsHost(APPS / "basic", s, host_json=doc).start()
    try:
        wait_for(lambda: events(first, "tick"), what="the first instance's timer")
        with FunctionsHost(APPS / "basic", s, host_json=doc) as second:
            time.sleep(3)
            assert events(second, "tick") == [] and len(events(first, "tick")) >= 3
            first.stop()  # releases the lock: the second instance takes over on its next attempt
            wait_for(lambda: events(second, "tick"), timeout=20, what="the second instance's timer")
    finally:
        first.stop()


# ---------------------------------------------------------------- http
@pytest.fixture(scope="module")
def web(azurite: Azurite) -> Iterator[tuple[FunctionsHost, Queues]]:
    q = Queues(azurite.connection_string)
    with FunctionsHost(APPS / "basic", settings(q), function_keys=["fkey"], master_key="mkey",
                       static={"/dashboard": APPS / "static"}, host_json=host_json()) as h:
        yield h, q


def test_function_level_route_needs_a_key(web: tuple[FunctionsHost, Queues]) -> None:
    h, _ = web
    url = h.base_url + "/api/items/42"
    assert fetch(url)[0] == 401
    assert fetch(url, headers={"x-functions-key": "wrong"})[0] == 401
    assert fetch(url, headers={"x-functions-key": "fkey"})[0] == 200
    assert fetch(url + "?code=fkey")[0] == 200
    assert fetch(url, headers={"x-functions-key": "mkey"})[0] == 200  # master key works everywhere


def test_admin_level_route_needs_the_master_key(web: tuple[FunctionsHost, Queues]) -> None:
    h, _ = web
    assert fetch(h.base_url + "/api/admin-only", headers={"x-functions-key": "fkey"})[0] == 401
    status, body, _ = fetch(h.base_url + "/api/admin-only", headers={"x-functions-key": "mkey"})
    assert (status, body) == (200, b"admin ok")


def test_anonymous_async_route_with_parameter(web: tuple[FunctionsHost, Queues]) -> None:
    h, _ = web
    status, body, headers = fetch(h.base_url + "/api/hello/world")
    assert (status, body) == (200, b"hello world")
    assert headers["Content-Type"].startswith("text/plain")


def test_request_fields_reach_the_function_and_response_headers_come_back(web: tuple[FunctionsHost, Queues]) -> None:
    h, _ = web
    status, body, headers = fetch(h.base_url + "/api/items/7?x=1&code=fkey", method="POST",
                                 headers={"x-test": "yes"}, body=b"payload")
    echo = json.loads(body)
    assert status == 200 and headers["X-Fixture"] == "items" and headers["Content-Type"].startswith("application/json")
    assert echo["method"] == "POST" and echo["route_params"] == {"id": "7"} and echo["body"] == "payload"
    assert echo["params"]["x"] == "1" and echo["x_test"] == "yes" and echo["url"].endswith("/api/items/7?x=1&code=fkey")


def test_unknown_route_and_known_route_with_wrong_method_404_failing_function_500(
        web: tuple[FunctionsHost, Queues]) -> None:
    h, _ = web
    assert fetch(h.base_url + "/api/nope", headers={"x-functions-key": "fkey"})[0] == 404
    assert fetch(h.base_url + "/api/items/abc", headers={"x-functions-key": "fkey"})[0] == 404  # {id:int}
    status, _, headers = fetch(h.base_url + "/api/items/7", method="DELETE", headers={"x-functions-key": "fkey"})
    assert status == 404 and "Allow" not in headers  # the real host's routing: 404, not 405
    assert fetch(h.base_url + "/api/boom")[0] == 500


def test_query_drops_empty_values_and_joins_repeated_keys(web: tuple[FunctionsHost, Queues]) -> None:
    h, _ = web
    status, body, _ = fetch(h.base_url + "/api/items/7?x=1&empty=&flag&x=2&y=a%2Cb&code=fkey")
    assert status == 200
    assert json.loads(body)["params"] == {"x": "1,2", "y": "a,b", "code": "fkey"}


def test_http_queue_output_binding(web: tuple[FunctionsHost, Queues]) -> None:
    h, q = web
    status, _, _ = fetch(h.base_url + "/api/enqueue/t1?code=fkey", method="POST", body=b'{"n": 1}')
    assert status == 202
    out = wait_for(lambda: [json.loads(t) for t in q.drain(q.name("out")) if json.loads(t).get("tag") == "t1"],
                   what="enqueued message")
    assert out == [{"tag": "t1", "n": 1}]


def test_static_mount_and_keyless_get_only_dashboard_proxy(web: tuple[FunctionsHost, Queues]) -> None:
    h, _ = web
    status, body, _ = fetch(h.base_url + "/dashboard/")
    assert status == 200 and b"dashboard fixture" in body
    assert fetch(h.base_url + "/dashboard/../function_app.py")[0] == 404
    status, body, _ = fetch(h.base_url + "/dashboard/api/items/5")  # no key needed through the proxy
    assert status == 200 and json.loads(body)["route_params"] == {"id": "5"}
    assert fetch(h.base_url + "/dashboard/api/items/5", method="POST")[0] == 405
    assert fetch(h.base_url + "/admin/host/ping")[0] == 200


@pytest.mark.parametrize("host, status", [
    ("127.0.0.1:{port}", 200), ("localhost:{port}", 200), ("LOCALHOST", 200), ("[::1]:{port}", 200),
    ("evil.example:{port}", 403), ("127.0.0.1.nip.io:{port}", 403), ("localhost.evil.example", 403),
    ("10.0.0.5:{port}", 403), ("", 403),
])
def test_keyless_dashboard_proxy_answers_only_loopback_host_names(web: tuple[FunctionsHost, Queues], host: str,
                                                                  status: int) -> None:
    h, _ = web
    got, body, _ = fetch(h.base_url + "/dashboard/api/items/5", headers={"Host": host.format(port=h.port)})
    assert got == status
    if status == 403:
        assert b"loopback" in body and b"route_params" not in body  # the function never ran


# ---------------------------------------------------------------- CLI + graceful stop
def test_cli_sigterm_lets_the_running_invocation_finish(azurite: Azurite, queues: Queues, tmp_path: Path) -> None:
    s = settings(queues)
    (tmp_path / "local.settings.json").write_text(json.dumps({"IsEncrypted": False, "Values": s}))
    (tmp_path / "keys.json").write_text(json.dumps({"functionKeys": ["k-cli-secret"]}))
    log = tmp_path / "host.log"
    ready = tmp_path / "ready.json"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "localdev.funchost", "--app-dir", str(APPS / "basic"),
                                 "--settings", str(tmp_path / "local.settings.json"), "--port", "0",
                                 "--keys-file", str(tmp_path / "keys.json"), "--ready-file", str(ready)],
                                cwd=REPO, stdout=fh, stderr=subprocess.STDOUT)
    try:
        wait_for(ready.exists, what="ready file")
        port = json.loads(ready.read_text())["port"]
        assert fetch(f"http://127.0.0.1:{port}/api/hello/cli")[1] == b"hello cli"
        assert fetch(f"http://127.0.0.1:{port}/api/items/1", headers={"x-functions-key": "k-cli-secret"})[0] == 200
        queues.send(s["WORK_QUEUE"], {"tag": "slow", "action": "sleep", "secs": 2})
        wait_for(lambda: b"worker-start tag=slow" in log.read_bytes(), what="invocation start")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    out = queues.drain(s["OUT_QUEUE"])
    assert [json.loads(t)["tag"] for t in out] == ["slow"]
    assert queues.count(s["WORK_QUEUE"]) == 0  # completed and deleted, not abandoned
    text = log.read_text()
    assert "outcome=ok" in text and queues.conn not in text and "AccountKey" not in text


@pytest.mark.parametrize("flag", ["--function-key", "--master-key"])
def test_cli_refuses_keys_on_the_command_line(tmp_path: Path, flag: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "localdev.funchost", "--app-dir", str(APPS / "basic"), "--port", "0",
                           flag, "k-secret"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--keys-file" in proc.stderr and "command line" in proc.stderr


def test_long_invocation_keeps_its_message_invisible_by_renewing_the_lease(queues: Queues) -> None:
    s = settings(queues, FUNCHOST_LEASE_SECONDS="2")
    with FunctionsHost(APPS / "basic", s, host_json=host_json()) as h:
        assert h.lease_seconds == 2
        queues.send(s["WORK_QUEUE"], {"tag": "long", "action": "sleep", "secs": 4.5})
        out = wait_for(lambda: queues.drain(s["OUT_QUEUE"]), timeout=20, what="long invocation output")
        time.sleep(0.6)
        assert [e["dequeue_count"] for e in events(h, "long")] == [1]  # never redelivered while running
        assert json.loads(out[0])["dequeue_count"] == 1 and queues.count(s["WORK_QUEUE"]) == 0


def test_message_that_is_not_base64_goes_to_poison_at_once_unchanged(queues: Queues) -> None:
    s = settings(queues)
    # five deliveries a minute apart would be needed if decoding failures were retried like failed invocations
    with FunctionsHost(APPS / "basic", s, host_json=host_json(maxDequeueCount=5, visibilityTimeout="00:01:00")) as h:
        raw = queues.client(s["WORK_QUEUE"])
        raw.send_message("{not base64!}")
        poison = queues.client(s["WORK_QUEUE"] + "-poison")
        msgs = wait_for(lambda: list(poison.receive_messages()), timeout=10, what="poison message")
        assert msgs[0].content == "{not base64!}" and events(h) == []  # the function never saw it
        assert h.storage_counts()["poison"] == 1 and queues.count(s["WORK_QUEUE"]) == 0


def test_received_message_stays_invisible_ten_minutes_by_default(queues: Queues) -> None:
    s = settings(queues)
    with FunctionsHost(APPS / "basic", s, host_json=host_json()) as h:
        assert h.lease_seconds == 600
        queues.send(s["WORK_QUEUE"], {"tag": "vis"})
        (ev,) = wait_for(lambda: events(h, "vis"), what="invocation")
        assert 590 <= ev["next_visible"].timestamp() - ev["start"] <= 610


def test_function_timeout_fails_the_invocation_and_counts_as_a_failed_delivery(queues: Queues) -> None:
    s = settings(queues)
    doc = {**host_json(maxDequeueCount=2), "functionTimeout": "00:00:01"}
    with FunctionsHost(APPS / "basic", s, host_json=doc) as h:
        queues.send(s["WORK_QUEUE"], {"tag": "slow", "action": "sleep", "secs": 2.5})
        poison = wait_for(lambda: queues.drain(s["WORK_QUEUE"] + "-poison"), timeout=15, what="poison message")
        assert json.loads(poison[0])["tag"] == "slow"
        wait_for(lambda: len(events(h, "slow")) == 2, what="the two abandoned invocations to return")
        assert [e["dequeue_count"] for e in events(h, "slow")] == [1, 2]
        assert queues.drain(s["OUT_QUEUE"]) == []  # a timed-out invocation's outputs are discarded


def test_invocation_log_carries_cpu_and_wall_time_and_the_profile_hook_writes_pstats(
        queues: Queues, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Bench hooks: ``cpu_ms`` is the invoking thread's CPU time (a sleeping function spends wall time, not CPU);
    ``FUNCHOST_PROFILE_DIR`` profiles every invocation and writes ``<function>.pstats`` at stop."""
    import pstats

    s = settings(queues, FUNCHOST_PROFILE_DIR=str(tmp_path / "prof"))
    caplog.set_level(logging.INFO, logger="funchost")
    with FunctionsHost(APPS / "basic", s, host_json=host_json()):
        queues.send(s["WORK_QUEUE"], {"tag": "cpu", "action": "sleep", "secs": 0.4})
        wait_for(lambda: [r for r in caplog.records if "function=worker" in r.getMessage()], what="invocation log")
    (line,) = [r.getMessage() for r in caplog.records if "invocation function=worker" in r.getMessage()]
    fields = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
    assert float(fields["fn_ms"]) >= 400 and float(fields["duration_ms"]) >= float(fields["fn_ms"]) - 1
    assert 0 < float(fields["cpu_ms"]) < 200
    stats = pstats.Stats(str(tmp_path / "prof" / "worker.pstats"))
    assert any(func == "<built-in method time.sleep>" for _, _, func in stats.stats)  # type: ignore[attr-defined]
