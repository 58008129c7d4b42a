"""The chaos campaign's verdict and set-up (so `make chaos` cannot rot or pass for the wrong reason): the fault plan
spares trigger POSTs, the verdict counts lost, doubled, stuck, wrong reasons and completion events per outcome after
deduplication on event_id, and a tiny campaign runs for real with three host processes on one storage."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bench import chaos
from bench.chaos import INJECTED_FAILURE, JOB_READ_OPS, READ_OPS, TRIGGER_OPS, Planned
from localdev.funchost.config import host_config, load_host_json
from restore_core.events import event_id

NOW = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def planned(i: int, status: str | None, *, code: str | None = None, job: str | None = None,
            deadline: datetime | None = None) -> Planned:
    p = Planned(i, "database", {}, f"/dest/db{i}", key=f"k{i}")
    if status is not None:
        p.restore_id = f"20261124T080000-{i:010d}"
        due = deadline or NOW + timedelta(hours=1)
        p.final = {"status": status, "azure_job_id": job, "deadline": due.isoformat(),
                   "error": {"code": code} if code else None}
    return p


def arm_job(i: int, status: str, n: int = 0, code: str | None = None) -> dict[str, Any]:
    return {"id": f"/jobs/job{i}-{n}", "status": status, "error_code": code, "destination": f"/dest/db{i}",
            "operation": "Restore", "region": "primary"}


def event(p: Planned, status: str | None = None, eid: str | None = None) -> dict[str, Any]:
    st = status or p.status
    return {"type": "restore.completed", "restore_id": p.restore_id, "status": st,
            "event_id": eid or event_id(str(p.restore_id), st)}


def test_fault_plan_puts_answer_faults_on_reads_only_and_403_404_only_where_they_mean_check_again() -> None:
    plan = chaos.fault_plan(0.15, 0.06, 0.03)
    by_mode: dict[str, set[str]] = {}
    for f in plan:
        by_mode.setdefault(f["mode"], set()).add(f["operation"])
        assert 0 < f["probability"] < 1
    for mode in ("malformed", "html", "error401"):
        assert by_mode[mode] == set(READ_OPS)
    for mode in ("error403", "error404"):
        assert by_mode[mode] == set(JOB_READ_OPS) == {"Jobs_Get", "FetchCrossRegionRestoreJob_Get",
                                                      "OperationStatus_Get"}
    answer_ops = set().union(*(by_mode[m] for m in ("malformed", "html", "error401", "error403", "error404")))
    assert not answer_ops & set(TRIGGER_OPS) and not any("Trigger" in op or "Validate" in op for op in answer_ops)
    assert by_mode["job_fail"] == set(TRIGGER_OPS)
    assert all(f["error_code"] == INJECTED_FAILURE for f in plan if f["mode"] == "job_fail")
    transport = [f for f in plan if f["operation"] == "*"]
    assert sum(f["probability"] for f in transport) == pytest.approx(0.15)
    assert sum(f["probability"] for f in plan if f["operation"] == "Jobs_Get") == pytest.approx(0.06)
    assert [f["mode"] for f in plan[:len(transport)]] == [m for m, _ in chaos.TRANSPORT_FAULTS]
    assert all(f["mode"] != "job_fail" for f in chaos.fault_plan(0.15, 0.06, 0.0))


def test_app_dir_sets_the_shortest_timer_lease_the_host_accepts(tmp_path: Path) -> None:
    app = chaos.make_app_dir(tmp_path)
    assert (app / "function_app.py").resolve() == (chaos.REPO / "function_app.py").resolve()
    cfg = host_config(load_host_json(app))
    assert (cfg.singleton.listener_lock_period, cfg.singleton.listener_lock_recovery_polling_interval) == (15, 15)
    repo = json.loads((chaos.REPO / "host.json").read_text())
    assert {k: v for k, v in json.loads((app / "host.json").read_text()).items() if k != "singleton"} == repo


def test_outcome_checks_find_lost_stuck_doubled_and_wrong_reasons() -> None:
    ok = planned(0, "succeeded", job="/jobs/job0-0")
    expected_failure = planned(1, "failed", code=INJECTED_FAILURE, job="/jobs/job1-0")
    doubled = planned(2, "succeeded", job="/jobs/job2-0")
    never = planned(3, None)
    stuck = planned(4, "restoring", deadline=NOW - timedelta(minutes=1))
    unknown = planned(5, "unknown-404")
    unsure = planned(6, "failed", code="TriggerOutcomeUnknown", job=None)  # ARM has no job: the trigger never ran
    unsure_but_ran = planned(10, "failed", code="TriggerOutcomeUnknown")  # ARM has its job: adoption missed it
    gave_up = planned(11, "failed", code="StageRetriesExhausted")  # no fault of the campaign justifies it
    wrong_code = planned(7, "failed", code="UserErrorSomethingElse", job="/jobs/job7-0")
    lied = planned(8, "succeeded", job="/jobs/job8-0")
    ghost = planned(9, "succeeded", job="/jobs/nowhere")
    jobs = [arm_job(0, "Completed"), arm_job(1, "Failed", code=INJECTED_FAILURE), arm_job(2, "Completed"),
            arm_job(2, "Completed", 1), arm_job(7, "Failed", code=INJECTED_FAILURE), arm_job(8, "Failed", code="X"),
            arm_job(10, "Completed"), arm_job(11, "Completed")]
    fleet = [ok, expected_failure, doubled, never, stuck, unknown, unsure, wrong_code, lied, ghost, unsure_but_ran,
             gave_up]
    r = chaos.outcome_checks(fleet, chaos.jobs_by_destination(jobs), NOW)
    assert [e["key"] for e in r["lost"]] == ["k3", "k5"]
    assert [e["id"] for e in r["late"]] == [stuck.restore_id]
    assert [d["id"] for d in r["doubled"]] == [doubled.restore_id]
    assert sorted(w["id"] for w in r["wrong_reasons"]) == sorted(
        str(p.restore_id) for p in (doubled, wrong_code, lied, ghost, unsure_but_ran, gave_up))  # doubled: no single
    assert r["expected_failures"] == {"injected job failure": 1, "trigger outcome unknown, no Azure job": 1}
    assert r["failure_reasons"] == {f"failed: {INJECTED_FAILURE}": 1, "failed: TriggerOutcomeUnknown": 2,
                                    "failed: UserErrorSomethingElse": 1, "failed: StageRetriesExhausted": 1}
    assert [m["id"] for m in r["row_vs_arm_job_mismatch"]] == [ghost.restore_id, unsure_but_ran.restore_id,
                                                               gave_up.restore_id]


def test_event_checks_dedupe_on_event_id_and_count_duplicate_deliveries() -> None:
    once = planned(0, "succeeded")
    twice = planned(1, "failed", code=INJECTED_FAILURE)
    missing = planned(2, "succeeded")
    other_id = planned(3, "succeeded")
    wrong_status = planned(4, "succeeded")
    running = planned(5, "restoring")
    events = [event(once), event(twice), event(twice), event(twice), event(other_id),
              event(other_id, eid="not-the-outcome-id"), event(wrong_status, status="failed",
                                                               eid=event_id(str(wrong_status.restore_id), "succeeded"))]
    r = chaos.event_checks([once, twice, missing, other_id, wrong_status, running], events)
    assert r["restore_outcomes"] == 5 and r["outcomes_with_exactly_one_event_after_dedupe"] == 2
    assert sorted(n["id"] for n in r["outcomes_not_one"]) == sorted(
        str(p.restore_id) for p in (missing, other_id, wrong_status))
    assert (r["duplicate_deliveries"], r["restores_with_duplicate_deliveries"]) == (2, 1)
    assert r["events_received"] == 7


def verdict_input(**over: Any) -> dict[str, Any]:
    r: dict[str, Any] = {"lost": [], "doubled": [], "late": [], "wrong_reasons": [], "poison_unrecorded": [],
                         "wrong_data": [], "most_arm_jobs_for_one_restore": 1,
                         "events": {"restore_outcomes": 3, "outcomes_with_exactly_one_event_after_dedupe": 3,
                                    "outcomes_not_one": []},
                         "hosts": {"processes": 3, "kills": 4, "kills_per_host": {"a": 1, "b": 2, "c": 1}}}
    r.update(over)
    r["checks"] = chaos.checks(r, 3)
    return r


def test_verdict_rows_separate_correctness_from_what_the_campaign_did() -> None:
    good = verdict_input()
    assert chaos.passed(good, "correctness") and chaos.passed(good, "campaign")
    rows = {c["check"]: c for c in good["checks"]}
    assert rows["Completion events per restore outcome after dedupe on event_id"]["result"] == "1 for 3 of 3"
    assert rows["Completion events per restore outcome after dedupe on event_id"]["must_be"] == "1 for each"
    for bad in ({"wrong_reasons": [{"id": "x"}]}, {"late": [{}]}, {"doubled": [{}]}, {"lost": [{}]},
                {"events": {"restore_outcomes": 3, "outcomes_with_exactly_one_event_after_dedupe": 2,
                            "outcomes_not_one": [{}]}}):
        r = verdict_input(**bad)
        assert not chaos.passed(r, "correctness") and chaos.passed(r, "campaign")
    spared = verdict_input(hosts={"processes": 3, "kills": 4, "kills_per_host": {"a": 2, "b": 2, "c": 0}})
    assert chaos.passed(spared, "correctness") and not chaos.passed(spared, "campaign")
    few = verdict_input(hosts={"processes": 3, "kills": 2, "kills_per_host": {"a": 1, "b": 1, "c": 0}})
    assert not chaos.passed(few, "campaign")  # fewer kills than asked
    assert chaos.passed({**few, "checks": chaos.checks(few, 2)}, "campaign")  # 2 asked: 2 hosts killed is all


def test_watchdog_pauses_are_measured_across_the_host_logs(tmp_path: Path) -> None:
    line = "{} INFO funchost invocation function=restore_watchdog trigger=timer past_due=False outcome=ok duration_ms=9"
    (tmp_path / "a.log").write_text("\n".join(line.format(t) for t in (
        "2026-11-24 08:00:00,000", "2026-11-24 08:00:01,000", "2026-11-24 08:00:02,000")) + "\nnoise\n")
    (tmp_path / "b.log").write_text(line.format("2026-11-24 08:00:20,500") + "\n" +
                                    line.format("2026-11-24 08:00:21,500") + "\n")
    w = chaos.watchdog_runs([tmp_path / "a.log", tmp_path / "b.log", tmp_path / "missing.log"])
    assert w == {"runs": 5, "longest_pause_seconds": 18.5, "pauses_over_5_seconds": 1}


@pytest.mark.integration
def test_a_tiny_campaign_with_three_hosts_passes_and_records_its_verdict(tmp_path: Path) -> None:
    rc = chaos.main(["--restores", "3", "--kills", "1", "--answer-fault-rate", "0.2", "--deadline-minutes", "5",
                     "--server-share", "0",  # restores into a server: tests/bench/test_replays.py
                     "--dir", str(tmp_path / "w"), "--out", str(tmp_path / "r")])
    saved = json.loads((tmp_path / "r" / "chaos.json").read_text())
    assert rc == 0, (tmp_path / "r" / "chaos.md").read_text()
    assert saved["hosts"]["processes"] == 3 and saved["hosts"]["kills"] >= 1
    assert all(c["ok"] for c in saved["checks"] if c["kind"] == "correctness")
    assert saved["events"]["outcomes_with_exactly_one_event_after_dedupe"] == 3
    assert saved["watchdog"]["runs"] > 0 and saved["code"]["commit"]
    assert "1 for 3 of 3" in (tmp_path / "r" / "chaos.md").read_text()
