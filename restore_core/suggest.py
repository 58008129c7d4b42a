"""Request errors that point at the nearest valid name ("did you mean `status`?")."""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping

from .errors import RequestError

#: Query parameters every HTTP route accepts: the function key (``?code=``).
ALWAYS_ALLOWED = frozenset({"code"})


def nearest(name: str, valid: Collection[str]) -> str | None:
    """The valid name closest to ``name`` (case-insensitive), if any is close."""
    lowered = {v.lower(): v for v in valid}
    hit = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[hit[0]] if hit else None


def check_params(params: Mapping[str, str], valid: Collection[str]) -> None:
    """Refuse (400) a query parameter the route does not know, naming the nearest valid one."""
    for name in params:
        if name in valid or name in ALWAYS_ALLOWED:
            continue
        guess = nearest(name, valid)
        hint = f"did you mean `{guess}`? " if guess else ""
        raise RequestError(f"unknown query parameter {name!r}", field=name,
                           fix=f"{hint}valid parameters: {', '.join(sorted(valid))}")
