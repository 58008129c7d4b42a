"""Local stand-in for the Azure Container Apps event-driven replay job. Never deployed.

In Azure, KEDA's ``azure-queue`` scale rules look at the job's queues (replay and verify: the registry's ``job``
stages) and start one job execution per waiting message (up to the job's parallelism); each execution runs
``python -m restore_core.replay``, which takes a message, does the work, deletes it and takes the next, until the
queues have stayed empty for ``RESTORE_REPLAY_IDLE_SECONDS`` or its cap (``RESTORE_REPLAY_MESSAGES_PER_EXECUTION``)
or time budget is reached. This runner does
the same on the local stack: it polls the queues' visible messages (peek, as KEDA's scaler reads the queue length)
and starts the same entrypoint as a process per waiting message while fewer than ``--parallelism`` run, with the
Function App's settings as its environment (as the
job's environment variables are in the infra). Each execution is a process forked from this runner after it imported
``restore_core`` once (an image has the package installed; only the per-message process is what matters here).

``--parallelism`` is the most executions running at once: the job environment's replay capacity (in Azure,
``replayMaxExecutions`` executions of ``replayParallelism`` replicas each, infra/main.bicep). ``--duplicate-delivery``
sends a copy of every message it sees once (at-least-once delivery, as ``FUNCHOST_DUPLICATE_DELIVERY`` does for the
Functions host): two executions then work on the same restore, and the replay's fenced lease must keep them apart.

``--state`` (JSON, rewritten on every change) lists the running executions' pids, so tests can kill one mid-replay;
each execution's output (with its ``restore_core`` INFO logs) goes to ``--log-dir``/replay-<n>.log.

Usage: ``python -m localdev.jobrunner --settings .local/local.settings.json [--parallelism 2] [--poll 0.5]
[--duplicate-delivery]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


class JobRunner:
    def __init__(self, settings_path: Path, *, parallelism: int, poll: float, state: Path, log_dir: Path,
                 duplicate_delivery: bool = False) -> None:
        values = json.loads(settings_path.read_text())["Values"]
        self.env = {**os.environ, **{str(k): str(v) for k, v in values.items()}}
        self.env["PYTHONPATH"] = str(REPO) + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH")
                                              else "")
        from restore_core.stages import registry

        self.queue_names = [values.get(spec.queue_setting) or spec.default_queue for spec in registry.JOB_STAGES]
        self.connection = values["RestoreStorage"]
        self.parallelism, self.poll, self.state, self.log_dir = parallelism, poll, state, log_dir
        self.running: dict[int, tuple[int, float]] = {}
        self.started = 0
        self.finished: list[dict[str, Any]] = []
        self.duplicate_delivery = duplicate_delivery
        # message ids already copied (or copies), kept beside the state file: a restarted runner copies nothing twice
        self.seen_file = state.with_suffix(".seen")
        self.seen: set[str] = set(self.seen_file.read_text().split()) if self.seen_file.exists() else set()
        self.duplicates_sent = 0
        self._stop = False

    def _queues(self) -> list[Any]:
        from azure.storage.queue import QueueClient

        queues = []
        for name in self.queue_names:
            q = QueueClient.from_connection_string(self.connection, name)
            try:
                q.create_queue()
            except Exception:  # noqa: BLE001, S110 - exists already (or the app creates it)
                pass
            queues.append(q)
        return queues

    def _visible(self, queues: list[Any]) -> int:
        """Visible messages on the job's queues (KEDA's scalers read each queue's length)."""
        total = 0
        for q in queues:
            try:
                peeked = q.peek_messages(max_messages=32)
                total += len(peeked)
                if self.duplicate_delivery:
                    self._duplicate(q, peeked)
            except Exception as exc:  # noqa: BLE001 - Azurite restarting: try again at the next poll
                print(f"[jobrunner] peek failed: {exc}", flush=True)
        return total

    def _duplicate(self, queue: Any, peeked: list[Any]) -> None:
        """Send one copy of each message not seen before (the copy carries the same content, as a redelivery)."""
        for m in peeked:
            if m.id in self.seen:
                continue
            copy = queue.send_message(m.content)
            self.seen.update((m.id, copy.id))
            with open(self.seen_file, "a") as f:
                f.write(f"{m.id}\n{copy.id}\n")
            self.duplicates_sent += 1
            print(f"[jobrunner] duplicate of message {m.id} on {queue.queue_name} sent", flush=True)

    def _start(self) -> None:
        """One execution: a process of its own running ``restore_core.replay.main()``, forked from this runner, which
        imported the package once (as a container image carries it installed): the same entrypoint and message
        contract as ``python -m restore_core.replay``, without paying the imports again for every message."""
        self.started += 1
        log_path = self.log_dir / f"replay-{self.started}.log"
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the execution
            os._exit(_execution(log_path, self.env))
        self.running[pid] = (pid, time.time())
        print(f"[jobrunner] execution {self.started} started (pid {pid})", flush=True)

    def _reap(self) -> None:
        for pid, (_, t0) in list(self.running.items()):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            code = os.waitstatus_to_exitcode(status) if done else None
            if code is not None:
                del self.running[pid]
                self.finished.append({"pid": pid, "exit": code, "seconds": round(time.time() - t0, 2)})
                self.finished = self.finished[-50:]
                print(f"[jobrunner] execution pid {pid} exited {code}", flush=True)

    def _save(self) -> None:
        tmp = self.state.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "running": sorted(self.running), "started": self.started,
                                   "finished": self.finished, "duplicates_sent": self.duplicates_sent}))
        tmp.replace(self.state)

    def run(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "_stop", True))
        q = self._queues()
        self._save()
        while not self._stop:
            self._reap()
            free = self.parallelism - len(self.running)
            if free > 0:
                # executions running for a while took their message (hidden); one started just now may not have
                # yet, so it counts against the visible ones
                young = sum(1 for _, t0 in self.running.values() if time.time() - t0 < 5)
                waiting = self._visible(q) - young
                for _ in range(min(free, waiting)):
                    self._start()
            self._save()
            time.sleep(self.poll)
        for pid in self.running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        self._reap()
        self._save()


def _execution(log_path: Path, env: dict[str, str]) -> int:
    """The child side of a fork: output to its log, the job's environment, then the entrypoint's main()."""
    code = 1
    try:
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.environ.clear()
        os.environ.update(env)
        _log_to_stderr()
        from restore_core import replay

        code = replay.main([])
    except BaseException:  # noqa: BLE001 - the execution's failure goes to its log and its exit code
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return code


def _log_to_stderr() -> None:
    """The execution's ``restore_core`` INFO logs (redacted by the loggers' own filters) go to its log file, as a
    container's stdout goes to the job's log stream: what each execution did can be counted (bench/replayfleet.py)."""
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger("restore_core")
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def _preload() -> None:
    """What an execution imports, imported once here (forked executions share it)."""
    import restore_core.replay  # noqa: F401
    import restore_core.stages.replay  # noqa: F401
    import restore_core.stages.verify  # noqa: F401


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m localdev.jobrunner", description=__doc__.splitlines()[0])
    p.add_argument("--settings", type=Path, required=True, help="local.settings.json of the Functions host")
    p.add_argument("--parallelism", type=int, default=2)
    p.add_argument("--poll", type=float, default=0.5)
    p.add_argument("--duplicate-delivery", action="store_true", help="send a copy of every message once")
    p.add_argument("--state", type=Path, default=None, help="JSON file listing running executions")
    p.add_argument("--log-dir", type=Path, default=None)
    a = p.parse_args(argv)
    base = a.settings.parent
    log_dir = a.log_dir or base / "logs" / "replay"
    log_dir.mkdir(parents=True, exist_ok=True)
    _preload()
    JobRunner(a.settings, parallelism=a.parallelism, poll=a.poll, state=a.state or base / "jobrunner.json",
              log_dir=log_dir, duplicate_delivery=a.duplicate_delivery).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
