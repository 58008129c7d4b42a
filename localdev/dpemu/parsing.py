"""Request parsing: restore bodies, ``$filter`` and ``$skipToken`` (malformed input is a synchronous 400).

Consumes: JSON bodies and query values as sent. Produces: :class:`ParsedRestore`, filter bounds, page tokens, or a
:class:`BadRequest` naming the field to fix. Property names and ``objectType`` values match case-insensitively.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from .model import BadRequest, ParsedRestore
from .timeutil import parse_time

RESTORE_TYPES = {"azurebackuprecoverypointbasedrestorerequest": "AzureBackupRecoveryPointBasedRestoreRequest",
                 "azurebackuprestorewithrehydrationrequest": "AzureBackupRestoreWithRehydrationRequest"}


def lookup(d: dict[str, Any], *keys: str) -> Any:
    """Case-insensitive key lookup (the service seems to accept dataSourceInfo/datasourceInfo alike)."""
    lower = {k.lower(): v for k, v in d.items()} if isinstance(d, dict) else {}
    for k in keys:
        if k.lower() in lower:
            return lower[k.lower()]
    return None


def as_object(d: Any, where: str) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise BadRequest("UserErrorInvalidRequestParameter", f"{where}: expected a JSON object")
    return d


def required_str(d: dict[str, Any], key: str, where: str) -> str:
    v = lookup(d, key)
    if not isinstance(v, str) or not v.strip():
        raise BadRequest("UserErrorInvalidRequestParameter", f"{where}.{key}: required string is missing or empty")
    return v.strip()


def encode_token(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_token(token: str) -> dict[str, Any]:
    try:
        pad = "=" * (-len(token) % 4)
        out = json.loads(base64.urlsafe_b64decode(token + pad))
        if not isinstance(out, dict):
            raise ValueError
        return out
    except (ValueError, TypeError) as exc:
        raise BadRequest("InvalidSkipToken", "$skipToken is not one this service issued; restart the listing "
                                             "without $skipToken") from exc


_FILTER = re.compile(r"(startDate|endDate)\s+eq\s+'([^']+)'", re.IGNORECASE)


def parse_rp_filter(text: str | None) -> tuple[datetime | None, datetime | None]:
    if not text:
        return None, None
    found = _FILTER.findall(text)
    rest = _FILTER.sub("", text)
    if not found or re.sub(r"\band\b", "", rest, flags=re.IGNORECASE).strip():
        raise BadRequest("UserErrorInvalidFilter", f"$filter '{text}' is not supported; use \"startDate eq "
                                                   "'2026-01-01T00:00:00.0000000Z' and endDate eq '...'\"")
    start = end = None
    for key, value in found:
        try:
            t = parse_time(value)
        except ValueError as exc:
            raise BadRequest("UserErrorInvalidFilter", f"$filter: '{value}' is not an ISO-8601 timestamp") from exc
        if key.lower() == "startdate":
            start = t
        else:
            end = t
    return start, end


def parse_restore(body: Any, where: str = "body") -> ParsedRestore:
    """A restore request (``where`` names it in messages): its kind, source, point, target and identity."""
    req = as_object(body, where)
    otype = _restore_type(req, where)
    store = _source_store(req, where)
    rp_id = required_str(req, "recoveryPointId", where)
    tgt = as_object(lookup(req, "restoreTargetInfo"), f"{where}.restoreTargetInfo")
    ttype = required_str(tgt, "objectType", f"{where}.restoreTargetInfo")
    option = required_str(tgt, "recoveryOption", f"{where}.restoreTargetInfo")
    if option.lower() != "failifexists":
        raise BadRequest("UserErrorInvalidRequestParameter",
                         f"{where}.restoreTargetInfo.recoveryOption '{option}' is not supported; use FailIfExists")
    loc = str(lookup(tgt, "restoreLocation") or "").lower().replace(" ", "")
    p = ParsedRestore(otype, store, rp_id, loc, "database")
    ident = lookup(req, "identityDetails")
    if ident is not None:
        p.identity_details = as_object(ident, f"{where}.identityDetails")
    if otype == "AzureBackupRestoreWithRehydrationRequest":
        p.rehydration_priority = required_str(req, "rehydrationPriority", where)
        p.rehydration_duration = required_str(req, "rehydrationRetentionDuration", where)
    parse_target = _TARGETS.get(ttype.lower())
    if parse_target is None:
        raise BadRequest("UserErrorInvalidRequestParameter",
                         f"{where}.restoreTargetInfo.objectType '{ttype}' is not supported for PostgreSQL; use "
                         "RestoreTargetInfo (as database) or RestoreFilesTargetInfo (as files)")
    parse_target(p, tgt, where)
    return p


def _restore_type(req: dict[str, Any], where: str) -> str:
    raw_type = required_str(req, "objectType", where)
    otype = RESTORE_TYPES.get(raw_type.lower())
    if otype is None:
        raise BadRequest("UserErrorInvalidRequestParameter",
                         f"{where}.objectType '{raw_type}' is not supported for PostgreSQL; use "
                         "AzureBackupRecoveryPointBasedRestoreRequest or AzureBackupRestoreWithRehydrationRequest")
    return otype


def _source_store(req: dict[str, Any], where: str) -> str:
    store = required_str(req, "sourceDataStoreType", where)
    if store.lower() not in ("vaultstore", "archivestore"):
        raise BadRequest("UserErrorInvalidRequestParameter",
                         f"{where}.sourceDataStoreType '{store}' is not supported; use VaultStore or ArchiveStore")
    return "ArchiveStore" if store.lower() == "archivestore" else "VaultStore"


def _database_target(p: ParsedRestore, tgt: dict[str, Any], where: str) -> None:
    """``RestoreTargetInfo``: a new database on a server, and the Key Vault secret to connect with."""
    w2 = f"{where}.restoreTargetInfo.datasourceInfo"
    ds = as_object(lookup(tgt, "datasourceInfo", "dataSourceInfo"), w2)
    p.target_db_id = required_str(ds, "resourceID", w2)
    m = re.match(r"^(/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.DBforPostgreSQL/"
                 r"(?:servers|flexibleServers)/[^/]+)/databases/([^/]+)$", p.target_db_id, re.IGNORECASE)
    if not m:
        raise BadRequest("UserErrorInvalidRequestParameter",
                         f"{w2}.resourceID must be '/subscriptions/<sub>/resourceGroups/<rg>/providers/"
                         "Microsoft.DBforPostgreSQL/servers/<server>/databases/<new database name>'")
    p.target_server_id, p.target_db = m.group(1), m.group(2)
    dss = lookup(tgt, "datasourceSetInfo", "dataSourceSetInfo")
    if isinstance(dss, dict) and lookup(dss, "resourceID") and \
            str(lookup(dss, "resourceID")).lower() != p.target_server_id.lower():
        raise BadRequest("UserErrorInvalidRequestParameter",
                         f"{where}.restoreTargetInfo.datasourceSetInfo.resourceID must be the server of "
                         f"datasourceInfo.resourceID ('{p.target_server_id}')")
    cred = as_object(lookup(tgt, "datasourceAuthCredentials"), f"{where}.restoreTargetInfo.datasourceAuthCredentials")
    w3 = f"{where}.restoreTargetInfo.datasourceAuthCredentials.secretStoreResource"
    p.secret_uri = required_str(as_object(lookup(cred, "secretStoreResource"), w3), "uri", w3)


def _files_target(p: ParsedRestore, tgt: dict[str, Any], where: str) -> None:
    """``RestoreFilesTargetInfo``: a blob container URL and a file prefix."""
    p.kind = "files"
    w2 = f"{where}.restoreTargetInfo.targetDetails"
    td = as_object(lookup(tgt, "targetDetails"), w2)
    p.container_url = required_str(td, "url", w2).rstrip("/")
    p.file_prefix = required_str(td, "filePrefix", w2)
    lt = required_str(td, "restoreTargetLocationType", w2)
    if lt.lower() != "azureblobs":
        raise BadRequest("UserErrorInvalidRequestParameter",
                         f"{w2}.restoreTargetLocationType '{lt}' is not supported; use AzureBlobs")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}", p.file_prefix):
        raise BadRequest("UserErrorInvalidRequestParameter",
                         f"{w2}.filePrefix '{p.file_prefix}' must be 1-200 letters, digits, '.', '_' or '-'")
    p.container_arm_id = str(lookup(td, "targetResourceArmId") or "")


#: restoreTargetInfo.objectType (lower-cased) -> the parser of that target.
_TARGETS: dict[str, Callable[[ParsedRestore, dict[str, Any], str], None]] = {
    "restoretargetinfo": _database_target, "restorefilestargetinfo": _files_target,
}
