"""A fenced lease on a restore, for work that runs longer than a queue message stays hidden (the replay).

Consumes: the state store (a meta row ``replaylease/<restore id>``: owner token, expiry) and the restore row.
Contract:
- :func:`acquire` takes the lease when it is free or expired, and raises :class:`LeaseHeld` (the caller drops its
  message: the holder will move the restore on) when another runner holds a live one.
- The fence is the restore row's ETag: right after acquiring, the stage claims the row (an ETag-guarded write)
  before any side effect, so of two runners that both saw an expired lease only one gets past its claim; a runner
  whose lease was taken over can no longer write the row (its outcome is discarded).
- :class:`Heartbeat` renews the lease every third of its length, moves the restore's next check in the active index
  forward (the watchdog leaves a live replay alone) and calls ``on_lost`` when it finds another owner: the work
  stops (its child processes are killed).
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Self

from . import telemetry
from .deps import Deps
from .records import ActiveEntry, RestoreRecord, iso, parse_time

log = telemetry.get_logger("lease")
KIND = "replaylease"


class LeaseHeld(Exception):
    """Another runner holds a live lease on this restore."""

    def __init__(self, restore_id: str, owner: str, until: datetime) -> None:
        super().__init__(f"restore {restore_id} is being replayed by runner {owner} (lease until {iso(until)})")
        self.until = until


class LeaseLost(Exception):
    """This runner's lease was taken over (it had expired): stop, without writing anything."""


@dataclass
class Lease:
    restore_id: str
    owner: str
    seconds: float
    until: datetime
    lost: threading.Event = field(default_factory=threading.Event)


def acquire(deps: Deps, rec: RestoreRecord, seconds: float) -> Lease:
    now = deps.clock()
    row = deps.store.get_meta(KIND, rec.id)
    if row is not None:
        until = parse_time(row.get("until"))
        if until is not None and until > now and row.get("attempt") == rec.attempt:
            raise LeaseHeld(rec.id, str(row.get("owner")), until)
    lease = Lease(rec.id, secrets.token_hex(8), seconds, now + timedelta(seconds=seconds))
    _write(deps, lease, rec.attempt)
    return lease


def _write(deps: Deps, lease: Lease, attempt: int) -> None:
    deps.store.put_meta(KIND, lease.restore_id, {"owner": lease.owner, "until": iso(lease.until), "attempt": attempt})


def renew(deps: Deps, lease: Lease, rec: RestoreRecord) -> bool:
    """Extend the lease; False (and ``lost`` set) when another runner owns it now."""
    row = deps.store.get_meta(KIND, lease.restore_id)
    if row is not None and row.get("owner") != lease.owner:
        lease.lost.set()
        return False
    now = deps.clock()
    lease.until = now + timedelta(seconds=lease.seconds)
    _write(deps, lease, rec.attempt)
    check = lease.until + timedelta(seconds=deps.settings.redrive_slack_seconds)
    deps.store.put_active(ActiveEntry.of(rec.copy(next_check_at=check), check_by=check))
    return True


def release(deps: Deps, lease: Lease) -> None:
    row = deps.store.get_meta(KIND, lease.restore_id)
    if row is not None and row.get("owner") == lease.owner:
        deps.store.delete_meta(KIND, lease.restore_id)


class Periodic:
    """Calls ``beat`` every ``interval`` seconds in a daemon thread while the ``with`` block runs; a ``beat`` that
    returns False ends the beats. Exceptions of ``beat`` are logged as ``what`` and retried at the next beat."""

    def __init__(self, name: str, interval: float, beat: Callable[[], bool | None], what: str) -> None:
        self.interval, self.beat, self.what = interval, beat, what
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if self.beat() is False:
                    return
            except Exception as exc:  # noqa: BLE001 - a missed beat is retried at the next one
                log.warning("could not %s: %s", self.what, exc)


class Heartbeat(Periodic):
    """Renews ``lease`` in a background thread while the work runs; calls ``on_lost`` once when it was taken over."""

    def __init__(self, deps: Deps, lease: Lease, rec: RestoreRecord, on_lost: Callable[[], None]) -> None:
        self.deps, self.lease, self.rec, self.on_lost = deps, lease, rec, on_lost
        super().__init__(f"lease-{rec.id}", max(1.0, lease.seconds / 3), self._renew,
                         f"renew the replay lease of {rec.id}")

    def _renew(self) -> bool:
        if renew(self.deps, self.lease, self.rec):
            return True
        log.error("replay lease of %s was taken over by another runner; stopping", self.rec.id)
        self.on_lost()
        return False
