"""``dp_client`` pure parts: operation names, the guarded retry policy (driven by a canned-response transport, no
network), and the job id of both LRO result shapes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.core.pipeline import Pipeline
from azure.core.pipeline.transport import HttpRequest, HttpResponse, HttpTransport
from azure.core.utils import CaseInsensitiveDict

from restore_core import restore_requests as rr
from restore_core.arm_ids import parse_backup_instance_id
from restore_core.dp_client import (
    DataProtection,
    GuardedRetryPolicy,
    RecoveryPointInfo,
    _job_id_of,
    latest,
    operation_of,
)
from restore_core.errors import AzureRejection, RetryableError
from restore_core.models import parse_request

from .fakes import BI_ID, SUB, T0, VAULT_ID, VAULT_POINT, database_body, settings

BASE = "https://management.azure.com"
V = BASE + VAULT_ID
LOC = f"{BASE}/subscriptions/{SUB}/resourceGroups/rg-backup/providers/Microsoft.DataProtection/locations/northeurope"
Q = "?api-version=2026-06-01"
OP = "ZmMzNDFmYWMtZWJlMS00NGJhLWE4YTgtMDNjYjI4Y2M5OTExO2Q1NDIzY2Vj=="

OPERATIONS = [
    ("GET", V + Q, "BackupVaults_Get"),
    ("GET", V + "/backupInstances" + Q, "BackupInstances_List"),
    ("GET", BASE + BI_ID + Q, "BackupInstances_Get"),
    ("GET", BASE + BI_ID + "/recoveryPoints" + Q + "&$filter=endDate%20eq%20'x'", "RecoveryPoints_List"),
    ("GET", BASE + BI_ID + "/recoveryPoints/" + VAULT_POINT + Q, "RecoveryPoints_Get"),
    ("POST", BASE + BI_ID + "/validateRestore" + Q, "BackupInstances_ValidateForRestore"),
    ("POST", BASE + BI_ID + "/restore" + Q, "BackupInstances_TriggerRestore"),
    ("POST", BASE + BI_ID + "/rehydrate" + Q, "BackupInstances_TriggerRehydrate"),
    ("GET", V + "/backupJobs" + Q, "Jobs_List"),
    ("GET", V + "/backupJobs/c4bd49a1-0645-4eec-b207-feb818962852" + Q, "Jobs_Get"),
    ("GET", f"{BASE}/subscriptions/{SUB}/providers/Microsoft.DataProtection/locations/westeurope/operationStatus/{OP}"
            + Q, "OperationStatus_Get"),
    ("GET", f"{BASE}/subscriptions/{SUB}/providers/Microsoft.DataProtection/locations/westeurope/operationResults/"
            f"{OP}" + Q, "OperationResult_Get"),
    ("POST", LOC + "/fetchSecondaryRecoveryPoints" + Q, "FetchSecondaryRecoveryPoints_List"),
    ("GET", LOC + "/fetchSecondaryRecoveryPoints" + Q + "&$skipToken=abc", "FetchSecondaryRecoveryPoints_List"),
    ("POST", LOC + "/validateCrossRegionRestore" + Q, "BackupInstances_ValidateCrossRegionRestore"),
    ("POST", LOC + "/crossRegionRestore" + Q, "BackupInstances_TriggerCrossRegionRestore"),
    ("POST", LOC + "/fetchCrossRegionRestoreJob" + Q, "FetchCrossRegionRestoreJob_Get"),
    ("POST", LOC + "/fetchCrossRegionRestoreJobs" + Q, "FetchCrossRegionRestoreJobs_List"),
    ("GET", LOC + "/fetchCrossRegionRestoreJobs" + Q + "&$skipToken=abc", "FetchCrossRegionRestoreJobs_List"),
]


@pytest.mark.parametrize(("method", "url", "name"), OPERATIONS, ids=[f"{n}-{m}" for m, _, n in OPERATIONS])
def test_operation_of_names_every_arm_call(method: str, url: str, name: str) -> None:
    assert operation_of(method, url) == name
    assert operation_of(method.lower(), url.replace("backupInstances", "BACKUPINSTANCES")) == name


def test_operation_of_unknown_calls_are_grouped_by_method() -> None:
    assert operation_of("delete", BASE + BI_ID) == "DELETE other"
    assert operation_of("GET", BASE + "/subscriptions/x/providers/Microsoft.Other/things") == "GET other"


# --- the retry policy, with a canned transport


class CannedResponse(HttpResponse):
    def __init__(self, request: HttpRequest, status: int, headers: dict[str, str] | None = None,
                 body: dict[str, Any] | None = None) -> None:
        super().__init__(request, None)
        self.status_code = status
        self.headers = CaseInsensitiveDict(headers or {})
        self.reason = "canned"
        self.content_type = "application/json"
        self._body = json.dumps(body or {}).encode()

    def body(self) -> bytes:
        return self._body

    def read(self) -> bytes:  # the SDK reads error bodies the azure.core.rest way
        return self.body()

    def json(self) -> Any:  # and a long-running operation's final document
        return json.loads(self._body)

    @property
    def content(self) -> bytes:
        return self.body()

    def iter_bytes(self, **kwargs: Any) -> Any:  # the SDK streams the 202 of a long-running operation
        yield self.body()

    def iter_raw(self, **kwargs: Any) -> Any:
        yield self.body()


Answer = int | tuple[int, dict[str, str]] | tuple[int, dict[str, str], dict[str, Any]] | Exception


class CannedTransport(HttpTransport):  # type: ignore[type-arg]
    """Answers requests from a script; records what was sent and how long the policy asked to sleep."""

    def __init__(self, answers: list[Answer]) -> None:
        self.answers = list(answers)
        self.sent: list[tuple[str, str]] = []
        self.slept: list[float] = []

    def send(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        self.sent.append((request.method, request.url))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        status, headers, body = (answer + ({},))[:3] if isinstance(answer, tuple) else (answer, {}, {})
        return CannedResponse(request, status, headers, body)

    def sleep(self, duration: float) -> None:
        self.slept.append(duration)

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> CannedTransport:
        return self

    def __exit__(self, *args: object) -> None:
        pass


def run(method: str, url: str, answers: list[Answer], retries: int = 3) -> tuple[CannedTransport, Any]:
    transport = CannedTransport(answers)
    pipeline = Pipeline(transport, policies=[GuardedRetryPolicy(retry_total=retries, retry_backoff_factor=0.01,
                                                                retry_backoff_max=0)])
    try:
        result: Any = pipeline.run(HttpRequest(method, url)).http_response.status_code
    except Exception as exc:  # noqa: BLE001 - the test inspects what came out
        result = exc
    return transport, result


RESTORE = BASE + BI_ID + "/restore" + Q
CRR = LOC + "/crossRegionRestore" + Q
REHYDRATE = BASE + BI_ID + "/rehydrate" + Q
TRIGGERS = [RESTORE, CRR, REHYDRATE]


@pytest.mark.parametrize("url", TRIGGERS, ids=["restore", "crossRegionRestore", "rehydrate"])
@pytest.mark.parametrize("status", [500, 502, 504, 408])
def test_trigger_is_never_resent_after_a_server_error(url: str, status: int) -> None:
    transport, result = run("POST", url, [status, 202])
    assert len(transport.sent) == 1
    assert result == status


@pytest.mark.parametrize("url", TRIGGERS, ids=["restore", "crossRegionRestore", "rehydrate"])
def test_trigger_is_never_resent_after_a_server_error_with_retry_after(url: str) -> None:
    transport, result = run("POST", url, [(500, {"Retry-After": "1"}), 202])
    assert len(transport.sent) == 1 and result == 500


@pytest.mark.parametrize("url", TRIGGERS, ids=["restore", "crossRegionRestore", "rehydrate"])
def test_trigger_is_never_resent_after_a_dropped_connection(url: str) -> None:
    transport, result = run("POST", url, [ServiceResponseError("connection reset"), 202])
    assert len(transport.sent) == 1
    assert isinstance(result, ServiceResponseError)


@pytest.mark.parametrize("url", TRIGGERS, ids=["restore", "crossRegionRestore", "rehydrate"])
def test_trigger_is_retried_when_throttled_honouring_retry_after(url: str) -> None:
    transport, result = run("POST", url, [(429, {"Retry-After": "7"}), 202])
    assert len(transport.sent) == 2 and result == 202
    assert transport.slept == [7]


def test_trigger_is_retried_on_503_service_unavailable() -> None:
    transport, result = run("POST", RESTORE, [503, 202])
    assert len(transport.sent) == 2 and result == 202


def test_throttled_trigger_stops_after_the_configured_retries() -> None:
    transport, result = run("POST", RESTORE, [(429, {"Retry-After": "1"})], retries=2)
    assert len(transport.sent) == 3 and result == 429


@pytest.mark.parametrize("url", [V + Q, BASE + BI_ID + "/recoveryPoints" + Q, V + "/backupJobs/j1" + Q])
def test_reads_are_retried_on_500(url: str) -> None:
    transport, result = run("GET", url, [500, 500, 200])
    assert len(transport.sent) == 3 and result == 200


def test_reads_are_retried_after_a_dropped_connection() -> None:
    transport, result = run("GET", V + "/backupJobs/j1" + Q, [ServiceResponseError("reset"), 200])
    assert len(transport.sent) == 2 and result == 200


def test_validate_restore_may_be_retried_on_500_because_it_changes_nothing() -> None:
    transport, result = run("POST", BASE + BI_ID + "/validateRestore" + Q, [500, 202])
    assert len(transport.sent) == 2 and result == 202


def test_trigger_connect_failure_is_not_resent_either() -> None:
    transport, result = run("POST", RESTORE, [ServiceRequestError("refused"), 202])
    assert len(transport.sent) == 1 and isinstance(result, ServiceRequestError)


def test_client_trigger_restore_sends_once_on_500_and_raises_retryable() -> None:
    """The policy is really installed on the SDK client the facade builds."""
    transport = CannedTransport([500, 202])
    dp = DataProtection(settings(DATAPROTECTION_TOKEN="t0ken", RESTORE_ARM_MAX_RETRIES="3"), transport=transport)
    req = rr.RestorePlan(BI_ID, None, rr.SINGLE_SERVER_DB, VAULT_POINT, "VaultStore", "westeurope",
                         parse_request(database_body()).target)
    with pytest.raises(RetryableError, match="ARM answered 500"):
        dp.trigger_restore(req)
    assert [(m, u.split("?")[0]) for m, u in transport.sent] == [("POST", BASE + BI_ID + "/restore")]
    assert dp.meter.total("BackupInstances_TriggerRestore") == 1


def _restore_request() -> Any:
    return rr.RestorePlan(BI_ID, None, rr.SINGLE_SERVER_DB, VAULT_POINT, "VaultStore", "westeurope",
                          parse_request(database_body()).target)


def test_throttled_trigger_post_means_nothing_started() -> None:
    transport = CannedTransport([(429, {"Retry-After": "7"})])
    dp = DataProtection(settings(DATAPROTECTION_TOKEN="t0ken", RESTORE_ARM_MAX_RETRIES="0"), transport=transport)
    with pytest.raises(RetryableError) as info:
        dp.trigger_restore(_restore_request())
    assert info.value.throttled and info.value.retry_after == 7


def test_throttled_status_poll_after_an_accepted_trigger_is_not_nothing_started() -> None:
    status_url = LOC + "/operationStatus/op1?api-version=2026-06-01"
    accepted = (202, {"Azure-AsyncOperation": status_url, "Location": status_url, "Retry-After": "0.01"})
    transport = CannedTransport([accepted, (429, {"Retry-After": "3"})])
    dp = DataProtection(settings(DATAPROTECTION_TOKEN="t0ken", RESTORE_ARM_MAX_RETRIES="0"), transport=transport)
    with pytest.raises(RetryableError) as info:
        dp.trigger_restore(_restore_request())
    assert not info.value.throttled, "the POST was accepted: the job may exist, so the trigger stage must adopt"
    assert [m for m, _ in transport.sent] == ["POST", "GET"]


def test_client_maps_exhausted_throttling_to_retryable_with_retry_after() -> None:
    transport = CannedTransport([(429, {"Retry-After": "42"})])
    dp = DataProtection(settings(DATAPROTECTION_TOKEN="t0ken", RESTORE_ARM_MAX_RETRIES="1"), transport=transport)
    with pytest.raises(RetryableError) as info:
        dp.list_jobs(parse_backup_instance_id(BI_ID).vault)
    assert info.value.retry_after == 42
    assert len(transport.sent) == 2 and transport.slept == [42]


# --- job id of the LRO result


def test_job_id_from_typed_result() -> None:
    assert _job_id_of(SimpleNamespace(job_id=VAULT_ID + "/backupJobs/j1")) == VAULT_ID + "/backupJobs/j1"


def test_job_id_from_dict_result_with_properties() -> None:
    assert _job_id_of({"status": "Succeeded", "properties": {"objectType": "OperationJobExtendedInfo",
                                                             "jobId": "c4bd49a1"}}) == "c4bd49a1"


@pytest.mark.parametrize("result", [None, {}, {"properties": None}, {"properties": "x"}, SimpleNamespace(job_id=None)])
def test_job_id_missing_is_empty_string(result: Any) -> None:
    assert _job_id_of(result) == ""


def test_latest_picks_the_newest_point_strictly_before() -> None:
    pts = [RecoveryPointInfo(f"p{i}", T0 - timedelta(hours=i), "vault") for i in range(4)]
    newest: Callable[..., RecoveryPointInfo | None] = latest
    assert newest(pts).id == "p0"  # type: ignore[union-attr]
    assert newest(pts, before=T0).id == "p1"  # type: ignore[union-attr]
    assert newest(pts, before=T0 - timedelta(hours=3)) is None


def test_lro_first_wait_is_learned_and_shrinks_while_one_status_poll_suffices() -> None:
    dp = DataProtection(settings(DATAPROTECTION_TOKEN="t0ken"), transport=CannedTransport([200]))
    waits: list[float] = []

    def start(polls: int) -> Any:
        def begin(polling: Any) -> Any:
            waits.append(polling._first_wait)
            polling.status_polls = polls
            polling.run_here = lambda: None  # nothing to follow: begin is a stand-in
            return SimpleNamespace(result=lambda: None)
        return begin

    dp._lro("restore", "trigger restore", start(3))  # nothing learned yet: Retry-After alone, 3 polls needed
    assert waits == [0.0]
    seen = dp._lro_seconds["restore"]
    dp._lro("restore", "trigger restore", start(1))  # waited the learned time; one poll found it done
    assert waits[1] == seen and dp._lro_seconds["restore"] == pytest.approx(0.9 * seen)
    dp._lro("restore", "trigger restore", start(2))  # waited too little: take what was observed
    assert waits[2] == pytest.approx(0.9 * seen) and dp._lro_seconds["restore"] < 0.9 * seen + 1.0


def test_an_lro_is_followed_in_the_calling_thread_honouring_retry_after() -> None:
    """No poller thread (azure-core's LROPoller starts one per operation; the invocation only waited on it): the
    status polls run in the caller's thread, after ARM's Retry-After, and a status that names the job ends it."""
    status_url = LOC + "/operationStatus/op2?api-version=2026-06-01"
    accepted = (202, {"Azure-AsyncOperation": status_url, "Location": status_url, "Retry-After": "2"}, {})
    running = (200, {"Retry-After": "3"}, {"status": "InProgress"})
    done = (200, {}, {"status": "Succeeded",
                      "properties": {"jobId": "job-1", "objectType": "OperationJobExtendedInfo"}})
    transport = CannedTransport([accepted, running, done])
    senders: list[threading.Thread] = []
    send = transport.send

    def recording_send(request: HttpRequest, **kwargs: Any) -> HttpResponse:
        senders.append(threading.current_thread())
        return send(request, **kwargs)

    transport.send = recording_send  # type: ignore[method-assign]
    dp = DataProtection(settings(DATAPROTECTION_TOKEN="t0ken"), transport=transport)
    assert dp.trigger_restore(_restore_request()).job_id == "job-1"
    assert [m for m, _ in transport.sent] == ["POST", "GET", "GET"]  # no final GET: the status names the job
    assert set(senders) == {threading.current_thread()}
    assert transport.slept == [2, 3]  # nothing learned yet: ARM's Retry-After before each status read
    assert dp._lro_seconds["restore"] >= 0  # and the duration was learned for the next one


def test_an_lro_that_azure_reports_failed_is_its_verdict_in_the_calling_thread() -> None:
    status_url = LOC + "/operationStatus/op3?api-version=2026-06-01"
    accepted = (202, {"Azure-AsyncOperation": status_url, "Location": status_url, "Retry-After": "1"}, {})
    failed = (200, {}, {"status": "Failed", "error": {"code": "UserErrorSomething", "message": "no"}})
    transport = CannedTransport([accepted, failed])
    dp = DataProtection(settings(DATAPROTECTION_TOKEN="t0ken"), transport=transport)
    with pytest.raises(AzureRejection) as info:
        dp.trigger_restore(_restore_request())
    assert info.value.from_operation and [m for m, _ in transport.sent] == ["POST", "GET"]


def _lro_answers(polls: int, retry_after: str = "2") -> list[Answer]:
    status_url = LOC + "/operationStatus/op4?api-version=2026-06-01"
    accepted = (202, {"Azure-AsyncOperation": status_url, "Location": status_url, "Retry-After": retry_after}, {})
    running = (200, {"Retry-After": retry_after}, {"status": "InProgress"})
    done = (200, {}, {"status": "Succeeded",
                      "properties": {"jobId": "job-1", "objectType": "OperationJobExtendedInfo"}})
    return [accepted, *[running] * (polls - 1), done]


def _trigger_after_a_slow_post(answers: list[Answer], post_seconds: float) -> tuple[DataProtection, CannedTransport]:
    """A trigger whose POST takes ``post_seconds`` (a cold process: TLS, token), the rest answered at once."""
    transport = CannedTransport(answers)
    send = transport.send

    def slow_post(request: HttpRequest, **kwargs: Any) -> HttpResponse:
        if request.method == "POST":
            time.sleep(post_seconds)
        return send(request, **kwargs)

    transport.send = slow_post  # type: ignore[method-assign]
    dp = DataProtection(settings(DATAPROTECTION_TOKEN="t0ken"), transport=transport)
    dp.trigger_restore(_restore_request())
    return dp, transport


def test_a_first_operation_done_by_its_first_poll_teaches_the_wait_not_the_round_trips() -> None:
    """A cold process's first POST (TLS, token) is slow: that is not how long the operation takes."""
    dp, transport = _trigger_after_a_slow_post(_lro_answers(1), 0.05)
    assert transport.slept == [2] and dp._lro_seconds["restore"] == 2  # the Retry-After that sufficed


def test_an_operation_that_needed_more_polls_is_learned_from_its_202_not_from_the_post() -> None:
    # no Retry-After: azure-core's 5 s default
    dp, transport = _trigger_after_a_slow_post(_lro_answers(3, retry_after="0"), 0.2)
    assert len(transport.slept) == 3 and 0 <= dp._lro_seconds["restore"] < 0.2


class DictDurations:
    def __init__(self, **values: float) -> None:
        self.values = dict(values)
        self.writes: list[tuple[str, float]] = []

    def get(self, kind: str) -> float | None:
        return self.values.get(kind)

    def put(self, kind: str, seconds: float) -> None:
        self.writes.append((kind, seconds))
        self.values[kind] = seconds


def _begin(waits: list[float], polls: int, sleep: float = 0.0) -> Any:
    def begin(polling: Any) -> Any:
        waits.append(polling._first_wait)
        polling.status_polls = polls
        polling.run_here = lambda: None  # no operation behind this stand-in poller: nothing to follow
        return SimpleNamespace(result=lambda: time.sleep(sleep))
    return begin


def test_a_new_process_starts_from_the_operation_duration_an_earlier_one_stored() -> None:
    """Issue 17 item 2: a process is not cold for operation durations an earlier process learned (state table)."""
    stored = DictDurations(validate=12.5)
    dp = DataProtection(settings(DATAPROTECTION_TOKEN="t0ken"), transport=CannedTransport([200]), durations=stored)
    waits: list[float] = []
    dp._lro("validate", "validate restore", _begin(waits, 1))  # first validation of this process: waits 12.5 s
    dp._lro("restore", "trigger restore", _begin(waits, 2))  # nothing stored for triggers: Retry-After alone
    assert waits == [12.5, 0.0]
    assert dp._lro_seconds["validate"] == pytest.approx(0.9 * 12.5)
    # 10% shorter is no reason to write; a trigger learned for the first time is written
    assert [kind for kind, _ in stored.writes] == ["restore"]
    again = DataProtection(settings(DATAPROTECTION_TOKEN="t0ken"), transport=CannedTransport([200]), durations=stored)
    again._lro("restore", "trigger restore", _begin(waits, 1))
    assert waits[-1] == pytest.approx(stored.writes[0][1])


def test_a_broken_durations_store_never_fails_an_operation() -> None:
    class Broken:
        def get(self, kind: str) -> float | None:
            raise OSError("table down")

        def put(self, kind: str, seconds: float) -> None:
            raise OSError("table down")

    dp = DataProtection(settings(DATAPROTECTION_TOKEN="t0ken"), transport=CannedTransport([200]), durations=Broken())
    waits: list[float] = []
    dp._lro("validate", "validate restore", _begin(waits, 2))
    dp._lro("validate", "validate restore", _begin(waits, 1))
    assert waits[0] == 0.0 and waits[1] == pytest.approx(dp._lro_seconds["validate"] / 0.9)
