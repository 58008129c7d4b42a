"""The dashboard's drills panel (issue 15 item 3) in headless Chromium against the stub API, whose
``GET /api/drills/runs/latest`` answers with restore_core's own view of fixture run rows: the last run per drill and
backup instance, pass/fail, RTO against the target, and the RTO trend as bars."""

from __future__ import annotations

import html
import re
from pathlib import Path

from .stub_api import StubState, make_drill_run, stub_api
from .test_dashboard_page import XSS, run_chromium, seed

TARGET = 1200.0  # 20 minutes


def seed_drills(state: StubState) -> None:
    state.drills = [("nightly", {"server_id": "pgflex-drills", "rto_target_seconds": TARGET}),
                    ("weekly", {"server_id": "pgflex-drills", "rto_target_seconds": 600.0})]
    # nightly/pgflex01: four runs, the second oldest over target; the last passed in 10 minutes
    flex = [make_drill_run("nightly", "pgflex01-0001", d, rto_s=r)
            for d, r in ((0, 600.0), (1, 660.0), (2, 1500.0), (3, 540.0))]
    # nightly/salesdb: the last run failed (its check) over target, with an error text that is not HTML
    sales = [make_drill_run("nightly", "pgsrv01-salesdb", 0, rto_s=1800.0, passed=False, error=XSS),
             make_drill_run("nightly", "pgsrv01-salesdb", 1, rto_s=700.0)]
    state.drill_runs = {"nightly": flex + sales,
                        "weekly": [make_drill_run("weekly", "pgflex01-0001", 0, rto_s=None, passed=None,
                                                  target_s=600.0),
                                   make_drill_run("weekly", "pgflex01-0001", 7, rto_s=300.0, target_s=600.0)]}


def _drill_row(page: str, drill: str, instance: str) -> str:
    match = re.search(rf'<tr class="drill" data-drill="{drill}" data-instance="{instance}"[^>]*>.*?</tr>', page, re.S)
    assert match, f"drill row {drill}/{instance} not rendered"
    return match.group(0)


def _bars(row: str) -> list[tuple[str, float]]:
    return [(cls, float(rto)) for cls, rto in re.findall(r'<rect class="(\w+)"[^>]*data-rto="([\d.]+)"', row)]


def test_the_drills_panel_shows_the_last_run_per_instance_with_verdict_rto_against_target_and_trend(
        tmp_path: Path) -> None:
    with stub_api() as (url, state):
        seed(state)
        seed_drills(state)
        state.drill_page_size = 2  # the page follows the continuation
        page = run_chromium(url + "/dashboard/index.html", tmp_path, "--dump-dom").stdout
        paths = [r["path"] for r in state.requests]
    assert re.search(r'id="drills-count">3<', page)
    flex = _drill_row(page, "nightly", "pgflex01-0001")
    assert 'data-passed="true"' in flex and ">PASS<" in flex
    assert re.search(r'class="rto">10\.0m / 20\.0m<', flex) and ">1 ok, 0 failed<" in flex and ">6h00m<" in flex
    assert _bars(flex) == [("within", 540.0), ("over", 1500.0), ("within", 660.0), ("within", 600.0)]  # oldest first
    assert re.search(r'<line class="target"[^>]*><title>target 20\.0m</title>', flex)
    sales = _drill_row(page, "nightly", "pgsrv01-salesdb")
    assert ">FAIL<" in sales and re.search(r'class="rto over">30\.0m / 20\.0m<', sales)
    assert ">0 ok, 1 failed<" in sales and _bars(sales) == [("within", 700.0), ("failed", 1800.0)]
    assert html.escape("VerificationFailed: " + XSS, quote=True) in sales and "<img" not in page
    weekly = _drill_row(page, "weekly", "pgflex01-0001")
    assert 'data-passed=""' in weekly and ">running<" in weekly and re.search(r'class="rto">- / 10\.0m<', weekly)
    assert _bars(weekly) == [("within", 300.0)]
    assert paths.count("/dashboard/api/drills/runs/latest") >= 2 and re.search(r'data-state="ok"', page)


def test_without_drill_runs_the_panel_says_so_and_an_api_without_the_read_leaves_the_restores(tmp_path: Path) -> None:
    with stub_api() as (url, state):
        seed(state)
        page = run_chromium(url + "/dashboard/index.html", tmp_path / "a", "--dump-dom").stdout
    assert re.search(r'<table class="restores drills" id="drills" hidden="">', page)
    assert re.search(r'id="drills-empty">No drill runs yet', page)
    with stub_api() as (url, state):
        seed(state)
        state.drill_runs = None  # an API without GET /api/drills/runs/latest: 404
        page = run_chromium(url + "/dashboard/index.html", tmp_path / "b", "--dump-dom").stdout
    assert re.search(r'id="drills-empty">Drills unavailable: /drills/runs/latest[^<]*HTTP 404<', page)
    assert 'data-id="r-active"' in page and 'data-state="ok"' in page  # the restores still show
