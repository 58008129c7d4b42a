"""Issue 13 item 4: failures the Azure job reports go through the same explanations and fixes as validation errors;
fix commands carry ``--subscription`` for a resource outside the vault's subscription; request times accept only the
documented ISO-8601 form with a zone."""

from __future__ import annotations

from typing import Any

import pytest

from restore_core.errors import RequestError
from restore_core.fixes import _PLAIN, explain, role_command
from restore_core.models import Stage, Status, parse_request

from .fakes import PRINCIPAL_ID, SUB, SUB2, TARGET_SERVER_ID, Harness, database_body, files_body


def _failed_job(errors: list[dict[str, Any]], body: dict[str, Any] | None = None) -> Any:
    h = Harness()
    h.submit(body)
    h.run(until=Stage.MONITOR)
    h.dp.finish_job(h.dp.only_job().name, "Failed", errors=errors)
    return h, h.run()


def test_a_job_failing_with_database_name_in_use_is_explained_like_a_validation_error() -> None:
    h, rec = _failed_job([{"code": "UserErrorDatabaseNameAlreadyInUse", "message": "db exists"}])
    plain, fix = _PLAIN["UserErrorDatabaseNameAlreadyInUse"]
    assert rec.status is Status.FAILED and rec.error_code == "UserErrorDatabaseNameAlreadyInUse"
    assert rec.error_message == f"{plain} (db exists)" and rec.error_fix == fix
    assert h.events[0]["error"]["fix"] == fix


def test_a_job_failing_on_a_missing_permission_gives_the_exact_role_command_with_the_subscription() -> None:
    _, rec = _failed_job([{"code": "UserErrorMSIMissingPermissions", "message": "no Reader"}])
    assert rec.error_fix == role_command(PRINCIPAL_ID, "Reader", TARGET_SERVER_ID) + f" --subscription {SUB2}"
    assert "lacks the Reader role on the target server" in (rec.error_message or "")


def test_a_job_failing_with_a_code_nobody_explains_keeps_azures_message_and_recommended_action() -> None:
    _, rec = _failed_job([{"code": "UserErrorSomethingNew", "message": "new thing", "recommended_action": ["Do X."]}])
    assert (rec.error_code, rec.error_message, rec.error_fix) == ("UserErrorSomethingNew", "new thing", "Do X.")


def test_a_job_failing_without_error_details_says_so() -> None:
    _, rec = _failed_job([])
    assert rec.error_code == "JobFailed" and rec.error_message == "Azure job ended Failed"


@pytest.mark.parametrize(("scope", "flag"), [
    (TARGET_SERVER_ID, f" --subscription {SUB2}"),  # another subscription than the vault's
    (TARGET_SERVER_ID.replace(SUB2, SUB), ""),  # the vault's own
    ("$(az keyvault show --name kv --query id -o tsv)", ""),  # not an ARM id: nothing known to add
])
def test_role_commands_name_the_subscription_only_when_it_is_not_the_vaults(scope: str, flag: str) -> None:
    cmd = role_command(PRINCIPAL_ID, "Reader", scope, vault_subscription=SUB)
    assert cmd.endswith(f"--scope {scope}{flag}")


def test_explain_passes_the_vault_subscription_to_the_container_command() -> None:
    req = parse_request(files_body())
    ex = explain("UserErrorContainerNotAccessible", "denied", request=req, principal_id=PRINCIPAL_ID,
                 vault_subscription=SUB)
    assert ex.fix.endswith(f"--subscription {SUB2}")
    same = explain("UserErrorContainerNotAccessible", "denied", request=req, principal_id=PRINCIPAL_ID,
                   vault_subscription=SUB2)
    assert "--subscription" not in same.fix


def _latest_before(value: Any) -> RequestError:
    with pytest.raises(RequestError) as info:
        parse_request(database_body(recovery_point={"latest_before": value}))
    assert info.value.field == "recovery_point.latest_before"
    assert "2026-11-24T08:00:00Z" in info.value.message  # the form to use
    return info.value


@pytest.mark.parametrize(("value", "says"), [
    (1764057600, "a number"), (1764057600.5, "a number"), ("1764057600", "unix timestamp"),
    ("1764057600000", "unix timestamp"), ("2026-11-24", "a date without a time"),
    ("2026-11-24T08:00:00", "without a timezone"), ("2026-11-24 08:00:00Z", "not in that form"),
    ("2026-11-24T08:00:00+0100", "not in that form"), ("24/11/2026 08:00", "not in that form"), (True, "bool"),
])
def test_latest_before_refuses_what_is_not_the_documented_form(value: Any, says: str) -> None:
    assert says in _latest_before(value).message


@pytest.mark.parametrize(("value", "utc"), [
    ("2026-11-24T08:00:00Z", "2026-11-24T08:00:00+00:00"),
    ("2026-11-24T09:00:00+01:00", "2026-11-24T08:00:00+00:00"),
    ("2026-11-24T08:00Z", "2026-11-24T08:00:00+00:00"),
    ("2026-11-24T08:00:00.250Z", "2026-11-24T08:00:00.250000+00:00"),
])
def test_latest_before_accepts_iso_8601_with_a_zone(value: str, utc: str) -> None:
    req = parse_request(database_body(recovery_point={"latest_before": value}))
    assert req.recovery_point.latest_before is not None and req.recovery_point.latest_before.isoformat() == utc
