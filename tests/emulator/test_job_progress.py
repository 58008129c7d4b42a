"""A running restore job's progress (config ``job_progress``): ``extendedInfo.subTasks[].taskProgress`` and
``extendedInfo.dataTransferedInBytes`` (the real service's spelling) while the job runs — linear, uneven (fast, then
stalled) or absent — read through the SDK and the raw body; at the end the whole size is shown in every mode."""

from __future__ import annotations

import json

import pytest

from localdev.dpemu.admin import AdminError

from .conftest import BI_SALES, RG, VAULT
from .helpers import new_name, rp_request, sales_db_target, vault_rp, wait_job

SLOW = 60  # simulated seconds per real second while a test steps the clock itself


def _trigger(client) -> str:
    res = client.backup_instances.begin_trigger_restore(
        RG, VAULT, BI_SALES, rp_request(vault_rp(client).name, sales_db_target(new_name("prog")))).result()
    return str(res.job_id).rsplit("/", 1)[-1]


def _shown(client, guid: str) -> tuple[str, str | None, float | None]:
    """(status, taskProgress of the restore sub-task, dataTransferedInBytes) as the wire carries them."""
    job = client.jobs.get(RG, VAULT, guid)
    ext = job.properties.extended_info
    raw = json.loads(json.dumps(ext.as_dict() if hasattr(ext, "as_dict") else dict(ext)))
    task = [t for t in ext.sub_tasks if t.task_name == "Trigger Restore"][0]
    return str(job.properties.status), task.task_progress, raw.get("dataTransferedInBytes")


def _percent(text: str | None) -> int:
    assert text is not None and text.endswith("%"), text
    return int(text[:-1])


@pytest.fixture()
def progress(admin):
    def use(mode: str) -> None:
        admin.set_config(time_scale=SLOW, job_progress=mode, restore_job_duration="PT1H")
    yield use
    admin.set_config(time_scale=3600, job_progress="absent", restore_job_duration="PT15M")


def test_linear_progress_grows_with_time_and_the_bytes_follow(client, admin, progress):
    progress("linear")
    guid = _trigger(client)
    admin.advance("PT15M")
    status, task, moved = _shown(client, guid)
    assert status == "InProgress" and 25 <= _percent(task) <= 30  # 15 of 60 minutes, plus the clock's own drift
    total = vault_rp_size(client)
    assert moved is not None and 0.25 * total <= moved <= 0.31 * total
    admin.advance("PT30M")
    assert 75 <= _percent(_shown(client, guid)[1]) <= 80
    admin.advance("PT20M")
    job = wait_job(client, guid)
    raw = job.properties.extended_info.as_dict()
    assert job.properties.status == "Completed" and job.properties.extended_info.sub_tasks[0].task_progress is None
    assert raw.get("dataTransferedInBytes") == total


def test_uneven_progress_runs_ahead_then_stalls(client, admin, progress):
    progress("uneven")
    guid = _trigger(client)
    admin.advance("PT6M")  # 10% of the time: already 25%
    assert 25 <= _percent(_shown(client, guid)[1]) <= 32
    admin.advance("PT10M")  # past the first fifth: stalled at 50%
    first = _percent(_shown(client, guid)[1])
    admin.advance("PT15M")
    assert first == _percent(_shown(client, guid)[1]) == 50
    admin.advance("PT20M")  # 51 of 60 minutes: moving again, never 100% while running
    assert 60 <= _percent(_shown(client, guid)[1]) <= 99


def test_absent_progress_shows_nothing_while_running(client, admin, progress):
    progress("absent")
    guid = _trigger(client)
    admin.advance("PT30M")
    assert _shown(client, guid) == ("InProgress", None, None)


def test_recovery_point_metadata_carries_its_size(client):
    assert vault_rp_size(client) > 0


def test_a_bad_progress_choice_is_refused_and_changes_nothing(admin):
    with pytest.raises(AdminError, match="job_progress"):
        admin.set_config(job_progress="sometimes", time_scale=10)
    cfg = admin.config()
    assert cfg["job_progress"] == "absent" and cfg["time_scale"] == 3600


def vault_rp_size(client) -> int:
    rp = vault_rp(client)
    meta = json.loads(rp.properties.recovery_point_data_stores_details[0].meta_data)
    assert meta["dataSourceSize"] == meta["bytesTransferred"]
    return int(meta["bytesTransferred"])
