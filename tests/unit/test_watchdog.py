"""Watchdog tick with in-memory twins: re-drives lost messages, expires deadlines, batches per vault/instance, and
reads only the active index (cost O(active), not O(history))."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from restore_core import watchdog
from restore_core.messages import Envelope
from restore_core.models import Stage, Status
from restore_core.queues import SentMessage
from restore_core.records import RestoreRecord, TimelineEvent
from restore_core.store import MemoryStateStore

from .fakes import ARCHIVE_POINT, T0, Harness, database_body, settings, stage_by_stage

STORE_METHODS = ("create", "get", "update", "timeline", "list_day", "active", "put_active", "remove_active",
                 "get_meta", "put_meta")


class CountingStore(MemoryStateStore):
    """The memory twin, counting every primitive call."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    def __getattribute__(self, name: str) -> Any:
        if name in STORE_METHODS:
            object.__getattribute__(self, "counts")[name] += 1
        return object.__getattribute__(self, name)


@pytest.fixture
def h() -> Harness:
    return Harness(store=CountingStore())


@pytest.fixture
def hs() -> Harness:
    """Stage by stage (``RESTORE_CONTINUE_INLINE=false``): the trigger has its own message for the watchdog to copy
    (the inline trigger's safety net is that message, delayed)."""
    return Harness(store=CountingStore(), settings=stage_by_stage())


def lose_messages(h: Harness) -> None:
    h.pending.clear()


def test_overdue_restore_is_redriven_with_its_current_stage_and_attempt(h: Harness) -> None:
    rec = h.submit()
    lose_messages(h)  # the first validate message was lost
    h.clock.advance(h.settings.redrive_slack_seconds - 1)
    assert watchdog.tick(h.deps).redriven == []  # not overdue yet
    assert h.collect() == []

    h.clock.advance(2)
    report = watchdog.tick(h.deps)
    assert report.redriven == [rec.id] and report.active == 1
    sent = h.collect()
    env = Envelope.decode(sent[0].text)
    assert len(sent) == 1 and (env.stage, env.attempt, env.restore_id) == (Stage.VALIDATE, 1, rec.id)

    assert watchdog.tick(h.deps).redriven == []  # the index row was pushed forward: no storm of re-sends
    h.run(until=Stage.MONITOR)
    assert h.record().stage is Stage.MONITOR and h.dp.trigger_calls == 1


def test_redriven_duplicate_of_a_message_that_was_only_late_is_harmless(h: Harness) -> None:
    h.submit()
    late = h.next_message()
    h.clock.advance(h.settings.redrive_slack_seconds + 1)
    assert watchdog.tick(h.deps).redriven
    assert h.collect()
    h.deliver(late)
    h.run(until=Stage.MONITOR)  # the re-sent copy arrives second and is stale
    assert h.dp.calls["validate_restore"] == 1 and h.dp.trigger_calls == 1


def test_restore_past_its_deadline_is_expired_with_the_reason(h: Harness) -> None:
    rec = h.submit(database_body(deadline_hours=1))
    lose_messages(h)
    h.clock.advance(3600)
    report = watchdog.tick(h.deps)
    h.collect()
    assert report.expired == [rec.id] and report.redriven == []
    done = h.record()
    assert done.status is Status.FAILED and done.error_code == "DeadlineExceeded"
    assert [e["error"]["code"] for e in h.events] == ["DeadlineExceeded"]
    assert h.store.active() == []


def test_stale_index_row_of_a_finished_restore_is_cleaned_up(h: Harness) -> None:
    rec = h.submit()
    lose_messages(h)
    row = h.record()
    h.store._rows[rec.id] = (row.copy(status=Status.SUCCEEDED, stage=None).to_entity(), 'W/"x"')  # crash after write
    h.clock.advance(3600)
    report = watchdog.tick(h.deps)
    assert report.redriven == [] and h.store.active() == [] and h.collect() == []


def test_waiting_restores_on_one_backup_instance_share_one_recovery_point_read() -> None:
    h = Harness(store=CountingStore(), settings=settings(RESTORE_REHYDRATION_FLOW="two-step"))
    h.dp.add_archive_point()
    first = h.submit(database_body(idempotency_key="a"))
    second = h.submit(database_body(idempotency_key="b", target={**database_body()["target"],
                                                                 "database_name": "other_db"}))
    for _ in range(20):
        if {h.store.get(first.id).stage, h.store.get(second.id).stage} == {Stage.WAIT}:  # type: ignore[union-attr]
            break
        h.step()
    h.step()
    h.step()  # one wait check each
    lose_messages(h)
    h.dp.complete_rehydration(ARCHIVE_POINT, T0 + timedelta(days=15))
    h.clock.advance(h.settings.poll_max_seconds)
    before = h.dp.calls["list_recovery_points"]
    report = watchdog.tick(h.deps)
    assert sorted(report.batched_finished) == sorted([first.id, second.id])
    assert h.dp.calls["list_recovery_points"] - before == 1
    for rid in (first.id, second.id):
        assert h.store.get(rid).stage is Stage.TRIGGER  # type: ignore[union-attr]
    # the watchdog runs no trigger itself: the trigger messages are due at once, not delayed like the safety net
    # an inline trigger leaves behind (that delay is the trigger grace, 11 minutes in Azure)
    h.collect()
    triggers = [m for m in h.pending if h.stage_of[m.queue] is Stage.TRIGGER]
    assert len(triggers) == 2 and all(m.delay_seconds == 0 for m in triggers), triggers
    h.step()
    h.step()
    assert h.dp.trigger_calls == 2


def test_cross_region_jobs_are_checked_with_one_call_per_vault(h: Harness) -> None:
    ids = [h.submit(database_body(region="secondary", idempotency_key=k,
                                  target={**database_body()["target"], "database_name": f"db_{k}"})).id
           for k in ("a", "b", "c")]
    for _ in range(30):
        if not h.pending or all(h.store.get(i).stage is Stage.MONITOR for i in ids):  # type: ignore[union-attr]
            break
        h.step()
    assert h.dp.trigger_calls == 3
    lose_messages(h)
    for job in list(h.dp.jobs.values()):
        h.dp.finish_job(job.name, "Completed")
    before = h.dp.calls["fetch_cross_region_jobs"]
    report = watchdog.tick(h.deps)
    h.collect()
    assert sorted(report.batched_finished) == sorted(ids)
    assert h.dp.calls["fetch_cross_region_jobs"] - before == 1
    assert all(h.store.get(i).status is Status.SUCCEEDED for i in ids)  # type: ignore[union-attr]
    assert len(h.events) == 3


def _history(store: MemoryStateStore, n: int) -> None:
    for i in range(n):
        rid = f"2026{(i % 9) + 1:02d}01T000000-{i:010x}"
        rec = RestoreRecord(id=rid, status=Status.SUCCEEDED, stage=None, source="http", created_at=T0,
                            updated_at=T0, deadline=T0, request={})
        store.create(rec, TimelineEvent(T0, "succeeded", None, "old"), idempotency_key=None, request_hash="h")


def _tick_cost(terminal: int) -> tuple[Counter[str], watchdog.TickReport]:
    h = Harness(store=CountingStore())
    _history(h.store, terminal)
    for i in range(10):
        h.submit(database_body(idempotency_key=f"k{i}"))
    lose_messages(h)
    h.clock.advance(h.settings.redrive_slack_seconds + 1)
    store: CountingStore = h.store  # type: ignore[assignment]
    store.counts.clear()
    report = watchdog.tick(h.deps)
    return Counter(store.counts), report


def test_tick_cost_grows_with_active_restores_not_with_history() -> None:
    small, report_small = _tick_cost(terminal=20)
    large, report_large = _tick_cost(terminal=600)
    assert len(report_small.redriven) == len(report_large.redriven) == 10
    assert small == large
    assert large["list_day"] == 0 and large["timeline"] == 0
    assert large["active"] == 1
    assert large["get"] <= 10 and large["put_active"] <= 10


def test_poison_messages_of_succeeded_or_active_restores_are_swept_failed_ones_stay(h: Harness) -> None:
    ok = h.submit()
    h.run(until=Stage.MONITOR)
    h.dp.finish_job(h.dp.only_job().name, "Completed")
    h.run()
    assert h.record(ok.id).status is Status.SUCCEEDED
    running = h.submit()
    lose_messages(h)
    failed = h.submit(database_body(target={"kind": "database", "server_id": "/subscriptions/s/resourceGroups/rg/"
                                            "providers/Microsoft.DBforPostgreSQL/servers/pg-x", "database_name": "x2",
                                            "secret_uri": "https://kv-abc.vault.azure.net/secrets/s"}))
    rec = h.record(failed.id)
    h.store.update(rec.copy(status=Status.FAILED, stage=None, error_code="StageRetriesExhausted"))
    poison = h.settings.queue("RESTORE_QUEUE_TRIGGER") + "-poison"
    for r in (ok, running, failed):
        h.queues.send(poison, Envelope(r.id, Stage.TRIGGER, 3, None, T0).encode())
    h.queues.send(poison, "not an envelope")
    report = watchdog.tick(h.deps)
    assert sorted(report.poison_removed) == sorted([ok.id, running.id])
    left = [m.text for m in h.queues.sent if m.queue == poison]
    assert len(left) == 2 and any(failed.id in t for t in left) and "not an envelope" in left


def test_terminal_row_still_indexed_gets_its_completion_event_from_the_watchdog(h: Harness) -> None:
    rec = h.submit()
    lose_messages(h)
    row = h.record(rec.id)
    # the process died right after the terminal write: no event yet, index row still there
    h.store.update(row.copy(status=Status.SUCCEEDED, stage=None, next_check_at=None))
    assert [e.restore_id for e in h.store.active()] == [rec.id]
    h.clock.advance(h.settings.redrive_slack_seconds + 1)
    watchdog.tick(h.deps)
    h.collect()
    assert [(e["restore_id"], e["status"]) for e in h.events] == [(rec.id, "succeeded")]
    assert h.store.active() == []


def test_one_bad_entry_never_stops_the_tick(h: Harness) -> None:
    corrupt = h.submit(database_body(idempotency_key="corrupt"))
    huge_event = h.submit(database_body(idempotency_key="huge"))
    overdue = h.submit(database_body(idempotency_key="overdue"))
    expiring = h.submit(database_body(idempotency_key="expiring", deadline_hours=0.01))
    lose_messages(h)
    ent, etag = h.store._rows[corrupt.id]
    h.store._rows[corrupt.id] = ({**ent, "status": "no-such-status"}, etag)  # a row this version cannot read
    # the process died after the terminal write of a restore whose completion event is huge (non-ASCII Azure error)
    h.store.update(h.record(huge_event.id).copy(status=Status.FAILED, stage=None, error_code="E",
                                                error_message="\u00e9\u20ac\U0001f4a5" * 20000))
    h.clock.advance(h.settings.redrive_slack_seconds + 1)

    report = watchdog.tick(h.deps)
    h.collect()
    assert report.redriven == [overdue.id] and report.expired == [expiring.id]
    assert [e.split(":")[0] for e in report.errors] == [corrupt.id]  # reported (and logged), not raised
    assert h.record(expiring.id).error_code == "DeadlineExceeded"
    assert sorted((e["restore_id"], e["status"]) for e in h.events) == sorted(
        [(huge_event.id, "failed"), (expiring.id, "failed")])
    assert sorted(e.restore_id for e in h.store.active()) == sorted([corrupt.id, overdue.id])
    assert watchdog.tick(h.deps).errors == report.errors  # the next tick again handles the others, reports it


def test_intake_poison_queue_is_swept_and_each_message_recorded(h: Harness) -> None:
    keyed = h.submit(database_body(idempotency_key="kp"))  # its first delivery created it, then the host gave up
    poison = h.settings.queue("RESTORE_QUEUE_REQUESTS") + "-poison"
    h.queues.send(poison, json.dumps(database_body(idempotency_key="kp")))
    h.queues.send(poison, json.dumps(database_body(description="no key of its own")))
    h.queues.send(poison, "not json")
    report = watchdog.tick(h.deps)
    assert [m for m in h.queues.sent if m.queue == poison] == []
    assert len(report.intake_poison) == 3 and report.intake_poison[0] == keyed.id  # found, not doubled
    keyless, junk = (h.store.get(i) for i in report.intake_poison[1:])
    assert keyless is not None and keyless.status is Status.REJECTED
    assert keyless.error_code == "IntakeRetriesExhausted" and keyless.request["description"] == "no key of its own"
    assert junk is not None and junk.status is Status.REJECTED and junk.error_code == "InvalidRequest"
    assert [e.restore_id for e in h.store.active()] == [keyed.id]
    assert {Envelope.decode(m.text).restore_id for m in h.collect()} <= {keyed.id}  # nothing new started
# --- re-drive vs. a message that is merely in flight (the Functions queue listener keeps it invisible 10 minutes)

def test_no_redrive_while_the_original_message_may_still_be_in_flight(h: Harness) -> None:
    rec = h.submit()
    original = h.next_message()  # received by a host that then died: invisible for the in-flight time, then back
    assert h.settings.message_in_flight_seconds == 600
    h.clock.advance(h.settings.message_in_flight_seconds)
    assert watchdog.tick(h.deps).redriven == [] and h.collect() == []
    h.deliver(original)
    assert h.record(rec.id).stage is not Stage.VALIDATE


def test_no_redrive_while_a_delayed_check_message_may_still_be_in_flight(hs: Harness) -> None:
    h = hs
    h.submit()
    h.run(until=Stage.MONITOR)
    check = h.next_message()
    assert check.delay_seconds > 0
    h.clock.advance(check.delay_seconds + h.settings.message_in_flight_seconds)
    assert watchdog.tick(h.deps).redriven == []
    h.clock.advance(h.settings.redrive_slack_seconds - h.settings.message_in_flight_seconds + 1)
    assert watchdog.tick(h.deps).redriven == [h.record().id]  # now it counts as lost


def _redrive_trigger(h: Harness) -> tuple[SentMessage, SentMessage]:
    """The trigger message (the original) and the watchdog's copy of it (same stage, same attempt)."""
    h.submit()
    h.run(until=Stage.TRIGGER)
    original = h.next_message()
    h.clock.advance(original.delay_seconds + h.settings.redrive_slack_seconds + 1)
    assert watchdog.tick(h.deps).redriven == [h.record().id]
    (copy,) = [m for m in h.collect() if m.queue == original.queue]
    h.pending.remove(copy)
    a, b = Envelope.decode(original.text), Envelope.decode(copy.text)
    assert (a.restore_id, a.stage, a.attempt) == (b.restore_id, b.stage, b.attempt)
    return original, copy


@pytest.mark.parametrize("first", ["original", "copy"])
def test_redrive_copy_and_original_one_after_the_other_trigger_once(hs: Harness, first: str) -> None:
    h = hs
    original, copy = _redrive_trigger(h)
    one, other = (original, copy) if first == "original" else (copy, original)
    h.deliver(one)
    row = h.record()
    assert h.deliver(other) == []  # same stage and attempt, already done: a no-op
    assert h.record() == row
    h.dp.finish_job(h.dp.only_job().name, "Completed")
    h.run()
    assert h.dp.trigger_calls == 1 and h.record().status is Status.SUCCEEDED and len(h.events) == 1


def test_redrive_copy_arriving_while_the_original_is_mid_trigger_triggers_once(hs: Harness) -> None:
    h = hs
    original, copy = _redrive_trigger(h)
    during: list[list[SentMessage]] = []
    h.dp.on_call["trigger_restore"] = lambda: during.append(h.deliver(copy))
    h.deliver(original)
    assert len(during) == 1
    for _ in range(10):
        if not h.pending:
            break
        h.step()
        if h.dp.jobs and not h.dp.only_job().terminal:
            h.dp.finish_job(h.dp.only_job().name, "Completed")
    h.run()
    assert h.dp.trigger_calls == 1 and h.record().status is Status.SUCCEEDED and len(h.events) == 1
