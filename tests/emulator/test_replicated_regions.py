"""A geo-redundant vault that lists no ``replicatedRegions`` (as the az CLI allows for, with its paired-region
fallback): the vault shows the empty list, and Cross Region Restore into the Azure pair still works."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
import yaml
from azure.mgmt.dataprotection.models import (
    CrossRegionRestoreDetails,
    CrossRegionRestoreJobRequest,
    CrossRegionRestoreRequestObject,
    FetchSecondaryRPsRequestParameters,
)
from azure.storage.blob import BlobServiceClient

from localdev.dpemu.world import WorldError, parse_world

from .conftest import RG, SUB1, VAULT, WORLD
from .helpers import files_target, new_name, rp_request

VAULT_GEO = "bv-geo-norepl"
VAULT_GEO_ID = f"/subscriptions/{SUB1}/resourceGroups/{RG}/providers/Microsoft.DataProtection/backupVaults/{VAULT_GEO}"
BI_GEO_ID = f"{VAULT_GEO_ID}/backupInstances/pgsrv01-geodb-6f1c2d3e-0000-4000-8000-000000000007"


def test_the_vault_lists_no_replicated_regions_while_others_list_their_pair(client):
    geo = client.backup_vaults.get(RG, VAULT_GEO)
    assert geo.properties.replicated_regions == []
    assert geo.properties.feature_settings.cross_region_restore_settings.state == "Enabled"
    assert client.backup_vaults.get(RG, VAULT).properties.replicated_regions == ["northeurope"]


def test_cross_region_restore_into_the_azure_pair_still_works(emu, client):
    points = list(client.fetch_secondary_recovery_points.list(
        RG, "northeurope", FetchSecondaryRPsRequestParameters(source_region="westeurope",
                                                              source_backup_instance_id=BI_GEO_ID)))
    prefix = new_name("geo").replace("_", "-")
    body = CrossRegionRestoreRequestObject(
        restore_request_object=rp_request(points[0].name, files_target("stpgrestorene", "pg-restores", prefix,
                                                                       location="northeurope")),
        cross_region_restore_details=CrossRegionRestoreDetails(source_region="westeurope",
                                                               source_backup_instance_id=BI_GEO_ID))
    job_id = client.backup_instances.begin_trigger_cross_region_restore(RG, "northeurope", body).result().job_id
    req = CrossRegionRestoreJobRequest(source_region="westeurope", source_backup_vault_id=VAULT_GEO_ID,
                                       job_id=job_id.rsplit("/", 1)[-1])
    deadline = time.time() + 60
    while (job := client.fetch_cross_region_restore_job.get(RG, "northeurope", req)).properties.status == "InProgress":
        assert time.time() < deadline
        time.sleep(0.1)
    assert job.properties.status == "Completed", job.properties.error_details
    blobs = BlobServiceClient.from_connection_string(emu.storage).get_container_client("stpgrestorene-pg-restores")
    assert [b.name for b in blobs.list_blobs(name_starts_with=prefix)] == [f"{prefix}.dump"]


def test_world_rejects_replicated_regions_that_are_not_a_list():
    raw = yaml.safe_load(WORLD.read_text())
    next(v for v in raw["vaults"] if v["id"].endswith("/" + VAULT_GEO))["replicated_regions"] = "northeurope"
    with pytest.raises(WorldError, match="replicated_regions: give a list"):
        parse_world(raw, datetime(2026, 11, 24, tzinfo=UTC))
