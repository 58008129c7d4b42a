"""Peak memory of the replay plan's handling (issue 17 item 1: replay ≤ 256 MB whatever the archive).

A synthetic plan of one database with ``--tables`` tables (each with 2 indexes and 2 constraints, like a real
schema's primary key, a secondary index, a foreign key and a check) is written by inventory's code into a local
directory that stands in for the staging container; then, each in its own child process so that its peak RSS
(``ru_maxrss``) is its own:

- **baseline**: the child with the product's modules imported, nothing else;
- **inventory**: the plan written (``restore_core.plans.write_plan``; before it: ``put_json`` of the whole plan) and
  the synthetic archive (inventory runs in the Function, not in the replay job: shown for completeness);
- **replay**: ``restore_core.stages.replay._work`` with ``pg_restore`` left out: reads the plan, counts the rows of a
  synthetic custom archive of the same schema (``replay._archive_counts``, as while pg_restore runs: its TOC holds
  every object's definition) and writes the counts for verify;
- **verify**: ``restore_core.stages.verify._verify_database`` for every database of the plan against a fake target
  where every object exists (no PostgreSQL): reads the objects and the counts, compares.

It runs against whatever ``restore_core`` is on ``PYTHONPATH``, so the same command measures the code before this
change (a checkout of an older commit, which has no ``restore_core.plans``) and after it:

    PYTHONPATH=$PWD .venv/bin/python -m bench.plan_memory --tables 100000
    PYTHONPATH=/tmp/old:$PWD .venv/bin/python -m bench.plan_memory --tables 100000   # /tmp/old: git archive <old>
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

RID = "r" * 32


class DirArea:
    """The staging area port over a local directory (blob names with ``/`` become sub-directories)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _p(self, name: str) -> Path:
        return self.root / name

    def files(self, prefix: str) -> list[Any]:
        from restore_core.staging import StagedBlob

        out = []
        for p in sorted(self.root.rglob("*")):
            name = p.relative_to(self.root).as_posix()
            if p.is_file() and name.startswith(prefix):
                out.append(StagedBlob(name, p.stat().st_size))
        return out

    def read_range(self, name: str, start: int, length: int) -> bytes:
        with open(self._p(name), "rb") as f:
            f.seek(start)
            return f.read(length)

    def download_to(self, name: str, path: Path) -> int:
        path.write_bytes(self._p(name).read_bytes())
        return path.stat().st_size

    def chunks(self, name: str) -> Iterator[bytes]:
        with open(self._p(name), "rb") as f:
            while chunk := f.read(4 << 20):
                yield chunk

    def put_json(self, name: str, value: dict[str, Any]) -> None:
        self._p(name).parent.mkdir(parents=True, exist_ok=True)
        self._p(name).write_bytes(json.dumps(value, sort_keys=True).encode())

    def put_lines(self, name: str, lines: Iterable[bytes]) -> None:
        self._p(name).parent.mkdir(parents=True, exist_ok=True)
        with open(self._p(name), "wb") as f:
            for line in lines:
                f.write(line)

    def get_json(self, name: str) -> dict[str, Any] | None:
        if not self._p(name).exists():
            return None
        data: dict[str, Any] = json.loads(self._p(name).read_bytes())
        return data

    def delete(self, names: list[str]) -> int:
        for n in names:
            self._p(n).unlink(missing_ok=True)
        return len(names)


def database_entry(tables: int, target: str = "shop_r") -> dict[str, Any]:
    """A custom archive's database entry as inventory builds it (``archive.ArchiveToc.summary`` + names)."""
    names = [f"table_{i:07d}" for i in range(tables)]
    return {
        "file": f"{RID}_shop.sql", "size": 10 << 30, "format": "custom", "source": "shop", "target": target,
        "archive_version": "1.16", "server_version": "17.2", "dump_version": "17.2", "dbname": "shop",
        "compression": "gzip", "data_offsets": True,
        "counts": {"TABLE": tables, "INDEX": 2 * tables, "CONSTRAINT": tables, "FK CONSTRAINT": tables},
        "tables": [{"schema": "public", "name": n} for n in names],
        "indexes": [{"schema": "public", "name": f"{n}_{k}_idx", "table": n} for n in names for k in ("a", "b")],
        "constraints": [{"schema": "public", "name": f"{n}_{k}", "table": n} for n in names for k in ("pkey", "fkey")],
        "sequences": [], "views": [], "functions": [], "schemas": [{"schema": "", "name": "public"}],
        "extensions": [],
    }


def write_archive(path: Path, tables: int) -> None:
    """A pg_dump custom archive (format 1.16, uncompressed, written as to a pipe) of the same schema: per table its
    CREATE TABLE, 2 indexes, a primary and a foreign key (with their definitions) and ``i`` rows of data."""
    def i(v: int) -> bytes:
        return bytes([1 if v < 0 else 0]) + abs(v).to_bytes(4, "little")

    def s(v: str | None) -> bytes:
        if v is None:
            return i(-1)
        raw = v.encode()
        return i(len(raw)) + raw

    def entry(dump_id: int, desc: str, tag: str, defn: str, copy: str = "", data: bool = False) -> bytes:
        return b"".join([i(dump_id), i(1 if data else 0), s("0"), s("0"), s(tag), s(desc), i(2 if data else 1),
                         s(defn), s(""), s(copy), s("public"), s(None), s(None), i(0), s("app"), s("false"),
                         s(None), bytes([1 if data else 3]), (0).to_bytes(8, "little")])

    with open(path, "wb") as f:
        f.write(b"PGDMP" + bytes([1, 16, 0, 4, 8, 1, 0]) + b"".join(i(v) for v in (0, 0, 0, 1, 0, 125, 0)))
        f.write(s("shop") + s("17.2") + s("17.2") + i(tables * 6))
        for n in range(tables):
            t, base = f"table_{n:07d}", n * 6 + 1
            cols = "(id integer NOT NULL, ref integer, note text)"
            f.write(entry(base, "TABLE", t, f"CREATE TABLE public.{t} {cols};\n"))
            for k, col in (("a", "ref"), ("b", "note")):
                f.write(entry(base + (1 if k == "a" else 2), "INDEX", f"{t}_{k}_idx",
                              f"CREATE INDEX {t}_{k}_idx ON public.{t} USING btree ({col});\n"))
            f.write(entry(base + 3, "CONSTRAINT", f"{t} {t}_pkey",
                          f"ALTER TABLE ONLY public.{t}\n    ADD CONSTRAINT {t}_pkey PRIMARY KEY (id);\n"))
            f.write(entry(base + 4, "FK CONSTRAINT", f"{t} {t}_fkey", f"ALTER TABLE ONLY public.{t}\n    ADD "
                          f"CONSTRAINT {t}_fkey FOREIGN KEY (ref) REFERENCES public.{t}(id);\n"))
            f.write(entry(base + 5, "TABLE DATA", t, "", f"COPY public.{t} (id, ref, note) FROM stdin;\n", True))
        for n in range(tables):
            rows = b"".join(b"%d\t\\N\tx\n" % r for r in range(n % 50))
            f.write(bytes([1]) + i(n * 6 + 6) + (i(len(rows)) + rows if rows else b"") + i(0))


def _has_plans() -> bool:
    try:
        import restore_core.plans  # noqa: F401
    except ImportError:
        return False
    return True


def _write(area: DirArea, tables: int) -> None:
    entry = database_entry(tables)
    if _has_plans():
        from restore_core import plans

        plans.write_plan(area, RID, [entry], None, [])
    else:
        from restore_core.staging import plan_blob

        area.put_json(plan_blob(RID), {"restore_id": RID, "databases": [entry], "roles_file": None, "ignored": []})


def _replay(area: DirArea, tables: int) -> None:
    from restore_core.models import RolesMode
    from restore_core.stages import replay

    def load(ctx: Any, entry: dict[str, Any]) -> dict[str, Any]:  # no pg_restore: the archive's own row counts
        entry["archive_counts"] = replay._archive_counts(ctx, entry, area.root / "archive.dump")
        return {"source": entry["source"], "database": entry["target"], "done": "created"}

    replay._replay_database = load  # type: ignore[assignment]
    deps = SimpleNamespace(clock=lambda: datetime.now(UTC),
                           settings=SimpleNamespace(server=SimpleNamespace(verify_count_budget_mb=4096)))
    ctx = replay._Context(SimpleNamespace(id=RID), deps,  # type: ignore[arg-type]
                          SimpleNamespace(roles=RolesMode.SKIP, owner=None), SimpleNamespace(user="u", host="h"),
                          area, Path(tempfile.gettempdir()), __import__("threading").Event())
    replay._work(ctx)


class _Cursor:
    def execute(self, sql: str, args: Any = None) -> Any:
        if sql.startswith("SELECT count(*)"):
            n = int(sql.rsplit("_", 1)[1].strip('"')) % 50  # the rows the archive holds
            return SimpleNamespace(fetchone=lambda: (n,))
        return SimpleNamespace(fetchone=lambda: (1,))

    def rollback(self) -> None:
        pass


def _verify(area: DirArea) -> dict[str, Any]:
    from restore_core.stages import verify

    @contextlib.contextmanager
    def connect(*a: Any, **kw: Any) -> Iterator[_Cursor]:
        yield _Cursor()

    verify.pgtarget.connect = connect  # type: ignore[assignment]
    if _has_plans():
        from restore_core import plans

        plan = plans.read_plan(area, RID)
        assert plan is not None
        results = [verify._verify_database(None, plan, n) for n in range(len(plan.databases))]  # type: ignore[arg-type]
    else:
        from restore_core.staging import plan_blob

        old = area.get_json(plan_blob(RID))
        assert old is not None
        results = [verify._verify_database(None, e) for e in old["databases"]]  # type: ignore[arg-type,call-arg]
    return {k: results[0][k] for k in ("tables", "objects_checked", "missing_total", "mismatches_total",
                                       "compared_with_archive")}


def _child(phase: str, root: Path, tables: int) -> None:
    from restore_core.stages import replay, verify  # noqa: F401 - the baseline imports what the phases import

    area = DirArea(root)
    out: dict[str, Any] = {}
    if phase == "inventory":
        _write(area, tables)
        write_archive(root / "archive.dump", tables)
    elif phase == "replay":
        _replay(area, tables)
    elif phase == "verify":
        out = _verify(area)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(out))


def _run(phase: str, root: Path, tables: int) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "bench.plan_memory", "--child", phase, "--root", str(root),
                           "--tables", str(tables)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{phase} failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure(tables: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="plan-mem-") as tmp:
        root = Path(tmp)
        out: dict[str, Any] = {"tables": tables, "layout": "split" if _has_plans() else "single blob"}
        for phase in ("baseline", "inventory", "replay", "verify"):
            out[phase] = _run(phase, root, tables)
        plan = [p for p in root.rglob("*") if p.is_file() and p.name != "archive.dump"]
        out["plan_mb"] = round(sum(p.stat().st_size for p in plan) / 1e6, 1)
        out["archive_mb"] = round((root / "archive.dump").stat().st_size / 1e6, 1)
        out["blobs"] = sorted(p.relative_to(root).as_posix() for p in plan)
        return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--tables", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--child")
    ap.add_argument("--root")
    args = ap.parse_args(argv)
    if args.child:
        _child(args.child, Path(args.root), args.tables[0])
        return
    for n in args.tables:
        print(json.dumps(measure(n)), flush=True)


if __name__ == "__main__":
    main()
