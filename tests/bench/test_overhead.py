"""Smoke test of the overhead scenario (bench/overhead.py): two apps (this checkout and a ``git archive`` of a
commit) alternating on one stack with the emulator's data plane off; per-invocation CPU and wall time from the host's
log lines, and a cProfile pass. Assertions are on measured output, never on timing targets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import overhead

pytestmark = pytest.mark.integration


def test_parse_invocations_reads_cpu_and_wall_of_successful_invocations_only() -> None:
    text = ("x INFO funchost invocation function=restore_validate trigger=queue queue=q id=1 dequeue_count=1 "
            "outcome=ok duration_ms=40 fn_ms=35.5 cpu_ms=12.25\n"
            "x INFO funchost invocation function=restore_validate trigger=queue queue=q id=2 dequeue_count=1 "
            "outcome=failed duration_ms=9 fn_ms=8.0 cpu_ms=3.0 error=boom\n"
            "x INFO funchost invocation function=restores_create trigger=http method=POST outcome=ok status=202 "
            "duration_ms=20 fn_ms=19.0 cpu_ms=7.5\n")
    got = overhead.parse_invocations(text)
    assert got == {"restore_validate": {"wall": [40.0], "fn": [35.5], "cpu": [12.25]},
                   "restores_create": {"wall": [20.0], "fn": [19.0], "cpu": [7.5]}}


def test_overhead_compares_two_apps_with_cpu_per_invocation_and_a_profile(tmp_path: Path) -> None:
    data = overhead.run(n=2, rate=5.0, rounds=1, warmup=0, compare="HEAD", profile_n=1, top=5,
                        workdir=tmp_path / "w", results=tmp_path / "r", timeout=120)
    saved = json.loads((tmp_path / "r" / "overhead.json").read_text())
    assert saved["emulator_data_plane"] is False and len(saved["apps"]) == 2
    assert saved["apps"][1]["commit"][:7] in saved["apps"][1]["label"]
    for app in saved["apps"]:
        assert app["restores"] == 2 and len(app["overheads_s"]) == 2
        for fn in ("restores_create", "restore_validate"):
            inv = app["invocations_ms"][fn]
            assert inv["n"] >= 2 and 0 < inv["cpu"]["p50"] <= inv["fn"]["p50"] + 1 and inv["wall"]["p50"] > 0
        # the trigger runs inline in the validate invocation (RESTORE_CONTINUE_INLINE): no trigger invocation, and
        # the per-restore sum of the invocations' CPU covers it
        assert "restore_trigger" not in app["invocations_ms"]
        validate, create = app["invocations_ms"]["restore_validate"], app["invocations_ms"]["restores_create"]
        assert app["invocation_cpu_ms_per_restore"] >= validate["cpu"]["p50"] / 2 + create["cpu"]["p50"] / 2 > 0
        assert app["process_cpu_ms_per_restore"]["funchost"] > 0
        assert app["arm_calls_before_trigger_per_restore"] > 0
        entries = app["profile_top_cumulative"]["restore_validate"]
        assert any("restore_core/pipeline.py" in e["function"] for e in entries)
    assert data["overhead_p50_s"] == saved["apps"][0]["overhead_p50_s"]
    assert "validate CPU ms" in (tmp_path / "r" / "overhead.md").read_text()
