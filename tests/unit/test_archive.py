"""``restore_core.archive``: sniffing, classification by content, our TOC parser on archives of every version
1.12-1.16 (written by pgdumplib's writer), prefixes, client versions, row counts within a budget, plain dumps."""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterator
from pathlib import Path

import pgdumplib
import pytest

from restore_core import archive as a

ROLES_SQL = """--
-- PostgreSQL database cluster dump
--

\\restrict abc

SET default_transaction_read_only = off;

--
-- Roles
--

CREATE ROLE app_owner;
ALTER ROLE app_owner WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS;

\\unrestrict abc

--
-- PostgreSQL database cluster dump complete
--
"""
EMPTY_TABLESPACES_SQL = """--
-- PostgreSQL database cluster dump
--

SET default_transaction_read_only = off;

SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;

--
-- PostgreSQL database cluster dump complete
--
"""
PLAIN_DB = '''--
-- PostgreSQL database dump
--

-- Dumped from database version 15.18
-- Dumped by pg_dump version 17.2

SET statement_timeout = 0;

--
-- Name: inv; Type: SCHEMA; Schema: -; Owner: app_owner
--

CREATE SCHEMA inv;

--
-- Name: items; Type: TABLE; Schema: inv; Owner: app_owner
--

CREATE TABLE inv.items (
    id integer NOT NULL
);

--
-- Name: Weird "T"; Type: TABLE; Schema: public; Owner: app_owner
--

CREATE TABLE public."Weird ""T""" (a text);

--
-- Data for Name: items; Type: TABLE DATA; Schema: inv; Owner: app_owner
--

COPY inv.items (id) FROM stdin;
1
2
3
\\.


--
-- Data for Name: Weird "T"; Type: TABLE DATA; Schema: public; Owner: app_owner
--

COPY public."Weird ""T""" (a) FROM stdin;
\\.


--
-- Name: items items_pkey; Type: CONSTRAINT; Schema: inv; Owner: app_owner
--

ALTER TABLE ONLY inv.items
    ADD CONSTRAINT items_pkey PRIMARY KEY (id);

--
-- Name: f(integer); Type: FUNCTION; Schema: inv; Owner: app_owner
--
'''


def make_archive(path: Path, appear_as: str = "15.0", rows: int = 7) -> Path:
    d = pgdumplib.new("shop", appear_as=appear_as)
    t = d.add_entry("TABLE", namespace="public", tag="items", defn="CREATE TABLE public.items (id int);")
    d.add_entry("TABLE", namespace="inv", tag="empty", defn="CREATE TABLE inv.empty (id int);")
    d.add_entry("INDEX", namespace="public", tag="items_idx",
                defn="CREATE INDEX items_idx ON public.items USING btree (id);")
    d.add_entry("CONSTRAINT", namespace="public", tag="items items pk",
                defn='ALTER TABLE ONLY public.items\n    ADD CONSTRAINT "items pk" PRIMARY KEY (id);')
    d.add_entry("FUNCTION", namespace="public", tag="f(integer, text)", defn="CREATE FUNCTION ...")
    with d.table_data_writer(t, ["id"]) as w:
        for i in range(rows):
            w.append(i)
    d.save(path)
    return path


# ---------------------------------------------------------------- sniff / classify


@pytest.mark.parametrize(("head", "fmt"), [
    (b"PGDMP\x01\x0e\x00", a.FileFormat.CUSTOM),
    (b"--\n-- PostgreSQL database dump\n", a.FileFormat.PLAIN),
    (b"", a.FileFormat.UNKNOWN),
    (b"  \n", a.FileFormat.UNKNOWN),
    (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03", a.FileFormat.UNKNOWN),  # gzip junk
    (bytes(range(1, 32)) * 4, a.FileFormat.UNKNOWN),
])
def test_sniff(head: bytes, fmt: a.FileFormat) -> None:
    assert a.sniff(head) is fmt


def test_classify_by_content_not_name() -> None:
    assert a.classify("roles.sql", b"PGDMP\x01\x0e\x00") is a.FileKind.DATABASE  # Azure names archives .sql
    assert a.classify("appdb.sql", ROLES_SQL.encode()) is a.FileKind.ROLES
    assert a.classify("x", EMPTY_TABLESPACES_SQL.encode()) is a.FileKind.TABLESPACES
    ts = EMPTY_TABLESPACES_SQL.replace("--\n-- PostgreSQL database cluster dump complete",
                                       "CREATE TABLESPACE ts1 OWNER postgres LOCATION '/x';\n\n--\n"
                                       "-- PostgreSQL database cluster dump complete")
    assert a.classify("x", ts.encode()) is a.FileKind.TABLESPACES
    assert a.classify("x", PLAIN_DB.encode()) is a.FileKind.DATABASE
    assert a.classify("x", b"\x00\x01binary") is a.FileKind.UNKNOWN
    assert a.classify("x", b"hello world\n") is a.FileKind.UNKNOWN


def test_schema_file_is_recognised_by_connect_or_create_database() -> None:
    schema = ROLES_SQL + "\n--\n-- Databases\n--\n\\connect template1\n\n-- PostgreSQL database dump\n"
    assert a.classify("schema.sql", schema.encode()) is a.FileKind.SCHEMA
    assert a.classify("s", b"CREATE DATABASE appdb WITH TEMPLATE = template0;\n") is a.FileKind.SCHEMA


def test_roles_verdict_needs_the_end_of_pg_dumpall_output() -> None:
    """A prefix of schema.sql looks exactly like roles.sql: without pg_dumpall's trailer the answer is unknown."""
    prefix = ROLES_SQL.split("\\unrestrict")[0]
    assert a.classify("roles.sql", prefix.encode()) is a.FileKind.UNKNOWN


# ---------------------------------------------------------------- TOC


@pytest.mark.parametrize(("appear_as", "version"), [
    ("9.6", (1, 12, 0)), ("10.5", (1, 13, 0)), ("15.0", (1, 14, 0)), ("16.0", (1, 15, 0)), ("17.0", (1, 16, 0))])
def test_read_toc_every_supported_version(tmp_path: Path, appear_as: str, version: tuple[int, int, int]) -> None:
    toc = a.read_toc(make_archive(tmp_path / "a.dump", appear_as))
    assert toc.header.version == version
    assert toc.header.dbname == "shop"
    assert toc.header.compression == "none"
    assert toc.data_offsets is True
    assert toc.counts["TABLE"] == 2 and toc.counts["TABLE DATA"] == 1 and toc.counts["INDEX"] == 1
    assert [(o.schema, o.name) for o in toc.objects("tables")] == [("public", "items"), ("inv", "empty")]
    assert toc.objects("indexes") == [a.ObjectRef("public", "items_idx", table="items")]
    assert toc.objects("constraints") == [a.ObjectRef("public", "items pk", table="items")]
    assert toc.objects("functions") == [a.ObjectRef("public", "f", signature="f(integer, text)")]


def test_toc_matches_pgdumplib(tmp_path: Path) -> None:
    path = make_archive(tmp_path / "a.dump")
    ours = [(e.dump_id, e.desc, e.namespace, e.tag, e.data_state, e.offset) for e in a.read_toc(path).entries]
    theirs = [(e.dump_id, e.desc, e.namespace, e.tag, e.data_state, e.offset) for e in pgdumplib.load(path).entries]
    assert ours == theirs


def test_prefix_too_short_says_how_much_more(tmp_path: Path) -> None:
    data = make_archive(tmp_path / "a.dump").read_bytes()
    toc = a.read_toc_prefix(data)
    with pytest.raises(a.ArchiveTooShort) as exc:
        a.read_toc_prefix(data[: toc.toc_end - 1])
    assert exc.value.have == toc.toc_end - 1
    assert exc.value.need_more_bytes >= 1
    assert exc.value.suggested_total >= toc.toc_end
    assert a.read_toc_prefix(data[: toc.toc_end]).entries == toc.entries  # exactly the TOC is enough
    with pytest.raises(a.ArchiveTooShort):
        a.read_toc_prefix(data[:3])


def test_truncated_file_raises_too_short(tmp_path: Path) -> None:
    data = make_archive(tmp_path / "a.dump").read_bytes()
    (tmp_path / "cut").write_bytes(data[:100])
    with pytest.raises(a.ArchiveTooShort):
        a.read_toc(tmp_path / "cut")


def test_not_an_archive_and_unknown_versions_are_refused() -> None:
    with pytest.raises(a.ArchiveUnreadable, match="PGDMP"):
        a.read_toc_prefix(b"-- PostgreSQL database dump\n" * 4)
    with pytest.raises(a.ArchiveVersionUnknown, match="1.17 is newer") as exc:
        a.read_header(b"PGDMP\x01\x11\x00\x04\x08\x01")
    assert exc.value.version == (1, 17, 0)
    with pytest.raises(a.ArchiveUnreadable, match="predates"):
        a.read_header(b"PGDMP\x01\x0b\x00\x04\x08\x01")
    with pytest.raises(a.ArchiveUnreadable, match="'tar'"):
        a.read_header(b"PGDMP\x01\x0e\x00\x04\x08\x03" + b"\x00" * 64)


def test_summary_is_json_ready(tmp_path: Path) -> None:
    import json
    s = a.read_toc(make_archive(tmp_path / "a.dump")).summary()
    assert json.loads(json.dumps(s))["tables"][0] == {"schema": "public", "name": "items"}
    assert s["archive_version"] == "1.14" and s["data_offsets"] is True


# ---------------------------------------------------------------- client versions


@pytest.mark.parametrize(("version", "major"), [
    ((1, 12, 0), 9), ((1, 13, 0), 10), ((1, 14, 0), 12), ((1, 15, 0), 16), ((1, 16, 0), 17), ((1, 17, 0), 18)])
def test_min_client_major(version: tuple[int, int, int], major: int) -> None:
    assert a.min_client_major(version) == major
    assert a.client_can_read(version, major)
    assert not a.client_can_read(version, major - 1)


def test_archive_too_new_message() -> None:
    with pytest.raises(a.ArchiveTooNew) as exc:
        a.check_client((1, 16, 0), 15)
    assert str(exc.value) == (
        "archive format 1.16 was written by pg_dump 17 or newer; the replay client is pg_restore 15: set "
        "RESTORE_REPLAY_CLIENT_VERSION to the image's client and rebuild the image with postgresql-client-17 or newer")
    a.check_client((1, 16, 0), 18)  # no error


# ---------------------------------------------------------------- rows


def test_count_rows_all_and_selected(tmp_path: Path) -> None:
    path = make_archive(tmp_path / "a.dump", rows=1000)
    assert a.count_rows(path, None, 10**6).rows == {("public", "items"): 1000}
    r = a.count_rows(path, [("inv", "nothing")], 10**6)
    assert r.rows == {} and r.complete


def test_count_rows_budget_exhausted_is_partial_and_says_why(tmp_path: Path) -> None:
    path = make_archive(tmp_path / "a.dump", rows=5000)
    r = a.count_rows(path, None, 100)
    assert r.rows == {}
    assert not r.complete
    assert "budget" in r.skipped[("public", "items")]


def test_count_rows_of_a_truncated_archive_is_partial(tmp_path: Path) -> None:
    data = make_archive(tmp_path / "a.dump", rows=5000).read_bytes()
    (tmp_path / "cut").write_bytes(data[: a.read_toc_prefix(data).toc_end + 200])
    r = a.count_rows(tmp_path / "cut", None, 10**6)
    assert not r.complete and ("public", "items") in r.skipped


@pytest.mark.parametrize(("tail", "lines"), [
    (b"1\n2\n\\.\n\n\n", 3), (b"\\.\n\n\n", 3), (b"1\n2\n", 0), (b"x\\\\.\n", 0), (b"", 0)])
def test_terminator_lines(tail: bytes, lines: int) -> None:
    assert a._terminator_lines(tail) == lines


# ---------------------------------------------------------------- plain


def test_plain_sql_objects() -> None:
    s = a.plain_sql_objects(PLAIN_DB)
    assert s.server_version == "15.18" and s.dump_version == "17.2"
    assert s.counts == {"SCHEMA": 1, "TABLE": 2, "TABLE DATA": 2, "CONSTRAINT": 1, "FUNCTION": 1}
    assert [(o.schema, o.name) for o in s.objects["tables"]] == [("inv", "items"), ("public", 'Weird "T"')]
    assert s.objects["constraints"] == [a.ObjectRef("inv", "items_pkey", table="items")]
    assert s.copy_rows == {("inv", "items"): 3, ("public", 'Weird "T"'): 0}
    assert s.summary()["copy_rows"] == [{"schema": "inv", "name": "items", "rows": 3},
                                        {"schema": "public", "name": 'Weird "T"', "rows": 0}]


# ---------------------------------------------------------------- row counts from a stream


def _pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("size", [1, 7, 4096, 10**9])
def test_counts_from_a_stream_equal_counts_from_the_file_whatever_the_chunk_size(tmp_path: Path, size: int) -> None:
    path = make_archive(tmp_path / "a.dump", rows=3000)
    by_file = a.count_rows(path, None, 10**6)
    by_stream = a.count_rows_stream(_pieces(path.read_bytes(), size), None, 10**6)
    assert by_stream.rows == by_file.rows == {("public", "items"): 3000}
    assert by_stream.complete and by_stream.bytes_read == by_file.bytes_read


def test_counts_from_a_stream_stop_reading_when_done_and_keep_the_budget(tmp_path: Path) -> None:
    data = make_archive(tmp_path / "a.dump", rows=5000).read_bytes()
    pulled: list[int] = []

    def chunks() -> Iterator[bytes]:
        for piece in _pieces(data, 100):
            pulled.append(len(piece))
            yield piece

    r = a.count_rows_stream(chunks(), None, 100)
    assert r.rows == {} and not r.complete and "budget" in r.skipped[("public", "items")]
    assert sum(pulled) < len(data)  # stopped at the budget, did not read on to the end


def test_counts_from_a_stream_that_ends_early_are_partial(tmp_path: Path) -> None:
    data = make_archive(tmp_path / "a.dump", rows=5000).read_bytes()
    r = a.count_rows_stream(_pieces(data[: a.read_toc_prefix(data).toc_end + 200], 64), None, 10**6)
    assert not r.complete and ("public", "items") in r.skipped
    with pytest.raises(a.ArchiveTooShort):
        a.count_rows_stream(_pieces(data[:100], 10), None, 10**6)


def test_chunk_stream_reads_and_skips_forward_only() -> None:
    s = a.ChunkStream([b"abc", b"", b"defg", b"h"])
    assert s.read(2) == b"ab" and s.tell() == 2
    assert s.seek(3) == 5 and s.read(10) == b"fgh" and s.tell() == 8
    assert s.read(1) == b""
    with pytest.raises(io.UnsupportedOperation):
        s.seek(0, io.SEEK_SET)


def test_a_small_compressed_chunk_is_inflated_in_bounded_pieces() -> None:
    bomb = zlib.compress(b"\n" * (64 << 20), 9)  # 64 MiB of newlines in ~64 KiB
    pieces = list(a._inflated(zlib.decompressobj(), bomb))
    assert max(len(p) for p in pieces) <= 4 << 20 and len(pieces) >= 16
    assert sum(p.count(b"\n") for p in pieces) == 64 << 20


def test_a_large_data_chunk_is_read_in_pieces(tmp_path: Path) -> None:
    r = a._Reader(io.BytesIO(b"\x00" + (3 << 20).to_bytes(4, "little") + b"x" * (3 << 20) + b"\x00" * 5))
    pieces = list(a._ChunkIter(r))
    assert [len(p) for p in pieces] == [1 << 20] * 3
