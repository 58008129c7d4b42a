"""Telemetry of a real restore, captured in-process with OpenTelemetry's in-memory exporters.

The pipeline runs in THIS process (the local Functions host, in-process, against the session stack's Azurite and
emulator, on its own queue and table names so the stack's host does not compete), so its spans, metrics and logs
land in the in-memory exporters. Also the secrets scan: nothing the system emits or stores during secret-bearing
scenarios contains a connection string, password, token or SAS.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueClient, TextBase64DecodePolicy

from localdev import scenarios as sc
from localdev.apiclient import Api
from localdev.funchost import FunctionsHost
from localdev.stack import REPO
from restore_core import runtime, telemetry
from restore_core.redact import find_secrets

from .helpers import wait_for

SUFFIX = "tel"
QUEUES = ("REQUESTS", "VALIDATE", "REHYDRATE", "WAIT", "TRIGGER", "MONITOR", "EVENTS")


@pytest.fixture(scope="module")
def inproc(local_stack: Any) -> Iterator[tuple[Api, dict[str, str], list[logging.LogRecord]]]:
    values = json.loads((local_stack.dir / "local.settings.json").read_text())["Values"]
    settings = {**values, "RESTORE_TELEMETRY_EXPORTER": "memory", "RESTORE_TABLE_RESTORES": "restorestel",
                "RESTORE_TABLE_IDEMPOTENCY": "restoreidemtel", "RESTORE_WATCHDOG_SCHEDULE": "0 0 0 1 1 *"}
    for q in QUEUES:
        settings[f"RESTORE_QUEUE_{q}"] = f"restore-{q.lower()}-{SUFFIX}"
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(level=logging.DEBUG)
    logging.getLogger().addHandler(handler)
    runtime._deps = None  # build the deps from these settings, in this process
    key = uuid.uuid4().hex
    host = FunctionsHost(REPO, settings, port=0, function_keys=[key])
    host.start()
    try:
        yield Api(f"{host.base_url}/api", key), settings, records
    finally:
        host.stop()
        runtime._deps = None
        logging.getLogger().removeHandler(handler)


def _spans_of(restore_id: str) -> list[Any]:
    spans = telemetry.memory_exporters().spans.get_finished_spans()
    return [s for s in spans if (s.attributes or {}).get("restore.id") == restore_id]


def test_one_connected_trace_per_restore_with_stage_spans_and_arm_children(inproc):
    api, _, _ = inproc
    rid = wait_for(api, _start(api, sc.as_database(f"tel_{uuid.uuid4().hex[:8]}")))["id"]
    stages = _spans_of(rid)
    names = [s.name for s in stages]
    assert {"restore.intake", "restore.validate", "restore.trigger", "restore.monitor"} <= set(names), names
    trace_ids = {s.context.trace_id for s in stages}
    assert len(trace_ids) == 1, "every queue hop continues the same trace"
    by_id = {s.context.span_id: s for s in stages}
    for s in stages:
        if s.name != "restore.intake":
            assert s.parent is not None and s.parent.span_id in by_id, f"{s.name} is parented inside the trace"
    trig = next(s for s in stages if s.name == "restore.trigger")
    attrs = dict(trig.attributes or {})
    assert attrs["restore.outcome"] == "triggered" and attrs["restore.azure_job_id"]
    assert attrs["restore.target_kind"] == "database" and attrs["restore.region"] == "primary"
    everything = telemetry.memory_exporters().spans.get_finished_spans()
    arm_children = [s for s in everything if s.context.trace_id in trace_ids and s.parent is not None
                    and s.parent.span_id in by_id and s.name not in names]
    assert arm_children, "ARM/storage calls appear as child spans of the stage spans"


def test_metrics_after_a_known_scenario(inproc):
    api, _, _ = inproc
    mem = telemetry.memory_exporters()

    def count(name: str, **match: str) -> float:
        total = 0.0
        for attrs, point in mem.metric_points(name):
            if all(attrs.get(k) == v for k, v in match.items()):
                total += getattr(point, "value", None) or getattr(point, "count", 0)
        return total

    def settled(name: str, **match: str) -> float:
        """The count once it stops moving: a restore of an earlier test records restore.finished in its terminal
        bookkeeping, just after its status turned terminal (what that test waited for)."""
        last = count(name, **match)
        for _ in range(20):
            time.sleep(0.25)
            now = count(name, **match)
            if now == last:
                return now
            last = now
        return last

    before_ok = settled("restore.finished", outcome="succeeded")
    before_rejected = settled("restore.finished", outcome="rejected")
    before_started = count("restore.started", source="http")
    before_lag = count("restore.queue.lag", stage="validate")
    ok = _start(api, sc.as_database(f"tel_ok_{uuid.uuid4().hex[:6]}"))
    bad = _start(api, sc.as_database(f"tel_bad_{uuid.uuid4().hex[:6]}", server=sc.TARGET_NOREADER,
                                     secret=sc.SECRET_NOREADER))
    assert wait_for(api, ok)["status"] == "succeeded" and wait_for(api, bad)["status"] == "rejected"
    assert count("restore.started", source="http") - before_started == 2
    assert settled("restore.finished", outcome="succeeded") - before_ok == 1
    assert settled("restore.finished", outcome="rejected") - before_rejected == 1
    assert count("restore.rto") >= 1 and count("restore.job.duration") >= 1
    assert count("restore.stage.duration", stage="validate") >= 2
    # Both restores reach validate through its queue (intake enqueues it); trigger usually runs inline after validate
    # (registry ``inline``), so it records a queue lag only when its safety-net message does the work.
    assert count("restore.queue.lag", stage="validate") - before_lag >= 2
    assert count("restore.arm.calls", operation="BackupInstances_TriggerRestore") >= 1


def _start(api: Api, body: dict[str, Any]) -> str:
    status, resp, _ = api.post("/restores", body)
    assert status == 202, resp
    return str(resp["id"])


def test_secrets_never_reach_logs_spans_events_or_tables(inproc, local_stack):
    api, settings, records = inproc
    env = local_stack.env
    # secret-bearing scenarios: Key Vault-backed database restores (ok and refused), files, an alert
    ids = [_start(api, sc.as_database(f"sec_{uuid.uuid4().hex[:6]}")),
           _start(api, sc.as_database(f"sec_kv_{uuid.uuid4().hex[:6]}",
                                      secret="https://kv-norole-we.vault.azure.net/secrets/pgsrv-restore-conn")),
           _start(api, sc.as_files(f"sec-{uuid.uuid4().hex[:6]}"))]
    for rid in ids:
        wait_for(api, rid)
    time.sleep(0.5)
    known = [env["AZURE_STORAGE_CONNECTION_STRING"], env["DATAPROTECTION_TOKEN"], env["RESTORE_API_KEY"],
             env["AZURE_STORAGE_CONNECTION_STRING"].split("AccountKey=")[1].split(";")[0]]
    mem = telemetry.memory_exporters()
    emitted: list[str] = []
    for s in mem.spans.get_finished_spans():
        emitted.append(json.dumps({"name": s.name, "attrs": dict(s.attributes or {}),
                                   "events": [dict(e.attributes or {}) for e in s.events]}, default=str))
    for log in mem.logs.get_finished_logs():
        emitted.append(f"{log.log_record.body} {dict(log.log_record.attributes or {})}")
    for rec in records:
        emitted.append(rec.getMessage() + " " + json.dumps({k: str(v) for k, v in rec.__dict__.items()}))
    tables = TableServiceClient.from_connection_string(env["AZURE_STORAGE_CONNECTION_STRING"])
    for name in ("restorestel", "restoreidemtel"):
        emitted += [json.dumps(dict(e), default=str) for e in tables.get_table_client(name).list_entities()]
    events = QueueClient.from_connection_string(env["AZURE_STORAGE_CONNECTION_STRING"], f"restore-events-{SUFFIX}",
                                                message_decode_policy=TextBase64DecodePolicy())
    emitted += [m.content for m in events.peek_messages(max_messages=32)]
    assert len(emitted) > 50, "the scan looked at real output"
    leaks = [(hit, text[:200]) for text in emitted for hit in find_secrets(text, known_secrets=known)]
    assert leaks == []
