"""Helpers shared by the stages: the parsed request, ARM references and the restore plan of a record."""

from __future__ import annotations

import json
from dataclasses import fields
from datetime import timedelta
from typing import Any

from ..arm_ids import BackupInstanceRef, VaultRef, parse_backup_instance_id, parse_vault_id
from ..backup import VaultInfo
from ..deps import Deps
from ..errors import require
from ..models import DatabaseTarget, FilesTarget, RestoreRequest, ServerTarget, Tier
from ..records import RestoreRecord, iso, parse_time
from ..restore_requests import RestorePlan

VAULT_CACHE_TTL = timedelta(minutes=30)


def request_of(rec: RestoreRecord) -> RestoreRequest:
    return RestoreRequest.model_validate(rec.request)


def bi_ref(rec: RestoreRecord) -> BackupInstanceRef:
    return parse_backup_instance_id(require(rec.backup_instance_id, "the validate stage resolved the backup instance"))


def vault_ref(rec: RestoreRecord) -> VaultRef:
    return parse_vault_id(require(rec.vault_id, "the validate stage resolved the vault"))


def vault_info(rec: RestoreRecord) -> VaultInfo:
    return VaultInfo.from_dict(rec.vault_info)


def vault_target(rec: RestoreRecord, req: RestoreRequest) -> DatabaseTarget | FilesTarget:
    """What the vault restores into: the request's target, or for a server target the staging container of the
    restore's region with the restore id as file prefix (recorded on the row by validate)."""
    if not isinstance(req.target, ServerTarget):
        return req.target
    staging = require(rec.staging or None, "the validate stage chose the staging container")
    return FilesTarget(kind="files", container_url=staging["container_url"], container_id=staging.get("container_id"),
                       file_prefix=rec.id)


def plan_of(rec: RestoreRecord, request: RestoreRequest | None = None) -> RestorePlan:
    req = request or request_of(rec)
    source_store = "ArchiveStore" if rec.tier == Tier.ARCHIVE else "VaultStore"
    return RestorePlan(backup_instance_id=bi_ref(rec).id, source_datasource_id=rec.source_datasource_id,
                       datasource_type=require(rec.datasource_type, "the validate stage resolved the datasource type"),
                       recovery_point_id=require(rec.recovery_point_id, "the validate stage chose the point"),
                       source_store=source_store,
                       restore_location=require(rec.restore_location, "the validate stage chose the region"),
                       target=vault_target(rec, req), identity_id=rec.identity_id)


def cached_vault(deps: Deps, vault: VaultRef) -> VaultInfo:
    """Vault facts change rarely; cache them briefly in the state table to spare ARM reads. Restores of one vault
    starting together in a process read it once: the others wait for that read (single-flight; other processes may
    still each read it once)."""
    memo = deps.memo.get("vault", vault.id.lower())
    if isinstance(memo, VaultInfo):
        return memo
    with deps.memo.lock("vault", vault.id.lower()):
        return _vault_facts(deps, vault)


def _vault_facts(deps: Deps, vault: VaultRef) -> VaultInfo:
    now = deps.clock()
    memo = deps.memo.get("vault", vault.id.lower())
    if isinstance(memo, VaultInfo):  # read by the restore this one waited for
        return memo
    row = deps.store.get_meta("vault", vault.id.lower())
    if row is not None:
        fetched = parse_time(row.get("fetched_at"))
        if fetched is not None and now - fetched < VAULT_CACHE_TTL:
            cached = _vault_of_row(row)
            deps.memo.put("vault", vault.id.lower(), cached)
            return cached
    info = deps.dp.get_vault(vault)
    deps.memo.put("vault", vault.id.lower(), info)
    values = _vault_row(info)
    values["fetched_at"] = iso(now)
    deps.store.put_meta("vault", vault.id.lower(), values)
    return info


def _vault_row(info: VaultInfo) -> dict[str, Any]:
    """Table properties are scalars: nested values (the user-assigned identities) are stored as JSON text."""
    return {k: json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else v
            for k, v in info.to_dict().items() if v is not None}


def _vault_of_row(row: dict[str, Any]) -> VaultInfo:
    names = {f.name for f in fields(VaultInfo)}
    values = {k: v for k, v in row.items() if k in names}
    if isinstance(values.get("user_identities"), str):
        values["user_identities"] = json.loads(values["user_identities"])
    return VaultInfo.from_dict(values)


def restore_identity(vault: VaultInfo, instance_identity: str | None) -> str | None:
    """The user-assigned identity a restore must name in ``identityDetails`` (None: the system-assigned one, which
    Azure uses when identityDetails is absent). The backup instance's own identity wins; a vault with no
    system-assigned identity and exactly one user-assigned identity restores with that one."""
    if instance_identity:
        known = vault.user_identity(instance_identity)
        return known[0] if known else instance_identity
    if not vault.principal_id and len(vault.user_identities) == 1:
        return next(iter(vault.user_identities))
    return None


def identity_principal(vault: VaultInfo, identity_id: str | None) -> str | None:
    """Principal id of the identity a restore acts as (for ``az role assignment create``)."""
    if identity_id is None:
        return vault.principal_id
    known = vault.user_identity(identity_id)
    if known and known[1]:
        return known[1]
    return f"$(az identity show --ids {identity_id} --query principalId -o tsv)"


def identity_label(identity_id: str | None) -> str | None:
    """How messages name a user-assigned identity (None: the vault's system-assigned managed identity)."""
    return f"user-assigned identity {identity_id.rstrip('/').rsplit('/', 1)[-1]}" if identity_id else None


def backoff(deps: Deps, polls: int) -> float:
    """Growing, capped re-check interval: min * 2^polls, capped at max."""
    s = deps.settings
    return float(min(s.poll_max_seconds, s.poll_min_seconds * (2 ** min(polls, 20))))
