"""The drills' own port: the write-once evidence container (adapter :class:`.evidence.BlobEvidenceSink`, built by
:mod:`restore_core.runtime`; in-memory twin :class:`.evidence.MemoryEvidenceSink`)."""

from __future__ import annotations

from typing import Any, Protocol


class EvidenceSink(Protocol):
    def put_once(self, name: str, document: dict[str, Any]) -> bool:
        """Write ``document`` under ``name`` unless it exists; False when it existed (the first one is kept)."""

    def get(self, name: str) -> dict[str, Any] | None: ...
