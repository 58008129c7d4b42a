"""restorectl commands to browse before restoring (part of :mod:`localdev.restorectl`; stdlib only).

- ``restorectl instances [--vault ID] [--datasource ID]``: ``GET /api/backup-instances``: the backup instances of the
  configured vaults, of one vault, or protecting a server or database;
- ``restorectl points INSTANCE [--vault ID] [--since T] [--until T] [--region primary|secondary] [--limit N]``:
  ``GET /api/backup-instances/{name}/recovery-points``, newest first, times in UTC. INSTANCE is a backup instance
  name or its full ARM id (which names the vault too).

``--json`` prints the API's answer, whose items carry ``restore_request``: the body to restore that point (fill in
the ``fill_in`` fields and send it with ``restorectl start --json FILE``). ``--request ID`` (points) prints only the
request of one point.
"""

from __future__ import annotations

import argparse
import json
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from localdev.restorectl import ApiClient

COMMANDS = ("instances", "points")
_BI_ID = re.compile(r"^(?P<vault>/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.DataProtection/"
                    r"backupVaults/[^/]+)/backupInstances/(?P<name>[^/]+)$", re.IGNORECASE)


def add_commands(sub: Any) -> list[argparse.ArgumentParser]:
    i = sub.add_parser("instances", help="list backup instances (configured vaults, --vault, or --datasource)")
    i.add_argument("--vault", help="a Backup vault ARM id (default: the service's RESTORE_VAULTS)")
    i.add_argument("--datasource", help="a server or database ARM id: the instances protecting it, in any vault")
    p = sub.add_parser("points", help="recovery points of a backup instance, newest first")
    p.add_argument("instance", help="backup instance name, or its ARM id")
    p.add_argument("--vault", help="the vault ARM id (when the name is not unique, or not in RESTORE_VAULTS)")
    p.add_argument("--since", help="points at or after this ISO time (without a zone: UTC)")
    p.add_argument("--until", help="points at or before this ISO time, e.g. the incident: 2026-11-24T10:30:00Z")
    p.add_argument("--region", choices=("primary", "secondary"), help="secondary: the paired region's points (CRR)")
    p.add_argument("--limit", type=int, help="at most this many (default: all in the window)")
    p.add_argument("--request", metavar="POINT_ID", help="print only the restore request of this point")
    for command in (i, p):
        command.add_argument("--json", dest="as_json", action="store_true", default=argparse.SUPPRESS,
                             help="print raw JSON")
    return [i, p]


def run(client: ApiClient, args: argparse.Namespace, out: TextIO) -> int:
    if args.command == "instances":
        return cmd_instances(client, args, out)
    return cmd_points(client, args, out)


def _table(header: Sequence[str], rows: list[tuple[str, ...]]) -> str:
    all_rows = [tuple(header), *rows]
    widths = [max(len(r[c]) for r in all_rows) for c in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
                     for r in all_rows)


def cmd_instances(client: ApiClient, args: argparse.Namespace, out: TextIO) -> int:
    body = client.call("GET", "/backup-instances", query={"vault": args.vault, "datasource": args.datasource}) or {}
    if args.as_json:
        out.write(json.dumps(body, indent=2, sort_keys=True) + "\n")
        return 0
    items = body.get("items") or []
    if not items:
        out.write("no backup instances" + (f" protect {args.datasource}" if args.datasource else "") + "\n")
        return 0
    rows = [(str(i.get("name")), str(i.get("vault")), str((i.get("datasource") or {}).get("name")),
             str((i.get("datasource") or {}).get("kind")), str(i.get("protection_state") or "-")) for i in items]
    out.write(_table(("NAME", "VAULT", "DATASOURCE", "KIND", "PROTECTION"), rows) + "\n")
    out.write("recovery points: restorectl points NAME [--until TIME]\n")
    return 0


def _instance(value: str, vault: str | None) -> tuple[str, str | None]:
    """(name, vault id) of a name or a backup instance ARM id."""
    m = _BI_ID.match(value.strip())
    if m:
        return m["name"], vault or m["vault"]
    return value.strip(), vault


def _query(args: argparse.Namespace, vault: str | None, continuation: str | None) -> dict[str, str | None]:
    from localdev.restorectl import utc_time

    return {"vault": vault, "since": utc_time(args.since, "--since"), "until": utc_time(args.until, "--until"),
            "region": args.region, "limit": str(min(args.limit, 200)) if args.limit else "200",
            "continuation": continuation}


def fetch_points(client: ApiClient, args: argparse.Namespace) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from localdev.restorectl import EXIT_USAGE, CliError

    if args.limit is not None and args.limit < 1:
        raise CliError("--limit must be at least 1", EXIT_USAGE)
    name, vault = _instance(args.instance, args.vault)
    path = f"/backup-instances/{urllib.parse.quote(name, safe='')}/recovery-points"
    items: list[dict[str, Any]] = []
    body: dict[str, Any] = {}
    continuation: str | None = None
    while True:
        body = client.call("GET", path, query=_query(args, vault, continuation)) or {}
        items += body.get("items") or []
        continuation = body.get("continuation")
        if not continuation or (args.limit and len(items) >= args.limit):
            return body, items[:args.limit] if args.limit else items


def _short(value: Any) -> str:
    text = str(value or "")
    return text[:16].replace("T", " ") if text else "-"


def _rehydration(p: Mapping[str, Any]) -> str:
    r = p.get("rehydration") or {}
    if not r:
        return "-"
    return f"{r.get('status') or '-'}" + (f" until {_short(r.get('expiry'))}" if r.get("expiry") else "")


def cmd_points(client: ApiClient, args: argparse.Namespace, out: TextIO) -> int:
    from localdev.restorectl import CliError

    body, items = fetch_points(client, args)
    if args.request:
        match = next((p for p in items if p.get("id") == args.request), None)
        if match is None:
            raise CliError(f"no recovery point {args.request} in this window; run `restorectl points "
                           f"{args.instance}` to see the ids")
        out.write(json.dumps(match["restore_request"], indent=2) + "\n")
        out.write(f"# fill in {', '.join(match.get('fill_in') or [])}; then: restorectl start --json FILE\n")
        return 0
    if args.as_json:
        out.write(json.dumps({**body, "items": items, "continuation": None}, indent=2, sort_keys=True) + "\n")
        return 0
    where = f"{body.get('region')} region ({body.get('location')})"
    if not items:
        out.write(f"no recovery points in {where} in this window\n")
        return 0
    rows = [(str(p.get("id")), _short(p.get("time")), str(p.get("tier")), str(p.get("state") or "-"),
             _rehydration(p), str(p.get("note") or "")) for p in items]
    out.write(f"{(body.get('backup_instance') or {}).get('name')}: {len(items)} point(s) in the {where}, newest "
              "first, times in UTC\n")
    out.write(_table(("POINT", "TIME (UTC)", "TIER", "STATE", "REHYDRATION", "NOTE"), rows) + "\n")
    if body.get("note"):
        out.write(f"note: {body['note']}\n")
    out.write(f"restore one: restorectl points {args.instance} --request POINT > req.json; fill in the target; "
              "restorectl start --json req.json\n")
    return 0
