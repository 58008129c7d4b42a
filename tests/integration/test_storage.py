"""The app's storage layer against the session's real Azurite: Azure's size limits (64 KiB queue messages, 64 KiB
string properties, 1 MiB entities) and storage that disappears under a running app.

Each test builds the app's dependencies with ``runtime.build`` (the production wiring) on tables and queues of its own
(unique names), so the session's stack and its other tests are not disturbed.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueClient

from localdev import scenarios as sc
from restore_core import events, runtime
from restore_core.config import load_settings
from restore_core.deps import Deps
from restore_core.errors import RequestError
from restore_core.limits import QUEUE_MESSAGE_BYTES
from restore_core.models import Stage, Status
from restore_core.records import RestoreRecord, TimelineEvent
from restore_core.store import ConcurrencyError, StoreRejected, TableStateStore

from .helpers import completion_events, start, wait_for

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


@pytest.fixture
def app(local_stack: Any) -> Iterator[Deps]:
    """Production deps on fresh, uniquely named tables and queues of the stack's Azurite."""
    suffix = uuid.uuid4().hex[:10]
    env = {"RestoreStorage": local_stack.env["AZURE_STORAGE_CONNECTION_STRING"],
           "RESTORE_TABLE_RESTORES": f"r{suffix}", "RESTORE_TABLE_IDEMPOTENCY": f"i{suffix}",
           **{name: f"{default}-{suffix}" for name, default in (
               ("RESTORE_QUEUE_REQUESTS", "req"), ("RESTORE_QUEUE_VALIDATE", "val"), ("RESTORE_QUEUE_REHYDRATE", "reh"),
               ("RESTORE_QUEUE_WAIT", "wai"), ("RESTORE_QUEUE_TRIGGER", "tri"), ("RESTORE_QUEUE_MONITOR", "mon"),
               ("RESTORE_QUEUE_EVENTS", "events"))}}
    yield runtime.build(load_settings(env))


def queue_client(deps: Deps, setting: str) -> QueueClient:
    conn = deps.settings.storage.connection_string
    assert conn
    return QueueClient.from_connection_string(conn, deps.settings.queue(setting))


def received(deps: Deps, setting: str) -> list[str]:
    msgs = queue_client(deps, setting).receive_messages(messages_per_page=32, visibility_timeout=5)
    return [base64.b64decode(m.content).decode() for m in msgs]


def failed_record(**kw: Any) -> RestoreRecord:
    base: dict[str, Any] = {
        "id": f"20261124T080000-{uuid.uuid4().hex[:10]}", "status": Status.FAILED, "stage": None, "source": "http",
        "created_at": T0, "updated_at": T0 + timedelta(hours=1), "deadline": T0 + timedelta(hours=48),
        "request": {}, "error_code": "UserErrorRestoreFailed",
        "error_message": "\U0001f4a5 \u00e9chec de la restauration " * 2000}
    base.update(kw)
    return RestoreRecord(**base)


def test_completion_event_with_a_huge_non_ascii_error_reaches_the_real_queue(app: Deps) -> None:
    rec = failed_record(warnings=[{"code": "W", "message": "\u4e2d" * 4000} for _ in range(30)],
                        target_resource="/subscriptions/x/" + "\u00e9" * 9000)
    events.publish_completion(app, rec)  # Azurite refuses > 64 KiB with 413: this would raise
    [text] = received(app, "RESTORE_QUEUE_EVENTS")
    assert len(base64.b64encode(text.encode())) <= QUEUE_MESSAGE_BYTES
    event = json.loads(text)
    assert event["restore_id"] == rec.id and event["error"]["code"] == "UserErrorRestoreFailed"


def active_record(**kw: Any) -> RestoreRecord:
    base: dict[str, Any] = {
        "id": f"{T0:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:10]}", "status": Status.RESTORING, "stage": Stage.MONITOR,
        "source": "http", "created_at": T0, "updated_at": T0, "deadline": T0 + timedelta(hours=48), "request": {}}
    base.update(kw)
    return RestoreRecord(**base)


def created(deps: Deps, rec: RestoreRecord) -> RestoreRecord:
    row, is_new = deps.store.create(rec, TimelineEvent(T0, "accepted", None, "accepted"), idempotency_key=None,
                                    request_hash="h")
    assert is_new
    return row


def test_a_40000_character_azure_error_message_is_stored_cut(app: Deps) -> None:
    row = created(app, active_record())
    message = "pg_restore: error: " + "x" * 40_000  # 80 KB in UTF-16: over Azure's 64 KiB per string property
    app.store.update(row.copy(status=Status.FAILED, stage=None, error_code="UserErrorPgRestoreFailed",
                              error_message=message),
                     [TimelineEvent(T0, "failed", "monitor", "job failed: " + message)])
    back = app.store.get(row.id)
    assert back is not None and back.status is Status.FAILED
    assert back.error_message and back.error_message.startswith("pg_restore: error: xxx")
    assert f"{len(message)} characters in all" in back.error_message
    assert app.store.timeline(row.id)[-1].message.startswith("job failed: pg_restore")


def test_a_write_the_table_refuses_raises_store_rejected_with_the_tables_reason(app: Deps) -> None:
    row = created(app, active_record())
    with pytest.raises(StoreRejected) as info:  # vault_info is not free text: it is never cut
        app.store.update(row.copy(vault_info={"location": "\u00e9" * 40_000}))
    assert info.value.code == "PropertyValueTooLarge" and "64KB" in info.value.message
    assert app.store.get(row.id) == row  # nothing changed


def test_an_update_without_events_is_one_etag_guarded_replace_not_a_batch(app: Deps) -> None:
    """The stages' claims (no timeline event) cost one PUT, not a multipart batch; a stale ETag still loses."""
    row = created(app, active_record())
    before = dict(app.storage_meter.counts)
    new = app.store.update(row.copy(polls=1))
    delta = {k: v - before.get(k, 0) for k, v in app.storage_meter.counts.items() if v != before.get(k, 0)}
    assert "table POST" not in delta and delta.get("table PUT", 0) >= 1  # $batch is a POST
    assert new.etag and new.etag != row.etag and app.store.get(row.id) == new
    with pytest.raises(ConcurrencyError) as info:
        app.store.update(row.copy(polls=2))  # the old ETag
    assert info.value.current == new and app.store.get(row.id) == new


def idempotency_rows(deps: Deps) -> list[dict[str, Any]]:
    conn = deps.settings.storage.connection_string
    assert conn
    service = TableServiceClient.from_connection_string(conn)
    return list(service.get_table_client(deps.settings.table_idempotency).list_entities())


def test_a_restore_the_table_would_refuse_is_413_and_writes_nothing(app: Deps) -> None:
    too_large = active_record(request={"datasource_id": "\u00e9" * 40_000})
    with pytest.raises(RequestError) as info:
        app.store.create(too_large, TimelineEvent(T0, "accepted", None, "accepted"), idempotency_key="k-big",
                         request_hash="h-big")
    assert (info.value.status, info.value.code) == (413, "RequestTooLarge")
    assert idempotency_rows(app) == [] and app.store.get(too_large.id) is None


def test_a_row_the_table_refuses_after_the_key_was_written_takes_the_key_back(app: Deps,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TableStateStore, "_check_storable", staticmethod(lambda rec, event: None))  # the server says no
    too_large = active_record(request={"datasource_id": "\u00e9" * 40_000})
    with pytest.raises(RequestError) as info:
        app.store.create(too_large, TimelineEvent(T0, "accepted", None, "accepted"), idempotency_key="k-big",
                         request_hash="h-big")
    assert (info.value.status, info.value.code) == (413, "RequestTooLarge") and "PropertyValueTooLarge" in str(
        info.value)
    assert idempotency_rows(app) == []  # no dangling key: the same key with a valid request is free
    _, is_new = app.store.create(active_record(), TimelineEvent(T0, "accepted", None, "accepted"),
                                 idempotency_key="k-big", request_hash="h-small")
    assert is_new


# --- storage that disappears under the running app (issue 16.8) ----------------------------------------------------
def service(deps: Deps) -> TableServiceClient:
    conn = deps.settings.storage.connection_string
    assert conn
    return TableServiceClient.from_connection_string(conn)


def test_deleted_tables_are_created_again_by_the_next_operation(app: Deps) -> None:
    kept = created(app, active_record())
    service(app).delete_table(app.settings.table_restores)
    service(app).delete_table(app.settings.table_idempotency)
    assert app.store.get(kept.id) is None  # the table (and its rows) is gone: nothing to find, no error
    rec, is_new = app.store.create(active_record(), TimelineEvent(T0, "accepted", None, "accepted"),
                                   idempotency_key="after-outage", request_hash="h")
    assert is_new and app.store.get(rec.id) == rec
    assert [e.restore_id for e in app.store.active()] == [rec.id]
    service(app).delete_table(app.settings.table_restores)
    assert app.store.active() == [] and list(app.store.list_day(T0, after_id=None)) == []
    again, is_new = app.store.create(active_record(), TimelineEvent(T0, "accepted", None, "accepted"),
                                     idempotency_key="after-outage-2", request_hash="h")
    assert is_new and app.store.update(again.copy(status=Status.FAILED, stage=None)).status is Status.FAILED


def test_deleted_queues_are_created_again_by_the_next_send(app: Deps) -> None:
    for setting in ("RESTORE_QUEUE_VALIDATE", "RESTORE_QUEUE_EVENTS"):
        queue_client(app, setting).delete_queue()
    rec = failed_record()
    events.publish_completion(app, rec)
    app.queues.send(app.settings.queue("RESTORE_QUEUE_VALIDATE"), '{"x": 1}')
    assert [json.loads(t)["restore_id"] for t in received(app, "RESTORE_QUEUE_EVENTS")] == [rec.id]
    assert received(app, "RESTORE_QUEUE_VALIDATE") == ['{"x": 1}']
    queue_client(app, "RESTORE_QUEUE_MONITOR").delete_queue()
    assert app.queues.receive(app.settings.queue("RESTORE_QUEUE_MONITOR")) == []


def test_the_running_service_recreates_its_idempotency_table_and_events_queue(local_stack: Any, api: Any) -> None:
    """Against the session's Functions host: storage loses a table and a queue (as a restarted emulator or a recreated
    account would); the next request works without restarting the host."""
    conn = local_stack.env["AZURE_STORAGE_CONNECTION_STRING"]
    assert api.get("/restores?limit=1")[0] == 200  # the host has built its clients (and ensured its queues)
    TableServiceClient.from_connection_string(conn).delete_table("restoreidempotency")
    QueueClient.from_connection_string(conn, "restore-events").delete_queue()
    body = sc.as_database(f"it_outage_{uuid.uuid4().hex[:6]}", server=sc.TARGET_NOREADER, secret=sc.SECRET_NOREADER)
    rid = start(api, body, **{"Idempotency-Key": uuid.uuid4().hex})
    assert wait_for(api, rid)["status"] == "rejected"  # the vault lacks Reader on this server: a quick end
    # the event follows the terminal write (finish: publish, release, …): allow it a moment, queue recreated or not
    deadline, events = time.monotonic() + 20, []
    while not events and time.monotonic() < deadline:
        try:
            events = completion_events(local_stack.env, rid)
        except ResourceNotFoundError:  # not recreated yet: the publisher recreates it on its first send
            pass
        if not events:
            time.sleep(0.5)
    assert [e["status"] for e in events] == ["rejected"]
