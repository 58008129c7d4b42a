"""Restore jobs that pause, warn or are cancelled (fault modes job_pause / job_warn / job_cancel), seen through the
SDK with the statuses the spec names: Paused, CompletedWithWarnings (+ warningDetails), Cancelling, Cancelled."""

from __future__ import annotations

import psycopg
import pytest

from localdev.dpemu.admin import AdminError

from .conftest import BI_SALES, RG, VAULT
from .helpers import new_name, rp_request, sales_db_target, vault_rp, wait_job

TRIGGER = "BackupInstances_TriggerRestore"


def _trigger(client, name: str) -> str:
    res = client.backup_instances.begin_trigger_restore(
        RG, VAULT, BI_SALES, rp_request(vault_rp(client).name, sales_db_target(name))).result()
    return str(res.job_id).rsplit("/", 1)[-1]


def _status(client, guid: str) -> str:
    return str(client.jobs.get(RG, VAULT, guid).properties.status)


def _db_exists(emu, name: str) -> bool:
    with psycopg.connect(emu.dsn("pgsrv-restore", "postgres")) as conn:
        return conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,)).fetchone()[0] == 1


def test_a_paused_job_pauses_at_half_its_run_then_completes(emu, client, admin):
    admin.set_config(time_scale=60)  # slow the clock: the test steps it explicitly
    try:
        admin.add_fault("job_pause", TRIGGER, count=1, duration="PT2H")
        guid = _trigger(client, new_name("paused"))
        assert _status(client, guid) == "InProgress"
        admin.advance("PT10M")
        job = client.jobs.get(RG, VAULT, guid)
        assert job.properties.status == "Paused" and job.properties.end_time is None
        assert job.properties.extended_info.sub_tasks[0].task_status == "InProgress"
        admin.advance("PT2H")
        assert _status(client, guid) == "InProgress"  # resumed; its end moved by the pause
    finally:
        admin.set_config(time_scale=3600)
    assert wait_job(client, guid).properties.status == "Completed"


def test_a_warning_job_ends_completed_with_warnings_and_carries_the_details(emu, client, admin):
    admin.add_fault("job_warn", TRIGGER, count=1, error_code="UserErrorSomeRolesNotRestored",
                    error_message="2 roles could not be restored.")
    name = new_name("warned")
    job = wait_job(client, _trigger(client, name))
    assert job.properties.status == "CompletedWithWarnings"
    warnings = job.properties.extended_info.warning_details
    assert [(w.resource_name, w.warning.code, w.warning.message) for w in warnings] == [
        ("salesdb", "UserErrorSomeRolesNotRestored", "2 roles could not be restored.")]
    assert _db_exists(emu, name)  # the work was done


def test_a_cancelled_job_goes_cancelling_then_cancelled_and_restores_nothing(emu, client, admin):
    admin.set_config(time_scale=60)
    name = new_name("cancelled")
    try:
        admin.add_fault("job_cancel", TRIGGER, count=1)
        guid = _trigger(client, name)
        admin.advance("PT10M")
        assert _status(client, guid) == "Cancelling"
        admin.advance("PT10M")
        job = client.jobs.get(RG, VAULT, guid)
        assert job.properties.status == "Cancelled" and job.properties.end_time is not None
        assert job.properties.error_details is None
    finally:
        admin.set_config(time_scale=3600)
    assert not _db_exists(emu, name)


@pytest.mark.parametrize(("body", "needle"), [
    ({"mode": "job_warn", "duration": "PT1H"}, "only mode job_pause"),
    ({"mode": "job_pause", "duration": "soon"}, "ISO-8601"),
])
def test_job_behaviour_faults_are_validated(admin, body, needle):
    with pytest.raises(AdminError, match=needle):
        admin.add_fault(body.pop("mode"), TRIGGER, **body)
