"""Preview (dry run) of a restore: ``POST /api/restores/preview`` and ``restorectl plan`` (issue 14).

Consumes: the body of ``POST /api/restores`` and the :class:`~restore_core.guards.Caller`.
Does, synchronously, every check the restore would run before anything is paid for: the request's validation, the
guards that need no Azure call, then the validate stage's own steps (:func:`restore_core.stages.validate.check`:
resolve the backup instance, the rules, the protected servers, for server targets the connection and privilege
checks on the target, the recovery point), the destination lock (read only), and Azure's own validate call (free).
Produces: 200 with ``would_start`` and either the plan (the point, the data-loss gap, rehydration and its expected
window, the exact Azure request the trigger would send, the guards passed) or the refusal with its code and fix;
400/413 for malformed input; 429 with ``Retry-After`` past the caller's budget.
Writes: no restore row, no message, no lock. Reads may refresh the caches of vault facts and protected servers
(meta rows), and the caller's budget is a meta row (see :func:`spend`).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from . import dp_client, guards, locks
from .arm_ids import parse_backup_instance_id
from .deps import Deps
from .errors import RequestError
from .guards import Caller
from .models import Region, RestoreRequest, ServerTarget, Status, Tier, parse_request
from .records import RestoreRecord, iso
from .restore_requests import RestorePlan
from .stages import validate
from .transitions import StageResult

BUDGET_KIND = "preview-budget"
API_VERSION = "2026-06-01"  # the Data Protection REST API version the restore requests follow (docs/emulator.md)

#: Azure Storage, "Blob rehydration from the archive tier": "Standard priority: ... may take up to 15 hours";
#: "High priority: ... may complete in under one hour for objects under 10 GB in size".
REHYDRATION_WINDOW = {"Standard": "up to 15 hours", "High": "under 1 hour for objects under 10 GB (can be longer)"}


def spend(deps: Deps, caller: Caller) -> float | None:
    """Count one preview against the caller's budget (``RESTORE_PREVIEW_PER_MINUTE`` per clock minute). Returns None
    when allowed, else the seconds until the next minute (Retry-After).

    The budget is a meta row per caller (ETag-guarded counter), not process memory: the function app scales out to
    several instances, and a per-instance count would multiply the budget by their number and reset it on every
    restart, while the budget exists to protect the ARM quota all instances share. Cost: two table calls."""
    now = deps.clock()
    window = now.strftime("%Y%m%d%H%M")
    retry = math.ceil(60 - now.second - now.microsecond / 1e6) or 1
    limit = deps.settings.guards.preview_per_minute
    for _ in range(10):
        row = deps.store.get_meta_row(BUDGET_KIND, caller.id)
        count = int(row[0].get("count") or 0) if row and row[0].get("window") == window else 0
        if count >= limit:
            return float(retry)
        values = {"caller": caller.id, "window": window, "count": count + 1}
        if (deps.store.insert_meta(BUDGET_KIND, caller.id, values) if row is None
                else deps.store.replace_meta(BUDGET_KIND, caller.id, values, row[1])):
            return None
    return float(retry)  # heavy contention on one caller's budget: that is over budget too


def _refusal(code: str, message: str, fix: str, **extra: Any) -> dict[str, Any]:
    return {"would_start": False, "error": {"code": code, "message": message, "fix": fix}, **extra}


def _of_stage(result: StageResult, passed: list[str]) -> dict[str, Any]:
    return _refusal(result.error_code or "Rejected", result.error_message or result.message,
                    result.error_fix or "see the message", guards_passed=passed)


def _gap(req: RestoreRequest, point_time: datetime, now: datetime) -> dict[str, Any]:
    to = req.recovery_point.latest_before or now
    seconds = max(0.0, (to - point_time).total_seconds())
    return {"to": iso(to), "to_what": "latest_before" if req.recovery_point.latest_before else "now",
            "seconds": round(seconds), "text": _duration(seconds)}


def _duration(seconds: float) -> str:
    d = timedelta(seconds=round(seconds))
    days, rest = d.days, d.seconds
    hours, minutes = rest // 3600, rest % 3600 // 60
    return (f"{days}d " if days else "") + f"{hours}h {minutes:02d}m"


def azure_request(req: RestoreRequest, plan: RestorePlan, source_region: str, needs_rehydration: bool) \
        -> dict[str, Any]:
    """The trigger the restore would send: method, path and the JSON body as the SDK serialises it. No secret is in
    it: a database target names its Key Vault secret by URI; the vault reads the secret, this service never does."""
    bi = parse_backup_instance_id(plan.backup_instance_id)
    rehydration = req.rehydration if needs_rehydration else None
    secondary = req.region == Region.SECONDARY
    body = dp_client.trigger_body(plan, rehydration, source_region if secondary else None)
    if secondary:
        path = (f"/subscriptions/{bi.vault.subscription}/resourceGroups/{bi.vault.resource_group}/providers/"
                f"Microsoft.DataProtection/locations/{plan.restore_location}/crossRegionRestore")
    else:
        path = f"{bi.id}/restore"
    return {"method": "POST", "path": f"{path}?api-version={API_VERSION}", "body": body}


def _point(checked: validate.Checked) -> dict[str, Any]:
    p = checked.point
    assert p is not None
    return {"id": p.id, "time": iso(p.time), "tier": p.tier.value, "state": p.state or "Completed",
            "rehydration_status": p.rehydration_status}


def _rehydration(req: RestoreRequest, checked: validate.Checked) -> dict[str, Any]:
    p = checked.point
    assert p is not None
    if not checked.needs_rehydration:
        return {"needed": False, "why": "already rehydrated" if p.tier == Tier.ARCHIVE else "vault tier"}
    prio = req.rehydration.priority.value
    return {"needed": True, "priority": prio, "retention_days": req.rehydration.retention_days,
            "expected_window": REHYDRATION_WINDOW[prio]}


def _plan(req: RestoreRequest, checked: validate.Checked, keys: list[str], passed: list[str], now: datetime) \
        -> dict[str, Any]:
    assert checked.plan is not None and checked.point is not None and checked.vault is not None
    facts = checked.facts
    out: dict[str, Any] = {
        "would_start": True, "backup_instance": facts.get("backup_instance_id"), "vault": facts.get("vault_id"),
        "region": req.region.value, "restore_location": checked.location,
        "identity": checked.identity or "the vault's system-assigned identity",
        "recovery_point": _point(checked), "data_loss": _gap(req, checked.point.time, now),
        "rehydration": _rehydration(req, checked), "warnings": checked.warnings,
        "destinations": [locks.describe_key(k) for k in keys], "guards_passed": passed,
        "azure_request": azure_request(req, checked.plan, checked.vault.location, checked.needs_rehydration)}
    if isinstance(req.target, ServerTarget):
        out["server"] = {"staging": facts.get("staging"), "plan": facts.get("server_plan")}
    return out


PASSED_AT_INTAKE = ["container host", "allowed targets", "beside-source role", "configured protected servers"]


def run(req: RestoreRequest, *, caller: Caller, deps: Deps) -> dict[str, Any]:
    """The preview of a valid request (no write of any restore state)."""
    refused = guards.check_intake(req, caller, deps.settings.guards)
    if refused is not None:
        return _refusal(refused.code, refused.message, refused.fix or "", field=refused.field)
    now = deps.clock()
    probe = RestoreRecord(id="preview", status=Status.ACCEPTED, stage=None, source="preview", created_at=now,
                          updated_at=now, deadline=now, request={})  # never stored: gives the checks an id
    checked = validate.check(req, deps, probe)
    passed = [*PASSED_AT_INTAKE, "protected servers (own source, RESTORE_PROTECTED_VAULTS)"]
    if checked.rejection is not None:
        return _of_stage(checked.rejection, PASSED_AT_INTAKE)
    keys = validate.lock_keys(req, checked.facts)
    held = locks.busy(deps, keys)
    if held is not None:
        return _of_stage(validate.busy_rejection(*held), passed)
    passed.append("one restore per destination")
    rejection = validate.ask_azure(deps, checked)
    if rejection is not None:
        return _of_stage(rejection, passed)
    passed.append("Azure validate")
    return _plan(req, checked, keys, passed, now)


def handle(body: bytes, *, caller: Caller, deps: Deps) -> tuple[int, dict[str, Any], dict[str, str]]:
    """HTTP: (status, body, headers). 400/413 for malformed input (not counted), 429 past the budget."""
    try:
        req = parse_request(body)
    except RequestError as exc:
        return exc.status, {"error": exc.to_dict()}, {}
    retry = spend(deps, caller)
    if retry is not None:
        limit = deps.settings.guards.preview_per_minute
        return 429, {"error": {"code": "PreviewBudgetExceeded", "field": None,
                               "message": f"{caller.id} has used its {limit} previews of this minute",
                               "fix": f"send the preview again after {retry:.0f} s (RESTORE_PREVIEW_PER_MINUTE "
                                      f"is {limit})"}}, {"Retry-After": f"{retry:.0f}"}
    return 200, run(req, caller=caller, deps=deps), {}
