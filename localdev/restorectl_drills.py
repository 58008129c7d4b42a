"""restorectl commands for restore drills (part of :mod:`localdev.restorectl`; stdlib only; docs/drills.md).

- ``restorectl drills list``: ``GET /api/drills``;
- ``restorectl drills show ID``: ``GET /api/drills/{id}``;
- ``restorectl drills define FILE|-``: ``PUT /api/drills/{id}`` with the definition (create or replace; the id is the
  file's ``id``);
- ``restorectl drills delete ID``: ``DELETE /api/drills/{id}`` (its runs and their clean-up stay);
- ``restorectl drills run ID``: ``POST /api/drills/{id}/run`` (run now);
- ``restorectl drills runs ID``: ``GET /api/drills/{id}/runs``: each run's state, PASS/FAIL, RTO against the target
  (``OVER`` when it took longer), RPO, checks and clean-up.

``--json`` prints the API's answer.
"""

from __future__ import annotations

import argparse
import json
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from localdev.restorectl import ApiClient

COMMANDS = ("drills",)


def add_commands(sub: Any) -> list[argparse.ArgumentParser]:
    d = sub.add_parser("drills", help="restore drills: define, list, run now, and their runs with evidence")
    d.add_argument("action", choices=("list", "show", "define", "delete", "run", "runs"))
    d.add_argument("target", nargs="?", metavar="ID|FILE", help="drill id (define: definition JSON file, - for stdin)")
    d.add_argument("--json", dest="as_json", action="store_true", default=argparse.SUPPRESS, help="print raw JSON")
    return [d]


def _path(drill_id: str, tail: str = "") -> str:
    return "/drills/" + urllib.parse.quote(drill_id, safe="") + tail


def _minutes(seconds: Any) -> str:
    return "-" if seconds is None else f"{float(seconds) / 60:.1f}m"


def _run_line(r: dict[str, Any]) -> str:
    res = r.get("result") or {}
    verdict = "-" if not res else ("PASS" if res.get("passed") else "FAIL")
    rto = f"{_minutes(res.get('rto_seconds'))}/{_minutes(res.get('rto_target_seconds'))}" if res else "-"
    if res.get("rto_within_target") is False:
        rto += " OVER"
    checks = ", ".join(f"{c.get('name')}={'ok' if c.get('ok') else 'FAILED'}" for c in res.get("checks") or []) or "-"
    cleanup = (r.get("cleanup") or {}).get("status", "-")
    late = f" late {r['late_by_seconds']:.0f}s" if r.get("late_by_seconds") else ""
    return (f"{r.get('scheduled_at')}  {r.get('state'):<10} {verdict:<4} RTO {rto:<18} RPO "
            f"{_minutes(res.get('rpo_seconds')):<8} checks {checks}  clean-up {cleanup}  "
            f"restore {r.get('restore_id') or '-'}{late}" + (f"  error {r['error']}" if r.get("error") else ""))


def _read_definition(target: str, stdin: TextIO) -> dict[str, Any]:
    from localdev.restorectl import EXIT_USAGE, CliError

    try:
        definition = json.loads(stdin.read() if target == "-" else Path(target).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CliError(f"cannot read the definition {target}: {exc}", EXIT_USAGE) from None
    if not isinstance(definition, dict) or not definition.get("id"):
        raise CliError("the definition must be a JSON object with an id", EXIT_USAGE)
    return definition


def _call(client: ApiClient, action: str, target: str, stdin: TextIO) -> Any:
    if action == "define":
        definition = _read_definition(target, stdin)
        return client.call("PUT", _path(str(definition["id"])), definition)
    method, path = {"list": ("GET", "/drills"), "show": ("GET", _path(target)),
                    "delete": ("DELETE", _path(target)), "run": ("POST", _path(target, "/run")),
                    "runs": ("GET", _path(target, "/runs"))}[action]
    return client.call(method, path) or {}


def _print_list(body: dict[str, Any], out: TextIO) -> None:
    for d in body.get("items") or []:
        out.write(f"{d['id']:<24} {'enabled ' if d.get('enabled') else 'disabled'} {d.get('schedule'):<18} "
                  f"next {d.get('next_run_at') or '-'}  target {str(d['target']['server_id']).rsplit('/', 1)[-1]}\n")
    if not body.get("items"):
        out.write("no drills; define one with: restorectl drills define FILE\n")


def run(client: ApiClient, args: argparse.Namespace, out: TextIO, stdin: TextIO) -> int:
    from localdev.restorectl import EXIT_USAGE, CliError

    action, target = args.action, args.target or ""
    if action != "list" and not target:
        raise CliError(f"drills {action} needs " + ("a definition file (or -)" if action == "define" else
                                                     "a drill id"), EXIT_USAGE)
    body = _call(client, action, target, stdin)
    if getattr(args, "as_json", False) or action in ("show", "define"):
        out.write(json.dumps(body, indent=2, sort_keys=True) + "\n")
    elif action == "list":
        _print_list(body, out)
    elif action == "delete":
        out.write(f"drill {target} deleted (its runs, evidence and clean-up stay)\n")
    else:
        items = body.get("items") or []
        out.write("\n".join(_run_line(r) for r in items) + "\n" if items else "no runs yet\n")
    return 0
