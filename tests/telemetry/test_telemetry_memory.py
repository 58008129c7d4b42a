"""restore_core.telemetry with the in-memory exporters: spans, metrics, logs, configure idempotence."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from restore_core import telemetry
from restore_core.config import load_settings
from restore_core.redact import MASK

from .conftest import MEMORY_ENV

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _spans(mem: telemetry.MemoryExporters, name: str) -> list[Any]:
    return [s for s in mem.spans.get_finished_spans() if s.name == name]


def _value(mem: telemetry.MemoryExporters, metric: str, **attrs: str) -> float:
    """Counter sum / histogram count for the data point whose attributes include ``attrs`` (0 when absent)."""
    total = 0.0
    for point_attrs, point in mem.metric_points(metric):
        if all(point_attrs.get(k) == v for k, v in attrs.items()):
            total += point.count if hasattr(point, "count") else point.value
    return total


def _hist_sum(mem: telemetry.MemoryExporters, metric: str, **attrs: str) -> float:
    return sum(p.sum for a, p in mem.metric_points(metric) if all(a.get(k) == v for k, v in attrs.items()))


def test_stage_span_is_child_of_given_traceparent_across_two_hops(mem: telemetry.MemoryExporters) -> None:
    with telemetry.stage_span("validate", restore_id="r-hop", traceparent=PARENT) as first:
        outgoing = first.traceparent
        assert telemetry.current_traceparent() == outgoing
    with telemetry.stage_span("trigger", restore_id="r-hop", traceparent=outgoing, attempt=2) as second:
        assert second.traceparent != outgoing
    (validate,) = _spans(mem, "restore.validate")
    (trigger,) = _spans(mem, "restore.trigger")
    assert f"{validate.context.trace_id:032x}" == PARENT.split("-")[1]
    assert f"{validate.parent.span_id:016x}" == PARENT.split("-")[2]
    assert trigger.context.trace_id == validate.context.trace_id
    assert trigger.parent.span_id == validate.context.span_id
    assert outgoing == f"00-{validate.context.trace_id:032x}-{validate.context.span_id:016x}-01"
    assert trigger.attributes["restore.attempt"] == 2
    assert validate.kind == SpanKind.CONSUMER
    assert telemetry.current_traceparent() is None


def test_stage_span_without_or_with_malformed_traceparent_starts_a_new_root(mem: telemetry.MemoryExporters) -> None:
    with telemetry.stage_span("intake", restore_id="r-a", traceparent=None):
        pass
    with telemetry.stage_span("intake", restore_id="r-b", traceparent="garbage-traceparent"):
        pass
    a, b = _spans(mem, "restore.intake")
    assert a.parent is None and b.parent is None
    assert a.context.trace_id != b.context.trace_id


def test_stage_span_sets_standard_and_custom_attributes(mem: telemetry.MemoryExporters) -> None:
    with telemetry.stage_span("monitor", restore_id="r-attr", traceparent=PARENT, attempt=3,
                              attributes={"backup_instance": "/subscriptions/s/bi1", "restore.tier": "archive"}) as sp:
        sp.set("azure_job_id", "job-42")
        sp.set("region", "secondary")
        sp.set("error_code", "see postgresql://u:topsecret@h/db")
        sp.set_outcome("succeeded")
    (span,) = _spans(mem, "restore.monitor")
    attrs = dict(span.attributes)
    assert attrs["restore.id"] == "r-attr"
    assert attrs["restore.stage"] == "monitor"
    assert attrs["restore.attempt"] == 3
    assert attrs["restore.backup_instance"] == "/subscriptions/s/bi1"
    assert attrs["restore.tier"] == "archive"
    assert attrs["restore.azure_job_id"] == "job-42"
    assert attrs["restore.region"] == "secondary"
    assert attrs["restore.outcome"] == "succeeded"
    assert "topsecret" not in attrs["restore.error_code"] and MASK in attrs["restore.error_code"]
    assert span.status.status_code != StatusCode.ERROR


def test_exception_sets_error_status_outcome_and_redacted_event(mem: telemetry.MemoryExporters) -> None:
    before = _value(mem, "restore.stage.duration", stage="trigger", outcome="error")
    with pytest.raises(RuntimeError, match="boom"):
        with telemetry.stage_span("trigger", restore_id="r-err", traceparent=PARENT):
            raise RuntimeError("boom Password=letmein;")
    (span,) = _spans(mem, "restore.trigger")
    assert span.status.status_code == StatusCode.ERROR
    assert "RuntimeError" in (span.status.description or "")
    assert span.attributes["restore.outcome"] == "error"
    (event,) = [e for e in span.events if e.name == "exception"]
    assert event.attributes["exception.type"] == "RuntimeError"
    assert "letmein" not in event.attributes["exception.message"]
    assert "letmein" not in event.attributes["exception.stacktrace"]
    assert "letmein" not in (span.status.description or "")
    assert _value(mem, "restore.stage.duration", stage="trigger", outcome="error") == before + 1


def test_exception_keeps_an_outcome_the_stage_already_chose(mem: telemetry.MemoryExporters) -> None:
    with pytest.raises(TimeoutError):
        with telemetry.stage_span("wait", restore_id="r-retry", traceparent=None) as sp:
            sp.set_outcome("retry")
            raise TimeoutError("arm slow")
    (span,) = _spans(mem, "restore.wait")
    assert span.attributes["restore.outcome"] == "retry"
    assert span.status.status_code == StatusCode.ERROR


def test_stage_duration_histogram_records_stage_and_outcome(mem: telemetry.MemoryExporters) -> None:
    before = _value(mem, "restore.stage.duration", stage="rehydrate", outcome="not_ready")
    before_ok = _value(mem, "restore.stage.duration", stage="rehydrate", outcome="ok")
    for _ in range(3):
        with telemetry.stage_span("rehydrate", restore_id="r-d", traceparent=None) as sp:
            sp.set_outcome("not_ready")
    with telemetry.stage_span("rehydrate", restore_id="r-d", traceparent=None):
        pass
    assert _value(mem, "restore.stage.duration", stage="rehydrate", outcome="not_ready") == before + 3
    assert _value(mem, "restore.stage.duration", stage="rehydrate", outcome="ok") == before_ok + 1


def test_restore_counters_and_histograms_carry_contract_attributes(mem: telemetry.MemoryExporters) -> None:
    started = _value(mem, "restore.started", target_kind="files", region="secondary", source="alert")
    finished = _value(mem, "restore.finished", outcome="failed", target_kind="files", region="secondary",
                      error_code="UserErrorMissingPermissions")
    rto_sum = _hist_sum(mem, "restore.rto", target_kind="files", region="secondary", outcome="failed")
    job_sum = _hist_sum(mem, "restore.job.duration", target_kind="files", region="secondary")
    telemetry.record_restore_started(target_kind="files", region="secondary", source="alert")
    telemetry.record_restore_started(target_kind="files", region="secondary", source="alert")
    telemetry.record_restore_finished(outcome="failed", target_kind="files", region="secondary",
                                      error_code="UserErrorMissingPermissions", rto_seconds=120.5, job_seconds=60.0)
    telemetry.record_restore_finished(outcome="rejected", target_kind="files", region="secondary",
                                      error_code=None, rto_seconds=None, job_seconds=None)
    assert _value(mem, "restore.started", target_kind="files", region="secondary", source="alert") == started + 2
    assert _value(mem, "restore.finished", outcome="failed", target_kind="files", region="secondary",
                  error_code="UserErrorMissingPermissions") == finished + 1
    assert _value(mem, "restore.finished", outcome="rejected", error_code="") >= 1
    assert _hist_sum(mem, "restore.rto", target_kind="files", region="secondary", outcome="failed") == rto_sum + 120.5
    assert _hist_sum(mem, "restore.job.duration", target_kind="files", region="secondary") == job_sum + 60.0


def test_wait_lag_and_arm_call_metrics(mem: telemetry.MemoryExporters) -> None:
    rehyd = _hist_sum(mem, "restore.rehydration.wait", priority="High")
    lag = _hist_sum(mem, "restore.queue.lag", stage="monitor")
    ok = _value(mem, "restore.arm.calls", operation="jobs.get", status_code="200")
    throttled = _value(mem, "restore.arm.calls", operation="jobs.get", status_code="429")
    errors = _value(mem, "restore.arm.calls", operation="jobs.get", status_code="error")
    telemetry.record_rehydration_wait(seconds=3600.0, priority="High")
    telemetry.record_queue_lag(stage="monitor", seconds=1.25)
    telemetry.record_queue_lag(stage="monitor", seconds=-5)  # clock skew never records a negative lag
    for code in (200, 200, 429, None):
        telemetry.record_arm_call(operation="jobs.get", status_code=code)
    assert _hist_sum(mem, "restore.rehydration.wait", priority="High") == rehyd + 3600.0
    assert _hist_sum(mem, "restore.queue.lag", stage="monitor") == lag + 1.25
    assert _value(mem, "restore.arm.calls", operation="jobs.get", status_code="200") == ok + 2
    assert _value(mem, "restore.arm.calls", operation="jobs.get", status_code="429") == throttled + 1
    assert _value(mem, "restore.arm.calls", operation="jobs.get", status_code="error") == errors + 1


def test_gauges_report_the_latest_watchdog_values(mem: telemetry.MemoryExporters) -> None:
    telemetry.set_active_restores({"waiting": 4, "restoring": 2})
    telemetry.set_poison_depth({"restore-wait-poison": 3})
    active = {a["stage"]: p.value for a, p in mem.metric_points("restore.active")}
    assert active == {"waiting": 4, "restoring": 2}
    assert {a["queue"]: p.value for a, p in mem.metric_points("restore.poison.depth")} == {"restore-wait-poison": 3}
    telemetry.set_active_restores({"waiting": 1})
    assert {a["stage"]: p.value for a, p in mem.metric_points("restore.active")} == {"waiting": 1}


def test_logs_carry_restore_and_trace_ids_and_are_redacted(mem: telemetry.MemoryExporters) -> None:
    log = telemetry.get_logger("stages.trigger")
    assert log.name == "restore_core.stages.trigger"
    assert telemetry.get_logger("restore_core.x").name == "restore_core.x"
    with telemetry.stage_span("trigger", restore_id="r-log", traceparent=PARENT):
        log.info("calling ARM with %s", "Authorization: Bearer abc.def.ghi", extra={"vault": "v1"})
    records = [r.log_record for r in mem.logs.get_finished_logs()
               if r.log_record.attributes.get("restore_id") == "r-log"]
    assert len(records) == 1
    rec = records[0]
    assert "abc.def.ghi" not in str(rec.body) and MASK in str(rec.body)
    assert rec.attributes["vault"] == "v1"
    (span,) = _spans(mem, "restore.trigger")
    assert rec.trace_id == span.context.trace_id
    assert rec.attributes["trace_id"] == f"{span.context.trace_id:032x}"


def test_setting_the_id_late_relabels_span_and_logs(mem: telemetry.MemoryExporters) -> None:
    log = telemetry.get_logger("intake")
    with telemetry.stage_span("intake", restore_id="pending", traceparent=None) as sp:
        sp.set("id", "r-late")
        log.info("accepted")
    log.info("after the span")
    (span,) = _spans(mem, "restore.intake")
    assert span.attributes["restore.id"] == "r-late"
    ids = {str(r.log_record.body): r.log_record.attributes.get("restore_id") for r in mem.logs.get_finished_logs()}
    assert ids["accepted"] == "r-late"
    assert ids["after the span"] is None


def test_configure_is_idempotent(mem: telemetry.MemoryExporters) -> None:
    import logging

    handlers = list(logging.getLogger("restore_core").handlers)
    telemetry.configure(load_settings(MEMORY_ENV))
    telemetry.configure(load_settings({**MEMORY_ENV, "RESTORE_TELEMETRY_EXPORTER": "console"}))
    assert telemetry.configured_exporter() == "memory"
    assert telemetry.memory_exporters() is mem
    assert logging.getLogger("restore_core").handlers == handlers
    with telemetry.stage_span("watchdog", restore_id="-", traceparent=None):
        pass
    assert len(_spans(mem, "restore.watchdog")) == 1  # still exported exactly once


def test_otlp_without_its_package_fails_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    def missing(name: str, package: str | None = None) -> Any:
        raise ImportError(name)

    monkeypatch.setattr(importlib, "import_module", missing)
    with pytest.raises(telemetry.TelemetryConfigError, match="pip install opentelemetry-exporter-otlp-proto-http"):
        telemetry._otlp_exporters("http://127.0.0.1:4318")


def test_rehydration_wait_is_recorded_when_the_archived_point_is_back(mem: telemetry.MemoryExporters) -> None:
    """The workbook charts restore.rehydration.wait: the pipeline records it (one-request flow, restore phase)."""
    from restore_core.models import Stage
    from tests.unit.fakes import Harness, database_body

    h = Harness()
    h.dp.add_archive_point()
    count = _value(mem, telemetry.METRIC_REHYDRATION_WAIT, priority="High")  # metrics are cumulative per process
    total = _hist_sum(mem, telemetry.METRIC_REHYDRATION_WAIT, priority="High")
    h.submit(database_body(rehydration={"priority": "High"}))
    h.run(until=Stage.WAIT)
    h.clock.advance(5400)
    h.dp.finish_rehydration_phase(h.dp.only_job().name)
    h.step()
    assert h.record().stage is Stage.MONITOR
    assert _value(mem, telemetry.METRIC_REHYDRATION_WAIT, priority="High") == count + 1
    assert _hist_sum(mem, telemetry.METRIC_REHYDRATION_WAIT, priority="High") - total >= 5400
