"""Each ``restore_core`` log record is exported once: by the app's own OpenTelemetry handler, not a second time by
the Functions host that receives the same record from the Python worker.

The host side is localdev.funchost.hostlogs, the real host's rule (host.json ``telemetryMode`` and the worker's
``WorkerOpenTelemetryEnabled`` capability); the app side is the handler ``telemetry.configure`` installed (memory
exporter here, Azure Monitor in Azure: both sit on the ``restore_core`` logger). docs/deploy.md "Telemetry".
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from localdev.funchost.config import Settings, host_config
from localdev.funchost.hostlogs import HostLogExport, invocation
from restore_core import telemetry
from restore_core.config import SettingsError, load_settings
from tests.infra import bicep_facts as facts

ROOT = Path(__file__).resolve().parents[2]
HOST_JSON: dict[str, Any] = json.loads((ROOT / "host.json").read_text())
SAMPLE: dict[str, str] = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]


def deployed_settings() -> dict[str, str]:
    """The app settings infra/main.bicep deploys (expressions stand in as a non-empty placeholder)."""
    parsed = facts.app_settings(facts.parse(facts.MAIN_BICEP))
    return {name: value if isinstance(value, str) else "<expression>" for name, value in parsed.items()}


def exports_of_one_record(mem: telemetry.MemoryExporters, host_json: Mapping[str, Any],
                          settings: Mapping[str, str], text: str) -> tuple[int, int]:
    """(exported by the app, exported by the host) for one record logged by restore_core inside an invocation."""
    host = HostLogExport(host_config(host_json).telemetry_mode, Settings(settings))
    root = logging.getLogger()
    root.addHandler(host)
    try:
        with invocation("restore_validate"):
            telemetry.get_logger("stages.validate").warning("%s for r-1", text)
    finally:
        root.removeHandler(host)
    by_app = [r for r in mem.logs.get_finished_logs() if str(r.log_record.body) == f"{text} for r-1"]
    return len(by_app), host.total()


def test_a_record_is_exported_once_with_the_deployed_host_json_and_settings(mem: telemetry.MemoryExporters) -> None:
    settings = deployed_settings()
    assert settings.get("APPLICATIONINSIGHTS_CONNECTION_STRING"), "the host has a destination in Azure"
    assert exports_of_one_record(mem, HOST_JSON, settings, "deployed") == (1, 0)


def test_a_record_is_exported_once_with_the_sample_settings_and_a_connection_string(
        mem: telemetry.MemoryExporters) -> None:
    settings = {**SAMPLE, "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=00000000-0000-0000-0000-0"}
    assert exports_of_one_record(mem, HOST_JSON, settings, "sample") == (1, 0)


@pytest.mark.parametrize("host_json, worker_setting", [
    ({k: v for k, v in HOST_JSON.items() if k != "telemetryMode"}, "true"),  # classic mode: host forwards anyway
    (HOST_JSON, "false"),                                                    # no capability announced
], ids=["no-telemetryMode", "no-worker-capability"])
def test_without_both_halves_the_host_exports_the_record_again(mem: telemetry.MemoryExporters,
                                                                host_json: dict[str, Any],
                                                                worker_setting: str) -> None:
    settings = {**deployed_settings(), "PYTHON_ENABLE_OPENTELEMETRY": worker_setting}
    assert exports_of_one_record(mem, host_json, settings, "twice") == (1, 1)


def test_the_worker_own_azure_monitor_exporter_is_refused_with_the_fix() -> None:
    env = {**SAMPLE, "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "True"}
    with pytest.raises(SettingsError, match="PYTHON_ENABLE_OPENTELEMETRY=true"):
        load_settings(env)
    assert load_settings({**SAMPLE, "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "false"})
