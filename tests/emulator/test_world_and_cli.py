"""World-file validation and time helpers (pure logic), plus the CLI process contract (ready file, SIGTERM)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from localdev.dpemu.dataplane import parse_ado_connection_string
from localdev.dpemu.model import BadRequest
from localdev.dpemu.parsing import parse_rp_filter
from localdev.dpemu.timeutil import SimClock, format_duration, parse_duration
from localdev.dpemu.world import WorldError, parse_world
from localdev.pgcluster import PgCluster

from .conftest import ROOT, WORLD

NOW = datetime(2026, 11, 24, tzinfo=UTC)


def _demo() -> dict:
    return yaml.safe_load(WORLD.read_text())


def test_demo_world_meets_the_brief():
    w = parse_world(_demo(), NOW)
    assert len(w.clusters) <= 8  # issue 12 added the Flexible target (pgflex-target), issue 15 the drill server
    prod = next(v for v in w.vaults.values() if v.name == "bv-prod")
    assert (prod.location, prod.storage_redundancy, prod.cross_region_restore) == ("westeurope", "GeoRedundant",
                                                                                   "Enabled")
    assert w.region_pairs["westeurope"] == "northeurope"
    sales = next(b for b in prod.backup_instances if b.database == "salesdb")
    tiers = [rp.tier for rp in sales.recovery_points]
    assert tiers.count("vault") >= 3 and "archive" in tiers
    archive = next(rp for rp in sales.recovery_points if rp.tier == "archive")
    assert archive.time == min(rp.time for rp in sales.recovery_points)
    assert any(b.datasource_type.endswith("flexibleServers") for b in prod.backup_instances)
    assert any(v.storage_redundancy == "LocallyRedundant" and v.cross_region_restore == "Disabled"
               for v in w.vaults.values())
    assert len({s.cluster for s in w.servers.values()}) == len(w.servers)  # one cluster per Azure server


@pytest.mark.parametrize(("mutate", "needle"), [
    (lambda d: d.update(version=9), "version"),
    (lambda d: d["servers"][0].update(cluster="nope"), "servers[0].cluster"),
    (lambda d: d["servers"][1].update(cluster=d["servers"][0]["cluster"]), "own cluster"),
    (lambda d: d["vaults"][0].update(storage_redundancy="LocallyRedundant"), "GeoRedundant"),
    (lambda d: d["vaults"][0]["backup_instances"][0]["recovery_points"][0].update(time="yesterday"), "time"),
    (lambda d: d["vaults"][0]["backup_instances"][0]["recovery_points"][0].update(tier="cold"), "tier"),
    (lambda d: d["vaults"][0]["backup_instances"][0].update(datasource="/subscriptions/x"), "datasource"),
    (lambda d: d["role_assignments"][0].pop("scope"), "scope"),
])
def test_world_errors_name_the_key_to_fix(mutate, needle):
    d = _demo()
    mutate(d)
    with pytest.raises(WorldError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        parse_world(d, NOW)


def test_relative_recovery_point_times_resolve_against_now():
    w = parse_world(_demo(), NOW)
    sales = next(b for v in w.vaults.values() for b in v.backup_instances if b.database == "salesdb")
    assert sales.recovery_points[1].time == NOW - timedelta(days=28)


def test_durations_parse_and_format():
    assert parse_duration("P15D") == timedelta(days=15)
    assert parse_duration("-PT1H30M") == -timedelta(hours=1, minutes=30)
    assert format_duration(timedelta(minutes=12, seconds=36.5)) == "PT12M36.5S"
    for bad in ("7D", "P", "PT", "P1Y"):
        with pytest.raises(ValueError, match="ISO-8601"):
            parse_duration(bad)


def test_sim_clock_scales_and_advances():
    c = SimClock(3600, start=NOW)
    time.sleep(0.05)
    assert c.now() - NOW >= timedelta(seconds=180)
    c.advance(timedelta(days=1))
    assert c.now() - NOW >= timedelta(days=1)
    with pytest.raises(ValueError):
        c.advance(timedelta(seconds=-1))


def test_rp_filter_parsing():
    s, e = parse_rp_filter("startDate eq '2026-01-01T00:00:00.0000000Z' and endDate eq '2026-02-01T00:00:00.0000000Z'")
    assert (s.month, e.month) == (1, 2)
    with pytest.raises(BadRequest, match="startDate"):
        parse_rp_filter("status eq 'x'")


def test_ado_connection_string_parsing():
    c = parse_ado_connection_string("Server=h;Port=5433;Database=postgres;User Id=u@srv;Password=p;Ssl Mode=Require;")
    assert (c.host, c.port, c.user, c.password) == ("h", 5433, "u", "p")
    with pytest.raises(ValueError, match="Password"):
        parse_ado_connection_string("Server=h;User Id=u")


def test_emulator_log_never_contains_secret_values(emu):
    text = emu.log_path.read_text()
    assert "seeded" in text
    assert "Password=" not in text and "PGPASSWORD" not in text


def test_cli_writes_ready_file_and_exits_gracefully_on_sigterm(emu, tmp_path: Path):
    base = Path(emu.log_path).parent / "cli"
    base.mkdir()
    world = {"version": 1, "postgres_clusters": [{"name": "mini"}],
             "servers": [{"id": "/subscriptions/s/resourceGroups/r/providers/Microsoft.DBforPostgreSQL/servers/mini",
                          "location": "westeurope", "postgres_version": 15, "cluster": "mini",
                          "databases": [{"name": "d1", "setup_sql": "CREATE TABLE t(x int);"}]}],
             "vaults": [{"id": "/subscriptions/s/resourceGroups/r/providers/Microsoft.DataProtection/backupVaults/v1",
                         "location": "westeurope", "principal_id": "p",
                         "backup_instances": [{"name": "mini-d1", "datasource": "/subscriptions/s/resourceGroups/r/"
                                               "providers/Microsoft.DBforPostgreSQL/servers/mini/databases/d1",
                                               "recovery_points": [{"time": "-P1D"}]}]}],
             "settings": {"datastore_container": "mini-datastore"}}
    (base / "world.yaml").write_text(yaml.safe_dump(world))
    with PgCluster("mini", base / "pg") as pg:
        (base / "clusters.json").write_text(json.dumps({"mini": {"host": pg.host, "port": pg.port, "dsn": pg.dsn(),
                                                                 "bindir": str(pg.bindir), "version": pg.version}}))
        ready = base / "ready.json"
        proc = subprocess.Popen([sys.executable, "-m", "localdev.dpemu", "--world", str(base / "world.yaml"),
                                 "--clusters", str(base / "clusters.json"), "--state-dir", str(base / "state"),
                                 "--port", "0", "--token", "t", "--ready-file", str(ready)], cwd=ROOT,
                                env={**os.environ, "AZURE_STORAGE_CONNECTION_STRING": emu.storage},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 60
            while not ready.exists():
                assert proc.poll() is None and time.time() < deadline, proc.stdout.read().decode()
                time.sleep(0.05)
            info = json.loads(ready.read_text())
            assert info["endpoint"].startswith("https://127.0.0.1:") and info["pid"] == proc.pid
            assert info["admin_url"] == info["endpoint"] + "/admin" and Path(info["ca_bundle"]).is_file()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


def test_cli_rejects_a_bad_world_with_a_clear_message(tmp_path: Path):
    (tmp_path / "w.yaml").write_text("version: 7\n")
    (tmp_path / "c.json").write_text("{}")
    res = subprocess.run([sys.executable, "-m", "localdev.dpemu", "--world", str(tmp_path / "w.yaml"), "--clusters",
                          str(tmp_path / "c.json"), "--state-dir", str(tmp_path / "s"), "--token", "t",
                          "--ready-file", str(tmp_path / "r.json")], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "AZURE_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true"})
    assert res.returncode == 2 and "version" in res.stderr
