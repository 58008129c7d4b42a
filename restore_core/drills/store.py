"""Drill definitions and runs, kept in the state table's meta rows (the StateStore port; no new table).

- ``meta-drill``: one row per definition (``definition``: its JSON, ``created_at``, ``updated_at``);
- ``meta-drillplan``: per drill and scheduled time, the backup instances chosen and when each is due (written once,
  so a re-run tick sees the same plan and lists nothing from Azure again);
- ``meta-drillrun-<drill id>``: one row per run (drill, scheduled time, backup instance), a JSON document updated
  with ETag guards;
- ``meta-drillrun-open``: an index of the runs not done yet (started, validating, clean-up pending, completion event
  not yet published): the scheduler reads only this to follow runs, whatever the history.

A run's key is ``<drill id>:<scheduled time>:<8 hex of the backup instance>``; its restore's idempotency key is
``drill:`` + that key, so a re-run tick never starts a run twice.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .. import models
from ..deps import Deps
from ..records import iso, parse_time
from .model import RUN_TOKEN_LENGTH, DrillDefinition

DRILLS = "drill"
PLANS = "drillplan"
OPEN = "drillrun-open"
DRILL_KEY_PREFIX = models.DRILL_KEY_PREFIX
MAX_LIST = 1000


def runs_kind(drill_id: str) -> str:
    return f"drillrun-{drill_id}"


def run_key(drill_id: str, scheduled: datetime, backup_instance_id: str) -> str:
    bi = hashlib.sha256(backup_instance_id.lower().encode()).hexdigest()[:8]
    return f"{drill_id}:{scheduled.strftime('%Y%m%dT%H%M%SZ')}:{bi}"


def run_token(key: str) -> str:
    """The token of a run's database names (``{run}`` of the suffix)."""
    return hashlib.sha256(key.encode()).hexdigest()[:RUN_TOKEN_LENGTH]


def idempotency_key(key: str) -> str:
    return DRILL_KEY_PREFIX + key


def run_key_of_restore(idem: str | None) -> str | None:
    return idem[len(DRILL_KEY_PREFIX):] if idem and idem.startswith(DRILL_KEY_PREFIX) else None


# ------------------------------------------------------------------------------------------------ definitions
@dataclass
class StoredDrill:
    definition: DrillDefinition
    created_at: datetime
    updated_at: datetime

    def view(self) -> dict[str, Any]:
        return {**self.definition.model_dump(mode="json", exclude_none=True), "created_at": iso(self.created_at),
                "updated_at": iso(self.updated_at)}


def _stored(row: dict[str, Any]) -> StoredDrill:
    created, updated = parse_time(row["created_at"]), parse_time(row["updated_at"])
    assert created is not None and updated is not None
    return StoredDrill(DrillDefinition.model_validate(json.loads(row["definition"])), created, updated)


def get_drill(deps: Deps, drill_id: str) -> StoredDrill | None:
    row = deps.store.get_meta(DRILLS, drill_id)
    return _stored(row) if row else None


def list_drills(deps: Deps) -> list[StoredDrill]:
    return sorted((_stored(r) for r in deps.store.list_meta(DRILLS, limit=MAX_LIST)), key=lambda d: d.definition.id)


def put_drill(deps: Deps, d: DrillDefinition, *, create: bool) -> tuple[StoredDrill, bool]:
    """Create (False when the id exists: nothing written) or replace a definition; returns (stored, written)."""
    now = deps.clock()
    values: dict[str, Any] = {"id": d.id, "definition": d.model_dump_json(exclude_none=True)}
    if create:
        values.update(created_at=iso(now), updated_at=iso(now))
        if not deps.store.insert_meta(DRILLS, d.id, values):
            existing = get_drill(deps, d.id)
            assert existing is not None
            return existing, False
        return StoredDrill(d, now, now), True
    existing = get_drill(deps, d.id)
    created = existing.created_at if existing else now
    deps.store.put_meta(DRILLS, d.id, {**values, "created_at": iso(created), "updated_at": iso(now)})
    return StoredDrill(d, created, now), True


def delete_drill(deps: Deps, drill_id: str) -> None:
    """The definition goes; its runs (and the clean-up of their databases) stay."""
    deps.store.delete_meta(DRILLS, drill_id)


# ------------------------------------------------------------------------------------------------------- plans
def get_plan(deps: Deps, drill_id: str, scheduled: datetime) -> dict[str, Any] | None:
    row = deps.store.get_meta(PLANS, f"{drill_id}:{iso(scheduled)}")
    return json.loads(row["plan"]) if row else None


def put_plan(deps: Deps, drill_id: str, scheduled: datetime, plan: dict[str, Any]) -> dict[str, Any]:
    """Write the plan once; a plan already there (another tick) wins and is returned."""
    key = f"{drill_id}:{iso(scheduled)}"
    if deps.store.insert_meta(PLANS, key, {"plan": json.dumps(plan, separators=(",", ":"))}):
        return plan
    found = get_plan(deps, drill_id, scheduled)
    return found if found is not None else plan


def mark_plan_complete(deps: Deps, drill_id: str, scheduled: datetime, plan: dict[str, Any]) -> None:
    deps.store.put_meta(PLANS, f"{drill_id}:{iso(scheduled)}",
                        {"plan": json.dumps({**plan, "complete": True}, separators=(",", ":"))})


# -------------------------------------------------------------------------------------------------------- runs
def get_run(deps: Deps, drill_id: str, key: str) -> tuple[dict[str, Any], str] | None:
    row = deps.store.get_meta_row(runs_kind(drill_id), key)
    return (json.loads(row[0]["doc"]), row[1]) if row else None


def insert_run(deps: Deps, run: dict[str, Any]) -> bool:
    """The run row and its open-index row; False when the run exists (nothing written)."""
    if not deps.store.insert_meta(runs_kind(run["drill_id"]), run["run_key"], _row(run)):
        return False
    deps.store.put_meta(OPEN, run["run_key"], {"drill_id": run["drill_id"], "run_key": run["run_key"]})
    return True


def update_run(deps: Deps, run: dict[str, Any], etag: str) -> str | None:
    """ETag-guarded replace; the new ETag, or None when another writer was first (nothing written)."""
    if not deps.store.replace_meta(runs_kind(run["drill_id"]), run["run_key"], _row(run), etag):
        return None
    if run.get("state") == "done" and not event_pending(run):  # followed until its completion event is out
        deps.store.delete_meta(OPEN, run["run_key"])
    row = deps.store.get_meta_row(runs_kind(run["drill_id"]), run["run_key"])
    return row[1] if row else None


def event_pending(run: dict[str, Any]) -> bool:
    marker = run.get("completion_event")  # restore_core/drills/completion.py
    return isinstance(marker, dict) and not marker.get("published_at")


def list_runs(deps: Deps, drill_id: str) -> list[dict[str, Any]]:
    runs = [json.loads(r["doc"]) for r in deps.store.list_meta(runs_kind(drill_id), limit=MAX_LIST)]
    return sorted(runs, key=lambda r: (r.get("scheduled_at") or "", r["run_key"]), reverse=True)


def open_runs(deps: Deps) -> list[tuple[str, str]]:
    """(drill id, run key) of every run not done yet."""
    return [(str(r["drill_id"]), str(r["run_key"])) for r in deps.store.list_meta(OPEN, limit=MAX_LIST)]


def _row(run: dict[str, Any]) -> dict[str, Any]:
    return {"run_key": run["run_key"], "drill_id": run["drill_id"], "doc": json.dumps(run, separators=(",", ":"))}
