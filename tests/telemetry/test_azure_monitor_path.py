"""The real configure_azure_monitor path, offline: a fake connection string whose IngestionEndpoint is a local
capture server (see local-stack-notes §5 A). Runs in a child process because OpenTelemetry's global providers can
be set only once per process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from restore_core.redact import find_secrets

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OTEL_", "APPLICATIONINSIGHTS_", "WEBSITE_", "RESTORE_TELEMETRY"))}
    proc = subprocess.run([sys.executable, "-m", "tests.telemetry.ai_capture_child"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _of(report: dict[str, Any], base_type: str) -> list[dict[str, Any]]:
    return [e["data"]["baseData"] for e in report["envelopes"] if e["data"]["baseType"] == base_type]


def test_only_loopback_is_looked_up(report: dict[str, Any]) -> None:
    assert report["exporter"] == "azure_monitor"
    assert report["lookups"] == ["127.0.0.1"]


def test_stage_span_lands_as_request_with_restore_attributes(report: dict[str, Any]) -> None:
    (req,) = [r for r in _of(report, "RequestData") if r["name"] == "restore.validate"]
    assert req["properties"]["restore.id"] == "r-ai-1"
    assert req["properties"]["restore.target_kind"] == "database"
    assert req["properties"]["restore.outcome"] == "ok"
    assert req["success"] is True


def test_metrics_land_as_custom_metrics_with_dimensions(report: dict[str, Any]) -> None:
    by_name = {m["metrics"][0]["name"]: m["properties"] for m in _of(report, "MetricData")}
    assert by_name["restore.started"] == {"target_kind": "database", "region": "primary", "source": "http"}
    assert by_name["restore.arm.calls"] == {"operation": "backupInstances.validateRestore", "status_code": "429"}
    assert by_name["restore.stage.duration"] == {"stage": "validate", "outcome": "ok"}
    assert not [n for n in by_name if n.startswith("azuremonitor.performancecounter")]


def test_logs_land_as_traces_redacted_and_correlated(report: dict[str, Any]) -> None:
    (msg,) = [m for m in _of(report, "MessageData") if "validate failed" in m["message"]]
    assert msg["message"] == "validate failed for dsn postgresql://admin:***@127.0.0.1/db"
    assert msg["properties"]["restore_id"] == "r-ai-1"
    assert msg["properties"]["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert find_secrets(report["raw"], known_secrets=["Sup3rS3cret"]) == []
