"""The replay plan's layout (issue 17 item 1: the replay job's memory bounded whatever the number of objects):
inventory writes a small index plus one object list per database; the replay reads the index only and writes each
database's archive row counts to their own blob (never rewriting the plan); verify walks the lists a bounded read at
a time; a plan in the old single-blob layout (restores in flight when the service is updated) is still read; every
plan blob of a restore is deleted by the clean-ups, and no other restore's.

The staging area is an in-memory fake that records every read, so the tests can say how much of the plan a stage
held at once."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from restore_core import plans
from restore_core.drills import cleanup
from restore_core.models import ServerTarget, parse_request
from restore_core.pgtarget import TargetConn
from restore_core.stages import replay, verify
from restore_core.staging import StagedBlob, plan_blob

from .fakes import BI_ID, Harness, settings

RID = "a" * 32
OTHER = "b" * 32
FLEX = "/subscriptions/s2/resourceGroups/rg-target/providers/Microsoft.DBforPostgreSQL/flexibleServers/pgflex-target"


class MemoryArea:
    """The staging area port in memory; ``reads`` records (name, bytes) of every read, whole-blob reads included."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.reads: list[tuple[str, int]] = []
        self.writes: list[str] = []
        self.deleted: list[str] = []

    def files(self, prefix: str) -> list[StagedBlob]:
        return [StagedBlob(n, len(b)) for n, b in sorted(self.blobs.items()) if n.startswith(prefix)]

    def read_range(self, name: str, start: int, length: int) -> bytes:
        data = self.blobs[name][start:start + length]
        self.reads.append((name, len(data)))
        return data

    def download_to(self, name: str, path: Path) -> int:
        raise AssertionError("the plan is never downloaded")

    def chunks(self, name: str) -> Iterator[bytes]:
        raise AssertionError("the plan is never streamed whole")

    def put_json(self, name: str, value: dict[str, Any]) -> None:
        self.writes.append(name)
        self.blobs[name] = json.dumps(value, sort_keys=True).encode()

    def put_lines(self, name: str, lines: Iterable[bytes]) -> None:
        self.writes.append(name)
        self.blobs[name] = b"".join(lines)

    def get_json(self, name: str) -> dict[str, Any] | None:
        if name not in self.blobs:
            return None
        self.reads.append((name, len(self.blobs[name])))
        data: dict[str, Any] = json.loads(self.blobs[name])
        return data

    def delete(self, names: list[str]) -> int:
        for n in names:
            self.deleted.append(n)
            self.blobs.pop(n, None)
        return len(names)

    def largest_read(self) -> int:
        return max((n for _, n in self.reads), default=0)


def entry(tables: int, target: str = "shop_r", source: str = "shop", fmt: str = "custom") -> dict[str, Any]:
    """A database entry as inventory builds it (``ArchiveToc.summary`` + file and names), 2 indexes and 2
    constraints per table."""
    names = [f"t{i:06d}" for i in range(tables)]
    return {"file": f"{RID}_{source}.sql", "size": 1000, "format": fmt, "source": source, "target": target,
            "data_offsets": True, "counts": {"TABLE": tables, "INDEX": 2 * tables},
            "tables": [{"schema": "public", "name": n} for n in names],
            "indexes": [{"schema": "public", "name": f"{n}_{k}", "table": n} for n in names for k in ("a", "b")],
            "constraints": [{"schema": "public", "name": f"{n}_{k}", "table": n} for n in names for k in ("pk", "fk")],
            "sequences": [], "views": [], "functions": [{"schema": "public", "name": "f", "signature": "f(integer)"}]}


def counts_of(tables: int, off_by_one: str = "") -> dict[str, Any]:
    rows = {f"public.t{i:06d}": i for i in range(tables)}
    if off_by_one:
        rows[off_by_one] += 1
    return {"complete": True, "bytes_read": 10, "rows": rows, "skipped": {}}


# ---------------------------------------------------------------- layout


def test_inventory_writes_a_small_index_and_one_object_list_per_database() -> None:
    area = MemoryArea()
    plans.write_plan(area, RID, [entry(3000), entry(2, "crm_r", "crm")], "roles.sql", [])
    index = json.loads(area.blobs[plan_blob(RID)])
    assert index["layout"] == 2 and index["roles_file"] == "roles.sql"
    assert [d["target"] for d in index["databases"]] == ["shop_r", "crm_r"]
    assert not any(k in d for d in index["databases"] for k in plans.KINDS)  # no object list in the index
    assert len(area.blobs[plan_blob(RID)]) < 2000
    assert area.writes[-1] == plan_blob(RID)  # the index last: a plan whose index exists is whole
    lines = area.blobs[plans.objects_blob(RID, 0)].splitlines()
    assert len(lines) == 3000 * 5 + 1
    assert json.loads(lines[0]) == ["tables", "public", "t000000"]
    assert ["indexes", "public", "t000000_a", "t000000"] in [json.loads(x) for x in lines[:9001]]
    assert json.loads(lines[-1]) == ["functions", "public", "f", "f(integer)"]


def test_lines_are_read_a_bounded_piece_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plans, "READ_BYTES", 1000)
    area = MemoryArea()
    plans.write_plan(area, RID, [entry(2000)], None, [])
    plan = plans.read_plan(area, RID)
    assert plan is not None
    got = list(plan.objects(0))
    assert len(got) == 2000 * 5 + 1 and got[1] == ["tables", "public", "t000001"]  # lines cut across reads, whole
    assert max(n for name, n in area.reads if name != plan_blob(RID)) <= 1000


# ---------------------------------------------------------------- replay


def _replay_ctx(area: MemoryArea, tmp_path: Path) -> Any:
    t = parse_request({"backup_instance": {"id": BI_ID}, "target": {"kind": "server", "server_id": FLEX}}).target
    assert isinstance(t, ServerTarget)
    h = Harness(settings=settings())
    rec = SimpleNamespace(id=RID)
    return replay._Context(rec, h.deps, t, TargetConn("h", 5432, "restore-service", "x"),  # type: ignore[arg-type]
                           area, tmp_path, threading.Event())


def _fake_load(tables: dict[str, int], seen: list[dict[str, Any]]) -> Any:
    def load(ctx: Any, e: dict[str, Any]) -> dict[str, Any]:
        seen.append(dict(e))
        if e["format"] == "plain":
            e["archive_counts"] = replay._plain_counts(e)
        else:
            e["archive_counts"] = counts_of(tables[e["target"]])
        return {"source": e["source"], "database": e["target"], "done": "created"}
    return load


def test_the_replay_reads_the_index_only_and_writes_counts_to_their_own_blob(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    area = MemoryArea()
    plans.write_plan(area, RID, [entry(20000), entry(5, "crm_r", "crm")], None, [])
    index_size = len(area.blobs[plan_blob(RID)])
    area.reads.clear()
    area.writes.clear()
    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(replay, "_replay_database", _fake_load({"shop_r": 20000, "crm_r": 5}, seen))
    replay._work(_replay_ctx(area, tmp_path))
    # the object lists (20 000 tables: megabytes) are never read; what was read is the index, a few KB
    assert sum(n for _, n in area.reads) == index_size < 4000
    assert [e["target"] for e in seen] == ["shop_r", "crm_r"] and not any("tables" in e for e in seen)
    assert plan_blob(RID) not in area.writes  # never rewritten
    assert area.writes == [plans.counts_blob(RID, 0), plans.counts_blob(RID, 1)]
    first, *rest = area.blobs[plans.counts_blob(RID, 1)].splitlines()
    assert json.loads(first) == {"complete": True, "bytes_read": 10}
    assert [json.loads(x) for x in rest] == [["rows", f"public.t{i:06d}", i] for i in range(5)]


def test_a_plain_dumps_copy_counts_come_from_its_object_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    area = MemoryArea()
    plain = {**entry(2, fmt="plain"), "complete_summary": True,
             "copy_rows": [{"schema": "public", "name": "t000001", "rows": 7},
                           {"schema": "public", "name": "t000000", "rows": 3}]}
    plans.write_plan(area, RID, [plain], None, [])
    monkeypatch.setattr(replay, "_replay_database", _fake_load({}, []))
    replay._work(_replay_ctx(area, tmp_path))
    lines = [json.loads(x) for x in area.blobs[plans.counts_blob(RID, 0)].splitlines()]
    assert lines == [{"complete": True, "bytes_read": 0}, ["rows", "public.t000000", 3], ["rows", "public.t000001", 7]]


def test_a_plan_without_its_objects_blob_fails_the_replay_with_the_fix(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    area = MemoryArea()
    plans.write_plan(area, RID, [{**entry(2, fmt="plain"), "copy_rows": []}], None, [])
    del area.blobs[plans.objects_blob(RID, 0)]
    monkeypatch.setattr(replay, "_replay_database", _fake_load({}, []))
    with pytest.raises(replay._Fail, match="a part of the replay plan is gone") as failed:
        replay._work(_replay_ctx(area, tmp_path))
    assert failed.value.code == "ReplayPlanMissing"


# ---------------------------------------------------------------- verify


class _Cursor:
    """A target where every object exists except ``missing``; table ``t<i>`` holds ``i`` rows (``+1`` for
    ``more``)."""

    def __init__(self, missing: set[str], more: str = "") -> None:
        self.missing, self.more = missing, more

    def execute(self, sql: str, args: Any = None) -> Any:
        if sql.startswith("SELECT count(*)"):
            name = sql.rsplit(".", 1)[1].strip('"')
            return SimpleNamespace(fetchone=lambda: (int(name[1:]) + (name == self.more),))
        gone = args is not None and f"{args[0]}.{args[1]}" in self.missing
        return SimpleNamespace(fetchone=lambda: None if gone else (1,))

    def rollback(self) -> None:
        pass


def _fake_target(monkeypatch: pytest.MonkeyPatch, cursor: _Cursor) -> None:
    @contextlib.contextmanager
    def connect(*a: Any, **kw: Any) -> Iterator[_Cursor]:
        yield cursor

    monkeypatch.setattr(verify.pgtarget, "connect", connect)


def _verify_all(area: MemoryArea) -> list[dict[str, Any]]:
    plan = plans.read_plan(area, RID)
    assert plan is not None
    conn = TargetConn("h", 5432, "u", "x")
    return [verify._verify_database(conn, plan, n) for n in range(len(plan.databases))]


def test_verify_walks_the_lists_a_bounded_read_at_a_time_and_finds_what_differs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    area = MemoryArea()
    plans.write_plan(area, RID, [entry(30000), entry(3, "crm_r", "crm")], None, [])
    plan = plans.read_plan(area, RID)
    assert plan is not None
    plan.put_counts(0, counts_of(30000, off_by_one="public.t000123"))
    plan.put_counts(1, counts_of(3))
    area.reads.clear()
    _fake_target(monkeypatch, _Cursor({"public.t000007", "public.t000008_pk"}, more="t000200"))
    shop, crm = _verify_all(area)
    # the lists are megabytes; no read held more than READ_BYTES of them (the old layout read the whole plan)
    assert sum(n for _, n in area.reads) > 4 * plans.READ_BYTES
    assert area.largest_read() <= plans.READ_BYTES
    assert shop["missing"] == ["table public.t000007", "constraint public.t000008_pk"] and shop["missing_total"] == 2
    assert shop["count_mismatches"] == ["public.t000123: 123 rows in the target, 124 in the archive",
                                        "public.t000200: 201 rows in the target, 200 in the archive"]
    assert (shop["tables"], shop["objects_checked"], shop["compared_with_archive"]) == (29999, 150001, 30000)
    assert shop["archive_counts_complete"] is True and "row_counts" not in shop
    assert crm["row_counts"] == {"public.t000000": 0, "public.t000001": 1, "public.t000002": 2}
    assert crm["missing_total"] == 0 and crm["mismatches_total"] == 0


def test_verify_names_at_most_twenty_of_each_list_and_counts_them_all(monkeypatch: pytest.MonkeyPatch) -> None:
    area = MemoryArea()
    plans.write_plan(area, RID, [entry(500)], None, [])
    plan = plans.read_plan(area, RID)
    assert plan is not None
    plan.put_counts(0, {"complete": False, "rows": {f"public.t{i:06d}": i + 1 for i in range(500)}})
    _fake_target(monkeypatch, _Cursor({f"public.t{i:06d}_a" for i in range(100)}))
    (shop,) = _verify_all(area)
    assert (shop["missing_total"], len(shop["missing"])) == (100, verify.SHOWN)
    assert (shop["mismatches_total"], len(shop["count_mismatches"])) == (500, verify.SHOWN)
    assert shop["archive_counts_complete"] is False


# ---------------------------------------------------------------- the old layout (restores in flight)


def _old_plan(area: MemoryArea, with_counts: bool) -> None:
    shop, crm = entry(50), {**entry(3, "crm_r", "crm", "plain"), "complete_summary": True,
                            "copy_rows": [{"schema": "public", "name": "t000002", "rows": 9}]}
    if with_counts:  # replayed by the old code: the counts were written back into the plan
        shop["archive_counts"] = counts_of(50, off_by_one="public.t000010")
        crm["archive_counts"] = {"complete": True, "rows": {"public.t000002": 9}}
    area.put_json(plan_blob(RID), {"restore_id": RID, "databases": [shop, crm], "roles_file": None, "ignored": []})


def test_an_old_single_blob_plan_replayed_by_the_old_code_is_verified(monkeypatch: pytest.MonkeyPatch) -> None:
    area = MemoryArea()
    _old_plan(area, with_counts=True)
    _fake_target(monkeypatch, _Cursor({"public.t000003_a"}))
    shop, crm = _verify_all(area)
    assert shop["missing"] == ["index public.t000003_a"] and shop["objects_checked"] == 251
    assert shop["count_mismatches"] == ["public.t000010: 10 rows in the target, 11 in the archive"]
    assert shop["compared_with_archive"] == 50 and shop["archive_counts_complete"] is True
    assert crm["count_mismatches"] == ["public.t000002: 2 rows in the target, 9 in the archive"]


def test_an_old_single_blob_plan_is_replayed_and_verified_by_the_new_code(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    area = MemoryArea()
    _old_plan(area, with_counts=False)
    before = area.blobs[plan_blob(RID)]
    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(replay, "_replay_database", _fake_load({"shop_r": 50}, seen))
    replay._work(_replay_ctx(area, tmp_path))
    assert area.blobs[plan_blob(RID)] == before  # not rewritten: the counts have their own blobs
    assert sorted(area.blobs) == sorted([plan_blob(RID), plans.counts_blob(RID, 0), plans.counts_blob(RID, 1)])
    _fake_target(monkeypatch, _Cursor(set(), more="t000004"))
    shop, crm = _verify_all(area)
    assert shop["count_mismatches"] == ["public.t000004: 5 rows in the target, 4 in the archive"]
    assert shop["objects_checked"] == 251 and shop["compared_with_archive"] == 50
    assert crm["count_mismatches"] == ["public.t000002: 2 rows in the target, 9 in the archive"]


# ---------------------------------------------------------------- clean-up


def _two_restores(area: MemoryArea) -> None:
    plans.write_plan(area, RID, [entry(2), entry(2, "crm_r", "crm")], None, [])
    plan = plans.read_plan(area, RID)
    assert plan is not None
    plan.put_counts(0, counts_of(2))
    plans.write_plan(area, OTHER, [entry(2)], None, [])
    area.blobs[f"{RID}_shop.sql"] = b"PGDMP"
    area.blobs[f"{OTHER}_shop.sql"] = b"PGDMP"


def test_verify_clean_up_deletes_every_plan_blob_of_the_restore_and_nothing_else() -> None:
    area = MemoryArea()
    _two_restores(area)
    deps = SimpleNamespace(server_access=lambda: SimpleNamespace(staging=lambda region: area))
    rec = SimpleNamespace(id=RID, staging={"region": "westeurope"})
    assert verify._clean_up(rec, deps) == 5  # type: ignore[arg-type]
    assert sorted(area.blobs) == sorted([f"{OTHER}_shop.sql", plan_blob(OTHER), plans.objects_blob(OTHER, 0)])


def test_the_drill_clean_up_deletes_every_plan_blob_of_the_restore_and_nothing_else() -> None:
    area = MemoryArea()
    _two_restores(area)
    deps = SimpleNamespace(server_access=lambda: SimpleNamespace(staging=lambda region: area))
    assert cleanup.delete_staged(deps, RID, "westeurope") == 5  # type: ignore[arg-type]
    assert not any(n.startswith((RID, f"_plans/{RID}")) for n in area.blobs)
    assert plans.objects_blob(OTHER, 0) in area.blobs


def test_a_new_plan_replayed_by_an_old_replay_image_is_verified_with_the_counts_it_wrote_back(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Deploy skew: the Function (inventory) updated first, the replay job's image still the old code, which wrote
    the counts back into the index's database entries."""
    area = MemoryArea()
    plans.write_plan(area, RID, [entry(20)], None, [])
    index = json.loads(area.blobs[plan_blob(RID)])
    index["databases"][0]["archive_counts"] = counts_of(20, off_by_one="public.t000003")
    area.put_json(plan_blob(RID), index)
    _fake_target(monkeypatch, _Cursor(set()))
    (shop,) = _verify_all(area)
    assert shop["count_mismatches"] == ["public.t000003: 3 rows in the target, 4 in the archive"]
    assert shop["compared_with_archive"] == 20 and shop["objects_checked"] == 101
