"""CLI: ``python -m localdev.funchost --app-dir DIR --settings FILE --port PORT [--keys-file FILE]
[--static /dashboard=DIR] [--ready-file FILE] [--pool-size N] [--auth-file FILE]``

Loads ``Values`` from the settings file into the environment (they override inherited variables), imports
``function_app`` from DIR, serves until SIGTERM/SIGINT, then drains running invocations (bounded) and exits 0.
``--port 0`` picks a free port; ``--ready-file`` gets ``{"port", "pid", "base_url"}`` once serving.
``--keys-file`` is JSON ``{"functionKeys": ["..."], "masterKey": "..."}`` (keep it 0600): keys never go on the
command line, where every local user can read them (``ps``, /proc).
``--auth-file`` (localdev/funchost/easyauth.py): play App Service built-in authentication in front of the functions.
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
from localdev.funchost.easyauth import AuthConfig
from localdev.funchost.host import FunctionsHost


def _static(value: str) -> tuple[str, Path]:
    prefix, sep, directory = value.partition("=")
    if not sep or not prefix.startswith("/"):
        raise argparse.ArgumentTypeError(f"--static {value!r}: write it as /prefix=DIR (e.g. /dashboard=dashboard)")
    return prefix.rstrip("/"), Path(directory)


def load_keys_file(path: Path) -> tuple[list[str], str | None]:
    """``(function keys, master key)`` from a keys file."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise HostError(f"keys file {path} not found") from None
    except json.JSONDecodeError as exc:
        raise HostError(f"keys file {path} is not valid JSON ({exc.msg})") from None
    keys = doc.get("functionKeys", []) if isinstance(doc, dict) else None
    master = doc.get("masterKey") if isinstance(doc, dict) else None
    if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys) or \
            not (master is None or (isinstance(master, str) and master)):
        raise HostError(f'keys file {path} must hold {{"functionKeys": ["<key>", ...], "masterKey": "<key>"}}')
    return keys, master


def load_auth_file(path: Path) -> AuthConfig:
    try:
        return AuthConfig.load(path)
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise HostError(f"auth file {path} is unusable ({type(exc).__name__}: {exc}); it must hold {{issuer, "
                        "audience, jwks_file, require_authentication, excluded_paths}") from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m localdev.funchost", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--app-dir", type=Path, default=Path.cwd(), help="folder with function_app.py and host.json")
    p.add_argument("--settings", type=Path, help="local.settings.json whose Values become app settings")
    p.add_argument("--port", type=int, default=7071)
    p.add_argument("--keys-file", type=Path,
                   help='JSON {"functionKeys": [...], "masterKey": "..."}: the keys (not on the command line)')
    for refused in ("--function-key", "--master-key"):
        p.add_argument(refused, action="append", default=[], help=argparse.SUPPRESS)
    p.add_argument("--static", type=_static, action="append", default=[], metavar="/PREFIX=DIR")
    p.add_argument("--ready-file", type=Path, help="write {port, pid, base_url} here when serving")
    p.add_argument("--pool-size", type=int, default=16, help="invocation thread pool size")
    p.add_argument("--drain-timeout", type=float, default=30.0, help="seconds to wait for running invocations")
    p.add_argument("--auth-file", type=Path, help="JSON {issuer, audience, jwks_file, require_authentication, "
                                                  "excluded_paths}: play the platform's built-in authentication")
    args = p.parse_args(argv)

    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        if args.function_key or args.master_key:
            raise HostError("keys on the command line are readable by every local user (ps, /proc); put them in a "
                            "--keys-file instead")
        function_keys, master_key = load_keys_file(args.keys_file) if args.keys_file else ([], None)
        if not function_keys and not master_key:
            logging.getLogger("funchost").warning("no keys (--keys-file): function-level routes answer 401")
        settings = load_settings_file(args.settings) if args.settings else {}
        auth = load_auth_file(args.auth_file) if args.auth_file else None
        host = FunctionsHost(args.app_dir, settings, port=args.port, function_keys=function_keys,
                             master_key=master_key, static=dict(args.static), pool_size=args.pool_size,
                             drain_timeout=args.drain_timeout, auth=auth)
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
