"""Rendering: the ARM JSON of vaults, backup instances, recovery points, jobs and long-running operations.

Consumes: the world, the emulator's state objects and the simulated time of the call. Produces: dicts shaped as
the ``azure-mgmt-dataprotection`` SDK deserialises them (discriminators, ``ID`` spellings and the service's own
``dataTransferedInBytes`` typo as documented in ``docs/emulator.md``). Nothing here changes state.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any

from .model import Job, Operation, RecoveryPoint, user_facing_error
from .timeutil import format_duration, iso
from .world import FLEXIBLE, SINGLE, BackupInstance, Settings, Vault, World

RP_TYPE = "Microsoft.DataProtection/backupVaults/backupInstances/recoveryPoints"
JOB_TYPE = "Microsoft.DataProtection/BackupVaults/backupJobs"
NULL_TIME = "0001-01-01T00:00:00Z"


def identity_json(v: Vault) -> dict[str, Any]:
    out: dict[str, Any] = {"type": v.identity_type, "principalId": v.principal_id,
                           "tenantId": v.tenant_id if v.principal_id else None}
    if v.user_identities:
        out["userAssignedIdentities"] = {u.id: {"principalId": u.principal_id, "clientId": u.client_id}
                                         for u in v.user_identities}
    return out


def vault_json(world: World, v: Vault) -> dict[str, Any]:
    secondary = world.region_pairs.get(v.location) if v.storage_redundancy == "GeoRedundant" else None
    return {
        "id": v.id, "name": v.name, "type": "Microsoft.DataProtection/backupVaults", "location": v.location,
        "tags": {}, "eTag": None,
        "identity": identity_json(v),
        "properties": {
            "provisioningState": "Succeeded",
            "storageSettings": [{"datastoreType": "VaultStore", "type": v.storage_redundancy}],
            "featureSettings": {"crossRegionRestoreSettings": {"state": v.cross_region_restore},
                                "crossSubscriptionRestoreSettings": {"state": v.cross_subscription_restore}},
            "replicatedRegions": v.replicated_regions if v.replicated_regions is not None else
                                 [secondary] if secondary else [],
            "securitySettings": {"softDeleteSettings": {"state": "On", "retentionDurationInDays": 14},
                                 "immutabilitySettings": {"state": "Disabled"}},
            "monitoringSettings": {"azureMonitorAlertSettings": {"alertsForAllJobFailures": "Enabled"}},
            "isVaultProtectedByResourceGuard": False, "secureScore": "Adequate", "bcdrSecurityLevel": "Good",
            "resourceMoveState": "Unknown",
        },
    }


def bi_json(world: World, v: Vault, b: BackupInstance) -> dict[str, Any]:
    srv = world.servers[b.server_id.lower()]
    set_type = "Microsoft.DBforPostgreSQL/servers" if b.datasource_type == SINGLE else FLEXIBLE
    ds_name = b.database if b.database else srv.name
    return {
        "id": b.id, "name": b.name, "type": "Microsoft.DataProtection/backupVaults/backupInstances", "tags": {},
        "properties": {
            "objectType": "BackupInstance",
            "friendlyName": f"{srv.name}\\{b.database}" if b.database else srv.name,
            "dataSourceInfo": {"objectType": "Datasource", "resourceID": b.datasource_id,
                               "resourceName": ds_name, "resourceType": b.datasource_type,
                               "resourceLocation": srv.location, "datasourceType": b.datasource_type,
                               "resourceUri": ""},
            "dataSourceSetInfo": {"objectType": "DatasourceSet", "resourceID": srv.id, "resourceName": srv.name,
                                  "resourceType": set_type, "resourceLocation": srv.location,
                                  "datasourceType": b.datasource_type, "resourceUri": ""},
            "policyInfo": {"policyId": f"{v.id}/backupPolicies/{b.policy}", "policyVersion": "",
                           "policyParameters": {"dataStoreParametersList": []}},
            "protectionStatus": {"status": "ProtectionConfigured"},
            "currentProtectionState": "ProtectionConfigured",
            "provisioningState": "Succeeded",
            "validationType": "ShallowValidation",
            **({"identityDetails": {"useSystemAssignedIdentity": False, "userAssignedIdentityArmUrl": b.identity}}
               if b.identity else {}),
        },
    }


def _db_name(settings: Settings, b: BackupInstance, rp: RecoveryPoint) -> str | list[str] | None:
    """``dbName`` of the point's metadata: the database of a Single Server point (Azure's example); for a Flexible
    Server point the list of its databases, or nothing (config ``flexible_point_db_names``: undocumented)."""
    if b.datasource_type != FLEXIBLE:
        return rp.databases[0]
    return rp.databases if settings.flexible_point_db_names else None


def rp_json(settings: Settings, b: BackupInstance, rp: RecoveryPoint, now: datetime) -> dict[str, Any]:
    meta = json.dumps({"objectType": "PostgresBackupMetadata", "version": "1.0",
                       "postgresVersion": str(rp.postgres_version),
                       "dbName": _db_name(settings, b, rp),
                       "serverName": rp.server_name, "backupType": "Full", "backupDumpFormat": "CUSTOM",
                       "bytesTransferred": sum(rp.files.values()), "dataSourceSize": sum(rp.files.values())})
    stores: list[dict[str, Any]] = []
    if rp.tier == "archive":
        status, expiry = rp.rehydration_status(now)
        shown_expiry = iso(expiry) if expiry and status == "COMPLETED" else None
        where = settings.rehydration_reported_on
        on_archive = "archive_entry" in where
        store = {"id": rp.datastore_id, "type": "ArchiveStore", "creationTime": iso(rp.time + timedelta(days=7)),
                 "expiryTime": iso(rp.time + timedelta(days=5 * 365)), "metaData": meta, "state": "COMMITTED",
                 "visible": True, "rehydrationExpiryTime": shown_expiry if on_archive else None,
                 "rehydrationStatus": status if on_archive else None}
        expiry_time = rp.time + timedelta(days=5 * 365)
        if "vault_entry" in where and status is not None:
            stores.append({"id": f"{rp.datastore_id}-rehydrated", "type": "VaultStore",
                           "creationTime": iso(rp.rehydration["started"]) if rp.rehydration else None,
                           "expiryTime": shown_expiry, "metaData": meta, "state": "COMMITTED",
                           "visible": status == "COMPLETED", "rehydrationExpiryTime": shown_expiry,
                           "rehydrationStatus": status})
    else:
        expiry_time = rp.time + timedelta(days=90)
        store = {"id": rp.datastore_id, "type": "VaultStore", "creationTime": iso(rp.time),
                 "expiryTime": iso(expiry_time), "metaData": meta, "state": "COMMITTED", "visible": True,
                 "rehydrationExpiryTime": None, "rehydrationStatus": None}
    return {
        "id": f"{b.id}/recoveryPoints/{rp.id}", "name": rp.id, "type": RP_TYPE,
        "properties": {
            "objectType": "AzureBackupDiscreteRecoveryPoint", "recoveryPointId": rp.id,
            "recoveryPointTime": iso(rp.time), "recoveryPointType": "Full", "friendlyName": rp.id,
            "policyName": b.policy, "policyVersion": None,
            "retentionTagName": "Monthly" if rp.tier == "archive" else "Default",
            "retentionTagVersion": "637671427933449525", "recoveryPointState": rp.state,
            "expiryTime": iso(expiry_time), "recoveryPointDataStoresDetails": [store, *stores],
        },
    }


def job_json(world: World, job: Job, now: datetime) -> dict[str, Any]:
    status, end = job.status(now)
    srv = world.servers[job.bi.server_id.lower()]
    m = re.match(r"^/subscriptions/([^/]+)/resourceGroups/([^/]+)/", job.bi.datasource_id, re.IGNORECASE)
    ds_sub, ds_rg = (m.group(1), m.group(2)) if m else ("", "")
    errors = None
    if status == "Failed":
        code, msg = job.forced_error or (job.work_error.code, str(job.work_error))  # type: ignore[union-attr]
        info = user_facing_error(code, msg)["additionalInfo"][0]["info"]
        errors = [info]
    sub_status = {"Completed": "Completed", "CompletedWithWarnings": "Completed", "Failed": "Failed",
                  "Cancelled": "Cancelled"}.get(status, "InProgress")
    total = sum(job.rp.files.values()) if job.rp else None
    share = job.progress(now, world.settings.job_progress) if status == "InProgress" else None
    subtasks = []
    for i, name in enumerate(job.subtasks, start=1):
        st = sub_status
        if status == "InProgress" and name == "Rehydrate" and job.rp and job.rp.rehydration and \
                now >= job.rp.rehydration["ready_at"] and "job_subtask" in world.settings.rehydration_reported_on:
            st = "Completed"
        shown = f"{int(share * 100)}%" if share is not None and st == "InProgress" else None
        subtasks.append({"taskId": i, "taskName": name, "taskStatus": st, "taskProgress": shown,
                         "additionalDetails": None})
    transferred = total if total is not None and sub_status == "Completed" else \
        int(share * total) if share is not None and total is not None else None
    etag_time = (end or now).strftime("%Y-%m-%dT%H%%3A%M%%3A%S.%fZ")
    return {
        "id": job.arm_id, "name": job.id, "type": JOB_TYPE,
        "properties": {
            "activityID": job.activity,
            "backupInstanceFriendlyName": f"{srv.name}\\{job.bi.database}" if job.bi.database else srv.name,
            "backupInstanceId": job.bi.id, "dataSourceId": job.bi.datasource_id,
            "dataSourceLocation": srv.location, "dataSourceName": job.bi.database or srv.name,
            "dataSourceSetName": srv.name, "dataSourceType": job.bi.datasource_type,
            "policyId": f"{job.vault.id}/backupPolicies/{job.bi.policy}", "policyName": job.bi.policy,
            "vaultName": job.vault.name, "subscriptionId": job.vault.subscription,
            "sourceSubscriptionID": ds_sub, "sourceResourceGroup": ds_rg,
            "operationCategory": job.category, "operation": job.operation, "status": status,
            "isUserTriggered": job.category != "Backup", "progressEnabled": False, "progressUrl": None,
            "restoreType": None, "rehydrationPriority": job.rehydration_priority,
            "sourceDataStoreName": "ArchiveStore" if job.operation == "Rehydrate" else None,
            "destinationDataStoreName": "VaultStore" if job.operation == "Rehydrate" else None,
            "startTime": iso(job.start), "endTime": iso(end) if end else None,
            "duration": format_duration((end or now) - job.start),
            "supportedActions": [""], "etag": f"W/\"datetime'{etag_time}'\"", "errorDetails": errors,
            "extendedInfo": {
                "additionalDetails": None, "backupInstanceState": None, "dataTransferedInBytes": transferred,
                "recoveryDestination": _destination(world.settings, job),
                "sourceRecoverPoint": {"recoveryPointID": job.rp.id, "recoveryPointTime": iso(job.rp.time)}
                if job.rp else None,
                "targetRecoverPoint": None, "subTasks": subtasks,
                "warningDetails": _warning_details(world, job) if status == "CompletedWithWarnings" else None,
            },
        },
    }


def _destination(settings: Settings, job: Job) -> str | None:
    fmt = settings.job_destination_format
    if fmt == "none" or not job.destination:
        return None
    return job.destination if fmt == "arm" else job.destination.rstrip("/").rsplit("/", 1)[-1]


def _warning_details(world: World, job: Job) -> list[dict[str, Any]]:
    assert job.behaviour is not None
    info = user_facing_error(job.behaviour.code, job.behaviour.message)["additionalInfo"][0]["info"]
    return [{"resourceName": job.bi.database or world.servers[job.bi.server_id.lower()].name,
             "warning": info}]


def op_status_json(op: Operation, now: datetime) -> dict[str, Any]:
    oid = f"/subscriptions/{op.subscription}/providers/Microsoft.DataProtection/locations/{op.location}" \
          f"/operationStatus/{op.id}"
    body: dict[str, Any] = {"id": oid, "name": op.id, "startTime": iso(op.start)}
    if now < op.ready_at:
        body.update(status="Inprogress", endTime=NULL_TIME)
    elif op.error:
        body.update(status="Failed", endTime=iso(op.ready_at), error=op.error)
    else:
        body.update(status="Succeeded", endTime=iso(op.ready_at))
        if op.result_kind != "none":
            body["properties"] = op_result_json(op)
    return body


def op_result_json(op: Operation) -> dict[str, Any]:
    out: dict[str, Any] = {"objectType": "OperationJobExtendedInfo"}
    if op.job_id:
        out["jobId"] = op.job_id
    return out
