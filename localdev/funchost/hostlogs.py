"""What the real Functions host does with the logs a Python function writes (host.json ``telemetryMode``).

The Python worker forwards every record that reaches the root logger during an invocation to the host (category
``Function.<name>.User``). The real host exports those records with its own telemetry when it has a destination
(``APPLICATIONINSIGHTS_CONNECTION_STRING``, or ``OTEL_EXPORTER_OTLP_ENDPOINT`` in OpenTelemetry mode), except when
host.json sets ``telemetryMode: OpenTelemetry`` AND the worker announced the ``WorkerOpenTelemetryEnabled``
capability, which the Python worker does when ``PYTHON_ENABLE_OPENTELEMETRY`` or
``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY`` is true-like. Sources (azure-functions-host
OpenTelemetryConfigurationExtensions.cs, azure-functions-python-worker dispatcher) are quoted in localdev/README.md.

The local host exports nothing; :class:`HostLogExport` counts the records the real host WOULD export, so a test can
check that an app which exports its own logs does not get them exported a second time by the host.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from localdev.funchost.config import TELEMETRY_MODE_OPENTELEMETRY, Settings

#: App settings that make the Python worker announce WorkerOpenTelemetryEnabled.
WORKER_OTEL_SETTINGS = ("PYTHON_ENABLE_OPENTELEMETRY", "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY")
_TRUE_LIKE = ("1", "true", "t", "yes", "y")  # the Python worker's is_true_like()

_current = threading.local()


def worker_opentelemetry_enabled(settings: Settings) -> bool:
    """Whether the Python worker would announce the WorkerOpenTelemetryEnabled capability."""
    return any((settings.get(name) or "").strip().lower() in _TRUE_LIKE for name in WORKER_OTEL_SETTINGS)


def host_exports_worker_logs(telemetry_mode: str | None, settings: Settings) -> bool:
    """Whether the real host would export the logs the worker forwards (category ``Function.*``)."""
    otel = telemetry_mode == TELEMETRY_MODE_OPENTELEMETRY
    destination = settings.get("APPLICATIONINSIGHTS_CONNECTION_STRING") or (
        otel and settings.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
    if not destination:
        return False
    return not (otel and worker_opentelemetry_enabled(settings))


@contextmanager
def invocation(function_name: str) -> Iterator[None]:
    """Mark the current thread as running ``function_name`` (records get category Function.<name>.User)."""
    previous = getattr(_current, "name", None)
    _current.name = function_name
    try:
        yield
    finally:
        _current.name = previous


class HostLogExport(logging.Handler):
    """Root-logger handler: counts, per category, the invocation records the real host would export."""

    def __init__(self, telemetry_mode: str | None, settings: Settings) -> None:
        super().__init__(level=logging.INFO)
        self.exports = host_exports_worker_logs(telemetry_mode, settings)
        self.exported: dict[str, int] = {}
        self._lock_counts = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        name = getattr(_current, "name", None)
        if name is None or not self.exports:
            return
        category = f"Function.{name}.User"
        with self._lock_counts:
            self.exported[category] = self.exported.get(category, 0) + 1

    def total(self) -> int:
        with self._lock_counts:
            return sum(self.exported.values())
