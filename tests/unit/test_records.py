"""Records as Table entities: round trips keep every field, times come back timezone-aware UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from restore_core.models import Stage, Status
from restore_core.records import (
    ActiveEntry,
    RestoreRecord,
    TimelineEvent,
    iso,
    new_restore_id,
    parse_time,
    partition_of,
)

from .fakes import BI_ID, T0, VAULT_ID, database_body

CET = timezone(timedelta(hours=1))


def full_record() -> RestoreRecord:
    """A record with every optional field set (non-default), times in mixed zones."""
    return RestoreRecord(
        id="20261124T080000-0123456789", status=Status.RESTORING, stage=Stage.MONITOR, source="alert",
        created_at=T0, updated_at=T0 + timedelta(minutes=5), deadline=(T0 + timedelta(hours=48)).astimezone(CET),
        request=database_body(description="drill"), attempt=6, next_check_at=T0 + timedelta(minutes=6),
        idempotency_key="alert:x", traceparent="00-" + "a" * 32 + "-" + "b" * 16
        + "-01", backup_instance_id=BI_ID, vault_id=VAULT_ID, vault_info={"id": VAULT_ID, "location": "westeurope"},
        datasource_type="Microsoft.DBforPostgreSQL/servers/databases", source_datasource_id="/s/db",
        recovery_point_id="rp1", recovery_point_time=T0 - timedelta(hours=6), tier="archive", target_kind="database",
        target_resource="/t/db", region="secondary", restore_location="northeurope",
        rehydration_requested_at=T0 + timedelta(minutes=1), rehydration_expiry=T0 + timedelta(days=15),
        trigger_intent_at=T0 + timedelta(minutes=2), azure_job_id=VAULT_ID + "/backupJobs/j1",
        job_status="InProgress", job_start=T0 + timedelta(minutes=2, seconds=3), job_end=T0 + timedelta(minutes=30),
        error_code="E", error_message="m", error_fix="f", warnings=[{"code": "W1", "message": "careful"}],
        stage_times={"validate": {"started": iso(T0), "finished": iso(T0)}}, transient_failures=2, polls=3,
        timeline_seq=9, etag='W/"7"',
    )


def test_restore_id_is_time_sortable_and_names_its_day_partition() -> None:
    rid = new_restore_id(datetime(2026, 11, 24, 9, 15, 0, tzinfo=CET))
    assert rid.startswith("20261124T081500-") and len(rid) == len("20261124T081500-") + 10
    assert int(rid.split("-")[1], 16) >= 0
    assert partition_of(rid) == "d20261124"
    assert new_restore_id(T0) != new_restore_id(T0)
    assert new_restore_id(T0) < new_restore_id(T0 + timedelta(seconds=1))


def test_full_record_round_trips_through_an_entity() -> None:
    rec = full_record()
    ent = rec.to_entity()
    assert ent["PartitionKey"] == "d20261124" and ent["RowKey"] == rec.id and ent["Kind"] == "restore"
    back = RestoreRecord.from_entity(ent, rec.etag)
    assert back == rec
    for name in RestoreRecord.model_fields:
        value = getattr(back, name)
        if isinstance(value, datetime):
            assert value.utcoffset() == timedelta(0), name


def test_entity_values_are_table_friendly_scalars() -> None:
    ent = full_record().to_entity()
    assert all(isinstance(v, (str, int, float, bool)) for v in ent.values()), ent
    assert ent["deadline"] == "2026-11-26T08:00:00Z"
    assert ent["status"] == "restoring" and ent["stage"] == "monitor"
    assert "etag" not in ent and "id" not in ent


def test_minimal_terminal_record_round_trips_with_no_stage() -> None:
    rec = RestoreRecord(id="20261124T080000-abcdefabcd", status=Status.REJECTED, stage=None, source="queue",
                        created_at=T0, updated_at=T0, deadline=T0, request={})
    ent = rec.to_entity()
    assert "stage" not in ent and "azure_job_id" not in ent
    back = RestoreRecord.from_entity(ent)
    assert back == rec and back.terminal and back.stage is None


def test_entity_with_unknown_columns_still_loads() -> None:
    ent = full_record().to_entity() | {"Timestamp": "2026-11-24T08:00:00Z", "added_later": "x"}
    assert RestoreRecord.from_entity(ent).id == full_record().id


def test_summary_never_contains_the_etag_and_hides_next_check_when_terminal() -> None:
    rec = full_record()
    assert rec.summary()["next_check_at"] == "2026-11-24T08:06:00Z"
    done = rec.copy(status=Status.SUCCEEDED, stage=None)
    assert done.summary()["next_check_at"] is None
    assert done.summary()["target"]["secret_uri"] == database_body()["target"]["secret_uri"]


def test_timeline_event_round_trips_with_sequence_in_row_key() -> None:
    ev = TimelineEvent(T0.astimezone(CET), "failed", "trigger", "trigger refused", {"error_code": "X"})
    ent = ev.to_entity("20261124T080000-0123456789", 12)
    assert ent["RowKey"] == "20261124T080000-0123456789~000012" and ent["PartitionKey"] == "d20261124"
    back = TimelineEvent.from_entity(ent)
    assert back == ev and back.at.utcoffset() == timedelta(0)
    assert back.to_dict() == {"at": "2026-11-24T08:00:00Z", "status": "failed", "stage": "trigger",
                              "message": "trigger refused", "data": {"error_code": "X"}}


def test_timeline_event_without_stage_or_data() -> None:
    ev = TimelineEvent(T0, "accepted", None, "accepted from http")
    back = TimelineEvent.from_entity(ev.to_entity("20261124T080000-0123456789", 1))
    assert back == ev and "data" not in back.to_dict()


@pytest.mark.parametrize("next_check", [T0 + timedelta(seconds=90), None])
def test_active_entry_round_trips(next_check: datetime | None) -> None:
    rec = full_record().copy(next_check_at=next_check)
    entry = ActiveEntry.of(rec)
    ent = entry.to_entity()
    assert ent["PartitionKey"] == "active" and ent["RowKey"] == rec.id
    back = ActiveEntry.from_entity(ent)
    assert back == entry
    assert back.deadline.utcoffset() == timedelta(0)
    assert (back.stage, back.attempt, back.region, back.azure_job_id) == ("monitor", 6, "secondary", rec.azure_job_id)


def test_active_entry_of_a_fresh_restore_has_empty_optionals() -> None:
    rec = full_record().copy(stage=Stage.VALIDATE, vault_id=None, azure_job_id=None)
    back = ActiveEntry.from_entity(ActiveEntry.of(rec).to_entity())
    assert back.vault_id is None and back.azure_job_id is None and back.stage == "validate"


@pytest.mark.parametrize(("raw", "expected"), [
    ("2026-11-24T08:00:00Z", T0),
    ("2026-11-24T09:00:00+01:00", T0),
    ("2026-11-24T08:00:00", T0),
    ("2026-11-24T08:00:00.1234567Z", T0 + timedelta(microseconds=123456)),
    (T0.replace(tzinfo=None), T0),
    ("", None),
    (None, None),
])
def test_parse_time_always_returns_aware_times(raw: str | datetime | None, expected: datetime | None) -> None:
    got = parse_time(raw)
    assert got == expected
    assert got is None or got.tzinfo is not None


def test_iso_writes_utc_with_z() -> None:
    assert iso(datetime(2026, 11, 24, 9, 0, tzinfo=CET)) == "2026-11-24T08:00:00Z"
    assert iso(None) is None
    assert parse_time(iso(T0)) == T0 and parse_time(iso(T0)).tzinfo == UTC  # type: ignore[union-attr]
