"""Infra of restore drills (issue 15), offline on the parsed templates: the write-once evidence container, the drill
settings, the drill alert and its wiring."""

from __future__ import annotations

import functools
import json
import logging
import re
from datetime import timedelta
from typing import Any

import pytest

from restore_core import config
from tests.infra import bicep_facts as facts
from tests.infra import kql_filter

MODULES = facts.INFRA / "modules"


def _resources(name: str) -> dict[str, Any]:
    return dict(facts.parse(MODULES / name)["resources"])


def test_the_evidence_container_is_write_once_and_named_by_the_setting() -> None:
    res = _resources("storage.bicep")
    container, policy = res["drillEvidenceContainer"], res["drillEvidenceImmutability"]
    assert container["config"]["name"] == "drillEvidenceContainerName"
    assert container["config"]["properties"]["publicAccess"] == "None"
    assert policy["type"].endswith("/containers/immutabilityPolicies")
    assert policy["config"]["parent"] == "drillEvidenceContainer"
    assert policy["config"]["properties"] == {"immutabilityPeriodSinceCreationInDays": "drillEvidenceRetentionDays",
                                              "allowProtectedAppendWrites": False}
    main = facts.parse(facts.MAIN_BICEP)
    params = main["modules"]["storage"]["config"]["params"]
    assert params["drillEvidenceContainerName"] == "drillEvidenceContainer"
    assert main["parameters"]["drillEvidenceContainer"]["default"] == config.DEFAULTS[config.DRILL_EVIDENCE_CONTAINER]
    assert main["parameters"]["drillSchedule"]["default"] == config.DEFAULTS[config.DRILL_SCHEDULE]


def test_the_drill_alert_watches_failed_runs_rto_over_target_and_failed_cleanups() -> None:
    text = (MODULES / "drill-alerts.bicep").read_text()
    for needle in ('outcome == "failed"', 'rto == "over"', 'cleanup == "failed"', "customDimensions.drill_id"):
        assert needle in text
    res = _resources("drill-alerts.bicep")
    assert res["drillAlert"]["type"] == "Microsoft.Insights/scheduledQueryRules"
    wiring = facts.parse(facts.MAIN_BICEP)["modules"]["drillAlerts"]["config"]["params"]
    assert wiring["actionGroupId"] == "dashboards.outputs.actionGroupId"


def test_the_alerts_dimensions_are_the_ones_the_code_logs() -> None:
    """The alert reads drill_outcome, drill_rto and drill_cleanup: the names restore_core/drills logs them under."""
    code = "".join((facts.INFRA.parent / "restore_core" / "drills" / f).read_text()
                   for f in ("evidence.py", "scheduler.py", "completion.py"))
    for name in ('"drill_outcome"', '"drill_rto"', '"drill_cleanup"', '"drill_id"'):
        assert name in code


# --- the alert fires on what the code logs (its filter run on the real log records) ----------------------------------
@functools.cache
def _alert_query() -> str:
    query = str(facts.parse(MODULES / "drill-alerts.bicep")["variables"]["drillProblemsQuery"]["value"])
    assert query.endswith("| summarize problems = count() by drill_id"), query  # problems > 0 per drill: it fires
    return query


def _fires_for(records: list[logging.LogRecord]) -> set[str]:
    """The drills the alert fires for, given these log records (its threshold: more than 0 problems)."""
    rows = kql_filter.filtered(_alert_query(), [kql_filter.row_of(r) for r in records])
    return {r["drill_id"] for r in rows}


def _scenario(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, what: str) -> set[str]:
    from restore_core.drills import cleanup, scheduler
    from restore_core.models import Status
    from tests.unit.test_drills import finish_restore, harness, started_run

    h = harness()
    if what == "not started":
        h.dp.points.clear()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="restore_core"):
        run = started_run(h, rto_target_minutes=5 if what in ("slow", "still restoring") else 30,
                          validation_window_minutes=0)
        if what == "still restoring":
            h.clock.now += timedelta(minutes=6)
            scheduler.tick(h.deps)
        elif what != "not started":
            finish_restore(h, run["restore_id"], Status.FAILED if what == "failed" else Status.SUCCEEDED)
        if what == "clean-up failed":
            monkeypatch.setattr(cleanup, "clean", lambda deps, r: (_ for _ in ()).throw(ConnectionError("down")))
            h.clock.now += timedelta(minutes=11)
            scheduler.tick(h.deps)
    return _fires_for(list(caplog.records))


@pytest.mark.parametrize(("what", "fires"), [("passed within its RTO target", False), ("failed", True),
                                             ("slow", True), ("still restoring", True), ("not started", True),
                                             ("clean-up failed", True)])
def test_the_drill_alert_fires_on_a_failed_run_or_an_rto_over_target_and_not_on_a_good_run(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, what: str, fires: bool) -> None:
    assert _scenario(caplog, monkeypatch, what) == ({"nightly"} if fires else set())


def test_the_kql_filter_reads_the_steps_it_knows_and_refuses_the_others() -> None:
    rows = [{"customDimensions": {"drill_id": "a", "drill_outcome": "failed"}},
            {"customDimensions": {"drill_id": "b", "drill_outcome": "passed", "drill_rto": "over"}},
            {"customDimensions": {"drill_outcome": "failed"}}]
    query = ('traces | where isnotempty(tostring(customDimensions.drill_id)) | extend o = tostring(customDimensions.'
             'drill_outcome), r = tostring(customDimensions.drill_rto) | where o == "failed" or r in ("over") | '
             "summarize n = count() by o")
    assert [r["customDimensions"]["drill_id"] for r in kql_filter.filtered(query, rows)] == ["a", "b"]
    assert kql_filter.filtered(query.replace('or r in ("over")', 'and r != ""'), rows) == []
    for broken in ("traces | where strlen(x) > 1", "traces | parse message with x", "requests | where a == \"b\""):
        with pytest.raises(ValueError, match="kql_filter"):
            kql_filter.filtered(broken, rows)


# --- the workbook's drill charts and table ---------------------------------------------------------------------------
def _drill_panels() -> dict[str, dict[str, Any]]:
    wb = json.loads((facts.INFRA / "workbook" / "restore-workbook.json").read_text())
    return {i["name"]: i["content"] for i in wb["items"] if i.get("type") == 3 and i["name"].startswith("drill-")}


def test_the_workbook_charts_drill_rto_against_its_target_and_the_pass_rate_and_lists_the_last_runs() -> None:
    panels = _drill_panels()
    assert set(panels) == {"drill-rto", "drill-pass-rate", "drill-runs"}
    for p in panels.values():  # one record per run even when a crash made the timer log it again
        assert p["timeContextFromParameter"] == "TimeRange"
        assert "| summarize arg_max(timestamp, *) by run_key\n" in p["query"]
    rto = panels["drill-rto"]
    assert rto["visualization"] == "timechart" and rto["query"].endswith("| render timechart")
    for needle in ("customDimensions.rto_seconds", "customDimensions.rto_target_seconds", "customDimensions.drill_id",
                   "customDimensions.backup_instance_id", "rto_minutes = max(rto_minutes), rto_target_minutes = "
                   "max(rto_target_minutes) by series, bin(timestamp"):
        assert needle in rto["query"], needle
    rate = panels["drill-pass-rate"]
    assert rate["visualization"] == "barchart"
    for needle in ('passed = countif(outcome == "passed") by drill_id, day = bin(timestamp, 1d)',
                   "pass_rate_pct = round(100.0 * passed / runs, 1)", "customDimensions.drill_outcome"):
        assert needle in rate["query"], needle
    runs = panels["drill-runs"]
    assert runs["visualization"] == "table" and runs["query"].endswith("| order by timestamp desc")
    assert "| summarize arg_max(timestamp, *) by drill_id, instance\n" in runs["query"]  # the last run of each
    for field in ("drill_id", "backup_instance_id", "drill_outcome", "status", "rto_seconds", "rto_target_seconds",
                  "drill_rto", "rpo_seconds", "checks_passed", "checks_failed", "error_code", "restore_id",
                  "cleanup_status", "evidence_blob"):
        assert f"customDimensions.{field}" in runs["query"], field


def test_the_drill_panels_read_the_drill_finished_records_and_only_fields_they_carry(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each panel's filter, run on the records a failed run and a run still restoring past its target log, keeps the
    one ``drill finished`` record (not the overrun notice nor the other drill records); every field a panel reads is
    one that record carries."""
    from restore_core.drills import completion

    _scenario(caplog, monkeypatch, "failed")
    records = list(caplog.records)
    _scenario(caplog, monkeypatch, "still restoring")
    records += list(caplog.records)
    finished = [r for r in records if getattr(r, "event", None) == completion.LOG_EVENT]
    assert len(finished) == 1 and len([r for r in records if getattr(r, "drill_id", None)]) > 2
    carried = set(kql_filter.row_of(finished[0])["customDimensions"])
    for name, panel in _drill_panels().items():
        rows = kql_filter.filtered(panel["query"], [kql_filter.row_of(r) for r in records])
        assert [r["run_key"] for r in rows] == [finished[0].run_key], name  # type: ignore[attr-defined]
        read = set(re.findall(r"customDimensions\.(\w+)", panel["query"]))
        assert read <= carried, (name, read - carried)
