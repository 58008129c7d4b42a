"""Queue sender: the only way the pipeline puts messages on queues (stage messages and completion events).

An abstract base, the Azure Storage implementation (base64 text, like the Functions host expects) and an in-memory
twin for unit tests. A delay uses the queue's visibility timeout: "wait" never sleeps in a function.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import AzureError, ResourceExistsError
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from .errors import RetryableError

BASE64: dict[str, Any] = {"message_encode_policy": TextBase64EncodePolicy(),
                          "message_decode_policy": TextBase64DecodePolicy()}

MAX_DELAY_SECONDS = 7 * 24 * 3600 - 60


class QueueSender(ABC):
    @abstractmethod
    def send(self, queue: str, text: str, *, delay_seconds: float = 0) -> None: ...

    @abstractmethod
    def depth(self, queue: str) -> int:
        """Approximate number of messages (for the poison-queue gauge)."""


class AzureQueueSender(QueueSender):
    def __init__(self, factory: Callable[[str], QueueClient]) -> None:
        """``factory(name)`` builds a client with base64 text policies (see :data:`BASE64`)."""
        self._factory = factory
        self._clients: dict[str, QueueClient] = {}
        self._lock = threading.Lock()

    def _client(self, queue: str) -> QueueClient:
        with self._lock:
            if queue not in self._clients:
                self._clients[queue] = self._factory(queue)
            return self._clients[queue]

    def ensure(self, *queues: str) -> None:
        for q in queues:
            try:
                self._client(q).create_queue()
            except ResourceExistsError:
                pass

    def send(self, queue: str, text: str, *, delay_seconds: float = 0) -> None:
        delay = max(0, min(int(round(delay_seconds)), MAX_DELAY_SECONDS))
        try:
            self._client(queue).send_message(text, visibility_timeout=delay or None)
        except AzureError as exc:
            raise RetryableError(f"could not enqueue on {queue}: {type(exc).__name__}") from exc

    def depth(self, queue: str) -> int:
        try:
            return int(self._client(queue).get_queue_properties().approximate_message_count or 0)
        except AzureError:
            return 0


@dataclass
class SentMessage:
    queue: str
    text: str
    delay_seconds: float


class MemoryQueueSender(QueueSender):
    def __init__(self) -> None:
        self.sent: list[SentMessage] = []
        self.depths: dict[str, int] = {}

    def send(self, queue: str, text: str, *, delay_seconds: float = 0) -> None:
        self.sent.append(SentMessage(queue, text, delay_seconds))

    def depth(self, queue: str) -> int:
        return self.depths.get(queue, 0)

    def take(self) -> list[SentMessage]:
        out, self.sent = self.sent, []
        return out
