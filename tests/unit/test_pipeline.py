"""Pipeline logic end to end with in-memory twins (store, queues, a fake Data Protection facade, a manual clock):
stages, transitions, exactly-once trigger, retries and errors, deadlines, cancel, completion events."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from azure.mgmt.dataprotection._utils.model_base import SdkJSONEncoder

from restore_core import api, pipeline
from restore_core.config import SettingsError
from restore_core.errors import AzureRejection, RetryableError
from restore_core.messages import Envelope
from restore_core.models import Stage, Status
from restore_core.queues import SentMessage
from restore_core.stages import registry

from .fakes import (
    ARCHIVE_POINT,
    BI_ID,
    PRINCIPAL_ID,
    SUB2,
    T0,
    TARGET_SERVER_ID,
    VAULT_POINT,
    Harness,
    database_body,
    files_body,
    settings,
    stage_by_stage,
)


@pytest.fixture(autouse=True)
def no_sleeping(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Waiting is a delayed message, never a sleep inside a function."""

    def refuse(seconds: float) -> None:
        raise AssertionError(f"pipeline slept {seconds}s")

    monkeypatch.setattr(time, "sleep", refuse)
    yield


@pytest.fixture
def h() -> Harness:
    return Harness()


@pytest.fixture
def hs() -> Harness:
    """Stage by stage: the trigger runs from its own message (the safety-net / redelivery path)."""
    return Harness(settings=stage_by_stage())


@pytest.fixture
def h2() -> Harness:
    """The stand-alone rehydrate-then-restore flow."""
    return Harness(settings=settings(RESTORE_REHYDRATION_FLOW="two-step"))


def wire(obj: Any) -> dict[str, Any]:
    return json.loads(json.dumps(obj, cls=SdkJSONEncoder, exclude_readonly=True))


def only(msgs: list[SentMessage]) -> SentMessage:
    assert len(msgs) == 1, msgs
    return msgs[0]


def envelope(msg: SentMessage) -> Envelope:
    return Envelope.decode(msg.text)


def test_validate_trigger_monitor_happy_path_stage_by_stage(hs: Harness) -> None:
    h = hs
    rec = h.submit()
    assert rec.status is Status.ACCEPTED and h.stages_of(h.pending) == [Stage.VALIDATE]

    _, sent = h.step()
    rec = h.record()
    assert (rec.status, rec.stage, rec.attempt) == (Status.RESTORING, Stage.TRIGGER, 2)
    assert rec.recovery_point_id == VAULT_POINT and rec.tier == "vault" and rec.restore_location == "westeurope"
    assert h.stages_of(sent) == [Stage.TRIGGER] and sent[0].delay_seconds == 0
    assert len(h.dp.validations) == 1 and h.dp.trigger_calls == 0

    _, sent = h.step()
    rec = h.record()
    job = h.dp.only_job()
    assert (rec.status, rec.stage, rec.azure_job_id) == (Status.RESTORING, Stage.MONITOR, job.id)
    assert rec.trigger_intent_at == T0
    assert h.stages_of(sent) == [Stage.MONITOR]

    _, sent = h.step()
    assert h.stages_of(sent) == [Stage.MONITOR] and sent[0].delay_seconds > 0  # still running: look again later
    assert h.record().job_status == "InProgress" and h.events == []

    h.dp.finish_job(job.name, "Completed")
    rec = h.run()
    assert rec.status is Status.SUCCEEDED and rec.stage is None and rec.job_status == "Completed"
    assert h.dp.trigger_calls == 1
    assert h.store.active() == []
    assert [e["status"] for e in h.events] == ["succeeded"]
    event = h.events[0]
    assert event["type"] == "restore.completed" and event["succeeded"] is True
    assert event["restore_id"] == rec.id and event["azure_job_id"] == job.id and event["error"] is None
    assert "secret" not in json.dumps(event).lower()
    statuses = [e.status for e in h.store.timeline(rec.id)]
    assert statuses[0] == "accepted" and statuses[-1] == "succeeded"


def test_validate_runs_the_trigger_inline_and_its_message_is_a_delayed_safety_net(h: Harness) -> None:
    rec = h.submit()
    _, sent = h.step()  # one invocation: validate, then the trigger (no queue hop between them)
    rec = h.record()
    job = h.dp.only_job()
    assert (rec.status, rec.stage, rec.attempt, rec.azure_job_id) == (Status.RESTORING, Stage.MONITOR, 3, job.id)
    assert len(h.dp.validations) == 1 and h.dp.trigger_calls == 1
    assert h.stages_of(sent) == [Stage.TRIGGER, Stage.MONITOR]
    safety = sent[0]
    assert safety.delay_seconds == h.settings.inline_safety_net_seconds
    assert Envelope.decode(safety.text, Stage.TRIGGER).attempt == 2  # the attempt the trigger ran as
    assert {"validate", "trigger"} <= {k for k, v in rec.stage_times.items() if v.get("finished")}
    messages = [e.message for e in h.store.timeline(rec.id)]
    assert any(m.startswith("validated") for m in messages) and any(m.startswith("restore triggered")
                                                                     for m in messages)

    calls = dict(h.dp.calls)
    assert h.next_message() is safety
    assert h.deliver(safety) == []  # stale: dropped after one row read, nothing asked of Azure
    assert h.dp.calls == calls and h.record() == rec

    h.dp.finish_job(job.name, "Completed")
    assert h.run().status is Status.SUCCEEDED and h.dp.trigger_calls == 1


def test_a_crash_in_the_inline_trigger_is_not_raised_and_its_safety_net_adopts_the_job(h: Harness) -> None:
    h.submit()
    h.dp.fail_after["trigger_restore"] = [RuntimeError("worker died after the trigger")]
    _, sent = h.step()  # validate's own message is done: the crash is the safety net's to finish, not a redelivery
    rec = h.record()
    assert (rec.stage, rec.azure_job_id) == (Stage.TRIGGER, None) and rec.trigger_intent_at is not None
    assert h.stages_of(sent) == [Stage.TRIGGER] and sent[0].delay_seconds == h.settings.inline_safety_net_seconds
    h.step()  # the safety net, a grace period later: adopts the job the inline run started
    rec = h.record()
    assert rec.azure_job_id == h.dp.only_job().id and rec.stage is Stage.MONITOR
    assert any("adopted" in e.message for e in h.store.timeline(rec.id))
    h.dp.finish_job(h.dp.only_job().name, "Completed")
    assert h.run().status is Status.SUCCEEDED and h.dp.trigger_calls == 1


def test_a_lost_inline_trigger_answer_is_looked_for_again_and_the_safety_net_is_stale(h: Harness) -> None:
    h.submit()
    h.dp.fail_after["trigger_restore"] = [RetryableError("connection reset while reading the answer")]
    _, sent = h.step()
    rec = h.record()
    assert (rec.stage, rec.attempt, rec.azure_job_id) == (Stage.TRIGGER, 3, None)
    assert h.stages_of(sent) == [Stage.TRIGGER, Stage.TRIGGER]
    safety, again = sent
    assert Envelope.decode(safety.text, Stage.TRIGGER).attempt == 2 and again.delay_seconds < safety.delay_seconds
    h.pending.remove(again)
    assert h.deliver(safety) == [] and h.record() == rec  # stale: the inline run moved the restore on
    h.clock.advance(again.delay_seconds)
    h.deliver(again)
    assert h.record().azure_job_id == h.dp.only_job().id and h.dp.trigger_calls == 1


def test_an_archived_point_is_not_triggered_inline_from_validate(h: Harness) -> None:
    h.dp.add_archive_point()
    h.submit()
    _, sent = h.step()
    assert h.stages_of(sent) == [Stage.REHYDRATE] and sent[0].delay_seconds == 0 and h.dp.trigger_calls == 0


def test_only_a_due_move_into_an_inline_function_stage_continues_inline() -> None:
    assert registry.continues_inline(Stage.VALIDATE, Stage.TRIGGER, 0)
    assert registry.continues_inline(Stage.WAIT, Stage.TRIGGER, 0)
    assert not registry.continues_inline(Stage.VALIDATE, Stage.TRIGGER, 5)  # not due yet: a delayed message
    assert not registry.continues_inline(Stage.TRIGGER, Stage.TRIGGER, 0)  # a re-check of the same stage
    assert not registry.continues_inline(Stage.TRIGGER, Stage.MONITOR, 0)
    assert not registry.continues_inline(Stage.VALIDATE, Stage.REHYDRATE, 0)
    assert not registry.continues_inline(Stage.MONITOR, None, 0)
    assert [s.stage for s in registry.REGISTRY if s.inline] == [Stage.TRIGGER]
    assert all(s.consumer == "function" for s in registry.REGISTRY if s.inline)


def test_the_safety_net_comes_after_the_trigger_grace_and_after_a_redelivery_would() -> None:
    assert settings(RESTORE_TRIGGER_GRACE_SECONDS="660", RESTORE_MESSAGE_IN_FLIGHT_SECONDS="600") \
        .inline_safety_net_seconds == 660
    # a benchmark's scaled grace (660 s / 3600) is shorter than an invocation runs: the in-flight time bounds it
    assert settings(RESTORE_TRIGGER_GRACE_SECONDS="0.18", RESTORE_MESSAGE_IN_FLIGHT_SECONDS="600") \
        .inline_safety_net_seconds == 600


def test_continue_inline_setting_is_true_or_false_and_says_so() -> None:
    assert settings().continue_inline is True and stage_by_stage().continue_inline is False
    with pytest.raises(SettingsError, match="RESTORE_CONTINUE_INLINE='yes please'; choose true"):
        settings(RESTORE_CONTINUE_INLINE="yes please")


def test_files_restore_triggers_with_files_target(h: Harness) -> None:
    h.submit(files_body())
    h.run(until=Stage.MONITOR)
    assert wire(h.dp.triggers[0])["restoreTargetInfo"]["objectType"] == "RestoreFilesTargetInfo"
    assert h.record().target_kind == "files"


def test_archive_point_goes_rehydrate_wait_then_trigger_with_growing_delays(h2: Harness) -> None:
    h = h2
    h.dp.add_archive_point()
    h.submit(database_body(rehydration={"priority": "High", "retention_days": 20}))

    h.step()
    rec = h.record()
    assert (rec.status, rec.stage, rec.tier, rec.recovery_point_id) == (Status.REHYDRATING, Stage.REHYDRATE,
                                                                        "archive", ARCHIVE_POINT)
    validated = wire(h.dp.validations[0])["restoreRequestObject"]
    assert validated["objectType"] == "AzureBackupRestoreWithRehydrationRequest"
    assert validated["rehydrationPriority"] == "High" and validated["rehydrationRetentionDuration"] == "P20D"

    _, sent = h.step()
    assert h.stages_of(sent) == [Stage.WAIT] and h.record().status is Status.WAITING
    assert [wire(r) for r in h.dp.rehydrations] == [{"recoveryPointId": ARCHIVE_POINT, "rehydrationPriority": "High",
                                                     "rehydrationRetentionDuration": "P20D"}]

    delays = []
    for _ in range(4):
        _, sent = h.step()
        msg = only(sent)
        assert h.stages_of([msg]) == [Stage.WAIT]
        delays.append(msg.delay_seconds)
    assert delays == sorted(delays) and delays[0] < delays[-1]
    assert delays[-1] <= h.settings.poll_max_seconds
    assert h.record().next_check_at is not None and h.record().next_check_at > h.clock()  # type: ignore[operator]
    assert h.dp.calls["trigger_rehydrate"] == 1 and h.dp.trigger_calls == 0

    h.dp.complete_rehydration(ARCHIVE_POINT, T0 + timedelta(days=20))
    _, sent = h.step()  # the wait invocation runs the trigger inline; the trigger's message is the safety net
    assert h.stages_of(sent) == [Stage.TRIGGER, Stage.MONITOR] and h.record().status is Status.RESTORING
    assert sent[0].delay_seconds == h.settings.inline_safety_net_seconds and h.dp.trigger_calls == 1
    assert wire(h.dp.triggers[0])["sourceDataStoreType"] == "ArchiveStore"
    assert wire(h.dp.triggers[0])["recoveryPointId"] == ARCHIVE_POINT


def test_already_rehydrated_point_skips_rehydration(h: Harness) -> None:
    h.dp.add_archive_point(rehydration_status="COMPLETED", expiry=T0 + timedelta(days=10))
    h.submit()
    _, sent = h.step()
    assert h.stages_of(sent) == [Stage.TRIGGER, Stage.MONITOR]  # triggered inline, the safety net, the first check
    assert h.dp.calls["trigger_rehydrate"] == 0 and h.dp.trigger_calls == 1


def _deliver_everything_twice(h: Harness) -> None:
    for _ in range(40):
        if not h.pending:
            return
        msg, _ = h.step()
        before = h.store.get(h.last_id or "")
        sent = h.deliver(msg)  # the same message again (at-least-once delivery)
        assert sent == [], f"duplicate {msg} sent {sent}"
        assert h.store.get(h.last_id or "") == before
    raise AssertionError("pipeline did not finish")


def test_duplicate_delivery_of_every_stage_message_changes_nothing_and_triggers_once(h2: Harness) -> None:
    h = h2
    h.dp.add_archive_point()
    h.submit()
    for _ in range(3):
        msg, _ = h.step()
        h.deliver(msg)
    job_done = {"n": 0}

    def finish_when_triggered() -> None:
        if h.dp.jobs and not job_done["n"]:
            h.dp.finish_job(h.dp.only_job().name, "Completed")
            job_done["n"] = 1

    h.dp.complete_rehydration(ARCHIVE_POINT, T0 + timedelta(days=20))
    h.dp.on_call["get_job"] = finish_when_triggered
    _deliver_everything_twice(h)
    rec = h.record()
    assert rec.status is Status.SUCCEEDED
    assert h.dp.trigger_calls == 1 and h.dp.calls["trigger_rehydrate"] == 1 and h.dp.calls["validate_restore"] == 1
    assert len(h.events) == 1
    visited = {stage for stage, _ in h.delivered}
    # the server-target stages (inventory, replay, verify) run only for target kind server: their duplicate
    # deliveries are covered in tests/integration/test_server_restore.py
    assert visited == set(Stage) - {Stage.INVENTORY, Stage.REPLAY, Stage.VERIFY}


def test_message_with_a_stale_attempt_is_ignored(h: Harness) -> None:
    rec = h.submit()
    h.step()
    stale = SentMessage("restore-trigger", Envelope(rec.id, Stage.TRIGGER, 1, None, T0).encode(), 0)
    wrong_stage = SentMessage("restore-monitor", Envelope(rec.id, Stage.MONITOR, 2, None, T0).encode(), 0)
    before = h.record()
    calls = sum(h.dp.calls.values())
    assert h.deliver(stale) == [] and h.deliver(wrong_stage) == []
    assert h.record() == before and sum(h.dp.calls.values()) == calls


def test_malformed_or_unknown_messages_are_dropped(h: Harness) -> None:
    h.submit()
    before = h.record()
    assert h.deliver(SentMessage("restore-validate", "{not json", 0)) == []
    unknown = Envelope("20261124T080000-ffffffffff", Stage.VALIDATE, 1, None, T0).encode()
    assert h.deliver(SentMessage("restore-validate", unknown, 0)) == []
    assert h.record() == before and sum(h.dp.calls.values()) == 0


def test_crash_between_trigger_and_state_write_adopts_the_job_on_redelivery(hs: Harness) -> None:
    h = hs
    h.submit()
    h.step()
    msg = h.next_message()
    h.dp.fail_after["trigger_restore"] = [RuntimeError("worker died after the trigger")]
    with pytest.raises(RuntimeError):
        h.deliver(msg, dequeue_count=1)
    rec = h.record()
    assert rec.trigger_intent_at is not None and rec.azure_job_id is None and rec.stage is Stage.TRIGGER
    assert h.pending == []

    h.clock.advance(5)
    sent = h.deliver(msg, dequeue_count=2)  # the queue redelivers the same message
    rec = h.record()
    assert h.dp.trigger_calls == 1
    assert rec.azure_job_id == h.dp.only_job().id and rec.stage is Stage.MONITOR
    assert h.stages_of(sent) == [Stage.MONITOR]
    assert any("adopted" in e.message for e in h.store.timeline(rec.id))


def test_lost_trigger_answer_looks_for_the_job_then_adopts_it(hs: Harness) -> None:
    h = hs
    h.submit()
    h.step()
    h.dp.fail_after["trigger_restore"] = [RetryableError("connection reset while reading the answer")]
    _, sent = h.step()  # no exception: the answer is lost, the job may exist
    msg = only(sent)
    assert h.stages_of([msg]) == [Stage.TRIGGER] and msg.delay_seconds == h.settings.poll_min_seconds
    assert h.record().azure_job_id is None

    _, sent = h.step()
    assert h.dp.trigger_calls == 1
    assert h.record().azure_job_id == h.dp.only_job().id
    assert h.stages_of(sent) == [Stage.MONITOR]


def test_trigger_whose_outcome_stays_unknown_is_never_sent_again_and_asks_an_operator(hs: Harness) -> None:
    h = hs
    h.submit()
    h.step()
    h.dp.fail_before["trigger_restore"] = [RetryableError("connection reset; did ARM get it?")]
    h.step()
    assert h.dp.jobs == {}
    waited = 0.0
    while h.pending:
        msg, _ = h.step()
        waited += msg.delay_seconds
        assert h.stage_of[msg.queue] is Stage.TRIGGER
    rec = h.record()
    assert waited >= h.settings.trigger_grace_seconds
    assert h.dp.trigger_calls == 1, "never a second trigger when unsure"
    assert rec.status is Status.FAILED and rec.error_code == "TriggerOutcomeUnknown"
    assert "new idempotency key" in (rec.error_fix or "") and "no Azure job" in (rec.error_message or "")


def test_duplicate_arriving_while_trigger_is_in_flight_does_not_trigger_again(h: Harness) -> None:
    h.submit()
    h.step()
    msg = h.next_message()
    h.dp.on_call["trigger_restore"] = lambda: h.deliver(msg)  # a second delivery runs during the ARM call
    h.deliver(msg)
    h.run(until=Stage.MONITOR)
    rec = h.record()
    assert h.dp.trigger_calls == 1
    assert rec.azure_job_id == h.dp.only_job().id and rec.stage is Stage.MONITOR


def test_throttling_resends_the_same_stage_with_retry_after_and_no_exception(hs: Harness) -> None:
    h = hs
    h.submit()
    h.dp.fail_before["get_backup_instance"] = [RetryableError("throttled by ARM", retry_after=37)]
    _, sent = h.step()
    msg = only(sent)
    assert h.stage_of[msg.queue] is Stage.VALIDATE and msg.delay_seconds == 37
    rec = h.record()
    assert rec.stage is Stage.VALIDATE and rec.transient_failures == 1 and not rec.terminal
    h.step()
    assert h.record().stage is Stage.TRIGGER


def test_arm_throttling_past_the_resend_cap_is_still_resent_with_a_growing_delay_never_failed(h: Harness) -> None:
    """Three hosts sharing one ARM budget throttled validate past the cap and 19 of 30 restores failed
    StageRetriesExhausted (chaos throughput run): a 429 must wait, never fail the restore before its deadline."""
    h.submit()
    msg = h.next_message()
    h.store.update(h.record().copy(transient_failures=pipeline.MAX_THROTTLED_REQUEUES + 3))
    h.dp.fail_before["get_backup_instance"] = [RetryableError("throttled by ARM", retry_after=1, throttled=True)] * 2
    first = only(h.deliver(msg, dequeue_count=h.settings.max_dequeue_count))  # no exception, even on the last one
    assert h.stage_of[first.queue] is Stage.VALIDATE and not h.record().terminal
    assert first.delay_seconds >= h.settings.poll_max_seconds  # grown to the cap: no retrying in step with others
    assert h.record().transient_failures == pipeline.MAX_THROTTLED_REQUEUES + 4
    h.deliver(only(h.deliver(first, dequeue_count=1)), dequeue_count=1)
    assert h.record().status is Status.RESTORING


def test_throttled_resends_wait_at_least_retry_after_and_spread_with_jitter(h: Harness) -> None:
    h.submit()
    rec = h.record().copy(transient_failures=2)
    delays = set()
    for _ in range(20):
        result = pipeline._throttled(RetryableError("throttled", retry_after=0.5, throttled=True), rec, h.deps)
        assert result is not None and result.delay is not None
        assert result.delay >= max(0.5, h.settings.poll_min_seconds * 4)
        delays.add(round(result.delay, 6))
    assert len(delays) > 1  # jitter: hosts sharing a budget do not come back at the same instant


def test_throttled_monitor_check_is_resent_to_monitor(h: Harness) -> None:
    h.submit()
    h.run(until=Stage.MONITOR)
    h.dp.fail_before["get_job"] = [RetryableError("throttled", retry_after=90)]
    _, sent = h.step()
    assert h.stages_of(sent) == [Stage.MONITOR] and sent[0].delay_seconds == 90


def test_retryable_error_is_resent_with_a_growing_delay_and_spends_no_queue_delivery(h: Harness) -> None:
    h.submit()
    msg = h.next_message()
    h.dp.fail_before["get_backup_instance"] = [RetryableError("ARM answered 500"), RetryableError("again")]
    sent = h.deliver(msg, dequeue_count=1)  # no exception: the queue's deliveries are kept for crashes
    first = only(sent)
    assert h.stage_of[first.queue] is Stage.VALIDATE and first.delay_seconds >= h.settings.poll_min_seconds
    assert h.record().transient_failures == 1 and h.events == []
    second = only(h.deliver(first, dequeue_count=1))
    assert second.delay_seconds > first.delay_seconds  # growing
    h.deliver(second, dequeue_count=1)  # the next attempt goes on from there
    assert h.record().status is Status.RESTORING


def test_retryable_error_on_the_last_delivery_marks_the_restore_failed_before_raising(h: Harness) -> None:
    h.submit()
    h.run(until=Stage.MONITOR)
    msg = h.next_message()
    h.store.update(h.record().copy(transient_failures=pipeline.MAX_THROTTLED_REQUEUES))  # re-sends used up
    h.dp.fail_before["get_job"] = [RetryableError("ARM answered 500")]
    with pytest.raises(RetryableError):
        h.deliver(msg, dequeue_count=h.settings.max_dequeue_count)
    rec = h.record()
    assert rec.status is Status.FAILED and rec.error_code == "StageRetriesExhausted"
    assert "ARM answered 500" in (rec.error_message or "") and "poison" in (rec.error_fix or "")
    assert [e["status"] for e in h.events] == ["failed"]
    assert h.pending == [] and h.store.active() == []


def test_unexpected_exception_on_the_last_delivery_is_recorded_too(h: Harness) -> None:
    h.submit()
    h.dp.fail_before["get_backup_instance"] = [KeyError("bug")]
    with pytest.raises(KeyError):
        h.deliver(h.next_message(), dequeue_count=h.settings.max_dequeue_count)
    rec = h.record()
    assert rec.status is Status.FAILED and "KeyError" in (rec.error_message or "")


def test_deadline_passed_fails_without_calling_azure(h: Harness) -> None:
    h.submit(database_body(deadline_hours=1))
    h.clock.advance(3601)
    h.step()
    rec = h.record()
    assert rec.status is Status.FAILED and rec.error_code == "DeadlineExceeded"
    assert "deadline_hours" in (rec.error_fix or "")
    assert sum(h.dp.calls.values()) == 0
    assert [e["error"]["code"] for e in h.events] == ["DeadlineExceeded"]


def test_deadline_passed_while_monitoring_says_the_job_may_still_run(h: Harness) -> None:
    h.submit(database_body(deadline_hours=1))
    h.run(until=Stage.MONITOR)
    h.clock.advance(7200)
    h.step()
    rec = h.record()
    assert rec.status is Status.FAILED and rec.error_code == "DeadlineExceeded"
    assert rec.azure_job_id and rec.azure_job_id in (rec.error_message or "")


def test_azure_rejection_in_validate_rejects_with_the_exact_fix(h: Harness) -> None:
    h.submit()
    h.dp.fail_after["validate_restore"] = [AzureRejection("UserErrorMSIMissingPermissions", "MSI lacks Reader")]
    h.step()
    rec = h.record()
    assert rec.status is Status.REJECTED and rec.error_code == "UserErrorMSIMissingPermissions"
    assert rec.error_fix == (f"az role assignment create --assignee-object-id {PRINCIPAL_ID} --assignee-principal-type "
                             f'ServicePrincipal --role "Reader" --scope {TARGET_SERVER_ID} --subscription {SUB2}')
    assert h.pending == [] and h.dp.trigger_calls == 0
    assert h.events[0]["status"] == "rejected" and h.events[0]["error"]["fix"] == rec.error_fix


def test_unknown_backup_instance_is_rejected_not_retried(h: Harness) -> None:
    h.submit(database_body(backup_instance={"id": BI_ID + "-gone"}))
    h.step()
    rec = h.record()
    assert rec.status is Status.REJECTED and rec.error_code == "ResourceNotFound" and rec.error_fix


def test_restore_onto_the_source_database_is_rejected_before_asking_azure(h: Harness) -> None:
    body = database_body()
    h.dp.instances[0] = h.dp.instances[0].__class__(
        **{**h.dp.instances[0].__dict__, "datasource_id": f"{TARGET_SERVER_ID}/databases/salesdb_restored"})
    h.submit(body)
    h.step()
    assert h.record().error_code == "RestoreToSourceNotAllowed" and h.dp.validations == []


def test_azure_rejection_after_validate_fails_the_restore(hs: Harness) -> None:
    h = hs
    h.submit()
    h.step()
    h.dp.fail_before["trigger_restore"] = [AzureRejection("UserErrorDatabaseNameAlreadyInUse", "exists")]
    h.step()
    rec = h.record()
    assert rec.status is Status.FAILED and rec.error_code == "UserErrorDatabaseNameAlreadyInUse"
    assert "database_name" in (rec.error_fix or "")


def test_cancel_before_trigger_cancels_and_publishes_completion(h: Harness) -> None:
    rec = h.submit()
    resp = api.cancel(rec.id, deps=h.deps)
    h.collect()
    assert resp.status == 200 and resp.body["status"] == "cancelled"
    assert resp.body["error"]["code"] == "CancelledByOperator"
    assert [e["status"] for e in h.events] == ["cancelled"]
    h.run()  # the validate message already on the queue is now stale
    assert sum(h.dp.calls.values()) == 0 and h.record().status is Status.CANCELLED
    assert h.store.active() == []


def test_cancel_while_waiting_for_rehydration_is_allowed(h2: Harness) -> None:
    h = h2
    h.dp.add_archive_point()
    rec = h.submit()
    h.run(until=Stage.WAIT)
    h.step()
    assert api.cancel(rec.id, deps=h.deps).status == 200


def test_cancel_after_trigger_is_409_and_changes_nothing(h: Harness) -> None:
    rec = h.submit()
    h.run(until=Stage.MONITOR)
    before = h.record()
    resp = api.cancel(rec.id, deps=h.deps)
    assert resp.status == 409 and resp.body["error"]["code"] == "RestoreJobNotCancellable"
    assert h.dp.only_job().name in resp.body["error"]["message"]
    assert h.record() == before


def test_cancel_after_the_trigger_claim_but_before_the_job_id_is_409(hs: Harness) -> None:
    h = hs
    rec = h.submit()
    h.step()
    h.dp.fail_after["trigger_restore"] = [RuntimeError("crash")]
    with pytest.raises(RuntimeError):
        h.step()
    assert api.cancel(rec.id, deps=h.deps).status == 409


def test_cancel_of_a_finished_restore_is_409(h: Harness) -> None:
    rec = h.submit()
    h.dp.fail_after["validate_restore"] = [AzureRejection("UserErrorInvalidSecret", "no secret")]
    h.step()
    resp = api.cancel(rec.id, deps=h.deps)
    assert resp.status == 409 and resp.body["error"]["code"] == "RestoreAlreadyFinished"


def test_failed_job_records_azure_error_and_publishes_failure(h: Harness) -> None:
    h.submit()
    h.run(until=Stage.MONITOR)
    h.dp.finish_job(h.dp.only_job().name, "Failed", errors=[
        {"code": "UserErrorDBUserAuthFailed", "message": "password authentication failed",
         "recommended_action": ["Update the secret"]}])
    rec = h.run()
    assert rec.status is Status.FAILED and rec.error_code == "UserErrorDBUserAuthFailed"
    # explained as validation errors are (fixes.explain), Azure's recommended action kept beside the fix
    assert rec.error_message == ("the credentials in the Key Vault secret were refused by the target server "
                                 "(password authentication failed)")
    assert rec.error_fix == ("update the secret with a valid connection string for a user with CREATEDB and "
                             "azure_pg_admin (Azure recommends: Update the secret)")
    assert len(h.events) == 1 and h.events[0]["succeeded"] is False
    assert h.events[0]["error"]["code"] == "UserErrorDBUserAuthFailed"


def test_job_with_warnings_succeeds_and_keeps_the_warnings(h: Harness) -> None:
    h.submit()
    h.run(until=Stage.MONITOR)
    warnings = [{"resource": "salesdb", "code": "W1", "message": "extension skipped"}]
    h.dp.finish_job(h.dp.only_job().name, "CompletedWithWarnings", warnings=warnings)
    rec = h.run()
    assert rec.status is Status.SUCCEEDED and rec.warnings == warnings and h.events[0]["warnings"] == warnings


def test_job_cancelled_in_azure_ends_failed(h: Harness) -> None:
    h.submit()
    h.run(until=Stage.MONITOR)
    h.dp.finish_job(h.dp.only_job().name, "Cancelled")
    rec = h.run()
    assert rec.status is Status.FAILED and rec.error_code == "JobCancelled"


def test_secondary_region_restore_uses_cross_region_calls(h: Harness) -> None:
    h.submit(database_body(region="secondary"))
    h.run(until=Stage.MONITOR)
    rec = h.record()
    assert rec.restore_location == "northeurope" and h.dp.calls["trigger_cross_region_restore"] == 1
    assert wire(h.dp.triggers[0])["crossRegionRestoreDetails"] == {"sourceRegion": "westeurope",
                                                                   "sourceBackupInstanceId": BI_ID}
    h.dp.finish_job(h.dp.only_job().name, "Completed")
    assert h.run().status is Status.SUCCEEDED
    assert h.dp.calls["fetch_cross_region_job"] >= 1 and h.dp.calls["get_job"] == 0


def test_secondary_region_needs_cross_region_restore_enabled(h: Harness) -> None:
    h.dp.vault = h.dp.vault.__class__(**{**h.dp.vault.__dict__, "crr_enabled": False})
    h.submit(database_body(region="secondary"))
    h.step()
    rec = h.record()
    assert rec.status is Status.REJECTED and rec.error_code == "CrossRegionRestoreNotEnabled"
    assert "--cross-region-restore-state Enabled" in (rec.error_fix or "")


def test_throttled_trigger_is_resent_after_retry_after(hs: Harness) -> None:
    h = hs
    h.submit()
    h.step()
    h.dp.fail_before["trigger_restore"] = [RetryableError("throttled by ARM", retry_after=120)]
    _, sent = h.step()
    msg = only(sent)
    assert h.stage_of[msg.queue] is Stage.TRIGGER
    assert msg.delay_seconds >= 120


def test_first_job_check_lands_at_the_learned_duration_and_one_read_suffices(h: Harness) -> None:
    # first restore: no history, the monitor backs off from the minimum interval
    h.submit()
    h.run(until=Stage.MONITOR)
    first_delay = h.pending[0].delay_seconds
    assert first_delay == h.settings.poll_min_seconds
    h.clock.advance(600)
    h.dp.finish_job(h.dp.only_job().name, "Completed")
    h.run()
    learned = h.record().updated_at - h.record().triggered_at  # type: ignore[operator]
    # second restore of the same instance: the first monitor message waits for the learned duration
    h.submit(database_body(target={**database_body()["target"], "database_name": "second_db"}))
    h.run(until=Stage.MONITOR)
    msg = h.pending[0]
    assert abs(msg.delay_seconds - learned.total_seconds()) < 1.0
    reads_before = h.dp.calls["get_job"]
    h.clock.advance(msg.delay_seconds)
    for job in h.dp.jobs.values():
        if job.status == "InProgress":
            h.dp.finish_job(job.name, "Completed")
    h.run()
    assert h.record().status is Status.SUCCEEDED
    assert h.dp.calls["get_job"] - reads_before == 1
