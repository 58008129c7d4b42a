"""replay-fleet (issue 17 item 5): N restores into a server submitted at once, with a replay concurrency limit per
target server (``RESTORE_REPLAY_MAX_PER_SERVER``: slot rows, restore_core/stages/replay.py) and per job environment
(the local job runner's ``--parallelism``: executions at once, infra's ``replayMaxExecutions`` ×
``replayParallelism``), under the emulator's ARM token bucket (as bench/fleet.py).

Small databases (the demo world's Flexible point: appdb + inventory) so the scenario runs in minutes. First one restore
alone, three times one after the other (the calibration: the median of their times before the replay starts, of
their replays, and of what follows until terminal), then N at once. Measured: every restore terminal (all must
succeed), none failed because of throttling, the most replays loading into the server at once (from the server's
session log: sessions of ``pg-restore-replay <restore> <runner>``, bench/replaycheck.py) against the limit, and the
wall time against the bound:

    replay bound = before + N × replay / c + after     (c = min(RESTORE_REPLAY_MAX_PER_SERVER × servers, parallelism))
    ARM bound    = max((accepted reads − read burst) / read rate, (accepted writes − write burst) / write rate)
    bound        = max(replay bound, ARM bound);  goal: wall ≤ 1.3 × bound

with ``before``, ``replay`` and ``after`` the calibration restores' median times (submit → replay start, replay
start → end, replay end → terminal: verify runs in a job execution too, but holds no server slot).

Reported beside it, from the execution logs (each message an execution takes starts with
``restore_core.replay.MESSAGE_MARKER``): the executions, the messages they took by what was done with each and the
execution seconds each kind took, and the execution time of all messages against what the job environment had
(parallelism × wall): how busy the executions were. ``messages_per_execution`` sets
``RESTORE_REPLAY_MESSAGES_PER_EXECUTION`` (1: one message per execution, as before executions drained the queues).
"""

from __future__ import annotations

import math
import re
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import replaycheck as rc
from bench.common import REPO, BenchStack, md_table, submit, verdict, write_result
from bench.fleet import THROTTLE
from localdev import scenarios as sc
from restore_core.config import DEFAULTS

TERMINAL = {"succeeded", "failed", "rejected", "cancelled"}
CLUSTER = "pgflex-target"


def bounds(n: int, calib: dict[str, float], concurrency: int, arm_seconds: float) -> dict[str, float]:
    """The replay-capacity bound and the ARM bound of ``n`` restores (see the module docstring)."""
    replay = calib["before"] + n * calib["replay"] / concurrency + calib["after"]
    return {"replay_bound_seconds": round(replay, 1), "arm_bound_seconds": round(arm_seconds, 1),
            "bound_seconds": round(max(replay, arm_seconds), 1)}


def arm_bound(metering: dict[str, Any], throttle: dict[str, Any]) -> tuple[float, dict[str, int]]:
    by_kind = metering.get("by_kind") or {}
    by_status = {str(k): int(v) for k, v in (metering.get("by_status") or {}).items()}
    reads, writes = int(by_kind.get("read", 0)), int(by_kind.get("write", 0))
    n429 = by_status.get("429", 0)
    writes_ok = min(writes, by_status.get("202", 0))
    reads_ok = max(0, reads - max(0, n429 - (writes - writes_ok)))
    seconds = max(0.0, (reads_ok - throttle["read_burst"]) / throttle["read_rate"],
                  (writes_ok - throttle["write_burst"]) / throttle["write_rate"])
    return seconds, {"reads": reads_ok, "writes": writes_ok, "429": n429}


def most_at_once(sessions: list[rc.Session]) -> int:
    """The most restores with a replay session open at the same moment (per restore: first session start to last
    end of the runner that finished it)."""
    spans: dict[str, tuple[float, float]] = {}
    for s in sessions:
        a, b = spans.get(s.restore_id, (s.start, s.end))
        spans[s.restore_id] = (min(a, s.start), max(b, s.end))
    events = sorted([(a, 1) for a, _ in spans.values()] + [(b, -1) for _, b in spans.values()])
    best = now = 0
    for _, d in events:
        now += d
        best = max(best, now)
    return best


def timeline(bodies: list[dict[str, Any]], slots: int) -> dict[str, Any]:
    """When the restores were ready for their replay (submit → the replay message sent: the Function stages before
    it, validate to inventory), and how busy the server's replay slots were between the first replay start and the
    last replay end (the replays' own time / (slots × that span))."""
    epoch = "1970-01-01T00:00:00+00:00"
    ready, starts, ends, replay_s = [], [], [], 0.0
    for b in bodies:
        r = (b.get("server") or {}).get("replay") or {}
        at = ((b.get("stage_times") or {}).get("replay") or {}).get("started")
        took = rc.iso_seconds(b.get("created_at"), at)
        if took is not None:
            ready.append(took)
        s, e = rc.iso_seconds(epoch, r.get("started_at")), rc.iso_seconds(epoch, r.get("finished_at"))
        if s is not None and e is not None:
            starts.append(s)
            ends.append(e)
            replay_s += e - s
    ready.sort()
    span = max(ends) - min(starts) if starts else 0.0
    return {"ready_for_replay_seconds_median": round(ready[len(ready) // 2], 1) if ready else None,
            "ready_for_replay_seconds_max": round(ready[-1], 1) if ready else None,
            "replay_span_seconds": round(span, 1),
            "replay_slot_busy_share": round(replay_s / (slots * span), 2) if span else None}


def median_phases(samples: list[dict[str, float]]) -> dict[str, float]:
    """Each phase's median over the calibration restores (a single one on a shared machine is as noisy as its
    load: the same replay alone took 0.55 s in one run and 2.37 s in the next)."""
    out = {}
    for k in samples[0]:
        v = sorted(x[k] for x in samples)
        out[k] = v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2
    return out


def phases(body: dict[str, Any]) -> dict[str, float] | None:
    """before / replay / after seconds of one terminal server restore, from its status."""
    replay = (body.get("server") or {}).get("replay") or {}
    before = rc.iso_seconds(body.get("created_at"), replay.get("started_at"))
    during = rc.iso_seconds(replay.get("started_at"), replay.get("finished_at"))
    after = rc.iso_seconds(replay.get("finished_at"), body.get("updated_at"))
    if before is None or during is None or after is None:
        return None
    return {"before": before, "replay": during, "after": after}


#: What a job execution did with a message, from its log (localdev/jobrunner.py sends each execution's INFO logs to
#: its file); the first marker found in the message's part of the log names it.
EXECUTION_KINDS = (("no message", "no replay or verify message waiting"), ("stale or duplicate", "stale or duplicate"),
                   ("slot wait", "waiting for a replay slot"), ("replay", " replay → verify"),
                   ("verify", " verify → "), ("fenced by a lease or a race", "nothing to do"))


_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ", re.M)


#: An execution's own set-up (settings, telemetry, storage clients), logged by restore_core.replay.main.
_READY = re.compile(r"settings and clients ready in ([0-9.]+) s")


def _stamp(text: str, last: bool = False) -> float | None:
    """The first (or last) log timestamp of ``text`` (the job runner's format: ``%(asctime)s``), as epoch seconds."""
    found = _STAMP.findall(text)
    if not found:
        return None
    return datetime.strptime(found[-1 if last else 0], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def _message_parts(text: str) -> list[tuple[str, float | None]]:
    """An execution's log cut into one part per message it took (each starts with ``replay.MESSAGE_MARKER``), with
    the seconds each took (to the next message's start; the last one to the execution's last line). A log without
    the marker (an execution that found nothing, died before taking a message, or ran one message per process
    before executions drained the queues) is one part, without a time."""
    from restore_core.replay import MESSAGE_MARKER

    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if MESSAGE_MARKER in line]
    if not starts:
        return [(text, None)]
    parts = ["".join(lines[a:b]) for a, b in zip(starts, [*starts[1:], len(lines)], strict=True)]
    out: list[tuple[str, float | None]] = []
    for i, part in enumerate(parts):
        t0 = _stamp(part)
        t1 = _stamp(parts[i + 1]) if i + 1 < len(parts) else _stamp(part, last=True)
        out.append((part, round(t1 - t0, 3) if t0 is not None and t1 is not None else None))
    return out


def executions(logs: list[Path], ids: list[str]) -> dict[str, Any]:
    """The job executions of the fleet, the messages they took by what was done with each (count and mean seconds
    of execution time), and the messages per restore (mean, max): from the execution logs."""
    kinds: dict[str, int] = {}
    seconds: dict[str, list[float]] = {}
    per_restore = dict.fromkeys(ids, 0)
    messages = 0
    ready: list[float] = []
    for path in logs:
        text = path.read_text(errors="replace")
        ready += [float(x) for x in _READY.findall(text)]
        for part, took in _message_parts(text):
            kind = next((k for k, marker in EXECUTION_KINDS if marker in part), "other (failed or killed)")
            kinds[kind] = kinds.get(kind, 0) + 1
            if took is not None:
                seconds.setdefault(kind, []).append(took)
            messages += kind not in ("no message", "other (failed or killed)")
            found = [(part.find(r), r) for r in ids if r in part]
            if found:  # the restore named first (a replay's log also names the restore it hands its slot to)
                rid = min(found)[1]
                per_restore[rid] += 1
    counts = list(per_restore.values())
    return {"executions": len(logs), "messages": messages, "messages_by_kind": kinds,
            "message_seconds_mean_by_kind": {k: round(sum(v) / len(v), 3) for k, v in seconds.items()},
            "message_seconds_total": round(sum(sum(v) for v in seconds.values()), 1),
            "execution_setup_seconds_mean": round(sum(ready) / len(ready), 3) if ready else None,
            "messages_per_execution": round(messages / len(logs), 2) if logs else None,
            "messages_per_restore_mean": round(sum(counts) / len(counts), 2) if counts else None,
            "messages_per_restore_max": max(counts) if counts else None}


class ReplayFleet:
    def __init__(self, n: int, *, max_per_server: int, parallelism: int, scale: float, workdir: Path,
                 messages_per_execution: int | None = None, calibrations: int = 3) -> None:
        self.n, self.max_per_server, self.parallelism, self.scale = n, max_per_server, parallelism, scale
        self.calibrations = calibrations
        self.calibration_samples: list[dict[str, float]] = []
        self.tag = uuid.uuid4().hex[:5]
        extra = {"RESTORE_REPLAY_MESSAGES_PER_EXECUTION": str(messages_per_execution)} if messages_per_execution \
            else {}
        self.messages_cap = messages_per_execution or int(DEFAULTS["RESTORE_REPLAY_MESSAGES_PER_EXECUTION"])
        self.bs = BenchStack(workdir, scale=scale, inprocess=False, settings={
            "RESTORE_REPLAY_MAX_PER_SERVER": str(max_per_server), "RESTORE_REPLAY_LEASE_SECONDS": "60", **extra})
        self.runner: rc.JobRunnerProcess | None = None

    def start_runner(self) -> None:
        st = self.bs.stack
        st.stop_jobrunner()  # the stack's own (parallelism 2): replaced by one with the asked parallelism
        rc.enable_session_log(self.dsn("postgres"))
        self.runner = rc.JobRunnerProcess(st.dir / "local.settings.json", st.dir / "rf.jobrunner.json",
                                          st.logs / "jobrunner-rf.log", st.logs / "replay-rf",
                                          parallelism=self.parallelism)
        self.runner.log_dir.mkdir(parents=True, exist_ok=True)
        self.runner.start()

    def dsn(self, db: str) -> str:
        return rc.dsn_for(self.bs.env["PGCLUSTER_" + CLUSTER.upper().replace("-", "_") + "_DSN"], db)

    def body(self, i: int) -> dict[str, Any]:
        return sc.into_server(suffix=f"_rf{self.tag}_{i:03d}")

    def wait(self, ids: list[str], timeout: float) -> dict[str, dict[str, Any]]:
        assert self.bs.api is not None
        deadline, last = time.monotonic() + timeout, 0.0
        bodies: dict[str, dict[str, Any]] = {}
        while True:
            for rid in ids:
                if bodies.get(rid, {}).get("status") not in TERMINAL:
                    bodies[rid] = self.bs.api.get(f"/restores/{rid}")[1]
            done = sum(1 for b in bodies.values() if b.get("status") in TERMINAL)
            if done == len(ids) or time.monotonic() > deadline:
                return bodies
            if time.monotonic() - last > 15:
                last = time.monotonic()
                print(f"   ... {done}/{len(ids)} terminal", flush=True)
            time.sleep(1)

    def run(self) -> dict[str, Any]:
        assert self.bs.api is not None and self.bs.admin is not None
        self.start_runner()
        samples: list[dict[str, float]] = []
        for k in range(self.calibrations):  # one after the other, each alone
            calib_id, _ = submit(self.bs.api, self.body(999 - k))
            calib_body = self.wait([calib_id], 300)[calib_id]
            one = phases(calib_body)
            if calib_body.get("status") != "succeeded" or one is None:
                raise RuntimeError(f"the calibration restore did not succeed: {calib_body.get('error')}")
            samples.append(one)
        calib = median_phases(samples)
        self.calibration_samples = samples
        self.bs.admin.set_throttling(**THROTTLE)
        self.bs.admin.reset_metering()
        assert self.runner is not None
        before = set(self.runner.log_dir.glob("replay-*.log"))  # the calibration's executions
        t0 = time.time()
        with ThreadPoolExecutor(8) as pool:
            ids = [rid for rid, _ in pool.map(lambda i: submit(self.bs.api, self.body(i)), range(self.n))]
        submit_s = time.time() - t0
        bodies = self.wait(ids, 1800)
        metering = self.bs.admin.metering()
        time.sleep(2)  # the last executions end (a late duplicate is counted if it started by now)
        data = self.report(calib, calib_body, ids, bodies, metering, submit_s)
        data.update(executions(sorted(set(self.runner.log_dir.glob("replay-*.log")) - before), ids))
        # the job's execution time the messages took, against what the job environment had (parallelism × wall)
        data["messages_cap"] = self.messages_cap
        data["job_busy_share"] = round(data["message_seconds_total"] / (self.parallelism * data["wall_seconds"]), 2) \
            if data["wall_seconds"] else None
        return data

    def report(self, calib: dict[str, float], calib_body: dict[str, Any], ids: list[str],
               bodies: dict[str, dict[str, Any]], metering: dict[str, Any], submit_s: float) -> dict[str, Any]:
        created = [rc.iso_seconds("1970-01-01T00:00:00+00:00", bodies[r].get("created_at")) for r in ids]
        ended = [rc.iso_seconds("1970-01-01T00:00:00+00:00", bodies[r].get("updated_at")) for r in ids]
        wall = max(e or 0 for e in ended) - min(c or math.inf for c in created)
        status = {r: bodies[r].get("status") for r in ids}
        throttled = [r for r in ids if status[r] != "succeeded" and "throttl" in str(bodies[r].get("error")).lower()]
        sessions = rc.sessions_from_log(rc.read_lines([self.bs.stack.dir / "pg" / CLUSTER / "server.log"]))
        sessions = [s for s in sessions if s.restore_id in set(ids)]
        arm_s, accepted = arm_bound(metering, THROTTLE)
        concurrency = min(self.max_per_server, self.parallelism)  # one target server
        b = bounds(self.n, calib, concurrency, arm_s)
        each = [p for p in (phases(bodies[r]) for r in ids) if p]
        waits = [p["before"] for p in each]
        data = {"n": self.n, "scale": self.scale, "replay_max_per_server": self.max_per_server,
                "job_parallelism": self.parallelism, "concurrency": concurrency, "throttling": THROTTLE,
                "calibration": {k: round(v, 2) for k, v in calib.items()}, "calibration_id": calib_body.get("id"),
                "calibration_samples": [{k: round(v, 2) for k, v in x.items()} for x in self.calibration_samples],
                "submit_seconds": round(submit_s, 1), "wall_seconds": round(wall, 1), **b,
                "wall_over_bound": round(wall / b["bound_seconds"], 2), "arm_accepted": accepted,
                "arm_total": metering.get("total"), "outcomes": _count(status.values()),
                "terminal": sum(1 for s in status.values() if s in TERMINAL), "throttle_failures": len(throttled),
                "replays_at_once_max": most_at_once(sessions), "overlaps": rc.overlaps(sessions),
                "replay_seconds_mean": round(sum(p["replay"] for p in each) / len(each), 2) if each else None,
                "before_replay_seconds_max": round(max(waits), 1) if waits else None,
                "errors": {r: bodies[r].get("error") for r in ids if status[r] != "succeeded"},
                **timeline([bodies[r] for r in ids], concurrency)}
        data["pass"] = data["terminal"] == self.n and not throttled and data["outcomes"].get("succeeded") == self.n \
            and data["wall_over_bound"] <= 1.3 and data["replays_at_once_max"] <= self.max_per_server
        return data


def _count(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[str(v)] = out.get(str(v), 0) + 1
    return out


def table(d: dict[str, Any]) -> str:
    c = d["calibration"]
    rows = [
        ["restores terminal", f"{d['terminal']}/{d['n']} ({d['outcomes']})", "all, succeeded",
         verdict(d["terminal"] == d["n"] and d["outcomes"].get("succeeded") == d["n"])],
        ["failed because of throttling", d["throttle_failures"], "0", verdict(d["throttle_failures"] == 0)],
        ["replays loading into the server at once (max, server log)", d["replays_at_once_max"],
         f"≤ {d['replay_max_per_server']} (RESTORE_REPLAY_MAX_PER_SERVER)",
         verdict(d["replays_at_once_max"] <= d["replay_max_per_server"])],
        ["replays of one restore overlapping", len(d["overlaps"]), "0", verdict(not d["overlaps"])],
        ["wall time (s)", d["wall_seconds"], f"≤ 1.3 × bound {d['bound_seconds']} s", verdict(d["wall_over_bound"]
                                                                                          <= 1.3)],
        ["wall / bound", d["wall_over_bound"], "≤ 1.3", "-"],
        ["replay bound (s)", d["replay_bound_seconds"],
         f"{c['before']} + {d['n']} × {c['replay']} / {d['concurrency']} + {c['after']}", "-"],
        ["ARM bound (s)", d["arm_bound_seconds"], f"accepted {d['arm_accepted']}", "-"],
        ["calibration restores alone (before / replay / after, s)",
         "; ".join(f"{x['before']} / {x['replay']} / {x['after']}" for x in d.get("calibration_samples") or []),
         "median → the bound", "-"],
        ["mean replay time in the fleet (s)", d["replay_seconds_mean"], f"alone: {c['replay']}", "-"],
        ["(reported) the replay bound with the fleet's own mean replay time (s)",
         round(c["before"] + d["n"] * (d["replay_seconds_mean"] or 0) / d["concurrency"] + c["after"], 1),
         "wall / it: " + str(round(d["wall_seconds"] / (c["before"] + d["n"] * (d["replay_seconds_mean"] or 0)
                                                        / d["concurrency"] + c["after"]), 2)), "-"],
        ["ready for the replay (submit → inventory done), median / max (s)",
         f"{d.get('ready_for_replay_seconds_median')} / {d.get('ready_for_replay_seconds_max')}",
         f"alone: {c['before']} to the replay's start", "-"],
        ["replay slots busy (replay time / (slots × first start → last end))",
         f"{d.get('replay_slot_busy_share')} of {d.get('replay_span_seconds')} s", "-", "-"],
        ["job executions (messages each, mean)", f"{d.get('executions')} ({d.get('messages_per_execution')})",
         f"≤ {d.get('messages_cap')} (RESTORE_REPLAY_MESSAGES_PER_EXECUTION)", "-"],
        ["messages taken (by what was done)", f"{d.get('messages')} ({d.get('messages_by_kind')})", "-", "-"],
        ["messages per restore (mean / max)",
         f"{d.get('messages_per_restore_mean')} / {d.get('messages_per_restore_max')}", "-", "-"],
        ["execution seconds per message, mean by kind (execution logs)", d.get("message_seconds_mean_by_kind"), "-",
         "-"],
        ["execution set-up before its first message (settings, clients), mean (s)",
         d.get("execution_setup_seconds_mean"), "-", "-"],
        ["execution time of all messages / (parallelism × wall)",
         f"{d.get('message_seconds_total')} s / ({d['job_parallelism']} × {d['wall_seconds']} s) = "
         f"{d.get('job_busy_share')}", "-", "-"],
    ]
    return md_table(["metric", "value", "target", "verdict"], rows) + (
        f"\n\n{d['n']} restores into one Flexible-like server (demo world's Flexible point: appdb + inventory), "
        f"submitted at once in {d['submit_seconds']} s; job runner parallelism {d['job_parallelism']}, "
        f"RESTORE_REPLAY_MAX_PER_SERVER {d['replay_max_per_server']}; RESTORE_REPLAY_MESSAGES_PER_EXECUTION "
        f"{d.get('messages_cap')}; emulator clock x{d['scale']:g}; ARM token "
        f"bucket {d['throttling']}.")


def run(n: int = 50, *, max_per_server: int = 2, parallelism: int = 3, scale: float = 300.0,
        results: Path | None = None, name: str = "replay-fleet",
        messages_per_execution: int | None = None, calibrations: int = 3) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="rf-", dir=REPO / ".local" if (REPO / ".local").is_dir() else None) \
            as tmp:
        fleet = ReplayFleet(n, max_per_server=max_per_server, parallelism=parallelism, scale=scale,
                            workdir=Path(tmp) / "stack", messages_per_execution=messages_per_execution,
                            calibrations=calibrations)
        with fleet.bs:
            try:
                data = fleet.run()
            finally:
                if fleet.runner is not None:
                    fleet.runner.stop()
    write_result(name, data, table(data), **({"results": results} if results else {}))
    return data
