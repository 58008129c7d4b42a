"""Fuzzing the pure input parsers: whatever arrives, only the documented error comes out.

- ``restore_core.models.parse_request`` (HTTP body and queue request): a valid request, or ``RequestError`` with a
  field and a fix — never ``KeyError``/``TypeError``/``AttributeError``/``RecursionError``/... (those become a 500
  on HTTP and a poison message on the queue).
- ``restore_core.messages.Envelope.decode`` (every stage message): an envelope, or ``PermanentError``.
- ``restore_core.alerts.alert_to_request`` (alert payloads on the intake queue): a body + key, or ``RequestError``.

Inputs: random bytes/text, random JSON (unicode, huge strings, big numbers, nesting up to ~40 levels), and
mutations of valid requests/envelopes/alerts (one field replaced by random JSON, removed, or an unknown field added).
Deep nesting beyond the interpreter's recursion limit is tested separately below (it was a bug: RecursionError
escaped), kept out of the random strategies so they keep checking everything else. Reproducible: ``derandomize=True``.
"""

from __future__ import annotations

import json
import string
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localdev import scenarios as sc
from restore_core.alerts import alert_to_request
from restore_core.errors import PermanentError, RequestError
from restore_core.messages import Envelope
from restore_core.models import RestoreRequest, Stage, parse_request


def fuzz(examples: int) -> settings:
    return settings(deadline=None, derandomize=True, database=None, max_examples=examples,
                    suppress_health_check=[HealthCheck.too_slow])

# --- strategies ------------------------------------------------------------------------------------------------
TEXT = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=string.printable, max_size=300),
    st.sampled_from(["", " ", "\x00", "null", "database", "files", "latest", "primary", "secondary", "archive",
                     "Standard", "High", "../..", "%s%n", "😀" * 5, "\u202e\u0000\ud7ff", "a" * 20000,
                     sc.BI_SALES, sc.BI_SALES.upper(), sc.BI_SALES + "/", sc.BI_SALES.replace("/", "//"),
                     sc.VAULT, sc.TARGET_SERVER, sc.TARGET_SERVER + "/databases/x", sc.SECRET_RESTORE,
                     sc.CONTAINER_WE_URL, sc.CONTAINER_WE_URL + "?sv=2020&sig=abc", sc.CONTAINER_WE_ID,
                     "/subscriptions/", "/subscriptions/x/resourceGroups//providers", "2026-11-24T08:00:00",
                     "2026-11-24T08:00:00Z", "9999-99-99T99:99:99Z", "-P7D", "1e999"]),
)
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                   st.floats(allow_nan=False, allow_infinity=False), TEXT)
JSON = st.recursive(SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                    st.dictionaries(TEXT, inner, max_size=4)), max_leaves=20)


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


DEEP = st.integers(min_value=1, max_value=40).map(nested)
ANY_JSON = st.one_of(JSON, DEEP)

VALID_REQUESTS = [
    sc.as_database("fz_db"),
    sc.as_files("fz-files"),
    sc.as_database("fz_dr", server=sc.TARGET_DR, secret=sc.SECRET_DR, region="secondary"),
    sc.as_database("fz_arch", recovery_point={"latest_before": "2026-08-01T00:00:00Z"},
                   rehydration={"priority": "High", "retention_days": 12}, idempotency_key="k-1",
                   deadline_hours=5, description="fuzz"),
    {"backup_instance": {"vault_id": sc.VAULT, "datasource_id": sc.SRC_SALES_DB},
     "target": {"kind": "database", "server_id": sc.TARGET_SERVER, "database_name": "fz_lookup",
                "secret_uri": sc.SECRET_RESTORE}, "recovery_point": "latest"},
]


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += paths(v, (*prefix, i))
    return out


def mutate(base: Any, path: tuple[Any, ...], action: str, new: Any, extra_key: str) -> Any:
    doc = json.loads(json.dumps(base))
    if not path:
        return new if action == "replace" else doc
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if action == "replace":
        parent[last] = new
    elif action == "delete":
        del parent[last]
    elif isinstance(parent, dict):
        parent[extra_key] = new
    return doc


@st.composite
def mutated(draw: st.DrawFn, bases: list[Any]) -> Any:
    base = draw(st.sampled_from(bases))
    doc = base
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(paths(doc)))
        doc = mutate(doc, path, draw(st.sampled_from(["replace", "delete", "add"])), draw(ANY_JSON), draw(TEXT))
    return doc


def check_request(body: Any) -> None:
    try:
        req = parse_request(body)
    except RequestError as exc:
        assert exc.message and exc.field, exc.to_dict()
        assert exc.fix, exc.to_dict()
        assert exc.status in (400, 413), exc.status
    else:
        assert isinstance(req, RestoreRequest)


# --- parse_request ---------------------------------------------------------------------------------------------
@fuzz(150)
@given(mutated(VALID_REQUESTS))
def test_mutated_requests_parse_or_name_the_field(body: Any) -> None:
    check_request(body)
    check_request(json.dumps(body))  # the same through the bytes door (size limit, JSON decoding)


@fuzz(80)
@given(st.one_of(ANY_JSON, st.binary(max_size=300), st.text(max_size=300)))
def test_arbitrary_bodies_are_request_errors(body: Any) -> None:
    if isinstance(body, (bytes, str)):
        check_request(body)
    else:
        check_request(json.dumps(body))


def test_valid_bases_parse() -> None:
    # the mutation base must be valid, or the mutated test would only ever see rejections
    for body in VALID_REQUESTS:
        assert isinstance(parse_request(body), RestoreRequest)
        assert isinstance(parse_request(json.dumps(body).encode()), RestoreRequest)


def test_deeply_nested_body_is_a_request_error() -> None:
    with pytest.raises(RequestError):
        parse_request(b"[" * 16000)


# --- Envelope.decode -------------------------------------------------------------------------------------------
GOOD_ENVELOPE = {"schema_version": 1, "restore_id": "20261124T080000-0123456789", "stage": "trigger",
                 "attempt": 3, "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                 "sent_at": "2026-11-24T08:00:01.25Z"}


def check_envelope(body: bytes | str, expected: Stage | None) -> None:
    try:
        env = Envelope.decode(body, expected)
    except PermanentError as exc:
        assert str(exc)
    else:
        assert isinstance(env, Envelope) and env.attempt >= 1
        assert expected is None or env.stage == expected
        assert Envelope.decode(env.encode(), expected) == env  # what decodes, round-trips


@fuzz(150)
@given(mutated([GOOD_ENVELOPE]), st.one_of(st.none(), st.sampled_from(list(Stage))))
def test_mutated_envelopes_decode_or_are_permanent_errors(body: Any, expected: Stage | None) -> None:
    check_envelope(json.dumps(body), expected)


@fuzz(80)
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200), ANY_JSON.map(json.dumps)),
       st.one_of(st.none(), st.sampled_from(list(Stage))))
def test_arbitrary_stage_messages_are_permanent_errors(body: bytes | str, expected: Stage | None) -> None:
    check_envelope(body, expected)


def test_deeply_nested_stage_message_is_permanent_error() -> None:
    with pytest.raises(PermanentError):
        Envelope.decode("[" * 100000)


# --- alerts ----------------------------------------------------------------------------------------------------
ALERT = sc.alert_payload("6f1c2d3e-aaaa-4bbb-8ccc-000000000001", datetime(2026, 11, 20, 8, 0, tzinfo=UTC))
PLANS = sc.alert_plan()


@fuzz(150)
@given(mutated([ALERT]))
def test_alert_payloads_with_missing_or_wrong_parts_are_request_errors(payload: Any) -> None:
    if not isinstance(payload, dict):
        return  # not an alert (is_alert is False): the request path above covers it
    try:
        body, key = alert_to_request(payload, PLANS)
    except RequestError as exc:
        assert exc.code and exc.field and exc.fix, exc.to_dict()
        return
    assert key.startswith("alert:")
    check_request(body)  # what an alert turns into is then validated like any request


# --- the intake queue door, in-process (in-memory store and queues from tests/unit/fakes.py) ---------------------
def _harness() -> Any:
    from tests.unit.fakes import Harness, settings

    return Harness(settings=settings(RESTORE_PLANS=sc.plans_setting(PLANS)))


@fuzz(120)
@given(st.one_of(mutated([ALERT]).map(json.dumps), mutated(VALID_REQUESTS).map(json.dumps), st.text(max_size=200),
                 ANY_JSON.map(json.dumps)))
def test_intake_queue_message_is_a_restore_or_a_recorded_rejection(raw: str) -> None:
    from restore_core import intake
    from restore_core.models import Status

    h = _harness()
    rec = intake.from_queue(raw, message_id="m-1", deps=h.deps)  # never raises: a raise means retries + poison
    sent = h.queues.take()
    if rec.status is Status.REJECTED:
        assert rec.error_code and rec.error_message, rec
        assert sent == [], "a rejected queue input enqueued a stage message"
    else:
        assert rec.status is Status.ACCEPTED
        assert [json.loads(m.text)["restore_id"] for m in sent] == [rec.id]


def test_deeply_nested_queue_message_is_a_recorded_rejection() -> None:
    from restore_core import intake
    from restore_core.models import Status

    assert intake.from_queue("[" * 16000, message_id="m-deep", deps=_harness().deps).status is Status.REJECTED
