"""Browse before restoring: backup instances and their recovery points, each with the request that restores it.

- ``GET /api/backup-instances``: the backup instances of the configured vaults (``RESTORE_VAULTS``), or of
  ``?vault=<vault ARM id>``;
- ``GET /api/backup-instances?datasource=<server or database ARM id>``: the instances protecting that resource, in
  any vault (Azure's extension-routing list ``{resourceId}/providers/Microsoft.DataProtection/backupInstances``);
- ``GET /api/backup-instances/{name}/recovery-points?vault=&since=&until=&region=&limit=&continuation=``: the
  instance's recovery points newest first (time, tier, state, rehydration status and expiry), in the primary region
  or, with ``region=secondary``, as the paired region holds them (Cross Region Restore's
  ``fetchSecondaryRecoveryPoints``). Without ``vault`` the instance is looked up by name in the configured vaults.

Every instance and point carries ``restore_request``: the exact ``POST /api/restores`` body that restores it, with a
placeholder target (``fill_in`` names the fields to replace).

ARM budget: every answer is kept :data:`CACHE_SECONDS` per process (paging a listing costs no ARM call), and one
listing reads at most :data:`MAX_POINTS` recovery points (whole ARM pages until then; ``complete`` says whether that
was all). ARM's order of points is not documented: they are sorted here. A throttled or unavailable ARM is a 503
with ``Retry-After``; Azure's refusals keep their code, with a fix.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from . import restore_requests as rr
from .api import ApiResponse
from .arm_ids import BackupInstanceRef, parse_backup_instance_id, parse_resource_id, parse_vault_id
from .backup import BackupInstanceInfo, RecoveryPointInfo
from .deps import Deps
from .errors import AzureRejection, RequestError, RetryableError
from .listing import query_time
from .models import Region, Tier
from .records import iso
from .regions import paired_region
from .stages.common import cached_vault
from .stages.validate import RESTORABLE_STATES
from .suggest import check_params
from .views import resource_name

T = TypeVar("T")
CACHE_SECONDS = 60.0
MAX_POINTS = 1000
MAX_LIMIT = 200
INSTANCE_PARAMS = frozenset({"vault", "datasource"})
POINT_PARAMS = frozenset({"vault", "since", "until", "region", "limit", "continuation"})
_NAME = re.compile(r"^[-\w.]{1,200}$")
_CURSOR = "rp|"
DATABASE_PLACEHOLDER = {"kind": "database", "server_id": "<target server ARM id>",
                        "database_name": "<new database name>",
                        "secret_uri": "<Key Vault secret URI of the target server's connection string>"}
FILES_PLACEHOLDER = {"kind": "files", "container_url": "<https://ACCOUNT.blob.core.windows.net/CONTAINER>",
                     "file_prefix": "<file name prefix>"}


def _error(status: int, code: str, message: str, field: str | None, fix: str,
           headers: dict[str, str] | None = None) -> ApiResponse:
    return ApiResponse(status, {"error": {"code": code, "message": message, "field": field, "fix": fix}},
                       headers or {})


def _answered(handler: Callable[[], ApiResponse]) -> ApiResponse:
    """Bad input, Azure's refusals and an ARM that does not answer, as API errors."""
    try:
        return handler()
    except RequestError as exc:
        return ApiResponse(exc.status, {"error": exc.to_dict()})
    except AzureRejection as exc:
        status = exc.status if exc.status in (403, 404) else 502
        fix = exc.fix or ("check the id (GET /api/backup-instances lists what the service can see)" if status == 404
                          else "check the message; the service's identity needs Reader (or Backup Reader) on the "
                               "vault to browse it")
        return _error(status, exc.code, exc.message, None, fix)
    except RetryableError as exc:
        wait = str(max(1, int(exc.retry_after or 5)))
        return _error(503, "ArmUnavailable", f"Azure Resource Manager did not answer: {exc}", None,
                      f"send the request again in {wait} seconds", {"Retry-After": wait})


def _cached(deps: Deps, kind: str, key: str, fetch: Callable[[], T]) -> T:
    """ARM answers kept briefly per process (``deps.clock`` decides, so tests can move time)."""
    now = deps.clock()
    hit = deps.memo.get(f"browse-{kind}", key.lower())
    if isinstance(hit, tuple) and now - hit[0] < timedelta(seconds=CACHE_SECONDS):
        return hit[1]  # type: ignore[no-any-return]
    value = fetch()
    deps.memo.put(f"browse-{kind}", key.lower(), (now, value))
    return value


# ------------------------------------------------------------------------------------------ the request to restore
def restore_request(info: BackupInstanceInfo, point: RecoveryPointInfo | None = None,
                    region: Region = Region.PRIMARY) -> dict[str, Any]:
    """The ``POST /api/restores`` body restoring ``point`` (None: the latest) of ``info``, with a placeholder target:
    a Flexible Server restores as files, a Single Server database as a new database. An archived point not yet
    rehydrated gets the default rehydration (primary region only: Azure restores it cross-region only once
    rehydrated)."""
    flexible = info.datasource_type.lower() == rr.FLEXIBLE_SERVER.lower()
    body: dict[str, Any] = {"backup_instance": {"id": info.id},
                            "recovery_point": {"id": point.id} if point else "latest",
                            "target": dict(FILES_PLACEHOLDER if flexible else DATABASE_PLACEHOLDER)}
    if region == Region.SECONDARY:
        body["region"] = "secondary"
    if point is not None and point.tier == Tier.ARCHIVE and not point.rehydrated and region == Region.PRIMARY:
        body["rehydration"] = {"priority": "Standard", "retention_days": 15}
    return body


def fill_in(body: dict[str, Any]) -> list[str]:
    return [f"target.{k}" for k, v in body["target"].items() if isinstance(v, str) and v.startswith("<")]


# ------------------------------------------------------------------------------------------ backup instances
def _datasource(info: BackupInstanceInfo) -> dict[str, Any]:
    kind = "server" if info.datasource_type.lower() == rr.FLEXIBLE_SERVER.lower() else "database"
    return {"id": info.datasource_id, "name": resource_name(info.datasource_id), "kind": kind,
            "type": info.datasource_type, "server_id": info.datasource_set_id}


def instance_item(info: BackupInstanceInfo, base_url: str) -> dict[str, Any]:
    ref = parse_backup_instance_id(info.id)
    request = restore_request(info)
    return {"id": info.id, "name": info.name, "friendly_name": info.friendly_name, "vault_id": ref.vault.id,
            "vault": ref.vault.vault, "datasource": _datasource(info), "protection_state": info.protection_state,
            "restorable": info.protection_state in RESTORABLE_STATES,
            "recovery_points_url": f"{base_url.rstrip('/')}/backup-instances/{info.name}/recovery-points"
                                   f"?vault={ref.vault.id}",
            "restore_request": request, "fill_in": fill_in(request)}


def _vault_instances(deps: Deps, vault_id: str, field: str) -> list[BackupInstanceInfo]:
    ref = parse_vault_id(vault_id, field)
    return _cached(deps, "vault", ref.id, lambda: deps.dp.list_backup_instances(ref))


def _configured_vaults(deps: Deps, vault: str | None) -> list[str]:
    if vault:
        return [vault]
    if not deps.settings.vaults:
        raise RequestError("no vault to browse: the service has no RESTORE_VAULTS setting", field="vault",
                           fix="pass ?vault=<Backup vault ARM id>, or set RESTORE_VAULTS to the vaults' ARM ids")
    return list(deps.settings.vaults)


def list_instances(params: dict[str, str], *, base_url: str, deps: Deps) -> ApiResponse:
    def run() -> ApiResponse:
        check_params(params, INSTANCE_PARAMS)
        datasource = (params.get("datasource") or "").strip()
        if datasource:
            rid = parse_resource_id(datasource, "datasource")
            found = _cached(deps, "routing", rid, lambda: deps.dp.list_protecting_instances(rid))
            vaults = sorted({parse_backup_instance_id(b.id).vault.id for b in found})
        else:
            vaults = _configured_vaults(deps, (params.get("vault") or "").strip() or None)
            found = [b for v in vaults for b in _vault_instances(deps, v, "vault")]
        items = [instance_item(b, base_url) for b in sorted(found, key=lambda b: (b.id.lower()))]
        return ApiResponse(200, {"items": items, "vaults": vaults, "datasource": datasource or None})

    return _answered(run)


# ------------------------------------------------------------------------------------------ recovery points
def _resolve(deps: Deps, name: str, vault: str | None) -> BackupInstanceInfo:
    if not _NAME.match(name or ""):
        raise RequestError(f"{name!r} is not a backup instance name", field="instance",
                           fix="use the name from GET /api/backup-instances (e.g. pgsrv01-salesdb-<guid>)")
    if vault:
        ref = BackupInstanceRef(parse_vault_id(vault, "vault"), name)
        return _cached(deps, "instance", ref.id, lambda: deps.dp.get_backup_instance(ref))
    vaults = _configured_vaults(deps, None)
    hits = [b for v in vaults for b in _vault_instances(deps, v, "RESTORE_VAULTS") if b.name.lower() == name.lower()]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise RequestError(f"no backup instance named {name!r} in the configured vaults", field="instance",
                           code="BackupInstanceNotFound", status=404,
                           fix="check the name with GET /api/backup-instances, or pass ?vault=<vault ARM id>")
    raise RequestError(f"{len(hits)} vaults hold a backup instance named {name!r}", field="vault", status=409,
                       code="BackupInstanceAmbiguous", fix="pass ?vault=<vault ARM id>: "
                       + ", ".join(parse_backup_instance_id(b.id).vault.id for b in hits))


def _region(deps: Deps, info: BackupInstanceInfo, value: str | None) -> tuple[Region, str, tuple[str, str] | None]:
    """(region, location restored into, (secondary, primary) for a secondary listing)."""
    try:
        region = Region((value or "primary").strip().lower())
    except ValueError:
        raise RequestError(f"region must be primary or secondary, not {value!r}", field="region",
                           fix="use region=primary (default) or region=secondary") from None
    vault = cached_vault(deps, parse_backup_instance_id(info.id).vault)
    if region == Region.PRIMARY:
        return region, vault.location, None
    secondary = vault.secondary_region or paired_region(vault.location)
    if not vault.crr_enabled or secondary is None:
        raise RequestError(f"vault {parse_backup_instance_id(info.id).vault.vault} has no secondary region to "
                           f"restore from (Cross Region Restore {'enabled' if vault.crr_enabled else 'disabled'}, "
                           f"redundancy {vault.redundancy})", field="region",
                           fix="browse region=primary, or enable Cross Region Restore on a geo-redundant vault")
    return region, secondary, (secondary, vault.location)


def _cursor(token: str | None) -> tuple[datetime, str] | None:
    if not token:
        return None
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
        when, rp_id = text.removeprefix(_CURSOR).split("|", 1)
        parsed = query_time(when)
        if not text.startswith(_CURSOR) or parsed is None:
            raise ValueError(text)
        return parsed, rp_id
    except Exception:  # noqa: BLE001 - any malformed token
        raise RequestError("continuation token is not valid", field="continuation",
                           fix="pass the continuation value from the previous page unchanged") from None


def _window(params: dict[str, str]) -> tuple[datetime | None, datetime | None]:
    try:
        since = query_time(params["since"]) if params.get("since") else None
        until = query_time(params["until"]) if params.get("until") else None
    except ValueError:
        raise RequestError("since/until must be ISO-8601 times, e.g. 2026-11-24T10:30:00Z", field="since",
                           fix="give times like 2026-11-24T10:30:00Z (a time without a zone is UTC)") from None
    if since and until and until < since:
        raise RequestError("until is before since", field="until", fix="swap since and until")
    return since, until


def _limit(params: dict[str, str]) -> int:
    try:
        limit = int(params.get("limit", "50"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise RequestError(f"limit must be an integer 1..{MAX_LIMIT}", field="limit",
                           fix=f"use a limit up to {MAX_LIMIT}")
    return limit


def point_item(info: BackupInstanceInfo, p: RecoveryPointInfo, region: Region, location: str) -> dict[str, Any]:
    archived = p.tier == Tier.ARCHIVE and not p.rehydrated
    note = None
    if archived:
        note = ("archived: rehydrated first (the request carries the rehydration)" if region == Region.PRIMARY
                else "archived: restore it in the primary region first (Azure restores archived points "
                     "cross-region only once rehydrated)")
    if p.partial:
        note = "Partial: only some of the intended items were backed up (Azure does not say which)"
    request = restore_request(info, p, region)
    return {"id": p.id, "time": iso(p.time), "tier": p.tier.value, "state": p.state,
            "rehydration": {"status": p.rehydration_status, "expiry": iso(p.rehydration_expiry)}
            if p.rehydration_status or p.rehydration_expiry else None,
            "region": region.value, "location": location, "postgres_version": p.postgres_version,
            "restorable": not (archived and region == Region.SECONDARY), "note": note,
            "restore_request": request, "fill_in": fill_in(request)}


def list_points(name: str, params: dict[str, str], *, deps: Deps) -> ApiResponse:
    def run() -> ApiResponse:
        check_params(params, POINT_PARAMS)
        since, until = _window(params)
        limit, cursor = _limit(params), _cursor(params.get("continuation"))
        info = _resolve(deps, name, (params.get("vault") or "").strip() or None)
        region, location, regions = _region(deps, info, params.get("region"))
        bi = parse_backup_instance_id(info.id)
        key = f"{bi.id}|{region.value}|{iso(since)}|{iso(until)}"
        points, more = _cached(deps, "points", key, lambda: deps.dp.browse_recovery_points(
            bi, start=since, end=until, max_items=MAX_POINTS, regions=regions))
        ordered = sorted(points, key=lambda p: (p.time, p.id), reverse=True)
        if cursor is not None:
            ordered = [p for p in ordered if (p.time, p.id) < cursor]
        page = ordered[:limit]
        token = None
        if len(ordered) > limit:
            last = page[-1]
            token = base64.urlsafe_b64encode(f"{_CURSOR}{iso(last.time)}|{last.id}".encode()).decode()
        return ApiResponse(200, {
            "backup_instance": {"id": info.id, "name": info.name, "datasource": _datasource(info)},
            "region": region.value, "location": location, "window": {"since": iso(since), "until": iso(until)},
            "items": [point_item(info, p, region, location) for p in page], "continuation": token,
            "complete": not more,
            **({"note": f"more than {MAX_POINTS} points in this window: narrow since/until to see them all"}
               if more else {})})

    return _answered(run)
