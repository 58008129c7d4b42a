"""Assembles the dependency bundle once per process (lazily, on first use by a trigger).

Storage: a connection string (local Azurite) or identity-based service URIs with ``DefaultAzureCredential``
(Azure; the Function App's user-assigned identity). Data Protection: see :mod:`restore_core.dp_client`.
Tables and queues are created if missing (best effort: in Azure the Bicep already created them).
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from azure.core.exceptions import AzureError
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueClient

from . import telemetry
from .config import Settings, load_settings
from .deps import Deps, StorageMeter
from .dp_client import DataProtection
from .queues import BASE64, AzureQueueSender
from .store import TableStateStore

log = telemetry.get_logger("runtime")
_lock = threading.Lock()
_deps: Deps | None = None


def _credential(client_id: str | None) -> Any:
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(managed_identity_client_id=client_id)


def build(settings: Settings) -> Deps:
    st = settings.storage
    meter = StorageMeter()
    table_hook: dict[str, Any] = {"raw_response_hook": meter.hook("table")}
    queue_hook: dict[str, Any] = {"raw_response_hook": meter.hook("queue")}
    if st.connection_string:
        tables = TableServiceClient.from_connection_string(st.connection_string, **table_hook)

        def queue_factory(name: str) -> QueueClient:
            assert st.connection_string
            return QueueClient.from_connection_string(st.connection_string, name, **BASE64, **queue_hook)
    else:
        cred = _credential(st.client_id or settings.azure_client_id)
        assert st.table_service_uri and st.queue_service_uri
        tables = TableServiceClient(endpoint=st.table_service_uri, credential=cred, **table_hook)
        queue_uri = st.queue_service_uri

        def queue_factory(name: str) -> QueueClient:
            return QueueClient(account_url=queue_uri, queue_name=name, credential=cred, **BASE64, **queue_hook)

    store = TableStateStore(tables, settings.table_restores, settings.table_idempotency,
                            index_slack=timedelta(seconds=settings.pickup_slack_seconds))
    queues = AzureQueueSender(queue_factory)
    try:
        store.ensure_tables()
        names = list(settings.queues.values())
        queues.ensure(*names, *(n + "-poison" for n in names if not n.endswith("events")))
    except AzureError as exc:  # in Azure the infrastructure creates them; lacking rights to create is fine
        log.warning("could not ensure tables/queues (%s); assuming they exist", type(exc).__name__)
    return Deps(settings=settings, store=store, queues=queues, dp=DataProtection(settings), storage_meter=meter)


def deps() -> Deps:
    global _deps
    if _deps is None:
        with _lock:
            if _deps is None:
                settings = load_settings()
                telemetry.configure(settings)
                _deps = build(settings)
    return _deps
