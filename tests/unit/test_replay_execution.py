"""One replay-job execution drains the job's queues (restore_core/replay.py ``drain``): several messages per process,
one held at a time, verify before replay, until the queues are empty, the per-execution cap, or the time budget."""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

import pytest

from restore_core import pipeline
from restore_core import replay as job
from restore_core.config import SettingsError
from restore_core.models import Stage

from .fakes import settings

_ids = itertools.count(1)


class Queue:
    """A storage queue as the execution sees it: received messages are hidden until deleted (or they reappear)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.visible: list[Any] = []
        self.hidden: dict[str, Any] = {}
        self.deleted: list[str] = []
        self.sent: list[str] = []

    def add(self, content: str, dequeue_count: int = 0) -> Any:
        m = SimpleNamespace(id=f"m{next(_ids)}", content=content, pop_receipt="r0", dequeue_count=dequeue_count,
                            inserted_on=None)
        self.visible.append(m)
        return m

    def receive_messages(self, *, max_messages: int, visibility_timeout: int) -> list[Any]:
        assert max_messages == 1
        if not self.visible:
            return []
        m = self.visible.pop(0)
        m.dequeue_count += 1
        m.visibility = visibility_timeout
        self.hidden[m.id] = m
        return [m]

    def update_message(self, msg_id: str, pop_receipt: str, *, visibility_timeout: int) -> Any:
        return SimpleNamespace(pop_receipt=pop_receipt + "'")

    def delete_message(self, msg_id: str, pop_receipt: str) -> None:
        del self.hidden[msg_id]
        self.deleted.append(msg_id)

    def send_message(self, content: str) -> None:
        self.sent.append(content)

    def reappear(self) -> None:
        """The visibility timeout of the hidden messages is up (the execution died or gave them up)."""
        self.visible.extend(self.hidden.values())
        self.hidden.clear()


class World:
    def __init__(self, **env: str) -> None:
        self.deps = SimpleNamespace(settings=settings(**env))
        self.queues: dict[str, Queue] = {}
        self.built: list[str] = []
        self.handled: list[tuple[Stage, str]] = []
        self.now = 0.0
        self.slept: list[float] = []
        self.on_sleep: Any = None  # called after each idle pause (a message may arrive meanwhile)

    def queue(self, name: str) -> Queue:
        return self.queues.setdefault(name, Queue(name))

    @property
    def replay(self) -> Queue:
        return self.queue(self.deps.settings.queue("RESTORE_QUEUE_REPLAY"))

    @property
    def verify(self) -> Queue:
        return self.queue(self.deps.settings.queue("RESTORE_QUEUE_VERIFY"))

    def factory(self, _settings: Any, name: str) -> Queue:
        self.built.append(name)
        return self.queue(name)

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        if self.on_sleep is not None:
            self.on_sleep(len(self.slept))

    def drain(self, monkeypatch: pytest.MonkeyPatch, work: Any = None) -> int:
        def handle(stage: Stage, body: str, **kw: Any) -> None:
            assert kw["deps"] is self.deps
            self.handled.append((stage, body))
            if work is not None:
                work(stage, body)

        monkeypatch.setattr(pipeline, "handle", handle)
        return job.drain(self.deps, job.Clients(self.deps.settings, self.factory),  # type: ignore[arg-type]
                         clock=self.clock, sleep=self.sleep)


def test_an_execution_drains_both_queues_verify_first_reusing_its_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    w = World()
    w.replay.add("r1")
    w.replay.add("r2")
    w.verify.add("v1")

    def work(stage: Stage, body: str) -> None:
        if body == "r1":  # a replay that finished: its verify message is taken before the next replay
            w.verify.add("v-after-r1")

    assert w.drain(monkeypatch, work) == 0
    assert [b for _, b in w.handled] == ["v1", "r1", "v-after-r1", "r2"]
    assert not w.replay.visible and not w.replay.hidden and not w.verify.visible and not w.verify.hidden
    assert len(w.replay.deleted) == 2 and len(w.verify.deleted) == 2
    # one client per queue for the whole execution, not one per message or per look
    assert sorted(w.built) == sorted([w.replay.name, w.verify.name])


def test_an_execution_with_nothing_waiting_exits_at_once_when_told_not_to_wait(
        monkeypatch: pytest.MonkeyPatch) -> None:
    w = World(RESTORE_REPLAY_IDLE_SECONDS="0")
    assert w.drain(monkeypatch) == 0
    assert w.handled == [] and w.slept == []


def test_an_execution_keeps_looking_at_empty_queues_for_the_idle_time_then_exits(
        monkeypatch: pytest.MonkeyPatch) -> None:
    w = World()  # RESTORE_REPLAY_IDLE_SECONDS: 10 by default
    assert w.drain(monkeypatch) == 0
    assert w.handled == []
    assert sum(w.slept) == pytest.approx(10.0) and w.slept[:4] == [0.2, 0.4, 0.8, 1.0] and max(w.slept) == 1.0
    assert job.idle_pauses(2.5) == pytest.approx([0.2, 0.4, 0.8, 1.0, 0.1])


def test_a_message_that_arrives_while_an_execution_waits_is_taken_and_the_wait_starts_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    w = World(RESTORE_REPLAY_IDLE_SECONDS="5")
    w.replay.add("r1")

    def arrive(n: int) -> None:
        if n == 3:  # 1.4 s into the first wait: the next restore's replay message
            w.replay.add("r2")

    w.on_sleep = arrive
    assert w.drain(monkeypatch) == 0
    assert [b for _, b in w.handled] == ["r1", "r2"]  # taken by this execution, not left for a new one
    # 1.4 s of waiting before r2, then a whole new wait of 5 s after it
    assert sum(w.slept) == pytest.approx(1.4 + 5.0)
    assert len(w.replay.deleted) == 2


def test_the_idle_wait_never_outlasts_the_time_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    w = World(RESTORE_REPLAY_EXECUTION_SECONDS="60")
    w.now = 31.0  # less than half of the 60 s budget left: no message would be taken, so no waiting for one
    assert job.drain(w.deps, job.Clients(w.deps.settings, w.factory),  # type: ignore[arg-type]
                     clock=w.clock, sleep=w.sleep, started=0.0) == 0
    assert w.slept == []


def test_an_execution_stops_at_its_message_cap_and_leaves_the_rest_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    w = World(RESTORE_REPLAY_MESSAGES_PER_EXECUTION="2")
    for i in range(5):
        w.replay.add(f"r{i}")
    assert w.drain(monkeypatch) == 0
    assert [b for _, b in w.handled] == ["r0", "r1"]
    assert [m.content for m in w.replay.visible] == ["r2", "r3", "r4"]  # never received: the next execution's
    assert not w.replay.hidden


def test_an_execution_takes_no_message_it_may_not_have_the_time_for(monkeypatch: pytest.MonkeyPatch) -> None:
    w = World(RESTORE_REPLAY_EXECUTION_SECONDS="600")
    for i in range(5):
        w.replay.add(f"r{i}")

    def work(stage: Stage, body: str) -> None:
        w.now += 200  # each message takes a third of the replica timeout

    assert w.drain(monkeypatch, work) == 0
    # after r0: 400 s left >= max(300, 2 x 200); after r1: 200 s left < 300 (half the budget): stop
    assert [b for _, b in w.handled] == ["r0", "r1"]
    assert [m.content for m in w.replay.visible] == ["r2", "r3", "r4"] and not w.replay.hidden


def test_the_time_budget_counts_from_the_executions_start_not_from_its_first_message(
        monkeypatch: pytest.MonkeyPatch) -> None:
    w = World(RESTORE_REPLAY_EXECUTION_SECONDS="600")
    for i in range(3):
        w.replay.add(f"r{i}")

    def handle(stage: Stage, body: str, **kw: Any) -> None:
        w.handled.append((stage, body))
        w.now += 10

    monkeypatch.setattr(pipeline, "handle", handle)
    w.now = 290.0  # the set-up took 290 s of the 600 s budget
    job.drain(w.deps, job.Clients(w.deps.settings, w.factory),  # type: ignore[arg-type]
              clock=w.clock, sleep=w.sleep, started=0.0)
    # r0 from 290 to 300 (300 s left: half, taken), r1 to 310 (290 s left: less than half, stop); counted from the
    # first message instead, all three would have been taken
    assert [b for _, b in w.handled] == ["r0", "r1"]


def test_the_time_rule_keeps_half_the_budget_and_twice_the_longest_message() -> None:
    assert job.time_for_another(0, 0, 600)
    assert job.time_for_another(300, 10, 600)
    assert not job.time_for_another(301, 10, 600)  # less than half the budget left
    assert not job.time_for_another(100, 260, 600)  # 500 s left, but the longest message took 260 s
    assert job.time_for_another(100, 250, 600)


def test_one_messages_failure_does_not_lose_the_next(monkeypatch: pytest.MonkeyPatch) -> None:
    w = World()
    bad = w.replay.add("r-bad")
    w.replay.add("r-good")

    def work(stage: Stage, body: str) -> None:
        if body == "r-bad":
            raise RuntimeError("connection to the target lost")

    assert w.drain(monkeypatch, work) == 1  # a failure is reported by the exit code
    assert [b for _, b in w.handled] == ["r-bad", "r-good"]
    assert list(w.replay.hidden) == [bad.id]  # not deleted: it reappears after its visibility timeout
    assert bad.id not in w.replay.deleted and len(w.replay.deleted) == 1
    w.replay.reappear()
    assert w.drain(monkeypatch) == 0  # the next execution handles it again
    assert [b for _, b in w.handled][-1] == "r-bad" and not w.replay.hidden


def test_a_failed_delete_does_not_stop_the_execution(monkeypatch: pytest.MonkeyPatch) -> None:
    w = World()
    first = w.replay.add("r1")
    w.replay.add("r2")
    real_delete = w.replay.delete_message

    def delete(msg_id: str, pop_receipt: str) -> None:
        if msg_id == first.id:
            raise OSError("queue unreachable")
        real_delete(msg_id, pop_receipt)

    monkeypatch.setattr(w.replay, "delete_message", delete)
    assert w.drain(monkeypatch) == 1
    assert [b for _, b in w.handled] == ["r1", "r2"] and list(w.replay.hidden) == [first.id]


def test_a_message_past_its_deliveries_goes_to_poison_and_the_next_is_handled(monkeypatch: pytest.MonkeyPatch) -> None:
    w = World()
    w.verify.add("v-poison", dequeue_count=5)  # received as delivery 6 > RESTORE_MAX_DEQUEUE_COUNT 5
    w.verify.add("v-ok")
    assert w.drain(monkeypatch) == 0
    assert w.queue(w.verify.name + "-poison").sent == ["v-poison"]
    assert [b for _, b in w.handled] == ["v-ok"]


def test_an_execution_holds_one_message_at_a_time_so_a_kill_loses_only_that_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    w = World(RESTORE_REPLAY_LEASE_SECONDS="60")
    for i in range(3):
        w.replay.add(f"r{i}")
    seen: list[tuple[int, int, int]] = []

    def work(stage: Stage, body: str) -> None:
        seen.append((len(w.replay.hidden), len(w.replay.visible), len(w.replay.deleted)))
        assert all(m.visibility == job.visibility_seconds(w.deps.settings) > 60 for m in w.replay.hidden.values())

    w.drain(monkeypatch, work)
    assert seen == [(1, 2, 0), (1, 1, 1), (1, 0, 2)]


def test_the_drain_settings_refuse_bad_values_with_the_setting_named() -> None:
    s = settings()
    assert (s.server.replay_messages_per_execution, s.server.replay_execution_seconds) == (20, 21600.0)
    with pytest.raises(SettingsError, match="RESTORE_REPLAY_MESSAGES_PER_EXECUTION"):
        settings(RESTORE_REPLAY_MESSAGES_PER_EXECUTION="0")
    with pytest.raises(SettingsError, match="RESTORE_REPLAY_EXECUTION_SECONDS"):
        settings(RESTORE_REPLAY_EXECUTION_SECONDS="ten")
    assert s.server.replay_idle_seconds == 10.0
    with pytest.raises(SettingsError, match="RESTORE_REPLAY_IDLE_SECONDS"):
        settings(RESTORE_REPLAY_IDLE_SECONDS="-1")


def test_main_builds_the_dependencies_once_for_the_whole_execution(monkeypatch: pytest.MonkeyPatch) -> None:
    from restore_core import runtime

    calls: list[Any] = []
    deps = SimpleNamespace(settings=settings())
    monkeypatch.setattr(runtime, "deps", lambda: calls.append(1) or deps)
    monkeypatch.setattr(job, "drain", lambda d, *a, **k: 0 if d is deps and k.get("started") is not None else 1)
    assert job.main([]) == 0 and calls == [1]
