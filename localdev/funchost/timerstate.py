"""Timer state kept where the real host keeps it (``AzureWebJobsStorage``, container ``azure-webjobs-hosts``).

- ``timers/{hostId}/{timerName}/status``: the ``useMonitor`` schedule status ``{"Last", "Next", "LastUpdated"}``
  (azure-webjobs-sdk-extensions ``StorageScheduleMonitorV2``). On start the timer checks it and, when an occurrence
  was missed while no host ran, invokes at once with ``past_due`` (``ScheduleMonitor.CheckPastDueAsync``).
- ``locks/{hostId}/{timerName}.Listener``: a blob lease; only the host instance holding it runs the timer
  (``[Singleton(Mode = SingletonMode.Listener)]`` on the real ``TimerListener``; host.json ``singleton``).

``timerName`` is ``Host.Functions.<function name>``, the script host's full function name. Times are UTC.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobLeaseClient, ContainerClient

from localdev.funchost.config import HostError, SingletonConfig

log = logging.getLogger("funchost")

CONTAINER = "azure-webjobs-hosts"
HOST_ID_SETTING = "AzureFunctionsWebHost__hostid"
_HOST_ID = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?!-)){0,31}$")
_NEVER = "0001-01-01T00:00:00+00:00"  # ScheduleStatus.Never / default(DateTime)
_SAME = 0.001  # seconds: two recorded times this close are the same occurrence


def host_id(settings: Mapping[str, str] | Any, app_dir: Path) -> str:
    """``AzureFunctionsWebHost__hostid`` when set (1-32 lowercase letters, digits, single dashes), else the app
    folder's name in that form; instances of the same app share it, so they share timer status and locks."""
    value = settings.get(HOST_ID_SETTING)
    if value:
        if not _HOST_ID.match(value) or value.endswith("-"):
            raise HostError(f"setting {HOST_ID_SETTING}={value!r}: use 1-32 lowercase letters, digits and single "
                            "dashes, not starting or ending with a dash")
        return str(value)
    derived = re.sub(r"-+", "-", re.sub(r"[^a-z0-9]", "-", app_dir.name.lower()))[:32].strip("-")
    return derived or "funchost"


def timer_name(function_name: str) -> str:
    return f"Host.Functions.{function_name}"


def _iso(t: float | None) -> str:
    return _NEVER if t is None else datetime.fromtimestamp(t, UTC).isoformat()


def _ts(text: Any) -> float | None:
    if not text or str(text).startswith("0001-01-01"):
        return None
    parsed = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


@dataclass(frozen=True)
class ScheduleStatus:
    last: float | None
    next: float
    last_updated: float | None

    def to_json(self) -> str:
        return json.dumps({"Last": _iso(self.last), "Next": _iso(self.next), "LastUpdated": _iso(self.last_updated)})

    @classmethod
    def from_json(cls, text: str) -> ScheduleStatus:
        doc = json.loads(text)
        nxt = _ts(doc.get("Next"))
        if nxt is None:
            raise ValueError("status has no Next")
        return cls(last=_ts(doc.get("Last")), next=nxt, last_updated=_ts(doc.get("LastUpdated")))


def ensure_container(container: ContainerClient) -> None:
    try:
        container.create_container()
    except ResourceExistsError:
        pass


class ScheduleMonitor:
    """The ``useMonitor`` status blob of one timer."""

    def __init__(self, container: ContainerClient, host: str, function_name: str) -> None:
        self.blob = container.get_blob_client(f"timers/{host}/{timer_name(function_name)}/status")

    def get(self) -> ScheduleStatus | None:
        try:
            return ScheduleStatus.from_json(self.blob.download_blob().readall().decode("utf-8"))
        except ResourceNotFoundError:
            return None
        except (ValueError, KeyError) as exc:
            log.warning("timer status %s is unreadable (%s); starting over", self.blob.blob_name, exc)
            return None

    def update(self, status: ScheduleStatus) -> None:
        try:
            self.blob.upload_blob(status.to_json().encode("utf-8"), overwrite=True)
        except AzureError as exc:  # best effort, like the real monitor
            log.error("timer status %s not updated: %s", self.blob.blob_name, type(exc).__name__)

    def check_past_due(self, now: float, next_after: Callable[[float], float]) -> bool:
        """Whether an occurrence was missed since the status was last written (writes the first status)."""
        status = self.get()
        if status is None:
            self.update(ScheduleStatus(last=None, next=next_after(now), last_updated=now))
            return False
        basis = status.last if status.last is not None else status.last_updated
        expected, updated = (next_after(basis), basis) if basis is not None else (next_after(now), now)
        if abs(status.next - expected) > _SAME:  # the schedule changed since: re-base, never "past due" for that
            if now > expected:
                expected, updated = next_after(now), now
            status = ScheduleStatus(last=None, next=expected, last_updated=updated)
            self.update(status)
        return now > status.next

    def record_run(self, invoked_at: float, next_after: Callable[[float], float]) -> None:
        self.update(ScheduleStatus(last=invoked_at, next=next_after(invoked_at), last_updated=invoked_at))


class ListenerLock:
    """The blob lease that lets one host instance run a timer; renewed at half its period while held."""

    def __init__(self, container: ContainerClient, host: str, function_name: str, cfg: SingletonConfig) -> None:
        self.blob = container.get_blob_client(f"locks/{host}/{timer_name(function_name)}.Listener")
        self.period = cfg.listener_lock_period
        self.recovery = cfg.listener_lock_recovery_polling_interval
        self.lost = threading.Event()
        self._lease: BlobLeaseClient | None = None
        self._released = threading.Event()

    def try_acquire(self) -> bool:
        try:
            try:
                self.blob.upload_blob(b"", overwrite=False)
            except ResourceExistsError:
                pass
            lease = BlobLeaseClient(self.blob)
            lease.acquire(lease_duration=int(self.period))
        except HttpResponseError as exc:
            if exc.status_code != 409:  # 409 LeaseAlreadyPresent: another instance runs this timer
                log.warning("listener lock %s not acquired: %s", self.blob.blob_name, type(exc).__name__)
            return False
        except AzureError as exc:
            log.warning("listener lock %s not acquired: %s", self.blob.blob_name, type(exc).__name__)
            return False
        self._lease = lease
        self.lost.clear()
        self._released = released = threading.Event()
        threading.Thread(target=self._renew_loop, args=(lease, released), daemon=True,
                         name=f"lock-{self.blob.blob_name}").start()
        return True

    def _renew_loop(self, lease: BlobLeaseClient, released: threading.Event) -> None:
        while not released.wait(self.period / 2):
            try:
                lease.renew()
            except AzureError as exc:
                log.error("listener lock %s lost (%s): this instance stops running the timer",
                          self.blob.blob_name, type(exc).__name__)
                self.lost.set()
                return

    def release(self) -> None:
        lease, self._lease = self._lease, None
        self._released.set()
        if lease is None:
            return
        try:
            lease.release()
        except AzureError as exc:
            log.warning("listener lock %s not released (%s); it expires by itself", self.blob.blob_name,
                        type(exc).__name__)
