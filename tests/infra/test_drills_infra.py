"""Infra of restore drills (issue 15), offline on the parsed templates: the write-once evidence container, the drill
settings, the drill alert and its wiring."""

from __future__ import annotations

from typing import Any

from restore_core import config
from tests.infra import bicep_facts as facts

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
