"""restorectl: command-line client of the restore status API (stdlib only).

Consumes: the status API (``POST/GET /api/restores``, ``GET /api/restores/{id}``, ``POST /api/restores/{id}/cancel``,
and ``GET /api/stages`` for the stages' labels and pipeline order, read once per command that shows restores) at
``--url`` / env ``RESTORE_API_URL`` / ``.local/stack.env``, authenticated with the function key (env
``RESTORE_API_KEY``, ``--key-file``, or ``.local/stack.env``; never a command-line argument, which every local user
can read) sent as ``x-functions-key``; with Microsoft Entra callers (``RESTORE_AUTH_MODE=entra``) an access token from
env ``RESTORE_API_TOKEN`` sent as ``Authorization: Bearer`` (locally: ``python -m localdev.localissuer token``).
Produces: human-readable output on stdout (``--json`` for raw JSON), errors on stderr. The stage column and the
``stage:`` line show each stage's label as the API serves it; the per-stage times and the timeline show the stage
values themselves. If ``GET /api/stages`` fails (e.g. an API older than that route), a warning goes to stderr and the
raw stage values are shown instead of labels.

Commands: ``start``, ``show ID``, ``list``, ``watch [ID ...]``, ``cancel ID``, and to browse before restoring
``instances`` and ``points INSTANCE`` (:mod:`localdev.restorectl_browse`), and ``drills ...`` for restore drills
(:mod:`localdev.restorectl_drills`). Exit codes: 0 ok; 1 the API refused, a
watched restore did not succeed, or ``show`` shows one that failed, was rejected or cancelled; 2 bad usage or
input; 3 the API cannot be reached (start it with ``make up``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from localdev import restorectl_browse, restorectl_drills

TERMINAL = frozenset({"succeeded", "failed", "rejected", "cancelled"})
DEFAULT_ENV_FILE = Path(__file__).resolve().parents[1] / ".local" / "stack.env"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


class CliError(Exception):
    """A failure to report on stderr with an exit code; the message says what to do."""

    def __init__(self, message: str, code: int = EXIT_FAILED, *, http_status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.http_status = http_status  #: the API's HTTP status, when it answered with an error


# ------------------------------------------------------------------------------------------------------ config
def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines (``#`` comments, optional ``export`` and quotes) of ``.local/stack.env``."""
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        try:
            words = shlex.split(value.strip())  # shell quoting, as `set -a; . stack.env` reads it
        except ValueError:
            words = [value.strip()]
        values[key.strip()] = words[0] if words else ""
    return values


def read_key_file(path: Path) -> str:
    """The function key held in ``path`` (its first line)."""
    try:
        lines = path.read_text().strip().splitlines()
    except OSError as exc:
        raise CliError(f"--key-file {path}: {exc.strerror}", EXIT_USAGE) from None
    key = lines[0].strip() if lines else ""
    if not key:
        raise CliError(f"--key-file {path} is empty; put the function key on its first line", EXIT_USAGE)
    return key


def resolve_endpoint(url: str | None, key_file: Path | None, env: Mapping[str, str],
                     env_file: Path) -> tuple[str, str | None]:
    """API base URL (ending in ``/api``) and key: flags (a key only from a file), then environment, then the stack
    env file."""
    file_values = read_env_file(env_file) if env_file.is_file() else {}
    url = url or env.get("RESTORE_API_URL") or file_values.get("RESTORE_API_URL")
    key = (read_key_file(key_file) if key_file else None) or env.get("RESTORE_API_KEY") or \
        file_values.get("RESTORE_API_KEY")
    if not url:
        raise CliError(
            f"no restore API URL: the local stack is not running ({env_file} is missing). Start it with `make up`, "
            "or pass --url http://127.0.0.1:PORT (or set RESTORE_API_URL)", EXIT_UNREACHABLE)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CliError(f"restore API URL {url!r} is not an http(s) URL; pass e.g. --url http://127.0.0.1:7071",
                       EXIT_USAGE)
    base = url.rstrip("/")
    if not base.endswith("/api"):
        base += "/api"
    return base, key


# ------------------------------------------------------------------------------------------------------ client
@dataclass
class ApiClient:
    base: str  #: ends with /api
    key: str | None
    timeout: float = 10.0
    token: str | None = None  #: an Entra access token (RESTORE_API_TOKEN), sent as a bearer token

    def call(self, method: str, path: str, body: Any = None, query: Mapping[str, str | None] | None = None) -> Any:
        url = self.base + path
        params = {k: v for k, v in (query or {}).items() if v not in (None, "")}
        if params:
            url += "?" + urllib.parse.urlencode(params)
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.key:
            headers["x-functions-key"] = self.key
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310 (http(s) only)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise CliError(_describe_http_error(exc), EXIT_FAILED if exc.code != 400 else EXIT_USAGE,
                           http_status=exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CliError(f"cannot reach the restore API at {self.base} ({reason}); is the local stack running? "
                           "Start it with `make up` (or check --url / RESTORE_API_URL)", EXIT_UNREACHABLE) from None
        if not raw:
            return None
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            raise CliError(f"{method} {path}: the API answered with non-JSON content; is {self.base} the restore "
                           "API?", EXIT_FAILED) from None

    def start(self, request: Mapping[str, Any]) -> Any:
        return self.call("POST", "/restores", dict(request))

    def get(self, restore_id: str) -> Any:
        return self.call("GET", "/restores/" + urllib.parse.quote(restore_id, safe=""))

    def list_page(self, status: str | None = None, since: str | None = None, limit: int | None = None,
                  continuation: str | None = None, **filters: str | None) -> Any:
        return self.call("GET", "/restores", query={"status": status, "since": since,
                                                    "limit": str(limit) if limit else None,
                                                    "continuation": continuation, **filters})

    def list_all(self, status: str | None = None, since: str | None = None, limit: int | None = None,
                 **filters: str | None) -> list[Any]:
        items: list[Any] = []
        continuation: str | None = None
        while True:
            page = self.list_page(status=status, since=since, limit=limit, continuation=continuation,
                                  **filters) or {}
            items.extend(page.get("items") or [])
            continuation = page.get("continuation")
            if not continuation or (limit and len(items) >= limit):
                return items[:limit] if limit else items

    def preview(self, request: Mapping[str, Any]) -> Any:
        return self.call("POST", "/restores/preview", dict(request))

    def cancel(self, restore_id: str) -> Any:
        return self.call("POST", "/restores/" + urllib.parse.quote(restore_id, safe="") + "/cancel")

    def redrive(self, restore_id: str) -> Any:
        return self.call("POST", "/restores/" + urllib.parse.quote(restore_id, safe="") + "/redrive")


@dataclass(frozen=True)
class Stages:
    """The pipeline's stages as ``GET /api/stages`` serves them: labels and pipeline order. Empty when that call
    failed: every stage is then shown as its raw value, in the order of its start."""

    labels: Mapping[str, str] = field(default_factory=dict)  #: stage value -> label, in pipeline order

    def label(self, stage: str | None) -> str:
        return self.labels.get(stage, stage) if stage else "-"

    def sort_key(self, stage: str) -> int:
        """Position in the pipeline; a stage the API did not list sorts after the listed ones."""
        order = list(self.labels)
        return order.index(stage) if stage in self.labels else len(order)


def parse_stages(body: Any) -> Stages:
    """The ``{"stages": [{"stage": ..., "label": ...}, ...]}`` answer of ``GET /api/stages``."""
    entries = body.get("stages") if isinstance(body, dict) else None
    if not isinstance(entries, list):
        raise CliError('GET /api/stages did not answer {"stages": [...]}')
    labels: dict[str, str] = {}
    for entry in entries:
        stage = entry.get("stage") if isinstance(entry, dict) else None
        if not isinstance(stage, str) or not stage:
            raise CliError(f"GET /api/stages listed an entry without a stage name: {entry!r}")
        label = entry.get("label")
        labels[stage] = label if isinstance(label, str) and label else stage
    return Stages(labels)


def fetch_stages(client: ApiClient, err: TextIO) -> Stages:
    """The stage list from the API; on failure a warning on ``err`` and raw stage values. An API that cannot be
    reached or refuses the key fails the command right away: the command's own call would fail the same way."""
    try:
        return parse_stages(client.call("GET", "/stages"))
    except CliError as exc:
        if exc.code == EXIT_UNREACHABLE or exc.http_status in (401, 403):
            raise
        err.write(f"restorectl: warning: no stage list from GET {client.base}/stages ({exc}); showing raw stage "
                  "values\n")
        return Stages()


def _describe_http_error(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read() or b"{}")
    except (json.JSONDecodeError, OSError):
        body = {}
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        text = f"{exc.code} {err.get('code', 'Error')}: {err.get('message', '')}"
        if err.get("field"):
            text += f" (field: {err['field']})"
        if err.get("fix"):
            text += f"\n  fix: {err['fix']}"
        return text
    if exc.code in (401, 403):
        return (f"{exc.code}: the API refused the function key; set RESTORE_API_KEY or pass --key-file FILE "
                "(the local stack writes it to .local/stack.env), or with Entra callers set RESTORE_API_TOKEN")
    if exc.code == 404:
        return f"404: not found ({exc.url})"
    return f"{exc.code} {exc.reason}"


# ------------------------------------------------------------------------------------------------------ format
def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def elapsed_seconds(item: Mapping[str, Any], now: datetime) -> float | None:
    created = parse_time(item.get("created_at"))
    if created is None:
        return None
    end = parse_time(item.get("updated_at")) if item.get("status") in TERMINAL else None
    return ((end or now) - created).total_seconds()


def next_check(item: Mapping[str, Any], now: datetime) -> str:
    when = parse_time(item.get("next_check_at"))
    if when is None or item.get("status") in TERMINAL:
        return "-"
    delta = (when - now).total_seconds()
    return "due" if delta <= 0 else "in " + format_duration(delta)


COLUMNS = ("ID", "STATUS", "STAGE", "SOURCE", "TARGET", "REGION", "POINT (UTC)", "BY", "ELAPSED", "NEXT CHECK",
           "AZURE JOB", "REASON")


def utc_short(value: str | None) -> str:
    """``2026-11-24 08:15`` (UTC) of an ISO time, or ``-``."""
    parsed = parse_time(value)
    return parsed.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if parsed else "-"


def region_of(item: Mapping[str, Any]) -> str:
    where = item.get("restore_location")
    return f"{item.get('region') or '-'}" + (f"/{where}" if where else "")


def row(item: Mapping[str, Any], now: datetime, stages: Stages = Stages()) -> tuple[str, ...]:
    job = str(item.get("azure_job_id") or "-")
    source = (item.get("source_resource") or {}).get("name") or "-"
    reason = (item.get("reason") or {}).get("code") or "-"
    return (str(item.get("id", "?")), str(item.get("status", "?")), stages.label(item.get("stage")),
            str(source), str(item.get("target_name") or "-"), region_of(item),
            utc_short(item.get("point_time") or (item.get("recovery_point") or {}).get("time")),
            str((item.get("started_by") or {}).get("door") or item.get("source") or "-"),
            format_duration(elapsed_seconds(item, now)), next_check(item, now), job.rsplit("/", 1)[-1], reason)


def table(items: Iterable[Mapping[str, Any]], now: datetime, stages: Stages = Stages()) -> str:
    rows = [COLUMNS] + [row(i, now, stages) for i in items]
    widths = [max(len(r[c]) for r in rows) for c in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def describe(item: Mapping[str, Any], now: datetime, stages: Stages = Stages()) -> str:
    rp = item.get("recovery_point") or {}
    target = item.get("target") or {}
    lines = [
        f"id:              {item.get('id')}",
        f"status:          {item.get('status')}   stage: {stages.label(item.get('stage'))}   "
        f"source: {item.get('source') or '-'}",
        f"started by:      {_started_by(item)}",
        f"restores:        {(item.get('source_resource') or {}).get('name') or '-'} "
        f"({(item.get('source_resource') or {}).get('kind') or '?'}) -> {item.get('target_name') or '-'}",
        f"backup instance: {item.get('backup_instance_id') or '-'}",
        f"recovery point:  {rp.get('id') or '-'} {rp.get('time') or ''} tier={rp.get('tier') or '-'}",
        f"target:          {target.get('kind', '-')} " + " ".join(
            f"{k}={v}" for k, v in sorted(target.items()) if k != "kind"),
        f"region:          {region_of(item)}",
        f"azure job:       {item.get('azure_job_id') or '-'}",
        *_expectation_lines(item),
        f"created:         {item.get('created_at')}   elapsed: {format_duration(elapsed_seconds(item, now))}",
        f"deadline:        {item.get('deadline') or '-'}   next check: {next_check(item, now)}",
    ]
    err = item.get("error")
    if err:
        lines.append(f"error:           {err.get('code')}: {err.get('message')}")
        if err.get("fix"):
            lines.append(f"fix:             {err['fix']}")
    for warning in item.get("warnings") or []:
        lines.append(f"warning:         {warning}")
    lines += _server_lines(item.get("server") or {})
    lines += _stage_lines(item.get("stage_times") or {}, now, stages)
    timeline = item.get("timeline") or []
    if timeline:
        lines.append("timeline:")
        for event in timeline:
            lines.append(f"  {event.get('at')}  {event.get('status', ''):<11} {event.get('stage') or '-':<10} "
                         f"{event.get('message') or ''}".rstrip())
    return "\n".join(lines)


def _expectation_lines(item: Mapping[str, Any]) -> list[str]:
    """Where the job is visible, the rehydration window, the data-loss gap (when the API gives them)."""
    lines = []
    if item.get("azure_job_visible_in"):
        lines.append(f"job visible in:  {item['azure_job_visible_in']}")
    exp = item.get("expected") or {}
    if exp:
        lines.append(f"expected:        {exp.get('what')} by {exp.get('latest')} ({exp.get('note')}; "
                     f"{exp.get('source')})")
    gap = item.get("data_loss_gap_seconds")
    if isinstance(gap, (int, float)) and gap > 0:
        lines.append(f"data-loss gap:   {format_duration(gap)} (the restored point is that much older than asked for)")
    return lines


def _started_by(item: Mapping[str, Any]) -> str:
    by = dict(item.get("started_by") or {"door": item.get("source")})
    door = by.pop("door", None) or "-"
    return f"{door}" + "".join(f" {k}={v}" for k, v in sorted(by.items()))


def _server_lines(server: Mapping[str, Any]) -> list[str]:
    """Restore into a server: what was created where, who owns it, what verify found, where the staged files are."""
    if not server:
        return []
    staging = server.get("staging") or {}
    replay = server.get("replay") or {}
    verify = server.get("verify") or {}
    verified = {d.get("database"): d for d in verify.get("databases") or []}
    lines = [f"staged files:    {staging.get('container_url')}/{staging.get('prefix')}*  "
             + ("(deleted)" if staging.get("kept") is False else "(kept)")]
    for d in replay.get("databases") or []:
        v = verified.get(d.get("database")) or {}
        lines.append(f"database:        {d.get('source')} → {d.get('database')}  owner {d.get('owner')}  "
                     f"{d.get('done')}" + (f"  {v.get('tables')} tables, {v.get('rows')} rows" if v else ""))
    roles = replay.get("roles") or {}
    if roles.get("mode") == "clean":
        lines.append(f"roles created:   {', '.join(roles.get('created') or []) or '(none missing)'}")
    for check in verify.get("checks") or []:
        lines.append(f"check:           {check.get('name')}: {'ok' if check.get('ok') else 'FAILED'}")
    if "passed" in verify:
        lines.append(f"verified:        {'yes' if verify['passed'] else 'NO'}")
    return lines


def _stage_lines(stage_times: Mapping[str, Any], now: datetime, stages: Stages) -> list[str]:
    """One line per stage that ran, in pipeline order (stages the API did not list: after, by start)."""
    if not stage_times:
        return []
    lines = ["stages:"]
    for stage, times in sorted(stage_times.items(), key=lambda kv: (stages.sort_key(kv[0]),
                                                                     str(kv[1].get("started") or ""), kv[0])):
        start, end = parse_time(times.get("started")), parse_time(times.get("finished"))
        took = format_duration(((end or now) - start).total_seconds()) if start else "-"
        lines.append(f"  {stage:<10} {times.get('started') or '-'} -> {times.get('finished') or '...'} ({took})")
    return lines


# ------------------------------------------------------------------------------------------------------ request
def build_request(args: argparse.Namespace, stdin: TextIO) -> dict[str, Any]:
    """The restore request: ``--json FILE|-`` as is, or assembled from the flags."""
    if args.json_file:
        return _request_from_json(args.json_file, stdin)
    if not args.backup_instance and not (args.vault and args.datasource):
        raise CliError(f"{args.command} needs --json FILE, or --backup-instance ID (or --vault + --datasource) and a "
                       "target (--server + --database + --secret-uri, --container-url + --prefix, or --into-server)",
                       EXIT_USAGE)
    body: dict[str, Any] = {"backup_instance": ({"id": args.backup_instance} if args.backup_instance
                                                else {"vault_id": args.vault, "datasource_id": args.datasource})}
    point = _recovery_point(args)
    if point:
        body["recovery_point"] = point
    body["target"] = _target(args)
    optional = {"region": args.region, "rehydration": _rehydration(args), "idempotency_key": args.idempotency_key}
    body.update({k: v for k, v in optional.items() if v})
    return body


def _rehydration(args: argparse.Namespace) -> dict[str, Any] | None:
    """``--priority`` and ``--retention-days`` (how long a rehydrated point stays usable; the API checks 10..30)."""
    given = {"priority": args.priority, "retention_days": args.retention_days}
    return {k: v for k, v in given.items() if v is not None} or None


def _request_from_json(source: str, stdin: TextIO) -> dict[str, Any]:
    """``--json FILE`` (``-``: stdin), which must hold a JSON object."""
    try:
        text = stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read --json {source}: {exc.strerror}; give a readable file or - for stdin",
                       EXIT_USAGE) from None
    try:
        given = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"--json {source} is not valid JSON (line {exc.lineno}: {exc.msg}); fix the file",
                       EXIT_USAGE) from None
    if not isinstance(given, dict):
        raise CliError(f"--json {source} must hold a JSON object (the restore request)", EXIT_USAGE)
    return given


def _recovery_point(args: argparse.Namespace) -> dict[str, str] | None:
    """``--recovery-point ID`` or ``--before TIME``; None for the latest point."""
    if args.recovery_point and args.before:
        raise CliError("give either --recovery-point or --before, not both", EXIT_USAGE)
    if args.recovery_point and args.recovery_point != "latest":
        return {"id": args.recovery_point}
    if args.before:
        return {"latest_before": args.before}
    return None


def _server_target(args: argparse.Namespace) -> dict[str, Any]:
    """``--into-server`` and its options: restore into a server."""
    if args.server or args.database or args.secret_uri or args.container_url or args.prefix:
        raise CliError("choose one target: --into-server, database (--server ...) or files (--container-url ...)",
                       EXIT_USAGE)
    target: dict[str, Any] = {"kind": "server", "server_id": args.into_server}
    if args.databases:
        pairs = [p.strip() for p in args.databases.split(",") if p.strip()]
        target["databases"] = [{"source": s, **({"target": t} if t else {})}
                               for s, _, t in (p.partition("=") for p in pairs)]
    for name in ("suffix", "roles", "owner"):
        if getattr(args, name):
            target[name] = getattr(args, name)
    if args.beside_source:
        target["beside_source"] = True
    if args.auth_secret:
        target["auth"] = {"kind": "secret", "secret_uri": args.auth_secret}
    return target


_SERVER_ONLY = ("databases", "suffix", "roles", "owner", "auth_secret")


def _target(args: argparse.Namespace) -> dict[str, Any]:
    """The database target (``--server`` ...), the files target (``--container-url`` ...) or a server target
    (``--into-server`` ...), exactly one."""
    if getattr(args, "into_server", None):
        return _server_target(args)
    stray = [f"--{n.replace('_', '-')}" for n in _SERVER_ONLY if getattr(args, n, None)]
    if stray:
        raise CliError(f"{', '.join(stray)} belong to --into-server", EXIT_USAGE)
    if args.server or args.database or args.secret_uri:
        return _database_target(args)
    if args.container_url or args.prefix:
        return _files_target(args)
    raise CliError("no target: give --server + --database + --secret-uri (restore as database), "
                   "--container-url + --prefix (restore as files) or --into-server (restore into a server)",
                   EXIT_USAGE)


def _database_target(args: argparse.Namespace) -> dict[str, Any]:
    if not (args.server and args.database and args.secret_uri):
        raise CliError("a database target needs all of --server, --database and --secret-uri", EXIT_USAGE)
    if args.container_url or args.prefix:
        raise CliError("choose one target: database (--server ...) or files (--container-url ...)", EXIT_USAGE)
    target = {"kind": "database", "server_id": args.server, "database_name": args.database,
              "secret_uri": args.secret_uri}
    if getattr(args, "beside_source", False):
        target["beside_source"] = True
    return target


def _files_target(args: argparse.Namespace) -> dict[str, Any]:
    if not (args.container_url and args.prefix):
        raise CliError("a files target needs both --container-url and --prefix", EXIT_USAGE)
    if getattr(args, "beside_source", False):
        raise CliError("--beside-source belongs to a database target or --into-server", EXIT_USAGE)
    target = {"kind": "files", "container_url": args.container_url, "file_prefix": args.prefix}
    if args.container_id:
        target["container_id"] = args.container_id
    return target


# ------------------------------------------------------------------------------------------------------ commands
def _now() -> datetime:
    return datetime.now(UTC)


def _emit_json(value: Any, out: TextIO) -> None:
    out.write(json.dumps(value, indent=2, sort_keys=True) + "\n")


def cmd_start(client: ApiClient, args: argparse.Namespace, out: TextIO, stdin: TextIO,
              stages: Callable[[], Stages] = Stages) -> int:
    """``--wait``: then follow the restore to its end, with ``watch``'s exit code (0 only when it succeeded)."""
    result = client.start(build_request(args, stdin))
    if args.as_json:
        _emit_json(result, out)
    elif result.get("created") is False:  # the API answered 200: this idempotency key already has a restore
        out.write(f"existing restore {result.get('id')} returned (status {result.get('status')}): this idempotency "
                  f"key was used before, nothing new was started\n"
                  f"  follow it: restorectl watch {result.get('id')}\n")
    else:
        out.write(f"accepted {result.get('id')} (status {result.get('status')})\n"
                  + ("" if args.wait else f"  follow it: restorectl watch {result.get('id')}\n"))
    if args.wait and result.get("id"):
        out.flush()
        return watch(client, [str(result["id"])], out, interval=args.interval, tty=out.isatty(), stages=stages())
    return EXIT_OK


def describe_plan(result: Mapping[str, Any]) -> str:
    """A preview for people: the plan, or the refusal with its fix."""
    if not result.get("would_start"):
        err = result.get("error") or {}
        lines = [f"would NOT start: {err.get('code')}: {err.get('message')}", f"  fix: {err.get('fix')}"]
        if result.get("guards_passed"):
            lines.append(f"  passed before that: {', '.join(result['guards_passed'])}")
        return "\n".join(lines) + "\n"
    point, gap, rh = result.get("recovery_point") or {}, result.get("data_loss") or {}, result.get("rehydration") or {}
    req = result.get("azure_request") or {}
    lines = ["would start:",
             f"  recovery point {point.get('id')} of {point.get('time')} ({point.get('tier')} tier, "
             f"{point.get('state')})",
             f"  data-loss gap  {gap.get('text')} before {gap.get('to_what')} ({gap.get('to')})",
             "  rehydration    " + (f"needed, {rh.get('priority')}: {rh.get('expected_window')}" if rh.get("needed")
                                    else f"not needed ({rh.get('why')})"),
             f"  restore into   {', '.join(result.get('destinations') or [])} in {result.get('restore_location')}",
             f"  guards passed  {', '.join(result.get('guards_passed') or [])}",
             f"  Azure request  {req.get('method')} {req.get('path')}"]
    lines += [f"  WARNING {w.get('code')}: {w.get('message')}" for w in result.get("warnings") or []]
    return "\n".join(lines) + "\n"


def cmd_plan(client: ApiClient, args: argparse.Namespace, out: TextIO, stdin: TextIO) -> int:
    result = client.preview(build_request(args, stdin)) or {}
    if args.as_json:
        _emit_json(result, out)
    else:
        out.write(describe_plan(result))
    return EXIT_OK if result.get("would_start") else EXIT_FAILED


def cmd_show(client: ApiClient, args: argparse.Namespace, out: TextIO, stages: Callable[[], Stages]) -> int:
    """Exit 1 for a restore that failed, was rejected or cancelled (as ``watch``): scripts can test it."""
    item = client.get(args.id)
    if args.as_json:
        _emit_json(item, out)
    else:
        known = stages()
        out.write(describe(item, _now(), known) + "\n")
    status = item.get("status") if isinstance(item, dict) else None
    return EXIT_FAILED if status in TERMINAL and status != "succeeded" else EXIT_OK


def utc_time(value: str | None, flag: str) -> str | None:
    """``value`` (ISO-8601, any zone; without a zone: UTC) as ``...Z`` in UTC, the form the API's day partitions use."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        parsed = parsed.replace(tzinfo=parsed.tzinfo or UTC).astimezone(UTC)
    except (ValueError, OverflowError):
        raise CliError(f"{flag} {value!r} is not an ISO-8601 time; give e.g. 2026-11-24T08:00:00Z or "
                       "2026-11-24T09:00:00+01:00", EXIT_USAGE) from None
    return parsed.isoformat().replace("+00:00", "Z")


def cmd_list(client: ApiClient, args: argparse.Namespace, out: TextIO, stages: Callable[[], Stages]) -> int:
    since = utc_time(args.since, "--since")
    known = Stages() if args.as_json else stages()
    filters = {"until": utc_time(args.until, "--until"), "source": args.source, "target": args.target,
               "region": args.region, "started_by": args.started_by}
    items = client.list_all(status=args.status, since=since, limit=args.limit, **filters)
    if args.as_json:
        _emit_json(items, out)
    else:
        out.write(table(items, _now(), known) + "\n" if items else "no restores\n")
    return EXIT_OK


def cmd_cancel(client: ApiClient, args: argparse.Namespace, out: TextIO) -> int:
    item = client.cancel(args.id)
    if args.as_json:
        _emit_json(item, out)
    else:
        out.write(f"{args.id}: {item.get('status') if isinstance(item, dict) else 'cancel requested'}\n")
    return EXIT_OK


def cmd_redrive(client: ApiClient, args: argparse.Namespace, out: TextIO) -> int:
    item = client.redrive(args.id)
    if args.as_json:
        _emit_json(item, out)
    else:
        out.write(f"{args.id}: {item.get('stage')} message sent again (attempt {item.get('attempt')}); follow it with "
                  f"`restorectl watch {args.id}`\n")
    return EXIT_OK


def watch(client: ApiClient, ids: Sequence[str], out: TextIO, *, interval: float = 1.0, tty: bool = False,
          sleep: Callable[[float], None] = time.sleep, max_rounds: int | None = None,
          stages: Stages = Stages()) -> int:
    """Poll until every watched restore is terminal. Without ids: every restore active at some refresh.

    On a TTY the table is redrawn in place; otherwise one line is printed per change. Returns 0 when all
    watched restores succeeded, else 1.
    """
    seen: dict[str, dict[str, Any]] = {}
    printed: dict[str, tuple[str, ...]] = {}
    rounds = 0
    while True:
        rounds += 1
        _refresh(client, ids, seen)
        if not seen:
            out.write("no active restores to watch\n")
            return EXIT_OK
        items = list(seen.values())
        _show_round(out, items, _now(), stages, printed if not tty else None)
        if all(i.get("status") in TERMINAL for i in items):
            return _report_end(out, items)
        if max_rounds is not None and rounds >= max_rounds:
            return EXIT_FAILED
        sleep(interval)


def _refresh(client: ApiClient, ids: Sequence[str], seen: dict[str, dict[str, Any]]) -> None:
    """Re-read the watched restores into ``seen``: ``ids``, or every restore seen before or active now."""
    if ids:
        for rid in ids:
            seen[rid] = client.get(rid)
        return
    for item in client.list_all():
        if item.get("id") in seen or item.get("status") not in TERMINAL:
            seen[str(item.get("id"))] = item


def _show_round(out: TextIO, items: list[dict[str, Any]], now: datetime, stages: Stages,
                printed: dict[str, tuple[str, ...]] | None) -> None:
    """Redraw the table (``printed`` None: a TTY), or print one line per restore that changed since ``printed``."""
    if printed is None:
        out.write("\x1b[H\x1b[2J" + f"restorectl watch  {now:%H:%M:%S}Z  (Ctrl-C to stop)\n\n"
                  + table(items, now, stages) + "\n")
    else:
        for item in items:
            key = (str(item.get("status")), str(item.get("stage")), str(item.get("azure_job_id")),
                   str(item.get("next_check_at")))
            if printed.get(str(item.get("id"))) != key:
                printed[str(item.get("id"))] = key
                out.write(f"{now:%H:%M:%S}Z  " + "  ".join(row(item, now, stages)) + "\n")
    out.flush()


def _report_end(out: TextIO, items: list[dict[str, Any]]) -> int:
    failed = [i.get("id") for i in items if i.get("status") != "succeeded"]
    out.write(f"all {len(items)} restore(s) ended" + (f"; not succeeded: {', '.join(map(str, failed))}"
                                                       if failed else "") + "\n")
    return EXIT_FAILED if failed else EXIT_OK


# ------------------------------------------------------------------------------------------------------ main
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="restorectl", description="Start, follow and cancel restores through the "
                                "restore status API (local stack: `make up` first).")
    _connection_args(p, top=True)
    p.add_argument("--json", dest="as_json", action="store_true", help="print raw JSON")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("start", help="request a restore")
    _request_args(s)
    s.add_argument("--wait", action="store_true", help="follow the restore to its end (exit code as watch)")
    s.add_argument("--interval", type=float, default=1.0, help="with --wait: seconds between refreshes (default 1)")
    pl = sub.add_parser("plan", help="preview a restore (dry run: every check, nothing started)")
    _request_args(pl)
    pl.add_argument("--output-json", dest="as_json", action="store_true", default=argparse.SUPPRESS,
                    help="print the preview's raw JSON")

    sh = sub.add_parser("show", help="show one restore with its timeline")
    sh.add_argument("id")
    li = sub.add_parser("list", help="list restores")
    for command in (sh, li):
        command.add_argument("--json", dest="as_json", action="store_true", default=argparse.SUPPRESS,
                             help="print raw JSON")
    li.add_argument("--status", help="only this status (e.g. restoring)")
    li.add_argument("--since", help="created at or after this ISO time (any zone; without one: UTC)")
    li.add_argument("--limit", type=int, help="at most this many")
    li.add_argument("--until", help="created at or before this ISO time")
    li.add_argument("--source", help="source server/database/backup instance contains this text")
    li.add_argument("--target", help="target server/database/container/prefix contains this text")
    li.add_argument("--region", help="primary, secondary or a region name")
    li.add_argument("--started-by", choices=("http", "queue", "alert", "drill"),
                    help="the door it came in by")
    w = sub.add_parser("watch", help="live table until the restores end (Ctrl-C stops)")
    w.add_argument("ids", nargs="*", metavar="ID", help="restores to watch (default: all active ones)")
    w.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes (default 1)")
    c = sub.add_parser("cancel", help="cancel a restore (only before the Azure restore is triggered)")
    c.add_argument("id")
    c.add_argument("--json", dest="as_json", action="store_true", default=argparse.SUPPRESS, help="print raw JSON")
    rd = sub.add_parser("redrive", help="send an active restore's current stage message again (lost or poisoned)")
    rd.add_argument("id")
    rd.add_argument("--json", dest="as_json", action="store_true", default=argparse.SUPPRESS, help="print raw JSON")
    browse_commands = restorectl_browse.add_commands(sub)
    drill_commands = restorectl_drills.add_commands(sub)
    for command in (s, pl, sh, li, w, c, rd, *browse_commands, *drill_commands):
        _connection_args(command, top=False)
    return p


def _request_args(s: argparse.ArgumentParser) -> None:
    """The flags of a restore request (start and plan take the same)."""
    s.add_argument("--json", dest="json_file", metavar="FILE|-", help="restore request JSON (- for stdin)")
    s.add_argument("--backup-instance", help="backup instance ARM id")
    s.add_argument("--vault", help="vault ARM id (with --datasource, instead of --backup-instance)")
    s.add_argument("--datasource", help="protected database/server ARM id")
    s.add_argument("--recovery-point", help="recovery point id, or 'latest' (default)")
    s.add_argument("--before", help="latest recovery point before this ISO time, e.g. 2026-11-24T08:00:00Z")
    s.add_argument("--server", help="database target: target server ARM id")
    s.add_argument("--database", help="database target: new database name")
    s.add_argument("--secret-uri", help="database target: Key Vault secret URI of the target connection string")
    s.add_argument("--container-url", help="files target: https://ACCOUNT.blob.core.windows.net/CONTAINER")
    s.add_argument("--container-id", help="files target: container ARM id (optional)")
    s.add_argument("--prefix", help="files target: file name prefix")
    s.add_argument("--into-server", metavar="FLEXIBLE_SERVER_ID",
                   help="restore into a server: target Flexible Server ARM id (the service replays the vault's files)")
    s.add_argument("--databases", metavar="SRC[=NEW],...",
                   help="into a server: source databases and optional new names (default: all, with the suffix)")
    s.add_argument("--suffix", help="into a server: suffix of new database names (default _restored)")
    s.add_argument("--roles", choices=("skip", "clean"), help="into a server: restore the point's roles cleaned")
    s.add_argument("--owner", help="into a server: role that owns the restored objects")
    s.add_argument("--beside-source", action="store_true",
                   help="database or into a server: allow new databases on a protected server such as the source "
                        "server itself (never over a source database)")
    s.add_argument("--auth-secret", metavar="SECRET_URI",
                   help="into a server: connect with this Key Vault secret (default: Microsoft Entra)")
    s.add_argument("--region", choices=("primary", "secondary"))
    s.add_argument("--priority", choices=("Standard", "High"), help="rehydration priority for archived points")
    s.add_argument("--retention-days", type=int, metavar="N",
                   help="archived points: days the rehydrated point stays usable (10-30, Azure's default 15)")
    s.add_argument("--idempotency-key")


def _connection_args(p: argparse.ArgumentParser, *, top: bool) -> None:
    """--url/--key-file/--env-file, accepted before or after the command (a sub-command's copy never resets them).
    ``--key`` is refused: a key on the command line is readable by every local user (ps, /proc, shell history)."""
    p.add_argument("--url", default=None if top else argparse.SUPPRESS,
                   help="API base URL (default: RESTORE_API_URL, then .local/stack.env)")
    p.add_argument("--key-file", type=Path, default=None if top else argparse.SUPPRESS,
                   help="file holding the function key (default: RESTORE_API_KEY, then .local/stack.env)")
    p.add_argument("--key", default=None if top else argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.add_argument("--env-file", type=Path, default=DEFAULT_ENV_FILE if top else argparse.SUPPRESS,
                   help="stack env file (default: .local/stack.env)")


def _dispatch(client: ApiClient, args: argparse.Namespace, out: TextIO, err: TextIO, stdin: TextIO) -> int:
    def stages() -> Stages:  # read once, after the command's own arguments were found valid
        return fetch_stages(client, err)

    if args.command == "start":
        return cmd_start(client, args, out, stdin, stages)
    if args.command == "plan":
        return cmd_plan(client, args, out, stdin)
    if args.command == "cancel":
        return cmd_cancel(client, args, out)
    if args.command == "redrive":
        return cmd_redrive(client, args, out)
    if args.command in restorectl_browse.COMMANDS:
        return restorectl_browse.run(client, args, out)
    if args.command in restorectl_drills.COMMANDS:
        return restorectl_drills.run(client, args, out, stdin)

    if args.command == "show":
        return cmd_show(client, args, out, stages)
    if args.command == "list":
        return cmd_list(client, args, out, stages)
    return watch(client, args.ids, out, interval=args.interval, tty=out.isatty(), stages=stages())


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None,
         stdin: TextIO | None = None, env: Mapping[str, str] | None = None) -> int:
    out, err, stdin = out or sys.stdout, err or sys.stderr, stdin or sys.stdin
    args = parser().parse_args(argv)
    try:
        if getattr(args, "interval", 1.0) <= 0:
            raise CliError("--interval must be > 0 seconds", EXIT_USAGE)
        if args.key is not None:
            raise CliError("--key puts the function key on the command line, where every local user can read it "
                           "(ps, shell history); set RESTORE_API_KEY or pass --key-file FILE instead", EXIT_USAGE)
        env = os.environ if env is None else env
        base, key = resolve_endpoint(args.url, args.key_file, env, args.env_file)
        return _dispatch(ApiClient(base, key, token=env.get("RESTORE_API_TOKEN") or None), args, out, err, stdin)
    except CliError as exc:
        err.write(f"restorectl: {exc}\n")
        return exc.code
    except KeyboardInterrupt:
        err.write("restorectl: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
