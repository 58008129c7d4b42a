"""User checks run under a role that can only read (issue 15 item 2), on the local stack's Flexible-like drill server
(restore_core/checkrole.py, restore_core/stages/verify.py).

The service connects as ``restore-service``: not superuser, CREATEDB CREATEROLE, member of azure_pg_admin, as Azure's
admin is made. It creates the reader, grants it reading for the checks' time, and runs each check as the reader in a
read-only transaction. Every known way out fails as a check, and nothing changes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from localdev import scenarios as sc
from restore_core import plans
from restore_core.config import load_settings
from restore_core.models import ServerTarget, UserCheck
from restore_core.pgtarget import TargetConn
from restore_core.server_access import AzureServerAccess
from restore_core.stages import verify

from .helpers import dsn

CLUSTER = "pgflex-drills"
DRILL_SERVER = sc.TARGET_FLEX.replace("pgflex-target", "pgflex-drills")
READER = "restore_checks"
PROGRAM_FILE = Path("/tmp") / f"check-escape-{uuid.uuid4().hex[:8]}"  # noqa: S108 - the file COPY TO PROGRAM would make


def su(env: dict[str, str], db: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn(env, CLUSTER, db), connect_timeout=10, autocommit=True) as c:
        cur = c.execute(sql, args or None)
        return cur.fetchall() if cur.description else []


@pytest.fixture
def restored(local_stack: Any) -> Iterator[tuple[TargetConn, str]]:
    """A database as a restore leaves it: owned by an owner role the service is a member of, with a table, a sequence,
    a SECURITY DEFINER function of the owner that writes, and a function that resets the role."""
    env, tag = local_stack.env, uuid.uuid4().hex[:6]
    db, owner = f"chk_{tag}", f"chk_owner_{tag}"
    su(env, "postgres", f'CREATE ROLE "{owner}" NOLOGIN')
    su(env, "postgres", f'GRANT "{owner}" TO "restore-service"')
    su(env, "postgres", f'CREATE DATABASE "{db}" OWNER "{owner}"')
    su(env, db, f'SET ROLE "{owner}"; CREATE TABLE items (id serial PRIMARY KEY, v text); '  # noqa: S608
                "INSERT INTO items (v) SELECT 'x' FROM generate_series(1, 50); "
                "CREATE FUNCTION wipe() RETURNS int SECURITY DEFINER LANGUAGE sql AS "
                "$$ DELETE FROM items RETURNING 1 $$; "
                "CREATE FUNCTION back_to_me() RETURNS text LANGUAGE plpgsql AS "
                "$$ BEGIN RESET ROLE; RETURN (SELECT count(*) FROM items)::text; END $$")
    settings = load_settings({**env, "RestoreStorage": env["AZURE_STORAGE_CONNECTION_STRING"]})
    conn = AzureServerAccess(settings).target_conn(ServerTarget(kind="server", server_id=DRILL_SERVER))
    assert conn.user == "restore-service"
    yield conn, db
    su(env, "postgres", f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    su(env, "postgres", f'DROP ROLE IF EXISTS "{owner}"')


def check(name: str, db: str, sql: str, expect: str = "x") -> UserCheck:
    return UserCheck(name=name, database=db, sql=sql, expect=expect)


def test_checks_run_as_the_reader_and_every_escape_fails_as_a_check_changing_nothing(local_stack, restored):
    env = local_stack.env
    conn, db = restored
    before_seq = su(env, db, "SELECT last_value FROM items_id_seq")
    escapes = {
        "set_config_role": "SELECT set_config('role', 'none', true) || (SELECT count(*) FROM items)",
        "set_config_session_role": "SELECT set_config('role', 'restore-service', false)",
        "reset_role_in_a_function": "SELECT back_to_me()",
        "definer_function_writes": "SELECT wipe()",
        "nextval": "SELECT nextval('items_id_seq')",
        "setval": "SELECT setval('items_id_seq', 1000)",
        "writable_cte": "WITH d AS (DELETE FROM items RETURNING 1) SELECT count(*) FROM d",
        "read_write_again": "SELECT set_config('transaction_read_only', 'off', true)",
        "two_statements": "SELECT 1; DELETE FROM items",
        "copy_to_program": f"COPY (SELECT 1) TO PROGRAM 'touch {PROGRAM_FILE}'",
        "server_file": "SELECT pg_read_file('/etc/hostname')",
        "dblink": "SELECT dblink_exec('dbname=postgres', 'CREATE DATABASE escaped')",
        "create_temp": "SELECT count(*) FROM (SELECT 1) s, LATERAL (SELECT 1) t WHERE "
                       "query_to_xml('CREATE TEMP TABLE t (a int)', false, false, '') IS NOT NULL",
    }
    checks = [check("whoami", db, "SELECT current_user", READER),
              check("items", db, "SELECT count(*) FROM items", "50"),
              *(check(n, db, sql) for n, sql in escapes.items())]
    results = {r["name"]: r for r in verify._run_checks(conn, checks, {db}, READER)}

    assert results["whoami"] == {"name": "whoami", "ok": True, "got": READER, "expect": READER, "role": READER}
    assert results["items"]["ok"] is True and results["items"]["role"] == READER
    for name in escapes:
        r = results[name]
        assert r["ok"] is False and r.get("error") and "got" not in r, (name, r)
    assert "left the role" in results["set_config_role"]["error"]
    assert "left the role" in results["reset_role_in_a_function"]["error"]
    assert "read-only" in results["definer_function_writes"]["error"]
    assert "read-only" in results["writable_cte"]["error"] or "permission" in results["writable_cte"]["error"]
    assert "read-write" in results["read_write_again"]["error"]
    # nothing changed
    assert su(env, db, "SELECT count(*) FROM items") == [(50,)]
    assert su(env, db, "SELECT last_value FROM items_id_seq") == before_seq
    assert not PROGRAM_FILE.exists()
    assert not su(env, "postgres", "SELECT 1 FROM pg_database WHERE datname = 'escaped'")
    # the reader: no login, no attribute, no membership; its reading is revoked after the checks
    assert su(env, "postgres", "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolbypassrls FROM pg_roles "
                               "WHERE rolname = %s", READER) == [(False, False, False, False, False)]
    assert su(env, "postgres", "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member "
                               "WHERE r.rolname = %s", READER) == [(0,)]
    assert su(env, db, "SELECT has_table_privilege(%s, 'items', 'SELECT')", READER) == [(False,)]
    assert su(env, "postgres", "SELECT rolsuper FROM pg_roles WHERE rolname = 'restore-service'") == [(False,)]


def test_a_reader_that_could_do_more_than_read_is_refused_and_every_check_fails_with_the_fix(local_stack, restored):
    env = local_stack.env
    conn, db = restored
    unsafe = f"chk_login_{uuid.uuid4().hex[:6]}"
    su(env, "postgres", f'CREATE ROLE "{unsafe}" LOGIN CREATEDB')
    try:
        (r,) = verify._run_checks(conn, [check("items", db, "SELECT count(*) FROM items", "50")], {db}, unsafe)
    finally:
        su(env, "postgres", f'DROP ROLE "{unsafe}"')
    assert r["ok"] is False and "not read-only (CREATEDB, LOGIN)" in r["error"] and "RESTORE_CHECK_ROLE" in r["error"]


class _NoBlobs:
    """A staging area without blobs: the plan is all in its (single-blob layout) index."""

    def files(self, prefix: str) -> list[Any]:
        return []


def test_the_built_in_verification_runs_read_only(local_stack, restored):
    """Counting rows must not write, even when the restored database would (a row-security policy whose function
    writes on every read): the count fails as a verification problem and nothing is written."""
    env = local_stack.env
    conn, db = restored
    owner = su(env, "postgres", "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", db)[0][0]
    su(env, db, f'SET ROLE "{owner}"; CREATE TABLE reads (at timestamptz DEFAULT now()); '
                "CREATE FUNCTION noted() RETURNS boolean LANGUAGE plpgsql VOLATILE AS "
                "$$ BEGIN INSERT INTO reads DEFAULT VALUES; RETURN true; END $$; "
                "ALTER TABLE items ENABLE ROW LEVEL SECURITY; ALTER TABLE items FORCE ROW LEVEL SECURITY; "
                "CREATE POLICY everyone ON items USING (noted())")
    entry = {"target": db, "tables": [{"schema": "public", "name": "items"}],
             "archive_counts": {"rows": {"public.items": 50}, "complete": True}}
    plan = plans.Plan(area=_NoBlobs(), restore_id="r", index={"databases": [entry]})  # the single-blob layout
    out = verify._verify_database(conn, plan, 0)
    assert out["count_mismatches"] and "read-only" in out["count_mismatches"][0], out
    assert su(env, db, "SELECT count(*) FROM reads") == [(0,)]
