"""Fixtures for the local-host and stack tests: one real Azurite per session, queue helpers."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.storage.queue import QueueClient

from localdev.azurite import Azurite

APPS = Path(__file__).parent / "apps"


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    with Azurite(tmp_path_factory.mktemp("azurite")) as az:
        yield az


class Queues:
    """Base64 queue helper (the host's default encoding) on one Azurite, with per-test unique names."""

    def __init__(self, conn: str) -> None:
        self.conn = conn
        self.suffix = uuid.uuid4().hex[:8]

    def name(self, base: str) -> str:
        return f"{base}-{self.suffix}"

    def client(self, name: str) -> QueueClient:
        return QueueClient.from_connection_string(self.conn, name)

    def send(self, name: str, payload: Any) -> str:
        c = self.client(name)
        try:
            c.create_queue()
        except Exception:  # noqa: BLE001 - already exists
            pass
        text = payload if isinstance(payload, str) else json.dumps(payload)
        return str(c.send_message(base64.b64encode(text.encode()).decode()).id)

    def drain(self, name: str) -> list[str]:
        """Receive and delete every visible message; decoded texts."""
        c = self.client(name)
        out = []
        try:
            for m in c.receive_messages(messages_per_page=32, visibility_timeout=5):
                out.append(base64.b64decode(m.content).decode())
                c.delete_message(m)
        except Exception as exc:  # noqa: BLE001
            if "QueueNotFound" not in str(exc):
                raise
        return out

    def count(self, name: str) -> int:
        return int(self.client(name).get_queue_properties().approximate_message_count)


@pytest.fixture
def queues(azurite: Azurite) -> Queues:
    return Queues(azurite.connection_string)


def wait_for(cond: Callable[[], Any], timeout: float = 15, interval: float = 0.05, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
