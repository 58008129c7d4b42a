"""Azure behaviours no spec example settles, on the real local stack: both archive flows (one request, the default;
stand-alone rehydrate then restore), completion reported on another data store entry, job destinations in another
format, odd ARM answers (malformed, HTML, 401, 403, 404) on the calls that follow a restore, and Azure-exact
whole-second Retry-After."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from localdev import scenarios as sc
from localdev.apiclient import Api
from localdev.funchost import FunctionsHost
from localdev.stack import REPO
from restore_core import runtime

from .helpers import admin, jobs_restoring_to, order_batches, start, wait_for

ALL = {"b0", "b1", "b2", "b3", "b4", "b5"}
SUFFIX = "two"
QUEUES = ("REQUESTS", "VALIDATE", "REHYDRATE", "WAIT", "TRIGGER", "MONITOR", "EVENTS")


def uniq(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@pytest.fixture()
def emulator(local_stack: Any) -> Iterator[Any]:
    adm = admin(local_stack.env)
    yield adm
    adm.clear_faults()
    adm.set_config(job_destination_format="arm", rehydration_reported_on=["archive_entry", "job_subtask"],
                   integer_retry_after=False)


def fresh_archive_point(emulator: Any) -> str:
    """A new archived point of salesdb, dated before every other point (so 'latest' stays what it was)."""
    rp = emulator.take_backup(sc.BI_SALES, tier="archive", age="P400D")
    return str(rp["name"])


def arm_calls(emulator: Any, operation: str) -> int:
    return int(emulator.metering()["by_operation"].get(operation, 0))


def test_archived_point_is_restored_with_one_request_by_default(local_stack, api, emulator):
    point = fresh_archive_point(emulator)
    emulator.reset_metering()
    name = uniq("it_onereq")
    rid = start(api, sc.as_database(name, recovery_point={"id": point}))
    body = wait_for(api, rid, timeout=120)
    assert body["status"] == "succeeded", body
    assert arm_calls(emulator, "BackupInstances_TriggerRehydrate") == 0
    assert arm_calls(emulator, "BackupInstances_TriggerRestore") == 1
    stages = [e["stage"] for e in body["timeline"]]
    assert "rehydrate" in stages and "wait" in stages and "trigger" not in stages, stages
    assert order_batches(local_stack.env, "pgsrv-restore", name) == ALL


@pytest.fixture(scope="module")
def two_step(local_stack: Any) -> Iterator[Api]:
    """An in-process host with RESTORE_REHYDRATION_FLOW=two-step, on its own queues and tables."""
    values = json.loads((local_stack.dir / "local.settings.json").read_text())["Values"]
    settings = {**values, "RESTORE_REHYDRATION_FLOW": "two-step", "RESTORE_TABLE_RESTORES": "restorestwo",
                "RESTORE_TABLE_IDEMPOTENCY": "restoreidemtwo"}
    for q in QUEUES:
        settings[f"RESTORE_QUEUE_{q}"] = f"restore-{q.lower()}-{SUFFIX}"
    runtime._deps = None
    key = uuid.uuid4().hex
    host = FunctionsHost(REPO, settings, port=0, function_keys=[key])
    host.start()
    try:
        yield Api(f"{host.base_url}/api", key)
    finally:
        host.stop()
        runtime._deps = None


@pytest.mark.parametrize("reported_on", [["archive_entry"], ["vault_entry"]])
def test_two_step_flow_rehydrates_once_then_restores_seeing_completion_on_any_entry(local_stack, two_step, emulator,
                                                                                    reported_on):
    emulator.set_config(rehydration_reported_on=reported_on)
    point = fresh_archive_point(emulator)
    emulator.reset_metering()
    name = uniq("it_twostep")
    rid = start(two_step, sc.as_database(name, recovery_point={"id": point}))
    body = wait_for(two_step, rid, timeout=150)
    assert body["status"] == "succeeded", body
    assert arm_calls(emulator, "BackupInstances_TriggerRehydrate") == 1
    stages = [e["stage"] for e in body["timeline"]]
    assert {"rehydrate", "wait", "trigger"} <= set(stages), stages
    assert order_batches(local_stack.env, "pgsrv-restore", name) == ALL


@pytest.mark.parametrize("fmt", ["name", "none"])
def test_lost_trigger_answer_adopts_a_job_whose_destination_has_another_format(local_stack, api, emulator, fmt):
    # a point of its own: with destinations that cannot be compared, any other restore of the same instance and
    # point triggered after this one's intent (a restore an earlier test left running on this stack) is also a
    # candidate, and the product rightly refuses to choose (TriggerOutcomeUnknown)
    point = str(emulator.take_backup(sc.BI_SALES, age="P300D")["name"])
    emulator.set_config(job_destination_format=fmt)
    emulator.add_fault("lost_500", "BackupInstances_TriggerRestore", count=1)
    name = uniq(f"it_fmt_{fmt}")
    rid = start(api, sc.as_database(name, recovery_point={"id": point}))
    final = wait_for(api, rid, timeout=120)
    assert final["status"] == "succeeded", (final.get("error"), final)
    assert any("adopted" in e["message"] for e in final["timeline"]), final["timeline"]
    emulator.set_config(job_destination_format="arm")
    assert len(jobs_restoring_to(local_stack.env, name)) == 1
    assert order_batches(local_stack.env, "pgsrv-restore", name) == ALL


@pytest.mark.parametrize("mode", ["malformed", "html", "error401", "error403", "error404"])
def test_odd_answers_while_following_a_restore_never_fail_it(local_stack, api, emulator, mode):
    emulator.add_fault(mode, "OperationStatus_Get", count=1)  # the trigger's status poll (or validate's)
    emulator.add_fault(mode, "Jobs_Get", count=2)  # the job reads
    name = uniq(f"it_{mode}")
    rid = start(api, sc.as_database(name))
    final = wait_for(api, rid, timeout=120)
    assert final["status"] == "succeeded", final
    assert len(jobs_restoring_to(local_stack.env, name)) == 1
    assert [f for f in emulator.faults() if f["count"]] == [], "each fault was met by the pipeline"
    assert order_batches(local_stack.env, "pgsrv-restore", name) == ALL


def test_whole_second_retry_after_as_azure_sends_it(local_stack, api, emulator):
    emulator.set_config(integer_retry_after=True)
    name = uniq("it_intretry")
    rid = start(api, sc.as_files(name.replace("_", "-")))
    final = wait_for(api, rid, timeout=120)
    assert final["status"] == "succeeded", final
