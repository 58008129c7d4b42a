"""Telemetry names shared by every part (a contract with the workbook and the alert rules: change them only
together) and the little state the parts share (the propagator, the current restore id of the context)."""

from __future__ import annotations

import contextvars
import logging

from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

AttrValue = str | int | float | bool

NAME = "restore_core"  #: meter, tracer and root logger name
SERVICE_NAME = "restore-orchestrator"  #: service.name / cloud_RoleName outside Azure
SPAN_PREFIX = "restore."

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


