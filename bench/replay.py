"""Replay scenario (issue 17 item 1): the product's replay path against plain ``pg_restore`` of the same archive.

A generated database (``--mb`` of data: a large table of ~80% of it, a few smaller ones, indexes, a foreign key, a
view) is dumped twice: ``pg_dump -Fc -f`` (seekable, data offsets) and ``pg_dump -Fc | cat`` (a stream: no data
offsets). Each archive is then restored, several rounds, alternating the order:

- **product**: the replay stage's own code (``restore_core.stages.replay._replay_database``: download from the
  staging area to the job's disk, CREATE DATABASE + mark, ``pg_restore --no-owner`` with the product's arguments,
  output diagnosis, the archive's own row counts for verify) in a child process, so its peak memory is its own;
  the staging area is a local directory (the download is a local copy: Azure Blob download speed is not measured);
- **reference**: ``pg_restore -j N --no-owner`` of the seekable archive from local disk (N = ``RESTORE_REPLAY_JOBS``),
  and a plain single-threaded ``pg_restore`` of the stream, into a fresh database;
- **product, piped** (``RESTORE_REPLAY_DISK_BUDGET_MB=0``, the budget smaller than the archive): the stream archive
  streamed from the staging area into ``pg_restore``'s stdin in 4 MiB chunks (the SDK's chunk size), row counts teed
  from the same bytes, no temporary disk; against **reference, piped**: ``cat archive | pg_restore`` (single-threaded).

Reported: time per step (download, prepare, pg_restore — the stream included when piped —, archive row counts), the
ratio product / reference (goals: ≤ 1.2× seekable, ≤ 1.1× stream), the product process's peak RSS and pg_restore's
(goal: replay ≤ 256 MB), the temporary disk the replay used (the archive's size when downloaded, 0 when piped), and
whether the row counts of the piped replay equal those read from the downloaded file.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bench.common import RESULTS, md_table, percentile, verdict, write_result
from localdev.pgcluster import PgCluster

GOAL_SEEKABLE, GOAL_STREAM, GOAL_RSS_MB = 1.2, 1.1, 256
KINDS = ("piped", "seekable", "stream")  # piped: the stream archive fed to pg_restore's stdin (budget < archive)


# ------------------------------------------------------------------------------------------------ data
def _seed_sql(mb: int) -> str:
    """About ``mb`` MB of table data: ``big`` holds ~80% of it (rows of ~120 bytes), three small tables the rest."""
    big_rows = int(mb * 0.8 * 1024 * 1024 / 120)
    small_rows = max(1000, int(mb * 0.2 * 1024 * 1024 / 80 / 3))
    return f"""
CREATE TABLE customers(id int PRIMARY KEY, name text NOT NULL, region text NOT NULL);
INSERT INTO customers SELECT g, 'customer ' || g, 'r' || (g % 17) FROM generate_series(1, {small_rows}) g;
CREATE TABLE products(id int PRIMARY KEY, sku text UNIQUE NOT NULL, price numeric(10,2));
INSERT INTO products SELECT g, 'sku-' || g, (g % 1000) / 7.0 FROM generate_series(1, {small_rows}) g;
CREATE TABLE notes(id bigserial PRIMARY KEY, body text);
INSERT INTO notes(body) SELECT md5(g::text) || md5((g * 7)::text) FROM generate_series(1, {small_rows}) g;
CREATE TABLE big(id bigint PRIMARY KEY, customer_id int REFERENCES customers(id), product_id int, qty int,
                 at timestamptz, payload text);
INSERT INTO big SELECT g, 1 + g % {small_rows}, 1 + g % {small_rows}, g % 50,
                       timestamptz '2026-01-01' + (g || ' seconds')::interval, md5(g::text) || md5((g + 1)::text)
                  FROM generate_series(1, {big_rows}) g;
CREATE INDEX big_customer ON big(customer_id);
CREATE INDEX big_at ON big(at);
CREATE VIEW totals AS SELECT customer_id, sum(qty) AS qty FROM big GROUP BY 1;
"""  # noqa: S608 - only numbers computed above go into it


def _psql(pg: PgCluster, db: str, sql: str) -> None:
    subprocess.run([str(pg.bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", pg.dsn(db), "-c", sql],
                   check=True, capture_output=True)


def _prepare(src: PgCluster, work: Path, mb: int) -> dict[str, Path]:
    _psql(src, "postgres", "CREATE DATABASE benchdb")
    t0 = time.monotonic()
    _psql(src, "benchdb", _seed_sql(mb))
    seed_s = time.monotonic() - t0
    seekable, stream = work / "benchdb.seekable.dump", work / "benchdb.stream.dump"
    subprocess.run([str(src.bindir / "pg_dump"), "-Fc", "-d", src.dsn("benchdb"), "-f", str(seekable)], check=True)
    with open(stream, "wb") as out:  # through a pipe: pg_dump cannot seek back, so no data offsets
        dump = subprocess.Popen([str(src.bindir / "pg_dump"), "-Fc", "-d", src.dsn("benchdb")],
                                stdout=subprocess.PIPE)
        cat = subprocess.Popen(["cat"], stdin=dump.stdout, stdout=out)
        assert dump.stdout is not None
        dump.stdout.close()
        cat.wait()
        dump.wait()
    print(f"[replay] seeded {mb} MB in {seed_s:.0f}s; archives {seekable.stat().st_size >> 20} MB (seekable), "
          f"{stream.stat().st_size >> 20} MB (stream)", flush=True)
    return {"seekable": seekable, "stream": stream}


# ------------------------------------------------------------------------------------------------ product (child)
class _DirArea:
    """The staging area port over a local directory (the bench's stand-in for the staging container)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def download_to(self, name: str, path: Path) -> int:
        shutil.copyfile(self.root / name, path)
        return path.stat().st_size

    def chunks(self, name: str) -> Any:
        with open(self.root / name, "rb") as f:
            while chunk := f.read(4 << 20):
                yield chunk


def _child(args: argparse.Namespace) -> None:
    """One product replay of ``args.archive`` into ``args.db`` on the target; prints a JSON line of step times."""
    from restore_core import archive, config
    from restore_core.models import parse_request
    from restore_core.pgtarget import TargetConn
    from restore_core.stages import replay

    settings = config.load_settings({"RestoreStorage": "UseDevelopmentStorage=true",
                                     "RESTORE_PG_BINDIR": args.bindir, "RESTORE_REPLAY_JOBS": str(args.jobs),
                                     "RESTORE_REPLAY_DISK_BUDGET_MB": str(args.budget_mb)})
    steps: dict[str, float] = {}

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*a: Any, **kw: Any) -> Any:
            t0 = time.monotonic()
            try:
                return fn(*a, **kw)
            finally:
                steps[name] = steps.get(name, 0.0) + time.monotonic() - t0
        return wrapper

    area = _DirArea(Path(args.archive).parent)
    area.download_to = timed("download", area.download_to)  # type: ignore[method-assign]
    replay._prepare_database = timed("prepare", replay._prepare_database)
    replay._run_tool = timed("pg_restore", replay._run_tool)
    replay._archive_counts = timed("archive_counts", replay._archive_counts)
    sub = "00000000-0000-0000-0000-000000000001"
    target = parse_request({"backup_instance": {"id": f"/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft."
                                                      "DataProtection/backupVaults/bv/backupInstances/bench"},
                            "target": {"kind": "server", "server_id": f"/subscriptions/{sub}/resourceGroups/rg/"
                                       "providers/Microsoft.DBforPostgreSQL/flexibleServers/bench-target"}}).target
    host, port = args.target.rsplit(":", 1)
    conn = TargetConn(host, int(port), "postgres", "", sslmode="disable", via="secret")
    deps = SimpleNamespace(settings=settings, clock=None)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        ctx = replay._Context(SimpleNamespace(id=args.db), deps, target, conn, area, Path(tmp),  # type: ignore[arg-type]
                              threading.Event())
        toc = archive.read_toc(args.archive)
        entry = {"format": "custom", "file": Path(args.archive).name, "size": Path(args.archive).stat().st_size,
                 "source": "benchdb", "target": args.db, "data_offsets": toc.data_offsets}
        t0 = time.monotonic()
        result = replay._replay_database(ctx, entry)
        total = time.monotonic() - t0
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"total_s": total, "steps": steps, "rss_mb": own, "child_rss_mb": kids, "load": result["load"],
                      "disk_mb": entry["size"] / 1024 / 1024 if result["load"] == "download" else 0.0,
                      "warnings": result["warnings"], "counted_tables": result["tables_counted"],
                      "counts_complete": result["archive_counts_complete"], "rows": entry["archive_counts"]["rows"]
                      }), flush=True)


def _product(target: PgCluster, archive_path: Path, db: str, jobs: int, workdir: Path,
             budget_mb: int = 1 << 20) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "bench.replay", "--child", "--archive", str(archive_path), "--db", db,
                          "--target", f"{target.host}:{target.port}", "--bindir", str(target.bindir), "--jobs",
                          str(jobs), "--workdir", str(workdir), "--budget-mb", str(budget_mb)],
                         capture_output=True, text=True, check=False, env={**os.environ, "PGPASSWORD": ""})
    if out.returncode != 0:
        raise RuntimeError(f"product replay failed: {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _reference(target: PgCluster, archive_path: Path, db: str, jobs: int, piped: bool = False) -> dict[str, Any]:
    _psql(target, "postgres", f'CREATE DATABASE "{db}"')
    args = [str(target.bindir / "pg_restore"), "--no-owner", "-d", target.dsn(db)]
    if jobs > 1:
        args.append(f"--jobs={jobs}")
    t0 = time.monotonic()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if piped:  # through a real pipe (a regular file on stdin is seekable: pg_restore would not read it as a stream)
        cat = subprocess.Popen(["cat", str(archive_path)], stdout=subprocess.PIPE)
        subprocess.run(args, check=True, capture_output=True, stdin=cat.stdout)
        assert cat.stdout is not None
        cat.stdout.close()
        if cat.wait() != 0:
            raise RuntimeError(f"cat {archive_path} failed")
    else:
        subprocess.run([*args, str(archive_path)], check=True, capture_output=True)
    return {"total_s": time.monotonic() - t0,
            "child_rss_mb": max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024}


def _drop(target: PgCluster, db: str) -> None:
    _psql(target, "postgres", f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


# ------------------------------------------------------------------------------------------------ scenario
def _round(target: PgCluster, archives: dict[str, Path], jobs: int, i: int, work: Path,
           runs: dict[str, list[dict[str, Any]]]) -> None:
    order = [(who, kind) for kind in KINDS for who in ("product", "reference")]
    if i % 2:
        order.reverse()
    for who, kind in order:
        db = f"r{i}_{who}_{kind}"
        archive_path = archives["seekable" if kind == "seekable" else "stream"]
        if who == "product":
            res = _product(target, archive_path, db, jobs, work, budget_mb=0 if kind == "piped" else 1 << 20)
        else:
            res = _reference(target, archive_path, db, jobs if kind == "seekable" else 1, piped=kind == "piped")
        runs[f"{who}-{kind}"].append(res)
        steps = json.dumps({k: round(v, 1) for k, v in res.get("steps", {}).items()})
        extra = (f" rss {res['rss_mb']:.0f} MB, pg_restore rss {res['child_rss_mb']:.0f} MB, disk "
                 f"{res['disk_mb']:.0f} MB, load {res['load']}, steps {steps}" if who == "product" else "")
        print(f"[replay] round {i + 1} {who:<9} {kind:<8} {res['total_s']:.1f}s{extra}", flush=True)
        _drop(target, db)


def _summary(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    med = {k: percentile([r["total_s"] for r in v], 50) for k, v in runs.items()}
    out: dict[str, Any] = {"median_s": med}
    out["ratio_seekable"] = med["product-seekable"] / med["reference-seekable"]
    out["ratio_stream"] = med["product-stream"] / med["reference-stream"]
    out["ratio_piped"] = med["product-piped"] / med["reference-piped"]
    steps: dict[str, dict[str, float]] = {}
    for kind in KINDS:
        product = runs[f"product-{kind}"]
        names = sorted({n for r in product for n in r["steps"]})
        steps[kind] = {n: percentile([r["steps"].get(n, 0.0) for r in product], 50) for n in names}
    out["steps_median_s"] = steps
    product_all = [r for kind in KINDS for r in runs[f"product-{kind}"]]
    out["replay_rss_mb_max"] = max(r["rss_mb"] for r in product_all)
    out["replay_rss_mb_by_kind"] = {kind: max(r["rss_mb"] for r in runs[f"product-{kind}"]) for kind in KINDS}
    out["pg_restore_rss_mb_max"] = max(r["child_rss_mb"] for r in product_all)
    out["disk_mb"] = max(r["disk_mb"] for r in product_all)
    out["disk_mb_by_kind"] = {kind: max(r["disk_mb"] for r in runs[f"product-{kind}"]) for kind in KINDS}
    out["piped_counts_equal_file_counts"] = all(r["rows"] == runs["product-stream"][0]["rows"]
                                                for r in runs["product-piped"])
    out["pass_seekable"] = out["ratio_seekable"] <= GOAL_SEEKABLE
    out["pass_stream"] = out["ratio_stream"] <= GOAL_STREAM
    out["pass_piped"] = out["ratio_piped"] <= GOAL_STREAM
    out["pass_rss"] = out["replay_rss_mb_max"] <= GOAL_RSS_MB
    return out


def _table(mb: int, jobs: int, s: dict[str, Any]) -> str:
    m = s["median_s"]
    rows = [
        ["seekable archive (data offsets)", f"{m['product-seekable']:.1f} s",
         f"{m['reference-seekable']:.1f} s (pg_restore -j {jobs})", f"{s['ratio_seekable']:.2f}×",
         f"≤ {GOAL_SEEKABLE}×", verdict(s["pass_seekable"])],
        ["stream (no data offsets)", f"{m['product-stream']:.1f} s", f"{m['reference-stream']:.1f} s (pg_restore)",
         f"{s['ratio_stream']:.2f}×", f"≤ {GOAL_STREAM}×", verdict(s["pass_stream"])],
        ["stream piped into pg_restore (disk budget 0)", f"{m['product-piped']:.1f} s",
         f"{m['reference-piped']:.1f} s (cat | pg_restore)", f"{s['ratio_piped']:.2f}×", f"≤ {GOAL_STREAM}×",
         verdict(s["pass_piped"])],
        ["replay process peak RSS", f"{s['replay_rss_mb_max']:.0f} MB", "", "", f"≤ {GOAL_RSS_MB} MB",
         verdict(s["pass_rss"])],
    ]
    steps = [[kind, *(f"{name} {secs:.1f} s" for name, secs in v.items())]
             for kind, v in s["steps_median_s"].items()]
    return (f"Replay of a {mb} MB database, median of the rounds\n\n"
            + md_table(["case", "product", "reference", "ratio", "goal", "verdict"], rows)
            + "\n\nProduct steps (median)\n\n" + "\n".join("- " + ": ".join([r[0], ", ".join(r[1:])]) for r in steps)
            + f"\n\nreplay peak RSS by case (MB): {s['replay_rss_mb_by_kind']}; pg_restore peak RSS "
              f"{s['pg_restore_rss_mb_max']:.0f} MB; temporary disk by case (MB): {s['disk_mb_by_kind']}; piped row "
              f"counts equal the downloaded file's: {s['piped_counts_equal_file_counts']}\n")


def run(*, mb: int = 1024, rounds: int = 3, jobs: int = 2, workdir: Path | None = None,
        results: Path = RESULTS, name: str = "replay") -> dict[str, Any]:
    base = Path(workdir or tempfile.mkdtemp(prefix="bench-replay-"))
    base.mkdir(parents=True, exist_ok=True)
    src, target = PgCluster("bench-src", base / "pg"), PgCluster("bench-target", base / "pg")
    try:
        src.start()
        target.start()
        archives = _prepare(src, base, mb)
        src.stop()
        runs: dict[str, list[dict[str, Any]]] = {f"{who}-{kind}": [] for kind in KINDS
                                                 for who in ("product", "reference")}
        for i in range(rounds):
            _round(target, archives, jobs, i, base, runs)
        summary = _summary(runs)
        data = {"mb": mb, "rounds": rounds, "jobs": jobs,
                "archive_mb": {k: round(p.stat().st_size / 1024 / 1024, 1) for k, p in archives.items()},
                "runs": runs, **summary}
        write_result(name, data, _table(mb, jobs, summary), results=results)
        return data
    finally:
        src.stop()
        target.stop()
        if workdir is None:
            shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.replay", description=__doc__.splitlines()[0])
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--archive")
    p.add_argument("--db")
    p.add_argument("--target")
    p.add_argument("--bindir")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--workdir")
    p.add_argument("--budget-mb", type=int, default=1 << 20, help=argparse.SUPPRESS)
    p.add_argument("--mb", type=int, default=1024)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args(argv)
    if a.child:
        _child(a)
        return 0
    run(mb=a.mb, rounds=a.rounds, jobs=a.jobs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
