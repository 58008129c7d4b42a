"""What the emulated service holds, and how calls find it: recovery points, jobs, operations, role assignments and
Key Vault secret values, with the lookups that answer 404 for what is not there.

Consumes: a :class:`World`, a :class:`SimClock`, a :class:`DataPlane`. Produces: :class:`State`, the base of the
:class:`~.engine.Engine` and what the rules read. All mutation of the shared collections happens under ``lock``.
"""

from __future__ import annotations

import base64
import threading
import time
import uuid
from typing import Any, NamedTuple

from .dataplane import DataPlane
from .model import BadRequest, Job, NotFound, Operation, RecoveryPoint
from .timeutil import SimClock
from .world import BackupInstance, RoleAssignment, Vault, World


class SecretVersion(NamedTuple):
    version: str  # 32 lower-case hex digits, as Key Vault's version ids
    value: str
    created: int  # epoch seconds (Key Vault's attributes.created/updated)


class State:
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
        self.secret_values: dict[str, str] = {}  # lower-cased secret URI (no version) -> value (latest version)
        #: lower-cased secret URI (no version) -> versions, oldest first: (version id, value, created epoch seconds)
        self.secret_versions: dict[str, list[SecretVersion]] = {}

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

    # ================================================================ Key Vault secrets
    @staticmethod
    def secret_uri(vault: str, name: str) -> str:
        """The canonical (lower-cased, versionless) URI of a secret, the key of the secret dictionaries."""
        return f"https://{vault.lower()}.vault.azure.net/secrets/{name}".lower()

    def put_secret(self, uri: str, value: str) -> SecretVersion:
        """A new version of the secret at ``uri`` (created when absent); it becomes the current value."""
        version = SecretVersion(uuid.uuid4().hex, value, int(time.time()))
        with self.lock:
            self.secret_versions.setdefault(uri.lower(), []).append(version)
            self.secret_values[uri.lower()] = value
        return version

    def delete_secret(self, uri: str) -> bool:
        with self.lock:
            self.secret_values.pop(uri.lower(), None)
            return self.secret_versions.pop(uri.lower(), None) is not None

    def secret_version(self, uri: str, version: str | None) -> SecretVersion | None:
        """The given version (or the current one) of a secret; None when either does not exist."""
        with self.lock:
            versions = self.secret_versions.get(uri.lower()) or []
            if not version:
                return versions[-1] if versions else None
            return next((v for v in versions if v.version == version.lower()), None)

    # ================================================================ operations and jobs
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

    def get_job(self, v: Vault, job_id: str, crr_location: str | None = None) -> Job:
        jid = job_id.rsplit("/", 1)[-1].lower()
        job = self.jobs.get(jid)
        if job is None or job.vault is not v or (job.crr_location or None) != (crr_location.lower() if crr_location
                                                                                  else None):
            raise NotFound(f"Job '{job_id}' was not found in vault '{v.name}'.", code="UserErrorJobNotFound")
        return job
