"""Issue 13 item 5: the rehydration window (status ``expected``, the wait stage's timeline), the data-loss gap
(``latest_before`` and a Cross Region Restore behind the primary) and where a job is visible."""

from __future__ import annotations

from datetime import timedelta

import pytest

from restore_core import api
from restore_core.backup import RecoveryPointInfo
from restore_core.errors import RetryableError
from restore_core.expectations import DOCUMENTED_HOURS, duration_text, job_visible_in, rehydration_expected
from restore_core.models import Stage, Status, Tier

from .fakes import T0, VAULT_POINT, Harness, database_body, settings

NEWER = "0123456789abcdef0123456789abcdef"


def _status(h: Harness) -> dict[str, object]:
    return api.get(h.record().id, deps=h.deps).body


@pytest.mark.parametrize("flow", ["one-request", "two-step"])
def test_a_rehydration_shows_its_window_for_the_priority_and_it_moves_as_time_passes(flow: str) -> None:
    h = Harness(settings=settings(RESTORE_REHYDRATION_FLOW=flow))
    h.dp.add_archive_point()
    h.submit(database_body())
    h.run(until=Stage.WAIT)
    rec = h.record()
    assert rec.status is Status.WAITING
    asked = rec.rehydration_requested_at or rec.triggered_at
    assert asked is not None
    first = _status(h)["expected"]
    assert isinstance(first, dict)
    assert first["what"] == "rehydration, priority Standard" and first["documented_hours"] == 15.0
    assert first["latest"] == (asked + timedelta(hours=15)).isoformat().replace("+00:00", "Z")
    left = first["remaining_seconds"]
    assert isinstance(left, int) and 0 < left <= 15 * 3600 and first["overdue"] is False
    assert "up to 15 h for Standard priority" in str(first["source"])

    h.clock.advance(3600)
    later = _status(h)["expected"]
    assert isinstance(later, dict) and later["remaining_seconds"] == left - 3600  # recomputed at read time
    h.clock.advance(15 * 3600)
    overdue = _status(h)["expected"]
    assert isinstance(overdue, dict) and overdue["overdue"] is True and overdue["remaining_seconds"] == 0
    assert str(overdue["note"]).startswith("past the documented 15 h by")


def test_the_wait_stage_timeline_says_when_the_rehydration_is_expected() -> None:
    h = Harness()
    h.dp.add_archive_point()
    h.submit(database_body(rehydration={"priority": "High"}))
    h.run(until=Stage.WAIT)
    h.step()  # the first wait check: still rehydrating
    waits = [e.message for e in h.store.timeline(h.record().id) if e.stage == "wait"]
    assert waits and "; expected by " in waits[-1] and "up to 1 h for High priority" in waits[-1]


def test_no_window_when_nothing_is_rehydrated() -> None:
    h = Harness()
    h.submit()
    h.run(until=Stage.MONITOR)
    body = _status(h)
    assert body["expected"] is None and rehydration_expected(h.record(), h.clock()) is None
    assert DOCUMENTED_HOURS == {"Standard": 15.0, "High": 1.0}


def test_latest_before_records_the_gap_between_the_asked_time_and_the_point() -> None:
    h = Harness()
    asked = T0 - timedelta(hours=2)  # the vault point is of T0 - 6 h
    h.submit(database_body(recovery_point={"latest_before": asked.isoformat()}))
    h.step()
    rec = h.record()
    assert rec.recovery_point_id == VAULT_POINT and rec.data_loss_gap_seconds == 4 * 3600
    assert _status(h)["data_loss_gap_seconds"] == 4 * 3600
    validated = [e.message for e in h.store.timeline(rec.id) if e.stage == "validate"][-1]
    assert "4h00m before the asked time" in validated and "data-loss gap" in validated


def test_latest_in_the_primary_region_has_no_gap_and_costs_no_extra_call() -> None:
    h = Harness()
    h.submit()
    h.step()
    assert h.record().data_loss_gap_seconds is None
    assert h.dp.calls["list_recovery_points"] == 1


def _secondary_lags(h: Harness) -> None:
    """The primary holds a newer vault-tier point the secondary region does not have yet."""
    older = h.dp.points[VAULT_POINT]
    h.dp.points[NEWER] = RecoveryPointInfo(NEWER, T0 - timedelta(hours=1), Tier.VAULT, postgres_version="11")
    real = h.dp.fetch_secondary_recovery_points

    def secondary_only_older(*args: object, **kwargs: object) -> list[RecoveryPointInfo]:
        return [p for p in real(*args, **kwargs) if p.id == older.id]  # type: ignore[arg-type]

    h.dp.fetch_secondary_recovery_points = secondary_only_older  # type: ignore[method-assign]


def test_a_cross_region_restore_behind_the_primary_says_how_much_older_with_one_extra_call() -> None:
    h = Harness()
    _secondary_lags(h)
    h.submit(database_body(region="secondary"))
    h.step()
    rec = h.record()
    assert rec.recovery_point_id == VAULT_POINT and rec.data_loss_gap_seconds == 5 * 3600
    behind = [w for w in rec.warnings if w["code"] == "SecondaryRegionBehind"]
    assert len(behind) == 1 and behind[0]["primary_recovery_point"] == NEWER
    assert "5h00m newer" in behind[0]["message"] and "northeurope" in behind[0]["message"]
    assert h.dp.calls["list_recovery_points"] == 1  # the one extra call, only for a secondary restore
    assert _status(h)["data_loss_gap_seconds"] == 5 * 3600


def test_a_cross_region_restore_as_new_as_the_primary_has_no_warning() -> None:
    h = Harness()
    h.submit(database_body(region="secondary"))
    h.step()
    rec = h.record()
    assert rec.status is Status.RESTORING and not rec.warnings and rec.data_loss_gap_seconds is None


def test_an_unreadable_primary_never_blocks_a_cross_region_restore() -> None:
    h = Harness()
    h.dp.fail_before["list_recovery_points"] = [RetryableError("primary region unavailable")]
    h.submit(database_body(region="secondary"))
    h.step()
    rec = h.record()
    assert rec.status is Status.RESTORING
    assert [w["code"] for w in rec.warnings] == ["DataLossGapUnknown"]


def test_a_cross_region_job_says_it_is_visible_in_the_secondary_region_only() -> None:
    h = Harness()
    h.submit(database_body(region="secondary"))
    h.run(until=Stage.MONITOR)
    where = _status(h)["azure_job_visible_in"]
    assert isinstance(where, str) and where.startswith("secondary region northeurope only")
    assert "fetchCrossRegionRestoreJob" in where and "--use-secondary-region" in where
    assert "--resource-group rg-backup --vault-name bv-prod" in where

    primary = Harness()
    primary.submit()
    assert job_visible_in(primary.record()) is None  # no job yet
    primary.run(until=Stage.MONITOR)
    assert str(job_visible_in(primary.record())).startswith("the vault's jobs in westeurope")


def test_duration_text() -> None:
    assert [duration_text(s) for s in (5, 425, 18720, 183600)] == ["5s", "7m05s", "5h12m", "2d03h"]
