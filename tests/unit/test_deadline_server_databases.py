"""A restore into a server that runs out of time while replaying or verifying names the databases it may have left
on the target (found by bench/chaos.py: ten server restores failed DeadlineExceeded in verify and left twenty marked
databases that no error mentioned)."""

from __future__ import annotations

from restore_core import watchdog
from restore_core.models import Stage, Status

from .fakes import Harness, database_body


def _expire_at(stage: Stage) -> str:
    h = Harness()
    rec = h.submit(database_body(deadline_hours=1))
    h.pending.clear()
    h.store.update(h.record().copy(stage=stage, server_plan={"names": {"appdb": "appdb_x1", "inventory": "inv_x1"}}))
    h.clock.advance(3601)
    assert watchdog.tick(h.deps).expired == [rec.id]
    done = h.record()
    assert done.status is Status.FAILED and done.error_code == "DeadlineExceeded"
    return done.error_fix or ""


def test_a_server_restore_expired_in_verify_or_replay_names_the_databases_it_may_have_created() -> None:
    for stage in (Stage.VERIFY, Stage.REPLAY):
        fix = _expire_at(stage)
        assert "appdb_x1, inv_x1" in fix and "carry its mark" in fix, fix


def test_a_restore_expired_before_any_replay_names_no_database() -> None:
    assert "carry its mark" not in _expire_at(Stage.INVENTORY)
