"""A drill run's completion event (``drill.run.finished`` on the events queue) and its ``drill finished`` log record
(issue 15 item 3): one per run, exactly once in effect — a retried hook, a re-run tick or two ticks at once publish
nothing more; a writer that died before the send is caught up by the timer; a run still restoring past its RTO
target is logged once."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

import pytest

from restore_core import pipeline
from restore_core.drills import completion, evidence, scheduler, store
from restore_core.errors import PermanentError, RetryableError
from restore_core.events import EVENT_MAX_BYTES
from restore_core.models import Status
from restore_core.queues import MemoryQueueSender

from .fakes import BI_ID, Harness
from .test_drills import DRILL_SERVER, finish_restore, harness, started_run


def drill_events(h: Harness) -> list[dict[str, Any]]:
    h.collect()
    return [e for e in h.events if e.get("type") == completion.EVENT_TYPE]


def records(caplog: pytest.LogCaptureFixture, event: str = completion.LOG_EVENT) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == event]


def the_run(h: Harness) -> dict[str, Any]:
    (run,) = store.list_runs(h.deps, "nightly")
    return run


def test_a_finished_run_publishes_one_event_and_logs_one_record_with_its_result(
        caplog: pytest.LogCaptureFixture) -> None:
    h = harness()
    run = started_run(h)
    with caplog.at_level(logging.INFO, logger="restore_core"):
        finish_restore(h, run["restore_id"], Status.SUCCEEDED)
    (event,) = drill_events(h)
    run = the_run(h)
    assert event == {
        "type": "drill.run.finished", "schema_version": 1, "event_id": completion.event_id(run["run_key"]),
        "drill_id": "nightly", "run_key": run["run_key"], "restore_id": run["restore_id"],
        "backup_instance_id": BI_ID, "target_server": DRILL_SERVER, "scheduled_at": "2026-11-24T09:00:00Z",
        "finished_at": run["finished_at"], "manual": False, "late_by_seconds": 0, "passed": True,
        "status": "succeeded", "error_code": None, "rto_seconds": 600.0, "rto_target_seconds": 1800,
        "rto_within_target": True, "rpo_seconds": 6 * 3600.0, "checks_passed": 1, "checks_failed": 0,
        "evidence_blob": run["evidence_blob"], "cleanup_status": "scheduled",
        "recovery_point": {"id": "9da55e757af94261afa009b43cd3222a", "time": event["recovery_point"]["time"],
                           "tier": "vault"},
        "failed_checks": [], "error": None}
    assert run["completion_event"]["id"] == event["event_id"] and run["completion_event"]["published_at"]
    (rec,) = records(caplog)
    assert rec.levelno == logging.INFO and rec.getMessage().startswith("drill finished: nightly run ")
    dims = vars(rec)
    assert dims["drill_outcome"] == "passed" and dims["drill_rto"] == "within" and dims["manual"] == "false"
    for name in ("drill_id", "run_key", "restore_id", "backup_instance_id", "rto_seconds", "rto_target_seconds",
                 "rpo_seconds", "checks_passed", "checks_failed", "evidence_blob", "cleanup_status"):
        assert dims[name] == event[name], name
    assert not [k for k, v in completion.log_fields(run).items() if v is None or isinstance(v, bool)]


def test_a_retried_hook_a_rerun_tick_and_a_second_finish_publish_nothing_more(
        caplog: pytest.LogCaptureFixture) -> None:
    h = harness()
    run = started_run(h, validation_window_minutes=0)
    finish_restore(h, run["restore_id"], Status.SUCCEEDED)
    assert len(drill_events(h)) == 1
    rec = h.store.get(run["restore_id"])
    assert rec is not None
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="restore_core"):
        evidence.record_finish(h.deps, rec)  # the hook again (a redelivered finish)
        evidence.on_restore_finished(h.deps, rec)
        pipeline.finish(h.deps, rec)  # the watchdog's re-publication of the restore's own outcome
        scheduler.tick(h.deps)
        scheduler.tick(h.deps)
    assert len(drill_events(h)) == 1 and records(caplog) == []
    assert [e["type"] for e in h.events].count("restore.completed") == 2  # the restore's event: at least once


def test_a_writer_that_died_after_the_claim_is_caught_up_by_the_timer_once(monkeypatch: pytest.MonkeyPatch) -> None:
    h = harness()
    run = started_run(h, validation_window_minutes=0)
    with monkeypatch.context() as m:
        m.setattr(completion, "announce", lambda deps, r: None)  # the hook's process dies right after its write
        finish_restore(h, run["restore_id"], Status.SUCCEEDED)
    assert drill_events(h) == [] and completion.pending(the_run(h))
    monkeypatch.setattr(scheduler.cleanup, "clean", lambda deps, r: {"status": "done", "dropped": [],
                                                                      "left_unmarked": [], "staged_deleted": 0})
    h.clock.now += timedelta(minutes=1)
    scheduler.tick(h.deps)  # a fresh claim: its writer may still send; the run waits (no clean-up either)
    assert drill_events(h) == [] and the_run(h)["state"] == "validating"
    h.clock.now += completion.CLAIM_STALE_AFTER
    scheduler.tick(h.deps)
    (event,) = drill_events(h)
    assert event["event_id"] == completion.event_id(run["run_key"]) and event["passed"] is True
    assert not completion.pending(the_run(h))
    for _ in range(3):
        h.clock.now += completion.CLAIM_STALE_AFTER
        scheduler.tick(h.deps)
    assert len(drill_events(h)) == 1 and the_run(h)["state"] == "done" and store.open_runs(h.deps) == []


def test_two_ticks_taking_over_the_same_stale_claim_publish_once() -> None:
    h = harness()
    run = started_run(h)
    sends: list[str] = []
    h.deps.queues = MemoryQueueSender()
    h.deps.queues.send = lambda q, t, **kw: sends.append(t)  # type: ignore[method-assign]
    key = run["run_key"]
    found = store.get_run(h.deps, "nightly", key)
    assert found is not None
    claimed = {**found[0], "state": "done", "completion_event": completion.claim(found[0], h.clock.now)}
    etag = store.update_run(h.deps, claimed, found[1])
    assert etag is not None
    h.clock.now += completion.CLAIM_STALE_AFTER
    assert completion.catch_up(h.deps, claimed, etag) and completion.catch_up(h.deps, claimed, etag)
    assert len(sends) == 1 and json.loads(sends[-1])["event_id"] == completion.event_id(key)


class FlakyQueues(MemoryQueueSender):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error: Exception | None = error

    def send(self, queue: str, text: str, *, delay_seconds: float = 0) -> None:
        if queue.endswith("events") and completion.EVENT_TYPE in text and self.error is not None:
            error, self.error = self.error, None
            raise error
        super().send(queue, text, delay_seconds=delay_seconds)


def test_a_send_that_failed_is_published_by_the_timer_and_a_refused_one_is_dropped_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    h = harness()
    h.deps.queues = h.queues = FlakyQueues(RetryableError("queue 503"))
    run = started_run(h)
    finish_restore(h, run["restore_id"], Status.SUCCEEDED)  # does not raise: the restore's bookkeeping goes on
    assert drill_events(h) == [] and completion.pending(the_run(h))
    h.clock.now += completion.CLAIM_STALE_AFTER + timedelta(minutes=10)
    scheduler.tick(h.deps)
    assert len(drill_events(h)) == 1 and not completion.pending(the_run(h))

    h2 = harness()
    h2.deps.queues = h2.queues = FlakyQueues(PermanentError("restore-events refused the message: 413"))
    run = started_run(h2)
    with caplog.at_level(logging.ERROR, logger="restore_core"):
        finish_restore(h2, run["restore_id"], Status.SUCCEEDED)
    assert drill_events(h2) == [] and the_run(h2)["completion_event"]["refused"] is True
    assert any("refused by the queue" in r.getMessage() for r in caplog.records)
    h2.clock.now += completion.CLAIM_STALE_AFTER
    scheduler.tick(h2.deps)
    assert drill_events(h2) == []  # dropped for good, not retried


def test_a_failed_run_over_its_rto_target_says_so_in_its_event_and_an_error_record(
        caplog: pytest.LogCaptureFixture) -> None:
    h = harness()
    run = started_run(h, rto_target_minutes=5)
    with caplog.at_level(logging.INFO, logger="restore_core"):
        finish_restore(h, run["restore_id"], Status.FAILED,
                       verify={"passed": False, "checks": [{"name": "orders", "ok": False, "got": "f",
                                                            "expect": "t"}]})
    (event,) = drill_events(h)
    assert event["passed"] is False and event["status"] == "failed" and event["error_code"] == "VerificationFailed"
    assert event["rto_within_target"] is False and event["rto_seconds"] == 600 and event["rto_target_seconds"] == 300
    assert event["checks_failed"] == 1 and event["checks_passed"] == 0 and event["failed_checks"] == ["orders"]
    (rec,) = records(caplog)
    assert rec.levelno == logging.ERROR
    assert vars(rec)["drill_outcome"] == "failed" and vars(rec)["drill_rto"] == "over"


def test_a_run_that_never_restored_publishes_a_failed_event_and_leaves_the_open_index(
        caplog: pytest.LogCaptureFixture) -> None:
    h = harness()
    h.dp.points.clear()
    with caplog.at_level(logging.INFO, logger="restore_core"):
        run = started_run(h)
    (event,) = drill_events(h)
    assert event["status"] == "not-started" and event["passed"] is False and event["restore_id"] is None
    assert event["rto_seconds"] is None and event["rto_within_target"] is None
    assert "NoRecoveryPoint" in event["error"] and event["error_code"] == "NoRecoveryPoint"
    (rec,) = records(caplog)
    assert rec.levelno == logging.ERROR and vars(rec)["drill_outcome"] == "failed" and vars(rec)["drill_rto"] == ""
    assert run["state"] == "done" and store.open_runs(h.deps) == []
    scheduler.tick(h.deps)
    assert len(drill_events(h)) == 1


def test_the_event_fits_a_queue_message_whatever_the_error_text() -> None:
    run = {"drill_id": "d", "run_key": "d:20261124T090000Z:0123abcd", "error": "é" * 200_000,
           "result": {"passed": False, "status": "not-started", "error_code": "X" * 5000,
                      "checks": [{"name": "n" * 63, "ok": False}] * 20}}
    text = completion.encode_event(run)
    assert len(text.encode()) <= EVENT_MAX_BYTES and json.loads(text)["event_id"] == completion.event_id(run["run_key"])
    assert len(json.loads(text)["failed_checks"]) == 20


def test_a_run_still_restoring_past_its_rto_target_is_logged_over_target_once(
        caplog: pytest.LogCaptureFixture) -> None:
    h = harness()
    run = started_run(h, rto_target_minutes=5)
    with caplog.at_level(logging.INFO, logger="restore_core"):
        h.clock.now += timedelta(minutes=4)
        scheduler.tick(h.deps)
        assert records(caplog, "drill.overrun") == []
        h.clock.now += timedelta(minutes=2)
        scheduler.tick(h.deps)
        h.clock.now += timedelta(minutes=2)
        scheduler.tick(h.deps)
    (rec,) = records(caplog, "drill.overrun")
    assert rec.levelno == logging.ERROR and vars(rec)["drill_rto"] == "over" and vars(rec)["drill_id"] == "nightly"
    assert vars(rec)["restore_id"] == run["restore_id"] and vars(rec)["rto_seconds"] == 360
    assert the_run(h)["state"] == "running" and drill_events(h) == []
