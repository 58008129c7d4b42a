"""Run-time controls: caller tokens, fault injection, metering and the ARM-style token bucket.

Consumes: admin API calls (see ``docs/emulator.md``). Produces: decisions the server applies per ARM call.
"""

from __future__ import annotations

import random
import secrets
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .timeutil import parse_duration

FAULT_MODES = {
    "throttle": "429 with Retry-After",
    "error500": "500 InternalServerError",
    "error503": "503 ServiceUnavailable",
    "drop": "connection dropped before the response body",
    "delay": "answer after delay_seconds",
    "lro_fail": "the LRO ends Failed with error_code (operation has no effect)",
    "job_fail": "the restore/rehydrate job ends Failed with error_code",
    "job_pause": "the restore job is Paused from half its run for duration (simulated ISO, default PT2H), then runs on",
    "job_warn": "the restore job ends CompletedWithWarnings, warningDetails carrying error_code/error_message",
    "job_cancel": "the restore job goes Cancelling at half its run and ends Cancelled (no data-plane work)",
    "lost_500": "the operation takes effect but the client gets a 500",
    "lost_drop": "the operation takes effect but the connection is dropped",
    "malformed": "200 with a body that is not valid JSON (operation has no effect)",
    "html": "200 with an HTML page instead of JSON, as a proxy or gateway sends (operation has no effect)",
    "error401": "401 ExpiredAuthenticationToken with WWW-Authenticate (a token hiccup; operation has no effect)",
    "error403": "403 AuthorizationFailed (operation has no effect)",
    "error404": "404 for the named operation even when the resource exists (operation has no effect)",
}
PRE_MODES = {"throttle", "error500", "error503", "drop", "delay", "malformed", "html", "error401", "error403",
             "error404"}
POST_MODES = {"lost_500", "lost_drop"}


class ControlError(ValueError):
    """Bad admin input; the message says what to change."""


@dataclass
class Fault:
    id: str
    operation: str  # operationId or "*"
    mode: str
    count: int | None  # remaining firings; None = unlimited (use probability)
    probability: float
    error_code: str
    error_message: str
    delay_seconds: float
    retry_after: int
    fired: int = 0
    duration: str = ""  # job_pause: how long the job stays Paused (simulated ISO-8601 duration)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "operation": self.operation, "mode": self.mode, "count": self.count,
                "probability": self.probability, "error_code": self.error_code, "error_message": self.error_message,
                "delay_seconds": self.delay_seconds, "retry_after": self.retry_after, "fired": self.fired,
                "duration": self.duration}


@dataclass
class Bucket:
    capacity: float
    rate: float
    tokens: float
    stamp: float = field(default_factory=time.monotonic)

    def take(self) -> tuple[bool, int, float]:
        """Take one token; returns (allowed, remaining, seconds until next token)."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True, int(self.tokens), 0.0
        return False, 0, (1 - self.tokens) / self.rate


JOB_BEHAVIOUR_MODES = {"job_pause", "job_warn", "job_cancel"}


def _job_duration(mode: str, value: Any) -> str:
    if value is None:
        return ""
    if mode != "job_pause":
        raise ControlError("duration: only mode job_pause takes a duration")
    try:
        if parse_duration(str(value)).total_seconds() <= 0:
            raise ValueError
    except ValueError:
        raise ControlError("duration: give a positive ISO-8601 duration such as PT2H") from None
    return str(value)


class Controls:
    def __init__(self, main_token: str) -> None:
        self._lock = threading.Lock()
        self.tokens: dict[str, str] = {main_token: "default"}
        self.faults: list[Fault] = []
        self.calls: list[dict[str, Any]] = []
        self.throttling: dict[str, Any] = {"enabled": False, "read_burst": 250, "read_rate": 25.0,
                                           "write_burst": 200, "write_rate": 10.0}
        self._buckets: dict[tuple[str, str], Bucket] = {}
        self.arm_latency_seconds = 0.0
        self.integer_retry_after = False  # LRO polls say Retry-After in whole seconds only, as Azure does

    # ------------------------------------------------------------- tokens
    def caller_for(self, token: str | None) -> str | None:
        if not token:
            return None
        return self.tokens.get(token)

    def issue_token(self, caller: str) -> str:
        if not caller or not isinstance(caller, str) or len(caller) > 64:
            raise ControlError("caller: give a non-empty name (max 64 characters), e.g. {\"caller\": \"baseline\"}")
        token = secrets.token_urlsafe(24)
        with self._lock:
            self.tokens[token] = caller
        return token

    # ------------------------------------------------------------- faults
    def add_fault(self, body: dict[str, Any]) -> Fault:
        if not isinstance(body, dict):
            raise ControlError("fault: send a JSON object")
        mode = body.get("mode")
        if mode not in FAULT_MODES:
            raise ControlError(f"mode: got {mode!r}; use one of {sorted(FAULT_MODES)}")
        op = body.get("operation", "*")
        if not isinstance(op, str) or not op:
            raise ControlError("operation: give an operationId like 'BackupInstances_TriggerRestore' or '*'")
        count = body.get("count")
        prob = float(body.get("probability", 1.0))
        if count is None and "probability" not in body:
            count = 1
        if count is not None and (not isinstance(count, int) or count < 1):
            raise ControlError("count: give a positive integer (or omit it and give probability)")
        if not 0 < prob <= 1:
            raise ControlError("probability: give a number in (0, 1]")
        if mode in ("lro_fail", "job_fail") and not body.get("error_code"):
            raise ControlError(f"error_code: mode {mode} needs the Azure error code to report")
        if mode == "delay" and float(body.get("delay_seconds", 0)) <= 0:
            raise ControlError("delay_seconds: mode delay needs a positive number of seconds")
        duration = _job_duration(mode, body.get("duration"))
        f = Fault(uuid.uuid4().hex[:12], op, mode, count, prob, str(body.get("error_code") or ""),
                  str(body.get("error_message") or "Injected fault."), float(body.get("delay_seconds", 0)),
                  int(body.get("retry_after", 1)), duration=duration)
        with self._lock:
            self.faults.append(f)
        return f

    def clear_faults(self, fault_id: str | None = None) -> int:
        with self._lock:
            before = len(self.faults)
            self.faults = [f for f in self.faults if fault_id is not None and f.id != fault_id]
            return before - len(self.faults)

    def take_fault(self, operation: str, modes: set[str]) -> Fault | None:
        """Consume the first matching fault whose mode is in ``modes`` (count or probability)."""
        with self._lock:
            for f in self.faults:
                if f.mode not in modes or f.operation not in ("*", operation):
                    continue
                if f.count is not None and f.count <= 0:
                    continue
                if f.count is None and random.random() >= f.probability:
                    continue
                if f.count is not None and f.probability < 1 and random.random() >= f.probability:
                    continue
                if f.count is not None:
                    f.count -= 1
                f.fired += 1
                return f
        return None

    # ------------------------------------------------------------- metering
    def record(self, operation: str, kind: str, status: int, caller: str) -> None:
        with self._lock:
            self.calls.append({"operation": operation, "kind": kind, "status": status, "caller": caller,
                               "at": time.time()})

    def metering(self) -> dict[str, Any]:
        with self._lock:
            calls = list(self.calls)
        by_op: Counter[str] = Counter(c["operation"] for c in calls)
        by_kind: Counter[str] = Counter(c["kind"] for c in calls)
        by_status: Counter[str] = Counter(str(c["status"]) for c in calls)
        by_caller: dict[str, dict[str, Any]] = {}
        for c in calls:
            e = by_caller.setdefault(c["caller"], {"total": 0, "read": 0, "write": 0, "by_operation": {},
                                                   "by_status": {}})
            e["total"] += 1
            e[c["kind"]] += 1
            e["by_operation"][c["operation"]] = e["by_operation"].get(c["operation"], 0) + 1
            e["by_status"][str(c["status"])] = e["by_status"].get(str(c["status"]), 0) + 1
        return {"total": len(calls), "by_operation": dict(by_op), "by_kind": dict(by_kind),
                "by_status": dict(by_status), "by_caller": by_caller}

    def reset_metering(self) -> None:
        with self._lock:
            self.calls.clear()

    # ------------------------------------------------------------- throttling
    def set_throttling(self, body: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ControlError("throttling: send a JSON object like {\"enabled\": true}")
        new = dict(self.throttling)
        for key, value in body.items():
            if key not in new:
                raise ControlError(f"throttling: unknown key '{key}'; known: {sorted(new)}")
            if key == "enabled":
                if not isinstance(value, bool):
                    raise ControlError("enabled: give true or false")
            elif not isinstance(value, int | float) or value <= 0:
                raise ControlError(f"{key}: give a positive number")
            new[key] = value
        with self._lock:
            self.throttling = new
            self._buckets.clear()
        return new

    def throttle(self, caller: str, kind: str) -> tuple[bool, int, float]:
        """(allowed, remaining, retry_after_seconds) for one call; always allowed when disabled."""
        with self._lock:
            t = self.throttling
            if not t["enabled"]:
                return True, int(t[f"{kind}_burst"]), 0.0
            b = self._buckets.get((caller, kind))
            if b is None:
                b = Bucket(float(t[f"{kind}_burst"]), float(t[f"{kind}_rate"]), float(t[f"{kind}_burst"]))
                self._buckets[(caller, kind)] = b
            return b.take()
