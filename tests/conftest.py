"""Shared fixtures for integration tests: ONE local stack per test session, and a small API client.

``local_stack``: a :class:`localdev.stack.Stack` in a temp dir (free ports everywhere) with the demo world and the
real ``function_app.py``; ``local_stack.env`` holds the stack.env values. Tests using it (or ``api``, or a real
``azurite``) are marked ``integration`` automatically.
``api``: ``api.get(path)`` / ``api.post(path, json, headers)`` -> (status, json or None, headers), with the
function key; ``path`` is relative to RESTORE_API_URL (``/restores`` -> ``/api/restores``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from localdev.apiclient import Api
from localdev.stack import DEFAULT_WORLD, Stack
from restore_core import telemetry
from restore_core.config import load_settings

# OpenTelemetry providers can be installed once per process: install the in-memory exporters first, so that any
# later in-process configure() (an in-process host loading settings that say "none") is a no-op.
os.environ.setdefault("RESTORE_TELEMETRY_EXPORTER", "memory")
telemetry.configure(load_settings({"RestoreStorage": "UseDevelopmentStorage=true",
                                   "RESTORE_TELEMETRY_EXPORTER": "memory"}))

STACK_FIXTURES = {"local_stack", "api", "azurite"}  # real processes -> integration


_OWN_BASETEMP = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    """A short, private base temp dir for this run (``/tmp/rt-XXXX``), unless ``--basetemp`` was given.

    Two reasons. Stacks started under ``tmp_path`` put PostgreSQL's Unix socket in the cluster's directory, and
    pytest-xdist's per-worker dirs (``/tmp/pytest-of-root/pytest-N/popen-gwN/<test>/...``) make that path longer
    than the 107 bytes a socket path may have. And every pytest start resets ``/tmp/pytest-of-<user>`` to 0700,
    which locks the ``postgres`` OS user out of clusters another pytest run (or an engineer's second run) has
    started there. With xdist the controller sets this once and each worker gets ``<it>/popen-gwN``.
    """
    if config.option.basetemp is None and not hasattr(config, "workerinput"):
        config.option.basetemp = tempfile.mkdtemp(prefix="rt-")
        config.stash[_OWN_BASETEMP] = config.option.basetemp


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    own = session.config.stash.get(_OWN_BASETEMP, None)
    if own is not None and exitstatus == 0:  # kept when something failed: its logs are evidence
        shutil.rmtree(own, ignore_errors=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if STACK_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def local_stack() -> Iterator[Stack]:
    # not tmp_path_factory: every pytest start resets /tmp/pytest-of-<user> to 0700, which would lock the postgres
    # OS user (which runs the clusters) out of a stack started by another pytest run
    base = Path(tempfile.mkdtemp(prefix="restore-stack-"))
    stack = Stack(base, DEFAULT_WORLD, http_port=0)
    try:
        stack.up()  # raises StackError naming the component and its log tail if anything fails
        yield stack
    finally:
        stack.down()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def api(local_stack: Stack) -> Api:
    return Api(local_stack.env["RESTORE_API_URL"], local_stack.env["RESTORE_API_KEY"])


def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]
