"""Restore into a server: the checks validate makes before anything is paid for, and the database name plan.

Consumes: the request's :class:`~restore_core.models.ServerTarget`, the backup instance (its datasource tells the
source server and, for a Single Server point, the one database), the target server's facts
(:func:`restore_core.pgtarget.facts`, read with the chosen credentials over TLS), and the staging site of the region
the vault restores into.
Produces: ``None`` when every check passed, else a rejection (code, plain message, the exact fix); and
:func:`name_plan`, the source → target database names (explicit, or each source + suffix).

Guards (docs/server-restore.md): the target is never the source server unless ``beside_source`` says so, and then
never under a source database's own name; a target database that exists is never touched (rejected, nothing
dropped); the connecting role needs ``CREATEDB`` (and ``CREATEROLE`` for ``roles: clean``); an ``owner`` must exist
(or come from the point's roles with ``roles: clean``) and be a role the connecting role can act as.
"""

from __future__ import annotations

import re

from ..arm_ids import same_id
from ..models import RolesMode, ServerTarget
from ..pgtarget import TargetConn, TargetFacts, mark_of, quote_ident
from ..restore_requests import FLEXIBLE_SERVER
from ..transitions import Outcome, StageResult


def _reject(code: str, message: str, fix: str) -> StageResult:
    return StageResult(Outcome.REJECTED, f"rejected: {code}: {message}", error_code=code, error_message=message,
                       error_fix=fix)


def source_server_of(datasource_type: str, datasource_id: str) -> str:
    """The server ARM id of a backup instance's datasource (Flexible: the server itself; Single Server: the part
    before ``/databases/``)."""
    if datasource_type.lower() == FLEXIBLE_SERVER.lower():
        return datasource_id
    return re.split(r"(?i)/databases/", datasource_id)[0]


def single_server_database(datasource_type: str, datasource_id: str) -> str | None:
    """The one database of a Single Server point (None for a Flexible Server point: its databases are known only
    once the files are staged)."""
    if datasource_type.lower() == FLEXIBLE_SERVER.lower():
        return None
    return datasource_id.rstrip("/").rsplit("/", 1)[-1]


def name_plan(target: ServerTarget, sources: list[str], default_suffix: str) -> dict[str, str]:
    """Source database → new database name."""
    suffix = target.suffix or default_suffix
    if target.databases:
        return {d.source: d.target or f"{d.source}{suffix}" for d in target.databases}
    return {s: f"{s}{suffix}" for s in sources}


#: Databases a server has of its own: never restored unless named (Azure may or may not stage dumps of them).
SYSTEM_DATABASES = frozenset({"postgres", "azure_maintenance", "azure_sys", "template0", "template1"})


def user_databases(names: list[str]) -> list[str]:
    return [n for n in names if n.lower() not in SYSTEM_DATABASES]


def sources_in_point(target: ServerTarget, known: list[str] | None) -> StageResult | None:
    """The named source databases exist in the point (when the point says which databases it holds)."""
    if known is None or not target.databases:
        return None
    missing = [d.source for d in target.databases if d.source not in known]
    if not missing:
        return None
    return _reject("SourceDatabaseNotInPoint",
                   f"the recovery point holds the databases {', '.join(sorted(known))}; {', '.join(missing)} is not "
                   "among them", "set target.databases[].source to one of those databases (or leave "
                   "target.databases out to restore them all)")


def source_rules(target: ServerTarget, datasource_type: str, datasource_id: str) -> StageResult | None:
    """Rules that need only the request and the backup instance."""
    source_server = source_server_of(datasource_type, datasource_id)
    beside = same_id(source_server, target.server_id)
    if beside and not target.beside_source:
        return _reject("RestoreBesideSourceNotRequested",
                       f"the target server {target.server_name} is the source server of this backup",
                       "restore into another server, or set target.beside_source to true to create the restored "
                       "databases next to the source databases (they get new names; the source databases are never "
                       "touched)")
    single = single_server_database(datasource_type, datasource_id)
    if single and target.databases and [d.source.lower() for d in target.databases] != [single.lower()]:
        named = ", ".join(d.source for d in target.databases)
        return _reject("SourceDatabaseNotInPoint",
                       f"this Single Server recovery point holds one database, {single}; the request names {named}",
                       f"set target.databases to [{{\"source\": \"{single}\"}}] or leave it out")
    if beside and target.databases:
        clash = [d.source for d in target.databases if (d.target or "").lower() == d.source.lower()]
        if clash:
            return _reject("RestoreToSourceNotAllowed",
                           f"the target name of {', '.join(clash)} is the source database's own name on the source "
                           "server; restores never overwrite it", "choose a new target name for it")
    return None


def taken_names(f: TargetFacts, names: dict[str, str], restore_id: str) -> list[str]:
    """Target names that exist on the server and are not this restore's own (marked) databases."""
    existing = {n.lower(): comment for n, comment in f.databases.items()}
    return [t for t in names.values() if t.lower() in existing and existing[t.lower()] != mark_of(restore_id)]


def target_rules(target: ServerTarget, conn: TargetConn, f: TargetFacts, names: dict[str, str],
                 restore_id: str = "") -> StageResult | None:
    """Rules checked against the live target server (connected over TLS with the chosen credentials). A database
    carrying this restore's own mark (an interrupted earlier attempt) is not "taken": the replay recreates it."""
    privileges = _privileges(target, conn, f)
    if privileges is not None:
        return privileges
    taken = taken_names(f, names, restore_id)
    if taken:
        return _reject("TargetDatabaseExists",
                       f"database {', '.join(taken)} already exists on {target.server_name}; restores never "
                       "overwrite or drop an existing database",
                       "choose other names (target.databases[].target or target.suffix); existing databases are "
                       "never dropped by this service")
    return _owner_rule(target, conn, f)


def _privileges(target: ServerTarget, conn: TargetConn, f: TargetFacts) -> StageResult | None:
    who = quote_ident(f.user)
    if not (f.createdb or f.superuser):
        return _reject("TargetMissingCreateDb",
                       f"role {f.user} ({conn.label}) may not create databases on {target.server_name}",
                       f"as the server admin run: ALTER ROLE {who} CREATEDB;")
    if target.roles == RolesMode.CLEAN and not (f.createrole or f.superuser):
        return _reject("TargetMissingCreateRole",
                       f"roles: clean creates the point's roles, and role {f.user} may not create roles on "
                       f"{target.server_name}",
                       f"as the server admin run: ALTER ROLE {who} CREATEROLE; or set target.roles to skip")
    return None


def _owner_rule(target: ServerTarget, conn: TargetConn, f: TargetFacts) -> StageResult | None:
    owner = target.owner
    if not owner or owner == f.user:
        return None
    if owner not in f.roles:
        if target.roles == RolesMode.CLEAN:
            return None  # may come from the point's roles; the replay checks again once they are created
        return _reject("TargetOwnerMissing", f"owner role {owner} does not exist on {target.server_name}",
                       f"create it first (as the server admin: CREATE ROLE {quote_ident(owner)};), or set "
                       "target.roles to clean if the recovery point has it, or leave owner out")
    # PostgreSQL 16+: CREATEROLE grants only roles held WITH ADMIN OPTION, so it no longer suffices by itself
    can_grant = f.superuser or (f.createrole and f.server_version < 160000)
    if owner not in f.member_of and not can_grant:
        return _reject("TargetOwnerNotGranted",
                       f"role {f.user} cannot act as owner {owner} on {target.server_name}",
                       f"as the server admin run: GRANT {quote_ident(owner)} TO {quote_ident(f.user)};")
    return None
