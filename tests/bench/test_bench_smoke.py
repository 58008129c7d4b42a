"""Smoke tests of the bench code (so it cannot rot): the history scenario at a tiny size on real Azurite, and the
cost scenario with one restore on the real local stack. Assertions are on measured output, not on fixed numbers.
Timing targets live in the benchmarks themselves, never here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import cost, history

pytestmark = pytest.mark.integration


def test_history_bench_measures_tick_cost_beside_small_and_large_history(tmp_path: Path) -> None:
    data = history.run(finished=300, ticks=3, workdir=tmp_path / "w", results=tmp_path / "r")
    saved = json.loads((tmp_path / "r" / "history.json").read_text())
    assert saved["finished_large"] == 300 and saved["active"] == 100
    for size in ("small", "large"):
        assert saved[size]["storage_tx_per_tick"] >= 1  # at least the active-partition query
        assert saved[size]["tick_ms_median"] > 0
        assert saved[size]["arm_calls_per_tick"] == 0  # nothing overdue: the tick must not call ARM
    assert saved["storage_ratio"] == pytest.approx(
        saved["large"]["storage_tx_per_tick"] / saved["small"]["storage_tx_per_tick"])
    assert data["pass_storage"] == (saved["storage_ratio"] <= 1.10)
    assert "| 300 |" in (tmp_path / "r" / "history.md").read_text()


def test_cost_bench_meters_one_restore_end_to_end(tmp_path: Path) -> None:
    data = cost.run(warm=0, baseline=0, scale=3600.0, job_duration="PT1H", workdir=tmp_path / "w",
                    results=tmp_path / "r", idle_seconds=0.5, timeout=120)
    cold = data["cold"]
    assert cold["n"] == 1
    ops = cold["arm"]["by_operation"]
    # a primary restore validates and triggers exactly once and reads its job at least once
    assert ops.get("BackupInstances_ValidateForRestore") == 1
    assert ops.get("BackupInstances_TriggerRestore") == 1
    assert ops.get("Jobs_Get", 0) >= 1
    assert cold["arm"]["total"] == sum(ops.values())
    assert cold["app_storage"] and sum(cold["app_storage"].values()) >= 4  # create + claims + transition writes
    assert cold["host_storage"].get("delete", 0) >= 3  # validate, trigger, monitor messages at least
    assert json.loads((tmp_path / "r" / "cost.json").read_text())["per_restore"]["cold"]["arm"] == cold["arm"]["total"]


def test_replay_bench_times_the_products_replay_beside_plain_pg_restore(tmp_path: Path) -> None:
    from bench import replay

    data = replay.run(mb=4, rounds=1, jobs=2, workdir=tmp_path / "w", results=tmp_path / "r")
    saved = json.loads((tmp_path / "r" / "replay.json").read_text())
    for case in ("product-seekable", "reference-seekable", "product-stream", "reference-stream", "product-piped",
                 "reference-piped"):
        assert len(saved["runs"][case]) == 1 and saved["runs"][case][0]["total_s"] > 0
    for kind in ("seekable", "stream"):
        steps = saved["steps_median_s"][kind]
        assert {"download", "prepare", "pg_restore", "archive_counts"} <= set(steps)
    # the disk budget (0) is smaller than the archive: streamed into pg_restore, no temporary disk, same counts
    (piped,) = saved["runs"]["product-piped"]
    assert piped["load"] == "stream" and piped["disk_mb"] == 0 and "download" not in piped["steps"]
    assert saved["runs"]["product-seekable"][0]["load"] == "download"
    assert piped["counts_complete"] and piped["rows"] == saved["runs"]["product-stream"][0]["rows"]
    assert sum(piped["rows"].values()) > 0 and saved["piped_counts_equal_file_counts"] is True
    assert saved["ratio_piped"] == pytest.approx(saved["median_s"]["product-piped"] /
                                                 saved["median_s"]["reference-piped"])
    assert saved["ratio_seekable"] == pytest.approx(saved["median_s"]["product-seekable"] /
                                                    saved["median_s"]["reference-seekable"])
    assert saved["replay_rss_mb_max"] > 0 and saved["disk_mb"] > 0
    assert data["pass_rss"] == (saved["replay_rss_mb_max"] <= replay.GOAL_RSS_MB)
    assert "| seekable archive (data offsets) |" in (tmp_path / "r" / "replay.md").read_text()
