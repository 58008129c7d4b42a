"""The local Functions host counts its own queue transactions (used by the benchmarks' per-restore storage cost)."""

from __future__ import annotations

import time
from typing import Any

from localdev.funchost import FunctionsHost
from tests.localdev.conftest import APPS, Queues, wait_for

RARE = "0 0 0 1 1 *"


def _host_json() -> dict[str, Any]:
    return {"version": "2.0", "extensions": {"queues": {"batchSize": 4, "newBatchThreshold": 0,
                                                        "maxPollingInterval": "00:00:00.5",
                                                        "visibilityTimeout": "00:00:00", "maxDequeueCount": 2}}}


def _busy(h: FunctionsHost) -> dict[str, int]:
    return {k: v for k, v in h.storage_counts().items() if k != "receive_empty"}


def _settle(h: FunctionsHost, quiet: float = 0.8, timeout: float = 60.0) -> None:
    """Wait until no listener has done anything but empty receives for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    seen = _busy(h)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = _busy(h)
        if now == seen:
            return
        seen = now
    raise AssertionError(f"the host kept working for {timeout}s: {seen}")


def test_host_counts_receive_delete_update_and_poison_per_queue(queues: Queues) -> None:
    s = {"AzureWebJobsStorage": queues.conn, "WORK_QUEUE": queues.name("work"), "OUT_QUEUE": queues.name("out"),
         "TICK_SCHEDULE": RARE}
    with FunctionsHost(APPS / "basic", s, host_json=_host_json()) as h:
        for i in range(3):
            queues.send(s["WORK_QUEUE"], {"tag": f"ok{i}"})
        queues.send(s["WORK_QUEUE"], {"tag": "bad", "action": "fail"})
        wait_for(lambda: queues.drain(s["WORK_QUEUE"] + "-poison"), what="poison message")
        wait_for(lambda: h.storage_counts().get("delete", 0) >= 4, what="settled messages")
        _settle(h)  # what the app sent on (its out queue) is consumed too, however slow the machine
        before = h.storage_counts()
        time.sleep(1.2)  # idle: only empty receives may grow
        idle = h.storage_counts()
        per_queue = h.storage_counts(by_queue=True)
    work = per_queue[s["WORK_QUEUE"]]
    # 3 ok deletes + 1 delete after poisoning; the failing message: one visibility update, then poison on try 2
    assert work["delete"] == 4
    assert work["poison"] == 1
    assert work["update"] == 1
    assert 1 <= work["receive"] <= 5  # deliveries came in at most as many receives as messages+retry
    assert work.get("receive_empty", 0) >= 1
    assert {k: v for k, v in idle.items() if k != "receive_empty"} == \
           {k: v for k, v in before.items() if k != "receive_empty"}
    assert idle["receive_empty"] > before["receive_empty"]
    assert sum(idle.values()) == sum(sum(q.values()) for q in per_queue.values())
