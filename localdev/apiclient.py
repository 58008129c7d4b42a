"""A minimal client of the restore HTTP API (stdlib only; sends the function key), shared by the demo, the
benchmarks and the tests. ``get``/``post`` return ``(status, json or None, headers)``; ``path`` is relative to
RESTORE_API_URL (``/restores`` → ``/api/restores``)."""

from __future__ import annotations

import http.client
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit


class Api:
    """Minimal client of the restore HTTP API (stdlib only; sends the function key)."""

    def __init__(self, base_url: str, key: str) -> None:
        u = urlsplit(base_url)
        self.host, self.port, self.prefix = u.hostname or "127.0.0.1", u.port, u.path.rstrip("/")
        self.key = key

    def request(self, method: str, path: str, body: Any = None, headers: Mapping[str, str] | None = None,
                *, with_key: bool = True) -> tuple[int, Any, dict[str, str]]:
        hdrs = {"Accept": "application/json", **(headers or {})}
        if with_key:
            hdrs.setdefault("x-functions-key", self.key)
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request(method, self.prefix + "/" + path.lstrip("/"), body=data, headers=hdrs)
            resp = conn.getresponse()
            raw = resp.read()
            resp_headers = {k.lower(): v for k, v in resp.getheaders()}
        finally:
            conn.close()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return resp.status, parsed, resp_headers

    def get(self, path: str, headers: Mapping[str, str] | None = None, **kw: Any) -> tuple[int, Any, dict[str, str]]:
        return self.request("GET", path, None, headers, **kw)

    def post(self, path: str, json: Any = None, headers: Mapping[str, str] | None = None,
             **kw: Any) -> tuple[int, Any, dict[str, str]]:
        return self.request("POST", path, json, headers, **kw)
