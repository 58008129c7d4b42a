"""Queue sender: the only way the pipeline puts messages on queues (stage messages and completion events).

An abstract base, the Azure Storage implementation (base64 text, like the Functions host expects) and an in-memory
twin for unit tests. A delay uses the queue's visibility timeout: "wait" never sleeps in a function.

A message larger than a queue takes (64 KiB of base64) raises :class:`PermanentError` before anything is sent, in
both implementations, as does a message the service refuses with 400/413: sending it again cannot succeed. Other
failures raise :class:`RetryableError`. A queue that disappears (a restarted storage emulator, a recreated account) is
created again by the first call that finds it missing, and that call is repeated once.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from . import telemetry
from .errors import PermanentError, RetryableError
from .limits import QUEUE_MESSAGE_BYTES, queue_message_bytes
from .storage_errors import is_being_deleted, is_missing

log = telemetry.get_logger("queues")
T = TypeVar("T")

BASE64: dict[str, Any] = {"message_encode_policy": TextBase64EncodePolicy(),
                          "message_decode_policy": TextBase64DecodePolicy()}

MAX_DELAY_SECONDS = 7 * 24 * 3600 - 60


@dataclass(frozen=True)
class Received:
    id: str
    pop_receipt: str
    text: str


def check_message_size(queue: str, text: str) -> None:
    size = queue_message_bytes(text)
    if size > QUEUE_MESSAGE_BYTES:
        raise PermanentError(f"a message of {size} bytes (base64) does not fit on {queue}: a queue message holds at "
                             f"most {QUEUE_MESSAGE_BYTES}")


class QueueSender(ABC):
    @abstractmethod
    def send(self, queue: str, text: str, *, delay_seconds: float = 0) -> None:
        """Enqueue ``text`` (hidden for ``delay_seconds``); :class:`PermanentError` when it can never be sent."""

    @abstractmethod
    def receive(self, queue: str, *, max_messages: int = 32, visibility_seconds: int = 30) -> list[Received]:
        """Take up to ``max_messages`` (hidden for ``visibility_seconds``); used only for the poison sweep."""

    @abstractmethod
    def delete(self, queue: str, message: Received) -> None: ...

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

    def _recreate(self, queue: str) -> None:
        log.warning("queue %s is missing (a restarted storage emulator or a recreated account?); creating it again",
                    queue)
        try:
            self._client(queue).create_queue()
        except ResourceExistsError as exc:  # another process was quicker, or Azure still deletes the old one
            if is_being_deleted(exc):
                raise RetryableError(f"queue {queue} is still being deleted; retry later") from exc

    def _call(self, queue: str, what: str, op: Callable[[], T]) -> T:
        """One call on ``queue``: created again (and the call repeated once) if it has disappeared; a message the
        service refuses as such (400/413) is a :class:`PermanentError`, any other failure a :class:`RetryableError`."""
        try:
            try:
                return op()
            except HttpResponseError as exc:
                if not is_missing(exc):
                    raise
                self._recreate(queue)
                return op()
        except HttpResponseError as exc:
            if exc.status_code in (400, 413):
                raise PermanentError(f"{queue} refused the message: {exc.status_code} {exc.reason}") from exc
            raise RetryableError(f"could not {what} {queue}: {type(exc).__name__}") from exc
        except AzureError as exc:
            raise RetryableError(f"could not {what} {queue}: {type(exc).__name__}") from exc

    def send(self, queue: str, text: str, *, delay_seconds: float = 0) -> None:
        check_message_size(queue, text)
        delay = max(0, min(int(round(delay_seconds)), MAX_DELAY_SECONDS))
        self._call(queue, "enqueue on",
                   lambda: self._client(queue).send_message(text, visibility_timeout=delay or None))

    def depth(self, queue: str) -> int:
        try:
            return int(self._client(queue).get_queue_properties().approximate_message_count or 0)
        except AzureError:
            return 0

    def receive(self, queue: str, *, max_messages: int = 32, visibility_seconds: int = 30) -> list[Received]:
        def take() -> list[Received]:
            msgs = self._client(queue).receive_messages(messages_per_page=max_messages,
                                                        visibility_timeout=visibility_seconds,
                                                        max_messages=max_messages)
            return [Received(m.id, m.pop_receipt or "", str(m.content)) for m in msgs]

        return self._call(queue, "receive from", take)

    def delete(self, queue: str, message: Received) -> None:
        try:
            self._call(queue, "remove a message on",
                       lambda: self._client(queue).delete_message(message.id, message.pop_receipt))
        except RetryableError as exc:
            if isinstance(exc.__cause__, ResourceNotFoundError):
                return  # the message (or its queue) is gone already
            raise


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
        check_message_size(queue, text)
        self.sent.append(SentMessage(queue, text, delay_seconds))

    def depth(self, queue: str) -> int:
        return self.depths.get(queue, 0) + sum(1 for m in self.sent if m.queue == queue)

    def receive(self, queue: str, *, max_messages: int = 32, visibility_seconds: int = 30) -> list[Received]:
        return [Received(str(id(m)), "", m.text) for m in self.sent if m.queue == queue][:max_messages]

    def delete(self, queue: str, message: Received) -> None:
        self.sent = [m for m in self.sent if not (m.queue == queue and str(id(m)) == message.id)]

    def take(self) -> list[SentMessage]:
        out, self.sent = self.sent, []
        return out
