"""What the backup service answers, SDK-free: vault, backup instance, recovery point and job facts, the job status
sets, the choice of the latest point, and the ARM call meter. The Data Protection adapter
(:mod:`restore_core.dp_client`) builds these from Azure's answers; stages, the watchdog and the in-memory twins use
them without knowing the SDK.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from . import telemetry
from .models import Tier


class CallMeter:
    """Thread-safe counts of ARM calls by (operation, status)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[tuple[str, str]] = Counter()

    def record(self, operation: str, status: int | None) -> None:
        with self._lock:
            self.counts[(operation, str(status) if status is not None else "error")] += 1
        telemetry.record_arm_call(operation=operation, status_code=status)

    def total(self, operation: str | None = None) -> int:
        with self._lock:
            return sum(n for (op, _), n in self.counts.items() if operation is None or op == operation)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {f"{op} {st}": n for (op, st), n in sorted(self.counts.items())}


@dataclass(frozen=True)
class VaultInfo:
    id: str
    location: str
    principal_id: str | None
    redundancy: str | None
    crr_enabled: bool
    secondary_region: str | None
    #: user-assigned identities (``identity.userAssignedIdentities``): ARM id as Azure spells it -> principal id
    user_identities: dict[str, str] = field(default_factory=dict)
    #: ``featureSettings.crossSubscriptionRestoreSettings.state``: Enabled | Disabled | PermanentlyDisabled (None:
    #: not reported, which Azure treats as the default, Enabled)
    csr_state: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "location": self.location, "principal_id": self.principal_id,
                "redundancy": self.redundancy, "crr_enabled": self.crr_enabled,
                "secondary_region": self.secondary_region, "user_identities": dict(self.user_identities),
                "csr_state": self.csr_state}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VaultInfo:
        return cls(d["id"], d["location"], d.get("principal_id"), d.get("redundancy"), bool(d.get("crr_enabled")),
                   d.get("secondary_region"), dict(d.get("user_identities") or {}), d.get("csr_state"))

    @property
    def cross_subscription_restore(self) -> bool:
        return (self.csr_state or "Enabled").lower() == "enabled"

    def user_identity(self, arm_id: str) -> tuple[str, str | None] | None:
        """(id as the vault spells it, principal id) of one of its user-assigned identities (ids compare
        case-insensitively, as ARM ids do)."""
        for uid, principal in self.user_identities.items():
            if uid.lower().rstrip("/") == arm_id.lower().rstrip("/"):
                return uid, principal
        return None


@dataclass(frozen=True)
class BackupInstanceInfo:
    id: str
    name: str
    friendly_name: str | None
    datasource_type: str
    datasource_id: str
    datasource_set_id: str | None
    protection_state: str | None
    #: ``identityDetails.userAssignedIdentityArmUrl`` when the instance is protected with a user-assigned identity
    user_identity: str | None = None


@dataclass(frozen=True)
class RecoveryPointInfo:
    id: str
    time: datetime
    tier: Tier
    rehydration_status: str | None = None
    rehydration_expiry: datetime | None = None
    postgres_version: str | None = None
    state: str | None = None  # recoveryPointState: "Completed" | "Partial" (None: not reported)
    databases: tuple[str, ...] | None = None  # the point's metadata ``dbName`` (None: not reported)
    size_bytes: int | None = None  # the point's metadata ``bytesTransferred`` / ``dataSourceSize`` (None: not given)

    @property
    def rehydrated(self) -> bool:
        return (self.rehydration_status or "").upper() == "COMPLETED"

    @property
    def partial(self) -> bool:
        """Azure: "Partial (i.e., only some of the intended items were backed up)"; it does not say which."""
        return (self.state or "").lower() == "partial"


#: Job statuses named by the spec (``AzureBackupJob.status``: "InProgress/Completed/Failed/Cancelled/
#: CompletedWithWarnings/Cancelling/Paused") and its examples ("Started", "Succeeded"), by the outcome they mean.
JOB_SUCCEEDED = frozenset({"completed", "completedwithwarnings", "succeeded"})
JOB_FAILED = frozenset({"failed"})
JOB_CANCELLED = frozenset({"cancelled", "canceled"})
JOB_RUNNING = frozenset({"inprogress", "started", "cancelling", "paused"})  # not terminal: keep checking


@dataclass(frozen=True)
class JobInfo:
    id: str
    name: str
    status: str
    operation: str | None
    operation_category: str | None
    backup_instance_id: str | None
    destination: str | None
    start_time: datetime | None
    end_time: datetime | None
    errors: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    recovery_point_id: str | None = None  # extendedInfo.sourceRecoverPoint.recoveryPointID
    subtasks: tuple[tuple[str, str], ...] = ()  # (taskName, taskStatus) of extendedInfo.subTasks
    task_progress: str | None = None  # taskProgress of the last sub-task that reports one (format not documented)
    transferred_bytes: float | None = None  # extendedInfo.dataTransferredInBytes (dataTransferedInBytes on the wire)
    #: ``duration`` ("Total run time of the job. ISO 8601 format."), read when Azure answered: a running job's time
    #: since its start on Azure's own clock, so no clock skew (whether Azure keeps it current is not documented)
    duration_seconds: float | None = None

    def subtask_done(self, word: str) -> bool:
        """Whether a sub-task whose name contains ``word`` (case-insensitive) reports Completed."""
        return any(word.lower() in name.lower() and status.lower() in ("completed", "succeeded")
                   for name, status in self.subtasks)

    @property
    def terminal(self) -> bool:
        """Finished for good. Cancelling and Paused are not; a status nobody documents is not either (it is
        reported on the timeline and checked again)."""
        return self.status.lower() in JOB_SUCCEEDED | JOB_FAILED | JOB_CANCELLED


@dataclass(frozen=True)
class Triggered:
    """A trigger's answer: the job id, and how long after the trigger POST's answer (HTTP 202) the call returned
    (it then followed the long-running operation). The POST's answer is taken as the latest the job can have started
    (the emulator starts it there; Azure documents nothing either way, so the monitor also takes the job's own
    ``duration`` when Azure shows one: :func:`restore_core.stages.monitor._start_bounds`)."""

    job_id: str
    after_answer_seconds: float = 0.0
    post_seconds: float = 0.0  # the POST itself, sent to answered: the job cannot have started before it was sent


def latest(points: Iterable[RecoveryPointInfo], *, before: datetime | None = None) -> RecoveryPointInfo | None:
    candidates = [p for p in points if before is None or p.time < before]
    return max(candidates, key=lambda p: p.time) if candidates else None


