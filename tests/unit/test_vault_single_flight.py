"""Issue 17 item 2: restores of one vault starting together in a process read the vault from ARM once."""

from __future__ import annotations

import threading
import time

from restore_core.arm_ids import parse_vault_id
from restore_core.stages.common import cached_vault

from .fakes import Harness


def test_concurrent_first_restores_of_a_vault_read_it_from_arm_once() -> None:
    h = Harness()
    entered = threading.Event()

    def slow_read() -> None:  # the ARM read takes a while: every other thread asks meanwhile
        entered.set()
        time.sleep(0.3)

    h.dp.on_call["get_vault"] = slow_read
    vault = parse_vault_id(h.dp.vault.id)
    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(cached_vault(h.deps, vault))) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert entered.is_set() and len(got) == 5 and all(g == h.dp.vault for g in got)
    assert h.dp.calls["get_vault"] == 1


def test_different_vaults_do_not_wait_for_each_other() -> None:
    h = Harness()
    a, b = "a", "b"
    assert h.deps.memo.lock("vault", a) is h.deps.memo.lock("vault", a)
    assert h.deps.memo.lock("vault", a) is not h.deps.memo.lock("vault", b)
