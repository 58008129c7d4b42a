"""Timer trigger runner: NCRONTAB (6 fields, seconds first) or TimeSpan schedules.

Consumes: a timer-triggered function and its resolved schedule (``%SETTING%`` allowed).
Behaviour: never two runs of the same timer at once (runs happen on the timer's own thread);
``past_due`` is true when a run starts late or catches up a missed occurrence; ``run_on_startup``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from azure.functions.timer import TimerRequest as TimerRequestImpl
from croniter import CroniterError, croniter

from localdev.funchost.config import HostError, is_timespan, parse_timespan
from localdev.funchost.invoke import Invoker

log = logging.getLogger("funchost")

LATE_TOLERANCE = 1.0  # seconds late before a run counts as past due


def next_after(schedule: str, where: str) -> Callable[[float], float]:
    """A function giving the next occurrence strictly after a timestamp."""
    if is_timespan(schedule):
        interval = parse_timespan(schedule, where)
        if interval <= 0:
            raise HostError(f"{where}: schedule {schedule!r} must be a positive interval")
        return lambda t: t + interval
    if len(schedule.split()) != 6:
        raise HostError(f"{where}: schedule {schedule!r} must be an NCRONTAB expression with 6 fields "
                        "(seconds first, e.g. \"0 */5 * * * *\") or a TimeSpan \"hh:mm:ss\"")
    try:
        croniter(schedule, datetime.now(UTC), second_at_beginning=True)
    except (CroniterError, ValueError) as exc:
        raise HostError(f"{where}: schedule {schedule!r} is not valid NCRONTAB ({exc})") from None

    def nxt(t: float) -> float:
        base = datetime.fromtimestamp(t, UTC)
        return float(croniter(schedule, base, second_at_beginning=True).get_next(float))

    return nxt


class TimerRunner:
    def __init__(self, invoker: Invoker, schedule: str, run_on_startup: bool, stop: threading.Event) -> None:
        self.invoker = invoker
        self.schedule = schedule
        self.run_on_startup = run_on_startup
        self.stop = stop
        self.next_after = next_after(schedule, f"timer function {invoker.name}")
        self.running = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name=f"timer-{invoker.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def run_once(self, past_due: bool) -> None:
        with self.running:  # one at a time, also for runs started by run_once() from outside
            t0 = time.perf_counter()
            outcome, detail = "ok", ""
            try:
                self.invoker(TimerRequestImpl(past_due=past_due, schedule={"AdjustForDST": True}))
            except Exception as exc:  # noqa: BLE001 - a failing timer run is logged, the schedule goes on
                outcome, detail = "failed", f" error={type(exc).__name__}: {str(exc)[:300]}"
            log.info("invocation function=%s trigger=timer past_due=%s outcome=%s duration_ms=%.0f%s",
                     self.invoker.name, past_due, outcome, (time.perf_counter() - t0) * 1000, detail)

    def _loop(self) -> None:
        if self.run_on_startup and not self.stop.is_set():
            self.run_once(past_due=False)
        next_t = self.next_after(time.time())
        force_past_due = False
        while not self.stop.wait(max(0.0, next_t - time.time())):
            self.run_once(past_due=force_past_due or time.time() - next_t > LATE_TOLERANCE)
            now = time.time()
            following = self.next_after(next_t)
            if following <= now:  # one or more occurrences were missed while running: catch up once
                force_past_due, next_t = True, now
            else:
                force_past_due, next_t = False, following
