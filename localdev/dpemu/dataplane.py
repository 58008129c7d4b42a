"""Real data work behind the emulator: seed source databases, take backups, restore them.

Consumes: the clusters file (host/port/dsn/bindir per cluster name), Azurite (``AZURE_STORAGE_CONNECTION_STRING``).
Produces:
* vault datastore blobs ``<datastore container>/<vault>/<backup instance>/<recovery point id>/<file>``;
  Single Server: one file ``database.dump`` (``pg_dump -Fc``); Flexible Server: ``<db>.sql`` per database
  (``pg_dump -Fc`` custom format, named as Azure names them) plus ``roles.sql``, ``schema.sql``,
  ``tablespace.sql`` (plain SQL from ``pg_dumpall``). Each database archive is also kept as written through a pipe
  (``stream/<file>``: a custom archive without data offsets) for the ``custom-stream`` files layout;
* restored databases (``pg_restore --no-owner --no-acl`` into a NEW database, as the Key Vault secret's user);
* restored files in a target Azurite container (names in ``docs/emulator.md``), each database archive in the
  files layout of the job (:data:`FILES_LAYOUTS`).
Secrets (passwords) only travel through ``PGPASSWORD`` in a child's environment; they are never logged.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient

from localdev.pgcluster import ensure_platform_roles

log = logging.getLogger("dpemu.data")

#: How a files restore writes each database: ``custom`` (the archive pg_dump -Fc wrote to a file: data offsets set),
#: ``custom-stream`` (pg_dump -Fc written through a pipe: no data offsets, pg_restore -j cannot use it),
#: ``plain`` (plain SQL, as pg_dump without -F writes it). Globals (roles/schema/tablespace.sql) are plain SQL always.
FILES_LAYOUTS = ("custom", "custom-stream", "plain")
ARCHIVE_MAGIC = b"PGDMP"
STREAM_DIR = "stream/"


class DataPlaneError(RuntimeError):
    """A pg or blob step failed; ``code`` is the Azure-style error code to surface on the job."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class ClusterInfo:
    name: str
    host: str
    port: int
    bindir: Path
    version: int
    #: passwords the stack gave this cluster's login roles (user -> password; from the private ``passwords_file``)
    passwords: dict[str, str] = field(default_factory=dict, repr=False)

    def dsn(self, dbname: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql://{user}@{self.host}:{self.port}/{dbname}"


@dataclass
class ConnInfo:
    """Parsed ADO.NET connection string from a Key Vault secret."""

    host: str
    port: int
    user: str
    password: str
    database: str


def parse_ado_connection_string(value: str) -> ConnInfo:
    """Parse ``Server=...;Port=...;Database=...;User Id=...;Password=...;`` (keys case-insensitive)."""
    parts: dict[str, str] = {}
    for piece in value.split(";"):
        if not piece.strip():
            continue
        if "=" not in piece:
            raise ValueError("secret value is not an ADO.NET connection string (expected key=value pairs)")
        k, v = piece.split("=", 1)
        parts[re.sub(r"\s+", "", k).lower()] = v.strip()
    host = parts.get("server") or parts.get("host")
    user = parts.get("userid") or parts.get("user") or parts.get("username")
    if not host or not user or "password" not in parts:
        raise ValueError("secret value must contain Server, User Id and Password")
    return ConnInfo(host, int(parts.get("port", "5432")), user.split("@", 1)[0], parts["password"],
                    parts.get("database", "postgres"))


def load_clusters(path: Path) -> dict[str, ClusterInfo]:
    """Read the clusters file; an entry's ``passwords_file`` (0600 JSON ``{cluster: {user: password}}``, written by
    the stack) gives the passwords of that cluster's login roles."""
    raw = json.loads(Path(path).read_text())
    out: dict[str, ClusterInfo] = {}
    for name, c in raw.items():
        passwords: dict[str, str] = {}
        if c.get("passwords_file"):
            passwords = dict(json.loads(Path(c["passwords_file"]).read_text()).get(name, {}))
        out[name] = ClusterInfo(name, c.get("host", "127.0.0.1"), int(c["port"]),
                                Path(c.get("bindir", "/usr/lib/postgresql/15/bin")), int(c.get("version", 15)),
                                passwords)
    return out


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class DataPlane:
    def __init__(self, clusters: dict[str, ClusterInfo], blob_connection_string: str, datastore_container: str,
                 workdir: Path) -> None:
        self.clusters = clusters
        self.blobs = BlobServiceClient.from_connection_string(blob_connection_string)
        self.datastore = datastore_container
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)

    # ---------------------------------------------------------------- helpers
    def cluster(self, name: str) -> ClusterInfo:
        if name not in self.clusters:
            raise DataPlaneError("UserErrorDBNotFound", f"cluster '{name}' is not in the clusters file")
        return self.clusters[name]

    def _run(self, args: list[str], *, env_extra: dict[str, str] | None = None, code: str = "UserErrorRestoreFailed",
             what: str = "command", stdout_to: Path | None = None) -> None:
        """Run a pg tool; ``stdout_to``: its standard output goes to that file through a pipe (not seekable)."""
        env = dict(os.environ)
        env.update(env_extra or {})
        if stdout_to is None:
            proc = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
            rc, err = proc.returncode, proc.stderr
        else:
            with stdout_to.open("wb") as out:
                p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
                assert p.stdout is not None
                for chunk in iter(lambda: p.stdout.read(1 << 16), b""):  # type: ignore[union-attr]
                    out.write(chunk)
                err = p.stderr.read().decode(errors="replace") if p.stderr else ""
                rc = p.wait()
        if rc != 0:
            raise DataPlaneError(code, f"{what} failed (exit {rc}): {err.strip()[-800:]}")

    @property
    def bindir(self) -> Path:
        """The newest client binaries among the clusters (pg_restore reads archives of older servers)."""
        return max(self.clusters.values(), key=lambda c: c.version).bindir

    def run_sql(self, cluster: str, dbname: str, sql: str) -> None:
        c = self.cluster(cluster)
        self._run([str(c.bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", c.dsn(dbname), "-c", sql],
                  code="EmulatorSeedFailed", what=f"SQL on {cluster}/{dbname}")

    def query(self, cluster: str, dbname: str, sql: str) -> list[tuple[Any, ...]]:
        c = self.cluster(cluster)
        with psycopg.connect(c.dsn(dbname), autocommit=True, connect_timeout=10) as conn:
            return list(conn.execute(sql).fetchall())

    def database_exists(self, cluster: str, dbname: str) -> bool:
        c = self.cluster(cluster)
        with psycopg.connect(c.dsn("postgres"), autocommit=True, connect_timeout=10) as conn:
            row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        return row is not None

    # ---------------------------------------------------------------- seeding
    def recreate_database(self, cluster: str, dbname: str, setup_sql: str, owner: str | None = None) -> None:
        """Drop and create ``dbname``; with ``owner`` the database is that role's and ``setup_sql`` runs as it."""
        c = self.cluster(cluster)
        with psycopg.connect(c.dsn("postgres"), autocommit=True, connect_timeout=10) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {_quote_ident(dbname)} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {_quote_ident(dbname)}"
                         + (f" OWNER {_quote_ident(owner)}" if owner else ""))
        if setup_sql.strip():
            self.run_sql(cluster, dbname, (f"SET ROLE {_quote_ident(owner)};\n" if owner else "") + setup_sql)

    def ensure_roles(self, cluster: str, roles: list[tuple[str, str]], platform: bool) -> None:
        """Create the server's declared roles (name, CREATE ROLE options) where missing; ``platform``: also Azure's
        Flexible Server platform roles (azure_pg_admin, azuresu, replication)."""
        c = self.cluster(cluster)
        with psycopg.connect(c.dsn("postgres"), autocommit=True, connect_timeout=10) as conn:
            if platform:
                ensure_platform_roles(conn)
            for name, options in roles:
                if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone() is None:
                    conn.execute(f"CREATE ROLE {_quote_ident(name)} {options}")

    def ensure_restore_user(self, cluster: str, user: str, password: str) -> None:
        """Create (or reset) a LOGIN CREATEDB role; the password never reaches a log."""
        c = self.cluster(cluster)
        with psycopg.connect(c.dsn("postgres"), autocommit=True, connect_timeout=10) as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone()
            verb = "ALTER" if exists else "CREATE"
            lit = "'" + password.replace("'", "''") + "'"
            conn.execute(f"{verb} ROLE {_quote_ident(user)} LOGIN CREATEDB PASSWORD {lit}")

    # ---------------------------------------------------------------- blobs
    def ensure_container(self, name: str) -> None:
        try:
            self.blobs.create_container(name)
        except ResourceExistsError:
            pass

    def blob_prefix(self, vault: str, bi: str, rp_id: str) -> str:
        return f"{vault}/{bi}/{rp_id}/"

    def list_blobs(self, container: str, prefix: str) -> list[str]:
        return [b.name for b in self.blobs.get_container_client(container).list_blobs(name_starts_with=prefix)]

    def blob_exists(self, container: str, name: str) -> bool:
        return bool(self.blobs.get_blob_client(container, name).exists())

    # ---------------------------------------------------------------- backup
    def backup(self, *, cluster: str, databases: list[str], flexible: bool, prefix: str) -> dict[str, int]:
        """Dump the databases of ``cluster`` into the vault datastore under ``prefix``; returns file -> bytes."""
        c = self.cluster(cluster)
        self.ensure_container(self.datastore)
        sizes: dict[str, int] = {}
        with tempfile.TemporaryDirectory(dir=self.workdir) as tmp:
            files: list[tuple[str, Path]] = []
            streams: list[tuple[str, Path]] = []
            for db in databases:
                out, piped = Path(tmp) / f"{db}.dump", Path(tmp) / f"{db}.stream"
                self._run([str(c.bindir / "pg_dump"), "-Fc", "-d", c.dsn(db), "-f", str(out)],
                          code="UserErrorBackupFailed", what=f"pg_dump of {db}")
                self._run([str(c.bindir / "pg_dump"), "-Fc", "-d", c.dsn(db)], stdout_to=piped,
                          code="UserErrorBackupFailed", what=f"pg_dump of {db} to a pipe")
                fname = f"{db}.sql" if flexible else "database.dump"
                files.append((fname, out))
                streams.append((STREAM_DIR + fname, piped))
            if flexible:
                for fname, flag in (("roles.sql", "--roles-only"), ("schema.sql", "--schema-only"),
                                    ("tablespace.sql", "--tablespaces-only")):
                    out = Path(tmp) / fname
                    self._run([str(c.bindir / "pg_dumpall"), flag, "-d", c.dsn("postgres"), "-f", str(out)],
                              code="UserErrorBackupFailed", what=f"pg_dumpall {flag}")
                    files.append((fname, out))
            for fname, path in files + streams:
                with path.open("rb") as fh:
                    self.blobs.get_blob_client(self.datastore, prefix + fname).upload_blob(fh, overwrite=True)
            sizes = {fname: path.stat().st_size for fname, path in files}
        return sizes

    # ---------------------------------------------------------------- restore
    def restore_database(self, *, prefix: str, conn: ConnInfo, dbname: str) -> None:
        """CREATE DATABASE as the secret's user, then pg_restore --no-owner --no-acl into it (FailIfExists)."""
        env = {"PGPASSWORD": conn.password}
        cinfo = next((c for c in self.clusters.values() if c.port == conn.port), None)
        bindir = cinfo.bindir if cinfo else Path("/usr/lib/postgresql/15/bin")
        with tempfile.TemporaryDirectory(dir=self.workdir) as tmp:
            dump = Path(tmp) / "database.dump"
            with dump.open("wb") as fh:
                self.blobs.get_blob_client(self.datastore, prefix + "database.dump").download_blob().readinto(fh)
            base = f"postgresql://{conn.user}@{conn.host}:{conn.port}"
            try:
                with psycopg.connect(f"{base}/{conn.database}", password=conn.password, autocommit=True,
                                     connect_timeout=10) as pg:
                    pg.execute(f"CREATE DATABASE {_quote_ident(dbname)}")
            except psycopg.errors.DuplicateDatabase as exc:
                raise DataPlaneError("UserErrorDatabaseNameAlreadyInUse",
                                     f"database '{dbname}' already exists on the target server") from exc
            except psycopg.OperationalError as exc:
                raise DataPlaneError("UserErrorDBUserAuthFailed",
                                     f"could not connect to the target server as '{conn.user}'") from exc
            except psycopg.errors.InsufficientPrivilege as exc:
                raise DataPlaneError("UserErrorMissingDBPermissions",
                                     f"user '{conn.user}' lacks CREATEDB on the target server") from exc
            self._run([str(bindir / "pg_restore"), "--no-owner", "--no-acl", "--exit-on-error", "-d",
                       f"{base}/{dbname}", str(dump)], env_extra=env, code="UserErrorRestoreFailed",
                      what="pg_restore")

    def restore_files(self, *, prefix: str, target_container: str, names: dict[str, str],
                      layout: str = "custom") -> list[str]:
        """Copy datastore files (source name -> target blob name) into the target Azurite container, each database
        archive in ``layout`` (:data:`FILES_LAYOUTS`)."""
        if layout not in FILES_LAYOUTS:
            raise DataPlaneError("EmulatorBadLayout", f"files layout '{layout}': use one of {list(FILES_LAYOUTS)}")
        self.ensure_container(target_container)
        written = []
        for src, dst in names.items():
            data = self._read(prefix + src)
            if data.startswith(ARCHIVE_MAGIC) and layout == "custom-stream":
                data = self._read(prefix + STREAM_DIR + src)
            elif data.startswith(ARCHIVE_MAGIC) and layout == "plain":
                data = self.archive_to_sql(data)
            self.blobs.get_blob_client(target_container, dst).upload_blob(data, overwrite=False)
            written.append(dst)
        return written

    def _read(self, blob: str) -> bytes:
        return bytes(self.blobs.get_blob_client(self.datastore, blob).download_blob().readall())

    def archive_to_sql(self, archive: bytes) -> bytes:
        """The plain SQL script of a custom archive (what pg_dump writes without -F: both use the same writer)."""
        with tempfile.TemporaryDirectory(dir=self.workdir) as tmp:
            src, out = Path(tmp) / "in.dump", Path(tmp) / "out.sql"
            src.write_bytes(archive)
            self._run([str(self.bindir / "pg_restore"), "-f", str(out), str(src)], code="UserErrorRestoreFailed",
                      what="pg_restore to plain SQL")
            return out.read_bytes()
