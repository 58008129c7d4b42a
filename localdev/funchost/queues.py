"""Queue trigger listener with the real host's semantics (host.json ``extensions.queues``).

Consumes: one queue-triggered function, its queue (connection string + name), :class:`QueueConfig`.
Behaviour: fetch up to ``batchSize`` messages; fetch again only when in-flight count <= ``newBatchThreshold``;
exponential back-off (100 ms → ``maxPollingInterval``) while the queue is empty; a received message is invisible
for 10 minutes and that is renewed every 5 minutes while the function runs (the real listener's fixed values;
``lease_seconds`` shortens both for fault tests); on failure (an exception, or ``functionTimeout``) the message
reappears after ``visibilityTimeout``; after ``maxDequeueCount`` failed deliveries it moves to ``<queue>-poison``; a
message that does not decode (``messageEncoding: base64``) moves there at once, without invoking the function.
Optional duplicate delivery (chaos knob). docs/funchost.md quotes the real host's source for each.
Storage transactions the listener itself makes are counted in :attr:`QueueListener.storage_counts` (one per
queue-service call attempted: ``receive`` (got messages), ``receive_empty``, ``delete``, ``update`` (lease renewal or
failure visibility), ``poison`` (send to the poison queue), ``duplicate`` (chaos copy)); the app's own calls are not.
"""

from __future__ import annotations

import base64
import binascii
import logging
import math
import threading
import time
from collections import Counter
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from azure.core.exceptions import AzureError
from azure.functions.queue import QueueMessage as QueueMessageImpl
from azure.storage.queue import QueueClient

from localdev.funchost.config import QueueConfig
from localdev.funchost.invoke import Invoker, QueueClients

log = logging.getLogger("funchost")

MIN_POLL = 0.1
#: The real queue listener receives with a 10-minute visibility timeout and renews it at half of that while the
#: function runs (azure-sdk-for-net QueueListener: ``_visibilityTimeout = TimeSpan.FromMinutes(10)``).
IN_FLIGHT_SECONDS = 600.0


@dataclass
class _Lease:
    msg_id: str
    pop_receipt: str
    renew_at: float
    done: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class QueueListener:
    def __init__(self, invoker: Invoker, conn: str, queue: str, cfg: QueueConfig, pool: Executor,
                 queues: QueueClients, stop: threading.Event, *, lease_seconds: float = IN_FLIGHT_SECONDS,
                 duplicate_delivery: bool = False) -> None:
        self.invoker = invoker
        self.queue = queue
        self.cfg = cfg
        self.pool = pool
        self.stop = stop
        self.lease_seconds = max(2, int(lease_seconds))
        self.duplicate_delivery = duplicate_delivery
        self.client: QueueClient = queues.get(conn, queue)
        self.poison: QueueClient = queues.get(conn, f"{queue}-poison")
        self._cond = threading.Condition()
        self.in_flight = 0
        self._leases: dict[str, _Lease] = {}
        self._duplicates: set[str] = set()  # ids of copies we sent (never duplicated again)
        self._threads: list[threading.Thread] = []
        self._count_lock = threading.Lock()
        self.storage_counts: Counter[str] = Counter()

    def _count(self, op: str, n: int = 1) -> None:
        with self._count_lock:
            self.storage_counts[op] += n

    def counts(self) -> dict[str, int]:
        """A snapshot of :attr:`storage_counts`."""
        with self._count_lock:
            return dict(self.storage_counts)

    # ---- lifecycle
    def start(self) -> None:
        for target, suffix in ((self._poll_loop, "poll"), (self._renew_loop, "renew")):
            t = threading.Thread(target=target, name=f"queue-{self.invoker.name}-{suffix}", daemon=True)
            t.start()
            self._threads.append(t)

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def wait_idle(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.in_flight == 0, timeout)

    # ---- polling
    def _poll_loop(self) -> None:
        delay = MIN_POLL
        while not self.stop.is_set():
            with self._cond:
                self._cond.wait_for(lambda: self.in_flight <= self.cfg.new_batch_threshold or self.stop.is_set())
            if self.stop.is_set():
                break
            try:
                self._count("receive")
                msgs = list(self.client.receive_messages(messages_per_page=self.cfg.batch_size,
                                                         max_messages=self.cfg.batch_size,
                                                         visibility_timeout=self.lease_seconds))
            except AzureError as exc:
                log.warning("queue %s: receive failed (%s); retrying in %.1fs", self.queue, type(exc).__name__,
                            delay)
                self.stop.wait(delay)
                delay = min(delay * 2, max(self.cfg.max_polling_interval, MIN_POLL))
                continue
            if not msgs:
                self._count("receive", -1)
                self._count("receive_empty")
                self.stop.wait(delay)
                delay = min(delay * 2, max(self.cfg.max_polling_interval, MIN_POLL))
                continue
            delay = MIN_POLL
            now = time.monotonic()
            with self._cond:
                self.in_flight += len(msgs)
                for m in msgs:
                    self._leases[m.id] = _Lease(m.id, m.pop_receipt or "", now + self.lease_seconds / 2)
            for m in msgs:
                self.pool.submit(self._process, m)

    def _renew_loop(self) -> None:
        while True:
            time.sleep(0.25)
            if self.stop.is_set() and not self.in_flight:
                break
            now = time.monotonic()
            with self._cond:
                leases = [lease for lease in self._leases.values() if lease.renew_at <= now]
            for lease in leases:
                with lease.lock:
                    if lease.done:
                        continue
                    try:
                        self._count("update")
                        upd = self.client.update_message(lease.msg_id, lease.pop_receipt,
                                                         visibility_timeout=self.lease_seconds)
                        lease.pop_receipt = upd.pop_receipt or lease.pop_receipt
                    except AzureError as exc:
                        log.warning("queue %s: lease renewal of %s failed (%s)", self.queue, lease.msg_id,
                                    type(exc).__name__)
                    lease.renew_at = time.monotonic() + self.lease_seconds / 2

    # ---- one message
    def _decode(self, content: str) -> bytes:
        if self.cfg.message_encoding == "base64":
            return base64.b64decode(content.encode("ascii"), validate=True)
        return content.encode("utf-8")

    def _process(self, m: Any) -> None:
        t0 = time.perf_counter()
        outcome, detail = "ok", ""
        stats: dict[str, float] = {}
        try:
            if m.dequeue_count > self.cfg.max_dequeue_count:
                outcome = "poisoned"
                detail = "dequeue count already above maxDequeueCount"
            else:
                try:
                    body: bytes | None = self._decode(m.content or "")
                except (binascii.Error, ValueError, UnicodeError) as exc:  # the real host: poison, no invocation
                    body = None
                    outcome, detail = "poisoned", f"message is not valid {self.cfg.message_encoding}: {exc}"
                if body is not None:
                    msg = QueueMessageImpl(  # type: ignore[no-untyped-call]
                        id=m.id, body=body, dequeue_count=m.dequeue_count, insertion_time=m.inserted_on,
                        expiration_time=m.expires_on, time_next_visible=m.next_visible_on, pop_receipt=m.pop_receipt)
                    try:
                        self.invoker(msg, stats)
                    except Exception as exc:  # noqa: BLE001 - any user exception is a failed invocation
                        outcome, detail = "failed", f"{type(exc).__name__}: {str(exc)[:300]}"
                if outcome == "failed" and m.dequeue_count >= self.cfg.max_dequeue_count:
                    outcome = "failed-poisoned"
            self._settle(m, outcome)
        finally:
            with self._cond:
                self.in_flight -= 1
                self._cond.notify_all()
        log.info("invocation function=%s trigger=queue queue=%s id=%s dequeue_count=%s outcome=%s duration_ms=%.0f "
                 "fn_ms=%.1f cpu_ms=%.1f%s", self.invoker.name, self.queue, m.id, m.dequeue_count, outcome,
                 (time.perf_counter() - t0) * 1000, stats.get("wall_s", 0.0) * 1000, stats.get("cpu_s", 0.0) * 1000,
                 f" error={detail}" if detail else "")

    def _settle(self, m: Any, outcome: str) -> None:
        with self._cond:
            lease = self._leases.pop(m.id)
        with lease.lock:
            lease.done = True
            receipt = lease.pop_receipt
        try:
            if outcome == "ok":
                self._count("delete")
                self.client.delete_message(m.id, receipt)
                if self.duplicate_delivery and m.id not in self._duplicates:
                    self._count("duplicate")
                    sent = self.client.send_message(m.content)
                    self._duplicates.add(sent.id)
                self._duplicates.discard(m.id)
            elif outcome in ("poisoned", "failed-poisoned"):
                self._count("poison")
                self.poison.send_message(m.content)
                self._count("delete")
                self.client.delete_message(m.id, receipt)
            else:
                self._count("update")
                self.client.update_message(m.id, receipt, visibility_timeout=math.ceil(self.cfg.visibility_timeout))
        except AzureError as exc:
            log.warning("queue %s: settling message %s (%s) failed: %s", self.queue, m.id, outcome,
                        type(exc).__name__)
