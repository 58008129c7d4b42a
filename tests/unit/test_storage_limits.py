"""Outcomes that Table Storage would refuse: free text is cut where rows are serialised (well under 64 KiB per string
property and 1 MiB per entity), and a write the table still refuses (a 4xx) ends the restore at once with the real
reason instead of being redelivered until the deadline."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import pytest

from restore_core.limits import TABLE_ENTITY_BYTES, TABLE_PROPERTY_BYTES, StorageLimitError, check_entity, clip, cost
from restore_core.models import Stage, Status
from restore_core.records import RestoreRecord, TimelineEvent
from restore_core.store import MemoryStateStore, StoreRejected

from .fakes import T0, Harness

AZURE_ERROR = "pg_restore: error: could not execute query: " + "x" * 40_000  # what the red team injected


def utf16(value: str) -> int:
    return len(value.encode("utf-16-le"))


def test_a_40000_character_azure_error_is_stored_cut_and_ends_the_restore_with_it() -> None:
    h = Harness()
    h.submit()
    h.run(until=Stage.MONITOR)
    h.dp.finish_job(h.dp.only_job().name, "Failed", errors=[{"code": "UserErrorPgRestoreFailed",
                                                             "message": AZURE_ERROR}])
    h.run()
    rec = h.record()
    assert rec.status is Status.FAILED and rec.error_code == "UserErrorPgRestoreFailed"
    assert rec.error_message and rec.error_message.startswith("pg_restore: error: could not execute query: xxx")
    assert f"{len(AZURE_ERROR)} characters in all" in rec.error_message
    entity, _ = h.store._rows[rec.id]
    assert max(utf16(v) for v in entity.values() if isinstance(v, str)) <= TABLE_PROPERTY_BYTES // 4
    assert [e["error"]["code"] for e in h.events] == ["UserErrorPgRestoreFailed"]
    assert h.pending == []


def test_long_texts_from_azure_are_cut_in_every_row_and_timeline_field() -> None:
    rec = RestoreRecord(id="20261124T080000-0000000001", status=Status.FAILED, stage=None, source="http",
                        created_at=T0, updated_at=T0, deadline=T0 + timedelta(hours=1), request={},
                        error_code="C" * 5000, error_message="\U0001f4a5" * 30_000, error_fix="\u00e9" * 30_000,
                        job_status="S" * 5000, warnings=[{"code": "W", "message": "\u4e2d" * 20_000}] * 10)
    entity = rec.to_entity()
    check_entity(entity)
    assert all(cost(v) <= 16 * 1024 for v in entity.values() if isinstance(v, str))
    back = RestoreRecord.from_entity(entity)
    assert back.error_message and back.error_message.startswith("\U0001f4a5") and back.warnings[0]["code"] == "W"
    event = TimelineEvent(T0, "failed", "monitor", "job failed: " + "y" * 50_000, {"error_code": "z" * 50_000})
    check_entity(event.to_entity(rec.id, 1))
    assert TimelineEvent.from_entity(event.to_entity(rec.id, 1)).message.startswith("job failed: yyy")


def test_clip_keeps_short_texts_and_cuts_long_ones_by_their_json_cost() -> None:
    assert clip("short") == "short"
    cut = clip("\u00e9" * 5000, 600)
    assert cost(cut) <= 600 and cut.startswith("\u00e9") and cut.endswith("[cut: 5000 characters in all]")


def test_the_memory_twin_refuses_what_azure_refuses() -> None:
    with pytest.raises(StorageLimitError) as info:
        check_entity({"PartitionKey": "p", "RowKey": "r", "v": "x" * (TABLE_PROPERTY_BYTES // 2 + 1)})
    assert info.value.code == "PropertyValueTooLarge"
    with pytest.raises(StorageLimitError) as info:
        check_entity({f"v{i}": "x" * 30_000 for i in range(TABLE_ENTITY_BYTES // 60_000 + 1)})
    assert info.value.code == "EntityTooLarge"
    check_entity({"PartitionKey": "p", "RowKey": "r", "v": "x" * (TABLE_PROPERTY_BYTES // 2)})


class RefusingStore(MemoryStateStore):
    """Refuses the next ``refuse`` updates as Azure Table Storage refuses an entity over 1 MiB (a 400)."""

    def __init__(self) -> None:
        super().__init__()
        self.refuse = 0

    def update(self, rec: RestoreRecord, events: Sequence[TimelineEvent] = ()) -> RestoreRecord:
        if self.refuse:
            self.refuse -= 1
            raise StoreRejected("EntityTooLarge", "The entity is larger than the maximum allowed size (1MB).")
        return super().update(rec, events)


def test_a_table_4xx_on_the_outcome_write_ends_the_restore_at_once_with_the_real_reason() -> None:
    h = Harness(store=RefusingStore())
    h.submit()
    h.run(until=Stage.MONITOR)
    h.dp.finish_job(h.dp.only_job().name, "Failed", errors=[{"code": "UserErrorPgRestoreFailed",
                                                             "message": "database exists"}])
    h.store.refuse = 1  # the outcome write is refused; the give-up write (without the stage's changes) is not
    h.step()  # one delivery, no exception: no redelivery, no poison, no waiting for the deadline
    rec = h.record()
    assert rec.status is Status.FAILED and rec.error_code == "UserErrorPgRestoreFailed"
    assert rec.error_message and rec.error_message.startswith("database exists")
    assert "EntityTooLarge" in rec.error_message
    assert h.dp.calls["get_job"] == 1 and h.pending == []
    assert [(e["status"], e["error"]["code"]) for e in h.events] == [("failed", "UserErrorPgRestoreFailed")]
    assert h.store.active() == []


def test_a_table_4xx_on_a_claim_ends_the_restore_with_outcome_not_stored() -> None:
    h = Harness(store=RefusingStore())
    h.submit()
    h.store.refuse = 1  # validate's first claim (accepted -> validating)
    h.step()
    rec = h.record()
    assert rec.status is Status.FAILED and rec.error_code == "OutcomeNotStored"
    assert "EntityTooLarge" in (rec.error_message or "") and rec.error_fix
    assert h.dp.calls["validate_restore"] == 0 and h.pending == []
