"""Assembles the dependency bundle once per process (lazily, on first use by a trigger).

Storage: a connection string (local Azurite) or identity-based service URIs with ``DefaultAzureCredential``
(Azure; the Function App's user-assigned identity). Data Protection: see :mod:`restore_core.dp_client`.
Tables and queues are created if missing (best effort: in Azure the Bicep already created them); one that disappears
later (a restarted emulator, a recreated account) is created again by the store and the queue sender on first use.
Every table and queue call has the timeouts and retries of :class:`config.StorageTimeouts`.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from azure.core.exceptions import AzureError
from azure.data.tables import TableServiceClient
from azure.storage.queue import LinearRetry, QueueClient

from . import telemetry
from .config import Settings, StorageTimeouts, http_proxy_env, load_settings, sdk_http_options
from .deps import Deps, StorageMeter
from .dp_client import DataProtection
from .drills.evidence import BlobEvidenceSink
from .ports import StateStore
from .queues import BASE64, AzureQueueSender
from .server_access import AzureServerAccess
from .store import TableStateStore

log = telemetry.get_logger("runtime")
_lock = threading.Lock()
_deps: Deps | None = None


def _credential(client_id: str | None) -> Any:
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(managed_identity_client_id=client_id)


def table_options(t: StorageTimeouts) -> dict[str, Any]:
    """azure-core transport timeouts and retry policy of the table clients (the SDK defaults are 300 s timeouts and
    up to 10 retries with backoff up to 120 s)."""
    return {"connection_timeout": t.connect_seconds, "read_timeout": t.read_seconds, "retry_total": t.retries,
            "retry_connect": t.retries, "retry_read": t.retries, "retry_status": t.retries,
            "retry_backoff_factor": 0.5, "retry_backoff_max": 2, **sdk_http_options()}


def queue_options(t: StorageTimeouts) -> dict[str, Any]:
    """The same for the queue clients (the SDK defaults are 20 s / 60 s and 3 retries 15 s and more apart)."""
    return {"connection_timeout": t.connect_seconds, "read_timeout": t.read_seconds,
            "retry_policy": LinearRetry(backoff=1, retry_total=t.retries, random_jitter_range=1), **sdk_http_options()}


def queue_client(settings: Settings, name: str) -> QueueClient:
    """A queue client with the app's encoding (base64) and timeouts, for the replay job's own message handling."""
    st = settings.storage
    opts: dict[str, Any] = {**queue_options(settings.storage_timeouts)}
    if st.connection_string:
        return QueueClient.from_connection_string(st.connection_string, name, **BASE64, **opts)
    assert st.queue_service_uri
    return QueueClient(account_url=st.queue_service_uri, queue_name=name,
                       credential=_credential(st.client_id or settings.azure_client_id), **BASE64, **opts)


def build(settings: Settings) -> Deps:
    st = settings.storage
    proxy_env = http_proxy_env()
    if proxy_env:
        log.info("proxy variables set (%s): the Azure SDK clients read the environment on every request",
                 ", ".join(proxy_env))
    meter = StorageMeter()
    table_hook: dict[str, Any] = {"raw_response_hook": meter.hook("table"), **table_options(settings.storage_timeouts)}
    queue_hook: dict[str, Any] = {"raw_response_hook": meter.hook("queue"), **queue_options(settings.storage_timeouts)}
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
    return Deps(settings=settings, store=store, queues=queues,
                dp=DataProtection(settings, durations=StoredDurations(store)), storage_meter=meter,
                server=AzureServerAccess(settings), evidence=evidence_sink(settings))


class StoredDurations:
    """Learned long-running operation durations (validate, trigger, ...) in the state table (kind ``lrostats``), like
    the vault facts: a new process starts from what an earlier one learned instead of from ARM's ``Retry-After``."""

    KIND = "lrostats"

    def __init__(self, store: StateStore) -> None:
        self._store = store

    def get(self, kind: str) -> float | None:
        row = self._store.get_meta(self.KIND, kind)
        try:
            return float(row["seconds"]) if row else None
        except (KeyError, TypeError, ValueError):
            return None

    def put(self, kind: str, seconds: float) -> None:
        self._store.put_meta(self.KIND, kind, {"seconds": round(seconds, 3)})


def evidence_sink(settings: Settings) -> BlobEvidenceSink:
    """The drills' write-once evidence container in the app's storage account (restore_core/drills/evidence.py)."""
    from azure.storage.blob import ContainerClient

    st, name = settings.storage, settings.drills.evidence_container
    if st.connection_string:
        return BlobEvidenceSink(ContainerClient.from_connection_string(st.connection_string, name))
    assert st.blob_service_uri, "identity-based storage needs RestoreStorage__blobServiceUri for drill evidence"
    return BlobEvidenceSink(ContainerClient(st.blob_service_uri, name,
                                            credential=_credential(st.client_id or settings.azure_client_id)))


def deps() -> Deps:
    global _deps
    if _deps is None:
        with _lock:
            if _deps is None:
                settings = load_settings()
                telemetry.configure(settings)
                _deps = build(settings)
    return _deps
