"""The restore record (one row per restore), timeline events and the active-index entry.

Pure data + (de)serialisation to Table entities. Times are timezone-aware UTC ``datetime``; ISO-8601 in storage.
No secret is ever stored: the request keeps the Key Vault secret *URI*, never a value.

The serialisation bounds every free-text value (the one place that does, whatever the caller): an error message, a
fix or a timeline line at :data:`limits.TEXT_COST`, error codes and job states at :data:`limits.CODE_COST`, warnings
and timeline data at :data:`limits.JSON_COST` — well under Table Storage's 64 KiB per string property and 1 MiB per
entity, so a 40 000-character Azure error message is stored cut (with a note of its length), never refused. The
request is not cut: intake refuses a request whose stored form is too large.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from types import UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field

from .limits import CODE_COST, JSON_COST, TEXT_COST, bounded_json, clip
from .models import TERMINAL, Stage, Status, TargetKind, Tier

ID_FORMAT = "%Y%m%dT%H%M%S"


def new_restore_id(now: datetime) -> str:
    """Time-sortable id whose date part names the table partition: ``20261124T081500-9f3a1c2b7d``."""
    return f"{now.astimezone(UTC).strftime(ID_FORMAT)}-{secrets.token_hex(5)}"


def partition_of(restore_id: str) -> str:
    """Main rows are partitioned by creation day, so listing by date never scans all history."""
    return "d" + restore_id[:8]


def iso(dt: datetime | None) -> str | None:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z") if dt else None


def parse_time(value: str | datetime | None) -> datetime | None:
    """An ISO-8601 time (or a datetime) as an aware datetime **in UTC**; a time without a zone is taken as UTC.
    Everything that derives a day from a time (partitions, list windows) relies on the UTC conversion. A time that
    cannot be expressed in UTC (the edges of the calendar with an offset) raises ``ValueError``."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    else:
        raise TypeError(f"expected an ISO-8601 string, got {type(value).__name__}")
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    try:
        return dt.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{value} is outside the range of times that can be expressed in UTC") from None


#: Free text (mostly from Azure) and its bound, applied when a row is serialised.
_TEXT_BOUNDS = {"error_message": TEXT_COST, "error_fix": TEXT_COST, "error_code": CODE_COST, "job_status": CODE_COST}
_JSON_BOUNDS = {"warnings": JSON_COST, "staging": JSON_COST, "server_plan": JSON_COST, "replay_result": JSON_COST,
                "verify_result": JSON_COST}
_NOT_STORED = ("id", "etag")


def _kind(annotation: Any) -> str:
    """How a field is stored, derived from its type: ``time`` (ISO-8601), ``json`` (dicts and lists as JSON text),
    ``enum`` (its value) or ``plain``."""
    args = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)
    if datetime in args:
        return "time"
    if any(get_origin(a) in (dict, list) or a in (dict, list) for a in args):
        return "json"
    if any(isinstance(a, type) and issubclass(a, StrEnum) for a in args):
        return "enum"
    return "plain"


class RestoreRecord(BaseModel):
    """One restore's row. Its Table entity is derived from the fields' types (:meth:`to_entity`/:meth:`from_entity`):
    no hand-kept list of fields to keep in step."""

    model_config = ConfigDict(arbitrary_types_allowed=False)

    id: str
    status: Status
    stage: Stage | None
    source: str
    created_at: datetime
    updated_at: datetime
    deadline: datetime
    request: dict[str, Any]
    attempt: int = 1
    next_check_at: datetime | None = None
    idempotency_key: str | None = None
    traceparent: str | None = None
    backup_instance_id: str | None = None
    vault_id: str | None = None
    vault_info: dict[str, Any] = Field(default_factory=dict)
    datasource_type: str | None = None
    source_datasource_id: str | None = None
    recovery_point_id: str | None = None
    recovery_point_time: datetime | None = None
    tier: Tier | None = None
    target_kind: TargetKind | None = None
    target_resource: str | None = None
    region: str = "primary"
    restore_location: str | None = None
    identity_id: str | None = None  # user-assigned identity the restore acts as (None: the vault's system identity)
    rehydration_requested_at: datetime | None = None
    rehydration_expiry: datetime | None = None
    trigger_intent_at: datetime | None = None
    azure_job_id: str | None = None
    job_status: str | None = None
    job_start: datetime | None = None
    job_end: datetime | None = None
    error_code: str | None = None
    error_message: str | None = None
    error_fix: str | None = None
    warnings: list[dict[str, Any]] = Field(default_factory=list)
    stage_times: dict[str, dict[str, str | None]] = Field(default_factory=dict)
    transient_failures: int = 0
    polls: int = 0
    triggered_at: datetime | None = None
    #: when the trigger POST was sent (the earliest the job can have started) and answered (taken as the latest),
    #: before its long-running operation ended (``triggered_at``)
    trigger_sent_at: datetime | None = None
    trigger_accepted_at: datetime | None = None
    expected_job_seconds: float | None = None
    source_bytes: int | None = None  # the recovery point's size (its metadata), for the job's progress
    job_progress: dict[str, Any] = Field(default_factory=dict)  # last progress seen: at, fraction, overdue checks
    #: how much older the restored point is than asked for (latest_before T: T - point; CRR: primary's newest - it)
    data_loss_gap_seconds: float | None = None
    staging: dict[str, Any] = Field(default_factory=dict)  # server targets: where the vault's files are staged
    server_plan: dict[str, Any] = Field(default_factory=dict)  # server targets: the replay plan's summary
    replay_result: dict[str, Any] = Field(default_factory=dict)  # server targets: what the replay created
    verify_result: dict[str, Any] = Field(default_factory=dict)  # server targets: what verify found
    locks: list[str] = Field(default_factory=list)  # destinations this restore holds (restore_core/locks.py)
    #: who started it (guards.Caller.record(): kind, id, name; an alert's id, rule and plan) — never a key or token
    caller: dict[str, Any] = Field(default_factory=dict)
    indexed_stage: str | None = None
    indexed_check_by: datetime | None = None
    timeline_seq: int = 0
    etag: str | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def copy(self, **changes: Any) -> RestoreRecord:
        """A validated copy with ``changes`` (a stage's facts arrive as plain values: validation types them)."""
        return type(self).model_validate({**dict(self), **changes})

    def _stored(self, name: str, kind: str) -> Any:
        value = getattr(self, name)
        if value is None:
            return None
        if kind == "time":
            return iso(value)
        if name in _JSON_BOUNDS:
            return bounded_json(value, _JSON_BOUNDS[name])
        if kind == "json":
            return json.dumps(value, separators=(",", ":"), sort_keys=True)
        if kind == "enum":
            return value.value
        if name in _TEXT_BOUNDS and isinstance(value, str):
            return clip(value, _TEXT_BOUNDS[name])
        return value

    def to_entity(self) -> dict[str, Any]:
        ent: dict[str, Any] = {"PartitionKey": partition_of(self.id), "RowKey": self.id, "Kind": "restore"}
        for name, info in type(self).model_fields.items():
            if name not in _NOT_STORED:
                value = self._stored(name, _kind(info.annotation))
                if value is not None:
                    ent[name] = value
        return ent

    @classmethod
    def from_entity(cls, ent: dict[str, Any], etag: str | None = None) -> RestoreRecord:
        values: dict[str, Any] = {"id": ent["RowKey"], "etag": etag, "stage": None}
        for name, info in cls.model_fields.items():
            if name in _NOT_STORED or name not in ent:
                continue
            value = ent[name]
            kind = _kind(info.annotation)
            if kind == "time":
                value = parse_time(value)
            elif kind == "json" and isinstance(value, str):
                value = json.loads(value)
            values[name] = value
        return cls.model_validate(values)

    def summary(self) -> dict[str, Any]:
        """The status resource (without timeline)."""
        return {
            "id": self.id,
            "status": self.status.value,
            "stage": self.stage.value if self.stage else None,
            "source": self.source,
            "description": self.request.get("description"),
            "backup_instance_id": self.backup_instance_id,
            "recovery_point": {"id": self.recovery_point_id, "time": iso(self.recovery_point_time),
                               "tier": self.tier} if self.recovery_point_id else None,
            "target": {"kind": self.target_kind or self.request.get("target", {}).get("kind"),
                       "resource": self.target_resource, **_public_target(self.request.get("target", {}))},
            "region": self.region,
            "restore_location": self.restore_location,
            "azure_job_id": self.azure_job_id,
            "job_status": self.job_status,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "deadline": iso(self.deadline),
            "next_check_at": iso(self.next_check_at) if not self.terminal else None,
            "stage_times": self.stage_times,
            "rehydration_expiry": iso(self.rehydration_expiry),
            "error": {"code": self.error_code, "message": self.error_message, "fix": self.error_fix}
            if self.error_code else None,
            "warnings": self.warnings,
            **({"server": {"staging": self.staging, "plan": self.server_plan, "replay": self.replay_result,
                           "verify": self.verify_result}} if self.staging else {}),
        }


def _public_target(target: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in target.items() if k != "kind"}


@dataclass(frozen=True)
class TimelineEvent:
    at: datetime
    status: str
    stage: str | None
    message: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_entity(self, restore_id: str, seq: int) -> dict[str, Any]:
        return {"PartitionKey": partition_of(restore_id), "RowKey": f"{restore_id}~{seq:06d}", "Kind": "event",
                "at": iso(self.at), "status": self.status, "stage": self.stage or "",
                "message": clip(self.message, TEXT_COST), "data": bounded_json(self.data, JSON_COST)}

    @classmethod
    def from_entity(cls, ent: dict[str, Any]) -> TimelineEvent:
        at = parse_time(ent["at"])
        assert at is not None
        return cls(at=at, status=ent["status"], stage=ent.get("stage") or None, message=ent["message"],
                   data=json.loads(ent.get("data") or "{}"))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["at"] = iso(self.at)
        if not d["data"]:
            d.pop("data")
        return d


@dataclass(frozen=True)
class ActiveEntry:
    """Index row of an active restore (partition ``active``): what the watchdog needs without reading history."""

    restore_id: str
    status: str
    stage: str | None
    attempt: int
    next_check_at: datetime | None
    deadline: datetime
    vault_id: str | None
    region: str
    azure_job_id: str | None

    @classmethod
    def of(cls, rec: RestoreRecord, *, check_by: datetime | None = None) -> ActiveEntry:
        return cls(rec.id, rec.status.value, rec.stage.value if rec.stage else None, rec.attempt,
                   check_by or rec.next_check_at, rec.deadline, rec.vault_id, rec.region, rec.azure_job_id)

    def to_entity(self) -> dict[str, Any]:
        ent = {"PartitionKey": "active", "RowKey": self.restore_id, "Kind": "active", "status": self.status,
               "stage": self.stage or "", "attempt": self.attempt, "next_check_at": iso(self.next_check_at) or "",
               "deadline": iso(self.deadline), "vault_id": self.vault_id or "", "region": self.region,
               "azure_job_id": self.azure_job_id or ""}
        return ent

    @classmethod
    def from_entity(cls, ent: dict[str, Any]) -> ActiveEntry:
        deadline = parse_time(ent["deadline"])
        assert deadline is not None
        return cls(ent["RowKey"], ent["status"], ent.get("stage") or None, int(ent.get("attempt", 1)),
                   parse_time(ent.get("next_check_at")), deadline, ent.get("vault_id") or None,
                   ent.get("region", "primary"), ent.get("azure_job_id") or None)
