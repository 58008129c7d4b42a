"""Read staged dump files without PostgreSQL binaries: format sniffing, content classification, archive TOCs.

Contracts (SDK-free, no I/O beyond the local file a caller names):

* :func:`sniff` tells a file's real format from its first bytes: ``custom`` (starts with ``PGDMP``, pg_dump -Fc),
  ``plain`` (text), ``unknown`` (empty or binary). Azure names custom archives ``<db>.sql``: never trust the name.
* :func:`classify` tells what a staged file *is* from its content (the name is only echoed in errors): ``roles``
  (pg_dumpall --roles-only), ``tablespaces`` (pg_dumpall --tablespaces-only), ``schema`` (pg_dumpall
  --schema-only: globals plus every database's schema with ``\\connect`` lines; not replayed), ``database`` (a custom
  archive or a plain dump of one database), ``unknown``.
* :func:`read_toc` / :func:`read_toc_prefix` parse the custom-format header and table of contents with our own
  parser (layout of pg_dump's pg_backup_archiver.c ``WriteHead``/``WriteToc`` and pg_backup_custom.c, archive
  versions 1.12-1.16 = pg_dump 9.0-18). pgdumplib is *not* used here: ``pgdumplib.load`` reads and caches the whole
  file, rejects archives written to a pipe (no data offsets: ``RuntimeError('Unsupported data format')``) and cannot
  read a prefix. A prefix that ends inside the TOC raises :class:`ArchiveTooShort` (how many more bytes are needed at
  least); nothing is guessed. An archive version newer than 1.16 raises :class:`ArchiveVersionUnknown` (the layout
  may have changed); older than 1.12 raises :class:`ArchiveUnreadable`.
* :func:`min_client_major` / :func:`client_can_read` / :func:`check_client`: which pg_restore major can read an
  archive version (a client reads every version up to the one its pg_dump writes).
* :func:`count_rows` counts COPY rows of table data inside a custom archive (works with and without data offsets),
  reading at most ``budget_bytes`` of table data; gzip-compressed or uncompressed data only (lz4/zstd need libraries
  we do not ship: the result says so instead of guessing). :func:`count_rows_stream` does the same from the archive's
  bytes as they pass by (chunks of any size, read once, forward only: the replay tees what it streams into
  pg_restore). Memory is bounded whatever the archive: data chunks are read and inflated in pieces of at most
  1 MiB / 4 MiB, never whole.
* :func:`plain_sql_objects` summarises a plain-SQL database dump from pg_dump's ``-- Name: …; Type: …; Schema: …``
  comment headers, so plain dumps get the same plan as archives.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol

MAGIC = b"PGDMP"
MIN_VERSION = (1, 12, 0)
MAX_KNOWN_VERSION = (1, 16, 0)

# pg_backup_archiver.h: K_OFFSET_POS_NOT_SET / K_OFFSET_POS_SET / K_OFFSET_NO_DATA
OFFSET_POS_NOT_SET = 1
OFFSET_POS_SET = 2
OFFSET_NO_DATA = 3
# pg_backup_custom.c block types
BLK_DATA = 1
BLK_BLOBS = 3

_FORMATS = {0: "unknown", 1: "custom", 2: "files", 3: "tar", 4: "null", 5: "directory"}
_COMPRESSIONS = {0: "none", 1: "gzip", 2: "lz4", 3: "zstd"}

# archive version -> first pg_dump/pg_restore major that writes/reads it (pg_backup_archiver.h K_VERS_*).
# 1.13 also reached 9.3.22/9.4.17/9.5.12/9.6.8 point releases; majors are what we compare, so 10 is the bound.
_CLIENT_FOR_VERSION: dict[tuple[int, int], int] = {(1, 12): 9, (1, 13): 10, (1, 14): 12, (1, 15): 16, (1, 16): 17}


class FileFormat(StrEnum):
    CUSTOM = "custom"
    PLAIN = "plain"
    UNKNOWN = "unknown"


class FileKind(StrEnum):
    ROLES = "roles"
    TABLESPACES = "tablespaces"
    SCHEMA = "schema"
    DATABASE = "database"
    UNKNOWN = "unknown"


class ArchiveError(ValueError):
    """Base of the errors below: the message says what is wrong and what to do."""


class ArchiveUnreadable(ArchiveError):
    """Not a custom-format archive we can read (bad magic, old version, not the custom format)."""


class ArchiveTooShort(ArchiveError):
    """The bytes given end before the table of contents does. Fetch at least ``need_more_bytes`` more and retry.

    ``suggested_total`` doubles what was read (at least ``have + need_more_bytes``): TOC sizes are unknown upfront.
    """

    def __init__(self, have: int, need_more_bytes: int) -> None:
        self.have = have
        self.need_more_bytes = need_more_bytes
        super().__init__(f"the archive's table of contents continues past byte {have}: "
                         f"read at least {need_more_bytes} more bytes and parse again")

    @property
    def suggested_total(self) -> int:
        return max(self.have * 2, self.have + self.need_more_bytes)


class ArchiveVersionUnknown(ArchiveError):
    """Archive version newer than this reader knows (layout may differ): refuse rather than misread."""

    def __init__(self, version: tuple[int, int, int]) -> None:
        self.version = version
        super().__init__(f"archive format {_fmt(version)} is newer than this service can read "
                         f"(known up to {_fmt(MAX_KNOWN_VERSION)}); it was written by pg_dump "
                         f"{min_client_major(version)} or newer: update restore_core.archive and the replay image")


class ArchiveTooNew(ArchiveError):
    """The replay client's pg_restore is older than the pg_dump that wrote the archive."""

    def __init__(self, version: tuple[int, int, int], client_major: int) -> None:
        self.version = version
        self.client_major = client_major
        self.needed_major = min_client_major(version)
        super().__init__(
            f"archive format {version[0]}.{version[1]} was written by pg_dump {self.needed_major} or newer; the "
            f"replay client is pg_restore {client_major}: set RESTORE_REPLAY_CLIENT_VERSION to the image's client "
            f"and rebuild the image with postgresql-client-{self.needed_major} or newer")


def _fmt(version: tuple[int, int, int]) -> str:
    return f"{version[0]}.{version[1]}"


# ---------------------------------------------------------------- format and kind


def sniff(header: bytes) -> FileFormat:
    """``custom`` for ``PGDMP``; ``plain`` for text (UTF-8 or Latin-1 without control bytes); else ``unknown``."""
    if header.startswith(MAGIC):
        return FileFormat.CUSTOM
    if not header.strip():
        return FileFormat.UNKNOWN
    return FileFormat.PLAIN if _looks_like_text(header[:4096]) else FileFormat.UNKNOWN


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13))
    return controls * 100 <= len(head)  # allow a stray control byte, not binary junk


_RE_CONNECT = re.compile(r"^\\connect\s", re.M)
_RE_CREATE_DATABASE = re.compile(r"^CREATE DATABASE\s", re.M)
_RE_ROLE = re.compile(r"^(CREATE|ALTER) ROLE\s", re.M)
_RE_TABLESPACE = re.compile(r"^CREATE TABLESPACE\s", re.M)
_RE_DB_OBJECTS = re.compile(r"^(CREATE (TABLE|SCHEMA|FUNCTION|VIEW|SEQUENCE|EXTENSION|TYPE|INDEX)|COPY)\s", re.M)
_RE_DB_DUMP = re.compile(r"^-- PostgreSQL database dump\s*$", re.M)
_RE_STATEMENT = re.compile(r"^(?!--|SET |SELECT pg_catalog\.set_config|\\(un)?restrict )\S", re.M)  # not header


def classify(name: str, head: bytes) -> FileKind:
    """What a staged file is, from its first bytes (give at least 64 KiB of plain text for a reliable answer).

    ``name`` is not used to decide (Azure's names are loose); it is accepted so callers log one call per blob.
    """
    del name
    fmt = sniff(head)
    if fmt is FileFormat.CUSTOM:
        return FileKind.DATABASE
    if fmt is FileFormat.UNKNOWN:
        return FileKind.UNKNOWN
    return classify_sql(head.decode("utf-8", errors="replace"))


def classify_sql(text: str) -> FileKind:
    """Classify plain SQL text (see :func:`classify`).

    pg_dumpall's roles-only and schema-only outputs start alike (header, SET lines, the ``Roles`` section); only the
    rest tells them apart. So a ``roles``/``tablespaces`` verdict needs pg_dumpall's closing line
    ``-- PostgreSQL database cluster dump complete`` in ``text``: without it the answer is ``unknown`` (read more).
    """
    if _RE_CONNECT.search(text) or _RE_CREATE_DATABASE.search(text):
        return FileKind.SCHEMA
    if _RE_DB_OBJECTS.search(text) or _RE_DB_DUMP.search(text):
        return FileKind.DATABASE
    if _CLUSTER_DUMP_COMPLETE not in text:
        return FileKind.UNKNOWN
    if _RE_ROLE.search(text):
        return FileKind.ROLES
    if _RE_TABLESPACE.search(text) or not _RE_STATEMENT.search(text):
        return FileKind.TABLESPACES
    return FileKind.UNKNOWN


_CLUSTER_DUMP_COMPLETE = "-- PostgreSQL database cluster dump complete"


# ---------------------------------------------------------------- binary reader


class _Stream(Protocol):
    def read(self, n: int, /) -> bytes: ...

    def tell(self) -> int: ...

    def seek(self, offset: int, whence: int = ..., /) -> int: ...


class ChunkStream:
    """A forward-only byte stream over ``chunks`` (an archive's bytes as they pass by, in pieces of any size).

    ``read`` returns fewer bytes only at the end; ``seek`` only skips forward (``io.SEEK_CUR``) without copying.
    It holds one chunk and the bytes of one read at most.
    """

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._buf = b""
        self._off = 0
        self._pos = 0

    def tell(self) -> int:
        return self._pos

    def _next(self) -> bytes:
        for chunk in self._chunks:
            if chunk:
                return bytes(chunk)
        return b""

    def read(self, n: int, /) -> bytes:
        avail = len(self._buf) - self._off
        if n <= avail:
            data = self._buf[self._off:self._off + n]
            self._off += n
            self._pos += n
            return data
        parts, have = [self._buf[self._off:]], avail
        self._buf, self._off = b"", 0
        while have < n and (chunk := self._next()):
            take = min(len(chunk), n - have)
            parts.append(chunk[:take] if take < len(chunk) else chunk)
            have += take
            if take < len(chunk):
                self._buf, self._off = chunk, take
        self._pos += have
        return b"".join(parts)

    def seek(self, offset: int, whence: int = io.SEEK_CUR, /) -> int:
        if whence != io.SEEK_CUR or offset < 0:
            raise io.UnsupportedOperation("a streamed archive is read forward only")
        while offset > 0:
            avail = len(self._buf) - self._off
            if offset <= avail:
                self._off += offset
                self._pos += offset
                break
            self._pos += avail
            offset -= avail
            self._buf, self._off = self._next(), 0
            if not self._buf:
                break
        return self._pos


class _Reader:
    """pg_dump's ReadInt/ReadStr/ReadOffset over a binary stream; short reads raise ArchiveTooShort."""

    def __init__(self, stream: _Stream) -> None:
        self.stream = stream
        self.int_size = 4
        self.off_size = 8

    @property
    def pos(self) -> int:
        return self.stream.tell()

    def take(self, n: int) -> bytes:
        start = self.pos
        data = self.stream.read(n)
        if len(data) < n:
            raise ArchiveTooShort(start + len(data), n - len(data))
        return data

    def u8(self) -> int:
        return self.take(1)[0]

    def i(self) -> int:
        sign, raw = self.u8(), self.take(self.int_size)
        value = int.from_bytes(raw, "little")
        return -value if sign else value

    def s(self) -> str | None:
        length = self.i()
        if length < 0:
            return None
        return self.take(length).decode("utf-8", errors="replace")

    def off(self) -> tuple[int, int]:
        state = self.u8()
        return state, int.from_bytes(self.take(self.off_size), "little")


# ---------------------------------------------------------------- header and TOC


@dataclass(frozen=True)
class ArchiveHeader:
    version: tuple[int, int, int]
    int_size: int
    off_size: int
    format: str
    compression: str  # none | gzip | lz4 | zstd
    created: dt.datetime
    dbname: str
    server_version: str  # of the dumped server, e.g. "15.18 (Debian 15.18-0+deb12u1)"
    dump_version: str  # of pg_dump


@dataclass(frozen=True)
class TocEntry:
    dump_id: int
    desc: str
    namespace: str
    tag: str
    owner: str
    defn: str
    copy_stmt: str
    data_state: int
    offset: int

    @property
    def has_data(self) -> bool:
        return self.data_state in (OFFSET_POS_NOT_SET, OFFSET_POS_SET)


@dataclass(frozen=True)
class ObjectRef:
    """A schema-qualified object; ``table`` for constraints/indexes, ``signature`` (``f(integer)``) for routines."""

    schema: str
    name: str
    table: str = ""
    signature: str = ""

    def to_dict(self) -> dict[str, str]:
        out = {"schema": self.schema, "name": self.name}
        if self.table:
            out["table"] = self.table
        if self.signature:
            out["signature"] = self.signature
        return out


_KINDS: dict[str, tuple[str, ...]] = {
    "tables": ("TABLE", "FOREIGN TABLE"),
    "indexes": ("INDEX",),
    "constraints": ("CONSTRAINT", "FK CONSTRAINT", "CHECK CONSTRAINT"),
    "sequences": ("SEQUENCE",),
    "views": ("VIEW", "MATERIALIZED VIEW"),
    "functions": ("FUNCTION", "PROCEDURE", "AGGREGATE"),
    "schemas": ("SCHEMA",),
    "extensions": ("EXTENSION",),
}


@dataclass(frozen=True)
class ArchiveToc:
    header: ArchiveHeader
    entries: tuple[TocEntry, ...]
    toc_end: int  # byte offset where the data blocks start

    @property
    def data_offsets(self) -> bool:
        """False when the archive was written to a pipe (pg_restore -j needs offsets)."""
        return not any(e.data_state == OFFSET_POS_NOT_SET for e in self.entries)

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(e.desc for e in self.entries))

    def objects(self, kind: str) -> list[ObjectRef]:
        """``kind`` is one of tables, indexes, constraints, sequences, views, functions, schemas, extensions."""
        descs = _KINDS[kind]
        return [_object_ref(e) for e in self.entries if e.desc in descs]

    def table_data(self) -> list[TocEntry]:
        return [e for e in self.entries if e.desc == "TABLE DATA"]

    def summary(self) -> dict[str, object]:
        """JSON-ready plan facts (no definitions, no owners' secrets: there are none in a TOC)."""
        h = self.header
        out: dict[str, object] = {
            "archive_version": _fmt(h.version), "server_version": h.server_version, "dump_version": h.dump_version,
            "dbname": h.dbname, "compression": h.compression, "data_offsets": self.data_offsets,
            "counts": self.counts}
        for kind in _KINDS:
            out[kind] = [o.to_dict() for o in self.objects(kind)]
        return out


def _object_ref(e: TocEntry) -> ObjectRef:
    if e.desc in _KINDS["constraints"]:
        return _constraint_ref(e)
    if e.desc in _KINDS["functions"]:
        return ObjectRef(e.namespace, e.tag.split("(", 1)[0], signature=e.tag)
    if e.desc == "INDEX":
        return ObjectRef(e.namespace, e.tag, table=_index_table(e.defn))
    return ObjectRef(e.namespace, e.tag)


_IDENT = r'(?:"(?:[^"]|"")+"|[^\s."(]+)'
_RE_ADD_CONSTRAINT = re.compile(rf"ADD CONSTRAINT ({_IDENT})")
_RE_INDEX_ON = re.compile(rf"\sON (?:ONLY )?{_IDENT}\.({_IDENT})")


def _unquote(ident: str) -> str:
    return ident[1:-1].replace('""', '"') if ident.startswith('"') else ident


def _constraint_ref(e: TocEntry) -> ObjectRef:
    """pg_dump tags table constraints ``"<table> <constraint>"`` (unquoted); the name comes from the definition."""
    m = _RE_ADD_CONSTRAINT.search(e.defn)
    name = _unquote(m.group(1)) if m else e.tag.rsplit(" ", 1)[-1]
    table = e.tag[: -len(name) - 1] if e.tag.endswith(" " + name) else ""
    return ObjectRef(e.namespace, name, table=table)


def _index_table(defn: str) -> str:
    m = _RE_INDEX_ON.search(defn)
    return _unquote(m.group(1)) if m else ""


def read_toc(path: str | Path) -> ArchiveToc:
    """Header and TOC of the custom archive at ``path`` (a truncated file raises :class:`ArchiveTooShort`)."""
    with open(path, "rb") as f:
        return _parse(f)


def read_toc_prefix(data: bytes) -> ArchiveToc:
    """Header and TOC from the first bytes of an archive (e.g. a ranged blob download)."""
    return _parse(io.BytesIO(data))


def read_header(data: bytes) -> ArchiveHeader:
    """Only the header (enough for version checks); raises like :func:`read_toc_prefix`."""
    return _read_header(_Reader(io.BytesIO(data)))


def _parse(stream: _Stream) -> ArchiveToc:
    r = _Reader(stream)
    header = _read_header(r)
    count = r.i()
    entries = tuple(_read_entry(r, header.version) for _ in range(count))
    return ArchiveToc(header, entries, r.pos)


def _read_version(r: _Reader) -> tuple[int, int, int]:
    magic = r.take(5)
    if magic != MAGIC:
        raise ArchiveUnreadable("not a pg_dump custom-format archive (no PGDMP magic): restore it as plain SQL "
                                "or re-create it with pg_dump -Fc")
    version = (r.u8(), r.u8(), r.u8())
    if version > MAX_KNOWN_VERSION:
        raise ArchiveVersionUnknown(version)
    if version < MIN_VERSION:
        raise ArchiveUnreadable(f"archive format {_fmt(version)} predates pg_dump 9.0; dump the database again "
                                "with a supported pg_dump")
    return version


def _read_header(r: _Reader) -> ArchiveHeader:
    version = _read_version(r)
    r.int_size, r.off_size = r.u8(), r.u8()
    fmt = _FORMATS.get(r.u8(), "unknown")
    if fmt != "custom":
        raise ArchiveUnreadable(f"archive format is {fmt!r}, only pg_dump's custom format (-Fc) is read here")
    compression = _read_compression(r, version)
    created = _read_timestamp(r)
    dbname, server_version, dump_version = r.s() or "", r.s() or "", r.s() or ""
    return ArchiveHeader(version, r.int_size, r.off_size, fmt, compression, created, dbname, server_version,
                         dump_version)


def _read_compression(r: _Reader, version: tuple[int, int, int]) -> str:
    if version >= (1, 15, 0):
        return _COMPRESSIONS.get(r.u8(), "unknown")
    return "none" if r.i() == 0 else "gzip"  # zlib level: -1 (default) or 1..9


def _read_timestamp(r: _Reader) -> dt.datetime:
    sec, minute, hour, mday, mon, year, _isdst = (r.i() for _ in range(7))
    try:
        return dt.datetime(year + 1900, mon + 1, mday, hour, minute, min(sec, 59), tzinfo=dt.UTC)
    except ValueError:
        return dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _read_entry(r: _Reader, version: tuple[int, int, int]) -> TocEntry:
    dump_id, _had_dumper = r.i(), r.i()
    _table_oid, _oid, tag, desc = r.s(), r.s(), r.s(), r.s()
    _section = r.i()
    defn, _drop, copy_stmt, namespace, _tablespace = r.s(), r.s(), r.s(), r.s(), r.s()
    if version >= (1, 14, 0):
        r.s()  # tableam
    if version >= (1, 16, 0):
        r.i()  # relkind
    owner, _with_oids = r.s(), r.s()
    while r.s() is not None:  # dependencies, ended by a NULL string
        pass
    state, offset = r.off()
    return TocEntry(dump_id, desc or "", namespace or "", tag or "", owner or "", defn or "", copy_stmt or "",
                    state, offset)


# ---------------------------------------------------------------- client versions


def min_client_major(archive_version: tuple[int, ...]) -> int:
    """The oldest pg_restore major that reads this archive version (versions past 1.16: 18, a lower bound)."""
    key = (archive_version[0], archive_version[1])
    if key in _CLIENT_FOR_VERSION:
        return _CLIENT_FOR_VERSION[key]
    if key > max(_CLIENT_FOR_VERSION):
        return max(_CLIENT_FOR_VERSION.values()) + 1
    raise ArchiveUnreadable(f"archive format {key[0]}.{key[1]} predates pg_dump 9.0")


def client_can_read(archive_version: tuple[int, ...], client_major: int) -> bool:
    return client_major >= min_client_major(archive_version)


def check_client(archive_version: tuple[int, int, int], client_major: int) -> None:
    """Raise :class:`ArchiveTooNew` when ``client_major``'s pg_restore cannot read the archive."""
    if not client_can_read(archive_version, client_major):
        raise ArchiveTooNew(archive_version, client_major)


# ---------------------------------------------------------------- row counts


@dataclass
class RowCounts:
    """COPY row counts per (schema, table). ``complete`` is False when the budget ran out or data was unreadable;
    ``skipped`` says which tables have no count and why."""

    rows: dict[tuple[str, str], int] = field(default_factory=dict)
    bytes_read: int = 0
    complete: bool = True
    skipped: dict[tuple[str, str], str] = field(default_factory=dict)


class _BudgetExceeded(Exception):
    pass


def count_rows(path: str | Path, tables: list[tuple[str, str]] | None, budget_bytes: int) -> RowCounts:
    """Count the rows of ``tables`` (all table data when None) from the archive's own COPY data.

    Reads at most ``budget_bytes`` of (compressed) table data; past the budget the tables not yet counted land in
    ``skipped`` with ``complete=False``. Data blocks are found by walking the file (works without data offsets).
    """
    with open(path, "rb") as f:
        return _count(f, tables, budget_bytes)


def count_rows_stream(chunks: Iterable[bytes], tables: list[tuple[str, str]] | None,
                      budget_bytes: int) -> RowCounts:
    """:func:`count_rows` over an archive's bytes read once, in order (e.g. teed from what pg_restore is fed).

    Stops reading as soon as every wanted table is counted or the budget is spent (the caller drains the rest). A
    header or TOC that is not readable raises like :func:`read_toc`; data that ends early is reported in ``skipped``.
    """
    return _count(ChunkStream(chunks), tables, budget_bytes)


def _count(stream: _Stream, tables: list[tuple[str, str]] | None, budget_bytes: int) -> RowCounts:
    toc = _parse(stream)
    wanted = _wanted_entries(toc, tables)
    result, why = RowCounts(), ""
    _skip_unreadable(toc, wanted, result)
    if wanted:
        why = _walk_blocks(_Reader(stream), toc, wanted, budget_bytes, result)
    for entry in wanted.values():
        result.skipped[(entry.namespace, entry.tag)] = why
        result.complete = False
    return result


def _wanted_entries(toc: ArchiveToc, tables: list[tuple[str, str]] | None) -> dict[int, TocEntry]:
    names = set(tables) if tables is not None else None
    return {e.dump_id: e for e in toc.table_data()
            if e.has_data and (names is None or (e.namespace, e.tag) in names)}


def _skip_unreadable(toc: ArchiveToc, wanted: dict[int, TocEntry], result: RowCounts) -> None:
    reason = ""
    if toc.header.compression not in ("none", "gzip"):
        reason = f"{toc.header.compression} compressed data is not decoded here"
    for dump_id, entry in list(wanted.items()):
        why = reason or ("" if entry.copy_stmt else "data dumped as INSERT statements")
        if why:
            result.skipped[(entry.namespace, entry.tag)] = why
            result.complete = False
            del wanted[dump_id]


def _walk_blocks(r: _Reader, toc: ArchiveToc, wanted: dict[int, TocEntry], budget: int, result: RowCounts) -> str:
    """Walk the data blocks after the TOC, counting wanted ones; returns why the rest (if any) were not counted."""
    r.int_size, r.off_size = toc.header.int_size, toc.header.off_size
    gz = toc.header.compression == "gzip"
    try:
        while wanted:
            kind = r.stream.read(1)
            if not kind:
                return "the archive ends before this table's data"
            dump_id = r.i()
            if kind[0] == BLK_DATA and dump_id in wanted:
                entry = wanted[dump_id]
                result.rows[(entry.namespace, entry.tag)] = _count_block(r, gz, budget, result)
                del wanted[dump_id]
            elif kind[0] == BLK_BLOBS:
                _skip_blobs(r)
            else:
                _skip_chunks(r)
    except _BudgetExceeded:
        return f"row count budget of {budget} bytes exhausted"
    except ArchiveTooShort as exc:
        return f"the archive ends at byte {exc.have}, inside or before this table's data"
    except zlib.error as exc:
        return f"table data unreadable: {exc}"
    return ""


_PIECE = 1 << 20  # bytes of one data chunk read at a time
_INFLATE_MAX = 4 << 20  # bytes of inflated COPY text held at a time


def _count_block(r: _Reader, gz: bool, budget: int, result: RowCounts) -> int:
    """Rows = newlines of the COPY text, minus pg_dump's ``\\.`` terminator lines when the data carries them."""
    inflate = zlib.decompressobj() if gz else None
    lines, tail = 0, b""
    for piece in _ChunkIter(r):
        result.bytes_read += len(piece)
        if result.bytes_read > budget:
            raise _BudgetExceeded
        for text in _inflated(inflate, piece):
            lines, tail = lines + text.count(b"\n"), (tail + text[-16:])[-16:]
    if inflate:
        rest = inflate.flush()
        lines, tail = lines + rest.count(b"\n"), (tail + rest[-16:])[-16:]
    return lines - _terminator_lines(tail)


def _inflated(inflate: zlib._Decompress | None, data: bytes) -> Iterator[bytes]:
    """``data`` inflated in pieces of at most 4 MiB (a small compressed chunk may inflate to gigabytes)."""
    if inflate is None:
        yield data
        return
    while data:
        yield inflate.decompress(data, _INFLATE_MAX)
        data = inflate.unconsumed_tail


def _terminator_lines(tail: bytes) -> int:
    """Newlines of a trailing ``\\.\\n\\n\\n`` (a data line is never exactly ``\\.``: COPY escapes it)."""
    body = tail.rstrip(b"\n")
    if body == b"\\." or body.endswith(b"\n\\."):
        return len(tail) - len(body)
    return 0


class _ChunkIter:
    """Data of one block in pieces of at most 1 MiB: chunks of ReadInt length + bytes, ended by a zero length."""

    def __init__(self, r: _Reader) -> None:
        self.r = r
        self.left = 0

    def __iter__(self) -> _ChunkIter:
        return self

    def __next__(self) -> bytes:
        if self.left <= 0:
            self.left = self.r.i()
            if self.left <= 0:
                raise StopIteration
        piece = self.r.take(min(self.left, _PIECE))
        self.left -= len(piece)
        return piece


def _skip_chunks(r: _Reader) -> None:
    while (size := r.i()) > 0:
        r.stream.seek(size, io.SEEK_CUR)


def _skip_blobs(r: _Reader) -> None:
    while r.i() != 0:  # large object oid, then its chunks
        _skip_chunks(r)


# ---------------------------------------------------------------- plain SQL


_RE_NAME_HEADER = re.compile(r"^-- (?:Data for )?Name: (.*); Type: ([A-Z ]+); Schema: (.*); Owner: ?(.*)$", re.M)
_RE_DUMP_VERSION = re.compile(r"^-- Dumped by pg_dump version (.+)$", re.M)
_RE_SERVER_VERSION = re.compile(r"^-- Dumped from database version (.+)$", re.M)
_RE_COPY = re.compile(r"^COPY .+ FROM stdin;$", re.M)


@dataclass(frozen=True)
class PlainSqlSummary:
    server_version: str
    dump_version: str
    counts: dict[str, int]
    objects: dict[str, list[ObjectRef]]
    copy_rows: dict[tuple[str, str], int]  # (schema, table) -> rows of its COPY block

    def summary(self) -> dict[str, object]:
        out: dict[str, object] = {
            "server_version": self.server_version, "dump_version": self.dump_version, "counts": self.counts,
            "copy_rows": [{"schema": s, "name": t, "rows": n} for (s, t), n in self.copy_rows.items()]}
        for kind, refs in self.objects.items():
            out[kind] = [o.to_dict() for o in refs]
        return out


def plain_sql_objects(text: str) -> PlainSqlSummary:
    """Objects of a plain pg_dump (-Fp) from its ``-- Name:`` headers, rows from the COPY block after each
    ``-- Data for Name: …; Type: TABLE DATA`` header (data dumped as INSERTs has no count)."""
    matches = list(_RE_NAME_HEADER.finditer(text))
    entries = [_header_entry(m) for m in matches]
    objects = {kind: [_object_ref(e) for e in entries if e.desc in descs] for kind, descs in _KINDS.items()}
    dump_v, server_v = _RE_DUMP_VERSION.search(text), _RE_SERVER_VERSION.search(text)
    rows = {(e.namespace, e.tag): n for m, e in zip(matches, entries, strict=True)
            if e.desc == "TABLE DATA" and (n := _copy_rows_after(text, m.end())) is not None}
    return PlainSqlSummary(server_v.group(1) if server_v else "", dump_v.group(1) if dump_v else "",
                           dict(Counter(e.desc for e in entries)), objects, rows)


def _header_entry(m: re.Match[str]) -> TocEntry:
    name, desc, schema, owner = m.group(1), m.group(2).strip(), m.group(3), m.group(4)
    return TocEntry(0, desc, "" if schema == "-" else schema, name, owner, "", "", OFFSET_NO_DATA, 0)


def _copy_rows_after(text: str, pos: int) -> int | None:
    """Rows of the COPY block that starts right after the header at ``pos`` (None if the next statement is not one)."""
    m = _RE_COPY.search(text, pos)
    if m is None or text[pos:m.start()].strip("-\n "):
        return None
    end = text.find("\n\\.\n", m.end())
    if end < 0:
        return None
    return text[m.end() + 1:end + 1].count("\n") if end > m.end() else 0
