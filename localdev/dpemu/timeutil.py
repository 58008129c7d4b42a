"""ISO-8601 helpers and the emulator's scaled clock.

The clock maps real elapsed time to simulated time: ``sim_now = sim_base + (real_now - real_base) * scale``.
Changing the scale or advancing the clock rebases it, so simulated time never jumps backwards.
"""

from __future__ import annotations

import re
import threading
import time
from datetime import UTC, datetime, timedelta

_DURATION = re.compile(
    r"^(?P<sign>-)?P(?:(?P<w>\d+(?:\.\d+)?)W)?(?:(?P<d>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$",
    re.IGNORECASE,
)


def parse_duration(text: str) -> timedelta:
    """Parse an ISO-8601 duration such as ``P15D``, ``PT1H30M`` or ``-P7D`` (no years/months)."""
    m = _DURATION.match(str(text).strip())
    if not m or str(text).strip().upper() in ("P", "-P", "PT", "-PT") or str(text).strip().upper().endswith("T"):
        raise ValueError(f"not an ISO-8601 duration: {text!r} (use e.g. 'P15D', 'PT1H', '-P7D')")
    parts = {k: float(v) for k, v in m.groupdict().items() if v and k != "sign"}
    delta = timedelta(weeks=parts.get("w", 0), days=parts.get("d", 0), hours=parts.get("h", 0),
                      minutes=parts.get("m", 0), seconds=parts.get("s", 0))
    return -delta if m.group("sign") else delta


def format_duration(delta: timedelta) -> str:
    """Format like the real service's job ``duration``: ``PT12M36.6419754S``."""
    total = max(delta.total_seconds(), 0.0)
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    out = "PT"
    if hours:
        out += f"{int(hours)}H"
    if minutes:
        out += f"{int(minutes)}M"
    out += f"{seconds:.7f}".rstrip("0").rstrip(".") + "S"
    return out


def iso(dt: datetime) -> str:
    """UTC timestamp with 7 fractional digits and a ``Z``, as ARM writes them."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def parse_time(text: str) -> datetime:
    """Parse an ISO timestamp (``Z`` or offset, up to 7 fractional digits); naive values are taken as UTC."""
    s = str(text).strip().strip("'\"")
    s = re.sub(r"(\.\d{6})\d+", r"\1", s).replace("Z", "+00:00").replace("z", "+00:00")
    dt = datetime.fromisoformat(s)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


class SimClock:
    """Thread-safe scaled clock (``scale`` simulated seconds per real second)."""

    def __init__(self, scale: float = 3600.0, start: datetime | None = None) -> None:
        if scale <= 0:
            raise ValueError("time scale must be > 0")
        self._lock = threading.Lock()
        self._scale = float(scale)
        self._sim_base = start or datetime.now(UTC)
        self._real_base = time.monotonic()

    @property
    def scale(self) -> float:
        return self._scale

    def now(self) -> datetime:
        with self._lock:
            return self._sim_base + timedelta(seconds=(time.monotonic() - self._real_base) * self._scale)

    def set_scale(self, scale: float) -> None:
        if scale <= 0:
            raise ValueError("time_scale must be > 0")
        with self._lock:
            real = time.monotonic()
            self._sim_base += timedelta(seconds=(real - self._real_base) * self._scale)
            self._real_base = real
            self._scale = float(scale)

    def advance(self, delta: timedelta) -> None:
        if delta < timedelta(0):
            raise ValueError("the clock only moves forward; give a positive duration")
        with self._lock:
            self._sim_base += delta

    def real_seconds(self, sim: timedelta) -> float:
        """How many real seconds a simulated span takes at the current scale."""
        return max(sim.total_seconds(), 0.0) / self._scale
