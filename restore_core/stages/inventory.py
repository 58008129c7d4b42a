"""Stage inventory (restore into a server).

Consumes: a restore whose vault files job completed into its staging container (message on ``restore-inventory``).
Does: lists the restore's own staged blobs (``<id>.*``, ``<id>_*``); classifies each by CONTENT, not by name (Azure
names custom archives ``.sql``): roles, tablespaces, schema (not replayed: each archive holds its own schema),
database; detects each database file's real format (``PGDMP`` = custom archive, else plain SQL); reads each
archive's table of contents from a prefix of the blob (no PostgreSQL binaries here) and refuses an archive newer than
the replay client (``RESTORE_REPLAY_CLIENT_VERSION``) can read; maps source databases to target names and checks the
named ones exist in the point and the new names are free on the target.
Writes: the replay plan in the staging container (:mod:`restore_core.plans`: the index ``_plans/<id>.json``, per
database its file, format, versions, data offsets and object counts; the object lists one blob per database,
``_plans/<id>.<n>.objects.jsonl``) and its summary on the row (``server_plan``).
Next: replay (Container Apps job), or ``failed`` with the reason and fix (staged files are kept for diagnosis).
"""

from __future__ import annotations

from typing import Any

from .. import archive, pgtarget, plans
from ..deps import Deps
from ..errors import AzureRejection, require
from ..models import ServerTarget
from ..records import RestoreRecord
from ..staging import StagedBlob, StagingArea, owned_by
from ..transitions import Outcome, StageResult
from . import Claim, server_checks
from .common import request_of

HEAD_BYTES = 64 * 1024
TOC_FIRST_READ = 1024 * 1024
TOC_MAX_READ = 512 * 1024 * 1024
PLAIN_MAX_READ = 64 * 1024 * 1024


class _Stop(Exception):
    def __init__(self, code: str, message: str, fix: str) -> None:
        super().__init__(message)
        self.result = StageResult(Outcome.FAILED, f"{code}: {message}", error_code=code, error_message=message,
                                  error_fix=fix)


def _read_toc(area: StagingArea, blob: StagedBlob) -> archive.ArchiveToc:
    """The archive's TOC from a growing prefix of the blob (1 MiB first; TOCs of thousands of objects need more)."""
    length = min(TOC_FIRST_READ, blob.size)
    while True:
        data = area.read_range(blob.name, 0, length)
        try:
            return archive.read_toc_prefix(data)
        except archive.ArchiveVersionUnknown as exc:
            raise _Stop("ArchiveTooNew", f"{blob.name}: {exc}", "update the service (restore_core.archive) and the "
                        "replay image's PostgreSQL client; the staged files are kept") from None
        except archive.ArchiveUnreadable as exc:
            raise _Stop("ArchiveUnreadable", f"{blob.name}: {exc}", "restore this file by hand with a pg_restore "
                        "that reads it; the staged files are kept") from None
        except archive.ArchiveTooShort as short:
            if length >= blob.size or length >= TOC_MAX_READ:
                raise _Stop("ArchiveUnreadable", f"{blob.name}: {short}", "the staged file is truncated or its "
                            "table of contents is larger than 512 MiB; restore it by hand with pg_restore") from None
            length = min(blob.size, TOC_MAX_READ, short.suggested_total)


def _source_name(blob: StagedBlob, rec: RestoreRecord, toc_dbname: str | None) -> str:
    if toc_dbname:
        return toc_dbname
    stem = blob.name[len(rec.id):].lstrip("_.")
    for ext in (".sql", ".dump"):
        stem = stem.removesuffix(ext)
    single = server_checks.single_server_database(rec.datasource_type or "", rec.source_datasource_id or "")
    return single if single and stem in ("", "dump", "database") else stem


def _database_entry(area: StagingArea, blob: StagedBlob, head: bytes, rec: RestoreRecord, client: int) \
        -> dict[str, Any]:
    fmt = archive.sniff(head)
    if fmt == archive.FileFormat.CUSTOM:
        toc = _read_toc(area, blob)
        try:
            archive.check_client(toc.header.version, client)
        except archive.ArchiveTooNew as exc:
            raise _Stop("ArchiveTooNew", f"{blob.name}: {exc}", "rebuild the replay image with a newer PostgreSQL "
                        f"client (postgresql-client-{exc.needed_major} or newer) and set "
                        f"RESTORE_REPLAY_CLIENT_VERSION={exc.needed_major}; then submit the restore again") from None
        summary = toc.summary()
        return {"file": blob.name, "size": blob.size, "format": "custom",
                "source": _source_name(blob, rec, toc.header.dbname), **summary}
    text = area.read_range(blob.name, 0, min(blob.size, PLAIN_MAX_READ)).decode("utf-8", "replace")
    plain = archive.plain_sql_objects(text)
    return {"file": blob.name, "size": blob.size, "format": "plain", "source": _source_name(blob, rec, None),
            "complete_summary": blob.size <= PLAIN_MAX_READ, **plain.summary()}


def _classify_all(area: StagingArea, blobs: list[StagedBlob], rec: RestoreRecord, client: int) \
        -> tuple[list[dict[str, Any]], str | None, list[dict[str, str]]]:
    databases: list[dict[str, Any]] = []
    roles: str | None = None
    ignored: list[dict[str, str]] = []
    for blob in blobs:
        head = area.read_range(blob.name, 0, min(HEAD_BYTES, blob.size)) if blob.size else b""
        if blob.size > HEAD_BYTES and archive.sniff(head) == archive.FileFormat.PLAIN:
            # pg_dumpall's roles and schema files start alike; only the whole file (its closing line) tells
            head = area.read_range(blob.name, 0, min(blob.size, PLAIN_MAX_READ))
        kind = archive.classify(blob.name, head)
        if kind == archive.FileKind.DATABASE:
            databases.append(_database_entry(area, blob, head, rec, client))
        elif kind == archive.FileKind.ROLES and roles is None:
            roles = blob.name
        else:
            why = {archive.FileKind.SCHEMA: "schema of every database; each archive holds its own, so it is not "
                                            "replayed",
                   archive.FileKind.TABLESPACES: "tablespaces cannot be created on a Flexible Server",
                   archive.FileKind.ROLES: "a second roles file"}.get(kind, "not a PostgreSQL dump")
            ignored.append({"file": blob.name, "kind": kind.value, "why": why})
    return databases, roles, ignored


def _map_names(t: ServerTarget, databases: list[dict[str, Any]], deps: Deps) -> list[dict[str, Any]]:
    available = [d["source"] for d in databases]
    user = server_checks.user_databases(available)
    names = server_checks.name_plan(t, available if t.databases else user, deps.settings.server.database_suffix)
    missing = [s for s in names if s not in available]
    if missing:
        raise _Stop("SourceDatabaseNotInPoint",
                    f"the recovery point holds the databases {', '.join(sorted(available)) or '(none)'}; "
                    f"{', '.join(missing)} is not among them",
                    "set target.databases[].source to one of those databases (or leave target.databases out to "
                    "restore them all), then submit again")
    chosen = [{**d, "target": names[d["source"]]} for d in databases if d["source"] in names]
    if not chosen:
        raise _Stop("NoDatabasesStaged", "the staged files hold no database dump",
                    "check the vault's recovery point; the staged files are kept for diagnosis")
    return chosen


def _check_names_free(t: ServerTarget, chosen: list[dict[str, Any]], deps: Deps, restore_id: str) -> None:
    """Default names are known only now: check them on the target before the replay (never drop anything)."""
    try:
        facts = pgtarget.facts(deps.server_access().target_conn(t))
    except AzureRejection as exc:
        raise _Stop(exc.code, exc.message, exc.fix or "see the message") from None
    taken = server_checks.taken_names(facts, {d["source"]: d["target"] for d in chosen}, restore_id)
    if taken:
        raise _Stop("TargetDatabaseExists", f"database {', '.join(taken)} already exists on {t.server_name}; "
                    "restores never overwrite or drop an existing database",
                    "submit again with other names (target.databases[].target or target.suffix)")


def _summary(chosen: list[dict[str, Any]], roles: str | None, ignored: list[dict[str, str]],
             base: dict[str, Any]) -> dict[str, Any]:
    dbs = [{"source": d["source"], "target": d["target"], "format": d["format"], "file": d["file"],
            "size": d["size"], "counts": d.get("counts", {}), "archive_version": d.get("archive_version"),
            "server_version": d.get("server_version"), "data_offsets": d.get("data_offsets")} for d in chosen]
    return {**base, "databases": dbs, "roles_file": roles, "ignored": ignored,
            "names": {d["source"]: d["target"] for d in chosen}}


def run(rec: RestoreRecord, deps: Deps, claim: Claim) -> StageResult:
    req = request_of(rec)
    t = req.target
    assert isinstance(t, ServerTarget)
    staging = require(rec.staging or None, "validate chose the staging container")
    area = deps.server_access().staging(staging["region"])
    blobs = sorted((b for b in area.files(rec.id) if owned_by(b.name, rec.id)), key=lambda b: b.name)
    try:
        if not blobs:
            raise _Stop("StagedFilesMissing", f"the vault's job completed but no file named {rec.id}* is in "
                        f"{staging['container_url']}", "check the vault job's details in Azure and submit again")
        databases, roles, ignored = _classify_all(area, blobs, rec, deps.settings.server.replay_client_version)
        chosen = _map_names(t, databases, deps)
        if not rec.server_plan.get("names_final"):
            _check_names_free(t, chosen, deps, rec.id)
    except _Stop as stop:
        stop.result.changes = {"staging": {**staging, "kept": True}}
        return stop.result
    plans.write_plan(area, rec.id, chosen, roles, ignored)
    summary = _summary(chosen, roles, ignored, rec.server_plan)
    listing = ", ".join(f"{d['source']} → {d['target']} ({d['format']}, {sum(d.get('counts', {}).values())} "
                        "objects)" for d in chosen)
    return StageResult(Outcome.PLANNED, f"inventory: {len(blobs)} staged file(s); replay plan: {listing}"
                       + (f"; roles from {roles}" if roles else ""), changes={"server_plan": summary})
