"""``make bench`` → ``python -m bench.run [--only NAME[,NAME]] [--quick]``.

Scenarios: cost, overhead (5/s), overhead-poll (5/s, what-if: host.json maxPollingInterval 2 s, the value
before it became 0.25 s), overhead-1ps,
overhead-1ps-poll (the same at 1/s), fleet, history, replay (the product's replay path against plain pg_restore of a
~1 GB database, issue 17), replay-fleet (50 small restores into a server at once, issue 17), notice (how late a
job's end is noticed and ARM calls per restore, jobs of 5 min / 1 h / 8 h, cold and warm, issue 17).
Full runs write ``bench/results/<name>.json`` + ``.md``
(committed); ``--quick`` runs smaller sizes into ``bench/results/quick/`` (not the published numbers).
``--compare COMMIT``: the overhead scenarios also run COMMIT's app on the same stack, rounds alternating.
Exit code 0 when every selected scenario ran (targets missed are reported, not errors); 1 if one crashed.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from bench import cost, fleet, history, notice, overhead, replay, replayfleet
from bench.common import RESULTS

FULL: dict[str, Callable[..., Any]] = {
    "cost": lambda r: cost.run(warm=5, baseline=2, scale=60.0, what_if=True, results=r),
    "overhead": lambda r, compare=None: overhead.run(n=200, rate=5.0, compare=compare, results=r),
    "overhead-poll": lambda r, compare=None: overhead.run(n=200, rate=5.0, max_polling="00:00:02",
                                                          name="overhead-poll", compare=compare, results=r),
    "overhead-1ps": lambda r, compare=None: overhead.run(n=30, rate=1.0, name="overhead-1ps", compare=compare,
                                                         results=r),
    "overhead-1ps-poll": lambda r, compare=None: overhead.run(n=30, rate=1.0, max_polling="00:00:02",
                                                              name="overhead-1ps-poll", compare=compare, results=r),
    "fleet": lambda r: fleet.run(n=500, scale=60.0, results=r),
    "history": lambda r: history.run(finished=100_000, ticks=20, results=r),
    "replay": lambda r: replay.run(mb=1024, rounds=3, jobs=2, results=r),
    "replay-fleet": lambda r: replayfleet.run(n=50, max_per_server=2, parallelism=3, results=r),
    "notice": lambda r: notice.run(n=5, progress_modes=("linear", "uneven", "absent"), results=r),
}
QUICK: dict[str, Callable[..., Any]] = {
    "cost": lambda r: cost.run(warm=2, baseline=1, scale=120.0, results=r),
    "overhead": lambda r, compare=None: overhead.run(n=40, rate=5.0, profile_n=10, compare=compare, results=r),
    "overhead-poll": lambda r, compare=None: overhead.run(n=40, rate=5.0, max_polling="00:00:02", profile_n=0,
                                                          name="overhead-poll", compare=compare, results=r),
    "overhead-1ps": lambda r, compare=None: overhead.run(n=10, rate=1.0, name="overhead-1ps", profile_n=0,
                                                         compare=compare, results=r),
    "overhead-1ps-poll": lambda r, compare=None: overhead.run(n=10, rate=1.0, max_polling="00:00:02",
                                                              profile_n=0, name="overhead-1ps-poll",
                                                              compare=compare, results=r),
    "fleet": lambda r: fleet.run(n=100, scale=60.0, results=r),
    "history": lambda r: history.run(finished=10_000, ticks=10, results=r),
    "replay": lambda r: replay.run(mb=100, rounds=1, jobs=2, results=r),
    "replay-fleet": lambda r: replayfleet.run(n=10, max_per_server=2, parallelism=3, results=r),
    "notice": lambda r: notice.run(n=2, durations=(("5 min", "PT5M", 10.0),), results=r),
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="", help=f"comma-separated scenarios out of: {', '.join(FULL)}")
    p.add_argument("--quick", action="store_true", help="smaller sizes, results into bench/results/quick/")
    p.add_argument("--compare", metavar="COMMIT", help="overhead scenarios: also run COMMIT's app (git archive), "
                                                        "alternating rounds with this checkout's, in the same run")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(FULL)
    unknown = [n for n in names if n not in FULL]
    if unknown:
        p.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(FULL)}")
    table = QUICK if args.quick else FULL
    results = RESULTS / "quick" if args.quick else RESULTS
    failed = []
    t_all = time.monotonic()
    for name in names:
        t0 = time.monotonic()
        print(f"\n### bench {name}{' (quick)' if args.quick else ''}", flush=True)
        try:
            if name.startswith("overhead"):
                table[name](results, compare=args.compare)
            else:
                table[name](results)
        except Exception:  # noqa: BLE001 - report and go on with the next scenario
            traceback.print_exc()
            failed.append(name)
        print(f"### {name}: {time.monotonic() - t0:.0f}s", flush=True)
    print(f"\nbench done in {time.monotonic() - t_all:.0f}s; results in {results}"
          + (f"; CRASHED: {', '.join(failed)}" if failed else ""), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
