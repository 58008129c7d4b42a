"""Unit tests of restore_core.redact (pure logic)."""

from __future__ import annotations

import logging

import pytest

from restore_core.redact import MASK, RedactedError, RedactingFilter, find_secrets, redact

AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@pytest.mark.parametrize(("text", "secret"), [
    (f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};QueueEndpoint=x",
     AZURITE_KEY),
    ("Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=root;SharedAccessKey=abcDEF123+/=;", "abcDEF123+/="),
    ("BlobEndpoint=https://a.blob.core.windows.net/;SharedAccessSignature=sv=2022-11-02&ss=b&sig=XyZ%2B1", "XyZ%2B1"),
    ("Server=db;Database=app;User Id=admin;Password=hunter2!x;", "hunter2!x"),
    ("Server=db;Pwd=s3cr3t;", "s3cr3t"),
    ("host=127.0.0.1 port=5432 user=postgres password='p a ss' dbname=x", "p a ss"),
    ("host=127.0.0.1 password=plainpw dbname=x", "plainpw"),
    ("GET https://acct.blob.core.windows.net/c/b?sv=2022&se=2026&sp=r&sig=AbC%2Fdef%3D HTTP/1.1", "AbC%2Fdef%3D"),
    ("POST http://127.0.0.1:7071/api/restores?code=funcKEY123==", "funcKEY123=="),
    ("Authorization: Bearer eyJhbGciOi.JSUzI1NiJ9-_abc", "eyJhbGciOi.JSUzI1NiJ9-_abc"),
    ("dsn postgresql://alice:pa55word@127.0.0.1:5432/app", "pa55word"),
    ("dsn postgres://bob:x%40y@host/db", "x%40y"),
    ('{"user": "u", "password": "jsonsecret", "n": 1}', "jsonsecret"),
])
def test_redact_masks_secret_values_and_keeps_context(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out
    assert MASK in out
    assert find_secrets(out) == []
    assert secret in find_secrets(text)


def test_redact_keeps_non_secret_text_and_is_idempotent() -> None:
    text = "restore r-1 stage=wait AccountName=devstoreaccount1 https://127.0.0.1:8443/x?api-version=2026-06-01"
    assert redact(text) == text
    once = redact(f"AccountKey={AZURITE_KEY};")
    assert redact(once) == once == f"AccountKey={MASK};"


def test_redact_keeps_user_and_host_of_urls() -> None:
    assert redact("postgresql://alice:pw@db.example:5432/app") == f"postgresql://alice:{MASK}@db.example:5432/app"


def test_find_secrets_reports_known_secrets_present_verbatim() -> None:
    text = "token value is abcdef123456 somewhere"
    assert find_secrets(text, known_secrets=["abcdef123456", "", "absent-secret"]) == ["abcdef123456"]
    assert find_secrets("nothing here", known_secrets=["abcdef123456"]) == []


def _record(msg: str, *args: object, exc: BaseException | None = None, **extra: object) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc else None
    rec = logging.LogRecord("restore_core.x", logging.INFO, __file__, 1, msg, args, exc_info)
    rec.__dict__.update(extra)
    return rec


def test_filter_redacts_message_args_extras_and_exceptions() -> None:
    problem = "cannot connect AccountKey=" + AZURITE_KEY + ";"
    try:
        raise ValueError(problem)
    except ValueError as err:
        rec = _record("conn %s for %s", f"AccountKey={AZURITE_KEY}", "r-1", exc=err,
                      dsn="postgresql://u:pw123@h/db", restore_id="r-1")
    assert RedactingFilter().filter(rec) is True
    assert rec.getMessage() == f"conn AccountKey={MASK} for r-1"
    assert rec.__dict__["dsn"] == f"postgresql://u:{MASK}@h/db"
    assert rec.__dict__["restore_id"] == "r-1"
    assert rec.exc_info is not None and rec.exc_info[0] is RedactedError
    assert AZURITE_KEY not in str(rec.exc_info[1]) and "ValueError" in str(rec.exc_info[1])
    formatted = logging.Formatter().format(rec)
    assert find_secrets(formatted, [AZURITE_KEY]) == []


def test_filter_keeps_exceptions_without_secrets() -> None:
    err = KeyError("missing")
    rec = _record("boom", exc=err)
    RedactingFilter().filter(rec)
    assert rec.exc_info is not None and rec.exc_info[1] is err
