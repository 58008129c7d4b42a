"""Local stack manager: Azurite, PostgreSQL clusters, the Data Protection emulator and the local Functions host.

CLI: ``python -m localdev.stack up [--dir .local] [--world localdev/worlds/demo.yaml] [--http-port 7071]``,
``down [--dir .local]``, ``status [--dir .local]``. Python API: :class:`Stack` (context manager).

Consumes: the world file (its ``postgres_clusters`` list; ``flexible: true`` marks a Flexible-Server-like cluster),
``local.settings.sample.json``, ``function_app.py``.
Produces in DIR: ``clusters.json``, ``local.settings.json`` (0600), ``stack.env`` (0600; endpoints, keys),
``funchost.keys.json`` and ``dpemu/token`` (0600; the keys and the emulator token reach the processes through these
files, never through a command line), ``tls/`` (the local CA every local TLS endpoint uses: ``ca.pem``, its key
0600, the clusters' server certificate), ``secrets/`` (0700: ``entra.token`` = ENTRA_STATIC_TOKEN and
``pg-passwords.json`` = the passwords of the flexible clusters' admin and Entra roles),
``auth/`` (the local Entra ID issuer, localdev/localissuer.py: ``issuer.key`` 0600, ``jwks.json``, the host's
``auth.json``), ``stack.json`` (PIDs, ports, log paths), ``logs/``.
Start order: Azurite → clusters → emulator → Functions host → local job runner (``localdev/jobrunner.py``, when it
exists; restarted with the host);
each must be ready before the next starts. A second ``up`` while a stack in DIR is alive is REFUSED (run
``make down`` first); a stack whose processes are all gone is treated as stale and replaced.
A component that fails to start is reported with the last 30 lines of its log, and everything already started
is stopped. ``down`` stops exactly the processes recorded in ``stack.json`` (SIGTERM, then SIGKILL), checking
each PID still runs the expected command, and removes only files ``up`` wrote.
Random ports everywhere (except the Functions host: 7071 by default, 0 = free port), so stacks in different
dirs run side by side. Secrets (keys, token, connection string) go to the 0600 files only, never to logs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import trustme
import yaml

from localdev import localissuer
from localdev.azurite import Azurite, AzuriteError
from localdev.pgcluster import FlexibleSetup, PgCluster, PgClusterError, find_bindir

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DIR = REPO / ".local"
DEFAULT_WORLD = REPO / "localdev" / "worlds" / "demo.yaml"
DASHBOARD_DIR = REPO / "localdev" / "dashboard"
SAMPLE_SETTINGS = REPO / "local.settings.sample.json"
OWNED_MARKER = ".stack-owned"
OWNED_SUBDIRS = ("azurite", "pg", "dpemu", "tls", "secrets", "auth")
JOBRUNNER = REPO / "localdev" / "jobrunner.py"
STAGING_CONTAINER = "restore-staging"  # the container name of the restore service's staging accounts in a world
ADMIN_USER = "pgadmin"  # the admin of every flexible cluster (LOGIN CREATEDB CREATEROLE, not superuser)
ENTRA_USER = "restore-service"  # the Entra principal role of the service's identity; password = ENTRA_STATIC_TOKEN
#: what ``up`` adds for restores into a server (issue 12); the same values go into the Functions host's settings
RESTORE_ENV_KEYS = ("RESTORE_STAGING", "RESTORE_STAGING_CONNECTION_STRING", "RESTORE_POSTGRES_HOSTS",
                    "RESTORE_POSTGRES_SSLROOTCERT", "RESTORE_ENTRA_USER", "ENTRA_STATIC_TOKEN", "KEYVAULT_ENDPOINT",
                    "KEYVAULT_CA_BUNDLE", "RESTORE_REPLAY_CLIENT_VERSION", "RESTORE_PG_BINDIR")
ENV_KEYS = ("RESTORE_API_URL", "RESTORE_API_KEY", "AZURE_STORAGE_CONNECTION_STRING", "DATAPROTECTION_ENDPOINT",
            "DATAPROTECTION_CA_BUNDLE", "DATAPROTECTION_TOKEN", "DATAPROTECTION_ADMIN_URL", "WORLD_FILE")
TAIL_LINES = 30


class StackError(RuntimeError):
    """The stack could not be started/stopped; the message says which component and what to do."""


def log_tail(path: Path | str | None, lines: int = TAIL_LINES) -> str:
    if not path:
        return "(no log)"
    try:
        text = Path(path).read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return f"(no log at {path})"
    return "\n".join("    " + line for line in text) or "    (log is empty)"


def cluster_env_key(name: str) -> str:
    return f"PGCLUSTER_{name.upper().replace('-', '_')}_DSN"


def pid_alive(pid: int | None, marker: str | None = None) -> bool:
    """True if ``pid`` runs (not a zombie) and, when given, its command line contains ``marker``."""
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return False
        if marker is not None:
            return marker in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        return True
    except (OSError, IndexError):
        return False


def _signal(pid: int, sig: int, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def stop_pid(pid: int | None, marker: str | None, *, popen: subprocess.Popen[bytes] | None = None,
             sig: int = signal.SIGTERM, timeout: float = 10, group: bool = True) -> None:
    """Graceful stop (``sig``), then SIGKILL after ``timeout``; waits until the process is gone."""
    if not pid or not pid_alive(pid, marker):
        if popen is not None:
            popen.poll()
        return
    _signal(pid, sig, group=False)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen is not None and popen.poll() is not None:
            return
        if not pid_alive(pid):
            return
        time.sleep(0.05)
    _signal(pid, signal.SIGKILL, group=group)
    _signal(pid, signal.SIGKILL, group=False)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (popen.poll() is None if popen is not None else pid_alive(pid)):
        time.sleep(0.05)


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    tmp.replace(path)


def world_clusters(world: Path) -> list[str]:
    return list(world_cluster_specs(world))


def world_cluster_specs(world: Path) -> dict[str, bool]:
    """Cluster name -> whether it is Flexible-Server-like (``flexible: true``), in world order."""
    try:
        raw = yaml.safe_load(world.read_text())
    except FileNotFoundError:
        raise StackError(f"world file {world} not found; pass --world with an existing YAML file") from None
    except yaml.YAMLError as exc:
        raise StackError(f"world file {world} is not valid YAML: {exc}") from None
    items = raw.get("postgres_clusters") if isinstance(raw, dict) else None
    if not isinstance(items, list) or not items or not all(isinstance(i, dict) and i.get("name") for i in items):
        raise StackError(f"world file {world}: add a top-level `postgres_clusters:` list of {{name: <cluster>}}")
    bad = [i["name"] for i in items if not isinstance(i.get("flexible", False), bool)]
    if bad:
        raise StackError(f"world file {world}: postgres_clusters {bad}: `flexible:` takes true or false")
    return {str(i["name"]): bool(i.get("flexible", False)) for i in items}


class Stack:
    """One local stack in ``dir``. ``up()`` returns the stack.env values; ``down()`` stops everything it started.

    ``app_dir`` (default: the repository) holds function_app.py; ``time_scale`` is passed to the emulator.
    """

    def __init__(self, dir: Path | str = DEFAULT_DIR, world: Path | str = DEFAULT_WORLD, http_port: int = 7071,  # noqa: A002
                 settings_overrides: Mapping[str, str] | None = None, *, app_dir: Path | str = REPO,
                 time_scale: float | None = None, start_timeout: float = 180) -> None:
        self.dir = Path(dir).resolve()
        self.world = Path(world).resolve()
        self.http_port = http_port
        self.settings_overrides = dict(settings_overrides or {})
        self.app_dir = Path(app_dir).resolve()
        self.time_scale = time_scale
        self.start_timeout = start_timeout
        self.logs = self.dir / "logs"
        self.state_path = self.dir / "stack.json"
        self.env_path = self.dir / "stack.env"
        self.components: dict[str, dict[str, Any]] = {}  # name -> {pid, marker, log, ...}; order = start order
        self.env: dict[str, str] = {}
        self._popens: dict[str, subprocess.Popen[bytes]] = {}
        self._azurite: Azurite | None = None
        self._clusters: dict[str, PgCluster] = {}
        self._base_settings: dict[str, str] = {}
        self._function_key = ""
        self._master_key = ""
        self._entra_token = ""
        self._admin_password = ""

    # ------------------------------------------------------------------ state
    def read_state(self) -> dict[str, Any] | None:
        try:
            state: dict[str, Any] = json.loads(self.state_path.read_text())
            return state
        except (OSError, json.JSONDecodeError):
            return None

    def alive_components(self, state: Mapping[str, Any] | None = None) -> dict[str, int]:
        state = self.read_state() if state is None else state
        comps = (state or {}).get("components", {})
        return {n: c["pid"] for n, c in comps.items() if pid_alive(c.get("pid"), c.get("marker"))}

    def _save_state(self) -> None:
        state = {"dir": str(self.dir), "world": str(self.world), "app_dir": str(self.app_dir),
                 "http_port": self.http_port, "components": self.components}
        _write_private(self.state_path, json.dumps(state, indent=2))

    @property
    def host_pid(self) -> int | None:
        comp = self.components.get("funchost")
        return comp["pid"] if comp else None

    # ------------------------------------------------------------------ up
    def up(self) -> dict[str, str]:
        self.dir.mkdir(parents=True, exist_ok=True)
        alive = self.alive_components()
        if alive:
            raise StackError(f"a stack is already running in {self.dir} "
                             f"({', '.join(f'{n} pid {p}' for n, p in alive.items())}); "
                             f"run `make down` (or `python -m localdev.stack down --dir {self.dir}`) first")
        clusters = world_cluster_specs(self.world)
        if not (REPO / "localdev" / "dpemu" / "__main__.py").exists():
            raise StackError("the Data Protection emulator (localdev/dpemu/__main__.py) does not exist yet; "
                             "it is being written in parallel — pull the latest main")
        if not (self.app_dir / "function_app.py").exists():
            raise StackError(f"{self.app_dir / 'function_app.py'} not found; the Functions host has nothing to run")
        self._clean_previous()
        self.logs.mkdir(parents=True, exist_ok=True)
        (self.dir / OWNED_MARKER).write_text("created by localdev.stack; `down` stops what stack.json lists\n")
        try:
            conn = self._start_azurite()
            self._make_tls_and_secrets()
            dsns = self._start_clusters(clusters)
            ready = self._start_emulator(conn)
            self._base_settings = {**self._settings(conn, ready), **self._restore_settings(conn, ready)}
            self._function_key = secrets.token_hex(24)
            self._master_key = secrets.token_hex(24)
            self.start_host()
            port = self.components["funchost"]["port"]
            self.env = {
                "RESTORE_API_URL": f"http://127.0.0.1:{port}/api",
                "RESTORE_API_KEY": self._function_key,
                "AZURE_STORAGE_CONNECTION_STRING": conn,
                "DATAPROTECTION_ENDPOINT": ready["endpoint"],
                "DATAPROTECTION_CA_BUNDLE": ready["ca_bundle"],
                "DATAPROTECTION_TOKEN": self._base_settings["DATAPROTECTION_TOKEN"],
                "DATAPROTECTION_ADMIN_URL": ready["admin_url"],
                "WORLD_FILE": str(self.world),
                **{cluster_env_key(n): d for n, d in dsns.items()},
                **{k: self._base_settings[k] for k in RESTORE_ENV_KEYS},
                "PGFLEX_ADMIN_USER": ADMIN_USER,
                "PGFLEX_ADMIN_PASSWORD": self._admin_password,
            }
            if DASHBOARD_DIR.is_dir():
                self.env["DASHBOARD_URL"] = f"http://127.0.0.1:{port}/dashboard/"
            # shell-quoted: `set -a; . .local/stack.env` works (connection strings hold ';', settings hold JSON)
            _write_private(self.env_path, "".join(f"{k}={shlex.quote(v)}\n" for k, v in self.env.items()))
            self._save_state()
        except BaseException:
            self._stop_all()
            raise
        return dict(self.env)

    def _clean_previous(self) -> None:
        """Remove leftovers of a previous (dead) stack in this dir: only what ``up`` creates."""
        if not (self.dir / OWNED_MARKER).exists():
            return
        for sub in OWNED_SUBDIRS:
            shutil.rmtree(self.dir / sub, ignore_errors=True)
        for name in ("stack.json", "stack.env", "clusters.json", "local.settings.json", "funchost.ready.json",
                     "funchost.keys.json"):
            (self.dir / name).unlink(missing_ok=True)

    def _record(self, component: str, **info: Any) -> None:
        self.components[component] = info
        self._save_state()  # so `down` from another process can stop a half-started stack

    def _start_azurite(self) -> str:
        az = Azurite(self.dir / "azurite")
        self._azurite = az
        try:
            az.start()
        except AzuriteError as exc:
            raise StackError(f"Azurite failed to start:\n{exc}") from None
        self._link_log("azurite", az.log_path)
        self._record("azurite", pid=az.pid, marker="azurite.js", log=str(az.log_path), ports=dict(az.ports))
        return az.connection_string

    @property
    def ca_pem(self) -> Path:
        return self.dir / "tls" / "ca.pem"

    def _make_tls_and_secrets(self) -> None:
        """The local CA (shared by the clusters and the emulator), the clusters' server certificate for 127.0.0.1,
        the Entra token and the flexible admin password (0600 files only)."""
        tls, sec = self.dir / "tls", self.dir / "secrets"
        tls.mkdir(parents=True, exist_ok=True)
        sec.mkdir(mode=0o700, parents=True, exist_ok=True)
        ca = trustme.CA(organization_name="restore local CA")
        leaf = ca.issue_cert("127.0.0.1", "localhost")
        ca.cert_pem.write_to_path(str(self.ca_pem))
        _write_private(tls / "ca.key", ca.private_key_pem.bytes().decode())
        leaf.cert_chain_pems[0].write_to_path(str(tls / "pg-server.pem"))
        _write_private(tls / "pg-server.key", leaf.private_key_pem.bytes().decode())
        self._entra_token = secrets.token_urlsafe(32)
        self._admin_password = secrets.token_urlsafe(18)
        _write_private(sec / "entra.token", self._entra_token)
        localissuer.create(self.dir, require_authentication=False)  # the local Entra ID: key, JWKS, auth file

    def _flexible_setup(self) -> FlexibleSetup:
        tls = self.dir / "tls"
        return FlexibleSetup(self._admin_password, self._entra_token, tls / "pg-server.pem", tls / "pg-server.key",
                             ADMIN_USER, ENTRA_USER)

    def _start_clusters(self, specs: Mapping[str, bool]) -> dict[str, str]:
        dsns = {}
        passwords_file = self.dir / "secrets" / "pg-passwords.json"
        flexible = [n for n, f in specs.items() if f]
        _write_private(passwords_file, json.dumps({n: {ADMIN_USER: self._admin_password,
                                                       ENTRA_USER: self._entra_token} for n in flexible}))
        for name, is_flexible in specs.items():
            pg = PgCluster(name, self.dir / "pg", flexible=self._flexible_setup() if is_flexible else None)
            self._clusters[name] = pg
            try:
                pg.start()
            except (PgClusterError, ValueError) as exc:
                raise StackError(f"PostgreSQL cluster {name} failed to start:\n{exc}") from None
            self._link_log(f"pg-{name}", pg.log_path)
            self._record(f"pg:{name}", pid=pg.pid, marker=str(pg.data), log=str(pg.log_path), port=pg.port,
                         basedir=str(self.dir / "pg"), name=name)
            dsns[name] = pg.dsn()
        clusters_json: dict[str, dict[str, Any]] = {
            n: {"host": pg.host, "port": pg.port, "dsn": pg.dsn(), "bindir": str(pg.bindir), "version": pg.version}
            for n, pg in self._clusters.items()}
        for n in flexible:
            clusters_json[n].update(flexible=True, admin_user=ADMIN_USER, entra_user=ENTRA_USER,
                                    sslrootcert=str(self.ca_pem), passwords_file=str(passwords_file))
        (self.dir / "clusters.json").write_text(json.dumps(clusters_json, indent=2))
        return dsns

    def _link_log(self, name: str, target: Path) -> None:
        link = self.logs / f"{name}.log"
        link.unlink(missing_ok=True)
        link.symlink_to(target)

    def _spawn(self, name: str, cmd: list[str], env: Mapping[str, str], marker: str, **info: Any) -> None:
        log_path = self.logs / f"{name}.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(cmd, cwd=REPO, env=dict(env), stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self._popens[name] = proc
        self._record(name, pid=proc.pid, marker=marker, log=str(log_path), **info)

    def _wait_ready(self, name: str, ready_file: Path, timeout: float) -> dict[str, Any]:
        proc = self._popens[name]
        deadline = time.monotonic() + timeout
        while True:
            if ready_file.exists():
                with contextlib.suppress(json.JSONDecodeError):
                    data: dict[str, Any] = json.loads(ready_file.read_text())
                    return data
            if proc.poll() is not None:
                raise StackError(f"{name} exited with code {proc.returncode} during start; last lines of "
                                 f"{self.components[name]['log']}:\n{log_tail(self.components[name]['log'])}")
            if time.monotonic() > deadline:
                raise StackError(f"{name} not ready after {timeout:.0f}s; last lines of "
                                 f"{self.components[name]['log']}:\n{log_tail(self.components[name]['log'])}")
            time.sleep(0.05)

    def _start_emulator(self, conn: str) -> dict[str, Any]:
        state = self.dir / "dpemu"
        state.mkdir(parents=True, exist_ok=True)
        ready_file = state / "ready.json"
        token = secrets.token_hex(24)
        token_file = state / "token"  # never on a command line: every local user can read those
        _write_private(token_file, token)
        cmd = [sys.executable, "-m", "localdev.dpemu", "--world", str(self.world), "--clusters",
               str(self.dir / "clusters.json"), "--state-dir", str(state), "--port", "0",
               "--token-file", str(token_file), "--ready-file", str(ready_file),
               "--entra-token-file", str(self.dir / "secrets" / "entra.token"),
               "--ca-cert", str(self.ca_pem), "--ca-key", str(self.dir / "tls" / "ca.key")]
        if self.time_scale is not None:
            cmd += ["--time-scale", str(self.time_scale)]
        self._spawn("dpemu", cmd, {**os.environ, "AZURE_STORAGE_CONNECTION_STRING": conn}, "localdev.dpemu")
        ready = self._wait_ready("dpemu", ready_file, self.start_timeout)
        missing = [k for k in ("endpoint", "ca_bundle", "admin_url") if not ready.get(k)]
        if missing:
            raise StackError(f"emulator ready file {ready_file} lacks {missing}")
        ready["token"] = token
        self.components["dpemu"].update(endpoint=ready["endpoint"])
        self._save_state()
        return ready

    def _settings(self, conn: str, ready: Mapping[str, Any]) -> dict[str, str]:
        try:
            values = json.loads(SAMPLE_SETTINGS.read_text())["Values"]
        except (OSError, KeyError, json.JSONDecodeError) as exc:
            raise StackError(f"{SAMPLE_SETTINGS} unreadable ({exc}); it must hold a \"Values\" object") from None
        values = {str(k): str(v) for k, v in values.items()}
        values.update({"AzureWebJobsStorage": conn, "RestoreStorage": conn,
                       "DATAPROTECTION_ENDPOINT": str(ready["endpoint"]),
                       "DATAPROTECTION_CA_BUNDLE": str(ready["ca_bundle"]),
                       "DATAPROTECTION_TOKEN": str(ready["token"])})
        return values

    def _restore_settings(self, conn: str, ready: Mapping[str, Any]) -> dict[str, str]:
        """Settings for restores into a server (contract of issue 12), from what the emulator says of its world:
        the staging container per region, the loopback port of every server's cluster, Entra and Key Vault."""
        world = self._emulator_world(ready)
        staging = {c["location"]: {"container_url": url, "container_id": c["id"],
                                   "local_container": c["azurite_container"]}
                   for url, c in sorted(world["containers"].items())
                   if url.rstrip("/").rsplit("/", 1)[-1] == STAGING_CONTAINER}
        hosts = {sid.rstrip("/").rsplit("/", 1)[-1]: f"{self._clusters[s['cluster']].host}:"
                 f"{self._clusters[s['cluster']].port}"
                 for sid, s in sorted(world["servers"].items()) if s["cluster"] in self._clusters}
        bindir = find_bindir()
        return {"RESTORE_STAGING": json.dumps(staging), "RESTORE_STAGING_CONNECTION_STRING": conn,
                "RESTORE_POSTGRES_HOSTS": json.dumps(hosts), "RESTORE_POSTGRES_SSLROOTCERT": str(self.ca_pem),
                "RESTORE_ENTRA_USER": ENTRA_USER, "ENTRA_STATIC_TOKEN": self._entra_token,
                "KEYVAULT_ENDPOINT": str(ready["keyvault_endpoint"]), "KEYVAULT_CA_BUNDLE": str(ready["ca_bundle"]),
                "RESTORE_REPLAY_CLIENT_VERSION": bindir.parent.name, "RESTORE_PG_BINDIR": str(bindir)}

    @staticmethod
    def _emulator_world(ready: Mapping[str, Any]) -> dict[str, Any]:
        ctx = ssl.create_default_context(cafile=str(ready["ca_bundle"]))
        req = urllib.request.Request(f"{ready['admin_url']}/world",  # noqa: S310 - the emulator's https URL
                                     headers={"Authorization": f"Bearer {ready['token']}"})
        try:
            with urllib.request.urlopen(req, timeout=30, context=ctx) as r:  # noqa: S310
                world: dict[str, Any] = json.loads(r.read())
                return world
        except (urllib.error.URLError, OSError, json.JSONDecodeError) as exc:
            raise StackError(f"the emulator's admin API {ready['admin_url']}/world did not answer: {exc}") from None

    # ------------------------------------------------------------------ Functions host
    def start_host(self, settings_overrides: Mapping[str, str] | None = None) -> int:
        """Start the Functions host (sample settings + stack values + constructor and given overrides)."""
        if not self._base_settings:
            raise StackError("start_host() needs a stack started by up() in this process")
        if pid_alive(self.host_pid, "localdev.funchost"):
            raise StackError(f"the Functions host is already running (pid {self.host_pid}); use restart_host()")
        values = {**self._base_settings, **self.settings_overrides, **(settings_overrides or {})}
        settings_path = self.dir / "local.settings.json"
        _write_private(settings_path, json.dumps({"IsEncrypted": False, "Values": values}, indent=2))
        ready_file = self.dir / "funchost.ready.json"
        ready_file.unlink(missing_ok=True)
        previous = self.components.get("funchost", {}).get("port")
        port = previous or self.http_port  # a restart keeps the port a `0` start got
        keys_path = self.dir / "funchost.keys.json"  # never on a command line: every local user can read those
        _write_private(keys_path, json.dumps({"functionKeys": [self._function_key], "masterKey": self._master_key}))
        # the platform's built-in authentication, played by the host (localdev/funchost/easyauth.py): tokens of the
        # local issuer (localdev/localissuer.py); authentication required when the app expects Entra callers
        auth_file = localissuer.write_auth_file(
            self.dir, require_authentication=values.get("RESTORE_AUTH_MODE", "key").strip().lower() == "entra")
        cmd = [sys.executable, "-m", "localdev.funchost", "--app-dir", str(self.app_dir), "--settings",
               str(settings_path), "--port", str(port), "--keys-file", str(keys_path), "--ready-file",
               str(ready_file), "--auth-file", str(auth_file)]
        if DASHBOARD_DIR.is_dir():
            cmd += ["--static", f"/dashboard={DASHBOARD_DIR}"]
        self._spawn("funchost", cmd, os.environ, "localdev.funchost")
        ready = self._wait_ready("funchost", ready_file, 60)
        self.components["funchost"]["port"] = int(ready["port"])
        self._probe_host(int(ready["port"]))
        self._save_state()
        self._start_jobrunner(settings_path)
        return int(self.components["funchost"]["pid"])

    def _start_jobrunner(self, settings_path: Path) -> None:
        """The local stand-in of the Container Apps replay job (``localdev/jobrunner.py``, when it exists): it
        reads the same settings file as the host and starts ``python -m restore_core.replay`` per message."""
        if not JOBRUNNER.exists():
            return
        self.stop_jobrunner()  # one runner per stack: a host started after kill_host() replaces the one still running
        self._spawn("jobrunner", [sys.executable, "-m", "localdev.jobrunner", "--settings", str(settings_path)],
                    os.environ, "localdev.jobrunner")
        time.sleep(0.2)
        proc = self._popens["jobrunner"]
        if proc.poll() is not None:
            raise StackError(f"the local job runner exited with code {proc.returncode} during start; last lines of "
                             f"{self.components['jobrunner']['log']}:\n{log_tail(self.components['jobrunner']['log'])}")

    def stop_jobrunner(self, timeout: float = 20) -> None:
        comp = self.components.get("jobrunner")
        if comp:
            stop_pid(comp["pid"], "localdev.jobrunner", popen=self._popens.get("jobrunner"), timeout=timeout)

    def _probe_host(self, port: int) -> None:
        deadline = time.monotonic() + 30
        url = f"http://127.0.0.1:{port}/admin/host/ping"
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - fixed http://127.0.0.1 URL
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise StackError(f"Functions host does not answer {url}; last lines of its log:\n"
                                 f"{log_tail(self.components['funchost']['log'])}")
            time.sleep(0.1)

    def kill_host(self) -> None:
        """SIGKILL the Functions host (crash simulation: no draining, in-flight messages are abandoned)."""
        pid = self.host_pid
        if pid and pid_alive(pid, "localdev.funchost"):
            stop_pid(pid, "localdev.funchost", popen=self._popens.get("funchost"), sig=signal.SIGKILL, timeout=5)

    def stop_host(self, timeout: float = 40) -> None:
        """Graceful stop: SIGTERM, the host drains running invocations, SIGKILL after ``timeout``. The local job
        runner stops first (it is restarted with the host)."""
        self.stop_jobrunner()
        stop_pid(self.host_pid, "localdev.funchost", popen=self._popens.get("funchost"), timeout=timeout)

    def restart_host(self, settings_overrides: Mapping[str, str] | None = None) -> int:
        self.stop_host()
        return self.start_host(settings_overrides)

    # ------------------------------------------------------------------ down
    def down(self) -> list[str]:
        """Stop everything recorded for this dir (this process's stack or one started by another process)."""
        if not self.components:
            state = self.read_state()
            if state:
                self.components = state.get("components", {})
        stopped = self._stop_all()
        for name in ("stack.json", "stack.env", "funchost.ready.json", "funchost.keys.json"):
            (self.dir / name).unlink(missing_ok=True)
        return stopped

    def _stop_all(self) -> list[str]:
        stopped = []
        for name in reversed(list(self.components)):
            comp = self.components[name]
            pid, marker = comp.get("pid"), comp.get("marker")
            if not pid_alive(pid, marker):
                if name in self._popens:
                    self._popens[name].poll()  # reap
                continue
            if name.startswith("pg:"):
                pg = self._clusters.get(comp["name"]) or PgCluster(comp["name"], Path(comp["basedir"]),
                                                                   port=comp["port"])
                pg.stop()
                stop_pid(pid, marker, sig=signal.SIGINT, timeout=10, group=False)
            elif name == "azurite" and self._azurite is not None:
                self._azurite.stop()
                stop_pid(pid, marker)
            else:
                stop_pid(pid, marker, popen=self._popens.get(name), timeout=40 if name == "funchost" else 10)
            stopped.append(name)
        return stopped

    def status(self) -> dict[str, dict[str, Any]]:
        state = self.read_state() or {}
        return {n: {**c, "alive": pid_alive(c.get("pid"), c.get("marker"))}
                for n, c in state.get("components", {}).items()}

    def __enter__(self) -> Stack:
        self.up()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.down()


# ---------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m localdev.stack", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("up", "down", "status"):
        sp = sub.add_parser(name)
        sp.add_argument("--dir", type=Path, default=DEFAULT_DIR)
        if name == "up":
            sp.add_argument("--world", type=Path, default=DEFAULT_WORLD)
            sp.add_argument("--http-port", type=int, default=7071)
            sp.add_argument("--app-dir", type=Path, default=REPO, help="folder with function_app.py")
            sp.add_argument("--time-scale", type=float, help="emulator clock speed-up (default: the emulator's)")
            sp.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                            help="app setting override for the Functions host (repeatable)")
    args = p.parse_args(argv)
    if args.cmd == "up":
        return _cli_up(args, _settings_overrides(p, args.set))
    if args.cmd == "down":
        return _cli_down(Stack(args.dir))
    return _cli_status(Stack(args.dir))


def _settings_overrides(p: argparse.ArgumentParser, items: list[str]) -> dict[str, str]:
    """``--set NAME=VALUE`` options as a mapping; a malformed one is a usage error (exit 2)."""
    overrides = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not sep or not k:
            p.error(f"--set {item!r}: write it as NAME=VALUE")
        overrides[k] = v
    return overrides


def _cli_up(args: argparse.Namespace, overrides: dict[str, str]) -> int:
    stack = Stack(args.dir, args.world, args.http_port, overrides, app_dir=args.app_dir, time_scale=args.time_scale)
    try:
        env = stack.up()
    except StackError as exc:
        print(f"stack up failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stack up interrupted; everything started was stopped", file=sys.stderr)
        return 130
    print(f"stack up in {stack.dir}")
    for k in ("RESTORE_API_URL", "DASHBOARD_URL", "DATAPROTECTION_ENDPOINT"):
        if k in env:
            print(f"  {k}={env[k]}")
    print(f"  keys and connection strings: {stack.env_path} (source it); logs: {stack.logs}; stop: make down")
    return 0


def _cli_down(stack: Stack) -> int:
    stopped = stack.down()
    print(f"stack down in {stack.dir}: stopped {', '.join(stopped) or 'nothing (no running stack)'}")
    return 0


def _cli_status(stack: Stack) -> int:
    status = stack.status()
    if not status:
        print(f"no stack in {stack.dir} (start one with `make up`)")
        return 1
    for name, comp in status.items():
        extra = f" port {comp['port']}" if comp.get("port") else ""
        print(f"  {name:<20} pid {comp.get('pid')!s:<8} {'running' if comp['alive'] else 'DEAD'}{extra}  "
              f"log {comp.get('log')}")
    return 0 if all(c["alive"] for c in status.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
