"""Every job status the spec and its examples name has a defined outcome; a Paused job is reported, not polled
silently until the deadline; Cancelling is not terminal."""

from __future__ import annotations

from dataclasses import replace

import pytest

from restore_core import api
from restore_core.dp_client import JobInfo
from restore_core.models import Stage, Status

from .fakes import Harness


def _job(status: str) -> JobInfo:
    return JobInfo(id="j", name="j", status=status, operation="Restore", operation_category="Restore",
                   backup_instance_id=None, destination=None, start_time=None, end_time=None)


@pytest.mark.parametrize(("status", "terminal"), [
    ("InProgress", False), ("Started", False), ("Cancelling", False), ("Paused", False), ("SomethingNew", False),
    ("Completed", True), ("CompletedWithWarnings", True), ("Succeeded", True), ("Failed", True), ("Cancelled", True),
    ("completed", True), ("paused", False),
])
def test_terminal_statuses(status: str, terminal: bool) -> None:
    assert _job(status).terminal is terminal


def _running(h: Harness) -> str:
    h.submit()
    h.run(until=Stage.MONITOR)
    return h.dp.only_job().name


def _set(h: Harness, name: str, status: str) -> None:
    h.dp.jobs[name] = replace(h.dp.jobs[name], status=status)


def _monitor(h: Harness) -> float:
    """Deliver the pending monitor message; return the delay of the next one."""
    _, sent = h.step()
    assert h.stages_of(sent) == [Stage.MONITOR], sent
    return sent[0].delay_seconds


def _messages(h: Harness) -> list[str]:
    return [e.message for e in h.store.timeline(h.record().id)]


def test_a_paused_job_is_reported_with_a_fix_and_checked_at_the_longest_interval() -> None:
    h = Harness()
    name = _running(h)
    _set(h, name, "Paused")
    assert _monitor(h) == h.settings.poll_max_seconds
    rec = h.record()
    status = api.get(rec.id, deps=h.deps).body
    assert status["job_status"] == "Paused" and status["status"] == "restoring"
    paused = [m for m in _messages(h) if "is Paused" in m]
    assert len(paused) == 1 and "az dataprotection job show --ids" in paused[0] and "deadline" in paused[0]
    assert [w["code"] for w in rec.warnings] == ["JobPaused"] and "az dataprotection job show" in rec.warnings[0]["fix"]

    assert _monitor(h) == h.settings.poll_max_seconds  # still paused: same interval, no new event
    assert len([m for m in _messages(h) if "is Paused" in m]) == 1

    _set(h, name, "InProgress")
    _monitor(h)
    assert any("resumed" in m for m in _messages(h)) and h.record().job_status == "InProgress"
    h.dp.finish_job(name, "Completed")
    rec = h.run()
    assert rec.status is Status.SUCCEEDED
    assert [w["code"] for w in h.events[0]["warnings"]] == ["JobPaused"]


def test_a_job_paused_until_the_deadline_fails_then_and_its_timeline_says_paused() -> None:
    h = Harness()
    name = _running(h)
    _set(h, name, "Paused")
    _monitor(h)
    h.clock.advance(49 * 3600)
    rec = h.run()
    assert rec.status is Status.FAILED and rec.error_code == "DeadlineExceeded"
    assert rec.job_status == "Paused" and any("is Paused" in m for m in _messages(h))
    assert [w["code"] for w in h.events[0]["warnings"]] == ["JobPaused"]


def test_cancelling_is_followed_until_cancelled() -> None:
    h = Harness()
    name = _running(h)
    _set(h, name, "Cancelling")
    _monitor(h)
    assert h.record().status is Status.RESTORING and h.record().job_status == "Cancelling"
    assert any("being cancelled" in m for m in _messages(h))
    h.dp.finish_job(name, "Cancelled")
    rec = h.run()
    assert rec.status is Status.FAILED and rec.error_code == "JobCancelled"


def test_started_runs_on_and_succeeded_succeeds() -> None:
    h = Harness()
    name = _running(h)
    _set(h, name, "Started")
    _monitor(h)
    assert h.record().status is Status.RESTORING and h.record().job_status == "Started"
    h.dp.finish_job(name, "Succeeded")
    rec = h.run()
    assert rec.status is Status.SUCCEEDED and rec.job_status == "Succeeded"


def test_an_undocumented_status_is_reported_and_checked_again() -> None:
    h = Harness()
    name = _running(h)
    _set(h, name, "Throttled")
    assert _monitor(h) > 0
    assert any("'Throttled', which Azure documents nowhere" in m for m in _messages(h))
    assert h.record().status is Status.RESTORING


def test_completed_with_warnings_succeeds_and_names_the_warnings() -> None:
    h = Harness()
    name = _running(h)
    h.dp.finish_job(name, "CompletedWithWarnings",
                    warnings=[{"resource": "salesdb", "code": "UserErrorSomeRolesNotRestored", "message": "2 roles"}])
    rec = h.run()
    assert rec.status is Status.SUCCEEDED and rec.job_status == "CompletedWithWarnings"
    assert [w["code"] for w in rec.warnings] == ["UserErrorSomeRolesNotRestored"]
    assert any("UserErrorSomeRolesNotRestored" in m for m in _messages(h))
