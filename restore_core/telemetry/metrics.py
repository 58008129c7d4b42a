"""The restore metrics (instruments created once, recorded by the pipeline, stages and watchdog)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

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
)


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
                            rto_seconds: float | None, job_seconds: float | None, source: str = "") -> None:
    """``source``: the door (http, queue, alert) when known; the failure alert counts rejected alerts by it."""
    inst = _inst()
    inst.finished.add(1, {"outcome": outcome, "target_kind": target_kind, "region": region,
                          "error_code": error_code or "", **({"source": source} if source else {})})
    if rto_seconds is not None:
        inst.rto.record(max(0.0, rto_seconds), {"target_kind": target_kind, "region": region, "outcome": outcome})
    if job_seconds is not None:
        inst.job_duration.record(max(0.0, job_seconds), {"target_kind": target_kind, "region": region})


def record_stage_duration(*, stage: str, outcome: str, seconds: float) -> None:
    _inst().stage_duration.record(seconds, {"stage": stage, "outcome": outcome})


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
