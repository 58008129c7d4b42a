"""Completion events always fit a queue message (64 KiB of base64): free text is bounded, an event still too large
goes out reduced, and an event the queue refuses is logged without blocking the terminal bookkeeping. Delivery is at
least once; every publication of one restore outcome carries the same ``event_id``."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import timedelta

import pytest

from restore_core import events, pipeline, watchdog
from restore_core.errors import PermanentError
from restore_core.limits import QUEUE_MESSAGE_BYTES, queue_message_bytes
from restore_core.models import Stage, Status
from restore_core.queues import MemoryQueueSender
from restore_core.records import RestoreRecord
from restore_core.store import MemoryStateStore

from .fakes import BI_ID, T0, Harness

EMOJI_ERROR = "\U0001f4a5 l'op\u00e9ration a \u00e9chou\u00e9 " * 3000  # ~66 000 characters, escaped 6-12 bytes each


def terminal(**kw: object) -> RestoreRecord:
    base: dict[str, object] = {
        "id": "20261124T080000-0000000001", "status": Status.FAILED, "stage": None, "source": "http",
        "created_at": T0, "updated_at": T0 + timedelta(hours=1), "deadline": T0 + timedelta(hours=48),
        "request": {}, "backup_instance_id": BI_ID, "target_kind": "database", "target_resource": "/t/db",
        "azure_job_id": "/jobs/j1", "job_status": "Failed", "error_code": "UserErrorRestoreFailed",
        "error_message": EMOJI_ERROR, "error_fix": "\u00e9" * 20000,
        "warnings": [{"code": "W", "message": "\u4e2d" * 5000} for _ in range(40)]}
    base.update(kw)
    return RestoreRecord(**base)  # type: ignore[arg-type]


def sent_events(h: Harness) -> list[str]:
    return [m.text for m in h.queues.sent if m.queue == h.events_queue]


def test_event_with_long_non_ascii_error_and_warnings_fits_a_queue_message() -> None:
    h = Harness()
    events.publish_completion(h.deps, terminal())
    [text] = sent_events(h)
    assert queue_message_bytes(text) <= QUEUE_MESSAGE_BYTES
    event = json.loads(text)
    assert event["restore_id"] == "20261124T080000-0000000001" and event["status"] == "failed"
    assert event["error"]["code"] == "UserErrorRestoreFailed"
    assert event["error"]["message"].startswith("\U0001f4a5 l'op\u00e9ration")  # the head of the real reason
    assert "characters in all" in event["error"]["message"]  # ...and a note that it was cut


def test_event_still_too_large_after_bounding_goes_out_reduced() -> None:
    h = Harness()
    huge_id = "/subscriptions/x/" + "\u00e9" * 9000  # ids are not cut in a full event
    events.publish_completion(h.deps, terminal(target_resource=huge_id, azure_job_id=huge_id,
                                               backup_instance_id=huge_id))
    [text] = sent_events(h)
    assert queue_message_bytes(text) <= QUEUE_MESSAGE_BYTES
    event = json.loads(text)
    assert event["truncated"] is True
    assert (event["restore_id"], event["status"], event["succeeded"]) == ("20261124T080000-0000000001", "failed",
                                                                          False)
    assert event["error"]["code"] == "UserErrorRestoreFailed" and event["warnings"]
    assert set(event) >= set(events.completion_event(terminal()))  # the same schema, fields cut


def test_small_event_is_unchanged_and_not_marked_truncated() -> None:
    rec = terminal(error_message="boom", error_fix="retry", warnings=[])
    assert json.loads(events.encode_event(rec)) == events.completion_event(rec)


class RefusingQueues(MemoryQueueSender):
    def send(self, queue: str, text: str, *, delay_seconds: float = 0) -> None:
        if queue.endswith("events"):
            raise PermanentError(f"{queue} refused the message: 413 RequestBodyTooLarge")
        super().send(queue, text, delay_seconds=delay_seconds)


def test_event_the_queue_refuses_is_logged_and_the_terminal_bookkeeping_goes_on(
        caplog: pytest.LogCaptureFixture) -> None:
    h = Harness(queues=RefusingQueues())
    rec = h.submit()
    assert [e.restore_id for e in h.store.active()] == [rec.id]
    done = h.store.update(h.record().copy(status=Status.FAILED, stage=None, error_code="E", error_message="m"))
    with caplog.at_level(logging.ERROR, logger="restore_core"):
        pipeline.finish(h.deps, done)  # does not raise
    assert h.store.active() == []  # the index row is gone: the watchdog does not retry it forever
    assert any("refused by the queue" in r.getMessage() and rec.id in r.getMessage() for r in caplog.records)


# --- event_id: at-least-once delivery, one stable id per restore outcome --------------------------------------------

class CrashBeforeIndexRemoval(MemoryStateStore):
    """The host dies right after the completion event went out, before the active index row is removed."""

    def __init__(self) -> None:
        super().__init__()
        self.crashes_left = 1

    def remove_active(self, restore_id: str) -> None:
        if self.crashes_left:
            self.crashes_left -= 1
            raise HostKilled(restore_id)
        super().remove_active(restore_id)


class HostKilled(Exception):
    pass


def test_pipeline_publish_and_watchdog_republish_after_a_crash_carry_the_same_event_id() -> None:
    h = Harness(store=CrashBeforeIndexRemoval())
    rec = h.submit()
    h.run(until=Stage.MONITOR)
    h.dp.finish_job(h.dp.only_job().name, "Completed")
    with pytest.raises(HostKilled):
        h.run()  # the monitor's terminal write and its event happened; the index row stayed
    assert h.record(rec.id).status is Status.SUCCEEDED and [e.restore_id for e in h.store.active()] == [rec.id]
    h.clock.advance(h.settings.redrive_slack_seconds + 1)
    watchdog.tick(h.deps)  # finds the terminal row still indexed: publishes the owed event again
    h.collect()
    assert [(e["restore_id"], e["status"]) for e in h.events] == [(rec.id, "succeeded")] * 2  # at least once
    first, second = h.events
    assert first["event_id"] == second["event_id"] == events.event_id(rec.id, "succeeded")
    assert first == second  # the same event, so deduplicating on event_id loses nothing
    assert h.store.active() == []


def test_event_id_is_a_stable_uuid_per_restore_and_outcome() -> None:
    rid = "20261124T080000-0000000001"
    eid = events.event_id(rid, "failed")
    assert str(uuid.UUID(eid)) == eid and uuid.UUID(eid).version == 5
    assert eid == "c00edbd0-6812-5bee-b637-fe0343ddcc68"  # pinned: consumers keep ids across our releases
    assert events.event_id(rid, "failed") == eid
    assert events.event_id(rid, "succeeded") != eid
    assert events.event_id("20261124T080000-0000000002", "failed") != eid
    assert events.completion_event(terminal())["event_id"] == eid


def test_reduced_event_keeps_its_event_id() -> None:
    h = Harness()
    huge_id = "/subscriptions/x/" + "\u00e9" * 9000
    events.publish_completion(h.deps, terminal(target_resource=huge_id, azure_job_id=huge_id))
    [text] = sent_events(h)
    event = json.loads(text)
    assert event["truncated"] is True
    assert event["event_id"] == events.event_id("20261124T080000-0000000001", "failed")
