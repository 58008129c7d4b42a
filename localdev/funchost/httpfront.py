"""HTTP trigger front end: routing, auth levels, the dashboard static/proxy convenience.

Consumes: HTTP-triggered functions, the route prefix (host.json ``extensions.http.routePrefix``), function keys.
Rules: ``anonymous`` needs no key; ``function`` needs a function key or the master key; ``admin`` needs the
master key; the key comes from the ``x-functions-key`` header or the ``code`` query parameter. 401 without a
valid key; 404 for an unknown route AND for a known route with another method (the real host's routing answers 404,
azure-functions-host#10098). Query parameters reach the function as the Python worker's ``HttpRequest.params``
gets them from the host: empty values dropped, a repeated key's values joined with commas.
``GET /admin/host/ping`` answers 200 (readiness probe, like the real host).
Static mounts (``--static /dashboard=DIR``): files under DIR at that prefix, and ``GET <prefix>/api/<path>``
invokes the function routed at ``/<routePrefix>/<path>`` WITHOUT the key check. That is a loopback-only developer
convenience for the dashboard page; GET only, so it cannot start restores; and it answers only requests whose
``Host`` is a loopback name (``127.0.0.1``, ``localhost``, ``[::1]``), so a web page that rebinds its own DNS name
to 127.0.0.1 cannot read restores through it (DNS rebinding): anything else gets 403.
Built-in authentication (``auth``, localdev/funchost/easyauth.py): when configured, the front plays App Service
authentication in front of every function (the dashboard proxy included): clients' ``X-MS-*`` headers are dropped,
bearer tokens validated and turned into the platform's ``X-MS-CLIENT-PRINCIPAL*`` headers, 401 as the platform
answers. The key check follows, as on App Service (authentication runs before the Functions host).
Never logs request bodies or query strings (they may carry keys and secrets).
"""

from __future__ import annotations

import hmac
import json
import logging
import mimetypes
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import azure.functions as func

from localdev.funchost.easyauth import AuthConfig
from localdev.funchost.easyauth import front as platform_front
from localdev.funchost.invoke import Invoker

log = logging.getLogger("funchost")

_CONSTRAINTS = {
    "guid": r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}",
    "int": r"-?\d+",
    "long": r"-?\d+",
    "alpha": r"[A-Za-z]+",
    "bool": r"(?i:true|false)",
}
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_PARAM = re.compile(r"\{(\*?)([A-Za-z_][A-Za-z0-9_]*)((?::[^}?=]+)*)(\?)?\}")


def route_regex(template: str) -> re.Pattern[str]:
    """Compile an ASP.NET-style route template (``a/{id}``, ``{id:guid}``, ``{opt?}``, ``{*rest}``)."""
    parts = []
    for i, segment in enumerate(template.strip("/").split("/")):
        sep = "/" if i else ""
        m = _PARAM.fullmatch(segment)
        if m and m.group(4):  # optional whole segment
            parts.append(f"(?:{sep}(?P<{m.group(2)}>[^/]+))?")
            continue
        out, pos = "", 0
        for pm in _PARAM.finditer(segment):
            out += re.escape(segment[pos:pm.start()])
            catch_all, name, constraints = pm.group(1), pm.group(2), pm.group(3)
            if catch_all:
                pattern = ".*"
            else:
                pattern = "[^/]+"
                for c in constraints.split(":")[1:]:
                    pattern = _CONSTRAINTS.get(c.split("(")[0].lower(), pattern)
            out += f"(?P<{name}>{pattern})"
            pos = pm.end()
        out += re.escape(segment[pos:])
        parts.append(sep + out)
    return re.compile("".join(parts), re.IGNORECASE)


@dataclass
class Route:
    invoker: Invoker
    regex: re.Pattern[str]
    methods: frozenset[str]  # empty: any
    auth_level: str


def _enum_value(v: Any) -> str:
    return str(getattr(v, "value", v))


def build_routes(invokers: Iterable[Invoker]) -> list[Route]:
    routes = []
    for inv in invokers:
        trig = inv.trigger
        template = trig.route or inv.name
        methods = frozenset(_enum_value(m).upper() for m in (trig.methods or []))
        level = _enum_value(trig.auth_level or "function").lower()
        routes.append(Route(inv, route_regex(template), methods, level))
    # like ASP.NET routing: literal segments win over parameters (``restores/summary`` before ``restores/{id}``)
    return sorted(routes, key=lambda r: (r.regex.pattern.count("(?P<"), -len(r.regex.pattern)))


class HttpFrontEnd:
    def __init__(self, routes: list[Route], route_prefix: str, *, function_keys: Iterable[str], master_key: str | None,
                 static: Mapping[str, Path], host: str, port: int, auth: AuthConfig | None = None) -> None:
        self.routes = routes
        self.auth = auth
        self.prefix = "/" + route_prefix.strip("/") if route_prefix.strip("/") else ""
        self.function_keys = [k for k in function_keys if k]
        self.master_key = master_key or None
        self.static = {"/" + p.strip("/"): Path(d).resolve() for p, d in static.items()}
        handler = type("Handler", (_Handler,), {"front": self})
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="http", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def key_allows(self, level: str, key: str | None) -> bool:
        if level == "anonymous":
            return True
        if not key:
            return False
        allowed = [self.master_key] if level == "admin" else [*self.function_keys, self.master_key]
        return any(k is not None and hmac.compare_digest(k.encode(), key.encode()) for k in allowed)


class _Handler(BaseHTTPRequestHandler):
    front: HttpFrontEnd
    protocol_version = "HTTP/1.1"
    server_version = "funchost"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # one line per invocation is logged instead; never the query string

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def _send(self, status: int, body: bytes = b"", headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        headers = dict(headers or {})
        if body and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "text/plain; charset=utf-8"
        for k, v in headers.items():
            if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        path = unquote(url.path)
        body = self._read_body()
        front = self.front
        if path == "/admin/host/ping":
            return self._send(200, b"ok")
        for mount, directory in front.static.items():
            if path == mount or path.startswith(mount + "/"):
                rest = path[len(mount):]
                if rest == "/api" or rest.startswith("/api/"):
                    if not loopback_host(self.headers.get("Host")):
                        log.info("dashboard proxy refused a request for a non-loopback Host name")
                        return self._send(403, b"the key-less dashboard proxy answers only loopback Host names "
                                               b"(open the dashboard at http://127.0.0.1:<port>/dashboard/)")
                    if self.command != "GET":
                        return self._send(405, b"the dashboard proxy is GET only", {"Allow": "GET"})
                    return self._function(rest[len("/api"):], url.query, body, check_key=False)
                return self._static(directory, rest)
        if front.prefix and not (path == front.prefix or path.startswith(front.prefix + "/")):
            return self._send(404, b"not found")
        return self._function(path[len(front.prefix):], url.query, body, check_key=True)

    def _static(self, directory: Path, rest: str) -> None:
        if self.command not in ("GET", "HEAD"):
            return self._send(405, b"static files are GET only", {"Allow": "GET, HEAD"})
        target = (directory / rest.lstrip("/")).resolve()
        if target.is_dir():
            target = target / "index.html"
        if not target.is_relative_to(directory) or not target.is_file():
            return self._send(404, b"not found")
        ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype in ("application/javascript", "application/json"):
            ctype += "; charset=utf-8"
        return self._send(200, target.read_bytes(), {"Content-Type": ctype, "Cache-Control": "no-store"})

    def _function(self, rel: str, query: str, body: bytes, *, check_key: bool) -> None:
        front = self.front
        rel = rel.strip("/")
        matches = [(r, m) for r in front.routes if (m := r.regex.fullmatch(rel))]
        if not matches:
            return self._send(404, b"not found")
        allowed = [(r, m) for r, m in matches if not r.methods or self.command in r.methods]
        if not allowed:  # the real host: no route for this method, 404 (not 405)
            return self._send(404, b"not found")
        route, m = allowed[0]
        headers: dict[str, str] = dict(self.headers.items())
        if front.auth is not None:
            passed, why = platform_front(headers, f"{front.prefix}/{rel}", front.auth)
            if passed is None:
                log.info("http function=%s method=%s status=401 (platform authentication: %s)", route.invoker.name,
                         self.command, why)
                return self._send(401, json.dumps({"error": {"code": "Unauthorized", "message": why}}).encode(),
                                  {"Content-Type": "application/json", "WWW-Authenticate": "Bearer"})
            headers = passed
        params = query_params(query)
        if check_key and not front.key_allows(route.auth_level,
                                              self.headers.get("x-functions-key") or params.get("code")):
            log.info("http function=%s method=%s status=401 (missing or wrong key)", route.invoker.name, self.command)
            return self._send(401, b"")
        host = self.headers.get("Host") or f"127.0.0.1:{front.port}"
        req = func.HttpRequest(self.command, f"http://{host}{self.path}", headers=headers,
                               params=params, route_params={k: v for k, v in m.groupdict().items() if v is not None},
                               body=body)
        t0 = time.perf_counter()
        stats: dict[str, float] = {}
        try:
            result = route.invoker(req, stats)
        except Exception as exc:  # noqa: BLE001 - the function failed: 500, like the real host
            log.info("invocation function=%s trigger=http method=%s outcome=failed status=500 duration_ms=%.0f "
                     "error=%s: %s", route.invoker.name, self.command, (time.perf_counter() - t0) * 1000,
                     type(exc).__name__, str(exc)[:300])
            return self._send(500, b"")
        status, out_body, headers = _response(result)
        log.info("invocation function=%s trigger=http method=%s outcome=ok status=%d duration_ms=%.0f fn_ms=%.1f "
                 "cpu_ms=%.1f", route.invoker.name, self.command, status, (time.perf_counter() - t0) * 1000,
                 stats.get("wall_s", 0.0) * 1000, stats.get("cpu_s", 0.0) * 1000)
        return self._send(status, out_body, headers)


def loopback_host(host: str | None) -> bool:
    """Whether a ``Host`` header names this machine's loopback interface (with or without a port)."""
    if not host:
        return False
    name = host.strip().lower()
    if name.startswith("["):  # [::1]:7071
        name = name[1:].split("]", 1)[0]
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    return name in LOOPBACK_HOSTS


def query_params(query: str) -> dict[str, str]:
    """The query as the host hands it to a Python function: ASP.NET ``Query`` values joined with commas
    (``StringValues.ToString()``), empty ones left out (``if (!string.IsNullOrEmpty(value)) http.Query.Add(...)``)."""
    joined: dict[str, list[str]] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        joined.setdefault(key, []).append(value)
    return {k: ",".join(v) for k, v in joined.items() if ",".join(v)}


def _response(result: Any) -> tuple[int, bytes, dict[str, str]]:
    if isinstance(result, func.HttpResponse):
        headers = dict(result.headers.items())
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = f"{result.mimetype}; charset={result.charset}"
        return int(result.status_code), result.get_body() or b"", headers
    if result is None:
        return 204, b"", {}
    if isinstance(result, bytes):
        return 200, result, {"Content-Type": "application/octet-stream"}
    return 200, str(result).encode("utf-8"), {"Content-Type": "text/plain; charset=utf-8"}
