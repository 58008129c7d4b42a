"""Fuzzing the two doors of the running service (the session's real local stack: Functions host, Azurite, emulator).

- ``POST /api/restores``: generated bodies (mutations of valid requests: wrong types, huge fields, bad ARM ids,
  unicode, nesting; random bytes; random headers) that the request model refuses -> always a 4xx with an error
  naming a field, never a 5xx; the host keeps answering; not one restore row (hence no stage message) appears.
- ``GET /api/restores?…``, ``GET /api/restores/{id}``, ``POST …/{id}/cancel`` with generated parameters -> never 5xx.
- The ``restore-requests`` queue: generated messages (junk, invalid requests, Azure Monitor alert payloads with
  missing or wrong parts, based on ``localdev.scenarios.alert_payload``) -> each leaves exactly one ``rejected``
  row, nothing else is created, nothing reaches ``restore-requests-poison``.

Inputs the service would accept are filtered out before sending (decided with the same pure functions the service
uses) so the fuzzing starts no real restores; whether a generated input is "valid" is thus decided in-process and
the service's answer must agree. Inputs nested beyond the interpreter's recursion limit get their own tests (once
a bug: RecursionError escaped). Reproducible: ``derandomize=True``; about 150 requests in all.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
from azure.storage.queue import QueueClient, TextBase64EncodePolicy
from hypothesis import assume, given
from hypothesis import strategies as st

from localdev import scenarios as sc
from restore_core.alerts import alert_to_request, is_alert
from restore_core.models import MAX_BODY_BYTES, parse_request

from .test_fuzz_parsers import ALERT, ANY_JSON, TEXT, VALID_REQUESTS, fuzz, mutated

pytestmark = pytest.mark.integration
QUEUE_LIMIT = 45_000  # Azure queue messages are <= 64 KiB after base64


def accepted_by_model(body: Any) -> bool:
    """Would ``POST /restores`` accept this body? (``parse_request`` is what the handler calls first.)"""
    try:
        parse_request(body if isinstance(body, bytes) else json.dumps(body).encode())
    except Exception:  # noqa: BLE001 - anything but success means "refused" here; the service must agree
        return False
    return True


def queue_outcome(raw: str, plans: dict[str, Any]) -> tuple[bool, str | None]:
    """What ``intake.from_queue`` does with this message, in-process: (starts a restore?, dedup key).

    The key is the alert's idempotency key when the alert itself was understood (a second message for the same
    alert is the same restore or the same rejection), else None (each message is its own record).
    """
    key = None
    try:
        data = json.loads(raw)
        if len(raw.encode()) > MAX_BODY_BYTES:
            return False, None
        if is_alert(data):
            data, key = alert_to_request(data, plans)
        parse_request(data)
    except Exception:  # noqa: BLE001 - refused
        return False, key
    return True, key


def ping(local_stack: Any) -> int:
    port = local_stack.components["funchost"]["port"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/host/ping", timeout=10) as r:  # noqa: S310
        return int(r.status)


def rows_since(api: Any, since: datetime) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    token = None
    stamp = since.isoformat().replace("+00:00", "Z")
    while True:
        path = f"/restores?limit=200&since={quote(stamp)}" + (f"&continuation={quote(token)}" if token else "")
        status, page, _ = api.get(path)
        assert status == 200, page
        items += page["items"]
        token = page.get("continuation")
        if not token:
            return items


def queue(env: dict[str, str], name: str) -> QueueClient:
    return QueueClient.from_connection_string(env["AZURE_STORAGE_CONNECTION_STRING"], name,
                                              message_encode_policy=TextBase64EncodePolicy())


def queue_depth(env: dict[str, str], name: str) -> int:
    try:
        return int(queue(env, name).get_queue_properties().approximate_message_count or 0)
    except Exception:  # noqa: BLE001 - a poison queue that does not exist yet is empty
        return 0


HEADER_VALUE = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=250)
HTTP_BODIES = st.one_of(mutated(VALID_REQUESTS), ANY_JSON, st.binary(max_size=400),
                        st.sampled_from([b"", b"{", b"null", b"[]", b'"x"', b"{" + b" " * 20000 + b"}",
                                         json.dumps({"target": "x" * 30000}).encode(),
                                         "{\"backup_instance\": {\"id\": \"\u00e9\u6f22\ud83d\ude00\"}}".encode(
                                             "utf-8", "surrogatepass"),
                                         b"\xff\xfe{}"]))


def test_http_kickoff_never_answers_5xx_and_starts_nothing(local_stack: Any, api: Any) -> None:
    t0 = datetime.now(UTC) - timedelta(seconds=2)
    before = rows_since(api, t0)
    answers: list[int] = []

    @fuzz(90)
    @given(HTTP_BODIES, st.one_of(st.none(), HEADER_VALUE), st.sampled_from(
        ["application/json", "text/plain", "application/x-www-form-urlencoded", ""]))
    def post(body: Any, key: str | None, ctype: str) -> None:
        assume(not accepted_by_model(body))
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Content-Type": ctype} if ctype else {}
        if key is not None:
            headers["Idempotency-Key"] = key
        status, resp, _ = api.post("/restores", raw, headers=headers)
        answers.append(status)
        assert 400 <= status < 500, (status, resp, raw[:300])
        assert isinstance(resp, dict) and resp.get("error", {}).get("field") and resp["error"].get("fix"), resp

    post()
    assert ping(local_stack) == 200
    assert len(answers) >= 40, f"only {len(answers)} bodies were refused by the model; the generator drifted"
    after = rows_since(api, t0)
    assert {r["id"] for r in after} == {r["id"] for r in before}, "a refused POST created a restore row"


QUERY_VALUE = st.one_of(TEXT, st.sampled_from(["accepted,failed", "nope", "0", "-1", "201", "1e3", "2026-13-01",
                                               "2026-11-24T08:00:00", "2026-11-24T08:00:00Z", "MjAyNjExMjR8eA==",
                                               "MjAyNjExMjR8eCcgb3IgJzEnPScx", "%%%", "ö"]))


def test_status_and_list_parameters_never_answer_5xx(local_stack: Any, api: Any) -> None:
    seen: list[int] = []

    @fuzz(60)
    @given(st.dictionaries(st.sampled_from(["status", "since", "until", "limit", "continuation", "x"]), QUERY_VALUE,
                           max_size=4), TEXT, st.booleans())
    def calls(params: dict[str, str], rid: str, cancel: bool) -> None:
        query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
        status, resp, _ = api.get(f"/restores?{query}")
        seen.append(status)
        assert status < 500, (params, status, resp)
        rid_part = quote(rid, safe="") or "x"
        status, resp, _ = (api.post(f"/restores/{rid_part}/cancel") if cancel else api.get(f"/restores/{rid_part}"))
        assert status < 500, (rid, status, resp)

    calls()
    assert ping(local_stack) == 200
    assert 200 in seen and any(400 <= s < 500 for s in seen), set(seen)


def alert_like(payload: Any) -> Any:
    return payload if isinstance(payload, dict) else ALERT


QUEUE_MESSAGES = st.one_of(
    mutated([ALERT]).map(alert_like).map(json.dumps),
    mutated(VALID_REQUESTS).map(json.dumps),
    st.text(max_size=300),
    ANY_JSON.map(json.dumps),
    st.sampled_from(["", "{", "null", "[]", json.dumps({"schemaId": "azureMonitorCommonAlertSchema"}),
                     json.dumps({"schemaId": "azureMonitorCommonAlertSchema", "data": []}),
                     "{" + " " * 20000 + "}"]),
)


def test_intake_queue_records_one_rejection_per_refused_message_and_starts_nothing(local_stack: Any,
                                                                                   api: Any) -> None:
    env = local_stack.env
    settings = json.loads((local_stack.dir / "local.settings.json").read_text())["Values"]
    plans = json.loads(settings.get("RESTORE_PLANS") or "{}")  # what the host was started with
    t0 = datetime.now(UTC) - timedelta(seconds=2)
    before = {r["id"] for r in rows_since(api, t0)}
    poison_before = queue_depth(env, "restore-requests-poison")
    q = queue(env, "restore-requests")
    sent: list[str] = []
    records: set[str] = set()  # one record per message, or per alert id when the alert was understood

    @fuzz(70)
    @given(QUEUE_MESSAGES)
    def send(raw: str) -> None:
        starts, key = queue_outcome(raw, plans)
        assume(len(raw.encode()) <= QUEUE_LIMIT and not starts)
        q.send_message(raw)
        sent.append(raw)
        records.add(key or f"message {len(sent)}")

    send()
    assert len(sent) >= 30, f"only {len(sent)} messages were generated as refusable; the generator drifted"
    deadline = time.monotonic() + 60
    new: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        new = [r for r in rows_since(api, t0) if r["id"] not in before]
        if len(new) >= len(records):
            break
        time.sleep(1)
    assert ping(local_stack) == 200
    not_rejected = [r for r in new if r["status"] != "rejected" or r["source"] not in ("queue", "alert")]
    assert not_rejected == [], not_rejected
    assert len(new) == len(records), f"{len(sent)} refused messages ({len(records)} records) left {len(new)} rows"
    assert all(r.get("error", {}).get("code") and r["error"].get("message") for r in new), new[:3]
    assert queue_depth(env, "restore-requests-poison") == poison_before


def test_deeply_nested_http_body_is_a_400(local_stack: Any, api: Any) -> None:
    status, resp, _ = api.post("/restores", b"[" * 16000)
    assert ping(local_stack) == 200  # the host survives either way
    assert status == 400, (status, resp)


def test_host_ping_helper_detects_a_dead_port(local_stack: Any) -> None:
    # the "host stays up" checks above rely on ping() raising when nothing answers
    class Fake:
        components = {"funchost": {"port": 9}}  # discard port: nothing listens

    with pytest.raises((urllib.error.URLError, OSError)):
        ping(Fake())


def test_queue_inputs_that_used_to_reach_poison_leave_rejected_rows(local_stack: Any, api: Any) -> None:
    """Each of these went to restore-requests-poison without a record (issue 16.4): a huge integer, an alert time
    that overflows, a client key imitating an alert key, a key reused for another body, and a request whose stored
    form is over Table Storage's 64 KiB property limit although its body is under the 16 KiB body limit."""
    env = local_stack.env
    t0 = datetime.now(UTC) - timedelta(seconds=2)
    before = {r["id"] for r in rows_since(api, t0)}
    poison_before = queue_depth(env, "restore-requests-poison")
    key = f"live-{time.monotonic_ns()}"
    wide_id = sc.SRC_SERVER.replace("pgsrv01", "\U0001f600" * 3500)
    messages = {
        "huge integer": '{"deadline_hours": 1' + "0" * 5000 + "}",
        "overflowing alert time": json.dumps(sc.alert_payload(str(uuid.uuid4()), datetime(2026, 11, 20, tzinfo=UTC))
                                             ).replace("2026-11-20T00:00:00Z", "9999-12-31T23:59:59-01:00"),
        "alert-like key": json.dumps(sc.as_database("q_alertkey", idempotency_key="alert:/subscriptions/x")),
        "reused key": json.dumps(sc.as_database("q_reused_b", idempotency_key=key)),
        "stored form too large": json.dumps({"backup_instance": {"vault_id": sc.VAULT, "datasource_id": wide_id},
                                             "target": sc.as_database("q_wide")["target"]}, ensure_ascii=False),
    }
    assert all(len(m.encode()) <= MAX_BODY_BYTES for m in messages.values())
    status, first, _ = api.post("/restores", sc.as_database("q_reused_a"), headers={"Idempotency-Key": key})
    assert status == 202, first
    q = queue(env, "restore-requests")
    for raw in messages.values():
        q.send_message(raw)
    deadline = time.monotonic() + 60
    new: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        new = [r for r in rows_since(api, t0) if r["id"] not in before and r["id"] != first["id"]]
        if len(new) >= len(messages):
            break
        time.sleep(1)
    assert sorted((r.get("error") or {}).get("code", r["status"]) for r in new) == sorted(
        ["InvalidRequest", "InvalidAlert", "InvalidRequest", "IdempotencyKeyReused", "RequestTooLarge"]), new
    assert all(r["status"] == "rejected" and r["error"]["fix"] for r in new)
    assert queue_depth(env, "restore-requests-poison") == poison_before


def test_inputs_that_used_to_answer_500_are_4xx_through_the_real_http_door(local_stack: Any, api: Any) -> None:
    """Issue 16.6: numbers with thousands of digits, times at the edges of the calendar with offsets, list windows
    near year 9999, and a body under the byte limit whose stored form is over Table Storage's property limit (which
    also left its idempotency key behind: the same key then answered 409 to a valid request)."""
    t0 = datetime.now(UTC) - timedelta(seconds=2)
    before = {r["id"] for r in rows_since(api, t0)}
    base = sc.as_database("h500_never_started")
    wide = {"backup_instance": {"vault_id": sc.VAULT, "datasource_id": sc.SRC_SERVER + "\u00e9" * 7000},
            "target": base["target"]}
    bodies = {
        "digits": json.dumps(base).encode()[:-1] + b', "deadline_hours": ' + b"9" * 5000 + b"}",
        "year 1 with an offset": json.dumps({**base, "recovery_point": {"latest_before": "0001-01-01T00:00:00+01:00"}}
                                            ).encode(),
        "year 9999 with an offset": json.dumps({**base, "recovery_point": {
            "latest_before": "9999-12-31T23:59:59-01:00"}}).encode(),
        "stored form too large": json.dumps(wide, ensure_ascii=False).encode(),
    }
    key = f"h500-{uuid.uuid4().hex}"
    for name, raw in bodies.items():
        assert len(raw) <= MAX_BODY_BYTES, name
        status, resp, _ = api.post("/restores", raw, headers={"Idempotency-Key": key})
        assert 400 <= status < 500 and resp["error"]["field"] and resp["error"]["fix"], (name, status, resp)
    for query in ("since=9999-12-30T00:00:00Z&until=9999-12-31T23:59:59.999999Z",
                  "since=9999-12-31T23:00:00Z&until=9999-12-31T23:59:59Z",
                  f"since={quote('0001-01-01T00:00:00+01:00')}", f"until={quote('9999-12-31T23:59:59-01:00')}",
                  "limit=" + "1" * 5000):
        status, resp, _ = api.get(f"/restores?{query}")
        assert status in (200, 400), (query[:80], status, resp)
    assert ping(local_stack) == 200
    assert {r["id"] for r in rows_since(api, t0)} == before
    status, resp, _ = api.post("/restores", sc.as_database(f"h500_{uuid.uuid4().hex[:6]}", server=sc.TARGET_NOREADER,
                                                          secret=sc.SECRET_NOREADER), headers={"Idempotency-Key": key})
    assert status == 202, resp  # the refused bodies left no key behind
