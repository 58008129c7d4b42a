"""notice: how late we notice that the Azure restore job ended, and the ARM calls per restore (issue 17 item 2).

For each job duration (5 min, 1 h, 8 h of Azure time, each on its own stack with the emulator's clock scaled so the
run takes about a minute) and the emulator's ``job_progress`` choice: N restores submitted together with nothing
learned (cold: the service's and the backup instance's first restores, no learned job or LRO duration, no vault facts
in memory), then N more (warm: the cold ones taught the service this instance's job duration). Per restore:
**notice delay** = our terminal write (row ``updated_at``, mapped onto the emulator's simulated clock) minus Azure's
job ``endTime`` as the emulator reported it (row ``job_end``), in Azure seconds (``job_ran_seconds``: endTime −
startTime; the emulator's data plane is off, so a job ends exactly at its scaled duration); **ARM calls** = the
emulator's metering for the pipeline's
caller over the phase / N. Pipeline intervals are the Azure defaults / scale (``bench/common.py``); the watchdog is
scheduled out (a fault-free primary restore never needs it). Goals: notice p95 ≤ 120 s, ≤ 8 ARM calls per restore.
Resolution: a queue message's delay is whole real seconds (Azure Storage's ``visibilitytimeout``; the app rounds), so
at scale S a planned check lands up to 0.5·S Azure seconds off (×10: 5 s, ×60: 30 s, ×480: 4 min), and intervals
under 0.5 real s become immediate re-checks; host pick-up adds up to 0.1 real s (0.1·S).
"""

from __future__ import annotations

import json
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import (
    REPO,
    BenchError,
    BenchStack,
    caller_delta,
    md_table,
    percentile,
    submit,
    verdict,
    wait_terminal,
    write_result,
)
from localdev.dpemu.timeutil import parse_time
from localdev.scenarios import as_database

CALLER = "default"
WATCHDOG_OFF = "0 0 0 1 1 *"
NOTICE_GOAL_SECONDS = 120.0
ARM_GOAL = 8
#: (label, job duration, time scale): each job lasts about a minute of real time or less.
DURATIONS = (("5 min", "PT5M", 10.0), ("1 h", "PT1H", 60.0), ("8 h", "PT8H", 480.0))


def host_json() -> dict[str, Any]:
    """The app's host.json with the queue listener's idle polling at the local host's floor (0.1 s): under a scaled
    clock every real second of pick-up latency counts ×scale (0.25 s = 2 min of Azure time at ×480)."""
    doc = json.loads((REPO / "host.json").read_text())
    doc["extensions"]["queues"]["maxPollingInterval"] = "00:00:00.100"
    return dict(doc)


def _when(text: Any) -> datetime:
    return parse_time(str(text))


def _phase(bs: BenchStack, tag: str, n: int, timeout: float) -> dict[str, Any]:
    assert bs.api is not None and bs.admin is not None
    before = bs.admin.metering()
    ids = [submit(bs.api, as_database(f"bench_{tag}_{i}"))[0] for i in range(n)]
    rows = wait_terminal(bs.restores_table(), ids, timeout=timeout, interval=0.2)
    clock = bs.admin.clock()  # map the service's (real) clock onto the emulator's simulated one
    real_now, sim_now, scale = datetime.now(UTC), _when(clock["now"]), float(clock["time_scale"])
    after = bs.admin.metering()
    statuses = [rows.get(i, {}).get("status") for i in ids]
    if any(s != "succeeded" for s in statuses):
        raise BenchError(f"restores did not all succeed: {statuses}; see the stack logs in {bs.workdir}/logs")
    delays = []
    for i in ids:
        noticed = sim_now - (real_now - _when(rows[i]["updated_at"])) * scale
        delays.append((noticed - _when(rows[i]["job_end"])).total_seconds())
    arm = caller_delta(before, after, CALLER)
    ran = [(_when(rows[i]["job_end"]) - _when(rows[i]["job_start"])).total_seconds() for i in ids]
    return {"n": n, "ids": ids, "notice_seconds": delays, "job_ran_seconds": ran,
            "polls": [int(rows[i].get("polls", 0)) for i in ids],
            "arm": arm, "arm_per_restore": arm["total"] / n,
            "jobs_get_per_restore": arm["by_operation"].get("Jobs_Get", 0) / n}


def run_one(label: str, duration: str, scale: float, *, n: int = 5, progress: str = "linear",
            workdir: Path | None = None, timeout: float | None = None) -> dict[str, Any]:
    (REPO / ".local").mkdir(exist_ok=True)
    workdir = workdir or Path(tempfile.mkdtemp(prefix="bench-notice-", dir=REPO / ".local"))
    tag = uuid.uuid4().hex[:6]
    # data_plane off: no real pg_restore behind the job, so it ends exactly at its scaled duration (docs/emulator.md)
    config = {"page_size": 50, "restore_job_duration": duration, "arm_latency_seconds": 0, "job_progress": progress,
              "data_plane": False}
    with BenchStack(workdir, scale=scale, emulator_config=config, host_json=host_json(),
                    settings={"RESTORE_WATCHDOG_SCHEDULE": WATCHDOG_OFF}) as bs:
        assert bs.admin is not None
        seconds = float(bs.admin.config()["restore_job_duration"][2:-1])
        limit = timeout or max(60.0, 4 * seconds / scale)
        print(f"   {label} job ({duration} at x{scale:g}, progress {progress}): {n} cold", flush=True)
        cold = _phase(bs, f"c{tag}", n, limit)
        print(f"   cold: notice p95 {percentile(cold['notice_seconds'], 95):.0f}s, "
              f"{cold['arm_per_restore']:.1f} ARM; {n} warm", flush=True)
        warm = _phase(bs, f"w{tag}", n, limit)
    return {"label": label, "duration": duration, "scale": scale, "progress": progress, "cold": cold, "warm": warm}


def by_operation(runs: list[dict[str, Any]]) -> str:
    """ARM calls per restore by operation (emulator metering), per case and phase."""
    cols = [(r, phase) for r in runs for phase in ("cold", "warm")]
    ops = sorted({op for r, phase in cols for op in r[phase]["arm"]["by_operation"]})
    rows = [[op, *(round(r[phase]["arm"]["by_operation"].get(op, 0) / r[phase]["n"], 1) for r, phase in cols)]
            for op in ops]
    headers = ["ARM calls / restore by operation", *(f"{r['label']} {r['progress']} {phase}" for r, phase in cols)]
    return md_table(headers, rows)


def run(*, n: int = 5, progress_modes: tuple[str, ...] = ("linear",), durations: tuple[tuple[str, str, float], ...]
        = DURATIONS, extra: tuple[tuple[str, str, str, float], ...] = (), results: Path | None = None,
        name: str = "notice") -> dict[str, Any]:
    """``extra``: more (label, progress, duration, scale) cases, e.g. the 1-hour job with uneven or absent progress."""
    cases = [(label, mode, d, s) for mode in progress_modes for label, d, s in durations] + list(extra)
    runs = [run_one(label, d, s, n=n, progress=mode) for label, mode, d, s in cases]
    rows = []
    for r in runs:
        for phase in ("cold", "warm"):
            p = r[phase]
            p95 = percentile(p["notice_seconds"], 95)
            rows.append([f"{r['label']} ({r['progress']})", f"{phase} (n={p['n']})", round(p95, 1),
                         round(max(p["notice_seconds"]), 1), round(p["arm_per_restore"], 1),
                         round(p["jobs_get_per_restore"], 1), verdict(p95 <= NOTICE_GOAL_SECONDS),
                         verdict(p["arm_per_restore"] <= ARM_GOAL)])
    table = md_table(["job", "phase", "notice p95 (Azure s)", "notice max", "ARM calls / restore",
                      "Jobs_Get / restore", "≤ 120 s", "≤ 8 ARM"], rows)
    table += "\n\n" + by_operation(runs)
    data = {"runs": runs, "targets": {"notice_p95_seconds": NOTICE_GOAL_SECONDS, "arm_per_restore": ARM_GOAL}}
    write_result(name, data, table, **({"results": results} if results else {}))
    return data
