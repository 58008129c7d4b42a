"""Ports: what the stages and the pipeline need from the outside world, as ``typing.Protocol``s: the state store,
the queue sender, the backup service and the clock.

Adapters implement them: the Data Protection SDK adapter (:class:`restore_core.dp_client.DataProtection`), Azure
Tables (:class:`restore_core.store.TableStateStore`) and Azure Queues (:class:`restore_core.queues.AzureQueueSender`);
their in-memory twins (``MemoryStateStore``, ``MemoryQueueSender``, the fake backup service of the unit tests) are
type-checked against the same protocols. :mod:`restore_core.runtime` alone builds the Azure adapters. No SDK model
crosses :class:`BackupService`: stages hand it a :class:`~restore_core.restore_requests.RestorePlan` and get plain
dataclasses back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol

from .arm_ids import BackupInstanceRef, VaultRef
from .backup import BackupInstanceInfo, CallMeter, JobInfo, RecoveryPointInfo, VaultInfo
from .models import Rehydration
from .queues import Received
from .records import ActiveEntry, RestoreRecord, TimelineEvent
from .restore_requests import RestorePlan

#: The injected clock: timezone-aware UTC now.
Clock = Callable[[], datetime]


class StateStore(Protocol):
    """Restore rows with their timelines, the active index, and small meta rows. Implemented once as a workflow over
    a few primitives (:class:`restore_core.store.StateStore`: idempotent create, ETag-guarded update) by the Azure
    Table store and its in-memory twin."""

    def create(self, rec: RestoreRecord, event: TimelineEvent, *, idempotency_key: str | None,
               request_hash: str) -> tuple[RestoreRecord, bool]: ...

    def get(self, restore_id: str) -> RestoreRecord | None: ...

    def update(self, rec: RestoreRecord, events: Sequence[TimelineEvent] = ()) -> RestoreRecord: ...

    def add_events(self, rec: RestoreRecord, events: Sequence[TimelineEvent]) -> RestoreRecord: ...

    def timeline(self, restore_id: str) -> list[TimelineEvent]: ...

    def list_day(self, day: datetime, *, after_id: str | None,
                 before_id: str | None = None) -> Iterable[RestoreRecord]: ...

    def active(self) -> list[ActiveEntry]: ...

    def put_active(self, entry: ActiveEntry) -> None: ...

    def remove_active(self, restore_id: str) -> None: ...

    def get_meta(self, kind: str, key: str) -> dict[str, Any] | None: ...

    def put_meta(self, kind: str, key: str, values: dict[str, Any]) -> None: ...

    def list_meta(self, kind: str, *, limit: int = 100) -> list[dict[str, Any]]: ...

    def delete_meta(self, kind: str, key: str) -> None: ...


class QueueSender(Protocol):
    """Sends stage messages and events (with a visibility delay); the watchdog also reads poison queues."""

    def send(self, queue: str, text: str, *, delay_seconds: float = 0) -> None: ...

    def receive(self, queue: str, *, max_messages: int = 32, visibility_seconds: int = 30) -> list[Received]: ...

    def delete(self, queue: str, message: Received) -> None: ...

    def depth(self, queue: str) -> int: ...


class BackupService(Protocol):
    """Azure Backup, at the level of a restore plan."""

    meter: CallMeter

    def get_vault(self, vault: VaultRef) -> VaultInfo: ...

    def get_backup_instance(self, bi: BackupInstanceRef) -> BackupInstanceInfo: ...

    def list_backup_instances(self, vault: VaultRef) -> list[BackupInstanceInfo]: ...

    def list_recovery_points(self, bi: BackupInstanceRef, *, end: datetime | None = None
                             ) -> list[RecoveryPointInfo]: ...

    def get_recovery_point(self, bi: BackupInstanceRef, rp_id: str) -> RecoveryPointInfo: ...

    def list_protecting_instances(self, resource_id: str) -> list[BackupInstanceInfo]: ...

    def browse_recovery_points(self, bi: BackupInstanceRef, *, start: datetime | None, end: datetime | None,
                               max_items: int, regions: tuple[str, str] | None = None
                               ) -> tuple[list[RecoveryPointInfo], bool]: ...

    def fetch_secondary_recovery_points(self, bi: BackupInstanceRef, *, secondary: str,
                                        primary: str) -> list[RecoveryPointInfo]: ...

    def get_job(self, vault: VaultRef, job_id: str) -> JobInfo: ...

    def list_jobs(self, vault: VaultRef) -> list[JobInfo]: ...

    def fetch_cross_region_job(self, vault: VaultRef, *, secondary: str, primary: str, job_id: str) -> JobInfo: ...

    def fetch_cross_region_jobs(self, vault: VaultRef, *, secondary: str, primary: str) -> list[JobInfo]: ...

    def validate_restore(self, plan: RestorePlan, rehydration: Rehydration | None = None) -> None: ...

    def validate_cross_region_restore(self, plan: RestorePlan, source_region: str,
                                      rehydration: Rehydration | None = None) -> None: ...

    def trigger_restore(self, plan: RestorePlan, rehydration: Rehydration | None = None) -> str: ...

    def trigger_cross_region_restore(self, plan: RestorePlan, source_region: str) -> str: ...

    def trigger_rehydrate(self, bi: BackupInstanceRef, recovery_point_id: str, priority: str,
                          retention_days: int) -> None: ...
