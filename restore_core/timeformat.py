"""The one time format a restore request accepts: ISO-8601 date and time with a zone.

``YYYY-MM-DDTHH:MM[:SS[.fraction]]`` followed by ``Z`` or ``±HH:MM`` (e.g. ``2026-11-24T08:00:00Z``,
``2026-11-24T09:00:00+01:00``), as the README documents. pydantic's own datetime parsing is laxer: it takes unix
timestamps (numbers and digit strings, read as seconds or milliseconds depending on their size), a date alone, a space
for the ``T`` and ``+0100`` offsets. A request is exactly the place where such a guess is dangerous (``latest_before``
picks the point restored), so every other form is refused with the reason and the form to use.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

FORMAT_HINT = "an ISO-8601 time with a zone, e.g. 2026-11-24T08:00:00Z or 2026-11-24T09:00:00+01:00"
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2})$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_NUMBER = re.compile(r"^[+-]?\d+(?:\.\d*)?$")


def _what(value: str) -> str:
    """What the refused text looks like, for the message."""
    if _NUMBER.match(value):
        return "a number (a unix timestamp?), which is ambiguous (seconds or milliseconds, no zone)"
    if _DATE.match(value):
        return "a date without a time"
    if re.match(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$", value):
        return "a time without a timezone"
    return "not in that form"


def request_time(value: Any, field: str) -> Any:
    """``value`` unchanged when it is a datetime (built in code) or text in the accepted form; else ``ValueError``
    naming ``field``, what was given and the form to use."""
    if isinstance(value, datetime) or value is None:
        return value
    if isinstance(value, bool) or not isinstance(value, str):
        kind = "a number" if isinstance(value, (int, float)) and not isinstance(value, bool) else type(value).__name__
        raise ValueError(f"{field} must be {FORMAT_HINT} (a JSON string); got {kind}"
                         + (" (a unix timestamp?)" if kind == "a number" else ""))
    text = value.strip()
    if not _ISO.match(text):
        raise ValueError(f"{field} must be {FORMAT_HINT}; {text[:40]!r} is {_what(text)}")
    return text
