"""Guards: what a restore may not do, checked before anything is paid for (issue 14).

Consumes: a valid :class:`~restore_core.models.RestoreRequest`, the :class:`Caller` that asked, the settings
(:class:`~restore_core.config.GuardSettings`) and, for the protected servers of the configured vaults, the backup
service port (cached in the state table's meta rows, as vault facts are).
Produces: ``None`` when a guard passes, else a refusal with a code, a plain message and a fix that never suggests
dropping anything:

- :func:`check_intake` — decidable without Azure, so the doors refuse at once (HTTP 400, a ``rejected`` row for
  queue input): a container URL outside the configured blob endpoints; a target outside ``RESTORE_ALLOWED_TARGETS``;
  a database or server target on a server of ``RESTORE_PROTECTED_SERVERS`` without ``beside_source``;
  ``beside_source`` asked by a caller without ``RESTORE_BESIDE_SOURCE_ROLE`` (when that setting names a role); a
  server of ``RESTORE_DRILL_TARGETS`` for anyone but a drill, and any other target for a drill (issue 15).
- :func:`protected_target` — in the validate stage (and the preview), with the backup instance resolved: the
  backup's own source server and every source server of a backup instance in ``RESTORE_PROTECTED_VAULTS`` is not a
  target without ``beside_source``; and beside a source, never under a source database's own name.

The caller: :class:`Caller` is who asked. With function keys (``RESTORE_AUTH_MODE=key``) the HTTP door knows only
that a key was valid (:data:`FUNCTION_KEY`), the queue door that a message came in; neither carries roles. With
Microsoft Entra callers (``entra``) restore_core/principal.py builds the caller from the platform's
``X-MS-CLIENT-PRINCIPAL`` headers with its app roles; ``RESTORE_BESIDE_SOURCE_ROLE`` (default ``admin`` then)
decides who may restore beside a protected server.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from .arm_ids import parse_vault_id, same_id
from .backup import BackupInstanceInfo
from .config import AuthSettings, GuardSettings
from .deps import Deps
from .errors import RequestError
from .models import DatabaseTarget, FilesTarget, RestoreRequest, ServerTarget
from .records import iso, parse_time
from .stages.server_checks import single_server_database, source_server_of

PROTECTED_CACHE_TTL = timedelta(minutes=30)


#: App roles, cumulative: an admin holds operator and reader, an operator reader (restore_core/principal.py).
ROLE_ORDER = ("reader", "operator", "admin")


@dataclass(frozen=True)
class Caller:
    """Who asked. ``id`` keys per-caller limits (the preview's budget); ``roles`` is None when the door carries no
    roles (function keys, the queue), and then no role is checked unless a setting requires one. ``name``/``idp``:
    a principal's display name and identity provider (``aad``)."""

    id: str
    kind: str  # "key" | "queue" | "alert" | "plan" | "principal"
    roles: frozenset[str] | None = None
    name: str | None = None
    idp: str | None = None

    def holds(self, role: str) -> bool:
        if self.roles is None:
            return False
        held = {r.lower() for r in self.roles}
        want = role.lower()
        if want in ROLE_ORDER:
            return any(r in ROLE_ORDER and ROLE_ORDER.index(r) >= ROLE_ORDER.index(want) for r in held)
        return want in held

    def record(self) -> dict[str, Any]:
        """What a restore row, its timeline and its event keep of the caller (never a key or token)."""
        out: dict[str, Any] = {"kind": self.kind, "id": self.id}
        if self.name:
            out["name"] = self.name
        if self.idp:
            out["idp"] = self.idp
        return out

    def label(self) -> str:
        return f"{self.name} ({self.id})" if self.name else self.id


#: An HTTP caller with a valid function key. The Functions host checks the key and does not tell the app which key
#: it was, so all key holders share this one caller (and one preview budget).
FUNCTION_KEY = Caller("function-key", "key")
QUEUE = Caller("queue", "queue")
#: The drill scheduler (restore_core/drills): the only caller that may restore into a drill target.
DRILL = Caller("drill", "drill")
#: A request built from a restore plan (an alert, either door): the plan is an app setting, written by whoever may
#: change the app's settings (an admin by definition), so it may restore beside a source when it says so.
PLAN = Caller("restore-plan", "plan", frozenset({"admin"}))


def caller_from_http(headers: Mapping[str, str], auth: AuthSettings | None = None) -> Caller:
    """The caller of an HTTP request, without checking what it may do: with ``RESTORE_AUTH_MODE=entra`` behind the
    platform's authentication, the principal it passed on (restore_core/principal.py); otherwise the function-key
    holder, whatever the headers say (without the platform in front, a client could write ``X-MS-*`` headers
    itself). The HTTP handlers use :func:`restore_core.principal.authorize`, which also checks roles."""
    if auth is None or auth.mode != "entra" or not auth.platform_auth:
        return FUNCTION_KEY
    from .principal import caller_of  # principal imports this module

    try:
        return caller_of(headers) or FUNCTION_KEY
    except ValueError:
        return FUNCTION_KEY


@dataclass(frozen=True)
class Refusal:
    code: str
    message: str
    fix: str
    field: str = "target"

    def error(self) -> RequestError:
        return RequestError(self.message, field=self.field, fix=self.fix, code=self.code)


# ------------------------------------------------------------------------------------------- without Azure
def _target_ids(req: RestoreRequest) -> list[str]:
    """What the allow-list is matched against: the server id, or the container's id and URL."""
    t = req.target
    if isinstance(t, FilesTarget):
        return [x for x in (t.container_id, t.container_url) if x]
    return [t.server_id]


def allowed(req: RestoreRequest, patterns: tuple[str, ...]) -> Refusal | None:
    """``RESTORE_ALLOWED_TARGETS``: fnmatch patterns (case-insensitive) of target server ids and container ids or
    URLs. Empty: every target is allowed."""
    if not patterns:
        return None
    ids = _target_ids(req)
    if any(fnmatch.fnmatchcase(i.lower(), p.lower()) for i in ids for p in patterns):
        return None
    field = "target.server_id" if not isinstance(req.target, FilesTarget) else "target.container_url"
    return Refusal("TargetNotAllowed", f"{field} is not among the targets this service may restore into "
                                       "(RESTORE_ALLOWED_TARGETS)",
                   "choose a target that matches one of: " + ", ".join(patterns[:10]) +
                   (" …" if len(patterns) > 10 else "") + " (or ask the service's admins to add it)", field)


def blob_host(req: RestoreRequest, suffixes: tuple[str, ...]) -> Refusal | None:
    """A files target's container URL must be a blob endpoint of an Azure cloud (or of a configured suffix)."""
    if not isinstance(req.target, FilesTarget):
        return None
    host = (urlsplit(req.target.container_url).hostname or "").lower()
    account_rest = host.split(".", 1)
    if len(account_rest) == 2 and account_rest[1] in suffixes:
        return None
    return Refusal("ContainerHostNotAllowed",
                   f"target.container_url's host {host} is not a blob endpoint of an Azure cloud",
                   "give the container's URL on its storage account's blob endpoint: "
                   "https://{account}." + suffixes[0] + "/{container}", "target.container_url")


def _server_of(req: RestoreRequest) -> str | None:
    t = req.target
    return t.server_id if isinstance(t, DatabaseTarget | ServerTarget) else None


def _beside(req: RestoreRequest) -> bool:
    t = req.target
    return isinstance(t, DatabaseTarget | ServerTarget) and t.beside_source


def beside_source_role(req: RestoreRequest, caller: Caller, role: str) -> Refusal | None:
    """``beside_source`` is an admin's choice when ``RESTORE_BESIDE_SOURCE_ROLE`` names a role."""
    if not role or not _beside(req) or caller.holds(role):
        return None
    return Refusal("BesideSourceNotPermitted",
                   f"target.beside_source needs the {role} role, and the caller ({caller.id}) does not hold it",
                   f"restore into a server that is not protected (leave beside_source out), or ask someone with the "
                   f"{role} role to start this restore", "target.beside_source")


def _protected_refusal(server_id: str, why: str, *, field: str = "target.server_id") -> Refusal:
    name = server_id.rstrip("/").rsplit("/", 1)[-1]
    return Refusal("TargetServerProtected",
                   f"the target server {name} is protected ({why}): restores do not create databases there unless "
                   "asked to", "restore into another server, or set target.beside_source to true to create the "
                               "restored database next to the protected ones under a new name (nothing existing is "
                               "touched)", field)


def configured_protection(req: RestoreRequest, servers: tuple[str, ...]) -> Refusal | None:
    server = _server_of(req)
    if server is None or _beside(req) or not any(same_id(server, s) for s in servers):
        return None
    return _protected_refusal(server, "listed in RESTORE_PROTECTED_SERVERS")


def drill_only(req: RestoreRequest, caller: Caller, patterns: tuple[str, ...]) -> Refusal | None:
    """``RESTORE_DRILL_TARGETS``: servers reserved for restore drills take restores from drills only (their databases
    are dropped when a drill's validation window ends), and drills restore only into them."""
    server = _server_of(req)
    on_drill_target = server is not None and bool(patterns) and \
        any(fnmatch.fnmatchcase(server.lower(), p.lower()) for p in patterns)
    if caller.kind == "drill" and not on_drill_target:
        return Refusal("NotADrillTarget", "a drill restores only into a server of RESTORE_DRILL_TARGETS",
                       "change the drill's target.server_id to a drill target", "target.server_id")
    if caller.kind != "drill" and on_drill_target:
        return Refusal("DrillTargetReserved", "target.server_id is reserved for restore drills "
                                              "(RESTORE_DRILL_TARGETS): only drills restore into it",
                       "restore into another server; to prove a backup on the drill server, define a drill "
                       "(POST /api/drills) or run one now (POST /api/drills/{id}/run)", "target.server_id")
    return None


def check_intake(req: RestoreRequest, caller: Caller, settings: GuardSettings) -> RequestError | None:
    """The guards a door decides at once (no Azure call); the first refusal as a 400, or None."""
    for refusal in (blob_host(req, settings.blob_host_suffixes), allowed(req, settings.allowed_targets),
                    drill_only(req, caller, settings.drill_targets),
                    beside_source_role(req, caller, settings.beside_source_role),
                    configured_protection(req, settings.protected_servers)):
        if refusal is not None:
            return refusal.error()
    return None


# ---------------------------------------------------------------------------------------------- with Azure
def _source_of(info: BackupInstanceInfo) -> tuple[str, str | None]:
    return source_server_of(info.datasource_type, info.datasource_id), \
        single_server_database(info.datasource_type, info.datasource_id)


def vault_sources(deps: Deps, vault_id: str) -> list[tuple[str, str | None]]:
    """(source server id, Single Server database or None) of every backup instance in a vault; cached in the
    state table (meta ``protected``) for :data:`PROTECTED_CACHE_TTL`, and per process."""
    key = vault_id.lower()
    memo = deps.memo.get("protected", key)
    if isinstance(memo, list):
        return memo
    now = deps.clock()
    row = deps.store.get_meta("protected", key)
    fetched = parse_time(row.get("fetched_at")) if row else None
    if row is not None and fetched is not None and now - fetched < PROTECTED_CACHE_TTL:
        sources = [(s, d) for s, d in json.loads(str(row.get("sources") or "[]"))]
    else:
        sources = [_source_of(b) for b in deps.dp.list_backup_instances(parse_vault_id(vault_id))]
        deps.store.put_meta("protected", key, {"vault_id": vault_id, "fetched_at": iso(now),
                                               "sources": json.dumps(sources, separators=(",", ":"))})
    deps.memo.put("protected", key, sources)
    return sources


def protected_servers(deps: Deps, info: BackupInstanceInfo) -> dict[str, tuple[str, set[str]]]:
    """Protected server id (lower case) → (why, the source database names known on it)."""
    own_server, own_db = _source_of(info)
    found: dict[str, tuple[str, set[str]]] = {own_server.lower(): ("the source server of this backup",
                                                                  {own_db.lower()} if own_db else set())}
    for srv in deps.settings.guards.protected_servers:
        found.setdefault(srv.lower(), ("listed in RESTORE_PROTECTED_SERVERS", set()))
    for vault_id in deps.settings.guards.protected_vaults:
        vault = vault_id.rstrip("/").rsplit("/", 1)[-1]
        for server, db in vault_sources(deps, vault_id):
            why, dbs = found.setdefault(server.lower(), (f"a source server of backups in vault {vault}", set()))
            if db:
                dbs.add(db.lower())
    return found


def target_names(req: RestoreRequest, planned: list[str] | None) -> list[str]:
    """The database names a restore creates on its target server (server targets: the planned names)."""
    if isinstance(req.target, DatabaseTarget):
        return [req.target.database_name]
    return list(planned or [])


def protected_target(deps: Deps, req: RestoreRequest, info: BackupInstanceInfo,
                     planned: list[str] | None = None) -> Refusal | None:
    """A database or server target on a protected server needs ``beside_source``, and then never takes a source
    database's own name there. (A server target on its own source server is refused by
    :func:`restore_core.stages.server_checks.source_rules` with ``RestoreBesideSourceNotRequested``.)"""
    server = _server_of(req)
    if server is None:
        return None
    hit = protected_servers(deps, info).get(server.lower())
    if hit is None:
        return None
    why, sources = hit
    if not _beside(req):
        if why.startswith("the source server") and isinstance(req.target, DatabaseTarget):
            return Refusal("RestoreBesideSourceNotRequested",
                           f"the target server {server.rstrip('/').rsplit('/', 1)[-1]} is the source server of this "
                           "backup", "restore into another server, or set target.beside_source to true to create "
                                     "the restored database next to the source database under a new name (the "
                                     "source database is never touched)", "target.server_id")
        return _protected_refusal(server, why)
    clash = [n for n in target_names(req, planned) if n.lower() in sources]
    if clash:
        return Refusal("RestoreToSourceNotAllowed",
                       f"{', '.join(clash)} is a source database's own name on the protected server; restores never "
                       "overwrite it", "choose a new target database name", "target")
    return None


def described(settings: GuardSettings) -> dict[str, Any]:
    """The guards in force, for the preview's answer (no secrets: ids and patterns only)."""
    return {"protected_vaults": list(settings.protected_vaults), "protected_servers": list(settings.protected_servers),
            "allowed_targets": list(settings.allowed_targets),
            "beside_source_role": settings.beside_source_role or None}


