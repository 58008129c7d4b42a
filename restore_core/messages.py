"""The stage message envelope: ``{schema_version, restore_id, stage, attempt, traceparent, sent_at}`` and nothing else.

The row holds the state; the message only says "look at restore X, stage S, attempt N". Decoding is the one place
that rejects a message, with a :class:`PermanentError` (never ``KeyError``). Base64 text on the wire (the Functions
host default); the queue clients apply the encoding.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .errors import PermanentError
from .models import Stage
from .records import iso, parse_time

ENVELOPE_VERSION = 1
_ID = re.compile(r"^\d{8}T\d{6}-[0-9a-f]{10}$")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


@dataclass(frozen=True)
class Envelope:
    restore_id: str
    stage: Stage
    attempt: int
    traceparent: str | None
    sent_at: datetime

    def encode(self) -> str:
        return json.dumps({"schema_version": ENVELOPE_VERSION, "restore_id": self.restore_id,
                           "stage": self.stage.value, "attempt": self.attempt, "traceparent": self.traceparent,
                           "sent_at": iso(self.sent_at)}, separators=(",", ":"))

    @classmethod
    def decode(cls, body: bytes | str, expected_stage: Stage | None = None) -> Envelope:
        data = _object(body)
        rid = data.get("restore_id")
        if not isinstance(rid, str) or not _ID.match(rid):
            raise PermanentError(f"bad restore_id {rid!r}")
        stage = _stage(data.get("stage"), expected_stage)
        attempt = data.get("attempt")
        if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 1:
            raise PermanentError(f"bad attempt {attempt!r}")
        tp = data.get("traceparent")
        if tp is not None and (not isinstance(tp, str) or not _TRACEPARENT.match(tp)):
            tp = None  # a bad trace context never blocks a restore
        return cls(rid, stage, attempt, tp, _sent_at(data.get("sent_at")))


def _object(body: bytes | str) -> dict[str, Any]:
    """The envelope's JSON object, of this schema version and with no unknown field."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise PermanentError(f"stage message is not JSON: {type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise PermanentError("stage message must be a JSON object")
    extra = set(data) - {"schema_version", "restore_id", "stage", "attempt", "traceparent", "sent_at"}
    if data.get("schema_version") != ENVELOPE_VERSION:
        raise PermanentError(f"unsupported envelope schema_version {data.get('schema_version')!r}")
    if extra:
        raise PermanentError(f"unknown envelope fields {sorted(extra)}")
    return data


def _stage(value: Any, expected: Stage | None) -> Stage:
    try:
        stage = Stage(str(value))
    except ValueError:
        raise PermanentError(f"unknown stage {value!r}") from None
    if expected is not None and stage != expected:
        raise PermanentError(f"message for stage {stage.value} arrived on the {expected.value} queue")
    return stage


def _sent_at(value: Any) -> datetime:
    try:
        sent = parse_time(value)
    except (ValueError, TypeError):
        raise PermanentError(f"bad sent_at {value!r}") from None
    if sent is None:
        raise PermanentError("missing sent_at")
    return sent
