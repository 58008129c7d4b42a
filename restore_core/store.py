"""State store: a small abstract base, the Azure Table implementation, and an in-memory twin for unit tests.

Layout (table ``restores``):
- partition ``d<yyyymmdd>`` (creation day, derivable from the restore id): the restore row (RowKey = id) and its
  append-only timeline (RowKey = ``<id>~<seq>``), written together in one entity-group transaction;
- partition ``active``: one small index row per non-terminal restore, so the watchdog's cost grows with active
  restores, never with history.
Table ``restoreidempotency``: client key → restore id (+ a hash of the request, to refuse a reused key).

A table that disappears (a restarted storage emulator, a recreated account) is created again on the first call that
finds it missing, and that call is repeated once; a call that gets no answer (timeouts of
:class:`config.StorageTimeouts`) raises :class:`RetryableError`.

Every update of a restore row is ETag-guarded; a lost race raises :class:`ConcurrencyError` and changes nothing.
A write the table refuses as such (a 4xx other than a lost race, e.g. ``PropertyValueTooLarge``/``EntityTooLarge``)
raises :class:`StoreRejected`: writing it again cannot succeed, so the pipeline gives up at once with that reason.
The in-memory twin refuses what Azure would (:func:`limits.check_entity`).
"""

from __future__ import annotations

import hashlib
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from itertools import islice
from typing import Any, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, TableServiceClient, TableTransactionError, UpdateMode

from . import telemetry
from .errors import PermanentError, RequestError, RetryableError
from .limits import StorageLimitError, check_entity
from .records import ActiveEntry, RestoreRecord, TimelineEvent, partition_of
from .storage_errors import NO_ANSWER, is_being_deleted, is_missing

log = telemetry.get_logger("store")
T = TypeVar("T")


class ConcurrencyError(Exception):
    """Another writer changed the row first (ETag mismatch). ``current`` is the row as it is now (None: gone), so the
    caller decides again without a re-read."""

    def __init__(self, restore_id: str, current: RestoreRecord | None = None) -> None:
        super().__init__(restore_id)
        self.current = current


class _RowExists(Exception):
    """The row to insert exists already (another delivery created it)."""


class StoreRejected(PermanentError):
    """The table refused the write as such (``code``: the storage error code, e.g. ``PropertyValueTooLarge``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"the table refused the write: {code}: {message}")
        self.code = code
        self.message = message


def _refused(exc: HttpResponseError) -> StoreRejected:
    """The storage error code and the first line of its message (``"<index>:<text>"``), without request ids."""
    lines = str(exc.message or exc).splitlines() or [""]
    text = lines[0].split(":", 1)[-1].strip() if lines[0][:1].isdigit() else lines[0].strip()
    code = getattr(exc, "error_code", None)
    return StoreRejected(str(getattr(code, "value", code) or exc.status_code), text[:500])


def _not_storable(code: str, message: str) -> RequestError:
    return RequestError(f"the request cannot be stored: {code}: {message}", field="body", status=413,
                        code="RequestTooLarge", fix="shorten the longest fields (description, ids, names)")


def _checked(entities: Iterable[dict[str, Any]]) -> None:
    """What the table would refuse, refused here (the in-memory twin)."""
    try:
        for ent in entities:
            check_entity(ent)
    except StorageLimitError as exc:
        raise StoreRejected(exc.code, exc.message) from None


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class StateStore(ABC):
    """Four-ish primitives; the pipeline logic lives elsewhere.

    The ``active`` index row of a restore is written when its stage changes or when its next check moves past what
    the index already promises (``indexed_check_by`` = next check + ``index_slack``), so most re-checks cost one
    write, not two. A terminal update keeps the index row: the pipeline removes it once the completion event is out,
    so a crash in between leaves a marker the watchdog acts on.
    """

    index_slack: timedelta = timedelta(0)

    def _index(self, new: RestoreRecord) -> tuple[RestoreRecord, ActiveEntry | None]:
        """Decide whether this update must rewrite the active index row; returns the record to store and the row."""
        if new.terminal:
            return new, None
        stage = new.stage.value if new.stage else None
        if stage == new.indexed_stage and new.next_check_at is not None and new.indexed_check_by is not None \
                and new.next_check_at <= new.indexed_check_by:
            return new, None
        check_by = new.next_check_at + self.index_slack if new.next_check_at else None
        new = new.copy(indexed_stage=stage, indexed_check_by=check_by)
        return new, ActiveEntry.of(new, check_by=check_by)

    # -- the workflow, written once over the primitives below (as Powertools' persistence base does)
    def create(self, rec: RestoreRecord, event: TimelineEvent, *, idempotency_key: str | None,
               request_hash: str) -> tuple[RestoreRecord, bool]:
        """Insert a new restore, or return the one already created for ``idempotency_key`` (created=False).
        A key reused with a different request raises :class:`RequestError` (409). A request the table would refuse
        is refused (413) before anything is written, so no key is left behind."""
        self._check_storable(rec, event)
        if idempotency_key:
            existing = self._claim_key(idempotency_key, rec.id, request_hash)
            if existing is not None:
                self._check_same_request(existing[1], request_hash, idempotency_key)
                found = self.get(existing[0])
                if found is not None:
                    return found, False
                rec = rec.copy(id=existing[0])  # the first attempt died between the key and the row: finish it
        rec, entry = self._index(rec.copy(timeline_seq=1))
        try:
            etag = self._insert(rec.to_entity(), event.to_entity(rec.id, 1))
        except _RowExists:
            found = self.get(rec.id)
            if found is None:
                raise RetryableError(f"restore {rec.id} exists and cannot be read yet") from None
            return found, False
        except StoreRejected as refused:  # the key must not point at a row that never comes
            if idempotency_key:
                self._forget_key(idempotency_key)
            raise _not_storable(refused.code, refused.message) from None
        if entry is not None:
            self.put_active(entry)
        return rec.copy(etag=etag), True

    def update(self, rec: RestoreRecord, events: Sequence[TimelineEvent] = ()) -> RestoreRecord:
        """Replace the row if its ETag still matches ``rec.etag`` (else :class:`ConcurrencyError` with the current
        row); append ``events``; keep the active index."""
        seq = rec.timeline_seq
        new, entry = self._index(rec.copy(timeline_seq=seq + len(events)))
        etag = self._replace(new.to_entity(), rec.etag, [ev.to_entity(rec.id, seq + i)
                                                          for i, ev in enumerate(events, start=1)])
        if entry is not None:
            self.put_active(entry)
        return new.copy(etag=etag)

    # -- primitives
    @abstractmethod
    def _claim_key(self, key: str, restore_id: str, request_hash: str) -> tuple[str, str] | None:
        """Record ``key`` → ``restore_id``; when the key exists already, return (its restore id, its request hash)."""

    @abstractmethod
    def _forget_key(self, key: str) -> None: ...

    @abstractmethod
    def _insert(self, row: dict[str, Any], event: dict[str, Any]) -> str:
        """Insert a restore row and its first event together; returns the row's ETag. Raises :class:`_RowExists`
        or :class:`StoreRejected`."""

    @abstractmethod
    def _replace(self, row: dict[str, Any], etag: str | None, events: list[dict[str, Any]]) -> str:
        """Replace the row if ``etag`` matches and add ``events``, together; returns the new ETag. Raises
        :class:`ConcurrencyError` (with the current row) or :class:`StoreRejected`."""

    @abstractmethod
    def get(self, restore_id: str) -> RestoreRecord | None: ...

    @abstractmethod
    def timeline(self, restore_id: str) -> list[TimelineEvent]: ...

    @abstractmethod
    def list_day(self, day: datetime, *, after_id: str | None,
                 before_id: str | None = None) -> Iterable[RestoreRecord]:
        """Restores created on ``day`` (UTC), ordered by id, strictly after ``after_id`` (and strictly before
        ``before_id``: a slice of the day, which lets a listing read newest first without reading the whole day)."""

    @abstractmethod
    def active(self) -> list[ActiveEntry]: ...

    @abstractmethod
    def put_active(self, entry: ActiveEntry) -> None: ...

    @abstractmethod
    def remove_active(self, restore_id: str) -> None: ...

    @abstractmethod
    def get_meta(self, kind: str, key: str) -> dict[str, Any] | None:
        """Small cache/statistics rows (partition ``meta-<kind>``)."""

    @abstractmethod
    def put_meta(self, kind: str, key: str, values: dict[str, Any]) -> None: ...

    @abstractmethod
    def list_meta(self, kind: str, *, limit: int = 100) -> list[dict[str, Any]]:
        """Up to ``limit`` rows of ``meta-<kind>`` (their values; a row that must be found again carries its key)."""

    @abstractmethod
    def delete_meta(self, kind: str, key: str) -> None: ...

    # -- conditional meta rows (locks, counters: restore_core/locks.py, guards.py, preview.py)
    @abstractmethod
    def get_meta_row(self, kind: str, key: str) -> tuple[dict[str, Any], str] | None:
        """A meta row's values and its ETag (None: no such row)."""

    @abstractmethod
    def insert_meta(self, kind: str, key: str, values: dict[str, Any]) -> bool:
        """Create the row only if it does not exist; False when it does (nothing written)."""

    @abstractmethod
    def replace_meta(self, kind: str, key: str, values: dict[str, Any], etag: str) -> bool:
        """Replace the row only if it still has ``etag``; False when it changed or is gone (nothing written)."""

    @abstractmethod
    def delete_meta_if(self, kind: str, key: str, etag: str) -> bool:
        """Delete the row only if it still has ``etag``; False when it changed (a missing row counts as deleted)."""

    def add_events(self, rec: RestoreRecord, events: Sequence[TimelineEvent]) -> RestoreRecord:
        """Append ``events`` to a restore's timeline without changing anything else on its row (e.g. what happened
        after it ended); ETag-guarded like every write."""
        return self.update(rec, events)

    # -- helpers shared by both implementations
    @staticmethod
    def _check_storable(rec: RestoreRecord, event: TimelineEvent) -> None:
        """Refuse (413) a new restore whose row or first event the table would refuse, before writing anything."""
        try:
            check_entity(rec.to_entity())
            check_entity(event.to_entity(rec.id, 1))
        except StorageLimitError as exc:
            raise _not_storable(exc.code, exc.message) from None

    @staticmethod
    def _check_same_request(existing_hash: str, request_hash: str, key: str) -> None:
        if existing_hash != request_hash:
            raise RequestError(
                f"idempotency key {key!r} was already used for a different request",
                field="idempotency_key", code="IdempotencyKeyReused", status=409,
                fix="use a new idempotency key for a different restore, or resend the original request unchanged")


def _day_partition(day: datetime) -> str:
    return "d" + day.strftime("%Y%m%d")


class TableStateStore(StateStore):
    def __init__(self, service: TableServiceClient, restores_table: str, idempotency_table: str,
                 *, index_slack: timedelta = timedelta(0)) -> None:
        self._restores: TableClient = service.get_table_client(restores_table)
        self._idem: TableClient = service.get_table_client(idempotency_table)
        self.index_slack = index_slack

    def ensure_tables(self) -> None:
        for client in (self._restores, self._idem):
            try:
                client.create_table()
            except ResourceExistsError:
                pass

    def _recreate(self, client: TableClient) -> None:
        log.warning("table %s is missing (a restarted storage emulator or a recreated account?); creating it again",
                    client.table_name)
        try:
            client.create_table()
        except ResourceExistsError as exc:  # another process was quicker, or Azure still deletes the old one
            if is_being_deleted(exc):
                raise RetryableError(f"table {client.table_name} is still being deleted; retry later") from exc

    def _call(self, client: TableClient, op: Callable[[], T]) -> T:
        """One call on ``client``'s table: created again (and the call repeated once) if it has disappeared; no
        answer at all is a :class:`RetryableError`."""
        try:
            try:
                return op()
            except HttpResponseError as exc:
                if not is_missing(exc):
                    raise
                self._recreate(client)
                return op()
        except NO_ANSWER as exc:
            raise RetryableError(f"table {client.table_name} did not answer: {type(exc).__name__}") from exc

    # -- primitives
    def _claim_key(self, key: str, restore_id: str, request_hash: str) -> tuple[str, str] | None:
        h = key_hash(key)
        try:
            self._call(self._idem, lambda: self._idem.create_entity(
                {"PartitionKey": h[:2], "RowKey": h, "restore_id": restore_id, "request_hash": request_hash}))
            return None
        except ResourceExistsError:
            existing = self._call(self._idem, lambda: self._idem.get_entity(h[:2], h))
            return str(existing["restore_id"]), str(existing["request_hash"])

    def _forget_key(self, key: str) -> None:
        h = key_hash(key)
        try:
            self._call(self._idem, lambda: self._idem.delete_entity(h[:2], h))
        except ResourceNotFoundError:
            pass

    def _transact(self, ops: list[Any]) -> str:
        return str(self._call(self._restores, lambda: self._restores.submit_transaction(ops))[0]["etag"])

    def _insert(self, row: dict[str, Any], event: dict[str, Any]) -> str:
        try:
            return self._transact([("create", row), ("create", event)])
        except TableTransactionError as exc:
            if exc.status_code == 409:
                raise _RowExists(row["RowKey"]) from exc
            if exc.status_code in (400, 413):
                raise _refused(exc) from exc
            raise RetryableError(f"table write failed: {exc.status_code}") from exc

    def _replace(self, row: dict[str, Any], etag: str | None, events: list[dict[str, Any]]) -> str:
        if not events:  # one entity: a plain ETag-guarded replace (a batch costs a multipart body and thread pools)
            return self._replace_one(row, etag)
        ops: list[Any] = [("update", row, {"mode": UpdateMode.REPLACE, "etag": etag,
                                           "match_condition": MatchConditions.IfNotModified})]
        ops += [("upsert", ev, {"mode": UpdateMode.REPLACE}) for ev in events]
        try:
            return self._transact(ops)
        except TableTransactionError as exc:
            raise self._write_failed(exc, row) from exc

    def _write_failed(self, exc: HttpResponseError, row: dict[str, Any]) -> Exception:
        """A guarded write's failure: lost the race (412/404/409, with the current row), refused as such (400/413),
        else transient."""
        if exc.status_code in (412, 404, 409):
            return ConcurrencyError(row["RowKey"], self.get(row["RowKey"]))
        if exc.status_code in (400, 413):
            return _refused(exc)
        return RetryableError(f"table write failed: {exc.status_code}")

    def _replace_one(self, row: dict[str, Any], etag: str | None) -> str:
        """The same guarantee as a one-operation transaction: replaced only while the row still has ``etag``."""
        try:
            meta = self._call(self._restores, lambda: self._restores.update_entity(
                row, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified))
        except HttpResponseError as exc:
            raise self._write_failed(exc, row) from exc
        return str(meta["etag"])

    def get(self, restore_id: str) -> RestoreRecord | None:
        try:
            ent = self._call(self._restores, lambda: self._restores.get_entity(partition_of(restore_id), restore_id))
        except ResourceNotFoundError:
            return None
        return RestoreRecord.from_entity(dict(ent), ent.metadata["etag"])

    def timeline(self, restore_id: str) -> list[TimelineEvent]:
        pk = partition_of(restore_id)
        rows = self._call(self._restores, lambda: list(self._restores.query_entities(
            "PartitionKey eq @pk and RowKey gt @lo and RowKey lt @hi",
            parameters={"pk": pk, "lo": restore_id + "~", "hi": restore_id + "~~"})))
        return [TimelineEvent.from_entity(dict(r)) for r in sorted(rows, key=lambda r: r["RowKey"])]

    def list_day(self, day: datetime, *, after_id: str | None,
                 before_id: str | None = None) -> Iterable[RestoreRecord]:
        rows = self._restores.query_entities(
            "PartitionKey eq @pk and RowKey gt @after and RowKey lt @before and Kind eq 'restore'",
            parameters={"pk": _day_partition(day), "after": after_id or "", "before": before_id or "~"})
        return self._paged(rows)

    def _paged(self, rows: Iterable[Any]) -> Iterator[RestoreRecord]:
        """Rows as records, page by page (a caller may stop early); a missing table has none (and is created)."""
        try:
            for r in rows:
                yield RestoreRecord.from_entity(dict(r), r.metadata["etag"])
        except HttpResponseError as exc:
            if not is_missing(exc):
                raise
            self._recreate(self._restores)
        except NO_ANSWER as exc:
            raise RetryableError(f"table {self._restores.table_name} did not answer: {type(exc).__name__}") from exc

    def active(self) -> list[ActiveEntry]:
        rows = self._call(self._restores, lambda: list(self._restores.query_entities("PartitionKey eq 'active'")))
        return [ActiveEntry.from_entity(dict(r)) for r in rows]

    def put_active(self, entry: ActiveEntry) -> None:
        self._call(self._restores, lambda: self._restores.upsert_entity(entry.to_entity(), mode=UpdateMode.REPLACE))

    def remove_active(self, restore_id: str) -> None:
        try:
            self._call(self._restores, lambda: self._restores.delete_entity("active", restore_id))
        except ResourceNotFoundError:
            pass

    def get_meta(self, kind: str, key: str) -> dict[str, Any] | None:
        try:
            return dict(self._call(self._restores, lambda: self._restores.get_entity(f"meta-{kind}", key_hash(key))))
        except ResourceNotFoundError:
            return None

    def put_meta(self, kind: str, key: str, values: dict[str, Any]) -> None:
        ent = {"PartitionKey": f"meta-{kind}", "RowKey": key_hash(key), **values}
        self._call(self._restores, lambda: self._restores.upsert_entity(ent, mode=UpdateMode.REPLACE))

    def list_meta(self, kind: str, *, limit: int = 100) -> list[dict[str, Any]]:
        rows = self._call(self._restores, lambda: list(islice(self._restores.query_entities(
            "PartitionKey eq @pk", parameters={"pk": f"meta-{kind}"}, results_per_page=limit), limit)))
        return [{k: v for k, v in dict(r).items() if k not in ("PartitionKey", "RowKey")} for r in rows]

    def delete_meta(self, kind: str, key: str) -> None:
        try:
            self._call(self._restores, lambda: self._restores.delete_entity(f"meta-{kind}", key_hash(key)))
        except ResourceNotFoundError:
            pass

    def get_meta_row(self, kind: str, key: str) -> tuple[dict[str, Any], str] | None:
        try:
            ent = self._call(self._restores, lambda: self._restores.get_entity(f"meta-{kind}", key_hash(key)))
        except ResourceNotFoundError:
            return None
        values = {k: v for k, v in dict(ent).items() if k not in ("PartitionKey", "RowKey")}
        return values, str(ent.metadata["etag"])

    def insert_meta(self, kind: str, key: str, values: dict[str, Any]) -> bool:
        ent = {"PartitionKey": f"meta-{kind}", "RowKey": key_hash(key), **values}
        try:
            self._call(self._restores, lambda: self._restores.create_entity(ent))
        except ResourceExistsError:
            return False
        return True

    def replace_meta(self, kind: str, key: str, values: dict[str, Any], etag: str) -> bool:
        ent = {"PartitionKey": f"meta-{kind}", "RowKey": key_hash(key), **values}
        try:
            self._call(self._restores, lambda: self._restores.update_entity(
                ent, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified))
        except (ResourceNotFoundError, ResourceModifiedError):
            return False
        except HttpResponseError as exc:
            if exc.status_code == 412:
                return False
            raise
        return True

    def delete_meta_if(self, kind: str, key: str, etag: str) -> bool:
        try:
            self._call(self._restores, lambda: self._restores.delete_entity(
                f"meta-{kind}", key_hash(key), etag=etag, match_condition=MatchConditions.IfNotModified))
        except ResourceNotFoundError:
            return True
        except ResourceModifiedError:
            return False
        except HttpResponseError as exc:
            if exc.status_code == 412:
                return False
            raise
        return True


class MemoryStateStore(StateStore):
    """In-memory twin with the same semantics (ETags, idempotency, active index) for pure-logic unit tests."""

    def __init__(self, *, index_slack: timedelta = timedelta(0)) -> None:
        self.index_slack = index_slack
        self._lock = threading.Lock()
        self._rows: dict[str, tuple[dict[str, Any], str]] = {}
        self._events: dict[str, dict[int, TimelineEvent]] = {}
        self._idem: dict[str, tuple[str, str]] = {}
        self._active: dict[str, ActiveEntry] = {}
        self._meta: dict[tuple[str, str], dict[str, Any]] = {}
        self._meta_etags: dict[tuple[str, str], str] = {}
        self._n = 0
        self.writes = 0

    def _etag(self) -> str:
        self._n += 1
        return f'W/"{self._n}"'

    def _claim_key(self, key: str, restore_id: str, request_hash: str) -> tuple[str, str] | None:
        with self._lock:
            existing = self._idem.get(key)
            if existing is None:
                self._idem[key] = (restore_id, request_hash)
            return existing

    def _forget_key(self, key: str) -> None:
        with self._lock:
            self._idem.pop(key, None)

    def _insert(self, row: dict[str, Any], event: dict[str, Any]) -> str:
        _checked([row, event])
        with self._lock:
            rid = row["RowKey"]
            if rid in self._rows:
                raise _RowExists(rid)
            etag = self._etag()
            self._rows[rid] = (row, etag)
            self._events[rid] = {1: TimelineEvent.from_entity(event)}
            self.writes += 1
            return etag

    def _replace(self, row: dict[str, Any], etag: str | None, events: list[dict[str, Any]]) -> str:
        rid = row["RowKey"]
        with self._lock:
            current = self._rows.get(rid)
            if current is None or current[1] != etag:
                raise ConcurrencyError(rid, RestoreRecord.from_entity(dict(current[0]), current[1])
                                       if current else None)
            _checked([row, *events])
            new_etag = self._etag()
            self._rows[rid] = (row, new_etag)
            for ev in events:
                self._events.setdefault(rid, {})[int(ev["RowKey"].rsplit("~", 1)[1])] = TimelineEvent.from_entity(ev)
            self.writes += 1
            return new_etag

    def get(self, restore_id: str) -> RestoreRecord | None:
        with self._lock:
            if restore_id not in self._rows:
                return None
            ent, etag = self._rows[restore_id]
            return RestoreRecord.from_entity(dict(ent), etag)

    def timeline(self, restore_id: str) -> list[TimelineEvent]:
        with self._lock:
            return [ev for _, ev in sorted(self._events.get(restore_id, {}).items())]

    def list_day(self, day: datetime, *, after_id: str | None,
                 before_id: str | None = None) -> Iterable[RestoreRecord]:
        prefix = day.strftime("%Y%m%d")
        with self._lock:
            ids = sorted(i for i in self._rows if i.startswith(prefix) and i > (after_id or "")
                         and (before_id is None or i < before_id))
            found = [RestoreRecord.from_entity(dict(self._rows[i][0]), self._rows[i][1]) for i in ids]
        return found

    def active(self) -> list[ActiveEntry]:
        with self._lock:
            return list(self._active.values())

    def put_active(self, entry: ActiveEntry) -> None:
        with self._lock:
            self._active[entry.restore_id] = entry

    def remove_active(self, restore_id: str) -> None:
        with self._lock:
            self._active.pop(restore_id, None)

    def get_meta(self, kind: str, key: str) -> dict[str, Any] | None:
        with self._lock:
            v = self._meta.get((kind, key))
            return dict(v) if v else None

    def put_meta(self, kind: str, key: str, values: dict[str, Any]) -> None:
        with self._lock:
            self._meta[(kind, key)] = dict(values)
            self._meta_etags[(kind, key)] = self._etag()

    def list_meta(self, kind: str, *, limit: int = 100) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(v) for (k, _), v in self._meta.items() if k == kind][:limit]

    def delete_meta(self, kind: str, key: str) -> None:
        with self._lock:
            self._meta.pop((kind, key), None)

    def get_meta_row(self, kind: str, key: str) -> tuple[dict[str, Any], str] | None:
        with self._lock:
            v = self._meta.get((kind, key))
            return (dict(v), self._meta_etags.get((kind, key), "")) if v is not None else None

    def insert_meta(self, kind: str, key: str, values: dict[str, Any]) -> bool:
        with self._lock:
            if (kind, key) in self._meta:
                return False
            self._meta[(kind, key)] = dict(values)
            self._meta_etags[(kind, key)] = self._etag()
            return True

    def replace_meta(self, kind: str, key: str, values: dict[str, Any], etag: str) -> bool:
        with self._lock:
            if (kind, key) not in self._meta or self._meta_etags.get((kind, key)) != etag:
                return False
            self._meta[(kind, key)] = dict(values)
            self._meta_etags[(kind, key)] = self._etag()
            return True

    def delete_meta_if(self, kind: str, key: str, etag: str) -> bool:
        with self._lock:
            if (kind, key) not in self._meta:
                return True
            if self._meta_etags.get((kind, key)) != etag:
                return False
            self._meta.pop((kind, key), None)
            return True


def days_between(since: datetime, until: datetime) -> list[datetime]:
    """The UTC days (midnight, UTC) from ``since`` to ``until``: the day partitions a time window touches. Both times
    are converted to UTC first: a day computed in the caller's zone would name the wrong partitions."""
    since, until = since.astimezone(UTC), until.astimezone(UTC)
    days, d = [], since.replace(hour=0, minute=0, second=0, microsecond=0)
    while d <= until:
        days.append(d)
        if d.date() == date.max:  # 9999-12-31: there is no next day
            break
        d += timedelta(days=1)
    return days
