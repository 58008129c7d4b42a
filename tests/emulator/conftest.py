"""Fixtures: one real Data Protection emulator per session (Azurite + 6 PostgreSQL clusters + demo world).

Everything is real: the emulator process (``python -m localdev.dpemu``), Azurite, PostgreSQL clusters run by
``localdev.pgcluster``, and the ``azure-mgmt-dataprotection`` SDK client talking HTTPS to it.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from azure.core.credentials import AccessToken
from azure.mgmt.dataprotection import DataProtectionMgmtClient

from localdev.azurite import Azurite
from localdev.dpemu.admin import EmulatorAdmin
from localdev.pgcluster import PgCluster

ROOT = Path(__file__).resolve().parents[2]
WORLD = ROOT / "localdev" / "worlds" / "demo.yaml"
SUB1 = "00000000-0000-0000-0000-000000000001"
SUB2 = "00000000-0000-0000-0000-000000000002"
RG = "rg-backup"
VAULT = "bv-prod"
VAULT_LRS = "bv-lrs"
BI_SALES = "pgsrv01-salesdb-6f1c2d3e-0000-4000-8000-000000000001"
BI_FLEX = "pgflex01-6f1c2d3e-0000-4000-8000-000000000002"
BI_EXT = "pgsrv01-extdb-6f1c2d3e-0000-4000-8000-000000000008"  # a database using dblink (restore into a server)
BI_HR = "pgsrv01-hrdb-6f1c2d3e-0000-4000-8000-000000000003"
VAULT_ID = f"/subscriptions/{SUB1}/resourceGroups/{RG}/providers/Microsoft.DataProtection/backupVaults/{VAULT}"
TGT = f"/subscriptions/{SUB2}/resourceGroups/rg-target/providers/Microsoft.DBforPostgreSQL/servers"
DR = f"/subscriptions/{SUB2}/resourceGroups/rg-dr/providers/Microsoft.DBforPostgreSQL/servers"
KV_WE = "https://kv-restore-we.vault.azure.net/secrets"
KV_NE = "https://kv-dr-ne.vault.azure.net/secrets"
TOKEN = "emulator-test-token"


class StaticCredential:
    """Duck-typed TokenCredential returning a fixed token issued by the emulator."""

    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3600)


@dataclass
class Emu:
    endpoint: str
    ca_bundle: str
    admin_url: str
    token: str
    storage: str
    clusters: dict[str, PgCluster]
    admin: EmulatorAdmin
    log_path: Path

    def client(self, token: str | None = None, subscription: str = SUB1, **kw: Any) -> DataProtectionMgmtClient:
        return DataProtectionMgmtClient(StaticCredential(token or self.token), subscription, base_url=self.endpoint,
                                        connection_verify=self.ca_bundle, **kw)

    @property
    def ssl(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_bundle)

    def dsn(self, cluster: str, db: str) -> str:
        return self.clusters[cluster].dsn(db)


@pytest.fixture(scope="session")
def emu() -> Iterator[Emu]:
    # not tmp_path_factory: concurrent pytest runs reset /tmp/pytest-of-root to 0700, which locks out the
    # postgres OS user that runs the clusters
    base = Path(tempfile.mkdtemp(prefix="dpemu-test-"))
    names = [c["name"] for c in yaml.safe_load(WORLD.read_text())["postgres_clusters"]]
    azurite = Azurite(base / "azurite")
    (base / "azurite").mkdir(exist_ok=True)
    clusters = {n: PgCluster(n, base / "pg") for n in names}
    proc = None
    try:
        azurite.start()
        for c in clusters.values():  # sequential: concurrent initdb runs raced on directory permissions
            c.start()
        cfile = base / "clusters.json"
        cfile.write_text(json.dumps({n: {"host": c.host, "port": c.port, "dsn": c.dsn(), "bindir": str(c.bindir),
                                         "version": c.version} for n, c in clusters.items()}))
        ready = base / "ready.json"
        log_path = base / "dpemu.log"
        env = {**os.environ, "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string}
        with log_path.open("w") as log:
            proc = subprocess.Popen([sys.executable, "-m", "localdev.dpemu", "--world", str(WORLD), "--clusters",
                                     str(cfile), "--state-dir", str(base / "state"), "--port", "0", "--token", TOKEN,
                                     "--ready-file", str(ready), "--time-scale", "3600"],
                                    cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while not ready.exists():
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"emulator did not become ready:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.1)
        info = json.loads(ready.read_text())
        yield Emu(info["endpoint"], info["ca_bundle"], info["admin_url"], TOKEN, azurite.connection_string, clusters,
                  EmulatorAdmin(info["admin_url"], TOKEN, info["ca_bundle"]), log_path)
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        for c in clusters.values():
            c.stop()
        azurite.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture()
def admin(emu: Emu) -> Iterator[EmulatorAdmin]:
    """Admin client; faults and throttling are cleared after each test."""
    yield emu.admin
    emu.admin.clear_faults()
    emu.admin.set_throttling(enabled=False)
    emu.admin.set_config(arm_latency_seconds=0)


@pytest.fixture()
def client(emu: Emu) -> DataProtectionMgmtClient:
    return emu.client()
