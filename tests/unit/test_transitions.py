"""The transition table, exhaustively: every (stage, outcome) pair is declared or raises IllegalTransition."""

from __future__ import annotations

import itertools

import pytest

from restore_core.models import TERMINAL, Stage, Status
from restore_core.stages.registry import CANCELLABLE
from restore_core.transitions import FIRST_STAGE, TRANSITIONS, IllegalTransition, Outcome, next_step

EXPECTED: dict[tuple[Stage, Outcome], tuple[Stage | None, Status]] = {
    (Stage.VALIDATE, Outcome.READY): (Stage.TRIGGER, Status.RESTORING),
    (Stage.VALIDATE, Outcome.NEEDS_REHYDRATION): (Stage.REHYDRATE, Status.REHYDRATING),
    (Stage.VALIDATE, Outcome.REJECTED): (None, Status.REJECTED),
    (Stage.VALIDATE, Outcome.FAILED): (None, Status.FAILED),
    (Stage.VALIDATE, Outcome.NOT_READY): (Stage.VALIDATE, Status.VALIDATING),
    (Stage.REHYDRATE, Outcome.REHYDRATION_STARTED): (Stage.WAIT, Status.WAITING),
    (Stage.REHYDRATE, Outcome.ALREADY_REHYDRATED): (Stage.TRIGGER, Status.RESTORING),
    (Stage.REHYDRATE, Outcome.FAILED): (None, Status.FAILED),
    (Stage.REHYDRATE, Outcome.NOT_READY): (Stage.REHYDRATE, Status.REHYDRATING),
    # one-request archive restore: the rehydrate stage starts the job, wait follows its rehydration phase
    (Stage.REHYDRATE, Outcome.TRIGGERED): (Stage.WAIT, Status.WAITING),
    (Stage.REHYDRATE, Outcome.ADOPTED): (Stage.WAIT, Status.WAITING),
    (Stage.WAIT, Outcome.NOT_READY): (Stage.WAIT, Status.WAITING),
    (Stage.WAIT, Outcome.REHYDRATED): (Stage.TRIGGER, Status.RESTORING),
    (Stage.WAIT, Outcome.RESTORING): (Stage.MONITOR, Status.RESTORING),
    (Stage.WAIT, Outcome.SUCCEEDED): (None, Status.SUCCEEDED),
    (Stage.WAIT, Outcome.CANCELLED): (None, Status.FAILED),
    (Stage.WAIT, Outcome.FAILED): (None, Status.FAILED),
    (Stage.TRIGGER, Outcome.TRIGGERED): (Stage.MONITOR, Status.RESTORING),
    (Stage.TRIGGER, Outcome.ADOPTED): (Stage.MONITOR, Status.RESTORING),
    (Stage.TRIGGER, Outcome.NOT_READY): (Stage.TRIGGER, Status.RESTORING),
    (Stage.TRIGGER, Outcome.FAILED): (None, Status.FAILED),
    (Stage.MONITOR, Outcome.NOT_READY): (Stage.MONITOR, Status.RESTORING),
    (Stage.MONITOR, Outcome.SUCCEEDED): (None, Status.SUCCEEDED),
    (Stage.MONITOR, Outcome.FAILED): (None, Status.FAILED),
    (Stage.MONITOR, Outcome.CANCELLED): (None, Status.FAILED),
    # restore into a server: the vault's files job ends → inventory → replay (job) → verify (+ clean-up)
    (Stage.MONITOR, Outcome.STAGED): (Stage.INVENTORY, Status.RESTORING),
    (Stage.WAIT, Outcome.STAGED): (Stage.INVENTORY, Status.RESTORING),
    (Stage.INVENTORY, Outcome.PLANNED): (Stage.REPLAY, Status.RESTORING),
    (Stage.INVENTORY, Outcome.NOT_READY): (Stage.INVENTORY, Status.RESTORING),
    (Stage.INVENTORY, Outcome.FAILED): (None, Status.FAILED),
    (Stage.REPLAY, Outcome.REPLAYED): (Stage.VERIFY, Status.RESTORING),
    (Stage.REPLAY, Outcome.NOT_READY): (Stage.REPLAY, Status.RESTORING),
    (Stage.REPLAY, Outcome.FAILED): (None, Status.FAILED),
    (Stage.VERIFY, Outcome.SUCCEEDED): (None, Status.SUCCEEDED),
    (Stage.VERIFY, Outcome.NOT_READY): (Stage.VERIFY, Status.RESTORING),
    (Stage.VERIFY, Outcome.FAILED): (None, Status.FAILED),
}

ALL_PAIRS = list(itertools.product(Stage, Outcome))


def test_table_is_exactly_the_documented_transitions() -> None:
    assert TRANSITIONS == EXPECTED


@pytest.mark.parametrize(("stage", "outcome"), ALL_PAIRS, ids=[f"{s.value}-{o.value}" for s, o in ALL_PAIRS])
def test_every_pair_is_declared_or_illegal(stage: Stage, outcome: Outcome) -> None:
    if (stage, outcome) in EXPECTED:
        assert next_step(stage, outcome) == EXPECTED[(stage, outcome)]
    else:
        with pytest.raises(IllegalTransition, match=f"stage {stage.value} cannot end with outcome {outcome.value}"):
            next_step(stage, outcome)


@pytest.mark.parametrize(("stage", "outcome"), list(EXPECTED), ids=[f"{s.value}-{o.value}" for s, o in EXPECTED])
def test_terminal_status_has_no_next_stage_and_active_status_has_one(stage: Stage, outcome: Outcome) -> None:
    next_stage, status = next_step(stage, outcome)
    assert (next_stage is None) == status.terminal


def test_not_ready_always_stays_on_the_same_stage() -> None:
    for stage in Stage:
        if (stage, Outcome.NOT_READY) in TRANSITIONS:
            assert next_step(stage, Outcome.NOT_READY)[0] is stage
    assert {s for s, o in TRANSITIONS if o is Outcome.NOT_READY} == set(Stage)


def test_every_stage_can_fail_and_every_stage_is_reachable() -> None:
    assert all((s, Outcome.FAILED) in TRANSITIONS for s in Stage)
    reachable, frontier = {FIRST_STAGE}, [FIRST_STAGE]
    while frontier:
        stage = frontier.pop()
        for (s, _), (nxt, _) in TRANSITIONS.items():
            if s is stage and nxt is not None and nxt not in reachable:
                reachable.add(nxt)
                frontier.append(nxt)
    assert reachable == set(Stage)


def test_terminal_statuses_are_the_four_documented_ones() -> None:
    assert TERMINAL == {Status.SUCCEEDED, Status.FAILED, Status.REJECTED, Status.CANCELLED}
    assert all(s.terminal for s in TERMINAL)
    assert not any(s.terminal for s in Status if s not in TERMINAL)


def test_only_stages_before_the_trigger_are_cancellable() -> None:
    assert CANCELLABLE == {Stage.VALIDATE, Stage.REHYDRATE, Stage.WAIT}
