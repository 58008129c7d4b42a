"""``MemoryStateStore``: the in-memory twin keeps the Table store's semantics (idempotency, ETags, active index)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from restore_core.errors import RequestError
from restore_core.models import Stage, Status
from restore_core.records import RestoreRecord, TimelineEvent
from restore_core.store import ConcurrencyError, MemoryStateStore, days_between

from .fakes import T0


def make(rid: str = "20261124T080000-0000000001", **kw: object) -> RestoreRecord:
    base: dict[str, object] = {"id": rid, "status": Status.ACCEPTED, "stage": Stage.VALIDATE, "source": "http",
                               "created_at": T0, "updated_at": T0, "deadline": T0 + timedelta(hours=1),
                               "request": {"n": 1}}
    base.update(kw)
    return RestoreRecord(**base)  # type: ignore[arg-type]


def ev(msg: str = "accepted") -> TimelineEvent:
    return TimelineEvent(T0, "accepted", None, msg)


def test_create_without_key_inserts_and_indexes_the_active_restore() -> None:
    store = MemoryStateStore()
    rec, created = store.create(make(), ev(), idempotency_key=None, request_hash="h1")
    assert created and rec.etag and rec.timeline_seq == 1
    assert store.get(rec.id) == rec
    assert [e.restore_id for e in store.active()] == [rec.id]
    assert [e.message for e in store.timeline(rec.id)] == ["accepted"]


def test_create_with_the_same_key_and_request_returns_the_first_restore() -> None:
    store = MemoryStateStore()
    first, created1 = store.create(make(), ev(), idempotency_key="k", request_hash="h1")
    again, created2 = store.create(make("20261124T080001-0000000002"), ev("again"), idempotency_key="k",
                                   request_hash="h1")
    assert (created1, created2) == (True, False)
    assert again.id == first.id and again.etag == first.etag
    assert store.get("20261124T080001-0000000002") is None
    assert len(store.timeline(first.id)) == 1
    assert len(store.active()) == 1


def test_key_reused_for_a_different_request_is_409_and_changes_nothing() -> None:
    store = MemoryStateStore()
    store.create(make(), ev(), idempotency_key="k", request_hash="h1")
    writes = store.writes
    with pytest.raises(RequestError) as info:
        store.create(make("20261124T080001-0000000002"), ev(), idempotency_key="k", request_hash="h2")
    err = info.value
    assert (err.status, err.code, err.field) == (409, "IdempotencyKeyReused", "idempotency_key")
    assert "new idempotency key" in (err.fix or "")
    assert store.writes == writes and store.get("20261124T080001-0000000002") is None


def test_creating_a_terminal_record_does_not_index_it() -> None:
    store = MemoryStateStore()
    rec, _ = store.create(make(status=Status.REJECTED, stage=None), ev(), idempotency_key="k", request_hash="h")
    assert store.active() == [] and store.get(rec.id) is not None


def test_update_with_current_etag_replaces_row_appends_events_and_returns_new_etag() -> None:
    store = MemoryStateStore()
    rec, _ = store.create(make(), ev(), idempotency_key=None, request_hash="h")
    new = store.update(rec.copy(status=Status.VALIDATING, attempt=2), [ev("a"), ev("b")])
    assert new.etag != rec.etag and new.timeline_seq == 3
    assert store.get(rec.id) == new
    assert [e.message for e in store.timeline(rec.id)] == ["accepted", "a", "b"]
    assert store.active()[0].attempt == 2 and store.active()[0].status == "validating"


def test_update_with_a_stale_etag_raises_concurrency_error_and_changes_nothing() -> None:
    store = MemoryStateStore()
    rec, _ = store.create(make(), ev(), idempotency_key=None, request_hash="h")
    winner = store.update(rec.copy(attempt=2))
    with pytest.raises(ConcurrencyError):
        store.update(rec.copy(attempt=99), [ev("loser")])
    assert store.get(rec.id) == winner
    assert [e.message for e in store.timeline(rec.id)] == ["accepted"]


def test_update_of_an_unknown_restore_is_a_concurrency_error() -> None:
    with pytest.raises(ConcurrencyError):
        MemoryStateStore().update(make().copy(etag='W/"1"'))


def test_terminal_update_keeps_the_index_row_until_the_completion_event_is_out() -> None:
    store = MemoryStateStore()
    a, _ = store.create(make("20261124T080000-000000000a"), ev(), idempotency_key=None, request_hash="h")
    b, _ = store.create(make("20261124T080000-000000000b"), ev(), idempotency_key=None, request_hash="h")
    store.update(a.copy(status=Status.SUCCEEDED, stage=None))
    # the index row stays: it marks "completion event still owed" until the pipeline removes it
    assert sorted(e.restore_id for e in store.active()) == [a.id, b.id]
    store.remove_active(a.id)
    assert [e.restore_id for e in store.active()] == [b.id]
    store.update(b.copy(status=Status.CANCELLED, stage=None))
    store.remove_active(b.id)
    assert store.active() == []


def test_rechecks_within_the_indexed_promise_skip_the_index_write() -> None:
    store = MemoryStateStore(index_slack=timedelta(seconds=60))
    rec, _ = store.create(make("20261124T080000-000000000c").copy(next_check_at=T0), ev(), idempotency_key=None,
                          request_hash="h")
    promised = store.active()[0].next_check_at
    assert promised == T0 + timedelta(seconds=60)
    rec = store.update(rec.copy(next_check_at=T0 + timedelta(seconds=30)))  # within the promise: no index write
    assert store.active()[0].next_check_at == promised
    rec = store.update(rec.copy(next_check_at=T0 + timedelta(seconds=90)))  # past it: the index moves
    assert store.active()[0].next_check_at == T0 + timedelta(seconds=150)
    store.update(rec.copy(stage=Stage.MONITOR, next_check_at=T0 + timedelta(seconds=100)))  # stage change: written
    assert store.active()[0].stage == "monitor"


def test_list_day_is_ordered_by_id_filtered_by_day_and_pages_after_an_id() -> None:
    store = MemoryStateStore()
    ids = ["20261124T235959-00000000ff", "20261124T000000-0000000001", "20261125T000000-0000000003",
           "20261123T120000-0000000004", "20261124T120000-0000000002"]
    for rid in ids:
        store.create(make(rid), ev(), idempotency_key=None, request_hash="h")
    day = [r.id for r in store.list_day(T0, after_id=None)]
    assert day == ["20261124T000000-0000000001", "20261124T120000-0000000002", "20261124T235959-00000000ff"]
    assert [r.id for r in store.list_day(T0, after_id=day[0])] == day[1:]
    assert [r.id for r in store.list_day(T0, after_id=day[-1])] == []


def test_meta_rows_are_copies() -> None:
    store = MemoryStateStore()
    values = {"ewma_seconds": 12.0}
    store.put_meta("jobstats", "bi", values)
    values["ewma_seconds"] = 99.0
    got = store.get_meta("jobstats", "bi")
    assert got == {"ewma_seconds": 12.0}
    assert store.get_meta("jobstats", "other") is None


def test_days_between_includes_both_ends() -> None:
    days = days_between(T0 + timedelta(hours=3), T0 + timedelta(days=2, hours=1))
    assert [d.strftime("%Y%m%d") for d in days] == ["20261124", "20261125", "20261126"]
    assert all(d.hour == 0 and d.tzinfo is not None for d in days)


def test_a_restore_the_table_would_refuse_is_413_and_leaves_no_idempotency_key() -> None:
    store = MemoryStateStore()
    too_large = make(request={"datasource_id": "\u00e9" * 40_000})  # 80 KB in UTF-16: over 64 KiB per property
    with pytest.raises(RequestError) as info:
        store.create(too_large, ev(), idempotency_key="k", request_hash="h-big")
    assert (info.value.status, info.value.code) == (413, "RequestTooLarge")
    assert store.writes == 0 and store.get(too_large.id) is None and store.active() == []
    fixed, created = store.create(make("20261124T080001-0000000002"), ev(), idempotency_key="k", request_hash="h2")
    assert created and fixed.id == "20261124T080001-0000000002"  # the key was not left pointing at nothing


def test_days_between_stops_at_the_last_day_of_the_calendar() -> None:
    last = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert [d.day for d in days_between(last - timedelta(days=1), last)] == [30, 31]


def test_a_lost_race_hands_back_the_current_row() -> None:
    store = MemoryStateStore()
    rec, _ = store.create(make(), ev("x"), idempotency_key=None, request_hash="h")
    winner = store.update(rec.copy(status=Status.VALIDATING))
    try:
        store.update(rec.copy(status=Status.CANCELLED))
    except ConcurrencyError as lost:
        assert lost.current == winner
    else:
        raise AssertionError("a stale ETag must lose")
