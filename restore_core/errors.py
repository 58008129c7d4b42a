"""One error taxonomy for the whole pipeline.

- :class:`RequestError`: bad input; answered with 400 (HTTP) or recorded as a rejection (queue); changes nothing.
- :class:`AzureRejection`: Azure (or our pre-checks) refused the restore; ends the restore as ``rejected``/``failed``
  with the Azure error code, a plain explanation and the exact fix.
- :class:`RetryableError`: transient; the pipeline lets the queue redeliver (or re-enqueues with ``retry_after``).
- :class:`PermanentError`: a bug or an impossible state; the restore fails with the message, never retried.

"Not ready yet" is never an exception: stages return an outcome with a delay.
SDK errors are wrapped at the client boundary (``dp_client``) with ``raise ... from exc``.
"""

from __future__ import annotations

from typing import TypeVar


class RestoreError(Exception):
    """Base of every error this package raises on purpose."""


class RequestError(RestoreError):
    """The request is invalid; ``field`` names what to change, ``fix`` says how."""

    def __init__(self, message: str, *, field: str | None = None, fix: str | None = None,
                 code: str = "InvalidRequest", status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.fix = fix
        self.code = code
        self.status = status

    def to_dict(self) -> dict[str, str | None]:
        return {"code": self.code, "message": self.message, "field": self.field, "fix": self.fix}


class AzureRejection(RestoreError):
    """A rule or Azure refused the restore. ``code`` is Azure's error code where Azure gave one."""

    def __init__(self, code: str, message: str, fix: str | None = None, *, status: int | None = None,
                 from_operation: bool = False) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.fix = fix
        #: the HTTP status of the refusal (None: a rule of ours, or a long-running operation that ended Failed)
        self.status = status
        #: Azure ran the long-running operation and reported it Failed (a verdict, not a transport problem)
        self.from_operation = from_operation


class RetryableError(RestoreError):
    """Transient failure (5xx, connection reset, throttled beyond the client's retries)."""

    def __init__(self, message: str, *, retry_after: float | None = None, throttled: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        #: ARM answered 429: the call was refused before doing anything (safe to send again after retry_after)
        self.throttled = throttled


class PermanentError(RestoreError):
    """Cannot succeed by retrying (malformed message, impossible state)."""


T = TypeVar("T")


def require(value: T | None, what: str) -> T:
    """An internal invariant: ``value`` is set (not None, not empty). Broken, it raises :class:`PermanentError` — the
    pipeline fails the restore at once with the reason instead of retrying a bug five times (``assert`` would)."""
    if value is None or value == "":
        raise PermanentError(f"internal invariant broken: {what}")
    return value
