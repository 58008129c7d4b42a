"""Archive tier: stand-alone rehydration (status, expiry, Tiering job) and one-shot restore with rehydration."""

from __future__ import annotations

import time
from datetime import timedelta

import psycopg
from azure.mgmt.dataprotection.models import AzureBackupRehydrationRequest

from .conftest import BI_SALES, RG, VAULT
from .helpers import archive_rp, new_name, rehydration_request, rp_request, sales_db_target, wait_job


def _store(client, rp_id):
    return client.recovery_points.get(RG, VAULT, BI_SALES, rp_id).properties.recovery_point_data_stores_details[0]


def test_one_shot_restore_with_rehydration_restores_archived_rows(emu, client):
    rp = archive_rp(client)
    name = new_name("arch")
    res = client.backup_instances.begin_trigger_restore(
        RG, VAULT, BI_SALES, rehydration_request(rp.name, sales_db_target(name), "High", "P10D")).result()
    job = client.jobs.get(RG, VAULT, res.job_id.rsplit("/", 1)[-1])
    assert job.properties.rehydration_priority == "High"
    assert [t.task_name for t in job.properties.extended_info.sub_tasks] == ["Rehydrate", "Trigger Restore"]
    done = wait_job(client, res.job_id)  # High = 1 h simulated + 15 min restore, ~1.3 s real
    assert done.properties.status == "Completed", done.properties.error_details
    with psycopg.connect(emu.dsn("pgsrv-restore", name)) as conn:
        assert [r[0] for r in conn.execute("SELECT DISTINCT batch FROM orders").fetchall()] == ["b0"]


def test_standalone_rehydrate_progresses_to_completed_with_expiry_and_tiering_job(emu, client, admin):
    # a fresh archive point would be nicer; the archived seed point may already be rehydrated by another test,
    # so advance the clock past any earlier rehydration expiry (30 days max) first
    admin.advance("P31D")
    rp = archive_rp(client)
    assert _store(client, rp.name).rehydration_status in (None, "DELETED")
    poller = client.backup_instances.begin_trigger_rehydrate(
        RG, VAULT, BI_SALES, AzureBackupRehydrationRequest(recovery_point_id=rp.name, rehydration_priority="Standard",
                                                           rehydration_retention_duration="P12D"))
    assert poller.result() is None
    store = _store(client, rp.name)
    assert store.type == "ArchiveStore" and store.rehydration_status == "CREATE_IN_PROGRESS"
    jobs = [j for j in client.jobs.list(RG, VAULT) if j.properties.operation == "Rehydrate"]
    assert jobs and jobs[0].properties.operation_category == "Tiering"
    assert jobs[0].properties.status == "InProgress"
    admin.advance("PT10H")
    store = _store(client, rp.name)
    assert store.rehydration_status == "COMPLETED"
    expected = jobs[0].properties.start_time + timedelta(hours=10, days=12)  # Standard 10 h, then P12D retention
    assert abs((store.rehydration_expiry_time - expected).total_seconds()) < 1
    assert wait_job(client, jobs[0].id).properties.status == "Completed"
    # now restorable from VaultStore with a plain recovery-point request
    name = new_name("rehyd")
    res = client.backup_instances.begin_trigger_restore(RG, VAULT, BI_SALES,
                                                        rp_request(rp.name, sales_db_target(name))).result()
    assert wait_job(client, res.job_id).properties.status == "Completed"


def test_rehydrated_point_expires_after_retention(client, admin):
    rp = archive_rp(client)
    store = _store(client, rp.name)
    if store.rehydration_status != "COMPLETED":
        client.backup_instances.begin_trigger_rehydrate(
            RG, VAULT, BI_SALES, AzureBackupRehydrationRequest(
                recovery_point_id=rp.name, rehydration_priority="High",
                rehydration_retention_duration="P10D")).result()
        admin.advance("PT2H")
    store = _store(client, rp.name)
    assert store.rehydration_status == "COMPLETED"
    expiry = store.rehydration_expiry_time
    admin.advance("P31D")
    time.sleep(0.01)
    assert _store(client, rp.name).rehydration_status == "DELETED"
    assert expiry is not None
