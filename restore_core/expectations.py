"""Honest expectations: how long a rehydration may take, how much data a chosen point leaves out, where a job shows.

Rehydration window. Azure Backup documents no duration for rehydrating a PostgreSQL recovery point; the figures
Microsoft does document are Azure Storage's for rehydrating archived blobs (learn.microsoft.com/azure/storage/blobs/
archive-rehydrate-overview, "Rehydration priority"):

    "Standard priority: The rehydration request is processed in the order it was received and might take up to
    15 hours to complete for objects under 10 GB in size."
    "High priority: The rehydration request is prioritized over standard priority requests and might complete in
    less than one hour for objects under 10 GB in size." ... "A high-priority rehydration may take longer than one
    hour, depending on blob size and current demand."

So a restore that waits for a rehydration shows (``expected`` on the status) the documented upper bound for its
priority counted from when the rehydration was asked for, the time left, and once that bound has passed, says so
(overdue: larger points take longer; the restore keeps checking until its deadline). It is computed when the status
is read, so it moves as time passes. Pure functions, no I/O.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from .models import Region, Status
from .records import RestoreRecord, iso, parse_time

#: Azure Storage's documented upper bound per priority, objects under 10 GB (quoted above).
DOCUMENTED_HOURS = {"Standard": 15.0, "High": 1.0}
SOURCE = "Azure Storage documents up to {hours:g} h for {priority} priority (objects under 10 GB; larger take longer)"


def duration_text(seconds: float) -> str:
    """``2d03h``, ``5h12m``, ``7m05s``, ``12s``."""
    s = int(max(0.0, seconds))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d}d{h:02d}h"
    if h:
        return f"{h}h{m:02d}m"
    return f"{m}m{s:02d}s" if m else f"{s}s"


def rehydration_started(rec: RestoreRecord) -> datetime | None:
    """When the rehydration was asked for: the stand-alone request, else the one-request job's trigger, else the
    rehydrate stage's start."""
    started = (rec.stage_times.get("rehydrate") or {}).get("started")
    return rec.rehydration_requested_at or rec.triggered_at or parse_time(started)


def priority_of(rec: RestoreRecord) -> str:
    return str((rec.request.get("rehydration") or {}).get("priority") or "Standard")


def rehydration_expected(rec: RestoreRecord, now: datetime) -> dict[str, Any] | None:
    """The expected completion window of a rehydration in progress (None when the restore waits for none)."""
    if rec.status not in (Status.REHYDRATING, Status.WAITING):
        return None
    started = rehydration_started(rec)
    if started is None:
        return None
    priority = priority_of(rec)
    hours = DOCUMENTED_HOURS.get(priority, DOCUMENTED_HOURS["Standard"])
    latest = started + timedelta(hours=hours)
    left = (latest - now).total_seconds()
    overdue = left < 0
    note = (f"past the documented {hours:g} h by {duration_text(-left)}: larger points take longer; checked until "
            f"the deadline {iso(rec.deadline)}" if overdue else f"up to {duration_text(left)} left")
    return {"what": f"rehydration, priority {priority}", "started": iso(started), "latest": iso(latest),
            "documented_hours": hours, "remaining_seconds": max(0, round(left)), "overdue": overdue,
            "note": note, "source": SOURCE.format(hours=hours, priority=priority)}


def rehydration_note(rec: RestoreRecord, now: datetime) -> str:
    """The wait stage's timeline words: "; expected by <time> (up to 13h20m left; Azure Storage documents ...)"."""
    exp = rehydration_expected(rec, now)
    if exp is None:
        return ""
    return f"; expected by {exp['latest']} ({exp['note']}; {exp['source']})"


def job_visible_in(rec: RestoreRecord) -> str | None:
    """Where the restore's Azure job can be seen. A Cross Region Restore job lives in the secondary region: the
    vault's own job list does not show it (the az CLI reads it with ``job show --use-secondary-region``, which calls
    ``fetchCrossRegionRestoreJob`` in the secondary region)."""
    if not rec.azure_job_id:
        return None
    primary = (rec.vault_info or {}).get("location")
    if rec.region == Region.SECONDARY.value:
        m = re.search(r"/resourceGroups/([^/]+)/providers/Microsoft\.DataProtection/backupVaults/([^/]+)",
                      rec.vault_id or "", re.IGNORECASE)
        rg, vault = (m.group(1), m.group(2)) if m else ("<resource-group>", "<vault>")
        return (f"secondary region {rec.restore_location} only (not in the vault's job list in {primary}): POST "
                f".../locations/{rec.restore_location}/fetchCrossRegionRestoreJob with sourceRegion {primary}; "
                f"az dataprotection job show --resource-group {rg} --vault-name {vault} --job-id "
                f"{rec.azure_job_id.rstrip('/').rsplit('/', 1)[-1]} --use-secondary-region")
    return (f"the vault's jobs in {primary or rec.restore_location}: az dataprotection job show --ids "
            f"{rec.azure_job_id} (or Backup center > Backup jobs)")
