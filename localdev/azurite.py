"""Azurite (queues, tables, blobs) as a child process on loopback, in memory, on free ports.

Started with node directly (not npx) so that its PID is the process we stop. Never deployed.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType

REPO = Path(__file__).resolve().parents[1]
AZURITE_JS = REPO / "node_modules" / "azurite" / "dist" / "src" / "azurite.js"
ACCOUNT_NAME = "devstoreaccount1"
# Azurite's well-known development key (public, documented by Microsoft; not a secret).
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_LISTEN = re.compile(r"Azurite (Blob|Queue|Table) service is successfully listening at http://127\.0\.0\.1:(\d+)")


class AzuriteError(RuntimeError):
    """Azurite could not be started; the message carries the tail of its log."""


def connection_string(blob_port: int, queue_port: int, table_port: int) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{blob_port}/{ACCOUNT_NAME};"
        f"QueueEndpoint=http://127.0.0.1:{queue_port}/{ACCOUNT_NAME};"
        f"TableEndpoint=http://127.0.0.1:{table_port}/{ACCOUNT_NAME};"
    )


class Azurite:
    def __init__(self, workdir: Path, *, blob_port: int = 0, queue_port: int = 0, table_port: int = 0,
                 node: str = "node") -> None:
        self.workdir = Path(workdir)
        self.ports = {"Blob": blob_port, "Queue": queue_port, "Table": table_port}
        self.node = node
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / "azurite.log"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def connection_string(self) -> str:
        return connection_string(self.ports["Blob"], self.ports["Queue"], self.ports["Table"])

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def start(self, timeout: float = 30) -> None:
        if not AZURITE_JS.exists():
            raise AzuriteError(f"Azurite is not installed ({AZURITE_JS} missing); run `make setup`")
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")  # noqa: SIM115 - kept open for the child's lifetime
        cmd = [self.node, str(AZURITE_JS), "--inMemoryPersistence", "--skipApiVersionCheck", "--disableTelemetry",
               "--blobHost", "127.0.0.1", "--queueHost", "127.0.0.1", "--tableHost", "127.0.0.1",
               "--blobPort", str(self.ports["Blob"]), "--queuePort", str(self.ports["Queue"]),
               "--tablePort", str(self.ports["Table"])]
        self.proc = subprocess.Popen(cmd, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        found: dict[str, int] = {}
        while len(found) < 3:
            if self.proc.poll() is not None:
                raise AzuriteError(f"Azurite exited with code {self.proc.returncode}:\n{self._log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise AzuriteError(f"Azurite not ready after {timeout}s:\n{self._log_tail()}")
            for svc, port in _LISTEN.findall(self.log_path.read_text(errors="replace")):
                found[svc] = int(port)
            time.sleep(0.05)
        self.ports.update(found)

    def stop(self, timeout: float = 10) -> None:
        if not self.proc or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def __enter__(self) -> Azurite:
        self.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
