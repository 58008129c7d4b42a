"""Workers: the real restore work behind a restore job, each in its own thread.

Consumes: a :class:`Job`, the :class:`DataPlane` and the checked target. Produces: a restored PostgreSQL database
(``pg_restore`` as the Key Vault secret's user) or dump files copied into a blob container, then marks the job's
work done (``work_done_at``, ``work_error``). Any failure becomes a failed job, never a dead thread. Jobs that skip
work (an injected ``job_fail`` or a cancelled job) are marked done at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from .dataplane import ConnInfo, DataPlane, DataPlaneError
from .model import Job, RecoveryPoint
from .timeutil import SimClock
from .world import Container, Server

log = logging.getLogger("dpemu.workers")

Work = Callable[[], None]


def finish(job: Job, clock: SimClock, error: DataPlaneError | None) -> None:
    job.work_error = error
    job.work_done_at = clock.now()
    job.done.set()


def start(job: Job, work: Work) -> None:
    threading.Thread(target=work, name=f"restore-{job.id}", daemon=True).start()


def _worker(clock: SimClock, job: Job, what: str, crash_code: str, work: Callable[[], None]) -> Work:
    """The job's thread: run ``work`` unless the job skips it; any failure becomes a failed job (``crash_code`` for an
    unexpected one), never a dead thread."""
    def run() -> None:
        if job.skips_work:
            return finish(job, clock, None)
        err = None
        try:
            work()
        except DataPlaneError as e:
            err = e
        except Exception as e:  # noqa: BLE001 - any failure becomes a failed job, never a dead thread
            log.exception("%s job %s crashed", what, job.id)
            err = DataPlaneError(crash_code, f"{what} failed: {type(e).__name__}")
        finish(job, clock, err)
        log.info("%s job %s work finished (%s)", what, job.id, err.code if err else "ok")
    return run


def no_work(clock: SimClock, job: Job) -> Work:
    """The emulator's ``data_plane`` is off: the job's work is done at once (it still runs its duration)."""
    return lambda: finish(job, clock, None)


def db_worker(data: DataPlane, clock: SimClock, job: Job, srv: Server, conn: ConnInfo, dbname: str,
              rp: RecoveryPoint) -> Work:
    """``pg_restore`` the point's dump into a new database ``dbname`` on the target server's cluster."""
    def work() -> None:
        cinfo = data.cluster(srv.cluster)
        target = ConnInfo(cinfo.host, cinfo.port, conn.user, conn.password, conn.database)
        data.restore_database(prefix=data.blob_prefix(job.vault.name, job.bi.name, rp.id), conn=target,
                              dbname=dbname)
    return _worker(clock, job, "restore", "UserErrorRestoreFailed", work)


def files_worker(data: DataPlane, clock: SimClock, job: Job, c: Container, names: dict[str, str],
                 rp: RecoveryPoint, layout: str = "custom") -> Work:
    """Copy the point's datastore files into container ``c`` under ``names`` (datastore file -> blob name), the
    database archives in ``layout`` (the emulator's ``files_layout`` when the restore was triggered)."""
    def work() -> None:
        data.restore_files(prefix=data.blob_prefix(job.vault.name, job.bi.name, rp.id),
                           target_container=c.azurite_container, names=names, layout=layout)
    return _worker(clock, job, "writing files", "UserErrorContainerNotAccessible", work)
