"""Rules: the checks a restore (validate, trigger, rehydrate) must pass, each failing with its Azure error code.

Consumes: a parsed request (:class:`ParsedRestore`) and the :class:`State`. Produces: the recovery point and the
target to restore into, or a :class:`RuleError` (code, message, recommended action) that the engine reports as a
Failed long-running operation. Every code is listed in ``docs/emulator.md``.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from .dataplane import ConnInfo, parse_ado_connection_string
from .model import NotFound, ParsedRestore, Principal, RecoveryPoint, RuleError
from .parsing import lookup
from .state import State
from .timeutil import parse_duration
from .world import FLEXIBLE, SINGLE, BackupInstance, Container, Server, Settings, Vault

READER_ROLES = {"reader", "contributor", "owner"}
KV_ROLES = {"key vault secrets user", "key vault secrets officer", "key vault administrator"}
BLOB_ROLES = {"storage blob data contributor", "storage blob data owner"}


def rehydration_params(priority: str | None, duration: str | None) -> tuple[str, timedelta]:
    if priority not in ("Standard", "High"):
        raise RuleError("UserErrorInvalidRehydrationPriority",
                        f"Rehydration priority '{priority}' is not valid.", "Use 'Standard' or 'High'.")
    try:
        d = parse_duration(duration or "")
    except ValueError:
        d = timedelta(-1)
    if not timedelta(days=10) <= d <= timedelta(days=30):
        raise RuleError("UserErrorInvalidRehydrationDuration",
                        f"Rehydration retention duration '{duration}' is not valid.",
                        "Give an ISO-8601 duration between P10D and P30D, for example P15D.")
    return priority, d


def target_files(bi: BackupInstance, rp: RecoveryPoint, prefix: str) -> dict[str, str]:
    """Datastore file -> target blob name (documented in docs/emulator.md)."""
    if bi.datasource_type == SINGLE:
        return {"database.dump": f"{prefix}.dump"}
    return {f: f"{prefix}_{f}" for f in rp.files}


def check_restore(state: State, vault: Vault, bi: BackupInstance, p: ParsedRestore,
                  crr_location: str | None = None) -> tuple[RecoveryPoint, Any]:
    """Apply every restore rule; returns (recovery point, target) or raises RuleError."""
    now = state.clock.now()
    rp = point_for_restore(state, bi, p.rp_id)
    if crr_location is not None:
        _check_crr(state, vault, rp, crr_location, now)
    region = crr_location.lower() if crr_location else vault.location
    _check_restore_location(state, vault, p, region, crr_location)
    _check_tier(rp, p, now)
    principal = restore_principal(state.settings, vault, bi, p)
    check_cross_subscription(vault, p)
    if p.kind == "database":
        return rp, _check_db_target(state, bi, rp, p, region, principal)
    return rp, _check_files_target(state, bi, rp, p, region, principal)


def _check_crr(state: State, vault: Vault, rp: RecoveryPoint, crr_location: str, now: datetime) -> None:
    """Cross Region Restore: enabled on the vault, into its paired region, from a replicated non-archived point."""
    if vault.storage_redundancy != "GeoRedundant" or vault.cross_region_restore != "Enabled":
        raise RuleError("UserErrorCrossRegionRestoreNotEnabled",
                        f"Cross Region Restore is not enabled on vault '{vault.name}' (storage redundancy "
                        f"{vault.storage_redundancy}, CRR {vault.cross_region_restore}).",
                        "Restore in the vault's own region, or use a GeoRedundant vault with Cross Region "
                        "Restore enabled.")
    secondary = state.world.region_pairs.get(vault.location)
    if crr_location.lower() != secondary:
        raise RuleError("UserErrorRestoreTargetRegionMismatch",
                        f"Cross Region Restore for vault '{vault.name}' ({vault.location}) must target its "
                        f"paired secondary region '{secondary}', not '{crr_location}'.",
                        f"Call the '{secondary}' location and pick a target in '{secondary}'.")
    if rp.tier == "archive" and not rp.usable_from_vault(now):
        raise RuleError("UserErrorCrossRegionRestoreNotSupportedForArchivedRecoveryPoint",
                        f"Recovery point '{rp.id}' is in the archive tier and is not rehydrated; archived "
                        "points cannot be restored to the secondary region.",
                        "Rehydrate the point in the primary region first, or restore it in the primary "
                        "region.")
    if rp.time + state.settings.crr_replication_lag > now:
        raise RuleError("UserErrorRecoveryPointNotReplicated",
                        f"Recovery point '{rp.id}' is not yet replicated to '{crr_location}'.",
                        "Pick an older recovery point from fetchSecondaryRecoveryPoints.")


def _check_restore_location(state: State, vault: Vault, p: ParsedRestore, region: str,
                            crr_location: str | None) -> None:
    """``restoreLocation``, when sent, must be the region the restore runs in."""
    if p.restore_location and p.restore_location != region:
        hint = ("for Cross Region Restore call the crossRegionRestore API in the secondary location"
                if not crr_location and p.restore_location == state.world.region_pairs.get(vault.location)
                else f"set restoreLocation to '{region}'")
        raise RuleError("UserErrorRestoreTargetRegionMismatch",
                        f"restoreLocation '{p.restore_location}' must be '{region}' "
                        f"({'secondary region' if crr_location else 'the vault region'}).", hint.capitalize() + ".")


def _check_tier(rp: RecoveryPoint, p: ParsedRestore, now: datetime) -> None:
    """Archive and rehydration: the request's kind and source data store must fit the point's tier."""
    if p.object_type == "AzureBackupRestoreWithRehydrationRequest":
        if rp.tier != "archive":
            raise RuleError("UserErrorRecoveryPointNotInArchive",
                            f"Recovery point '{rp.id}' is not in the archive tier; rehydration is not needed.",
                            "Send an AzureBackupRecoveryPointBasedRestoreRequest with sourceDataStoreType "
                            "VaultStore.")
        if p.source_store != "ArchiveStore":
            raise RuleError("UserErrorInvalidSourceDataStore",
                            "A restore with rehydration must use sourceDataStoreType 'ArchiveStore'.",
                            "Set sourceDataStoreType to ArchiveStore.")
        rehydration_params(p.rehydration_priority, p.rehydration_duration)
    elif rp.tier == "archive" and not rp.usable_from_vault(now):
        status = rp.rehydration_status(now)[0]
        raise RuleError("UserErrorRecoveryPointNotRehydrated",
                        f"Recovery point '{rp.id}' is in the archive tier (rehydration status: "
                        f"{status or 'not rehydrated'}).",
                        "Rehydrate it first (rehydrate API, wait for COMPLETED) or send an "
                        "AzureBackupRestoreWithRehydrationRequest with sourceDataStoreType ArchiveStore.")
    elif rp.tier == "vault" and p.source_store == "ArchiveStore":
        raise RuleError("UserErrorInvalidSourceDataStore",
                        f"Recovery point '{rp.id}' is in the vault tier, not in the archive tier.",
                        "Set sourceDataStoreType to VaultStore.")


def restore_principal(settings: Settings, vault: Vault, bi: BackupInstance, p: ParsedRestore) -> Principal:
    """The identity whose permissions the restore uses: ``identityDetails`` as sent; absent means the
    system-assigned identity (REST reference: "If it is null, default will be considered as System Assigned")."""
    d = p.identity_details
    if d is None and bi.identity and settings.strict_identity_details:
        raise RuleError("UserErrorInvalidIdentityDetails",
                        f"Backup instance '{bi.name}' is protected with the user-assigned identity "
                        f"'{bi.identity}'; the restore request must name it in identityDetails.",
                        "Send identityDetails {useSystemAssignedIdentity: false, userAssignedIdentityArmUrl: "
                        f"'{bi.identity}'}}.")
    url = str(lookup(d, "userAssignedIdentityArmUrl") or "") if d else ""
    use_system = lookup(d, "useSystemAssignedIdentity") if d else None
    if url and use_system is not True:
        user = vault.user_identity(url)
        if user is None:
            raise RuleError("UserErrorInvalidIdentityDetails",
                            f"The user-assigned identity '{url}' is not assigned to vault '{vault.name}'.",
                            "Send one of the vault's identity.userAssignedIdentities, or omit identityDetails "
                            "to use the system-assigned identity.")
        return Principal(user.principal_id, f"user-assigned identity '{user.id.rsplit('/', 1)[-1]}'")
    if use_system is False:
        raise RuleError("UserErrorInvalidIdentityDetails",
                        "identityDetails.useSystemAssignedIdentity is false but no userAssignedIdentityArmUrl "
                        "was given.", "Give userAssignedIdentityArmUrl, or set useSystemAssignedIdentity true.")
    if vault.principal_id is None:
        raise RuleError("UserErrorInvalidIdentityDetails",
                        f"Vault '{vault.name}' has no system-assigned identity, which is what a restore without "
                        "identityDetails uses.",
                        "Send identityDetails with userAssignedIdentityArmUrl set to one of the vault's "
                        "user-assigned identities.")
    return Principal(vault.principal_id, "managed identity")


def check_cross_subscription(vault: Vault, p: ParsedRestore) -> None:
    """With cross-subscription restore Disabled/PermanentlyDisabled the target must be in the vault's subscription;
    a blob URL does not say its subscription, so files need ``targetResourceArmId`` (spec description: "optional
    if the target subscription can be identified with the URL field. If not then this is needed if
    CrossSubscriptionRestore field of BackupVault is in any of the disabled states")."""
    if vault.cross_subscription_restore == "Enabled":
        return
    state = f"cross-subscription restore is {vault.cross_subscription_restore} on vault '{vault.name}'"
    target = p.target_server_id if p.kind == "database" else p.container_arm_id
    if not target:
        raise RuleError("UserErrorCrossSubscriptionRestoreDisabled",
                        f"The target subscription cannot be identified from the container URL "
                        f"'{p.container_url}' and {state}: targetResourceArmId is required.",
                        "Send restoreTargetInfo.targetDetails.targetResourceArmId (the container's ARM id).")
    m = re.match(r"^/subscriptions/([^/]+)/", target, re.IGNORECASE)
    if not m or m.group(1).lower() != vault.subscription.lower():
        raise RuleError("UserErrorCrossSubscriptionRestoreDisabled",
                        f"The restore target '{target}' is not in the vault's subscription '{vault.subscription}' "
                        f"and {state}.",
                        f"Restore into subscription '{vault.subscription}', or enable cross-subscription restore "
                        "on the vault (not possible once PermanentlyDisabled).")


def point_for_restore(state: State, bi: BackupInstance, rp_id: str) -> RecoveryPoint:
    try:
        return state.rp(bi, rp_id)
    except NotFound as exc:
        raise RuleError("UserErrorRecoveryPointNotFound", exc.message,
                        "List the recovery points and pick an existing recoveryPointId.") from exc


def _check_db_target(state: State, bi: BackupInstance, rp: RecoveryPoint, p: ParsedRestore,
                     region: str, principal: Principal) -> tuple[Server, ConnInfo]:
    """Restore as database: a Single Server target the identity can read, a usable Key Vault secret, a PostgreSQL
    version at least the backup's and a database name not yet in use."""
    srv = _target_server(state, bi, p, region)
    if not state.has_role(principal.id, READER_ROLES, srv.id):
        raise RuleError("UserErrorMSIMissingPermissions",
                        f"The backup vault's {principal.label} (principalId {principal.id}) is missing "
                        f"the role 'Reader' on scope '{srv.id}'.",
                        f"Assign the 'Reader' role on '{srv.id}' to the vault's {principal.label}.")
    conn = _secret_connection(state, p, principal)
    if srv.postgres_version < rp.postgres_version:
        raise RuleError("UserErrorRestoreToLowerVersion",
                        f"Restoring backups of a higher PostgreSQL version to a lower version is not supported "
                        f"(backup version {rp.postgres_version}, target '{srv.name}' version "
                        f"{srv.postgres_version}).",
                        "Restore to the same or a higher PostgreSQL version from which the backup was taken.")
    if state.settings.data_plane and state.data.database_exists(srv.cluster, p.target_db):
        raise RuleError("UserErrorDatabaseNameAlreadyInUse",
                        f"Database '{p.target_db}' already exists on server '{srv.name}'.",
                        "Retry with a new database name.")
    return srv, conn


def _target_server(state: State, bi: BackupInstance, p: ParsedRestore, region: str) -> Server:
    """The target server of a restore as database: an existing Single Server in ``region``, not the source."""
    if bi.datasource_type == FLEXIBLE:
        raise RuleError("UserErrorUnsupportedRestoreTargetType",
                        "Flexible Server backups can only be restored as files.",
                        "Send a RestoreFilesTargetInfo target (a blob container URL and a file prefix).")
    srv = state.world.servers.get(p.target_server_id.lower())
    if srv is None:
        raise RuleError("UserErrorDBNotFound", f"Target server '{p.target_server_id}' does not exist.",
                        "Give the ARM id of an existing Azure Database for PostgreSQL server.")
    if srv.kind != "servers":
        raise RuleError("UserErrorUnsupportedRestoreTargetType",
                        f"Target '{srv.name}' is a Flexible Server; restore as database needs a Single Server.",
                        "Restore as files and load them with pg_restore.")
    if srv.location != region:
        raise RuleError("UserErrorRestoreTargetRegionMismatch",
                        f"Target server '{srv.name}' is in '{srv.location}' but the restore must target "
                        f"'{region}'.", f"Pick a target server in '{region}'.")
    if srv.id.lower() == bi.server_id.lower() and (bi.database or "").lower() == p.target_db.lower():
        raise RuleError("UserErrorOriginalLocationRestoreNotSupported",
                        f"Restoring over the source database '{srv.name}/{p.target_db}' is not supported.",
                        "Choose a new database name or another target server.")
    return srv


def _secret_connection(state: State, p: ParsedRestore, principal: Principal) -> ConnInfo:
    """The connection the restore uses: the Key Vault secret the request names, readable by the identity, holding
    an ADO.NET connection string."""
    uri = re.sub(r"/+$", "", p.secret_uri)
    m = re.match(r"^https://([^./]+)\.vault\.azure\.net/secrets/([^/]+)(?:/[^/]*)?$", uri, re.IGNORECASE)
    if not m:
        raise RuleError("UserErrorInvalidSecretStore", f"Secret URI '{p.secret_uri}' is not a Key Vault secret "
                        "URI.", "Use https://<vault>.vault.azure.net/secrets/<name>.")
    kv_id = state.world.key_vaults.get(m.group(1).lower())
    if kv_id is None:
        raise RuleError("UserErrorInvalidSecretStore", f"Key Vault '{m.group(1)}' does not exist or is not "
                        "accessible.", "Check the Key Vault name in the secret URI.")
    if not state.has_role(principal.id, KV_ROLES, kv_id):
        raise RuleError("UserErrorMissingPermissionsOnSecretStore",
                        f"The backup vault's {principal.label} (principalId {principal.id}) is missing "
                        f"the role 'Key Vault Secrets User' on scope '{kv_id}'.",
                        f"Assign 'Key Vault Secrets User' on '{kv_id}' to the vault's {principal.label}.")
    key = f"https://{m.group(1).lower()}.vault.azure.net/secrets/{m.group(2)}".lower()
    value = state.secret_values.get(key)
    if value is None:
        raise RuleError("UserErrorInvalidSecret", f"Secret '{m.group(2)}' was not found in Key Vault "
                        f"'{m.group(1)}'.", "Create the secret or fix the secret name in the URI.")
    try:
        return parse_ado_connection_string(value)
    except ValueError as exc:
        raise RuleError("UserErrorSecretValueInUnsupportedFormat", str(exc),
                        "Store an ADO.NET connection string: Server=...;Port=5432;Database=postgres;"
                        "User Id=...;Password=...;Ssl Mode=Require;") from exc


def _check_files_target(state: State, bi: BackupInstance, rp: RecoveryPoint, p: ParsedRestore,
                        region: str, principal: Principal) -> Container:
    c = state.world.containers.get(p.container_url.lower())
    if c is None:
        raise RuleError("UserErrorContainerNotAccessible", f"Container '{p.container_url}' does not exist or "
                        "is not accessible.", "Give the URL of an existing blob container.")
    if p.container_arm_id and p.container_arm_id.lower().rstrip("/") not in (c.id.lower(), c.account_id.lower()):
        raise RuleError("UserErrorContainerNotAccessible",
                        f"targetResourceArmId '{p.container_arm_id}' does not match container URL "
                        f"'{p.container_url}' (expected '{c.id}').", "Send the container's ARM id or omit it.")
    if c.location != region:
        raise RuleError("UserErrorRestoreTargetRegionMismatch",
                        f"Storage account '{c.account}' is in '{c.location}' but the restore must target "
                        f"'{region}'.", f"Pick a container in '{region}'.")
    if not state.has_role(principal.id, BLOB_ROLES, c.id):
        raise RuleError("UserErrorContainerNotAccessible",
                        f"The backup vault's {principal.label} (principalId {principal.id}) is missing "
                        f"the role 'Storage Blob Data Contributor' on scope '{c.id}' (or its storage account).",
                        f"Assign 'Storage Blob Data Contributor' on '{c.account_id}' or the container to the "
                        f"vault's {principal.label}.")
    for name in target_files(bi, rp, p.file_prefix).values():
        if state.settings.data_plane and state.data.blob_exists(c.azurite_container, name):
            raise RuleError("UserErrorFileAlreadyExists", f"Blob '{name}' already exists in container "
                            f"'{c.name}'.", "Use a new filePrefix.")
    return c


def check_rehydrate(state: State, bi: BackupInstance, rp_id: str, priority: Any,
                    duration: str) -> tuple[RecoveryPoint, str, timedelta]:
    """A rehydrate request: an archived point, a valid priority and retention; returns (point, priority, retention)."""
    rp = point_for_restore(state, bi, rp_id)
    if rp.tier != "archive":
        raise RuleError("UserErrorRecoveryPointNotInArchive",
                        f"Recovery point '{rp.id}' is not in the archive tier; it needs no rehydration.",
                        "Restore it directly from VaultStore.")
    prio, retention = rehydration_params(priority, duration)
    return rp, prio, retention
