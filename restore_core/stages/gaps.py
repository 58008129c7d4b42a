"""The data-loss gap of the chosen recovery point (validate stage).

- ``latest_before`` T: the restored point is T minus its time older than what was asked for
  (``data_loss_gap_seconds`` on the row and the status, and the validated timeline line says it).
- Cross Region Restore of ``latest`` / ``latest_before``: points reach the secondary region later than the primary
  (Azure: replication of a new point to the secondary can take up to 12 h). One extra ARM call, only for secondary
  restores, lists the primary's points; when the primary holds a newer complete point the same selector would have
  taken, the restore carries a ``SecondaryRegionBehind`` warning with how much older the secondary's point is. The
  primary may be down (the reason for restoring cross-region): a failed read never blocks the restore, it only says
  that the gap could not be measured.
"""

from __future__ import annotations

from typing import Any

from ..arm_ids import BackupInstanceRef
from ..backup import RecoveryPointInfo, latest
from ..deps import Deps
from ..errors import AzureRejection, RetryableError
from ..expectations import duration_text
from ..models import Region, RestoreRequest
from ..records import iso


def _primary_best(points: list[RecoveryPointInfo], req: RestoreRequest) -> RecoveryPointInfo | None:
    before = req.recovery_point.latest_before
    return latest(p for p in points if not p.partial and (before is None or p.time < before))


def secondary_behind(deps: Deps, bi: BackupInstanceRef, req: RestoreRequest, point: RecoveryPointInfo,
                     secondary: str) -> list[dict[str, Any]]:
    """The ``SecondaryRegionBehind`` warning (or a note that the primary could not be read); [] when the secondary's
    point is as new as the primary's."""
    try:
        primary_points = deps.dp.list_recovery_points(bi, end=req.recovery_point.latest_before)
    except (AzureRejection, RetryableError) as exc:
        return [{"code": "DataLossGapUnknown",
                 "message": f"the primary region's recovery points could not be read ({exc}), so how much older the "
                            f"secondary region's point {point.id} of {iso(point.time)} is than the primary's newest "
                            "is not known"}]
    best = _primary_best(primary_points, req)
    if best is None or best.time <= point.time:
        return []
    gap = (best.time - point.time).total_seconds()
    return [{"code": "SecondaryRegionBehind", "recovery_point": point.id, "primary_recovery_point": best.id,
             "data_loss_gap_seconds": gap,
             "message": f"the secondary region {secondary} has recovery points up to {iso(point.time)} only: the "
                        f"primary's newest {'before the asked time ' if req.recovery_point.latest_before else ''}"
                        f"is {best.id} of {iso(best.time)}, {duration_text(gap)} newer; this Cross Region Restore "
                        f"loses that much more data (a new point can take up to 12 h to reach the secondary "
                        "region); restore in the primary region if it is available"}]


def data_loss_gap(req: RestoreRequest, point: RecoveryPointInfo, warnings: list[dict[str, Any]]) -> float | None:
    """How much older the restored point is than asked for: T minus the point (``latest_before`` T), else for a
    Cross Region Restore the secondary's lag behind the primary; None when nothing was asked for in time."""
    before = req.recovery_point.latest_before
    if before is not None:
        return max(0.0, (before - point.time).total_seconds())
    if req.region == Region.SECONDARY:
        lag = [w["data_loss_gap_seconds"] for w in warnings if w.get("code") == "SecondaryRegionBehind"]
        return float(lag[0]) if lag else None
    return None


def before_note(req: RestoreRequest, gap: float | None) -> str:
    """The validated timeline line's words for ``latest_before``."""
    before = req.recovery_point.latest_before
    if before is None or gap is None:
        return ""
    return f"; {duration_text(gap)} before the asked time {iso(before)} (data-loss gap)"
