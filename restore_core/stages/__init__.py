"""One module per queue-triggered stage. Each exposes ``run(record, deps, claim) -> StageResult``.

``claim(changes)`` writes ``changes`` to the row with an ETag-guarded write *before* a side effect, so a duplicate
or late message sees the claim; it raises ``ConcurrencyError`` when another delivery got there first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..records import RestoreRecord

Claim = Callable[[dict[str, Any]], RestoreRecord]
