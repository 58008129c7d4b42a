"""CLI: ``python -m localdev.dpemu --world W.yaml --clusters C.json --state-dir DIR --port 0 --token-file FILE
--ready-file READY.json [--time-scale 3600]`` (env ``AZURE_STORAGE_CONNECTION_STRING`` = Azurite).

The admin/caller token is read from ``--token-file`` (keep it 0600): a token on the command line is readable by
every local user (``ps``, /proc). ``--token T`` remains for fixed test tokens only.

Start-up: TLS material in DIR (``ca.pem``), load world + clusters, seed databases and take the declared backups,
listen, then write READY.json atomically. SIGTERM/SIGINT stop it gracefully.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import sys
from pathlib import Path

import trustme
import uvicorn

from .control import Controls
from .dataplane import DataPlane, load_clusters
from .engine import Engine
from .server import Server
from .timeutil import SimClock
from .world import WorldError, load_world

log = logging.getLogger("dpemu")


def write_tls(state_dir: Path, ca_cert: Path | None = None, ca_key: Path | None = None) -> tuple[Path, Path, Path]:
    """The server certificate for 127.0.0.1, issued by the given CA (the stack's local CA, shared with the
    PostgreSQL clusters) or by a new one; ``ca.pem`` in ``state_dir`` is the bundle clients verify with."""
    if ca_cert is not None and ca_key is not None:
        try:
            ca = trustme.CA.from_pem(ca_cert.read_bytes(), ca_key.read_bytes())
        except (OSError, ValueError) as exc:
            raise StartError(f"--ca-cert/--ca-key: cannot load the CA ({exc})") from None
    else:
        ca = trustme.CA(organization_name="dpemu local CA")
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    ca_pem, cert, key = state_dir / "ca.pem", state_dir / "server.pem", state_dir / "server.key"
    ca.cert_pem.write_to_path(str(ca_pem))
    leaf.private_key_and_cert_chain_pem.write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    os.chmod(key, 0o600)
    return ca_pem, cert, key


def _args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m localdev.dpemu", description=__doc__)
    ap.add_argument("--world", required=True, type=Path)
    ap.add_argument("--clusters", required=True, type=Path)
    ap.add_argument("--state-dir", required=True, type=Path)
    ap.add_argument("--port", type=int, default=0)
    token = ap.add_mutually_exclusive_group(required=True)
    token.add_argument("--token-file", type=Path, help="file holding the token (not on the command line)")
    token.add_argument("--token", help="a fixed test token (visible in ps: never a real secret)")
    ap.add_argument("--ready-file", required=True, type=Path)
    ap.add_argument("--entra-token-file", type=Path,
                    help="file holding the Entra token the emulated Key Vault accepts (default: the main token)")
    ap.add_argument("--ca-cert", type=Path, help="PEM of a CA to issue the server certificate with (with --ca-key)")
    ap.add_argument("--ca-key", type=Path, help="the CA's private key (keep it 0600)")
    ap.add_argument("--time-scale", type=float, default=3600.0)
    ap.add_argument("--log-level", default="INFO")
    return ap.parse_args(argv)


class StartError(Exception):
    """A start-up problem the user must fix (exit status 2); the message says which."""


def _token(args: argparse.Namespace) -> str:
    if args.token_file is None:
        return str(args.token)
    return _read_token(args.token_file, "--token-file")


def _read_token(path: Path, option: str) -> str:
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise StartError(f"{option} {path}: {exc.strerror}") from None
    if not token:
        raise StartError(f"{option} {path} is empty")
    return token


def _storage() -> str:
    conn = os.environ.get("AZURE_STORAGE_CONNECTION_STRING")
    if not conn:
        raise StartError("AZURE_STORAGE_CONNECTION_STRING must point at Azurite")
    return conn


def _engine(args: argparse.Namespace, conn: str, clock: SimClock) -> Engine:
    """Load the world and the clusters it names; the engine is not seeded yet."""
    try:
        world = load_world(args.world, clock.now())
    except WorldError as exc:
        raise StartError(f"world file {args.world}: {exc}") from None
    clusters = load_clusters(args.clusters)
    missing = [c for c in world.clusters if c not in clusters]
    if missing:
        raise StartError(f"clusters file {args.clusters} lacks clusters {missing} named in the world file")
    data = DataPlane(clusters, conn, world.settings.datastore_container, args.state_dir / "work")
    return Engine(world, clock, data)


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    try:
        args.token = _token(args)
        logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s %(message)s")
        conn = _storage()
        if args.time_scale <= 0:
            raise StartError("--time-scale must be > 0")
        args.state_dir.mkdir(parents=True, exist_ok=True)
        if (args.ca_cert is None) != (args.ca_key is None):
            raise StartError("give --ca-cert and --ca-key together (or neither)")
        ca_pem, cert, key = write_tls(args.state_dir, args.ca_cert, args.ca_key)
        args.entra_token = _read_token(args.entra_token_file, "--entra-token-file") if args.entra_token_file else None
        engine = _engine(args, conn, SimClock(args.time_scale))
    except StartError as exc:
        print(exc, file=sys.stderr)
        return 2
    _serve(args, engine, Controls(args.token), ca_pem, cert, key)
    return 0


def _serve(args: argparse.Namespace, engine: Engine, controls: Controls, ca_pem: Path, cert: Path,
           key: Path) -> None:
    """Seed, listen, announce READY.json, serve until SIGTERM/SIGINT."""
    # SIGTERM/SIGINT exit 0: during seeding directly; during serve() uvicorn captures them, shuts down gracefully
    # and then re-raises them to this handler
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(0))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    port = sock.getsockname()[1]
    base = f"https://127.0.0.1:{port}"
    log.info("seeding world %s", args.world)
    engine.seed()
    app = Server(engine, controls, base, args.entra_token)
    config = uvicorn.Config(app, ssl_certfile=str(cert), ssl_keyfile=str(key), log_level="warning",
                            lifespan="off", access_log=False, timeout_graceful_shutdown=3)
    server = uvicorn.Server(config)

    async def announce() -> None:
        while not server.started:
            if server.should_exit:
                return
            await asyncio.sleep(0.02)
        ready = {"endpoint": base, "ca_bundle": str(ca_pem.resolve()), "admin_url": f"{base}/admin",
                 "keyvault_endpoint": base + "/keyvault/{vault}", "pid": os.getpid()}
        tmp = args.ready_file.with_suffix(args.ready_file.suffix + ".tmp")
        tmp.write_text(json.dumps(ready))
        tmp.replace(args.ready_file)
        log.info("ready on %s", base)

    async def run() -> None:
        task = asyncio.create_task(announce())
        await server.serve(sockets=[sock])
        task.cancel()

    asyncio.run(run())
    log.info("stopped")


if __name__ == "__main__":
    sys.exit(main())
