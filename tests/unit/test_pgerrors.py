"""``restore_core.pgerrors``: pg_restore stderr (real formats) classified rule by rule."""

from __future__ import annotations

from restore_core.pgerrors import Target, classify_output

ACL_ERRORS = """pg_restore: error: could not execute query: ERROR:  role "app_reader" does not exist
Command was: GRANT SELECT ON TABLE inv.items TO app_reader;
GRANT SELECT ON TABLE inv.items TO azure_pg_admin;


pg_restore: error: could not execute query: ERROR:  role "azure_pg_admin" does not exist
Command was: GRANT SELECT ON TABLE inv.v_items TO azure_pg_admin;


pg_restore: warning: errors ignored on restore: 2
"""


def one(stderr: str, **kw):  # type: ignore[no-untyped-def]
    d = classify_output(stderr, **kw)
    return d, (d.warnings + d.failures)[0]


def err(message: str, command: str) -> str:
    return (f"pg_restore: error: could not execute query: ERROR:  {message}\nCommand was: {command}\n\n\n"
            "pg_restore: warning: errors ignored on restore: 1\n")


def test_grant_to_platform_role_is_a_warning() -> None:
    d = classify_output(ACL_ERRORS, absent_roles=["app_reader"])
    assert [i.code for i in d.warnings] == ["skipped-role-grant", "platform-role-grant"]
    assert d.failures == [] and d.ok and d.errors_ignored == 2
    assert d.warnings[0].command.endswith("TO azure_pg_admin;")


def test_grant_to_a_role_not_meant_to_be_missing_fails() -> None:
    d = classify_output(ACL_ERRORS)
    assert [i.code for i in d.failures] == ["restore-error"]
    assert d.failures[0].message == 'role "app_reader" does not exist'
    assert "create role app_reader" in d.failures[0].fix


def test_benign_grant_that_skipped_a_real_grant_fails() -> None:
    stderr = err('role "azure_pg_admin" does not exist',
                 "GRANT SELECT ON TABLE t TO azure_pg_admin;\nGRANT SELECT ON TABLE t TO app_reader;")
    d = classify_output(stderr)
    assert [i.code for i in d.failures] == ["restore-error"]


def test_comment_on_extension_not_owner_is_a_warning() -> None:
    d, i = one(err("must be owner of extension plpgsql", "COMMENT ON EXTENSION plpgsql IS 'PL/pgSQL';"))
    assert (i.code, d.ok) == ("extension-comment", True)


def test_public_schema_exists_and_transaction_timeout_are_warnings() -> None:
    assert one(err('schema "public" already exists', "CREATE SCHEMA public;"))[1].code == "public-schema-exists"
    d, i = one(err('unrecognized configuration parameter "transaction_timeout"', "SET transaction_timeout = 0;"))
    assert (i.code, d.ok) == ("unknown-setting", True)


def test_extension_not_allow_listed_fails_with_the_azure_extensions_fix() -> None:
    msg = 'extension "pg_hint_plan" is not allow-listed for "azure_pg_admin" users in Azure Database for PostgreSQL'
    d, i = one(err(msg, "CREATE EXTENSION IF NOT EXISTS pg_hint_plan WITH SCHEMA public;"),
               target=Target("rg-target", "pgflex-target"))
    assert not d.ok and i.code == "extension-not-allowed" and i.message == msg
    assert i.fix == ("add pg_hint_plan to the server parameter azure.extensions (az postgres flexible-server parameter "
                     "set --resource-group rg-target --server-name pgflex-target --name azure.extensions --value "
                     "<current value>,pg_hint_plan) and retry")


def test_missing_control_file_fails_with_the_azure_extensions_fix() -> None:
    msg = ('could not open extension control file "/usr/share/postgresql/15/extension/postgis.control": '
           "No such file or directory")
    d, i = one(err(msg, "CREATE EXTENSION IF NOT EXISTS postgis WITH SCHEMA public;"))
    assert i.code == "extension-not-allowed" and "--value <current value>,postgis)" in i.fix


def test_other_errors_fail_with_message_command_detail_and_fix() -> None:
    stderr = ("pg_restore: error: could not execute query: ERROR:  type \"geometry\" does not exist\n"
              "LINE 3:     geom public.geometry\n                ^\n"
              "Command was: CREATE TABLE public.places (\n    geom public.geometry\n);\n\n\n")
    d, i = one(stderr)
    assert i.code == "restore-error" and i.message == 'type "geometry" does not exist'
    assert i.command == "CREATE TABLE public.places (\n    geom public.geometry\n);"
    assert i.detail.startswith("LINE 3:") and "staged files are kept" in i.fix


def test_old_pg_restore_format() -> None:
    stderr = ("pg_restore: [archiver (db)] Error while PROCESSING TOC:\n"
              "pg_restore: [archiver (db)] Error from TOC entry 3; 0 0 COMMENT EXTENSION plpgsql\n"
              "pg_restore: [archiver (db)] could not execute query: ERROR:  must be owner of extension plpgsql\n"
              "    Command was: COMMENT ON EXTENSION plpgsql IS 'PL/pgSQL procedural language';\n\n\n"
              "WARNING: errors ignored on restore: 1\n")
    d = classify_output(stderr)
    assert [i.code for i in d.warnings] == ["extension-comment"] and d.failures == []


def test_parallel_interleaved_prefixes_are_parsed() -> None:
    stderr = ('pg_restore:pg_restore: error:  error: could not execute query: ERROR:  role "app_reader" does not '
              "exist\nCommand was: GRANT SELECT ON TABLE inv.v_items TO app_reader;\n\n\n"
              'could not execute query: ERROR:  role "app_reader" does not exist\n'
              "Command was: GRANT SELECT ON TABLE inv.items TO app_reader;\n\n\n"
              "pg_restore: warning: errors ignored on restore: 2\n")
    d = classify_output(stderr, absent_roles={"app_reader"})
    assert len(d.warnings) == 2 and d.failures == []


def test_fatal_errors_fail() -> None:
    d = classify_output("pg_restore: error: unsupported version (1.16) in file header\n")
    assert [(i.code, i.message) for i in d.failures] == [("restore-fatal", "unsupported version (1.16) in file header")]
    assert "newer postgresql-client" in d.failures[0].fix


def test_more_ignored_errors_than_parsed_fails() -> None:
    d = classify_output("pg_restore: warning: errors ignored on restore: 3\n")
    assert [i.code for i in d.failures] == ["unparsed-errors"]


def test_clean_output_is_ok() -> None:
    d = classify_output("")
    assert d.ok and d.warnings == [] and d.errors_ignored is None
