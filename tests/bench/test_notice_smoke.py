"""Smoke test of bench/notice.py (issue 17 item 2): one short job, one cold and one warm restore on a real local
stack; the scenario measures a notice delay and the ARM calls per restore from the emulator's metering."""

from __future__ import annotations

from pathlib import Path

from bench import notice


def test_notice_bench_measures_delay_and_calls_cold_and_warm(tmp_path: Path) -> None:
    data = notice.run(n=1, durations=(("5 min", "PT5M", 60.0),), results=tmp_path)
    run = data["runs"][0]
    for phase in ("cold", "warm"):
        p = run[phase]
        assert p["n"] == 1 and len(p["notice_seconds"]) == 1
        assert -60 < p["notice_seconds"][0] < 3600  # measured on the emulator's clock, in Azure seconds
        assert p["arm"]["by_operation"].get("Jobs_Get", 0) >= 1 and p["arm_per_restore"] >= 6
    assert (tmp_path / "notice.json").exists() and "notice p95" in (tmp_path / "notice.md").read_text()
