"""Fixtures for the bench smoke tests: reuse the local-host fixtures (one real Azurite per session)."""

from tests.localdev.conftest import azurite, queues

__all__ = ["azurite", "queues"]
