"""Unit tests of restore_core.redact (pure logic)."""

from __future__ import annotations

import base64
import logging
import secrets

import pytest

from restore_core.redact import MASK, RedactedError, RedactingFilter, find_secrets, redact

# Secrets are generated per run (no credential-looking literal in the repository); each case adds the
# characters its format allows (base64 padding, URL escapes, spaces in quoted values...).
FAKE_KEY = base64.b64encode(secrets.token_bytes(64)).decode()


def _secret(suffix: str) -> str:
    return "S" + secrets.token_hex(8) + suffix


@pytest.mark.parametrize(("template", "suffix"), [
    ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={s};QueueEndpoint=x", "+/=="),
    ("Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=root;SharedAccessKey={s};", "+/="),
    ("BlobEndpoint=https://a.blob.core.windows.net/;SharedAccessSignature=sv=2022-11-02&ss=b&sig={s}", "%2B1"),
    ("Server=db;Database=app;User Id=admin;Password={s};", "!x"),
    ("Server=db;Pwd={s};", ""),
    ("host=127.0.0.1 port=5432 user=postgres password='{s}' dbname=x", " a b"),
    ("host=127.0.0.1 password={s} dbname=x", ""),
    ("GET https://acct.blob.core.windows.net/c/b?sv=2022&se=2026&sp=r&sig={s} HTTP/1.1", "%2Fd%3D"),
    ("POST http://127.0.0.1:7071/api/restores?code={s}", "=="),
    ("Authorization: Bearer {s}", ".JSUzI1NiJ9-_abc"),
    ("dsn postgresql://alice:{s}@127.0.0.1:5432/app", ""),
    ("dsn postgres://bob:{s}@host/db", "%40y"),
    ('{{"user": "u", "password": "{s}", "n": 1}}', ""),
])
def test_redact_masks_secret_values_and_keeps_context(template: str, suffix: str) -> None:
    secret = _secret(suffix)
    text = template.format(s=secret)
    out = redact(text)
    assert secret not in out
    assert MASK in out
    assert find_secrets(out) == []
    assert secret in find_secrets(text)


def test_redact_keeps_non_secret_text_and_is_idempotent() -> None:
    text = "restore r-1 stage=wait AccountName=devstoreaccount1 https://127.0.0.1:8443/x?api-version=2026-06-01"
    assert redact(text) == text
    once = redact(f"AccountKey={FAKE_KEY};")
    assert redact(once) == once == f"AccountKey={MASK};"


def test_redact_keeps_user_and_host_of_urls() -> None:
    assert redact("postgresql://alice:pw@db.example:5432/app") == f"postgresql://alice:{MASK}@db.example:5432/app"


def test_find_secrets_reports_known_secrets_present_verbatim() -> None:
    known = _secret("")
    text = f"token value is {known} somewhere"
    assert find_secrets(text, known_secrets=[known, "", "absent-secret"]) == [known]
    assert find_secrets("nothing here", known_secrets=[known]) == []


def _record(msg: str, *args: object, exc: BaseException | None = None, **extra: object) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc else None
    rec = logging.LogRecord("restore_core.x", logging.INFO, __file__, 1, msg, args, exc_info)
    rec.__dict__.update(extra)
    return rec


def test_filter_redacts_message_args_extras_and_exceptions() -> None:
    pw = _secret("")
    problem = "cannot connect AccountKey=" + FAKE_KEY + ";"
    try:
        raise ValueError(problem)
    except ValueError as err:
        rec = _record("conn %s for %s", "AccountKey=" + FAKE_KEY, "r-1", exc=err,
                      dsn="postgresql://u:" + pw + "@h/db", restore_id="r-1")
    assert RedactingFilter().filter(rec) is True
    assert rec.getMessage() == f"conn AccountKey={MASK} for r-1"
    assert rec.__dict__["dsn"] == f"postgresql://u:{MASK}@h/db"
    assert rec.__dict__["restore_id"] == "r-1"
    assert rec.exc_info is not None and rec.exc_info[0] is RedactedError
    assert FAKE_KEY not in str(rec.exc_info[1]) and "ValueError" in str(rec.exc_info[1])
    formatted = logging.Formatter().format(rec)
    assert find_secrets(formatted, [FAKE_KEY]) == []


def test_filter_keeps_exceptions_without_secrets() -> None:
    err = KeyError("missing")
    rec = _record("boom", exc=err)
    RedactingFilter().filter(rec)
    assert rec.exc_info is not None and rec.exc_info[1] is err
