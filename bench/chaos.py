"""`make chaos`: the fault campaign — nothing is lost or doubled under at-least-once delivery, crashes and ARM faults.

``python -m bench.chaos [--restores 200] [--kills 20] [--seed N] [--time-scale 300] [--fault-rate 0.15]
[--deadline-minutes 20] [--dir DIR] [--out bench/results]``

What it does, on a fresh local stack (real Azurite, PostgreSQL clusters, the Data Protection emulator and the local
Functions host running the unchanged ``function_app.py``) in ``.local/chaos-<time>/``:

1. Functions host settings: ``FUNCHOST_DUPLICATE_DELIVERY=1`` (every processed stage message is delivered a second
   time), ``FUNCHOST_LEASE_SECONDS=5`` (a message in flight when the host is SIGKILLed reappears after 5 s; the
   app's ``RESTORE_MESSAGE_IN_FLIGHT_SECONDS`` is set to the same, it bounds the watchdog's re-drive slack), and the
   pipeline's timing set to the Azure defaults divided by the emulator time scale S (so the number of ARM calls
   per restore means what it would in Azure): ``RESTORE_POLL_MIN_SECONDS`` 30/S, ``RESTORE_POLL_MAX_SECONDS``
   300/S, ``RESTORE_TRIGGER_GRACE_SECONDS`` 660/S. The watchdog runs every second (Azure: every minute; 60/S would
   be below the timer's one-second resolution). ``RESTORE_DEADLINE_HOURS`` = ``--deadline-minutes`` (real time,
   default 20) so the run can reach every deadline.
2. Emulator: ``time_scale`` S (default 300: a 15-minute restore job takes 3 s, a High rehydration 12 s, a Standard
   one 2 min); ``page_size`` 50 (the demo world's 2 would make every job listing hundreds of pages — not what ARM
   does); faults by probability on every operation (``*``) summing to ``--fault-rate`` (default 15%):
   throttle 429 with Retry-After 1 s (30% of it), error503 (20%), drop (15%), lost_500 (15%), lost_drop (20%).
   The emulator draws its own random numbers, so fault placement is not reproducible by ``--seed``; the restore
   mix and the kill schedule are.
3. Fleet: ``--restores`` requests (50% restore as database, 20% as files from the Flexible Server, 20%
   cross-region to the paired region, 10% from an archived point with rehydration, half High half Standard),
   submitted through ``POST /api/restores`` at about two per second. Each carries an ``Idempotency-Key``; a POST
   that fails because the host is down (or whose answer is lost) is repeated with the same key until it is
   answered, so one request = one restore.
4. Crashes: for as long as restores are active, the host is SIGKILLed at random moments (1.5–6 s apart) and
   restarted (``Stack.kill_host()`` + ``Stack.start_host()``); the run needs at least ``--kills`` of them.
5. Then faults are cleared and the run waits until every restore is terminal or its deadline (+ 2 watchdog ticks)
   has passed.

Verdict (``bench/results/chaos.json`` and ``chaos.md``). Must be 0, else exit status 1:
- ``lost``: accepted (202) but the status API does not know it, or not terminal by its deadline;
- ``triggered_more_than_once``: targets with more than one restore job in the emulator's job lists (the primary
  vault's ``backupJobs`` plus ``fetchCrossRegionRestoreJobs`` in the secondary region; the jobs are ARM's truth);
- ``not_terminal_by_deadline``: restores still active after their deadline passed;
- ``poison_unrecorded``: messages in a ``-poison`` queue whose restore is not terminal with a recorded reason;
- ``succeeded_with_wrong_data``: a succeeded restore whose target does not hold its recovery point's data (the
  ``orders`` batches of that point in the new database; the dump set's blobs for files).
Also reported: outcome counts and failure reasons, restores whose row has a job but ARM has none (or the other way
round), kills and restarts, faults fired per mode, ARM calls by status, duplicate completion events, duration.
Exit status 2 when the campaign could not do what was asked (fewer kills than ``--kills``, stack failed).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import random
import re
import sys
import threading
import time
import traceback
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from azure.core.exceptions import ResourceNotFoundError
from azure.mgmt.dataprotection import DataProtectionMgmtClient
from azure.mgmt.dataprotection.models import CrossRegionRestoreJobsRequest
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

from localdev import scenarios as sc
from localdev.apiclient import Api
from localdev.dpemu.admin import EmulatorAdmin
from localdev.stack import DEFAULT_WORLD, REPO, Stack
from restore_core.dp_client import StaticTokenCredential

TERMINAL = {"succeeded", "failed", "rejected", "cancelled"}
STAGE_QUEUES = ("restore-requests", "restore-validate", "restore-rehydrate", "restore-wait", "restore-trigger",
                "restore-monitor")
FAULT_MIX = (("throttle", 0.30), ("error503", 0.20), ("drop", 0.15), ("lost_500", 0.15), ("lost_drop", 0.20))
KIND_MIX = (("database", 0.5), ("files", 0.2), ("cross_region", 0.2), ("archive", 0.1))
ALL_BATCHES = {"b0", "b1", "b2", "b3", "b4", "b5"}  # demo world: rows seeded before each recovery point
ARCHIVED_BATCHES = {"b0"}  # the archived point (-P120D) holds only the first batch
AZURE_POLL_MIN, AZURE_POLL_MAX, AZURE_TRIGGER_GRACE = 30.0, 300.0, 660.0


def say(text: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {text}", flush=True)


@dataclass
class Planned:
    index: int
    kind: str
    body: dict[str, Any]
    destination: str  # the substring that identifies this restore's target in a job's recoveryDestination
    key: str
    restore_id: str | None = None
    accepted_at: float | None = None
    post_attempts: int = 0
    post_statuses: list[int] = field(default_factory=list)
    final: dict[str, Any] = field(default_factory=dict)


def plan_fleet(n: int, rng: random.Random, tag: str) -> list[Planned]:
    kinds = [k for k, _ in KIND_MIX]
    weights = [w for _, w in KIND_MIX]
    fleet = []
    for i in range(n):
        kind = rng.choices(kinds, weights)[0]
        name = f"cx{tag}_{i:03d}"
        if kind == "database":
            body = sc.as_database(name)
            dest = f"{sc.TARGET_SERVER}/databases/{name}"
        elif kind == "files":
            prefix = name.replace("_", "-")
            body = sc.as_files(prefix)
            dest = f"{sc.CONTAINER_WE_URL}/{prefix}"
        elif kind == "cross_region":
            body = sc.as_database(name, server=sc.TARGET_DR, secret=sc.SECRET_DR, region="secondary")
            dest = f"{sc.TARGET_DR}/databases/{name}"
        else:
            priority = "High" if i % 2 == 0 else "Standard"
            body = sc.as_database(name, recovery_point={"latest_before": sc.days_ago(100).isoformat()},
                                  rehydration={"priority": priority, "retention_days": 10})
            dest = f"{sc.TARGET_SERVER}/databases/{name}"
        fleet.append(Planned(i, kind, body, dest, key=f"chaos-{tag}-{i:03d}"))
    return fleet


class Campaign:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.tag = f"{args.seed % 1000:03d}{uuid.uuid4().hex[:4]}"
        self.fleet = plan_fleet(args.restores, self.rng, self.tag)
        scale = float(args.time_scale)
        self.settings = {
            "FUNCHOST_DUPLICATE_DELIVERY": "1",
            "FUNCHOST_LEASE_SECONDS": "5",
            "RESTORE_MESSAGE_IN_FLIGHT_SECONDS": "5",  # = FUNCHOST_LEASE_SECONDS: the watchdog's re-drive slack
            "RESTORE_POLL_MIN_SECONDS": f"{max(AZURE_POLL_MIN / scale, 0.05):g}",
            "RESTORE_POLL_MAX_SECONDS": f"{max(AZURE_POLL_MAX / scale, 0.05):g}",
            "RESTORE_TRIGGER_GRACE_SECONDS": f"{AZURE_TRIGGER_GRACE / scale:g}",
            "RESTORE_WATCHDOG_SCHEDULE": "* * * * * *",
            "RESTORE_DEADLINE_HOURS": f"{args.deadline_minutes / 60:g}",
        }
        self.dir = Path(args.dir) if args.dir else REPO / ".local" / f"chaos-{datetime.now():%Y%m%d-%H%M%S}"
        self.stack = Stack(self.dir, DEFAULT_WORLD, http_port=0, settings_overrides=self.settings,
                           time_scale=scale)
        self.stop = threading.Event()
        self.kills: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.api: Api | None = None

    # ------------------------------------------------------------------ helpers
    def admin(self) -> EmulatorAdmin:
        env = self.stack.env
        return EmulatorAdmin(env["DATAPROTECTION_ADMIN_URL"], env["DATAPROTECTION_TOKEN"],
                             env["DATAPROTECTION_CA_BUNDLE"])

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
             ) -> tuple[int, Any, dict[str, str]] | None:
        """One API call; None when the host does not answer (down, killed mid-call)."""
        assert self.api is not None
        try:
            return self.api.request(method, path, body, headers)
        except (OSError, http.client.HTTPException):
            return None

    # ------------------------------------------------------------------ phases
    def submit_all(self) -> None:
        for p in self.fleet:
            if self.stop.is_set():
                return
            while not self.stop.is_set():
                p.post_attempts += 1
                got = self.call("POST", "/restores", p.body, {"Idempotency-Key": p.key})
                if got is None or got[0] >= 500:
                    if got is not None:
                        p.post_statuses.append(got[0])
                    time.sleep(0.5)
                    continue
                status, resp, _ = got
                p.post_statuses.append(status)
                if status in (200, 202) and isinstance(resp, dict) and resp.get("id"):
                    if p.restore_id and p.restore_id != resp["id"]:
                        self.errors.append(f"request {p.key} answered with two ids {p.restore_id}, {resp['id']}")
                    p.restore_id = str(resp["id"])
                    p.accepted_at = time.monotonic()
                else:
                    self.errors.append(f"request {p.key} ({p.kind}) answered {status}: {resp}")
                break
            time.sleep(self.rng.uniform(0.2, 0.8))

    def killer(self) -> None:
        while not self.stop.is_set():
            time.sleep(self.rng.uniform(1.5, 6.0))
            if self.stop.is_set():
                return
            t0 = time.monotonic()
            try:
                old = self.stack.host_pid
                self.stack.kill_host()
                killed_at = time.monotonic()
                time.sleep(self.rng.uniform(0.0, 1.5))  # sometimes the host stays down a little
                new = self.stack.start_host()
                self.kills.append({"old_pid": old, "new_pid": new, "down_seconds": round(time.monotonic() - killed_at,
                                                                                         2),
                                   "at": round(t0 - self.t_start, 1)})
                if len(self.kills) % 5 == 0:
                    say(f"  {len(self.kills)} kills so far")
            except Exception as exc:  # noqa: BLE001 - a failed restart is a campaign failure, reported
                self.errors.append(f"host restart failed: {exc}")
                say(f"host restart failed: {exc}")
                with contextlib.suppress(Exception):
                    self.stack.start_host()

    def refresh(self, only_active: bool = True) -> None:
        for p in self.fleet:
            if not p.restore_id or (only_active and p.final.get("status") in TERMINAL):
                continue
            got = self.call("GET", f"/restores/{p.restore_id}")
            if got is not None and got[0] in (200, 404):
                p.final = got[1] if got[0] == 200 and isinstance(got[1], dict) else {"status": "unknown-404"}

    def active(self) -> list[Planned]:
        return [p for p in self.fleet if p.restore_id is None or p.final.get("status") not in TERMINAL]

    def run(self) -> dict[str, Any]:
        say(f"chaos: starting a stack in {self.dir} (time scale {self.args.time_scale}, seed {self.args.seed})")
        self.stack.up()
        self.api = Api(self.stack.env["RESTORE_API_URL"], self.stack.env["RESTORE_API_KEY"])
        adm = self.admin()
        adm.set_config(page_size=50)
        adm.clear_faults()
        rate = self.args.fault_rate
        for mode, share in FAULT_MIX:
            extra = {"retry_after": 1} if mode == "throttle" else {}
            adm.add_fault(mode, "*", probability=round(rate * share, 4), **extra)
        adm.reset_metering()
        self.t_start = time.monotonic()
        say(f"chaos: {len(self.fleet)} restores {dict(Counter(p.kind for p in self.fleet))}, faults on "
            f"{rate:.0%} of ARM calls, duplicate delivery on, killing the host at least {self.args.kills} times")
        submitter = threading.Thread(target=self.submit_all, name="submit", daemon=True)
        killer = threading.Thread(target=self.killer, name="kill", daemon=True)
        submitter.start()
        killer.start()
        last_print = 0.0
        deadline_wait = self.args.deadline_minutes * 60 + 30
        while True:
            time.sleep(2)
            self.refresh()
            active = self.active()
            now = time.monotonic()
            if now - last_print > 15:
                last_print = now
                counts = Counter(p.final.get("status", "not-submitted") for p in self.fleet)
                say(f"  t={now - self.t_start:.0f}s kills={len(self.kills)} {dict(counts)}")
            if not submitter.is_alive() and not active:
                break
            if now - self.t_start > deadline_wait + len(self.fleet):  # every accepted restore is past its deadline
                break
        self.stop.set()
        killer.join(timeout=120)
        submitter.join(timeout=5)
        faults_fired = {f["mode"]: f["fired"] for f in adm.faults()}
        adm.clear_faults()
        metering = adm.metering()
        # the host must be up for the final reads; wait for the watchdog to expire anything past its deadline
        self.wait_deadlines()
        time.sleep(3)  # let late duplicate deliveries run (they must be no-ops)
        self.refresh(only_active=False)
        duration = time.monotonic() - self.t_start
        return self.verdict(adm, faults_fired, metering, duration)

    def wait_deadlines(self) -> None:
        while True:
            active = self.active()
            if not active:
                return
            deadlines = [parse_iso(p.final.get("deadline")) for p in active]
            if any(d is None for d in deadlines):
                return  # not accepted or unknown: reported as lost
            if datetime.now(UTC) > max(d for d in deadlines if d is not None):
                time.sleep(3)  # two watchdog ticks after the last deadline
                self.refresh()
                return
            time.sleep(2)
            self.refresh()

    # ------------------------------------------------------------------ verdict
    def arm_jobs(self, adm: EmulatorAdmin) -> list[dict[str, Any]]:
        env = self.stack.env
        client = DataProtectionMgmtClient(StaticTokenCredential(env["DATAPROTECTION_TOKEN"]), sc.SUB_BACKUP,
                                          base_url=env["DATAPROTECTION_ENDPOINT"],
                                          connection_verify=env["DATAPROTECTION_CA_BUNDLE"])
        jobs = []
        for j in client.jobs.list("rg-backup", "bv-prod"):
            ext = j.properties.extended_info
            jobs.append({"id": j.id, "region": "primary", "operation": j.properties.operation_category,
                         "status": j.properties.status,
                         "destination": (ext.recovery_destination if ext is not None else None) or ""})
        req = CrossRegionRestoreJobsRequest(source_region="westeurope", source_backup_vault_id=sc.VAULT)
        for j in client.fetch_cross_region_restore_jobs.list("rg-backup", "northeurope", req):
            ext = j.properties.extended_info
            jobs.append({"id": j.id, "region": "secondary", "operation": j.properties.operation_category,
                         "status": j.properties.status,
                         "destination": (ext.recovery_destination if ext is not None else None) or ""})
        return jobs

    def poison(self) -> dict[str, list[str]]:
        conn = self.stack.env["AZURE_STORAGE_CONNECTION_STRING"]
        found: dict[str, list[str]] = {}
        for q in STAGE_QUEUES:
            client = QueueClient.from_connection_string(conn, f"{q}-poison")
            bodies: list[str] = []
            try:
                for m in client.receive_messages(messages_per_page=32, visibility_timeout=60):
                    bodies.append(decode_body(m.content))
                    if len(bodies) > 5000:
                        break
            except ResourceNotFoundError:
                pass
            found[q] = bodies
        return found

    def completion_events(self) -> Counter[str]:
        conn = self.stack.env["AZURE_STORAGE_CONNECTION_STRING"]
        client = QueueClient.from_connection_string(conn, "restore-events")
        counts: Counter[str] = Counter()
        seen = 0
        with contextlib.suppress(ResourceNotFoundError):
            for m in client.receive_messages(messages_per_page=32, visibility_timeout=120):
                seen += 1
                with contextlib.suppress(ValueError):
                    ev = json.loads(decode_body(m.content))
                    if ev.get("type") == "restore.completed":
                        counts[str(ev.get("restore_id"))] += 1
                if seen > 20000:
                    break
        return counts

    def data_checks(self) -> list[dict[str, Any]]:
        """Every succeeded restore brought back the data of its recovery point (rows per batch / dump blobs)."""
        env = self.stack.env
        container = BlobServiceClient.from_connection_string(env["AZURE_STORAGE_CONNECTION_STRING"]) \
            .get_container_client(sc.AZURITE_CONTAINER[sc.CONTAINER_WE_URL])
        wrong = []
        for p in self.fleet:
            if p.final.get("status") != "succeeded":
                continue
            target = p.body["target"]
            try:
                if target["kind"] == "files":
                    names = [b.name for b in container.list_blobs(name_starts_with=target["file_prefix"] + "_")]
                    got: Any = sorted(n.removeprefix(target["file_prefix"] + "_") for n in names)
                    ok = {"roles.sql", "schema.sql", "appdb.sql", "inventory.sql"} <= set(got)
                else:
                    cluster = sc.CLUSTER_OF_SERVER[target["server_id"]]
                    base = env["PGCLUSTER_" + cluster.upper().replace("-", "_") + "_DSN"]
                    with psycopg.connect(base.rsplit("/", 1)[0] + "/" + target["database_name"],
                                         connect_timeout=10) as conn:
                        got = sorted(r[0] for r in conn.execute("SELECT DISTINCT batch FROM orders").fetchall())
                    ok = set(got) == (ARCHIVED_BATCHES if p.kind == "archive" else ALL_BATCHES)
            except Exception as exc:  # noqa: BLE001 - a missing database/container is a wrong result, reported
                got, ok = f"{type(exc).__name__}: {str(exc)[:150]}", False
            if not ok:
                wrong.append({"id": p.restore_id, "kind": p.kind, "target": p.destination, "found": got})
        return wrong

    def verdict(self, adm: EmulatorAdmin, faults_fired: dict[str, int], metering: dict[str, Any],
                duration: float) -> dict[str, Any]:
        jobs = [j for j in self.arm_jobs(adm) if f"cx{self.tag}_" in j["destination"]
                or f"cx{self.tag}-" in j["destination"]]
        restore_jobs = [j for j in jobs if (j["operation"] or "Restore") == "Restore"]
        by_dest: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for j in restore_jobs:
            by_dest[j["destination"]].append(j)
        now = datetime.now(UTC)
        lost, late, doubled, mismatched = [], [], [], []
        outcomes: Counter[str] = Counter()
        reasons: Counter[str] = Counter()
        by_kind: dict[str, Counter[str]] = defaultdict(Counter)
        by_id = {p.restore_id: p for p in self.fleet if p.restore_id}
        for p in self.fleet:
            status = p.final.get("status", "never-accepted" if p.restore_id is None else "unknown")
            outcomes[status] += 1
            by_kind[p.kind][status] += 1
            if p.restore_id is None or status == "unknown-404" or status == "unknown":
                lost.append({"key": p.key, "id": p.restore_id, "status": status, "posts": p.post_statuses})
                continue
            if status not in TERMINAL:
                entry = {"id": p.restore_id, "status": status, "stage": p.final.get("stage"),
                         "deadline": p.final.get("deadline")}
                deadline = parse_iso(p.final.get("deadline"))
                (late if deadline is not None and deadline < now else lost).append(entry)
            if status in ("failed", "rejected"):
                err = p.final.get("error") or {}
                reasons[f"{status}: {err.get('code') or '(no code)'}"] += 1
            mine = by_dest.get(p.destination, [])
            if len(mine) > 1:
                doubled.append({"id": p.restore_id, "target": p.destination, "jobs": [j["id"] for j in mine]})
            row_job = p.final.get("azure_job_id")
            arm_ids = {j["id"].rsplit("/", 1)[-1].lower() for j in mine}
            if (row_job and row_job.rsplit("/", 1)[-1].lower() not in arm_ids) or (not row_job and mine) or \
                    (status == "succeeded" and not mine):
                mismatched.append({"id": p.restore_id, "status": status, "row_job": row_job,
                                   "arm_jobs": [j["id"] for j in mine]})
        poison = self.poison()
        poison_rows = []
        poison_unrecorded = []
        for q, bodies in poison.items():
            for b in bodies:
                rid = envelope_restore_id(b)
                p = by_id.get(rid) if rid else None
                st = p.final if p else (self.call("GET", f"/restores/{rid}") or (0, {}, {}))[1] if rid else {}
                st = st if isinstance(st, dict) else {}
                err = st.get("error") or {}
                row = {"queue": f"{q}-poison", "restore_id": rid, "status": st.get("status"),
                       "error_code": err.get("code"), "error_message": (err.get("message") or "")[:200]}
                poison_rows.append(row)
                recorded = st.get("status") in TERMINAL and (st.get("status") == "succeeded" or err.get("code"))
                if q != "restore-requests" and not recorded:
                    poison_unrecorded.append(row)
        events = self.completion_events()
        wrong_data = self.data_checks()
        host_log = host_log_stats(self.stack.logs / "funchost.log")
        dup_events = {rid: n for rid, n in events.items() if rid in by_id and n > 1}
        terminal_ids = [p.restore_id for p in self.fleet if p.final.get("status") in TERMINAL and p.restore_id]
        missing_events = [rid for rid in terminal_ids if events.get(str(rid), 0) == 0
                          and by_id[rid].final.get("status") in ("succeeded", "failed")]
        result = {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "parameters": {"restores": self.args.restores, "kills_requested": self.args.kills, "seed": self.args.seed,
                           "time_scale": self.args.time_scale, "fault_rate": self.args.fault_rate,
                           "fault_mix": dict(FAULT_MIX), "deadline_minutes": self.args.deadline_minutes,
                           "host_settings": self.settings, "emulator_page_size": 50},
            "duration_seconds": round(duration, 1),
            "fleet": dict(Counter(p.kind for p in self.fleet)),
            "must_be_zero": {"lost": len(lost), "triggered_more_than_once": len(doubled),
                             "not_terminal_by_deadline": len(late), "poison_unrecorded": len(poison_unrecorded),
                             "succeeded_with_wrong_data": len(wrong_data)},
            "outcomes": dict(outcomes),
            "outcomes_by_kind": {k: dict(v) for k, v in by_kind.items()},
            "failure_reasons": dict(reasons),
            "kills": len(self.kills),
            "kill_log": self.kills,
            "post_attempts": sum(p.post_attempts for p in self.fleet),
            "posts_repeated": sum(1 for p in self.fleet if p.post_attempts > 1),
            "arm_restore_jobs": len(restore_jobs),
            "arm_jobs_by_status": dict(Counter(j["status"] for j in restore_jobs)),
            "row_vs_arm_job_mismatch": mismatched,
            "faults_fired": faults_fired,
            "fault_share_of_arm_calls": round(sum(faults_fired.values()) / max(int(metering.get("total") or 0), 1), 3),
            "host_log": host_log,
            "arm_calls": {"total": metering.get("total"), "by_status": metering.get("by_status"),
                          "by_kind": metering.get("by_kind")},
            "poison": {q: len(b) for q, b in poison.items()},
            "poison_rows": poison_rows,
            "completion_events_duplicated": len(dup_events),
            "completion_events_duplicated_ids": sorted(dup_events),
            "completion_events_missing": len(missing_events),
            "wrong_data": wrong_data,
            "lost": lost, "doubled": doubled, "late": late, "poison_unrecorded": poison_unrecorded,
            "campaign_errors": self.errors,
        }
        return result


def host_log_stats(path: Path) -> dict[str, Any]:
    """What the host's log says happened: host starts, duplicate/stale stage messages ignored, retried deliveries."""
    stats: Counter[str] = Counter()
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return {}
    for line in lines:
        if "duplicate delivery ON" in line:
            stats["host_starts_with_duplicate_delivery"] += 1
        m = re.search(r"(?:stale or )?duplicate (\w+) message for", line)
        if m:
            stats[f"ignored_duplicate_{m.group(1)}"] += 1
        m = re.search(r" (\w+) of \S+ lost a race to another delivery", line)
        if m:
            stats[f"lost_race_{m.group(1)}"] += 1
        if "will be retried" in line:
            stats["deliveries_failed_and_retried"] += 1
        if "watchdog re-drove" in line:
            stats["watchdog_redrives"] += 1
        if " ERROR " in line:
            stats["error_lines"] += 1
    return dict(sorted(stats.items()))


def parse_iso(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    with contextlib.suppress(ValueError):
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    return None


def decode_body(content: str) -> str:
    with contextlib.suppress(ValueError):
        raw = base64.b64decode(content, validate=True)
        return raw.decode()
    return content


def envelope_restore_id(body: str) -> str | None:
    with contextlib.suppress(ValueError, AttributeError):
        rid = json.loads(body).get("restore_id")
        return str(rid) if rid else None
    return None


def markdown(r: dict[str, Any]) -> str:
    m = r["must_be_zero"]
    p = r["parameters"]
    ok = all(v == 0 for v in m.values())
    lines = [
        "## Fault campaign (`make chaos`)",
        "",
        f"Run {r['when']}: {p['restores']} restores ({', '.join(f'{k} {v}' for k, v in r['fleet'].items())}), "
        f"every stage message delivered twice, host SIGKILLed and restarted {r['kills']} times, ARM faults on "
        f"{p['fault_rate']:.0%} of calls ({', '.join(f'{k} {v:.0%}' for k, v in p['fault_mix'].items())} of them), "
        f"emulator time scale {p['time_scale']:g}, deadline {p['deadline_minutes']} min, seed {p['seed']}. "
        f"Duration {r['duration_seconds']:.0f} s. Verdict: **{'PASS' if ok else 'FAIL'}**.",
        "",
        "| Check | Result | Must be |",
        "|---|---:|---:|",
        f"| Restores lost (accepted, never recorded or never terminal) | {m['lost']} | 0 |",
        f"| Restores triggered more than once (ARM job lists, primary + cross-region) | "
        f"{m['triggered_more_than_once']} | 0 |",
        f"| Restores not terminal by their deadline | {m['not_terminal_by_deadline']} | 0 |",
        f"| Poison messages whose restore has no recorded outcome | {m['poison_unrecorded']} | 0 |",
        f"| Succeeded restores whose target lacks the recovery point's data | {m['succeeded_with_wrong_data']} | 0 |",
        f"| Host kills (SIGKILL + restart) | {r['kills']} | ≥ {p['kills_requested']} |",
        f"| POSTs repeated after a crash (same Idempotency-Key) | {r['posts_repeated']} | — |",
        f"| ARM restore jobs for the fleet | {r['arm_restore_jobs']} | ≤ {p['restores']} |",
        f"| Row/ARM job mismatches | {len(r['row_vs_arm_job_mismatch'])} | — |",
        f"| Duplicate completion events (restore-events) | {r['completion_events_duplicated']} | — |",
        f"| Missing completion events | {r['completion_events_missing']} | — |",
        "",
        "| Outcome | " + " | ".join(r["outcomes_by_kind"]) + " | total |",
        "|---|" + "---:|" * (len(r["outcomes_by_kind"]) + 1),
    ]
    for status in sorted(r["outcomes"]):
        lines.append(f"| {status} | " + " | ".join(str(v.get(status, 0)) for v in r["outcomes_by_kind"].values())
                     + f" | {r['outcomes'][status]} |")
    lines += ["", "Failure reasons: " + (", ".join(f"{k} ×{v}" for k, v in sorted(r["failure_reasons"].items()))
                                         or "none") + ".",
              "Faults fired: " + ", ".join(f"{k} {v}" for k, v in sorted(r["faults_fired"].items())) +
              f" ({r['fault_share_of_arm_calls']:.1%} of {r['arm_calls']['total']} ARM calls); ARM answers by status "
              f"{r['arm_calls']['by_status']} (0 = dropped connection).",
              "Host log: " + ", ".join(f"{k} {v}" for k, v in r["host_log"].items()) + ".",
              "Poison queues: " + (", ".join(f"{q}-poison {n}" for q, n in r["poison"].items() if n) or "all empty")
              + "."]
    for row in r["poison_rows"][:20]:
        lines.append(f"- `{row['queue']}` restore {row['restore_id']}: {row['status']} "
                     f"{row['error_code'] or ''} {row['error_message'][:120]}".rstrip())
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--restores", type=int, default=200)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--time-scale", type=float, default=300.0)
    ap.add_argument("--fault-rate", type=float, default=0.15, help="share of ARM calls that get a fault (0.1-0.2)")
    ap.add_argument("--deadline-minutes", type=float, default=20.0)
    ap.add_argument("--dir", help="stack directory (default .local/chaos-<time>)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results"))
    args = ap.parse_args(argv)
    if args.restores < 1 or args.kills < 0 or not 0 <= args.fault_rate < 1 or args.time_scale <= 0 \
            or args.deadline_minutes <= 0:
        ap.error("--restores >= 1, --kills >= 0, --fault-rate in [0, 1), --time-scale > 0, --deadline-minutes > 0")
    camp = Campaign(args)
    try:
        result = camp.run()
    except Exception:  # noqa: BLE001 - reported with the traceback, exit 2
        traceback.print_exc()
        say(f"chaos: campaign could not run; logs in {camp.stack.logs}")
        return 2
    finally:
        with contextlib.suppress(Exception):
            camp.stack.down()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "chaos.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "chaos.md").write_text(markdown(result))
    print(markdown(result))
    say(f"chaos: results in {out / 'chaos.json'} and {out / 'chaos.md'}")
    if any(result["must_be_zero"].values()):
        return 1
    if result["kills"] < args.kills:
        say(f"chaos: only {result['kills']} kills, {args.kills} requested")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
