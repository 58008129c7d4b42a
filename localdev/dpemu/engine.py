"""The emulated Backup vault service: state, rules, long-running operations, jobs and ARM JSON rendering.

Consumes: a :class:`World`, a :class:`SimClock`, a :class:`DataPlane`.
Produces: ARM-shaped dicts for the server to send, real backups at start-up and real restores in worker threads.
Rule failures raise :class:`RuleError` (surfaced as a Failed LRO); malformed bodies raise :class:`BadRequest`
(synchronous 400). Every error code the emulator invents is listed in ``docs/emulator.md``.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .dataplane import ConnInfo, DataPlane, DataPlaneError, parse_ado_connection_string
from .timeutil import SimClock, format_duration, iso, parse_duration, parse_time
from .world import FLEXIBLE, SINGLE, BackupInstance, Container, RoleAssignment, Server, Vault, World

log = logging.getLogger("dpemu.engine")

RP_TYPE = "Microsoft.DataProtection/backupVaults/backupInstances/recoveryPoints"
JOB_TYPE = "Microsoft.DataProtection/BackupVaults/backupJobs"
READER_ROLES = {"reader", "contributor", "owner"}
KV_ROLES = {"key vault secrets user", "key vault secrets officer", "key vault administrator"}
BLOB_ROLES = {"storage blob data contributor", "storage blob data owner"}
RESTORE_TYPES = {"azurebackuprecoverypointbasedrestorerequest": "AzureBackupRecoveryPointBasedRestoreRequest",
                 "azurebackuprestorewithrehydrationrequest": "AzureBackupRestoreWithRehydrationRequest"}
NULL_TIME = "0001-01-01T00:00:00Z"


class BadRequest(Exception):
    """Synchronous 4xx with an ARM CloudError body."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


class NotFound(BadRequest):
    def __init__(self, message: str, code: str = "ResourceNotFound") -> None:
        super().__init__(code, message, 404)


class RuleError(Exception):
    """A restore rule failed: reported as a Failed LRO (validate/trigger) with a UserFacingError."""

    def __init__(self, code: str, message: str, action: str = "") -> None:
        super().__init__(message)
        self.code, self.message, self.action = code, message, action


def user_facing_error(code: str, message: str, action: str = "") -> dict[str, Any]:
    info = {"code": code, "message": message, "recommendedAction": [action] if action else [], "target": "",
            "innerError": {"code": "InnerErrorCodeUnavailable", "additionalInfo": {"DetailedNonLocalisedMessage":
                                                                                      message}},
            "isRetryable": False, "isUserError": code.startswith("UserError"),
            "properties": {"ActivityId": f"{uuid.uuid4()}-Ibz"}}
    return {"code": code, "message": message, "additionalInfo": [{"type": "UserFacingError", "info": info}]}


@dataclass
class RecoveryPoint:
    id: str
    bi_id: str
    time: datetime
    tier: str  # vault | archive
    files: dict[str, int]
    postgres_version: int
    server_name: str
    databases: list[str]
    datastore_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    rehydration: dict[str, Any] | None = None  # {priority, started, ready_at, retention}
    state: str = "Completed"  # recoveryPointState (Completed | Partial)

    def rehydration_status(self, now: datetime) -> tuple[str | None, datetime | None]:
        r = self.rehydration
        if self.tier != "archive" or r is None:
            return None, None
        if now < r["ready_at"]:
            return "CREATE_IN_PROGRESS", None
        expiry: datetime = r["ready_at"] + r["retention"]
        if now >= expiry:
            return "DELETED", expiry
        return "COMPLETED", expiry

    def usable_from_vault(self, now: datetime) -> bool:
        return self.tier == "vault" or self.rehydration_status(now)[0] == "COMPLETED"


@dataclass(frozen=True)
class JobBehaviour:
    """How a restore job deviates from "runs, then Completed/Failed" (fault modes job_pause/job_warn/job_cancel).

    pause: ``Paused`` from half its run for ``pause_for`` (simulated), then runs on; its end moves by the pause.
    warn: does the real work, then ends ``CompletedWithWarnings`` with one ``warningDetails`` entry (code/message).
    cancel: ``Cancelling`` from half its run, ``Cancelled`` at its end; no data-plane work is done.
    """

    mode: str  # pause | warn | cancel
    code: str = "UserErrorRestoreCompletedWithWarnings"
    message: str = "The restore completed with warnings."
    pause_for: timedelta = timedelta(hours=2)


@dataclass
class Job:
    id: str
    vault: Vault
    bi: BackupInstance
    category: str
    operation: str
    start: datetime
    duration: timedelta
    subtasks: list[str]
    crr_location: str | None = None
    rp: RecoveryPoint | None = None
    destination: str | None = None
    rehydration_priority: str | None = None
    forced_error: tuple[str, str] | None = None
    work_error: DataPlaneError | None = None
    work_done_at: datetime | None = None
    done: threading.Event = field(default_factory=threading.Event)
    activity: str = field(default_factory=lambda: f"{uuid.uuid4()}-Ibz")
    behaviour: JobBehaviour | None = None

    @property
    def arm_id(self) -> str:
        return f"{self.vault.id}/backupJobs/{self.id}"

    @property
    def skips_work(self) -> bool:
        """No data-plane work: an injected failure, or a job that gets cancelled."""
        return bool(self.forced_error) or self._mode == "cancel"

    @property
    def _mode(self) -> str | None:
        return self.behaviour.mode if self.behaviour else None

    def status(self, now: datetime) -> tuple[str, datetime | None]:
        half = self.start + self.duration / 2
        due = self.start + self.duration
        if self._mode == "pause":
            assert self.behaviour is not None
            if half <= now < half + self.behaviour.pause_for:
                return "Paused", None
            due += self.behaviour.pause_for
        if self._mode == "cancel" and now >= half:
            return ("Cancelled", due) if now >= due and self.done.is_set() else ("Cancelling", None)
        if now < due or not self.done.is_set():
            return "InProgress", None
        end = max(due, self.work_done_at or due)
        if self.forced_error or self.work_error:
            return "Failed", end
        return ("CompletedWithWarnings" if self._mode == "warn" else "Completed"), end


@dataclass
class Operation:
    id: str
    subscription: str
    location: str
    start: datetime
    ready_at: datetime
    job_id: str | None = None  # full ARM id (trigger operations)
    error: dict[str, Any] | None = None
    result_kind: str = "job"  # job | validate | none


@dataclass(frozen=True)
class Principal:
    """The identity a restore acts as: its principal id and how messages name it."""

    id: str
    label: str  # "managed identity" | "user-assigned identity '<name>'"


@dataclass
class ParsedRestore:
    object_type: str
    source_store: str
    rp_id: str
    restore_location: str
    kind: str  # database | files
    target_db_id: str = ""
    target_server_id: str = ""
    target_db: str = ""
    secret_uri: str = ""
    container_url: str = ""
    container_arm_id: str = ""
    file_prefix: str = ""
    rehydration_priority: str | None = None
    rehydration_duration: str | None = None
    identity_details: dict[str, Any] | None = None  # as sent (None: absent, i.e. the system-assigned identity)


def _get(d: dict[str, Any], *keys: str) -> Any:
    """Case-insensitive key lookup (the service seems to accept dataSourceInfo/datasourceInfo alike)."""
    lower = {k.lower(): v for k, v in d.items()} if isinstance(d, dict) else {}
    for k in keys:
        if k.lower() in lower:
            return lower[k.lower()]
    return None


def _obj(d: Any, where: str) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise BadRequest("UserErrorInvalidRequestParameter", f"{where}: expected a JSON object")
    return d


def _str(d: dict[str, Any], key: str, where: str) -> str:
    v = _get(d, key)
    if not isinstance(v, str) or not v.strip():
        raise BadRequest("UserErrorInvalidRequestParameter", f"{where}.{key}: required string is missing or empty")
    return v.strip()


def encode_token(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_token(token: str) -> dict[str, Any]:
    try:
        pad = "=" * (-len(token) % 4)
        out = json.loads(base64.urlsafe_b64decode(token + pad))
        if not isinstance(out, dict):
            raise ValueError
        return out
    except (ValueError, TypeError) as exc:
        raise BadRequest("InvalidSkipToken", "$skipToken is not one this service issued; restart the listing "
                                             "without $skipToken") from exc


_FILTER = re.compile(r"(startDate|endDate)\s+eq\s+'([^']+)'", re.IGNORECASE)


def parse_rp_filter(text: str | None) -> tuple[datetime | None, datetime | None]:
    if not text:
        return None, None
    found = _FILTER.findall(text)
    rest = _FILTER.sub("", text)
    if not found or re.sub(r"\band\b", "", rest, flags=re.IGNORECASE).strip():
        raise BadRequest("UserErrorInvalidFilter", f"$filter '{text}' is not supported; use \"startDate eq "
                                                   "'2026-01-01T00:00:00.0000000Z' and endDate eq '...'\"")
    start = end = None
    for key, value in found:
        try:
            t = parse_time(value)
        except ValueError as exc:
            raise BadRequest("UserErrorInvalidFilter", f"$filter: '{value}' is not an ISO-8601 timestamp") from exc
        if key.lower() == "startdate":
            start = t
        else:
            end = t
    return start, end


class Engine:
    def __init__(self, world: World, clock: SimClock, data: DataPlane) -> None:
        self.world = world
        self.clock = clock
        self.data = data
        self.settings = world.settings
        self.lock = threading.RLock()
        self.rps: dict[str, list[RecoveryPoint]] = {}
        self.jobs: dict[str, Job] = {}
        self.ops: dict[str, Operation] = {}
        self.roles: list[RoleAssignment] = list(world.role_assignments)
        self._secret_values: dict[str, str] = {}

    # ================================================================ start-up
    def seed(self) -> None:
        """Create source databases and restore users, then take every declared backup in time order."""
        w = self.world
        self.data.ensure_container(self.settings.datastore_container)
        for c in w.containers.values():
            self.data.ensure_container(c.azurite_container)
        source_ids = {bi.server_id.lower() for v in w.vaults.values() for bi in v.backup_instances}
        for sid in sorted(source_ids):
            srv = w.servers[sid]
            for db in srv.databases:
                self.data.recreate_database(srv.cluster, db.name, db.setup_sql)
        for uri, sec in w.secrets.items():
            if sec.raw_value is not None:
                self._secret_values[uri] = sec.raw_value
                continue
            if sec.server_id is None:
                continue
            srv = w.servers[sec.server_id.lower()]
            cinfo = self.data.cluster(srv.cluster)
            password = secrets.token_urlsafe(18)
            self.data.ensure_restore_user(srv.cluster, sec.user, password)
            self._secret_values[uri] = (f"Server={cinfo.host};Port={cinfo.port};Database=postgres;"
                                        f"User Id={sec.user};Password={password};Ssl Mode=Disable;")
        plan = [(rp.time, v, bi, rp) for v in w.vaults.values() for bi in v.backup_instances
                for rp in bi.recovery_points]
        for _, v, bi, spec in sorted(plan, key=lambda x: x[0]):
            srv = w.servers[bi.server_id.lower()]
            for dbname, sql in spec.seed_sql.items():
                self.data.run_sql(srv.cluster, dbname, sql)
            self._take_backup(v, bi, spec.id, spec.time, spec.tier, spec.state)
        log.info("seeded %d recovery points", len(plan))

    def _take_backup(self, vault: Vault, bi: BackupInstance, rp_id: str, when: datetime, tier: str,
                     state: str = "Completed") -> RecoveryPoint:
        srv = self.world.servers[bi.server_id.lower()]
        dbs = [bi.database] if bi.database else [d.name for d in srv.databases]
        files = self.data.backup(cluster=srv.cluster, databases=dbs, flexible=bi.datasource_type == FLEXIBLE,
                                 prefix=self.data.blob_prefix(vault.name, bi.name, rp_id))
        rp = RecoveryPoint(rp_id, bi.id.lower(), when, tier, files, srv.postgres_version, srv.name, dbs, state=state)
        with self.lock:
            lst = self.rps.setdefault(bi.id.lower(), [])
            lst.append(rp)
            lst.sort(key=lambda r: r.time, reverse=True)
        return rp

    def backup_now(self, bi_ref: str, state: str = "Completed", tier: str = "vault",
                   age: timedelta = timedelta(0)) -> dict[str, Any]:
        """Admin: take a real backup of a backup instance now (Completed or Partial); its point is dated ``age`` ago,
        in ``tier``."""
        if state not in ("Completed", "Partial"):
            raise BadRequest("InvalidRecoveryPointState", f"state: use Completed or Partial, not '{state}'")
        if tier not in ("vault", "archive"):
            raise BadRequest("InvalidTier", f"tier: use vault or archive, not '{tier}'")
        vault, bi = self.find_bi_any(bi_ref)
        now = self.clock.now()
        rp = self._take_backup(vault, bi, uuid.uuid4().hex, now - age, tier, state)
        job = Job(str(uuid.uuid4()), vault, bi, "Backup", "Backup", now, timedelta(0), ["Take Backup"], rp=rp)
        job.work_done_at = now
        job.done.set()
        with self.lock:
            self.jobs[job.id] = job
        return self.rp_json(vault, bi, rp)

    # ================================================================ lookups
    def vault(self, sub: str, rg: str, name: str) -> Vault:
        for v in self.world.vaults.values():
            if (v.subscription.lower(), v.resource_group.lower(), v.name.lower()) == (sub.lower(), rg.lower(),
                                                                                        name.lower()):
                return v
        raise NotFound(f"The Resource 'Microsoft.DataProtection/backupVaults/{name}' under resource group '{rg}' "
                       "was not found.")

    def bi(self, vault: Vault, name: str) -> BackupInstance:
        for b in vault.backup_instances:
            if b.name.lower() == name.lower():
                return b
        raise NotFound(f"Backup instance '{name}' was not found in vault '{vault.name}'.",
                       code="UserErrorBackupInstanceNotFound")

    def find_bi_any(self, ref: str) -> tuple[Vault, BackupInstance]:
        for v in self.world.vaults.values():
            for b in v.backup_instances:
                if ref.lower() in (b.name.lower(), b.id.lower()):
                    return v, b
        raise NotFound(f"backup instance '{ref}' is not in the world (give its name or ARM id)")

    def rp(self, bi: BackupInstance, rp_id: str) -> RecoveryPoint:
        for r in self.rps.get(bi.id.lower(), []):
            if r.id.lower() == rp_id.lower():
                return r
        raise NotFound(f"Recovery point '{rp_id}' was not found for backup instance '{bi.name}'.",
                       code="UserErrorRecoveryPointNotFound")

    def has_role(self, principal: str, roles: set[str], resource_id: str) -> bool:
        rid = resource_id.lower().rstrip("/")
        with self.lock:
            for ra in self.roles:
                scope = ra.scope.lower().rstrip("/")
                if ra.principal.lower() == principal.lower() and ra.role.lower() in roles and (
                        rid == scope or rid.startswith(scope + "/")):
                    return True
        return False

    def add_role(self, body: dict[str, Any], remove: bool = False) -> dict[str, Any]:
        try:
            ra = RoleAssignment(str(body["principal"]), str(body["role"]), str(body["scope"]))
        except (KeyError, TypeError) as exc:
            raise BadRequest("InvalidRoleAssignment", "give {\"principal\": ..., \"role\": ..., \"scope\": ...}") \
                from exc
        with self.lock:
            if remove:
                before = len(self.roles)
                self.roles = [r for r in self.roles if (r.principal.lower(), r.role.lower(), r.scope.lower()) !=
                              (ra.principal.lower(), ra.role.lower(), ra.scope.lower())]
                return {"removed": before - len(self.roles)}
            self.roles.append(ra)
        return {"principal": ra.principal, "role": ra.role, "scope": ra.scope}

    # ================================================================ rendering
    @staticmethod
    def identity_json(v: Vault) -> dict[str, Any]:
        out: dict[str, Any] = {"type": v.identity_type, "principalId": v.principal_id,
                               "tenantId": v.tenant_id if v.principal_id else None}
        if v.user_identities:
            out["userAssignedIdentities"] = {u.id: {"principalId": u.principal_id, "clientId": u.client_id}
                                             for u in v.user_identities}
        return out

    def vault_json(self, v: Vault) -> dict[str, Any]:
        secondary = self.world.region_pairs.get(v.location) if v.storage_redundancy == "GeoRedundant" else None
        return {
            "id": v.id, "name": v.name, "type": "Microsoft.DataProtection/backupVaults", "location": v.location,
            "tags": {}, "eTag": None,
            "identity": self.identity_json(v),
            "properties": {
                "provisioningState": "Succeeded",
                "storageSettings": [{"datastoreType": "VaultStore", "type": v.storage_redundancy}],
                "featureSettings": {"crossRegionRestoreSettings": {"state": v.cross_region_restore},
                                    "crossSubscriptionRestoreSettings": {"state": v.cross_subscription_restore}},
                "replicatedRegions": v.replicated_regions if v.replicated_regions is not None else
                                     [secondary] if secondary else [],
                "securitySettings": {"softDeleteSettings": {"state": "On", "retentionDurationInDays": 14},
                                     "immutabilitySettings": {"state": "Disabled"}},
                "monitoringSettings": {"azureMonitorAlertSettings": {"alertsForAllJobFailures": "Enabled"}},
                "isVaultProtectedByResourceGuard": False, "secureScore": "Adequate", "bcdrSecurityLevel": "Good",
                "resourceMoveState": "Unknown",
            },
        }

    def bi_json(self, v: Vault, b: BackupInstance) -> dict[str, Any]:
        srv = self.world.servers[b.server_id.lower()]
        set_type = "Microsoft.DBforPostgreSQL/servers" if b.datasource_type == SINGLE else FLEXIBLE
        ds_name = b.database if b.database else srv.name
        return {
            "id": b.id, "name": b.name, "type": "Microsoft.DataProtection/backupVaults/backupInstances", "tags": {},
            "properties": {
                "objectType": "BackupInstance",
                "friendlyName": f"{srv.name}\\{b.database}" if b.database else srv.name,
                "dataSourceInfo": {"objectType": "Datasource", "resourceID": b.datasource_id,
                                   "resourceName": ds_name, "resourceType": b.datasource_type,
                                   "resourceLocation": srv.location, "datasourceType": b.datasource_type,
                                   "resourceUri": ""},
                "dataSourceSetInfo": {"objectType": "DatasourceSet", "resourceID": srv.id, "resourceName": srv.name,
                                      "resourceType": set_type, "resourceLocation": srv.location,
                                      "datasourceType": b.datasource_type, "resourceUri": ""},
                "policyInfo": {"policyId": f"{v.id}/backupPolicies/{b.policy}", "policyVersion": "",
                               "policyParameters": {"dataStoreParametersList": []}},
                "protectionStatus": {"status": "ProtectionConfigured"},
                "currentProtectionState": "ProtectionConfigured",
                "provisioningState": "Succeeded",
                "validationType": "ShallowValidation",
                **({"identityDetails": {"useSystemAssignedIdentity": False, "userAssignedIdentityArmUrl": b.identity}}
                   if b.identity else {}),
            },
        }

    def rp_json(self, v: Vault, b: BackupInstance, rp: RecoveryPoint) -> dict[str, Any]:
        now = self.clock.now()
        meta = json.dumps({"objectType": "PostgresBackupMetadata", "version": "1.0",
                           "postgresVersion": str(rp.postgres_version),
                           "dbName": rp.databases[0] if len(rp.databases) == 1 else rp.databases,
                           "serverName": rp.server_name, "backupType": "Full", "backupDumpFormat": "CUSTOM",
                           "bytesTransferred": sum(rp.files.values())})
        stores: list[dict[str, Any]] = []
        if rp.tier == "archive":
            status, expiry = rp.rehydration_status(now)
            shown_expiry = iso(expiry) if expiry and status == "COMPLETED" else None
            where = self.settings.rehydration_reported_on
            on_archive = "archive_entry" in where
            store = {"id": rp.datastore_id, "type": "ArchiveStore", "creationTime": iso(rp.time + timedelta(days=7)),
                     "expiryTime": iso(rp.time + timedelta(days=5 * 365)), "metaData": meta, "state": "COMMITTED",
                     "visible": True, "rehydrationExpiryTime": shown_expiry if on_archive else None,
                     "rehydrationStatus": status if on_archive else None}
            expiry_time = rp.time + timedelta(days=5 * 365)
            if "vault_entry" in where and status is not None:
                stores.append({"id": f"{rp.datastore_id}-rehydrated", "type": "VaultStore",
                               "creationTime": iso(rp.rehydration["started"]) if rp.rehydration else None,
                               "expiryTime": shown_expiry, "metaData": meta, "state": "COMMITTED",
                               "visible": status == "COMPLETED", "rehydrationExpiryTime": shown_expiry,
                               "rehydrationStatus": status})
        else:
            expiry_time = rp.time + timedelta(days=90)
            store = {"id": rp.datastore_id, "type": "VaultStore", "creationTime": iso(rp.time),
                     "expiryTime": iso(expiry_time), "metaData": meta, "state": "COMMITTED", "visible": True,
                     "rehydrationExpiryTime": None, "rehydrationStatus": None}
        return {
            "id": f"{b.id}/recoveryPoints/{rp.id}", "name": rp.id, "type": RP_TYPE,
            "properties": {
                "objectType": "AzureBackupDiscreteRecoveryPoint", "recoveryPointId": rp.id,
                "recoveryPointTime": iso(rp.time), "recoveryPointType": "Full", "friendlyName": rp.id,
                "policyName": b.policy, "policyVersion": None,
                "retentionTagName": "Monthly" if rp.tier == "archive" else "Default",
                "retentionTagVersion": "637671427933449525", "recoveryPointState": rp.state,
                "expiryTime": iso(expiry_time), "recoveryPointDataStoresDetails": [store, *stores],
            },
        }

    def job_json(self, job: Job) -> dict[str, Any]:
        now = self.clock.now()
        status, end = job.status(now)
        srv = self.world.servers[job.bi.server_id.lower()]
        m = re.match(r"^/subscriptions/([^/]+)/resourceGroups/([^/]+)/", job.bi.datasource_id, re.IGNORECASE)
        ds_sub, ds_rg = (m.group(1), m.group(2)) if m else ("", "")
        errors = None
        if status == "Failed":
            code, msg = job.forced_error or (job.work_error.code, str(job.work_error))  # type: ignore[union-attr]
            info = user_facing_error(code, msg)["additionalInfo"][0]["info"]
            errors = [info]
        sub_status = {"Completed": "Completed", "CompletedWithWarnings": "Completed", "Failed": "Failed",
                      "Cancelled": "Cancelled"}.get(status, "InProgress")
        subtasks = []
        for i, name in enumerate(job.subtasks, start=1):
            st = sub_status
            if status == "InProgress" and name == "Rehydrate" and job.rp and job.rp.rehydration and \
                    now >= job.rp.rehydration["ready_at"] and "job_subtask" in self.settings.rehydration_reported_on:
                st = "Completed"
            subtasks.append({"taskId": i, "taskName": name, "taskStatus": st, "taskProgress": None,
                             "additionalDetails": None})
        etag_time = (end or now).strftime("%Y-%m-%dT%H%%3A%M%%3A%S.%fZ")
        return {
            "id": job.arm_id, "name": job.id, "type": JOB_TYPE,
            "properties": {
                "activityID": job.activity,
                "backupInstanceFriendlyName": f"{srv.name}\\{job.bi.database}" if job.bi.database else srv.name,
                "backupInstanceId": job.bi.id, "dataSourceId": job.bi.datasource_id,
                "dataSourceLocation": srv.location, "dataSourceName": job.bi.database or srv.name,
                "dataSourceSetName": srv.name, "dataSourceType": job.bi.datasource_type,
                "policyId": f"{job.vault.id}/backupPolicies/{job.bi.policy}", "policyName": job.bi.policy,
                "vaultName": job.vault.name, "subscriptionId": job.vault.subscription,
                "sourceSubscriptionID": ds_sub, "sourceResourceGroup": ds_rg,
                "operationCategory": job.category, "operation": job.operation, "status": status,
                "isUserTriggered": job.category != "Backup", "progressEnabled": False, "progressUrl": None,
                "restoreType": None, "rehydrationPriority": job.rehydration_priority,
                "sourceDataStoreName": "ArchiveStore" if job.operation == "Rehydrate" else None,
                "destinationDataStoreName": "VaultStore" if job.operation == "Rehydrate" else None,
                "startTime": iso(job.start), "endTime": iso(end) if end else None,
                "duration": format_duration((end or now) - job.start),
                "supportedActions": [""], "etag": f"W/\"datetime'{etag_time}'\"", "errorDetails": errors,
                "extendedInfo": {
                    "additionalDetails": None, "backupInstanceState": None, "dataTransferedInBytes":
                        sum(job.rp.files.values()) if job.rp and sub_status == "Completed" else None,
                    "recoveryDestination": self._destination(job),
                    "sourceRecoverPoint": {"recoveryPointID": job.rp.id, "recoveryPointTime": iso(job.rp.time)}
                    if job.rp else None,
                    "targetRecoverPoint": None, "subTasks": subtasks,
                    "warningDetails": self._warning_details(job) if status == "CompletedWithWarnings" else None,
                },
            },
        }

    def _destination(self, job: Job) -> str | None:
        fmt = self.settings.job_destination_format
        if fmt == "none" or not job.destination:
            return None
        return job.destination if fmt == "arm" else job.destination.rstrip("/").rsplit("/", 1)[-1]

    def _warning_details(self, job: Job) -> list[dict[str, Any]]:
        assert job.behaviour is not None
        info = user_facing_error(job.behaviour.code, job.behaviour.message)["additionalInfo"][0]["info"]
        return [{"resourceName": job.bi.database or self.world.servers[job.bi.server_id.lower()].name,
                 "warning": info}]

    def op_status_json(self, op: Operation) -> dict[str, Any]:
        now = self.clock.now()
        oid = f"/subscriptions/{op.subscription}/providers/Microsoft.DataProtection/locations/{op.location}" \
              f"/operationStatus/{op.id}"
        body: dict[str, Any] = {"id": oid, "name": op.id, "startTime": iso(op.start)}
        if now < op.ready_at:
            body.update(status="Inprogress", endTime=NULL_TIME)
        elif op.error:
            body.update(status="Failed", endTime=iso(op.ready_at), error=op.error)
        else:
            body.update(status="Succeeded", endTime=iso(op.ready_at))
            if op.result_kind != "none":
                body["properties"] = self.op_result_json(op)
        return body

    def op_result_json(self, op: Operation) -> dict[str, Any]:
        out: dict[str, Any] = {"objectType": "OperationJobExtendedInfo"}
        if op.job_id:
            out["jobId"] = op.job_id
        return out

    def op_done(self, op: Operation) -> bool:
        return self.clock.now() >= op.ready_at

    def get_op(self, sub: str, location: str, op_id: str) -> Operation:
        op = self.ops.get(op_id)
        if op is None or op.subscription.lower() != sub.lower() or op.location.lower() != location.lower():
            raise NotFound(f"Operation '{op_id}' was not found in location '{location}'.",
                           code="OperationNotFound")
        return op

    def new_op(self, sub: str, location: str, *, job_id: str | None = None, error: dict[str, Any] | None = None,
               result_kind: str = "job") -> Operation:
        now = self.clock.now()
        raw = f"{uuid.uuid4()};{uuid.uuid4().hex[:8]}"
        op_id = base64.b64encode(raw.encode()).decode()
        if not op_id.endswith("=="):
            op_id = base64.b64encode((raw + "x").encode()).decode()
        op_id = op_id.replace("/", "_").replace("+", "-")
        op = Operation(op_id, sub, location.lower(), now, now + self.settings.lro_duration, job_id, error,
                       result_kind)
        with self.lock:
            self.ops[op_id] = op
        return op

    # ================================================================ listings
    def list_rps(self, v: Vault, b: BackupInstance, filt: str | None, skip: str | None,
                 secondary: bool = False) -> tuple[list[dict[str, Any]], int | None]:
        start, end = parse_rp_filter(filt)
        offset = int(decode_token(skip).get("o", 0)) if skip else 0
        now = self.clock.now()
        items = []
        for r in self.rps.get(b.id.lower(), []):
            if start and r.time < start or end and r.time > end:
                continue
            if secondary and r.time + self.settings.crr_replication_lag > now:
                continue
            items.append(r)
        page = items[offset:offset + self.settings.page_size]
        nxt = offset + self.settings.page_size if offset + self.settings.page_size < len(items) else None
        return [self.rp_json(v, b, r) for r in page], nxt

    def list_jobs(self, v: Vault, offset: int, crr_location: str | None = None) -> tuple[list[dict[str, Any]],
                                                                                          int | None]:
        with self.lock:
            jobs = [j for j in self.jobs.values() if j.vault is v and (j.crr_location or None) == crr_location]
        jobs.sort(key=lambda j: j.start, reverse=True)
        size = self.settings.job_page_size
        page = jobs[offset:offset + size]
        nxt = offset + size if offset + size < len(jobs) else None
        return [self.job_json(j) for j in page], nxt

    def get_job(self, v: Vault, job_id: str, crr_location: str | None = None) -> Job:
        jid = job_id.rsplit("/", 1)[-1].lower()
        job = self.jobs.get(jid)
        if job is None or job.vault is not v or (job.crr_location or None) != (crr_location.lower() if crr_location
                                                                                  else None):
            raise NotFound(f"Job '{job_id}' was not found in vault '{v.name}'.", code="UserErrorJobNotFound")
        return job

    # ================================================================ parsing requests
    def parse_restore(self, body: Any, where: str = "body") -> ParsedRestore:
        req = _obj(body, where)
        raw_type = _str(req, "objectType", where)
        otype = RESTORE_TYPES.get(raw_type.lower())
        if otype is None:
            raise BadRequest("UserErrorInvalidRequestParameter",
                             f"{where}.objectType '{raw_type}' is not supported for PostgreSQL; use "
                             "AzureBackupRecoveryPointBasedRestoreRequest or AzureBackupRestoreWithRehydrationRequest")
        store = _str(req, "sourceDataStoreType", where)
        if store.lower() not in ("vaultstore", "archivestore"):
            raise BadRequest("UserErrorInvalidRequestParameter",
                             f"{where}.sourceDataStoreType '{store}' is not supported; use VaultStore or ArchiveStore")
        rp_id = _str(req, "recoveryPointId", where)
        tgt = _obj(_get(req, "restoreTargetInfo"), f"{where}.restoreTargetInfo")
        ttype = _str(tgt, "objectType", f"{where}.restoreTargetInfo")
        option = _str(tgt, "recoveryOption", f"{where}.restoreTargetInfo")
        if option.lower() != "failifexists":
            raise BadRequest("UserErrorInvalidRequestParameter",
                             f"{where}.restoreTargetInfo.recoveryOption '{option}' is not supported; use FailIfExists")
        loc = str(_get(tgt, "restoreLocation") or "").lower().replace(" ", "")
        p = ParsedRestore(otype, "ArchiveStore" if store.lower() == "archivestore" else "VaultStore", rp_id, loc,
                          "database")
        ident = _get(req, "identityDetails")
        if ident is not None:
            p.identity_details = _obj(ident, f"{where}.identityDetails")
        if otype == "AzureBackupRestoreWithRehydrationRequest":
            p.rehydration_priority = _str(req, "rehydrationPriority", where)
            p.rehydration_duration = _str(req, "rehydrationRetentionDuration", where)
        if ttype.lower() == "restoretargetinfo":
            w2 = f"{where}.restoreTargetInfo.datasourceInfo"
            ds = _obj(_get(tgt, "datasourceInfo", "dataSourceInfo"), w2)
            p.target_db_id = _str(ds, "resourceID", w2)
            m = re.match(r"^(/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.DBforPostgreSQL/"
                         r"(?:servers|flexibleServers)/[^/]+)/databases/([^/]+)$", p.target_db_id, re.IGNORECASE)
            if not m:
                raise BadRequest("UserErrorInvalidRequestParameter",
                                 f"{w2}.resourceID must be '/subscriptions/<sub>/resourceGroups/<rg>/providers/"
                                 "Microsoft.DBforPostgreSQL/servers/<server>/databases/<new database name>'")
            p.target_server_id, p.target_db = m.group(1), m.group(2)
            dss = _get(tgt, "datasourceSetInfo", "dataSourceSetInfo")
            if isinstance(dss, dict) and _get(dss, "resourceID") and \
                    str(_get(dss, "resourceID")).lower() != p.target_server_id.lower():
                raise BadRequest("UserErrorInvalidRequestParameter",
                                 f"{where}.restoreTargetInfo.datasourceSetInfo.resourceID must be the server of "
                                 f"datasourceInfo.resourceID ('{p.target_server_id}')")
            cred = _obj(_get(tgt, "datasourceAuthCredentials"), f"{where}.restoreTargetInfo.datasourceAuthCredentials")
            store_res = _obj(_get(cred, "secretStoreResource"),
                             f"{where}.restoreTargetInfo.datasourceAuthCredentials.secretStoreResource")
            p.secret_uri = _str(store_res, "uri", f"{where}.restoreTargetInfo.datasourceAuthCredentials."
                                                  "secretStoreResource")
        elif ttype.lower() == "restorefilestargetinfo":
            p.kind = "files"
            w2 = f"{where}.restoreTargetInfo.targetDetails"
            td = _obj(_get(tgt, "targetDetails"), w2)
            p.container_url = _str(td, "url", w2).rstrip("/")
            p.file_prefix = _str(td, "filePrefix", w2)
            lt = _str(td, "restoreTargetLocationType", w2)
            if lt.lower() != "azureblobs":
                raise BadRequest("UserErrorInvalidRequestParameter",
                                 f"{w2}.restoreTargetLocationType '{lt}' is not supported; use AzureBlobs")
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}", p.file_prefix):
                raise BadRequest("UserErrorInvalidRequestParameter",
                                 f"{w2}.filePrefix '{p.file_prefix}' must be 1-200 letters, digits, '.', '_' or '-'")
            p.container_arm_id = str(_get(td, "targetResourceArmId") or "")
        else:
            raise BadRequest("UserErrorInvalidRequestParameter",
                             f"{where}.restoreTargetInfo.objectType '{ttype}' is not supported for PostgreSQL; use "
                             "RestoreTargetInfo (as database) or RestoreFilesTargetInfo (as files)")
        return p

    # ================================================================ rules
    def _rehydration_params(self, priority: str | None, duration: str | None) -> tuple[str, timedelta]:
        if priority not in ("Standard", "High"):
            raise RuleError("UserErrorInvalidRehydrationPriority",
                            f"Rehydration priority '{priority}' is not valid.", "Use 'Standard' or 'High'.")
        try:
            d = parse_duration(duration or "")
        except ValueError:
            d = timedelta(-1)
        if not timedelta(days=10) <= d <= timedelta(days=30):
            raise RuleError("UserErrorInvalidRehydrationDuration",
                            f"Rehydration retention duration '{duration}' is not valid.",
                            "Give an ISO-8601 duration between P10D and P30D, for example P15D.")
        return priority, d

    def target_files(self, bi: BackupInstance, rp: RecoveryPoint, prefix: str) -> dict[str, str]:
        """Datastore file -> target blob name (documented in docs/emulator.md)."""
        if bi.datasource_type == SINGLE:
            return {"database.dump": f"{prefix}.dump"}
        return {f: f"{prefix}_{f}" for f in rp.files}

    def check_restore(self, vault: Vault, bi: BackupInstance, p: ParsedRestore,
                      crr_location: str | None = None) -> tuple[RecoveryPoint, Any]:
        """Apply every restore rule; returns (recovery point, target) or raises RuleError."""
        now = self.clock.now()
        rp = self.rps_lookup(bi, p.rp_id)
        if crr_location is not None:
            if vault.storage_redundancy != "GeoRedundant" or vault.cross_region_restore != "Enabled":
                raise RuleError("UserErrorCrossRegionRestoreNotEnabled",
                                f"Cross Region Restore is not enabled on vault '{vault.name}' (storage redundancy "
                                f"{vault.storage_redundancy}, CRR {vault.cross_region_restore}).",
                                "Restore in the vault's own region, or use a GeoRedundant vault with Cross Region "
                                "Restore enabled.")
            secondary = self.world.region_pairs.get(vault.location)
            if crr_location.lower() != secondary:
                raise RuleError("UserErrorRestoreTargetRegionMismatch",
                                f"Cross Region Restore for vault '{vault.name}' ({vault.location}) must target its "
                                f"paired secondary region '{secondary}', not '{crr_location}'.",
                                f"Call the '{secondary}' location and pick a target in '{secondary}'.")
            if rp.tier == "archive" and not rp.usable_from_vault(now):
                raise RuleError("UserErrorCrossRegionRestoreNotSupportedForArchivedRecoveryPoint",
                                f"Recovery point '{rp.id}' is in the archive tier and is not rehydrated; archived "
                                "points cannot be restored to the secondary region.",
                                "Rehydrate the point in the primary region first, or restore it in the primary "
                                "region.")
            if rp.time + self.settings.crr_replication_lag > now:
                raise RuleError("UserErrorRecoveryPointNotReplicated",
                                f"Recovery point '{rp.id}' is not yet replicated to '{crr_location}'.",
                                "Pick an older recovery point from fetchSecondaryRecoveryPoints.")
        region = crr_location.lower() if crr_location else vault.location
        if p.restore_location and p.restore_location != region:
            hint = ("for Cross Region Restore call the crossRegionRestore API in the secondary location"
                    if not crr_location and p.restore_location == self.world.region_pairs.get(vault.location)
                    else f"set restoreLocation to '{region}'")
            raise RuleError("UserErrorRestoreTargetRegionMismatch",
                            f"restoreLocation '{p.restore_location}' must be '{region}' "
                            f"({'secondary region' if crr_location else 'the vault region'}).", hint.capitalize() + ".")
        # --- archive / rehydration
        if p.object_type == "AzureBackupRestoreWithRehydrationRequest":
            if rp.tier != "archive":
                raise RuleError("UserErrorRecoveryPointNotInArchive",
                                f"Recovery point '{rp.id}' is not in the archive tier; rehydration is not needed.",
                                "Send an AzureBackupRecoveryPointBasedRestoreRequest with sourceDataStoreType "
                                "VaultStore.")
            if p.source_store != "ArchiveStore":
                raise RuleError("UserErrorInvalidSourceDataStore",
                                "A restore with rehydration must use sourceDataStoreType 'ArchiveStore'.",
                                "Set sourceDataStoreType to ArchiveStore.")
            self._rehydration_params(p.rehydration_priority, p.rehydration_duration)
        elif rp.tier == "archive" and not rp.usable_from_vault(now):
            status = rp.rehydration_status(now)[0]
            raise RuleError("UserErrorRecoveryPointNotRehydrated",
                            f"Recovery point '{rp.id}' is in the archive tier (rehydration status: "
                            f"{status or 'not rehydrated'}).",
                            "Rehydrate it first (rehydrate API, wait for COMPLETED) or send an "
                            "AzureBackupRestoreWithRehydrationRequest with sourceDataStoreType ArchiveStore.")
        elif rp.tier == "vault" and p.source_store == "ArchiveStore":
            raise RuleError("UserErrorInvalidSourceDataStore",
                            f"Recovery point '{rp.id}' is in the vault tier, not in the archive tier.",
                            "Set sourceDataStoreType to VaultStore.")
        principal = self.restore_principal(vault, bi, p)
        self.check_cross_subscription(vault, p)
        if p.kind == "database":
            return rp, self._check_db_target(vault, bi, rp, p, region, principal)
        return rp, self._check_files_target(vault, bi, rp, p, region, principal)

    def restore_principal(self, vault: Vault, bi: BackupInstance, p: ParsedRestore) -> Principal:
        """The identity whose permissions the restore uses: ``identityDetails`` as sent; absent means the
        system-assigned identity (REST reference: "If it is null, default will be considered as System Assigned")."""
        d = p.identity_details
        if d is None and bi.identity and self.settings.strict_identity_details:
            raise RuleError("UserErrorInvalidIdentityDetails",
                            f"Backup instance '{bi.name}' is protected with the user-assigned identity "
                            f"'{bi.identity}'; the restore request must name it in identityDetails.",
                            "Send identityDetails {useSystemAssignedIdentity: false, userAssignedIdentityArmUrl: "
                            f"'{bi.identity}'}}.")
        url = str(_get(d, "userAssignedIdentityArmUrl") or "") if d else ""
        use_system = _get(d, "useSystemAssignedIdentity") if d else None
        if url and use_system is not True:
            user = vault.user_identity(url)
            if user is None:
                raise RuleError("UserErrorInvalidIdentityDetails",
                                f"The user-assigned identity '{url}' is not assigned to vault '{vault.name}'.",
                                "Send one of the vault's identity.userAssignedIdentities, or omit identityDetails "
                                "to use the system-assigned identity.")
            return Principal(user.principal_id, f"user-assigned identity '{user.id.rsplit('/', 1)[-1]}'")
        if use_system is False:
            raise RuleError("UserErrorInvalidIdentityDetails",
                            "identityDetails.useSystemAssignedIdentity is false but no userAssignedIdentityArmUrl "
                            "was given.", "Give userAssignedIdentityArmUrl, or set useSystemAssignedIdentity true.")
        if vault.principal_id is None:
            raise RuleError("UserErrorInvalidIdentityDetails",
                            f"Vault '{vault.name}' has no system-assigned identity, which is what a restore without "
                            "identityDetails uses.",
                            "Send identityDetails with userAssignedIdentityArmUrl set to one of the vault's "
                            "user-assigned identities.")
        return Principal(vault.principal_id, "managed identity")

    def check_cross_subscription(self, vault: Vault, p: ParsedRestore) -> None:
        """With cross-subscription restore Disabled/PermanentlyDisabled the target must be in the vault's subscription;
        a blob URL does not say its subscription, so files need ``targetResourceArmId`` (spec description: "optional
        if the target subscription can be identified with the URL field. If not then this is needed if
        CrossSubscriptionRestore field of BackupVault is in any of the disabled states")."""
        if vault.cross_subscription_restore == "Enabled":
            return
        state = f"cross-subscription restore is {vault.cross_subscription_restore} on vault '{vault.name}'"
        target = p.target_server_id if p.kind == "database" else p.container_arm_id
        if not target:
            raise RuleError("UserErrorCrossSubscriptionRestoreDisabled",
                            f"The target subscription cannot be identified from the container URL "
                            f"'{p.container_url}' and {state}: targetResourceArmId is required.",
                            "Send restoreTargetInfo.targetDetails.targetResourceArmId (the container's ARM id).")
        m = re.match(r"^/subscriptions/([^/]+)/", target, re.IGNORECASE)
        if not m or m.group(1).lower() != vault.subscription.lower():
            raise RuleError("UserErrorCrossSubscriptionRestoreDisabled",
                            f"The restore target '{target}' is not in the vault's subscription '{vault.subscription}' "
                            f"and {state}.",
                            f"Restore into subscription '{vault.subscription}', or enable cross-subscription restore "
                            "on the vault (not possible once PermanentlyDisabled).")

    def rps_lookup(self, bi: BackupInstance, rp_id: str) -> RecoveryPoint:
        try:
            return self.rp(bi, rp_id)
        except NotFound as exc:
            raise RuleError("UserErrorRecoveryPointNotFound", exc.message,
                            "List the recovery points and pick an existing recoveryPointId.") from exc

    def _check_db_target(self, vault: Vault, bi: BackupInstance, rp: RecoveryPoint, p: ParsedRestore,
                         region: str, principal: Principal) -> tuple[Server, ConnInfo]:
        if bi.datasource_type == FLEXIBLE:
            raise RuleError("UserErrorUnsupportedRestoreTargetType",
                            "Flexible Server backups can only be restored as files.",
                            "Send a RestoreFilesTargetInfo target (a blob container URL and a file prefix).")
        srv = self.world.servers.get(p.target_server_id.lower())
        if srv is None:
            raise RuleError("UserErrorDBNotFound", f"Target server '{p.target_server_id}' does not exist.",
                            "Give the ARM id of an existing Azure Database for PostgreSQL server.")
        if srv.kind != "servers":
            raise RuleError("UserErrorUnsupportedRestoreTargetType",
                            f"Target '{srv.name}' is a Flexible Server; restore as database needs a Single Server.",
                            "Restore as files and load them with pg_restore.")
        if srv.location != region:
            raise RuleError("UserErrorRestoreTargetRegionMismatch",
                            f"Target server '{srv.name}' is in '{srv.location}' but the restore must target "
                            f"'{region}'.", f"Pick a target server in '{region}'.")
        if srv.id.lower() == bi.server_id.lower() and (bi.database or "").lower() == p.target_db.lower():
            raise RuleError("UserErrorOriginalLocationRestoreNotSupported",
                            f"Restoring over the source database '{srv.name}/{p.target_db}' is not supported.",
                            "Choose a new database name or another target server.")
        if not self.has_role(principal.id, READER_ROLES, srv.id):
            raise RuleError("UserErrorMSIMissingPermissions",
                            f"The backup vault's {principal.label} (principalId {principal.id}) is missing "
                            f"the role 'Reader' on scope '{srv.id}'.",
                            f"Assign the 'Reader' role on '{srv.id}' to the vault's {principal.label}.")
        uri = re.sub(r"/+$", "", p.secret_uri)
        m = re.match(r"^https://([^./]+)\.vault\.azure\.net/secrets/([^/]+)(?:/[^/]*)?$", uri, re.IGNORECASE)
        if not m:
            raise RuleError("UserErrorInvalidSecretStore", f"Secret URI '{p.secret_uri}' is not a Key Vault secret "
                            "URI.", "Use https://<vault>.vault.azure.net/secrets/<name>.")
        kv_id = self.world.key_vaults.get(m.group(1).lower())
        if kv_id is None:
            raise RuleError("UserErrorInvalidSecretStore", f"Key Vault '{m.group(1)}' does not exist or is not "
                            "accessible.", "Check the Key Vault name in the secret URI.")
        if not self.has_role(principal.id, KV_ROLES, kv_id):
            raise RuleError("UserErrorMissingPermissionsOnSecretStore",
                            f"The backup vault's {principal.label} (principalId {principal.id}) is missing "
                            f"the role 'Key Vault Secrets User' on scope '{kv_id}'.",
                            f"Assign 'Key Vault Secrets User' on '{kv_id}' to the vault's {principal.label}.")
        key = f"https://{m.group(1).lower()}.vault.azure.net/secrets/{m.group(2)}".lower()
        value = self._secret_values.get(key)
        if value is None:
            raise RuleError("UserErrorInvalidSecret", f"Secret '{m.group(2)}' was not found in Key Vault "
                            f"'{m.group(1)}'.", "Create the secret or fix the secret name in the URI.")
        try:
            conn = parse_ado_connection_string(value)
        except ValueError as exc:
            raise RuleError("UserErrorSecretValueInUnsupportedFormat", str(exc),
                            "Store an ADO.NET connection string: Server=...;Port=5432;Database=postgres;"
                            "User Id=...;Password=...;Ssl Mode=Require;") from exc
        if srv.postgres_version < rp.postgres_version:
            raise RuleError("UserErrorRestoreToLowerVersion",
                            f"Restoring backups of a higher PostgreSQL version to a lower version is not supported "
                            f"(backup version {rp.postgres_version}, target '{srv.name}' version "
                            f"{srv.postgres_version}).",
                            "Restore to the same or a higher PostgreSQL version from which the backup was taken.")
        if self.data.database_exists(srv.cluster, p.target_db):
            raise RuleError("UserErrorDatabaseNameAlreadyInUse",
                            f"Database '{p.target_db}' already exists on server '{srv.name}'.",
                            "Retry with a new database name.")
        return srv, conn

    def _check_files_target(self, vault: Vault, bi: BackupInstance, rp: RecoveryPoint, p: ParsedRestore,
                            region: str, principal: Principal) -> Container:
        c = self.world.containers.get(p.container_url.lower())
        if c is None:
            raise RuleError("UserErrorContainerNotAccessible", f"Container '{p.container_url}' does not exist or "
                            "is not accessible.", "Give the URL of an existing blob container.")
        if p.container_arm_id and p.container_arm_id.lower().rstrip("/") not in (c.id.lower(), c.account_id.lower()):
            raise RuleError("UserErrorContainerNotAccessible",
                            f"targetResourceArmId '{p.container_arm_id}' does not match container URL "
                            f"'{p.container_url}' (expected '{c.id}').", "Send the container's ARM id or omit it.")
        if c.location != region:
            raise RuleError("UserErrorRestoreTargetRegionMismatch",
                            f"Storage account '{c.account}' is in '{c.location}' but the restore must target "
                            f"'{region}'.", f"Pick a container in '{region}'.")
        if not self.has_role(principal.id, BLOB_ROLES, c.id):
            raise RuleError("UserErrorContainerNotAccessible",
                            f"The backup vault's {principal.label} (principalId {principal.id}) is missing "
                            f"the role 'Storage Blob Data Contributor' on scope '{c.id}' (or its storage account).",
                            f"Assign 'Storage Blob Data Contributor' on '{c.account_id}' or the container to the "
                            f"vault's {principal.label}.")
        for name in self.target_files(bi, rp, p.file_prefix).values():
            if self.data.blob_exists(c.azurite_container, name):
                raise RuleError("UserErrorFileAlreadyExists", f"Blob '{name}' already exists in container "
                                f"'{c.name}'.", "Use a new filePrefix.")
        return c

    # ================================================================ actions
    def validate(self, vault: Vault, bi: BackupInstance, body: Any, crr_location: str | None = None,
                 forced: tuple[str, str] | None = None) -> Operation:
        p = self.parse_restore(_get(_obj(body, "body"), "restoreRequestObject"), "restoreRequestObject")
        error = None
        if forced:
            error = user_facing_error(*forced)
        else:
            try:
                self.check_restore(vault, bi, p, crr_location)
            except RuleError as e:
                error = user_facing_error(e.code, e.message, e.action)
        return self.new_op(vault.subscription, crr_location or vault.location, error=error, result_kind="validate")

    def restore(self, vault: Vault, bi: BackupInstance, body: Any, crr_location: str | None = None,
                forced: tuple[str, str] | None = None, job_fault: tuple[str, str] | None = None,
                behaviour: JobBehaviour | None = None) -> Operation:
        p = self.parse_restore(body, "restoreRequestObject" if crr_location else "body")
        location = crr_location or vault.location
        if forced:
            return self.new_op(vault.subscription, location, error=user_facing_error(*forced))
        try:
            rp, target = self.check_restore(vault, bi, p, crr_location)
        except RuleError as e:
            return self.new_op(vault.subscription, location, error=user_facing_error(e.code, e.message, e.action))
        now = self.clock.now()
        duration = self.settings.restore_job_duration
        subtasks = ["Trigger Restore"]
        priority = None
        if p.object_type == "AzureBackupRestoreWithRehydrationRequest":
            priority, retention = self._rehydration_params(p.rehydration_priority, p.rehydration_duration)
            rh = self._rehydration_time(priority)
            self._start_rehydration(rp, priority, retention, now)
            duration += rh
            subtasks = ["Rehydrate", "Trigger Restore"]
        job = Job(str(uuid.uuid4()), vault, bi, "Restore", "Restore", now, duration, subtasks, crr_location, rp,
                  rehydration_priority=priority, forced_error=job_fault, behaviour=behaviour)
        if p.kind == "database":
            srv, conn = target
            job.destination = p.target_db_id
            work = self._db_worker(job, srv, conn, p.target_db, rp)
        else:
            c = target
            job.destination = f"{c.url}/{p.file_prefix}"
            work = self._files_worker(job, c, self.target_files(bi, rp, p.file_prefix), rp)
        with self.lock:
            self.jobs[job.id] = job
        threading.Thread(target=work, name=f"restore-{job.id}", daemon=True).start()
        return self.new_op(vault.subscription, location, job_id=job.arm_id)

    def _rehydration_time(self, priority: str) -> timedelta:
        return self.settings.rehydration_high if priority == "High" else self.settings.rehydration_standard

    def _start_rehydration(self, rp: RecoveryPoint, priority: str, retention: timedelta, now: datetime) -> None:
        with self.lock:
            status = rp.rehydration_status(now)[0]
            if status in ("CREATE_IN_PROGRESS", "COMPLETED"):
                return
            rp.rehydration = {"priority": priority, "started": now, "ready_at": now + self._rehydration_time(priority),
                              "retention": retention}

    def _finish(self, job: Job, error: DataPlaneError | None) -> None:
        job.work_error = error
        job.work_done_at = self.clock.now()
        job.done.set()

    def _db_worker(self, job: Job, srv: Server, conn: ConnInfo, dbname: str, rp: RecoveryPoint) -> Any:
        def run() -> None:
            if job.skips_work:
                return self._finish(job, None)
            err = None
            try:
                cinfo = self.data.cluster(srv.cluster)
                target = ConnInfo(cinfo.host, cinfo.port, conn.user, conn.password, conn.database)
                self.data.restore_database(prefix=self.data.blob_prefix(job.vault.name, job.bi.name, rp.id),
                                           conn=target, dbname=dbname)
            except DataPlaneError as e:
                err = e
            except Exception as e:  # noqa: BLE001 - any failure becomes a failed job, never a dead thread
                log.exception("restore job %s crashed", job.id)
                err = DataPlaneError("UserErrorRestoreFailed", f"restore failed: {type(e).__name__}")
            self._finish(job, err)
            log.info("restore job %s work finished (%s)", job.id, err.code if err else "ok")
        return run

    def _files_worker(self, job: Job, c: Container, names: dict[str, str], rp: RecoveryPoint) -> Any:
        def run() -> None:
            if job.skips_work:
                return self._finish(job, None)
            err = None
            try:
                self.data.restore_files(prefix=self.data.blob_prefix(job.vault.name, job.bi.name, rp.id),
                                        target_container=c.azurite_container, names=names)
            except DataPlaneError as e:
                err = e
            except Exception as e:  # noqa: BLE001
                log.exception("restore-as-files job %s crashed", job.id)
                err = DataPlaneError("UserErrorContainerNotAccessible", f"writing files failed: {type(e).__name__}")
            self._finish(job, err)
        return run

    def rehydrate(self, vault: Vault, bi: BackupInstance, body: Any, forced: tuple[str, str] | None = None,
                  job_fault: tuple[str, str] | None = None) -> Operation:
        req = _obj(body, "body")
        rp_id = _str(req, "recoveryPointId", "body")
        priority = _get(req, "rehydrationPriority")
        duration = _str(req, "rehydrationRetentionDuration", "body")
        if forced:
            return self.new_op(vault.subscription, vault.location, error=user_facing_error(*forced),
                               result_kind="none")
        try:
            rp = self.rps_lookup(bi, rp_id)
            if rp.tier != "archive":
                raise RuleError("UserErrorRecoveryPointNotInArchive",
                                f"Recovery point '{rp.id}' is not in the archive tier; it needs no rehydration.",
                                "Restore it directly from VaultStore.")
            prio, retention = self._rehydration_params(priority, duration)
        except RuleError as e:
            return self.new_op(vault.subscription, vault.location,
                               error=user_facing_error(e.code, e.message, e.action), result_kind="none")
        now = self.clock.now()
        self._start_rehydration(rp, prio, retention, now)
        assert rp.rehydration is not None
        job = Job(str(uuid.uuid4()), vault, bi, "Tiering", "Rehydrate", now, rp.rehydration["ready_at"] - now,
                  ["Rehydrate"], rp=rp, rehydration_priority=prio, forced_error=job_fault)
        self._finish(job, None)
        with self.lock:
            self.jobs[job.id] = job
        return self.new_op(vault.subscription, vault.location, result_kind="none")

    # ================================================================ CRR
    def crr_source(self, sub: str, rg: str, location: str, details: Any, key: str = "sourceBackupInstanceId",
                   check_enabled: bool = True) -> tuple[Vault, BackupInstance | None]:
        """Resolve the primary vault (and instance) of a CRR call; ``check_enabled`` makes CRR-off a sync 400."""
        d = _obj(details, "crossRegionRestoreDetails" if key == "sourceBackupInstanceId" else "body")
        src_region = _str(d, "sourceRegion", "body").lower().replace(" ", "")
        ref = _str(d, key, "body")
        if key == "sourceBackupInstanceId":
            m = re.match(r"^(/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.DataProtection/"
                         r"backupVaults/[^/]+)/backupInstances/([^/]+)$", ref, re.IGNORECASE)
            if not m:
                raise BadRequest("UserErrorInvalidRequestParameter", f"{key} '{ref}' is not a backup instance ARM id")
            vault_id, bi_name = m.group(1), m.group(2)
        else:
            vault_id, bi_name = ref, None
        v = self.world.vaults.get(vault_id.lower())
        if v is None or v.subscription.lower() != sub.lower() or v.resource_group.lower() != rg.lower():
            raise NotFound(f"Backup vault '{vault_id}' was not found under resource group '{rg}'.")
        if src_region != v.location:
            raise BadRequest("UserErrorInvalidRequestParameter",
                             f"sourceRegion '{src_region}' is not the vault's region '{v.location}'.")
        if check_enabled and (v.storage_redundancy != "GeoRedundant" or v.cross_region_restore != "Enabled" or
                              self.world.region_pairs.get(v.location) != location.lower()):
            raise BadRequest("UserErrorCrossRegionRestoreNotEnabled",
                             f"Vault '{v.name}' has no secondary copy in '{location}' (storage redundancy "
                             f"{v.storage_redundancy}, Cross Region Restore {v.cross_region_restore}, paired region "
                             f"{self.world.region_pairs.get(v.location)}).")
        return v, (self.bi(v, bi_name) if bi_name else None)
