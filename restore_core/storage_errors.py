"""What a failed Azure Storage call means for the app's own tables and queues (shared by ``store`` and ``queues``).

- the table or queue is gone (``TableNotFound``/``QueueNotFound``: a restarted storage emulator, a recreated account):
  the caller creates it again and repeats the call once, instead of failing every request until the process restarts;
- it is still being deleted (``TableBeingDeleted``/``QueueBeingDeleted``, Azure keeps the name for a while): retryable;
- no answer at all (a timeout, a refused connection): retryable, after the client's own bounded retries
  (:class:`config.StorageTimeouts`).
"""

from __future__ import annotations

from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

#: A call that got no answer (connect or read timeout, refused or reset connection).
NO_ANSWER = (ServiceRequestError, ServiceResponseError)


_GONE = ("TableNotFound", "QueueNotFound")


def error_code(exc: BaseException) -> str | None:
    code = getattr(exc, "error_code", None)
    return str(getattr(code, "value", code)) if code is not None else None


def is_missing(exc: BaseException) -> bool:
    """The table or queue itself does not exist (not: an entity or message is missing). Some calls (the tables SDK's
    ``create_entity``) leave ``error_code`` unset: the code is then read from the error body in the message."""
    if not isinstance(exc, HttpResponseError) or exc.status_code != 404:
        return False
    code = error_code(exc)
    return code in _GONE if code else any(f'"{name}"' in str(exc) or f">{name}<" in str(exc) for name in _GONE)


def is_being_deleted(exc: BaseException) -> bool:
    return error_code(exc) in ("TableBeingDeleted", "QueueBeingDeleted")
