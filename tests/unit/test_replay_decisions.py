"""Replay decisions without PostgreSQL: the fenced lease, pg_restore's arguments, and verify's comparisons."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from restore_core import lease, plans
from restore_core.models import ServerTarget, Status, parse_request
from restore_core.pgtarget import TargetConn
from restore_core.stages import replay, verify
from restore_core.store import ConcurrencyError

from .fakes import BI_ID, Harness, database_body, settings

FLEX = "/subscriptions/s2/resourceGroups/rg-target/providers/Microsoft.DBforPostgreSQL/flexibleServers/pgflex-target"


def _restore(h: Harness) -> Any:
    return h.submit(database_body())


def test_a_live_lease_of_the_same_attempt_is_held_and_an_expired_one_is_taken_over() -> None:
    h = Harness()
    rec = _restore(h)
    first = lease.acquire(h.deps, rec, 30)
    with pytest.raises(lease.LeaseHeld):
        lease.acquire(h.deps, rec, 30)
    h.clock.advance(31)  # the first runner died: its lease ran out
    second = lease.acquire(h.deps, rec, 30)
    assert second.owner != first.owner
    # the first runner's next heartbeat finds another owner: it stops
    assert lease.renew(h.deps, first, rec) is False and first.lost.is_set()
    assert lease.renew(h.deps, second, rec) is True and not second.lost.is_set()


def test_periodic_beats_survive_an_exception_and_stop_when_a_beat_says_so() -> None:
    calls: list[int] = []
    done = threading.Event()

    def beat() -> bool:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("storage blinked")  # logged, retried at the next beat
        if len(calls) == 3:
            done.set()
            return False
        return True

    with lease.Periodic("t", 0.01, beat, "beat"):
        assert done.wait(5)
        threading.Event().wait(0.1)  # no beat after the one that said stop
    assert len(calls) == 3


def test_a_heartbeat_calls_on_lost_once_when_its_lease_was_taken_over(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness()
    rec = _restore(h)
    first = lease.acquire(h.deps, rec, 30)
    h.clock.advance(31)
    lease.acquire(h.deps, rec, 30)  # another runner took it over
    lost = threading.Event()
    lost_calls: list[int] = []
    beat = lease.Heartbeat(h.deps, first, rec, on_lost=lambda: (lost_calls.append(1), lost.set()))
    beat.interval = 0.01
    with beat:
        assert lost.wait(5)
        threading.Event().wait(0.1)
    assert lost_calls == [1] and first.lost.is_set()


def test_a_renewal_moves_the_watchdogs_next_check_past_the_lease() -> None:
    h = Harness()
    rec = _restore(h)
    held = lease.acquire(h.deps, rec, 60)
    h.clock.advance(20)
    assert lease.renew(h.deps, held, rec)
    (entry,) = [e for e in h.store.active() if e.restore_id == rec.id]
    assert entry.next_check_at is not None and entry.next_check_at >= held.until


def test_releasing_a_lease_frees_it_only_for_its_owner() -> None:
    h = Harness()
    rec = _restore(h)
    held = lease.acquire(h.deps, rec, 30)
    other = lease.Lease(rec.id, "someone-else", 30, held.until)
    lease.release(h.deps, other)
    assert h.store.get_meta(lease.KIND, rec.id) is not None
    lease.release(h.deps, held)
    assert h.store.get_meta(lease.KIND, rec.id) is None


def test_of_two_runners_that_both_took_an_expired_lease_only_one_gets_past_its_claim() -> None:
    """The fence is the row's ETag: the second claim of the same row version loses."""
    h = Harness()
    rec = _restore(h)
    h.store.update(rec.copy(replay_result={"runner": "a"}))
    with pytest.raises(ConcurrencyError):
        h.store.update(rec.copy(replay_result={"runner": "b"}))


def _ctx(tmp_path: Path, **target: Any) -> Any:
    t = parse_request({"backup_instance": {"id": BI_ID},
                       "target": {"kind": "server", "server_id": FLEX, **target}}).target
    assert isinstance(t, ServerTarget)
    h = Harness()
    conn = TargetConn("h", 5432, "restore-service", "x")
    return replay._Context(h.submit(database_body()), h.deps, t, conn, None, tmp_path,  # type: ignore[arg-type]
                           threading.Event())


def _args(ctx: Any, entry: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setattr(replay, "_tool", lambda deps, name: f"/bin/{name}")
    return replay._restore_args(ctx, entry, Path("/tmp/x.dump"), "db1")


def test_pg_restore_runs_without_owner_and_without_acls_when_roles_are_skipped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = _args(_ctx(tmp_path), {"format": "custom", "data_offsets": True}, monkeypatch)
    assert args[0] == "/bin/pg_restore" and "--no-owner" in args and "--no-acl" in args
    assert not any(a.startswith("--role") for a in args)  # the connecting role owns everything


def test_pg_restore_keeps_grants_with_cleaned_roles_and_acts_as_the_owner(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    args = _args(_ctx(tmp_path, roles="clean", owner="app_owner"), {"format": "custom", "data_offsets": True},
                 monkeypatch)
    assert "--no-owner" in args and "--no-acl" not in args and "--role=app_owner" in args


def test_parallel_pg_restore_only_for_archives_with_data_offsets(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = _ctx(tmp_path)
    assert any(a.startswith("--jobs=") for a in _args(ctx, {"format": "custom", "data_offsets": True}, monkeypatch))
    assert not any(a.startswith("--jobs=") for a in _args(ctx, {"format": "custom", "data_offsets": False},
                                                          monkeypatch))


def test_a_plain_dump_is_replayed_with_psql_without_stopping_at_the_first_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = _args(_ctx(tmp_path), {"format": "plain"}, monkeypatch)
    assert args[0] == "/bin/psql" and "ON_ERROR_STOP=0" in args


def test_psql_errors_of_a_plain_dump_split_into_ownership_warnings_and_failures(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    stderr = ("psql:/tmp/x.sql:40: ERROR:  role \"app_owner\" does not exist\n"
              "psql:/tmp/x.sql:90: ERROR:  relation \"missing\" does not exist\n")
    diag = replay._diagnose(ctx, {"format": "plain"}, stderr)
    assert [w.code for w in diag.warnings] == ["plain-dump-ownership"]
    assert [f.message for f in diag.failures] == ['relation "missing" does not exist']


def test_verify_reports_tables_whose_rows_differ_from_the_archive() -> None:
    counts = {"public.items": 50, "public.events": 59}
    archive = {"rows": {"public.items": 50, "public.events": 60, "public.gone": 3}}
    tally = verify._Tally(plans.ArchiveRows(iter(sorted(archive["rows"].items())), True))
    for name in sorted(counts):
        tally.counted(name, counts[name])
    assert tally.mismatches == ["public.events: 59 rows in the target, 60 in the archive"]


def test_verify_problems_name_missing_objects_mismatches_and_failed_checks() -> None:
    results = [{"database": "db1", "missing": ["table public.t"], "count_mismatches": ["public.x: 1 vs 2"]}]
    checks = [{"name": "c1", "ok": False, "got": "49", "expect": "50"},
              {"name": "c2", "ok": False, "error": "cannot execute DELETE in a read-only transaction"},
              {"name": "c3", "ok": True, "got": "1", "expect": "1"}]
    problems = verify._problems(results, checks)
    assert problems == ["db1: table public.t is missing", "db1: public.x: 1 vs 2",
                        "check c1: got '49', expected '50'",
                        "check c2: error cannot execute DELETE in a read-only transaction"]


def test_at_most_the_configured_number_of_replays_load_into_one_server() -> None:
    h = Harness(settings=settings(RESTORE_REPLAY_MAX_PER_SERVER="2"))
    a, b, c = (h.submit(database_body(idempotency_key=f"k{i}")) for i in range(3))
    assert replay.take_slot(h.deps, a, FLEX) is not None
    assert replay.take_slot(h.deps, b, FLEX) is not None
    assert replay.take_slot(h.deps, c, FLEX) is None  # the third waits
    assert replay.take_slot(h.deps, a, FLEX) is not None  # a re-driven replay finds its own slot again
    other = FLEX.replace("pgflex-target", "pgflex-other")
    assert replay.take_slot(h.deps, c, other) is not None  # another server has its own slots
    replay.release_slot(h.deps, a, replay.slot_keys(FLEX, 2)[0])
    assert replay.take_slot(h.deps, c, FLEX) is not None


def test_a_slot_of_a_restore_that_ended_is_taken_over() -> None:
    h = Harness(settings=settings(RESTORE_REPLAY_MAX_PER_SERVER="1"))
    a, b = (h.submit(database_body(idempotency_key=f"k{i}")) for i in range(2))
    assert replay.take_slot(h.deps, a, FLEX) is not None
    h.store.update(h.store.get(a.id).copy(status=Status.FAILED, stage=None))  # type: ignore[union-attr]
    assert replay.take_slot(h.deps, b, FLEX) is not None


def test_an_extension_that_is_not_allow_listed_gets_the_az_fix_for_the_servers_own_subscription(
        tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    stderr = ('pg_restore: error: could not execute query: ERROR:  extension "pg_cron" is not allow-listed for users '
              'in Azure Database for PostgreSQL\nCommand was: CREATE EXTENSION IF NOT EXISTS pg_cron;\n')
    (failure,) = replay._diagnose(ctx, {"format": "custom"}, stderr).failures
    assert failure.code == "extension-not-allowed"
    assert "--resource-group rg-target --server-name pgflex-target" in failure.fix
    assert "--subscription s2" in failure.fix


def test_a_job_execution_takes_a_verify_message_before_a_replay_message(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from restore_core import replay as replay_job
    from restore_core import runtime
    from restore_core.models import Stage

    s = settings()
    waiting = {s.queue("RESTORE_QUEUE_REPLAY"): "replay-msg", s.queue("RESTORE_QUEUE_VERIFY"): "verify-msg"}

    class Queue:
        def __init__(self, name: str) -> None:
            self.name = name

        def receive_messages(self, **_: Any) -> list[Any]:
            return [SimpleNamespace(content=waiting[self.name])]

    monkeypatch.setattr(runtime, "queue_client", lambda _s, name: Queue(name))
    taken = replay_job._take(replay_job.Clients(s), 30)
    assert taken is not None
    assert (taken[0], taken[3].content) == (Stage.VERIFY, "verify-msg")


def _in_replay(h: Harness, rec: Any) -> Any:
    from restore_core.models import Stage

    return h.store.update(h.store.get(rec.id).copy(stage=Stage.REPLAY))  # type: ignore[union-attr]


def _replay_messages(h: Harness) -> list[tuple[str, int, float]]:
    import json

    q = h.settings.queue("RESTORE_QUEUE_REPLAY")
    return [(json.loads(m.text)["restore_id"], json.loads(m.text)["attempt"], m.delay_seconds)
            for m in h.queues.take() if m.queue == q]


def test_a_released_replay_slot_wakes_the_longest_waiting_restore_at_once() -> None:
    h = Harness(settings=settings(RESTORE_REPLAY_MAX_PER_SERVER="1"))
    a, b, c = (_in_replay(h, h.submit(database_body(idempotency_key=f"k{i}"))) for i in range(3))
    h.queues.take()
    slot = replay.take_slot(h.deps, a, FLEX)
    assert slot is not None
    h.clock.advance(1)
    assert replay._wait_for_slot(h.deps, b, FLEX) is None
    h.clock.advance(1)
    assert replay._wait_for_slot(h.deps, c, FLEX) is None
    assert _replay_messages(h) == []
    for w in (b, c):  # their waits' transitions are written (the pipeline adds one to the attempt)
        h.store.update(h.store.get(w.id).copy(attempt=w.attempt + 1))  # type: ignore[union-attr]
    replay.release_slot(h.deps, a, slot, FLEX)
    # b waited longest: its message comes now, with the attempt its wait's transition gave it; c keeps waiting
    assert _replay_messages(h) == [(b.id, b.attempt + 1, 0)]
    assert replay.take_slot(h.deps, b, FLEX) is not None
    assert replay.take_slot(h.deps, c, FLEX) is None  # the hand-over never opens a slot beyond the limit
    assert replay.hand_over(h.deps, FLEX) == c.id  # c is still registered
    assert replay.hand_over(h.deps, FLEX) is None  # and handed over once


def test_a_hand_over_skips_waiters_that_moved_on_and_other_servers_waiters() -> None:
    from restore_core.models import Stage

    h = Harness(settings=settings(RESTORE_REPLAY_MAX_PER_SERVER="1"))
    a, b, c, d = (_in_replay(h, h.submit(database_body(idempotency_key=f"k{i}"))) for i in range(4))
    h.queues.take()
    assert replay.take_slot(h.deps, a, FLEX) is not None
    for i, w in enumerate((b, c)):
        h.clock.advance(1)
        assert replay._wait_for_slot(h.deps, w, FLEX) is None, i
    other = FLEX.replace("pgflex-target", "pgflex-other")
    assert replay.take_slot(h.deps, a, other) is not None
    assert replay._wait_for_slot(h.deps, d, other) is None
    b_now = h.store.get(b.id)
    assert b_now is not None
    h.store.update(b_now.copy(stage=Stage.VERIFY, attempt=b.attempt + 2))  # b got a slot another way and moved on
    assert replay.hand_over(h.deps, FLEX) == c.id
    assert [m[0] for m in _replay_messages(h)] == [c.id]


def test_a_slot_released_while_a_restore_registers_is_not_missed() -> None:
    h = Harness(settings=settings(RESTORE_REPLAY_MAX_PER_SERVER="1"))
    a, b = (_in_replay(h, h.submit(database_body(idempotency_key=f"k{i}"))) for i in range(2))
    slot = replay.take_slot(h.deps, a, FLEX)
    assert slot is not None and replay.take_slot(h.deps, b, FLEX) is None  # b's first look: no slot
    replay.release_slot(h.deps, a, slot, FLEX)  # released before b registered: nobody to hand it to
    assert replay._wait_for_slot(h.deps, b, FLEX) == slot  # b's second look, after registering, finds it
    assert replay.hand_over(h.deps, FLEX) is None  # and b is no longer registered


def test_a_waiter_whose_wait_is_not_written_yet_gets_its_hand_over_a_little_later() -> None:
    h = Harness(settings=settings(RESTORE_REPLAY_MAX_PER_SERVER="1"))
    a, b = (_in_replay(h, h.submit(database_body(idempotency_key=f"k{i}"))) for i in range(2))
    h.queues.take()
    slot = replay.take_slot(h.deps, a, FLEX)
    assert slot is not None and replay._wait_for_slot(h.deps, b, FLEX) is None
    replay.release_slot(h.deps, a, slot, FLEX)  # b's row still has its old attempt: a message now would be stale
    assert _replay_messages(h) == [(b.id, b.attempt + 1, replay.HAND_OVER_GRACE_SECONDS)]


def _replayed(monkeypatch: pytest.MonkeyPatch) -> Any:
    from types import SimpleNamespace

    from restore_core.transitions import Outcome, StageResult

    done = StageResult(Outcome.REPLAYED, "replayed")
    monkeypatch.setattr(replay, "_run_in_slot", lambda rec, deps, claim: done)
    target = parse_request({"backup_instance": {"id": BI_ID}, "target": {"kind": "server", "server_id": FLEX}}).target
    monkeypatch.setattr(replay, "request_of", lambda rec: SimpleNamespace(target=target))
    return done


def test_a_restore_that_got_a_slot_after_waiting_is_no_longer_handed_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from restore_core import locks

    h = Harness(settings=settings(RESTORE_REPLAY_MAX_PER_SERVER="1"))
    a, b, c = (_in_replay(h, h.submit(database_body(idempotency_key=f"k{i}"))) for i in range(3))
    server = FLEX
    slot = replay.take_slot(h.deps, a, server)
    assert slot is not None and replay._wait_for_slot(h.deps, b, server) is None
    h.clock.advance(1)
    assert replay._wait_for_slot(h.deps, c, server) is None
    for w in (b, c):  # their waits are written
        h.store.update(h.store.get(w.id).copy(attempt=w.attempt + 1,  # type: ignore[union-attr]
                                              replay_result={"waiting_for_slot": "2026-12-02T00:00:00+00:00"}))
    locks.release_keys(h.deps, a.id, [slot])  # freed without a hand-over (a crash after the release)
    h.queues.take()
    done = _replayed(monkeypatch)
    b_now = h.store.get(b.id)
    assert b_now is not None
    assert replay.run(b_now, h.deps, lambda changes: b_now) is done  # b's back-off found the slot
    assert [m[0] for m in _replay_messages(h)] == [c.id]  # b's release woke c, not b itself


def test_a_failed_hand_over_does_not_fail_the_replay(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(settings=settings(RESTORE_REPLAY_MAX_PER_SERVER="1"))
    a = _in_replay(h, h.submit(database_body(idempotency_key="k0")))
    done = _replayed(monkeypatch)

    def broken(deps: Any, server_id: str) -> None:
        raise RuntimeError("table unavailable")

    monkeypatch.setattr(replay, "hand_over", broken)
    assert replay.run(a, h.deps, lambda changes: a) is done
    assert replay.take_slot(h.deps, a, FLEX) is not None
