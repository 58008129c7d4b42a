"""Builds the exact Azure request objects for each restore case. Pure: no I/O, unit-tested case by case.

Cases: restore as database (Key Vault secret credentials) or as files (container + prefix); source VaultStore or a
rehydrated ArchiveStore point; primary region or Cross Region Restore (wrapped with the source region and backup
instance); the vault's system-assigned identity (no ``identityDetails``) or a user-assigned one.
``recoveryOption`` is always ``FailIfExists``: a restore never overwrites anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from azure.mgmt.dataprotection import models as m

from .models import DatabaseTarget, FilesTarget, Rehydration

SINGLE_SERVER_DB = "Microsoft.DBforPostgreSQL/servers/databases"
FLEXIBLE_SERVER = "Microsoft.DBforPostgreSQL/flexibleServers"


@dataclass(frozen=True)
class RestorePlan:
    """Everything the builder needs, resolved by the validate stage and stored on the restore row."""

    backup_instance_id: str
    source_datasource_id: str | None
    datasource_type: str
    recovery_point_id: str
    source_store: str  # "VaultStore" | "ArchiveStore"
    restore_location: str
    target: DatabaseTarget | FilesTarget
    identity_id: str | None = None  # user-assigned identity to restore with (None: the vault's system identity)


def _server_name(server_id: str) -> str:
    return server_id.rstrip("/").rsplit("/", 1)[-1]


def target_info(plan: RestorePlan) -> m.RestoreTargetInfoBase:
    t = plan.target
    if isinstance(t, DatabaseTarget):
        return m.RestoreTargetInfo(
            recovery_option="FailIfExists",
            restore_location=plan.restore_location,
            datasource_info=m.Datasource(
                object_type="Datasource",
                resource_id=t.database_id,
                resource_name=t.database_name,
                resource_type=SINGLE_SERVER_DB,
                resource_location=plan.restore_location,
                datasource_type=plan.datasource_type,
            ),
            datasource_set_info=m.DatasourceSet(
                object_type="DatasourceSet",
                resource_id=t.server_id,
                resource_name=_server_name(t.server_id),
                resource_type="Microsoft.DBforPostgreSQL/servers",
                resource_location=plan.restore_location,
                datasource_type=plan.datasource_type,
            ),
            datasource_auth_credentials=m.SecretStoreBasedAuthCredentials(
                secret_store_resource=m.SecretStoreResource(secret_store_type="AzureKeyVault",  # noqa: S106
                                                            uri=t.secret_uri),
            ),
        )
    details = m.TargetDetails(file_prefix=t.file_prefix, restore_target_location_type="AzureBlobs",
                              url=t.container_url)
    if t.container_id:
        details.target_resource_arm_id = t.container_id
    return m.RestoreFilesTargetInfo(recovery_option="FailIfExists", restore_location=plan.restore_location,
                                    target_details=details)


def restore_request(plan: RestorePlan, rehydration: Rehydration | None = None) \
        -> m.AzureBackupRecoveryPointBasedRestoreRequest:
    """The restore request; with ``rehydration``, the one-shot archive form (``AzureBackupRestoreWithRehydration
    Request`` from the ArchiveStore), which is what validation checks before a rehydration is started."""
    req: m.AzureBackupRecoveryPointBasedRestoreRequest
    if rehydration is not None:
        req = m.AzureBackupRestoreWithRehydrationRequest(
            source_data_store_type="ArchiveStore", recovery_point_id=plan.recovery_point_id,
            restore_target_info=target_info(plan), rehydration_priority=rehydration.priority.value,
            rehydration_retention_duration=f"P{rehydration.retention_days}D")
    else:
        req = m.AzureBackupRecoveryPointBasedRestoreRequest(
            source_data_store_type=plan.source_store,
            recovery_point_id=plan.recovery_point_id,
            restore_target_info=target_info(plan),
        )
    if plan.source_datasource_id:
        req.source_resource_id = plan.source_datasource_id
    if plan.identity_id:  # absent means "System Assigned" to Azure, so only a user-assigned identity is sent
        req.identity_details = m.IdentityDetails(use_system_assigned_identity=False,
                                                 user_assigned_identity_arm_url=plan.identity_id)
    return req


def validate_request(plan: RestorePlan, rehydration: Rehydration | None = None) -> m.ValidateRestoreRequestObject:
    return m.ValidateRestoreRequestObject(restore_request_object=restore_request(plan, rehydration))


def cross_region_request(plan: RestorePlan, source_region: str) -> m.CrossRegionRestoreRequestObject:
    return m.CrossRegionRestoreRequestObject(
        restore_request_object=restore_request(plan),
        cross_region_restore_details=m.CrossRegionRestoreDetails(
            source_region=source_region, source_backup_instance_id=plan.backup_instance_id),
    )


def validate_cross_region_request(plan: RestorePlan, source_region: str,
                                  rehydration: Rehydration | None = None) -> m.ValidateCrossRegionRestoreRequestObject:
    return m.ValidateCrossRegionRestoreRequestObject(
        restore_request_object=restore_request(plan, rehydration),
        cross_region_restore_details=m.CrossRegionRestoreDetails(
            source_region=source_region, source_backup_instance_id=plan.backup_instance_id),
    )


def rehydration_request(recovery_point_id: str, priority: str, retention_days: int) -> m.AzureBackupRehydrationRequest:
    return m.AzureBackupRehydrationRequest(recovery_point_id=recovery_point_id, rehydration_priority=priority,
                                           rehydration_retention_duration=f"P{retention_days}D")


def destination_of(plan_target: DatabaseTarget | FilesTarget) -> str:
    """What a restore job reports as its destination, to recognise a job this restore already started."""
    if isinstance(plan_target, DatabaseTarget):
        return plan_target.database_id
    return f"{plan_target.container_url}/{plan_target.file_prefix}"
