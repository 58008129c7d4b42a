"""What a RecoveryPointNotFound rejection adds: the oldest and newest recovery points the backup instance has."""

from __future__ import annotations

from .arm_ids import BackupInstanceRef
from .deps import Deps
from .errors import AzureRejection, RetryableError
from .records import iso

#: At most this many points are read for the note (whole ARM pages until then).
MAX_POINTS = 1000


def available_points(deps: Deps, bi: BackupInstanceRef, regions: tuple[str, str] | None) -> str:
    """"the oldest is X and the newest Y" (or "it has none") for a RecoveryPointNotFound rejection."""
    try:
        points, _ = deps.dp.browse_recovery_points(bi, start=None, end=None, max_items=MAX_POINTS, regions=regions)
    except (AzureRejection, RetryableError):
        return ""
    complete = [p for p in points if not p.partial] or points
    if not complete:
        return "; the backup instance has no recovery points there"
    oldest, newest = min(complete, key=lambda p: p.time), max(complete, key=lambda p: p.time)
    return (f"; available: {len(points)} point(s), the oldest {oldest.id} of {iso(oldest.time)}, the newest "
            f"{newest.id} of {iso(newest.time)}")
