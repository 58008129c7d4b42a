"""FunctionsHost: loads ``function_app.py`` unchanged, indexes it once, and runs its triggers.

Consumes: the app directory (``function_app.py`` + ``host.json``), app settings (put into ``os.environ``
before the app is imported, as the real host does), function/master keys.
Produces: queue listeners, timer runners and an HTTP front end on 127.0.0.1; one log line per invocation.
Setting ``FUNCHOST_LEASE_SECONDS`` (default 600, the real queue listener's fixed 10 minutes): how long a running
message stays invisible (renewed at half of it while it runs; after a SIGKILL it reappears once this expires); fault
tests shorten it, together with the app's ``RESTORE_MESSAGE_IN_FLIGHT_SECONDS``.
``auth`` (an :class:`~localdev.funchost.easyauth.AuthConfig`): the host plays App Service built-in authentication in
front of the HTTP functions and sets ``WEBSITE_AUTH_ENABLED=True`` for the app, as the platform does.
Fault knob: ``FUNCHOST_DUPLICATE_DELIVERY=1`` (setting or environment) re-sends one copy of every successfully
processed queue message (each original at most once) to simulate at-least-once delivery.
Bench hooks: every invocation's log line carries ``fn_ms`` (the user function's wall time) and ``cpu_ms`` (CPU time
of the thread that ran it: the app's own work, not other invocations'); setting ``FUNCHOST_PROFILE_DIR`` runs every
invocation under ``cProfile`` and writes ``<dir>/<function>.pstats`` when the host stops.
Timers keep their ``useMonitor`` status in the ``AzureWebJobsStorage`` blobs and run on one host instance at a time
(blob lease), both under the host id (setting ``AzureFunctionsWebHost__hostid``, else the app folder's name).
"""

from __future__ import annotations

import importlib.util
import itertools
import logging
import os
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

from azure.storage.blob import ContainerClient

from localdev.funchost.config import HostConfig, HostError, Settings, host_config, load_host_json
from localdev.funchost.easyauth import AuthConfig
from localdev.funchost.hostlogs import HostLogExport
from localdev.funchost.httpfront import HttpFrontEnd, build_routes
from localdev.funchost.invoke import Invoker, Profiles, QueueClients
from localdev.funchost.queues import IN_FLIGHT_SECONDS, QueueListener
from localdev.funchost.timers import TimerRunner, monitor_by_default
from localdev.funchost.timerstate import CONTAINER, ListenerLock, ScheduleMonitor, ensure_container, host_id

log = logging.getLogger("funchost")

DUPLICATE_KNOB = "FUNCHOST_DUPLICATE_DELIVERY"
PLATFORM_AUTH_SETTING = "WEBSITE_AUTH_ENABLED"  # App Service sets it when built-in authentication is on
LEASE_SETTING = "FUNCHOST_LEASE_SECONDS"  # how long a running message stays invisible (default 600, renewed at half)
PROFILE_SETTING = "FUNCHOST_PROFILE_DIR"  # bench hook: profile every invocation, <dir>/<function>.pstats at stop
_module_ids = itertools.count(1)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def load_app_module(app_dir: Path) -> ModuleType:
    """Import ``function_app.py`` from ``app_dir`` (sibling modules importable); a fresh module each call."""
    path = app_dir / "function_app.py"
    if not path.exists():
        raise HostError(f"{path} not found; --app-dir must be the folder holding function_app.py")
    if str(app_dir) not in sys.path:
        sys.path.insert(0, str(app_dir))
    # never claim the plain name: a later `import function_app` elsewhere in this process must not get this app
    name = f"function_app__{next(_module_ids)}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise HostError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class FunctionsHost:
    """Local stand-in for the Azure Functions host (Python v2 programming model).

    ``settings`` are app settings (``Values``); they are copied into ``os.environ`` before the app is imported
    because app code reads them from there (and restored by :meth:`stop`).
    ``host_json`` replaces ``app_dir/host.json`` when given (tests).
    """

    def __init__(self, app_dir: Path | str, settings: Mapping[str, str] | None = None, *, port: int = 0,
                 host: str = "127.0.0.1", function_keys: Iterable[str] = (), master_key: str | None = None,
                 static: Mapping[str, Path | str] | None = None, pool_size: int = 16,
                 duplicate_delivery: bool | None = None, lease_seconds: float | None = None,
                 drain_timeout: float = 30.0, host_json: Mapping[str, Any] | None = None,
                 auth: AuthConfig | None = None) -> None:
        self.app_dir = Path(app_dir).resolve()
        self.auth = auth
        # the platform tells the app its authentication is on, as App Service does (a read-only app setting)
        self.settings = Settings({**(settings or {}), PLATFORM_AUTH_SETTING: "True" if auth else "False"})
        self._port = port
        self._bind = host
        self.function_keys = list(function_keys)
        self.master_key = master_key
        self.static = {k: Path(v) for k, v in (static or {}).items()}
        for mount, directory in self.static.items():
            if not mount.startswith("/") or not Path(directory).is_dir():
                raise HostError(f"static mount {mount}={directory}: use /prefix=DIR with an existing directory")
        self.pool_size = pool_size
        self._duplicate = duplicate_delivery
        lease = lease_seconds if lease_seconds is not None else self.settings.get(LEASE_SETTING) or IN_FLIGHT_SECONDS
        try:
            self.lease_seconds = float(lease)
        except ValueError:
            raise HostError(f"setting {LEASE_SETTING}={lease!r} must be a number of seconds (>= 2)") from None
        self.drain_timeout = drain_timeout
        self._host_json = host_json
        self.config: HostConfig | None = None
        self.module: ModuleType | None = None
        self.invokers: dict[str, Invoker] = {}
        self.listeners: list[QueueListener] = []
        self.timers: dict[str, TimerRunner] = {}
        self.http: HttpFrontEnd | None = None
        self._stop = threading.Event()
        self._pool: ThreadPoolExecutor | None = None
        self._started = False
        self._saved_env: dict[str, str | None] = {}
        self.host_log_export: HostLogExport | None = None
        self._container: ContainerClient | None = None  #: azure-webjobs-hosts in AzureWebJobsStorage (timers)
        self.profiles: Profiles | None = None  #: setting FUNCHOST_PROFILE_DIR: per-function cProfile stats

    # ---- properties
    @property
    def port(self) -> int:
        if self.http is None:
            raise HostError("host not started")
        return self.http.port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def duplicate_delivery(self) -> bool:
        if self._duplicate is not None:
            return self._duplicate
        return _truthy(self.settings.get(DUPLICATE_KNOB))

    # ---- lifecycle
    def start(self) -> FunctionsHost:
        if self._started:
            raise HostError("host already started")
        self._started = True
        try:
            return self._start()
        except BaseException:
            self.stop(timeout=5)
            raise

    def _start(self) -> FunctionsHost:
        self._saved_env = {k: os.environ.get(k) for k in self.settings.values}
        os.environ.update(self.settings.values)
        doc = dict(self._host_json) if self._host_json is not None else load_host_json(self.app_dir)
        self.config = cfg = host_config(doc)
        self.host_log_export = HostLogExport(cfg.telemetry_mode, self.settings)
        logging.getLogger().addHandler(self.host_log_export)
        self.module = load_app_module(self.app_dir)
        app = getattr(self.module, "app", None)
        if app is None or not hasattr(app, "get_functions"):
            raise HostError(f"{self.app_dir / 'function_app.py'} defines no `app = func.FunctionApp(...)`")
        functions = app.get_functions()  # ONCE: a second call raises in azure-functions 1.x
        queues = QueueClients()
        encoding = cfg.queues.message_encoding
        profile_dir = self.settings.get(PROFILE_SETTING)
        self.profiles = Profiles(profile_dir) if profile_dir else None
        self.invokers = {fn.get_function_name(): Invoker(fn, self.settings, queues, encoding, str(self.app_dir),
                                                         timeout=cfg.function_timeout, profiles=self.profiles)
                         for fn in functions}
        self._pool = ThreadPoolExecutor(max_workers=self.pool_size, thread_name_prefix="invoke")
        http_invokers = []
        for inv in self.invokers.values():
            trig = inv.trigger
            where = f"function {inv.name}"
            if trig.type == "queueTrigger":
                queue = self.settings.resolve(trig.queue_name, where)
                conn = self.settings.connection_string(trig.connection, where)
                self.listeners.append(QueueListener(inv, conn, queue, cfg.queues, self._pool, queues, self._stop,
                                                    lease_seconds=self.lease_seconds,
                                                    duplicate_delivery=self.duplicate_delivery))
            elif trig.type == "timerTrigger":
                self.timers[inv.name] = self._timer(inv, cfg)
            else:
                http_invokers.append(inv)
        self.http = HttpFrontEnd(build_routes(http_invokers), cfg.route_prefix, function_keys=self.function_keys,
                                 master_key=self.master_key, static=self.static, host=self._bind, port=self._port,
                                 auth=self.auth)
        self.http.start()
        for listener in self.listeners:
            listener.start()
        for timer in self.timers.values():
            timer.start()
        log.info("funchost: %d functions (%s) on %s; duplicate delivery %s; telemetryMode %s (the real host would "
                 "%sexport function logs)", len(self.invokers),
                 ", ".join(f"{n}:{i.trigger.type}" for n, i in self.invokers.items()), self.base_url,
                 "ON" if self.duplicate_delivery else "off", cfg.telemetry_mode or "default",
                 "" if self.host_log_export and self.host_log_export.exports else "not ")
        return self

    def _timer(self, inv: Invoker, cfg: HostConfig) -> TimerRunner:
        """A timer with its storage state: the useMonitor status and the listener lock (AzureWebJobsStorage)."""
        trig = inv.trigger
        where = f"function {inv.name}"
        schedule = self.settings.resolve(trig.schedule, where)
        if self._container is None:
            conn = self.settings.connection_string(None, f"timer {where} (status and lock blobs)")
            self._container = ContainerClient.from_connection_string(conn, CONTAINER)
            ensure_container(self._container)
        hid = host_id(self.settings, self.app_dir)
        runner = TimerRunner(inv, schedule, bool(trig.run_on_startup), self._stop,
                             lock=ListenerLock(self._container, hid, inv.name, cfg.singleton))
        use_monitor = trig.use_monitor if trig.use_monitor is not None else monitor_by_default(runner.next_after)
        if use_monitor:
            runner.monitor = ScheduleMonitor(self._container, hid, inv.name)
        return runner

    def stop(self, timeout: float | None = None) -> bool:
        """Stop polling and timers, let running invocations finish (bounded); True if all finished in time."""
        if not self._started:
            return True
        timeout = self.drain_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        self._stop.set()
        if self.http is not None:
            self.http.stop()
        idle = all(listener.wait_idle(max(0.0, deadline - time.monotonic())) for listener in self.listeners)
        for timer in self.timers.values():
            timer.join(max(0.0, deadline - time.monotonic()))
            idle = idle and not timer.running.locked()
        for listener in self.listeners:
            listener.join(max(0.0, deadline - time.monotonic()))
        if self._pool is not None:
            self._pool.shutdown(wait=idle, cancel_futures=True)
        if self.host_log_export is not None:
            logging.getLogger().removeHandler(self.host_log_export)
        if self.profiles is not None:
            log.info("funchost: profiles written: %s", ", ".join(self.profiles.save()) or "none")
        for k, v in self._saved_env.items():  # in-process use: leave the environment as we found it
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        log.info("funchost: stopped (%s)", "drained" if idle else "gave up waiting for running invocations")
        return idle

    def storage_counts(self, by_queue: bool = False) -> dict[str, Any]:
        """Storage transactions made by the host's own queue listeners (receive, receive_empty, delete, update,
        poison, duplicate); summed over queues, or ``{queue: {op: n}}`` with ``by_queue``. The app's calls (state
        rows, stage messages it sends) are not included: the app meters those itself."""
        if by_queue:
            return {listener.queue: listener.counts() for listener in self.listeners}
        total: dict[str, int] = {}
        for listener in self.listeners:
            for op, n in listener.counts().items():
                total[op] = total.get(op, 0) + n
        return total

    def run_timer(self, name: str, past_due: bool = False) -> None:
        """Invoke a timer function now (waits if a scheduled run is in progress)."""
        try:
            self.timers[name].run_once(past_due)
        except KeyError:
            raise HostError(f"no timer function {name!r}; timers: {', '.join(self.timers) or 'none'}") from None

    def __enter__(self) -> FunctionsHost:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
