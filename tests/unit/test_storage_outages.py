"""Storage outages: every table and queue call has timeouts in seconds (settings, not the SDKs' 300 s defaults), and an
HTTP caller gets a 503 with Retry-After when storage does not answer, not a 500."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from restore_core import api, runtime
from restore_core.config import SettingsError, StorageTimeouts, load_settings
from restore_core.deps import Deps
from restore_core.errors import RetryableError
from restore_core.store import MemoryStateStore

from .fakes import Harness, database_body


def test_storage_timeouts_default_to_seconds_and_are_settings() -> None:
    assert load_settings({"RestoreStorage": "x"}).storage_timeouts == StorageTimeouts(5.0, 10.0, 2)
    custom = load_settings({"RestoreStorage": "x", "RESTORE_STORAGE_CONNECT_TIMEOUT_SECONDS": "2",
                            "RESTORE_STORAGE_READ_TIMEOUT_SECONDS": "7.5", "RESTORE_STORAGE_RETRIES": "0"})
    assert custom.storage_timeouts == StorageTimeouts(2.0, 7.5, 0)
    table, queue = runtime.table_options(custom.storage_timeouts), runtime.queue_options(custom.storage_timeouts)
    assert (table["connection_timeout"], table["read_timeout"], table["retry_total"]) == (2.0, 7.5, 0)
    assert (queue["connection_timeout"], queue["read_timeout"], queue["retry_policy"].total_retries) == (2.0, 7.5, 0)


@pytest.mark.parametrize(("name", "value"), [("RESTORE_STORAGE_READ_TIMEOUT_SECONDS", "0"),
                                             ("RESTORE_STORAGE_CONNECT_TIMEOUT_SECONDS", "soon"),
                                             ("RESTORE_STORAGE_RETRIES", "-1")])
def test_bad_storage_timeout_settings_name_the_setting(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings({"RestoreStorage": "x", name: value})


@pytest.fixture
def silent_storage() -> Iterator[int]:
    """A TCP port that accepts connections and reads requests but never answers (a hung storage endpoint)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    stop = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(2)
    for conn in held:
        conn.close()
    server.close()


def finishes_within(seconds: float, fn: Any) -> BaseException | None:
    """Run ``fn`` in a thread; fail unless it ends (returning or raising) within ``seconds``."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            fn()
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(seconds)
    assert outcome, f"a storage call was still waiting after {seconds}s ({time.monotonic() - started:.0f}s)"
    return outcome[0]


def test_every_table_and_queue_call_gives_up_within_its_timeouts(silent_storage: int) -> None:
    port = silent_storage
    conn = (f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
            f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;QueueEndpoint=http://127.0.0.1:{port}/"
            f"devstoreaccount1;TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;")
    settings = load_settings({"RestoreStorage": conn, "RESTORE_STORAGE_CONNECT_TIMEOUT_SECONDS": "1",
                              "RESTORE_STORAGE_READ_TIMEOUT_SECONDS": "0.2", "RESTORE_STORAGE_RETRIES": "1"})
    made: list[Deps] = []
    assert finishes_within(30, lambda: made.append(runtime.build(settings))) is None  # creating tables gives up too
    deps = made[0]
    for call in (lambda: deps.store.get("20261124T080000-0000000001"), lambda: deps.store.active(),
                 lambda: deps.queues.send(settings.queue("RESTORE_QUEUE_VALIDATE"), "{}"),
                 lambda: deps.queues.receive(settings.queue("RESTORE_QUEUE_VALIDATE"))):
        error = finishes_within(10, call)
        assert isinstance(error, RetryableError), error


class DownStore(MemoryStateStore):
    def get(self, restore_id: str) -> Any:
        raise RetryableError("table restores did not answer: ServiceResponseError")

    def create(self, *args: Any, **kwargs: Any) -> Any:
        raise RetryableError("table restores did not answer: ServiceResponseError")


def test_storage_that_does_not_answer_is_a_503_with_retry_after() -> None:
    h = Harness(store=DownStore())
    for resp in (api.create(json.dumps(database_body()).encode(), headers={}, base_url="https://x/api", deps=h.deps),
                 api.get("20261124T080000-0000000001", deps=h.deps),
                 api.cancel("20261124T080000-0000000001", deps=h.deps)):
        assert resp.status == 503 and resp.headers["Retry-After"] == "5"
        assert resp.body["error"]["code"] == "StorageUnavailable" and resp.body["error"]["fix"]
