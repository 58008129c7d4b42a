"""Telemetry setup: one OpenTelemetry configuration per process (Azure Monitor, or a local exporter)."""

from __future__ import annotations

import importlib
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

from opentelemetry import metrics, trace

from ..config import TELEMETRY_EXPORTER, Settings, SettingsError
from ..redact import RedactingFilter
from .names import _AZURE_SITE_ENV, NAME, SERVICE_NAME, _log


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
