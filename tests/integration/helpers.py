"""Helpers for integration tests against the session's local stack (real host, Azurite, emulator, PostgreSQL)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import psycopg
from azure.mgmt.dataprotection import DataProtectionMgmtClient
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from localdev import scenarios as sc
from localdev.dpemu.admin import EmulatorAdmin
from restore_core.dp_client import StaticTokenCredential

TERMINAL = {"succeeded", "failed", "rejected", "cancelled"}


def wait_for(api: Any, restore_id: str, *, statuses: set[str] = TERMINAL, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status, body, _ = api.get(f"/restores/{restore_id}")
        assert status == 200, body
        if body["status"] in statuses:
            return body
        time.sleep(0.3)
    raise AssertionError(f"restore {restore_id} still {body.get('status')}/{body.get('stage')} after {timeout}s: "
                         f"{json.dumps(body.get('timeline'), indent=1)}")


def start(api: Any, body: dict[str, Any], **headers: str) -> str:
    status, resp, hdrs = api.post("/restores", body, headers=headers or None)
    assert status == 202, resp
    assert hdrs["location"].endswith(f"/restores/{resp['id']}")
    return str(resp["id"])


def admin(env: dict[str, str]) -> EmulatorAdmin:
    return EmulatorAdmin(env["DATAPROTECTION_ADMIN_URL"], env["DATAPROTECTION_TOKEN"], env["DATAPROTECTION_CA_BUNDLE"])


def sdk(env: dict[str, str]) -> DataProtectionMgmtClient:
    return DataProtectionMgmtClient(StaticTokenCredential(env["DATAPROTECTION_TOKEN"]), sc.SUB_BACKUP,
                                    base_url=env["DATAPROTECTION_ENDPOINT"],
                                    connection_verify=env["DATAPROTECTION_CA_BUNDLE"])


def jobs_restoring_to(env: dict[str, str], destination_part: str) -> list[Any]:
    """Restore jobs in bv-prod whose destination mentions ``destination_part`` (the proof of 'exactly once')."""
    jobs = sdk(env).jobs.list("rg-backup", "bv-prod")
    return [j for j in jobs if j.properties.extended_info is not None
            and destination_part in (j.properties.extended_info.recovery_destination or "")]


def queue(env: dict[str, str], name: str) -> QueueClient:
    return QueueClient.from_connection_string(env["AZURE_STORAGE_CONNECTION_STRING"], name,
                                              message_encode_policy=TextBase64EncodePolicy())


def dsn(env: dict[str, str], cluster: str, db: str) -> str:
    base = env["PGCLUSTER_" + cluster.upper().replace("-", "_") + "_DSN"]
    return base.rsplit("/", 1)[0] + "/" + db


def order_batches(env: dict[str, str], cluster: str, db: str) -> set[str]:
    with psycopg.connect(dsn(env, cluster, db), connect_timeout=10) as conn:
        return {r[0] for r in conn.execute("SELECT DISTINCT batch FROM orders").fetchall()}


def completion_events(env: dict[str, str], restore_id: str, *, event_type: str = "restore.completed",
                      key: str = "restore_id") -> list[dict[str, Any]]:
    """Events of one type on restore-events whose ``key`` is ``restore_id`` (default: a restore's completion events;
    a drill run's: ``event_type="drill.run.finished", key="run_key"``), received with a short visibility, not
    deleted."""
    q = QueueClient.from_connection_string(env["AZURE_STORAGE_CONNECTION_STRING"], "restore-events",
                                           message_decode_policy=TextBase64DecodePolicy())
    found, seen = [], 0
    for m in q.receive_messages(messages_per_page=32, visibility_timeout=5):
        seen += 1
        event = json.loads(m.content)
        if event.get(key) == restore_id and event.get("type", "restore.completed") == event_type:
            found.append(event)
        if seen > 2000:
            break
    return found


def replay_pids(stack: Any) -> list[int]:
    """The replay executions the local job runner is running now (its state file)."""
    try:
        state = json.loads((Path(stack.dir) / "jobrunner.json").read_text())
    except (OSError, ValueError):
        return []
    return list(state.get("running") or [])
