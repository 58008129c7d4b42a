"""Operator re-drive: ``POST /api/restores/{id}/redrive`` (``restorectl redrive ID``).

For a restore whose message was lost or went to a poison queue: re-sends the message of the stage the restore is at,
with the row's own attempt, and records who did it on the timeline. Safe to use at any time: every stage claims the
row before side effects, so a duplicate is a no-op; the trigger adopts the job a lost answer started instead of
triggering twice. Refused for a restore that has ended (submit a new one), and while a replay runner holds a live
lease on it (it is working; re-driving would only be dropped by the lease).
"""

from __future__ import annotations

from typing import Any

from . import lease
from .deps import Deps
from .errors import require
from .pipeline import check_after, send_stage
from .records import RestoreRecord, TimelineEvent, iso, parse_time
from .store import ConcurrencyError


class RedriveRefused(Exception):
    def __init__(self, status: int, code: str, message: str, fix: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.fix = status, code, message, fix


def _live_lease(deps: Deps, rec: RestoreRecord) -> dict[str, Any] | None:
    row = deps.store.get_meta(lease.KIND, rec.id)
    until = parse_time(row.get("until")) if row else None
    if row is not None and until is not None and until > deps.clock() and row.get("attempt") == rec.attempt:
        return row
    return None


def redrive(deps: Deps, rec: RestoreRecord, *, who: str) -> RestoreRecord:
    """Re-send ``rec``'s current stage message; returns the row with the timeline entry. Raises
    :class:`RedriveRefused`."""
    for _ in range(5):
        if rec.terminal:
            raise RedriveRefused(409, "RestoreEnded", f"restore {rec.id} ended {rec.status.value}; nothing to re-drive",
                                 "submit a new restore")
        held = _live_lease(deps, rec)
        if held is not None:
            raise RedriveRefused(409, "ReplayRunning", f"a replay runner holds restore {rec.id} until "
                                 f"{held.get('until')} and renews it while it works",
                                 "wait; if the runner died, its lease expires and the restore is re-driven by itself")
        stage = require(rec.stage, "an active restore is at a stage")
        now = deps.clock()
        event = TimelineEvent(now, rec.status.value, stage.value, f"re-driven by {who}: {stage.value} message sent "
                              f"again (attempt {rec.attempt})", {"operator": who})
        try:
            rec = deps.store.add_events(rec.copy(next_check_at=check_after(deps, now, 0), updated_at=now), [event])
        except ConcurrencyError as lost:
            rec = require(lost.current, "the restore still exists")
            continue
        send_stage(deps, rec)
        return rec
    raise RedriveRefused(409, "Conflict", "the restore kept changing; try again", "retry the re-drive")


def describe(rec: RestoreRecord) -> dict[str, Any]:
    return {"id": rec.id, "status": rec.status.value, "stage": rec.stage.value if rec.stage else None,
            "attempt": rec.attempt, "next_check_at": iso(rec.next_check_at), "redriven": True}
