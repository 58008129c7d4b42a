"""`make demo`: start the local stack, run real restores end to end, print what happened, stop everything.

Scenarios (demo world, real PostgreSQL, real pg_dump/pg_restore through the Data Protection emulator):
  1. as database from the latest recovery point            4. cross-region into the paired region
  2. as files (Flexible Server dump set) into a container   5. started by an Azure Monitor alert on the intake queue
  3. from an archived point, with rehydration               6. rejected for a missing permission, showing the fix
  7. restore into a server: a Flexible Server point replayed into the Flexible target (Entra, roles cleaned, owner)
  8. restore into a server: a retired Single Server's point into the same target (Key Vault secret, owner)
  9. a restore drill fired by the drill timer: evidence written, its databases dropped after the validation window
Before restoring, the demo writes "post-backup" rows into the source (the change you want to undo); each check
proves the restored data equals the source at the chosen backup's time. Exits non-zero if any check fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from localdev import scenarios as sc
from localdev.apiclient import Api
from localdev.pgcluster import find_bindir
from localdev.stack import DEFAULT_WORLD, REPO, Stack, world_clusters

TERMINAL = {"succeeded", "failed", "rejected", "cancelled"}
BOLD, DIM, GREEN, RED, RESET = ("\033[1m", "\033[2m", "\033[32m", "\033[31m", "\033[0m") if sys.stdout.isatty() \
    else ("", "", "", "", "")


@dataclass
class Run:
    label: str
    expect: str
    restore_id: str | None = None
    seen: int = 0
    final: dict[str, Any] = field(default_factory=dict)
    checks: list[tuple[str, bool, str]] = field(default_factory=list)


def say(text: str) -> None:
    print(text, flush=True)


def batches(dsn: str) -> tuple[set[str], str]:
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        rows = conn.execute("SELECT DISTINCT batch FROM orders").fetchall()
        got = {r[0] for r in rows}
        digest = conn.execute(
            "SELECT md5(string_agg(id || ':' || customer_id || ':' || batch || ':' || amount, ',' ORDER BY id)) "
            "FROM orders WHERE batch = ANY(%s)", (sorted(got),)).fetchone()
        return got, str(digest[0] if digest else "")


def source_digest(dsn: str, wanted: set[str]) -> str:
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        row = conn.execute(
            "SELECT md5(string_agg(id || ':' || customer_id || ':' || batch || ':' || amount, ',' ORDER BY id)) "
            "FROM orders WHERE batch = ANY(%s)", (sorted(wanted),)).fetchone()
        return str(row[0] if row else "")


def dsn_for(env: dict[str, str], cluster: str, db: str) -> str:
    base = env["PGCLUSTER_" + cluster.upper().replace("-", "_") + "_DSN"]
    return base.rsplit("/", 1)[0] + "/" + db


def main() -> int:
    t0 = time.monotonic()
    local = REPO / ".local"
    local.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="demo-", dir=local))
    suffix = uuid.uuid4().hex[:6]
    alert_guid = str(uuid.uuid4())
    plans = sc.alert_plan(database_pattern="salesdb_alert_{alert_short}")
    stack = Stack(workdir, DEFAULT_WORLD, http_port=0, settings_overrides={"RESTORE_PLANS": sc.plans_setting(plans)})
    say(f"{BOLD}Starting the local stack{RESET} (Azurite, {len(world_clusters(DEFAULT_WORLD))} PostgreSQL servers, "
        f"Data Protection emulator with Key Vault, Functions host, replay job runner) in "
        f"{workdir.relative_to(REPO)} ...")
    ok = False
    try:
        env = stack.up()
        say(f"  stack up in {time.monotonic() - t0:.1f}s; API {env['RESTORE_API_URL']}; "
            f"dashboard {env.get('DASHBOARD_URL', '-')}")
        ok = run_scenarios(env, suffix, alert_guid, t0)
    except Exception as exc:  # noqa: BLE001 - report any failure and stop the stack
        say(f"{RED}demo failed: {type(exc).__name__}: {exc}{RESET}")
        logs = workdir / "logs"
        if logs.exists():
            say(f"  logs: {logs}")
            keep = local / "demo-last-logs"
            shutil.rmtree(keep, ignore_errors=True)
            shutil.copytree(logs, keep, dirs_exist_ok=True)
            say(f"  (copied to {keep.relative_to(REPO)})")
    finally:
        say(f"{DIM}stopping the stack ...{RESET}")
        stack.down()
        shutil.rmtree(workdir, ignore_errors=True)
    say(f"{BOLD}{'DEMO OK' if ok else 'DEMO FAILED'}{RESET} in {time.monotonic() - t0:.1f}s")
    return 0 if ok else 1


def run_scenarios(env: dict[str, str], suffix: str, alert_guid: str, t0: float) -> bool:
    api = Api(env["RESTORE_API_URL"], env["RESTORE_API_KEY"])
    write_post_backup_rows(env)
    runs = {
        "latest-db": Run("1 latest → database", "succeeded"),
        "files": Run("2 flexible → files", "succeeded"),
        "archive": Run("3 archived → database", "succeeded"),
        "crr": Run("4 cross-region → database", "succeeded"),
        "alert": Run("5 alert → database", "succeeded"),
        "noperm": Run("6 missing permission", "rejected"),
        "server-flex": Run("7 flexible → into server", "succeeded"),
        "server-legacy": Run("8 single server → into server", "succeeded"),
    }
    drill_id = define_drill(api, suffix)
    start_requests(api, runs, suffix)
    send_alert(env, runs["alert"], alert_guid)
    say(f"\n{BOLD}Live timeline{RESET}")
    follow(api, runs, t0, deadline=time.monotonic() + 150)
    drill_ok = follow_drill(env, api, drill_id)
    return verify(env, runs, suffix, f"salesdb_alert_{alert_guid.replace('-', '')[:8]}") and drill_ok


DRILL_SERVER = sc.TARGET_FLEX.replace("pgflex-target", "pgflex-drills")  # the demo world's drill-only server


def define_drill(api: Api, suffix: str) -> str:
    """9: a restore drill of pgflex01 into the drill-only server, on a daily schedule that fires a few seconds from
    now (the local drill timer ticks every 5 s), with a check, an RTO target and a 15-second validation window."""
    fire = datetime.now(UTC) + timedelta(seconds=8)
    drill_id = f"demo-{suffix}"
    body = {"id": drill_id, "schedule": f"{fire.second} {fire.minute} {fire.hour} * * *", "start_window_minutes": 0,
            "backup_instances": {"ids": [sc.BI_FLEX]}, "recovery_point": {"select": "latest"},
            "target": {"server_id": DRILL_SERVER, "database_suffix": "_drill{run}"},
            "checks": [{"name": "items", "database": "inventory", "sql": "SELECT count(*) FROM items",
                        "expect": "50"}],
            "rto_target_minutes": 10, "validation_window_minutes": 0.25}
    status, created, _ = api.post("/drills", body)
    if status != 201:
        raise RuntimeError(f"POST /drills answered {status}: {created}")
    say(f"  {'9 restore drill':<28} POST /api/drills → 201 {drill_id}, fires at {fire:%H:%M:%S}Z (daily)")
    return drill_id


def _drill_run(api: Api, drill_id: str, done: Any, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, body, _ = api.get(f"/drills/{drill_id}/runs")
        items = (body or {}).get("items") or []
        if items and done(items[0]):
            return dict(items[0])
        time.sleep(0.5)
    return {}


def follow_drill(env: dict[str, str], api: Api, drill_id: str) -> bool:
    """The drill's run: fired by the timer, its evidence document, then its databases dropped after the window."""
    run = _drill_run(api, drill_id, lambda r: r.get("state") in ("validating", "done"), 150)
    result = run.get("result") or {}
    blobs = BlobServiceClient.from_connection_string(env["AZURE_STORAGE_CONNECTION_STRING"])
    doc: dict[str, Any] = {}
    if run.get("evidence_blob"):
        doc = json.loads(blobs.get_container_client("drill-evidence").download_blob(run["evidence_blob"]).readall())
    cleaned = _drill_run(api, drill_id, lambda r: r.get("state") == "done", 90)
    restored = set(doc.get("databases") or [])
    with psycopg.connect(dsn_for(env, "pgflex-drills", "postgres"), connect_timeout=10) as conn:
        left = restored & {r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()}
    rto = doc.get("rto") or {}
    checks = [
        ("fired by the drill timer (not run by hand)", run.get("manual") is False, str(run.get("scheduled_at"))),
        ("restore succeeded and the check passed", result.get("passed") is True, json.dumps(result)[:300]),
        ("evidence document written (write-once container)", bool(doc), str(run.get("evidence_blob"))),
        ("databases dropped after the validation window", bool(restored) and not left
         and (cleaned.get("cleanup") or {}).get("status") == "done", f"left {sorted(left)}"),
    ]
    say(f"\n{BOLD}9 restore drill{RESET}  {drill_id}  restore {run.get('restore_id', '-')}")
    if doc:
        say(f"      evidence {run.get('evidence_blob')}: point {(doc.get('recovery_point') or {}).get('id')} "
            f"RPO {doc.get('rpo_observed_seconds', 0) / 3600:.0f} h, RTO {rto.get('observed_seconds', 0):.1f} s "
            f"(target {rto.get('target_seconds', 0) / 60:.0f} min), databases {sorted(restored)}")
    ok = True
    for name, passed, detail in checks:
        ok &= passed
        mark = f"{GREEN}✔{RESET}" if passed else f"{RED}✘{RESET}"
        say(f"      {mark} {name}" + ("" if passed else f"  ({detail})"))
    return ok


def write_post_backup_rows(env: dict[str, str]) -> None:
    """Rows written after the last backup: the change a restore undoes. And the owner role a DBA prepares on the
    Flexible target for the legacy restore."""
    with psycopg.connect(dsn_for(env, "pgsrv01", "salesdb"), autocommit=True) as conn:
        conn.execute("INSERT INTO orders(customer_id, batch, amount) SELECT 1 + g % 100, 'post-backup', g "
                     "FROM generate_series(1, 25) g")
    with psycopg.connect(dsn_for(env, "pgflex01", "appdb"), autocommit=True) as conn:
        conn.execute("INSERT INTO events(batch) SELECT 'post-backup' FROM generate_series(1, 7)")
    with psycopg.connect(dsn_for(env, "pgflex-target", "postgres"), autocommit=True) as conn:
        conn.execute("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'sales_owner') THEN "
                     "CREATE ROLE sales_owner NOLOGIN; END IF; END $$")
    say("  wrote 25 'post-backup' rows into pgsrv01/salesdb and 7 into pgflex01/appdb (changes made after the last "
        "backup);\n  the DBA created role sales_owner on pgflex-target for the legacy restore\n")


def start_requests(api: Api, runs: dict[str, Run], suffix: str) -> None:
    """POST the scenarios' requests (all but the alert), then the first one again: the same restore answers."""
    requests = {
        "latest-db": sc.as_database(f"salesdb_latest_{suffix}", description="demo: latest point as database"),
        "files": sc.as_files(f"demo-{suffix}-pgflex01", description="demo: Flexible Server as files"),
        "archive": sc.as_database(f"salesdb_archive_{suffix}", recovery_point={"latest_before":
                                  sc.days_ago(100).isoformat()}, description="demo: archived point"),
        "crr": sc.as_database(f"salesdb_dr_{suffix}", server=sc.TARGET_DR, secret=sc.SECRET_DR, region="secondary",
                              description="demo: cross-region restore"),
        "noperm": sc.as_database(f"salesdb_noperm_{suffix}", server=sc.TARGET_NOREADER, secret=sc.SECRET_NOREADER,
                                 description="demo: target without the vault's Reader role"),
        "server-flex": sc.into_server(suffix=f"_demo_{suffix}", roles="clean", owner="app_owner",
                                      checks=[{"name": "items", "database": f"inventory_demo_{suffix}",
                                               "sql": "SELECT count(*) FROM items", "expect": "50"}],
                                      description="demo: Flexible Server point into a server (Entra)"),
        "server-legacy": sc.into_server(bi=sc.BI_SALES, owner="sales_owner",
                                        databases=[{"source": "salesdb", "target": f"salesdb_legacy_{suffix}"}],
                                        auth={"kind": "secret", "secret_uri": sc.SECRET_FLEX_TARGET},
                                        description="demo: retired Single Server point into a Flexible Server"),
    }
    for key, body in requests.items():
        status, resp, _ = api.post("/restores", body, headers={"Idempotency-Key": f"demo-{suffix}-{key}"})
        if status not in (200, 202):
            raise RuntimeError(f"POST /restores for {key} answered {status}: {resp}")
        runs[key].restore_id = resp["id"]
        say(f"  {runs[key].label:<28} POST /api/restores → {status} {resp['id']}")
    # the same request again: same restore, no second one
    status, again, _ = api.post("/restores", requests["latest-db"], headers={"Idempotency-Key":
                                                                             f"demo-{suffix}-latest-db"})
    runs["latest-db"].checks.append(("same Idempotency-Key → same restore", again["id"] == runs["latest-db"]
                                     .restore_id and status == 200, f"{status} {again['id']}"))


def send_alert(env: dict[str, str], run: Run, alert_guid: str) -> None:
    """An alert on the intake queue: the latest point before the alert fired (3 days ago → the 7-day-old backup)."""
    fired = sc.days_ago(3)
    q = QueueClient.from_connection_string(env["AZURE_STORAGE_CONNECTION_STRING"], "restore-requests",
                                           message_encode_policy=TextBase64EncodePolicy())
    q.send_message(json.dumps(sc.alert_payload(alert_guid, fired)))
    say(f"  {run.label:<28} alert {alert_guid[:8]} fired {fired:%Y-%m-%d %H:%M} enqueued on restore-requests")


def follow(api: Api, runs: dict[str, Run], t0: float, deadline: float) -> None:
    """Print each run's new timeline events until every run ended or ``deadline`` (monotonic) passed."""
    while time.monotonic() < deadline:
        if runs["alert"].restore_id is None:
            runs["alert"].restore_id = find_alert_restore(api)
        for run in runs.values():
            if run.restore_id is not None and not run.final:
                poll(api, run, t0)
        if all(r.final for r in runs.values()):
            return
        time.sleep(0.5)


def find_alert_restore(api: Api) -> str | None:
    """The restore the alert started, once intake has recorded it."""
    _, page, _ = api.get("/restores?limit=200")
    found = None
    for item in (page or {}).get("items", []):
        if item.get("source") == "alert":
            found = item["id"]
    return found


def poll(api: Api, run: Run, t0: float) -> None:
    """Read ``run``'s restore once: print its new timeline events, keep it as final when it ended."""
    status, body, _ = api.get(f"/restores/{run.restore_id}")
    if status != 200:
        return
    for ev in body["timeline"][run.seen:]:
        say(f"  {DIM}+{time.monotonic() - t0:5.1f}s{RESET} {run.label:<28} {ev['status']:<11} {ev['message']}")
    run.seen = len(body["timeline"])
    if body["status"] in TERMINAL:
        run.final = body


def verify(env: dict[str, str], runs: dict[str, Run], suffix: str, alert_db: str) -> bool:
    src = dsn_for(env, "pgsrv01", "salesdb")
    all_batches = {"b0", "b1", "b2", "b3", "b4", "b5"}
    expect = {"latest-db": ("pgsrv-restore", f"salesdb_latest_{suffix}", all_batches),
              "archive": ("pgsrv-restore", f"salesdb_archive_{suffix}", {"b0"}),
              "crr": ("pgsrv-dr", f"salesdb_dr_{suffix}", all_batches),
              "alert": ("pgsrv-restore", alert_db, all_batches - {"b5"}),
              "server-legacy": ("pgflex-target", f"salesdb_legacy_{suffix}", all_batches)}
    for key, run in runs.items():
        final = run.final
        run.checks.insert(0, (f"ends {run.expect}", final.get("status") == run.expect,
                              f"status={final.get('status')} error={final.get('error')}"))
        if key in expect and final.get("status") == "succeeded":
            cluster, db, wanted = expect[key]
            try:
                got, digest = batches(dsn_for(env, cluster, db))
                run.checks.append((f"{cluster}/{db} holds exactly the backed-up batches {sorted(wanted)}",
                                   got == wanted, f"found {sorted(got)}"))
                run.checks.append(("rows identical to the source's rows of those batches",
                                   digest == source_digest(src, wanted), digest))
            except psycopg.Error as exc:
                run.checks.append((f"{cluster}/{db} readable", False, str(exc).splitlines()[0]))
    files = runs["files"]
    if files.final.get("status") == "succeeded":
        blobs = BlobServiceClient.from_connection_string(env["AZURE_STORAGE_CONNECTION_STRING"]) \
            .get_container_client(sc.AZURITE_CONTAINER[sc.CONTAINER_WE_URL])
        names = [b.name for b in blobs.list_blobs(name_starts_with=f"demo-{suffix}-")]
        files.checks.append(("dump files in the container", len(names) >= 2, ", ".join(names)))
        dumps = [n for n in names if "appdb" in n]
        if dumps:
            with tempfile.NamedTemporaryFile(suffix=".dump") as fh:
                fh.write(blobs.download_blob(dumps[0]).readall())
                fh.flush()
                res = subprocess.run([str(find_bindir() / "pg_restore"), "--list", fh.name], capture_output=True,
                                     text=True, check=False)
                files.checks.append((f"{dumps[0]} is a valid pg_restore archive with table events",
                                     res.returncode == 0 and "TABLE DATA public events" in res.stdout,
                                     res.stderr.strip()[:200]))
    check_server_restores(env, runs, suffix)
    noperm = runs["noperm"].final
    err = noperm.get("error") or {}
    runs["noperm"].checks.append(("Azure error code UserErrorMSIMissingPermissions",
                                  err.get("code") == "UserErrorMSIMissingPermissions", str(err.get("code"))))
    runs["noperm"].checks.append(("fix is the exact az role assignment command",
                                  "az role assignment create" in str(err.get("fix")) and sc.TARGET_NOREADER in
                                  str(err.get("fix")), ""))
    say(f"\n{BOLD}Results{RESET}")
    ok = True
    for run in runs.values():
        f = run.final
        rp = f.get("recovery_point") or {}
        say(f"  {BOLD}{run.label}{RESET}  {f.get('status', 'NOT FINISHED')}  restore {run.restore_id}  "
            f"point {rp.get('id', '-')} ({rp.get('tier', '-')}, {rp.get('time', '-')})  job "
            f"{(f.get('azure_job_id') or '-').rsplit('/', 1)[-1]}")
        for name, passed, detail in run.checks:
            ok &= passed
            mark = f"{GREEN}✔{RESET}" if passed else f"{RED}✘{RESET}"
            say(f"      {mark} {name}" + ("" if passed else f"  ({detail})"))
        if run.label.startswith("6") and f.get("error"):
            say(f"      {DIM}error:{RESET} {f['error']['message']}")
            say(f"      {DIM}fix:{RESET}   {f['error']['fix']}")
    return ok


def _rows(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        return conn.execute(sql).fetchall()


def check_server_restores(env: dict[str, str], runs: dict[str, Run], suffix: str) -> None:
    """7 and 8: the data equals the source's at backup time, the owner is the requested role, roles were cleaned,
    the staged files are gone, verify passed."""
    events = "SELECT md5(string_agg(id || ':' || batch, ',' ORDER BY id)) FROM events WHERE batch IN ('f1', 'f2')"
    flex, legacy = runs["server-flex"], runs["server-legacy"]
    if flex.final.get("status") == "succeeded":
        db = dsn_for(env, "pgflex-target", f"appdb_demo_{suffix}")
        flex.checks.append(("appdb_demo holds exactly the backed-up events (f1, f2), identical to the source's rows",
                            _rows(db, "SELECT DISTINCT batch FROM events ORDER BY 1") == [("f1",), ("f2",)]
                            and _rows(db, events) == _rows(dsn_for(env, "pgflex01", "appdb"), events), ""))
        owners = _rows(db, "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")
        flex.checks.append(("every restored table is owned by app_owner", owners == [("app_owner",)], str(owners)))
        roles = (flex.final.get("server") or {}).get("replay", {}).get("roles", {})
        dropped = {d["name"] for d in roles.get("dropped", [])}
        flex.checks.append(("roles cleaned: azure_pg_admin, azuresu, replication, postgres left out",
                            {"azure_pg_admin", "azuresu", "replication", "postgres"} <= dropped, str(sorted(dropped))))
        target = dsn_for(env, "pgflex-target", "postgres")
        supers = _rows(target, "SELECT rolname FROM pg_roles WHERE rolsuper AND rolname IN ('app_owner', 'app_reader')")
        flex.checks.append(("the point's roles exist on the target, none of them superuser",
                            not supers and len(_rows(target, "SELECT 1 FROM pg_roles WHERE rolname IN "
                                                             "('app_owner', 'app_reader')")) == 2, str(supers)))
    for run in (flex, legacy):
        server = run.final.get("server") or {}
        if run.final.get("status") == "succeeded":
            run.checks.append(("verified (objects, row counts, checks) and staged files deleted",
                               server.get("verify", {}).get("passed") is True
                               and server.get("staging", {}).get("kept") is False, json.dumps(server.get("staging"))))
    if legacy.final.get("status") == "succeeded":
        db = dsn_for(env, "pgflex-target", f"salesdb_legacy_{suffix}")
        owners = _rows(db, "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")
        legacy.checks.append(("every restored table is owned by sales_owner", owners == [("sales_owner",)],
                              str(owners)))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
