"""World file: the Azure estate the emulator pretends to be (vaults, instances, servers, permissions, ...).

Consumes: a YAML file (schema in ``docs/emulator.md``, example ``localdev/worlds/demo.yaml``).
Produces: a validated, immutable-ish :class:`World`. Every problem is reported as :class:`WorldError` naming
the key to fix. Relative recovery-point times (``-P7D``) are resolved against the clock at load time.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from .timeutil import parse_duration, parse_time

SUPPORTED_VERSIONS = (1,)
RP_STATES = ("Completed", "Partial")
SINGLE = "Microsoft.DBforPostgreSQL/servers/databases"
FLEXIBLE = "Microsoft.DBforPostgreSQL/flexibleServers"

_SERVER_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.DBforPostgreSQL/"
    r"(?P<kind>servers|flexibleServers)/(?P<name>[^/]+)$", re.IGNORECASE)
_VAULT_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.DataProtection/"
    r"backupVaults/(?P<name>[A-Za-z][-A-Za-z0-9]*[A-Za-z0-9])$", re.IGNORECASE)
_KV_ID = re.compile(r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.KeyVault/vaults/(?P<name>[^/]+)$",
                    re.IGNORECASE)
_SA_ID = re.compile(r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Storage/storageAccounts/"
                    r"(?P<name>[a-z0-9]{3,24})$", re.IGNORECASE)


class WorldError(ValueError):
    """The world file is invalid; the message names the offending key and what to write instead."""


@dataclass
class Database:
    name: str
    setup_sql: str = ""
    owner: str | None = None  # role owning the database; setup_sql runs as it (None: the superuser postgres)


@dataclass
class Server:
    id: str
    name: str
    kind: str  # "servers" (Single Server) or "flexibleServers"
    location: str
    postgres_version: int
    cluster: str
    databases: list[Database] = field(default_factory=list)
    roles: list[tuple[str, str]] = field(default_factory=list)  # (name, CREATE ROLE options) created at seed


@dataclass
class Secret:
    uri: str  # https://{kv}.vault.azure.net/secrets/{name}
    name: str
    key_vault_id: str
    server_id: str | None  # target server whose cluster holds the restore user
    user: str
    raw_value: str | None = None  # explicit value (for malformed-secret scenarios); else built at start-up
    format: str = "ado"  # how the value is rendered: ado (ADO.NET) | uri (libpq URI) | keyvalue (libpq key=value)
    sslmode: str = "disable"  # the sslmode written into the value


@dataclass
class Container:
    name: str
    account: str
    account_id: str
    id: str  # container ARM id
    url: str
    location: str
    azurite_container: str


@dataclass
class RecoveryPointSpec:
    id: str
    time: datetime
    tier: str  # "vault" | "archive"
    seed_sql: dict[str, str]  # database -> SQL applied before the backup
    state: str = "Completed"  # recoveryPointState: Completed | Partial (Azure says no more about what is missing)


@dataclass
class BackupInstance:
    name: str
    vault_id: str
    datasource_id: str
    datasource_type: str  # SINGLE | FLEXIBLE
    server_id: str
    database: str | None  # Single Server: the database; Flexible: None (whole server)
    policy: str
    recovery_points: list[RecoveryPointSpec]
    identity: str | None = None  # identityDetails.userAssignedIdentityArmUrl (None: the system-assigned identity)

    @property
    def id(self) -> str:
        return f"{self.vault_id}/backupInstances/{self.name}"


@dataclass
class UserIdentity:
    """A user-assigned managed identity attached to a vault (``identity.userAssignedIdentities``)."""

    id: str  # .../providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>
    principal_id: str
    client_id: str


@dataclass
class Vault:
    id: str
    name: str
    subscription: str
    resource_group: str
    location: str
    storage_redundancy: str  # GeoRedundant | LocallyRedundant | ZoneRedundant
    cross_region_restore: str  # Enabled | Disabled
    principal_id: str | None  # the system-assigned identity's principal (None: the vault has none)
    tenant_id: str
    backup_instances: list[BackupInstance]
    identity_type: str = "SystemAssigned"  # SystemAssigned | UserAssigned | SystemAssigned,UserAssigned
    user_identities: list[UserIdentity] = field(default_factory=list)
    cross_subscription_restore: str = "Enabled"  # Enabled | Disabled | PermanentlyDisabled
    replicated_regions: list[str] | None = None  # as listed by the vault (None: the pair, when GeoRedundant)

    def user_identity(self, arm_id: str) -> UserIdentity | None:
        return next((u for u in self.user_identities if u.id.lower() == arm_id.lower().rstrip("/")), None)


@dataclass
class RoleAssignment:
    principal: str
    role: str
    scope: str


@dataclass
class Settings:
    page_size: int = 2
    job_page_size: int = 10
    lro_duration: timedelta = timedelta(seconds=20)
    restore_job_duration: timedelta = timedelta(minutes=15)
    rehydration_standard: timedelta = timedelta(hours=10)
    rehydration_high: timedelta = timedelta(hours=1)
    crr_replication_lag: timedelta = timedelta(0)
    datastore_container: str = "dpemu-vault-datastore"
    strict_identity_details: bool = False  # refuse restores that omit identityDetails for a UAMI instance (chosen)
    #: How a job shows ``extendedInfo.recoveryDestination`` (no format is specified): ``arm`` (the target's ARM id or
    #: container URL + prefix), ``name`` (only the database name or file prefix), ``none`` (left out).
    job_destination_format: str = "arm"
    #: Where a completed rehydration is reported (no public example shows it): any of ``archive_entry`` (the
    #: ArchiveStore data store entry of the point), ``vault_entry`` (an extra VaultStore entry of the point),
    #: ``job_subtask`` (the Rehydrate subtask of a one-request restore job). Empty: nowhere until the job ends.
    rehydration_reported_on: tuple[str, ...] = ("archive_entry", "job_subtask")
    #: How a files restore writes each database archive (Azure does not document it): ``custom`` (pg_dump -Fc to a
    #: file: data offsets), ``custom-stream`` (pg_dump -Fc through a pipe: no data offsets), ``plain`` (plain SQL).
    files_layout: str = "custom"
    #: Whether a Flexible Server point's metadata names its databases (``dbName`` as a list). Azure's public example
    #: shows ``dbName`` for a Single Server database only; for a whole server it is not documented.
    flexible_point_db_names: bool = True
    #: How a running restore job shows its progress (Azure documents the fields, not their behaviour for PostgreSQL):
    #: ``absent`` (``taskProgress`` null, ``dataTransferedInBytes`` null until the job ends), ``linear`` (both grow
    #: evenly with time), ``uneven`` (fast to 50% in the first fifth of the duration, stalled until 60%, then slower).
    job_progress: str = "absent"
    #: Whether restores do real data-plane work (``pg_restore``/blob copies behind a job, and the target checks that
    #: read PostgreSQL or blobs: "database already exists", "blob already exists"). ``False`` (benchmarks of the app's
    #: own overhead, ``PUT /admin/config {"data_plane": false}``): jobs run their duration and succeed without
    #: touching PostgreSQL or blobs, and those two checks pass. Start-up seeding (real backups) is unchanged.
    data_plane: bool = True


JOB_PROGRESS = ("absent", "linear", "uneven")


def check_job_progress(value: Any) -> str:
    """Validate the ``job_progress`` choice (world file and admin config); raises ValueError."""
    if value not in JOB_PROGRESS:
        raise ValueError(f"job_progress: got {value!r}; use one of {list(JOB_PROGRESS)}")
    return str(value)


DESTINATION_FORMATS = ("arm", "name", "none")
FILES_LAYOUTS = ("custom", "custom-stream", "plain")  # same as dataplane.FILES_LAYOUTS
SECRET_FORMATS = ("ado", "uri", "keyvalue")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def check_files_layout(value: Any) -> str:
    """Validate the ``files_layout`` choice (world file and admin config); raises ValueError."""
    if value not in FILES_LAYOUTS:
        raise ValueError(f"files_layout: got {value!r}; use one of {list(FILES_LAYOUTS)}")
    return str(value)
REHYDRATION_REPORTS = ("archive_entry", "vault_entry", "job_subtask")


def check_emulation_choices(destination_format: Any, reported_on: Any) -> tuple[str, tuple[str, ...]]:
    """Validate the two 'Azure does not say' settings (world file and admin config); raises ValueError."""
    if destination_format not in DESTINATION_FORMATS:
        raise ValueError(f"job_destination_format: got {destination_format!r}; use one of {list(DESTINATION_FORMATS)}")
    if not isinstance(reported_on, (list, tuple)) or any(r not in REHYDRATION_REPORTS for r in reported_on):
        raise ValueError(f"rehydration_reported_on: give a list of {list(REHYDRATION_REPORTS)} (may be empty)")
    return str(destination_format), tuple(reported_on)


@dataclass
class World:
    version: int
    settings: Settings
    region_pairs: dict[str, str]
    clusters: list[str]
    servers: dict[str, Server]  # lower-cased id -> server
    secrets: dict[str, Secret]  # lower-cased uri (no version) -> secret
    key_vaults: dict[str, str]  # lower-cased kv name -> kv ARM id
    containers: dict[str, Container]  # lower-cased url -> container
    vaults: dict[str, Vault]  # lower-cased vault id -> vault
    role_assignments: list[RoleAssignment]
    subscriptions: list[str]


def _req(d: dict[str, Any], key: str, where: str) -> Any:
    if not isinstance(d, dict) or key not in d or d[key] in (None, ""):
        raise WorldError(f"{where}: missing required key '{key}'")
    return d[key]


def _dur(value: Any, where: str) -> timedelta:
    try:
        return parse_duration(str(value))
    except ValueError as exc:
        raise WorldError(f"{where}: {exc}") from exc


def rp_id_for(bi_name: str, index: int) -> str:
    """Deterministic 32-hex recovery point id (like the real service's ids)."""
    return hashlib.md5(f"{bi_name}/{index}".encode(), usedforsecurity=False).hexdigest()


def _time(value: Any, now: datetime, where: str) -> datetime:
    text = str(value).strip()
    if text.upper().startswith(("-P", "P")):
        return now + _dur(text, where)
    try:
        return parse_time(text)
    except ValueError as exc:
        raise WorldError(f"{where}: '{text}' is neither a timestamp nor a relative duration like -P7D") from exc


def _rp_state(rp: dict[str, Any], where: str) -> str:
    state = str(rp.get("state", "Completed"))
    if state not in RP_STATES:
        raise WorldError(f"{where}.state: use {' or '.join(RP_STATES)} (recoveryPointState), not '{state}'")
    return state


CSR_STATES = ("Enabled", "Disabled", "PermanentlyDisabled")
IDENTITY_TYPES = ("SystemAssigned", "UserAssigned", "SystemAssigned,UserAssigned")
_UAMI_ID = re.compile(r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.ManagedIdentity/"
                      r"userAssignedIdentities/[^/]+$", re.IGNORECASE)


def _vault_identity(v: dict[str, Any], where: str) -> tuple[str, str | None, list[UserIdentity]]:
    """``identity: {type, user_assigned: [{id, principal_id, client_id?}]}`` (default: SystemAssigned only)."""
    ident = v.get("identity") or {}
    if not isinstance(ident, dict):
        raise WorldError(f"{where}.identity: give {{type: ..., user_assigned: [...]}}")
    id_type = str(ident.get("type", "SystemAssigned")).replace(" ", "")
    if id_type not in IDENTITY_TYPES:
        raise WorldError(f"{where}.identity.type: use one of {', '.join(IDENTITY_TYPES)}")
    users = []
    for k, u in enumerate(ident.get("user_assigned") or []):
        uid = str(_req(u, "id", f"{where}.identity.user_assigned[{k}]"))
        if not _UAMI_ID.match(uid):
            raise WorldError(f"{where}.identity.user_assigned[{k}].id: '{uid}' is not a "
                             "Microsoft.ManagedIdentity/userAssignedIdentities ARM id")
        users.append(UserIdentity(uid, str(_req(u, "principal_id", f"{where}.identity.user_assigned[{k}]")),
                                  str(u.get("client_id") or uuid.UUID(hashlib.md5(
                                      uid.lower().encode(), usedforsecurity=False).hexdigest()))))
    if ("UserAssigned" in id_type) != bool(users):
        raise WorldError(f"{where}.identity: type {id_type} needs user_assigned identities exactly when it says "
                         "UserAssigned")
    system = id_type.startswith("SystemAssigned")
    if system and not v.get("principal_id"):
        raise WorldError(f"{where}: missing required key 'principal_id' (the system-assigned identity)")
    return id_type, str(v["principal_id"]) if system else None, users


def _replicated_regions(v: dict[str, Any], where: str) -> list[str] | None:
    """``replicated_regions: []`` declares a vault that lists none (the az CLI then falls back to its paired-region
    table); absent: the region's pair for a GeoRedundant vault, as Azure lists it."""
    if "replicated_regions" not in v:
        return None
    regions = v["replicated_regions"]
    if not isinstance(regions, list) or not all(isinstance(r, str) and r for r in regions):
        raise WorldError(f"{where}.replicated_regions: give a list of region names (may be empty)")
    return [r.lower() for r in regions]


def _bi_identity(b: dict[str, Any], where: str, users: list[UserIdentity]) -> str | None:
    """``identity: <user-assigned identity ARM id>`` = the instance's identityDetails (absent: system-assigned)."""
    uid = b.get("identity")
    if uid is None:
        return None
    if not any(u.id.lower() == str(uid).lower() for u in users):
        raise WorldError(f"{where}.identity: '{uid}' is not one of the vault's identity.user_assigned ids")
    return str(uid)


def load_world(path: Path, now: datetime) -> World:
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise WorldError(f"cannot read world file {path}: {exc}") from exc
    return parse_world(raw, now)


def parse_world(raw: Any, now: datetime) -> World:
    """Validate a loaded world file, section by section in file order; the first problem raises WorldError."""
    if not isinstance(raw, dict):
        raise WorldError("world file must be a YAML mapping with keys version, vaults, servers, ...")
    version = raw.get("version")
    if version not in SUPPORTED_VERSIONS:
        raise WorldError(f"version: got {version!r}, supported: {SUPPORTED_VERSIONS}")
    settings = _settings(raw.get("settings") or {})
    pairs = _region_pairs(raw)
    clusters = _clusters(raw)
    servers = _servers(raw, clusters)
    key_vaults, secrets = _key_vaults(raw, servers)
    containers = _containers(raw)
    vaults: dict[str, Vault] = {}
    for i, v in enumerate(raw.get("vaults") or []):
        vault = _vault(v, f"vaults[{i}]", servers, pairs, now)
        vaults[vault.id.lower()] = vault
    roles = [RoleAssignment(str(_req(r, "principal", f"role_assignments[{i}]")),
                            str(_req(r, "role", f"role_assignments[{i}]")),
                            str(_req(r, "scope", f"role_assignments[{i}]")))
             for i, r in enumerate(raw.get("role_assignments") or [])]
    subs = [str(_req(s2, "id", f"subscriptions[{i}]")) for i, s2 in enumerate(raw.get("subscriptions") or [])]
    return World(int(version), settings, pairs, clusters, servers, secrets, key_vaults, containers, vaults, roles, subs)


def _settings(s: dict[str, Any]) -> Settings:
    rh = s.get("rehydration_duration") or {}
    settings = Settings(
        page_size=int(s.get("page_size", 2)),
        job_page_size=int(s.get("job_page_size", 10)),
        lro_duration=_dur(s.get("lro_duration", "PT20S"), "settings.lro_duration"),
        restore_job_duration=_dur(s.get("restore_job_duration", "PT15M"), "settings.restore_job_duration"),
        rehydration_standard=_dur(rh.get("Standard", "PT10H"), "settings.rehydration_duration.Standard"),
        rehydration_high=_dur(rh.get("High", "PT1H"), "settings.rehydration_duration.High"),
        crr_replication_lag=_dur(s.get("crr_replication_lag", "PT0S"), "settings.crr_replication_lag"),
        datastore_container=str(s.get("datastore_container", "dpemu-vault-datastore")),
        strict_identity_details=bool(s.get("strict_identity_details", False)),
    )
    settings.flexible_point_db_names = bool(s.get("flexible_point_db_names", True))
    try:
        settings.files_layout = check_files_layout(s.get("files_layout", "custom"))
        settings.job_progress = check_job_progress(s.get("job_progress", "absent"))
    except ValueError as exc:
        raise WorldError(f"settings.{exc}") from None
    try:
        settings.job_destination_format, settings.rehydration_reported_on = check_emulation_choices(
            s.get("job_destination_format", "arm"), s.get("rehydration_reported_on", ["archive_entry", "job_subtask"]))
    except ValueError as exc:
        raise WorldError(f"settings.{exc}") from None
    if settings.page_size < 1 or settings.job_page_size < 1:
        raise WorldError("settings.page_size and settings.job_page_size must be >= 1")
    return settings


def _region_pairs(raw: dict[str, Any]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for i, r in enumerate(raw.get("regions") or []):
        name = str(_req(r, "name", f"regions[{i}]")).lower()
        if r.get("pair"):
            pairs[name] = str(r["pair"]).lower()
    return pairs


def _clusters(raw: dict[str, Any]) -> list[str]:
    clusters = [str(_req(c, "name", f"postgres_clusters[{i}]"))
                for i, c in enumerate(raw.get("postgres_clusters") or [])]
    if not clusters:
        raise WorldError("postgres_clusters: list at least one {name: ...} cluster")
    return clusters


def _servers(raw: dict[str, Any], clusters: list[str]) -> dict[str, Server]:
    servers: dict[str, Server] = {}
    for i, sv in enumerate(raw.get("servers") or []):
        where = f"servers[{i}]"
        sid = str(_req(sv, "id", where))
        m = _SERVER_ID.match(sid)
        if not m:
            raise WorldError(f"{where}.id: '{sid}' is not a Microsoft.DBforPostgreSQL servers/flexibleServers ARM id")
        cluster = str(_req(sv, "cluster", where))
        if cluster not in clusters:
            raise WorldError(f"{where}.cluster: '{cluster}' is not listed under postgres_clusters")
        if any(o.cluster == cluster for o in servers.values()):
            raise WorldError(f"{where}.cluster: '{cluster}' is already used; each Azure server needs its own cluster")
        roles = _server_roles(sv, where)
        dbs = [Database(str(_req(d, "name", f"{where}.databases[{j}]")), str(d.get("setup_sql") or ""),
                        _db_owner(d, f"{where}.databases[{j}]", roles))
               for j, d in enumerate(sv.get("databases") or [])]
        servers[sid.lower()] = Server(sid, m["name"], "flexibleServers" if m["kind"].lower() == "flexibleservers"
                                      else "servers", str(_req(sv, "location", where)).lower(),
                                      int(_req(sv, "postgres_version", where)), cluster, dbs, roles)
    return servers


_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,62}$")
_ROLE_OPTIONS = re.compile(r"^(\s*(NO)?(LOGIN|INHERIT|CREATEDB|CREATEROLE)\s*)*$", re.IGNORECASE)


def _server_roles(sv: dict[str, Any], where: str) -> list[tuple[str, str]]:
    """``roles: [{name, options}]``: roles the emulator creates on the server's cluster before seeding (options: any
    of [NO]LOGIN, [NO]INHERIT, [NO]CREATEDB, [NO]CREATEROLE; default NOLOGIN)."""
    out = []
    for k, r in enumerate(sv.get("roles") or []):
        name = str(_req(r, "name", f"{where}.roles[{k}]"))
        options = str(r.get("options") or "NOLOGIN")
        if not _ROLE_NAME.match(name):
            raise WorldError(f"{where}.roles[{k}].name: '{name}' is not a plain lower-case role name")
        if not _ROLE_OPTIONS.match(options):
            raise WorldError(f"{where}.roles[{k}].options: use [NO]LOGIN, [NO]INHERIT, [NO]CREATEDB, [NO]CREATEROLE")
        out.append((name, options))
    return out


def _db_owner(d: dict[str, Any], where: str, roles: list[tuple[str, str]]) -> str | None:
    owner = d.get("owner")
    if owner is None:
        return None
    if str(owner) not in [n for n, _ in roles]:
        raise WorldError(f"{where}.owner: '{owner}' is not declared under the server's roles")
    return str(owner)


def _key_vaults(raw: dict[str, Any], servers: dict[str, Server]) -> tuple[dict[str, str], dict[str, Secret]]:
    key_vaults: dict[str, str] = {}
    secrets: dict[str, Secret] = {}
    for i, kv in enumerate(raw.get("key_vaults") or []):
        where = f"key_vaults[{i}]"
        kid = str(_req(kv, "id", where))
        m = _KV_ID.match(kid)
        if not m:
            raise WorldError(f"{where}.id: '{kid}' is not a Microsoft.KeyVault/vaults ARM id")
        key_vaults[m["name"].lower()] = kid
        for j, sec in enumerate(kv.get("secrets") or []):
            secret = _secret(sec, f"{where}.secrets[{j}]", m["name"].lower(), kid, servers)
            secrets[secret.uri.lower()] = secret
    return key_vaults, secrets


def _secret(sec: dict[str, Any], where: str, kv_name: str, kv_id: str, servers: dict[str, Server]) -> Secret:
    name = str(_req(sec, "name", where))
    server_id = sec.get("server")
    if server_id is not None and str(server_id).lower() not in servers:
        raise WorldError(f"{where}.server: '{server_id}' is not declared under servers")
    uri = f"https://{kv_name}.vault.azure.net/secrets/{name}"
    fmt, sslmode = str(sec.get("format", "ado")), str(sec.get("sslmode", "disable"))
    if fmt not in SECRET_FORMATS:
        raise WorldError(f"{where}.format: use one of {list(SECRET_FORMATS)}")
    if sslmode not in SSL_MODES:
        raise WorldError(f"{where}.sslmode: use one of {list(SSL_MODES)}")
    return Secret(uri, name, kv_id, str(server_id) if server_id else None, str(sec.get("user") or "restore_user"),
                  sec.get("value"), fmt, sslmode)


def _containers(raw: dict[str, Any]) -> dict[str, Container]:
    containers: dict[str, Container] = {}
    for i, sa in enumerate(raw.get("storage_accounts") or []):
        where = f"storage_accounts[{i}]"
        aid = str(_req(sa, "id", where))
        m = _SA_ID.match(aid)
        if not m:
            raise WorldError(f"{where}.id: '{aid}' is not a Microsoft.Storage/storageAccounts ARM id")
        acct = m["name"].lower()
        for j, c in enumerate(sa.get("containers") or []):
            cname = str(_req(c, "name", f"{where}.containers[{j}]"))
            url = f"https://{acct}.blob.core.windows.net/{cname}"
            containers[url.lower()] = Container(
                cname, acct, aid, f"{aid}/blobServices/default/containers/{cname}", url,
                str(_req(sa, "location", where)).lower(), str(c.get("azurite_container") or f"{acct}-{cname}"))
    return containers


def _vault(v: dict[str, Any], where: str, servers: dict[str, Server], pairs: dict[str, str], now: datetime) -> Vault:
    vid = str(_req(v, "id", where))
    m = _VAULT_ID.match(vid)
    if not m:
        raise WorldError(f"{where}.id: '{vid}' is not a Microsoft.DataProtection/backupVaults ARM id")
    redundancy, crr = _redundancy(v, where)
    id_type, system_principal, users = _vault_identity(v, where)
    csr = str(v.get("cross_subscription_restore", "Enabled"))
    if csr not in CSR_STATES:
        raise WorldError(f"{where}.cross_subscription_restore: use {', '.join(CSR_STATES)}")
    bis = [_backup_instance(b, f"{where}.backup_instances[{j}]", vid, servers, users, now)
           for j, b in enumerate(v.get("backup_instances") or [])]
    vault = Vault(vid, m["name"], m["sub"], m["rg"], str(_req(v, "location", where)).lower(), redundancy, crr,
                  system_principal, str(v.get("tenant_id", "00000000-0000-0000-0000-0000000000aa")), bis, id_type,
                  users, csr, _replicated_regions(v, where))
    if crr == "Enabled" and vault.location not in pairs:
        raise WorldError(f"{where}: CRR is enabled but region '{v['location']}' has no pair under regions")
    return vault


def _redundancy(v: dict[str, Any], where: str) -> tuple[str, str]:
    """(storage_redundancy, cross_region_restore) of a vault."""
    redundancy = str(v.get("storage_redundancy", "LocallyRedundant"))
    if redundancy not in ("GeoRedundant", "LocallyRedundant", "ZoneRedundant"):
        raise WorldError(f"{where}.storage_redundancy: use GeoRedundant, LocallyRedundant or ZoneRedundant")
    crr = str(v.get("cross_region_restore", "Disabled"))
    if crr not in ("Enabled", "Disabled"):
        raise WorldError(f"{where}.cross_region_restore: use Enabled or Disabled")
    if crr == "Enabled" and redundancy != "GeoRedundant":
        raise WorldError(f"{where}: cross_region_restore Enabled needs storage_redundancy GeoRedundant")
    return redundancy, crr


def _backup_instance(b: dict[str, Any], where: str, vault_id: str, servers: dict[str, Server],
                     users: list[UserIdentity], now: datetime) -> BackupInstance:
    name = str(_req(b, "name", where))
    ds = str(_req(b, "datasource", where))
    if "/databases/" in ds.lower():
        server_id, db = re.split("/databases/", ds, maxsplit=1, flags=re.IGNORECASE)
        ds_type = SINGLE
    else:
        server_id, db, ds_type = ds, None, FLEXIBLE
    srv = servers.get(server_id.lower())
    if srv is None:
        raise WorldError(f"{where}.datasource: server '{server_id}' is not declared under servers")
    if (ds_type == SINGLE) != (srv.kind == "servers"):
        raise WorldError(f"{where}.datasource: Single Server datasources are '<servers id>/databases/<db>', "
                         "Flexible Server datasources are the flexibleServers id itself")
    if db is not None and db not in [d.name for d in srv.databases]:
        raise WorldError(f"{where}.datasource: database '{db}' is not declared on server '{srv.name}'")
    default_db = db if db is not None else (srv.databases[0].name if srv.databases else "postgres")
    rps = [_recovery_point(rp, f"{where}.recovery_points[{k}]", rp_id_for(name, k), default_db, now)
           for k, rp in enumerate(b.get("recovery_points") or [])]
    return BackupInstance(name, vault_id, ds, ds_type, srv.id, db, str(b.get("policy", "pg-weekly")), rps,
                          _bi_identity(b, where, users))


def _recovery_point(rp: dict[str, Any], where: str, default_id: str, default_db: str,
                    now: datetime) -> RecoveryPointSpec:
    """``seed_sql`` as plain text applies to ``default_db`` (the instance's database, else the server's first)."""
    tier = str(rp.get("tier", "vault")).lower()
    if tier not in ("vault", "archive"):
        raise WorldError(f"{where}.tier: use 'vault' or 'archive'")
    seed = rp.get("seed_sql") or {}
    if isinstance(seed, str):
        seed = {default_db: seed}
    if not isinstance(seed, dict):
        raise WorldError(f"{where}.seed_sql: give SQL text or a mapping database -> SQL")
    return RecoveryPointSpec(str(rp.get("id") or default_id), _time(_req(rp, "time", where), now, f"{where}.time"),
                             tier, {str(kk): str(vv) for kk, vv in seed.items()}, _rp_state(rp, where))
