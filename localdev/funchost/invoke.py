"""Calling one indexed function: argument binding, output bindings, context, async support.

Consumes: a ``FunctionBuilder``-produced function (``app.get_functions()`` entry) and a trigger value.
Produces: the user function's return value; queue output bindings are flushed only after success,
like the real host.
"""

from __future__ import annotations

import asyncio
import base64
import cProfile
import inspect
import json
import pstats
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import azure.functions as func
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient

from localdev.funchost.config import HostError, Settings
from localdev.funchost.hostlogs import invocation

SUPPORTED_TRIGGERS = ("queueTrigger", "timerTrigger", "httpTrigger")


class Out(func.Out):  # type: ignore[type-arg]
    """The host's ``func.Out``: holds what the function set."""

    def __init__(self) -> None:
        self.value: Any = None

    def set(self, val: Any) -> None:
        self.value = val

    def get(self) -> Any:
        return self.value


class Context(func.Context):
    def __init__(self, function_name: str, function_directory: str) -> None:
        self._invocation_id = str(uuid.uuid4())
        self._function_name = function_name
        self._function_directory = function_directory
        self._tls = threading.local()

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def thread_local_storage(self) -> Any:
        return self._tls

    @property
    def trace_context(self) -> Any:
        return None

    @property
    def retry_context(self) -> Any:
        return None


def encode_message(text: str, encoding: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii") if encoding == "base64" else text


def _message_texts(value: Any) -> list[str]:
    """An output binding value as queue message texts (a list means one message per element)."""
    if value is None:
        return []
    items = value if isinstance(value, list | tuple) else [value]
    texts = []
    for item in items:
        if isinstance(item, bytes):
            texts.append(item.decode("utf-8"))
        elif isinstance(item, str):
            texts.append(item)
        else:
            texts.append(json.dumps(item))
    return texts


class _Gate:
    """Decides, once, between "the invocation flushes its outputs" and "the host gave up on it"."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._abandoned = False
        self._flushing = False

    def begin_flush(self) -> bool:
        with self._lock:
            self._flushing = not self._abandoned
            return self._flushing

    def abandon(self) -> bool:
        with self._lock:
            self._abandoned = not self._flushing
            return self._abandoned


class FunctionTimeoutError(Exception):
    """The invocation ran past host.json ``functionTimeout``: it failed (the real host then restarts the worker)."""


def _timespan(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


class Profiles:
    """Bench hook (host setting ``FUNCHOST_PROFILE_DIR``): every invocation runs under its own ``cProfile`` profiler
    (which sees only the invoking thread), merged per function; :meth:`save` writes ``<dir>/<function>.pstats``."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._stats: dict[str, pstats.Stats] = {}
        self._lock = threading.Lock()

    def add(self, function: str, prof: cProfile.Profile) -> None:
        with self._lock:
            if function in self._stats:
                self._stats[function].add(prof)
            else:
                self._stats[function] = pstats.Stats(prof)

    def save(self) -> list[str]:
        import os

        os.makedirs(self.directory, exist_ok=True)
        with self._lock:
            paths = []
            for function, stats in self._stats.items():
                path = os.path.join(self.directory, f"{function}.pstats")
                stats.dump_stats(path)
                paths.append(path)
            return paths


class QueueClients:
    """Cached queue clients per (connection string, queue); creates queues on first use."""

    def __init__(self) -> None:
        self._clients: dict[tuple[str, str], QueueClient] = {}
        self._lock = threading.Lock()

    def get(self, conn: str, name: str) -> QueueClient:
        key = (conn, name)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = QueueClient.from_connection_string(conn, name)
                try:
                    client.create_queue()
                except ResourceExistsError:
                    pass
                self._clients[key] = client
        return client


class Invoker:
    """Binds arguments for one function and calls it."""

    def __init__(self, fn: Any, settings: Settings, queues: QueueClients, encoding: str, app_dir: str, *,
                 timeout: float | None = None, profiles: Profiles | None = None) -> None:
        self.fn = fn
        self.profiles = profiles  #: bench hook: profile every invocation (None: off)
        self.timeout = timeout  #: host.json functionTimeout in seconds (None: no limit)
        self.name: str = fn.get_function_name()
        self.user: Callable[..., Any] = fn.get_user_function()
        self.trigger = fn.get_trigger()
        self.settings = settings
        self.queues = queues
        self.encoding = encoding
        self.app_dir = app_dir
        self.params = inspect.signature(self.user).parameters
        self.outputs: list[tuple[str, str, str]] = []  # (arg name, connection string, queue name)
        self.http_return = False
        if self.trigger.type not in SUPPORTED_TRIGGERS:
            raise HostError(f"function {self.name}: trigger type {self.trigger.type!r} is not supported by the local "
                            f"host (supported: {', '.join(SUPPORTED_TRIGGERS)})")
        for b in fn.get_bindings():
            if b is self.trigger or (b.name == self.trigger.name and b.type == self.trigger.type):
                continue
            if b.type == "http" and b.name == "$return":
                self.http_return = True
            elif b.type == "queue":
                where = f"function {self.name} output binding {b.name}"
                queue = settings.resolve(b.queue_name, where)
                conn = settings.connection_string(b.connection, where)
                self.outputs.append((b.name, conn, queue))
            else:
                raise HostError(f"function {self.name}: binding {b.name!r} of type {b.type!r} is not supported by the "
                                "local host (supported outputs: queue, http); use the SDK in code or extend funchost")

    def __call__(self, trigger_value: Any, stats: dict[str, float] | None = None) -> Any:
        """Run the function; past ``timeout`` raise :class:`FunctionTimeoutError`. The real host then restarts the
        worker process; a thread cannot be killed, so here the late invocation runs on, detached, and its output
        bindings are discarded (it failed). ``stats`` receives the user function's ``cpu_s`` (CPU time of the thread
        that ran it) and ``wall_s``."""
        gate = _Gate()
        stats = stats if stats is not None else {}
        if self.timeout is None:
            return self._run(trigger_value, gate, stats)
        box: dict[str, Any] = {}
        done = threading.Event()

        def target() -> None:
            try:
                box["result"] = self._run(trigger_value, gate, stats)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                box["error"] = exc
            finally:
                done.set()

        threading.Thread(target=target, name=f"invoke-{self.name}", daemon=True).start()
        if not done.wait(self.timeout) and gate.abandon():
            raise FunctionTimeoutError(f"Timeout value of {_timespan(self.timeout)} was exceeded by function: "
                                       f"Functions.{self.name}")
        done.wait()  # finished in time, or already flushing its outputs when the timeout struck
        if "error" in box:
            raise box["error"]
        return box["result"]

    def _call_user(self, kwargs: dict[str, Any], stats: dict[str, float]) -> Any:
        """The user function, timed: thread CPU time and wall time (and profiled when the bench hook is on)."""
        prof = cProfile.Profile() if self.profiles is not None else None
        cpu0, wall0 = time.thread_time(), time.perf_counter()
        try:
            if prof is not None:
                prof.enable()
            result = self.user(**kwargs)
            if inspect.isawaitable(result):
                result = asyncio.run(_await(result))
            return result
        finally:
            if prof is not None:
                prof.disable()
            stats["cpu_s"], stats["wall_s"] = time.thread_time() - cpu0, time.perf_counter() - wall0
            if prof is not None and self.profiles is not None:
                self.profiles.add(self.name, prof)

    def _run(self, trigger_value: Any, gate: _Gate, stats: dict[str, float]) -> Any:
        kwargs: dict[str, Any] = {self.trigger.name: trigger_value}
        outs: dict[str, Out] = {}
        for name, _conn, _queue in self.outputs:
            if name != "$return":
                outs[name] = kwargs[name] = Out()
        if "context" in self.params and "context" not in kwargs:
            kwargs["context"] = Context(self.name, self.app_dir)
        with invocation(self.name):
            result = self._call_user(kwargs, stats)
        if not gate.begin_flush():  # timed out: the invocation failed, its outputs never leave
            return result
        for name, conn, queue in self.outputs:
            value = result if name == "$return" else outs[name].value
            texts = _message_texts(value)
            if texts:
                client = self.queues.get(conn, queue)
                for text in texts:
                    client.send_message(encode_message(text, self.encoding))
        return result


async def _await(awaitable: Any) -> Any:
    return await awaitable
