"""The local stack manager: real Azurite, PostgreSQL, emulator and Functions host (fixture app, tiny world)."""

from __future__ import annotations

import http.client
import json
import shlex
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from localdev.stack import ENV_KEYS, Stack, StackError, pid_alive
from tests.localdev.conftest import APPS

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TINY = Path(__file__).parent / "worlds" / "tiny.yaml"
OVERRIDES = {"WORK_QUEUE": "stack-work", "OUT_QUEUE": "stack-out", "TICK_SCHEDULE": "0 0 0 1 1 *"}


def get(url: str, headers: dict[str, str] | None = None, context: ssl.SSLContext | None = None) -> int:
    u = __import__("urllib.parse").parse.urlsplit(url)
    cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
    conn = cls(u.hostname, u.port, timeout=10, **({"context": context} if context else {}))  # type: ignore[arg-type]
    try:
        conn.request("GET", u.path, headers=headers or {})
        return conn.getresponse().status
    finally:
        conn.close()


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    # a private temp dir, not tmp_path_factory (see tests/conftest.py local_stack)
    s = Stack(Path(tempfile.mkdtemp(prefix="restore-stack-tiny-")), TINY, http_port=0, settings_overrides=OVERRIDES,
              app_dir=APPS / "basic")
    s.up()
    try:
        yield s
    finally:
        s.down()


def test_up_writes_stack_env_with_every_key_and_each_endpoint_works(stack: Stack) -> None:
    from localdev.restorectl import read_env_file

    parsed = read_env_file(stack.env_path)
    sourced = subprocess.run(["bash", "-c", f"set -a; . {shlex.quote(str(stack.env_path))}; env -0"],
                             capture_output=True, check=True).stdout.decode().split("\0")
    from_shell = dict(item.split("=", 1) for item in sourced if "=" in item)
    assert {k: from_shell.get(k) for k in stack.env} == stack.env  # `set -a; . .local/stack.env` works
    for key in (*ENV_KEYS, "PGCLUSTER_TINY_SRC_DSN"):
        assert parsed.get(key), key
    assert parsed == stack.env
    assert stack.env_path.stat().st_mode & 0o077 == 0  # holds keys: owner only
    api = stack.env["RESTORE_API_URL"]
    assert get(api + "/items/3") == 401
    assert get(api + "/items/3", {"x-functions-key": stack.env["RESTORE_API_KEY"]}) == 200
    with psycopg.connect(stack.env["PGCLUSTER_TINY_SRC_DSN"]) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    ctx = ssl.create_default_context(cafile=stack.env["DATAPROTECTION_CA_BUNDLE"])
    assert get(stack.env["DATAPROTECTION_ENDPOINT"] + "/", context=ctx) > 0  # TLS verified with the CA bundle
    values = json.loads((stack.dir / "local.settings.json").read_text())["Values"]
    assert values["AzureWebJobsStorage"] == values["RestoreStorage"] == stack.env["AZURE_STORAGE_CONNECTION_STRING"]
    assert values["DATAPROTECTION_TOKEN"] == stack.env["DATAPROTECTION_TOKEN"] != "set-by-make-up"
    assert values["RESTORE_QUEUE_REQUESTS"] and values["WORK_QUEUE"] == "stack-work"  # sample + overrides
    clusters = json.loads((stack.dir / "clusters.json").read_text())
    assert clusters["tiny-src"]["dsn"] == stack.env["PGCLUSTER_TINY_SRC_DSN"]
    for log in (stack.dir / "logs").rglob("*"):  # the replay executions' logs too (logs/replay/)
        if not log.is_file():
            continue
        text = log.read_text(errors="replace")
        assert stack.env["RESTORE_API_KEY"] not in text and "AccountKey=" not in text, log


def test_second_up_is_refused_and_the_running_stack_is_untouched(stack: Stack) -> None:
    before = {n: c["pid"] for n, c in stack.status().items()}
    with pytest.raises(StackError, match="make down"):
        Stack(stack.dir, TINY, http_port=0, settings_overrides=OVERRIDES, app_dir=APPS / "basic").up()
    after = stack.status()
    assert {n: c["pid"] for n, c in after.items()} == before and all(c["alive"] for c in after.values())


def test_kill_start_and_restart_host_keep_the_port(stack: Stack) -> None:
    old = stack.host_pid
    runner = stack.components["jobrunner"]["pid"]
    stack.kill_host()
    assert not pid_alive(old)
    assert pid_alive(runner, "localdev.jobrunner")  # a host crash leaves the job environment alone
    new = stack.start_host({"EXTRA_SETTING": "1"})
    assert new != old and pid_alive(new, "localdev.funchost")
    assert not pid_alive(runner) and pid_alive(stack.components["jobrunner"]["pid"], "localdev.jobrunner"), \
        "the runner started with the new host replaces the old one (it was left running behind the stack before)"
    assert json.loads((stack.dir / "local.settings.json").read_text())["Values"]["EXTRA_SETTING"] == "1"
    newer = stack.restart_host()
    assert newer != new and not pid_alive(new) and pid_alive(newer)
    assert get(stack.env["RESTORE_API_URL"] + "/hello/again") == 200  # same RESTORE_API_URL after restarts


def test_crashed_component_is_reported_and_everything_started_is_stopped(tmp_path: Path) -> None:
    s = Stack(tmp_path, TINY, http_port=0, settings_overrides=OVERRIDES, app_dir=APPS / "broken")
    with pytest.raises(StackError) as info:
        s.up()
    msg = str(info.value)
    assert "funchost exited" in msg and "deliberately broken at import" in msg  # the log tail
    pids = {n: c["pid"] for n, c in s.components.items()}
    assert set(pids) == {"azurite", "pg:tiny-src", "dpemu", "funchost"}
    assert [n for n, p in pids.items() if pid_alive(p)] == []


def test_cli_up_status_down_from_separate_processes_leaves_no_process(tmp_path: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "localdev.stack", *args, "--dir", str(tmp_path)], cwd=REPO,
                              capture_output=True, text=True, timeout=240, check=False)

    sets = [f"--set={k}={v}" for k, v in OVERRIDES.items()]
    up = cli("up", "--world", str(TINY), "--http-port", "0", "--app-dir", str(APPS / "basic"), *sets)
    assert up.returncode == 0, up.stderr
    assert "RESTORE_API_URL=http://127.0.0.1:" in up.stdout and "make down" in up.stdout
    pids = {n: c["pid"] for n, c in json.loads((tmp_path / "stack.json").read_text())["components"].items()}
    try:
        assert len(pids) == 5 and "jobrunner" in pids and all(pid_alive(p) for p in pids.values())
        assert cli("status").returncode == 0
    finally:
        down = cli("down")
    assert down.returncode == 0, down.stderr
    assert [n for n, p in pids.items() if pid_alive(p)] == []
    assert not (tmp_path / "stack.json").exists() and not (tmp_path / "stack.env").exists()
    assert (tmp_path / "logs" / "funchost.log").exists()  # logs are kept for post-mortems
    assert cli("status").returncode == 1


def _command_lines() -> dict[int, str]:
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                out[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:  # gone, or not ours to read
                continue
    return out


def test_no_started_process_has_a_key_or_token_in_its_command_line(stack: Stack) -> None:
    secrets = {"function key": stack.env["RESTORE_API_KEY"], "emulator token": stack.env["DATAPROTECTION_TOKEN"],
               "master key": json.loads((stack.dir / "funchost.keys.json").read_text())["masterKey"],
               "storage key": "AccountKey="}
    lines = _command_lines()
    started = {name: lines.get(int(pid)) for name, pid in stack.alive_components().items()}
    assert "localdev.funchost" in (started.get("funchost") or "") and "--keys-file" in started["funchost"]
    assert "localdev.dpemu" in (started.get("dpemu") or "") and "--token-file" in started["dpemu"]
    leaks = [(pid, what) for pid, line in lines.items() for what, secret in secrets.items() if secret in line]
    assert not leaks, f"secrets on command lines (readable by every local user): {leaks}"
    assert (stack.dir / "funchost.keys.json").stat().st_mode & 0o077 == 0
    assert (stack.dir / "dpemu" / "token").stat().st_mode & 0o077 == 0
