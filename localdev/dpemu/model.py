"""The emulator's things: error types and the state it keeps (recovery points, jobs, long-running operations).

Consumes: nothing but the standard library and :mod:`.world` types. Produces: :class:`BadRequest` /
:class:`NotFound` (synchronous 4xx with an ARM CloudError), :class:`RuleError` (a Failed LRO with a
``UserFacingError``), and the dataclasses the engine, the rules, the workers and the rendering share.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .dataplane import DataPlaneError
from .world import BackupInstance, Vault


class BadRequest(Exception):
    """Synchronous 4xx with an ARM CloudError body."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


class NotFound(BadRequest):
    def __init__(self, message: str, code: str = "ResourceNotFound") -> None:
        super().__init__(code, message, 404)


class RuleError(Exception):
    """A restore rule failed: reported as a Failed LRO (validate/trigger) with a UserFacingError."""

    def __init__(self, code: str, message: str, action: str = "") -> None:
        super().__init__(message)
        self.code, self.message, self.action = code, message, action


def user_facing_error(code: str, message: str, action: str = "") -> dict[str, Any]:
    info = {"code": code, "message": message, "recommendedAction": [action] if action else [], "target": "",
            "innerError": {"code": "InnerErrorCodeUnavailable", "additionalInfo": {"DetailedNonLocalisedMessage":
                                                                                      message}},
            "isRetryable": False, "isUserError": code.startswith("UserError"),
            "properties": {"ActivityId": f"{uuid.uuid4()}-Ibz"}}
    return {"code": code, "message": message, "additionalInfo": [{"type": "UserFacingError", "info": info}]}


@dataclass
class RecoveryPoint:
    id: str
    bi_id: str
    time: datetime
    tier: str  # vault | archive
    files: dict[str, int]
    postgres_version: int
    server_name: str
    databases: list[str]
    datastore_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    rehydration: dict[str, Any] | None = None  # {priority, started, ready_at, retention}
    state: str = "Completed"  # recoveryPointState (Completed | Partial)

    def rehydration_status(self, now: datetime) -> tuple[str | None, datetime | None]:
        r = self.rehydration
        if self.tier != "archive" or r is None:
            return None, None
        if now < r["ready_at"]:
            return "CREATE_IN_PROGRESS", None
        expiry: datetime = r["ready_at"] + r["retention"]
        if now >= expiry:
            return "DELETED", expiry
        return "COMPLETED", expiry

    def usable_from_vault(self, now: datetime) -> bool:
        return self.tier == "vault" or self.rehydration_status(now)[0] == "COMPLETED"


@dataclass(frozen=True)
class JobBehaviour:
    """How a restore job deviates from "runs, then Completed/Failed" (fault modes job_pause/job_warn/job_cancel).

    pause: ``Paused`` from half its run for ``pause_for`` (simulated), then runs on; its end moves by the pause.
    warn: does the real work, then ends ``CompletedWithWarnings`` with one ``warningDetails`` entry (code/message).
    cancel: ``Cancelling`` from half its run, ``Cancelled`` at its end; no data-plane work is done.
    """

    mode: str  # pause | warn | cancel
    code: str = "UserErrorRestoreCompletedWithWarnings"
    message: str = "The restore completed with warnings."
    pause_for: timedelta = timedelta(hours=2)


@dataclass
class Job:
    id: str
    vault: Vault
    bi: BackupInstance
    category: str
    operation: str
    start: datetime
    duration: timedelta
    subtasks: list[str]
    crr_location: str | None = None
    rp: RecoveryPoint | None = None
    destination: str | None = None
    rehydration_priority: str | None = None
    forced_error: tuple[str, str] | None = None
    work_error: DataPlaneError | None = None
    work_done_at: datetime | None = None
    done: threading.Event = field(default_factory=threading.Event)
    activity: str = field(default_factory=lambda: f"{uuid.uuid4()}-Ibz")
    behaviour: JobBehaviour | None = None

    @property
    def arm_id(self) -> str:
        return f"{self.vault.id}/backupJobs/{self.id}"

    @property
    def skips_work(self) -> bool:
        """No data-plane work: an injected failure, or a job that gets cancelled."""
        return bool(self.forced_error) or self._mode == "cancel"

    @property
    def _mode(self) -> str | None:
        return self.behaviour.mode if self.behaviour else None

    def progress(self, now: datetime, mode: str) -> float | None:
        """The share of the work a running job shows done (0..0.99; it never shows 100% before it ends), by the
        emulator's ``job_progress`` choice: ``linear`` (even with time), ``uneven`` (half done in the first fifth of
        the duration, stalled at 50% until 60% of it, then the rest), ``absent`` (None: nothing shown)."""
        if mode == "absent":
            return None
        t = max(0.0, (now - self.start).total_seconds()) / max(self.duration.total_seconds(), 1e-9)
        if mode == "uneven":
            t = 2.5 * t if t < 0.2 else 0.5 if t < 0.6 else 0.5 + (t - 0.6) * 1.25
        return min(max(t, 0.0), 0.99)

    def status(self, now: datetime) -> tuple[str, datetime | None]:
        half = self.start + self.duration / 2
        due = self.start + self.duration
        if self._mode == "pause":
            assert self.behaviour is not None
            if half <= now < half + self.behaviour.pause_for:
                return "Paused", None
            due += self.behaviour.pause_for
        if self._mode == "cancel" and now >= half:
            return ("Cancelled", due) if now >= due and self.done.is_set() else ("Cancelling", None)
        if now < due or not self.done.is_set():
            return "InProgress", None
        end = max(due, self.work_done_at or due)
        if self.forced_error or self.work_error:
            return "Failed", end
        return ("CompletedWithWarnings" if self._mode == "warn" else "Completed"), end


@dataclass
class Operation:
    id: str
    subscription: str
    location: str
    start: datetime
    ready_at: datetime
    job_id: str | None = None  # full ARM id (trigger operations)
    error: dict[str, Any] | None = None
    result_kind: str = "job"  # job | validate | none


@dataclass(frozen=True)
class Principal:
    """The identity a restore acts as: its principal id and how messages name it."""

    id: str
    label: str  # "managed identity" | "user-assigned identity '<name>'"


@dataclass
class ParsedRestore:
    object_type: str
    source_store: str
    rp_id: str
    restore_location: str
    kind: str  # database | files
    target_db_id: str = ""
    target_server_id: str = ""
    target_db: str = ""
    secret_uri: str = ""
    container_url: str = ""
    container_arm_id: str = ""
    file_prefix: str = ""
    rehydration_priority: str | None = None
    rehydration_duration: str | None = None
    identity_details: dict[str, Any] | None = None  # as sent (None: absent, i.e. the system-assigned identity)
