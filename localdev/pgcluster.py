"""A throw-away PostgreSQL cluster from Debian's server binaries, on a loopback port.

Each emulated Azure server is its own cluster, so roles are per server as in Azure. When we run as root the server
runs as the ``postgres`` OS user (initdb refuses root). Trust authentication on 127.0.0.1 only. Never deployed.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
from pathlib import Path
from types import TracebackType


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

    def __init__(self, name: str, basedir: Path, *, port: int = 0, version: int | None = None) -> None:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", name):
            raise ValueError(f"cluster name {name!r}: use lower-case letters, digits and '-'")
        self.name = name
        self.dir = Path(basedir) / name
        self.port = port or free_port()
        self.bindir = find_bindir(version)
        self.version = int(self.bindir.parent.name)
        self.log_path = self.dir / "server.log"
        self._as_pg = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []

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
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log_path), "-w", "-t", "30",
                  "-o", opts, "start")

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run([*self._as_pg, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w",
                            "-t", "20", "stop"], capture_output=True, check=False)

    def __enter__(self) -> PgCluster:
        self.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
