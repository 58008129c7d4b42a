"""Partial recovery points (``recoveryPointState: Partial``): "latest" never silently picks one, an explicit one is
restored with a warning, and the warning reaches the row, the status resource, the timeline and the event."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from azure.mgmt.dataprotection import models as m

from restore_core import api
from restore_core.dp_client import RecoveryPointInfo, _rp_info
from restore_core.models import Stage, Status

from .fakes import T0, VAULT_POINT, Harness, database_body

PARTIAL = "0123456789abcdef0123456789abcdef"
OLD_COMPLETE = "fedcba9876543210fedcba9876543210"


def _with_partial_latest(h: Harness) -> RecoveryPointInfo:
    p = RecoveryPointInfo(PARTIAL, T0 - timedelta(hours=1), "vault", postgres_version="11", state="Partial")
    h.dp.points[PARTIAL] = p
    h.dp.points[VAULT_POINT] = replace(h.dp.points[VAULT_POINT], state="Completed")
    return p


def _finish(h: Harness, status: str = "Completed", **kw: object) -> None:
    h.run(until=Stage.MONITOR)
    h.dp.finish_job(h.dp.only_job().name, status, **kw)  # type: ignore[arg-type]
    h.run()


def test_recovery_point_state_is_read_from_azure() -> None:
    rp = m.AzureBackupRecoveryPointResource({
        "id": "x/recoveryPoints/" + PARTIAL, "name": PARTIAL,
        "properties": {"objectType": "AzureBackupDiscreteRecoveryPoint", "recoveryPointId": PARTIAL,
                       "recoveryPointTime": "2026-11-24T06:00:00Z", "recoveryPointState": "Partial",
                       "recoveryPointDataStoresDetails": [{"type": "VaultStore"}]}})
    info = _rp_info(rp)
    assert info.state == "Partial" and info.partial
    assert not replace(info, state="Completed").partial and not replace(info, state=None).partial


def test_latest_skips_a_newer_partial_point_and_says_so_everywhere() -> None:
    h = Harness()
    _with_partial_latest(h)
    rec = h.submit()
    _finish(h)
    rec = h.record()
    assert rec.status is Status.SUCCEEDED and rec.recovery_point_id == VAULT_POINT
    assert [w["code"] for w in rec.warnings] == ["PartialRecoveryPointSkipped"]
    assert PARTIAL in rec.warnings[0]["message"] and VAULT_POINT in rec.warnings[0]["message"]
    validated = next(e for e in h.store.timeline(rec.id) if e.stage == "validate" and "validated" in e.message)
    assert "PartialRecoveryPointSkipped" in validated.message and PARTIAL in validated.message
    status = api.get(rec.id, deps=h.deps).body
    assert [w["code"] for w in status["warnings"]] == ["PartialRecoveryPointSkipped"]
    assert [w["code"] for w in h.events[0]["warnings"]] == ["PartialRecoveryPointSkipped"]
    assert h.dp.triggers[0].recovery_point_id == VAULT_POINT


def test_latest_before_skips_partial_points_before_the_cutoff_too() -> None:
    h = Harness()
    _with_partial_latest(h)
    h.submit(database_body(recovery_point={"latest_before": (T0 - timedelta(minutes=30)).isoformat()}))
    h.run(until=Stage.MONITOR)
    rec = h.record()
    assert rec.recovery_point_id == VAULT_POINT
    assert [w["code"] for w in rec.warnings] == ["PartialRecoveryPointSkipped"]


def test_a_partial_point_older_than_the_chosen_one_is_not_mentioned() -> None:
    h = Harness()
    h.dp.points[OLD_COMPLETE] = RecoveryPointInfo(OLD_COMPLETE, T0 - timedelta(days=3), "vault", state="Partial")
    h.submit()
    h.run(until=Stage.MONITOR)
    rec = h.record()
    assert rec.recovery_point_id == VAULT_POINT and rec.warnings == []


def test_explicit_partial_point_is_restored_with_a_warning_that_survives_job_warnings() -> None:
    h = Harness()
    _with_partial_latest(h)
    h.submit(database_body(recovery_point={"id": PARTIAL}))
    _finish(h, "CompletedWithWarnings",
            warnings=[{"resource": "salesdb", "code": "UserErrorSomething", "message": "a warning from the job"}])
    rec = h.record()
    assert rec.status is Status.SUCCEEDED and rec.recovery_point_id == PARTIAL
    assert [w["code"] for w in rec.warnings] == ["PartialRecoveryPoint", "UserErrorSomething"]
    assert "does not say which" in rec.warnings[0]["message"]
    assert [w["code"] for w in h.events[0]["warnings"]] == ["PartialRecoveryPoint", "UserErrorSomething"]


def test_only_partial_candidates_are_rejected_with_the_way_out() -> None:
    h = Harness()
    h.dp.points = {PARTIAL: RecoveryPointInfo(PARTIAL, T0 - timedelta(hours=1), "vault", state="Partial")}
    h.submit()
    rec = h.run()
    assert rec.status is Status.REJECTED and rec.error_code == "OnlyPartialRecoveryPoints"
    assert PARTIAL in (rec.error_message or "") and "recovery_point.id" in (rec.error_fix or "")
    assert h.dp.calls["validate_restore"] == 0 and h.dp.trigger_calls == 0


def test_secondary_region_latest_skips_partial_points() -> None:
    h = Harness()
    _with_partial_latest(h)
    h.submit(database_body(region="secondary"))
    h.run(until=Stage.MONITOR)
    rec = h.record()
    assert rec.region == "secondary" and rec.recovery_point_id == VAULT_POINT
    assert [w["code"] for w in rec.warnings] == ["PartialRecoveryPointSkipped"]
