"""Transitions as data: ``(stage, outcome) → (next stage, status)``. Stages return outcomes; only the pipeline moves.

Tested exhaustively (every pair is declared; nothing else is allowed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .models import Stage, Status


class Outcome(StrEnum):
    READY = "ready"
    """Validated; the point can be restored now (vault tier, or archive already rehydrated)."""
    NEEDS_REHYDRATION = "needs_rehydration"
    """Validated; the point sits in the archive tier and must be rehydrated first."""
    REJECTED = "rejected"
    """Validation failed; nothing was started in Azure."""
    REHYDRATION_STARTED = "rehydration_started"
    """A rehydration was triggered (or one already running was found)."""
    ALREADY_REHYDRATED = "already_rehydrated"
    """A completed rehydration that outlives the restore was found and is reused."""
    NOT_READY = "not_ready"
    """Nothing changed yet; check again after a delay (expected, not a failure)."""
    REHYDRATED = "rehydrated"
    """The stand-alone rehydration completed; the restore can be triggered."""
    RESTORING = "restoring"
    """The one-request restore job finished its rehydration phase; its restore phase runs."""
    TRIGGERED = "triggered"
    """The Azure restore was triggered; the job id is recorded."""
    ADOPTED = "adopted"
    """A job that an earlier attempt of this restore started was found and adopted (no second trigger)."""
    SUCCEEDED = "succeeded"
    """The Azure job ended Completed or CompletedWithWarnings."""
    FAILED = "failed"
    """The stage or the Azure job failed; the reason is recorded."""
    CANCELLED = "cancelled"
    """The Azure job ended Cancelled."""
    STAGED = "staged"
    """Server targets: the vault's files restore into the staging container completed."""
    PLANNED = "planned"
    """Server targets: the staged files were read and the replay plan stored."""
    REPLAYED = "replayed"
    """Server targets: every planned database was created and loaded into the target server."""


TRANSITIONS: dict[tuple[Stage, Outcome], tuple[Stage | None, Status]] = {
    (Stage.VALIDATE, Outcome.READY): (Stage.TRIGGER, Status.RESTORING),
    (Stage.VALIDATE, Outcome.NEEDS_REHYDRATION): (Stage.REHYDRATE, Status.REHYDRATING),
    (Stage.VALIDATE, Outcome.REJECTED): (None, Status.REJECTED),
    (Stage.VALIDATE, Outcome.FAILED): (None, Status.FAILED),
    (Stage.VALIDATE, Outcome.NOT_READY): (Stage.VALIDATE, Status.VALIDATING),
    (Stage.REHYDRATE, Outcome.REHYDRATION_STARTED): (Stage.WAIT, Status.WAITING),
    (Stage.REHYDRATE, Outcome.ALREADY_REHYDRATED): (Stage.TRIGGER, Status.RESTORING),
    (Stage.REHYDRATE, Outcome.FAILED): (None, Status.FAILED),
    (Stage.REHYDRATE, Outcome.NOT_READY): (Stage.REHYDRATE, Status.REHYDRATING),
    (Stage.REHYDRATE, Outcome.TRIGGERED): (Stage.WAIT, Status.WAITING),
    (Stage.REHYDRATE, Outcome.ADOPTED): (Stage.WAIT, Status.WAITING),
    (Stage.WAIT, Outcome.NOT_READY): (Stage.WAIT, Status.WAITING),
    (Stage.WAIT, Outcome.REHYDRATED): (Stage.TRIGGER, Status.RESTORING),
    (Stage.WAIT, Outcome.RESTORING): (Stage.MONITOR, Status.RESTORING),
    (Stage.WAIT, Outcome.SUCCEEDED): (None, Status.SUCCEEDED),
    (Stage.WAIT, Outcome.CANCELLED): (None, Status.FAILED),
    (Stage.WAIT, Outcome.FAILED): (None, Status.FAILED),
    (Stage.TRIGGER, Outcome.TRIGGERED): (Stage.MONITOR, Status.RESTORING),
    (Stage.TRIGGER, Outcome.ADOPTED): (Stage.MONITOR, Status.RESTORING),
    (Stage.TRIGGER, Outcome.NOT_READY): (Stage.TRIGGER, Status.RESTORING),
    (Stage.TRIGGER, Outcome.FAILED): (None, Status.FAILED),
    (Stage.MONITOR, Outcome.NOT_READY): (Stage.MONITOR, Status.RESTORING),
    (Stage.MONITOR, Outcome.SUCCEEDED): (None, Status.SUCCEEDED),
    (Stage.MONITOR, Outcome.FAILED): (None, Status.FAILED),
    (Stage.MONITOR, Outcome.CANCELLED): (None, Status.FAILED),
    (Stage.MONITOR, Outcome.STAGED): (Stage.INVENTORY, Status.RESTORING),
    (Stage.WAIT, Outcome.STAGED): (Stage.INVENTORY, Status.RESTORING),
    (Stage.INVENTORY, Outcome.PLANNED): (Stage.REPLAY, Status.RESTORING),
    (Stage.INVENTORY, Outcome.NOT_READY): (Stage.INVENTORY, Status.RESTORING),
    (Stage.INVENTORY, Outcome.FAILED): (None, Status.FAILED),
    (Stage.REPLAY, Outcome.REPLAYED): (Stage.VERIFY, Status.RESTORING),
    (Stage.REPLAY, Outcome.NOT_READY): (Stage.REPLAY, Status.RESTORING),
    (Stage.REPLAY, Outcome.FAILED): (None, Status.FAILED),
    (Stage.VERIFY, Outcome.SUCCEEDED): (None, Status.SUCCEEDED),
    (Stage.VERIFY, Outcome.NOT_READY): (Stage.VERIFY, Status.RESTORING),
    (Stage.VERIFY, Outcome.FAILED): (None, Status.FAILED),
}

FIRST_STAGE = Stage.VALIDATE


class IllegalTransition(Exception):
    pass


def next_step(stage: Stage, outcome: Outcome) -> tuple[Stage | None, Status]:
    try:
        return TRANSITIONS[(stage, outcome)]
    except KeyError:
        raise IllegalTransition(f"stage {stage.value} cannot end with outcome {outcome.value}") from None


@dataclass
class StageResult:
    """What a stage decided. ``changes`` are record fields; ``delay`` applies to a NOT_READY re-check."""

    outcome: Outcome
    message: str
    changes: dict[str, Any] = field(default_factory=dict)
    delay: float = 0.0
    log_event: bool = True
    error_code: str | None = None
    error_message: str | None = None
    error_fix: str | None = None
