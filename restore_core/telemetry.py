"""Telemetry: one OpenTelemetry setup per process, stage spans, the restore metrics and structured logs.

Consumes: :class:`restore_core.config.Settings` (``appinsights_connection_string``, ``telemetry_exporter``,
``otlp_endpoint``) once via :func:`configure`; calls from the pipeline stages (``stage_span``, ``record_*``).
Produces: spans ``restore.<stage>``, metrics under meter ``restore_core`` and logs of the ``restore_core`` logger tree,
exported to Azure Monitor (Application Insights) when a connection string is set, else to the local exporter chosen
by ``RESTORE_TELEMETRY_EXPORTER`` (``console`` | ``otlp`` | ``memory`` | ``none``).

Names are a contract shared with the workbook and the alert rules (see the ``METRIC_*`` and ``SPAN_PREFIX``
constants); change them only together. Nothing here fails a function because telemetry is absent: without
:func:`configure`, the OpenTelemetry API is a no-op and the functions below still work (traceparents still flow).
"""

from __future__ import annotations

import contextvars
import importlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from restore_core.config import TELEMETRY_EXPORTER, Settings, SettingsError
from restore_core.redact import RedactingFilter, redact

AttrValue = str | int | float | bool

NAME = "restore_core"  #: meter, tracer and root logger name
SERVICE_NAME = "restore-orchestrator"  #: service.name / cloud_RoleName outside Azure
SPAN_PREFIX = "restore."
STAGES = ("intake", "validate", "rehydrate", "wait", "trigger", "monitor", "watchdog")

METRIC_STARTED = "restore.started"
METRIC_FINISHED = "restore.finished"
METRIC_STAGE_DURATION = "restore.stage.duration"
METRIC_RTO = "restore.rto"
METRIC_JOB_DURATION = "restore.job.duration"
METRIC_REHYDRATION_WAIT = "restore.rehydration.wait"
METRIC_QUEUE_LAG = "restore.queue.lag"
METRIC_ARM_CALLS = "restore.arm.calls"
METRIC_ACTIVE = "restore.active"
METRIC_POISON_DEPTH = "restore.poison.depth"

#: Environment variable that exists only on Azure App Service / Functions (used only to avoid cloud probing locally).
_AZURE_SITE_ENV = "WEBSITE_SITE_NAME"

_log = logging.getLogger(NAME + ".telemetry")
_propagator = TraceContextTextMapPropagator()
_restore_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("restore_id", default=None)


class TelemetryConfigError(SettingsError):
    """Telemetry cannot be set up as configured; the message says which setting or package to change."""


# ----------------------------------------------------------------------------------------------------------- setup
@dataclass(frozen=True)
class MemoryExporters:
    """In-memory sinks installed by ``RESTORE_TELEMETRY_EXPORTER=memory`` (tests)."""

    spans: Any  # opentelemetry.sdk.trace.export.in_memory_span_exporter.InMemorySpanExporter
    metrics: Any  # opentelemetry.sdk.metrics.export.InMemoryMetricReader
    logs: Any  # opentelemetry.sdk._logs.export.InMemoryLogRecordExporter

    def clear(self) -> None:
        """Forget finished spans and logs (metrics are cumulative: compare values before/after instead)."""
        self.spans.clear()
        self.logs.clear()

    def metric_points(self, name: str) -> list[tuple[dict[str, Any], Any]]:
        """``(attributes, point)`` for every data point of metric ``name`` collected now."""
        data = self.metrics.get_metrics_data()
        out: list[tuple[dict[str, Any], Any]] = []
        if data is None:
            return out
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        out.extend((dict(p.attributes or {}), p) for p in metric.data.data_points)
        return out


_lock = threading.Lock()
_configured_with: str | None = None
_memory: MemoryExporters | None = None


def configured_exporter() -> str | None:
    """``azure_monitor``, ``console``, ``otlp``, ``memory`` or ``none`` once configured; ``None`` before."""
    return _configured_with


def memory_exporters() -> MemoryExporters:
    """The in-memory exporters; only after ``configure`` with ``RESTORE_TELEMETRY_EXPORTER=memory``."""
    if _memory is None:
        raise RuntimeError(
            f"in-memory telemetry is not configured: call telemetry.configure() with {TELEMETRY_EXPORTER}=memory "
            "(and no APPLICATIONINSIGHTS_CONNECTION_STRING) first"
        )
    return _memory


def configure(settings: Settings) -> None:
    """Install the process-wide providers once (later calls are no-ops) and enable azure-core tracing."""
    global _configured_with
    with _lock:
        if _configured_with is not None:
            return
        if settings.appinsights_connection_string:
            _configure_azure_monitor(settings.appinsights_connection_string, settings.azure_client_id)
            kind = "azure_monitor"
        else:
            kind = settings.telemetry_exporter
            _configure_local(kind, settings.otlp_endpoint)
        _enable_azure_sdk_tracing()
        root = logging.getLogger(NAME)
        if root.level == logging.NOTSET:
            root.setLevel(logging.INFO)
        for handler in root.handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter())
        _configured_with = kind
    _log.info("telemetry configured: exporter=%s", kind)


def _configure_azure_monitor(connection_string: str, client_id: str | None = None) -> None:
    """Application Insights with local (key) auth disabled needs Entra ID: the app's managed identity."""
    from azure.monitor.opentelemetry import configure_azure_monitor

    in_azure = bool(os.environ.get(_AZURE_SITE_ENV))
    if not in_azure:
        # Outside Azure: no IMDS probe of 169.254.169.254, no statsbeat / control-plane calls to Microsoft hosts.
        os.environ.setdefault("OTEL_EXPERIMENTAL_RESOURCE_DETECTORS", "azure_app_service")
        os.environ.setdefault("APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL", "true")
        os.environ.setdefault("APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED", "true")
        os.environ.setdefault("OTEL_SERVICE_NAME", SERVICE_NAME)  # cloud_RoleName (in Azure: the app's name)
    extra: dict[str, Any] = {}
    if client_id:
        from azure.identity import ManagedIdentityCredential

        extra["credential"] = ManagedIdentityCredential(client_id=client_id)
    configure_azure_monitor(
        **extra,
        connection_string=connection_string,
        logger_name=NAME,
        sampling_ratio=1.0,  # the default rate-limited sampler may drop restore spans
        enable_live_metrics=False,
        enable_performance_counters=False,
        disable_offline_storage=not in_azure,
    )


def _configure_local(kind: str, otlp_endpoint: str | None) -> None:
    from opentelemetry import _logs
    from opentelemetry.instrumentation.logging.handler import LoggingHandler
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import (
        ConsoleLogRecordExporter,
        InMemoryLogRecordExporter,
        SimpleLogRecordProcessor,
    )
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        ConsoleMetricExporter,
        InMemoryMetricReader,
        MetricReader,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    global _memory
    resource = Resource.create({"service.name": SERVICE_NAME})
    tracer_provider = TracerProvider(resource=resource)
    logger_provider: LoggerProvider | None = None
    readers: list[MetricReader] = []
    if kind == "memory":
        mem = MemoryExporters(spans=InMemorySpanExporter(), metrics=InMemoryMetricReader(),
                              logs=InMemoryLogRecordExporter())  # type: ignore[no-untyped-call]
        tracer_provider.add_span_processor(SimpleSpanProcessor(mem.spans))
        readers.append(mem.metrics)
        logger_provider = LoggerProvider(resource=resource)
        logger_provider.add_log_record_processor(SimpleLogRecordProcessor(mem.logs))
        _memory = mem
    elif kind == "console":
        tracer_provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
        readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter(), export_interval_millis=60_000))
        logger_provider = LoggerProvider(resource=resource)
        logger_provider.add_log_record_processor(SimpleLogRecordProcessor(ConsoleLogRecordExporter()))
    elif kind == "otlp":
        span_exp, metric_exp, log_exp = _otlp_exporters(otlp_endpoint)
        tracer_provider.add_span_processor(BatchSpanProcessor(span_exp))
        readers.append(PeriodicExportingMetricReader(metric_exp, export_interval_millis=30_000))
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

        logger_provider = LoggerProvider(resource=resource)
        logger_provider.add_log_record_processor(BatchLogRecordProcessor(log_exp))
    elif kind != "none":
        raise TelemetryConfigError(f"{TELEMETRY_EXPORTER}={kind!r}; choose one of none, console, otlp, memory")
    # "none" still installs an SDK tracer provider (no processors): trace ids are generated and propagate.
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=readers))
    if logger_provider is not None:
        _logs.set_logger_provider(logger_provider)
        logging.getLogger(NAME).addHandler(LoggingHandler(logger_provider=logger_provider))


def _otlp_exporters(endpoint: str | None) -> tuple[Any, Any, Any]:
    """OTLP/HTTP exporters (package in requirements-dev.txt, not deployed: in Azure telemetry goes to App Insights)."""
    module = "opentelemetry.exporter.otlp.proto.http"
    try:
        traces = importlib.import_module(module + ".trace_exporter")
        metrics_mod = importlib.import_module(module + ".metric_exporter")
        logs_mod = importlib.import_module(module + "._log_exporter")
    except ImportError:
        raise TelemetryConfigError(
            f"{TELEMETRY_EXPORTER}=otlp needs the package opentelemetry-exporter-otlp-proto-http "
            "(.venv/bin/pip install opentelemetry-exporter-otlp-proto-http); or set it to console or none"
        ) from None
    base = (endpoint or "http://127.0.0.1:4318").rstrip("/")
    return (
        traces.OTLPSpanExporter(endpoint=base + "/v1/traces"),
        metrics_mod.OTLPMetricExporter(endpoint=base + "/v1/metrics"),
        logs_mod.OTLPLogExporter(endpoint=base + "/v1/logs"),
    )


def _enable_azure_sdk_tracing() -> None:
    """ARM and storage SDK calls become child spans of the current stage span."""
    try:
        from azure.core.settings import settings as azure_settings

        azure_settings.tracing_implementation = "opentelemetry"
    except Exception as exc:  # tracing plugin missing: telemetry degrades, the function does not fail
        _log.warning("azure-core OpenTelemetry tracing not enabled: %s", exc)


# ----------------------------------------------------------------------------------------------------- instruments
class _Instruments:
    """Created on first use from the global meter (the API proxies them to the provider installed later)."""

    def __init__(self) -> None:
        meter = metrics.get_meter(NAME)
        self.started = meter.create_counter(METRIC_STARTED, unit="1", description="Restores accepted")
        self.finished = meter.create_counter(METRIC_FINISHED, unit="1", description="Restores ended, by outcome")
        self.stage_duration = meter.create_histogram(METRIC_STAGE_DURATION, unit="s",
                                                     description="Time spent handling one stage message")
        self.rto = meter.create_histogram(METRIC_RTO, unit="s", description="Request accepted to Azure job end")
        self.job_duration = meter.create_histogram(METRIC_JOB_DURATION, unit="s",
                                                   description="Azure restore job duration")
        self.rehydration_wait = meter.create_histogram(METRIC_REHYDRATION_WAIT, unit="s",
                                                       description="Time until the recovery point was rehydrated")
        self.queue_lag = meter.create_histogram(METRIC_QUEUE_LAG, unit="s",
                                                description="Message enqueued to handling start")
        self.arm_calls = meter.create_counter(METRIC_ARM_CALLS, unit="1", description="ARM calls by status code")
        meter.create_observable_gauge(METRIC_ACTIVE, callbacks=[_observe_active], unit="1",
                                      description="Active restores by stage (watchdog)")
        meter.create_observable_gauge(METRIC_POISON_DEPTH, callbacks=[_observe_poison], unit="1",
                                      description="Approximate message count of each poison queue (watchdog)")


_instruments_lock = threading.Lock()
_instruments: _Instruments | None = None
_active: dict[str, int] = {}
_poison: dict[str, int] = {}


def _inst() -> _Instruments:
    global _instruments
    if _instruments is None:
        with _instruments_lock:
            if _instruments is None:
                _instruments = _Instruments()
    return _instruments


def _observe_active(options: CallbackOptions) -> Iterator[Observation]:
    for stage, count in sorted(_active.items()):
        yield Observation(count, {"stage": stage})


def _observe_poison(options: CallbackOptions) -> Iterator[Observation]:
    for queue, depth in sorted(_poison.items()):
        yield Observation(depth, {"queue": queue})


def record_restore_started(*, target_kind: str, region: str, source: str) -> None:
    _inst().started.add(1, {"target_kind": target_kind, "region": region, "source": source})


def record_restore_finished(*, outcome: str, target_kind: str, region: str, error_code: str | None,
                            rto_seconds: float | None, job_seconds: float | None) -> None:
    inst = _inst()
    inst.finished.add(1, {"outcome": outcome, "target_kind": target_kind, "region": region,
                          "error_code": error_code or ""})
    if rto_seconds is not None:
        inst.rto.record(max(0.0, rto_seconds), {"target_kind": target_kind, "region": region, "outcome": outcome})
    if job_seconds is not None:
        inst.job_duration.record(max(0.0, job_seconds), {"target_kind": target_kind, "region": region})


def record_rehydration_wait(*, seconds: float, priority: str) -> None:
    _inst().rehydration_wait.record(max(0.0, seconds), {"priority": priority})


def record_queue_lag(*, stage: str, seconds: float) -> None:
    _inst().queue_lag.record(max(0.0, seconds), {"stage": stage})


def record_arm_call(*, operation: str, status_code: int | None) -> None:
    _inst().arm_calls.add(1, {"operation": operation,
                              "status_code": "error" if status_code is None else str(status_code)})


def set_active_restores(counts: Mapping[str, int]) -> None:
    """Replace the active-restore counts by stage (reported by the ``restore.active`` gauge at each collection)."""
    _inst()
    global _active
    _active = {str(k): int(v) for k, v in counts.items()}


def set_poison_depth(depths: Mapping[str, int]) -> None:
    """Replace the poison-queue depths by queue name (reported by ``restore.poison.depth``)."""
    _inst()
    global _poison
    _poison = {str(k): int(v) for k, v in depths.items()}


# ----------------------------------------------------------------------------------------------------------- spans
def _attr_key(key: str) -> str:
    return key if key.startswith(SPAN_PREFIX) else SPAN_PREFIX + key


def _clean(value: AttrValue) -> AttrValue:
    return redact(value) if isinstance(value, str) else value


def _format_traceparent(ctx: trace.SpanContext) -> str:
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def _parse_traceparent(traceparent: str | None) -> Context:
    """Context whose parent is ``traceparent``; an empty context (new root trace) when absent or malformed."""
    if not traceparent:
        return Context()
    ctx = _propagator.extract({"traceparent": traceparent})
    if not trace.get_current_span(ctx).get_span_context().is_valid:
        _log.warning("ignoring malformed traceparent %r; starting a new trace", traceparent[:80])
        return Context()
    return ctx


class StageSpan:
    """Handle on the current stage span: set ``restore.*`` attributes and the outcome; read its traceparent."""

    def __init__(self, span: trace.Span, stage: str) -> None:
        self._span = span
        self.stage = stage
        self.outcome: str | None = None
        self._fallback: str | None = None

    def set(self, key: str, value: AttrValue) -> None:
        """Set attribute ``restore.<key>`` (string values are redacted). Setting ``id`` also relabels the logs
        written inside this span (intake learns the restore id only after it opened the span)."""
        full = _attr_key(key)
        self._span.set_attribute(full, _clean(value))
        if full == SPAN_PREFIX + "id":
            _restore_id_var.set(str(value))

    def set_outcome(self, outcome: str) -> None:
        self.outcome = outcome
        self._span.set_attribute(SPAN_PREFIX + "outcome", outcome)

    @property
    def traceparent(self) -> str:
        """W3C traceparent of this span, to put in outgoing stage messages."""
        ctx = self._span.get_span_context()
        if ctx.is_valid:  # without configure() this is the parent's context: the trace id still flows
            return _format_traceparent(ctx)
        if self._fallback is None:  # telemetry not configured and no parent: still give the next hop a trace
            self._fallback = f"00-{secrets.randbits(128) or 1:032x}-{secrets.randbits(64) or 1:016x}-01"
        return self._fallback


@contextmanager
def stage_span(stage: str, *, restore_id: str, traceparent: str | None, attempt: int = 1,
               attributes: Mapping[str, AttrValue] | None = None) -> Iterator[StageSpan]:
    """Span ``restore.<stage>`` child of ``traceparent`` (a new root trace when ``None``).

    Sets ``restore.id``/``restore.stage``/``restore.attempt`` and ``attributes`` (keys with or without the
    ``restore.`` prefix). An exception is recorded (redacted) with ERROR status and re-raised; the outcome is then
    ``error`` unless the stage set one. On exit ``restore.stage.duration {stage, outcome}`` is recorded (outcome
    ``ok`` when never set).
    """
    tracer = trace.get_tracer(NAME)
    parent = _parse_traceparent(traceparent)
    start = time.perf_counter()
    token = _restore_id_var.set(restore_id)
    try:
        with tracer.start_as_current_span(SPAN_PREFIX + stage, context=parent, kind=SpanKind.CONSUMER,
                                          record_exception=False, set_status_on_exception=False) as span:
            handle = StageSpan(span, stage)
            span.set_attribute(SPAN_PREFIX + "id", restore_id)
            span.set_attribute(SPAN_PREFIX + "stage", stage)
            span.set_attribute(SPAN_PREFIX + "attempt", attempt)
            for key, value in (attributes or {}).items():
                handle.set(key, value)
            try:
                yield handle
            except BaseException as exc:
                message = redact(str(exc))
                span.record_exception(exc, attributes={
                    "exception.message": message,
                    "exception.stacktrace": redact(_format_exception(exc)),
                })
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {message}"[:1024]))
                if handle.outcome is None:
                    handle.set_outcome("error")
                raise
            finally:
                if handle.outcome is None:
                    handle.set_outcome("ok")
                _inst().stage_duration.record(time.perf_counter() - start,
                                              {"stage": stage, "outcome": handle.outcome or "ok"})
    finally:
        _restore_id_var.reset(token)


def _format_exception(exc: BaseException) -> str:
    import traceback

    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def current_traceparent() -> str | None:
    """W3C traceparent of the current span, or ``None`` outside any (valid) span."""
    ctx = trace.get_current_span().get_span_context()
    return _format_traceparent(ctx) if ctx.is_valid else None


# ------------------------------------------------------------------------------------------------------------ logs
class _ContextFilter(logging.Filter):
    """Adds ``restore_id``, ``trace_id`` and ``span_id`` to every record (unless given as ``extra``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "restore_id", None) is None:
            record.restore_id = _restore_id_var.get()
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            record.trace_id = f"{ctx.trace_id:032x}"
            record.span_id = f"{ctx.span_id:016x}"
        return True


def get_logger(name: str) -> logging.Logger:
    """Logger ``restore_core.<name>`` (names already under ``restore_core`` are kept) with redaction and
    context (``restore_id``, ``trace_id``, ``span_id``) filters. Log with lazy ``%s`` formatting and pass
    structured fields as ``extra={...}``; they become ``customDimensions`` in Application Insights."""
    full = name if name == NAME or name.startswith(NAME + ".") else f"{NAME}.{name}"
    logger = logging.getLogger(full)
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(_ContextFilter())
        logger.addFilter(RedactingFilter())
    return logger
