"""What the server-restore stages reach besides ARM: the target server's credentials (Microsoft Entra token or a Key
Vault secret), and the staging containers. The port is :class:`ServerAccess`; :class:`AzureServerAccess` is the
adapter (azure-identity, azure-keyvault-secrets, azure-storage-blob), built by :mod:`restore_core.runtime`.

Configuration only decides the endpoints: in Azure, ``DefaultAzureCredential`` (the app's or the job's user-assigned
identity) and the real Key Vault and blob hosts; locally a static token (``ENTRA_STATIC_TOKEN``), the emulated Key
Vault (``KEYVAULT_ENDPOINT``, a URL template with ``{vault}``, challenge-resource check off because its host is not a
Key Vault host) and Azurite (``RESTORE_STAGING_CONNECTION_STRING``).
"""

from __future__ import annotations

import threading
from typing import Any, Protocol
from urllib.parse import urlsplit

from .config import Settings
from .errors import AzureRejection, RetryableError
from .models import ServerTarget
from .pgtarget import TargetConn, resolve
from .staging import StagingArea, StagingSite, parse_sites


class ServerAccess(Protocol):
    def target_conn(self, target: ServerTarget) -> TargetConn: ...

    def staging_site(self, region: str) -> StagingSite | None: ...

    def staging_sites(self) -> dict[str, StagingSite]: ...

    def staging(self, region: str) -> StagingArea: ...


class _StaticToken:
    def __init__(self, token: str) -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        import time

        from azure.core.credentials import AccessToken

        return AccessToken(self._token, int(time.time()) + 3600)


class AzureServerAccess:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.server = settings.server
        self.sites = parse_sites(self.server.staging)
        self._lock = threading.Lock()
        self._cred: Any = None
        self._areas: dict[str, StagingArea] = {}

    # -- credentials
    def credential(self) -> Any:
        with self._lock:
            if self._cred is None:
                if self.server.entra_static_token:
                    self._cred = _StaticToken(self.server.entra_static_token)
                else:
                    from azure.identity import DefaultAzureCredential

                    self._cred = DefaultAzureCredential(managed_identity_client_id=self.settings.azure_client_id)
            return self._cred

    def token(self, scope: str) -> str:
        from azure.core.exceptions import ClientAuthenticationError

        try:
            return str(self.credential().get_token(scope).token)
        except ClientAuthenticationError as exc:
            raise RetryableError(f"could not get a Microsoft Entra token for {scope}: {type(exc).__name__}") from None

    def secret(self, uri: str) -> str:
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError, ServiceRequestError
        from azure.keyvault.secrets import SecretClient

        vault_url, name, version = self._vault_url(uri)
        kwargs: dict[str, Any] = {}
        if self.server.keyvault_endpoint:
            kwargs["verify_challenge_resource"] = False
        if self.server.keyvault_ca_bundle:
            kwargs["connection_verify"] = self.server.keyvault_ca_bundle
        client = SecretClient(vault_url, self.credential(), retry_total=2, **kwargs)
        try:
            value = client.get_secret(name, version).value
        except ResourceNotFoundError:
            raise AzureRejection("TargetSecretNotFound", f"Key Vault secret {uri} does not exist",
                                 fix="check auth.secret_uri, or create the secret with the target's connection "
                                     "string") from None
        except ServiceRequestError as exc:
            raise RetryableError(f"Key Vault {vault_url} unreachable: {type(exc).__name__}") from None
        except HttpResponseError as exc:
            if exc.status_code in (401, 403):
                raise AzureRejection("TargetSecretForbidden", f"the service identity may not read {uri}",
                                     fix="grant the service identity Key Vault Secrets User on the vault (az role "
                                         "assignment create --role 'Key Vault Secrets User' --assignee <service "
                                         "identity principal> --scope <key vault id>)") from None
            raise RetryableError(f"Key Vault answered {exc.status_code}") from None
        if not value:
            raise AzureRejection("TargetSecretMalformed", f"Key Vault secret {uri} is empty",
                                 fix="store the target's connection string in it")
        return value

    def _vault_url(self, uri: str) -> tuple[str, str, str | None]:
        u = urlsplit(uri)
        parts = [p for p in u.path.split("/") if p]
        name, version = parts[1], (parts[2] if len(parts) > 2 else None)
        vault = (u.hostname or "").split(".", 1)[0]
        if self.server.keyvault_endpoint:
            return self.server.keyvault_endpoint.format(vault=vault).rstrip("/"), name, version
        return f"https://{u.hostname}", name, version

    def target_conn(self, target: ServerTarget) -> TargetConn:
        return resolve(target, self.server, token=self.token, secret=self.secret)

    # -- staging
    def staging_sites(self) -> dict[str, StagingSite]:
        return dict(self.sites)

    def staging_site(self, region: str) -> StagingSite | None:
        return self.sites.get(region.lower().replace(" ", ""))

    def staging(self, region: str) -> StagingArea:
        site = self.staging_site(region)
        if site is None:
            raise AzureRejection("StagingNotConfigured", f"no staging container is configured for region {region}",
                                 fix="add the region to RESTORE_STAGING (infra: the staging accounts)")
        with self._lock:
            area = self._areas.get(site.region)
            if area is None:
                area = self._areas[site.region] = self._build(site)
            return area

    def _build(self, site: StagingSite) -> StagingArea:
        from azure.storage.blob import ContainerClient

        from .staging import BlobStagingArea

        if self.server.staging_connection_string:
            c = ContainerClient.from_connection_string(self.server.staging_connection_string, site.container_name)
        else:
            c = ContainerClient(site.account_url, site.container_name, credential=self.credential())
        return BlobStagingArea(c)
