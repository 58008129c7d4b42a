"""BackupInstancesExtensionRouting_List through the real SDK: the backup instances protecting a resource."""

from __future__ import annotations

from azure.mgmt.dataprotection.models import BackupInstanceResource

from .conftest import BI_FLEX, BI_SALES, SUB1

PG = f"/subscriptions/{SUB1}/resourceGroups/rg-data/providers/Microsoft.DBforPostgreSQL"


def test_instances_of_a_database_and_of_a_flexible_server(client):
    found = list(client.backup_instances_extension_routing.list(f"{PG}/servers/pgsrv01/databases/salesdb"[1:]))
    assert [b.name for b in found] == [BI_SALES] and isinstance(found[0], BackupInstanceResource)
    assert found[0].properties.data_source_info.resource_id.endswith("/databases/salesdb")
    flex = list(client.backup_instances_extension_routing.list(f"{PG}/flexibleServers/pgflex01"[1:]))
    assert [b.name for b in flex] == [BI_FLEX]


def test_a_single_server_lists_the_instances_of_its_databases_in_every_vault(client):
    names = {b.name for b in client.backup_instances_extension_routing.list(f"{PG}/servers/pgsrv01"[1:])}
    assert BI_SALES in names and "pgsrv01-hrdb-6f1c2d3e-0000-4000-8000-000000000003" in names  # bv-prod and bv-lrs
    assert BI_FLEX not in names


def test_an_unprotected_resource_has_none_and_a_vault_list_is_not_taken_for_it(client):
    assert list(client.backup_instances_extension_routing.list(f"{PG}/servers/nosuchserver"[1:])) == []
    assert {b.name for b in client.backup_instances.list("rg-backup", "bv-prod")} >= {BI_SALES, BI_FLEX}
