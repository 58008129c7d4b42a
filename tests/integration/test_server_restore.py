"""Restore into a server, end to end on the local stack: the vault's files are staged in our container, inventoried,
replayed into the Flexible-Server-like target by the replay job (a process per message, as the Container Apps job
runs), verified and cleaned up. The target's admin is not superuser; Entra is a role whose password is the local token;
Key Vault secrets come from the emulated Key Vault through the real SDK."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import uuid
from typing import Any

import psycopg
import pytest
from azure.storage.blob import BlobServiceClient

from localdev import scenarios as sc
from restore_core.pgtarget import mark_of, pending_name, pending_prefix

from .helpers import admin, completion_events, dsn, jobs_restoring_to, replay_pids, start, wait_for

TARGET_CLUSTER = "pgflex-target"


def uniq(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def q(env: dict[str, str], db: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn(env, TARGET_CLUSTER, db), connect_timeout=10, autocommit=True) as c:
        cur = c.execute(sql, args or None)
        return cur.fetchall() if cur.description else []


def databases(env: dict[str, str]) -> dict[str, str | None]:
    return dict(q(env, "postgres", "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database"))


def staged(env: dict[str, str], restore_id: str) -> list[str]:
    blobs = BlobServiceClient.from_connection_string(env["AZURE_STORAGE_CONNECTION_STRING"])
    c = blobs.get_container_client(sc.STAGING_WE)
    return [b.name for b in c.list_blobs(name_starts_with=restore_id)] + \
        [b.name for b in c.list_blobs(name_starts_with=f"_plans/{restore_id}")]


def test_a_flexible_point_restores_into_the_flexible_target_as_entra_with_owner_and_cleaned_roles(local_stack, api):
    env = local_stack.env
    suffix = "_" + uuid.uuid4().hex[:6]
    checks = [{"name": "items", "database": f"inventory{suffix}", "sql": "SELECT count(*) FROM items",
               "expect": "50"}]
    rid = start(api, sc.into_server(suffix=suffix, roles="clean", owner="app_owner", checks=checks))
    body = wait_for(api, rid, timeout=150)
    assert body["status"] == "succeeded", json.dumps(body, indent=1)
    stages = [e["stage"] for e in body["timeline"]]
    assert {"inventory", "replay", "verify"} <= set(stages)
    # the data of the point (events f1 + f2: 60 rows; items: 50), the owner asked for, the restore's mark
    assert q(env, f"appdb{suffix}", "SELECT batch, count(*) FROM events GROUP BY 1 ORDER BY 1") == \
        [("f1", 30), ("f2", 30)]
    assert q(env, f"inventory{suffix}", "SELECT count(*) FROM items") == [(50,)]
    owners = {r[0] for r in q(env, f"appdb{suffix}", "SELECT tableowner FROM pg_tables WHERE schemaname = 'public'")}
    assert owners == {"app_owner"}
    assert databases(env)[f"appdb{suffix}"] == mark_of(rid)
    # roles cleaned: the app roles came back, never the Azure platform roles, never a superuser, no password
    server = body["server"]
    roles = server["replay"]["roles"]
    created = set(roles["created"])  # empty when an earlier test of this session created them already
    assert roles["mode"] == "clean"
    assert {"app_owner", "app_reader"} <= {r[0] for r in q(env, "postgres", "SELECT rolname FROM pg_roles")}
    assert {"azure_pg_admin", "azuresu", "replication", "postgres"} <= {d["name"] for d in roles["dropped"]}
    assert not created & {"azure_pg_admin", "azuresu", "replication", "postgres", "pgadmin", "restore-service"}
    supers = {r[0] for r in q(env, "postgres", "SELECT rolname FROM pg_roles WHERE rolsuper")}
    assert not supers & created
    assert q(env, "postgres", "SELECT count(*) FROM pg_authid WHERE rolname = ANY(%s) AND rolpassword IS NOT NULL",
             sorted(created)) == [(0,)]
    # verified, cleaned up, and said so in the completion event
    assert server["verify"]["passed"] is True and server["verify"]["checks"][0]["ok"] is True
    assert staged(env, rid) == [] and server["staging"]["kept"] is False
    (event,) = completion_events(env, rid)
    assert event["server"]["verified"] is True
    assert {d["database"] for d in event["server"]["databases"]} == {f"appdb{suffix}", f"inventory{suffix}"}
    assert {d["owner"] for d in event["server"]["databases"]} == {"app_owner"}


def test_a_legacy_single_server_point_restores_into_the_flexible_target_with_a_key_vault_secret(local_stack, api):
    env = local_stack.env
    name = uniq("sales_legacy")
    rid = start(api, sc.into_server(bi=sc.BI_SALES, databases=[{"source": "salesdb", "target": name}],
                                    auth={"kind": "secret", "secret_uri": sc.SECRET_FLEX_TARGET}))
    body = wait_for(api, rid, timeout=150)
    assert body["status"] == "succeeded", json.dumps(body, indent=1)
    # the latest complete point of salesdb holds batches b0..b5, 40 orders each, and 100 customers
    assert q(env, name, "SELECT count(DISTINCT batch), count(*) FROM orders") == [(6, 240)]
    assert q(env, name, "SELECT count(*) FROM customers") == [(100,)]
    owners = {r[0] for r in q(env, name, "SELECT tableowner FROM pg_tables WHERE schemaname = 'public'")}
    assert owners == {env["PGFLEX_ADMIN_USER"]}  # the connecting role (the secret's user) when no owner is named
    assert body["server"]["replay"]["connected_as"] == env["PGFLEX_ADMIN_USER"]
    assert body["server"]["verify"]["databases"][0]["rows"] == 340


def test_an_unknown_source_database_is_rejected_from_the_points_metadata_before_anything_starts(local_stack, api):
    rid = start(api, sc.into_server(databases=[{"source": "nosuchdb"}]))
    body = wait_for(api, rid)
    assert body["status"] == "rejected" and body["error"]["code"] == "SourceDatabaseNotInPoint", body["error"]
    assert "appdb" in body["error"]["message"] and "inventory" in body["error"]["message"]
    assert body["azure_job_id"] is None and jobs_restoring_to(local_stack.env, rid) == []


@pytest.fixture
def points_without_database_names(local_stack):
    """Azure does not document whether a Flexible Server point's metadata names its databases: without names, the
    databases are known only once the files are staged."""
    emulator = admin(local_stack.env)
    emulator.set_config(flexible_point_db_names=False)
    yield
    emulator.set_config(flexible_point_db_names=True)


def test_without_database_names_in_the_point_an_unknown_source_fails_at_inventory_naming_them(
        local_stack, api, points_without_database_names):
    env = local_stack.env
    rid = start(api, sc.into_server(databases=[{"source": "nosuchdb"}]))
    body = wait_for(api, rid, timeout=150)
    assert body["status"] == "failed" and body["error"]["code"] == "SourceDatabaseNotInPoint", body["error"]
    assert "appdb" in body["error"]["message"] and "inventory" in body["error"]["message"]
    assert not any(d.startswith("nosuchdb") for d in databases(env))
    assert staged(env, rid), "the staged files are kept for diagnosis"
    assert body["server"]["staging"]["kept"] is True


def test_without_database_names_in_the_point_default_names_are_checked_at_inventory(
        local_stack, api, points_without_database_names):
    env = local_stack.env
    suffix = "_" + uuid.uuid4().hex[:6]
    q(env, "postgres", f'CREATE DATABASE "inventory{suffix}"')  # someone else's, with a default name
    rid = start(api, sc.into_server(suffix=suffix))
    body = wait_for(api, rid, timeout=150)
    assert body["status"] == "failed" and body["error"]["code"] == "TargetDatabaseExists", body["error"]
    assert f"inventory{suffix}" in body["error"]["message"]
    assert f"appdb{suffix}" not in databases(env)  # nothing replayed


def test_an_unknown_source_database_of_a_single_server_point_is_rejected_before_anything_starts(local_stack, api):
    rid = start(api, sc.into_server(bi=sc.BI_SALES, databases=[{"source": "hrdb"}]))
    body = wait_for(api, rid)
    assert body["status"] == "rejected" and body["error"]["code"] == "SourceDatabaseNotInPoint"
    assert "salesdb" in body["error"]["message"]
    assert body["azure_job_id"] is None and jobs_restoring_to(local_stack.env, rid) == []


def test_an_existing_target_database_is_rejected_and_left_untouched(local_stack, api):
    env = local_stack.env
    name = uniq("keepme")
    q(env, "postgres", f'CREATE DATABASE "{name}"')
    q(env, name, "CREATE TABLE precious(v int); INSERT INTO precious VALUES (42)")
    rid = start(api, sc.into_server(databases=[{"source": "appdb", "target": name}]))
    body = wait_for(api, rid)
    assert body["status"] == "rejected" and body["error"]["code"] == "TargetDatabaseExists", body["error"]
    assert "drop" not in body["error"]["fix"].lower().replace("never dropped", "")
    assert q(env, name, "SELECT v FROM precious") == [(42,)]
    assert body["azure_job_id"] is None and jobs_restoring_to(env, rid) == []


def test_a_target_role_without_createdb_is_rejected_before_the_vault_restore(local_stack, api):
    env = local_stack.env
    role, password = uniq("nocreatedb"), uuid.uuid4().hex
    q(env, "postgres", f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    host, port = json.loads(env["RESTORE_POSTGRES_HOSTS"])["pgflex-target"].rsplit(":", 1)
    secret = f"{role.replace('_', '-')}-conn"
    admin(env).put_secret("kv-restore-we", secret,
                          f"postgresql://{role}:{password}@{host}:{port}/postgres?sslmode=verify-full")
    rid = start(api, sc.into_server(auth={"kind": "secret",
                                          "secret_uri": f"https://kv-restore-we.vault.azure.net/secrets/{secret}"}))
    body = wait_for(api, rid)
    assert body["status"] == "rejected" and body["error"]["code"] == "TargetMissingCreateDb", body["error"]
    assert f'ALTER ROLE "{role}" CREATEDB' in body["error"]["fix"]
    assert password not in json.dumps(body)
    assert body["azure_job_id"] is None and jobs_restoring_to(env, rid) == []


def test_an_unreachable_target_is_rejected_before_the_vault_restore(local_stack, api):
    nowhere = sc.TARGET_FLEX.rsplit("/", 1)[0] + "/pgflex-nowhere"
    rid = start(api, sc.into_server(server=nowhere))
    body = wait_for(api, rid, timeout=60)
    assert body["status"] == "rejected" and body["error"]["code"] == "TargetUnreachable", body["error"]
    assert "pgflex-nowhere" in body["error"]["message"]
    assert jobs_restoring_to(local_stack.env, rid) == []


def test_a_missing_key_vault_secret_is_rejected_with_the_fix(local_stack, api):
    rid = start(api, sc.into_server(auth={"kind": "secret",
                                          "secret_uri": "https://kv-restore-we.vault.azure.net/secrets/no-such"}))
    body = wait_for(api, rid)
    assert body["status"] == "rejected" and body["error"]["code"] == "TargetSecretNotFound", body["error"]


def _kill_the_replay_mid_work(stack: Any, api: Any, rid: str) -> int | None:
    """Hold the replay mid-work (a lock on pg_database stalls its connections to the target, as a busy server
    would), wait until it has claimed the restore, then SIGKILL its process (as a replica dies) and let go."""
    env = stack.env
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        body = api.get(f"/restores/{rid}")[1]
        if body["status"] not in ("accepted", "validating", "restoring"):
            return None
        if body.get("stage") == "replay":
            break
        time.sleep(0.05)
    with psycopg.connect(dsn(env, TARGET_CLUSTER, "postgres"), connect_timeout=10) as lock:
        lock.execute("LOCK TABLE pg_catalog.pg_database IN ACCESS EXCLUSIVE MODE")
        while time.monotonic() < deadline:
            body = api.get(f"/restores/{rid}")[1]
            pids = replay_pids(stack)
            if pids and (body.get("server") or {}).get("replay", {}).get("runner"):
                time.sleep(0.5)  # it is now waiting for its connection to the target
                for pid in pids:  # the one replaying, and any execution idly looking at the queues
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                lock.rollback()
                return pids[0]
            time.sleep(0.05)
    return None


def test_a_replay_killed_mid_restore_is_redriven_and_drops_only_its_own_marked_database(local_stack, api):
    env = local_stack.env
    suffix = "_" + uuid.uuid4().hex[:6]
    decoy = f"decoy{suffix}"
    q(env, "postgres", f'CREATE DATABASE "{decoy}"')  # someone else's database: never touched
    rid = start(api, sc.into_server(suffix=suffix, databases=[{"source": "appdb"}]))
    # an earlier attempt of this restore "left" its marked database behind, with junk in it
    q(env, "postgres", f'CREATE DATABASE "appdb{suffix}"')
    q(env, "postgres", f"COMMENT ON DATABASE \"appdb{suffix}\" IS '{mark_of(rid)}'")
    q(env, "postgres", f'ALTER DATABASE "appdb{suffix}" OWNER TO "{env["RESTORE_ENTRA_USER"]}"')  # as it made it
    q(env, f"appdb{suffix}", "CREATE TABLE leftover(v int)")
    # and one killed between CREATE DATABASE and its COMMENT left an unmarked database under its pending name
    pending = pending_name(rid, f"appdb{suffix}")
    q(env, "postgres", f'CREATE DATABASE "{pending}"')
    q(env, "postgres", f'ALTER DATABASE "{pending}" OWNER TO "{env["RESTORE_ENTRA_USER"]}"')  # as it made it
    killed = _kill_the_replay_mid_work(local_stack, api, rid)
    assert killed is not None, "the replay execution was never seen running"
    body = wait_for(api, rid, timeout=150)
    assert body["status"] == "succeeded", json.dumps(body, indent=1)
    assert body["server"]["replay"]["attempts"] >= 2  # the killed execution, then the re-driven one
    assert "recreated" in body["server"]["replay"]["databases"][0]["done"]
    assert q(env, f"appdb{suffix}", "SELECT count(*) FROM pg_tables WHERE tablename = 'leftover'") == [(0,)]
    assert q(env, f"appdb{suffix}", "SELECT count(*) FROM events") == [(60,)]
    dbs = databases(env)
    assert decoy in dbs and dbs[decoy] is None
    assert sorted(d for d in dbs if d.endswith(suffix)) == sorted([f"appdb{suffix}", decoy])  # nothing extra
    assert pending not in dbs and not any(d.startswith(pending_prefix(rid)) for d in dbs)


@pytest.fixture
def old_replay_client(local_stack):
    local_stack.restart_host({"RESTORE_REPLAY_CLIENT_VERSION": "11"})
    yield
    local_stack.restart_host()


def test_an_archive_newer_than_the_replay_client_fails_clearly_and_keeps_the_files(local_stack, api,
                                                                                old_replay_client):
    rid = start(api, sc.into_server(databases=[{"source": "inventory"}]))
    body = wait_for(api, rid, timeout=150)
    assert body["status"] == "failed" and body["error"]["code"] == "ArchiveTooNew", body["error"]
    assert "pg_restore 11" in body["error"]["message"] and "postgresql-client-" in body["error"]["fix"]
    assert staged(local_stack.env, rid)


def test_a_non_benign_pg_restore_error_fails_with_that_error_and_keeps_the_staged_files(local_stack, api):
    env = local_stack.env
    name = uniq("ext")
    rid = start(api, sc.into_server(bi=sc.BI_EXT, databases=[{"source": "extdb", "target": name}]))
    body = wait_for(api, rid, timeout=150)
    assert body["status"] == "failed", json.dumps(body, indent=1)
    err = body["error"]
    assert "dblink" in err["message"] and "permission denied" in err["message"].lower(), err
    assert name in err["fix"] and "staged files are kept" in err["fix"]
    assert staged(env, rid) and body["server"]["staging"]["kept"] is True
    assert databases(env)[name] == mark_of(rid)  # the partly loaded database is ours, marked, named in the fix


@pytest.mark.parametrize("layout", ["custom-stream", "plain"])
def test_every_files_layout_the_emulator_writes_is_inventoried_and_replayed(local_stack, api, layout):
    env = local_stack.env
    suffix = "_" + uuid.uuid4().hex[:6]
    emulator = admin(env)
    before = emulator.config()["files_layout"]
    emulator.set_config(files_layout=layout)
    try:
        rid = start(api, sc.into_server(suffix=suffix, databases=[{"source": "inventory"}], owner="app_owner",
                                        roles="clean"))
        body = wait_for(api, rid, timeout=150)
    finally:
        emulator.set_config(files_layout=before)
    assert body["status"] == "succeeded", json.dumps(body, indent=1)
    (db,) = body["server"]["plan"]["databases"]
    assert db["format"] == ("plain" if layout == "plain" else "custom")
    if layout == "custom-stream":
        assert db["data_offsets"] is False
    assert q(env, f"inventory{suffix}", "SELECT count(*) FROM items") == [(50,)]
    assert q(env, f"inventory{suffix}", "SELECT tableowner FROM pg_tables WHERE tablename = 'items'") == \
        [("app_owner",)]


def test_an_archived_point_restores_into_a_server_through_the_one_request_rehydration(local_stack, api):
    env = local_stack.env
    name = uniq("hr_archived")
    # a fresh archived point (no earlier test has rehydrated it), older than every other point of hrdb
    point = admin(env).take_backup(sc.BI_HR_LRS, tier="archive", age="P300D")
    with psycopg.connect(dsn(env, "pgsrv01", "hrdb"), connect_timeout=10) as c:
        expected = c.execute("SELECT count(*) FROM employees").fetchone()
    rid = start(api, sc.into_server(bi=sc.BI_HR_LRS, databases=[{"source": "hrdb", "target": name}],
                                    recovery_point={"id": point["name"]}))
    body = wait_for(api, rid, timeout=180)
    assert body["status"] == "succeeded", json.dumps(body, indent=1)
    assert body["recovery_point"]["tier"] == "archive"
    stages = [e["stage"] for e in body["timeline"]]
    assert {"rehydrate", "wait", "inventory", "replay", "verify"} <= set(stages)
    assert "trigger" not in stages  # the one request rehydrated and restored; wait handed the staged files on
    assert q(env, name, "SELECT count(*) FROM employees") == [expected]


def test_a_cross_region_restore_into_a_server_stages_in_the_paired_region(local_stack, api):
    env = local_stack.env
    suffix = "_" + uuid.uuid4().hex[:6]
    rid = start(api, sc.into_server(suffix=suffix, databases=[{"source": "inventory"}], region="secondary"))
    body = wait_for(api, rid, timeout=180)
    assert body["status"] == "succeeded", json.dumps(body, indent=1)
    assert body["restore_location"] == "northeurope"
    assert body["server"]["staging"]["container_url"].startswith("https://stpgstagingne.")
    assert q(env, f"inventory{suffix}", "SELECT count(*) FROM items") == [(50,)]


def test_user_checks_run_read_only_and_a_failed_check_fails_the_restore_keeping_everything(local_stack, api):
    env = local_stack.env
    suffix = "_" + uuid.uuid4().hex[:6]
    db = f"inventory{suffix}"
    checks = [{"name": "wrong count", "database": db, "sql": "SELECT count(*) FROM items", "expect": "51"},
              {"name": "tries to write", "database": db, "sql": "DELETE FROM items RETURNING 1", "expect": "1"}]
    rid = start(api, sc.into_server(suffix=suffix, databases=[{"source": "inventory"}], checks=checks))
    body = wait_for(api, rid, timeout=150)
    assert body["status"] == "failed" and body["error"]["code"] == "VerificationFailed", body["error"]
    results = {c["name"]: c for c in body["server"]["verify"]["checks"]}
    assert results["wrong count"]["got"] == "50" and results["wrong count"]["ok"] is False
    assert "read-only" in results["tries to write"]["error"]
    assert q(env, db, "SELECT count(*) FROM items") == [(50,)]  # nothing was deleted
    assert staged(env, rid) and body["server"]["staging"]["kept"] is True


@pytest.mark.parametrize(("sql", "database_of", "words"), [
    ("SELECT 1; COMMIT; CREATE TABLE sneaky(v int); SELECT 2", "own", "multiple commands"),
    ("SELECT count(*) FROM pg_database", "postgres", "not one this restore created"),
])
def test_a_user_check_can_neither_escape_its_read_only_transaction_nor_read_other_databases(
        local_stack, api, sql, database_of, words):
    env = local_stack.env
    suffix = "_" + uuid.uuid4().hex[:6]
    db = f"inventory{suffix}"
    check = {"name": "escape", "database": db if database_of == "own" else database_of, "sql": sql, "expect": "2"}
    rid = start(api, sc.into_server(suffix=suffix, databases=[{"source": "inventory"}], checks=[check]))
    body = wait_for(api, rid, timeout=150)
    assert body["status"] == "failed" and body["error"]["code"] == "VerificationFailed", body["error"]
    assert words in body["server"]["verify"]["checks"][0]["error"]
    assert q(env, db, "SELECT count(*) FROM pg_tables WHERE tablename = 'sneaky'") == [(0,)]


def test_a_default_name_that_exists_is_rejected_before_the_vault_restore_when_the_point_names_its_databases(
        local_stack, api):
    env = local_stack.env
    suffix = "_" + uuid.uuid4().hex[:6]
    q(env, "postgres", f'CREATE DATABASE "appdb{suffix}"')
    rid = start(api, sc.into_server(suffix=suffix))
    body = wait_for(api, rid)
    assert body["status"] == "rejected" and body["error"]["code"] == "TargetDatabaseExists", body["error"]
    assert body["azure_job_id"] is None and jobs_restoring_to(env, rid) == []


@pytest.fixture
def replay_role_without_createdb(local_stack):
    """The replay job connects as its own identity (RESTORE_REPLAY_ENTRA_USER): validation, connected as the
    Function App's identity, checks that role's privileges by name."""
    role = uniq("replay_job")
    q(local_stack.env, "postgres", f'CREATE ROLE "{role}" LOGIN')
    local_stack.restart_host({"RESTORE_REPLAY_ENTRA_USER": role})
    yield role
    local_stack.restart_host()


def test_validation_checks_the_replay_jobs_own_role_by_name(local_stack, api, replay_role_without_createdb):
    role = replay_role_without_createdb
    rid = start(api, sc.into_server(databases=[{"source": "inventory"}]))
    body = wait_for(api, rid)
    assert body["status"] == "rejected" and body["error"]["code"] == "TargetMissingCreateDb", body["error"]
    assert f'ALTER ROLE "{role}" CREATEDB' in body["error"]["fix"]
    assert jobs_restoring_to(local_stack.env, rid) == []
