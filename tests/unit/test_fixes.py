"""``fixes.explain``: exact role-assignment commands for missing permissions, plain words for known codes."""

from __future__ import annotations

import pytest

from restore_core.fixes import _PLAIN, explain
from restore_core.models import parse_request

from .fakes import CONTAINER_ID, PRINCIPAL_ID, TARGET_SERVER_ID, database_body, files_body

DB_REQ = parse_request(database_body())
FILES_REQ = parse_request(files_body())


def test_missing_reader_on_target_server_gives_exact_command() -> None:
    ex = explain("UserErrorMSIMissingPermissions", "no access", request=DB_REQ, principal_id=PRINCIPAL_ID)
    assert ex.code == "UserErrorMSIMissingPermissions"
    assert ex.fix == (f"az role assignment create --assignee-object-id {PRINCIPAL_ID} --assignee-principal-type "
                      f'ServicePrincipal --role "Reader" --scope {TARGET_SERVER_ID}')
    assert "Reader" in ex.message


def test_missing_key_vault_secrets_user_gives_exact_command_scoped_to_the_key_vault() -> None:
    ex = explain("UserErrorMissingPermissionsOnSecretStore", "denied", request=DB_REQ, principal_id=PRINCIPAL_ID)
    assert ex.fix == (f"az role assignment create --assignee-object-id {PRINCIPAL_ID} --assignee-principal-type "
                      'ServicePrincipal --role "Key Vault Secrets User" '
                      "--scope $(az keyvault show --name kv-restore --query id -o tsv)")


def test_missing_blob_contributor_gives_exact_command_scoped_to_the_container_id() -> None:
    ex = explain("UserErrorContainerNotAccessible", "denied", request=FILES_REQ, principal_id=PRINCIPAL_ID)
    assert ex.fix == (f"az role assignment create --assignee-object-id {PRINCIPAL_ID} --assignee-principal-type "
                      f'ServicePrincipal --role "Storage Blob Data Contributor" --scope {CONTAINER_ID}')


def test_missing_blob_contributor_without_container_id_derives_the_scope_from_the_url() -> None:
    body = files_body()
    del body["target"]["container_id"]
    ex = explain("UserErrorContainerNotAccessible", "denied", request=parse_request(body), principal_id=PRINCIPAL_ID)
    assert ex.fix.endswith("--scope $(az storage account show --name stpgrestore01 --query id -o tsv)"
                           "/blobServices/default/containers/pg-restores")


def test_unknown_principal_leaves_a_visible_placeholder() -> None:
    ex = explain("UserErrorMSIMissingPermissions", "x", request=DB_REQ, principal_id=None)
    assert "--assignee-object-id <vault-principal-id> " in ex.fix


@pytest.mark.parametrize("code", sorted(_PLAIN))
def test_known_codes_get_a_plain_explanation_keeping_azures_message(code: str) -> None:
    ex = explain(code, "azure said so", request=DB_REQ, principal_id=PRINCIPAL_ID)
    plain, fix = _PLAIN[code]
    assert ex.code == code
    assert ex.message == f"{plain} (azure said so)"
    assert ex.fix == fix


def test_database_name_in_use_says_choose_a_new_name() -> None:
    ex = explain("UserErrorDatabaseNameAlreadyInUse", "exists", request=DB_REQ, principal_id=None)
    assert "target.database_name" in ex.fix and "never overwrite" in ex.message


def test_unknown_code_passes_through_with_azures_fix() -> None:
    ex = explain("UserErrorSomethingNew", "new failure", request=DB_REQ, principal_id=PRINCIPAL_ID,
                 azure_fix="do the new thing")
    assert (ex.code, ex.message, ex.fix) == ("UserErrorSomethingNew", "new failure", "do the new thing")


def test_unknown_code_without_azure_fix_gets_a_generic_fix() -> None:
    ex = explain("Weird", "odd", request=None, principal_id=None)
    assert ex.message == "odd" and "fix the request" in ex.fix


def test_permission_code_for_the_other_target_kind_is_not_given_a_wrong_command() -> None:
    ex = explain("UserErrorContainerNotAccessible", "denied", request=DB_REQ, principal_id=PRINCIPAL_ID,
                 azure_fix="azure fix")
    assert ex.fix == "azure fix"
