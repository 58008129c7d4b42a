"""User-assigned vault identities: the restore names the identity the backup instance uses (``identityDetails``) in
validate and trigger requests, and every permission fix grants that identity's principal."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from azure.mgmt.dataprotection import models as m
from azure.mgmt.dataprotection._utils.model_base import SdkJSONEncoder

from restore_core.arm_ids import parse_vault_id
from restore_core.deps import Memo
from restore_core.dp_client import DataProtection, _user_identities
from restore_core.errors import AzureRejection
from restore_core.models import Stage, Status
from restore_core.stages.common import cached_vault

from .fakes import BI_ID, PRINCIPAL_ID, Harness, database_body, files_body, settings

UAMI = ("/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-backup/providers/"
        "Microsoft.ManagedIdentity/userAssignedIdentities/id-restore")
UAMI_PRINCIPAL = "99999999-8888-4777-8666-555555555555"


def wire(obj: Any) -> dict[str, Any]:
    return json.loads(json.dumps(obj, cls=SdkJSONEncoder, exclude_readonly=True))


def uami_harness(*, instance_uses_it: bool = True, system: bool = True, principal: str = UAMI_PRINCIPAL) -> Harness:
    h = Harness()
    h.dp.vault = replace(h.dp.vault, principal_id=PRINCIPAL_ID if system else None,
                         user_identities={UAMI: principal} if principal else {UAMI: ""})
    if instance_uses_it:
        h.dp.instances = [replace(h.dp.instances[0], user_identity=UAMI.lower())]  # ARM ids compare case-blind
    return h


def test_vault_and_instance_identities_are_read_from_azure() -> None:
    vault = m.BackupVaultResource({"location": "westeurope", "properties": {}, "identity": {
        "type": "SystemAssigned,UserAssigned", "principalId": PRINCIPAL_ID,
        "userAssignedIdentities": {UAMI: {"principalId": UAMI_PRINCIPAL, "clientId": "c"}}}})
    assert _user_identities(vault.identity) == {UAMI: UAMI_PRINCIPAL}
    assert _user_identities(None) == {}
    dp = DataProtection(settings(), credential=object())  # type: ignore[arg-type]
    ds = {"resourceID": "x", "datasourceType": "Microsoft.DBforPostgreSQL/servers/databases"}
    bi = m.BackupInstanceResource({"id": BI_ID, "name": "bi", "properties": {
        "objectType": "BackupInstance", "dataSourceInfo": ds, "policyInfo": {"policyId": "p"},
        "identityDetails": {"useSystemAssignedIdentity": False, "userAssignedIdentityArmUrl": UAMI}}})
    assert dp._bi_info(bi).user_identity == UAMI
    bi.properties.identity_details = m.IdentityDetails(use_system_assigned_identity=True)
    assert dp._bi_info(bi).user_identity is None


def test_validate_and_trigger_name_the_instances_user_assigned_identity() -> None:
    h = uami_harness()
    h.submit()
    h.run(until=Stage.MONITOR)
    expected = {"useSystemAssignedIdentity": False, "userAssignedIdentityArmUrl": UAMI}
    assert wire(h.dp.validations[0])["restoreRequestObject"]["identityDetails"] == expected
    assert wire(h.dp.triggers[0])["identityDetails"] == expected
    rec = h.record()
    assert rec.identity_id == UAMI
    validated = next(e for e in h.store.timeline(rec.id) if "validated" in e.message)
    assert "user-assigned identity id-restore" in validated.message


def test_cross_region_requests_name_it_too() -> None:
    h = uami_harness()
    h.submit(database_body(region="secondary"))
    h.run(until=Stage.MONITOR)
    assert wire(h.dp.triggers[0])["restoreRequestObject"]["identityDetails"]["userAssignedIdentityArmUrl"] == UAMI


def test_system_identity_restores_send_no_identity_details() -> None:
    h = Harness()
    h.submit()
    h.run(until=Stage.MONITOR)
    assert "identityDetails" not in wire(h.dp.validations[0])["restoreRequestObject"]
    assert "identityDetails" not in wire(h.dp.triggers[0]) and h.record().identity_id is None


def test_a_vault_with_only_one_user_assigned_identity_restores_with_it() -> None:
    h = uami_harness(instance_uses_it=False, system=False)
    h.submit()
    h.run(until=Stage.MONITOR)
    assert wire(h.dp.triggers[0])["identityDetails"]["userAssignedIdentityArmUrl"] == UAMI


def test_several_user_identities_and_no_system_one_is_refused_before_azure() -> None:
    h = uami_harness(instance_uses_it=False, system=False)
    h.dp.vault = replace(h.dp.vault, user_identities={UAMI: UAMI_PRINCIPAL, UAMI + "2": "p2"})
    h.submit()
    rec = h.run()
    assert rec.status is Status.REJECTED and rec.error_code == "VaultIdentityAmbiguous"
    assert h.dp.calls["validate_restore"] == 0


def test_missing_reader_fix_grants_the_user_assigned_identity() -> None:
    h = uami_harness()
    h.dp.fail_before["validate_restore"] = [AzureRejection("UserErrorMSIMissingPermissions", "no Reader")]
    h.submit()
    rec = h.run()
    assert rec.status is Status.REJECTED and rec.error_code == "UserErrorMSIMissingPermissions"
    assert f"--assignee-object-id {UAMI_PRINCIPAL} " in (rec.error_fix or "")
    assert PRINCIPAL_ID not in (rec.error_fix or "")
    assert "user-assigned identity id-restore" in (rec.error_message or "")


def test_container_fix_at_trigger_time_grants_the_user_assigned_identity() -> None:
    h = uami_harness()
    h.dp.fail_before["trigger_restore"] = [AzureRejection("UserErrorContainerNotAccessible", "denied")]
    h.submit(files_body())
    rec = h.run()
    assert rec.status is Status.FAILED and rec.error_code == "UserErrorContainerNotAccessible"
    assert f"--assignee-object-id {UAMI_PRINCIPAL} " in (rec.error_fix or "")
    assert '"Storage Blob Data Contributor"' in (rec.error_fix or "")


def test_unknown_principal_of_the_identity_is_looked_up_in_the_fix() -> None:
    h = uami_harness(principal="")
    h.dp.fail_before["validate_restore"] = [AzureRejection("UserErrorMissingPermissionsOnSecretStore", "denied")]
    h.submit()
    rec = h.run()
    assert f"--assignee-object-id $(az identity show --ids {UAMI} --query principalId -o tsv) " in \
        (rec.error_fix or "")


def test_vault_identities_survive_the_vault_cache_row() -> None:
    h = uami_harness()
    first = cached_vault(h.deps, parse_vault_id(h.dp.vault.id))
    h.deps.memo = Memo()  # a new process: the row in the state table is all it has
    again = cached_vault(h.deps, parse_vault_id(h.dp.vault.id))
    assert again == first and again.user_identities == {UAMI: UAMI_PRINCIPAL}
    assert h.dp.calls["get_vault"] == 1
