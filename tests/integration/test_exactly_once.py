"""At-least-once delivery, lost answers and ARM faults never start a restore twice, and restores still finish.

The proof is the emulator's own job list: one restore job per target, whatever happened on the way.
"""

from __future__ import annotations

import uuid

import pytest

from localdev import scenarios as sc
from restore_core.messages import Envelope
from restore_core.models import Stage
from restore_core.records import parse_time

from .helpers import admin, completion_events, jobs_restoring_to, order_batches, queue, start, wait_for


@pytest.fixture
def emulator(local_stack):
    adm = admin(local_stack.env)
    adm.clear_faults()
    yield adm
    adm.clear_faults()


def test_same_stage_message_delivered_many_times_starts_one_restore(local_stack, api, emulator):
    name = f"it_dup_{uuid.uuid4().hex[:8]}"
    rid = start(api, sc.as_database(name))
    _, body, _ = api.get(f"/restores/{rid}")
    created = parse_time(body["created_at"])
    assert created is not None
    dup = Envelope(rid, Stage.VALIDATE, 1, None, created).encode()
    q = queue(local_stack.env, "restore-validate")
    for _ in range(4):
        q.send_message(dup)
    final = wait_for(api, rid)
    assert final["status"] == "succeeded", final
    assert len(jobs_restoring_to(local_stack.env, name)) == 1
    # a late duplicate of any stage after the end is a no-op too
    for stage, queue_name in ((Stage.TRIGGER, "restore-trigger"), (Stage.MONITOR, "restore-monitor")):
        queue(local_stack.env, queue_name).send_message(Envelope(rid, stage, 3, None, created).encode())
    again = wait_for(api, rid)
    assert again["updated_at"] == final["updated_at"]
    assert len(jobs_restoring_to(local_stack.env, name)) == 1


@pytest.mark.parametrize("mode", ["lost_500", "lost_drop"])
def test_trigger_executed_but_answer_lost_is_adopted_not_repeated(local_stack, api, emulator, mode):
    name = f"it_lost_{mode.split('_')[1]}_{uuid.uuid4().hex[:6]}"
    emulator.add_fault(mode, "BackupInstances_TriggerRestore", count=1)
    rid = start(api, sc.as_database(name))
    final = wait_for(api, rid, timeout=120)
    assert final["status"] == "succeeded", final
    assert any("adopted" in e["message"] for e in final["timeline"]), final["timeline"]
    jobs = jobs_restoring_to(local_stack.env, name)
    assert len(jobs) == 1, [j.name for j in jobs]
    assert final["azure_job_id"].rsplit("/", 1)[-1] == jobs[0].name
    assert order_batches(local_stack.env, "pgsrv-restore", name) == {"b0", "b1", "b2", "b3", "b4", "b5"}


def test_throttling_503_and_dropped_answers_do_not_stop_a_restore(local_stack, api, emulator):
    name = f"it_faults_{uuid.uuid4().hex[:8]}"
    emulator.add_fault("throttle", "BackupInstances_Get", count=2, retry_after=1)
    emulator.add_fault("error503", "RecoveryPoints_List", count=2)
    emulator.add_fault("drop", "Jobs_Get", count=1)
    emulator.add_fault("throttle", "BackupInstances_TriggerRestore", count=1, retry_after=1)
    emulator.reset_metering()
    rid = start(api, sc.as_database(name))
    final = wait_for(api, rid, timeout=120)
    assert final["status"] == "succeeded", final
    assert len(jobs_restoring_to(local_stack.env, name)) == 1
    left = [f for f in emulator.faults() if f["count"]]
    assert left == [], "every injected fault was consumed by the pipeline's calls"
    meter = emulator.metering()
    text = str(meter)
    assert "429" in text and "503" in text, meter


def test_job_failure_is_recorded_with_azures_error_and_published(local_stack, api, emulator):
    name = f"it_jobfail_{uuid.uuid4().hex[:8]}"
    emulator.add_fault("job_fail", "BackupInstances_TriggerRestore", count=1,
                       error_code="UserErrorServerConnectionClosed")
    rid = start(api, sc.as_database(name))
    final = wait_for(api, rid)
    assert final["status"] == "failed", final
    assert final["error"]["code"] == "UserErrorServerConnectionClosed"
    assert final["job_status"] == "Failed"
    mine = completion_events(local_stack.env, rid)
    assert len(mine) == 1, mine
    assert mine[0]["status"] == "failed" and mine[0]["error"]["code"] == "UserErrorServerConnectionClosed"
    assert mine[0]["type"] == "restore.completed" and mine[0]["azure_job_id"] == final["azure_job_id"]
