"""Named restore requests against the demo world (``localdev/worlds/demo.yaml``), shared by the demo, the
integration tests and the benchmarks, plus small helpers to check what a restore brought back."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

SUB_BACKUP = "00000000-0000-0000-0000-000000000001"
SUB_TARGETS = "00000000-0000-0000-0000-000000000002"
VAULT = f"/subscriptions/{SUB_BACKUP}/resourceGroups/rg-backup/providers/Microsoft.DataProtection/backupVaults/bv-prod"
VAULT_LRS = VAULT.rsplit("/", 1)[0] + "/bv-lrs"
BI_SALES = f"{VAULT}/backupInstances/pgsrv01-salesdb-6f1c2d3e-0000-4000-8000-000000000001"
BI_FLEX = f"{VAULT}/backupInstances/pgflex01-6f1c2d3e-0000-4000-8000-000000000002"
BI_EXT = f"{VAULT}/backupInstances/pgsrv01-extdb-6f1c2d3e-0000-4000-8000-000000000008"  # uses dblink
BI_HR_LRS = f"{VAULT_LRS}/backupInstances/pgsrv01-hrdb-6f1c2d3e-0000-4000-8000-000000000003"
_VAULTS = VAULT.rsplit("/", 1)[0]
# Azure-fidelity vaults of the demo world (one special property each; docs/emulator.md)
VAULT_PARTIAL = f"{_VAULTS}/bv-partial"
BI_CRM_PARTIAL = f"{VAULT_PARTIAL}/backupInstances/pgsrv01-crmdb-6f1c2d3e-0000-4000-8000-000000000004"
VAULT_UAMI = f"{_VAULTS}/bv-uami"
BI_BILLING_UAMI = f"{VAULT_UAMI}/backupInstances/pgsrv01-billingdb-6f1c2d3e-0000-4000-8000-000000000005"
UAMI_PRINCIPAL = "44444444-4444-4444-8444-444444444444"
VAULT_CSR_OFF = f"{_VAULTS}/bv-csr-off"
BI_OPS_CSR_OFF = f"{VAULT_CSR_OFF}/backupInstances/pgsrv01-opsdb-6f1c2d3e-0000-4000-8000-000000000006"
VAULT_GEO_NOREPL = f"{_VAULTS}/bv-geo-norepl"
BI_GEO_NOREPL = f"{VAULT_GEO_NOREPL}/backupInstances/pgsrv01-geodb-6f1c2d3e-0000-4000-8000-000000000007"
CONTAINER_SUB1_URL = "https://stpgsub1we.blob.core.windows.net/pg-restores"
CONTAINER_SUB1_ID = (f"/subscriptions/{SUB_BACKUP}/resourceGroups/rg-backup-targets/providers/Microsoft.Storage/"
                     "storageAccounts/stpgsub1we/blobServices/default/containers/pg-restores")
SRC_SERVER = f"/subscriptions/{SUB_BACKUP}/resourceGroups/rg-data/providers/Microsoft.DBforPostgreSQL/servers/pgsrv01"
SRC_SALES_DB = f"{SRC_SERVER}/databases/salesdb"
_PG = f"/subscriptions/{SUB_TARGETS}/resourceGroups/rg-target/providers/Microsoft.DBforPostgreSQL/servers"
TARGET_SERVER = f"{_PG}/pgsrv-restore"
TARGET_NOREADER = f"{_PG}/pgsrv-noreader"
TARGET_LEGACY = f"{_PG}/pgsrv-legacy"
TARGET_DR = f"/subscriptions/{SUB_TARGETS}/resourceGroups/rg-dr/providers/Microsoft.DBforPostgreSQL/servers/pgsrv-dr"
SECRET_RESTORE = "https://kv-restore-we.vault.azure.net/secrets/pgsrv-restore-conn"
SECRET_NOREADER = "https://kv-restore-we.vault.azure.net/secrets/pgsrv-noreader-conn"
SECRET_LEGACY = "https://kv-restore-we.vault.azure.net/secrets/pgsrv-legacy-conn"
SECRET_DR = "https://kv-dr-ne.vault.azure.net/secrets/pgsrv-dr-conn"
CONTAINER_WE_URL = "https://stpgrestorewe.blob.core.windows.net/pg-restores"
CONTAINER_WE_ID = (f"/subscriptions/{SUB_TARGETS}/resourceGroups/rg-target/providers/Microsoft.Storage/storageAccounts/"
                   "stpgrestorewe/blobServices/default/containers/pg-restores")
CONTAINER_LOCKED_URL = "https://stpgrestorewe.blob.core.windows.net/pg-locked"
CONTAINER_NE_URL = "https://stpgrestorene.blob.core.windows.net/pg-restores"
AZURITE_CONTAINER = {CONTAINER_WE_URL: "stpgrestorewe-pg-restores", CONTAINER_NE_URL: "stpgrestorene-pg-restores",
                     CONTAINER_LOCKED_URL: "stpgrestorewe-pg-locked", CONTAINER_SUB1_URL: "stpgsub1we-pg-restores"}
# restore into a server (issue 12): the Flexible-Server-like target and its Key Vault secret (pgadmin's connection)
TARGET_FLEX = (f"/subscriptions/{SUB_TARGETS}/resourceGroups/rg-target/providers/Microsoft.DBforPostgreSQL/"
               "flexibleServers/pgflex-target")
SRC_FLEX = (f"/subscriptions/{SUB_BACKUP}/resourceGroups/rg-data/providers/Microsoft.DBforPostgreSQL/flexibleServers/"
            "pgflex01")
SECRET_FLEX_TARGET = "https://kv-restore-we.vault.azure.net/secrets/pgflex-target-conn"
STAGING_WE = "stpgstagingwe-restore-staging"  # the Azurite container of the west-europe staging account
CLUSTER_OF_SERVER = {TARGET_SERVER: "pgsrv-restore", TARGET_DR: "pgsrv-dr", SRC_SERVER: "pgsrv01",
                     TARGET_NOREADER: "pgsrv-noreader", TARGET_LEGACY: "pgsrv-legacy"}


def as_database(name: str, *, server: str = TARGET_SERVER, secret: str = SECRET_RESTORE, bi: str = BI_SALES,
                **extra: Any) -> dict[str, Any]:
    return {"backup_instance": {"id": bi},
            "target": {"kind": "database", "server_id": server, "database_name": name, "secret_uri": secret},
            **extra}


def as_files(prefix: str, *, bi: str = BI_FLEX, url: str = CONTAINER_WE_URL, container_id: str | None = CONTAINER_WE_ID,
             **extra: Any) -> dict[str, Any]:
    target: dict[str, Any] = {"kind": "files", "container_url": url, "file_prefix": prefix}
    if container_id:
        target["container_id"] = container_id
    return {"backup_instance": {"id": bi}, "target": target, **extra}


def into_server(*, bi: str = BI_FLEX, server: str = TARGET_FLEX, **target: Any) -> dict[str, Any]:
    """Restore into a server: the vault's files land in our staging container, then we replay them."""
    extra = {k: target.pop(k) for k in ("recovery_point", "region", "description", "idempotency_key")
             if k in target}
    return {"backup_instance": {"id": bi}, "target": {"kind": "server", "server_id": server, **target}, **extra}


def alert_plan(database_pattern: str = "salesdb_alert_{alert_short}") -> dict[str, Any]:
    """RESTORE_PLANS value: the source server's alerts restore salesdb (latest point before the alert fired)."""
    return {SRC_SERVER: {"backup_instance": {"id": BI_SALES},
                         "target": {"kind": "database", "server_id": TARGET_SERVER, "secret_uri": SECRET_RESTORE,
                                    "database_name": database_pattern},
                         "recovery_point": "latest_before_alert", "region": "primary"}}


def alert_payload(alert_guid: str, fired: datetime, *, condition: str = "Fired",
                  target: str = SRC_SERVER) -> dict[str, Any]:
    """An Azure Monitor common-alert-schema payload (as an action group would deliver it)."""
    return {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {
            "essentials": {
                "alertId": f"/subscriptions/{SUB_BACKUP}/providers/Microsoft.AlertsManagement/alerts/{alert_guid}",
                "alertRule": "pgsrv01-data-corruption",
                "severity": "Sev1",
                "signalType": "Log",
                "monitorCondition": condition,
                "monitoringService": "Log Analytics",
                "alertTargetIDs": [target.lower()],
                "configurationItems": ["pgsrv01"],
                "originAlertId": alert_guid,
                "firedDateTime": fired.astimezone(UTC).isoformat().replace("+00:00", "Z"),
                "description": "corrupted rows detected in salesdb",
                "essentialsVersion": "1.0",
                "alertContextVersion": "1.0",
            },
            "alertContext": {"condition": {"windowSize": "PT5M"}},
        },
    }


def days_ago(n: float) -> datetime:
    return datetime.now(UTC) - timedelta(days=n)


def plans_setting(plans: Mapping[str, Any]) -> str:
    return json.dumps(plans, separators=(",", ":"))
