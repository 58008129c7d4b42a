"""The "restore finished" log record: one row per restore for the workbook's restores table and the failure alert."""

from __future__ import annotations

import json
import logging

import pytest

from restore_core.models import Stage

from .fakes import SECRET_URI, Harness, database_body


def test_a_finished_restore_logs_one_record_with_its_source_target_status_stage_times_and_error(
        caplog: pytest.LogCaptureFixture) -> None:
    h = Harness()
    rec = h.submit(database_body())
    h.run(until=Stage.MONITOR)
    h.clock.advance(120)
    h.dp.finish_job(h.dp.only_job().name, "Failed", errors=[{"code": "UserErrorDBUserAuthFailed",
                                                              "message": "login failed"}])
    with caplog.at_level(logging.INFO, logger="restore_core.pipeline"):
        h.run()
    (record,) = [r for r in caplog.records if getattr(r, "event", None) == "restore.finished"]
    assert record.restore_id == rec.id and record.outcome == "failed"  # type: ignore[attr-defined]
    assert record.error_code == "UserErrorDBUserAuthFailed" and record.source == "http"  # type: ignore[attr-defined]
    assert record.target.endswith("/databases/salesdb_restored")  # type: ignore[attr-defined]
    assert "/databases/" in record.source_resource  # type: ignore[attr-defined]
    stages = json.loads(record.stage_seconds)  # type: ignore[attr-defined]
    assert set(stages) >= {"validate", "trigger", "monitor"} and stages["monitor"] >= 120
    assert SECRET_URI not in json.dumps({k: str(v) for k, v in vars(record).items()})
