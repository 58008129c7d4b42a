"""The live views against the real stack: restorectl watch, the dashboard page in headless Chromium, and the
watchdog re-driving a restore whose message was lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

from localdev import scenarios as sc
from restore_core.config import load_settings
from restore_core.intake import request_hash
from restore_core.models import Stage, Status, parse_request
from restore_core.records import RestoreRecord, TimelineEvent, new_restore_id
from restore_core.runtime import build
from tests.dashboard.pngcheck import colours, decode
from tests.dashboard.test_dashboard_page import run_chromium

from .helpers import start, wait_for


def test_restorectl_watch_follows_a_real_restore_to_its_end(local_stack, api):
    rid = start(api, sc.as_database(f"it_ctl_{uuid.uuid4().hex[:6]}"))
    env = {**os.environ, "RESTORE_API_URL": local_stack.env["RESTORE_API_URL"],
           "RESTORE_API_KEY": local_stack.env["RESTORE_API_KEY"]}
    proc = subprocess.run([sys.executable, "-m", "localdev.restorectl", "watch", rid, "--interval", "0.3"],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert rid in proc.stdout and "succeeded" in proc.stdout
    shown = subprocess.run([sys.executable, "-m", "localdev.restorectl", "show", rid], capture_output=True,
                           text=True, env=env, timeout=60, check=False)
    assert shown.returncode == 0 and "monitor" in shown.stdout and "validate" in shown.stdout


def test_dashboard_page_renders_live_restores_from_the_real_api(local_stack, api):
    ok = start(api, sc.as_database(f"it_dash_{uuid.uuid4().hex[:6]}"))
    bad = start(api, sc.as_database(f"it_dash_bad_{uuid.uuid4().hex[:6]}", server=sc.TARGET_NOREADER,
                                    secret=sc.SECRET_NOREADER))
    wait_for(api, ok)
    wait_for(api, bad)
    with tempfile.TemporaryDirectory() as tmp:
        page = run_chromium(local_stack.env["DASHBOARD_URL"], Path(tmp), "--dump-dom").stdout
        assert ok in page and bad in page
        assert "UserErrorMSIMissingPermissions" in page or "rejected" in page
        shot = Path(tmp) / "live.png"
        run_chromium(local_stack.env["DASHBOARD_URL"], Path(tmp), f"--screenshot={shot}")
        width, height, _, _ = decode(shot)
        assert (width, height) == (1200, 800)
        assert len([c for c, n in colours(shot).items() if n >= 50]) >= 8, "a rendered page, not a blank one"


def test_watchdog_redrives_a_restore_whose_first_message_was_lost(local_stack, api):
    """The row is written but its validate message never sent (the process died in between)."""
    values = json.loads((local_stack.dir / "local.settings.json").read_text())["Values"]
    deps = build(load_settings(values))  # the same settings as the stack's Functions host
    req = parse_request(sc.as_database(f"it_lost_msg_{uuid.uuid4().hex[:6]}"))
    now = deps.clock()
    rec = RestoreRecord(id=new_restore_id(now), status=Status.ACCEPTED, stage=Stage.VALIDATE, source="http",
                        created_at=now, updated_at=now, deadline=now + timedelta(hours=1),
                        request=req.model_dump(mode="json", exclude_none=True),
                        next_check_at=now + timedelta(seconds=1), target_kind="database", region="primary")
    deps.store.create(rec, TimelineEvent(now, "accepted", None, "accepted from http"), idempotency_key=None,
                      request_hash=request_hash(req))
    time.sleep(1)
    final = wait_for(api, rec.id, timeout=60)  # the watchdog runs every 5 s locally
    assert final["status"] == "succeeded", final
