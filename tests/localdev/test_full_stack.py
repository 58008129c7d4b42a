"""The full local stack (demo world, real function_app.py) through the shared session fixtures."""

from __future__ import annotations

import yaml

from localdev.apiclient import Api
from localdev.stack import ENV_KEYS, Stack, cluster_env_key, pid_alive


def test_session_stack_runs_every_component_of_the_demo_world(local_stack: Stack) -> None:
    clusters = [c["name"] for c in yaml.safe_load(local_stack.world.read_text())["postgres_clusters"]]
    for key in (*ENV_KEYS, *(cluster_env_key(c) for c in clusters)):
        assert local_stack.env.get(key), key
    status = local_stack.status()
    assert set(status) == {"azurite", "dpemu", "funchost", "jobrunner", *(f"pg:{c}" for c in clusters)}
    assert [n for n, c in status.items() if not pid_alive(c["pid"], c["marker"])] == []
    log = (local_stack.dir / "logs" / "funchost.log").read_text()
    for fn in ("restore_requests:queueTrigger", "restore_watchdog:timerTrigger", "restores_create:httpTrigger"):
        assert fn in log


def test_real_app_api_needs_the_function_key(api: Api) -> None:
    status, body, headers = api.get("restores")
    assert status == 200 and headers["content-type"].startswith("application/json") and body is not None
    assert api.get("restores", with_key=False)[0] == 401
