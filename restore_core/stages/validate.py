"""Stage validate.

Consumes: a restore in status ``validating`` (message on ``restore-validate``).
Does: resolves the backup instance (by id, or vault + datasource) and its vault (region, redundancy, Cross Region
Restore state, identity); checks the protection state; selects the recovery point (secondary region: from
``fetchSecondaryRecoveryPoints``; ``latest``/``latest_before`` skip Partial points and say so, an explicit Partial
point is restored with a warning); applies the rules before calling Azure (Flexible Server → files only; never the
source database; secondary region needs a geo-redundant vault with CRR enabled; an archived point cannot go
cross-region until rehydrated; the secondary region is the vault's listed ``replicatedRegions`` entry, else its Azure
paired region, as the az CLI falls back; a vault with cross-subscription restore off restores only into its own
subscription, and a files target then needs ``container_id``); the guards that need the backup instance
(protected servers, :mod:`restore_core.guards`); takes the destination lock (:mod:`restore_core.locks`; a busy
destination is ``DestinationBusy``, naming the holder); then calls ``validateRestore`` /
``validateCrossRegionRestore``. The checks up to Azure's call are :func:`check` (no writes), shared with the
preview (:mod:`restore_core.preview`). A Cross Region Restore also reads the primary's points once (:mod:`.gaps`):
when the primary holds a newer point that the selector would have taken, the restore carries a
``SecondaryRegionBehind`` warning saying how much older the secondary's point is; ``data_loss_gap_seconds`` says how
much older the restored point is than asked for.
Writes: the resolved facts on the row. Next: trigger (vault tier or already rehydrated), rehydrate (archive), or
``rejected`` with Azure's error code, a plain explanation and the fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .. import guards, locks, pgtarget
from .. import restore_requests as rr
from ..arm_ids import BackupInstanceRef, VaultRef, parse_backup_instance_id, parse_vault_id, same_id
from ..backup import BackupInstanceInfo, RecoveryPointInfo, VaultInfo, latest
from ..deps import Deps
from ..errors import AzureRejection
from ..fixes import explain
from ..models import (
    DatabaseTarget,
    EntraAuth,
    FilesTarget,
    Region,
    RehydrationPriority,
    RestoreRequest,
    ServerTarget,
    Tier,
)
from ..point_range import available_points
from ..records import RestoreRecord
from ..regions import paired_region
from ..transitions import Outcome, StageResult
from . import Claim, gaps, server_checks
from .common import (
    cached_vault,
    identity_label,
    identity_principal,
    plan_of,
    request_of,
    restore_identity,
    vault_target,
)

#: The az CLI and PowerShell offer only Standard rehydration priority for PostgreSQL; the API enum has High.
HIGH_PRIORITY_WARNING = {"code": "RehydrationPriorityHigh",
                         "message": "rehydration priority High was requested; the az CLI and PowerShell offer only "
                                    "Standard for PostgreSQL, so Azure may refuse it (the restore then fails with "
                                    "Azure's error; submit again with priority Standard)"}

RESTORABLE_STATES = {None, "", "ProtectionConfigured", "ProtectionStopped", "BackupSchedulesSuspended",
                     "RetentionSchedulesSuspended", "ProtectionError", "UpdatingProtection"}


def _reject(code: str, message: str, fix: str) -> StageResult:
    return StageResult(Outcome.REJECTED, f"rejected: {code}: {message}", error_code=code, error_message=message,
                       error_fix=fix)


def _select_point(points: list[RecoveryPointInfo], req: RestoreRequest) \
        -> tuple[RecoveryPointInfo | None, list[RecoveryPointInfo]]:
    """The point to restore and the newer Partial points passed over for it, newest first. ``latest`` and
    ``latest_before`` never pick a Partial point: a DBA asking for the latest backup means the latest complete one
    (Azure: Partial = "only some of the intended items were backed up"). An explicit id is taken as given."""
    sel = req.recovery_point
    if sel.id:
        return next((p for p in points if p.id.lower() == sel.id.lower()), None), []
    candidates = [p for p in points if sel.latest_before is None or p.time < sel.latest_before]
    chosen = latest(p for p in candidates if not p.partial)
    skipped = [p for p in candidates if p.partial and (chosen is None or p.time > chosen.time)]
    return chosen, sorted(skipped, key=lambda p: p.time, reverse=True)


def _find_point(deps: Deps, bi: BackupInstanceRef, req: RestoreRequest, vault: VaultInfo, location: str) \
        -> tuple[RecoveryPointInfo | None, list[RecoveryPointInfo]]:
    dp = deps.dp
    if req.region == Region.SECONDARY:
        return _select_point(dp.fetch_secondary_recovery_points(bi, secondary=location, primary=vault.location), req)
    if req.recovery_point.id:
        try:
            return dp.get_recovery_point(bi, req.recovery_point.id), []
        except AzureRejection as exc:
            if "notfound" not in exc.code.lower():
                raise
            return None, []
    return _select_point(dp.list_recovery_points(bi, end=req.recovery_point.latest_before), req)


def _no_point(req: RestoreRequest, info: BackupInstanceInfo, skipped: list[RecoveryPointInfo],
              available: str = "") -> StageResult:
    what = (f"recovery point {req.recovery_point.id}" if req.recovery_point.id else
            f"a recovery point before {req.recovery_point.latest_before.isoformat()}"
            if req.recovery_point.latest_before else "a recovery point")
    where = " in the secondary region" if req.region == Region.SECONDARY else ""
    if skipped:
        ids = ", ".join(f"{p.id} ({p.time.isoformat()})" for p in skipped)
        return _reject("OnlyPartialRecoveryPoints",
                       f"{what.replace('a recovery point', 'a complete recovery point')} was not found for "
                       f"{info.friendly_name or info.name}{where}: the only candidates are Partial (only some of the "
                       f"intended items were backed up): {ids}",
                       "to restore a Partial point anyway, give its id as recovery_point.id (the restore then "
                       "carries a warning); otherwise take a new backup first")
    return _reject("RecoveryPointNotFound",
                   f"{what} was not found for {info.friendly_name or info.name}{where}{available}",
                   f"list the recovery points (GET /api/backup-instances/{info.name}/recovery-points, or "
                   f"`restorectl points {info.name}`) and pick an existing one (or use latest)")


def _secondary_region(vault: VaultInfo, ref: VaultRef) -> tuple[str, str] | StageResult:
    """The vault's secondary region: the one it lists in ``replicatedRegions``, else (as the az CLI does) the Azure
    paired region of its location. Returns (region, note for the timeline) or the rejection."""
    if vault.secondary_region:
        return vault.secondary_region, ""
    pair = paired_region(vault.location)
    if pair is None:
        return _reject("SecondaryRegionUnknown",
                       f"vault {ref.vault} lists no replicatedRegions and {vault.location} has no Azure paired region "
                       "in the table the az CLI falls back to",
                       "restore in the primary region, or check the vault's replicatedRegions in Azure")
    return pair, f" (the vault lists no replicatedRegions: Azure paired region of {vault.location})"


def _subscription_of(resource_id: str | None) -> str | None:
    m = re.match(r"^/subscriptions/([^/]+)/", resource_id or "", re.IGNORECASE)
    return m.group(1).lower() if m else None


def _cross_subscription_rule(t: DatabaseTarget | FilesTarget, vault: VaultInfo, ref: VaultRef) -> StageResult | None:
    """A vault whose cross-subscription restore is Disabled or PermanentlyDisabled restores only into its own
    subscription. A container URL does not say its subscription, so Azure then needs the container's ARM id
    (spec, ``targetResourceArmId``: "needed if CrossSubscriptionRestore field of BackupVault is in any of the disabled
    states")."""
    if vault.cross_subscription_restore:
        return None
    state = f"vault {ref.vault} has cross-subscription restore {vault.csr_state}"
    if isinstance(t, FilesTarget) and not t.container_id:
        account, container = _account_and_container(t.container_url)
        return _reject("TargetContainerIdRequired",
                       f"target.container_id is required: {state}, so Azure must check that the container is in the "
                       f"vault's subscription {ref.subscription}, and a container URL does not say its subscription",
                       f"add target.container_id, the container's ARM id: $(az storage account show --name {account} "
                       f"--query id -o tsv)/blobServices/default/containers/{container}")
    target_id = t.container_id if isinstance(t, FilesTarget) else t.server_id
    if _subscription_of(target_id) == ref.subscription.lower():
        return None
    field = "target.container_id" if isinstance(t, FilesTarget) else "target.server_id"
    fix = f"choose a {field.split('.')[1].replace('_id', '')} in subscription {ref.subscription}"
    if (vault.csr_state or "").lower() == "permanentlydisabled":
        fix += " (PermanentlyDisabled cannot be enabled again)"
    else:
        fix += (" or enable cross-subscription restore on the vault: az resource update --ids " + ref.id +
                " --set properties.featureSettings.crossSubscriptionRestoreSettings.state=Enabled")
    return _reject("CrossSubscriptionRestoreDisabled",
                   f"{field} is in subscription {_subscription_of(target_id)} but {state}: it restores only into "
                   f"its own subscription {ref.subscription}", fix)


def _account_and_container(url: str) -> tuple[str, str]:
    u = urlsplit(url)
    return (u.hostname or "").split(".", 1)[0], u.path.strip("/")


def point_warnings(point: RecoveryPointInfo, skipped: list[RecoveryPointInfo]) -> list[dict[str, Any]]:
    """Warnings the restore carries because of its recovery point (row, status, timeline, completion event)."""
    warnings: list[dict[str, Any]] = []
    if point.partial:
        warnings.append({
            "code": "PartialRecoveryPoint", "recovery_point": point.id,
            "message": f"recovery point {point.id} of {point.time.isoformat()} is Partial: Azure reports that only "
                       "some of the intended items were backed up and does not say which ones; check the restored "
                       "data for missing objects, or restore a Completed point"})
    if skipped:
        newest = skipped[0]
        more = f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""
        warnings.append({
            "code": "PartialRecoveryPointSkipped", "recovery_point": newest.id,
            "message": f"the newer recovery point {newest.id} of {newest.time.isoformat()}{more} is Partial (only "
                       f"some of the intended items were backed up), so the latest complete point {point.id} of "
                       f"{point.time.isoformat()} is restored instead; give recovery_point.id to restore the Partial "
                       "one anyway"})
    return warnings


class _Refused(Exception):
    """A rule refused the restore; ``result`` is the rejection (raised by the steps below, caught once in run)."""

    def __init__(self, result: StageResult) -> None:
        super().__init__(result.message)
        self.result = result


def _refuse(result: StageResult | None) -> None:
    if result is not None:
        raise _Refused(result)


def _resolve_instance(req: RestoreRequest, dp: Any) -> tuple[BackupInstanceRef, BackupInstanceInfo]:
    """Step 1: the backup instance, by id or by the protected datasource in a vault."""
    if req.backup_instance.id:
        bi = parse_backup_instance_id(req.backup_instance.id)
        return bi, dp.get_backup_instance(bi)
    assert req.backup_instance.vault_id and req.backup_instance.datasource_id
    vault_ref = parse_vault_id(req.backup_instance.vault_id, "backup_instance.vault_id")
    found = [b for b in dp.list_backup_instances(vault_ref)
             if same_id(b.datasource_id, req.backup_instance.datasource_id)
             or same_id(b.datasource_set_id, req.backup_instance.datasource_id)
             and b.datasource_type == rr.FLEXIBLE_SERVER]
    if not found:
        raise _Refused(_reject("BackupInstanceNotFound",
                               f"no backup instance in vault {vault_ref.vault} protects "
                               f"{req.backup_instance.datasource_id}",
                               "check backup_instance.datasource_id (the database ARM id for Single Server, the "
                               "server ARM id for Flexible Server) or give backup_instance.id"))
    return parse_backup_instance_id(found[0].id), found[0]


def _instance_rules(vault: VaultInfo, bi: BackupInstanceRef, info: BackupInstanceInfo, identity: str | None) -> None:
    if identity is None and not vault.principal_id and len(vault.user_identities) > 1:
        raise _Refused(_reject(
            "VaultIdentityAmbiguous",
            f"vault {bi.vault.vault} has no system-assigned identity and {len(vault.user_identities)} "
            f"user-assigned identities, and backup instance {info.name} names none of them",
            "set the backup instance's identityDetails (userAssignedIdentityArmUrl) to the identity that holds the "
            "restore permissions, or enable the vault's system-assigned identity"))
    if info.protection_state not in RESTORABLE_STATES:
        raise _Refused(_reject("BackupInstanceNotRestorable",
                               f"backup instance {info.name} is in state {info.protection_state}",
                               "restore from a backup instance whose protection is configured or stopped with "
                               "retained data"))


def _target_rules(req: RestoreRequest, vault: VaultInfo, bi: BackupInstanceRef, info: BackupInstanceInfo,
                  target: DatabaseTarget | FilesTarget) -> None:
    """Step 2: rules that need no Azure call (``target``: what the vault is asked to restore into)."""
    csr = _cross_subscription_rule(target, vault, bi.vault)
    if csr is not None and isinstance(req.target, ServerTarget) and isinstance(target, FilesTarget):
        # the staging container is ours, not the user's: say so
        csr = _reject("StagingOutsideVaultSubscription",
                      f"vault {bi.vault.vault} has cross-subscription restore {vault.csr_state} and the staging "
                      f"container of this region ({target.container_url}) is not known to be in its subscription "
                      f"{bi.vault.subscription}", "put the staging account in the vault's subscription and give its "
                      "container_id in RESTORE_STAGING (the infra does both), or enable cross-subscription restore "
                      "on the vault")
    _refuse(csr)
    if isinstance(req.target, ServerTarget):
        _refuse(server_checks.source_rules(req.target, info.datasource_type, info.datasource_id))
    if info.datasource_type.lower() == rr.FLEXIBLE_SERVER.lower() and isinstance(req.target, DatabaseTarget):
        raise _Refused(_reject("FlexibleServerRestoreAsFilesOnly",
                               "Azure Backup restores Flexible Server backups only as files",
                               "set target.kind to \"files\" with a container_url and file_prefix, then load the "
                               "dumps with pg_restore"))
    if isinstance(req.target, DatabaseTarget) and same_id(req.target.database_id, info.datasource_id):
        raise _Refused(_reject("RestoreToSourceNotAllowed",
                               "the target is the source database; restores never overwrite it",
                               "choose a new target.database_name"))


def _location(req: RestoreRequest, vault: VaultInfo, bi: BackupInstanceRef) -> tuple[str, str]:
    """The region to restore into, and a note when it came from the paired-region table."""
    if req.region != Region.SECONDARY:
        return vault.location, ""
    if not vault.crr_enabled or (vault.redundancy or "").lower() != "georedundant":
        raise _Refused(_reject(
            "CrossRegionRestoreNotEnabled",
            f"vault {bi.vault.vault} is {vault.redundancy} with Cross Region Restore "
            f"{'enabled' if vault.crr_enabled else 'disabled'}",
            f"restore in the primary region, or enable Cross Region Restore on a geo-redundant vault: "
            f"az dataprotection backup-vault update --vault-name {bi.vault.vault} "
            f"--resource-group {bi.vault.resource_group} --cross-region-restore-state Enabled"))
    secondary = _secondary_region(vault, bi.vault)
    if isinstance(secondary, StageResult):
        raise _Refused(secondary)
    return secondary


def _choose_point(deps: Deps, bi: BackupInstanceRef, req: RestoreRequest, vault: VaultInfo, location: str,
                  info: BackupInstanceInfo) -> tuple[RecoveryPointInfo, list[dict[str, Any]], bool]:
    """Step 3: the recovery point (never a Partial one unless asked for by id), its warnings, and whether it must
    be rehydrated first."""
    point, skipped = _find_point(deps, bi, req, vault, location)
    if point is None:
        regions = (location, vault.location) if req.region == Region.SECONDARY else None
        raise _Refused(_no_point(req, info, skipped, "" if skipped else available_points(deps, bi, regions)))
    needs_rehydration = point.tier == Tier.ARCHIVE and not point.rehydrated
    if needs_rehydration and req.region == Region.SECONDARY:
        raise _Refused(_reject("ArchivedPointNotRehydrated",
                               "an archived recovery point cannot be restored cross-region until it is rehydrated",
                               "restore it in the primary region first (which rehydrates it), or pick a vault-tier "
                               "point"))
    warnings = point_warnings(point, skipped)
    if needs_rehydration and req.rehydration.priority == RehydrationPriority.HIGH:
        warnings.append(HIGH_PRIORITY_WARNING)
    if req.region == Region.SECONDARY and not req.recovery_point.id:
        warnings += gaps.secondary_behind(deps, bi, req, point, location)
    return point, warnings, needs_rehydration


def _ask_azure(dp: Any, req: RestoreRequest, plan: rr.RestorePlan, bi: BackupInstanceRef, vault: VaultInfo,
               location: str, needs_rehydration: bool) -> None:
    """Step 4: Azure's own validation (an archived point is validated in its one-shot rehydration form)."""
    rehydration = req.rehydration if needs_rehydration else None
    if req.region == Region.SECONDARY:
        dp.validate_cross_region_restore(plan, vault.location, rehydration)
    else:
        dp.validate_restore(plan, rehydration)


def _staging(req: RestoreRequest, deps: Deps, rec: RestoreRecord, location: str) -> dict[str, Any]:
    """Server targets: the staging container of the region the vault restores into; the restore's files get the
    restore id as their prefix."""
    if not isinstance(req.target, ServerTarget):
        return {}
    site = deps.server_access().staging_site(location)
    if site is None:
        raise _Refused(_reject("StagingNotConfigured",
                               f"no staging container is configured for {location}, where the vault restores the "
                               "files of this restore", f"add {location} to RESTORE_STAGING (the infra creates one "
                                                        "staging account per region: the vault's and its pair)"))
    return {"staging": site.describe(rec.id)}


def _point_databases(info: BackupInstanceInfo, point: RecoveryPointInfo) -> list[str] | None:
    """The databases of the point: a Single Server point's one database, else what the point's metadata names
    (``dbName``), else None (a Flexible Server point whose metadata says nothing: known after inventory)."""
    single = server_checks.single_server_database(info.datasource_type, info.datasource_id)
    if single:
        return [single]
    return list(point.databases) if point.databases else None


def _server_target(req: RestoreRequest, deps: Deps, info: BackupInstanceInfo, rec_id: str,
                   point: RecoveryPointInfo) -> dict[str, Any]:
    """Server targets: the named source databases exist in the point (when the point says which it holds); connect to
    the target with the chosen credentials (TLS) and check privileges, names and the owner — all before anything is
    paid for."""
    if not isinstance(req.target, ServerTarget):
        return {}
    t = req.target
    known = _point_databases(info, point)
    _refuse(server_checks.sources_in_point(t, known))
    sources = known if t.databases or known is None else server_checks.user_databases(known)
    names = server_checks.name_plan(t, sources or [], deps.settings.server.database_suffix)
    access = deps.server_access()
    replay_role = deps.settings.server.replay_entra_user if isinstance(t.auth, EntraAuth) else None
    try:
        conn = access.target_conn(t)
        target_facts = pgtarget.facts(conn, replay_role)
    except AzureRejection as exc:
        raise _Refused(_reject(exc.code, exc.message, exc.fix or "see the message")) from None
    _refuse(server_checks.target_rules(t, conn, target_facts, names, rec_id))
    return {"server_plan": {"names": names, "target_server": t.server_id, "connect_as": target_facts.user,
                            "target_version": target_facts.server_version,
                            "names_final": bool(known is not None or t.databases)}}


@dataclass
class Checked:
    """What the synchronous checks found (shared by the stage and the preview): the facts for the row, and either the
    rejection or the chosen point, its warnings and the plan Azure would be asked to restore."""

    facts: dict[str, Any] = field(default_factory=dict)
    rejection: StageResult | None = None
    req: RestoreRequest | None = None
    bi: BackupInstanceRef | None = None
    vault: VaultInfo | None = None
    identity: str | None = None
    location: str = ""
    region_note: str = ""
    point: RecoveryPointInfo | None = None
    warnings: list[dict[str, Any]] = field(default_factory=list)
    needs_rehydration: bool = False
    plan: rr.RestorePlan | None = None


def _guards(req: RestoreRequest, deps: Deps, info: BackupInstanceInfo) -> None:
    """Issue 14's guards that need the backup instance: protected servers (its own source server, the configured
    ones and the source servers of the configured vaults' backups)."""
    planned: list[str] | None = None
    if isinstance(req.target, ServerTarget):
        single = server_checks.single_server_database(info.datasource_type, info.datasource_id)
        planned = list(server_checks.name_plan(req.target, [single] if single else [],
                                               deps.settings.server.database_suffix).values())
    refusal = guards.protected_target(deps, req, info, planned)
    if refusal is not None:
        raise _Refused(_reject(refusal.code, refusal.message, refusal.fix))


def check(req: RestoreRequest, deps: Deps, rec: RestoreRecord) -> Checked:
    """Every check before Azure's own validation, without writing the restore row (``rec`` gives the restore id and
    is only copied): resolve the instance and vault, the rules, the guards, the server target's live checks, the
    point. Reads may be cached in meta rows (vault facts, protected servers)."""
    out = Checked(req=req)
    facts = out.facts
    try:
        bi, info = _resolve_instance(req, deps.dp)
        vault = cached_vault(deps, bi.vault)
        identity = restore_identity(vault, info.user_identity)
        out.bi, out.vault, out.identity = bi, vault, identity
        facts.update({
            "backup_instance_id": info.id, "vault_id": bi.vault.id, "vault_info": vault.to_dict(),
            "datasource_type": info.datasource_type, "source_datasource_id": info.datasource_id,
            "target_kind": req.target.kind,
            "target_resource": req.target.server_id if isinstance(req.target, ServerTarget)
            else rr.destination_of(req.target),
            "identity_id": identity})
        _instance_rules(vault, bi, info, identity)
        location, out.region_note = _location(req, vault, bi)
        out.location = facts["restore_location"] = location
        facts.update(_staging(req, deps, rec, location))
        _target_rules(req, vault, bi, info, vault_target(rec.copy(**facts), req))
        _guards(req, deps, info)
        out.point, out.warnings, out.needs_rehydration = _choose_point(deps, bi, req, vault, location, info)
        facts.update(_server_target(req, deps, info, rec.id, out.point))
    except _Refused as refused:
        refused.result.changes = {**facts, **refused.result.changes}  # what was resolved: shown on the row
        out.rejection = refused.result
        return out
    point = out.point
    facts.update({"recovery_point_id": point.id, "recovery_point_time": point.time, "tier": point.tier,
                  "source_bytes": point.size_bytes,
                  "warnings": out.warnings, "data_loss_gap_seconds": gaps.data_loss_gap(req, point, out.warnings)})
    if point.rehydration_expiry:
        facts["rehydration_expiry"] = point.rehydration_expiry
    out.plan = plan_of(rec.copy(**facts), req)
    return out


def lock_keys(req: RestoreRequest, facts: dict[str, Any]) -> list[str]:
    """The destinations this restore writes (restore_core/locks.py), from the request and the validated facts."""
    plan = facts.get("server_plan") or {}
    names = list((plan.get("names") or {}).values())
    return locks.destinations(req, names, names_final=bool(plan.get("names_final")))


def ask_azure(deps: Deps, checked: Checked) -> StageResult | None:
    """Azure's own validation of the checked plan; the rejection (explained, with the fix) or None."""
    req, vault, bi, plan = checked.req, checked.vault, checked.bi, checked.plan
    assert req is not None and vault is not None and bi is not None and plan is not None
    try:
        _ask_azure(deps.dp, req, plan, bi, vault, checked.location, checked.needs_rehydration)
    except AzureRejection as exc:
        ex = explain(exc.code, exc.message, request=req, principal_id=identity_principal(vault, checked.identity),
                     azure_fix=exc.fix, identity=identity_label(checked.identity),
                     vault_subscription=bi.vault.subscription)
        return _reject(ex.code, ex.message, ex.fix)
    return None


def busy_rejection(destination: str, holder: str) -> StageResult:
    return _reject("DestinationBusy",
                   f"restore {holder} is already restoring into {locks.describe_key(destination)}; one restore at a "
                   "time per destination", f"wait for restore {holder} to end (GET /api/restores/{holder}), or "
                                           "choose another target name or file prefix")


def run(rec: RestoreRecord, deps: Deps, claim: Claim) -> StageResult:
    req = request_of(rec)
    checked = check(req, deps, rec)
    facts = checked.facts
    if checked.rejection is not None:
        return checked.rejection
    keys = lock_keys(req, facts)
    held = locks.take(deps, rec.id, keys)
    if held is not None:
        return busy_rejection(*held)
    facts["locks"] = keys
    rejection = ask_azure(deps, checked)
    if rejection is not None:
        rejection.changes = facts  # with the locks: finish releases them
        return rejection
    point, warnings, identity = checked.point, checked.warnings, checked.identity
    assert point is not None
    outcome = Outcome.NEEDS_REHYDRATION if checked.needs_rehydration else Outcome.READY
    tier_note = ("archive tier: rehydration needed" if checked.needs_rehydration else
                 "archive tier, already rehydrated" if point.tier == Tier.ARCHIVE else "vault tier")
    notes = gaps.before_note(req, facts.get("data_loss_gap_seconds"))
    notes += "".join(f"; WARNING {w['code']}: {w['message']}" for w in warnings)
    as_identity = f" as the vault's {identity_label(identity)}" if identity else ""
    return StageResult(outcome, f"validated: recovery point {point.id} of {point.time.isoformat()} ({tier_note}), "
                                f"restore to {checked.location}{checked.region_note}{as_identity}{notes}",
                       changes=facts)
