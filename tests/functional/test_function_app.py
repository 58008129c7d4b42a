"""Contract tests on ``function_app.py`` without a host: bindings use settings defined once (config.py) and set in
local.settings.sample.json; host.json agrees with the settings; HTTP routes as documented; the thin adapters work
when called with real ``HttpRequest``/``QueueMessage`` objects over in-memory dependencies."""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from restore_core import config, pipeline, runtime
from restore_core.config import SettingsError, load_settings
from restore_core.models import Stage, Status
from restore_core.stages import registry
from tests.unit.fakes import Harness, database_body

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
HOST = json.loads((ROOT / "host.json").read_text())
PERCENT = re.compile(r"^%([A-Za-z0-9_]+)%$")


@pytest.fixture(scope="module")
def functions() -> dict[str, Any]:
    return load_functions()


def load_functions() -> dict[str, Any]:
    # by path: in-process host tests put fixture apps (also named function_app.py) on sys.path
    spec = importlib.util.spec_from_file_location("repo_function_app", ROOT / "function_app.py")
    assert spec is not None and spec.loader is not None
    function_app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(function_app)

    return {f.get_function_name(): f for f in function_app.app.get_functions()}


def bindings(fn: Any) -> list[dict[str, Any]]:
    return list(json.loads(fn.get_function_json())["bindings"])


def trigger_of(fn: Any) -> dict[str, Any]:
    trig = [b for b in bindings(fn) if b["type"].endswith("Trigger")]
    assert len(trig) == 1
    return trig[0]


def test_every_percent_setting_in_a_binding_is_defined_in_config_and_the_sample(functions: dict[str, Any]) -> None:
    used = set()
    for fn in functions.values():
        for b in bindings(fn):
            for value in b.values():
                if isinstance(value, str) and "%" in value:
                    m = PERCENT.match(value)
                    assert m, f"{fn.get_function_name()}: binding value {value!r} is not a single %NAME%"
                    used.add(m.group(1))
    assert used, "no %NAME% bindings found"
    assert used <= set(config.ALL_SETTINGS), used - set(config.ALL_SETTINGS)
    missing = {name for name in used if not SAMPLE.get(name)}
    assert not missing, f"set these in local.settings.sample.json: {sorted(missing)}"


def test_each_stage_queue_and_the_request_queue_has_exactly_one_trigger(functions: dict[str, Any]) -> None:
    queues = [trigger_of(fn)["queueName"] for fn in functions.values() if trigger_of(fn)["type"] == "queueTrigger"]
    expected = sorted(f"%{s.queue_setting}%" for s in registry.FUNCTION_STAGES)
    expected = sorted([*expected, f"%{config.QUEUE_REQUESTS}%"])
    assert sorted(queues) == expected


def test_queue_triggers_use_the_restore_storage_connection(functions: dict[str, Any]) -> None:
    for fn in functions.values():
        trig = trigger_of(fn)
        if trig["type"] == "queueTrigger":
            assert trig["connection"] == config.STORAGE_CONNECTION
    assert SAMPLE.get(config.STORAGE_CONNECTION)


def test_watchdog_timer_reads_its_schedule_from_settings(functions: dict[str, Any]) -> None:
    trig = trigger_of(functions["restore_watchdog"])
    assert trig["type"] == "timerTrigger" and trig["schedule"] == f"%{config.WATCHDOG_SCHEDULE}%"
    assert trig.get("runOnStartup") in (False, None)


def test_drill_timer_reads_its_schedule_from_settings(functions: dict[str, Any]) -> None:
    trig = trigger_of(functions["restore_drills"])
    assert trig["type"] == "timerTrigger" and trig["schedule"] == f"%{config.DRILL_SCHEDULE}%"
    assert trig.get("runOnStartup") in (False, None)


HTTP_ROUTES = {
    "restores_create": ("restores", ["POST"]),
    "restores_get": ("restores/{id}", ["GET"]),
    "restores_list": ("restores", ["GET"]),
    "restores_cancel": ("restores/{id}/cancel", ["POST"]),
    "restores_redrive": ("restores/{id}/redrive", ["POST"]),
    "restores_preview": ("restores/preview", ["POST"]),
    "stages_list": ("stages", ["GET"]),
    "backup_instances_list": ("backup-instances", ["GET"]),
    "recovery_points_list": ("backup-instances/{instance}/recovery-points", ["GET"]),
    "drills_create": ("drills", ["POST"]),
    "drills_list": ("drills", ["GET"]),
    "drills_one": ("drills/{id}", ["GET", "PUT", "DELETE"]),
    "drills_runs": ("drills/{id}/runs", ["GET"]),
    "drills_run_now": ("drills/{id}/run", ["POST"]),
    "drills_latest_runs": ("drills/runs/latest", ["GET"]),
    "alerts_receive": ("alerts", ["POST"]),
}
#: Routes that stay keyed whatever RESTORE_AUTH_MODE says (the platform's authentication excludes them).
KEYED_DOORS = {"alerts_receive"}


def test_http_routes_methods_and_auth_levels_are_as_documented(functions: dict[str, Any]) -> None:
    http = {name: trigger_of(fn) for name, fn in functions.items() if trigger_of(fn)["type"] == "httpTrigger"}
    assert set(http) == set(HTTP_ROUTES)
    for name, trig in http.items():
        route, methods = HTTP_ROUTES[name]
        assert trig["route"] == route, name
        assert [m.upper() for m in trig["methods"]] == methods, name
        assert trig["authLevel"].lower() == "function", f"{name} must require a function key"


def test_with_entra_callers_the_user_routes_are_anonymous_and_the_alert_door_stays_keyed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config.AUTH_MODE, "entra")
    http = {name: trigger_of(fn) for name, fn in load_functions().items() if trigger_of(fn)["type"] == "httpTrigger"}
    assert set(http) == set(HTTP_ROUTES)
    for name, trig in http.items():
        want = "function" if name in KEYED_DOORS else "anonymous"
        assert trig["authLevel"].lower() == want, name
    monkeypatch.setenv(config.AUTH_MODE, "sometimes")
    with pytest.raises(config.SettingsError, match="RESTORE_AUTH_MODE"):
        load_functions()


def test_host_max_dequeue_count_equals_the_setting_default_and_the_sample() -> None:
    queues = HOST["extensions"]["queues"]
    assert queues["maxDequeueCount"] == int(config.DEFAULTS[config.MAX_DEQUEUE_COUNT])
    assert queues["maxDequeueCount"] == int(SAMPLE[config.MAX_DEQUEUE_COUNT])
    assert queues["messageEncoding"] == "base64"


def test_sample_settings_load_and_name_only_known_restore_settings() -> None:
    s = load_settings(SAMPLE)
    assert s.max_dequeue_count == int(SAMPLE[config.MAX_DEQUEUE_COUNT])
    assert s.storage.connection_string == SAMPLE[config.STORAGE_CONNECTION]
    unknown = {k for k in SAMPLE if k.startswith(("RESTORE_", "DATAPROTECTION_")) and k not in config.ALL_SETTINGS}
    assert not unknown


def test_defaults_alone_need_only_a_storage_connection() -> None:
    s = load_settings({"RestoreStorage__accountName": "stapp01"})
    assert s.storage.queue_service_uri == "https://stapp01.queue.core.windows.net"
    assert s.storage.table_service_uri == "https://stapp01.table.core.windows.net"
    assert s.storage.connection_string is None
    assert s.dataprotection_endpoint == "https://management.azure.com"
    assert s.queue(registry.spec(Stage.WAIT).queue_setting) == "restore-wait"


def test_secrets_are_not_in_the_settings_repr() -> None:
    s = load_settings({**SAMPLE, config.DATAPROTECTION_TOKEN: "tok-SECRET",
                       config.APPINSIGHTS_CONNECTION_STRING: "InstrumentationKey=SECRETKEY"})
    assert "SECRET" not in repr(s)


@pytest.mark.parametrize(("changes", "setting"), [
    ({"RESTORE_POLL_MIN_SECONDS": "soon"}, "RESTORE_POLL_MIN_SECONDS"),
    ({"RESTORE_POLL_MAX_SECONDS": "0"}, "RESTORE_POLL_MAX_SECONDS"),
    ({"RESTORE_POLL_MIN_SECONDS": "10", "RESTORE_POLL_MAX_SECONDS": "5"}, "RESTORE_POLL_MAX_SECONDS"),
    ({"RESTORE_MAX_DEQUEUE_COUNT": "0"}, "RESTORE_MAX_DEQUEUE_COUNT"),
    ({"RESTORE_ARM_MAX_RETRIES": "-1"}, "RESTORE_ARM_MAX_RETRIES"),
    ({"RESTORE_DEADLINE_HOURS": "x"}, "RESTORE_DEADLINE_HOURS"),
    ({"RESTORE_TRIGGER_GRACE_SECONDS": "-5"}, "RESTORE_TRIGGER_GRACE_SECONDS"),
    ({"RESTORE_TELEMETRY_EXPORTER": "jaeger"}, "RESTORE_TELEMETRY_EXPORTER"),
    ({"DATAPROTECTION_ENDPOINT": "http://127.0.0.1:8443"}, "DATAPROTECTION_ENDPOINT"),
    ({"RESTORE_PLANS": "{not json"}, "RESTORE_PLANS"),
    ({"RESTORE_PLANS": "[]"}, "RESTORE_PLANS"),
])
def test_invalid_setting_error_names_the_setting(changes: dict[str, str], setting: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({**SAMPLE, **changes})
    assert setting in str(info.value)


def test_missing_storage_connection_says_what_to_set() -> None:
    env = {k: v for k, v in SAMPLE.items() if k != config.STORAGE_CONNECTION}
    with pytest.raises(SettingsError) as info:
        load_settings(env)
    msg = str(info.value)
    assert "RestoreStorage" in msg and "RestoreStorage__queueServiceUri" in msg


def test_invalid_setting_value_that_may_be_secret_is_not_echoed() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({**SAMPLE, "RESTORE_PLANS": '{"k": "Password=hunter2"'})
    assert "hunter2" not in str(info.value)


# --- the thin adapters, called as the host would, over in-memory dependencies


@pytest.fixture
def harness(monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    h = Harness()
    monkeypatch.setattr(runtime, "_deps", h.deps)
    yield h


def http(method: str, path: str, body: Any = None, **kw: Any) -> func.HttpRequest:
    data = json.dumps(body).encode() if body is not None else b""
    return func.HttpRequest(method, "http://localhost:7071/api/" + path, body=data, **kw)


def test_http_create_answers_202_with_location_then_get_shows_the_restore(functions: dict[str, Any],
                                                                          harness: Harness) -> None:
    create = functions["restores_create"].get_user_function()
    resp = create(http("POST", "restores", database_body(), headers={"Idempotency-Key": "ticket-1"}))
    assert resp.status_code == 202
    body = json.loads(resp.get_body())
    assert resp.headers["Location"] == f"http://localhost:7071/api/restores/{body['id']}" == body["status_url"]

    again = create(http("POST", "restores", database_body(), headers={"Idempotency-Key": "ticket-1"}))
    assert again.status_code == 200 and json.loads(again.get_body())["id"] == body["id"]

    get = functions["restores_get"].get_user_function()
    shown = get(http("GET", f"restores/{body['id']}", route_params={"id": body["id"]}))
    assert shown.status_code == 200 and json.loads(shown.get_body())["status"] == "accepted"


def test_http_create_with_a_bad_body_answers_400_naming_the_field(functions: dict[str, Any],
                                                                  harness: Harness) -> None:
    resp = functions["restores_create"].get_user_function()(http("POST", "restores", database_body(colour="red")))
    assert resp.status_code == 400
    assert json.loads(resp.get_body())["error"]["field"] == "colour"
    assert harness.store.active() == [] and harness.queues.sent == []


def test_queue_adapters_drive_the_pipeline(functions: dict[str, Any], harness: Harness) -> None:
    intake_fn = functions["restore_requests"].get_user_function()
    intake_fn(func.QueueMessage(id="msg-1", body=json.dumps(database_body()).encode()))
    harness.collect()
    msg = harness.next_message()
    assert harness.stage_of[msg.queue] is Stage.VALIDATE
    validate_fn = functions["restore_validate"].get_user_function()
    validate_fn(func.QueueMessage(id="msg-2", body=msg.text.encode()))
    harness.collect()
    rid = json.loads(msg.text)["restore_id"]
    rec = harness.store.get(rid)  # validated, and triggered in the same invocation (RESTORE_CONTINUE_INLINE)
    assert rec is not None and rec.status is Status.RESTORING and rec.stage is Stage.MONITOR and rec.azure_job_id
    assert harness.stages_of(harness.pending) == [Stage.TRIGGER, Stage.MONITOR]  # the safety net, the first check


def test_in_flight_visibility_setting_matches_the_queue_listener_and_the_local_host() -> None:
    from localdev.funchost.queues import IN_FLIGHT_SECONDS

    assert float(config.DEFAULTS[config.MESSAGE_IN_FLIGHT_SECONDS]) == IN_FLIGHT_SECONDS == 600
    assert float(SAMPLE[config.MESSAGE_IN_FLIGHT_SECONDS]) == float(SAMPLE.get("FUNCHOST_LEASE_SECONDS",
                                                                             IN_FLIGHT_SECONDS))
    s = load_settings(SAMPLE)
    assert s.redrive_slack_seconds > s.message_in_flight_seconds  # never re-drive a message that is merely in flight


def test_each_registry_stage_has_one_trigger_on_its_queue_setting_that_runs_that_stage(
        functions: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """A stage added to the registry without its trigger (or with a trigger that runs another stage) fails here."""
    seen: list[Stage] = []
    monkeypatch.setattr(pipeline, "handle", lambda stage, body, **kw: seen.append(stage))
    monkeypatch.setattr(runtime, "deps", lambda: None)
    by_queue: dict[str, list[Any]] = {}
    for fn in functions.values():
        if trigger_of(fn)["type"] == "queueTrigger":
            by_queue.setdefault(trigger_of(fn)["queueName"], []).append(fn)
    for spec in registry.REGISTRY:
        fns = by_queue.get(f"%{spec.queue_setting}%", [])
        if spec.consumer == "job":  # the replay container job consumes this queue; a trigger would race it
            assert fns == [], f"stage {spec.stage.value} is consumed by a job, yet a Function triggers on it"
            continue
        assert len(fns) == 1, f"stage {spec.stage.value}: {len(fns)} triggers on %{spec.queue_setting}%"
        seen.clear()
        fns[0].get_user_function()(func.QueueMessage(body=b"{}", id="m1"))
        assert seen == [spec.stage], f"the trigger on %{spec.queue_setting}% runs {seen}"


def test_the_sdk_stays_behind_its_adapters() -> None:
    """Only the Data Protection adapter imports the Data Protection SDK; only runtime.py builds the Azure adapters."""
    src = {p.relative_to(ROOT).as_posix(): p.read_text() for p in (ROOT / "restore_core").rglob("*.py")}
    sdk = sorted(p for p, text in src.items() if "azure.mgmt.dataprotection" in text)
    assert sdk == ["restore_core/dp_client.py"], sdk
    builders = sorted(p for p, text in src.items()
                      if re.search(r"import .*\b(DataProtection|TableStateStore|AzureQueueSender)\b", text))
    assert builders == ["restore_core/runtime.py"], builders


#: how the deployed app uses each runtime requirement (an import, or the plugin name it loads)
REQUIREMENT_USES = {
    "azure-functions": "import azure.functions", "azure-identity": "azure.identity",
    "azure-mgmt-dataprotection": "azure.mgmt.dataprotection", "azure-core": "from azure.core",
    "azure-storage-queue": "azure.storage.queue", "azure-data-tables": "azure.data.tables",
    "azure-monitor-opentelemetry": "azure.monitor.opentelemetry",
    "azure-core-tracing-opentelemetry": 'tracing_implementation = "opentelemetry"',
    "opentelemetry-sdk": "opentelemetry.sdk", "pydantic": "from pydantic",
    "azure-storage-blob": "azure.storage.blob", "azure-keyvault-secrets": "azure.keyvault.secrets",
    "psycopg[binary]": "import psycopg",
}


def test_every_deployed_requirement_is_used_by_the_app() -> None:
    """requirements.txt is what the Function App deploys: nothing local-only, nothing unused."""
    code = "\n".join(p.read_text() for p in [ROOT / "function_app.py", *(ROOT / "restore_core").rglob("*.py")])
    names = [line.split("==")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert set(names) == set(REQUIREMENT_USES), set(names) ^ set(REQUIREMENT_USES)
    unused = [n for n in names if REQUIREMENT_USES[n] not in code]
    assert not unused, f"deployed but unused: {unused}"


def test_latest_drill_runs_are_read_by_a_reader_in_entra_mode_and_refused_without_a_principal(
        functions: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.unit.fakes import settings
    from tests.unit.test_who_asked import principal_headers

    h = Harness(settings=settings(RESTORE_AUTH_MODE="entra", WEBSITE_AUTH_ENABLED="true"))
    monkeypatch.setattr(runtime, "_deps", h.deps)
    read = functions["drills_latest_runs"].get_user_function()
    ok = read(http("GET", "drills/runs/latest", params={"limit": "5"}, headers=principal_headers("reader")))
    assert ok.status_code == 200 and json.loads(ok.get_body()) == {"items": [], "continuation": None}
    assert read(http("GET", "drills/runs/latest", headers={"x-functions-key": "k"})).status_code == 401
    bad = read(http("GET", "drills/runs/latest", params={"limit": "0"}, headers=principal_headers("reader")))
    assert bad.status_code == 400 and json.loads(bad.get_body())["error"]["field"] == "limit"
