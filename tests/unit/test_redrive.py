"""Operator re-drive: the current stage's message again, recorded on the timeline; refused when it cannot help."""

from __future__ import annotations

import json

import pytest

from restore_core import api, lease
from restore_core.models import Stage
from restore_core.redrive import RedriveRefused, redrive

from .fakes import Harness, database_body


def test_a_lost_message_is_sent_again_with_the_rows_attempt_and_the_operator_is_on_the_timeline() -> None:
    h = Harness()
    rec = h.submit(database_body())
    lost = h.pending.pop()  # the validate message is lost
    again = redrive(h.deps, h.store.get(rec.id), who="alice")  # type: ignore[arg-type]
    (sent,) = h.collect()
    assert json.loads(sent.text)["attempt"] == json.loads(lost.text)["attempt"] == again.attempt
    assert sent.queue == lost.queue
    assert h.store.timeline(rec.id)[-1].message.startswith("re-driven by alice: validate message sent again")
    h.run(until=Stage.MONITOR)  # the re-sent message carries the restore on, and triggers once
    h.dp.finish_job(h.dp.only_job().name, "Completed")
    assert h.run().status.value == "succeeded" and h.dp.trigger_calls == 1


def test_an_ended_restore_is_not_redriven() -> None:
    h = Harness()
    rec = h.submit(database_body())
    h.run(until=Stage.MONITOR)
    h.dp.finish_job(h.dp.only_job().name, "Completed")
    h.run()
    with pytest.raises(RedriveRefused) as refused:
        redrive(h.deps, h.store.get(rec.id), who="alice")  # type: ignore[arg-type]
    assert refused.value.status == 409 and refused.value.code == "RestoreEnded"
    assert h.collect() == []


def test_a_restore_a_live_replay_runner_holds_is_not_redriven() -> None:
    h = Harness()
    rec = h.submit(database_body())
    lease.acquire(h.deps, h.store.get(rec.id), 300)  # type: ignore[arg-type]
    with pytest.raises(RedriveRefused) as refused:
        redrive(h.deps, h.store.get(rec.id), who="alice")  # type: ignore[arg-type]
    assert refused.value.code == "ReplayRunning"


def test_the_api_answers_202_for_a_redrive_and_404_for_an_unknown_restore() -> None:
    h = Harness()
    rec = h.submit(database_body())
    assert api.redrive(rec.id, deps=h.deps).status == 202
    assert api.redrive("20261124T080000-0000000000", deps=h.deps).status == 404
