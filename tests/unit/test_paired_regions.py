"""Cross Region Restore from a vault that lists no ``replicatedRegions``: the Azure paired region (the az CLI's
fallback table) is used instead of rejecting, and the timeline says so."""

from __future__ import annotations

from dataclasses import replace

from azure.mgmt.dataprotection import models as m

from restore_core.arm_ids import parse_vault_id
from restore_core.dp_client import DataProtection
from restore_core.models import Stage, Status
from restore_core.regions import PAIRED_REGIONS, paired_region

from .fakes import SUB, VAULT_ID, Harness, database_body


def test_the_table_is_the_az_cli_pairs() -> None:
    assert paired_region("westeurope") == "northeurope" and paired_region("North Europe") == "westeurope"
    assert paired_region("westus3") == "eastus" and paired_region("brazilsouth") == "southcentralus"
    assert paired_region("mars") is None
    assert len(PAIRED_REGIONS) == 69 and all(k == k.lower() and " " not in k for k in PAIRED_REGIONS)


def _vault_with(replicated: list[str] | None) -> str | None:
    class Vaults:
        def get(self, rg: str, name: str) -> m.BackupVaultResource:
            props = {"featureSettings": {"crossRegionRestoreSettings": {"state": "Enabled"}},
                     "storageSettings": [{"datastoreType": "VaultStore", "type": "GeoRedundant"}]}
            if replicated is not None:
                props["replicatedRegions"] = replicated
            return m.BackupVaultResource({"id": VAULT_ID, "location": "westeurope", "properties": props})

    class Client:
        backup_vaults = Vaults()

    dp = DataProtection(Harness().settings, credential=object())  # type: ignore[arg-type]
    dp._clients[SUB] = Client()  # type: ignore[assignment]
    return dp.get_vault(parse_vault_id(VAULT_ID)).secondary_region


def test_only_a_single_listed_region_counts_as_the_vaults_secondary() -> None:
    assert _vault_with(["NorthEurope"]) == "northeurope"
    assert _vault_with([]) is None and _vault_with(None) is None
    assert _vault_with(["northeurope", "uksouth"]) is None  # the CLI falls back to the table here too


def test_crr_from_a_vault_without_replicated_regions_goes_to_the_paired_region() -> None:
    h = Harness()
    h.dp.vault = replace(h.dp.vault, secondary_region=None)
    h.submit(database_body(region="secondary"))
    h.run(until=Stage.MONITOR)
    rec = h.record()
    assert rec.status is Status.RESTORING and rec.restore_location == "northeurope"
    assert h.dp.calls["trigger_cross_region_restore"] == 1
    validated = next(e for e in h.store.timeline(rec.id) if "validated" in e.message)
    assert "lists no replicatedRegions" in validated.message and "paired region" in validated.message


def test_a_region_without_a_known_pair_is_rejected_with_the_reason() -> None:
    h = Harness()
    h.dp.vault = replace(h.dp.vault, secondary_region=None, location="marsnorth")
    h.submit(database_body(region="secondary"))
    rec = h.run()
    assert rec.status is Status.REJECTED and rec.error_code == "SecondaryRegionUnknown"
    assert "marsnorth" in (rec.error_message or "") and h.dp.calls["fetch_secondary_recovery_points"] == 0
