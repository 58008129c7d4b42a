"""One restore at a time per destination: lock rows in the state table (meta ``lock``), issue 14.

A destination is where a restore writes (:func:`destinations`): the target database (``db:<server id>/databases/
<name>``), each planned database of a server target (a Flexible Server point whose names are known only once its
files are staged locks the whole server: ``server:<server id>``), or a container URL and file prefix
(``files:<url>/<prefix>``). Known gap: a whole-server lock and a named database lock on the same server do not
exclude each other (a named restore cannot list the whole-server restore's future names; those are checked again
against the server by the inventory stage, which never touches an existing database).

- :func:`take` (validate stage, before Azure's validate call and long before the trigger): a conditional insert per
  destination. A row held by another restore that is still active refuses this one with ``DestinationBusy``, naming
  the first; a row whose restore is terminal or gone is stale and taken over with an ETag-guarded replace. Taking
  a destination this restore already holds (a redelivered message) is a no-op. The keys taken are kept on the row
  (``locks``), so they are released exactly.
- :func:`release` (:func:`restore_core.pipeline.finish`, at every terminal state): deletes each row still held by
  this restore (ETag-guarded, so a row taken over meanwhile stays).
- :func:`busy` (the preview): who holds a destination now, without writing.

Cost: one insert per destination on the happy path, one read and a delete at the end.
"""

from __future__ import annotations

from .deps import Deps
from .models import DatabaseTarget, FilesTarget, RestoreRequest, ServerTarget
from .records import RestoreRecord, iso

KIND = "lock"


def destinations(req: RestoreRequest, planned: list[str] | None = None, *, names_final: bool = True) -> list[str]:
    """The lock keys of a restore (lower-case ids; a file prefix keeps its case: blob names are case-sensitive)."""
    t = req.target
    if isinstance(t, DatabaseTarget):
        return [f"db:{t.database_id.lower()}"]
    if isinstance(t, FilesTarget):
        return [f"files:{t.container_url.lower().rstrip('/')}/{t.file_prefix}"]
    assert isinstance(t, ServerTarget)
    if not names_final or not planned:
        return [f"server:{t.server_id.lower()}"]
    return [f"db:{t.server_id.lower()}/databases/{n.lower()}" for n in sorted(planned)]


def _holder_active(deps: Deps, holder: str | None, own_id: str) -> bool:
    if not holder or holder == own_id:
        return False
    rec = deps.store.get(holder)
    return rec is not None and not rec.terminal


def busy(deps: Deps, keys: list[str], own_id: str = "") -> tuple[str, str] | None:
    """(destination, id of the active restore holding it), or None: read only."""
    for key in keys:
        row = deps.store.get_meta_row(KIND, key)
        holder = str(row[0].get("restore_id") or "") if row else ""
        if row is not None and _holder_active(deps, holder, own_id):
            return key, holder
    return None


def _take_one(deps: Deps, key: str, restore_id: str) -> str | None:
    """None when ``restore_id`` holds ``key`` now; else the id of the active restore that holds it."""
    values = {"restore_id": restore_id, "destination": key, "taken_at": iso(deps.clock())}
    for _ in range(5):
        if deps.store.insert_meta(KIND, key, values):
            return None
        row = deps.store.get_meta_row(KIND, key)
        if row is None:
            continue  # released meanwhile: insert again
        holder = str(row[0].get("restore_id") or "")
        if holder == restore_id:
            return None
        if _holder_active(deps, holder, restore_id):
            return holder
        if deps.store.replace_meta(KIND, key, values, row[1]):  # stale: its restore ended or never existed
            return None
    return str((deps.store.get_meta_row(KIND, key) or ({}, ""))[0].get("restore_id") or "another restore")


def take(deps: Deps, restore_id: str, keys: list[str]) -> tuple[str, str] | None:
    """Take every destination, or none: returns (destination, holder) of the first busy one after giving back the
    ones taken here."""
    taken: list[str] = []
    for key in keys:
        holder = _take_one(deps, key, restore_id)
        if holder is not None:
            _release_keys(deps, restore_id, taken)
            return key, holder
        taken.append(key)
    return None


def release_keys(deps: Deps, restore_id: str, keys: list[str]) -> None:
    """Give back ``keys`` that ``restore_id`` holds (a key taken over meanwhile stays with its new holder)."""
    _release_keys(deps, restore_id, keys)


def _release_keys(deps: Deps, restore_id: str, keys: list[str]) -> None:
    for key in keys:
        row = deps.store.get_meta_row(KIND, key)
        if row is not None and row[0].get("restore_id") == restore_id:
            deps.store.delete_meta_if(KIND, key, row[1])


def release(deps: Deps, rec: RestoreRecord) -> None:
    """Give back the destinations a finished restore holds (those recorded on its row)."""
    _release_keys(deps, rec.id, list(rec.locks))


def describe_key(key: str) -> str:
    """A lock key as people read it."""
    kind, _, rest = key.partition(":")
    return {"db": "database ", "files": "files ", "server": "server "}.get(kind, "") + rest
