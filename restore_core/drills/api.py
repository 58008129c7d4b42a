"""``/api/drills`` handlers (function-key auth, like every route; ``function_app.py`` only converts the answers).

- ``POST /api/drills`` → 201 with the definition (409 when the id exists); ``PUT /api/drills/{id}`` → 200 (creates
  or replaces); ``GET /api/drills`` → ``{"items": [...]}``; ``GET /api/drills/{id}`` → the definition with its next
  occurrence; ``DELETE /api/drills/{id}`` → 204 (its runs, their evidence and their clean-up stay);
- ``GET /api/drills/{id}/runs`` → ``{"items": [...]}``, newest first: state, restore id, result (pass/fail, RTO and
  RPO observed, checks), clean-up status and the evidence blob;
- ``POST /api/drills/{id}/run`` → 202 with the runs started now (same plan, same evidence);
- ``GET /api/drills/runs/latest?limit=&continuation=&trend=`` → ``{"items": [...], "continuation"}``: the last run
  per drill and backup instance with its RTO trend (:mod:`.latest`; 400 naming a bad parameter).

A definition is refused (400, ``{"error": {code, message, field, fix}}``) for any field that is invalid, a target
that is no drill target (``RESTORE_DRILL_TARGETS``) or is a protected server, and a vault or backup instance that
Azure does not know (one ARM read per vault or instance named, at definition time only).
"""

from __future__ import annotations

from typing import Any

from .. import guards
from ..api import ApiResponse, _storage_unavailable_is_503
from ..arm_ids import parse_backup_instance_id, parse_vault_id, same_id
from ..deps import Deps
from ..errors import AzureRejection, RequestError, RetryableError
from ..records import iso
from ..stages.server_checks import source_server_of
from . import latest, scheduler, store
from .model import DRILL_ID, DrillDefinition, check_against_settings, parse_drill


def _error(exc: RequestError) -> ApiResponse:
    return ApiResponse(exc.status, {"error": exc.to_dict()})


def _not_found(drill_id: str) -> ApiResponse:
    return ApiResponse(404, {"error": {"code": "DrillNotFound", "message": f"no drill {drill_id!r}", "field": "id",
                                       "fix": "list the drills with GET /api/drills"}})


def _unknown(field: str, what: str, exc: AzureRejection) -> RequestError:
    return RequestError(f"{field}: Azure does not know {what} ({exc.code}: {exc.message})", field=field,
                        code="UnknownBackupResource", fix=f"check {field} (browse them with GET /api/backup-instances)")


def _sources(deps: Deps, d: DrillDefinition) -> list[tuple[str, str]]:
    """(field, source server id) of every backup instance the drill names, reading Azure once per vault/instance;
    an unknown vault or instance is refused."""
    sel, found = d.backup_instances, []
    for i, bi in enumerate(sel.ids or []):
        field = f"backup_instances.ids.{i}"
        try:
            info = deps.dp.get_backup_instance(parse_backup_instance_id(bi))
        except AzureRejection as exc:
            raise _unknown(field, "this backup instance", exc) from None
        found.append((field, source_server_of(info.datasource_type, info.datasource_id)))
    for i, vault in enumerate(sel.vaults or []):
        field = f"backup_instances.vaults.{i}"
        try:
            deps.dp.get_vault(parse_vault_id(vault))
        except AzureRejection as exc:
            raise _unknown(field, "this vault", exc) from None
        found += [(field, server) for server, _ in guards.vault_sources(deps, vault)]
    for vault in deps.settings.guards.protected_vaults:
        found += [("target.server_id", server) for server, _ in guards.vault_sources(deps, vault)]
    return found


def validate(deps: Deps, d: DrillDefinition) -> None:
    """The rules beyond the definition's own shape; raises :class:`RequestError`."""
    check_against_settings(d, deps.settings.guards)
    for field, server in _sources(deps, d):
        if same_id(server, d.target.server_id):
            raise RequestError(f"target.server_id is the source server of a protected backup ({field}); a drill "
                               "never restores into a server that holds protected data", field="target.server_id",
                               code="TargetServerProtected", fix="choose a server reserved for drills")


def _view(sd: store.StoredDrill, deps: Deps) -> dict[str, Any]:
    out = sd.view()
    out["next_run_at"] = iso(sd.definition.cron().next(deps.clock())) if sd.definition.enabled else None
    return out


def _save(body: bytes, deps: Deps, *, drill_id: str | None) -> ApiResponse:
    try:
        d = parse_drill(body, drill_id=drill_id)
        validate(deps, d)
    except RequestError as exc:
        return _error(exc)
    except RetryableError:
        raise
    sd, written = store.put_drill(deps, d, create=drill_id is None)
    if not written:
        return ApiResponse(409, {"error": {"code": "DrillExists", "message": f"drill {d.id!r} exists already",
                                           "field": "id", "fix": f"change it with PUT /api/drills/{d.id}, or "
                                                                 "choose another id"}})
    return ApiResponse(201 if drill_id is None else 200, _view(sd, deps),
                       {"Location": f"/api/drills/{d.id}"} if drill_id is None else {})


@_storage_unavailable_is_503
def create(body: bytes, *, deps: Deps) -> ApiResponse:
    return _save(body, deps, drill_id=None)


@_storage_unavailable_is_503
def replace(drill_id: str, body: bytes, *, deps: Deps) -> ApiResponse:
    if not DRILL_ID.match(drill_id or ""):
        return _error(RequestError(f"{drill_id!r} is not a drill id", field="id",
                                   fix="1-40 lower-case letters, digits and -"))
    return _save(body, deps, drill_id=drill_id)


@_storage_unavailable_is_503
def get(drill_id: str, *, deps: Deps) -> ApiResponse:
    sd = store.get_drill(deps, drill_id) if DRILL_ID.match(drill_id or "") else None
    return _not_found(drill_id) if sd is None else ApiResponse(200, _view(sd, deps))


@_storage_unavailable_is_503
def list_all(*, deps: Deps) -> ApiResponse:
    return ApiResponse(200, {"items": [_view(sd, deps) for sd in store.list_drills(deps)]})


@_storage_unavailable_is_503
def delete(drill_id: str, *, deps: Deps) -> ApiResponse:
    if store.get_drill(deps, drill_id) is None if DRILL_ID.match(drill_id or "") else True:
        return _not_found(drill_id)
    store.delete_drill(deps, drill_id)
    return ApiResponse(204, {})


@_storage_unavailable_is_503
def runs(drill_id: str, *, deps: Deps) -> ApiResponse:
    if not DRILL_ID.match(drill_id or ""):
        return _not_found(drill_id)
    items = [{k: v for k, v in r.items() if k != "request"} for r in store.list_runs(deps, drill_id)]
    if not items and store.get_drill(deps, drill_id) is None:
        return _not_found(drill_id)
    return ApiResponse(200, {"items": items})


@_storage_unavailable_is_503
def run_now(drill_id: str, *, deps: Deps) -> ApiResponse:
    sd = store.get_drill(deps, drill_id) if DRILL_ID.match(drill_id or "") else None
    if sd is None:
        return _not_found(drill_id)
    started = scheduler.run_now(deps, sd.definition)
    return ApiResponse(202, {"items": [{k: v for k, v in r.items() if k != "request"} for r in started]})


@_storage_unavailable_is_503
def latest_runs(params: dict[str, str], *, deps: Deps) -> ApiResponse:
    try:
        limit, offset, trend = latest.parse_params(params)
    except RequestError as exc:
        return _error(exc)
    drills = [(sd.definition.id, {"server_id": sd.definition.target.server_id,
                                  "rto_target_seconds": sd.definition.rto_target_minutes * 60})
              for sd in store.list_drills(deps)]
    items = latest.latest(drills, {d: store.list_runs(deps, d) for d, _ in drills}, trend)
    return ApiResponse(200, latest.page(items, limit, offset))
