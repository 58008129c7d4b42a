"""Azure Monitor common alert schema → restore request, through configured restore plans.

``RESTORE_PLANS`` (JSON) maps an alerted resource id (case-insensitive) to a plan::

    {"/subscriptions/.../servers/pgsrv01": {
        "backup_instance": {"id": ".../backupInstances/pgsrv01-salesdb-..."},
        "target": {"kind": "database", "server_id": "...", "secret_uri": "...",
                   "database_name": "salesdb_alert_{fired:%Y%m%d%H%M}"},
        "recovery_point": "latest_before_alert",          # or "latest"
        "region": "primary", "rehydration": {...}, "deadline_hours": 24}}

String values in ``target`` may use ``{fired:<strftime>}``, ``{alert_short}`` (first 8 characters of the alert's
guid) and ``{resource_name}``. The alert id is the idempotency key: a re-fired or redelivered alert starts nothing new.
Only ``monitorCondition == "Fired"`` starts a restore, and never an alert about this service itself
(:func:`feedback_loop`: ``RESTORE_OWN_RESOURCE_IDS``, ``RESTORE_OWN_ALERT_RULE_PREFIXES``).
"""

from __future__ import annotations

import re
import string
from datetime import UTC, datetime
from typing import Any

from .errors import RequestError
from .models import ALERT_KEY_PREFIX
from .records import iso, parse_time

SCHEMA_ID = "azureMonitorCommonAlertSchema"
_ALLOWED_FIELDS = {"fired", "alert_short", "resource_name"}


def is_alert(data: Any) -> bool:
    return isinstance(data, dict) and data.get("schemaId") == SCHEMA_ID


def _render(template: str, values: dict[str, Any], field: str) -> str:
    for _, name, _, _ in string.Formatter().parse(template):
        if name is not None and name not in _ALLOWED_FIELDS:
            raise RequestError(f"restore plan field {field} uses unknown placeholder {{{name}}}", field=field,
                               fix=f"use only {sorted(_ALLOWED_FIELDS)} in RESTORE_PLANS", code="InvalidRestorePlan")
    return template.format(**values)


def _schema_error(what: str, field: str) -> RequestError:
    return RequestError(f"alert payload has no {what}", field=field, fix="send the Azure Monitor common alert schema",
                        code="InvalidAlert")


def _essentials(data: dict[str, Any]) -> tuple[dict[str, Any], str, list[str]]:
    """The fired alert's essentials, its id and its target ids."""
    ess = data.get("data", {}).get("essentials") if isinstance(data.get("data"), dict) else None
    if not isinstance(ess, dict):
        raise _schema_error("data.essentials", "data.essentials")
    alert_id = ess.get("alertId")
    if not isinstance(alert_id, str) or not alert_id:
        raise _schema_error("data.essentials.alertId", "data.essentials.alertId")
    condition = ess.get("monitorCondition")
    if condition != "Fired":
        raise RequestError(f"alert condition is {condition!r}; only Fired alerts start a restore",
                           field="data.essentials.monitorCondition", fix="nothing to do for resolved alerts",
                           code="AlertNotFired")
    targets = ess.get("alertTargetIDs")
    if not isinstance(targets, list) or not targets or not all(isinstance(t, str) for t in targets):
        raise _schema_error("alertTargetIDs", "data.essentials.alertTargetIDs")
    return ess, alert_id, targets


def _plan_for(targets: list[str], plans: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    lowered = {k.lower(): v for k, v in plans.items()}
    resource = next((t for t in targets if t.lower() in lowered), None)
    if resource is None:
        raise RequestError(f"no restore plan for alerted resource {targets[0]}", field="RESTORE_PLANS",
                           fix="add a plan keyed by this resource id to the RESTORE_PLANS setting",
                           code="NoRestorePlan")
    plan = lowered[resource.lower()]
    if not isinstance(plan, dict) or not isinstance(plan.get("target"), dict):
        raise RequestError(f"the restore plan for {resource} is not an object with a target object",
                           field="RESTORE_PLANS", code="InvalidRestorePlan",
                           fix="make each RESTORE_PLANS entry an object with backup_instance and target objects")
    return resource, plan


def _fired(ess: dict[str, Any]) -> datetime:
    try:
        fired = parse_time(ess.get("firedDateTime"))
        fired = fired.astimezone(UTC) if fired else None
    except (TypeError, ValueError, OverflowError):  # OverflowError: a time at the edge of the calendar with a zone
        fired = None
    if fired is None:
        raise RequestError("alert payload has no valid firedDateTime", field="data.essentials.firedDateTime",
                           fix="send the Azure Monitor common alert schema", code="InvalidAlert")
    return fired


def alert_to_request(data: dict[str, Any], plans: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Returns (request body, idempotency key). Raises :class:`RequestError` naming what is missing."""
    ess, alert_id, targets = _essentials(data)
    resource, plan = _plan_for(targets, plans)
    fired = _fired(ess)
    values = {"fired": fired, "alert_short": re.sub(r"[^0-9a-f]", "", alert_id.rsplit("/", 1)[-1].lower())[:8],
              "resource_name": resource.rstrip("/").rsplit("/", 1)[-1]}
    target = {k: _render(v, values, f"target.{k}") if isinstance(v, str) else v
              for k, v in dict(plan.get("target") or {}).items()}
    body: dict[str, Any] = {"backup_instance": plan.get("backup_instance"), "target": target,
                            "region": plan.get("region", "primary"),
                            "description": f"alert {ess.get('alertRule') or ''} fired {iso(fired)}".strip()}
    point = plan.get("recovery_point", "latest_before_alert")
    if point == "latest_before_alert":
        body["recovery_point"] = {"latest_before": iso(fired)}
    elif point != "latest":
        body["recovery_point"] = point
    body.update({k: plan[k] for k in ("rehydration", "deadline_hours") if k in plan})
    return body, f"{ALERT_KEY_PREFIX}{alert_id}"


def plan_of_alert(data: dict[str, Any], plans: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(alerted resource id the plan is keyed by, the plan) of an alert payload; :class:`RequestError` otherwise."""
    _, _, targets = _essentials(data)
    return _plan_for(targets, plans)


def fired_at(data: dict[str, Any]) -> datetime | None:
    try:
        return parse_time(data["data"]["essentials"]["firedDateTime"])
    except (KeyError, TypeError, ValueError):
        return None


def alert_key(data: dict[str, Any]) -> str | None:
    """The idempotency key of an alert payload (``alert:<alertId>``), or None when it has no alert id."""
    ess = (data.get("data") or {}).get("essentials") if isinstance(data.get("data"), dict) else None
    alert_id = ess.get("alertId") if isinstance(ess, dict) else None
    return f"{ALERT_KEY_PREFIX}{alert_id}" if isinstance(alert_id, str) and alert_id else None


def who(data: dict[str, Any], plans: dict[str, Any]) -> dict[str, Any]:
    """What a restore started by this alert records as its starter: the alert id, its rule and the plan (the
    alerted resource the plan is keyed by), as far as the payload says."""
    ess = (data.get("data") or {}).get("essentials") if isinstance(data.get("data"), dict) else None
    ess = ess if isinstance(ess, dict) else {}
    out: dict[str, Any] = {"kind": "alert", "id": str(ess.get("alertId") or "")}
    if isinstance(ess.get("alertRule"), str):
        out["rule"] = ess["alertRule"]
    try:
        out["plan"] = plan_of_alert(data, plans)[0]
    except (RequestError, AttributeError, TypeError):
        pass
    return out


def feedback_loop(data: dict[str, Any], own_resource_ids: tuple[str, ...],
                  own_rule_prefixes: tuple[str, ...]) -> RequestError | None:
    """No feedback loops: an alert about this service itself never starts a restore. Refused when one of its
    targets is (or lies under) one of ``RESTORE_OWN_RESOURCE_IDS`` (the function app, its storage, Application
    Insights, its workspace: set by the infra), or its rule's name starts with one of
    ``RESTORE_OWN_ALERT_RULE_PREFIXES`` (the infra's own rules are named ``alert-restore-...``)."""
    ess = (data.get("data") or {}).get("essentials") if isinstance(data.get("data"), dict) else None
    if not isinstance(ess, dict):
        return None
    rule = str(ess.get("alertRule") or "")
    targets = [t for t in (ess.get("alertTargetIDs") or []) if isinstance(t, str)]
    own = [o.rstrip("/").lower() for o in own_resource_ids if o.strip()]
    hit = next((t for t in targets for o in own if t.rstrip("/").lower() == o
                or t.lower().startswith(o + "/")), None)
    why = f"its target {hit} is a resource of this service" if hit else None
    if why is None and rule and any(rule.lower().startswith(p) for p in own_rule_prefixes if p):
        why = f"its rule {rule} is one of this service's own alert rules"
    if why is None:
        return None
    return RequestError(f"alert {str(ess.get('alertId') or '').rsplit('/', 1)[-1]} is about this restore service "
                        f"({why}); such alerts never start a restore", field="data.essentials",
                        code="AlertAboutThisService",
                        fix="nothing to do here: look at the restore the alert names (GET /api/restores); route only "
                            "alerts about protected databases to this door (docs/deploy.md \"Alerts in\")")
