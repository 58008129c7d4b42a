"""User-assigned vault identities: the vault and the backup instance show them as Azure does, and the restore rules
check the permissions of the identity the request names (``identityDetails``; absent = the system-assigned one)."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest
import yaml
from azure.core.exceptions import HttpResponseError
from azure.mgmt.dataprotection.models import IdentityDetails, ValidateRestoreRequestObject

from localdev.dpemu.world import WorldError, parse_world

from .conftest import RG, WORLD
from .helpers import new_name, rp_request, sales_db_target, wait_job

VAULT_UAMI = "bv-uami"
BI_BILLING = "pgsrv01-billingdb-6f1c2d3e-0000-4000-8000-000000000005"
UAMI = ("/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-backup/providers/"
        "Microsoft.ManagedIdentity/userAssignedIdentities/id-bv-uami")
SYSTEM_PRINCIPAL = "33333333-3333-4333-8333-333333333333"
UAMI_PRINCIPAL = "44444444-4444-4444-8444-444444444444"


def _point(client) -> str:
    return next(iter(client.recovery_points.list(RG, VAULT_UAMI, BI_BILLING))).name


def _request(client, target, identity: IdentityDetails | None):
    req = rp_request(_point(client), target)
    if identity is not None:
        req.identity_details = identity
    return req


def _validate(client, target, identity: IdentityDetails | None):
    return client.backup_instances.begin_validate_for_restore(
        RG, VAULT_UAMI, BI_BILLING, ValidateRestoreRequestObject(
            restore_request_object=_request(client, target, identity))).result()


def _validate_error(client, target, identity: IdentityDetails | None) -> HttpResponseError:
    with pytest.raises(HttpResponseError) as ei:
        _validate(client, target, identity)
    return ei.value


USE_UAMI = IdentityDetails(use_system_assigned_identity=False, user_assigned_identity_arm_url=UAMI)


def test_vault_and_instance_show_the_user_assigned_identity(client):
    vault = client.backup_vaults.get(RG, VAULT_UAMI)
    assert vault.identity.type == "SystemAssigned,UserAssigned"
    assert vault.identity.principal_id == SYSTEM_PRINCIPAL
    assert vault.identity.user_assigned_identities[UAMI].principal_id == UAMI_PRINCIPAL
    bi = client.backup_instances.get(RG, VAULT_UAMI, BI_BILLING)
    assert bi.properties.identity_details.use_system_assigned_identity is False
    assert bi.properties.identity_details.user_assigned_identity_arm_url == UAMI


def test_without_identity_details_the_system_identity_is_checked_and_lacks_the_roles(client):
    err = _validate_error(client, sales_db_target(new_name()), None)
    assert err.error.code == "UserErrorMSIMissingPermissions"
    assert SYSTEM_PRINCIPAL in err.message and "managed identity" in err.message


def test_with_identity_details_the_user_assigned_identity_restores(emu, client):
    name = new_name("billing")
    assert _validate(client, sales_db_target(name), USE_UAMI).object_type == "OperationJobExtendedInfo"
    res = client.backup_instances.begin_trigger_restore(RG, VAULT_UAMI, BI_BILLING,
                                                        _request(client, sales_db_target(name), USE_UAMI)).result()
    assert wait_job(client, res.job_id, vault=VAULT_UAMI).properties.status == "Completed"
    with psycopg.connect(emu.dsn("pgsrv-restore", name)) as conn:
        assert conn.execute("SELECT batch FROM notes").fetchall() == [("u1",)]


def test_a_missing_role_names_the_user_assigned_identity(client):
    err = _validate_error(client, sales_db_target(new_name(), server="pgsrv-noreader",
                                                  secret_name="pgsrv-noreader-conn"), USE_UAMI)
    assert err.error.code == "UserErrorMSIMissingPermissions"
    assert UAMI_PRINCIPAL in err.message and "user-assigned identity 'id-bv-uami'" in err.message


@pytest.mark.parametrize(("identity", "needle"), [
    (IdentityDetails(use_system_assigned_identity=False, user_assigned_identity_arm_url=UAMI + "x"),
     "not assigned to vault"),
    (IdentityDetails(use_system_assigned_identity=False), "no userAssignedIdentityArmUrl"),
])
def test_identity_details_that_name_no_vault_identity_are_refused(client, identity, needle):
    err = _validate_error(client, sales_db_target(new_name()), identity)
    assert err.error.code == "UserErrorInvalidIdentityDetails" and needle in err.message


def test_strict_mode_refuses_a_restore_that_omits_identity_details(client, admin):
    admin.set_config(strict_identity_details=True)
    try:
        err = _validate_error(client, sales_db_target(new_name()), None)
        assert err.error.code == "UserErrorInvalidIdentityDetails" and UAMI in err.message
        assert _validate(client, sales_db_target(new_name()), USE_UAMI).object_type == "OperationJobExtendedInfo"
    finally:
        admin.set_config(strict_identity_details=False)
    assert admin.config()["strict_identity_details"] is False


def _vault(raw: dict, name: str) -> dict:
    return next(v for v in raw["vaults"] if v["id"].endswith("/" + name))


@pytest.mark.parametrize(("mutate", "needle"), [
    (lambda v: v["backup_instances"][0].update(identity=UAMI + "-other"), "not one of the vault's"),
    (lambda v: v["identity"].update(type="UserAssigned", user_assigned=[]), "needs user_assigned"),
    (lambda v: v["identity"].update(type="Federated"), "identity.type"),
    (lambda v: v.pop("principal_id"), "principal_id"),
])
def test_world_identity_errors_name_the_key(mutate, needle):
    raw = yaml.safe_load(WORLD.read_text())
    mutate(_vault(raw, VAULT_UAMI))
    with pytest.raises(WorldError, match=needle):
        parse_world(raw, datetime(2026, 11, 24, tzinfo=UTC))


def test_a_vault_with_only_a_user_assigned_identity_needs_no_principal_id():
    raw = yaml.safe_load(WORLD.read_text())
    v = _vault(raw, VAULT_UAMI)
    v.pop("principal_id")
    v["identity"]["type"] = "UserAssigned"
    w = parse_world(raw, datetime(2026, 11, 24, tzinfo=UTC))
    vault = next(x for x in w.vaults.values() if x.name == VAULT_UAMI)
    assert vault.principal_id is None and vault.user_identities[0].principal_id == UAMI_PRINCIPAL
