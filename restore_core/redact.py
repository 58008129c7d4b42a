"""Secret redaction: masks credentials in free text before it reaches a log line, a span or a table.

Consumes: any text (log messages, exception messages, URLs, connection strings, DSNs).
Produces: the same text with secret *values* replaced by ``***`` (:func:`redact`), the secret values still present
(:func:`find_secrets`, used by the secrets-scan test), and a :class:`logging.Filter` that redacts log records
(installed by ``restore_core.telemetry.get_logger``).

What counts as a secret: connection-string keys (``AccountKey=``, ``SharedAccessKey=``, ``SharedAccessSignature=``,
``Password=``/``Pwd=``, ``ClientSecret=``), ``sig=`` and ``code=`` query parameters (SAS signature, function key),
``Bearer <token>``, the password in ``scheme://user:password@host`` URLs (``postgresql://`` and others),
``password=...`` in libpq keyword DSNs and ``"password": "..."``-style JSON members.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

MASK = "***"

# Each pattern has exactly three groups: (prefix kept)(secret value)(suffix kept).
_PATTERNS: tuple[re.Pattern[str], ...] = (
    # connection strings and libpq keyword DSNs: Key=value; / key='quoted value'
    re.compile(
        r"(\b(?:AccountKey|SharedAccessKey|SharedAccessSignature|Password|Pwd|ClientSecret|AccessKey)\s*=\s*')"
        r"((?:[^'\\]|\\.)*)(')",
        re.IGNORECASE,
    ),
    re.compile(
        r"(\b(?:AccountKey|SharedAccessKey|SharedAccessSignature|Password|Pwd|ClientSecret|AccessKey)\s*=\s*)"
        r"([^;\s\"'&,]+)()",
        re.IGNORECASE,
    ),
    # SAS signature and Functions keys in URLs
    re.compile(r"([?&;]sig=)([^&;\s\"'#]+)()", re.IGNORECASE),
    re.compile(r"([?&]code=)([^&;\s\"'#]+)()", re.IGNORECASE),
    # Authorization: Bearer <token>
    re.compile(r"(\bBearer\s+)([A-Za-z0-9\-._~+/]+=*)()", re.IGNORECASE),
    # scheme://user:password@host (postgresql://, amqps://, https://...)
    re.compile(r"(\b[a-z][a-z0-9+.\-]*://[^:/@\s\"']*:)([^@/\s\"']+)(@)", re.IGNORECASE),
    # JSON members such as "password": "...", "accountKey": "...", "token": "..."
    re.compile(
        r"(\"(?:password|pwd|accountKey|sharedAccessKey|clientSecret|secret|token|access_token|sasToken)\"\s*:\s*\")"
        r"((?:[^\"\\]|\\.)*)(\")",
        re.IGNORECASE,
    ),
)


def _mask(match: re.Match[str]) -> str:
    return match.group(1) + MASK + match.group(3)


def redact(text: str) -> str:
    """Return ``text`` with every recognised secret value replaced by ``***`` (idempotent)."""
    for pattern in _PATTERNS:
        text = pattern.sub(_mask, text)
    return text


def find_secrets(text: str, known_secrets: Iterable[str] = ()) -> list[str]:
    """Secret values still visible in ``text``: pattern matches that are not masked, plus every non-empty
    ``known_secrets`` entry (e.g. the Azurite account key, a test password) that occurs verbatim.

    Returns the offending values in order of discovery, without duplicates; an empty list means clean.
    """
    found: list[str] = []
    for pattern in _PATTERNS:
        for match in pattern.finditer(text):
            value = match.group(2)
            if value and value != MASK and value not in found:
                found.append(value)
    for secret in known_secrets:
        if secret and secret in text and secret not in found:
            found.append(secret)
    return found


_STANDARD_RECORD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class RedactingFilter(logging.Filter):
    """Logging filter that redacts the formatted message, string ``extra`` fields and exception text.

    The message is formatted once (``msg % args``) and stored back with ``args=None``, so handlers see the
    redacted text. An exception whose message contains a secret is replaced by a :class:`RedactedError`
    carrying the redacted message and the original traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed format string: keep the raw template, redacted
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD_RECORD_ATTRS and isinstance(value, str):
                record.__dict__[key] = redact(value)
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            text = str(exc)
            clean = redact(text)
            if clean != text:
                replacement = RedactedError(f"{type(exc).__name__}: {clean}")
                record.exc_info = (RedactedError, replacement, record.exc_info[2])
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class RedactedError(Exception):
    """Stands in for an exception whose message contained a secret (see :class:`RedactingFilter`)."""
