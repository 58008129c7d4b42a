"""The dependency bundle stages receive (never build): store, queue sender, Data Protection client, clock, settings."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .config import Settings
from .dp_client import DataProtection
from .queues import QueueSender
from .store import StateStore


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


@dataclass
class Deps:
    settings: Settings
    store: StateStore
    queues: QueueSender
    dp: DataProtection
    clock: Callable[[], datetime] = utcnow
    storage_meter: StorageMeter = field(default_factory=StorageMeter)
