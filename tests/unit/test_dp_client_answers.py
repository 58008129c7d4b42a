"""``dp_client`` against scripted ARM answers with bodies: how the final result of a long-running operation is read
(``final-state-via: location``, with the job id in the status document as the fast path), and how odd answers map
to the error taxonomy (malformed or HTML bodies and 401s are retryable; after an accepted trigger, a failing status
URL means "outcome unknown", never a verdict; an operation Azure reports Failed is a verdict)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from azure.core.pipeline.transport import HttpRequest, HttpResponse

from restore_core import restore_requests as rr
from restore_core.arm_ids import parse_backup_instance_id
from restore_core.dp_client import DataProtection
from restore_core.errors import AzureRejection, RetryableError
from restore_core.models import parse_request

from .fakes import BI_ID, SUB, VAULT_ID, VAULT_POINT, database_body, settings
from .test_dp_client import CannedResponse, CannedTransport

BASE = "https://management.azure.com"
STATUS = f"{BASE}/subscriptions/{SUB}/providers/Microsoft.DataProtection/locations/westeurope/operationStatus/op1" \
         "?api-version=2026-06-01"
RESULT = STATUS.replace("operationStatus", "operationResults")
JOB_ID = VAULT_ID + "/backupJobs/c4bd49a1-0645-4eec-b207-feb818962852"
ACCEPTED = (202, {"Azure-AsyncOperation": STATUS, "Location": RESULT, "Retry-After": "1"}, b"")
HTML = b"<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>"


class BodyResponse(CannedResponse):
    def __init__(self, request: HttpRequest, status: int, headers: dict[str, str], body: bytes) -> None:
        super().__init__(request, status, headers)
        self._body = body
        self.content_type = headers.get("Content-Type", "application/json")

    def body(self) -> bytes:
        return self._body

    def text(self, encoding: str | None = None) -> str:
        return self._body.decode()

    def json(self) -> Any:  # what the SDK's deserialisers call (azure.core.rest style)
        return json.loads(self._body)


class BodyTransport(CannedTransport):
    """Answers (status, headers, body) in order; the last one repeats."""

    def __init__(self, answers: list[tuple[int, dict[str, str], bytes]]) -> None:
        super().__init__([200])
        self.script = list(answers)

    def send(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        self.sent.append((request.method, request.url))
        status, headers, body = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        return BodyResponse(request, status, headers, body)


def doc(status: str, **extra: Any) -> tuple[int, dict[str, str], bytes]:
    return 200, {}, json.dumps({"id": "x", "name": "op1", "status": status, **extra}).encode()


def client(answers: list[tuple[int, dict[str, str], bytes]]) -> tuple[DataProtection, BodyTransport]:
    transport = BodyTransport(answers)
    return DataProtection(settings(DATAPROTECTION_TOKEN="t0ken", RESTORE_ARM_MAX_RETRIES="0"),
                          transport=transport), transport


def restore_request() -> Any:
    return rr.RestorePlan(BI_ID, None, rr.SINGLE_SERVER_DB, VAULT_POINT, "VaultStore", "westeurope",
                          parse_request(database_body()).target)


def urls(transport: BodyTransport) -> list[str]:
    return [u.split("?")[0].rsplit("/", 2)[-2] for _, u in transport.sent]


def test_trigger_result_comes_from_the_status_document_when_it_names_the_job() -> None:
    dp, t = client([ACCEPTED, doc("Succeeded", properties={"objectType": "OperationJobExtendedInfo",
                                                           "jobId": JOB_ID})])
    assert dp.trigger_restore(restore_request()).job_id == JOB_ID
    assert urls(t) == [BI_ID.rsplit("/", 1)[-1], "operationStatus"]  # no final GET


def test_trigger_result_is_read_from_location_when_the_status_document_has_no_job_id() -> None:
    result = (200, {}, json.dumps({"objectType": "OperationJobExtendedInfo", "jobId": JOB_ID}).encode())
    dp, t = client([ACCEPTED, doc("Succeeded"), result])
    assert dp.trigger_restore(restore_request()).job_id == JOB_ID
    assert urls(t)[1:] == ["operationStatus", "operationResults"]


def test_validate_takes_its_verdict_from_the_status_and_skips_the_final_result() -> None:
    # the spec declares final-state-via: location, but a validation's result document carries nothing (an
    # OperationJobExtendedInfo without a job): Succeeded is the verdict, so its GET is one ARM call saved per restore
    ok = (200, {}, json.dumps({"objectType": "OperationJobExtendedInfo"}).encode())
    dp, t = client([ACCEPTED, doc("Succeeded"), ok])
    dp.validate_restore(rr.RestorePlan(BI_ID, None, rr.SINGLE_SERVER_DB, VAULT_POINT, "VaultStore", "westeurope",
                                       parse_request(database_body()).target))
    assert urls(t)[1:] == ["operationStatus"]


def test_an_operation_azure_reports_failed_is_a_verdict() -> None:
    failed = doc("Failed", error={"code": "UserErrorMSIMissingPermissions", "message": "MSI lacks Reader"})
    dp, _ = client([ACCEPTED, failed])
    with pytest.raises(AzureRejection) as info:
        dp.trigger_restore(restore_request())
    assert info.value.code == "UserErrorMSIMissingPermissions" and info.value.from_operation


@pytest.mark.parametrize("poll", [
    (200, {"Content-Type": "text/html"}, HTML),
    (200, {}, b'{"id": "/subscriptions/trunc'),
    (404, {}, json.dumps({"error": {"code": "ResourceNotFound", "message": "gone"}}).encode()),
    (403, {}, json.dumps({"error": {"code": "AuthorizationFailed", "message": "no"}}).encode()),
    (401, {"WWW-Authenticate": "Bearer error=\"invalid_token\""},
     json.dumps({"error": {"code": "ExpiredAuthenticationToken", "message": "expired"}}).encode()),
], ids=["html", "malformed", "404", "403", "401"])
def test_any_error_while_following_an_accepted_trigger_means_outcome_unknown(poll: Any) -> None:
    dp, _ = client([ACCEPTED, poll])
    with pytest.raises(RetryableError) as info:
        dp.trigger_restore(restore_request())
    assert not info.value.throttled, "the trigger was accepted: the stage must look for the job, not send again"


@pytest.mark.parametrize("answer", [
    (200, {"Content-Type": "text/html"}, HTML),
    (200, {}, b'{"id": "/subscriptions/trunc'),
    (401, {"WWW-Authenticate": "Bearer error=\"invalid_token\""},
     json.dumps({"error": {"code": "ExpiredAuthenticationToken", "message": "expired"}}).encode()),
], ids=["html", "malformed", "401"])
def test_a_job_read_with_an_unreadable_answer_or_a_token_hiccup_is_retryable(answer: Any) -> None:
    dp, _ = client([answer])
    with pytest.raises(RetryableError):
        dp.get_job(parse_backup_instance_id(BI_ID).vault, JOB_ID)


def test_a_job_read_refused_with_404_carries_its_status() -> None:
    dp, _ = client([(404, {}, json.dumps({"error": {"code": "UserErrorJobNotFound", "message": "no"}}).encode())])
    with pytest.raises(AzureRejection) as info:
        dp.get_job(parse_backup_instance_id(BI_ID).vault, JOB_ID)
    assert info.value.status == 404 and not info.value.from_operation
