"""Cooldown and concurrency cap of alert-started restores, per restore plan (issue 14).

A ``RESTORE_PLANS`` entry may say ``"cooldown_minutes": N`` (no new restore within N minutes of the plan's last
one) and ``"max_active": N`` (at most N of the plan's restores active at once). An alert storm then starts one
restore; every other alert is recorded as a ``rejected`` restore with code ``AlertDeduplicated`` naming the restore
that runs. A plan without either setting starts one restore per alert, as before.

State: one meta row per plan (kind ``alert-plan``, keyed by the alerted resource id) listing the restores the plan
started (id, alert key, time), updated with a conditional insert / ETag-guarded replace, so concurrent deliveries
of a storm (the host runs up to 16 queue messages at once) decide one at a time. The restore id is chosen here,
before the restore row exists: a redelivered alert finds its entry and creates (or finds) that same restore, and a
crash between the two leaves an entry that counts as active for :data:`PENDING_GRACE`, then goes stale.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from .deps import Deps
from .errors import RequestError, RetryableError
from .records import iso, new_restore_id, parse_time

KIND = "alert-plan"
KEEP = 20
PENDING_GRACE = timedelta(minutes=15)


def limits_of(plan: dict[str, Any]) -> tuple[float, int | None]:
    """(cooldown in minutes, max active or None) of a plan; :class:`RequestError` for values that make no sense."""
    cooldown, cap = plan.get("cooldown_minutes", 0), plan.get("max_active")
    if isinstance(cooldown, bool) or not isinstance(cooldown, int | float) or cooldown < 0:
        raise RequestError("the restore plan's cooldown_minutes must be a number >= 0", field="RESTORE_PLANS",
                           code="InvalidRestorePlan", fix="set cooldown_minutes to a number of minutes, or remove it")
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
        raise RequestError("the restore plan's max_active must be an integer >= 1", field="RESTORE_PLANS",
                           code="InvalidRestorePlan", fix="set max_active to 1 or more, or remove it")
    return float(cooldown), cap


def _active(deps: Deps, entry: dict[str, Any]) -> bool:
    rec = deps.store.get(str(entry.get("id")))
    if rec is not None:
        return not rec.terminal
    at = parse_time(entry.get("at"))
    return at is not None and deps.clock() - at < PENDING_GRACE  # reserved, row not written yet (or never)


def _deduplicated(alert_key: str, resource: str, running: str, why: str) -> RequestError:
    name = resource.rstrip("/").rsplit("/", 1)[-1]
    return RequestError(
        f"alert {alert_key.rsplit('/', 1)[-1]} for {name} is deduplicated: restore {running} of the same restore plan "
        f"handles it ({why})", field="RESTORE_PLANS", code="AlertDeduplicated",
        fix=f"nothing to do: follow restore {running} (GET /api/restores/{running}); to let such alerts start "
            "restores of their own, lower the plan's cooldown_minutes or raise its max_active")


def _decide(deps: Deps, entries: list[dict[str, Any]], cooldown: float, cap: int | None) -> tuple[str, str] | None:
    """(restore that runs, why) when a new restore may not start now, else None."""
    now = deps.clock()
    if cooldown and entries:
        last = max(entries, key=lambda e: str(e.get("at")))
        at = parse_time(last.get("at"))
        if at is not None and now - at < timedelta(minutes=cooldown):
            return str(last["id"]), f"cooldown of {cooldown:g} minutes after {iso(at)}"
    if cap is not None:
        active = [e for e in entries if _active(deps, e)]
        if len(active) >= cap:
            return str(active[0]["id"]), f"max_active {cap}: {len(active)} active"
    return None


def admit(deps: Deps, resource: str, plan: dict[str, Any], alert_key: str) -> str | None:
    """The restore id this alert creates (None: the plan sets no limit, the caller picks one as usual). Raises
    :class:`RequestError` ``AlertDeduplicated`` when a restore of the plan already handles the alert storm."""
    cooldown, cap = limits_of(plan)
    if not cooldown and cap is None:
        return None
    key = resource.lower()
    for _ in range(10):
        row = deps.store.get_meta_row(KIND, key)
        entries: list[dict[str, Any]] = json.loads(str(row[0].get("started") or "[]")) if row else []
        mine = next((e for e in entries if e.get("key") == alert_key), None)
        if mine is not None:
            return str(mine["id"])  # a redelivery: the same restore
        refused = _decide(deps, entries, cooldown, cap)
        if refused is not None:
            raise _deduplicated(alert_key, resource, *refused)
        now = deps.clock()
        new = {"id": new_restore_id(now), "key": alert_key, "at": iso(now)}
        kept = sorted(entries, key=lambda e: str(e.get("at")))[-(KEEP - 1):] + [new]
        values = {"resource": resource, "started": json.dumps(kept, separators=(",", ":"))}
        if deps.store.insert_meta(KIND, key, values) if row is None else \
                deps.store.replace_meta(KIND, key, values, row[1]):
            return str(new["id"])
    raise RetryableError("the restore plan's state kept changing under concurrent alerts; the queue redelivers")
