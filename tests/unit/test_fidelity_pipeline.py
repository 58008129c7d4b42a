"""Pipeline decisions where Azure's behaviour is unspecified or odd (in-memory twins): the one-request archive restore,
job adoption on what Azure specifies, job reads that fail transiently, and the last check at the deadline."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from azure.mgmt.dataprotection._utils.model_base import SdkJSONEncoder

from restore_core import api
from restore_core.dp_client import JobInfo
from restore_core.errors import AzureRejection, RetryableError
from restore_core.models import Stage, Status

from .fakes import ARCHIVE_POINT, VAULT_ID, Harness, database_body, stage_by_stage


@pytest.fixture
def h() -> Harness:
    return Harness()


@pytest.fixture
def hs() -> Harness:
    """Stage by stage (``RESTORE_CONTINUE_INLINE=false``): a lost trigger answer, then the trigger's own deliveries
    (the path of the inline trigger's safety-net message) adopt or stop."""
    return Harness(settings=stage_by_stage())


def wire(obj: Any) -> dict[str, Any]:
    return json.loads(json.dumps(obj, cls=SdkJSONEncoder, exclude_readonly=True))


def to_wait(h: Harness, **body: Any) -> str:
    h.dp.add_archive_point()
    h.submit(database_body(**body))
    h.run(until=Stage.WAIT)
    return h.dp.only_job().name


# --- one-request archive restore (the default flow)


def test_archive_point_is_restored_with_one_request_and_followed_through_both_phases(h: Harness) -> None:
    name = to_wait(h, rehydration={"retention_days": 20})
    rec = h.record()
    assert (rec.status, rec.azure_job_id) == (Status.WAITING, h.dp.only_job().id)
    assert h.dp.calls["trigger_rehydrate"] == 0 and h.dp.trigger_calls == 1
    sent = wire(h.dp.triggers[0])
    assert sent["objectType"] == "AzureBackupRestoreWithRehydrationRequest"
    assert (sent["sourceDataStoreType"], sent["rehydrationPriority"], sent["rehydrationRetentionDuration"]) == (
        "ArchiveStore", "Standard", "P20D")
    h.step()
    assert h.record().stage is Stage.WAIT  # still rehydrating
    h.dp.finish_rehydration_phase(name)
    h.step()
    assert (h.record().status, h.record().stage) == (Status.RESTORING, Stage.MONITOR)
    h.dp.finish_job(name, "Completed")
    rec = h.run()
    assert rec.status is Status.SUCCEEDED and h.dp.trigger_calls == 1
    assert {"rehydrate", "wait", "monitor"} <= set(rec.stage_times) and "trigger" not in rec.stage_times


def test_a_job_that_never_reports_its_rehydration_phase_still_ends_from_wait(h: Harness) -> None:
    name = to_wait(h)
    h.step()
    h.dp.finish_job(name, "Completed")
    rec = h.run()
    assert rec.status is Status.SUCCEEDED and "monitor" not in rec.stage_times


def test_a_one_request_job_that_fails_while_rehydrating_fails_the_restore_with_azures_error(h: Harness) -> None:
    name = to_wait(h)
    h.dp.finish_job(name, "Failed", errors=[{"code": "UserErrorRehydrationFailed", "message": "no",
                                             "recommended_action": ["retry later"]}])
    rec = h.run()
    assert (rec.status, rec.error_code, rec.error_fix) == (Status.FAILED, "UserErrorRehydrationFailed",
                                                           "retry later")


def test_every_message_of_a_one_request_restore_delivered_twice_starts_one_job(h: Harness) -> None:
    h.dp.add_archive_point()
    h.submit()
    for _ in range(30):
        if not h.pending:
            break
        msg, _ = h.step()
        assert h.deliver(msg) == []  # the duplicate sends nothing
        if h.dp.jobs and h.record().stage is Stage.WAIT:
            h.dp.finish_job(h.dp.only_job().name, "Completed")
    assert h.record().status is Status.SUCCEEDED and h.dp.trigger_calls == 1 and len(h.events) == 1


def test_a_lost_answer_to_the_one_request_restore_adopts_its_job(h: Harness) -> None:
    h.dp.add_archive_point()
    h.submit()
    h.step()  # validate
    h.dp.fail_after["trigger_restore"] = [RetryableError("connection reset while reading the answer")]
    h.step()  # rehydrate: answer lost
    assert h.record().azure_job_id is None
    h.step()
    assert h.record().azure_job_id == h.dp.only_job().id and h.record().stage is Stage.WAIT
    assert h.dp.trigger_calls == 1


def test_a_one_request_restore_waiting_on_its_job_cannot_be_cancelled(h: Harness) -> None:
    to_wait(h)
    assert api.cancel(h.record().id, deps=h.deps).status == 409


def test_a_rehydration_already_running_is_waited_for_not_paid_again(h: Harness) -> None:
    h.dp.add_archive_point(rehydration_status="CREATE_IN_PROGRESS")
    h.submit()
    h.run(until=Stage.WAIT)
    h.step()
    assert h.dp.trigger_calls == 0 and h.dp.calls["trigger_rehydrate"] == 0
    h.dp.complete_rehydration(ARCHIVE_POINT, h.clock() + timedelta(days=10))
    h.step()  # the wait sees it rehydrated and runs the trigger inline
    assert h.record().stage is Stage.MONITOR and h.dp.trigger_calls == 1 and h.dp.calls["trigger_rehydrate"] == 0


def test_high_priority_is_sent_with_a_warning_that_azure_may_refuse_it(h: Harness) -> None:
    to_wait(h, rehydration={"priority": "High"})
    rec = h.record()
    assert wire(h.dp.triggers[0])["rehydrationPriority"] == "High"
    assert [w["code"] for w in rec.warnings] == ["RehydrationPriorityHigh"]
    assert any("may refuse" in e.message for e in h.store.timeline(rec.id))


# --- adoption on what Azure specifies


def lose_trigger_answer(h: Harness) -> None:
    h.submit()
    h.step()
    h.dp.fail_after["trigger_restore"] = [RetryableError("answer lost")]
    h.step()


def other_job(h: Harness, **changes: Any) -> JobInfo:
    job = replace(h.dp.only_job(), name="other", id=f"{VAULT_ID}/backupJobs/other", **changes)
    h.dp.jobs["other"] = job
    return job


@pytest.mark.parametrize("fmt", ["salesdb_restored", None, "pgsrv-restore/salesdb_restored"])
def test_a_job_whose_destination_has_another_format_is_adopted_on_instance_point_and_time(hs: Harness,
                                                                                          fmt: str | None) -> None:
    h = hs
    lose_trigger_answer(h)
    name = h.dp.only_job().name
    h.dp.jobs[name] = replace(h.dp.jobs[name], destination=fmt)
    h.step()
    assert h.record().azure_job_id == h.dp.jobs[name].id and h.dp.trigger_calls == 1


def test_a_job_of_another_recovery_point_is_never_adopted(hs: Harness) -> None:
    h = hs
    lose_trigger_answer(h)
    name = h.dp.only_job().name
    h.dp.jobs[name] = replace(h.dp.jobs[name], recovery_point_id="another-point", destination=None)
    rec = h.run()
    assert rec.azure_job_id is None and rec.error_code == "TriggerOutcomeUnknown" and h.dp.trigger_calls == 1


def test_two_jobs_that_could_each_be_ours_stop_for_an_operator_naming_both(hs: Harness) -> None:
    h = hs
    lose_trigger_answer(h)
    name = h.dp.only_job().name
    h.dp.jobs[name] = replace(h.dp.jobs[name], destination=None)
    other_job(h, destination=None)
    h.step()
    rec = h.record()
    assert (rec.status, rec.error_code, rec.azure_job_id) == (Status.FAILED, "TriggerOutcomeUnknown", None)
    assert name in (rec.error_message or "") and "other" in (rec.error_message or "")
    assert h.dp.trigger_calls == 1


def test_a_comparable_destination_picks_ours_among_jobs_of_the_same_point(hs: Harness) -> None:
    h = hs
    lose_trigger_answer(h)
    mine = h.dp.only_job()
    other_job(h, destination=mine.destination.replace("salesdb_restored", "salesdb_restored_1"))  # type: ignore
    h.step()
    assert h.record().azure_job_id == mine.id


def test_a_failing_job_listing_while_adopting_is_looked_at_again_not_decided(hs: Harness) -> None:
    h = hs
    lose_trigger_answer(h)
    h.dp.fail_before["list_jobs"] = [AzureRejection("AuthorizationFailed", "token settling", status=403)]
    h.step()
    assert h.record().status is Status.RESTORING and h.record().stage is Stage.TRIGGER
    h.step()
    assert h.record().azure_job_id == h.dp.only_job().id


# --- job reads that fail transiently, and the deadline


def test_a_404_on_a_job_we_hold_the_id_of_is_checked_again_not_final(h: Harness) -> None:
    h.submit()
    h.run(until=Stage.MONITOR)
    job = h.dp.only_job()
    h.dp.fail_before["get_job"] = [AzureRejection("UserErrorJobNotFound", "not yet visible", status=404),
                                   AzureRejection("AuthorizationFailed", "forbidden", status=403)]
    h.step()
    h.step()
    assert h.record().status is Status.RESTORING
    h.dp.finish_job(job.name, "Completed")
    assert h.run().status is Status.SUCCEEDED


def test_a_job_that_ended_by_the_deadline_is_recorded_with_its_real_outcome(h: Harness) -> None:
    h.submit(database_body(deadline_hours=1))
    h.run(until=Stage.MONITOR)
    h.dp.finish_job(h.dp.only_job().name, "Completed", seconds=3000)
    h.clock.advance(7200)
    h.step()
    assert h.record().status is Status.SUCCEEDED


def test_a_job_still_running_at_the_deadline_fails_naming_its_last_status(h: Harness) -> None:
    h.submit(database_body(deadline_hours=1))
    h.run(until=Stage.MONITOR)
    h.clock.advance(7200)
    h.step()
    rec = h.record()
    assert rec.error_code == "DeadlineExceeded" and "InProgress at the last check" in (rec.error_message or "")



def test_a_job_another_restore_recorded_as_its_own_is_never_a_candidate(h: Harness) -> None:
    lose_trigger_answer(h)
    name = h.dp.only_job().name
    h.dp.jobs[name] = replace(h.dp.jobs[name], destination=None)
    other_job(h, destination=None)
    h.store.put_meta("jobowner", "other", {"restore_id": "20261124T070000-aaaaaaaaaa"})
    h.step()
    assert h.record().azure_job_id == h.dp.jobs[name].id
    assert h.store.get_meta("jobowner", name.lower()) == {"restore_id": h.record().id}


# --- late outcomes: a job that ends after its restore was failed by the deadline


def test_a_job_that_ends_after_the_deadline_failure_is_recorded_on_the_timeline(h: Harness) -> None:
    from restore_core import watchdog

    h.submit(database_body(deadline_hours=1))
    h.run(until=Stage.MONITOR)
    h.clock.advance(7200)
    h.step()
    rec = h.record()
    assert rec.error_code == "DeadlineExceeded"
    h.clock.advance(h.settings.poll_max_seconds)
    assert watchdog.tick(h.deps).late_outcomes == []  # still running: watched, nothing recorded
    h.dp.finish_job(h.dp.only_job().name, "Completed", seconds=9000)
    h.clock.advance(h.settings.poll_max_seconds)
    report = watchdog.tick(h.deps)
    assert report.late_outcomes == [rec.id]
    after = h.record()
    assert (after.status, after.error_code) == (Status.FAILED, "DeadlineExceeded")  # the row's verdict stays
    last = h.store.timeline(rec.id)[-1]
    assert "ended Completed" in last.message and last.data == {"late_job_status": "Completed"}
    h.clock.advance(h.settings.poll_max_seconds)
    assert watchdog.tick(h.deps).late_outcomes == []  # recorded once


def test_a_watch_on_a_job_that_never_ends_is_dropped_after_a_week(h: Harness) -> None:
    from restore_core import late_outcomes, watchdog

    h.submit(database_body(deadline_hours=1))
    h.run(until=Stage.MONITOR)
    h.clock.advance(7200)
    h.step()
    assert len(h.store.list_meta(late_outcomes.KIND)) == 1
    h.clock.advance(late_outcomes.LATE_WATCH.total_seconds() + 1)
    watchdog.tick(h.deps)
    assert h.store.list_meta(late_outcomes.KIND) == []


def test_a_broken_internal_invariant_fails_the_restore_at_once_instead_of_five_retries(h: Harness) -> None:
    h.submit()
    h.run(until=Stage.MONITOR)
    rec = h.record()
    h.store.update(rec.copy(azure_job_id=None))  # a row changed by hand (or a bug): monitor cannot go on
    h.step()  # first delivery
    after = h.record()
    assert after.status is Status.FAILED and after.error_code == "InternalInvariantBroken"
    assert "Azure job id" in (after.error_message or "")


def test_job_listings_that_keep_failing_while_adopting_never_use_up_the_deliveries(h: Harness) -> None:
    lose_trigger_answer(h)
    h.dp.fail_before["list_jobs"] = [RetryableError("malformed page"), RetryableError("401 token hiccup"),
                                     RetryableError("connection reset"), RetryableError("503", retry_after=7),
                                     RetryableError("malformed page"), RetryableError("again")]
    for _ in range(6):
        msg, _ = h.step()  # each failed look-up is a delayed re-check, not an exception the queue counts
        assert h.record().status is Status.RESTORING
    h.step()
    assert h.record().azure_job_id == h.dp.only_job().id and h.dp.trigger_calls == 1


def test_a_one_request_archive_restore_does_not_teach_its_rehydration_time_to_later_restores(h: Harness) -> None:
    from restore_core.stages.monitor import expected_seconds

    name = to_wait(h)
    h.clock.advance(15 * 3600)  # hours of rehydration, then the restore phase
    h.dp.finish_job(name, "Completed", seconds=15 * 3600)
    assert h.run().status is Status.SUCCEEDED
    assert expected_seconds(h.deps, h.record().backup_instance_id) is None
