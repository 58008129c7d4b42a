"""restore_core.archive / pgroles / pgerrors against real pg_dump, pg_dumpall and pg_restore output of a throw-away
PostgreSQL cluster (the newest local server binaries, e.g. 15): custom archives written to a file (data offsets) and
to a pipe (none), plain dumps, the pg_dumpall globals files, and pg_restore --no-owner stderr into a database whose
roles are missing. Self-contained: one cluster per module, on a free loopback port, removed afterwards."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from restore_core import archive, pgerrors, pgroles

pytestmark = pytest.mark.integration

SETUP_SQL = """
CREATE ROLE azure_pg_admin NOLOGIN;
CREATE ROLE azuresu SUPERUSER NOLOGIN;
CREATE ROLE replication REPLICATION LOGIN;
CREATE ROLE pgadmin LOGIN CREATEDB CREATEROLE PASSWORD 'pw-of-pgadmin' IN ROLE azure_pg_admin;
CREATE ROLE app_owner LOGIN PASSWORD 'pw-of-app-owner';
CREATE ROLE app_reader NOLOGIN;
GRANT app_reader TO app_owner;
CREATE DATABASE appdb OWNER app_owner;
"""
APP_SQL = '''
CREATE SCHEMA inv AUTHORIZATION app_owner;
SET ROLE app_owner;
CREATE TABLE inv.items(id serial PRIMARY KEY, name text NOT NULL UNIQUE, note text);
CREATE TABLE public.orders(id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                           item_id int REFERENCES inv.items(id), qty int CHECK (qty > 0));
CREATE INDEX orders_item ON public.orders(item_id);
CREATE VIEW inv.v_items AS SELECT id, name FROM inv.items;
CREATE FUNCTION inv.f(x int) RETURNS int LANGUAGE sql AS 'SELECT x + 1';
CREATE TABLE public."Weird ""T""" (a text);
INSERT INTO inv.items(name, note) SELECT 'n' || g, E'two\\nlines\\t' FROM generate_series(1, 50) g;
INSERT INTO public.orders(item_id, qty) SELECT (g % 50) + 1, g FROM generate_series(1, 1234) g;
INSERT INTO public."Weird ""T""" VALUES ('\\.'), (NULL);
GRANT SELECT ON inv.items TO app_reader;
RESET ROLE;
GRANT SELECT ON inv.items TO azure_pg_admin;
'''


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    assert found, "PostgreSQL server binaries not found under /usr/lib/postgresql"
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    bindir: Path
    port: int
    out: Path  # where dumps are written

    def run(self, tool: str, *args: str, user: str = "postgres", check: bool = True,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / tool), "-h", "127.0.0.1", "-p", str(self.port), "-U", user, *args]
        return subprocess.run(cmd, capture_output=True, text=True, check=check, input=stdin)

    def psql(self, sql: str, db: str = "postgres", user: str = "postgres") -> None:
        self.run("psql", "-v", "ON_ERROR_STOP=1", "-q", "-d", db, user=user, stdin=sql)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    base = Path(tempfile.mkdtemp(prefix="archive-real-"))
    os.chmod(base, 0o755)  # noqa: S103 - the postgres OS user runs the server
    as_pg = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
    data = base / "data"
    if as_pg:
        shutil.chown(base, "postgres")
    bindir, port = _bindir(), _free_port()
    subprocess.run([*as_pg, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync",
                    "-E", "UTF8", "--locale=C.UTF-8"], check=True, capture_output=True)
    subprocess.run([*as_pg, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-w", "-o",
                    f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={base} -c fsync=off",
                    "start"], check=True, capture_output=True)
    out = Path(tempfile.mkdtemp(prefix="archive-out-"))
    try:
        c = Cluster(bindir, port, out)
        c.psql(SETUP_SQL)
        c.psql(APP_SQL, db="appdb")
        yield c
    finally:
        subprocess.run([*as_pg, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, check=False)
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)


@pytest.fixture(scope="module")
def dumps(cluster: Cluster) -> dict[str, Path]:
    out = cluster.out
    files = {"custom": out / "appdb.sql", "stream": out / "appdb-stream.sql", "plain": out / "appdb-plain.sql",
             "roles": out / "roles.sql", "tablespaces": out / "tablespace.sql", "schema": out / "schema.sql"}
    cluster.run("pg_dump", "-Fc", "-f", str(files["custom"]), "appdb")
    files["stream"].write_bytes(_dump_to_pipe(cluster))
    cluster.run("pg_dump", "-Fp", "-f", str(files["plain"]), "appdb")
    for kind, flag in (("roles", "--roles-only"), ("tablespaces", "--tablespaces-only"), ("schema", "--schema-only")):
        cluster.run("pg_dumpall", flag, "-f", str(files[kind]))
    return files


def _dump_to_pipe(cluster: Cluster) -> bytes:
    """pg_dump -Fc with stdout a pipe (as a streaming backup tool runs it): the archive gets no data offsets."""
    cmd = [str(cluster.bindir / "pg_dump"), "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres", "-Fc",
           "appdb"]
    return subprocess.run(cmd, stdout=subprocess.PIPE, check=True).stdout


EXPECTED_ROWS = {("inv", "items"): 50, ("public", "orders"): 1234, ("public", 'Weird "T"'): 2}


def test_classify_real_files_by_content(dumps: dict[str, Path]) -> None:
    kinds = {k: archive.classify(p.name, p.read_bytes()[:65536]) for k, p in dumps.items()}
    assert kinds == {"custom": "database", "stream": "database", "plain": "database", "roles": "roles",
                     "tablespaces": "tablespaces", "schema": "schema"}
    assert archive.sniff(dumps["custom"].read_bytes()[:5]) is archive.FileFormat.CUSTOM
    assert archive.sniff(dumps["plain"].read_bytes()[:512]) is archive.FileFormat.PLAIN


@pytest.mark.parametrize(("kind", "offsets"), [("custom", True), ("stream", False)])
def test_read_toc_of_real_archives(cluster: Cluster, dumps: dict[str, Path], kind: str, offsets: bool) -> None:
    toc = archive.read_toc(dumps[kind])
    major = int(cluster.bindir.parent.name)
    assert toc.header.dbname == "appdb"
    assert toc.header.server_version.startswith(f"{major}.") and toc.header.dump_version.startswith(f"{major}.")
    assert archive.client_can_read(toc.header.version, major)
    assert toc.header.compression == "gzip"
    assert toc.data_offsets is offsets
    assert {(o.schema, o.name) for o in toc.objects("tables")} == {("inv", "items"), ("public", "orders"),
                                                                   ("public", 'Weird "T"')}
    assert {(o.schema, o.name, o.table) for o in toc.objects("constraints")} == {
        ("inv", "items_pkey", "items"), ("inv", "items_name_key", "items"), ("public", "orders_pkey", "orders"),
        ("public", "orders_item_id_fkey", "orders")}
    assert toc.objects("indexes") == [archive.ObjectRef("public", "orders_item", table="orders")]
    assert toc.objects("views") == [archive.ObjectRef("inv", "v_items")]
    assert toc.objects("functions") == [archive.ObjectRef("inv", "f", signature="f(integer)")]
    assert {o.name for o in toc.objects("sequences")} == {"items_id_seq", "orders_id_seq"}
    assert toc.counts["FK CONSTRAINT"] == 1 and toc.counts["TABLE DATA"] == 3


def test_prefix_of_a_real_archive(dumps: dict[str, Path]) -> None:
    data = dumps["stream"].read_bytes()
    full = archive.read_toc_prefix(data)
    with pytest.raises(archive.ArchiveTooShort) as exc:
        archive.read_toc_prefix(data[:1024])
    assert archive.read_toc_prefix(data[: exc.value.suggested_total * 8]).entries == full.entries


@pytest.mark.parametrize("kind", ["custom", "stream"])
def test_count_rows_of_real_archives(dumps: dict[str, Path], kind: str) -> None:
    r = archive.count_rows(dumps[kind], None, 10**7)
    assert r.complete and r.rows == EXPECTED_ROWS
    part = archive.count_rows(dumps[kind], None, 40)
    assert not part.complete and set(part.skipped) | set(part.rows) == set(EXPECTED_ROWS)


@pytest.mark.parametrize("kind", ["custom", "stream"])
@pytest.mark.parametrize("size", [1, 13, 65536])
def test_counts_teed_from_a_real_archive_stream_equal_the_files(dumps: dict[str, Path], kind: str, size: int) -> None:
    """gzip data split anywhere (inside chunk lengths, inside compressed data) counts the same as from the file."""
    data = dumps[kind].read_bytes()
    by_file = archive.count_rows(dumps[kind], None, 10**7)
    by_stream = archive.count_rows_stream((data[i:i + size] for i in range(0, len(data), size)), None, 10**7)
    assert archive.read_toc(dumps[kind]).header.compression == "gzip"
    assert by_stream.rows == by_file.rows == EXPECTED_ROWS and by_stream.complete
    assert by_stream.bytes_read == by_file.bytes_read


def test_plain_dump_summary(dumps: dict[str, Path]) -> None:
    s = archive.plain_sql_objects(dumps["plain"].read_text())
    assert s.copy_rows == EXPECTED_ROWS
    assert {(o.schema, o.name) for o in s.objects["tables"]} == {(t[0], t[1]) for t in EXPECTED_ROWS}
    assert s.counts["FK CONSTRAINT"] == 1


def test_real_roles_sql_cleaned_and_replayed(cluster: Cluster, dumps: dict[str, Path]) -> None:
    plan = pgroles.clean_roles(dumps["roles"].read_text(), exclude=["pgadmin"])
    assert plan.role_names == ["app_owner", "app_reader"]
    assert {d.name for d in plan.dropped} == {"azure_pg_admin", "azuresu", "replication", "pgadmin", "postgres"}
    assert plan.passwords_removed == ["app_owner"]
    # runs as the non-superuser admin on a server where the roles are missing, twice (idempotent)
    _drop_role(cluster, "app_reader")
    script = "BEGIN;\n" + "\n".join(plan.statements) + "\nCOMMIT;\n"
    cluster.psql(script, user="pgadmin")
    cluster.psql(script, user="pgadmin")
    res = cluster.run("psql", "-Atc", "SELECT rolname, rolsuper, rolbypassrls, rolpassword IS NULL FROM pg_authid "
                      "WHERE rolname = 'app_reader'")
    assert res.stdout.strip() == "app_reader|f|f|t"


def test_real_pg_restore_errors_classified(cluster: Cluster, dumps: dict[str, Path]) -> None:
    """pg_restore --no-owner as the non-superuser admin into a new database while app_reader is missing: its grant
    fails, and azure_pg_admin's grant (same ACL entry) is skipped with it."""
    _drop_role(cluster, "app_reader")
    cluster.psql("DROP DATABASE IF EXISTS restored")
    cluster.psql("CREATE DATABASE restored OWNER pgadmin")
    res = cluster.run("pg_restore", "--no-owner", "-d", "restored", str(dumps["custom"]), user="pgadmin",
                      check=False)
    assert res.returncode == 1
    strict = pgerrors.classify_output(res.stderr)
    assert [i.code for i in strict.failures] == ["restore-error"]
    assert strict.failures[0].message == 'role "app_reader" does not exist'
    assert strict.errors_ignored == 1
    lenient = pgerrors.classify_output(res.stderr, absent_roles=["app_reader"])
    assert lenient.ok and [i.code for i in lenient.warnings] == ["skipped-role-grant"]


def _drop_role(cluster: Cluster, role: str) -> None:
    for db in ("appdb", "postgres", "restored"):
        cluster.run("psql", "-d", db, "-qc", f"DROP OWNED BY {role}", check=False)
    cluster.run("psql", "-qc", f"DROP ROLE IF EXISTS {role}", check=False)
