"""Request builders (real SDK models, so the wire format is the SDK's) and small waiting helpers."""

from __future__ import annotations

import time
import uuid
from typing import Any

from azure.mgmt.dataprotection import DataProtectionMgmtClient
from azure.mgmt.dataprotection.models import (
    AzureBackupJobResource,
    AzureBackupRecoveryPointBasedRestoreRequest,
    AzureBackupRestoreWithRehydrationRequest,
    Datasource,
    DatasourceSet,
    RestoreFilesTargetInfo,
    RestoreTargetInfo,
    SecretStoreBasedAuthCredentials,
    SecretStoreResource,
    TargetDetails,
)

from .conftest import BI_SALES, KV_WE, RG, TGT, VAULT

DB_TYPE = "Microsoft.DBforPostgreSQL/servers/databases"


def new_name(prefix: str = "r") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def db_target(server_id: str, dbname: str, secret_uri: str, location: str = "westeurope") -> RestoreTargetInfo:
    server = server_id.rsplit("/", 1)[-1]
    return RestoreTargetInfo(
        recovery_option="FailIfExists", restore_location=location,
        datasource_info=Datasource(resource_id=f"{server_id}/databases/{dbname}", resource_name=dbname,
                                   resource_type=DB_TYPE, resource_location=location, datasource_type=DB_TYPE,
                                   object_type="Datasource"),
        datasource_set_info=DatasourceSet(resource_id=server_id, resource_name=server,
                                          resource_type="Microsoft.DBforPostgreSQL/servers",
                                          resource_location=location, datasource_type=DB_TYPE,
                                          object_type="DatasourceSet"),
        datasource_auth_credentials=SecretStoreBasedAuthCredentials(
            secret_store_resource=SecretStoreResource(secret_store_type="AzureKeyVault", uri=secret_uri)))


def files_target(account: str, container: str, prefix: str, location: str = "westeurope") -> RestoreFilesTargetInfo:
    return RestoreFilesTargetInfo(
        recovery_option="FailIfExists", restore_location=location,
        target_details=TargetDetails(url=f"https://{account}.blob.core.windows.net/{container}", file_prefix=prefix,
                                     restore_target_location_type="AzureBlobs"))


def rp_request(rp_id: str, target: Any, store: str = "VaultStore") -> AzureBackupRecoveryPointBasedRestoreRequest:
    return AzureBackupRecoveryPointBasedRestoreRequest(recovery_point_id=rp_id, source_data_store_type=store,
                                                       restore_target_info=target)


def rehydration_request(rp_id: str, target: Any, priority: str = "Standard", duration: str = "P15D"
                        ) -> AzureBackupRestoreWithRehydrationRequest:
    return AzureBackupRestoreWithRehydrationRequest(
        recovery_point_id=rp_id, source_data_store_type="ArchiveStore", restore_target_info=target,
        rehydration_priority=priority, rehydration_retention_duration=duration)


def sales_db_target(dbname: str, server: str = "pgsrv-restore", secret_name: str = "pgsrv-restore-conn",  # noqa: S107
                    ) -> Any:
    return db_target(f"{TGT}/{server}", dbname, f"{KV_WE}/{secret_name}")


def rps(client: DataProtectionMgmtClient, bi: str = BI_SALES, vault: str = VAULT) -> list[Any]:
    return list(client.recovery_points.list(RG, vault, bi))


def vault_rp(client: DataProtectionMgmtClient, index: int = 0, bi: str = BI_SALES) -> Any:
    """index-th newest vault-tier recovery point."""
    pts = [r for r in rps(client, bi) if r.properties.recovery_point_data_stores_details[0].type == "VaultStore"]
    return pts[index]


def archive_rp(client: DataProtectionMgmtClient, bi: str = BI_SALES) -> Any:
    return next(r for r in rps(client, bi)
                if r.properties.recovery_point_data_stores_details[0].type == "ArchiveStore")


def wait_job(client: DataProtectionMgmtClient, job_id: str, vault: str = VAULT, timeout: float = 60
             ) -> AzureBackupJobResource:
    guid = job_id.rsplit("/", 1)[-1]
    deadline = time.time() + timeout
    while True:
        job = client.jobs.get(RG, vault, guid)
        if job.properties.status not in ("InProgress", "Started", "Cancelling", "Paused"):
            return job
        if time.time() > deadline:
            raise AssertionError(f"job {guid} still {job.properties.status} after {timeout}s")
        time.sleep(0.1)
