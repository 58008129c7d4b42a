"""A throw-away PostgreSQL cluster from Debian's server binaries, on a loopback port.

Each emulated Azure server is its own cluster, so roles are per server as in Azure. When we run as root the server
runs as the ``postgres`` OS user (initdb refuses root). Trust authentication on 127.0.0.1 only. Never deployed.

A cluster started with a :class:`FlexibleSetup` is set up as Azure sets up a Flexible Server (docs/emulator.md,
"Flexible-Server-like clusters"): the platform roles ``azure_pg_admin`` (NOLOGIN), ``azuresu`` (SUPERUSER NOLOGIN)
and ``replication`` (REPLICATION LOGIN), an admin that is NOT superuser (LOGIN CREATEDB CREATEROLE, member of
azure_pg_admin), an Entra principal role whose password is the local Entra token, TLS on with a server certificate
for 127.0.0.1, and ``pg_hba.conf``: the local superuser ``postgres`` keeps trust on 127.0.0.1 (the emulator and the
tests use it), everyone else must come over TLS with scram-sha-256; non-TLS logins of anyone else are rejected.
Passwords travel as query parameters of a local connection, never on a command line or in a log.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import psycopg
from psycopg import sql

#: The roles Azure creates on every Flexible Server (idempotent; run as a superuser). ``azuresu`` is the platform's
#: superuser, ``replication`` its replication role.
PLATFORM_ROLES = (("azure_pg_admin", "NOLOGIN"), ("azuresu", "SUPERUSER NOLOGIN"),
                  ("replication", "REPLICATION LOGIN"))

HBA = """# written by localdev.pgcluster (Flexible-Server-like cluster): see docs/emulator.md
local     all  postgres                trust
host      all  postgres  127.0.0.1/32  trust
hostssl   all  all       127.0.0.1/32  scram-sha-256
hostnossl all  all       127.0.0.1/32  reject
"""


@dataclass(frozen=True)
class FlexibleSetup:
    """What makes a cluster Flexible-Server-like: the admin and Entra roles with their passwords, and TLS files."""

    admin_password: str
    entra_password: str
    cert_file: Path  # PEM certificate (chain) for 127.0.0.1
    key_file: Path  # its private key
    admin_user: str = "pgadmin"
    entra_user: str = "restore-service"

    def __repr__(self) -> str:  # never print the passwords
        return f"FlexibleSetup(admin_user={self.admin_user!r}, entra_user={self.entra_user!r})"


def ensure_platform_roles(conn: psycopg.Connection[object]) -> None:
    """Create Azure's platform roles where missing (``conn``: a superuser, autocommit)."""
    for name, options in PLATFORM_ROLES:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE ROLE {} " + options).format(sql.Identifier(name)))


def ensure_login_role(conn: psycopg.Connection[object], user: str, password: str) -> None:
    """Create or reset ``user`` as Azure's admin is made: LOGIN CREATEDB CREATEROLE, not superuser, member of
    azure_pg_admin. The password is sent as a literal by the client library, never logged by us."""
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone() is not None
    verb = "ALTER" if exists else "CREATE"
    conn.execute(sql.SQL(verb + " ROLE {} LOGIN CREATEDB CREATEROLE NOSUPERUSER NOREPLICATION NOBYPASSRLS "
                         "PASSWORD {}").format(sql.Identifier(user), sql.Literal(password)))
    conn.execute(sql.SQL("GRANT azure_pg_admin TO {}").format(sql.Identifier(user)))


class PgClusterError(RuntimeError):
    """A cluster could not be created or started; the message carries the tail of its log."""


def find_bindir(version: int | None = None) -> Path:
    """Directory holding initdb/pg_ctl/pg_dump/pg_restore (newest installed major unless ``version``)."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if version is not None:
        candidates = [c for c in candidates if c.split("/")[4] == str(version)]
    if not candidates:
        raise PgClusterError("PostgreSQL server binaries not found under /usr/lib/postgresql; run `make setup`")
    return Path(candidates[-1]).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgCluster:
    host = "127.0.0.1"

    def __init__(self, name: str, basedir: Path, *, port: int = 0, version: int | None = None,
                 flexible: FlexibleSetup | None = None) -> None:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", name):
            raise ValueError(f"cluster name {name!r}: use lower-case letters, digits and '-'")
        self.name = name
        self.dir = Path(basedir) / name
        self.port = port or free_port()
        self.bindir = find_bindir(version)
        self.version = int(self.bindir.parent.name)
        self.log_path = self.dir / "server.log"
        self._as_pg = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
        self.flexible = flexible

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{dbname}"

    def _run(self, *args: str) -> None:
        res = subprocess.run([*self._as_pg, *args], capture_output=True, text=True, check=False)
        if res.returncode != 0:
            tail = ""
            if self.log_path.exists():
                tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])
            raise PgClusterError(f"{Path(args[0]).name} failed for cluster {self.name}: "
                                 f"{res.stderr.strip() or res.stdout.strip()}\n{tail}")

    def _chown(self, path: Path) -> None:
        if self._as_pg:
            pw = pwd.getpwnam("postgres")
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o755)  # noqa: S103 - the postgres OS user must traverse it
        # every parent must be traversable by the postgres user
        for parent in self.dir.resolve().parents:
            if parent == Path("/"):
                break
            mode = parent.stat().st_mode
            if not mode & 0o001:
                os.chmod(parent, mode | 0o001)
        self._chown(self.dir)
        if not (self.data / "PG_VERSION").exists():
            if self.data.exists():
                shutil.rmtree(self.data)
            self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                      "--no-sync", "--encoding=UTF8", "--locale=C.UTF-8")
        opts = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.dir} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        if self.flexible is not None:
            opts += " " + self._flexible_files(self.flexible)
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log_path), "-w", "-t", "30",
                  "-o", opts, "start")
        if self.flexible is not None:
            self._flexible_roles(self.flexible)

    def _flexible_files(self, flex: FlexibleSetup) -> str:
        """Server certificate, key and pg_hba.conf in the data directory; returns the server options for them."""
        cert, key, hba = self.data / "server.crt", self.data / "server.key", self.data / "pg_hba.conf"
        shutil.copyfile(flex.cert_file, cert)
        shutil.copyfile(flex.key_file, key)
        hba.write_text(HBA)
        os.chmod(key, 0o600)
        for path in (cert, key, hba):
            self._chown(path)
        return "-c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key -c password_encryption=scram-sha-256"

    def _flexible_roles(self, flex: FlexibleSetup) -> None:
        try:
            with psycopg.connect(self.dsn(), autocommit=True, connect_timeout=10) as conn:
                ensure_platform_roles(conn)
                ensure_login_role(conn, flex.admin_user, flex.admin_password)
                ensure_login_role(conn, flex.entra_user, flex.entra_password)
        except psycopg.Error as exc:
            raise PgClusterError(f"setting up the Flexible-Server roles of cluster {self.name} failed: "
                                 f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run([*self._as_pg, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w",
                            "-t", "20", "stop"], capture_output=True, check=False)

    def __enter__(self) -> PgCluster:
        self.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
