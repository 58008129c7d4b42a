"""Plain explanations and exact fixes for the errors a restore can meet.

For missing permissions the fix is the exact ``az role assignment create`` command with the principal id of the
identity the restore acts as (the vault's system-assigned identity, or the backup instance's user-assigned one), the
role and the scope filled in. Pure functions; unit-tested.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from .models import DatabaseTarget, FilesTarget, RestoreRequest


@dataclass(frozen=True)
class Explanation:
    code: str
    message: str
    fix: str


def subscription_of(resource_id: str | None) -> str | None:
    """The subscription id an ARM id names, else None (e.g. a ``$(az ...)`` scope)."""
    m = re.match(r"^/subscriptions/([^/]+)/", resource_id or "", re.IGNORECASE)
    return m.group(1) if m else None


def subscription_flag(resource_id: str | None, vault_subscription: str | None) -> str:
    """`` --subscription <id>`` when the resource lies in another subscription than the vault's (an az command run
    where the vault is would otherwise look in the wrong subscription), else nothing."""
    sub = subscription_of(resource_id)
    if sub is None or vault_subscription is None or sub.lower() == vault_subscription.lower():
        return ""
    return f" --subscription {sub}"


def role_command(principal_id: str | None, role: str, scope: str, vault_subscription: str | None = None) -> str:
    who = principal_id or "<vault-principal-id>"
    return (f'az role assignment create --assignee-object-id {who} --assignee-principal-type ServicePrincipal '
            f'--role "{role}" --scope {scope}{subscription_flag(scope, vault_subscription)}')


def _kv_scope(secret_uri: str) -> str:
    name = (urlsplit(secret_uri).hostname or "").split(".", 1)[0]
    return f"$(az keyvault show --name {name} --query id -o tsv)"


def _container_scope(target: FilesTarget) -> str:
    if target.container_id:
        return target.container_id
    u = urlsplit(target.container_url)
    account = (u.hostname or "").split(".", 1)[0]
    container = u.path.strip("/")
    return f"$(az storage account show --name {account} --query id -o tsv)/blobServices/default/containers/{container}"


_PLAIN: dict[str, tuple[str, str]] = {
    "UserErrorDatabaseNameAlreadyInUse": (
        "a database with the target name already exists on the target server; restores never overwrite",
        "choose a new target.database_name; the existing database is never touched"),
    "UserErrorRestoreToLowerVersion": (
        "the backup comes from a newer PostgreSQL major version than the target server runs",
        "restore to a server running the same or a newer PostgreSQL major version, or restore as files"),
    "UserErrorInvalidSecret": (
        "the Key Vault secret named in target.secret_uri does not exist",
        "create the secret with the target server's connection string, or correct target.secret_uri"),
    "UserErrorDBUserAuthFailed": (
        "the credentials in the Key Vault secret were refused by the target server",
        "update the secret with a valid connection string for a user with CREATEDB and azure_pg_admin"),
    "UserErrorSecretValueInUnsupportedFormat": (
        "the secret value is not an ADO.NET connection string",
        "store the connection string as Server=...;Database=...;Port=5432;User Id=...;Password=...;"),
    "UserErrorMissingDBPermissions": (
        "the database user in the secret lacks privileges",
        "run ALTER USER <user> CREATEDB; and grant azure_pg_admin to it"),
    "UserErrorDBNotFound": ("the target server or database was not found",
                            "check target.server_id and that the server exists in the vault's region"),
    "UserErrorMissingNetworkSecurityPermissions": (
        "the vault has no network line of sight to the server",
        "enable 'Allow access to Azure services' on the target server (and set 'Deny public network access' to No)"),
    "UserErrorInvalidSecretStore": ("the Key Vault does not exist or is not reachable by the vault",
                                    "check the Key Vault name in target.secret_uri and its network settings"),
}


def explain(code: str, message: str, *, request: RestoreRequest | None, principal_id: str | None,
            azure_fix: str | None = None, identity: str | None = None,
            vault_subscription: str | None = None) -> Explanation:
    """Map an Azure (or pre-check) error code to a plain explanation and the exact fix. ``principal_id`` is the
    identity the restore acts as (the vault's system-assigned one, or the user-assigned one the backup instance uses;
    ``identity`` then names it, e.g. "user-assigned identity id-restore"). The same for a validation refusal and for
    a failure the Azure job reports while it runs (monitor). A command on a resource in another subscription than
    ``vault_subscription`` carries ``--subscription``."""
    target = request.target if request else None
    who = f"the Backup vault's {identity or 'managed identity'}"
    if code == "UserErrorMSIMissingPermissions" and isinstance(target, DatabaseTarget):
        return Explanation(code, f"{who} lacks the Reader role on the target server",
                           role_command(principal_id, "Reader", target.server_id, vault_subscription))
    if code == "UserErrorMissingPermissionsOnSecretStore" and isinstance(target, DatabaseTarget):
        return Explanation(code, f"{who} cannot read secrets from the Key Vault",
                           role_command(principal_id, "Key Vault Secrets User", _kv_scope(target.secret_uri)))
    if code == "UserErrorContainerNotAccessible" and isinstance(target, FilesTarget):
        return Explanation(code, f"{who} cannot write to the target container",
                           role_command(principal_id, "Storage Blob Data Contributor", _container_scope(target),
                                        vault_subscription))
    if code in _PLAIN:
        plain, fix = _PLAIN[code]
        return Explanation(code, f"{plain} ({message})", fix)
    return Explanation(code, message, azure_fix or "see the Azure error message; fix the request and submit again")
