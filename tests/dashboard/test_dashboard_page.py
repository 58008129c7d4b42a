"""The static dashboard page (localdev/dashboard) in headless Chromium against the stub API: restores rendered
after the page's JavaScript ran, auto-refresh, API errors shown, and a non-trivial screenshot."""

from __future__ import annotations

import html
import math
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .pngcheck import colours, decode
from .stub_api import StubState, make_restore, stub_api

XSS = '<img src=x onerror="document.title=1">'


def chromium() -> str:
    found = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("headless Chromium is needed for the dashboard test: `apt-get install -y chromium` "
                    "(make test installs it via WANT_CHROMIUM=1) or set CHROMIUM=/path/to/chrome")
    return found


def run_chromium(url: str, tmp: Path, *mode: str, size: str = "1200,800",
                 tz: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--no-first-run", "--disable-sync", "--hide-scrollbars",
           f"--user-data-dir={tmp / 'profile'}", "--virtual-time-budget=5000", f"--window-size={size}", *mode, url]
    env = {**os.environ, "TZ": tz} if tz else None  # tz: the browser's local zone (the page must show UTC anyway)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def seed(state: StubState) -> None:
    state.add(make_restore("r-active", "restoring", "monitor", age_s=600, job="/x/backupJobs/job-1",
                           next_check_in=900,  # far enough that a slow browser start still renders "in …"
                           stages=[("validate", 0, 50), ("trigger", 50, 90), ("monitor", 90, None)]))
    state.add(make_restore("r-wait", "waiting", "wait", age_s=300, next_check_in=120, target_kind="files",
                           stages=[("validate", 0, 10), ("rehydrate", 10, 20), ("wait", 20, None)]))
    failed = make_restore("r-failed", "failed", "validate", age_s=1200, stages=[("validate", 0, 30)],
                          error={"code": "UserErrorMissingPermissions", "message": "vault lacks Reader",
                                 "fix": "grant Reader"})
    failed["timeline"].append({"at": failed["created_at"], "status": "failed", "stage": "validate", "message": XSS})
    state.add(failed)


@pytest.fixture(scope="module")
def dom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, StubState]]:
    with stub_api() as (url, state):
        seeded = time.monotonic()
        seed(state)
        proc = run_chromium(url + "/dashboard/index.html", tmp_path_factory.mktemp("dom"), "--dump-dom")
        state.page_lag_s = time.monotonic() - seeded  # how late the page was drawn
        yield proc.stdout, state


def _row(dom: str, rid: str) -> str:
    match = re.search(rf'<tr class="restore[^"]*" data-id="{rid}".*?</tr>', dom, re.S)
    assert match, f"row {rid} not rendered"
    return match.group(0)


def _section(dom: str, table_id: str) -> str:
    match = re.search(rf'<table class="restores" id="{table_id}".*?</table>', dom, re.S)
    assert match
    return match.group(0)


def test_active_and_recent_restores_are_rendered(dom: tuple[str, StubState]) -> None:
    page, state = dom
    active, recent = _section(page, "active"), _section(page, "recent")
    assert 'data-id="r-active"' in active and 'data-id="r-wait"' in active and "r-failed" not in active
    assert 'data-id="r-failed"' in recent and "r-active" not in recent
    assert '<span id="active-count">' not in page  # sanity: count spans carry a class
    assert re.search(r'id="active-count">2<', page) and re.search(r'id="recent-count">1<', page)
    row = _row(page, "r-active")
    assert ">restoring<" in row and ">monitor<" in row and ">job-1<" in row
    # 10 minutes old when seeded; the page adds what passed until Chromium drew it (slow under load) and its 5 s of
    # virtual time: the shown age must lie exactly in that window
    shown = re.search(r'class="elapsed">(\d+)m(\d\d)s<', row)
    assert shown, row
    age = int(shown.group(1)) * 60 + int(shown.group(2))
    assert 600 <= age <= 600 + math.ceil(state.page_lag_s) + 5, (age, state.page_lag_s)
    assert re.search(r'class="next">in (1[0-4]|[1-9])m\d+s<', row)  # 15 minutes ahead, counted down


def test_each_row_has_one_bar_per_stage_and_running_stage_is_marked(dom: tuple[str, StubState]) -> None:
    page, _ = dom
    bars = re.findall(r'class="bar stage-(\w+)( running)?"', _row(page, "r-wait"))
    assert bars == [("validate", ""), ("rehydrate", ""), ("wait", " running")]
    assert re.findall(r'class="bar stage-(\w+)', _row(page, "r-failed")) == ["validate"]


def test_newest_active_restore_is_detailed_with_its_timeline(dom: tuple[str, StubState]) -> None:
    page, _ = dom
    detail = re.search(r'<section id="detail".*?</section>', page, re.S)
    assert detail and 'data-id="r-wait"' in detail.group(0)
    assert "rehydrate started" in detail.group(0) and "wait: " in detail.group(0) and "(running)" in detail.group(0)


def test_page_refreshes_from_the_dashboard_api(dom: tuple[str, StubState]) -> None:
    _, state = dom
    paths = [r["path"] for r in state.requests]
    assert paths.count("/dashboard/api/restores") >= 2  # 5 s of virtual time, refresh every 2 s
    assert paths.count("/dashboard/api/restores/r-wait") >= 2
    assert not [p for p in paths if p.startswith("/api/")]  # the page never needs the function key


def test_selected_failed_restore_shows_error_fix_and_escapes_text(tmp_path: Path) -> None:
    with stub_api() as (url, state):
        seed(state)
        for rid in ("r-active", "r-wait"):
            del state.restores[rid]
        page = run_chromium(url + "/dashboard/index.html", tmp_path, "--dump-dom").stdout
    detail = re.search(r'<section id="detail".*?</section>', page, re.S)
    assert detail is not None
    assert "UserErrorMissingPermissions" in detail.group(0) and "Fix: grant Reader" in detail.group(0)
    assert html.escape(XSS, quote=False) in detail.group(0)
    assert "<img" not in page


def test_mount_without_trailing_slash_still_loads_assets_and_data(tmp_path: Path) -> None:
    with stub_api() as (url, state):
        seed(state)
        page = run_chromium(url + "/dashboard", tmp_path, "--dump-dom").stdout
        paths = [r["path"] for r in state.requests]
    assert "/dashboard/app.js" in paths and "/dashboard/api/restores" in paths
    assert 'data-id="r-active"' in page and 'data-state="ok"' in page


def test_unreachable_api_is_reported_on_the_page(tmp_path: Path) -> None:
    with stub_api() as (url, _):
        page = run_chromium(url + "/dashboard/index.html?api=/nowhere", tmp_path, "--dump-dom").stdout
    assert re.search(r'id="conn" class="conn" data-state="error">API unreachable: [^<]*HTTP 404[^<]*make up', page)


def test_screenshot_is_not_blank(tmp_path: Path) -> None:
    shot = tmp_path / "dashboard.png"
    with stub_api() as (url, state):
        seed(state)
        run_chromium(url + "/dashboard/index.html", tmp_path, f"--screenshot={shot}")
    width, height, _, _ = decode(shot)
    assert (width, height) == (1200, 800)
    assert shot.stat().st_size > 20_000
    counts = colours(shot)
    assert len([c for c, n in counts.items() if n >= 50]) >= 8, "expected a rendered page, not a blank one"
    assert counts.get((46, 144, 250), 0) >= 20  # the "restoring" badge colour
    assert counts.get((240, 68, 56), 0) >= 20  # the "failed" badge colour


VERIFY = {"stage": "verify", "label": "Verify", "status": "verifying", "cancellable": False,
          "queue_setting": "RESTORE_QUEUE_VERIFY"}
GREY = "rgb(152, 162, 179)"  # the colour of a stage the page does not know


def _legend(page: str) -> list[tuple[str, str]]:
    legend = re.search(r'<div class="legend" id="legend"[^>]*>.*?</div>', page, re.S)
    assert legend, "legend not rendered"
    return re.findall(r'<span data-stage="(\w+)"><i [^>]*></i>([^<]*)</span>', legend.group(0))


def _bar_colours(row: str) -> dict[str, str]:
    return dict(re.findall(r'data-stage="(\w+)"[^>]*style="[^"]*background: (rgb\([^)]*\))', row))


def test_legend_lists_the_stages_the_api_serves_and_reads_them_once(dom: tuple[str, StubState]) -> None:
    page, state = dom
    assert _legend(page) == [("validate", "Validate"), ("rehydrate", "Rehydrate"), ("wait", "Wait"),
                             ("trigger", "Trigger"), ("monitor", "Monitor")]
    paths = [r["path"] for r in state.requests]
    assert paths.count("/dashboard/api/stages") == 1 and paths.count("/dashboard/api/restores") >= 2


def test_a_stage_served_by_the_api_appears_without_a_code_change(tmp_path: Path) -> None:
    with stub_api() as (url, state):
        assert state.stages is not None
        state.stages.append(dict(VERIFY))
        state.add(make_restore("r-verify", "verifying", "verify", age_s=400, next_check_in=30, stages=[
            ("validate", 0, 10), ("trigger", 10, 20), ("monitor", 20, 300), ("verify", 300, None)]))
        page = run_chromium(url + "/dashboard/index.html", tmp_path, "--dump-dom").stdout
    assert _legend(page)[-1] == ("verify", "Verify")
    row = _row(page, "r-verify")
    assert 'data-id="r-verify"' in _section(page, "active")  # a running status the API named: still active
    assert re.search(r'class="stage" title="Verify">verify<', row)
    colours = _bar_colours(row)
    assert list(colours) == ["validate", "trigger", "monitor", "verify"]
    assert GREY not in colours.values() and len(set(colours.values())) == 4  # each stage its own colour
    detail = re.search(r'<section id="detail".*?</section>', page, re.S)
    assert detail and "<dt>Stage</dt><dd>Verify</dd>" in detail.group(0)
    tile = re.search(r'<div class="tile" data-status="verifying" style="border-left-color: (rgb\([^)]*\));"><b>1</b>',
                     page)
    assert tile and tile.group(1) != GREY  # counted under its own status, in its own colour


def test_without_the_stage_list_restores_still_show_with_raw_stage_values(tmp_path: Path) -> None:
    with stub_api() as (url, state):
        seed(state)
        state.stages = None  # an API without GET /api/stages: 404
        page = run_chromium(url + "/dashboard/index.html", tmp_path, "--dump-dom").stdout
        paths = [r["path"] for r in state.requests]
    assert ">monitor<" in _row(page, "r-active") and 'data-id="r-wait"' in _section(page, "active")
    assert set(_bar_colours(_row(page, "r-wait")).values()) == {GREY}
    assert _legend(page) == []
    assert sorted(re.findall(r'class="tile" data-status="(\w+)"', page)) == ["failed", "restoring", "waiting"]
    assert re.search(r'data-state="ok">updated [^<]*no stage list: /stages: HTTP 404', page)
    assert paths.count("/dashboard/api/stages") >= 2  # tried again on the next refreshes
