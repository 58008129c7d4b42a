"""The dependency bundle stages receive (never build): store, queue sender, Data Protection client, clock, settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from .config import Settings
from .dp_client import DataProtection
from .queues import QueueSender
from .store import StateStore


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Deps:
    settings: Settings
    store: StateStore
    queues: QueueSender
    dp: DataProtection
    clock: Callable[[], datetime] = utcnow
