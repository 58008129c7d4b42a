"""Partial recovery points (``recoveryPointState: Partial``): declared in the world, taken by the admin API, shown
exactly as the spec has them (no invented detail about what is missing), and still restorable."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest
import yaml

from localdev.dpemu.admin import AdminError
from localdev.dpemu.world import WorldError, parse_world

from .conftest import RG, WORLD
from .helpers import new_name, rp_request, sales_db_target, wait_job

VAULT_PARTIAL = "bv-partial"
BI_CRM = "pgsrv01-crmdb-6f1c2d3e-0000-4000-8000-000000000004"


def _points(client):
    return list(client.recovery_points.list(RG, VAULT_PARTIAL, BI_CRM))


def test_world_declares_partial_points_and_rejects_unknown_states():
    raw = yaml.safe_load(WORLD.read_text())
    w = parse_world(raw, datetime(2026, 11, 24, tzinfo=UTC))
    crm = next(b for v in w.vaults.values() for b in v.backup_instances if b.name == BI_CRM)
    assert [rp.state for rp in crm.recovery_points] == ["Completed", "Completed", "Partial"]
    vault = next(v for v in raw["vaults"] if v["id"].endswith("/bv-partial"))
    vault["backup_instances"][0]["recovery_points"][0]["state"] = "Incomplete"
    with pytest.raises(WorldError, match=r"recovery_points\[0\]\.state: use Completed or Partial"):
        parse_world(raw, datetime(2026, 11, 24, tzinfo=UTC))


def test_partial_point_is_listed_with_its_state_and_nothing_invented(client):
    points = _points(client)  # newest first
    states = [p.properties.recovery_point_state for p in points[:3]]
    assert states == ["Partial", "Completed", "Completed"]
    partial = points[0].properties
    # the spec has no field naming what a partial point lacks: the emulator adds none either
    assert set(partial.as_dict()) <= {"objectType", "recoveryPointId", "recoveryPointTime", "recoveryPointType",
                                      "friendlyName", "policyName", "policyVersion", "retentionTagName",
                                      "retentionTagVersion", "recoveryPointState", "expiryTime",
                                      "recoveryPointDataStoresDetails"}
    assert client.recovery_points.get(RG, VAULT_PARTIAL, BI_CRM, points[0].name) \
        .properties.recovery_point_state == "Partial"


def test_admin_backup_can_take_a_partial_point_and_refuses_unknown_states(emu, client):
    rp = emu.admin.take_backup(BI_CRM, state="Partial")
    assert rp["properties"]["recoveryPointState"] == "Partial"
    assert _points(client)[0].name == rp["name"]
    with pytest.raises(AdminError, match="Completed or Partial"):
        emu.admin.take_backup(BI_CRM, state="Broken")


def test_a_partial_point_restores_what_it_holds(emu, client):
    partial = next(p for p in _points(client) if p.properties.recovery_point_state == "Partial")
    name = new_name("crm_partial")
    res = client.backup_instances.begin_trigger_restore(
        RG, VAULT_PARTIAL, BI_CRM, rp_request(partial.name, sales_db_target(name))).result()
    job = wait_job(client, res.job_id, vault=VAULT_PARTIAL)
    assert job.properties.status == "Completed", job.properties.error_details
    with psycopg.connect(emu.dsn("pgsrv-restore", name)) as conn:
        assert {r[0] for r in conn.execute("SELECT batch FROM notes").fetchall()} >= {"c1", "c2", "c3"}
