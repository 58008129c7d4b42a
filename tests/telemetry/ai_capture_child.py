"""Child process for test_azure_monitor_path: runs the real configure_azure_monitor path against a local capture
server (fake connection string), records every host looked up, prints one JSON report on stdout.

Usage: python -m tests.telemetry.ai_capture_child   (not a test module; needs a fresh process: global providers)."""

from __future__ import annotations

import gzip
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LOOKUPS: list[str] = []
_real_getaddrinfo = socket.getaddrinfo


def _spy(host: Any, *args: Any, **kwargs: Any) -> Any:
    LOOKUPS.append(str(host))
    return _real_getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _spy  # type: ignore[assignment]

BODIES: list[str] = []


class Capture(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        BODIES.append(body.decode())
        out = json.dumps({"itemsReceived": 1, "itemsAccepted": 1, "errors": []}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args: Any) -> None:
        pass


def main() -> None:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Capture)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    from restore_core import telemetry
    from restore_core.config import load_settings

    conn = (f"InstrumentationKey=00000000-0000-0000-0000-000000000000;"
            f"IngestionEndpoint=http://127.0.0.1:{srv.server_port}/")
    settings = load_settings({"RestoreStorage": "UseDevelopmentStorage=true",
                              "APPLICATIONINSIGHTS_CONNECTION_STRING": conn})
    telemetry.configure(settings)
    telemetry.configure(settings)
    log = telemetry.get_logger("stages.validate")
    with telemetry.stage_span("validate", restore_id="r-ai-1",
                              traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01") as sp:
        sp.set("target_kind", "database")
        telemetry.record_restore_started(target_kind="database", region="primary", source="http")
        telemetry.record_arm_call(operation="backupInstances.validateRestore", status_code=429)
        log.warning("validate failed for dsn %s", "postgresql://admin:Sup3rS3cret@127.0.0.1/db")
    from opentelemetry import _logs, metrics, trace

    for provider in (trace.get_tracer_provider(), _logs.get_logger_provider(), metrics.get_meter_provider()):
        provider.force_flush()  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = "\n".join(BODIES)
        if all(k in text for k in ("RequestData", "MessageData", "restore.started")):
            break
        time.sleep(0.1)
    envelopes = [json.loads(line) for body in BODIES for line in _lines(body)]
    print(json.dumps({"exporter": telemetry.configured_exporter(), "lookups": sorted(set(LOOKUPS)),
                      "envelopes": envelopes, "raw": "\n".join(BODIES)}))
    sys.stdout.flush()


def _lines(body: str) -> list[Any]:
    body = body.strip()
    if body.startswith("["):
        return [json.dumps(e) for e in json.loads(body)]
    return [line for line in body.splitlines() if line.strip()]


if __name__ == "__main__":
    main()
