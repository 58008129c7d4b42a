"""When will an Azure restore job end? An estimate from what the job itself shows, to plan the next check.

Azure documents the fields (``extendedInfo.subTasks[].taskProgress``, a string; ``extendedInfo.dataTransferredInBytes``,
spelled ``dataTransferedInBytes`` by the real service) but not how they move for a PostgreSQL restore, nor
``taskProgress``'s format. So the reading is defensive: ``"37%"``, ``"37"`` and ``"37.5 %"`` are percentages,
``"0.37"`` a fraction; bytes count only against the recovery point's size from its metadata and only while below it.
A whole-percent reading may hide up to one percent more (``quantum``).

The estimate is the EARLIEST the job can end at the pace seen — from the start (elapsed / share done) and, with an
earlier reading, from the pace between the two — so a check planned at it comes at or before the end: the cost of a
wrong estimate is another read, never a late notice, as long as the job does not speed up. Nothing usable (no
progress shown, 100% shown, a share that went backwards, a start in the future): None, and the caller backs off.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .backup import JobInfo
from .records import parse_time

_NUMBER = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(%?)\s*$")
WHOLE_PERCENT = 0.01


@dataclass(frozen=True)
class Reading:
    fraction: float  # share of the work shown done, 0 <= fraction < 1
    quantum: float  # the true share may be up to fraction + quantum (rounding of what is shown)
    source: str  # "taskProgress" | "dataTransferred"


def parse_task_progress(text: str | None) -> tuple[float, float] | None:
    """``(share, quantum)`` of a ``taskProgress`` string, or None when it is not a number we can read."""
    m = _NUMBER.match(text or "")
    if not m:
        return None
    value, percent = float(m.group(1)), bool(m.group(2))
    if not percent and "." in m.group(1) and value <= 1:  # "0.37": a fraction
        return value, WHOLE_PERCENT
    quantum = WHOLE_PERCENT if "." not in m.group(1) else WHOLE_PERCENT / 10
    return value / 100, quantum


def reading(job: JobInfo, source_bytes: int | None) -> Reading | None:
    """What the job shows of its progress: ``taskProgress``, refined by the bytes moved when both agree. Bytes are
    whole: a share by bytes may be up to one byte more (early in a long job of a small point, that byte is a large
    part of what was moved: 11 bytes of 5362 shown for 11.9 put an 8-hour job's end 38 minutes late)."""
    task = parse_task_progress(job.task_progress)
    moved = job.transferred_bytes
    by_bytes = moved / source_bytes if moved is not None and source_bytes and 0 <= moved < source_bytes else None
    byte = 1.0 / source_bytes if source_bytes else 0.0
    if task is not None and 0 <= task[0] < 1:
        # the last percent is never refined: a running job may show 99% (and its bytes 99% of the point) from then
        # until it ends (the emulator does; Azure shows no running job), so it may end at any moment
        if by_bytes is not None and task[0] <= by_bytes <= task[0] + task[1] and task[0] + task[1] < 1:
            return Reading(by_bytes, min(byte, task[0] + task[1] - by_bytes), "dataTransferred")
        return Reading(task[0], task[1], "taskProgress")
    if task is None and by_bytes is not None:
        return Reading(by_bytes, byte, "dataTransferred")
    return None


def fastest_pace(r: Reading, earliest_start: datetime, now: datetime, previous: dict[str, Any] | None) -> float | None:
    """The fastest pace (share per second) the job has surely shown: since its earliest start for a first reading
    (a start later than that only makes it faster), else the faster of the pace recorded before
    (``previous["fastest"]``) and the one since the previous reading. Shares as shown (no rounding added). It lets a
    job that stalls and then resumes at the pace it showed before be seen for what it is, not for a slow one."""
    before = _previous(previous)
    if before is None:
        elapsed = (now - earliest_start).total_seconds()
        return r.fraction / elapsed if elapsed > 0 and r.fraction > 0 else None
    paces = [float(previous["fastest"])] if previous and _number(previous.get("fastest")) else []
    if before[0] < now and r.fraction > before[1]:
        paces.append((r.fraction - before[1]) / (now - before[0]).total_seconds())
    return max(paces) if paces else None


def _number(value: Any) -> bool:
    try:
        return float(value) > 0
    except (TypeError, ValueError):
        return False


def earliest_end(r: Reading, started: datetime, now: datetime, previous: dict[str, Any] | None, *,
                 latest_start: datetime | None = None, fastest: float | None = None) -> datetime | None:
    """The earliest end at the pace seen since the job started and since the ``previous`` reading ({at, fraction}).

    The job started between ``started`` and ``latest_start`` (default: ``started``); from one reading, an error d in
    the start moves the estimate by d·(1/fraction − 1), hundreds of times d early in a long job. So a first reading
    counts from ``latest_start``: never late, at worst a check early. Once a pace is seen between two readings (which
    needs no start), the average since ``started`` only guards against a job that stalls. ``fastest``: the fastest
    pace seen (:func:`fastest_pace`); the rest at that pace is a candidate too (a job that stalled and resumes)."""
    upper = min(1.0, r.fraction + r.quantum)  # the most that can be done
    before = _previous(previous)
    paced = before is not None and before[0] < now and before[1] < upper
    origin = started if paced or latest_start is None else latest_start
    elapsed = (now - origin).total_seconds()
    if elapsed <= 0 or upper <= 0:
        return None
    ends = [origin + timedelta(seconds=elapsed / upper)]
    if paced and before is not None:
        rate = (upper - before[1]) / (now - before[0]).total_seconds()  # fastest pace consistent with both
        ends.append(now + timedelta(seconds=max(0.0, 1.0 - upper) / rate))
    if fastest is not None and fastest > 0:
        ends.append(now + timedelta(seconds=max(0.0, 1.0 - upper) / fastest))
    return min(ends)


def latest_end(r: Reading, earliest_start: datetime, now: datetime, previous: dict[str, Any] | None) -> datetime | None:
    """The LATEST end at the pace seen (the counterpart of :func:`earliest_end`): the least share shown done
    (``fraction``, no rounding added), from the earliest the job can have started and, with an earlier reading, at the
    slowest pace consistent with both. None when nothing bounds it (nothing shown done yet, no pace seen). A job that
    keeps its pace ends by it; one that slows down or stalls ends later (then its next reading plans again)."""
    ends: list[datetime] = []
    elapsed = (now - earliest_start).total_seconds()
    if r.fraction > 0 and elapsed > 0:
        ends.append(earliest_start + timedelta(seconds=elapsed / r.fraction))
    before = _previous(previous)
    if before is not None and before[0] < now:
        rate = (r.fraction - before[1] - r.quantum) / (now - before[0]).total_seconds()  # slowest pace consistent
        if rate > 0:
            ends.append(now + timedelta(seconds=(1.0 - r.fraction) / rate))
    return min(ends) if ends else None


def _previous(previous: dict[str, Any] | None) -> tuple[datetime, float] | None:
    try:
        at = parse_time(str(previous["at"])) if previous else None
        return (at, float(previous["fraction"])) if previous and at is not None else None
    except (KeyError, TypeError, ValueError):
        return None
