"""RESTORE_TELEMETRY_EXPORTER=otlp sends spans, metrics and logs over OTLP/HTTP to the configured endpoint.

Runs in a child process (OpenTelemetry providers are once per process) against a capture server on loopback.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHILD = """
import logging, os
from restore_core import telemetry
from restore_core.config import load_settings
telemetry.configure(load_settings({"RestoreStorage": "UseDevelopmentStorage=true",
                                   "RESTORE_TELEMETRY_EXPORTER": "otlp",
                                   "OTEL_EXPORTER_OTLP_ENDPOINT": os.environ["ENDPOINT"]}))
with telemetry.stage_span("validate", restore_id="20261124T080000-00000000aa", traceparent=None) as span:
    span.set_outcome("ready")
    telemetry.get_logger("otlp-test").warning("hello from %s", "otlp")
telemetry.record_restore_started(target_kind="database", region="primary", source="http")
from opentelemetry import trace, metrics, _logs
trace.get_tracer_provider().force_flush()
metrics.get_meter_provider().force_flush()
_logs.get_logger_provider().force_flush()
print(telemetry.configured_exporter())
"""


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[str, int]]]]:
    received: list[tuple[str, int]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append((self.path, len(body)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", received
    finally:
        server.shutdown()


def test_otlp_exporter_posts_traces_metrics_and_logs_to_the_endpoint(collector):
    endpoint, received = collector
    proc = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={"ENDPOINT": endpoint, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT),
                               "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "azure_app_service"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("otlp")
    paths = {p for p, size in received if size > 0}
    assert {"/v1/traces", "/v1/metrics", "/v1/logs"} <= paths, received
