"""What a handler gets and gives: the parsed :class:`Call` and the :class:`Reply` the front door sends.

Consumes: nothing. Produces: the two shapes shared by :mod:`.server`, :mod:`.arm` and :mod:`.adminapi`, and
:func:`cloud_error` (the ARM ``CloudError`` body).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def cloud_error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "target": None, "details": [], "additionalInfo": []}}


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    raw: bytes | None = None  # sent verbatim instead of the JSON body (fault injection)
    media_type: str | None = None


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    params: dict[str, str]
    operation: str
    api_version: str
