"""The replay job's entrypoint: ``python -m restore_core.replay``.

An Azure Container Apps event-driven job (KEDA ``azure-queue`` scale rules on the replay and verify queues: the
stages whose registry ``consumer`` is ``job``) starts executions while messages wait (up to its parallelism);
locally ``localdev.jobrunner`` starts this module as a process the same way. One execution builds its settings and
storage clients once, then drains the job's queues, one message at a time:
1. receives ONE message from the verify queue (else the replay queue: a finished load is closer to done, and a
   verify must not wait behind replays and replay-slot re-checks), hidden for one and a half
   ``RESTORE_REPLAY_LEASE_SECONDS`` and kept hidden by a renewal thread while the work runs (a replica that dies lets
   the message reappear when that time is up);
2. a message delivered more often than ``RESTORE_MAX_DEQUEUE_COUNT`` goes to the ``-poison`` queue (the pipeline has
   marked its restore failed on the last allowed delivery), as the Functions host does for Function queues;
3. runs the stage through the same pipeline as every Function stage (:func:`restore_core.pipeline.handle`:
   envelope, stale/duplicate checks, claim, transitions, next message);
4. deletes the message when the pipeline returned; an error leaves the message to reappear (and is counted);
5. takes the next message, until the queues have stayed empty for ``RESTORE_REPLAY_IDLE_SECONDS`` (default 10 s,
   looking every 0.2 s doubling to 1 s: a message that arrives meanwhile is taken at once instead of waiting for
   the scaler's next poll and a new execution's start; 0 exits as soon as they are empty),
   ``RESTORE_REPLAY_MESSAGES_PER_EXECUTION`` messages were handled, or the time budget would be exceeded: another
   message is taken (or waited for) only while at least half of ``RESTORE_REPLAY_EXECUTION_SECONDS`` (the job's
   replica timeout, counted from :func:`main`'s start) and twice the longest message so far are left
   (:func:`time_for_another`), so a message taken late still has at least half the time the first one had.
Only one message is held at a time: an execution killed at any point loses at most the one it holds, which
reappears after its visibility timeout (its fenced lease expires first), as before.
Exit codes: 0 every message handled (or none waiting), 1 for at least one message a stage raised or the queue call
that ends it (delete, poison move) failed (each such message will be delivered again; a finished stage's message is
then stale and dropped after one row read).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from . import lease, pipeline, runtime, telemetry
from .deps import Deps
from .models import Stage
from .stages import registry

log = telemetry.get_logger("replay.job")

#: The marker each message's first log line of an execution starts with (bench/replayfleet.py counts messages by it).
MESSAGE_MARKER = "execution message"


class _Renewer(lease.Periodic):
    """Keeps the received message hidden while the replay runs (every third of the visibility time)."""

    def __init__(self, client: Any, msg: Any, seconds: int) -> None:
        self.client, self.msg, self.seconds = client, msg, seconds
        self.pop_receipt = msg.pop_receipt
        super().__init__("replay-visibility", max(1.0, seconds / 3), self._hide, f"keep replay message {msg.id} hidden")

    def _hide(self) -> None:
        updated = self.client.update_message(self.msg.id, self.pop_receipt, visibility_timeout=self.seconds)
        self.pop_receipt = updated.pop_receipt


#: The order an execution looks at the job's queues: the later stage first (verify, then replay).
TAKE_ORDER: tuple[registry.StageSpec, ...] = tuple(reversed(registry.JOB_STAGES))


class Clients:
    """The execution's queue clients, one per queue, built on first use and reused for every message after."""

    def __init__(self, settings: Any, factory: Callable[[Any, str], Any] | None = None) -> None:
        self.settings = settings
        self._factory = factory or runtime.queue_client
        self._clients: dict[str, Any] = {}

    def get(self, name: str) -> Any:
        if name not in self._clients:
            self._clients[name] = self._factory(self.settings, name)
        return self._clients[name]


def _take(clients: Clients, seconds: int) -> tuple[Stage, str, Any, Any] | None:
    """One waiting message of the job's stages (verify first, then replay): (stage, queue, client, message)."""
    for spec in TAKE_ORDER:
        queue = clients.settings.queue(spec.queue_setting)
        client = clients.get(queue)
        msg = next(iter(client.receive_messages(max_messages=1, visibility_timeout=seconds)), None)
        if msg is not None:
            return spec.stage, queue, client, msg
    return None


def visibility_seconds(settings: Any) -> int:
    """How long a received message stays hidden (renewed every third of it while the work runs): half a lease longer
    than the lease, so after a replica dies its lease has expired by the time the message reappears, and the next
    execution takes over at once instead of seeing a live lease."""
    return int(max(5, settings.server.replay_lease_seconds) * 1.5) + 5


def time_for_another(elapsed: float, longest: float, budget: float) -> bool:
    """Whether an execution that has run ``elapsed`` seconds of its ``budget`` (the replica timeout), its longest
    message so far having taken ``longest``, takes another message: at least half the budget and twice the longest
    message must be left. The first message always gets the whole budget, as before draining."""
    return budget - elapsed >= max(budget / 2, 2 * longest)


def _handle(deps: Deps, taken: tuple[Stage, str, Any, Any], seconds: int, clients: Clients) -> bool:
    """One message through the pipeline; True when it is done with (deleted), False when it will reappear."""
    stage, queue, client, msg = taken
    settings = deps.settings
    if (msg.dequeue_count or 1) > settings.max_dequeue_count:
        clients.get(queue + "-poison").send_message(msg.content)
        client.delete_message(msg.id, msg.pop_receipt)
        log.error("%s message %s was delivered %s times; moved to %s-poison", stage.value, msg.id, msg.dequeue_count,
                  queue)
        return True
    with _Renewer(client, msg, seconds) as renewer:
        try:
            pipeline.handle(stage, msg.content, message_id=msg.id, dequeue_count=msg.dequeue_count or 1,
                            deps=deps, inserted_at=msg.inserted_on)
        except Exception:
            log.exception("%s of message %s failed; it will be delivered again", stage.value, msg.id)
            return False
    client.delete_message(msg.id, renewer.pop_receipt)
    return True


def idle_pauses(idle: float) -> list[float]:
    """The pauses between looks at the empty queues during an idle wait of ``idle`` seconds: 0.2 s doubling to 1 s
    (two receive calls each look; about 12 looks for the default 10 s), the last one cut to end on time."""
    pauses: list[float] = []
    left, pause = idle, 0.2
    while left > 1e-9:
        pauses.append(min(pause, left))
        left -= pauses[-1]
        pause = min(pause * 2, 1.0)
    return pauses


def drain(deps: Deps, clients: Clients | None = None, clock: Callable[[], float] = time.monotonic,
          started: float | None = None, sleep: Callable[[float], None] = time.sleep) -> int:
    """The execution's loop (see the module docstring); returns the exit code. ``started``: when the execution began
    on ``clock`` (its set-up counts against the time budget too); by default, now."""
    settings = deps.settings
    clients = clients or Clients(settings)
    seconds = visibility_seconds(settings)
    cap = settings.server.replay_messages_per_execution
    budget = settings.server.replay_execution_seconds
    idle = settings.server.replay_idle_seconds
    started = clock() if started is None else started
    handled = failed = 0
    longest = 0.0
    why = "the queues are empty"
    pauses: list[float] | None = None  # the idle wait's remaining pauses while the queues are empty
    while True:
        if handled >= cap:
            why = f"{cap} messages handled (RESTORE_REPLAY_MESSAGES_PER_EXECUTION)"
            break
        if handled and not time_for_another(clock() - started, longest, budget):
            why = (f"{clock() - started:.0f} s of the {budget:.0f} s budget spent (RESTORE_REPLAY_EXECUTION_SECONDS; "
                   f"longest message {longest:.0f} s)")
            break
        taken = _take(clients, seconds)
        if taken is None:
            if pauses is None:
                pauses = idle_pauses(idle)
            if not pauses or not time_for_another(clock() - started, longest, budget):
                why = (f"the queues stayed empty for {idle:g} s (RESTORE_REPLAY_IDLE_SECONDS)" if idle
                       else "the queues are empty")
                break
            sleep(pauses.pop(0))
            continue
        pauses = None
        handled += 1
        log.info("%s %d: %s message %s (delivery %s)", MESSAGE_MARKER, handled, taken[0].value, taken[3].id,
                 taken[3].dequeue_count)
        t0 = clock()
        try:
            done = _handle(deps, taken, seconds, clients)
        except Exception:  # the poison move or the delete failed: the message reappears, the next one is taken
            log.exception("%s message %s: its queue call failed; it will be delivered again", taken[0].value,
                          taken[3].id)
            done = False
        failed += not done
        longest = max(longest, clock() - t0)
    if handled == 0:
        log.info("no replay or verify message waiting; nothing to do")
    else:
        log.info("execution done after %d messages (%d failed) in %.1f s: %s", handled, failed, clock() - started, why)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    t0 = time.monotonic()
    deps = runtime.deps()  # settings, storage clients, telemetry: once for every message of this execution
    log.info("execution started: settings and clients ready in %.2f s", time.monotonic() - t0)
    return drain(deps, started=t0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
