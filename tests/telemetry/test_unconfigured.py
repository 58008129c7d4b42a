"""Without telemetry.configure() (no connection string, nothing set up) every call still works and the trace id
still flows from message to message. Child process: the global providers must be untouched."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHILD = """
import json
from restore_core import telemetry
tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
with telemetry.stage_span("wait", restore_id="r", traceparent=tp) as sp:
    sp.set("tier", "archive"); sp.set_outcome("not_ready")
    telemetry.record_queue_lag(stage="wait", seconds=1.0)
    telemetry.set_active_restores({"waiting": 1})
    telemetry.get_logger("x").info("hello %s", "Password=abc;")
    inherited = sp.traceparent
with telemetry.stage_span("intake", restore_id="r2", traceparent=None) as root:
    fresh = root.traceparent
print(json.dumps({"inherited": inherited, "fresh": fresh, "configured": telemetry.configured_exporter()}))
"""


def test_calls_work_and_traceparent_flows_without_configure() -> None:
    proc = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["configured"] is None
    assert out["inherited"].split("-")[1] == "0af7651916cd43dd8448eb211c80319c"
    version, trace_id, span_id, flags = out["fresh"].split("-")
    assert (version, flags, len(trace_id), len(span_id)) == ("00", "01", 32, 16)
    assert int(trace_id, 16) != 0 and int(span_id, 16) != 0
