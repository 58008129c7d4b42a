"""host.json and app-setting handling for the local Functions host.

Consumes: ``host.json`` (the same file deployed to Azure), the app settings (``Values`` of local.settings.json).
Produces: :class:`HostConfig` (queue/http extension settings with the real host's defaults) and
:func:`resolve` for ``%NAME%`` binding expressions.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class HostError(RuntimeError):
    """The app, host.json or a setting is unusable; the message says what to change."""


_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{1,2}):(\d{1,2}(?:\.\d+)?)$")


def parse_timespan(value: Any, name: str) -> float:
    """Seconds from a .NET TimeSpan string (``[d.]hh:mm:ss[.fff]``) or a number of seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    m = _TIMESPAN.match(str(value).strip())
    if not m:
        raise HostError(f"host.json {name}={value!r} is not a TimeSpan; write it as \"hh:mm:ss\" (e.g. \"00:00:02\")")
    days, hours, minutes, seconds = m.groups()
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def is_timespan(value: str) -> bool:
    return bool(_TIMESPAN.match(value.strip()))


@dataclass(frozen=True)
class QueueConfig:
    batch_size: int = 16
    new_batch_threshold: int = 8
    max_polling_interval: float = 60.0
    visibility_timeout: float = 0.0
    max_dequeue_count: int = 5
    message_encoding: str = "base64"


@dataclass(frozen=True)
class SingletonConfig:
    """host.json ``singleton``: the blob lease that makes a timer listener run on one host instance only."""

    listener_lock_period: float = 60.0  #: lease duration, renewed at half of it (Azure Storage allows 15-60 s)
    listener_lock_recovery_polling_interval: float = 60.0  #: retry interval when another instance holds the lock


@dataclass(frozen=True)
class HostConfig:
    queues: QueueConfig
    route_prefix: str = "api"
    function_timeout: float | None = None
    telemetry_mode: str | None = None  #: host.json ``telemetryMode``: None (Application Insights SDK) or OpenTelemetry
    singleton: SingletonConfig = SingletonConfig()


#: The one value host.json's schema allows for ``telemetryMode`` (``"const": "OpenTelemetry"``).
TELEMETRY_MODE_OPENTELEMETRY = "OpenTelemetry"


def _telemetry_mode(doc: Mapping[str, Any]) -> str | None:
    mode = doc.get("telemetryMode")
    if mode is None:
        return None
    if str(mode).lower() != TELEMETRY_MODE_OPENTELEMETRY.lower():
        raise HostError(f"host.json telemetryMode={mode!r}: the only value is \"{TELEMETRY_MODE_OPENTELEMETRY}\" "
                        "(or leave it out for the Application Insights SDK)")
    return TELEMETRY_MODE_OPENTELEMETRY


def _singleton(doc: Mapping[str, Any]) -> SingletonConfig:
    """The real host's SingletonOptions: lease periods 15-60 s, recovery polling >= 15 s (it throws otherwise)."""
    s = doc.get("singleton") or {}
    period = parse_timespan(s.get("listenerLockPeriod", "00:01:00"), "singleton.listenerLockPeriod")
    if not 15 <= period <= 60:
        raise HostError(f"host.json singleton.listenerLockPeriod={period:g}s: a blob lease lasts 15 to 60 seconds")
    recovery = parse_timespan(s.get("listenerLockRecoveryPollingInterval", "00:01:00"),
                              "singleton.listenerLockRecoveryPollingInterval")
    if recovery < 15:
        raise HostError(f"host.json singleton.listenerLockRecoveryPollingInterval={recovery:g}s: must be >= 15 s")
    return SingletonConfig(listener_lock_period=period, listener_lock_recovery_polling_interval=recovery)


def _function_timeout(doc: Mapping[str, Any]) -> float | None:
    """``functionTimeout`` in seconds; absent or ``-1`` (unbounded, Dedicated/Premium/Flex) is None."""
    timeout = doc.get("functionTimeout")
    if timeout is None or str(timeout).strip() == "-1":
        return None
    seconds = parse_timespan(timeout, "functionTimeout")
    if seconds <= 0:
        raise HostError(f"host.json functionTimeout={timeout!r}: must be a positive \"hh:mm:ss\" or -1 (no limit)")
    return seconds


def host_config(doc: Mapping[str, Any]) -> HostConfig:
    """Build the config from a parsed host.json, with the real host's defaults for anything not set."""
    ext = doc.get("extensions") or {}
    q = ext.get("queues") or {}
    batch = int(q.get("batchSize", 16))
    if not 1 <= batch <= 32:
        raise HostError(f"host.json extensions.queues.batchSize={batch}: must be between 1 and 32")
    threshold = int(q.get("newBatchThreshold", batch // 2))
    if threshold < 0:
        raise HostError(f"host.json extensions.queues.newBatchThreshold={threshold}: must be >= 0")
    max_dequeue = int(q.get("maxDequeueCount", 5))
    if max_dequeue < 1:
        raise HostError(f"host.json extensions.queues.maxDequeueCount={max_dequeue}: must be >= 1")
    encoding = str(q.get("messageEncoding", "base64")).lower()
    if encoding not in ("base64", "none"):
        raise HostError(f"host.json extensions.queues.messageEncoding={encoding!r}: use \"base64\" or \"none\"")
    queues = QueueConfig(
        batch_size=batch,
        new_batch_threshold=threshold,
        max_polling_interval=parse_timespan(q.get("maxPollingInterval", "00:01:00"), "maxPollingInterval"),
        visibility_timeout=parse_timespan(q.get("visibilityTimeout", "00:00:00"), "visibilityTimeout"),
        max_dequeue_count=max_dequeue,
        message_encoding=encoding,
    )
    http = ext.get("http") or {}
    prefix = str(http.get("routePrefix", "api")).strip("/")
    return HostConfig(queues=queues, route_prefix=prefix, function_timeout=_function_timeout(doc),
                      telemetry_mode=_telemetry_mode(doc), singleton=_singleton(doc))


def load_host_json(app_dir: Path) -> dict[str, Any]:
    path = Path(app_dir) / "host.json"
    if not path.exists():
        return {}
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise HostError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}); fix the file") from None
    if not isinstance(doc, dict):
        raise HostError(f"{path} must hold a JSON object")
    return doc


def load_settings_file(path: Path) -> dict[str, str]:
    """The ``Values`` of a local.settings.json file, all as strings."""
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise HostError(f"settings file {path} not found; pass --settings with a local.settings.json") from None
    except json.JSONDecodeError as exc:
        raise HostError(f"settings file {path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    values = doc.get("Values") if isinstance(doc, dict) else None
    if not isinstance(values, dict):
        raise HostError(f"settings file {path} has no \"Values\" object")
    return {str(k): "" if v is None else str(v) for k, v in values.items()}


_EXPR = re.compile(r"%([^%]+)%")


class Settings:
    """App settings lookup: explicit settings first, then the process environment."""

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self.values = dict(values or {})

    def get(self, name: str) -> str | None:
        value = self.values.get(name)
        return value if value not in (None, "") else os.environ.get(name) or None

    def resolve(self, expr: str, where: str) -> str:
        """Substitute ``%NAME%`` binding expressions; a missing setting is an error naming it."""

        def sub(m: re.Match[str]) -> str:
            value = self.get(m.group(1))
            if value is None:
                raise HostError(f"{where} uses %{m.group(1)}%, but app setting {m.group(1)} is not set; "
                                "add it to Values in local.settings.json")
            return value

        return _EXPR.sub(sub, expr)

    def connection_string(self, connection: str | None, where: str) -> str:
        """The storage connection string behind a binding's ``connection`` setting name."""
        name = connection or "AzureWebJobsStorage"
        value = self.get(name)
        if value:
            return value
        raise HostError(f"{where}: connection {name!r} is not set; set app setting {name} to a storage connection "
                        "string (identity-based connections are not supported by the local host)")
