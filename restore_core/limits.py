"""Size limits of Azure Storage and the bounds this service keeps well under them.

Azure's limits (Microsoft docs, "Understanding the Table service data model" and "Scalability and performance targets
for Table storage"; "Queue service REST API"):
- a Table string property holds up to 64 KiB, UTF-16 encoded (32 K characters of the Basic Multilingual Plane);
- an entity holds up to 1 MiB of property data in all; a row/partition key up to 1 KiB;
- a queue message holds up to 64 KiB; the Functions host and our clients send base64 text, so 48 KiB of payload.

The measure used throughout is the *JSON cost* of a text: its length once written by ``json.dumps`` with the default
``ensure_ascii`` (an ASCII character costs 1, a quote or backslash 2, a control character or a BMP character 6, a
character outside the BMP 12). It bounds both containers at once: the UTF-16 size of a text is at most twice its
JSON cost, and the bytes a JSON document takes on a queue equal its JSON cost.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

#: Azure Table Storage: largest string property (UTF-16 bytes) and largest entity (bytes of property data).
TABLE_PROPERTY_BYTES = 64 * 1024
TABLE_ENTITY_BYTES = 1024 * 1024
#: Azure Queue Storage: largest message (what is sent, i.e. the base64 text).
QUEUE_MESSAGE_BYTES = 64 * 1024

#: Our bounds, in JSON cost (see the module docstring): free text (an Azure error message, a fix, a timeline line)...
TEXT_COST = 4096
#: ...short codes and states that come from Azure (an error code, a job status)...
CODE_COST = 256
#: ...JSON-valued properties that hold Azure text (warnings, timeline data)...
JSON_COST = 16 * 1024
#: ...and the stored request (checked at intake, never cut: a request that does not fit is refused with a 413).
REQUEST_COST = 24 * 1024

_SHORT_ESCAPES = frozenset('"\\\b\f\n\r\t')


def char_cost(ch: str) -> int:
    o = ord(ch)
    if ch in _SHORT_ESCAPES:
        return 2
    if o < 0x20:
        return 6
    if o < 0x80:
        return 1
    return 6 if o < 0x10000 else 12


def cost(text: str) -> int:
    """Length of ``json.dumps(text)`` without the two quotes."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return len(text)
    return sum(char_cost(ch) for ch in text)


def clip(text: str, limit: int = TEXT_COST) -> str:
    """``text`` itself when its JSON cost is within ``limit``; else its head plus a note of how long it was."""
    if len(text) * 12 <= limit or cost(text) <= limit:
        return text
    note = f" ... [cut: {len(text)} characters in all]"
    budget, used = limit - len(note), 0
    for i, ch in enumerate(text):
        used += char_cost(ch)
        if used > budget:
            return text[:i] + note
    return text  # not reached: the cost was over the limit


def clip_optional(text: str | None, limit: int = TEXT_COST) -> str | None:
    return None if text is None else clip(text, limit)


def dumps(value: Any) -> str:
    """Compact, sorted, ASCII-only JSON (its length is its JSON cost)."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def clip_leaves(value: Any, limit: int) -> Any:
    """``value`` with every string (keys included) clipped to ``limit``."""
    if isinstance(value, str):
        return clip(value, limit)
    if isinstance(value, Mapping):
        return {clip(str(k), limit): clip_leaves(v, limit) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clip_leaves(v, limit) for v in value]
    return value


def bounded_json(value: Any, limit: int = JSON_COST) -> str:
    """JSON of ``value`` within ``limit``: as is when it fits, else with its strings clipped harder and harder, else
    (lists) only the first items plus a note, else a note of the same type (list or object)."""
    text = dumps(value)
    if len(text) <= limit:
        return text
    for leaf in (TEXT_COST, 1024, 256, 64):
        text = dumps(clip_leaves(value, leaf))
        if len(text) <= limit:
            return text
    note = {"truncated": f"{len(dumps(value))} characters of JSON cut to fit the {limit} limit"}
    if isinstance(value, (list, tuple)):
        kept: list[Any] = []
        for item in clip_leaves(value, 64):
            if len(dumps([*kept, item, note])) > limit:
                break
            kept.append(item)
        return dumps([*kept, note])
    return dumps(note)


class StorageLimitError(ValueError):
    """An entity Azure Table Storage would refuse (``code``: ``PropertyValueTooLarge`` or ``EntityTooLarge``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _value_bytes(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode("utf-16-le")) + 4
    if isinstance(value, bytes):
        return len(value) + 4
    return 8


def check_entity(entity: Mapping[str, Any]) -> None:
    """Raise :class:`StorageLimitError` for an entity Azure Table Storage would refuse (the size formula Microsoft
    documents: 4 bytes + 2 per key character + per property 8 bytes + 2 per name character + the value's size)."""
    total = 4
    for name, value in entity.items():
        size = _value_bytes(value)
        if isinstance(value, str) and size - 4 > TABLE_PROPERTY_BYTES:
            raise StorageLimitError("PropertyValueTooLarge", f"property {name} is {size - 4} bytes in UTF-16; a "
                                    f"Table string property holds at most {TABLE_PROPERTY_BYTES}")
        total += 8 + 2 * len(name) + size
    if total > TABLE_ENTITY_BYTES:
        raise StorageLimitError("EntityTooLarge", f"the entity is {total} bytes; a Table entity holds at most "
                                f"{TABLE_ENTITY_BYTES}")


def queue_message_bytes(text: str) -> int:
    """Size of ``text`` on an Azure queue as base64 of its UTF-8 bytes (what the host and our clients send)."""
    n = len(text.encode("utf-8"))
    return 4 * ((n + 2) // 3)
