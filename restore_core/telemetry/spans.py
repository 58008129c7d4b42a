"""Stage spans: one span per stage run, child of the traceparent the message carries."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode

from ..redact import redact
from .metrics import record_stage_duration
from .names import NAME, SPAN_PREFIX, AttrValue, _log, _propagator, _restore_id_var


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
                record_stage_duration(stage=stage, outcome=handle.outcome or "ok",
                                      seconds=time.perf_counter() - start)
    finally:
        _restore_id_var.reset(token)


def _format_exception(exc: BaseException) -> str:
    import traceback

    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def current_traceparent() -> str | None:
    """W3C traceparent of the current span, or ``None`` outside any (valid) span."""
    ctx = trace.get_current_span().get_span_context()
    return _format_traceparent(ctx) if ctx.is_valid else None


