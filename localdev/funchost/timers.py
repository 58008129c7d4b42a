"""Timer trigger runner: NCRONTAB (6 fields, seconds first) or TimeSpan schedules.

Consumes: a timer-triggered function and its resolved schedule (``%SETTING%`` allowed), and optionally the storage
state of timerstate.py (a :class:`ScheduleMonitor` and a :class:`ListenerLock`).
Behaviour: never two runs of the same timer at once (runs happen on the timer's own thread); with a lock, only the
host instance holding it runs the schedule (the others retry every ``listenerLockRecoveryPollingInterval``);
``past_due`` is true when a run starts late or catches up a missed occurrence; with ``useMonitor`` (default: on for
schedules of 1 minute or more, as the real host) the status is read on start (a missed occurrence runs at once,
past due) and written after every run; ``run_on_startup``.
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
from localdev.funchost.timerstate import ListenerLock, ScheduleMonitor

log = logging.getLogger("funchost")

LATE_TOLERANCE = 1.0  # seconds late before a run counts as past due
SLICE = 0.25  # seconds: how often waits look at stop and at a lost lock


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


def monitor_by_default(next_after: Callable[[float], float]) -> bool:
    """The real default of ``useMonitor``: on for schedules whose occurrences are 1 minute or more apart."""
    first = next_after(time.time())
    return next_after(first) - first >= 60


class TimerRunner:
    def __init__(self, invoker: Invoker, schedule: str, run_on_startup: bool, stop: threading.Event, *,
                 monitor: ScheduleMonitor | None = None, lock: ListenerLock | None = None) -> None:
        self.invoker = invoker
        self.schedule = schedule
        self.run_on_startup = run_on_startup
        self.stop = stop
        self.next_after = next_after(schedule, f"timer function {invoker.name}")
        self.monitor = monitor
        self.lock = lock
        self.running = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name=f"timer-{invoker.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def run_once(self, past_due: bool, scheduled: float | None = None) -> None:
        with self.running:  # one at a time, also for runs started by run_once() from outside
            t0 = time.perf_counter()
            invoked_at = time.time()
            outcome, detail = "ok", ""
            try:
                self.invoker(TimerRequestImpl(past_due=past_due, schedule={"AdjustForDST": True}))
            except Exception as exc:  # noqa: BLE001 - a failing timer run is logged, the schedule goes on
                outcome, detail = "failed", f" error={type(exc).__name__}: {str(exc)[:300]}"
            if self.monitor is not None:  # a run slightly early counts for the occurrence it was scheduled for
                self.monitor.record_run(max(invoked_at, scheduled or 0.0), self.next_after)
            log.info("invocation function=%s trigger=timer past_due=%s outcome=%s duration_ms=%.0f%s",
                     self.invoker.name, past_due, outcome, (time.perf_counter() - t0) * 1000, detail)

    def _halted(self) -> bool:
        return self.stop.is_set() or (self.lock is not None and self.lock.lost.is_set())

    def _sleep(self, seconds: float) -> bool:
        """Wait ``seconds``; True when the timer must stop running (host stopping, lock lost)."""
        deadline = time.monotonic() + max(0.0, seconds)
        while not self._halted():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.stop.wait(min(left, SLICE))
        return True

    def _loop(self) -> None:
        while not self.stop.is_set():
            if self.lock is not None and not self._acquire():
                return
            try:
                self._run_schedule()
            finally:
                if self.lock is not None:
                    self.lock.release()

    def _acquire(self) -> bool:
        assert self.lock is not None
        while not self.lock.try_acquire():
            if self.stop.wait(self.lock.recovery):
                return False
        return True

    def _run_schedule(self) -> None:
        now = time.time()
        past_due = self.monitor.check_past_due(now, self.next_after) if self.monitor is not None else False
        if past_due:
            self.run_once(past_due=True)
        elif self.run_on_startup:
            self.run_on_startup = False  # once per host start, not again after a lock hand-over
            self.run_once(past_due=False)
        next_t = self.next_after(time.time())
        force_past_due = False
        while not self._sleep(next_t - time.time()):
            self.run_once(past_due=force_past_due or time.time() - next_t > LATE_TOLERANCE, scheduled=next_t)
            now = time.time()
            following = self.next_after(next_t)
            if following <= now:  # one or more occurrences were missed while running: catch up once
                force_past_due, next_t = True, now
            else:
                force_past_due, next_t = False, following
