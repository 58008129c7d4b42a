"""What a restore is, in one place: the status resource and every list item carry the same plain facts.

Besides the record's own summary (:meth:`RestoreRecord.summary`), a view names
- ``source_resource``: the server or database restored from (its ARM id, a short name, ``server``/``database``),
  known from the request until validation resolves the backup instance, then from Azure's answer;
- ``target_name``: a short name of where it goes (``server/database``, ``container/prefix``);
- ``point_time``: the recovery point's time (null until validation chose it);
- ``started_by``: who or what started it (``door``: http / queue / alert, and the alert id, queue message id or
  client idempotency key it was started under; ``principal`` {id, name} of a Microsoft Entra caller, an alert's
  ``alert_rule`` and ``plan``; nothing more for a function-key holder: the host does not say which key);
- ``reason``: for a rejected or failed restore, the error code, message and fix (the same as ``error``);
- ``expected``: while a rehydration runs, its expected completion window for the priority, computed at read time
  (:mod:`restore_core.expectations`);
- ``data_loss_gap_seconds``: how much older the restored point is than what was asked for (``latest_before`` T: T
  minus the point's time; a Cross Region Restore of the latest: the primary's newest point minus the secondary's);
- ``azure_job_visible_in``: where the Azure job can be seen (a Cross Region Restore job: the secondary region only).

Pure functions, no I/O.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from .expectations import job_visible_in, rehydration_expected
from .models import Status
from .records import RestoreRecord, iso

_KEY_PREFIXES = (("alert:", "alert_id"), ("msg:", "message_id"), ("poison:", "message_id"), ("drill:", "drill_run"))
_PG = re.compile(r"/providers/Microsoft\.DBforPostgreSQL/(?P<kind>servers|flexibleServers)/(?P<server>[^/]+)"
                 r"(?:/databases/(?P<db>[^/]+))?$", re.IGNORECASE)


def started_by(rec: RestoreRecord) -> dict[str, Any]:
    """The door a restore came in by, the key it was started under, and who (the caller the row recorded)."""
    key = rec.idempotency_key or ""
    out: dict[str, Any] = {"door": rec.source}
    for prefix, name in _KEY_PREFIXES:
        if key.lower().startswith(prefix):
            out[name] = key[len(prefix):]
            break
    else:
        if key:
            out["idempotency_key"] = key
    return {**out, **_who(rec.caller)}


def _who(caller: dict[str, Any]) -> dict[str, Any]:
    kind = caller.get("kind")
    if kind == "principal":
        return {"principal": {k: caller[k] for k in ("id", "name") if caller.get(k)}}
    if kind == "alert":
        return {k: caller[src] for k, src in (("alert_rule", "rule"), ("plan", "plan")) if caller.get(src)}
    return {}


def resource_name(resource_id: str | None) -> str | None:
    """``server/database`` of a Single Server database id, ``server`` of a server id, else the last segment."""
    if not resource_id:
        return None
    m = _PG.search(resource_id.rstrip("/"))
    if m:
        return f"{m['server']}/{m['db']}" if m["db"] else m["server"]
    return resource_id.rstrip("/").rsplit("/", 1)[-1] or None


def source_resource(rec: RestoreRecord) -> dict[str, Any] | None:
    """The server or database restored from: Azure's answer once validated, the request's selector before."""
    selector = rec.request.get("backup_instance") or {}
    resource_id = rec.source_datasource_id or selector.get("datasource_id")
    instance = rec.backup_instance_id or selector.get("id")
    if not resource_id and not instance:
        return None
    m = _PG.search((resource_id or "").rstrip("/"))
    kind = ("database" if m["db"] else "server") if m else None
    return {"id": resource_id, "name": resource_name(resource_id), "kind": kind,
            "backup_instance": instance.rstrip("/").rsplit("/", 1)[-1] if instance else None}


def target_name(rec: RestoreRecord) -> str | None:
    target = rec.request.get("target") or {}
    kind = target.get("kind")
    if kind == "database":
        return f"{resource_name(target.get('server_id'))}/{target.get('database_name')}"
    if kind == "files":
        container = str(target.get("container_url") or "").rstrip("/").rsplit("/", 1)[-1]
        return f"{container}/{target.get('file_prefix')}"
    if kind == "server":
        return resource_name(target.get("server_id"))
    return resource_name(rec.target_resource)


def view(rec: RestoreRecord, now: datetime | None = None) -> dict[str, Any]:
    """The status resource (without timeline) with the facts above (``now``: for the rehydration window)."""
    body = rec.summary()
    body.update({
        "source_resource": source_resource(rec),
        "target_name": target_name(rec),
        "point_time": iso(rec.recovery_point_time),
        "started_by": started_by(rec),
        "reason": body["error"] if rec.status in (Status.REJECTED, Status.FAILED) else None,
        "expected": rehydration_expected(rec, now or datetime.now(UTC)),
        "data_loss_gap_seconds": rec.data_loss_gap_seconds,
        "azure_job_visible_in": job_visible_in(rec),
    })
    return body


def haystack(item: dict[str, Any], what: str) -> str:
    """The text a list filter (``source``, ``target``) matches in, lower-cased."""
    if what == "source":
        src = item.get("source_resource") or {}
        parts = [src.get("id"), src.get("name"), src.get("backup_instance"), item.get("backup_instance_id")]
    else:
        target = item.get("target") or {}
        parts = [item.get("target_name"), target.get("resource"), target.get("server_id"),
                 target.get("database_name"), target.get("container_url"), target.get("file_prefix")]
    return " ".join(str(p) for p in parts if p).lower()
