"""NCRONTAB: the six-field cron expressions of Azure Functions timers (``{second} {minute} {hour} {day} {month}
{day-of-week}``), in UTC, parsed here so the deployed app needs no extra package.

Fields take ``*``, a value, a range ``a-b``, a step ``*/n`` or ``a-b/n`` and comma lists; months and days of the week
also by their English three-letter names (``jan``, ``mon``); day of week 0 and 7 are both Sunday. Restricting both
the day of the month and the day of the week is refused: cron implementations disagree on whether that means "and"
or "or" (a drill that runs on days nobody expected is worse than a clear error).

:func:`parse` raises ``ValueError`` with what to change; :meth:`Schedule.previous` and :meth:`Schedule.next` walk
days, not seconds, so they cost a few hundred steps at most.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)}
_DAYS = {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
#: (name, lowest, highest, names)
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("second", 0, 59, {}), ("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day", 1, 31, {}),
    ("month", 1, 12, _MONTHS), ("day-of-week", 0, 7, _DAYS))
#: how far :meth:`Schedule.previous`/:meth:`Schedule.next` look (a schedule on 29 February may wait 8 years)
_HORIZON_DAYS = 366 * 8 + 2


def _value(text: str, name: str, lo: int, hi: int, names: dict[str, int]) -> int:
    low = text.lower()
    if low in names:
        return names[low]
    if not low.isdigit():
        raise ValueError(f"{name} field: {text!r} is not a number" + (" or a name" if names else ""))
    v = int(low)
    if not lo <= v <= hi:
        raise ValueError(f"{name} field: {v} is outside {lo}-{hi}")
    return v


def _field(text: str, name: str, lo: int, hi: int, names: dict[str, int]) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        rng, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ValueError(f"{name} field: step {step_text!r} must be a positive number")
            step = int(step_text)
        if rng == "*":
            a, b = lo, hi
        elif "-" in rng:
            left, _, right = rng.partition("-")
            a, b = _value(left, name, lo, hi, names), _value(right, name, lo, hi, names)
            if a > b:
                raise ValueError(f"{name} field: range {rng!r} runs backwards")
        else:
            a = _value(rng, name, lo, hi, names)
            b = hi if step_text else a
        values.update(range(a, b + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Schedule:
    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday

    def _day_matches(self, d: datetime) -> bool:
        return d.day in self.days and d.month in self.months and (d.isoweekday() % 7) in self.weekdays

    def _times(self, reverse: bool) -> list[tuple[int, int, int]]:
        return sorted(((h, m, s) for h in self.hours for m in self.minutes for s in self.seconds), reverse=reverse)

    def previous(self, at: datetime) -> datetime | None:
        """The latest occurrence at or before ``at`` (UTC), or None within the horizon."""
        at = at.astimezone(UTC).replace(microsecond=0)
        day = at.replace(hour=0, minute=0, second=0)
        times = self._times(reverse=True)
        for _ in range(_HORIZON_DAYS):
            if self._day_matches(day):
                for h, m, s in times:
                    t = day.replace(hour=h, minute=m, second=s)
                    if t <= at:
                        return t
            day -= timedelta(days=1)
        return None

    def next(self, after: datetime) -> datetime | None:
        """The first occurrence strictly after ``after`` (UTC), or None within the horizon."""
        after = after.astimezone(UTC)
        day = after.replace(hour=0, minute=0, second=0, microsecond=0)
        times = self._times(reverse=False)
        for _ in range(_HORIZON_DAYS):
            if self._day_matches(day):
                for h, m, s in times:
                    t = day.replace(hour=h, minute=m, second=s)
                    if t > after:
                        return t
            day += timedelta(days=1)
        return None


def parse(expression: str) -> Schedule:
    """A six-field NCRONTAB expression; ``ValueError`` naming the field and the fix."""
    parts = expression.split()
    if len(parts) != 6:
        raise ValueError(f"{len(parts)} fields; NCRONTAB has six: second minute hour day month day-of-week "
                         "(e.g. \"0 30 2 * * *\" for 02:30:00 UTC every day)")
    sets = [_field(p, name, lo, hi, names) for p, (name, lo, hi, names) in zip(parts, _FIELDS, strict=True)]
    if parts[3] != "*" and parts[5] != "*":
        raise ValueError("the day and day-of-week fields are both restricted; cron implementations disagree on what "
                         "that means: restrict one of them and set the other to *")
    weekdays = frozenset(d % 7 for d in sets[5])
    schedule = Schedule(" ".join(parts), sets[0], sets[1], sets[2], sets[3], sets[4], weekdays)
    if schedule.next(datetime(2000, 1, 1, tzinfo=UTC)) is None:
        raise ValueError(f"{expression!r} never fires (e.g. 31 February): choose a day that exists in the month")
    return schedule
