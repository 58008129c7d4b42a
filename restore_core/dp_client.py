"""The one Data Protection client: every ARM call of the service passes through here.

Wraps the real ``azure-mgmt-dataprotection`` SDK. In Azure it authenticates with ``DefaultAzureCredential`` (the
Function App's user-assigned identity, ``AZURE_CLIENT_ID``); locally the same code is pointed at the emulator by
configuration only (``DATAPROTECTION_ENDPOINT``, ``DATAPROTECTION_CA_BUNDLE``, ``DATAPROTECTION_TOKEN``).

- Counts calls by operation and status (telemetry ``restore.arm.calls`` + an in-process counter for tests/benchmarks).
- Honours 429 ``Retry-After`` (azure-core retry policy); when retries are exhausted raises :class:`RetryableError`
  carrying ``retry_after`` so the stage re-enqueues itself with that delay instead of hammering ARM.
- Never retries a non-idempotent trigger (restore, cross-region restore, rehydrate) on 500/504/dropped connections —
  the call may have executed; the trigger stage adopts the job instead (exactly-once guarantee).
- LROs end as the spec declares (``final-state-via: location``): after the Azure-AsyncOperation document says
  Succeeded, the result is read from the ``Location`` URL — except when that status document already carries the
  job id (captured primary restores do), which is then the result (one ARM call saved per trigger).
- Maps SDK errors to the taxonomy in :mod:`restore_core.errors` with ``raise ... from exc``: throttling, 5xx, 408,
  401/credential errors and undecodable answers (invalid JSON, an HTML page with 200) are retryable; an operation
  that Azure reports Failed, and 4xx refusals, are :class:`AzureRejection` (with the HTTP status). Once a trigger
  was accepted, any error while following it is "outcome unknown" (retryable, never throttled): the trigger stage
  then looks for the job instead of triggering again.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from enum import Enum
from itertools import islice
from typing import Any, Protocol, TypeVar

from azure.core.credentials import AccessToken, TokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    DecodeError,
    DeserializationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline import PipelineResponse
from azure.core.pipeline.policies import RetryPolicy
from azure.core.polling.base_polling import OperationFailed, _failed, _raise_if_bad_http_status_and_method
from azure.mgmt.core.polling.arm_polling import ARMPolling
from azure.mgmt.dataprotection import DataProtectionMgmtClient
from azure.mgmt.dataprotection import models as m

from .arm_ids import BackupInstanceRef, VaultRef, job_name, parse_backup_instance_id
from .backup import (  # noqa: F401 - re-exported: the adapter's answers are these SDK-free facts
    JOB_CANCELLED,
    JOB_FAILED,
    JOB_RUNNING,
    JOB_SUCCEEDED,
    BackupInstanceInfo,
    CallMeter,
    JobInfo,
    RecoveryPointInfo,
    Triggered,
    VaultInfo,
    latest,
)
from .config import Settings, sdk_http_options
from .errors import AzureRejection, RestoreError, RetryableError, require
from .models import DatabaseTarget, Rehydration, Tier
from .records import parse_time
from .restore_requests import SINGLE_SERVER_DB, RestorePlan

T = TypeVar("T")
_log = logging.getLogger(__name__)

_OPERATIONS: list[tuple[str, re.Pattern[str], str]] = [
    (method, re.compile(pattern, re.IGNORECASE), name) for method, pattern, name in [
        ("GET", r"/backupVaults/[^/]+$", "BackupVaults_Get"),
        ("GET", r"/providers/Microsoft\.DataProtection/backupInstances$", "BackupInstancesExtensionRouting_List"),
        ("GET", r"/backupInstances$", "BackupInstances_List"),
        ("GET", r"/backupInstances/[^/]+$", "BackupInstances_Get"),
        ("GET", r"/recoveryPoints$", "RecoveryPoints_List"),
        ("GET", r"/recoveryPoints/[^/]+$", "RecoveryPoints_Get"),
        ("POST", r"/validateRestore$", "BackupInstances_ValidateForRestore"),
        ("POST", r"/backupInstances/[^/]+/restore$", "BackupInstances_TriggerRestore"),
        ("POST", r"/rehydrate$", "BackupInstances_TriggerRehydrate"),
        ("GET", r"/backupJobs$", "Jobs_List"),
        ("GET", r"/backupJobs/[^/]+$", "Jobs_Get"),
        ("GET", r"/operationStatus/[^/]+$", "OperationStatus_Get"),
        ("GET", r"/operationResults/[^/]+$", "OperationResult_Get"),
        ("POST", r"/fetchSecondaryRecoveryPoints$", "FetchSecondaryRecoveryPoints_List"),
        ("GET", r"/fetchSecondaryRecoveryPoints$", "FetchSecondaryRecoveryPoints_List"),
        ("POST", r"/validateCrossRegionRestore$", "BackupInstances_ValidateCrossRegionRestore"),
        ("POST", r"/crossRegionRestore$", "BackupInstances_TriggerCrossRegionRestore"),
        ("POST", r"/fetchCrossRegionRestoreJob$", "FetchCrossRegionRestoreJob_Get"),
        ("POST", r"/fetchCrossRegionRestoreJobs$", "FetchCrossRegionRestoreJobs_List"),
        ("GET", r"/fetchCrossRegionRestoreJobs$", "FetchCrossRegionRestoreJobs_List"),
    ]
]
_UNSAFE = re.compile(r"/(restore|crossRegionRestore|rehydrate)$", re.IGNORECASE)


def operation_of(method: str, url: str) -> str:
    path = url.split("?", 1)[0].rstrip("/")
    for meth, pattern, name in _OPERATIONS:
        if meth == method.upper() and pattern.search(path):
            return name
    return f"{method.upper()} other"


class GuardedRetryPolicy(RetryPolicy):  # type: ignore[type-arg]
    """azure-core's retry policy, except that triggers (which may have executed) are retried only on 429/503 —
    answers that ARM gives before doing anything."""

    def is_retry(self, settings: dict[str, Any], response: PipelineResponse[Any, Any]) -> bool:
        req = response.http_request
        if req.method.upper() == "POST" and _UNSAFE.search(req.url.split("?", 1)[0]):
            return response.http_response.status_code in (429, 503) and bool(settings["total"])
        return bool(super().is_retry(settings, response))

    def _is_read_error(self, err: Exception) -> bool:  # dropped answer: never resend a trigger
        return False


def _status_job_id(response: PipelineResponse[Any, Any]) -> str | None:
    """The job id an Azure-AsyncOperation status document carries (``properties.jobId``), if any."""
    try:
        body = json.loads(response.http_response.text() or "null")
    except ValueError:
        return None
    props = body.get("properties") if isinstance(body, dict) else None
    job_id = props.get("jobId") if isinstance(props, dict) else None
    return str(job_id) if job_id else None


class LearningPolling(ARMPolling):
    """ARM polling that honours ``Retry-After`` and, for the FIRST status poll only, waits at least as long as this
    kind of operation usually takes (learned). Waiting longer than ``Retry-After`` is allowed; it saves the status
    polls that would only answer "Inprogress". The final state is read as the spec declares (``final-state-via:
    location``), except when the status document already names the job (the fast path)."""

    def __init__(self, first_wait: float, *, result_needed: bool = True) -> None:
        super().__init__(5, lro_options={"final-state-via": "location"})
        self._first_wait = first_wait
        self._result_needed = result_needed
        self._waited = False
        self._held = True  # until run_here(): azure-core's LROPoller then starts no polling thread of its own
        self.first_delay = 0.0  # what the first wait was (ARM's Retry-After, or the learned time if longer)
        self.status_polls = 0
        self.final_gets = 0

    def finished(self) -> bool:
        # While held, LROPoller.__init__ sees a finished operation and starts no thread (azure-core 1.41: "if
        # self._polling_method.finished(): self._done.set() else: start a thread"); run_here() then polls.
        return self._held or bool(super().finished())

    def run_here(self) -> None:
        """Poll to the end in the calling thread (the invocation's own): the same waits, status reads and final GET
        as azure-core's poller thread would make, without a thread start, a join and a GIL hand-over per wait."""
        self._held = False
        if not self.finished():  # an operation that ended in its first answer needs no polling (as in azure-core)
            self.run()

    def _extract_delay(self) -> float:
        delay = float(super()._extract_delay())
        if not self._waited:
            self._waited = True
            self.first_delay = max(delay, self._first_wait)
            return self.first_delay
        return delay

    def _poll(self) -> None:
        # azure-core asks for the status at once after the 202; ARM's Retry-After says not yet, so wait first.
        # (Same steps as azure-core 1.41 LROBasePolling._poll otherwise.)
        while not self.finished():
            self._delay()
            self.update_status()
            self.status_polls += 1
        if _failed(self.status()):  # type: ignore[no-untyped-call]
            raise OperationFailed("Operation failed or canceled")
        if self.status_polls and (not self._result_needed or _status_job_id(self._pipeline_response)):
            return  # Succeeded is the whole answer (a validation), or the status document names the job: no final GET
        final_get_url = self._operation.get_final_get_url(self._pipeline_response)
        if final_get_url:
            self._pipeline_response = self.request_status(final_get_url)
            self.final_gets += 1
            _raise_if_bad_http_status_and_method(self._pipeline_response.http_response)


class StaticTokenCredential:
    """A fixed bearer token (the local emulator's). Never logged."""

    def __init__(self, token: str) -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + 3600)


def _plain(value: Any) -> str | None:
    """SDK enums are str subclasses whose str() is 'Enum.MEMBER'; keep only the wire value."""
    if value is None:
        return None
    return str(value.value) if isinstance(value, Enum) else str(value)


def _error_body(exc: HttpResponseError) -> dict[str, Any]:
    try:
        body = exc.response.json() if exc.response is not None else None  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - any undecodable body
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return dict(body["error"])
    err = getattr(exc, "error", None)
    return {"code": getattr(err, "code", None) or "", "message": getattr(err, "message", None) or exc.message}


def _mapped(what: str, exc: HttpResponseError) -> RestoreError:
    """An HTTP error (or a failed long-running operation) in the taxonomy."""
    status = exc.status_code or 0
    err = _error_body(exc)
    if isinstance(exc.__cause__, OperationFailed):  # the status document says Failed: Azure's verdict
        return AzureRejection(err.get("code") or "OperationFailed", str(err.get("message") or exc.message),
                              _recommended(err), from_operation=True)
    if status == 429:
        return RetryableError(f"{what}: throttled by ARM", retry_after=_retry_after(exc), throttled=True)
    if status >= 500 or status in (401, 408) or 200 <= status < 300:
        # 503 is refused before execution (like 429); 500/502/504 may have executed. A 2xx here is an answer the
        # client could not use (BadResponse: an HTML page, a status document without status); 401 a token hiccup.
        return RetryableError(f"{what}: ARM answered {status}" + (f" ({exc.message})" if status < 300 else ""),
                              retry_after=_retry_after(exc), throttled=status == 503)
    code = err.get("code") or f"Http{status}"
    if status == 403:
        fix = ("grant the Function App's managed identity the Backup Operator role on the vault "
               "(see docs/deploy.md)")
        return AzureRejection(code, f"{what}: {err.get('message') or 'forbidden'}", fix, status=403)
    return AzureRejection(code, str(err.get("message") or exc.message), _recommended(err), status=status)


def _recommended(err: dict[str, Any]) -> str | None:
    for info in err.get("additionalInfo") or []:
        actions = (info.get("info") or {}).get("recommendedAction") if isinstance(info, dict) else None
        if actions:
            return " ".join(str(a) for a in actions)
    return None


def _retry_after(exc: HttpResponseError) -> float | None:
    headers: Any = exc.response.headers if exc.response is not None else {}  # type: ignore[attr-defined]
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        if headers.get(name):
            try:
                return float(headers[name]) / 1000
            except ValueError:
                pass
    try:
        return float(headers.get("Retry-After", ""))
    except ValueError:
        return None


def _tier_of(rp: Any) -> tuple[Tier, str | None, datetime | None, str | None]:
    props = rp.properties
    tier, status, expiry, version = Tier.VAULT, None, None, None
    for ds in getattr(props, "recovery_point_data_stores_details", None) or []:
        if (_plain(ds.type) or "").lower().startswith("archive"):
            tier = Tier.ARCHIVE
        # Azure does not show where a rehydration is reported: take it from whichever entry reports it
        if _plain(ds.rehydration_status) and (status is None or _plain(ds.rehydration_status) == "COMPLETED"):
            status = _plain(ds.rehydration_status)
            expiry = ds.rehydration_expiry_time or expiry
        meta = ds.meta_data
        if meta and '"postgresVersion"' in meta:
            match = re.search(r'"postgresVersion"\s*:\s*"?(\d+)', meta)
            version = match.group(1) if match else None
    return tier, status, expiry, version


def _databases_of(rp: Any) -> tuple[str, ...] | None:
    """``dbName`` of the point's PostgreSQL metadata (a JSON string on each data store entry; Azure's example shows
    one name for a Single Server database; a list is taken as the databases of a server). None when not given."""
    for ds in getattr(rp.properties, "recovery_point_data_stores_details", None) or []:
        try:
            meta = json.loads(ds.meta_data) if ds.meta_data else None
        except (TypeError, ValueError):
            continue
        names = meta.get("dbName") if isinstance(meta, dict) else None
        if isinstance(names, str) and names:
            return (names,)
        if isinstance(names, list) and names and all(isinstance(n, str) for n in names):
            return tuple(names)
    return None


def _rp_info(rp: Any) -> RecoveryPointInfo:
    tier, status, expiry, version = _tier_of(rp)
    rp_time = require(parse_time(rp.properties.recovery_point_time), "Azure gives every recovery point its time")
    return RecoveryPointInfo(rp.name or rp.properties.recovery_point_id, rp_time, tier, status,
                             parse_time(expiry), version,
                             _plain(getattr(rp.properties, "recovery_point_state", None)), _databases_of(rp),
                             _size_of(rp))


def _size_of(rp: Any) -> int | None:
    """The point's size from its PostgreSQL metadata: ``bytesTransferred`` (what the backup moved), else
    ``dataSourceSize``; None when neither is given (the metadata may be null)."""
    for ds in getattr(rp.properties, "recovery_point_data_stores_details", None) or []:
        try:
            meta = json.loads(ds.meta_data) if ds.meta_data else None
        except (TypeError, ValueError):
            continue
        for key in ("bytesTransferred", "dataSourceSize"):
            value = meta.get(key) if isinstance(meta, dict) else None
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
                return int(value)
    return None


def _job_info(job: Any) -> JobInfo:
    p = job.properties
    ext = p.extended_info
    errors = [{"code": e.code, "message": e.message,
               "recommended_action": list(e.recommended_action or [])} for e in (p.error_details or [])]
    warnings: list[dict[str, Any]] = []
    if ext is not None:
        for w in ext.warning_details or []:
            warning = w.warning
            warnings.append({"resource": w.resource_name, "code": getattr(warning, "code", None),
                             "message": getattr(warning, "message", None)})
    source = getattr(ext, "source_recover_point", None) if ext is not None else None
    subtasks = tuple((str(t.task_name or ""), str(t.task_status or "")) for t in
                     (getattr(ext, "sub_tasks", None) or [])) if ext is not None else ()
    running = [t for t in (getattr(ext, "sub_tasks", None) or []) if getattr(t, "task_progress", None)] \
        if ext is not None else []
    return JobInfo(id=job.id or "", name=job.name or job_name(job.id or ""), status=str(_plain(p.status)),
                   operation=_plain(p.operation), operation_category=_plain(p.operation_category),
                   backup_instance_id=p.backup_instance_id,
                   destination=ext.recovery_destination if ext is not None else None,
                   start_time=parse_time(p.start_time), end_time=parse_time(p.end_time),
                   errors=errors, warnings=warnings,
                   recovery_point_id=getattr(source, "recovery_point_id", None) if source is not None else None,
                   subtasks=subtasks, task_progress=str(running[-1].task_progress) if running else None,
                   transferred_bytes=_transferred(ext), duration_seconds=parse_duration(getattr(p, "duration", None)))


_ISO_DURATION = re.compile(r"^P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?"
                           r"(?:(\d+(?:\.\d+)?)S)?)?$")
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d+):(\d+):(\d+(?:\.\d+)?)$")


def parse_duration(text: Any) -> float | None:
    """Seconds of a job ``duration``: ISO 8601 (``PT12M36.5S``, as the spec says) or a .NET time span
    (``00:12:36.5``, ``1.02:00:00``, as older Azure Backup APIs show it); None when absent or unreadable."""
    value = str(text or "").strip().upper()
    iso = _ISO_DURATION.match(value) if value not in ("P", "PT") else None
    if iso:
        d, h, mi, se = (float(g) if g else 0.0 for g in iso.groups())
        return d * 86400 + h * 3600 + mi * 60 + se
    span = _TIMESPAN.match(value)
    if span:
        d, h, mi, se = (float(g) if g else 0.0 for g in span.groups())
        return d * 86400 + h * 3600 + mi * 60 + se
    return None


def _transferred(ext: Any) -> float | None:
    """``extendedInfo`` bytes moved so far: the spec's ``dataTransferredInBytes`` or the real service's spelling
    ``dataTransferedInBytes`` (the SDK maps only the former; its models keep the raw body's other keys)."""
    if ext is None:
        return None
    value = getattr(ext, "data_transferred_in_bytes", None)
    if value is None:
        try:
            value = ext.get("dataTransferedInBytes")
        except AttributeError:  # an SDK model that does not keep its raw keys
            value = None
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _user_identities(identity: Any) -> dict[str, str]:
    users = getattr(identity, "user_assigned_identities", None) or {}
    return {str(uid): str(getattr(u, "principal_id", None) or "") for uid, u in users.items()}


def _job_id_of(result: Any) -> str:
    if result is None:
        return ""
    job_id = getattr(result, "job_id", None)
    if not job_id and hasattr(result, "get"):
        props = result.get("properties") or {}
        job_id = props.get("jobId") if hasattr(props, "get") else None
    return str(job_id or "")


class DurationStore(Protocol):
    """Where learned operation durations outlive a process (the state table: ``runtime.StoredDurations``)."""

    def get(self, kind: str) -> float | None: ...

    def put(self, kind: str, seconds: float) -> None: ...


#: a learned operation duration is written back only when it moved by more than this share of the stored one
DURATION_WRITE_CHANGE = 0.5


class DataProtection:
    """Typed, metered, error-mapped facade over ``DataProtectionMgmtClient``."""

    def __init__(self, settings: Settings, *, credential: TokenCredential | None = None,
                 meter: CallMeter | None = None, durations: DurationStore | None = None,
                 **client_kwargs: Any) -> None:
        self._settings = settings
        self.meter = meter or CallMeter()
        if credential is None:
            if settings.dataprotection_token:
                credential = StaticTokenCredential(settings.dataprotection_token)
            else:
                from azure.identity import DefaultAzureCredential

                credential = DefaultAzureCredential(managed_identity_client_id=settings.azure_client_id)
        self._credential = credential
        self._client_kwargs = client_kwargs
        self._clients: dict[str, DataProtectionMgmtClient] = {}
        self._lock = threading.Lock()
        self._lro_seconds: dict[str, float] = {}
        self._durations = durations
        self._stored: dict[str, float | None] = {}  # kind -> what the durations store holds (read once per process)

    def _hook(self, response: PipelineResponse[Any, Any]) -> None:
        req = response.http_request
        self.meter.record(operation_of(req.method, req.url), response.http_response.status_code)

    def client(self, subscription: str) -> DataProtectionMgmtClient:
        with self._lock:
            if subscription not in self._clients:
                kwargs: dict[str, Any] = {
                    "raw_response_hook": self._hook,
                    "retry_policy": GuardedRetryPolicy(retry_total=self._settings.arm_max_retries,
                                                       retry_backoff_max=60),
                    "polling_interval": 5,
                    **sdk_http_options(),  # no per-request proxy/netrc look-ups when none is configured
                }
                if self._settings.dataprotection_ca_bundle:
                    kwargs["connection_verify"] = self._settings.dataprotection_ca_bundle
                kwargs.update(self._client_kwargs)
                self._clients[subscription] = DataProtectionMgmtClient(
                    self._credential, subscription, base_url=self._settings.dataprotection_endpoint, **kwargs)
            return self._clients[subscription]

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except (DecodeError, DeserializationError, ValueError) as exc:  # a 2xx whose body is not what ARM sends
            raise RetryableError(f"{what}: ARM's answer could not be read ({type(exc).__name__})") from exc
        except ClientAuthenticationError as exc:  # 401, or the credential could not get a token: a hiccup
            raise RetryableError(f"{what}: ARM refused our credential ({exc.status_code or 'no token'}); check the "
                                 f"Function App identity (AZURE_CLIENT_ID) and its role on the vault if it "
                                 f"persists") from exc
        except ResourceNotFoundError as exc:
            err = _error_body(exc)
            raise AzureRejection(err.get("code") or "ResourceNotFound",
                                 f"{what}: {err.get('message') or 'not found'}",
                                 _recommended(err), status=404) from exc
        except HttpResponseError as exc:
            raise _mapped(what, exc) from exc
        except (ServiceRequestError, ServiceResponseError) as exc:
            self.meter.record(what, None)
            raise RetryableError(f"{what}: connection problem ({type(exc).__name__})") from exc

    def _lro(self, kind: str, what: str, start: Callable[[ARMPolling], Any], *,
             result_needed: bool = True) -> tuple[Any, float, float]:
        """Run a long-running operation to its end; learn how long this kind takes (per process). Without
        ``result_needed`` (a validation: its verdict is the status) the final result document is not read. Returns
        the result, the seconds from the POST's answer to the end, and the POST's own seconds (sent to answered)."""
        with self._lock:
            expected = self._lro_seconds.get(kind)
        if expected is None:
            expected = self._stored_seconds(kind)
        polling = LearningPolling(expected or 0.0, result_needed=result_needed)
        began = time.monotonic()
        poller = self._call(what, lambda: start(polling))  # the POST: a 429/503 here means nothing started
        accepted = time.monotonic()  # the operation runs from its 202; the POST's own round trip is not its duration

        def follow() -> Any:
            polling.run_here()  # in this thread: no poller thread (LearningPolling.finished)
            return poller.result()  # no thread to join: the polling method's resource (final state)

        try:
            result = self._call(f"{what} (status)", follow)
        except RetryableError as exc:  # the POST was accepted: whatever happens while polling, it may be running
            raise RetryableError(str(exc), retry_after=exc.retry_after, throttled=False) from exc
        except AzureRejection as exc:
            if exc.from_operation:  # Azure ran it and says Failed: a verdict
                raise
            # a 4xx while following an accepted operation (a status URL that 404s or 403s): outcome unknown
            raise RetryableError(f"{what}: following the accepted operation failed ({exc.code}: {exc.message})",
                                 throttled=False) from exc
        took = time.monotonic() - accepted
        with self._lock:
            # one status poll was enough: it ended within the first wait. After a learned wait, expect 10% less next
            # time; with nothing learned, the wait that sufficed (ARM's Retry-After) — not the round trips, which on
            # a cold process (TLS, token) are many times the operation and took ~30 restores to decay from.
            # More polls: it took about what we saw since its 202. (Averaging what we saw would feed our own wait
            # back into it.)
            if polling.status_polls <= 1:
                learned = 0.9 * expected if expected else polling.first_delay
            else:
                learned = took
            self._lro_seconds[kind] = learned
        self._store_seconds(kind, learned)
        return result, time.monotonic() - accepted, accepted - began

    def _stored_seconds(self, kind: str) -> float | None:
        """A new process starts from the duration an earlier one learned (one read per kind and process)."""
        if self._durations is None or kind in self._stored:
            return None
        try:
            value = self._durations.get(kind)
        except Exception as exc:  # noqa: BLE001 - a learned duration is an optimisation: never fail a call on it
            _log.warning("could not read the learned %s duration (%s)", kind, type(exc).__name__)
            value = None
        value = value if value is not None and value > 0 else None
        with self._lock:
            self._stored[kind] = value
            if value is not None:
                self._lro_seconds.setdefault(kind, value)
            return self._lro_seconds.get(kind)

    def _store_seconds(self, kind: str, seconds: float) -> None:
        """Write a learned duration back when it moved by more than ``DURATION_WRITE_CHANGE`` of the stored one (so
        not on every operation: it sits on the path of every validation and trigger)."""
        if self._durations is None:
            return
        with self._lock:
            stored = self._stored.get(kind)
            if stored is not None and abs(seconds - stored) <= DURATION_WRITE_CHANGE * stored:
                return
            self._stored[kind] = seconds
        try:
            self._durations.put(kind, seconds)
        except Exception as exc:  # noqa: BLE001 - see _stored_seconds
            _log.warning("could not store the learned %s duration (%s)", kind, type(exc).__name__)


    # -- reads
    def get_vault(self, vault: VaultRef) -> VaultInfo:
        v = self._call("get vault", lambda: self.client(vault.subscription).backup_vaults.get(
            vault.resource_group, vault.vault))
        props = v.properties
        redundancy = None
        for s in getattr(props, "storage_settings", None) or []:
            if _plain(s.datastore_type) == "VaultStore" or redundancy is None:
                redundancy = _plain(s.type)
        crr = getattr(getattr(props, "feature_settings", None), "cross_region_restore_settings", None)
        csr = getattr(getattr(props, "feature_settings", None), "cross_subscription_restore_settings", None)
        replicated = list(getattr(props, "replicated_regions", None) or [])
        return VaultInfo(id=v.id or vault.id, location=(v.location or "").lower(),
                         principal_id=getattr(v.identity, "principal_id", None) if v.identity else None,
                         redundancy=redundancy, crr_enabled=(_plain(getattr(crr, "state", None)) == "Enabled"),
                         # as the az CLI: only a single listed region counts; otherwise the paired-region fallback
                         secondary_region=replicated[0].lower() if len(replicated) == 1 and replicated[0] else None,
                         user_identities=_user_identities(v.identity),
                         csr_state=_plain(getattr(csr, "state", None)))

    def _bi_info(self, bi: Any) -> BackupInstanceInfo:
        p = bi.properties
        ds, dss = p.data_source_info, p.data_source_set_info
        ident = getattr(p, "identity_details", None)
        uami = ident.user_assigned_identity_arm_url if ident is not None and \
            ident.use_system_assigned_identity is not True else None
        return BackupInstanceInfo(id=bi.id, name=bi.name, friendly_name=p.friendly_name,
                                  datasource_type=str(ds.datasource_type or ds.resource_type),
                                  datasource_id=ds.resource_id, datasource_set_id=dss.resource_id if dss else None,
                                  protection_state=_plain(p.current_protection_state), user_identity=uami or None)

    def get_backup_instance(self, bi: BackupInstanceRef) -> BackupInstanceInfo:
        res = self._call("get backup instance", lambda: self.client(bi.vault.subscription).backup_instances.get(
            bi.vault.resource_group, bi.vault.vault, bi.name))
        return self._bi_info(res)

    def list_backup_instances(self, vault: VaultRef) -> list[BackupInstanceInfo]:
        items = self._call("list backup instances", lambda: list(
            self.client(vault.subscription).backup_instances.list(vault.resource_group, vault.vault)))
        return [self._bi_info(b) for b in items]

    def list_protecting_instances(self, resource_id: str) -> list[BackupInstanceInfo]:
        """The backup instances protecting a resource (``BackupInstancesExtensionRouting_List``: GET
        ``{resourceId}/providers/Microsoft.DataProtection/backupInstances``), in the resource's subscription."""
        subscription = resource_id.strip("/").split("/")[1]
        items = self._call("list protecting backup instances", lambda: list(
            self.client(subscription).backup_instances_extension_routing.list(resource_id.strip("/"))))
        return [self._bi_info(b) for b in items]

    def browse_recovery_points(self, bi: BackupInstanceRef, *, start: datetime | None, end: datetime | None,
                               max_items: int, regions: tuple[str, str] | None = None
                               ) -> tuple[list[RecoveryPointInfo], bool]:
        """Up to ``max_items`` recovery points (ARM's order; whole pages are read until then) and whether more
        exist. ``regions`` (secondary, primary): the secondary region's points (``fetchSecondaryRecoveryPoints``;
        the az CLI warns that start/end filters do not work there, so the window is applied here)."""
        client = self.client(bi.vault.subscription)
        if regions is None:
            fmt = "%Y-%m-%dT%H:%M:%S.%f0Z"
            flt = " and ".join(f"{name} eq '{when.astimezone(UTC).strftime(fmt)}'" for name, when in
                               (("startDate", start), ("endDate", end)) if when is not None) or None
            pages: Any = client.recovery_points.list(bi.vault.resource_group, bi.vault.vault, bi.name, filter=flt)
        else:
            params = m.FetchSecondaryRPsRequestParameters(source_region=regions[1], source_backup_instance_id=bi.id)
            pages = client.fetch_secondary_recovery_points.list(bi.vault.resource_group, regions[0], params)
        items = self._call("browse recovery points", lambda: list(islice(pages, max_items + 1)))
        points = [_rp_info(rp) for rp in items[:max_items]]
        if regions is not None:
            points = [p for p in points if (start is None or p.time >= start) and (end is None or p.time <= end)]
        return points, len(items) > max_items

    def list_recovery_points(self, bi: BackupInstanceRef, *, end: datetime | None = None) -> list[RecoveryPointInfo]:
        flt = None
        if end is not None:
            flt = f"endDate eq '{end.strftime('%Y-%m-%dT%H:%M:%S.%f0Z')}'"
        items = self._call("list recovery points", lambda: list(
            self.client(bi.vault.subscription).recovery_points.list(
                bi.vault.resource_group, bi.vault.vault, bi.name, filter=flt)))
        return [_rp_info(rp) for rp in items]

    def get_recovery_point(self, bi: BackupInstanceRef, rp_id: str) -> RecoveryPointInfo:
        rp = self._call("get recovery point", lambda: self.client(bi.vault.subscription).recovery_points.get(
            bi.vault.resource_group, bi.vault.vault, bi.name, rp_id))
        return _rp_info(rp)

    def fetch_secondary_recovery_points(self, bi: BackupInstanceRef, *, secondary: str,
                                        primary: str) -> list[RecoveryPointInfo]:
        params = m.FetchSecondaryRPsRequestParameters(source_region=primary, source_backup_instance_id=bi.id)
        items = self._call("fetch secondary recovery points", lambda: list(
            self.client(bi.vault.subscription).fetch_secondary_recovery_points.list(
                bi.vault.resource_group, secondary, params)))
        return [_rp_info(rp) for rp in items]

    def get_job(self, vault: VaultRef, job_id: str) -> JobInfo:
        job = self._call("get job", lambda: self.client(vault.subscription).jobs.get(
            vault.resource_group, vault.vault, job_name(job_id)))
        return _job_info(job)

    def list_jobs(self, vault: VaultRef) -> list[JobInfo]:
        items = self._call("list jobs", lambda: list(
            self.client(vault.subscription).jobs.list(vault.resource_group, vault.vault)))
        return [_job_info(j) for j in items]

    def fetch_cross_region_job(self, vault: VaultRef, *, secondary: str, primary: str, job_id: str) -> JobInfo:
        params = m.CrossRegionRestoreJobRequest(source_region=primary, source_backup_vault_id=vault.id,
                                                job_id=job_name(job_id))
        job = self._call("fetch cross-region job", lambda: self.client(vault.subscription)
                         .fetch_cross_region_restore_job.get(vault.resource_group, secondary, params))
        return _job_info(job)

    def fetch_cross_region_jobs(self, vault: VaultRef, *, secondary: str, primary: str) -> list[JobInfo]:
        params = m.CrossRegionRestoreJobsRequest(source_region=primary, source_backup_vault_id=vault.id)
        items = self._call("fetch cross-region jobs", lambda: list(
            self.client(vault.subscription).fetch_cross_region_restore_jobs.list(
                vault.resource_group, secondary, params)))
        return [_job_info(j) for j in items]

    # -- long-running operations, at the level of a restore plan (the SDK's request objects stay in this module)
    def validate_restore(self, plan: RestorePlan, rehydration: Rehydration | None = None) -> None:
        """Azure's own validation of the plan (an archived point in its one-request rehydration form)."""
        bi = parse_backup_instance_id(plan.backup_instance_id)
        request = validate_request(plan, rehydration)
        self._lro("validate", "validate restore", lambda p: self.client(bi.vault.subscription).backup_instances
                  .begin_validate_for_restore(bi.vault.resource_group, bi.vault.vault, bi.name, request, polling=p),
                  result_needed=False)

    def validate_cross_region_restore(self, plan: RestorePlan, source_region: str,
                                      rehydration: Rehydration | None = None) -> None:
        vault = parse_backup_instance_id(plan.backup_instance_id).vault
        request = validate_cross_region_request(plan, source_region, rehydration)
        self._lro("validate-crr", "validate cross-region restore", lambda p: self.client(vault.subscription)
                  .backup_instances.begin_validate_cross_region_restore(vault.resource_group, plan.restore_location,
                                                                        request, polling=p),
                  result_needed=False)

    def trigger_restore(self, plan: RestorePlan, rehydration: Rehydration | None = None) -> Triggered:
        """Start the restore (with ``rehydration``: the one-request archive form); returns the job id and how long
        after the POST's answer the operation ended."""
        bi = parse_backup_instance_id(plan.backup_instance_id)
        request = restore_request(plan, rehydration)
        result, after, post = self._lro("restore", "trigger restore", lambda p: self.client(bi.vault.subscription)
                                        .backup_instances.begin_trigger_restore(bi.vault.resource_group,
                                                                                bi.vault.vault, bi.name, request,
                                                                                polling=p))
        return Triggered(_job_id_of(result), after, post)

    def trigger_cross_region_restore(self, plan: RestorePlan, source_region: str) -> Triggered:
        vault = parse_backup_instance_id(plan.backup_instance_id).vault
        request = cross_region_request(plan, source_region)
        result, after, post = self._lro("restore-crr", "trigger cross-region restore", lambda p: self.client(
            vault.subscription).backup_instances.begin_trigger_cross_region_restore(
                vault.resource_group, plan.restore_location, request, polling=p))
        return Triggered(_job_id_of(result), after, post)

    def trigger_rehydrate(self, bi: BackupInstanceRef, recovery_point_id: str, priority: str,
                          retention_days: int) -> None:
        request = rehydration_request(recovery_point_id, priority, retention_days)
        self._lro("rehydrate", "trigger rehydrate", lambda p: self.client(bi.vault.subscription).backup_instances
                  .begin_trigger_rehydrate(bi.vault.resource_group, bi.vault.vault, bi.name, request, polling=p))


# -- the Azure request objects of a restore plan (only this adapter knows the SDK's models)
# Cases: restore as database (Key Vault secret credentials) or as files (container + prefix); source VaultStore or a
# rehydrated ArchiveStore point; primary region or Cross Region Restore (wrapped with the source region and backup
# instance); the vault's system-assigned identity (no ``identityDetails``) or a user-assigned one.
# ``recoveryOption`` is always ``FailIfExists``: a restore never overwrites anything.


def _server_name(server_id: str) -> str:
    return server_id.rstrip("/").rsplit("/", 1)[-1]


def target_info(plan: RestorePlan) -> m.RestoreTargetInfoBase:
    t = plan.target
    if isinstance(t, DatabaseTarget):
        return m.RestoreTargetInfo(
            recovery_option="FailIfExists",
            restore_location=plan.restore_location,
            datasource_info=m.Datasource(
                object_type="Datasource",
                resource_id=t.database_id,
                resource_name=t.database_name,
                resource_type=SINGLE_SERVER_DB,
                resource_location=plan.restore_location,
                datasource_type=plan.datasource_type,
            ),
            datasource_set_info=m.DatasourceSet(
                object_type="DatasourceSet",
                resource_id=t.server_id,
                resource_name=_server_name(t.server_id),
                resource_type="Microsoft.DBforPostgreSQL/servers",
                resource_location=plan.restore_location,
                datasource_type=plan.datasource_type,
            ),
            datasource_auth_credentials=m.SecretStoreBasedAuthCredentials(
                secret_store_resource=m.SecretStoreResource(secret_store_type="AzureKeyVault",  # noqa: S106
                                                            uri=t.secret_uri),
            ),
        )
    details = m.TargetDetails(file_prefix=t.file_prefix, restore_target_location_type="AzureBlobs",
                              url=t.container_url)
    if t.container_id:
        details.target_resource_arm_id = t.container_id
    return m.RestoreFilesTargetInfo(recovery_option="FailIfExists", restore_location=plan.restore_location,
                                    target_details=details)


def restore_request(plan: RestorePlan, rehydration: Rehydration | None = None) \
        -> m.AzureBackupRecoveryPointBasedRestoreRequest:
    """The restore request; with ``rehydration``, the one-shot archive form (``AzureBackupRestoreWithRehydration
    Request`` from the ArchiveStore), which is what validation checks before a rehydration is started."""
    req: m.AzureBackupRecoveryPointBasedRestoreRequest
    if rehydration is not None:
        req = m.AzureBackupRestoreWithRehydrationRequest(
            source_data_store_type="ArchiveStore", recovery_point_id=plan.recovery_point_id,
            restore_target_info=target_info(plan), rehydration_priority=rehydration.priority.value,
            rehydration_retention_duration=f"P{rehydration.retention_days}D")
    else:
        req = m.AzureBackupRecoveryPointBasedRestoreRequest(
            source_data_store_type=plan.source_store,
            recovery_point_id=plan.recovery_point_id,
            restore_target_info=target_info(plan),
        )
    if plan.source_datasource_id:
        req.source_resource_id = plan.source_datasource_id
    if plan.identity_id:  # absent means "System Assigned" to Azure, so only a user-assigned identity is sent
        req.identity_details = m.IdentityDetails(use_system_assigned_identity=False,
                                                 user_assigned_identity_arm_url=plan.identity_id)
    return req


def validate_request(plan: RestorePlan, rehydration: Rehydration | None = None) -> m.ValidateRestoreRequestObject:
    return m.ValidateRestoreRequestObject(restore_request_object=restore_request(plan, rehydration))


def cross_region_request(plan: RestorePlan, source_region: str) -> m.CrossRegionRestoreRequestObject:
    return m.CrossRegionRestoreRequestObject(
        restore_request_object=restore_request(plan),
        cross_region_restore_details=m.CrossRegionRestoreDetails(
            source_region=source_region, source_backup_instance_id=plan.backup_instance_id),
    )


def validate_cross_region_request(plan: RestorePlan, source_region: str,
                                  rehydration: Rehydration | None = None) -> m.ValidateCrossRegionRestoreRequestObject:
    return m.ValidateCrossRegionRestoreRequestObject(
        restore_request_object=restore_request(plan, rehydration),
        cross_region_restore_details=m.CrossRegionRestoreDetails(
            source_region=source_region, source_backup_instance_id=plan.backup_instance_id),
    )


def rehydration_request(recovery_point_id: str, priority: str, retention_days: int) -> m.AzureBackupRehydrationRequest:
    return m.AzureBackupRehydrationRequest(recovery_point_id=recovery_point_id, rehydration_priority=priority,
                                           rehydration_retention_duration=f"P{retention_days}D")


def wire_body(model: Any) -> dict[str, Any]:
    """A request object as the SDK puts it on the wire (its own JSON encoder, read-only fields left out)."""
    from azure.mgmt.dataprotection._utils.model_base import SdkJSONEncoder  # noqa: PLC0415 - the SDK's encoder

    body: dict[str, Any] = json.loads(json.dumps(model, cls=SdkJSONEncoder, exclude_readonly=True))
    return body


def trigger_body(plan: RestorePlan, rehydration: Rehydration | None, source_region: str | None) -> dict[str, Any]:
    """The JSON body the trigger sends: a restore request, or (``source_region`` given) a cross-region one."""
    if source_region is not None:
        return wire_body(cross_region_request(plan, source_region))
    return wire_body(restore_request(plan, rehydration))
