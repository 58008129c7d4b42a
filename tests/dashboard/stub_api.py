"""A tiny local stand-in for the restore status API (contract: issue 5 / design.md §3; ``GET /api/stages``: issue
11; ``GET /api/drills/runs/latest``: issue 15, answered by restore_core's own view of run rows), for the CLI's and
the dashboard's own logic tests. It also serves ``localdev/dashboard`` under ``/dashboard/`` and answers
``/dashboard/api/<path>`` like ``/api/<path>`` without a key, as the local Functions host does."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DASHBOARD_DIR = Path(__file__).resolve().parents[2] / "localdev" / "dashboard"
TERMINAL = {"succeeded", "failed", "rejected", "cancelled"}
KEY = "stub-function-key"
#: GET /api/stages: the queue-triggered stages in pipeline order, as the restore API serves its stage registry
STAGES: list[dict[str, Any]] = [
    {"stage": "validate", "label": "Validate", "status": "validating", "cancellable": True,
     "queue_setting": "RESTORE_QUEUE_VALIDATE"},
    {"stage": "rehydrate", "label": "Rehydrate", "status": "rehydrating", "cancellable": True,
     "queue_setting": "RESTORE_QUEUE_REHYDRATE"},
    {"stage": "wait", "label": "Wait", "status": "waiting", "cancellable": True,
     "queue_setting": "RESTORE_QUEUE_WAIT"},
    {"stage": "trigger", "label": "Trigger", "status": "restoring", "cancellable": False,
     "queue_setting": "RESTORE_QUEUE_TRIGGER"},
    {"stage": "monitor", "label": "Monitor", "status": "restoring", "cancellable": False,
     "queue_setting": "RESTORE_QUEUE_MONITOR"},
]


def iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def make_restore(rid: str, status: str, stage: str | None, *, age_s: float,
                 stages: list[tuple[str, float, float | None]], now: datetime | None = None,
                 job: str | None = None, error: dict[str, str] | None = None,
                 target_kind: str = "database", next_check_in: float | None = None) -> dict[str, Any]:
    """A restore as GET /api/restores/{id} returns it; ``stages`` = (stage, started_after_s, finished_after_s)."""
    now = now or datetime.now(UTC)
    created = now - timedelta(seconds=age_s)
    stage_times = {s: {"started": iso(created + timedelta(seconds=a)),
                       "finished": iso(created + timedelta(seconds=b)) if b is not None else None}
                   for s, a, b in stages}
    timeline = [{"at": iso(created), "status": "accepted", "stage": None, "message": "request accepted"}]
    timeline += [{"at": t["started"], "status": status, "stage": s, "message": f"{s} started"}
                 for s, t in stage_times.items()]
    return {
        "id": rid, "status": status, "stage": stage, "source": "http",
        "backup_instance_id": f"/subscriptions/s/resourceGroups/rg/providers/Microsoft.DataProtection/backupVaults/"
                              f"v/backupInstances/bi-{rid}",
        "recovery_point": {"id": "rp1", "time": iso(created - timedelta(hours=5)), "tier": "vault"},
        "target": {"kind": target_kind, "database_name": f"db_{rid}"},
        "region": "primary", "restore_location": "westeurope", "azure_job_id": job, "created_at": iso(created),
        "source_resource": {"id": f"/subscriptions/s/resourceGroups/rg/providers/Microsoft.DBforPostgreSQL/servers/"
                                  f"pgsrv01/databases/src_{rid}", "name": f"pgsrv01/src_{rid}", "kind": "database",
                            "backup_instance": f"bi-{rid}"},
        "target_name": f"pgsrv-restore/db_{rid}", "point_time": iso(created - timedelta(hours=5)),
        "started_by": {"door": "http"},
        "reason": error if status in ("failed", "rejected") else None,
        "updated_at": iso(now if status not in TERMINAL else created + timedelta(seconds=age_s / 2)),
        "deadline": iso(created + timedelta(hours=48)),
        "next_check_at": iso(now + timedelta(seconds=next_check_in)) if next_check_in is not None else None,
        "stage_times": stage_times, "error": error, "warnings": [], "timeline": timeline,
    }


class StubState:
    def __init__(self) -> None:
        self.existing: str | None = None  #: POST /restores answers with this restore (an idempotent repeat)
        self.created_then: list[dict[str, Any]] = []  #: states successive GETs of the next created restore return
        self.restores: dict[str, dict[str, Any]] = {}
        self.scripts: dict[str, list[dict[str, Any]]] = {}  # next states returned by successive GETs
        self.requests: list[dict[str, Any]] = []
        self.page_size = 50
        self.lock = threading.Lock()
        self.fail_next: tuple[int, dict[str, Any]] | None = None
        self.stages: list[dict[str, Any]] | None = [dict(s) for s in STAGES]  # GET /api/stages; None: 404
        self.page_lag_s = 0.0  # set by the page test: seconds from seeding until Chromium drew the page
        #: GET /api/drills/runs/latest: the drills (id, {server_id, rto_target_seconds}) and their run rows, newest
        #: first, answered by the API's own code (restore_core/drills/latest.py; None: 404); drill_page_size bounds
        #: a page
        self.drills: list[tuple[str, dict[str, Any]]] = []
        self.drill_runs: dict[str, list[dict[str, Any]]] | None = {}
        self.drill_page_size = 200

    def add(self, restore: dict[str, Any], *then: dict[str, Any]) -> None:
        self.restores[restore["id"]] = restore
        self.scripts[restore["id"]] = list(then)


class _Handler(BaseHTTPRequestHandler):
    state: StubState

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, code: int, body: Any, headers: dict[str, str] | None = None, raw: bytes | None = None,
              ctype: str = "application/json") -> None:
        data = raw if raw is not None else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _route(self, method: str) -> None:
        parts = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(parts.query))
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        st = self.state
        with st.lock:
            st.requests.append({"method": method, "path": parts.path, "query": query, "body": body,
                                "key": self.headers.get("x-functions-key")})
        path = self._api_path(parts.path)
        if path is None:
            return None
        if st.fail_next is not None:
            code, err = st.fail_next
            st.fail_next = None
            return self._send(code, err)
        segs = [s for s in path.split("/") if s][1:]  # drop "api"
        with st.lock:
            if self._api(method, segs, query):
                return None
        return self._send(404, {"error": {"code": "NotFound", "message": f"no such resource {path}"}})

    def _api_path(self, path: str) -> str | None:
        """The ``/api/...`` path to answer, or None when answered already (static file, 404, 401). The key-less
        ``/dashboard/api/...`` proxy answers like ``/api/...``."""
        if path.startswith("/dashboard/api/"):
            return path[len("/dashboard"):]
        if path.startswith("/dashboard"):
            self._static(path)
        elif not path.startswith("/api/"):
            self._send(404, {"error": {"code": "NotFound", "message": f"no such resource {path}"}})
        elif self.headers.get("x-functions-key") != KEY:
            self._send(401, {"error": {"code": "Unauthorized", "message": "missing or wrong function key"}})
        else:
            return path
        return None

    def _api(self, method: str, segs: list[str], query: dict[str, str]) -> bool:
        """Answer an API call (state lock held); False for an unknown route."""
        st = self.state
        if method == "GET" and segs == ["stages"] and st.stages is not None:
            self._send(200, {"stages": st.stages})
        elif method == "POST" and segs == ["restores"]:
            self._create()
        elif method == "GET" and segs == ["restores"]:
            self._list(query)
        elif method == "GET" and segs == ["drills", "runs", "latest"] and st.drill_runs is not None:
            self._drills_latest(query)
        elif method == "GET" and len(segs) == 3 and segs[0] == "drills" and segs[2] == "runs" and st.drill_runs:
            self._send(200, {"items": [{k: v for k, v in r.items() if k != "request"}
                                       for r in st.drill_runs.get(segs[1]) or []]})
        elif len(segs) >= 2 and segs[0] == "restores" and segs[1] in st.restores:
            return self._one(method, segs[1], segs[2:])
        else:
            return False
        return True

    def _create(self) -> None:
        st = self.state
        if st.existing is not None:  # the idempotency key was used before: the API answers 200, created false
            r = st.restores[st.existing]
            return self._send(200, {"id": r["id"], "status": r["status"], "created": False,
                                    "status_url": f"/api/restores/{r['id']}"})
        rid = f"r-{len(st.restores) + 1:04d}"
        st.add(make_restore(rid, "accepted", None, age_s=0, stages=[]), *({**r, "id": rid} for r in st.created_then))
        self._send(202, {"id": rid, "status": "accepted", "status_url": f"/api/restores/{rid}"},
                   {"Location": f"/api/restores/{rid}"})

    def _list(self, query: dict[str, str]) -> None:
        st = self.state
        items = [{k: v for k, v in r.items() if k != "timeline"} for r in st.restores.values()]
        if query.get("status"):  # a comma list; "active": every status that is not terminal (as the API)
            wanted = set(query["status"].split(","))
            items = [i for i in items if i["status"] in wanted or ("active" in wanted and i["status"] not in TERMINAL)]
        items.sort(key=lambda i: i["created_at"], reverse=True)
        start = int(query.get("continuation") or 0)
        limit = min(int(query.get("limit") or st.page_size), st.page_size)
        page = items[start:start + limit]
        cont = str(start + limit) if start + limit < len(items) else None
        self._send(200, {"items": page, "continuation": cont})

    def _drills_latest(self, query: dict[str, str]) -> None:
        from restore_core.drills import latest

        st = self.state
        limit, offset, trend = latest.parse_params(query)
        items = latest.latest(st.drills, st.drill_runs or {}, trend)
        self._send(200, latest.page(items, min(limit, st.drill_page_size), offset))

    def _one(self, method: str, rid: str, rest: list[str]) -> bool:
        """GET /restores/{id} (the next scripted state follows) and POST /restores/{id}/cancel."""
        st = self.state
        if method == "GET" and not rest:
            current = st.restores[rid]
            if st.scripts.get(rid):  # the next GET sees the next scripted state
                st.restores[rid] = st.scripts[rid].pop(0)
            self._send(200, current)
            return True
        if method == "POST" and rest == ["cancel"]:
            r = st.restores[rid]
            if r["status"] in TERMINAL or r["status"] == "restoring":
                self._send(409, {"error": {"code": "NotCancellable", "message": f"restore {rid} is {r['status']}",
                                           "fix": "only restores not yet triggered can be cancelled"}})
            else:
                r["status"] = "cancelled"
                self._send(200, r)
            return True
        if method == "POST" and rest == ["redrive"]:  # as restore_core/redrive.py answers
            r = st.restores[rid]
            if r["status"] in TERMINAL:
                self._send(409, {"error": {"code": "RestoreEnded", "message": f"restore {rid} ended {r['status']}",
                                           "fix": "submit a new restore"}})
            else:
                self._send(202, {"id": rid, "status": r["status"], "stage": r["stage"], "attempt": 3, "redriven": True})
            return True
        return False

    def _static(self, path: str) -> None:
        rel = path[len("/dashboard"):].lstrip("/") or "index.html"
        file = (DASHBOARD_DIR / rel).resolve()
        if DASHBOARD_DIR not in file.parents or not file.is_file():
            return self._send(404, {"error": {"code": "NotFound", "message": rel}})
        ctype = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css"}.get(
            file.suffix, "application/octet-stream")
        return self._send(200, None, raw=file.read_bytes(), ctype=ctype)

    def do_GET(self) -> None:  # noqa: N802
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")


@contextmanager
def stub_api() -> Iterator[tuple[str, StubState]]:
    """Yields (base URL ``http://127.0.0.1:PORT``, state)."""
    state = StubState()
    handler = type("Handler", (_Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", state
    finally:
        server.shutdown()
        server.server_close()


def make_drill_run(drill_id: str, instance: str, day: int, *, rto_s: float | None, target_s: float = 1200,
                   passed: bool | None = True, state: str = "validating", error: str | None = None) -> dict[str, Any]:
    """A drill run row as restore_core/drills writes it (``meta-drillrun-<drill>``); ``day``: days before now;
    ``passed`` None: still running (no result yet)."""
    scheduled = datetime.now(UTC).replace(hour=2, minute=0, second=0, microsecond=0) - timedelta(days=day)
    key = f"{drill_id}:{scheduled.strftime('%Y%m%dT%H%M%SZ')}:{instance[-8:]}"
    run: dict[str, Any] = {
        "run_key": key, "drill_id": drill_id, "state": state if passed is not None else "running", "manual": False,
        "scheduled_at": iso(scheduled).replace(".000000", ""), "due_at": iso(scheduled), "started_at": iso(scheduled),
        "late_by_seconds": 0, "backup_instance_id": f"/subscriptions/s/resourceGroups/rg/providers/"
                                                    f"Microsoft.DataProtection/backupVaults/v/backupInstances/{instance}",
        "target_server": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.DBforPostgreSQL/flexibleServers/"
                         "pgflex-drills", "rto_target_seconds": target_s, "validation_window_seconds": 3600,
        "restore_id": f"2026{day:04d}T020000-{instance[-4:]}{day:06d}"}
    if passed is None:
        return run
    run.update(result={"passed": passed, "status": "succeeded" if passed else "failed",
                       "error_code": None if passed else "VerificationFailed", "rto_seconds": rto_s,
                       "rto_target_seconds": target_s,
                       "rto_within_target": rto_s is not None and rto_s <= target_s, "rpo_seconds": 6 * 3600.0,
                       "checks": [{"name": "items", "ok": passed, "got": "50" if passed else "0"}]},
               cleanup={"status": "scheduled", "attempts": 0}, evidence_blob=f"{drill_id}/{key}/evidence.json",
               finished_at=iso(scheduled + timedelta(seconds=rto_s or 0)))
    if error:
        run["error"] = error
    return run
