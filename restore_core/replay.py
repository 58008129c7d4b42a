"""The replay job's entrypoint: ``python -m restore_core.replay``.

An Azure Container Apps event-driven job (KEDA ``azure-queue`` scale rules on the replay and verify queues: the
stages whose registry ``consumer`` is ``job``) starts one execution per waiting message; locally
``localdev.jobrunner`` starts this module as a process per message. One execution:
1. receives ONE message from the replay queue (else the verify queue), hidden for one and a half
   ``RESTORE_REPLAY_LEASE_SECONDS`` and kept hidden by a renewal thread while the work runs (a replica that dies lets
   the message reappear when that time is up);
2. a message delivered more often than ``RESTORE_MAX_DEQUEUE_COUNT`` goes to the ``-poison`` queue (the pipeline has
   marked its restore failed on the last allowed delivery), as the Functions host does for Function queues;
3. runs the replay stage through the same pipeline as every Function stage (:func:`restore_core.pipeline.handle`:
   envelope, stale/duplicate checks, claim, transitions, next message);
4. deletes the message when the pipeline returned; an error exits non-zero and leaves the message to reappear.
Exit codes: 0 done (or no message waiting), 1 the stage raised (the message will be delivered again).
"""

from __future__ import annotations

import sys
from typing import Any

from . import lease, pipeline, runtime, telemetry
from .models import Stage
from .stages import registry

log = telemetry.get_logger("replay.job")


class _Renewer(lease.Periodic):
    """Keeps the received message hidden while the replay runs (every third of the visibility time)."""

    def __init__(self, client: Any, msg: Any, seconds: int) -> None:
        self.client, self.msg, self.seconds = client, msg, seconds
        self.pop_receipt = msg.pop_receipt
        super().__init__("replay-visibility", max(1.0, seconds / 3), self._hide, f"keep replay message {msg.id} hidden")

    def _hide(self) -> None:
        updated = self.client.update_message(self.msg.id, self.pop_receipt, visibility_timeout=self.seconds)
        self.pop_receipt = updated.pop_receipt


def _take(settings: Any, seconds: int) -> tuple[Stage, str, Any, Any] | None:
    """One waiting message of the job's stages (replay first, then verify): (stage, queue, client, message)."""
    for spec in registry.JOB_STAGES:
        queue = settings.queue(spec.queue_setting)
        client = runtime.queue_client(settings, queue)
        msg = next(iter(client.receive_messages(max_messages=1, visibility_timeout=seconds)), None)
        if msg is not None:
            return spec.stage, queue, client, msg
    return None


def main(argv: list[str] | None = None) -> int:
    deps = runtime.deps()
    settings = deps.settings
    # hidden for half a lease longer than the lease: after a replica dies, its lease has expired by the time the
    # message reappears, so the next execution takes over at once instead of seeing a live lease
    seconds = int(max(5, settings.server.replay_lease_seconds) * 1.5) + 5
    taken = _take(settings, seconds)
    if taken is None:
        log.info("no replay or verify message waiting; nothing to do")
        return 0
    stage, queue, client, msg = taken
    if (msg.dequeue_count or 1) > settings.max_dequeue_count:
        runtime.queue_client(settings, queue + "-poison").send_message(msg.content)
        client.delete_message(msg.id, msg.pop_receipt)
        log.error("%s message %s was delivered %s times; moved to %s-poison", stage.value, msg.id, msg.dequeue_count,
                  queue)
        return 0
    with _Renewer(client, msg, seconds) as renewer:
        try:
            pipeline.handle(stage, msg.content, message_id=msg.id, dequeue_count=msg.dequeue_count or 1,
                            deps=deps, inserted_at=msg.inserted_on)
        except Exception:
            log.exception("%s of message %s failed; it will be delivered again", stage.value, msg.id)
            return 1
    client.delete_message(msg.id, renewer.pop_receipt)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
