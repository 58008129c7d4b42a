"""The emulated Backup vault service: start-up backups, restore/validate/rehydrate actions, listings, CRR.

Consumes: a :class:`World`, a :class:`SimClock`, a :class:`DataPlane`. Produces: long-running operations and jobs
(state in :mod:`.state`), real backups at start-up and real restores in worker threads (:mod:`.workers`).
Request bodies are parsed by :mod:`.parsing` (malformed: :class:`BadRequest`, a synchronous 400), checked by
:mod:`.rules` (a failed rule: a Failed LRO carrying its :class:`RuleError`) and rendered by :mod:`.render`.
Every error code the emulator invents is listed in ``docs/emulator.md``.
"""

from __future__ import annotations

import logging
import re
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from . import render, rules, workers
from .model import BadRequest, Job, JobBehaviour, NotFound, Operation, RecoveryPoint, RuleError, user_facing_error
from .parsing import as_object, decode_token, lookup, parse_restore, parse_rp_filter, required_str
from .state import State
from .world import FLEXIBLE, BackupInstance, Secret, Vault

log = logging.getLogger("dpemu.engine")

_ADO_SSL = {"disable": "Disable", "allow": "Allow", "prefer": "Prefer", "require": "Require",
            "verify-ca": "VerifyCA", "verify-full": "VerifyFull"}


def render_connection_string(fmt: str, host: str, port: int, user: str, password: str, sslmode: str,
                             database: str = "postgres") -> str:
    """A connection string in one of the forms the product accepts: ``ado`` (ADO.NET, as the Azure portal shows),
    ``uri`` (libpq URI) or ``keyvalue`` (libpq key=value). No file paths: the client brings its own root CA."""
    if fmt == "uri":
        return (f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}/"
                f"{quote(database, safe='')}?sslmode={sslmode}")
    if fmt == "keyvalue":
        def q(v: str) -> str:
            return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
        return (f"host={host} port={port} dbname={q(database)} user={q(user)} password={q(password)} "
                f"sslmode={sslmode}")
    return (f"Server={host};Port={port};Database={database};User Id={user};Password={password};"
            f"Ssl Mode={_ADO_SSL[sslmode]};")


class Engine(State):
    # ================================================================ start-up
    def seed(self) -> None:
        """Create source databases and restore users, then take every declared backup in time order."""
        w = self.world
        self.data.ensure_container(self.settings.datastore_container)
        for c in w.containers.values():
            self.data.ensure_container(c.azurite_container)
        for srv in w.servers.values():
            if srv.roles or srv.kind == "flexibleServers":
                self.data.ensure_roles(srv.cluster, srv.roles, platform=srv.kind == "flexibleServers")
        source_ids = {bi.server_id.lower() for v in w.vaults.values() for bi in v.backup_instances}
        for sid in sorted(source_ids):
            srv = w.servers[sid]
            for db in srv.databases:
                self.data.recreate_database(srv.cluster, db.name, db.setup_sql, db.owner)
        for uri, sec in w.secrets.items():
            value = self._secret_value(sec)
            if value is not None:
                self.put_secret(uri, value)
        plan = [(rp.time, v, bi, rp) for v in w.vaults.values() for bi in v.backup_instances
                for rp in bi.recovery_points]
        for _, v, bi, spec in sorted(plan, key=lambda x: x[0]):
            srv = w.servers[bi.server_id.lower()]
            for dbname, sql in spec.seed_sql.items():
                self.data.run_sql(srv.cluster, dbname, sql)
            self._take_backup(v, bi, spec.id, spec.time, spec.tier, spec.state)
        log.info("seeded %d recovery points", len(plan))

    def _secret_value(self, sec: Secret) -> str | None:
        """A world secret's value: its explicit ``value``, else a connection string to its server as its user (the
        password the stack gave that user, else a new random one set on the cluster now)."""
        if sec.raw_value is not None:
            return sec.raw_value
        if sec.server_id is None:
            return None
        cinfo = self.data.cluster(self.world.servers[sec.server_id.lower()].cluster)
        password = cinfo.passwords.get(sec.user)
        if password is None:
            password = secrets.token_urlsafe(18)
            self.data.ensure_restore_user(cinfo.name, sec.user, password)
        return render_connection_string(sec.format, cinfo.host, cinfo.port, sec.user, password, sec.sslmode)

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
        return render.rp_json(self.settings, bi, rp, self.clock.now())

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
        return [render.rp_json(self.settings, b, r, self.clock.now()) for r in page], nxt

    def list_jobs(self, v: Vault, offset: int, crr_location: str | None = None) -> tuple[list[dict[str, Any]],
                                                                                          int | None]:
        with self.lock:
            jobs = [j for j in self.jobs.values() if j.vault is v and (j.crr_location or None) == crr_location]
        jobs.sort(key=lambda j: j.start, reverse=True)
        size = self.settings.job_page_size
        page = jobs[offset:offset + size]
        nxt = offset + size if offset + size < len(jobs) else None
        return [render.job_json(self.world, j, self.clock.now()) for j in page], nxt

    # ================================================================ actions
    def validate(self, vault: Vault, bi: BackupInstance, body: Any, crr_location: str | None = None,
                 forced: tuple[str, str] | None = None) -> Operation:
        p = parse_restore(lookup(as_object(body, "body"), "restoreRequestObject"), "restoreRequestObject")
        error = None
        if forced:
            error = user_facing_error(*forced)
        else:
            try:
                rules.check_restore(self, vault, bi, p, crr_location)
            except RuleError as e:
                error = user_facing_error(e.code, e.message, e.action)
        return self.new_op(vault.subscription, crr_location or vault.location, error=error, result_kind="validate")

    def restore(self, vault: Vault, bi: BackupInstance, body: Any, crr_location: str | None = None,
                forced: tuple[str, str] | None = None, job_fault: tuple[str, str] | None = None,
                behaviour: JobBehaviour | None = None) -> Operation:
        p = parse_restore(body, "restoreRequestObject" if crr_location else "body")
        location = crr_location or vault.location
        if forced:
            return self.new_op(vault.subscription, location, error=user_facing_error(*forced))
        try:
            rp, target = rules.check_restore(self, vault, bi, p, crr_location)
        except RuleError as e:
            return self.new_op(vault.subscription, location, error=user_facing_error(e.code, e.message, e.action))
        now = self.clock.now()
        duration = self.settings.restore_job_duration
        subtasks = ["Trigger Restore"]
        priority = None
        if p.object_type == "AzureBackupRestoreWithRehydrationRequest":
            priority, retention = rules.rehydration_params(p.rehydration_priority, p.rehydration_duration)
            rh = self._rehydration_time(priority)
            self._start_rehydration(rp, priority, retention, now)
            duration += rh
            subtasks = ["Rehydrate", "Trigger Restore"]
        job = Job(str(uuid.uuid4()), vault, bi, "Restore", "Restore", now, duration, subtasks, crr_location, rp,
                  rehydration_priority=priority, forced_error=job_fault, behaviour=behaviour)
        if p.kind == "database":
            srv, conn = target
            job.destination = p.target_db_id
            work = workers.db_worker(self.data, self.clock, job, srv, conn, p.target_db, rp)
        else:
            c = target
            job.destination = f"{c.url}/{p.file_prefix}"
            work = workers.files_worker(self.data, self.clock, job, c, rules.target_files(bi, rp, p.file_prefix),
                                        rp, self.settings.files_layout)
        if not self.settings.data_plane:  # benchmarks of the app alone: the job runs its duration, no pg work
            work = workers.no_work(self.clock, job)
        with self.lock:
            self.jobs[job.id] = job
        workers.start(job, work)
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

    def rehydrate(self, vault: Vault, bi: BackupInstance, body: Any, forced: tuple[str, str] | None = None,
                  job_fault: tuple[str, str] | None = None) -> Operation:
        req = as_object(body, "body")
        rp_id = required_str(req, "recoveryPointId", "body")
        priority = lookup(req, "rehydrationPriority")
        duration = required_str(req, "rehydrationRetentionDuration", "body")
        if forced:
            return self.new_op(vault.subscription, vault.location, error=user_facing_error(*forced),
                               result_kind="none")
        try:
            rp, prio, retention = rules.check_rehydrate(self, bi, rp_id, priority, duration)
        except RuleError as e:
            return self.new_op(vault.subscription, vault.location,
                               error=user_facing_error(e.code, e.message, e.action), result_kind="none")
        now = self.clock.now()
        self._start_rehydration(rp, prio, retention, now)
        assert rp.rehydration is not None
        job = Job(str(uuid.uuid4()), vault, bi, "Tiering", "Rehydrate", now, rp.rehydration["ready_at"] - now,
                  ["Rehydrate"], rp=rp, rehydration_priority=prio, forced_error=job_fault)
        workers.finish(job, self.clock, None)
        with self.lock:
            self.jobs[job.id] = job
        return self.new_op(vault.subscription, vault.location, result_kind="none")

    # ================================================================ CRR
    def crr_source(self, sub: str, rg: str, location: str, details: Any, key: str = "sourceBackupInstanceId",
                   check_enabled: bool = True) -> tuple[Vault, BackupInstance | None]:
        """Resolve the primary vault (and instance) of a CRR call; ``check_enabled`` makes CRR-off a sync 400."""
        d = as_object(details, "crossRegionRestoreDetails" if key == "sourceBackupInstanceId" else "body")
        src_region = required_str(d, "sourceRegion", "body").lower().replace(" ", "")
        ref = required_str(d, key, "body")
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
