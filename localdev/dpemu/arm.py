"""ARM operation handlers: one per operationId, from a parsed :class:`Call` to a :class:`Reply`.

Consumes: the :class:`Engine` (state and actions), the :class:`Controls` (faults that shape an LRO or its job, the
``integer_retry_after`` choice) and the server's base URL (for ``nextLink`` and LRO polling URLs). Produces: the
reply, or raises :class:`BadRequest`/:class:`NotFound` for the front door to send as a CloudError. Resources are
looked up before any fault is taken, so a 404 never uses up an injected fault.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from . import render
from .control import JOB_BEHAVIOUR_MODES, Controls
from .engine import Engine
from .model import BadRequest, JobBehaviour, Operation
from .parsing import decode_token, encode_token
from .replies import Call, Reply
from .routing import ARM_OPERATIONS
from .timeutil import parse_duration
from .world import BackupInstance, Vault

#: Operations whose job an injected ``job_fail`` fault fails.
JOB_OPS = {"BackupInstances_TriggerRestore", "BackupInstances_TriggerRehydrate",
           "BackupInstances_TriggerCrossRegionRestore"}
#: Operations whose job a ``job_pause`` / ``job_warn`` / ``job_cancel`` fault shapes.
RESTORE_OPS = ("BackupInstances_TriggerRestore", "BackupInstances_TriggerCrossRegionRestore")
#: Simulated seconds an LRO poll waits (10 for any other operation).
LRO_RETRY_SIM_SECONDS = {"BackupInstances_TriggerRestore": 30, "BackupInstances_TriggerCrossRegionRestore": 30}

Handler = Callable[[Call], Reply]
Faults = tuple[tuple[str, str] | None, tuple[str, str] | None]


class ArmHandlers:
    def __init__(self, engine: Engine, controls: Controls, base_url: str) -> None:
        self.engine = engine
        self.controls = controls
        self.base_url = base_url.rstrip("/")
        self.handlers: dict[str, Handler] = {
            "BackupVaults_Get": self.get_vault,
            "BackupInstances_List": self.list_instances,
            "BackupInstancesExtensionRouting_List": self.list_instances_of_resource,
            "BackupInstances_Get": self.get_instance,
            "RecoveryPoints_List": self.list_points,
            "RecoveryPoints_Get": self.get_point,
            "BackupInstances_ValidateForRestore": self.validate_restore,
            "BackupInstances_TriggerRestore": self.trigger_restore,
            "BackupInstances_TriggerRehydrate": self.trigger_rehydrate,
            "Jobs_List": self.list_jobs,
            "Jobs_Get": self.get_job,
            "OperationStatus_Get": self.operation_status,
            "OperationResult_Get": self.operation_result,
            "FetchSecondaryRecoveryPoints_List": self.fetch_secondary_points,
            "BackupInstances_ValidateCrossRegionRestore": self.validate_crr,
            "BackupInstances_TriggerCrossRegionRestore": self.trigger_crr,
            "FetchCrossRegionRestoreJob_Get": self.fetch_crr_job,
            "FetchCrossRegionRestoreJobs_List": self.fetch_crr_jobs,
        }
        missing = {spec.operation for spec in ARM_OPERATIONS} - self.handlers.keys()
        if missing:
            raise RuntimeError(f"routed ARM operations without a handler: {sorted(missing)}")

    def handle(self, call: Call) -> Reply:
        return self.handlers[call.operation](call)

    # ================================================================ helpers
    @staticmethod
    def _q(call: Call, name: str) -> str | None:
        return next((v for k, v in call.query.items() if k.lower() == name.lower()), None)

    def _vault(self, call: Call) -> Vault:
        p = call.params
        return self.engine.vault(p["sub"], p["rg"], p["vault"])

    def _instance(self, call: Call) -> tuple[Vault, BackupInstance]:
        v = self._vault(call)
        return v, self.engine.bi(v, call.params["bi"])

    def _page(self, call: Call, items: list[dict[str, Any]], nxt: int | None, state: dict[str, Any] | None = None,
              extra: str = "") -> Reply:
        """One page of a listing; ``nextLink`` carries ``state`` and the next offset in its ``$skipToken``."""
        body: dict[str, Any] = {"value": items}
        if nxt:
            token = encode_token({**(state or {}), "o": nxt})
            q = f"api-version={quote(call.api_version)}&$skipToken={token}{extra}"
            body["nextLink"] = f"{self.base_url}{call.path}?{q}"
        return Reply(200, body)

    def retry_headers(self, call: Call) -> dict[str, str]:
        """Scaled LRO poll delay. ``Retry-After`` is always a whole number of seconds, as ARM sends it. Under a
        scaled clock a delay below one real second cannot be said that way: then only ``retry-after-ms`` is sent
        (azure-core reads ``Retry-After`` first and falls back to ``retry-after-ms``). ``integer_retry_after``
        (admin config) sends exactly what Azure would: ``Retry-After`` in whole seconds (>= 1), nothing else."""
        sim = LRO_RETRY_SIM_SECONDS.get(call.operation, 10)
        real_ms = max(20, math.ceil(sim * 1000 / self.engine.clock.scale))
        if self.controls.integer_retry_after:
            return {"Retry-After": str(max(1, math.ceil(real_ms / 1000)))}
        if real_ms >= 1000:
            return {"Retry-After": str(math.ceil(real_ms / 1000)), "retry-after-ms": str(real_ms)}
        return {"retry-after-ms": str(real_ms)}

    def _lro(self, call: Call, op: Operation) -> Reply:
        base = f"{self.base_url}/subscriptions/{op.subscription}/providers/Microsoft.DataProtection/locations/" \
               f"{op.location}"
        q = f"?api-version={quote(call.api_version)}"
        return Reply(202, None, {
            "Azure-AsyncOperation": f"{base}/operationStatus/{op.id}{q}",
            "Location": f"{base}/operationResults/{op.id}{q}",
            **self.retry_headers(call),
        })

    def _faults_for(self, op: str) -> Faults:
        """The injected (LRO failure, job failure) of this call: (code, message) each, or None."""
        lro = self.controls.take_fault(op, {"lro_fail"})
        job = self.controls.take_fault(op, {"job_fail"}) if op in JOB_OPS else None
        return ((lro.error_code, lro.error_message) if lro else None,
                (job.error_code, job.error_message) if job else None)

    def _job_behaviour(self, op: str) -> JobBehaviour | None:
        """A job_pause / job_warn / job_cancel fault for a restore trigger, as the job's behaviour."""
        if op not in RESTORE_OPS:
            return None
        f = self.controls.take_fault(op, JOB_BEHAVIOUR_MODES)
        if f is None:
            return None
        b = JobBehaviour(f.mode.removeprefix("job_"))
        if f.mode == "job_warn" and f.error_code:
            b = JobBehaviour("warn", f.error_code, f.error_message)
        if f.mode == "job_pause" and f.duration:
            b = JobBehaviour("pause", pause_for=parse_duration(f.duration))
        return b

    # ================================================================ operations
    def _operation(self, call: Call) -> Operation:
        p = call.params
        return self.engine.get_op(p["sub"], p["loc"], p["op"])

    def operation_status(self, call: Call) -> Reply:
        o = self._operation(call)
        # azure-core takes each poll's delay from the latest response: scaled retry-after-ms here too
        return Reply(200, render.op_status_json(o, self.engine.clock.now()), self.retry_headers(call))

    def operation_result(self, call: Call) -> Reply:
        o = self._operation(call)
        if not self.engine.op_done(o):
            return Reply(202, None, self._lro(call, o).headers)
        if o.error:
            return Reply(400, {"error": o.error})
        return Reply(200, render.op_result_json(o))  # the spec's OperationResult_Get answers 200 or 202, never 204

    # ================================================================ vault, instances, points, jobs
    def get_vault(self, call: Call) -> Reply:
        return Reply(200, render.vault_json(self.engine.world, self._vault(call)))

    def list_instances(self, call: Call) -> Reply:
        v = self._vault(call)
        return Reply(200, {"value": [render.bi_json(self.engine.world, v, b) for b in v.backup_instances]})

    def list_instances_of_resource(self, call: Call) -> Reply:
        """The backup instances protecting a resource, in every vault: those whose datasource is the resource, or
        whose datasource set is (a Single Server's databases for the server's id). Paged like the other lists."""
        rid = "/" + call.params["resource"].strip("/").lower()
        found = [render.bi_json(self.engine.world, v, b) for v in self.engine.world.vaults.values()
                 for b in v.backup_instances if rid in (b.datasource_id.lower(), b.server_id.lower())]
        tok = self._q(call, "$skipToken")
        offset = int(decode_token(tok).get("o", 0)) if tok else 0
        size = self.engine.settings.page_size
        nxt = offset + size if offset + size < len(found) else None
        return self._page(call, found[offset:offset + size], nxt)

    def get_instance(self, call: Call) -> Reply:
        v, b = self._instance(call)
        return Reply(200, render.bi_json(self.engine.world, v, b))

    def list_points(self, call: Call) -> Reply:
        v, b = self._instance(call)
        filt = self._q(call, "$filter")
        items, nxt = self.engine.list_rps(v, b, filt, self._q(call, "$skipToken"))
        return self._page(call, items, nxt, extra=f"&$filter={quote(filt)}" if filt else "")

    def get_point(self, call: Call) -> Reply:
        _, b = self._instance(call)
        e = self.engine
        return Reply(200, render.rp_json(e.settings, b, e.rp(b, call.params["rp"]), e.clock.now()))

    def list_jobs(self, call: Call) -> Reply:
        v = self._vault(call)
        tok = self._q(call, "$skipToken")
        offset = int(decode_token(tok).get("o", 0)) if tok else 0
        items, nxt = self.engine.list_jobs(v, offset)
        return self._page(call, items, nxt)

    def get_job(self, call: Call) -> Reply:
        e = self.engine
        job = e.get_job(self._vault(call), call.params["job"])
        return Reply(200, render.job_json(e.world, job, e.clock.now()))

    # ================================================================ actions
    def validate_restore(self, call: Call) -> Reply:
        v, b = self._instance(call)
        forced, _ = self._faults_for(call.operation)
        return self._lro(call, self.engine.validate(v, b, call.body, forced=forced))

    def trigger_restore(self, call: Call) -> Reply:
        v, b = self._instance(call)
        forced, job_fault = self._faults_for(call.operation)
        behaviour = self._job_behaviour(call.operation)
        return self._lro(call, self.engine.restore(v, b, call.body, forced=forced, job_fault=job_fault,
                                                   behaviour=behaviour))

    def trigger_rehydrate(self, call: Call) -> Reply:
        v, b = self._instance(call)
        forced, job_fault = self._faults_for(call.operation)
        return self._lro(call, self.engine.rehydrate(v, b, call.body, forced=forced, job_fault=job_fault))

    # ================================================================ cross-region restore
    @staticmethod
    def _body(call: Call) -> dict[str, Any]:
        return call.body if isinstance(call.body, dict) else {}

    def _crr_listing(self, call: Call, key: str) -> Reply:
        """fetchSecondaryRecoveryPoints (``key`` sourceBackupInstanceId) and fetchCrossRegionRestoreJobs
        (``key`` sourceBackupVaultId): a POST, then GETs on ``nextLink`` whose token carries the body."""
        p, loc = call.params, call.params["loc"].lower()
        tok = self._q(call, "$skipToken")
        state = decode_token(tok) if tok else {}
        if call.method == "GET" and not tok:
            raise BadRequest("UserErrorInvalidRequestParameter",
                             f"{call.operation} is a POST; GET is only for nextLink pages")
        src = {"sourceRegion": state["r"], key: state["s"]} if tok else self._body(call)
        v, b = self.engine.crr_source(p["sub"], p["rg"], loc, src, key)
        if b is not None:
            skip = encode_token({"o": state.get("o", 0)})
            items, nxt = self.engine.list_rps(v, b, self._q(call, "$filter"), skip, secondary=True)
        else:
            items, nxt = self.engine.list_jobs(v, int(state.get("o", 0)), crr_location=loc)
        return self._page(call, items, nxt, {"r": v.location, "s": src[key]})

    def fetch_secondary_points(self, call: Call) -> Reply:
        return self._crr_listing(call, "sourceBackupInstanceId")

    def fetch_crr_jobs(self, call: Call) -> Reply:
        return self._crr_listing(call, "sourceBackupVaultId")

    def fetch_crr_job(self, call: Call) -> Reply:
        e, p, loc, body = self.engine, call.params, call.params["loc"].lower(), self._body(call)
        v, _ = e.crr_source(p["sub"], p["rg"], loc, body, "sourceBackupVaultId")
        job_id = body.get("jobId")
        if not isinstance(job_id, str) or not job_id:
            raise BadRequest("UserErrorInvalidRequestParameter", "body.jobId: give the CRR job's GUID or ARM id")
        return Reply(200, render.job_json(e.world, e.get_job(v, job_id, crr_location=loc), e.clock.now()))

    def _crr_instance(self, call: Call) -> tuple[Vault, BackupInstance]:
        p = call.params
        details = self._body(call).get("crossRegionRestoreDetails")
        v, b = self.engine.crr_source(p["sub"], p["rg"], p["loc"].lower(), details, "sourceBackupInstanceId",
                                      check_enabled=False)
        assert b is not None  # a sourceBackupInstanceId names an instance
        return v, b

    def validate_crr(self, call: Call) -> Reply:
        v, b = self._crr_instance(call)
        forced, _ = self._faults_for(call.operation)
        return self._lro(call, self.engine.validate(v, b, self._body(call), crr_location=call.params["loc"].lower(),
                                                    forced=forced))

    def trigger_crr(self, call: Call) -> Reply:
        v, b = self._crr_instance(call)
        forced, job_fault = self._faults_for(call.operation)
        behaviour = self._job_behaviour(call.operation)
        return self._lro(call, self.engine.restore(v, b, self._body(call).get("restoreRequestObject"),
                                                   crr_location=call.params["loc"].lower(), forced=forced,
                                                   job_fault=job_fault, behaviour=behaviour))
