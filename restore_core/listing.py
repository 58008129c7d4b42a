"""``GET /api/restores``: restores newest first, filtered, paged with continuation tokens.

Query parameters (anything else is a 400 naming the nearest valid one):
- ``status``: one or more statuses separated by commas; ``active`` stands for every status that is not terminal.
  A query for active statuses only reads the ``active`` index (every active restore, whatever day it was created
  and however many finished since), so the default time window does not apply to it;
- ``since`` / ``until``: the creation-time window (ISO-8601, any zone, converted to UTC); default the last 24 h,
  at most 31 days;
- ``source`` / ``target``: text found (case-insensitively) in the source server/database/backup instance, or in
  the target (server, database name, container, prefix);
- ``region``: ``primary``, ``secondary`` or a region name (the region restored into);
- ``started_by``: ``http``, ``queue``, ``alert`` or ``drill``;
- ``limit`` (1..200, default 50) and ``continuation`` (from the previous page, unchanged).

Newest first without reading whole days: restores are filed by UTC creation day and their ids sort by time, so a
day is read in six-hour slices from its newest (only the slices the window touches), each slice in one query. The
continuation token is the id of the last item returned: the next page starts strictly before it, so a restore
created meanwhile never shifts a page.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .deps import Deps
from .errors import RequestError
from .models import TERMINAL, Status
from .records import RestoreRecord, parse_time
from .store import days_between
from .suggest import check_params
from .views import haystack, view

MAX_LIMIT = 200
MAX_LIST_DAYS = 31
SLICE_HOURS = 6
PARAMS = frozenset({"status", "since", "until", "limit", "continuation", "source", "target", "region",
                    "started_by"})
ACTIVE = frozenset(s.value for s in Status if s not in TERMINAL)
DOORS = ("http", "queue", "alert", "drill")
_ID = re.compile(r"^\d{8}T\d{6}-[0-9a-f]{10}$")
_CURSOR_PREFIX = "v2|"


@dataclass(frozen=True)
class ListQuery:
    """A validated ``GET /restores`` query."""

    statuses: frozenset[str] | None
    since: datetime | None
    until: datetime | None
    limit: int
    before: str | None  #: continuation: only restores strictly older than this id
    source: str | None = None
    target: str | None = None
    region: str | None = None
    started_by: str | None = None

    @property
    def active_only(self) -> bool:
        return bool(self.statuses) and self.statuses is not None and self.statuses <= ACTIVE


def query_time(value: str) -> datetime | None:
    """A ``since``/``until`` value in UTC. A ``+hh:mm`` offset sent without URL-encoding arrives as `` hh:mm`` (a
    ``+`` in a query string is a space): it is read as the offset it was."""
    return parse_time(re.sub(r"([T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}:?\d{2})$", r"\1+\2", value))


def _statuses(value: str | None) -> frozenset[str] | None:
    if not value:
        return None
    names = {s.strip().lower() for s in value.split(",") if s.strip()}
    if "active" in names:
        names = (names - {"active"}) | ACTIVE
    unknown = names - {s.value for s in Status}
    if unknown or not names:
        raise RequestError(f"unknown status in {value!r}", field="status",
                           fix=f"use one or more of active, {', '.join(s.value for s in Status)}")
    return frozenset(names)


def _window(params: dict[str, str], now: datetime, active_only: bool) -> tuple[datetime | None, datetime | None]:
    since = query_time(params["since"]) if params.get("since") else None
    until = query_time(params["until"]) if params.get("until") else None
    if not active_only:
        since = since or (until or now) - timedelta(days=1)
        until = until or now
    if since and until and until < since:
        raise RequestError("until is before since", field="until", fix="swap since and until")
    if since and until and not active_only and (until - since).days > MAX_LIST_DAYS:
        raise RequestError(f"the window is longer than {MAX_LIST_DAYS} days", field="since",
                           fix="narrow since/until; page through longer periods window by window")
    return since, until


def _continuation(token: str | None) -> str | None:
    if not token:
        return None
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
    except Exception:  # noqa: BLE001 - any malformed token
        text = ""
    if not (text.startswith(_CURSOR_PREFIX) and _ID.match(text[len(_CURSOR_PREFIX):])):
        raise RequestError("continuation token is not valid", field="continuation",
                           fix="pass the continuation value from the previous page unchanged (a token of an older "
                               "version of this API: list again without it)")
    return text[len(_CURSOR_PREFIX):]


def token_after(restore_id: str) -> str:
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{restore_id}".encode()).decode()


def _choice(params: dict[str, str], name: str, allowed: tuple[str, ...] | None = None) -> str | None:
    value = (params.get(name) or "").strip().lower() or None
    if value is not None and allowed is not None and value not in allowed:
        raise RequestError(f"{name} must be one of {', '.join(allowed)}", field=name,
                           fix=f"use {name}={allowed[0]} (or {', '.join(allowed[1:])})")
    return value


def parse_query(params: dict[str, str], now: datetime) -> ListQuery:
    """Raises :class:`RequestError` naming the parameter to change."""
    check_params(params, PARAMS)
    try:
        statuses = _statuses(params.get("status"))
        active_only = bool(statuses) and statuses is not None and statuses <= ACTIVE
        since, until = _window(params, now, active_only)
        limit = int(params.get("limit", "50"))
    except ValueError as exc:
        raise RequestError(f"bad query parameter: {exc}", field="query",
                           fix="since/until are ISO-8601 times with a zone, limit an integer") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise RequestError(f"limit must be 1..{MAX_LIMIT}", field="limit", fix=f"use a limit up to {MAX_LIMIT}")
    return ListQuery(statuses, since, until, limit, _continuation(params.get("continuation")),
                     source=_choice(params, "source"), target=_choice(params, "target"),
                     region=_choice(params, "region"), started_by=_choice(params, "started_by", DOORS))


def matches(q: ListQuery, rec: RestoreRecord, item: dict[str, Any]) -> bool:
    if q.statuses and rec.status.value not in q.statuses:
        return False
    if (q.since and rec.created_at < q.since) or (q.until and rec.created_at > q.until):
        return False
    if q.started_by and rec.source != q.started_by:
        return False
    if q.region and q.region not in (rec.region.lower(), (rec.restore_location or "").lower()):
        return False
    return all(not text or text in haystack(item, what) for what, text in (("source", q.source),
                                                                             ("target", q.target)))


def _slices(q: ListQuery, day: datetime) -> Iterator[tuple[str, str]]:
    """(after, before) id bounds of the day's six-hour slices the window touches, newest first."""
    key = day.strftime("%Y%m%d")
    for start in range(24 - SLICE_HOURS, -1, -SLICE_HOURS):
        begins = day + timedelta(hours=start)
        ends = begins + timedelta(hours=SLICE_HOURS - 1, minutes=59, seconds=59, microseconds=999999)
        if (q.since and ends < q.since) or (q.until and begins > q.until):
            continue
        lo, hi = f"{key}T{start:02d}", f"{key}T{start + SLICE_HOURS:02d}"
        if q.before is not None:
            if q.before <= lo:
                continue
            hi = min(hi, q.before)
        yield lo, hi


def _from_days(q: ListQuery, deps: Deps) -> Iterator[RestoreRecord]:
    assert q.since is not None and q.until is not None
    for day in reversed(days_between(q.since, q.until)):
        for lo, hi in _slices(q, day):
            yield from sorted(deps.store.list_day(day, after_id=lo, before_id=hi), key=lambda r: r.id,
                              reverse=True)


def _from_active_index(q: ListQuery, deps: Deps) -> Iterator[RestoreRecord]:
    for rid in sorted((e.restore_id for e in deps.store.active()), reverse=True):
        if q.before is not None and rid >= q.before:
            continue
        rec = deps.store.get(rid)
        if rec is not None:
            yield rec


def page(q: ListQuery, deps: Deps) -> tuple[list[dict[str, Any]], str | None]:
    """One page, newest first, and the token of the next one (None: nothing more matches)."""
    items: list[dict[str, Any]] = []
    for rec in (_from_active_index(q, deps) if q.active_only else _from_days(q, deps)):
        item = view(rec, deps.clock())
        if not matches(q, rec, item):
            continue
        if len(items) == q.limit:
            return items, token_after(items[-1]["id"])
        items.append(item)
    return items, None
