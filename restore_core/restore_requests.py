"""The restore plan: what one restore asks of Azure, resolved by the validate stage and kept on the restore row.

SDK-free on purpose: stages hand a :class:`RestorePlan` to the backup service port
(:class:`restore_core.ports.BackupService`); only the Data Protection adapter (:mod:`restore_core.dp_client`) turns
it into Azure's request objects.
"""

from __future__ import annotations

from dataclasses import dataclass

from .models import DatabaseTarget, FilesTarget

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


def destination_of(plan_target: DatabaseTarget | FilesTarget) -> str:
    """What a restore job reports as its destination, to recognise a job this restore already started."""
    if isinstance(plan_target, DatabaseTarget):
        return plan_target.database_id
    return f"{plan_target.container_url}/{plan_target.file_prefix}"
