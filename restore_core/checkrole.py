"""The role user checks run as (``RESTORE_CHECK_ROLE``, default ``restore_checks``): a role that can only read.

A restore's checks (``target.checks``, and a drill's checks) are SQL written by a person. They run in verify, on the
databases the restore created, connected as the replay job's role. That role may create databases and roles and is a
member of the restored databases' owner, so a check never runs with its privileges. Instead:

- **The reader.** A ``NOLOGIN`` role with no attribute (no ``CREATEDB``, ``CREATEROLE``, ``BYPASSRLS``,
  ``REPLICATION``, superuser) and no membership in any other role. The connecting role creates it when it is
  missing (it needs ``CREATEROLE``) and grants itself membership so that it may ``SET ROLE`` to it (PostgreSQL 16
  and later: the creator of a role holds only ``ADMIN`` on it, so it grants itself ``SET TRUE, INHERIT FALSE``).
  An existing role that is not that harmless is refused: the checks fail and say what to change.
- **Only what the checks read.** Before the checks, the reader is granted ``CONNECT`` on each checked database and,
  in it, ``USAGE`` on its schemas and ``SELECT`` on their tables, views and sequences; the grants are revoked after
  the checks. Not ``pg_read_all_data``: Azure documents no right of ``azure_pg_admin`` members to grant it, and it
  would let the job's identity (through ``SET ROLE``) read every database on the server (docs/server-restore.md).
- **Each check** runs as ``SET LOCAL ROLE <reader>`` inside a read-only transaction with a statement timeout, as one
  statement, and is rolled back (:mod:`restore_core.stages.verify`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .pgtarget import TargetConn, connect, quote_ident

#: Role attributes the reader must not have.
_ATTRIBUTES_SQL = ("SELECT rolsuper, rolcreatedb, rolcreaterole, rolcanlogin, rolreplication, rolbypassrls "
                   "FROM pg_roles WHERE rolname = %s")
_ATTRIBUTE_NAMES = ("SUPERUSER", "CREATEDB", "CREATEROLE", "LOGIN", "REPLICATION", "BYPASSRLS")
_MEMBER_OF_SQL = ("SELECT b.rolname FROM pg_auth_members m JOIN pg_roles b ON b.oid = m.roleid "
                  "JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = %s ORDER BY 1")
_SCHEMAS_SQL = ("SELECT nspname FROM pg_namespace WHERE nspname NOT IN ('pg_catalog', 'information_schema') "
                "AND nspname !~ '^pg_(toast|temp_)' ORDER BY 1")


class CheckRoleError(Exception):
    """The reader cannot be used; the message says what to change."""


@dataclass(frozen=True)
class Reader:
    name: str
    created: bool  # this call created it


def _version(c: Any) -> int:
    return int(c.execute("SELECT current_setting('server_version_num')::int").fetchone()[0])


def _refuse_unsafe(c: Any, name: str) -> None:
    row = c.execute(_ATTRIBUTES_SQL, (name,)).fetchone()
    bad = [attr for attr, on in zip(_ATTRIBUTE_NAMES, row, strict=True) if on]
    member_of = [r for (r,) in c.execute(_MEMBER_OF_SQL, (name,)).fetchall()]
    if bad or member_of:
        what = ", ".join([*bad, *(f"member of {r}" for r in member_of)])
        raise CheckRoleError(
            f"the checks' role {name} is not read-only ({what}); fix: use a role that only reads "
            f"(set RESTORE_CHECK_ROLE to a new name, the service creates it), or as the server admin run "
            f"ALTER ROLE {quote_ident(name)} NOLOGIN NOCREATEDB NOCREATEROLE NOBYPASSRLS NOREPLICATION; and revoke "
            "its memberships")


def _create(c: Any, name: str, me: str) -> None:
    import psycopg

    try:
        c.execute(f"CREATE ROLE {quote_ident(name)} NOLOGIN NOINHERIT")
    except psycopg.errors.DuplicateObject:  # created by a concurrent verify: the same role
        return
    except psycopg.errors.InsufficientPrivilege:
        raise CheckRoleError(
            f"the checks' role {name} does not exist and {me} may not create it (no CREATEROLE); fix: as the "
            f"server admin run CREATE ROLE {quote_ident(name)} NOLOGIN; GRANT {quote_ident(name)} TO "
            f"{quote_ident(me)};") from None


def _join(c: Any, name: str, me: str, version: int) -> None:
    """Membership of the connecting role in the reader, with the right to SET ROLE to it."""
    import psycopg

    right = "SET" if version >= 160000 else "MEMBER"
    if c.execute("SELECT pg_has_role(current_user, %s, %s)", (name, right)).fetchone()[0]:
        return
    options = " WITH INHERIT FALSE, SET TRUE" if version >= 160000 else ""
    try:
        c.execute(f"GRANT {quote_ident(name)} TO {quote_ident(me)}{options}")
    except psycopg.errors.InsufficientPrivilege:
        raise CheckRoleError(
            f"{me} may not SET ROLE to the checks' role {name} and may not grant it to itself; fix: as the server "
            f"admin run GRANT {quote_ident(name)} TO {quote_ident(me)};") from None


def ensure(conn: TargetConn, name: str) -> Reader:
    """The reader, created and joined when missing; raises :class:`CheckRoleError` with the fix."""
    with connect(conn) as c:
        me = str(c.execute("SELECT current_user").fetchone()[0])
        created = c.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone() is None
        if created:
            _create(c, name, me)
        _refuse_unsafe(c, name)
        _join(c, name, me, _version(c))
    return Reader(name, created)


def _statements(c: Any, database: str, reader: str, *, grant: bool) -> list[str]:
    to = f"TO {quote_ident(reader)}" if grant else f"FROM {quote_ident(reader)}"
    verb = "GRANT" if grant else "REVOKE"
    out = []
    for (schema,) in c.execute(_SCHEMAS_SQL).fetchall():
        s = quote_ident(schema)
        out += [f"{verb} USAGE ON SCHEMA {s} {to}", f"{verb} SELECT ON ALL TABLES IN SCHEMA {s} {to}",
                f"{verb} SELECT ON ALL SEQUENCES IN SCHEMA {s} {to}"]
    return out


def grant_reading(conn: TargetConn, database: str, reader: str, *, grant: bool = True) -> None:
    """``CONNECT`` on ``database`` and ``USAGE``/``SELECT`` on its schemas, tables, views and sequences (or their
    revocation after the checks). Objects the connecting role may not grant on stay unreadable (PostgreSQL warns,
    the check that reads them fails with "permission denied")."""
    db = quote_ident(database)
    with connect(conn) as c:
        if grant:
            c.execute(f"GRANT CONNECT ON DATABASE {db} TO {quote_ident(reader)}")
    with connect(conn, database, autocommit=False) as c:
        for stmt in _statements(c, database, reader, grant=grant):
            c.execute(stmt)
        c.commit()
    if not grant:
        with connect(conn) as c:
            c.execute(f"REVOKE CONNECT ON DATABASE {db} FROM {quote_ident(reader)}")
