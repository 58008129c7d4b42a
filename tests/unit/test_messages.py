"""The stage envelope: round trip, and every malformed envelope is a PermanentError (never KeyError/TypeError)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from restore_core.errors import PermanentError
from restore_core.messages import ENVELOPE_VERSION, Envelope
from restore_core.models import Stage

RID = "20261124T080000-0123456789"
TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
SENT = datetime(2026, 11, 24, 8, 0, 1, 250000, tzinfo=UTC)


def good(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"schema_version": ENVELOPE_VERSION, "restore_id": RID, "stage": "trigger", "attempt": 3,
                            "traceparent": TP, "sent_at": "2026-11-24T08:00:01.25Z"}
    for k, v in changes.items():
        if v is _DROP:
            data.pop(k)
        else:
            data[k] = v
    return data


_DROP = object()


@pytest.mark.parametrize("stage", list(Stage))
def test_envelope_round_trips_for_every_stage(stage: Stage) -> None:
    env = Envelope(RID, stage, 7, TP, SENT)
    assert Envelope.decode(env.encode(), stage) == env
    assert Envelope.decode(env.encode().encode()) == env


def test_encoded_envelope_has_exactly_the_six_fields() -> None:
    data = json.loads(Envelope(RID, Stage.WAIT, 2, None, SENT).encode())
    assert data == {"schema_version": 1, "restore_id": RID, "stage": "wait", "attempt": 2, "traceparent": None,
                    "sent_at": "2026-11-24T08:00:01.250000Z"}


def test_sent_at_in_another_zone_is_the_same_instant_and_encodes_as_utc() -> None:
    env = Envelope.decode(json.dumps(good(sent_at="2026-11-24T10:00:01.25+02:00")))
    assert env.sent_at == SENT and env.sent_at.tzinfo is not None
    assert json.loads(env.encode())["sent_at"] == "2026-11-24T08:00:01.250000Z"
    assert Envelope(RID, Stage.WAIT, 1, None, SENT.astimezone(timezone(timedelta(hours=5)))).encode() == \
        Envelope(RID, Stage.WAIT, 1, None, SENT).encode()


def test_bad_traceparent_is_dropped_not_fatal() -> None:
    env = Envelope.decode(json.dumps(good(traceparent="garbage")))
    assert env.traceparent is None and env.restore_id == RID


def test_message_for_another_stage_on_this_queue_is_permanent_error() -> None:
    with pytest.raises(PermanentError, match="message for stage trigger arrived on the monitor queue"):
        Envelope.decode(json.dumps(good()), Stage.MONITOR)


MALFORMED: list[tuple[str, Any]] = [
    ("not json", b"{nope"),
    ("undecodable bytes", b"\xff\xfe\x00"),
    ("json array", b"[1,2,3]"),
    ("json string", b'"validate"'),
    ("json null", b"null"),
    ("empty object", b"{}"),
    ("no schema_version", good(schema_version=_DROP)),
    ("future schema_version", good(schema_version=2)),
    ("extra field", good(payload={"password": "x"})),
    ("no restore_id", good(restore_id=_DROP)),
    ("restore_id number", good(restore_id=12)),
    ("restore_id bad shape", good(restore_id="../../etc")),
    ("no stage", good(stage=_DROP)),
    ("unknown stage", good(stage="restore")),
    ("stage list", good(stage=["trigger"])),
    ("no attempt", good(attempt=_DROP)),
    ("attempt zero", good(attempt=0)),
    ("attempt string", good(attempt="3")),
    ("attempt bool", good(attempt=True)),
    ("attempt float", good(attempt=2.0)),
    ("no sent_at", good(sent_at=_DROP)),
    ("sent_at empty", good(sent_at="")),
    ("sent_at garbage", good(sent_at="yesterday")),
]


@pytest.mark.parametrize(("what", "body"), MALFORMED, ids=[w for w, _ in MALFORMED])
def test_malformed_envelope_is_permanent_error(what: str, body: Any) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body)
    with pytest.raises(PermanentError):
        Envelope.decode(raw, Stage.TRIGGER)


@pytest.mark.parametrize("sent_at", [1732435200, ["2026-11-24T08:00:00Z"], {"t": 1}])
def test_non_string_sent_at_is_permanent_error(sent_at: Any) -> None:
    with pytest.raises(PermanentError):
        Envelope.decode(json.dumps(good(sent_at=sent_at)), Stage.TRIGGER)
