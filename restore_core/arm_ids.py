"""Parsing and validation of the Azure Resource Manager ids this service accepts.

Pure functions, no I/O. Every parser raises :class:`RequestError` naming the field and the expected shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import RequestError

_SEG = r"[^/]+"
_GUIDISH = r"[0-9A-Za-z-]{1,64}"
_VAULT = (rf"/subscriptions/(?P<sub>{_GUIDISH})/resourceGroups/(?P<rg>[-\w._()]{{1,90}})"
          r"/providers/Microsoft\.DataProtection/backupVaults/(?P<vault>[A-Za-z][-A-Za-z0-9]{0,48}[A-Za-z0-9])")
VAULT_RE = re.compile(rf"^{_VAULT}$", re.IGNORECASE)
BACKUP_INSTANCE_RE = re.compile(rf"^{_VAULT}/backupInstances/(?P<bi>[-\w.]{{1,200}})$", re.IGNORECASE)
_PG = (rf"/subscriptions/(?P<sub>{_GUIDISH})/resourceGroups/(?P<rg>[-\w._()]{{1,90}})"
       r"/providers/Microsoft\.DBforPostgreSQL")
SERVER_RE = re.compile(rf"^{_PG}/(?P<kind>servers|flexibleServers)/(?P<server>[a-z0-9][-a-z0-9]{{1,61}}[a-z0-9])$",
                       re.IGNORECASE)
DATABASE_RE = re.compile(rf"^{_PG}/servers/(?P<server>[a-z0-9][-a-z0-9]{{1,61}}[a-z0-9])/databases/(?P<db>{_SEG})$",
                         re.IGNORECASE)
CONTAINER_RE = re.compile(
    rf"^/subscriptions/(?P<sub>{_GUIDISH})/resourceGroups/(?P<rg>[-\w._()]{{1,90}})"
    r"/providers/Microsoft\.Storage/storageAccounts/(?P<account>[a-z0-9]{3,24})"
    r"/blobServices/default/containers/(?P<container>[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62})$", re.IGNORECASE)
RESOURCE_RE = re.compile(rf"^/subscriptions/{_GUIDISH}/resourceGroups/[-\w._()]{{1,90}}/providers/[^/]+/.+$",
                         re.IGNORECASE)
JOB_RE = re.compile(rf"^{_VAULT}/backupJobs/(?P<job>{_SEG})$", re.IGNORECASE)


@dataclass(frozen=True)
class VaultRef:
    subscription: str
    resource_group: str
    vault: str

    @property
    def id(self) -> str:
        return (f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
                f"/providers/Microsoft.DataProtection/backupVaults/{self.vault}")


@dataclass(frozen=True)
class BackupInstanceRef:
    vault: VaultRef
    name: str

    @property
    def id(self) -> str:
        return f"{self.vault.id}/backupInstances/{self.name}"


#: Characters Azure allows in no resource name (nor resource group), and control characters (issue 14.4).
_FORBIDDEN = re.compile(r'[<>*%&\\?#"|\x00-\x1f\x7f]')


def segment_problem(value: str) -> str | None:
    """Why an ARM id is refused whatever its shape: a ``.``/``..`` segment (a path trick: ``a/../b`` names ``b`` to
    a URL parser and ``a/../b`` to a string compare), an empty segment, a name ending in a period (Azure refuses
    those) or a character Azure allows in no resource name. None when the segments are fine."""
    for seg in value.strip().strip("/").split("/"):
        if seg in (".", ".."):
            return f"it has a {seg!r} segment"
        if not seg:
            return "it has an empty segment (//)"
        if seg.endswith("."):
            return f"segment {seg[:40]!r} ends with a period, which Azure does not allow"
        bad = _FORBIDDEN.search(seg)
        if bad:
            return f"it contains {bad.group()!r}, a character Azure does not allow in resource names"
    return None


def _match(pattern: re.Pattern[str], value: str, field: str, shape: str) -> re.Match[str]:
    m = pattern.match(value.strip()) if isinstance(value, str) else None
    if not m:
        raise RequestError(f"{field} is not a valid ARM id: {value!r}", field=field, fix=f"use the form {shape}")
    problem = segment_problem(value)
    if problem:
        raise RequestError(f"{field} is not a valid ARM id: {problem}", field=field,
                           fix=f"use the form {shape} with plain resource names (no '.' or '..' segments)")
    return m


def parse_vault_id(value: str, field: str = "vault_id") -> VaultRef:
    m = _match(VAULT_RE, value, field,
               "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.DataProtection/backupVaults/{vault}")
    return VaultRef(m["sub"], m["rg"], m["vault"])


def parse_backup_instance_id(value: str, field: str = "backup_instance.id") -> BackupInstanceRef:
    m = _match(BACKUP_INSTANCE_RE, value, field,
               "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.DataProtection/backupVaults/{vault}"
               "/backupInstances/{name}")
    return BackupInstanceRef(VaultRef(m["sub"], m["rg"], m["vault"]), m["bi"])


def parse_server_id(value: str, field: str) -> re.Match[str]:
    return _match(SERVER_RE, value, field,
                  "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.DBforPostgreSQL/servers/{server} "
                  "(or .../flexibleServers/{server})")


def parse_container_id(value: str, field: str) -> re.Match[str]:
    return _match(CONTAINER_RE, value, field,
                  "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Storage/storageAccounts/{account}"
                  "/blobServices/default/containers/{container}")


def parse_resource_id(value: str, field: str) -> str:
    return _match(RESOURCE_RE, value, field, "/subscriptions/{sub}/resourceGroups/{rg}/providers/{namespace}/...")[0]


def job_name(job_id: str) -> str:
    """Azure returns a full ARM id or a bare GUID for jobId; ``jobs.get`` wants the last segment."""
    return job_id.rstrip("/").rsplit("/", 1)[-1]


def same_id(a: str | None, b: str | None) -> bool:
    """ARM ids compare case-insensitively."""
    return bool(a) and bool(b) and str(a).rstrip("/").lower() == str(b).rstrip("/").lower()
