"""The replay plan in the staging container, laid out so that the replay job (replay and verify) holds one bounded
piece of it at a time, whatever the number of objects in the archives (issue 17 item 1: peak memory ≤ 256 MB).

Layout 2 (written by inventory since this module exists), per restore ``<id>``, every blob under ``_plans/`` (the
app's ABAC condition allows its writes only there; the lifecycle rule covers the whole container):

- ``_plans/<id>.json``, the **index**: ``{"layout": 2, "restore_id", "roles_file", "ignored", "databases": [...]}``,
  per database its file, size, format, source, target, versions, data offsets, counts by kind; no object lists;
- ``_plans/<id>.<n>.objects.jsonl``, database ``n``'s **objects**, one JSON array per line, ``[kind, schema, name]``
  (``[kind, schema, name, extra]`` when an index or constraint names its table or a routine its signature), sorted
  by kind, then by ``schema.name``; a plain dump's COPY row counts as ``["copy_rows", schema, name, rows]``;
- ``_plans/<id>.<n>.counts.jsonl``, written by the replay: the **archive's own row counts** of database ``n``: a
  first line ``{"complete", "bytes_read"}``, then ``["rows", "schema.name", n]`` sorted by ``schema.name``, then
  ``["skipped", "schema.name", why]``.

Every list is read line by line in :data:`READ_BYTES` pieces (:func:`read_lines`) and written through
:meth:`restore_core.staging.StagingArea.put_lines`; verify compares the target with the archive by walking the
sorted table lines and the sorted count lines side by side (:class:`ArchiveRows`).

Layout 1 (before): ``_plans/<id>.json`` alone, the object lists inside each database entry, the replay's
``archive_counts`` written back into it. Restores in flight when the service is updated still have one: it is read
whole as before (:func:`read_plan` tells them apart by the missing ``layout``); the replay no longer rewrites it but
writes the counts blob, and verify takes the counts blob when there is one, else the entry's ``archive_counts``.
Clean-up deletes every blob named ``_plans/<id>.*`` (:func:`plan_blob_names`), whichever the layout.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .staging import StagingArea, plan_blob

LAYOUT = 2
READ_BYTES = 1 << 20  # one read of a list blob; with the longest line, what a reader holds of it
KINDS = ("tables", "indexes", "constraints", "sequences", "views", "functions", "schemas", "extensions")
_LISTS = (*KINDS, "copy_rows")


class PlanMissing(Exception):
    """A blob of the plan is gone from the staging container."""


def plan_prefix(restore_id: str) -> str:
    return f"_plans/{restore_id}."


def objects_blob(restore_id: str, n: int) -> str:
    return f"{plan_prefix(restore_id)}{n}.objects.jsonl"


def counts_blob(restore_id: str, n: int) -> str:
    return f"{plan_prefix(restore_id)}{n}.counts.jsonl"


def plan_blob_names(area: StagingArea, restore_id: str) -> list[str]:
    """Every plan blob of the restore, whichever the layout (the index is named even when it is gone)."""
    prefix = plan_prefix(restore_id)
    names = {b.name for b in area.files(prefix) if b.name.startswith(prefix)}
    return sorted(names | {plan_blob(restore_id)})


def _line(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def _key(obj: Mapping[str, Any]) -> str:
    return f"{obj['schema']}.{obj['name']}"


def object_lines(entry: Mapping[str, Any]) -> Iterator[bytes]:
    """A database entry's object lists (as :meth:`restore_core.archive.ArchiveToc.summary` gives them) as lines."""
    for kind in KINDS:
        for obj in sorted(entry.get(kind) or [], key=_key):
            extra = obj.get("table") or obj.get("signature")
            yield _line([kind, obj["schema"], obj["name"], *([extra] if extra else [])])
    for r in sorted(entry.get("copy_rows") or [], key=_key):
        yield _line(["copy_rows", r["schema"], r["name"], int(r["rows"])])


def write_plan(area: StagingArea, restore_id: str, databases: list[dict[str, Any]], roles_file: str | None,
               ignored: list[dict[str, str]]) -> None:
    """Inventory: each database's objects to its own blob, then the index (the index last: a plan whose index is
    there is whole)."""
    index = []
    for n, d in enumerate(databases):
        area.put_lines(objects_blob(restore_id, n), object_lines(d))
        index.append({k: v for k, v in d.items() if k not in _LISTS})
    area.put_json(plan_blob(restore_id), {"layout": LAYOUT, "restore_id": restore_id, "databases": index,
                                          "roles_file": roles_file, "ignored": ignored})


def read_lines(area: StagingArea, name: str) -> Iterator[Any]:
    """The JSON lines of a plan blob, read :data:`READ_BYTES` at a time; :class:`PlanMissing` when it is gone."""
    found = [b for b in area.files(name) if b.name == name]
    if not found:
        raise PlanMissing(name)
    size, pos, rest = found[0].size, 0, b""
    while pos < size:
        data = area.read_range(name, pos, min(READ_BYTES, size - pos))
        if not data:
            raise PlanMissing(f"{name} ended after {pos} of {size} bytes")
        pos += len(data)
        *lines, rest = (rest + data).split(b"\n")
        for line in lines:
            if line.strip():
                yield json.loads(line)
    if rest.strip():
        yield json.loads(rest)


@dataclass
class Plan:
    """A restore's plan as the replay job reads it: the index (small) and, per database ``n``, its lists on
    demand."""

    area: StagingArea
    restore_id: str
    index: dict[str, Any]

    @property
    def layout(self) -> int:
        return int(self.index.get("layout", 1))

    @property
    def databases(self) -> list[dict[str, Any]]:
        dbs: list[dict[str, Any]] = self.index["databases"]
        return dbs

    @property
    def roles_file(self) -> str | None:
        return self.index.get("roles_file")

    def objects(self, n: int) -> Iterator[list[Any]]:
        """Database ``n``'s object lines (``[kind, schema, name, ...]``), kinds in :data:`KINDS` order."""
        if self.layout == 1:
            yield from (json.loads(line) for line in object_lines(self.databases[n]) if not line.startswith(
                b'["copy_rows"'))
            return
        yield from (o for o in read_lines(self.area, objects_blob(self.restore_id, n)) if o[0] != "copy_rows")

    def copy_rows(self, n: int) -> Iterator[tuple[str, int]]:
        """A plain dump's COPY row counts, ``("schema.name", rows)`` sorted by name."""
        if self.layout == 1:
            for r in sorted(self.databases[n].get("copy_rows") or [], key=_key):
                yield _key(r), int(r["rows"])
            return
        for o in read_lines(self.area, objects_blob(self.restore_id, n)):
            if o[0] == "copy_rows":
                yield f"{o[1]}.{o[2]}", int(o[3])

    def put_counts(self, n: int, counts: Mapping[str, Any]) -> None:
        """The replay: database ``n``'s archive row counts (``{"complete", "bytes_read", "rows", "skipped"}``) to
        their own blob; the index is never rewritten."""
        rows: Mapping[str, int] = counts.get("rows") or {}
        skipped: Mapping[str, str] = counts.get("skipped") or {}

        def lines() -> Iterator[bytes]:
            yield _line({"complete": bool(counts.get("complete")), "bytes_read": int(counts.get("bytes_read") or 0)})
            for name in sorted(rows):
                yield _line(["rows", name, int(rows[name])])
            for name in sorted(skipped):
                yield _line(["skipped", name, skipped[name]])

        self.area.put_lines(counts_blob(self.restore_id, n), lines())

    def archive_rows(self, n: int) -> ArchiveRows:
        """Verify: database ``n``'s archive row counts, walked in name order."""
        try:
            return ArchiveRows.of_lines(read_lines(self.area, counts_blob(self.restore_id, n)))
        except PlanMissing:  # replayed by the code before this layout: the counts were written into the plan itself
            old = self.databases[n].get("archive_counts") or {}
            rows = old.get("rows") or {}
            return ArchiveRows(iter(sorted(rows.items())), bool(old.get("complete")))


class ArchiveRows:
    """An archive's row counts in ascending ``schema.name`` order, looked up in that order (:meth:`get`); what was
    passed over is still counted (:attr:`seen` after :meth:`finish`)."""

    def __init__(self, rows: Iterator[tuple[str, int]], complete: bool) -> None:
        self._rows, self.complete, self.seen = rows, complete, 0
        self._head: tuple[str, int] | None = None
        self._ended = False

    @classmethod
    def of_lines(cls, lines: Iterator[Any]) -> ArchiveRows:
        first = next(lines, None)
        header = first if isinstance(first, dict) else {}

        def rows() -> Iterator[tuple[str, int]]:
            for line in lines:
                if line[0] == "rows":
                    yield str(line[1]), int(line[2])

        return cls(rows(), bool(header.get("complete")))

    def _advance(self) -> None:
        self._head = next(self._rows, None)
        if self._head is None:
            self._ended = True
        else:
            self.seen += 1

    def get(self, name: str) -> int | None:
        """The count of ``name``; names must be asked in ascending order."""
        if self._head is None and not self._ended:
            self._advance()
        while self._head is not None and self._head[0] < name:
            self._advance()
        return self._head[1] if self._head is not None and self._head[0] == name else None

    def finish(self) -> int:
        """Walk the rest (for :attr:`seen`, the number of tables the archive gave counts for)."""
        while not self._ended:
            self._advance()
        return self.seen


def read_plan(area: StagingArea, restore_id: str) -> Plan | None:
    index = area.get_json(plan_blob(restore_id))
    return None if index is None else Plan(area, restore_id, index)
