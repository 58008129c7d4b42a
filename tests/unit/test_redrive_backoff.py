"""The watchdog backs off re-driving a restore that does not move (found by bench/chaos.py with restores into a
server: job-stage messages queued behind a saturated replay job were re-sent every re-drive slack, each re-send
added to the backlog, and the queues outgrew the job: 230 → 610 messages in 5 minutes for 10 restores, none
terminal). A restore whose message is merely queued must not multiply it; one whose message is lost is still
re-driven, first after the same slack as before."""

from __future__ import annotations

from restore_core import watchdog
from restore_core.messages import Envelope
from restore_core.models import Stage

from .fakes import Harness


def redrives_over(h: Harness, seconds: float, step: float) -> list[float]:
    """Tick the watchdog every ``step`` seconds for ``seconds``, never delivering what it sends (a backlog)."""
    at, t = [], 0.0
    while t < seconds:
        h.clock.advance(step)
        t += step
        if watchdog.tick(h.deps).redriven:
            at.append(t)
        h.collect()
        h.pending.clear()
    return at


def test_a_restore_that_does_not_move_is_redriven_ever_more_rarely_not_every_slack() -> None:
    h = Harness()
    h.submit()
    h.collect()
    h.pending.clear()  # its validate message is stuck (or lost)
    slack = h.settings.redrive_slack_seconds
    at = redrives_over(h, 20 * slack, slack / 10)
    assert at[0] <= slack * 1.1  # the first re-drive as soon as before
    assert 4 <= len(at) <= 6  # slack, 2, 4, 8, 16 slacks: not 20
    gaps = [b - a for a, b in zip(at, at[1:], strict=False)]
    assert all(later >= earlier for earlier, later in zip(gaps, gaps[1:], strict=False))
    assert max(gaps) <= watchdog.REDRIVE_BACKOFF_CAP * slack * 1.1


def test_the_back_off_starts_again_when_the_restore_moves() -> None:
    h = Harness()
    rec = h.submit()
    h.collect()
    h.pending.clear()
    slack = h.settings.redrive_slack_seconds
    assert len(redrives_over(h, 9 * slack, slack / 10)) == 4  # 1, 2, 4, 8 slacks
    h.clock.advance(8 * slack)
    assert watchdog.tick(h.deps).redriven == [rec.id]
    (msg,) = h.collect()
    assert Envelope.decode(msg.text).stage is Stage.VALIDATE
    h.run(until=Stage.MONITOR)  # delivered at last: the row moves on, and the next wait is the slack again
    now = h.clock()
    assert watchdog.redrive_wait(h.deps, h.record(), now) == slack
