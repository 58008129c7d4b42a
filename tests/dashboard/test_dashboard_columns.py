"""The dashboard's new columns (issue 13 item 3) in headless Chromium against the stub API: source, target, region,
point time, started by, reason and fix; times in UTC whatever the browser's zone; every active restore however many
pages the API needs; the legend and the detail near the top; a screenshot check of the columns."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from .pngcheck import decode
from .stub_api import StubState, iso, make_restore, stub_api
from .test_dashboard_page import _row, _section, run_chromium, seed

POINT = datetime(2026, 11, 24, 7, 45, 12, tzinfo=UTC)


def seed_columns(state: StubState) -> None:
    seed(state)
    crr = make_restore("r-crr", "succeeded", None, age_s=2000, stages=[("validate", 0, 10), ("trigger", 10, 20),
                                                                       ("monitor", 20, 900)])
    crr.update(region="secondary", restore_location="northeurope", point_time=iso(POINT),
               started_by={"door": "alert", "alert_id": "a-42"}, target_name="pgsrv-dr/orders_crr")
    state.add(crr)
    rejected = make_restore("r-rejected", "rejected", "validate", age_s=1500, stages=[("validate", 0, 5)],
                            error={"code": "UserErrorDatabaseNameAlreadyInUse", "message": "orders exists",
                                   "fix": "choose a new target.database_name"})
    state.add(rejected)


def _cells(row: str) -> dict[str, str]:
    return {k: re.sub(r"<[^>]+>", "", v) for k, v in re.findall(r'<td class="([\w ]+)"[^>]*>(.*?)</td>', row, re.S)}


def test_rows_show_source_target_region_point_time_started_by_and_reason(tmp_path: Path) -> None:
    with stub_api() as (url, state):
        seed_columns(state)
        # the browser's own zone is New York: the page must still show UTC
        page = run_chromium(url + "/dashboard/index.html", tmp_path, "--dump-dom", tz="America/New_York").stdout
    heads = re.findall(r"<th[^>]*>([^<]*)</th>", _section(page, "recent"))
    assert heads[3:9] == ["Source", "Target", "Region", "Point time (UTC)", "Started by", "Elapsed"]
    assert heads[9] == "Reason and fix"
    crr = _cells(_row(page, "r-crr"))
    assert crr["source"] == "pgsrv01/src_r-crr" and crr["target"] == "pgsrv-dr/orders_crr"
    assert crr["region"] == "secondary · northeurope" and crr["by"] == "alert"
    assert crr["point"] == "2026-11-24 07:45:12"  # UTC, not New York's 02:45:12
    assert 'title="alert_id=a-42; created ' in _row(page, "r-crr")
    assert crr["reason none"] == "-"
    rejected = _cells(_row(page, "r-rejected"))
    assert rejected["reason"] == ("UserErrorDatabaseNameAlreadyInUse: orders existsFix: choose a new "
                                  "target.database_name")
    active = _cells(_row(page, "r-active"))
    assert "reason" not in active and active["next"].startswith("in ") and active["job"] == "job-1"
    assert re.search(r'data-state="ok">updated \d\d:\d\d:\d\d UTC<', page)
    detail = re.search(r'<section id="detail".*?</section>', page, re.S)
    assert detail and "<dt>Created (UTC)</dt>" in detail.group(0)


def test_more_than_100_active_restores_all_show(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    with stub_api() as (url, state):
        state.page_size = 40  # the API pages at 40 here: 130 active restores need 4 pages
        for i in range(130):
            state.add(make_restore(f"r-{i:03d}", "restoring", "monitor", age_s=60 + i, now=now,
                                   stages=[("monitor", 0, None)]))
        for i in range(120):  # finished restores newer than every active one cannot push them out
            state.add(make_restore(f"done-{i:03d}", "succeeded", None, age_s=1 + i * 0.1, now=now,
                                   stages=[("monitor", 0, 1)]))
        page = run_chromium(url + "/dashboard/index.html", tmp_path, "--dump-dom").stdout
        lists = [r["query"] for r in state.requests if r["path"] == "/dashboard/api/restores"]
    active = _section(page, "active")
    assert re.search(r'id="active-count">130<', page)
    assert sorted(re.findall(r'data-id="(r-\d+)"', active)) == [f"r-{i:03d}" for i in range(130)]
    assert re.findall(r'data-id="(r-\d+)"', active)[:2] == ["r-000", "r-001"]  # newest first
    assert "done-" not in active
    actives = [q for q in lists if q.get("status") == "active"]
    assert [q.get("continuation") for q in actives[:4]] == [None, "40", "80", "120"]  # every page followed
    recent = [q for q in lists if q.get("status") == "succeeded,failed,rejected,cancelled"]
    assert recent and recent[0].get("limit") == "50"


def test_legend_and_detail_come_before_the_tables(tmp_path: Path) -> None:
    with stub_api() as (url, state):
        seed(state)
        page = run_chromium(url + "/dashboard/index.html", tmp_path, "--dump-dom").stdout
    at = {name: page.index(marker) for name, marker in (
        ("summary", 'id="summary"'), ("legend", 'id="legend"'), ("detail", '<section id="detail"'),
        ("active", 'id="active"'), ("recent", 'id="recent"'))}
    assert at["summary"] < at["legend"] < at["detail"] < at["active"] < at["recent"]
    assert '<span data-stage="validate">' in page[at["legend"]:at["detail"]]


def _where(shot: Path, rgb: tuple[int, int, int]) -> list[tuple[int, int]]:
    width, _, bpp, rows = decode(shot)
    return [(x, y) for y, line in enumerate(rows) for x in range(width)
            if line[x * bpp] == rgb[0] and line[x * bpp + 1] == rgb[1] and line[x * bpp + 2] == rgb[2]]


def _filled(points: list[tuple[int, int]], least: int = 20) -> list[tuple[int, int]]:
    """The points in pixel columns that hold at least ``least`` of them: filled areas, not stray anti-aliasing."""
    per_x: dict[int, int] = {}
    for x, _ in points:
        per_x[x] = per_x.get(x, 0) + 1
    return [(x, y) for x, y in points if per_x[x] >= least]


REASON_TINT = (254, 243, 242)  # td.reason background
SECONDARY_CHIP = (209, 233, 255)  # .region-chip.region-secondary
TRIGGER = (6, 174, 212)  # the Trigger stage's colour (legend swatch and bars)
TABLE_LINE = (217, 222, 231)  # table and card borders


def test_screenshot_shows_the_new_columns_inside_the_page(tmp_path: Path) -> None:
    shot = tmp_path / "columns.png"
    with stub_api() as (url, state):
        seed_columns(state)
        run_chromium(url + "/dashboard/index.html", tmp_path, f"--screenshot={shot}", size="1200,1100")
    width, height, _, _ = decode(shot)
    assert (width, height) == (1200, 1100)
    reason = _filled(_where(shot, REASON_TINT))
    assert len(reason) >= 2000, "the reason-and-fix cells of the failed and rejected restores are not drawn"
    chip = _where(shot, SECONDARY_CHIP)
    assert len(chip) >= 300, "the secondary-region chip of the Cross Region Restore is not drawn"
    assert max(x for x, _ in chip) < min(x for x, _ in reason), "region is drawn left of the reason"
    legend = [y for _, y in _where(shot, TRIGGER)]
    assert legend and min(legend) < 200, "the legend is not near the top"
    lines = _where(shot, TABLE_LINE)
    assert max(x for x, _ in lines) <= width - 24, "a table overflows the page to the right (columns cut off)"


def test_times_are_utc_in_the_detail_panel(tmp_path: Path) -> None:
    created = datetime(2026, 11, 24, 23, 30, 5, tzinfo=UTC)
    with stub_api() as (url, state):
        r = make_restore("r-late", "restoring", "monitor", age_s=60, stages=[("monitor", 0, None)])
        r.update(created_at=iso(created), deadline=iso(created + timedelta(hours=48)))
        state.add(r)
        page = run_chromium(url + "/dashboard/index.html", tmp_path, "--dump-dom", tz="Asia/Tokyo").stdout
    detail = re.search(r'<section id="detail".*?</section>', page, re.S)
    assert detail
    assert "<dt>Created (UTC)</dt><dd>2026-11-24 23:30:05</dd>" in detail.group(0)
    assert "<dt>Deadline (UTC)</dt><dd>2026-11-26 23:30:05</dd>" in detail.group(0)


def test_the_detail_shows_the_rehydration_window_the_gap_and_where_the_job_is(tmp_path: Path) -> None:
    with stub_api() as (url, state):
        r = make_restore("r-exp", "waiting", "wait", age_s=120, stages=[("wait", 0, None)])
        r.update(expected={"what": "rehydration, priority Standard", "started": "2026-11-24T08:00:00Z",
                           "latest": "2026-11-24T23:00:00Z", "note": "up to 14h58m left"},
                 data_loss_gap_seconds=5 * 3600 + 600, azure_job_visible_in="secondary region northeurope only",
                 warnings=[{"code": "SecondaryRegionBehind", "message": "5h10m older"}])
        state.add(r)
        page = run_chromium(url + "/dashboard/index.html", tmp_path, "--dump-dom").stdout
    detail = re.search(r'<section id="detail".*?</section>', page, re.S)
    assert detail
    text = detail.group(0)
    assert ("<dt>Expected</dt><dd>rehydration, priority Standard · latest 2026-11-24 23:00:00 UTC · up to 14h58m "
            "left</dd>") in text
    assert "<dt>Data-loss gap</dt><dd>5h10m</dd>" in text
    assert "<dt>Job visible in</dt><dd>secondary region northeurope only</dd>" in text
    assert "<dt>Warning</dt><dd>SecondaryRegionBehind: 5h10m older</dd>" in text
