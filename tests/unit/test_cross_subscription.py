"""Cross-subscription restore Disabled/PermanentlyDisabled on the vault: a files target needs ``container_id`` (the
container's ARM id), and targets in another subscription are refused before anything is asked of Azure."""

from __future__ import annotations

from dataclasses import replace

import pytest
from azure.mgmt.dataprotection import models as m

from restore_core.arm_ids import parse_vault_id
from restore_core.dp_client import DataProtection
from restore_core.models import Stage, Status

from .fakes import CONTAINER_ID, CONTAINER_URL, SUB, TARGET_SERVER_ID, VAULT_ID, Harness, database_body, files_body

OWN_CONTAINER_ID = CONTAINER_ID.replace("00000000-0000-0000-0000-000000000002", SUB)
OWN_SERVER_ID = TARGET_SERVER_ID.replace("00000000-0000-0000-0000-000000000002", SUB)


def csr(state: str | None) -> Harness:
    h = Harness()
    h.dp.vault = replace(h.dp.vault, csr_state=state)
    return h


def files_without_id() -> dict:
    return {"backup_instance": files_body()["backup_instance"],
            "target": {"kind": "files", "container_url": CONTAINER_URL, "file_prefix": "ops"}}


def test_the_vault_setting_is_read_from_azure() -> None:
    class Vaults:
        def get(self, rg: str, name: str) -> m.BackupVaultResource:
            return m.BackupVaultResource({"id": VAULT_ID, "location": "westeurope", "properties": {
                "featureSettings": {"crossSubscriptionRestoreSettings": {"state": "PermanentlyDisabled"}}}})

    class Client:
        backup_vaults = Vaults()

    dp = DataProtection(Harness().settings, credential=object())  # type: ignore[arg-type]
    dp._clients[SUB] = Client()  # type: ignore[assignment]
    info = dp.get_vault(parse_vault_id(VAULT_ID))
    assert info.csr_state == "PermanentlyDisabled" and not info.cross_subscription_restore
    assert replace(info, csr_state=None).cross_subscription_restore  # not reported: Azure's default, Enabled


@pytest.mark.parametrize("state", ["Disabled", "PermanentlyDisabled"])
def test_files_without_container_id_are_rejected_naming_the_field(state: str) -> None:
    h = csr(state)
    h.submit(files_without_id())
    rec = h.run()
    assert rec.status is Status.REJECTED and rec.error_code == "TargetContainerIdRequired"
    assert (rec.error_message or "").startswith("target.container_id is required")
    assert "stpgrestore01" in (rec.error_fix or "") and "/blobServices/default/containers/pg-restores" in \
        (rec.error_fix or "")
    assert h.dp.calls["validate_restore"] == 0 and h.dp.trigger_calls == 0


def test_files_into_another_subscription_are_rejected_with_both_ways_out() -> None:
    h = csr("Disabled")
    h.submit(files_body())  # the fake's container is in subscription ...0002, the vault in ...0001
    rec = h.run()
    assert rec.status is Status.REJECTED and rec.error_code == "CrossSubscriptionRestoreDisabled"
    assert "target.container_id" in (rec.error_message or "")
    assert SUB in (rec.error_fix or "") and "crossSubscriptionRestoreSettings.state=Enabled" in (rec.error_fix or "")
    assert h.dp.calls["validate_restore"] == 0


def test_permanently_disabled_does_not_suggest_enabling_it() -> None:
    h = csr("PermanentlyDisabled")
    h.submit(database_body())
    rec = h.run()
    assert rec.error_code == "CrossSubscriptionRestoreDisabled" and "target.server_id" in (rec.error_message or "")
    assert "cannot be enabled again" in (rec.error_fix or "") and "az resource update" not in (rec.error_fix or "")


def test_targets_in_the_vaults_subscription_restore() -> None:
    h = csr("Disabled")
    h.submit(files_body(target={"kind": "files", "container_url": CONTAINER_URL, "container_id": OWN_CONTAINER_ID,
                                "file_prefix": "ops"}))
    h.run(until=Stage.MONITOR)
    assert h.record().status is Status.RESTORING and h.dp.trigger_calls == 1
    h2 = csr("Disabled")
    h2.submit(database_body(target={**database_body()["target"], "server_id": OWN_SERVER_ID}))
    h2.run(until=Stage.MONITOR)
    assert h2.dp.trigger_calls == 1


@pytest.mark.parametrize("state", ["Enabled", None])
def test_enabled_or_unreported_setting_changes_nothing(state: str | None) -> None:
    h = csr(state)
    h.submit(files_without_id())
    h.run(until=Stage.MONITOR)
    assert h.dp.trigger_calls == 1
