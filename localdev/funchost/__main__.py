"""CLI: ``python -m localdev.funchost --app-dir DIR --settings FILE --port PORT [--function-key KEY ...]
[--master-key KEY] [--static /dashboard=DIR] [--ready-file FILE] [--pool-size N]``

Loads ``Values`` from the settings file into the environment (they override inherited variables), imports
``function_app`` from DIR, serves until SIGTERM/SIGINT, then drains running invocations (bounded) and exits 0.
``--port 0`` picks a free port; ``--ready-file`` gets ``{"port", "pid", "base_url"}`` once serving.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from localdev.funchost.config import HostError, load_settings_file
from localdev.funchost.host import FunctionsHost


def _static(value: str) -> tuple[str, Path]:
    prefix, sep, directory = value.partition("=")
    if not sep or not prefix.startswith("/"):
        raise argparse.ArgumentTypeError(f"--static {value!r}: write it as /prefix=DIR (e.g. /dashboard=dashboard)")
    return prefix.rstrip("/"), Path(directory)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m localdev.funchost", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--app-dir", type=Path, default=Path.cwd(), help="folder with function_app.py and host.json")
    p.add_argument("--settings", type=Path, help="local.settings.json whose Values become app settings")
    p.add_argument("--port", type=int, default=7071)
    p.add_argument("--function-key", action="append", default=[], help="accepted function key (repeatable)")
    p.add_argument("--master-key", help="master key (admin-level functions; also accepted as a function key)")
    p.add_argument("--static", type=_static, action="append", default=[], metavar="/PREFIX=DIR")
    p.add_argument("--ready-file", type=Path, help="write {port, pid, base_url} here when serving")
    p.add_argument("--pool-size", type=int, default=16, help="invocation thread pool size")
    p.add_argument("--drain-timeout", type=float, default=30.0, help="seconds to wait for running invocations")
    args = p.parse_args(argv)

    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        settings = load_settings_file(args.settings) if args.settings else {}
        if not args.function_key and not args.master_key:
            logging.getLogger("funchost").warning("no --function-key/--master-key: function-level routes answer 401")
        host = FunctionsHost(args.app_dir, settings, port=args.port, function_keys=args.function_key,
                             master_key=args.master_key, static=dict(args.static), pool_size=args.pool_size,
                             drain_timeout=args.drain_timeout)
        host.start()
    except HostError as exc:
        print(f"funchost: {exc}", file=sys.stderr)
        return 2
    if args.ready_file:
        tmp = args.ready_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"port": host.port, "pid": os.getpid(), "base_url": host.base_url}))
        tmp.replace(args.ready_file)
    stop.wait()
    host.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
