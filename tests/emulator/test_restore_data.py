"""Real data: restored databases hold the rows of the backup's time; restored files are real dumps."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from azure.mgmt.dataprotection.models import ValidateRestoreRequestObject
from azure.storage.blob import BlobServiceClient

from .conftest import BI_FLEX, BI_SALES, RG, VAULT
from .helpers import files_target, new_name, rp_request, rps, sales_db_target, vault_rp, wait_job


def _batches(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute("SELECT DISTINCT batch FROM orders ORDER BY 1").fetchall()]


def _count(dsn: str, sql: str, params: tuple[str, ...] = ()) -> int:
    with psycopg.connect(dsn) as conn:
        return int(conn.execute(sql, params).fetchone()[0])


def test_restore_as_database_holds_rows_of_the_backup_time_not_today(emu, client):
    points = rps(client)
    # newest first: b5 (-P1D), b4, b3 (-P14D) ...; the -P14D point must hold b0..b3 only
    rp = points[2]
    name = new_name("sales14d")
    res = client.backup_instances.begin_trigger_restore(RG, VAULT, BI_SALES,
                                                        rp_request(rp.name, sales_db_target(name))).result()
    job = wait_job(client, res.job_id)
    assert job.properties.status == "Completed", job.properties.error_details
    assert job.properties.extended_info.recovery_destination.endswith(f"/databases/{name}")
    assert job.properties.extended_info.source_recover_point.recovery_point_id == rp.name
    assert _batches(emu.dsn("pgsrv-restore", name)) == ["b0", "b1", "b2", "b3"]
    assert _count(emu.dsn("pgsrv-restore", name), "SELECT count(*) FROM orders") == 160
    assert _batches(emu.dsn("pgsrv01", "salesdb")) == ["b0", "b1", "b2", "b3", "b4", "b5"]
    # owned by the Key Vault secret's user (restored with --no-owner as that user)
    assert _count(emu.dsn("pgsrv-restore", "postgres"),
                  "SELECT count(*) FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba "
                  "WHERE d.datname = %s AND r.rolname = 'restore_user'", (name,)) == 1


def test_admin_backup_then_changes_restore_returns_rows_at_backup_time(emu, client):
    src = emu.dsn("pgsrv01", "salesdb")
    rp = emu.admin.take_backup(BI_SALES, seed_sql="INSERT INTO orders(customer_id, batch, amount) "
                                                  "SELECT 1, 'adm', g FROM generate_series(1, 7) g;")
    at_backup = _count(src, "SELECT count(*) FROM orders")
    with psycopg.connect(src, autocommit=True) as conn:
        conn.execute("INSERT INTO orders(customer_id, batch, amount) SELECT 2, 'after', g FROM generate_series(1, 5) g")
    assert _count(src, "SELECT count(*) FROM orders") == at_backup + 5
    assert client.recovery_points.get(RG, VAULT, BI_SALES, rp["name"]).name == rp["name"]
    name = new_name("adm")
    res = client.backup_instances.begin_trigger_restore(RG, VAULT, BI_SALES,
                                                        rp_request(rp["name"], sales_db_target(name))).result()
    assert wait_job(client, res.job_id).properties.status == "Completed"
    assert _count(emu.dsn("pgsrv-restore", name), "SELECT count(*) FROM orders") == at_backup
    assert "after" not in _batches(emu.dsn("pgsrv-restore", name))
    assert "adm" in _batches(emu.dsn("pgsrv-restore", name))


def test_restore_as_files_single_server_writes_a_pg_restore_listable_dump(emu, client, tmp_path: Path):
    rp = vault_rp(client)
    prefix = new_name("files")
    res = client.backup_instances.begin_trigger_restore(
        RG, VAULT, BI_SALES, rp_request(rp.name, files_target("stpgrestorewe", "pg-restores", prefix))).result()
    job = wait_job(client, res.job_id)
    assert job.properties.status == "Completed"
    blobs = BlobServiceClient.from_connection_string(emu.storage).get_container_client("stpgrestorewe-pg-restores")
    names = [b.name for b in blobs.list_blobs(name_starts_with=prefix)]
    assert names == [f"{prefix}.dump"]
    dump = tmp_path / "x.dump"
    dump.write_bytes(blobs.download_blob(names[0]).readall())
    listing = subprocess.run(["/usr/lib/postgresql/15/bin/pg_restore", "--list", str(dump)], capture_output=True,
                             text=True, check=True).stdout
    assert "TABLE DATA public orders" in listing


def test_restore_as_files_flexible_server_writes_one_dump_per_database_plus_globals(emu, client, tmp_path: Path):
    rp = rps(client, BI_FLEX)[0]
    prefix = new_name("flex")
    res = client.backup_instances.begin_trigger_restore(
        RG, VAULT, BI_FLEX, rp_request(rp.name, files_target("stpgrestorewe", "pg-restores", prefix))).result()
    assert wait_job(client, res.job_id).properties.status == "Completed"
    blobs = BlobServiceClient.from_connection_string(emu.storage).get_container_client("stpgrestorewe-pg-restores")
    names = sorted(b.name for b in blobs.list_blobs(name_starts_with=prefix))
    assert names == sorted(f"{prefix}_{f}" for f in ("appdb.sql", "inventory.sql", "roles.sql", "schema.sql",
                                                     "tablespace.sql"))
    dump = tmp_path / "appdb.sql"
    dump.write_bytes(blobs.download_blob(f"{prefix}_appdb.sql").readall())
    listing = subprocess.run(["/usr/lib/postgresql/15/bin/pg_restore", "--list", str(dump)], capture_output=True,
                             text=True, check=True).stdout
    assert "TABLE DATA public events" in listing
    roles = blobs.download_blob(f"{prefix}_roles.sql").readall().decode()
    assert "CREATE ROLE postgres" in roles


def test_restore_job_is_in_progress_with_subtasks_then_completed(emu, client, admin):
    admin.set_config(restore_job_duration="PT2H")  # 2 s real at 3600x
    try:
        rp = vault_rp(client)
        res = client.backup_instances.begin_trigger_restore(RG, VAULT, BI_SALES,
                                                            rp_request(rp.name, sales_db_target(new_name()))).result()
        job = client.jobs.get(RG, VAULT, res.job_id.rsplit("/", 1)[-1])
        assert job.properties.status == "InProgress"
        assert job.properties.end_time is None
        assert job.properties.extended_info.sub_tasks[0].task_status == "InProgress"
        done = wait_job(client, res.job_id)
        assert done.properties.status == "Completed"
        assert done.properties.extended_info.sub_tasks[0].task_status == "Completed"
        assert done.properties.end_time - done.properties.start_time >= timedelta(hours=2)
    finally:
        admin.set_config(restore_job_duration="PT15M")


def test_data_plane_off_jobs_succeed_without_touching_postgres(emu, admin, client):
    """``data_plane: false`` (the overhead benchmark): the job runs its duration and succeeds, no database appears on
    the target, and the "database already exists" check (a PostgreSQL read) is skipped."""
    rp = rps(client)[0]
    name = new_name("noplane")
    existing = sales_db_target("postgres")
    into_postgres = ValidateRestoreRequestObject(restore_request_object=rp_request(rp.name, existing))
    admin.set_config(data_plane=False)
    try:
        assert admin.config()["data_plane"] is False
        res = client.backup_instances.begin_trigger_restore(RG, VAULT, BI_SALES,
                                                            rp_request(rp.name, sales_db_target(name))).result()
        assert wait_job(client, res.job_id).properties.status == "Completed"
        assert _count(emu.dsn("pgsrv-restore", "postgres"),
                      "SELECT count(*) FROM pg_database WHERE datname = %s", (name,)) == 0
        # "postgres" exists on the target: with the data plane on this is UserErrorDatabaseNameAlreadyInUse
        client.backup_instances.begin_validate_for_restore(RG, VAULT, BI_SALES, into_postgres).result()
    finally:
        admin.set_config(data_plane=True)
    with pytest.raises(Exception, match="UserErrorDatabaseNameAlreadyInUse"):
        client.backup_instances.begin_validate_for_restore(RG, VAULT, BI_SALES, into_postgres).result()


def test_data_plane_accepts_only_booleans(admin):
    with pytest.raises(Exception, match="data_plane"):
        admin.set_config(data_plane="no")
    assert admin.config()["data_plane"] is True
