"""Shared bench helpers: result files, tables, percentiles, machine facts, and the local stack with an in-process
Functions host (so the app's :class:`~restore_core.deps.StorageMeter`, the ARM :class:`CallMeter` and the host's own
queue counters can be read directly).

Scaled time: the emulator runs ``S`` simulated seconds per real second; the pipeline gets the Azure default
intervals divided by ``S`` (:func:`scaled_pipeline_settings`), so ARM call counts mean what they would in Azure.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from azure.data.tables import TableClient

from localdev.apiclient import Api
from localdev.dpemu.admin import EmulatorAdmin
from localdev.funchost import FunctionsHost
from localdev.stack import DEFAULT_WORLD, REPO, Stack

RESULTS = REPO / "bench" / "results"
TERMINAL = {"succeeded", "failed", "rejected", "cancelled"}

# Azure defaults of the pipeline's timing settings (restore_core/config.py DEFAULTS), in real seconds.
AZURE_POLL_MIN, AZURE_POLL_MAX, AZURE_TRIGGER_GRACE, AZURE_WATCHDOG_SECONDS = 30.0, 300.0, 660.0, 60.0
AZURE_POLL_OVERDUE = 60.0


class BenchError(RuntimeError):
    """A benchmark could not run; the message says what to change."""


def scaled_pipeline_settings(scale: float) -> dict[str, str]:
    """Azure default intervals divided by ``scale`` (the watchdog: every ``60/scale`` s, at least every second)."""
    if scale <= 0:
        raise BenchError(f"time scale {scale} must be > 0")
    every = max(1, round(AZURE_WATCHDOG_SECONDS / scale))
    return {"RESTORE_POLL_MIN_SECONDS": f"{max(AZURE_POLL_MIN / scale, 0.05):g}",
            "RESTORE_POLL_MAX_SECONDS": f"{max(AZURE_POLL_MAX / scale, 0.05):g}",
            "RESTORE_POLL_OVERDUE_SECONDS": f"{max(AZURE_POLL_OVERDUE / scale, 0.05):g}",
            "RESTORE_TRIGGER_GRACE_SECONDS": f"{AZURE_TRIGGER_GRACE / scale:g}",
            "RESTORE_WATCHDOG_SCHEDULE": f"*/{every} * * * * *",
            "RESTORE_DEADLINE_HOURS": "48",
            "RESTORE_TELEMETRY_EXPORTER": "none"}


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty sequence."""
    if not values:
        raise BenchError("percentile of no values")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return float(ordered[k])


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.3f}".rstrip("0").rstrip(".") if abs(v) < 100 else f"{v:,.1f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def machine() -> dict[str, Any]:
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])

    def version(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return "?"

    return {"nproc": os.cpu_count(), "ram_gb": round(mem_kb / 1024 / 1024, 1), "python": sys.version.split()[0],
            "platform": platform.platform(), "node": version(["node", "--version"]),
            "azurite": json.loads((REPO / "node_modules" / "azurite" / "package.json").read_text())["version"]
            if (REPO / "node_modules" / "azurite" / "package.json").exists() else "?",
            "postgres": version(["/usr/lib/postgresql/15/bin/postgres", "--version"])}


def code_version() -> dict[str, Any]:
    """The commit the bench ran against, and whether restore_core/ or function_app.py had uncommitted changes
    (``BENCH_COMMIT`` names it when running from an exported snapshot without .git)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "restore_core", "function_app.py"],
                                    cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip())
        return {"commit": commit, "restore_core_uncommitted_changes": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": os.environ.get("BENCH_COMMIT", "unknown"), "restore_core_uncommitted_changes": False,
                "snapshot": str(REPO)}


def write_result(name: str, data: Mapping[str, Any], table: str, *, results: Path = RESULTS) -> Path:
    """``<results>/<name>.json`` (data + machine + when) and ``<name>.md`` (the table); prints the table."""
    results.mkdir(parents=True, exist_ok=True)
    doc = {"scenario": name, "measured_at": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
           "code": code_version(), **data}
    path = results / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    (results / f"{name}.md").write_text(f"## {name}\n\n{table}\n")
    print(f"\n== {name} ==\n{table}\n(results: {path.relative_to(REPO) if path.is_relative_to(REPO) else path})",
          flush=True)
    return path


def vm_hwm_kb(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


@dataclass
class Snapshot:
    """Counters at one moment: emulator metering per caller, app storage, host queue transactions."""

    arm: dict[str, Any]
    app_storage: dict[str, int]
    host_storage: dict[str, int]
    at: float


class BenchStack:
    """Azurite + PostgreSQL + emulator (a :class:`Stack`), with the Functions host either in this process
    (``inprocess=True``: meters readable directly) or as the stack's own subprocess (true host memory)."""

    def __init__(self, workdir: Path, *, scale: float, settings: Mapping[str, str] | None = None,
                 inprocess: bool = True, emulator_config: Mapping[str, Any] | None = None,
                 world: Path = DEFAULT_WORLD, host_json: Mapping[str, Any] | None = None) -> None:
        self.workdir = workdir
        self.host_json = host_json
        self.scale = scale
        self.overrides = {**scaled_pipeline_settings(scale), **(settings or {})}
        self.inprocess = inprocess
        self.emulator_config = dict(emulator_config or {})
        self.stack = Stack(workdir, world, http_port=0, settings_overrides=self.overrides, time_scale=scale)
        self.host: FunctionsHost | None = None
        self.env: dict[str, str] = {}
        self.api: Api | None = None
        self.admin: EmulatorAdmin | None = None

    def __enter__(self) -> BenchStack:
        try:
            self.env = self.stack.up()
            self.admin = EmulatorAdmin(self.env["DATAPROTECTION_ADMIN_URL"], self.env["DATAPROTECTION_TOKEN"],
                                       self.env["DATAPROTECTION_CA_BUNDLE"])
            if self.emulator_config:
                self.admin.set_config(**self.emulator_config)
            if self.inprocess:
                self._start_inprocess_host()
            self.api = Api(self.env["RESTORE_API_URL"], self.env["RESTORE_API_KEY"])
        except BaseException:
            self.close()
            raise
        return self

    def restart_host(self, overrides: Mapping[str, str]) -> None:
        """Restart the in-process host with more setting overrides (same Azurite, tables, emulator)."""
        if self.host is None:
            raise BenchError("restart_host() needs the in-process host (inprocess=True)")
        self.host.stop(timeout=15)
        self.host = None
        self.overrides = {**self.overrides, **overrides}
        self._start_inprocess_host()
        assert self.api is not None
        self.api = Api(self.env["RESTORE_API_URL"], self.env["RESTORE_API_KEY"])

    def _start_inprocess_host(self) -> None:
        import restore_core.runtime as runtime

        if self.stack.host_pid is not None:
            self.stack.stop_host()
        settings = {**self.stack._base_settings, **self.overrides}  # noqa: SLF001 - the stack's own settings
        runtime._deps = None  # noqa: SLF001 - a fresh dependency bundle for this host's settings
        self.host = FunctionsHost(REPO, settings, port=0, function_keys=[self.stack._function_key],  # noqa: SLF001
                                  host_json=self.host_json)
        self.host.start()
        self.env["RESTORE_API_URL"] = f"{self.host.base_url}/api"

    def deps(self) -> Any:
        import restore_core.runtime as runtime

        if self.host is None:
            raise BenchError("deps() needs the in-process host (inprocess=True)")
        return runtime.deps()

    def snapshot(self) -> Snapshot:
        assert self.admin is not None
        app = dict(self.deps().storage_meter.counts) if self.host is not None else {}
        host = self.host.storage_counts() if self.host is not None else {}
        return Snapshot(self.admin.metering(), app, host, time.monotonic())

    def restores_table(self) -> TableClient:
        return TableClient.from_connection_string(self.env["AZURE_STORAGE_CONNECTION_STRING"], "restores")

    def close(self) -> None:
        if self.host is not None:
            self.host.stop(timeout=15)
            self.host = None
            import restore_core.runtime as runtime

            runtime._deps = None  # noqa: SLF001
        if self.admin is not None:
            self.admin.close()
        self.stack.down()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
        if et is None:  # keep the logs of a failed run, drop the rest
            shutil.rmtree(self.workdir, ignore_errors=True)
        else:
            print(f"   bench stack logs kept in {self.workdir / 'logs'}", flush=True)


class InvocationLog(logging.Handler):
    """Collects the in-process host's per-invocation log lines: (function, queue, outcome, duration ms)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[tuple[str, str, str, float]] = []
        self._lock2 = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if not str(record.msg).startswith("invocation function=") or not record.args or len(record.args) < 6:
            return
        args = record.args
        assert isinstance(args, tuple)
        with self._lock2:
            self.records.append((str(args[0]), str(args[1]), str(args[4]), float(args[5])))

    def __enter__(self) -> InvocationLog:
        self._log = logging.getLogger("funchost")
        self._saved = (self._log.level, self._log.propagate)
        self._log.setLevel(logging.INFO)
        self._log.propagate = False
        self._log.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self._log.removeHandler(self)
        self._log.setLevel(self._saved[0])
        self._log.propagate = self._saved[1]

    def durations(self, function: str) -> list[float]:
        with self._lock2:
            return [ms for fn, _, outcome, ms in self.records if fn == function and outcome == "ok"]


def caller_delta(before: Mapping[str, Any], after: Mapping[str, Any], caller: str) -> dict[str, Any]:
    """ARM calls of one caller between two metering snapshots: total/read/write and per operation and status."""
    b = before.get("by_caller", {}).get(caller, {})
    a = after.get("by_caller", {}).get(caller, {})

    def sub(key: str) -> dict[str, int]:
        keys = set(a.get(key, {})) | set(b.get(key, {}))
        out = {k: int(a.get(key, {}).get(k, 0)) - int(b.get(key, {}).get(k, 0)) for k in keys}
        return {k: v for k, v in sorted(out.items()) if v}

    return {"total": int(a.get("total", 0)) - int(b.get("total", 0)),
            "read": int(a.get("read", 0)) - int(b.get("read", 0)),
            "write": int(a.get("write", 0)) - int(b.get("write", 0)),
            "by_operation": sub("by_operation"), "by_status": sub("by_status")}


def counter_delta(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    keys = set(before) | set(after)
    diff = {k: int(after.get(k, 0)) - int(before.get(k, 0)) for k in sorted(keys)}
    return {k: v for k, v in diff.items() if v}


def restore_rows(table: TableClient, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Current restore rows for ``ids`` (one query per day partition; read by the bench, not metered as app)."""
    wanted = set(ids)
    by_pk: dict[str, set[str]] = {}
    for rid in wanted:
        by_pk.setdefault("d" + rid[:8], set()).add(rid)
    out: dict[str, dict[str, Any]] = {}
    for pk, rids in by_pk.items():
        for ent in table.query_entities("PartitionKey eq @pk and Kind eq 'restore'", parameters={"pk": pk}):
            if ent["RowKey"] in rids:
                out[ent["RowKey"]] = dict(ent)
    return out


def wait_terminal(table: TableClient, ids: Sequence[str], *, timeout: float, interval: float = 1.0,
                  progress: bool = False) -> dict[str, dict[str, Any]]:
    """Poll the restores table until every id is terminal (or ``timeout``); returns the rows last seen."""
    deadline = time.monotonic() + timeout
    rows: dict[str, dict[str, Any]] = {}
    last_print = 0.0
    while True:
        rows = restore_rows(table, ids)
        done = sum(1 for r in rows.values() if r.get("status") in TERMINAL)
        if done == len(ids):
            return rows
        if progress and time.monotonic() - last_print > 15:
            last_print = time.monotonic()
            print(f"   ... {done}/{len(ids)} terminal", flush=True)
        if time.monotonic() > deadline:
            return rows
        time.sleep(interval)


def submit(api: Api, body: Mapping[str, Any]) -> tuple[str, float]:
    """POST /restores; returns (restore id, seconds the call took). Raises BenchError on anything but 202."""
    t0 = time.perf_counter()
    status, resp, _ = api.post("/restores", dict(body))
    if status != 202:
        raise BenchError(f"POST /restores answered {status}: {resp}")
    return str(resp["id"]), time.perf_counter() - t0
