"""The dependency bundle stages receive (never build): store, queue sender, backup service, clock, settings.

Each is a port (:mod:`restore_core.ports`); :mod:`restore_core.runtime` assembles the Azure adapters once per
process, the unit tests their in-memory twins."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .config import Settings
from .drills.ports import EvidenceSink
from .ports import BackupService, QueueSender, StateStore
from .server_access import ServerAccess


def utcnow() -> datetime:
    return datetime.now(UTC)


class StorageMeter:
    """Counts the app's own storage transactions (one per HTTP request to the table or queue service)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def hook(self, service: str) -> Callable[[Any], None]:
        """A ``raw_response_hook`` counting requests of ``service`` ("table" or "queue") by HTTP method."""

        def count(response: Any) -> None:
            with self._lock:
                self.counts[f"{service} {response.http_request.method}"] += 1

        return count

    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())


class Memo:
    """Per-process memory of slow-changing facts (vault facts, learned durations), to spare storage and ARM reads.
    Entries expire after ``ttl`` seconds of monotonic time; the table copy remains the shared truth."""

    def __init__(self, ttl: float = 600.0) -> None:
        self._lock = threading.Lock()
        self._items: dict[tuple[str, str], tuple[float, Any]] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self.ttl = ttl

    def lock(self, kind: str, key: str) -> threading.Lock:
        """One lock per fact, so concurrent first users in this process fetch it once (single-flight)."""
        with self._lock:
            return self._locks.setdefault((kind, key), threading.Lock())

    def get(self, kind: str, key: str) -> Any:
        import time

        with self._lock:
            hit = self._items.get((kind, key))
            if hit is None or time.monotonic() - hit[0] > self.ttl:
                return None
            return hit[1]

    def put(self, kind: str, key: str, value: Any) -> None:
        import time

        with self._lock:
            self._items[(kind, key)] = (time.monotonic(), value)


@dataclass
class Deps:
    settings: Settings
    store: StateStore
    queues: QueueSender
    dp: BackupService
    clock: Callable[[], datetime] = utcnow
    storage_meter: StorageMeter = field(default_factory=StorageMeter)
    memo: Memo = field(default_factory=lambda: Memo())
    server: ServerAccess | None = None  # restore into a server: target credentials and staging containers
    evidence: EvidenceSink | None = None  # restore drills: the write-once evidence container (restore_core/drills)

    def server_access(self) -> ServerAccess:
        if self.server is None:
            raise RuntimeError("this process was built without server access (restore into a server)")
        return self.server
