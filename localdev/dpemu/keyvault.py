"""The emulated Key Vault data plane: ``GET /keyvault/{vault}/secrets/{name}[/{version}]?api-version=...``.

Consumes: the secrets the :class:`~.state.State` holds (world secrets rendered at start-up, admin puts) and the
Entra token (the stack's ``ENTRA_STATIC_TOKEN``). Produces: Key Vault's wire format, so the real
``azure-keyvault-secrets`` SDK is the client (docs/emulator.md, "Emulated Key Vault", quotes the sources):

* challenge authentication: a request without a bearer token gets ``401`` with ``WWW-Authenticate: Bearer
  authorization="https://login.microsoftonline.com/{tenant}", resource="https://vault.azure.net"``; the SDK then asks
  its credential for a token of the resource's ``/.default`` scope and sends the request again;
* a token other than the Entra token: ``403 Forbidden`` (Key Vault's RBAC refusal body);
* a secret: ``200 {"value", "id": "https://{vault}.vault.azure.net/secrets/{name}/{version}", "attributes"}``;
  ``id`` names the real vault host, as Key Vault does, because the SDK parses it as ``/secrets/{name}/{version}``;
* an unknown secret or version: ``404 SecretNotFound``.
Secret values are never logged.
"""

from __future__ import annotations

import re
from typing import Any

from .replies import Reply
from .state import SecretVersion, State

RESOURCE = "https://vault.azure.net"
TENANT = "00000000-0000-0000-0000-0000000000aa"
CHALLENGE = f'Bearer authorization="https://login.microsoftonline.com/{TENANT}", resource="{RESOURCE}"'
_API_VERSION = re.compile(r"^(7\.\d+(-preview(\.\d+)?)?|\d{4}-\d{2}-\d{2}(-preview)?)$")


def kv_error(code: str, message: str, inner: str | None = None) -> dict[str, Any]:
    """Key Vault's error body (``KeyVaultError``: ``{"error": {"code", "message", "innererror"?}}``)."""
    error: dict[str, Any] = {"code": code, "message": message}
    if inner:
        error["innererror"] = {"code": inner}
    return {"error": error}


class KeyVault:
    def __init__(self, state: State, token: str) -> None:
        self.state = state
        self.token = token

    def get_secret(self, vault: str, name: str, version: str | None, authorization: str,
                   query: dict[str, str]) -> Reply:
        api_version = next((v for k, v in query.items() if k.lower() == "api-version"), None)
        if not authorization.lower().startswith("bearer ") or not authorization[7:].strip():
            return Reply(401, kv_error("Unauthorized", "AKV10000: Request is missing a Bearer or PoP token."),
                         {"WWW-Authenticate": CHALLENGE})
        if authorization[7:].strip() != self.token:
            return Reply(403, kv_error("Forbidden", "Caller is not authorized to perform action on resource.\r\n"
                                       "If role assignments, deny assignments or role definitions were changed "
                                       "recently, please observe propagation time.\r\n"
                                       "Action: 'Microsoft.KeyVault/vaults/secrets/getSecret/action'",
                                       "ForbiddenByRbac"))
        if api_version is None or not _API_VERSION.match(api_version):
            return Reply(400, kv_error("BadParameter", "The request URI contains an invalid or missing "
                                       f"api-version '{api_version}'. Use e.g. api-version=7.5."))
        if vault.lower() not in self.state.world.key_vaults:
            return Reply(404, kv_error("VaultNotFound", f"Key Vault '{vault}' is not in the emulator's world "
                                       "(key_vaults)."))
        found = self.state.secret_version(self.state.secret_uri(vault, name), version)
        if found is None:
            what = f"(name/id) {name}" + (f"/{version}" if version else "")
            return Reply(404, kv_error("SecretNotFound", f"A secret with {what} was not found in this key vault. "
                                       "If you recently deleted this secret you may be able to recover it using "
                                       "the correct recovery command. For help resolving this issue, please see "
                                       "https://go.microsoft.com/fwlink/?linkid=2125182"))
        return Reply(200, secret_bundle(vault, name, found), {"Cache-Control": "no-cache"})


def secret_bundle(vault: str, name: str, v: SecretVersion) -> dict[str, Any]:
    """Key Vault's ``SecretBundle``."""
    return {"value": v.value, "id": f"https://{vault.lower()}.vault.azure.net/secrets/{name}/{v.version}",
            "attributes": {"enabled": True, "created": v.created, "updated": v.created,
                           "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90},
            "tags": {}}
