"""``restore_core.pgroles``: Microsoft's roles.sql cleaning for Flexible Server, rule by rule."""

from __future__ import annotations

from restore_core.pgroles import clean_roles, quote_ident

# shape of pg_dumpall --roles-only (PG 15 output, plus PG 16+ membership options and role settings)
ROLES_SQL = '''--
-- PostgreSQL database cluster dump
--

\\restrict k

SET default_transaction_read_only = off;

CREATE ROLE "Mixed ""Case""";
ALTER ROLE "Mixed ""Case""" WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS;
CREATE ROLE app_owner;
ALTER ROLE app_owner WITH @NO@ @OWN@ PASSWORD 'SCRAM-SHA-256$4096:abc=' @VU@ '2030-01-01 00:00:00+00';
CREATE ROLE app_reader;
ALTER ROLE app_reader WITH @NO@ NOINHERIT NOCREATEROLE NOCREATEDB NOLOGIN @NR@ CONNECTION LIMIT 5;
CREATE ROLE boss;
ALTER ROLE boss WITH SUPERUSER INHERIT CREATEROLE CREATEDB LOGIN REPLICATION BYPASSRLS ENCRYPTED PASSWORD 'md5x';
CREATE ROLE azure_pg_admin;
ALTER ROLE azure_pg_admin WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB NOLOGIN NOREPLICATION NOBYPASSRLS;
CREATE ROLE azuresu;
ALTER ROLE azuresu WITH SUPERUSER INHERIT CREATEROLE CREATEDB LOGIN REPLICATION BYPASSRLS;
CREATE ROLE azure_superuser;
CREATE ROLE localadmin;
CREATE ROLE replication;
ALTER ROLE replication WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN REPLICATION NOBYPASSRLS;
CREATE ROLE pgadmin;
ALTER ROLE pgadmin WITH NOSUPERUSER INHERIT CREATEROLE CREATEDB LOGIN NOREPLICATION NOBYPASSRLS PASSWORD 'secretpw';
CREATE ROLE postgres;
CREATE ROLE pg_monitor_copy;
ALTER ROLE app_owner SET search_path TO 'inv', 'public';
ALTER ROLE app_owner IN DATABASE appdb SET work_mem TO '64MB';
COMMENT ON ROLE app_owner IS 'owner''s role';
SECURITY LABEL FOR selinux ON ROLE app_owner IS 'x';

GRANT app_reader TO app_owner GRANTED BY postgres;
GRANT app_reader TO "Mixed ""Case""" WITH INHERIT TRUE GRANTED BY azuresu;
GRANT app_reader TO pgadmin WITH ADMIN OPTION GRANTED BY postgres;
GRANT azure_pg_admin TO boss GRANTED BY azuresu;
GRANT pg_read_all_data TO app_reader GRANTED BY postgres;

\\unrestrict k
'''.replace("@NO@", "NOSUPERUSER").replace("@NR@", "NOREPLICATION NOBYPASSRLS")\
    .replace("@VU@", "VALID UNTIL").replace("@OWN@", "INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS")


def plan():  # type: ignore[no-untyped-def]
    return clean_roles(ROLES_SQL, exclude=["pgadmin"])


def test_kept_roles_and_dropped_roles_with_reasons() -> None:
    p = plan()
    assert p.role_names == ['Mixed "Case"', "app_owner", "app_reader", "boss"]
    dropped = {d.name: d.reason for d in p.dropped}
    for name in ("azure_pg_admin", "azuresu", "azure_superuser", "localadmin", "replication"):
        assert "Azure platform role" in dropped[name]
    assert "admin or connecting role" in dropped["pgadmin"]
    assert "bootstrap superuser" in dropped["postgres"]
    assert "built-in" in dropped["pg_monitor_copy"] and "built-in" in dropped["pg_read_all_data"]


def test_superuser_only_attributes_never_emitted() -> None:
    text = "\n".join(plan().statements)
    for word in ("SUPERUSER", "BYPASSRLS", "REPLICATION"):
        assert word not in text
    assert plan().removed_attributes == {"boss": ["SUPERUSER", "REPLICATION", "BYPASSRLS"]}


def test_no_password_is_carried_and_the_plan_says_so() -> None:
    p = plan()
    assert not any("PASSWORD" in s for s in p.statements)
    text = "\n".join(p.statements) + repr(p.summary())
    assert "SCRAM" not in text and "md5x" not in text and "secretpw" not in text
    assert p.passwords_removed == ["app_owner", "boss"]
    assert "no password" in p.notes[0]


def test_kept_options_and_idempotent_create() -> None:
    stmts = plan().statements
    assert stmts[0] == ("DO $r0$ BEGIN IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles "
                        "WHERE rolname = 'Mixed \"Case\"') THEN CREATE ROLE \"Mixed \"\"Case\"\"\" "
                        "WITH INHERIT NOCREATEROLE NOCREATEDB LOGIN; END IF; END $r0$;")
    owner = next(s for s in stmts if "rolname = 'app_owner'" in s)
    assert ("CREATE ROLE \"app_owner\" WITH INHERIT NOCREATEROLE NOCREATEDB LOGIN "
            "VALID UNTIL '2030-01-01 00:00:00+00';") in owner
    reader = next(s for s in stmts if "rolname = 'app_reader'" in s)
    assert "NOINHERIT NOCREATEROLE NOCREATEDB NOLOGIN CONNECTION LIMIT 5;" in reader


def test_memberships_only_among_kept_roles_without_granted_by() -> None:
    grants = [s for s in plan().statements if s.startswith("GRANT")]
    assert grants == ['GRANT "app_reader" TO "app_owner";',
                      'GRANT "app_reader" TO "Mixed ""Case""" WITH INHERIT TRUE;']


def test_settings_comment_and_skipped_lines() -> None:
    p = plan()
    assert 'ALTER ROLE "app_owner" SET search_path TO \'inv\', \'public\';' in p.statements
    assert "COMMENT ON ROLE \"app_owner\" IS 'owner''s role';" in p.statements
    assert any("IN DATABASE" in s for s in p.skipped)
    assert any("SECURITY LABEL" in s for s in p.skipped)
    assert not any("work_mem" in s for s in p.statements)


def test_statements_for_existing_roles_leave_them_alone() -> None:
    stmts = plan().statements_for(["app_owner"])
    assert not any("'app_owner'" in s or 'ALTER ROLE "app_owner"' in s for s in stmts)
    assert 'GRANT "app_reader" TO "app_owner";' not in stmts  # member existed before: not ours to change
    assert 'GRANT "app_reader" TO "Mixed ""Case""" WITH INHERIT TRUE;' in stmts


def test_dollar_quote_tag_avoids_the_role_name() -> None:
    p = clean_roles('CREATE ROLE "x$r0$y";\n')
    assert p.statements[0].startswith("DO $r1$ ") and p.statements[0].endswith(" END $r1$;")


def test_quote_ident() -> None:
    assert quote_ident('a"b') == '"a""b"'
