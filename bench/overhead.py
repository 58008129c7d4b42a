"""overhead: time from request accepted (row ``created_at``) to restore triggered (the ``restore triggered``
timeline event), minus the ARM latency floor; p50/p95 over N restores submitted at a steady rate — and what the app
itself spends on the way: CPU and wall time per invocation of each stage, and a profile of the invocation path.

Measures the app, not the machine:
* the emulator's data plane is off (``data_plane: false``, docs/emulator.md): no ``pg_restore``, no PostgreSQL or blob
  reads behind validation, trigger or the job; jobs run their duration and succeed;
* every invocation's log line from the Functions host carries ``fn_ms`` (the function's wall time) and ``cpu_ms``
  (CPU time of the thread that ran it: this invocation's own work, whatever else shares the cores); the host, the
  emulator and Azurite processes' CPU over the measured window is reported per restore beside it;
* ``compare``: the same scenario against another commit's app (``restore_core/`` + ``function_app.py`` +
  ``host.json`` from ``git archive <commit>``) on the same stack, the two apps' rounds alternating (A B A B ...), so
  machine noise falls on both;
* ``profile_n`` more restores per app run under the host's ``FUNCHOST_PROFILE_DIR`` hook (cProfile per invocation;
  not in the timed rounds): the top cumulative entries of the validate and trigger invocations.

Each app runs in its own Functions host process (``python -m localdev.funchost --app-dir <snapshot>``: the snapshot's
``restore_core`` is imported, the host and the stack are this checkout's). Each round starts a fresh host, sends
``warmup`` restores (not measured: first-use client construction and imports), then ``n`` at ``rate``/s.

Floor per restore = injected per-call ARM latency × ARM calls made before the trigger (all of the run's calls except
``Jobs_Get``, per restore) + the LRO waits the emulator imposed (``lro_duration`` is 0, so each of the two LROs —
validate and trigger — costs exactly one Retry-After wait: 10 and 30 simulated seconds, divided by the time scale).
"""

from __future__ import annotations

import argparse
import io
import os
import pstats
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
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
from localdev.funchost.config import load_host_json
from localdev.scenarios import as_database

LRO_RETRY_AFTER_SIM = (10.0, 30.0)  # emulator base Retry-After: validate (10 s), trigger (30 s) — docs/emulator.md
APP_FILES = ("restore_core", "function_app.py", "host.json")
STAGES = ("restores_create", "restore_validate", "restore_trigger")
TARGET_P50_S, TARGET_P95_S = 0.3, 1.0
_LINE = re.compile(r"invocation function=(\S+) [^\n]*?outcome=(\S+) (?:status=\S+ )?"
                   r"duration_ms=(\S+) fn_ms=(\S+) cpu_ms=(\S+)")
_TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class App:
    """One app under test: a label (``head`` or a commit), its snapshot folder and what was measured of it."""

    label: str
    commit: str
    dir: Path
    overheads: list[float] = field(default_factory=list)
    raw: list[float] = field(default_factory=list)
    to_validated: list[float] = field(default_factory=list)
    to_triggered: list[float] = field(default_factory=list)
    post_s: list[float] = field(default_factory=list)
    invocations: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # function -> {wall,fn,cpu}
    cpu_s: dict[str, float] = field(default_factory=dict)  # process -> CPU seconds over the measured windows
    arm_before_trigger: list[float] = field(default_factory=list)
    floors: list[float] = field(default_factory=list)
    restores: int = 0
    profile: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


# ---------------------------------------------------------------- app snapshots
def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()


def snapshot(ref: str | None, into: Path, max_polling: str | None) -> App:
    """The app of commit ``ref`` (``git archive``), or of this working tree when ``ref`` is None, in ``into``."""
    into.mkdir(parents=True)
    if ref is None:
        for name in APP_FILES:
            src = REPO / name
            if src.is_dir():
                shutil.copytree(src, into / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(src, into / name)
        commit = _git("rev-parse", "HEAD")
        dirty = bool(_git("status", "--porcelain", "--", *APP_FILES))
        label = f"head {commit[:7]}{' + uncommitted' if dirty else ''}"
    else:
        try:
            commit = _git("rev-parse", "--verify", f"{ref}^{{commit}}")
        except subprocess.CalledProcessError:
            raise BenchError(f"--compare {ref}: not a commit of this repository (git rev-parse failed)") from None
        data = subprocess.run(["git", "archive", "--format=tar", commit, *APP_FILES], cwd=REPO, capture_output=True,
                              check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(into, filter="data")
        label = f"{ref} {commit[:7]}" if not commit.startswith(ref) else commit[:7]
    if max_polling is not None:
        doc = load_host_json(into)
        doc["extensions"]["queues"]["maxPollingInterval"] = max_polling
        import json

        (into / "host.json").write_text(json.dumps(doc, indent=2))
    return App(label, commit, into)


# ---------------------------------------------------------------- measuring one round
def _proc_cpu(pid: int | None) -> float:
    if not pid:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def _cpu_of(bs: BenchStack) -> dict[str, float]:
    comps = bs.stack.components
    return {name: _proc_cpu(comps.get(name, {}).get("pid")) for name in ("funchost", "dpemu", "azurite")}


def _trigger_time(table: Any, rid: str) -> datetime | None:
    rows = table.query_entities("PartitionKey eq @pk and RowKey gt @lo and RowKey lt @hi",
                                parameters={"pk": "d" + rid[:8], "lo": rid + "~", "hi": rid + "~~"})
    for ev in sorted(rows, key=lambda r: r["RowKey"]):
        # "adopted job": the trigger's answer was lost (e.g. a storage timeout) and a redelivery adopted the job
        if str(ev.get("message", "")).startswith(("restore triggered", "adopted job")):
            return _t(ev["at"])
    return None


def _t(value: Any) -> datetime:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def parse_invocations(text: str) -> dict[str, dict[str, list[float]]]:
    """Successful invocations in host log ``text``: function -> {"wall": [ms], "fn": [ms], "cpu": [ms]}."""
    out: dict[str, dict[str, list[float]]] = {}
    for m in _LINE.finditer(text):
        function, outcome, wall, fn, cpu = m.groups()
        if outcome == "ok":
            d = out.setdefault(function, {"wall": [], "fn": [], "cpu": []})
            d["wall"].append(float(wall))
            d["fn"].append(float(fn))
            d["cpu"].append(float(cpu))
    return out


def _submit_all(bs: BenchStack, n: int, rate: float, prefix: str) -> tuple[list[str], list[float]]:
    assert bs.api is not None
    ids, took = [], []
    t0 = time.monotonic()
    for i in range(n):  # steady rate: request i leaves at t0 + i/rate
        wait = t0 + i / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        rid, s = submit(bs.api, as_database(f"{prefix}_{i}"))
        ids.append(rid)
        took.append(s)
    return ids, took


def _host_log(bs: BenchStack) -> Path:
    return Path(bs.stack.components["funchost"]["log"])


def _start_host(bs: BenchStack, app: App, extra: dict[str, str] | None = None) -> None:
    bs.stack.app_dir = app.dir
    bs.stack.start_host(extra)
    from localdev.apiclient import Api

    bs.api = Api(bs.stack.env["RESTORE_API_URL"], bs.stack.env["RESTORE_API_KEY"])


def run_round(bs: BenchStack, app: App, *, n: int, rate: float, warmup: int, latency: float, scale: float,
              timeout: float) -> None:
    """One fresh host of ``app``: ``warmup`` restores (not measured), then ``n`` measured; results added to app."""
    tag = uuid.uuid4().hex[:6]
    _start_host(bs, app)
    table = bs.restores_table()
    try:
        warm, _ = _submit_all(bs, warmup, rate, f"bench_ovh_w{tag}")
        wait_terminal(table, warm, timeout=timeout)
        log_from = _host_log(bs).stat().st_size
        assert bs.admin is not None
        arm0, cpu0 = bs.admin.metering(), _cpu_of(bs)
        ids, took = _submit_all(bs, n, rate, f"bench_ovh_{tag}")
        rows = wait_terminal(table, ids, timeout=timeout)
        arm = caller_delta(arm0, bs.admin.metering(), "default")
        cpu1 = _cpu_of(bs)
    finally:
        bs.stack.stop_host()
    with _host_log(bs).open() as fh:
        fh.seek(log_from)
        for function, d in parse_invocations(fh.read()).items():
            into = app.invocations.setdefault(function, {"wall": [], "fn": [], "cpu": []})
            for k in into:
                into[k] += d[k]
    for name in cpu1:
        app.cpu_s[name] = app.cpu_s.get(name, 0.0) + cpu1[name] - cpu0[name]
    pre = (arm["total"] - arm["by_operation"].get("Jobs_Get", 0)) / n
    floor = latency * pre + sum(LRO_RETRY_AFTER_SIM) / scale
    app.arm_before_trigger.append(pre)
    app.floors.append(floor)
    app.post_s += took
    app.restores += n
    missing = []
    for rid in ids:
        trig, created = _trigger_time(table, rid), rows.get(rid, {}).get("created_at")
        if trig is None or not created:
            missing.append(rid)
            continue
        total = (trig - _t(created)).total_seconds()
        app.raw.append(total)
        app.overheads.append(total - floor)
        validated = _stage_finished(rows[rid], "validate")
        if validated:
            app.to_validated.append((_t(validated) - _t(created)).total_seconds())
            app.to_triggered.append((trig - _t(validated)).total_seconds())
    if missing:
        raise BenchError(f"{app.label}: {len(missing)} restores never reached the trigger (e.g. {missing[:3]}); "
                         f"see {bs.workdir}/logs")


def _stage_finished(row: dict[str, Any], stage: str) -> str | None:
    import json

    value = json.loads(row.get("stage_times") or "{}").get(stage, {}).get("finished")
    return str(value) if value else None


def run_profile(bs: BenchStack, app: App, *, n: int, rate: float, timeout: float, top: int,
                keep: Path | None = None) -> None:
    """``n`` restores with every invocation under cProfile (host hook FUNCHOST_PROFILE_DIR); top entries by
    cumulative and by own time of the validate and trigger invocations (``keep``: where the .pstats files stay)."""
    prof_dir = (keep or bs.workdir) / f"profile-{app.commit[:7]}-{uuid.uuid4().hex[:6]}"
    _start_host(bs, app, {"FUNCHOST_PROFILE_DIR": str(prof_dir)})
    try:
        ids, _ = _submit_all(bs, n, rate, f"bench_ovh_p{uuid.uuid4().hex[:6]}")
        wait_terminal(bs.restores_table(), ids, timeout=timeout)
    finally:
        bs.stack.stop_host()
    for function in STAGES[1:]:
        path = prof_dir / f"{function}.pstats"
        if path.exists():
            app.profile[function] = top_entries(pstats.Stats(str(path)), top)


def top_entries(stats: pstats.Stats, top: int) -> list[dict[str, Any]]:
    """The ``top`` entries by cumulative time (ms per invocation), then the ``top`` by own time (``"own"`` rows);
    the host's own frames are left out."""
    calls = max((nc for (f, _, name), (_, nc, _, _, _) in stats.stats.items()  # type: ignore[attr-defined]
                 if name in ("restore_validate", "restore_trigger")), default=1)
    rows = []
    for (filename, line, name), (_, ncalls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = _short(filename)
        if where is None:
            continue
        rows.append({"function": f"{where}:{line}({name})", "calls_per_invocation": round(ncalls / calls, 2),
                     "cum_ms_per_invocation": round(cumtime / calls * 1000, 2),
                     "own_ms_per_invocation": round(tottime / calls * 1000, 2)})
    by_cum = sorted(rows, key=lambda r: -r["cum_ms_per_invocation"])[:top]
    by_own = sorted(rows, key=lambda r: -r["own_ms_per_invocation"])[:top]
    return by_cum + [{**r, "by": "own"} for r in by_own]


def _short(filename: str) -> str | None:
    if "/localdev/" in filename or filename.endswith("threading.py"):
        return None  # the host's frames
    for marker in ("/site-packages/", "/restore_core/"):
        if marker in filename:
            rest = filename.split(marker, 1)[1]
            return ("restore_core/" + rest) if marker == "/restore_core/" else rest
    if filename.endswith("function_app.py"):
        return "function_app.py"
    return filename.rsplit("/", 1)[-1]  # stdlib file, "~" (built-ins), <frozen ...>


# ---------------------------------------------------------------- the scenario
def _summary(app: App) -> dict[str, Any]:
    def pcts(values: list[float]) -> dict[str, float | None]:
        return {"p50": percentile(values, 50), "p95": percentile(values, 95)} if values else \
            {"p50": None, "p95": None}

    inv = {fn: {k: pcts(v) for k, v in d.items()} | {"n": len(d["cpu"])} for fn, d in app.invocations.items()}
    p50, p95 = percentile(app.overheads, 50), percentile(app.overheads, 95)
    return {"label": app.label, "commit": app.commit, "restores": app.restores,
            "overhead_p50_s": p50, "overhead_p95_s": p95, "overhead_max_s": max(app.overheads),
            "raw_p50_s": percentile(app.raw, 50), "raw_p95_s": percentile(app.raw, 95),
            "post_p50_s": percentile(app.post_s, 50), "post_p95_s": percentile(app.post_s, 95),
            "accepted_to_validated_p50_s": percentile(app.to_validated, 50) if app.to_validated else None,
            "validated_to_triggered_p50_s": percentile(app.to_triggered, 50) if app.to_triggered else None,
            "arm_calls_before_trigger_per_restore": sum(app.arm_before_trigger) / len(app.arm_before_trigger),
            "floor_seconds": sum(app.floors) / len(app.floors),
            "invocations_ms": inv,
            "process_cpu_ms_per_restore": {k: round(v / app.restores * 1000, 1) for k, v in app.cpu_s.items()},
            # all invocations of the three functions over the measured restores: comparable whether the trigger ran
            # in its own invocation or inline in the validate one (RESTORE_CONTINUE_INLINE)
            "invocation_cpu_ms_per_restore": round(sum(sum(app.invocations.get(fn, {}).get("cpu", []))
                                                       for fn in STAGES) / app.restores, 1),
            "profile_top_cumulative": app.profile,
            "overheads_s": app.overheads, "pass": p50 <= TARGET_P50_S and p95 <= TARGET_P95_S}


def _table(summaries: list[dict[str, Any]]) -> str:
    rows = []
    for s in summaries:
        inv = s["invocations_ms"]

        def cell(fn: str, k: str, s: dict[str, Any] = s, inv: dict[str, Any] = inv) -> str:
            d = inv.get(fn, {}).get(k, {})
            return f"{d.get('p50') or 0:.0f} / {d.get('p95') or 0:.0f}"

        rows.append([s["label"], s["overhead_p50_s"], s["overhead_p95_s"],
                     verdict(s["pass"]), s["accepted_to_validated_p50_s"] or 0, s["validated_to_triggered_p50_s"] or 0,
                     cell("restores_create", "cpu"), cell("restore_validate", "cpu"), cell("restore_validate", "fn"),
                     cell("restore_trigger", "cpu"), cell("restore_trigger", "fn"),
                     f"{s['invocation_cpu_ms_per_restore']:.0f}",
                     " / ".join(f"{s['process_cpu_ms_per_restore'].get(k, 0):.0f}"
                                for k in ("funchost", "dpemu", "azurite"))])
    return md_table(["app", "overhead p50 (s)", "p95 (s)", "goal p50 ≤ 0.3, p95 ≤ 1", "accepted→validated p50 (s)",
                     "validated→triggered p50 (s)", "POST CPU ms p50/p95", "validate CPU ms p50/p95",
                     "validate wall ms p50/p95", "trigger CPU ms p50/p95", "trigger wall ms p50/p95",
                     "CPU ms per restore: POST + validate + trigger invocations",
                     "CPU ms per restore: host / emulator / Azurite"], rows)


def _profile_md(summaries: list[dict[str, Any]], top: int = 12) -> str:
    out = []
    for s in summaries:
        for function, entries in s["profile_top_cumulative"].items():
            out.append(f"\n**{s['label']} — {function}** (cProfile, cumulative ms per invocation; profiler overhead "
                       "included)\n")
            cum = [e for e in entries if e.get("by") != "own"][:top]
            own = [e for e in entries if e.get("by") == "own"][:top]
            out.append(md_table(["by cumulative: function", "calls", "cum ms", "own ms"],
                                [[e["function"], e["calls_per_invocation"], e["cum_ms_per_invocation"],
                                  e["own_ms_per_invocation"]] for e in cum]))
            out.append("")
            out.append(md_table(["by own time: function", "calls", "cum ms", "own ms"],
                                [[e["function"], e["calls_per_invocation"], e["cum_ms_per_invocation"],
                                  e["own_ms_per_invocation"]] for e in own]))
    return "\n".join(out)


def run(*, n: int = 200, rate: float = 5.0, scale: float = 3600.0, latency: float = 0.02,
        max_polling: str | None = None, name: str = "overhead", compare: str | None = None, rounds: int = 2,
        warmup: int = 3, profile_n: int = 30, top: int = 25, keep_profiles: Path | None = None,
        workdir: Path | None = None, results: Path | None = None, timeout: float = 600) -> dict[str, Any]:
    """``n`` measured restores per app, split over ``rounds`` rounds (alternating with ``compare``'s app);
    ``max_polling``: a host.json ``maxPollingInterval`` to try instead of each app's own (what-if runs)."""
    if rounds < 1 or n < rounds:
        raise BenchError(f"n={n}, rounds={rounds}: give rounds >= 1 and n >= rounds")
    (REPO / ".local").mkdir(exist_ok=True)
    workdir = workdir or Path(tempfile.mkdtemp(prefix="bench-overhead-", dir=REPO / ".local"))
    apps = [snapshot(None, workdir / "app-head", max_polling)]
    if compare:
        apps.append(snapshot(compare, workdir / "app-compare", max_polling))
    polling = {a.label: load_host_json(a.dir)["extensions"]["queues"]["maxPollingInterval"] for a in apps}
    config = {"page_size": 50, "restore_job_duration": "PT1H", "lro_duration": "PT0S",
              "arm_latency_seconds": latency, "data_plane": False}
    per_round = [n // rounds + (1 if r < n % rounds else 0) for r in range(rounds)]
    with BenchStack(workdir / "stack", scale=scale, emulator_config=config, inprocess=False) as bs:
        bs.stack.stop_host()  # each round starts the host of its app
        for r, size in enumerate(per_round):
            for app in (apps if r % 2 == 0 else apps[::-1]):  # A B, B A, ...: neither always goes first
                print(f"   round {r + 1}/{rounds}: {app.label}, {size} restores", flush=True)
                run_round(bs, app, n=size, rate=rate, warmup=warmup, latency=latency, scale=scale, timeout=timeout)
        if profile_n:
            for app in apps:
                print(f"   profile: {app.label}, {profile_n} restores", flush=True)
                run_profile(bs, app, n=profile_n, rate=rate, timeout=timeout, top=top, keep=keep_profiles)
    shutil.rmtree(workdir, ignore_errors=True)  # the snapshots (the stack's folder went with a clean exit)
    summaries = [_summary(a) for a in apps]
    data = {"n_per_app": n, "rounds": rounds, "warmup_per_round": warmup, "rate_per_s": rate, "scale": scale,
            "arm_latency_seconds": latency, "emulator_data_plane": False, "max_polling_interval": polling,
            "compare": compare, "profile_restores": profile_n, "apps": summaries,
            "targets": {"p50_s": TARGET_P50_S, "p95_s": TARGET_P95_S},
            # the first app is this checkout: its numbers stay where the previous result files had them
            **{k: summaries[0][k] for k in ("overhead_p50_s", "overhead_p95_s", "floor_seconds", "pass")}}
    head = summaries[0]
    table_md = _table(summaries)
    table_md += (f"\n\n{n} restores per app ({' + '.join(map(str, per_round))} in alternating rounds, each after "
                 f"{warmup} unmeasured warm-up restores on a fresh host) at a steady {rate:g}/s; emulator data plane "
                 f"off; ARM latency {latency:g}s per call × {head['arm_calls_before_trigger_per_restore']:.1f} calls "
                 f"before the trigger + LRO waits {sum(LRO_RETRY_AFTER_SIM):g} simulated s / x{scale:g} → floor "
                 f"{head['floor_seconds'] * 1000:.0f} ms. host.json maxPollingInterval: "
                 f"{', '.join(f'{k} {v}' for k, v in polling.items())}{' (what-if)' if max_polling else ''}. "
                 "CPU = CPU time of the thread that ran the invocation; wall = the function's own wall time. An app "
                 "that runs the trigger inline (RESTORE_CONTINUE_INLINE) has it inside its validate invocation; "
                 "its trigger invocations are only re-sends after a throttled or lost trigger answer (none: 0 / 0).")
    table_md += _profile_md(summaries)
    write_result(name, data, table_md, **({"results": results} if results else {}))
    return data


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.overhead", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--compare", help="a commit (or ref) whose app runs alternately with this checkout's")
    p.add_argument("-n", type=int, default=200, help="measured restores per app")
    p.add_argument("--rate", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--profile-n", type=int, default=30, help="restores per app under cProfile (0: none)")
    p.add_argument("--name", default="overhead")
    p.add_argument("--results", type=Path)
    p.add_argument("--keep-profiles", type=Path, help="keep the .pstats files of the profile pass in this folder")
    args = p.parse_args(argv)
    run(n=args.n, rate=args.rate, rounds=args.rounds, compare=args.compare, profile_n=args.profile_n,
        name=args.name, results=args.results, keep_profiles=args.keep_profiles)
    return 0


if __name__ == "__main__":
    sys.exit(main())
