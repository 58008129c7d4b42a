"""Telemetry tests share one in-memory OpenTelemetry setup (global providers can be set once per process).

Anything that configures telemetry earlier in the same pytest process must use RESTORE_TELEMETRY_EXPORTER=memory
too (a root tests/conftest.py setting it before imports is the simplest way)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

os.environ.setdefault("RESTORE_TELEMETRY_EXPORTER", "memory")

from restore_core import telemetry  # noqa: E402
from restore_core.config import load_settings  # noqa: E402

MEMORY_ENV = {"RestoreStorage": "UseDevelopmentStorage=true", "RESTORE_TELEMETRY_EXPORTER": "memory"}


@pytest.fixture(scope="session")
def memory() -> telemetry.MemoryExporters:
    telemetry.configure(load_settings(MEMORY_ENV))
    if telemetry.configured_exporter() != "memory":
        pytest.fail(
            f"telemetry was configured earlier in this process with {telemetry.configured_exporter()!r}; "
            "set RESTORE_TELEMETRY_EXPORTER=memory before anything calls telemetry.configure()"
        )
    return telemetry.memory_exporters()


@pytest.fixture
def mem(memory: telemetry.MemoryExporters) -> Iterator[telemetry.MemoryExporters]:
    memory.clear()
    yield memory
    memory.clear()
