"""history: watchdog tick cost (storage transactions, time) with 100 active restores beside 100 and beside N
(default 100,000) finished ones.

Real parts: Azurite and the real ``TableStateStore`` / ``watchdog.tick`` (no Functions host, no emulator: a tick
with nothing overdue makes no ARM call, and the report asserts that). Active restores are created through
``store.create`` (row + first timeline event + active index row, the real layout); finished rows are written straight
into day partitions (``d<yyyymmdd>``) of the restores table as terminal restore rows, in entity-group batches of 100
per partition, from a few threads.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from azure.data.tables import TableClient

from bench.common import REPO, md_table, verdict, write_result
from localdev.azurite import Azurite
from localdev.scenarios import BI_SALES, VAULT, as_database
from restore_core import watchdog
from restore_core.config import load_settings
from restore_core.models import Stage, Status
from restore_core.records import RestoreRecord, TimelineEvent, new_restore_id
from restore_core.runtime import build

BATCH = 100


def _record(rid: str, now: datetime, status: Status, stage: Stage | None) -> RestoreRecord:
    return RestoreRecord(id=rid, status=status, stage=stage, source="api", created_at=now, updated_at=now,
                         deadline=now + timedelta(hours=48), request=as_database(f"bench_{rid[-6:]}"),
                         backup_instance_id=BI_SALES, vault_id=VAULT, target_kind="database", region="primary",
                         restore_location="westeurope", tier="vault",
                         azure_job_id=f"{VAULT}/backupJobs/{rid[-10:]}" if stage == Stage.MONITOR else None,
                         next_check_at=now + timedelta(hours=1) if stage else None,
                         job_status="InProgress" if stage else "Completed")


def add_active(deps: Any, n: int) -> list[str]:
    now = datetime.now(UTC)
    ids = []
    for _ in range(n):
        rid = new_restore_id(now)
        rec = _record(rid, now, Status.RESTORING, Stage.MONITOR)
        deps.store.create(rec, TimelineEvent(now, "accepted", None, "bench: active restore"), idempotency_key=None,
                          request_hash="bench")
        ids.append(rid)
    return ids


def add_finished(table: TableClient, n: int, *, first_day: int, per_day: int = 1000, threads: int = 4) -> float:
    """Write ``n`` terminal restore rows into day partitions starting ``first_day`` days ago; returns seconds."""
    base = datetime.now(UTC) - timedelta(days=first_day)
    batches: list[list[tuple[str, dict[str, Any]]]] = []
    made = 0
    day = 0
    while made < n:
        when = base - timedelta(days=day)
        in_day = min(per_day, n - made)
        for start in range(0, in_day, BATCH):
            ops = []
            for i in range(start, min(in_day, start + BATCH)):
                at = when + timedelta(seconds=i)
                rec = _record(new_restore_id(at), at, Status.SUCCEEDED, None)
                ops.append(("create", rec.to_entity()))
            batches.append(ops)
        made += in_day
        day += 1
    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(table.submit_transaction, batches))
    return time.perf_counter() - t0


def bare_active_query_ms(table: TableClient, repeat: int) -> float:
    """The storage service's own cost of the one table read a tick makes (the active partition), without the app."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        rows = list(table.query_entities("PartitionKey eq 'active'"))
        times.append((time.perf_counter() - t0) * 1000)
        assert len(rows) == 100, len(rows)
    return statistics.median(times)


def measure_ticks(deps: Any, ticks: int) -> dict[str, Any]:
    meter = deps.storage_meter
    for _ in range(2):  # warm-up (connections, first-query effects) is not measured
        watchdog.tick(deps)
    durations, txs, arm = [], [], []
    for _ in range(ticks):
        before = dict(meter.counts)
        t0 = time.perf_counter()
        report = watchdog.tick(deps)
        durations.append((time.perf_counter() - t0) * 1000)
        after = dict(meter.counts)
        txs.append(sum(after.values()) - sum(before.values()))
        kinds = {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}
        arm.append(report.arm_calls)
        if report.active != 100 or report.redriven or report.expired:
            raise AssertionError(f"tick saw {report.active} active (want 100), redrove {len(report.redriven)}, "
                                 f"expired {len(report.expired)}: the bench setup is wrong")
    return {"ticks": ticks, "tick_ms_median": statistics.median(durations), "tick_ms_p95": sorted(durations)[
        int(0.95 * (len(durations) - 1))], "storage_tx_per_tick": statistics.mean(txs),
        "storage_tx_per_tick_max": max(txs), "arm_calls_per_tick": statistics.mean(arm), "last_tick_by_kind": kinds}


def run(*, finished: int = 100_000, ticks: int = 20, workdir: Path | None = None,
        results: Path | None = None) -> dict[str, Any]:
    own_dir = workdir is None
    workdir = workdir or Path(tempfile.mkdtemp(prefix="bench-history-", dir=REPO / ".local"))
    with Azurite(workdir / "azurite") as az:
        settings = load_settings({"RestoreStorage": az.connection_string,
                                  "DATAPROTECTION_ENDPOINT": "https://127.0.0.1:9",  # never called: asserted below
                                  "DATAPROTECTION_TOKEN": "unused", "RESTORE_TELEMETRY_EXPORTER": "none"})
        deps = build(settings)
        table = TableClient.from_connection_string(az.connection_string, settings.table_restores)
        add_active(deps, 100)
        add_finished(table, 100, first_day=1)
        small = measure_ticks(deps, ticks)
        small["bare_active_query_ms"] = bare_active_query_ms(table, ticks)
        print(f"   100 finished: tick {small['tick_ms_median']:.1f} ms, {small['storage_tx_per_tick']:.1f} tx",
              flush=True)
        write_s = add_finished(table, finished - 100, first_day=2)
        print(f"   wrote {finished - 100:,} finished rows in {write_s:.1f}s "
              f"({(finished - 100) / max(write_s, 1e-9):,.0f} rows/s)", flush=True)
        large = measure_ticks(deps, ticks)
        large["bare_active_query_ms"] = bare_active_query_ms(table, ticks)
    if own_dir:
        shutil.rmtree(workdir, ignore_errors=True)
    tx_ratio = large["storage_tx_per_tick"] / small["storage_tx_per_tick"]
    app_ms_small = small["tick_ms_median"] - small["bare_active_query_ms"]
    app_ms_large = large["tick_ms_median"] - large["bare_active_query_ms"]
    time_ratio = large["tick_ms_median"] / small["tick_ms_median"]
    data = {"active": 100, "finished_small": 100, "finished_large": finished, "small": small, "large": large,
            "write_seconds": write_s,
            "tick_ms_minus_bare_query": {"small": app_ms_small, "large": app_ms_large},
            "storage_ratio": tx_ratio, "time_ratio": time_ratio,
            "target": "tick cost with the large history within 10% of the cost with 100 finished",
            "pass_storage": tx_ratio <= 1.10, "pass_time": time_ratio <= 1.10}
    table_md = md_table(
        ["finished rows", "storage tx / tick", "tick ms (median)", "tick ms (p95)", "ARM calls / tick",
         "Azurite alone: active-partition query ms"],
        [[100, small["storage_tx_per_tick"], small["tick_ms_median"], small["tick_ms_p95"],
          small["arm_calls_per_tick"], small["bare_active_query_ms"]],
         [f"{finished:,}", large["storage_tx_per_tick"], large["tick_ms_median"], large["tick_ms_p95"],
          large["arm_calls_per_tick"], large["bare_active_query_ms"]]])
    table_md += (f"\n\nratio large/small: storage {tx_ratio:.2f} ({verdict(tx_ratio <= 1.10)}), time "
                 f"{time_ratio:.2f} ({verdict(time_ratio <= 1.10)}); target ≤ 1.10. Tick time minus Azurite's own "
                 f"active-partition query time: {app_ms_small:.1f} → {app_ms_large:.1f} ms.\n"
                 f"100 active restores in both; {ticks} ticks each. Finished rows written at "
                 f"{(finished - 100) / max(write_s, 1e-9):,.0f} rows/s.")
    write_result("history", data, table_md, **({"results": results} if results else {}))
    return data
