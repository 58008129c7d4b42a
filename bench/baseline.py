"""The comparison point: a restore script written the way the Azure SDK docs suggest.

List the recovery points, pick the latest, ``begin_validate_for_restore`` (LRO), ``begin_trigger_restore`` (LRO, the
job id is its result), then ``jobs.get`` every ``poll_seconds`` until the job is terminal. Nothing learned, no
batching; the SDK's own LRO polling (it honours ``Retry-After``) and retry policy. Runs against the emulator with its
own caller token, so its ARM calls are metered apart from the pipeline's.

``BaselineRestore(endpoint, token, ca_bundle).restore_as_database(bi_id, target_server_id, database, secret_uri,
location, poll_seconds)`` → :class:`BaselineResult` (final job status, seconds, job id).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from azure.mgmt.dataprotection import DataProtectionMgmtClient
from azure.mgmt.dataprotection import models as m

from restore_core.dp_client import StaticTokenCredential

SINGLE_SERVER_DB = "Microsoft.DBforPostgreSQL/servers/databases"
TERMINAL_JOB = {"Completed", "CompletedWithWarnings", "Failed", "Cancelled"}


@dataclass
class BaselineResult:
    status: str
    job_id: str
    seconds: float
    polls: int


def _parts(arm_id: str) -> dict[str, str]:
    segs = arm_id.strip("/").split("/")
    return {segs[i].lower(): segs[i + 1] for i in range(0, len(segs) - 1, 2)}


class BaselineRestore:
    def __init__(self, endpoint: str, token: str, ca_bundle: str) -> None:
        self.endpoint = endpoint
        self.credential = StaticTokenCredential(token)
        self.ca_bundle = ca_bundle

    def _client(self, subscription: str) -> DataProtectionMgmtClient:
        return DataProtectionMgmtClient(self.credential, subscription, base_url=self.endpoint,
                                        connection_verify=self.ca_bundle)

    def restore_as_database(self, backup_instance_id: str, target_server_id: str, database: str, secret_uri: str,
                            *, location: str, poll_seconds: float, timeout: float = 600) -> BaselineResult:
        t0 = time.monotonic()
        p = _parts(backup_instance_id)
        rg, vault, bi = p["resourcegroups"], p["backupvaults"], p["backupinstances"]
        client = self._client(p["subscriptions"])
        # 1. recovery points → latest
        points = list(client.recovery_points.list(rg, vault, bi))
        if not points:
            raise RuntimeError(f"no recovery points for {backup_instance_id}")
        latest = max(points, key=lambda rp: rp.properties.recovery_point_time)
        # 2. the request (restore as a new database on the target server, credentials from Key Vault)
        target = m.RestoreTargetInfo(
            recovery_option="FailIfExists", restore_location=location,
            datasource_info=m.Datasource(object_type="Datasource",
                                         resource_id=f"{target_server_id}/databases/{database}",
                                         resource_name=database, resource_type=SINGLE_SERVER_DB,
                                         resource_location=location, datasource_type=SINGLE_SERVER_DB),
            datasource_set_info=m.DatasourceSet(object_type="DatasourceSet", resource_id=target_server_id,
                                                resource_name=target_server_id.rsplit("/", 1)[-1],
                                                resource_type="Microsoft.DBforPostgreSQL/servers",
                                                resource_location=location, datasource_type=SINGLE_SERVER_DB),
            datasource_auth_credentials=m.SecretStoreBasedAuthCredentials(
                secret_store_resource=m.SecretStoreResource(secret_store_type="AzureKeyVault", uri=secret_uri)))  # noqa: S106
        request = m.AzureBackupRecoveryPointBasedRestoreRequest(
            source_data_store_type="VaultStore", recovery_point_id=latest.name, restore_target_info=target)
        # 3. validate (LRO), 4. trigger (LRO → job id)
        client.backup_instances.begin_validate_for_restore(
            rg, vault, bi, m.ValidateRestoreRequestObject(restore_request_object=request)).result()
        result: Any = client.backup_instances.begin_trigger_restore(rg, vault, bi, request).result()
        job_id = str(getattr(result, "job_id", "") or "")
        if not job_id:
            raise RuntimeError(f"trigger returned no job id: {result!r}")
        # 5. poll the job at a fixed interval until it ends
        polls = 0
        while True:
            job = client.jobs.get(rg, vault, job_id.rstrip("/").rsplit("/", 1)[-1])
            polls += 1
            status = str(job.properties.status)
            if status in TERMINAL_JOB:
                return BaselineResult(status, job_id, time.monotonic() - t0, polls)
            if time.monotonic() - t0 > timeout:
                return BaselineResult(f"timeout ({status})", job_id, time.monotonic() - t0, polls)
            time.sleep(poll_seconds)
