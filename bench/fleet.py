"""fleet: N restores of mixed kinds submitted at once with the emulator's ARM token bucket ON.

Kinds: restore as database (Single Server), as files (Flexible Server dump set into a container), cross-region
(paired region), and a few from archived points (rehydration first). Every restore does real pg_dump/pg_restore work
through the emulator. Measured: every restore reaches a terminal state; none fails because of throttling; wall time
vs the minimum the ARM budget allows for the calls made (after the bursts: reads / read_rate, writes / write_rate);
429 count; peak memory (VmHWM) of the Functions host (a separate process here, so the number is the host's own).
"""

from __future__ import annotations

import collections
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import (
    REPO,
    BenchStack,
    caller_delta,
    md_table,
    submit,
    verdict,
    vm_hwm_kb,
    wait_terminal,
    write_result,
)
from localdev import scenarios as sc

THROTTLE = {"enabled": True, "read_burst": 250, "read_rate": 25, "write_burst": 200, "write_rate": 10}


def mix(n: int, tag: str) -> list[tuple[str, dict[str, Any]]]:
    """~2% archive (at least 1), ~18% cross-region, ~25% files, the rest as database; interleaved."""
    archive = max(1, n // 50)
    crr = n * 18 // 100
    files = n // 4
    kinds = ["archive"] * archive + ["crr"] * crr + ["files"] * files
    kinds += ["database"] * (n - len(kinds))
    kinds = [kinds[(i * 7919) % n] for i in range(n)] if n % 7919 else kinds  # deterministic interleave
    out = []
    for i, kind in enumerate(kinds):
        name = f"fl_{tag}_{i}"
        if kind == "database":
            body = sc.as_database(name)
        elif kind == "files":
            body = sc.as_files(name)
        elif kind == "crr":
            body = sc.as_database(name, server=sc.TARGET_DR, secret=sc.SECRET_DR, region="secondary")
        else:
            body = sc.as_database(name, recovery_point={"latest_before": sc.days_ago(100).isoformat()},
                                  rehydration={"priority": "Standard", "retention_days": 12})
        out.append((kind, body))
    return out


def timeline(table: Any, rid: str) -> list[str]:
    rows = table.query_entities("PartitionKey eq @pk and RowKey gt @lo and RowKey lt @hi",
                                parameters={"pk": "d" + rid[:8], "lo": rid + "~", "hi": rid + "~~"})
    return [f"{r['at']} {r['status']}/{r.get('stage') or '-'}: {r['message']}"
            for r in sorted(rows, key=lambda r: r["RowKey"])]


def _jobs_by_destination(bs: BenchStack, failed: list[str]) -> dict[str, int]:
    """How many Azure restore jobs exist per recovery destination of a failed restore (2+ = a second trigger)."""
    if not failed:
        return {}
    from tests.integration.helpers import sdk

    rows = {rid: bs.restores_table().get_entity("d" + rid[:8], rid) for rid in failed}
    dest = {str(r.get("target_resource") or "").lower().rstrip("/"): rid for rid, r in rows.items()}
    counts: dict[str, int] = {}
    for job in sdk(bs.env).jobs.list("rg-backup", "bv-prod"):  # primary-region jobs (CRR jobs live elsewhere)
        ext = job.properties.extended_info
        where = ((ext.recovery_destination or "") if ext is not None else "").lower().rstrip("/")
        if where in dest:
            counts[dest[where]] = counts.get(dest[where], 0) + 1
    return counts


def run(*, n: int = 500, scale: float = 60.0, workdir: Path | None = None, results: Path | None = None,
        timeout: float = 900) -> dict[str, Any]:
    workdir = workdir or Path(tempfile.mkdtemp(prefix="bench-fleet-", dir=REPO / ".local"))
    tag = uuid.uuid4().hex[:6]
    config = {"page_size": 50, "restore_job_duration": "PT15M", "rehydration_duration_standard": "PT1H",
              "arm_latency_seconds": 0}
    with BenchStack(workdir, scale=scale, emulator_config=config, inprocess=False) as bs:
        assert bs.admin is not None and bs.api is not None
        bs.admin.set_throttling(**THROTTLE)
        host_pid = bs.stack.host_pid
        assert host_pid is not None
        requests = mix(n, tag)
        before = bs.snapshot()
        t0 = time.monotonic()
        with ThreadPoolExecutor(8) as pool:  # "at once": as fast as the API takes them
            ids = list(pool.map(lambda kb: submit(bs.api, kb[1])[0], requests))  # type: ignore[union-attr]
        submit_s = time.monotonic() - t0
        print(f"   {n} submitted in {submit_s:.1f}s; waiting for terminal states", flush=True)
        rows = wait_terminal(bs.restores_table(), ids, timeout=timeout, interval=2.0, progress=True)
        wall = time.monotonic() - t0
        after = bs.snapshot()
        hwm = vm_hwm_kb(host_pid)
        table_client = bs.restores_table()
        failed_timelines = {rid: timeline(table_client, rid) for rid in ids
                            if rows.get(rid, {}).get("status") in ("failed", "rejected")}
        jobs_per_target = _jobs_by_destination(bs, [rid for rid in failed_timelines])
    arm = caller_delta(before.arm, after.arm, "default")
    kind_of = {rid: kind for rid, (kind, _) in zip(ids, requests, strict=True)}
    by_kind: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    errors: collections.Counter[str] = collections.Counter()
    for rid in ids:
        row = rows.get(rid, {})
        by_kind[kind_of[rid]][str(row.get("status"))] += 1
        if row.get("status") in ("failed", "rejected"):
            errors[str(row.get("error_code"))] += 1
    terminal = sum(1 for r in ids if rows.get(r, {}).get("status") in {"succeeded", "failed", "rejected", "cancelled"})
    # a failure "because of throttling": its error says so, or its timeline shows a throttled step right before it
    throttle_failed_ids = [rid for rid, lines in failed_timelines.items()
                           if any("throttl" in line.lower() for line in lines)
                           or "throttl" in str(rows[rid].get("error_code", "")).lower()]
    throttle_failures = len(throttle_failed_ids)
    reads, writes = arm["read"], arm["write"]
    n429 = arm["by_status"].get("429", 0)
    # Budget minimum counts only calls ARM accepted (a 429 costs no token). Accepted writes answer 202 (LROs);
    # the 429s are split between kinds accordingly (writes refused = writes - 202 answers).
    writes_ok = min(writes, arm["by_status"].get("202", 0))
    reads_ok = reads - max(0, n429 - (writes - writes_ok))
    budget = max(0.0, (reads_ok - THROTTLE["read_burst"]) / THROTTLE["read_rate"],
                 (writes_ok - THROTTLE["write_burst"]) / THROTTLE["write_rate"])
    data = {"n": n, "scale": scale, "settings": bs.overrides, "emulator": config, "throttling": THROTTLE,
            "submit_seconds": submit_s, "wall_seconds": wall, "terminal": terminal,
            "by_kind": {k: dict(v) for k, v in by_kind.items()}, "error_codes": dict(errors),
            "throttle_failures": throttle_failures, "throttle_failed_ids": throttle_failed_ids,
            "failed_timelines": failed_timelines, "arm_accepted": {"reads": reads_ok, "writes": writes_ok},
            "azure_jobs_per_failed_restore": jobs_per_target, "arm": arm, "arm_budget_min_seconds": budget,
            "arm_429": n429, "host_vmhwm_mb": round(hwm / 1024, 1),
            "pass": terminal == n and throttle_failures == 0}
    table = md_table(["metric", "value", "target", "verdict"], [
        ["restores terminal", f"{terminal}/{n}", "all", verdict(terminal == n)],
        ["failed because of throttling", throttle_failures, "0", verdict(throttle_failures == 0)],
        ["wall time (s)", wall, f"ARM budget min {budget:.1f}s ({wall / max(budget, 1e-9):.2f}×)", "-"],
        ["ARM calls (reads / writes)", f"{arm['total']} ({reads} / {writes}); accepted {reads_ok} / {writes_ok}",
         "-", "-"],
        ["429 answers", n429, "-", "-"],
        ["Functions host VmHWM (MB)", round(hwm / 1024, 1), "-", "-"],
        ["outcomes by kind", "; ".join(f"{k}: {dict(v)}" for k, v in sorted(by_kind.items())), "-", "-"]])
    if errors:
        table += f"\n\nerror codes: {dict(errors)}"
    if throttle_failed_ids:
        example = failed_timelines[throttle_failed_ids[0]]
        table += (f"\n\n{throttle_failures} restores failed after a throttled step; e.g. {throttle_failed_ids[0]}:\n"
                  + "\n".join(f"    {line}" for line in example))
    table += (f"\n\nclock x{scale:g}, job PT15M simulated, Standard rehydration PT1H simulated; token bucket "
              f"{THROTTLE}. Budget minimum = max((accepted reads − {THROTTLE['read_burst']}) / "
              f"{THROTTLE['read_rate']}, (accepted writes − {THROTTLE['write_burst']}) / {THROTTLE['write_rate']}) s.")
    write_result("fleet", data, table, **({"results": results} if results else {}))
    return data
