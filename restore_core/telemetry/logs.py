"""Structured logs of the ``restore_core`` logger tree, redacted and carrying the restore and trace ids."""

from __future__ import annotations

import logging

from opentelemetry import trace

from ..redact import RedactingFilter
from .names import NAME, _restore_id_var


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

