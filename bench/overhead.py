"""overhead: time from request accepted (row ``created_at``) to restore triggered (the ``restore triggered``
timeline event), minus the ARM latency floor; p50/p95 over N restores submitted at a steady rate.

Floor per restore = injected per-call ARM latency × ARM calls made before the trigger (all of the run's calls except
``Jobs_Get``, per restore) + the LRO waits the emulator imposed (``lro_duration`` is 0, so each of the two LROs —
validate and trigger — costs exactly one Retry-After wait: 10 and 30 simulated seconds, divided by the time scale).
The emulator's ``job_fail`` fault on the trigger keeps the 200 jobs from doing real pg_restore work (which would only
load the 2 cores after the measured window); the trigger path itself is the normal one.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import (
    REPO,
    BenchError,
    BenchStack,
    InvocationLog,
    caller_delta,
    md_table,
    percentile,
    submit,
    verdict,
    wait_terminal,
    write_result,
)
from localdev.funchost.config import load_host_json
from localdev.scenarios import as_database

LRO_RETRY_AFTER_SIM = (10.0, 30.0)  # emulator base Retry-After: validate (10 s), trigger (30 s) — docs/emulator.md


def _trigger_time(table: Any, rid: str) -> datetime | None:
    rows = table.query_entities("PartitionKey eq @pk and RowKey gt @lo and RowKey lt @hi",
                                parameters={"pk": "d" + rid[:8], "lo": rid + "~", "hi": rid + "~~"})
    for ev in sorted(rows, key=lambda r: r["RowKey"]):
        if str(ev.get("message", "")).startswith("restore triggered"):
            return datetime.fromisoformat(str(ev["at"]).replace("Z", "+00:00"))
    return None


def _t(value: Any) -> datetime:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def run(*, n: int = 200, rate: float = 5.0, scale: float = 3600.0, latency: float = 0.02,
        max_polling: str | None = None, name: str = "overhead",
        workdir: Path | None = None, results: Path | None = None, timeout: float = 600) -> dict[str, Any]:
    """``max_polling``: a host.json ``maxPollingInterval`` to try instead of the repository's (what-if runs)."""
    host_doc = load_host_json(REPO)
    if max_polling is not None:
        host_doc["extensions"]["queues"]["maxPollingInterval"] = max_polling
    polling = host_doc["extensions"]["queues"]["maxPollingInterval"]
    repo_polling = load_host_json(REPO)["extensions"]["queues"]["maxPollingInterval"]
    workdir = workdir or Path(tempfile.mkdtemp(prefix="bench-overhead-", dir=REPO / ".local"))
    tag = uuid.uuid4().hex[:6]
    config = {"page_size": 50, "restore_job_duration": "PT1H", "lro_duration": "PT0S",
              "arm_latency_seconds": latency}
    with BenchStack(workdir, scale=scale, emulator_config=config, host_json=host_doc) as bs, \
            InvocationLog() as invocations:
        assert bs.admin is not None and bs.api is not None
        bs.admin.add_fault("job_fail", "BackupInstances_TriggerRestore", error_code="BenchNoWork",
                           error_message="bench: no pg work needed after the trigger")
        before = bs.snapshot()
        ids: list[str] = []
        post_s: list[float] = []
        lock = threading.Lock()
        t0 = time.monotonic()
        for i in range(n):  # steady rate: request i leaves at t0 + i/rate
            wait = t0 + i / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            rid, took = submit(bs.api, as_database(f"bench_ovh_{tag}_{i}"))
            with lock:
                ids.append(rid)
                post_s.append(took)
        submit_s = time.monotonic() - t0
        table = bs.restores_table()
        rows = wait_terminal(table, ids, timeout=timeout, progress=True)
        after = bs.snapshot()
        arm = caller_delta(before.arm, after.arm, "default")
        pre_trigger_calls = (arm["total"] - arm["by_operation"].get("Jobs_Get", 0)) / n
        floor = latency * pre_trigger_calls + sum(LRO_RETRY_AFTER_SIM) / scale
        overheads, raw, missing, to_validated, to_triggered = [], [], [], [], []
        for rid in ids:
            trig = _trigger_time(table, rid)
            created = rows.get(rid, {}).get("created_at")
            if trig is None or not created:
                missing.append(rid)
                continue
            total = (trig - _t(created)).total_seconds()
            raw.append(total)
            overheads.append(total - floor)
            validated = json.loads(rows[rid].get("stage_times") or "{}").get("validate", {}).get("finished")
            if validated:
                to_validated.append((_t(validated) - _t(created)).total_seconds())
                to_triggered.append((trig - _t(validated)).total_seconds())
        validate_ms = invocations.durations("restore_validate")
        trigger_ms = invocations.durations("restore_trigger")
    if missing:
        raise BenchError(f"{len(missing)} restores never reached the trigger (e.g. {missing[:3]}); "
                         f"see {workdir}/logs")
    p50, p95 = percentile(overheads, 50), percentile(overheads, 95)
    data = {"n": n, "rate_per_s": rate, "submit_seconds": submit_s, "scale": scale, "arm_latency_seconds": latency,
            "arm_calls_before_trigger_per_restore": pre_trigger_calls, "floor_seconds": floor,
            "overhead_p50_s": p50, "overhead_p95_s": p95, "overhead_max_s": max(overheads),
            "raw_p50_s": percentile(raw, 50), "raw_p95_s": percentile(raw, 95),
            "post_p50_s": percentile(post_s, 50), "post_p95_s": percentile(post_s, 95), "arm": arm,
            "max_polling_interval": polling, "accepted_to_validated_p50_s": percentile(to_validated, 50),
            "validated_to_triggered_p50_s": percentile(to_triggered, 50),
            "validate_invocation_ms_p50": statistics.median(validate_ms) if validate_ms else None,
            "trigger_invocation_ms_p50": statistics.median(trigger_ms) if trigger_ms else None,
            "overheads_s": overheads,
            "targets": {"p50_s": 0.3, "p95_s": 1.0}, "pass": p50 <= 0.3 and p95 <= 1.0}
    table_md = md_table(["metric", "p50", "p95", "max", "target", "verdict"], [
        ["accepted → triggered minus ARM floor (s)", p50, p95, max(overheads), "p50 ≤ 0.3, p95 ≤ 1.0",
         verdict(p50 <= 0.3 and p95 <= 1.0)],
        ["accepted → triggered, raw (s)", data["raw_p50_s"], data["raw_p95_s"], max(raw), "-", "-"],
        ["POST /restores answer (s)", data["post_p50_s"], data["post_p95_s"], max(post_s), "-", "-"],
        ["accepted → validated (s)", data["accepted_to_validated_p50_s"], percentile(to_validated, 95),
         max(to_validated), "-", "-"],
        ["validated → triggered (s)", data["validated_to_triggered_p50_s"], percentile(to_triggered, 95),
         max(to_triggered), "-", "-"],
        ["validate invocation (ms)", data["validate_invocation_ms_p50"] or 0,
         percentile(validate_ms, 95) if validate_ms else 0, max(validate_ms, default=0), "-", "-"],
        ["trigger invocation (ms)", data["trigger_invocation_ms_p50"] or 0,
         percentile(trigger_ms, 95) if trigger_ms else 0, max(trigger_ms, default=0), "-", "-"]])
    table_md += (f"\n\n{n} restores submitted at a steady {rate:g}/s ({submit_s:.1f}s); ARM latency {latency:g}s per "
                 f"call × {pre_trigger_calls:.1f} calls before the trigger + LRO waits {sum(LRO_RETRY_AFTER_SIM):g} "
                 f"simulated s / x{scale:g} → floor {floor * 1000:.0f} ms. host.json maxPollingInterval {polling}"
                 f"{f' (what-if; the repository has {repo_polling})' if max_polling else ''}.")
    write_result(name, data, table_md, **({"results": results} if results else {}))
    return data
