"""In-memory twins for pure-logic tests: a controllable clock, a hand-written fake of the ``DataProtection`` facade
(same method names and return dataclasses) and a harness that pumps stage messages through ``pipeline.handle``.

Nothing here does I/O. The fake keeps a small world (one vault, one backup instance, recovery points, jobs) and
records every call so tests can assert "exactly one trigger".
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.mgmt.dataprotection import models as m

from restore_core import dp_client, intake, pipeline
from restore_core.arm_ids import BackupInstanceRef, VaultRef, job_name, same_id
from restore_core.backup import BackupInstanceInfo, CallMeter, JobInfo, RecoveryPointInfo, Triggered, VaultInfo
from restore_core.config import Settings, load_settings
from restore_core.deps import Deps
from restore_core.errors import AzureRejection
from restore_core.models import Rehydration, Stage, Tier, parse_request
from restore_core.queues import MemoryQueueSender, SentMessage
from restore_core.records import RestoreRecord
from restore_core.restore_requests import SINGLE_SERVER_DB, RestorePlan
from restore_core.stages import registry
from restore_core.store import MemoryStateStore

SUB = "00000000-0000-0000-0000-000000000001"
SUB2 = "00000000-0000-0000-0000-000000000002"
VAULT_ID = f"/subscriptions/{SUB}/resourceGroups/rg-backup/providers/Microsoft.DataProtection/backupVaults/bv-prod"
BI_NAME = "pgsrv01-salesdb-6f1c2d3e-0000-4000-8000-000000000001"
BI_ID = f"{VAULT_ID}/backupInstances/{BI_NAME}"
SOURCE_SERVER_ID = f"/subscriptions/{SUB}/resourceGroups/rg-data/providers/Microsoft.DBforPostgreSQL/servers/pgsrv01"
SOURCE_DB_ID = f"{SOURCE_SERVER_ID}/databases/salesdb"
TARGET_SERVER_ID = (f"/subscriptions/{SUB2}/resourceGroups/rg-target/providers/Microsoft.DBforPostgreSQL/servers/"
                    "pgsrv-restore")
FLEX_SERVER_ID = (f"/subscriptions/{SUB2}/resourceGroups/rg-target/providers/Microsoft.DBforPostgreSQL/"
                  "flexibleServers/pgflex")
SECRET_URI = "https://kv-restore.vault.azure.net/secrets/pgsrv-restore-conn"
CONTAINER_URL = "https://stpgrestore01.blob.core.windows.net/pg-restores"
CONTAINER_ID = (f"/subscriptions/{SUB2}/resourceGroups/rg-target/providers/Microsoft.Storage/storageAccounts/"
                "stpgrestore01/blobServices/default/containers/pg-restores")
PRINCIPAL_ID = "11111111-2222-3333-4444-555555555555"
T0 = datetime(2026, 11, 24, 8, 0, 0, tzinfo=UTC)
VAULT_POINT = "9da55e757af94261afa009b43cd3222a"
ARCHIVE_POINT = "5b1e0c7f2a9d4e03b6c8a1f2d3e4f5a6"

SETTINGS_ENV = {
    "RestoreStorage": "UseDevelopmentStorage=true",
    "RESTORE_POLL_MIN_SECONDS": "1",
    "RESTORE_POLL_MAX_SECONDS": "60",
    "RESTORE_TRIGGER_GRACE_SECONDS": "120",
    "RESTORE_MAX_DEQUEUE_COUNT": "5",
    "RESTORE_DEADLINE_HOURS": "48",
}


def settings(**overrides: str) -> Settings:
    return load_settings({**SETTINGS_ENV, **overrides})


def stage_by_stage(**overrides: str) -> Settings:
    """Settings with ``RESTORE_CONTINUE_INLINE=false``: every stage, the trigger included, runs from its own queue
    message — the path of the trigger's safety-net message and of every redelivery, which the tests of the trigger's
    exactly-once rules drive step by step."""
    return settings(RESTORE_CONTINUE_INLINE="false", **overrides)


def database_body(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "backup_instance": {"id": BI_ID},
        "target": {"kind": "database", "server_id": TARGET_SERVER_ID, "database_name": "salesdb_restored",
                   "secret_uri": SECRET_URI},
    }
    body.update(extra)
    return body


def files_body(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "backup_instance": {"id": BI_ID},
        "target": {"kind": "files", "container_url": CONTAINER_URL, "container_id": CONTAINER_ID,
                   "file_prefix": "salesdb_20261124"},
    }
    body.update(extra)
    return body


class Clock:
    """Injected clock; tests move time explicitly (nothing sleeps)."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def _destination(request: Any) -> str:
    ti = request.restore_target_info
    if isinstance(ti, m.RestoreTargetInfo):
        return str(ti.datasource_info.resource_id)
    return f"{ti.target_details.url}/{ti.target_details.file_prefix}"


class FakeDataProtection:
    """Same public surface as ``restore_core.dp_client.DataProtection``; a tiny world in memory.

    - ``fail_before[name]``: exceptions raised (in order) when ``name`` is called, before it does anything;
    - ``fail_after[name]``: exceptions raised after the call took effect (e.g. a trigger whose job exists but whose
      answer is lost);
    - ``calls``: how often each method was called; ``triggers``/``rehydrations``/``validations``: request objects.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.meter = CallMeter()
        self.calls: Counter[str] = Counter()
        self.vault = VaultInfo(VAULT_ID, "westeurope", PRINCIPAL_ID, "GeoRedundant", True, "northeurope")
        self.instances = [BackupInstanceInfo(BI_ID, BI_NAME, "pgsrv01\\salesdb", SINGLE_SERVER_DB, SOURCE_DB_ID,
                                             SOURCE_SERVER_ID, "ProtectionConfigured")]
        self.points: dict[str, RecoveryPointInfo] = {
            VAULT_POINT: RecoveryPointInfo(VAULT_POINT, T0 - timedelta(hours=6), Tier.VAULT, postgres_version="11"),
        }
        self.jobs: dict[str, JobInfo] = {}
        self.triggers: list[Any] = []
        self.rehydrations: list[Any] = []
        self.validations: list[Any] = []
        self.fail_before: dict[str, list[Exception]] = {}
        self.fail_after: dict[str, list[Exception]] = {}
        self.on_call: dict[str, Any] = {}

    # -- helpers
    def _enter(self, name: str) -> None:
        self.calls[name] += 1
        self.meter.record(name, 200)
        hook = self.on_call.pop(name, None)
        if hook is not None:
            hook()
        errors = self.fail_before.get(name)
        if errors:
            raise errors.pop(0)

    def _leave(self, name: str) -> None:
        errors = self.fail_after.get(name)
        if errors:
            raise errors.pop(0)

    def add_archive_point(self, *, rehydration_status: str | None = None,
                          expiry: datetime | None = None) -> RecoveryPointInfo:
        """Make the latest point an archived one (newer than the vault-tier point)."""
        p = RecoveryPointInfo(ARCHIVE_POINT, T0 - timedelta(hours=1), Tier.ARCHIVE, rehydration_status, expiry, "11")
        self.points[ARCHIVE_POINT] = p
        return p

    def complete_rehydration(self, rp_id: str, expiry: datetime) -> None:
        self.points[rp_id] = replace(self.points[rp_id], rehydration_status="COMPLETED", rehydration_expiry=expiry)

    def finish_job(self, name: str, status: str, *, errors: list[dict[str, Any]] | None = None,
                   warnings: list[dict[str, Any]] | None = None, seconds: float = 600) -> None:
        job = self.jobs[name]
        assert job.start_time is not None
        self.jobs[name] = replace(job, status=status, end_time=job.start_time + timedelta(seconds=seconds),
                                  errors=errors or [], warnings=warnings or [])

    def finish_rehydration_phase(self, name: str) -> None:
        """The Rehydrate sub-task of a one-request restore job reports Completed."""
        job = self.jobs[name]
        self.jobs[name] = replace(job, subtasks=tuple((n, "Completed" if n == "Rehydrate" else st)
                                                      for n, st in job.subtasks))

    def only_job(self) -> JobInfo:
        assert len(self.jobs) == 1, self.jobs
        return next(iter(self.jobs.values()))

    def _new_job(self, bi_id: str, request: Any, operation: str) -> JobInfo:
        name = str(uuid.uuid4())
        one_request = isinstance(request, m.AzureBackupRestoreWithRehydrationRequest)
        subtasks = (("Rehydrate", "InProgress"), ("Trigger Restore", "InProgress")) if one_request else (
            ("Trigger Restore", "InProgress"),)
        job = JobInfo(id=f"{VAULT_ID}/backupJobs/{name}", name=name, status="InProgress", operation=operation,
                      operation_category=operation, backup_instance_id=bi_id, destination=_destination(request),
                      start_time=self.clock(), end_time=None, recovery_point_id=request.recovery_point_id,
                      subtasks=subtasks)
        self.jobs[name] = job
        return job

    # -- reads
    def get_vault(self, vault: VaultRef) -> VaultInfo:
        self._enter("get_vault")
        return self.vault

    def get_backup_instance(self, bi: BackupInstanceRef) -> BackupInstanceInfo:
        self._enter("get_backup_instance")
        for info in self.instances:
            if same_id(info.id, bi.id):
                return info
        raise AzureRejection("ResourceNotFound", f"backup instance {bi.name} not found")

    def list_backup_instances(self, vault: VaultRef) -> list[BackupInstanceInfo]:
        self._enter("list_backup_instances")
        return list(self.instances)

    def list_recovery_points(self, bi: BackupInstanceRef, *, end: datetime | None = None) -> list[RecoveryPointInfo]:
        self._enter("list_recovery_points")
        return [p for p in self.points.values() if end is None or p.time <= end]

    def list_protecting_instances(self, resource_id: str) -> list[BackupInstanceInfo]:
        self._enter("list_protecting_instances")
        return [b for b in self.instances if same_id(b.datasource_id, resource_id)
                or same_id(b.datasource_set_id, resource_id)]

    def browse_recovery_points(self, bi: BackupInstanceRef, *, start: datetime | None, end: datetime | None,
                               max_items: int, regions: tuple[str, str] | None = None
                               ) -> tuple[list[RecoveryPointInfo], bool]:
        self._enter("browse_recovery_points")
        pool = [p for p in self.points.values() if regions is None or p.tier == "vault"]
        inside = [p for p in pool if (start is None or p.time >= start) and (end is None or p.time <= end)]
        return inside[:max_items], len(inside) > max_items

    def get_recovery_point(self, bi: BackupInstanceRef, rp_id: str) -> RecoveryPointInfo:
        self._enter("get_recovery_point")
        if rp_id not in self.points:
            raise AzureRejection("UserErrorRecoveryPointNotFound", f"recovery point {rp_id} not found")
        return self.points[rp_id]

    def fetch_secondary_recovery_points(self, bi: BackupInstanceRef, *, secondary: str,
                                        primary: str) -> list[RecoveryPointInfo]:
        self._enter("fetch_secondary_recovery_points")
        return [p for p in self.points.values() if p.tier == "vault"]

    def get_job(self, vault: VaultRef, job_id: str) -> JobInfo:
        self._enter("get_job")
        if job_name(job_id) not in self.jobs:
            raise AzureRejection("UserErrorJobNotFound", f"job {job_id} not found", status=404)
        return self.jobs[job_name(job_id)]

    def list_jobs(self, vault: VaultRef) -> list[JobInfo]:
        self._enter("list_jobs")
        return list(self.jobs.values())

    def fetch_cross_region_job(self, vault: VaultRef, *, secondary: str, primary: str, job_id: str) -> JobInfo:
        self._enter("fetch_cross_region_job")
        return self.jobs[job_name(job_id)]

    def fetch_cross_region_jobs(self, vault: VaultRef, *, secondary: str, primary: str) -> list[JobInfo]:
        self._enter("fetch_cross_region_jobs")
        return list(self.jobs.values())

    # -- LROs
    # the fake records the exact request objects the Data Protection adapter would send for each plan
    def validate_restore(self, plan: RestorePlan, rehydration: Rehydration | None = None) -> None:
        self._enter("validate_restore")
        self.validations.append(dp_client.validate_request(plan, rehydration))
        self._leave("validate_restore")

    def validate_cross_region_restore(self, plan: RestorePlan, source_region: str,
                                      rehydration: Rehydration | None = None) -> None:
        self._enter("validate_cross_region_restore")
        self.validations.append(dp_client.validate_cross_region_request(plan, source_region, rehydration))
        self._leave("validate_cross_region_restore")

    def trigger_restore(self, plan: RestorePlan, rehydration: Rehydration | None = None) -> Triggered:
        sent = self.clock()
        self._enter("trigger_restore")
        request = dp_client.restore_request(plan, rehydration)
        self.triggers.append(request)
        job = self._new_job(plan.backup_instance_id, request, "Restore")
        answered = self.clock()
        self._leave("trigger_restore")
        self.on_call.pop("trigger_restore:operation", lambda: None)()  # e.g. the operation's time after the POST
        return Triggered(job.id, (self.clock() - answered).total_seconds(), (answered - sent).total_seconds())

    def trigger_cross_region_restore(self, plan: RestorePlan, source_region: str) -> Triggered:
        self._enter("trigger_cross_region_restore")
        request = dp_client.cross_region_request(plan, source_region)
        self.triggers.append(request)
        job = self._new_job(request.cross_region_restore_details.source_backup_instance_id,
                            request.restore_request_object, "CrossRegionRestore")
        self._leave("trigger_cross_region_restore")
        return Triggered(job.id)

    def trigger_rehydrate(self, bi: BackupInstanceRef, recovery_point_id: str, priority: str,
                          retention_days: int) -> None:
        self._enter("trigger_rehydrate")
        self.rehydrations.append(dp_client.rehydration_request(recovery_point_id, priority, retention_days))
        self.points[recovery_point_id] = replace(self.points[recovery_point_id],
                                                 rehydration_status="CREATE_IN_PROGRESS")
        self._leave("trigger_rehydrate")

    @property
    def trigger_calls(self) -> int:
        return self.calls["trigger_restore"] + self.calls["trigger_cross_region_restore"]


@dataclass
class Harness:
    """Deps made of in-memory twins, plus a message pump around ``pipeline.handle``."""

    clock: Clock = field(default_factory=Clock)
    settings: Settings = field(default_factory=settings)
    store: MemoryStateStore = field(default_factory=MemoryStateStore)
    queues: MemoryQueueSender = field(default_factory=MemoryQueueSender)
    dp: FakeDataProtection = field(init=False)
    deps: Deps = field(init=False)
    pending: list[SentMessage] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    delivered: list[tuple[Stage, SentMessage]] = field(default_factory=list)
    last_id: str | None = None

    def __post_init__(self) -> None:
        self.dp = FakeDataProtection(self.clock)
        self.deps = Deps(settings=self.settings, store=self.store, queues=self.queues, dp=self.dp,
                         clock=self.clock)
        self.stage_of = {self.settings.queue(s.queue_setting): s.stage for s in registry.REGISTRY}
        self.events_queue = self.settings.queue("RESTORE_QUEUE_EVENTS")

    def collect(self) -> list[SentMessage]:
        """Move newly sent messages into ``pending`` (stage messages) and ``events`` (completion events)."""
        new = self.queues.take()
        for msg in new:
            if msg.queue == self.events_queue:
                self.events.append(json.loads(msg.text))
            else:
                self.pending.append(msg)
                if self.last_id is None:  # work started through another door (api, queue intake)
                    self.last_id = json.loads(msg.text)["restore_id"]
        return [m for m in new if m.queue != self.events_queue]

    def submit(self, body: dict[str, Any] | None = None, **kw: Any) -> RestoreRecord:
        rec, _ = intake.submit(parse_request(body or database_body()), source="http", deps=self.deps, **kw)
        self.last_id = rec.id
        self.collect()
        return rec

    def deliver(self, msg: SentMessage, *, dequeue_count: int = 1) -> list[SentMessage]:
        stage = self.stage_of[msg.queue]
        self.delivered.append((stage, msg))
        sent: list[SentMessage] = []
        try:
            pipeline.handle(stage, msg.text, message_id=f"m{len(self.delivered)}", dequeue_count=dequeue_count,
                            deps=self.deps)
        finally:
            sent = self.collect()  # also when the handler raises: what it sent before is on the queue
        return sent

    def next_message(self) -> SentMessage:
        assert self.pending, "no stage message pending"
        return self.pending.pop(0)

    def step(self) -> tuple[SentMessage, list[SentMessage]]:
        """Deliver the oldest pending message after its visibility delay has passed."""
        msg = self.next_message()
        self.clock.advance(msg.delay_seconds)
        return msg, self.deliver(msg)

    def run(self, *, max_steps: int = 40, until: Stage | None = None) -> RestoreRecord:
        """Pump until no stage message is pending (or the next one is for ``until``)."""
        for _ in range(max_steps):
            if not self.pending or (until is not None and self.stage_of[self.pending[0].queue] == until):
                break
            self.step()
        else:
            raise AssertionError(f"pipeline still busy after {max_steps} steps: {self.pending}")
        return self.record()

    def record(self, restore_id: str | None = None) -> RestoreRecord:
        rid = restore_id or self.last_id
        assert rid is not None, "nothing submitted"
        rec = self.store.get(rid)
        assert rec is not None
        return rec

    def stages_of(self, msgs: list[SentMessage]) -> list[Stage]:
        return [self.stage_of[m.queue] for m in msgs]
