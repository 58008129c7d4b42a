"""Replays in the chaos campaign and the replay fleet (issue 17 items 3 and 5): the server's session log that finds
overlapping replays (for real on a PostgreSQL cluster: a session ended by its client or by the server is logged),
the overlap, orphan and outcome rows of the verdict, the fleet's server share, the job runner's duplicate delivery and
the replay fleet's bound."""

from __future__ import annotations

import random
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest

from bench import chaos, replayfleet
from bench import replaycheck as rc
from localdev.jobrunner import JobRunner
from localdev.pgcluster import PgCluster
from restore_core.pgtarget import TargetConn, mark_of
from restore_core.stages import replay

RID_A, RID_B = "20261124T080000-0000000001", "20261124T080000-0000000002"


def line(end: str, pid: int, rid: str, runner: str, length: str, db: str = "appdb_x") -> str:
    return (f"{end} UTC [{pid}] pg-restore-replay {rid} {runner} LOG:  disconnection: session time: {length} "
            f"user=restore-service database={db} host=127.0.0.1 port=5{pid}")


def test_the_replays_sessions_name_their_restore_and_runner_in_sql_and_in_the_tools_environment() -> None:
    name = replay.application_name(RID_A, "0123456789abcdef")
    assert name == f"pg-restore-replay {RID_A} 0123456789abcdef" and len(name) <= 63
    conn = TargetConn("h", 5432, "u", "p", application_name=name)
    assert conn.kwargs("db")["application_name"] == name and conn.env("db")["PGAPPNAME"] == name
    assert TargetConn("h", 5432, "u", "p").env("db")["PGAPPNAME"] == "pg-restore-orchestrator"


def test_overlapping_sessions_of_two_runners_of_one_restore_are_found_and_a_killed_runner_ends_at_its_kill() -> None:
    log = [
        line("2026-11-24 08:00:10.000", 11, RID_A, "aaaa", "0:00:05.000"),  # runner aaaa 05..10
        line("2026-11-24 08:00:12.000", 12, RID_A, "bbbb", "0:00:03.000"),  # runner bbbb 09..12: overlaps 1 s
        line("2026-11-24 08:00:30.000", 13, RID_B, "cccc", "0:00:10.000"),  # one runner, two sessions at once
        line("2026-11-24 08:00:30.000", 14, RID_B, "cccc", "0:00:10.000"),
        line("2026-11-24 08:00:45.000", 15, RID_B, "dddd", "0:00:14.500"),  # starts after cccc ended
        "2026-11-24 08:00:45.000 UTC [16] pg-restore-orchestrator LOG:  disconnection: session time: 0:00:01.000 "
        "user=u database=postgres host=127.0.0.1 port=1",
        "noise",
    ]
    sessions = rc.sessions_from_log(log)
    assert len(sessions) == 5 and {s.restore_id for s in sessions} == {RID_A, RID_B}
    assert sessions[0].end - sessions[0].start == pytest.approx(5.0)
    found = rc.overlaps(sessions)
    assert found == [{"restore_id": RID_A, "runners": ["aaaa", "bbbb"], "overlap_seconds": 1.0}]
    killed = {"aaaa": sessions[0].end - 2.0}  # the bench killed aaaa at 08:00:08: its backend lingered
    assert rc.overlaps(sessions, killed) == []
    assert rc.runners_per_restore(sessions) == {RID_A: 2, RID_B: 2}


def test_orphan_databases_are_those_no_terminal_restore_owns() -> None:
    ok = {"status": "succeeded", "server": {"replay": {"databases": [{"database": "appdb_cx1"}]}}}
    kept = {"status": "failed", "error": {"code": "ReplaySqlFailed", "fix": "The partly loaded database appdb_cx2 …"}}
    silent = {"status": "failed", "error": {"code": "X", "fix": "nothing"}}
    active = {"status": "restoring"}
    restores = {"r1": ok, "r2": kept, "r3": silent, "r4": active}
    dbs = {"appdb_cx1": mark_of("r1"), "appdb_cx2": mark_of("r2"), "appdb_cx3": mark_of("r3"),
           "appdb_cx4": mark_of("r4"), "appdb_cx5": mark_of("r5"), "appdb_cx6": None, "inventory_cx1": mark_of("r1"),
           "someone_elses": None, "postgres": None}
    found = rc.orphan_databases(dbs, restores, lambda n: "_cx" in n)
    assert {o["database"]: o["why"] for o in found} == {
        "appdb_cx3": "its restore is failed and does not name this database",
        "appdb_cx4": "its restore is restoring, not terminal",
        "appdb_cx5": "marked by a restore this run does not know",
        "appdb_cx6": "no restore's mark",
        "inventory_cx1": "its restore succeeded without reporting this database"}


def replays(**over: Any) -> dict[str, Any]:
    rp: dict[str, Any] = {"server_restores": 2, "right_outcome": 2, "overlaps": [], "wrong_data": [], "orphans": [],
                          "replay_kills": [{}], "replay_kills_requested": 1, "jobrunner_kills": [{}]}
    rp.update(over)
    return rp


def verdict_of(rp: dict[str, Any]) -> dict[str, Any]:
    r: dict[str, Any] = {"lost": [], "doubled": [], "late": [], "wrong_reasons": [], "poison_unrecorded": [],
                         "wrong_data": [], "most_arm_jobs_for_one_restore": 1,
                         "events": {"restore_outcomes": 2, "outcomes_with_exactly_one_event_after_dedupe": 2,
                                    "outcomes_not_one": []},
                         "hosts": {"processes": 3, "kills": 4, "kills_per_host": {"a": 2, "b": 1, "c": 1}},
                         "replays": rp}
    r["checks"] = chaos.checks(r, 4)
    return r


def test_replay_rows_fail_on_an_overlap_a_wrong_outcome_wrong_rows_or_an_orphan() -> None:
    good = verdict_of(replays())
    assert chaos.passed(good, "correctness") and chaos.passed(good, "campaign")
    assert any("same time" in c["check"] for c in good["checks"])
    for bad in ({"overlaps": [{"restore_id": RID_A}]}, {"right_outcome": 1}, {"wrong_data": [{}]},
                {"orphans": [{}]}):
        r = verdict_of(replays(**bad))
        assert not chaos.passed(r, "correctness") and chaos.passed(r, "campaign"), bad
    for short in ({"replay_kills": []}, {"jobrunner_kills": []}):
        r = verdict_of(replays(**short))
        assert chaos.passed(r, "correctness") and not chaos.passed(r, "campaign"), short
        r["checks"] = chaos.checks(r, 3)  # 3 kills asked of 3 hosts: the rounds need not reach the job runner
        assert chaos.passed(r, "campaign") == ("jobrunner_kills" in short), short
    none = verdict_of({"server_restores": 0})
    assert not any("same time" in c["check"] for c in none["checks"])


def test_the_fleet_holds_the_asked_share_of_server_restores_with_their_own_database_names() -> None:
    fleet = chaos.plan_fleet(40, random.Random(7), "t01", 0.25)
    servers = [p for p in fleet if p.kind == "server"]
    assert len(servers) == 10
    assert servers[0].body["target"]["kind"] == "server"
    names = [d for p in servers for d in p.databases]
    assert len(set(names)) == 20 and all("_cxt01_" in n for n in names)
    assert all(not p.databases for p in fleet if p.kind != "server")
    assert not [p for p in chaos.plan_fleet(10, random.Random(7), "t01") if p.kind == "server"]


def test_throughput_is_compared_with_the_arm_budget_of_the_calls_arm_accepted() -> None:
    budget = {"read_burst": 20, "read_rate": 2.0, "write_burst": 5, "write_rate": 1.0}
    metering = {"by_kind": {"read": 230, "write": 45}, "by_status": {"200": 200, "202": 40, "429": 35}}
    t = chaos.throughput_numbers(40, 100.0, metering, budget)
    # 5 refused writes; 30 refused reads: (200 - 20) / 2 = 90 s; writes (40 - 5) / 1 = 35 s
    assert t["arm_accepted"] == {"reads": 200, "writes": 40} and t["arm_budget_min_seconds"] == 90.0
    assert t["restores_per_minute"] == 24.0 and t["wall_over_budget"] == pytest.approx(1.11)


def test_the_replay_fleet_bound_is_the_replay_capacity_or_the_arm_budget_whichever_is_longer() -> None:
    calib = {"before": 4.0, "replay": 2.0, "after": 1.0}
    assert replayfleet.bounds(50, calib, 2, 30.0) == {"replay_bound_seconds": 55.0, "arm_bound_seconds": 30.0,
                                                      "bound_seconds": 55.0}
    assert replayfleet.bounds(50, calib, 2, 80.0)["bound_seconds"] == 80.0
    samples = [{"before": 5.0, "replay": 2.4, "after": 1.0}, {"before": 6.0, "replay": 0.6, "after": 0.3},
               {"before": 4.0, "replay": 0.7, "after": 0.2}]
    assert replayfleet.median_phases(samples) == {"before": 5.0, "replay": 0.7, "after": 0.3}  # one noisy sample
    assert replayfleet.median_phases(samples[:2]) == {"before": 5.5, "replay": 1.5, "after": 0.65}
    s = [rc.Session(RID_A, "a", "d", 0, 10, 1), rc.Session(RID_A, "a", "d", 12, 15, 2),
         rc.Session(RID_B, "b", "d", 5, 6, 3), rc.Session("r3", "c", "d", 14, 20, 4)]
    assert replayfleet.most_at_once(s) == 2
    assert replayfleet.phases({"created_at": "2026-11-24T08:00:00Z", "updated_at": "2026-11-24T08:00:09Z",
                               "server": {"replay": {"started_at": "2026-11-24T08:00:04Z",
                                                     "finished_at": "2026-11-24T08:00:07.5Z"}}}) == \
        {"before": 4.0, "replay": 3.5, "after": 1.5}


def test_the_job_runner_delivers_every_message_a_second_time_once(tmp_path: Path) -> None:
    class Queue:
        queue_name = "restore-replay"

        def __init__(self) -> None:
            self.sent: list[str] = []

        def send_message(self, content: str) -> Any:
            self.sent.append(content)
            return SimpleNamespace(id=f"copy{len(self.sent)}")

    def runner() -> JobRunner:
        r = JobRunner.__new__(JobRunner)
        r.duplicate_delivery, r.duplicates_sent, r.seen_file = True, 0, tmp_path / "jobrunner.seen"
        r.seen = set(r.seen_file.read_text().split()) if r.seen_file.exists() else set()
        return r

    first_runner, q = runner(), Queue()
    first = [SimpleNamespace(id="m1", content="b64-1"), SimpleNamespace(id="m2", content="b64-2")]
    first_runner._duplicate(q, first)  # noqa: SLF001
    first_runner._duplicate(q, [*first, SimpleNamespace(id="copy1", content="b64-1")])  # noqa: SLF001 - seen, copies
    assert q.sent == ["b64-1", "b64-2"] and first_runner.duplicates_sent == 2
    restarted = runner()  # after a SIGKILL: it knows what was copied (the chaos campaign kills it often)
    restarted._duplicate(q, [*first, SimpleNamespace(id="copy2", content="b64-2")])  # noqa: SLF001
    assert q.sent == ["b64-1", "b64-2"]


@pytest.mark.integration
def test_the_session_log_records_every_replay_session_ended_by_its_client_or_by_the_server(tmp_path: Path) -> None:
    with PgCluster("sesslog", tmp_path / "pg") as pg:
        rc.enable_session_log(pg.dsn())
        app = replay.application_name(RID_A, "feedc0de")
        with psycopg.connect(pg.dsn(), application_name=app, autocommit=True) as c:
            c.execute("SELECT pg_sleep(0.2)")
        victim = psycopg.connect(pg.dsn(), application_name=replay.application_name(RID_A, "0dd"), autocommit=True)
        victim.execute("SELECT 1")
        assert [s.runner for s in rc.open_sessions(pg.dsn())] == ["0dd"]
        with psycopg.connect(pg.dsn(), autocommit=True) as admin:  # as DROP DATABASE ... WITH (FORCE) does
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                          (replay.application_name(RID_A, "0dd"),))
        victim.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            sessions = rc.sessions_from_log(rc.read_lines([pg.log_path]))
            if len(sessions) == 2:
                break
            time.sleep(0.2)
    assert sorted(s.runner for s in sessions) == ["0dd", "feedc0de"]
    mine = next(s for s in sessions if s.runner == "feedc0de")
    assert mine.restore_id == RID_A and mine.database == "postgres" and mine.end - mine.start >= 0.2
    assert abs(mine.end - time.time()) < 120  # UTC stamps read as UTC


def test_the_replay_fleet_counts_job_executions_by_what_they_did_and_per_restore(tmp_path: Path) -> None:
    a, b = "r-aaaa", "r-bbbb"
    texts = [f"INFO restore_core.pipeline {a} replay → replay (not_ready): waiting for a replay slot on x",
             f"INFO restore_core.pipeline {a} replay → verify (replayed): replayed into x\n"
             f"INFO restore_core.replay replay slot on x handed to {b}",
             f"INFO restore_core.pipeline {b} replay → verify (replayed): replayed into x",
             f"INFO restore_core.pipeline {a} verify → succeeded (verified): ok",
             "INFO restore_core.replay.job no replay or verify message waiting; nothing to do",
             f"INFO restore_core.pipeline stale or duplicate replay message for {b} (row: x)", ""]
    logs = []
    for i, text in enumerate(texts):
        logs.append(tmp_path / f"replay-{i}.log")
        logs[-1].write_text(text)
    d = replayfleet.executions(logs, [a, b])  # one message per execution (logs written before executions drained)
    assert (d["executions"], d["messages"]) == (7, 5)
    assert d["messages_by_kind"] == {"slot wait": 1, "replay": 2, "verify": 1, "no message": 1,
                                     "stale or duplicate": 1, "other (failed or killed)": 1}
    assert (d["messages_per_restore_mean"], d["messages_per_restore_max"]) == (2.5, 3)


def test_the_replay_fleet_counts_each_message_of_a_draining_execution_and_its_time(tmp_path: Path) -> None:
    from restore_core.replay import MESSAGE_MARKER

    a, b = "r-aaaa", "r-bbbb"
    log = tmp_path / "replay-1.log"
    log.write_text(
        "2026-12-02 15:59:59,000 INFO restore_core.replay.job execution started: settings and clients ready in "
        "0.75 s\n"
        f"2026-12-02 16:00:00,000 INFO restore_core.replay.job {MESSAGE_MARKER} 1: replay message m1 (delivery 1)\n"
        f"2026-12-02 16:00:01,500 INFO restore_core.pipeline {a} replay → verify (replayed): replayed into x\n"
        f"2026-12-02 16:00:01,600 INFO restore_core.replay replay slot on x handed to {b}\n"
        f"2026-12-02 16:00:02,000 INFO restore_core.replay.job {MESSAGE_MARKER} 2: verify message m2 (delivery 1)\n"
        f"2026-12-02 16:00:02,400 INFO restore_core.pipeline {a} verify → succeeded (verified): ok\n"
        f"2026-12-02 16:00:02,500 INFO restore_core.replay.job {MESSAGE_MARKER} 3: replay message m3 (delivery 1)\n"
        f"2026-12-02 16:00:04,000 INFO restore_core.pipeline {b} replay → verify (replayed): replayed into x\n"
        "2026-12-02 16:00:04,250 INFO restore_core.replay.job execution done after 3 messages (0 failed) in 4.3 s: "
        "the queues are empty\n")
    empty = tmp_path / "replay-2.log"
    empty.write_text("2026-12-02 16:00:05,000 INFO restore_core.replay.job no replay or verify message waiting; "
                     "nothing to do\n")
    d = replayfleet.executions([log, empty], [a, b])
    assert (d["executions"], d["messages"], d["messages_per_execution"]) == (2, 3, 1.5)
    assert d["messages_by_kind"] == {"replay": 2, "verify": 1, "no message": 1}
    assert d["message_seconds_mean_by_kind"] == {"replay": 1.875, "verify": 0.5}
    assert d["message_seconds_total"] == 4.2 and d["execution_setup_seconds_mean"] == 0.75
    assert (d["messages_per_restore_mean"], d["messages_per_restore_max"]) == (1.5, 2)
