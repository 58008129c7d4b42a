"""Helpers shared by the stages: the parsed request, ARM references and the restore plan of a record."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from ..arm_ids import BackupInstanceRef, VaultRef, parse_backup_instance_id, parse_vault_id
from ..deps import Deps
from ..dp_client import VaultInfo
from ..models import RestoreRequest
from ..records import RestoreRecord, iso, parse_time
from ..restore_requests import RestorePlan

VAULT_CACHE_TTL = timedelta(minutes=30)


def request_of(rec: RestoreRecord) -> RestoreRequest:
    return RestoreRequest.model_validate(rec.request)


def bi_ref(rec: RestoreRecord) -> BackupInstanceRef:
    assert rec.backup_instance_id, "backup instance is resolved by the validate stage"
    return parse_backup_instance_id(rec.backup_instance_id)


def vault_ref(rec: RestoreRecord) -> VaultRef:
    assert rec.vault_id
    return parse_vault_id(rec.vault_id)


def vault_info(rec: RestoreRecord) -> VaultInfo:
    return VaultInfo.from_dict(rec.vault_info)


def plan_of(rec: RestoreRecord, request: RestoreRequest | None = None) -> RestorePlan:
    req = request or request_of(rec)
    assert rec.recovery_point_id and rec.datasource_type and rec.restore_location
    source_store = "ArchiveStore" if rec.tier == "archive" else "VaultStore"
    return RestorePlan(backup_instance_id=bi_ref(rec).id, source_datasource_id=rec.source_datasource_id,
                       datasource_type=rec.datasource_type, recovery_point_id=rec.recovery_point_id,
                       source_store=source_store, restore_location=rec.restore_location, target=req.target)


def cached_vault(deps: Deps, vault: VaultRef) -> VaultInfo:
    """Vault facts change rarely; cache them briefly in the state table to spare ARM reads."""
    now = deps.clock()
    memo = deps.memo.get("vault", vault.id.lower())
    if isinstance(memo, VaultInfo):
        return memo
    row = deps.store.get_meta("vault", vault.id.lower())
    if row is not None:
        fetched = parse_time(row.get("fetched_at"))
        if fetched is not None and now - fetched < VAULT_CACHE_TTL:
            cached = VaultInfo.from_dict({k: row.get(k) for k in
                                          ("id", "location", "principal_id", "redundancy", "crr_enabled",
                                           "secondary_region")})
            deps.memo.put("vault", vault.id.lower(), cached)
            return cached
    info = deps.dp.get_vault(vault)
    deps.memo.put("vault", vault.id.lower(), info)
    values: dict[str, Any] = {k: v for k, v in info.to_dict().items() if v is not None}
    values["fetched_at"] = iso(now)
    deps.store.put_meta("vault", vault.id.lower(), values)
    return info


def backoff(deps: Deps, polls: int) -> float:
    """Growing, capped re-check interval: min * 2^polls, capped at max."""
    s = deps.settings
    return float(min(s.poll_max_seconds, s.poll_min_seconds * (2 ** min(polls, 20))))
