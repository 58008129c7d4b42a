"""Telemetry: one OpenTelemetry setup per process, stage spans, the restore metrics and structured logs.

Split by concern: :mod:`.setup`, :mod:`.metrics`, :mod:`.spans`, :mod:`.logs` (names in :mod:`.names`); this
package re-exports what the rest of ``restore_core`` calls.

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

from .logs import get_logger
from .metrics import (
    record_arm_call,
    record_queue_lag,
    record_rehydration_wait,
    record_restore_finished,
    record_restore_started,
    set_active_restores,
    set_poison_depth,
)
from .names import (
    METRIC_ACTIVE,
    METRIC_ARM_CALLS,
    METRIC_FINISHED,
    METRIC_JOB_DURATION,
    METRIC_POISON_DEPTH,
    METRIC_QUEUE_LAG,
    METRIC_REHYDRATION_WAIT,
    METRIC_RTO,
    METRIC_STAGE_DURATION,
    METRIC_STARTED,
    NAME,
    SERVICE_NAME,
    SPAN_PREFIX,
    AttrValue,
)
from .setup import (
    MemoryExporters,
    TelemetryConfigError,
    _otlp_exporters,
    configure,
    configured_exporter,
    memory_exporters,
)
from .spans import StageSpan, current_traceparent, stage_span

__all__ = [
    "AttrValue",
    "METRIC_ACTIVE",
    "METRIC_ARM_CALLS",
    "METRIC_FINISHED",
    "METRIC_JOB_DURATION",
    "METRIC_POISON_DEPTH",
    "METRIC_QUEUE_LAG",
    "METRIC_REHYDRATION_WAIT",
    "METRIC_RTO",
    "METRIC_STAGE_DURATION",
    "METRIC_STARTED",
    "MemoryExporters",
    "NAME",
    "SERVICE_NAME",
    "SPAN_PREFIX",
    "StageSpan",
    "TelemetryConfigError",
    "_otlp_exporters",
    "configure",
    "configured_exporter",
    "current_traceparent",
    "get_logger",
    "memory_exporters",
    "record_arm_call",
    "record_queue_lag",
    "record_rehydration_wait",
    "record_restore_finished",
    "record_restore_started",
    "set_active_restores",
    "set_poison_depth",
    "stage_span",
]
