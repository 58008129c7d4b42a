"""The target Flexible Server of a restore into a server: how to reach it, and what it says about itself.

Consumes: a :class:`~restore_core.models.ServerTarget` and the settings (host suffix or local host map, TLS mode and
CA, the Entra role name of the service identity). Credentials: ``auth.kind = entra`` → the service identity's
Microsoft Entra token for ``https://ossrdbms-aad.database.windows.net/.default`` as the password of the PostgreSQL
role ``RESTORE_ENTRA_USER`` (keyless); ``auth.kind = secret`` → the connection string in a Key Vault secret, read by
this service (URI, ``key=value`` or the ADO.NET form Azure documents). Nothing here stores or logs a password: a
:class:`TargetConn` hides its password from ``repr`` and every error message names the host and role only.

Produces: :class:`TargetFacts` (the connecting role's privileges, the server version, existing databases with their
comments, existing roles) for validation, and ``connect`` for the replay and verify stages.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .config import ServerRestoreSettings as Settings
from .errors import AzureRejection, RetryableError
from .models import EntraAuth, ServerTarget

ENTRA_SCOPE = "https://ossrdbms-aad.database.windows.net/.default"
#: The mark a replay leaves on every database it creates (``COMMENT ON DATABASE``); only marked databases are ever
#: dropped, and only by the restore named in the mark.
MARK_PREFIX = "created by pg-restore-orchestrator restore "


def mark_of(restore_id: str) -> str:
    return MARK_PREFIX + restore_id


#: Databases are created under a pending name, marked, then renamed: ``CREATE DATABASE`` cannot run in a transaction,
#: so a replay killed between creating and marking would otherwise leave an unmarked database nobody may drop.
PENDING_PREFIX = "restore_pending_"


def pending_prefix(restore_id: str) -> str:
    """The name prefix of every database ``restore_id`` creates before it is marked and renamed."""
    return PENDING_PREFIX + hashlib.sha256(restore_id.encode()).hexdigest()[:16] + "_"


def pending_name(restore_id: str, name: str) -> str:
    """The name ``restore_id`` creates database ``name`` under (deterministic: a re-driven replay finds it)."""
    return pending_prefix(restore_id) + hashlib.sha256(name.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class TargetConn:
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    sslmode: str = "verify-full"
    sslrootcert: str | None = None
    via: str = "entra"

    def kwargs(self, dbname: str = "postgres") -> dict[str, Any]:
        kw: dict[str, Any] = {"host": self.host, "port": self.port, "user": self.user, "password": self.password,
                              "dbname": dbname, "sslmode": self.sslmode, "connect_timeout": 10,
                              "application_name": "pg-restore-orchestrator"}
        if self.sslrootcert:
            kw["sslrootcert"] = self.sslrootcert
        return kw

    def env(self, dbname: str) -> dict[str, str]:
        """libpq environment for pg_restore/psql (the password never goes on a command line)."""
        env = {"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user, "PGPASSWORD": self.password,
               "PGDATABASE": dbname, "PGSSLMODE": self.sslmode, "PGAPPNAME": "pg-restore-orchestrator",
               "PGCONNECT_TIMEOUT": "10"}
        if self.sslrootcert:
            env["PGSSLROOTCERT"] = self.sslrootcert
        return env

    @property
    def label(self) -> str:
        how = "Microsoft Entra token" if self.via == "entra" else "Key Vault secret"
        return f"{self.user}@{self.host}:{self.port} ({how})"


@dataclass
class TargetFacts:
    user: str
    superuser: bool
    createdb: bool
    createrole: bool
    server_version: int
    databases: dict[str, str | None]  # name → comment
    roles: set[str]
    member_of: set[str]


def host_of(target: ServerTarget, settings: Settings) -> tuple[str, int]:
    name = target.server_name.lower()
    mapped = settings.postgres_hosts.get(name)
    if mapped:
        host, _, port = mapped.rpartition(":")
        return host, int(port)
    return f"{name}{settings.postgres_host_suffix}", 5432


_ADO_KEYS = {"server": "host", "host": "host", "data source": "host", "port": "port", "database": "dbname",
             "user id": "user", "userid": "user", "user": "user", "username": "user", "uid": "user",
             "password": "password", "pwd": "password", "ssl mode": "sslmode", "sslmode": "sslmode"}


def parse_connection_string(value: str) -> dict[str, str]:
    """A connection string as libpq keywords: ``postgresql://…`` URIs, ``key=value`` pairs, or the ADO.NET form
    (``Server=…;Database=…;Port=…;User Id=…;Password=…;Ssl Mode=Require;``). Raises ``ValueError`` naming the
    form expected, never echoing the value."""
    v = value.strip()
    if v.startswith(("postgresql://", "postgres://")):
        return _parse_uri(v)
    if ";" in v or re.match(r"(?i)^\s*(server|host|data source)\s*=", v) and "=" in v and " " not in v.split(";")[0]:
        out = _parse_ado(v)
    else:
        out = _parse_kv(v)
    if not out.get("host") or not out.get("user"):
        raise ValueError("the connection string names no host or user; store it as postgresql://user:password@host:"
                         "5432/postgres?sslmode=require, key=value pairs, or Server=…;User Id=…;Password=…;")
    return out


def _parse_uri(v: str) -> dict[str, str]:
    u = urlsplit(v)
    out = {"host": u.hostname or "", "user": unquote(u.username or ""), "password": unquote(u.password or "")}
    if u.port:
        out["port"] = str(u.port)
    if u.path.strip("/"):
        out["dbname"] = unquote(u.path.strip("/"))
    for k, vals in parse_qs(u.query).items():
        out[k] = vals[-1]
    return out


def _parse_ado(v: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in v.split(";"):
        if "=" not in part:
            continue
        k, _, val = part.partition("=")
        key = _ADO_KEYS.get(k.strip().lower())
        if key:
            out[key] = val.strip()
    if "sslmode" in out:
        out["sslmode"] = out["sslmode"].lower().replace("verifyfull", "verify-full").replace("verifyca", "verify-ca")
    return out


def _parse_kv(v: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for m in re.finditer(r"(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", v):
        val = m.group(2)
        if val.startswith("'"):
            val = val[1:-1].replace("\\'", "'").replace("\\\\", "\\")
        out[m.group(1).lower()] = val
    return out


def resolve(target: ServerTarget, settings: Settings, *, token: Callable[[str], str],
            secret: Callable[[str], str]) -> TargetConn:
    """How to connect to ``target``. ``token(scope)`` and ``secret(uri)`` are the credential adapters."""
    if isinstance(target.auth, EntraAuth):
        host, port = host_of(target, settings)
        if not settings.entra_user:
            raise AzureRejection("EntraUserNotConfigured",
                                 "auth.kind entra needs the PostgreSQL role name of the service identity, and "
                                 "RESTORE_ENTRA_USER is not set",
                                 fix="set RESTORE_ENTRA_USER to the identity's name (docs/deploy.md, 'Restore into a "
                                     "server'), or use auth.kind secret")
        return TargetConn(host, port, settings.entra_user, token(ENTRA_SCOPE), settings.postgres_sslmode,
                          settings.postgres_sslrootcert, "entra")
    value = secret(target.auth.secret_uri)
    try:
        kw = parse_connection_string(value)
    except ValueError as exc:
        raise AzureRejection("TargetSecretMalformed", f"the secret {target.auth.secret_uri} is not a PostgreSQL "
                             f"connection string: {exc}", fix="store the connection string in one of the forms "
                             "named") from None
    sslmode = kw.get("sslmode") or settings.postgres_sslmode
    if sslmode in ("disable", "allow", "prefer"):
        sslmode = "require"  # never send a password without TLS, whatever the secret says
    return TargetConn(kw["host"], int(kw.get("port") or 5432), kw["user"],
                      kw.get("password", ""), sslmode, settings.postgres_sslrootcert, "secret")


def connect(conn: TargetConn, dbname: str = "postgres", *, autocommit: bool = True) -> Any:
    """A psycopg connection; connection failures are mapped to a rejection with a fix (or retryable when the server
    is merely busy)."""
    import psycopg

    try:
        return psycopg.connect(**conn.kwargs(dbname), autocommit=autocommit)
    except psycopg.OperationalError as exc:
        raise _connect_error(conn, dbname, str(exc)) from None


def _connect_error(conn: TargetConn, dbname: str, text: str) -> Exception:
    low = text.lower()
    first = text.strip().splitlines()[0] if text.strip() else "connection failed"
    if "too many connections" in low or "the database system is starting up" in low:
        return RetryableError(f"target {conn.host} is busy: {first}")
    if "password authentication failed" in low or "authentication failed" in low:
        fix = (f"make this identity a PostgreSQL Microsoft Entra role on the server: as an Entra admin run "  # noqa: S608 - advice text
               f"SELECT * FROM pgaadauth_create_principal('{conn.user}', false, false); (the Function App's "
               "identity needs no privileges; the replay job's needs CREATEDB: docs/deploy.md)" if conn.via == "entra"
               else "update the Key Vault secret with the right user and password for the target server")
        return AzureRejection("TargetAuthenticationFailed", f"{conn.label} was refused: {first}", fix=fix)
    if "ssl" in low or "certificate" in low:
        return AzureRejection("TargetTlsFailed", f"TLS to {conn.host}:{conn.port} failed: {first}",
                              fix="the server must accept TLS with a certificate the service trusts (Azure's root "
                                  "CAs; RESTORE_POSTGRES_SSLROOTCERT for a private CA)")
    if f'database "{dbname}" does not exist' in low:
        return AzureRejection("TargetDatabaseMissing", f"database {dbname} does not exist on {conn.host}",
                              fix="check the target server")
    return AzureRejection("TargetUnreachable", f"cannot reach {conn.host}:{conn.port}: {first}",
                          fix="check the server name, that it is running, and its networking: the service (and the "
                              "replay job) must reach it — public access with a firewall rule for Azure services, "
                              "or the VNet integration of docs/deploy.md for a private server")


FACTS_SQL = """
SELECT r.rolname, r.rolsuper, r.rolcreatedb, r.rolcreaterole,
       current_setting('server_version_num')::int,
       (SELECT coalesce(json_object_agg(d.datname, shobj_description(d.oid, 'pg_database')), '{}')
          FROM pg_database d),
       (SELECT coalesce(json_agg(rolname), '[]') FROM pg_roles),
       (SELECT coalesce(json_agg(b.rolname), '[]') FROM pg_auth_members m JOIN pg_roles b ON b.oid = m.roleid
         WHERE m.member = r.oid)
  FROM pg_roles r WHERE r.rolname = coalesce(%s, current_user)
"""


def facts(conn: TargetConn, role: str | None = None) -> TargetFacts:
    """What the target says about ``role`` (default: the connecting role) and itself. With Microsoft Entra, the
    replay job connects as its own identity (``RESTORE_REPLAY_ENTRA_USER``): validation, connected as the Function
    App's identity, checks that role's privileges by name."""
    with connect(conn) as c:
        row = c.execute(FACTS_SQL, (role,)).fetchone()
    if row is None:
        raise AzureRejection("TargetReplayRoleMissing",
                             f"the replay job's role {role} does not exist on {conn.host}",
                             fix=f"as a Microsoft Entra admin of the server run: SELECT * FROM "  # noqa: S608
                                 f"pgaadauth_create_principal('{role}', false, false); then ALTER ROLE "
                                 f"{quote_ident(role or '')} CREATEDB; (docs/deploy.md)")
    user, superuser, createdb, createrole, version, dbs, roles, member_of = row
    return TargetFacts(user, bool(superuser), bool(createdb), bool(createrole), int(version), dict(dbs),
                       set(roles), set(member_of))


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
