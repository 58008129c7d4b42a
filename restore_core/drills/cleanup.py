"""Clean-up of a drill run after its validation window: drop the databases that carry the run's restore mark, delete
the restore's staged files. Nothing else is ever touched.

Safety: the only databases dropped are those whose comment is exactly this run's restore mark (or that bear the
restore's pending name with no comment: created by a replay killed before it could mark it,
:func:`restore_core.pgtarget.pending_name`)
(:func:`restore_core.pgtarget.mark_of`, written by the replay with ``COMMENT ON DATABASE`` when it created them), on
the run's target server (a drill target). The mark is read again on the same connection right before each
``DROP DATABASE``; a database without it — a decoy with the same name, one another restore created, anything a
person made — is left alone and reported. Roles are never dropped (the replay only creates roles that were missing;
they may be shared). A clean-up that fails is recorded on the run and retried by the drill timer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import telemetry
from ..deps import Deps
from ..models import ServerTarget
from ..pgtarget import TargetConn, connect, facts, mark_of, pending_prefix, quote_ident
from ..staging import owned_by, plan_blob

log = telemetry.get_logger("drills")
_COMMENT_SQL = "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s"


def _ours(name: str, comment: str | None, restore_id: str) -> bool:
    """Carries the restore's mark; or bears the restore's pending name (created, not yet marked: a replay killed
    between ``CREATE DATABASE`` and its ``COMMENT``) with no comment or the mark."""
    mark = mark_of(restore_id)
    return comment == mark or (name.startswith(pending_prefix(restore_id)) and comment is None)


def databases_to_drop(databases: Mapping[str, str | None], restore_id: str) -> list[str]:
    """The databases of ``databases`` (name → comment) that carry ``restore_id``'s mark or its pending name, and only
    those."""
    return sorted(name for name, comment in databases.items() if _ours(name, comment, restore_id))


def _drop_if_marked(conn: TargetConn, name: str, restore_id: str, force: bool) -> bool:
    with connect(conn) as c:
        row = c.execute(_COMMENT_SQL, (name,)).fetchone()
        if row is None or not _ours(name, row[0], restore_id):
            return False
        c.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)}" + (" WITH (FORCE)" if force else ""))
    return True


def drop_marked(conn: TargetConn, restore_id: str) -> dict[str, Any]:
    """Drop this restore's marked databases on the server of ``conn``; what was dropped and what was left."""
    seen = facts(conn)
    dropped: list[str] = []
    left: list[str] = []
    for name in databases_to_drop(seen.databases, restore_id):
        (dropped if _drop_if_marked(conn, name, restore_id, seen.server_version >= 130000) else left).append(name)
    return {"dropped": dropped, "left_unmarked": left}


def delete_staged(deps: Deps, restore_id: str, region: str | None) -> int:
    """The restore's staged files (kept by verify after a failure)."""
    if not region:
        return 0
    area = deps.server_access().staging(region)
    names = [b.name for b in area.files(restore_id) if owned_by(b.name, restore_id)]
    return area.delete([*names, plan_blob(restore_id)])


def clean(deps: Deps, run: dict[str, Any]) -> dict[str, Any]:
    """Clean up one run; raises when the server or the staging container cannot be reached (retried later)."""
    restore_id = run.get("restore_id")
    if not restore_id:
        return {"status": "done", "dropped": [], "left_unmarked": [], "staged_deleted": 0,
                "note": "the run started no restore"}
    rec = deps.store.get(restore_id)
    target = ServerTarget.model_validate(run["request"]["target"])
    out = drop_marked(deps.server_access().target_conn(target), restore_id)
    staged = delete_staged(deps, restore_id, (rec.staging or {}).get("region") if rec else None)
    return {"status": "done", **out, "staged_deleted": staged}
