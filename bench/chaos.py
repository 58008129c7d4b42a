"""`make chaos`: the fault campaign — nothing is lost, doubled, stuck or failed with a wrong reason under at-least-once
delivery, crashes of several host processes, and ARM faults.

``python -m bench.chaos [--restores 200] [--kills 20] [--hosts 3] [--seed N] [--time-scale 300] [--fault-rate 0.15]
[--answer-fault-rate 0.06] [--job-fail-rate 0.03] [--deadline-minutes 20] [--server-share 0.25] [--replay-kills 3]
[--job-parallelism 3] [--replay-max-per-server 2] [--throughput] [--dir DIR] [--out bench/results]``

What it does, on a fresh local stack (real Azurite, PostgreSQL clusters, the Data Protection emulator) in
``.local/chaos-<time>/``, with ``--hosts`` (default 3) local Functions host processes running the unchanged
``function_app.py`` against the same storage, as the instances of one Function App do:

1. Functions host settings: ``FUNCHOST_DUPLICATE_DELIVERY=1`` (every processed stage message is delivered a second
   time), ``FUNCHOST_LEASE_SECONDS=5`` (a message in flight when its host is SIGKILLed reappears after 5 s instead of
   the real listener's 10 minutes; the app's ``RESTORE_MESSAGE_IN_FLIGHT_SECONDS`` says the same, it bounds the
   watchdog's re-drive slack), and the pipeline's timing set to the Azure defaults divided by the emulator time
   scale S (so the number of ARM calls per restore means what it would in Azure): ``RESTORE_POLL_MIN_SECONDS``
   30/S, ``RESTORE_POLL_MAX_SECONDS`` 300/S, ``RESTORE_TRIGGER_GRACE_SECONDS`` 660/S. The watchdog runs every
   second (Azure: every minute; 60/S would be below the timer's one-second resolution), on one host at a time: the
   hosts share the timer's blob lease. The app folder the hosts run (``<dir>/app``: ``function_app.py`` linked, the
   repository's ``host.json`` plus ``singleton``) sets that lease to the shortest periods the real host accepts
   (``listenerLockPeriod`` and ``listenerLockRecoveryPollingInterval`` 15 s; default 60 s each), so a killed
   lease holder pauses the watchdog for at most about 30 s (measured: ``watchdog``). ``RESTORE_DEADLINE_HOURS`` =
   ``--deadline-minutes`` (real time, default 20) so the run can reach every deadline.
2. Emulator: ``time_scale`` S (default 300: a 15-minute restore job takes 3 s, a High rehydration 12 s, a Standard
   one 2 min); ``page_size`` 50 recovery points (the demo world's 2 would make every listing dozens of pages); jobs
   keep the world's 10 per page, so a job listing (adoption after a lost trigger answer) runs to about 20 pages by
   the end, as in a real vault with hundreds of jobs. Faults, each by probability (the first matching fault that
   fires answers the call):
   - transport faults on every operation (``*``), summing to ``--fault-rate`` (default 15%): throttle 429 with
     Retry-After 1 s (30% of it), error503 (20%), drop (15%), lost_500 (15%), lost_drop (20%). On a trigger POST a
     ``drop`` leaves the outcome unknown to the client while ARM ran nothing: such a restore ends ``failed``
     ``TriggerOutcomeUnknown`` by design, counted as expected when ARM holds no job for it;
   - answer and authentication faults on the reads and status polls the product must survive
     (:data:`READ_OPS`), ``--answer-fault-rate`` per operation (default 6%): ``malformed`` (25% of it), ``html``
     (20%), ``error401`` (25%); ``error403`` (15%) and ``error404`` (15%) only on the job reads and the trigger's
     status poll (:data:`JOB_READ_OPS`: a 403/404 there means "check again", while on a vault or recovery point read
     it is a true refusal). Never on a trigger POST: its unknown outcome ends in ``failed`` ``TriggerOutcomeUnknown``
     by design;
   - expected failures: ``job_fail`` on the trigger operations with ``--job-fail-rate`` (default 3%): ARM's job
     ends Failed with :data:`INJECTED_FAILURE`, and the restore must end ``failed`` with that code.
   The emulator draws its own random numbers, so fault placement is not reproducible by ``--seed``; the restore
   mix and the kill schedule are.
3. Fleet: ``--restores`` requests (50% restore as database, 20% as files from the Flexible Server, 20%
   cross-region to the paired region, 10% from an archived point with rehydration, half High half Standard),
   submitted through ``POST /api/restores`` of a live host picked at random, at about two per second. Each carries
   an ``Idempotency-Key``; a POST that fails because its host is down (or whose answer is lost) is repeated with the
   same key until it is answered, so one request = one restore.
4. Crashes: for as long as restores are active, one host at a time is SIGKILLed at a random moment (1.5–6 s apart),
   the hosts in a random order that kills each once per round, and restarted after 0–1.5 s; the run needs at least
   ``--kills`` kills.
5. Restores into a server (``--server-share``, default 25%: exactly that share of the fleet, restored into the
   Flexible-like ``pgflex-target`` with the point's databases under a per-restore suffix): vault files → staging →
   inventory → replay + verify by the local job runner (``localdev/jobrunner.py``, ``--job-parallelism`` executions
   at once, ``--duplicate-delivery``: every job message is delivered a second time), with
   ``RESTORE_REPLAY_MAX_PER_SERVER`` = ``--replay-max-per-server`` and ``RESTORE_REPLAY_LEASE_SECONDS`` 15 (a killed
   replay's message is back after 27.5 s). The job runner takes part in the kill rounds (SIGKILL of the runner only:
   its executions go on, as replicas outlive the scaler), and ``--replay-kills`` replay executions are SIGKILLed
   with their ``pg_restore`` while it runs (one per restore; :class:`bench.replaycheck.ReplayKiller`).
6. Then faults are cleared and the run waits until every restore is terminal or its deadline (+ 2 watchdog ticks)
   has passed, and until the app's active index is empty (owed completion events are out), at most the re-drive
   slack plus two timer lease periods.

Verdict (``bench/results/chaos.json`` and ``chaos.md``). Correctness rows, else exit status 1:
- ``lost`` = 0: accepted (202) but the status API does not know it, or not terminal by its deadline;
- ``triggered_more_than_once`` = 0: restores with more than one Azure restore job in the emulator's job lists (the
  primary vault's ``backupJobs`` plus ``fetchCrossRegionRestoreJobs`` in the secondary region: ARM's truth);
- ``not_terminal_by_deadline`` = 0 (stuck);
- ``wrong_reason`` = 0: a terminal restore whose outcome is not its Azure job's (succeeded while the job did not
  complete; failed with another code than the job's error; failed, rejected or cancelled with no expected cause:
  only the injected job failure and ``TriggerOutcomeUnknown`` without any Azure job are expected, counted apart);
- ``poison_unrecorded`` = 0: messages in a ``-poison`` queue whose restore is not terminal with a recorded reason;
- ``succeeded_with_wrong_data`` = 0: a succeeded restore whose target does not hold its recovery point's data (the
  ``orders`` batches of that point in the new database; the dump set's blobs for files);
- completion events per restore outcome after deduplication on ``event_id`` = 1, with the outcome's id and status.
- with server restores: 0 replays of one restore at the same time (two runners' sessions on the target overlap, from
  the target server's session log: :mod:`bench.replaycheck` says why that cannot miss one); every server restore
  terminal with the right outcome; the restored databases' rows per table equal the source cluster's (``pgflex01``);
  no database on the target that no terminal restore owns (orphans).
Campaign rows, else exit status 2 (the campaign could not do what was asked): at least ``--kills`` kills, every
host killed at least once; with server restores, at least ``--replay-kills`` replays killed mid-``pg_restore`` and
the job runner killed at least once.

``--throughput``: the same stack and hosts without faults, kills or server restores: ``--restores`` restores as
database submitted at once under the emulator's ARM token bucket (:data:`THROUGHPUT_BUDGET`); reported: restores per
minute from the first acceptance to the last terminal write, and the least time the bucket allows for the calls ARM
accepted. Run it with ``--hosts 1`` and ``--hosts 3``: the ARM budget, not the host count, should bind.

Also reported: duplicate deliveries of completion events (before deduplication),
outcome counts and failure reasons, restores whose row has a job but ARM has none (or the other way round), kills
per host, the watchdog's runs and longest pause, faults fired per mode and operation, ARM calls by status, duration.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient
from azure.mgmt.dataprotection import DataProtectionMgmtClient
from azure.mgmt.dataprotection.models import CrossRegionRestoreJobsRequest
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

from bench import replaycheck as rc
from bench.common import code_version, machine
from localdev import scenarios as sc
from localdev.apiclient import Api
from localdev.dpemu.admin import EmulatorAdmin
from localdev.stack import DEFAULT_WORLD, REPO, Stack, pid_alive, stop_pid
from restore_core.dp_client import StaticTokenCredential
from restore_core.events import event_id

TERMINAL = {"succeeded", "failed", "rejected", "cancelled"}
STAGE_QUEUES = ("restore-requests", "restore-validate", "restore-rehydrate", "restore-wait", "restore-trigger",
                "restore-monitor")
#: transport faults on every operation: (mode, share of --fault-rate)
TRANSPORT_FAULTS = (("throttle", 0.30), ("error503", 0.20), ("drop", 0.15), ("lost_500", 0.15), ("lost_drop", 0.20))
#: reads and status polls whose malformed, HTML or 401 answers the product retries
READ_OPS = ("BackupVaults_Get", "BackupInstances_Get", "RecoveryPoints_List", "RecoveryPoints_Get",
            "FetchSecondaryRecoveryPoints_List", "Jobs_List", "Jobs_Get", "FetchCrossRegionRestoreJob_Get",
            "OperationStatus_Get", "OperationResult_Get")
#: reads of a job we hold the id of, and the status poll of an accepted operation: a 403/404 means "check again"
JOB_READ_OPS = ("Jobs_Get", "FetchCrossRegionRestoreJob_Get", "OperationStatus_Get")
#: answer and authentication faults: (mode, operations, share of --answer-fault-rate)
ANSWER_FAULTS = (("malformed", READ_OPS, 0.25), ("html", READ_OPS, 0.20), ("error401", READ_OPS, 0.25),
                 ("error403", JOB_READ_OPS, 0.15), ("error404", JOB_READ_OPS, 0.15))
TRIGGER_OPS = ("BackupInstances_TriggerRestore", "BackupInstances_TriggerCrossRegionRestore")
INJECTED_FAILURE = "UserErrorChaosInjectedJobFailure"
ARM_SUCCEEDED = {"completed", "succeeded", "completedwithwarnings"}
KIND_MIX = (("database", 0.5), ("files", 0.2), ("cross_region", 0.2), ("archive", 0.1))
#: restores into a server (``--server-share`` of the fleet): the Flexible-Server-like target of the demo world, its
#: source cluster (row counts are compared with it) and the databases of the Flexible point
SERVER_CLUSTER, SOURCE_CLUSTER, SERVER_DATABASES = "pgflex-target", "pgflex01", ("appdb", "inventory")
REPLAY_LEASE_SECONDS = 15  # RESTORE_REPLAY_LEASE_SECONDS: a killed replay's message is back after 1.5 × + 5 s
ALL_BATCHES = {"b0", "b1", "b2", "b3", "b4", "b5"}  # demo world: rows seeded before each recovery point
ARCHIVED_BATCHES = {"b0"}  # the archived point (-P120D) holds only the first batch
AZURE_POLL_MIN, AZURE_POLL_MAX, AZURE_TRIGGER_GRACE = 30.0, 300.0, 660.0
#: host.json ``singleton`` of the chaos app folder: the shortest timer lease the real host accepts (15 to 60 s)
TIMER_LEASE_SECONDS = 15
SINGLETON = {"listenerLockPeriod": f"00:00:{TIMER_LEASE_SECONDS}",
             "listenerLockRecoveryPollingInterval": f"00:00:{TIMER_LEASE_SECONDS}"}
WATCHDOG_FUNCTION = "restore_watchdog"
HOST_MARKER = "localdev.funchost"
#: ``--throughput``: the emulator's ARM token bucket (as bench/fleet.py), small enough to bind a 2-core machine
THROUGHPUT_BUDGET = {"enabled": True, "read_burst": 20, "read_rate": 2.0, "write_burst": 5, "write_rate": 1.0}


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

    @property
    def databases(self) -> list[str]:
        """The databases a server restore creates (the Flexible point's, with the request's suffix)."""
        suffix = str(self.body.get("target", {}).get("suffix", ""))
        return [f"{d}{suffix}" for d in SERVER_DATABASES] if self.kind == "server" else []

    @property
    def status(self) -> str:
        return str(self.final.get("status") or ("never-accepted" if self.restore_id is None else "unknown"))

    @property
    def error_code(self) -> str | None:
        err = self.final.get("error") or {}
        return str(err["code"]) if isinstance(err, dict) and err.get("code") else None


def plan_fleet(n: int, rng: random.Random, tag: str, server_share: float = 0.0,
               mix: tuple[tuple[str, float], ...] = KIND_MIX) -> list[Planned]:
    """``server_share`` of the fleet restores into a server (exactly round(n × share)), the rest by ``mix``."""
    kinds = [k for k, _ in mix]
    weights = [w for _, w in mix]
    servers = set(rng.sample(range(n), round(n * server_share)))
    fleet = []
    for i in range(n):
        kind = "server" if i in servers else rng.choices(kinds, weights)[0]
        name = f"cx{tag}_{i:03d}"
        if kind == "server":
            body = sc.into_server(suffix=f"_{name}")
            dest = ""  # the staging container/<restore id>: known once accepted (Campaign.server_destinations)
        elif kind == "database":
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


def fault_plan(fault_rate: float, answer_rate: float, job_fail_rate: float) -> list[dict[str, Any]]:
    """The emulator faults of the campaign, in the order they are added (the first that fires answers a call)."""
    plan: list[dict[str, Any]] = []
    for mode, share in TRANSPORT_FAULTS:
        extra = {"retry_after": 1} if mode == "throttle" else {}
        plan.append({"mode": mode, "operation": "*", "probability": round(fault_rate * share, 4), **extra})
    for mode, ops, share in ANSWER_FAULTS:
        plan += [{"mode": mode, "operation": op, "probability": round(answer_rate * share, 4)} for op in ops]
    plan += [{"mode": "job_fail", "operation": op, "probability": job_fail_rate, "error_code": INJECTED_FAILURE,
              "error_message": "Injected by the chaos campaign: the restore job failed."} for op in TRIGGER_OPS]
    return [f for f in plan if f["probability"] > 0]


def make_app_dir(root: Path) -> Path:
    """``root/app``: ``function_app.py`` (a link to the repository's) and the repository's host.json with the
    shortest timer lease the real host accepts."""
    app = root / "app"
    app.mkdir(parents=True, exist_ok=True)
    link = app / "function_app.py"
    link.unlink(missing_ok=True)
    link.symlink_to(REPO / "function_app.py")
    doc = json.loads((REPO / "host.json").read_text())
    doc["singleton"] = dict(SINGLETON)
    (app / "host.json").write_text(json.dumps(doc, indent=2) + "\n")
    return app


class HostProcess:
    """One Functions host process (``python -m localdev.funchost``) of the campaign; restarts keep its port."""

    def __init__(self, name: str, root: Path, app_dir: Path, settings: Path, keys: Path, log: Path) -> None:
        self.name, self.root, self.app_dir = name, root, app_dir
        self.settings, self.keys, self.log = settings, keys, log
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.up = False
        self.starts = 0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self, timeout: float = 90) -> int:
        ready = self.root / f"{self.name}.ready.json"
        ready.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", HOST_MARKER, "--app-dir", str(self.app_dir), "--settings", str(self.settings),
               "--port", str(self.port), "--keys-file", str(self.keys), "--ready-file", str(ready)]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        self.starts += 1
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"host {self.name} did not start (exit {self.proc.poll()}); see {self.log}")
            time.sleep(0.05)
        self.port = int(json.loads(ready.read_text())["port"])
        self._probe(deadline)
        self.up = True
        return self.proc.pid

    def _probe(self, deadline: float) -> None:
        url = f"http://127.0.0.1:{self.port}/admin/host/ping"
        while True:
            with contextlib.suppress(urllib.error.URLError, OSError):
                with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - fixed http://127.0.0.1 URL
                    if r.status == 200:
                        return
            if time.monotonic() > deadline:
                raise RuntimeError(f"host {self.name} does not answer {url}; see {self.log}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL (a crash: no draining; its in-flight messages come back after FUNCHOST_LEASE_SECONDS)."""
        self.up = False
        stop_pid(self.pid, HOST_MARKER, popen=self.proc, sig=signal.SIGKILL, timeout=5)

    def stop(self) -> None:
        self.up = False
        if pid_alive(self.pid, HOST_MARKER):
            stop_pid(self.pid, HOST_MARKER, popen=self.proc, timeout=40)


class Campaign:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.tag = f"{args.seed % 1000:03d}{uuid.uuid4().hex[:4]}"
        mix = (("database", 1.0),) if args.throughput else KIND_MIX
        self.fleet = plan_fleet(args.restores, self.rng, self.tag, args.server_share, mix)
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
            "RESTORE_REPLAY_LEASE_SECONDS": str(REPLAY_LEASE_SECONDS),
            "RESTORE_REPLAY_MAX_PER_SERVER": str(args.replay_max_per_server),
        }
        self.dir = Path(args.dir) if args.dir else REPO / ".local" / f"chaos-{datetime.now():%Y%m%d-%H%M%S}"
        self.stack = Stack(self.dir, DEFAULT_WORLD, http_port=0, settings_overrides=self.settings,
                           time_scale=scale)
        self.hosts: list[HostProcess] = []
        self.runner: rc.JobRunnerProcess | None = None
        self.replay_killer: rc.ReplayKiller | None = None
        self.runner_kills: list[dict[str, Any]] = []
        self.stop = threading.Event()
        self.kills: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.key = ""
        self.t_start = time.monotonic()
        self.index_emptied_after: float | None = None

    # ------------------------------------------------------------------ helpers
    def admin(self) -> EmulatorAdmin:
        env = self.stack.env
        return EmulatorAdmin(env["DATAPROTECTION_ADMIN_URL"], env["DATAPROTECTION_TOKEN"],
                             env["DATAPROTECTION_CA_BUNDLE"])

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
             ) -> tuple[int, Any, dict[str, str]] | None:
        """One API call to a live host picked at random (a front end spreads requests over the instances); None
        when the host does not answer (killed mid-call)."""
        live = [h for h in self.hosts if h.up]
        if not live:
            return None
        host = self.rng.choice(live)
        try:
            return Api(f"http://127.0.0.1:{host.port}/api", self.key).request(method, path, body, headers)
        except (OSError, http.client.HTTPException):
            return None

    # ------------------------------------------------------------------ hosts
    def start_hosts(self) -> None:
        """Stop the stack's own host; start ``--hosts`` host processes of the chaos app folder with the same
        settings and keys (copied once: the stack rewrites its files on restarts)."""
        self.stack.stop_host()
        app = make_app_dir(self.dir)
        settings, keys = self.dir / "chaos.settings.json", self.dir / "chaos.keys.json"
        for src, dst in ((self.dir / "local.settings.json", settings), (self.dir / "funchost.keys.json", keys)):
            shutil.copyfile(src, dst)
            dst.chmod(0o600)
        self.key = json.loads(keys.read_text())["functionKeys"][0]
        for i in range(self.args.hosts):
            name = f"host{chr(ord('a') + i)}"
            log = self.stack.logs / f"funchost-{name}.log"
            self.hosts.append(HostProcess(name, self.dir, app, settings, keys, log))
        with ThreadPoolExecutor(len(self.hosts)) as pool:  # together: a host start is mostly imports and waiting
            list(pool.map(HostProcess.start, self.hosts))
        if any(p.kind == "server" for p in self.fleet):
            self.start_jobrunner(settings)

    def start_jobrunner(self, settings: Path) -> None:
        """The replay job's local stand-in on the same settings, delivering every job message twice; its session
        log on the target server is switched on first (:mod:`bench.replaycheck`)."""
        rc.enable_session_log(self.cluster_dsn(SERVER_CLUSTER, "postgres"))
        self.runner = rc.JobRunnerProcess(settings, self.dir / "chaos.jobrunner.json", self.stack.logs /
                                          "jobrunner-chaos.log", self.stack.logs / "replay-chaos",
                                          parallelism=self.args.job_parallelism, duplicate_delivery=True)
        self.runner.log_dir.mkdir(parents=True, exist_ok=True)
        self.runner.start()

    def cluster_dsn(self, cluster: str, db: str) -> str:
        return rc.dsn_for(self.stack.env["PGCLUSTER_" + cluster.upper().replace("-", "_") + "_DSN"], db)

    def stop_hosts(self) -> None:
        for host in [*self.hosts, *([self.runner] if self.runner else [])]:
            with contextlib.suppress(Exception):
                host.stop()

    def kill_order(self) -> Iterable[HostProcess | rc.JobRunnerProcess]:
        """Rounds of the hosts (and the job runner, with server restores) in a random order: each is killed once per
        round, at random moments."""
        while True:
            round_: list[HostProcess | rc.JobRunnerProcess] = [*self.hosts, *([self.runner] if self.runner else [])]
            self.rng.shuffle(round_)
            yield from round_

    def killer(self) -> None:
        order = iter(self.kill_order())
        while not self.stop.wait(self.rng.uniform(1.5, 6.0)):
            host = next(order)
            t0 = time.monotonic()
            try:
                old = host.pid
                host.kill()
                killed_at = time.monotonic()
                time.sleep(self.rng.uniform(0.0, 1.5))  # sometimes the host stays down a little
                new = host.start()
                (self.runner_kills if host is self.runner else self.kills).append(
                    {"host": host.name, "old_pid": old, "new_pid": new,
                     "down_seconds": round(time.monotonic() - killed_at, 2), "at": round(t0 - self.t_start, 1)})
                if host is not self.runner and len(self.kills) % 5 == 0:
                    say(f"  {len(self.kills)} kills so far")
            except Exception as exc:  # noqa: BLE001 - a failed restart is a campaign failure, reported
                self.errors.append(f"restart of {host.name} failed: {exc}")
                say(f"restart of {host.name} failed: {exc}")
                with contextlib.suppress(Exception):
                    host.start()

    # ------------------------------------------------------------------ phases
    def submit_one(self, p: Planned) -> None:
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
            return

    def submit_all(self) -> None:
        if self.args.throughput:  # all at once: the ARM budget, not the submission pace, must bind
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(self.submit_one, self.fleet))
            return
        for p in self.fleet:
            if self.stop.is_set():
                return
            self.submit_one(p)
            time.sleep(self.rng.uniform(0.2, 0.8))

    def refresh(self, only_active: bool = True) -> None:
        for p in self.fleet:
            if not p.restore_id or (only_active and p.status in TERMINAL):
                continue
            got = self.call("GET", f"/restores/{p.restore_id}")
            if got is not None and got[0] in (200, 404):
                p.final = got[1] if got[0] == 200 and isinstance(got[1], dict) else {"status": "unknown-404"}

    def active(self) -> list[Planned]:
        return [p for p in self.fleet if p.restore_id is None or p.status not in TERMINAL]

    def configure_emulator(self, adm: EmulatorAdmin) -> list[dict[str, Any]]:
        adm.set_config(page_size=50)
        adm.clear_faults()
        if self.args.throughput:
            adm.set_throttling(**THROUGHPUT_BUDGET)
        plan = fault_plan(self.args.fault_rate, self.args.answer_fault_rate, self.args.job_fail_rate)
        for f in plan:
            adm.add_fault(**f)
        adm.reset_metering()
        return plan

    def drive(self) -> None:
        """Submit the fleet and kill hosts until every restore is terminal (or past every deadline)."""
        submitter = threading.Thread(target=self.submit_all, name="submit", daemon=True)
        killer = threading.Thread(target=self.killer, name="kill", daemon=True)
        submitter.start()
        if not self.args.throughput:
            killer.start()
        if self.runner is not None and self.args.replay_kills:
            self.replay_killer = rc.ReplayKiller(self.runner, self.rng, budget=self.args.replay_kills)
            threading.Thread(target=self.replay_killer.run, name="replay-kill", daemon=True).start()
        last_print = 0.0
        give_up = self.args.deadline_minutes * 60 + 30 + len(self.fleet)  # every accepted restore is past its deadline
        while True:
            time.sleep(2)
            self.refresh()
            now = time.monotonic()
            if now - last_print > 15:
                last_print = now
                say(f"  t={now - self.t_start:.0f}s kills={len(self.kills)} "
                    f"{dict(Counter(p.final.get('status', 'not-submitted') for p in self.fleet))}")
            if (not submitter.is_alive() and not self.active()) or now - self.t_start > give_up:
                break
        self.stop.set()
        if self.replay_killer is not None:
            self.replay_killer.stop.set()
        if killer.is_alive():
            killer.join(timeout=120)
        submitter.join(timeout=5)

    def run(self) -> dict[str, Any]:
        say(f"chaos: starting a stack in {self.dir} (time scale {self.args.time_scale}, seed {self.args.seed})")
        self.stack.up()
        self.start_hosts()
        adm = self.admin()
        plan = self.configure_emulator(adm)
        self.t_start = time.monotonic()
        say(f"chaos: {len(self.fleet)} restores {dict(Counter(p.kind for p in self.fleet))}, {len(self.hosts)} hosts, "
            f"transport faults on {self.args.fault_rate:.0%} of ARM calls, answer faults on "
            f"{self.args.answer_fault_rate:.0%} of reads, injected job failures {self.args.job_fail_rate:.0%}, "
            f"duplicate delivery on, at least {self.args.kills} kills")
        self.drive()
        faults = adm.faults()
        adm.clear_faults()
        metering = adm.metering()
        self.wait_deadlines()  # the watchdog expires anything past its deadline
        self.wait_index_empty()  # and publishes the completion events owed after a crash
        time.sleep(3)  # let late duplicate deliveries run (they must be no-ops)
        self.refresh(only_active=False)
        duration = time.monotonic() - self.t_start
        return self.verdict(adm, plan, faults, metering, duration)

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

    def settle_seconds(self) -> float:
        """How long an owed completion event may take: the re-drive slack (in-flight time + the largest re-check
        interval, at least 30 s) plus a timer lease expiry and a recovery poll after a killed lease holder."""
        poll_max = float(self.settings["RESTORE_POLL_MAX_SECONDS"])
        return float(self.settings["RESTORE_MESSAGE_IN_FLIGHT_SECONDS"]) + max(poll_max, 30.0) + \
            2 * TIMER_LEASE_SECONDS + 10

    def wait_index_empty(self) -> None:
        """Wait until none of the fleet's restores is in the app's active index (the completion event of a restore
        whose host died between its terminal write and the event is published by the watchdog from there)."""
        table = TableClient.from_connection_string(self.stack.env["AZURE_STORAGE_CONNECTION_STRING"], "restores")
        ids = {p.restore_id for p in self.fleet if p.restore_id}
        t0 = time.monotonic()
        while time.monotonic() - t0 < self.settle_seconds():
            left = [e["RowKey"] for e in table.query_entities("PartitionKey eq 'active'") if e["RowKey"] in ids]
            if not left:
                self.index_emptied_after = round(time.monotonic() - t0, 1)
                return
            time.sleep(1)

    # ------------------------------------------------------------------ what ARM, the queues and the targets hold
    def arm_jobs(self) -> list[dict[str, Any]]:
        env = self.stack.env
        client = DataProtectionMgmtClient(StaticTokenCredential(env["DATAPROTECTION_TOKEN"]), sc.SUB_BACKUP,
                                          base_url=env["DATAPROTECTION_ENDPOINT"],
                                          connection_verify=env["DATAPROTECTION_CA_BUNDLE"])
        req = CrossRegionRestoreJobsRequest(source_region="westeurope", source_backup_vault_id=sc.VAULT)
        listed = [("primary", j) for j in client.jobs.list("rg-backup", "bv-prod")]
        listed += [("secondary", j) for j in client.fetch_cross_region_restore_jobs.list("rg-backup", "northeurope",
                                                                                        req)]
        return [job_row(region, j) for region, j in listed]

    def poison(self) -> dict[str, list[str]]:
        conn = self.stack.env["AZURE_STORAGE_CONNECTION_STRING"]
        found: dict[str, list[str]] = {}
        for q in STAGE_QUEUES:
            client = QueueClient.from_connection_string(conn, f"{q}-poison")
            with contextlib.suppress(ResourceNotFoundError):
                found[q] = [decode_body(m.content) for m in
                            client.receive_messages(messages_per_page=32, visibility_timeout=60)]
            found.setdefault(q, [])
        return found

    def completion_events(self) -> list[dict[str, Any]]:
        client = QueueClient.from_connection_string(self.stack.env["AZURE_STORAGE_CONNECTION_STRING"],
                                                    "restore-events")
        found: list[dict[str, Any]] = []
        with contextlib.suppress(ResourceNotFoundError):
            for m in client.receive_messages(messages_per_page=32, visibility_timeout=300):
                with contextlib.suppress(ValueError):
                    ev = json.loads(decode_body(m.content))
                    if isinstance(ev, dict) and ev.get("type") == "restore.completed":
                        found.append(ev)
        return found

    def data_check(self, p: Planned, container: Any) -> tuple[bool, Any]:
        target = p.body["target"]
        if target["kind"] == "files":
            prefix = target["file_prefix"] + "_"
            got = sorted(b.name.removeprefix(prefix) for b in container.list_blobs(name_starts_with=prefix))
            return {"roles.sql", "schema.sql", "appdb.sql", "inventory.sql"} <= set(got), got
        if target["kind"] == "server":
            return self.server_data_check(p)
        cluster = sc.CLUSTER_OF_SERVER[target["server_id"]]
        base = self.stack.env["PGCLUSTER_" + cluster.upper().replace("-", "_") + "_DSN"]
        with psycopg.connect(base.rsplit("/", 1)[0] + "/" + target["database_name"], connect_timeout=10) as conn:
            got = sorted(r[0] for r in conn.execute("SELECT DISTINCT batch FROM orders").fetchall())
        return set(got) == (ARCHIVED_BATCHES if p.kind == "archive" else ALL_BATCHES), got

    def server_data_check(self, p: Planned) -> tuple[bool, Any]:
        """Rows per table of each restored database equal the source's (the Flexible point is the source's state:
        the world seeds nothing after its latest point)."""
        found = {}
        for source, db in zip(SERVER_DATABASES, p.databases, strict=True):
            got = rc.table_counts(self.cluster_dsn(SERVER_CLUSTER, db))
            want = rc.table_counts(self.cluster_dsn(SOURCE_CLUSTER, source))
            found[db] = {"target": got, "source": want}
            if got != want or not want:
                return False, found
        return True, found

    def data_checks(self) -> list[dict[str, Any]]:
        """Every succeeded restore brought back the data of its recovery point (rows per batch / dump blobs)."""
        container = BlobServiceClient.from_connection_string(self.stack.env["AZURE_STORAGE_CONNECTION_STRING"]) \
            .get_container_client(sc.AZURITE_CONTAINER[sc.CONTAINER_WE_URL])
        wrong = []
        for p in (p for p in self.fleet if p.status == "succeeded"):
            try:
                ok, got = self.data_check(p, container)
            except Exception as exc:  # noqa: BLE001 - a missing database/container is a wrong result, reported
                ok, got = False, f"{type(exc).__name__}: {str(exc)[:150]}"
            if not ok:
                wrong.append({"id": p.restore_id, "kind": p.kind, "target": p.destination, "found": got})
        return wrong

    def poison_status(self, rid: str | None) -> dict[str, Any]:
        p = next((p for p in self.fleet if p.restore_id == rid), None) if rid else None
        if p is not None or not rid:
            return p.final if p is not None else {}
        got = self.call("GET", f"/restores/{rid}")
        return got[1] if got is not None and isinstance(got[1], dict) else {}

    # ------------------------------------------------------------------ verdict
    def verdict(self, adm: EmulatorAdmin, plan: list[dict[str, Any]], faults: list[dict[str, Any]],
                metering: dict[str, Any], duration: float) -> dict[str, Any]:
        server_ids = {str(p.restore_id) for p in self.fleet if p.kind == "server" and p.restore_id}
        mine = [j for j in self.arm_jobs() if f"cx{self.tag}_" in j["destination"]
                or f"cx{self.tag}-" in j["destination"]
                or j["destination"].rstrip("/").rsplit("/", 1)[-1] in server_ids]
        for p in self.fleet:  # a server restore's vault job restores into the staging container, prefix = its id
            if p.kind == "server" and p.restore_id:
                p.destination = next((j["destination"] for j in mine if j["destination"].rstrip("/")
                                      .endswith("/" + p.restore_id)), f"(staging)/{p.restore_id}")
        restore_jobs = [j for j in mine if (j["operation"] or "Restore") == "Restore"]
        by_dest = jobs_by_destination(restore_jobs)
        outcome = outcome_checks(self.fleet, by_dest, datetime.now(UTC))
        poison = poison_checks(self.poison(), self.poison_status)
        events = event_checks(self.fleet, self.completion_events())
        wrong_data = self.data_checks()
        result = {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": " ".join(["python -m bench.chaos", *self.args.argv]),  # what `make chaos` runs
            "code": code_version(),
            "machine": machine(),
            "parameters": self.parameters(plan),
            "duration_seconds": round(duration, 1),
            "fleet": dict(Counter(p.kind for p in self.fleet)),
            **outcome,
            "hosts": self.host_report(),
            "post_attempts": sum(p.post_attempts for p in self.fleet),
            "posts_repeated": sum(1 for p in self.fleet if p.post_attempts > 1),
            "arm_restore_jobs": len(restore_jobs),
            "arm_jobs_by_status": dict(Counter(j["status"] for j in restore_jobs)),
            "most_arm_jobs_for_one_restore": max((len(v) for v in by_dest.values()), default=0),
            "faults_fired": faults_fired(faults),
            "fault_share_of_arm_calls": round(sum(f["fired"] for f in faults) / max(int(metering.get("total") or 0),
                                                                                    1), 3),
            "arm_calls": {"total": metering.get("total"), "by_status": metering.get("by_status"),
                          "by_kind": metering.get("by_kind")},
            "host_log": host_log_stats(h.log for h in self.hosts),
            "watchdog": watchdog_runs(h.log for h in self.hosts),
            "active_index_emptied_after_seconds": self.index_emptied_after,
            **poison,
            "events": events,
            "wrong_data": wrong_data,
            "campaign_errors": self.errors,
            "replays": self.replay_report({w["id"] for w in outcome["wrong_reasons"]}, wrong_data),
            "throughput": self.throughput(metering) if self.args.throughput else None,
        }
        result["checks"] = checks(result, self.args.kills)
        return result

    def replay_report(self, wrong_ids: set[str], wrong_data: list[dict[str, Any]]) -> dict[str, Any]:
        """Server restores: outcomes, overlapping replays (the target's session log), orphan databases, kills."""
        servers = [p for p in self.fleet if p.kind == "server"]
        if not servers or self.runner is None:
            return {"server_restores": 0}
        log = self.dir / "pg" / SERVER_CLUSTER / "server.log"
        sessions = rc.sessions_from_log(read_lines([log]))
        with contextlib.suppress(Exception):
            sessions += rc.open_sessions(self.cluster_dsn(SERVER_CLUSTER, "postgres"))
        ids = {str(p.restore_id) for p in servers if p.restore_id}
        sessions = [x for x in sessions if x.restore_id in ids]
        killed = self.replay_killer.killed_at() if self.replay_killer else {}
        with psycopg.connect(self.cluster_dsn(SERVER_CLUSTER, "postgres"), connect_timeout=10) as c:
            dbs = dict(c.execute("SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database").fetchall())
        wanted = {db for p in servers for db in p.databases}
        bodies = {str(p.restore_id): p.final for p in self.fleet if p.restore_id}
        runners = rc.runners_per_restore(sessions)
        return {"server_restores": len(servers), "terminal": sum(1 for p in servers if p.status in TERMINAL),
                "outcomes": dict(Counter(p.status for p in servers)),
                "right_outcome": sum(1 for p in servers if p.status in TERMINAL and str(p.restore_id) not in wrong_ids),
                "wrong_data": [w for w in wrong_data if w["kind"] == "server"],
                "replay_kills_requested": self.args.replay_kills,
                "sessions_logged": len(sessions), "runners_per_restore": runners,
                "restores_with_more_than_one_runner": sum(1 for n in runners.values() if n > 1),
                "replay_attempts": {str(p.restore_id): (p.final.get("server") or {}).get("replay", {}).get("attempts")
                                    for p in servers if p.restore_id},
                "overlaps": rc.overlaps(sessions, killed), "raw_overlaps": rc.overlaps(sessions, {}),
                "orphans": rc.orphan_databases(dbs, bodies, lambda name: name in wanted or f"_cx{self.tag}_" in name),
                "replay_kills": self.replay_killer.kills if self.replay_killer else [],
                "jobrunner_kills": self.runner_kills,
                "job_duplicates_sent": self.runner.duplicates_sent(),
                "job_parallelism": self.args.job_parallelism,
                "replay_max_per_server": self.args.replay_max_per_server}

    def throughput(self, metering: dict[str, Any]) -> dict[str, Any]:
        """Restores per minute from the first acceptance to the last terminal write, against the least time the ARM
        token bucket allows for the calls ARM accepted (a 429 costs no token)."""
        done = [p for p in self.fleet if p.status in TERMINAL]
        starts = [parse_iso(p.final.get("created_at")) for p in done]
        ends = [parse_iso(p.final.get("updated_at")) for p in done]
        wall = (max(e for e in ends if e) - min(t for t in starts if t)).total_seconds() if done else 0.0
        return throughput_numbers(len(done), wall, metering, THROUGHPUT_BUDGET)

    def parameters(self, plan: list[dict[str, Any]]) -> dict[str, Any]:
        a = self.args
        return {"restores": a.restores, "kills_requested": a.kills, "hosts": a.hosts, "seed": a.seed,
                "time_scale": a.time_scale, "fault_rate": a.fault_rate, "answer_fault_rate": a.answer_fault_rate,
                "job_fail_rate": a.job_fail_rate, "transport_fault_mix": dict(TRANSPORT_FAULTS),
                "answer_fault_mix": {m: {"share": s, "operations": list(ops)} for m, ops, s in ANSWER_FAULTS},
                "fault_plan": plan, "deadline_minutes": a.deadline_minutes, "host_settings": self.settings,
                "host_json_singleton": SINGLETON, "emulator_page_size": 50, "server_share": a.server_share,
                "replay_kills": a.replay_kills, "job_parallelism": a.job_parallelism,
                "replay_max_per_server": a.replay_max_per_server, "throughput": a.throughput}

    def host_report(self) -> dict[str, Any]:
        per_host = Counter(k["host"] for k in self.kills)
        return {"processes": len(self.hosts), "kills": len(self.kills),
                "kills_per_host": {h.name: per_host.get(h.name, 0) for h in self.hosts},
                "starts_per_host": {h.name: h.starts for h in self.hosts}, "kill_log": self.kills}


# ---------------------------------------------------------------------- verdict (pure functions)
def job_row(region: str, j: Any) -> dict[str, Any]:
    p = j.properties
    ext = p.extended_info
    errors = p.error_details or []
    return {"id": j.id, "region": region, "operation": p.operation_category, "status": p.status,
            "error_code": errors[0].code if errors else None,
            "destination": (ext.recovery_destination if ext is not None else None) or ""}


def jobs_by_destination(jobs: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by_dest: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for j in jobs:
        by_dest[j["destination"]].append(j)
    return dict(by_dest)


def job_mismatch(p: Planned, mine: list[dict[str, Any]]) -> bool:
    """The row's job is not among ARM's jobs for its target, or the row has none while ARM has one, or a succeeded
    restore has no job in ARM."""
    row_job = p.final.get("azure_job_id")
    arm_ids = {j["id"].rsplit("/", 1)[-1].lower() for j in mine}
    if row_job:
        return str(row_job).rsplit("/", 1)[-1].lower() not in arm_ids
    return bool(mine) or p.status == "succeeded"


def expected_failure(p: Planned, mine: list[dict[str, Any]]) -> str | None:
    """The label of a failure the campaign causes on purpose, with ARM's truth to match (None: not one):
    - the injected job failure: ARM's one job Failed with :data:`INJECTED_FAILURE`, the restore failed with it;
    - ``TriggerOutcomeUnknown`` while ARM holds no job for the restore: the trigger never took effect (its connection
      was dropped before ARM ran it, or its host died around it) and the service never triggers twice when unsure.
      With a job in ARM the same code is wrong: adoption should have found it."""
    job = mine[0] if len(mine) == 1 else None
    if p.status == "failed" and p.error_code == INJECTED_FAILURE and job is not None and \
            str(job["status"]).lower() == "failed" and job.get("error_code") == INJECTED_FAILURE:
        return "injected job failure"
    if p.status == "failed" and p.error_code == "TriggerOutcomeUnknown" and not mine:
        return "trigger outcome unknown, no Azure job"
    return None


def wrong_reason(p: Planned, mine: list[dict[str, Any]]) -> str | None:
    """Why this terminal restore's outcome is not ARM's truth (None when it is): success needs the one Azure job
    completed; any other end needs an expected cause (:func:`expected_failure`)."""
    if p.status not in TERMINAL:
        return None  # counted as lost or stuck
    job = mine[0] if len(mine) == 1 else None
    arm = str(job["status"] if job else f"{len(mine)} jobs").lower()
    if (p.status == "succeeded" and arm in ARM_SUCCEEDED) or expected_failure(p, mine):
        return None
    return f"{p.status} ({p.error_code or 'no code'}) while ARM's job is {arm}" + \
        (f" ({job.get('error_code')})" if job and job.get("error_code") else "")


def outcome_checks(fleet: list[Planned], by_dest: dict[str, list[dict[str, Any]]], now: datetime) -> dict[str, Any]:
    """Lost, stuck, doubled, wrong reasons and row/ARM mismatches of the fleet, with outcome and reason counts."""
    lost: list[dict[str, Any]] = []
    late: list[dict[str, Any]] = []
    doubled: list[dict[str, Any]] = []
    mismatched: list[dict[str, Any]] = []
    wrong: list[dict[str, str]] = []
    expected: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    by_kind: dict[str, Counter[str]] = defaultdict(Counter)
    for p in fleet:
        outcomes[p.status] += 1
        by_kind[p.kind][p.status] += 1
        entry = {"id": p.restore_id, "key": p.key, "status": p.status, "stage": p.final.get("stage"),
                 "deadline": p.final.get("deadline"), "posts": p.post_statuses}
        if p.status not in TERMINAL:  # not accepted, unknown to the status API, or still active
            deadline = parse_iso(p.final.get("deadline"))
            (late if deadline is not None and deadline < now else lost).append(entry)
            continue
        if p.status != "succeeded":
            reasons[f"{p.status}: {p.error_code or '(no code)'}"] += 1
        mine = by_dest.get(p.destination, [])
        if len(mine) > 1:
            doubled.append({"id": p.restore_id, "target": p.destination, "jobs": [j["id"] for j in mine]})
        if job_mismatch(p, mine):
            mismatched.append({"id": p.restore_id, "status": p.status, "row_job": p.final.get("azure_job_id"),
                               "arm_jobs": [j["id"] for j in mine]})
        why = wrong_reason(p, mine)
        if why:
            wrong.append({"id": str(p.restore_id), "kind": p.kind, "why": why})
        expected.update(filter(None, [expected_failure(p, mine)]))
    return {"outcomes": dict(outcomes), "outcomes_by_kind": {k: dict(v) for k, v in by_kind.items()},
            "failure_reasons": dict(reasons), "expected_failures": dict(expected),
            "lost": lost, "late": late,
            "doubled": doubled, "wrong_reasons": wrong, "row_vs_arm_job_mismatch": mismatched}


def event_checks(fleet: list[Planned], events: list[dict[str, Any]]) -> dict[str, Any]:
    """Per terminal restore: its events deduplicated on ``event_id`` must be exactly one, with the id and status of
    its outcome. Duplicate deliveries (the same event_id more than once) are counted, not failed: at least once."""
    by_rid: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for ev in events:
        by_rid[str(ev.get("restore_id"))].append(ev)
    outcomes, exactly_one, duplicates, restores_duplicated = 0, 0, 0, 0
    not_one = []
    for p in (p for p in fleet if p.restore_id and p.status in TERMINAL):
        outcomes += 1
        mine = by_rid.get(str(p.restore_id), [])
        ids = {ev.get("event_id") for ev in mine}
        duplicates += len(mine) - len(ids)
        restores_duplicated += len(mine) > len(ids)
        if ids == {event_id(str(p.restore_id), p.status)} and all(ev.get("status") == p.status for ev in mine):
            exactly_one += 1
        else:
            not_one.append({"id": p.restore_id, "status": p.status, "events": len(mine),
                            "event_ids": sorted(str(i) for i in ids), "statuses": sorted({str(e.get("status"))
                                                                                        for e in mine})})
    return {"restore_outcomes": outcomes, "outcomes_with_exactly_one_event_after_dedupe": exactly_one,
            "outcomes_not_one": not_one, "events_received": sum(len(by_rid.get(str(p.restore_id), []))
                                                                for p in fleet if p.restore_id),
            "duplicate_deliveries": duplicates, "restores_with_duplicate_deliveries": restores_duplicated}


def poison_checks(poison: dict[str, list[str]], status_of: Any) -> dict[str, Any]:
    """Every poison stage message belongs to a restore that is terminal with a recorded reason."""
    rows, unrecorded = [], []
    for q, bodies in poison.items():
        for b in bodies:
            rid = envelope_restore_id(b)
            st = status_of(rid)
            err = st.get("error") or {}
            row = {"queue": f"{q}-poison", "restore_id": rid, "status": st.get("status"),
                   "error_code": err.get("code"), "error_message": (err.get("message") or "")[:200]}
            rows.append(row)
            recorded = st.get("status") in TERMINAL and (st.get("status") == "succeeded" or err.get("code"))
            if q != "restore-requests" and not recorded:
                unrecorded.append(row)
    return {"poison": {q: len(b) for q, b in poison.items()}, "poison_rows": rows, "poison_unrecorded": unrecorded}


def throughput_numbers(done: int, wall: float, metering: dict[str, Any], budget: dict[str, Any]) -> dict[str, Any]:
    """Throughput and the ARM budget's bound: accepted reads/writes (429s spent no token) past the bursts, over the
    refill rates."""
    by_kind = metering.get("by_kind") or {}
    by_status = {str(k): int(v) for k, v in (metering.get("by_status") or {}).items()}
    reads, writes = int(by_kind.get("read", 0)), int(by_kind.get("write", 0))
    n429 = by_status.get("429", 0)
    writes_ok = min(writes, by_status.get("202", 0))  # accepted writes answer 202 (LROs)
    reads_ok = max(0, reads - max(0, n429 - (writes - writes_ok)))
    bound = max(0.0, (reads_ok - budget["read_burst"]) / budget["read_rate"],
                (writes_ok - budget["write_burst"]) / budget["write_rate"])
    return {"restores_terminal": done, "wall_seconds": round(wall, 1),
            "restores_per_minute": round(done / wall * 60, 2) if wall else None,
            "arm_accepted": {"reads": reads_ok, "writes": writes_ok}, "arm_429": n429,
            "arm_budget_min_seconds": round(bound, 1), "wall_over_budget": round(wall / bound, 2) if bound else None,
            "budget": budget}


def faults_fired(faults: list[dict[str, Any]]) -> dict[str, Any]:
    by_mode: Counter[str] = Counter()
    by_op: dict[str, Counter[str]] = defaultdict(Counter)
    for f in faults:
        by_mode[f["mode"]] += int(f["fired"])
        if f["operation"] != "*" and f["fired"]:
            by_op[f["mode"]][f["operation"]] += int(f["fired"])
    return {"by_mode": dict(sorted(by_mode.items())),
            "by_mode_and_operation": {m: dict(sorted(c.items())) for m, c in sorted(by_op.items())}}


def checks(r: dict[str, Any], kills_requested: int) -> list[dict[str, Any]]:
    """The verdict rows: ``kind`` correctness (exit 1 when one fails) or campaign (exit 2: not what was asked)."""
    ev = r["events"]
    one_each = not ev["outcomes_not_one"] and ev["outcomes_with_exactly_one_event_after_dedupe"] == \
        ev["restore_outcomes"]
    hosts = r["hosts"]
    killed = [n for n, k in hosts["kills_per_host"].items() if k]
    to_kill = min(kills_requested, hosts["processes"])  # kills go round the hosts: each once per round

    def row(check: str, result: Any, must_be: Any, ok: bool, kind: str = "correctness") -> dict[str, Any]:
        return {"check": check, "result": result, "must_be": must_be, "ok": ok, "kind": kind}

    def zero(check: str, items: list[Any]) -> dict[str, Any]:
        return row(check, len(items), 0, not items)

    runner_kills = 1 if kills_requested > hosts["processes"] else 0  # the runner joins the rounds after the hosts
    return [*base_rows(r, kills_requested, row, zero, one_each, killed, to_kill),
            *replay_rows(r, row, zero, runner_kills)]


def base_rows(r: dict[str, Any], kills_requested: int, row: Any, zero: Any, one_each: bool, killed: list[str],
              to_kill: int) -> list[dict[str, Any]]:
    ev, hosts = r["events"], r["hosts"]
    return [
        zero("Restores lost (accepted, never recorded or never terminal)", r["lost"]),
        zero(f"Restores triggered more than once (Azure restore jobs per restore: at most "
             f"{r['most_arm_jobs_for_one_restore']})", r["doubled"]),
        zero("Restores not terminal by their deadline (stuck)", r["late"]),
        zero("Restores ended with a wrong reason (outcome not the Azure job's; failed without an injected cause)",
             r["wrong_reasons"]),
        zero("Poison messages whose restore has no recorded outcome", r["poison_unrecorded"]),
        zero("Succeeded restores whose target lacks the recovery point's data", r["wrong_data"]),
        row("Completion events per restore outcome after dedupe on event_id",
            f"1 for {ev['outcomes_with_exactly_one_event_after_dedupe']} of {ev['restore_outcomes']}", "1 for each",
            one_each),
        row("Host kills (SIGKILL + restart)", hosts["kills"], f"≥ {kills_requested}",
            hosts["kills"] >= kills_requested, "campaign"),
        row("Functions host processes on the same storage, killed", f"{len(killed)} of {hosts['processes']}",
            f"≥ {to_kill} of {hosts['processes']}", len(killed) >= to_kill, "campaign"),
    ]


def replay_rows(r: dict[str, Any], row: Any, zero: Any, runner_kills: int) -> list[dict[str, Any]]:
    """Restores into a server: never two runners at once, terminal with the right outcome, the source's rows, no
    orphan database; and the campaign killed replays mid-pg_restore and the job runner as asked."""
    rp = r.get("replays") or {}
    n = int(rp.get("server_restores") or 0)
    if not n:
        return []
    asked = int(rp.get("replay_kills_requested") or 0)
    return [
        zero("Replays of one restore at the same time (two runners' sessions on the target overlap; server log)",
             rp["overlaps"]),
        row("Server restores terminal with the right outcome", f"{rp['right_outcome']} of {n}", f"{n} of {n}",
            rp["right_outcome"] == n),
        zero("Server restores whose databases' row counts differ from the source", rp["wrong_data"]),
        zero("Databases on the target no terminal restore owns (orphans)", rp["orphans"]),
        row("Replay executions SIGKILLed mid-pg_restore", len(rp["replay_kills"]), f"≥ {asked}",
            len(rp["replay_kills"]) >= asked, "campaign"),
        row("Job runner SIGKILLed (its executions go on)", len(rp["jobrunner_kills"]), f"≥ {runner_kills}",
            len(rp["jobrunner_kills"]) >= runner_kills, "campaign"),
    ]


def passed(r: dict[str, Any], kind: str) -> bool:
    return all(c["ok"] for c in r["checks"] if c["kind"] == kind)


def host_log_stats(paths: Iterable[Path]) -> dict[str, Any]:
    """What the hosts' logs say happened: host starts, duplicate/stale stage messages ignored, retried deliveries."""
    patterns = ((re.compile(r"duplicate delivery ON"), "host_starts_with_duplicate_delivery"),
                (re.compile(r"(?:stale or )?duplicate (\w+) message for"), "ignored_duplicate_{}"),
                (re.compile(r" (\w+) of \S+ lost a race to another delivery"), "lost_race_{}"),
                (re.compile(r"will be retried"), "deliveries_failed_and_retried"),
                (re.compile(r"watchdog re-drove"), "watchdog_redrives"),
                (re.compile(r"publishing it$"), "watchdog_published_owed_events"),
                (re.compile(r" ERROR "), "error_lines"))
    stats: Counter[str] = Counter()
    for line in read_lines(paths):
        for pattern, name in patterns:
            m = pattern.search(line)
            if m:
                stats[name.format(*m.groups())] += 1
    return dict(sorted(stats.items()))


def watchdog_runs(paths: Iterable[Path]) -> dict[str, Any]:
    """The watchdog timer's runs over all hosts (one host holds the timer's lease at a time): how many, and the
    longest pause between two runs (a killed lease holder's lease must expire before another host takes over)."""
    stamps = sorted(t for t in (log_time(line) for line in read_lines(paths)
                                if f"invocation function={WATCHDOG_FUNCTION} trigger=timer" in line) if t is not None)
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    return {"runs": len(stamps), "longest_pause_seconds": round(max(gaps, default=0.0), 1),
            "pauses_over_5_seconds": sum(1 for g in gaps if g > 5)}


def read_lines(paths: Iterable[Path]) -> Iterable[str]:
    for path in paths:
        with contextlib.suppress(OSError):
            yield from path.read_text(errors="replace").splitlines()


def log_time(line: str) -> float | None:
    """The timestamp of a host log line (``%(asctime)s``: ``2026-11-24 01:53:57,123``) in seconds."""
    with contextlib.suppress(ValueError):
        return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return None


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


# ---------------------------------------------------------------------- report
def markdown(r: dict[str, Any]) -> str:
    p = r["parameters"]
    ev = r["events"]
    ok = passed(r, "correctness")
    answer_mix = ", ".join(f"{k} {v['share']:.0%}" for k, v in p["answer_fault_mix"].items())
    lines = [
        "## Fault campaign (`make chaos`)",
        "",
        f"Run {r['when']}: {p['restores']} restores ({', '.join(f'{k} {v}' for k, v in r['fleet'].items())}), "
        f"{p['hosts']} Functions host processes on the same storage, SIGKILLed and restarted {r['hosts']['kills']} "
        f"times ({', '.join(f'{k} {v}' for k, v in r['hosts']['kills_per_host'].items())}), every stage message "
        f"delivered twice; ARM transport faults on {p['fault_rate']:.0%} of calls "
        f"({', '.join(f'{k} {v:.0%}' for k, v in p['transport_fault_mix'].items())} of them), answer and "
        f"authentication faults on {p['answer_fault_rate']:.0%} of reads and status polls "
        f"({answer_mix}), injected job failures "
        f"on {p['job_fail_rate']:.0%} of triggers; emulator time scale {p['time_scale']:g}, deadline "
        f"{p['deadline_minutes']} min, seed {p['seed']}. Duration {r['duration_seconds']:.0f} s. "
        f"Verdict: **{'PASS' if ok else 'FAIL'}**.",
        "",
        "| Check | Result | Must be |",
        "|---|---:|---:|",
        *[f"| {c['check']} | {c['result']} | {c['must_be']} |" for c in r["checks"]],
        f"| Duplicate deliveries of completion events (before dedupe on event_id) | {ev['duplicate_deliveries']} "
        f"({ev['restores_with_duplicate_deliveries']} restores) | — |",
        "| Expected failures (a cause the campaign injects, matching ARM's jobs) | "
        + (", ".join(f"{k}: {v}" for k, v in r["expected_failures"].items()) or "0") + " | — |",
        f"| POSTs repeated after a crash (same Idempotency-Key) | {r['posts_repeated']} | — |",
        f"| ARM restore jobs for the fleet | {r['arm_restore_jobs']} | — |",
        f"| Row/ARM job mismatches | {len(r['row_vs_arm_job_mismatch'])} | — |",
        f"| Watchdog runs; longest pause (timer lease hand-over) | {r['watchdog']['runs']}; "
        f"{r['watchdog']['longest_pause_seconds']:g} s | — |",
        "",
        "| Outcome | " + " | ".join(r["outcomes_by_kind"]) + " | total |",
        "|---|" + "---:|" * (len(r["outcomes_by_kind"]) + 1),
    ]
    for status in sorted(r["outcomes"]):
        lines.append(f"| {status} | " + " | ".join(str(v.get(status, 0)) for v in r["outcomes_by_kind"].values())
                     + f" | {r['outcomes'][status]} |")
    fired = r["faults_fired"]
    lines += ["", "Failure reasons: " + (", ".join(f"{k} ×{v}" for k, v in sorted(r["failure_reasons"].items()))
                                         or "none") + ".",
              "Faults fired: " + ", ".join(f"{k} {v}" for k, v in fired["by_mode"].items()) +
              f" ({r['fault_share_of_arm_calls']:.1%} of {r['arm_calls']['total']} ARM calls); ARM answers by status "
              f"{r['arm_calls']['by_status']} (0 = dropped connection).",
              "Answer and authentication faults by operation: " + ("; ".join(
                  f"{m}: " + ", ".join(f"{op} {n}" for op, n in ops.items())
                  for m, ops in fired["by_mode_and_operation"].items() if m != "job_fail") or "none") + ".",
              "Host logs: " + ", ".join(f"{k} {v}" for k, v in r["host_log"].items()) + ".",
              "Poison queues: " + (", ".join(f"{q}-poison {n}" for q, n in r["poison"].items() if n) or "all empty")
              + "."]
    lines += replay_markdown(r)
    for row in r["poison_rows"][:20]:
        lines.append(f"- `{row['queue']}` restore {row['restore_id']}: {row['status']} "
                     f"{row['error_code'] or ''} {row['error_message'][:120]}".rstrip())
    for w in r["wrong_reasons"][:20]:
        lines.append(f"- wrong reason: restore {w['id']} ({w['kind']}): {w['why']}")
    return "\n".join(lines) + "\n"


def replay_markdown(r: dict[str, Any]) -> list[str]:
    out = []
    rp = r.get("replays") or {}
    if rp.get("server_restores"):
        kills = rp["replay_kills"]
        out.append(
            f"Server restores: {rp['server_restores']} ({rp['outcomes']}); job runner parallelism "
            f"{rp['job_parallelism']}, RESTORE_REPLAY_MAX_PER_SERVER {rp['replay_max_per_server']}, every job message "
            f"delivered twice ({rp['job_duplicates_sent']} copies sent); {len(kills)} replay executions SIGKILLed "
            f"mid-pg_restore, job runner SIGKILLed {len(rp['jobrunner_kills'])} times. Target sessions logged: "
            f"{rp['sessions_logged']}; restores replayed by more than one runner (one after the other): "
            f"{rp['restores_with_more_than_one_runner']}; overlaps {len(rp['overlaps'])} (raw, a killed runner's "
            f"backends counted until the server ended them: {len(rp['raw_overlaps'])}"
            + (f", longest {max(o['overlap_seconds'] for o in rp['raw_overlaps'])} s" if rp["raw_overlaps"] else "")
            + f"); orphan databases {len(rp['orphans'])}.")
    t = r.get("throughput")
    if t:
        out.append(f"Throughput: {t['restores_terminal']} restores in {t['wall_seconds']} s = "
                   f"{t['restores_per_minute']} restores/min with {r['parameters']['hosts']} host(s); ARM budget "
                   f"minimum {t['arm_budget_min_seconds']} s (accepted {t['arm_accepted']}, 429s {t['arm_429']}); "
                   f"wall / budget {t['wall_over_budget']}.")
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--restores", type=int, default=200)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--hosts", type=int, default=3, help="Functions host processes on the same storage (1-8)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--time-scale", type=float, default=300.0)
    ap.add_argument("--fault-rate", type=float, default=0.15, help="share of ARM calls with a transport fault")
    ap.add_argument("--answer-fault-rate", type=float, default=0.06,
                    help="share of each read and status poll answered malformed, HTML, 401 (403, 404 on job reads)")
    ap.add_argument("--job-fail-rate", type=float, default=0.03, help="share of triggered jobs that fail in ARM")
    ap.add_argument("--deadline-minutes", type=float, default=20.0)
    ap.add_argument("--server-share", type=float, default=0.25,
                    help="share of the fleet restored into a server (staging, replay, verify by the job runner)")
    ap.add_argument("--replay-kills", type=int, default=3, help="replay executions to SIGKILL mid-pg_restore")
    ap.add_argument("--job-parallelism", type=int, default=3, help="the job runner's executions at once")
    ap.add_argument("--replay-max-per-server", type=int, default=2, help="RESTORE_REPLAY_MAX_PER_SERVER")
    ap.add_argument("--throughput", action="store_true",
                    help="throughput run: restores as database submitted at once under the ARM token bucket "
                         f"{THROUGHPUT_BUDGET}; no faults, kills or server restores (compare --hosts 1 and 3)")
    ap.add_argument("--dir", help="stack directory (default .local/chaos-<time>)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results"))
    args = ap.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.throughput:
        args.fault_rate = args.answer_fault_rate = args.job_fail_rate = args.server_share = 0.0
        args.kills = args.replay_kills = 0
    rates = (args.fault_rate, args.answer_fault_rate, args.job_fail_rate)
    if args.restores < 1 or args.kills < 0 or not 1 <= args.hosts <= 8 or not all(0 <= r < 1 for r in rates) \
            or args.time_scale <= 0 or args.deadline_minutes <= 0 or not 0 <= args.server_share <= 1 \
            or args.replay_kills < 0 or args.job_parallelism < 1 or args.replay_max_per_server < 1:
        ap.error("--restores >= 1, --kills >= 0, --hosts in 1..8, --fault-rate, --answer-fault-rate and "
                 "--job-fail-rate in [0, 1), --time-scale > 0, --deadline-minutes > 0, --server-share in [0, 1], "
                 "--replay-kills >= 0, --job-parallelism >= 1, --replay-max-per-server >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    camp = Campaign(args)
    try:
        result = camp.run()
    except Exception:  # noqa: BLE001 - reported with the traceback, exit 2
        traceback.print_exc()
        say(f"chaos: campaign could not run; logs in {camp.stack.logs}")
        return 2
    finally:
        camp.stop.set()
        camp.stop_hosts()
        with contextlib.suppress(Exception):
            camp.stack.down()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "chaos.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (out / "chaos.md").write_text(markdown(result))
    print(markdown(result))
    say(f"chaos: results in {out / 'chaos.json'} and {out / 'chaos.md'}")
    if not passed(result, "correctness"):
        return 1
    if not passed(result, "campaign"):
        say("chaos: the campaign did not do what was asked (kills, hosts killed): see the campaign rows")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
