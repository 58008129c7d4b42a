"""restorectl against the local stub API (the CLI's own logic: requests, rendering, watch, errors)."""

from __future__ import annotations

import io
import json
import socket
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from localdev import restorectl

from .stub_api import KEY, StubState, make_restore, stub_api


@pytest.fixture
def api() -> Iterator[tuple[str, StubState]]:
    with stub_api() as pair:
        yield pair


def run(argv: list[str], *, env: dict[str, str] | None = None, stdin: str = "",
        env_file: Path | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    extra = ["--env-file", str(env_file)] if env_file else ["--env-file", "/nonexistent/stack.env"]
    code = restorectl.main(extra + argv, out=out, err=err, stdin=io.StringIO(stdin), env=env or {})
    return code, out.getvalue(), err.getvalue()


def key_file(key: str = KEY) -> Path:
    path = Path(tempfile.mkdtemp(prefix="restorectl-key-")) / "key"
    path.write_text(key + "\n")
    path.chmod(0o600)
    return path


def conn(url: str) -> list[str]:
    return ["--url", url, "--key-file", str(key_file())]


def test_endpoint_comes_from_stack_env_file(api: tuple[str, StubState], tmp_path: Path) -> None:
    url, state = api
    env_file = tmp_path / "stack.env"
    env_file.write_text(f"# written by localdev.stack\nRESTORE_API_URL={url}\nexport RESTORE_API_KEY='{KEY}'\n")
    state.add(make_restore("r-1", "waiting", "wait", age_s=30, stages=[("validate", 0, 2)]))
    code, out, err = run(["list"], env_file=env_file)
    assert (code, err) == (0, "")
    assert "r-1" in out and "waiting" in out
    assert state.requests[-1]["path"] == "/api/restores" and state.requests[-1]["key"] == KEY


def test_url_already_ending_in_api_is_kept() -> None:
    assert restorectl.resolve_endpoint("http://h:1/api/", None, {}, Path("/none"))[0] == "http://h:1/api"
    assert restorectl.resolve_endpoint(None, None, {"RESTORE_API_URL": "http://h:2"}, Path("/none")) == (
        "http://h:2/api", None)


def test_missing_stack_says_make_up() -> None:
    code, out, err = run(["list"])
    assert code == restorectl.EXIT_UNREACHABLE
    assert "make up" in err and out == ""


def test_unreachable_api_says_make_up() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    code, _, err = run(["show", "r-1", *conn(f"http://127.0.0.1:{port}")])
    assert code == restorectl.EXIT_UNREACHABLE
    assert "make up" in err and f"127.0.0.1:{port}" in err


def test_wrong_key_says_which_setting_to_fix(api: tuple[str, StubState]) -> None:
    url, _ = api
    code, _, err = run(["list", "--url", url, "--key-file", str(key_file("wrong"))])
    assert code == restorectl.EXIT_FAILED
    assert "401" in err and "missing or wrong function key" in err


def test_key_on_the_command_line_is_refused_and_nothing_is_sent(api: tuple[str, StubState]) -> None:
    url, state = api
    code, _, err = run(["list", "--url", url, "--key", KEY])
    assert code == restorectl.EXIT_USAGE
    assert "command line" in err and "RESTORE_API_KEY" in err and "--key-file" in err
    assert state.requests == []


def test_key_from_the_environment(api: tuple[str, StubState]) -> None:
    url, state = api
    code, _, err = run(["list", "--url", url], env={"RESTORE_API_KEY": KEY})
    assert (code, err) == (0, "") and state.requests[-1]["key"] == KEY


def test_empty_key_file_says_what_to_put_there(api: tuple[str, StubState], tmp_path: Path) -> None:
    url, state = api
    (tmp_path / "key").write_text("\n")
    code, _, err = run(["list", "--url", url, "--key-file", str(tmp_path / "key")])
    assert code == restorectl.EXIT_USAGE and "first line" in err and state.requests == []


def test_start_from_json_file_posts_it_unchanged(api: tuple[str, StubState], tmp_path: Path) -> None:
    url, state = api
    request = {"backup_instance": {"id": "/subscriptions/s/bi"}, "target": {"kind": "files",
               "container_url": "https://a.blob.core.windows.net/c", "file_prefix": "p"}}
    (tmp_path / "req.json").write_text(json.dumps(request))
    code, out, err = run(["start", "--json", str(tmp_path / "req.json"), *conn(url)])
    assert (code, err) == (0, "")
    assert "accepted r-0001" in out and "restorectl watch r-0001" in out
    posted = state.requests[-1]
    assert (posted["method"], posted["path"], posted["body"], posted["key"]) == ("POST", "/api/restores", request, KEY)


def test_start_from_stdin_with_raw_json_output(api: tuple[str, StubState]) -> None:
    url, state = api
    code, out, _ = run(["--json", "start", "--json", "-", *conn(url)], stdin='{"backup_instance": {"id": "x"}}')
    assert code == 0
    assert json.loads(out) == {"id": "r-0001", "status": "accepted", "status_url": "/api/restores/r-0001"}
    assert state.requests[-1]["body"] == {"backup_instance": {"id": "x"}}


def test_start_from_flags_builds_a_database_request(api: tuple[str, StubState]) -> None:
    url, state = api
    code, _, err = run(["start", "--backup-instance", "/subscriptions/s/bi1", "--before", "2026-11-24T08:00:00Z",
                        "--server", "/subscriptions/s/srv", "--database", "app_copy", "--secret-uri",
                        "https://kv1.vault.azure.net/secrets/conn", "--region", "secondary", "--priority", "High",
                        "--idempotency-key", "drill-42", *conn(url)])
    assert (code, err) == (0, "")
    assert state.requests[-1]["body"] == {
        "backup_instance": {"id": "/subscriptions/s/bi1"},
        "recovery_point": {"latest_before": "2026-11-24T08:00:00Z"},
        "target": {"kind": "database", "server_id": "/subscriptions/s/srv", "database_name": "app_copy",
                   "secret_uri": "https://kv1.vault.azure.net/secrets/conn"},
        "region": "secondary", "rehydration": {"priority": "High"}, "idempotency_key": "drill-42",
    }


@pytest.mark.parametrize(("flags", "message"), [
    (["--backup-instance", "x"], "no target"),
    (["--backup-instance", "x", "--server", "s"], "needs all of --server, --database and --secret-uri"),
    (["--backup-instance", "x", "--container-url", "https://a/c"], "needs both --container-url and --prefix"),
    (["--server", "s"], "start needs --json FILE"),
    (["--json", "/nonexistent/req.json"], "cannot read --json"),
])
def test_start_with_bad_flags_fails_before_calling_the_api(api: tuple[str, StubState], flags: list[str],
                                                           message: str) -> None:
    url, state = api
    code, _, err = run(["start", *flags, *conn(url)])
    assert code == restorectl.EXIT_USAGE
    assert message in err
    assert state.requests == []


def test_invalid_json_names_the_line(api: tuple[str, StubState]) -> None:
    url, _ = api
    code, _, err = run(["start", "--json", "-", *conn(url)], stdin='{\n "a": }')
    assert code == restorectl.EXIT_USAGE and "line 2" in err


def test_api_validation_error_shows_field_and_fix(api: tuple[str, StubState]) -> None:
    url, state = api
    state.fail_next = (400, {"error": {"code": "InvalidRequest", "message": "database_name is reserved",
                                       "field": "target.database_name", "fix": "choose another database name"}})
    code, _, err = run(["start", "--json", "-", *conn(url)], stdin="{}")
    assert code == restorectl.EXIT_USAGE
    assert "400 InvalidRequest: database_name is reserved (field: target.database_name)" in err
    assert "fix: choose another database name" in err


def test_show_renders_error_stages_and_timeline(api: tuple[str, StubState]) -> None:
    url, state = api
    state.add(make_restore("r-9", "failed", "monitor", age_s=600, job="/x/backupJobs/job-77",
                           stages=[("monitor", 9, 300), ("trigger", 5, 9), ("validate", 0, 5)],
                           error={"code": "UserErrorMissingPermissions", "message": "vault MSI lacks Reader",
                                  "fix": "grant Reader on the target server"}))
    code, out, _ = run(["show", "r-9", *conn(url)])
    assert code == 1, "show exits non-zero for a failed restore, as watch does"
    assert "status:          failed" in out
    assert "error:           UserErrorMissingPermissions: vault MSI lacks Reader" in out
    assert "fix:             grant Reader on the target server" in out
    assert "monitor" in out and "(4m51s)" in out  # 9 s -> 300 s
    stage_lines = out.split("stages:\n")[1].split("timeline:")[0].split()
    assert [w for w in stage_lines if w in ("validate", "trigger", "monitor")] == ["validate", "trigger", "monitor"]
    assert "request accepted" in out


def test_list_follows_continuations_and_passes_filters(api: tuple[str, StubState]) -> None:
    url, state = api
    state.page_size = 2
    for i in range(5):
        state.add(make_restore(f"r-{i}", "restoring", "monitor", age_s=100 + i, stages=[], job=f"/j/job-{i}"))
    code, out, _ = run(["list", "--status", "restoring", "--since", "2026-11-01T00:00:00Z", *conn(url)])
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].split() == ["ID", "STATUS", "STAGE", "SOURCE", "TARGET", "REGION", "POINT", "(UTC)", "BY",
                                "ELAPSED", "NEXT", "CHECK", "AZURE", "JOB", "REASON"]
    assert [line.split()[0] for line in lines[1:]] == ["r-0", "r-1", "r-2", "r-3", "r-4"]
    assert lines[1].split()[3:7] == ["pgsrv01/src_r-0", "pgsrv-restore/db_r-0", "primary/westeurope",
                                     state.restores["r-0"]["point_time"][:10]]
    assert "job-3" in lines[4]
    gets = [r for r in state.requests if r["path"] == "/api/restores"]
    assert [r["query"].get("continuation") for r in gets] == [None, "2", "4"]
    assert all(r["query"]["status"] == "restoring" and r["query"]["since"] == "2026-11-01T00:00:00Z" for r in gets)


def test_cancel_conflict_is_reported(api: tuple[str, StubState]) -> None:
    url, state = api
    state.add(make_restore("r-a", "waiting", "wait", age_s=10, stages=[]))
    state.add(make_restore("r-b", "restoring", "monitor", age_s=10, stages=[]))
    assert run(["cancel", "r-a", *conn(url)])[:2] == (0, "r-a: cancelled\n")
    code, _, err = run(["cancel", "r-b", *conn(url)])
    assert code == restorectl.EXIT_FAILED
    assert "409 NotCancellable: restore r-b is restoring" in err and "fix:" in err


def _progress(rid: str, *steps: tuple[str, str | None, str | None]) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    return [make_restore(rid, status, stage, age_s=60, stages=[], job=job, next_check_in=30, now=now)
            for status, stage, job in steps]


def test_watch_without_tty_prints_each_change_and_ends_when_terminal(api: tuple[str, StubState]) -> None:
    url, state = api
    first, *rest = _progress("r-w", ("validating", "validate", None), ("restoring", "trigger", None),
                             ("restoring", "trigger", None), ("restoring", "monitor", "/j/job-5"),
                             ("succeeded", "monitor", "/j/job-5"))
    state.add(first, *rest)
    out = io.StringIO()
    client = restorectl.ApiClient(url + "/api", KEY)
    code = restorectl.watch(client, ["r-w"], out, interval=0.01, tty=False, sleep=lambda s: None, max_rounds=20)
    assert code == 0
    lines = out.getvalue().strip().splitlines()
    statuses = [line.split()[2] for line in lines[:-1]]
    assert statuses == ["validating", "restoring", "restoring", "succeeded"]  # unchanged poll not repeated
    assert "job-5" in lines[-2] and lines[-1] == "all 1 restore(s) ended"


def test_watch_all_active_reports_failures(api: tuple[str, StubState]) -> None:
    url, state = api
    state.add(make_restore("r-old", "succeeded", "monitor", age_s=900, stages=[]))  # already over: not watched
    state.add(make_restore("r-x", "restoring", "monitor", age_s=60, stages=[]))
    client = restorectl.ApiClient(url + "/api", KEY)
    rounds = []

    def sleep(_: float) -> None:
        rounds.append(1)
        state.restores["r-x"] = make_restore("r-x", "failed", "monitor", age_s=61, stages=[])

    out = io.StringIO()
    code = restorectl.watch(client, [], out, interval=0.01, sleep=sleep, max_rounds=5)
    assert code == restorectl.EXIT_FAILED
    assert "r-old" not in out.getvalue()
    assert out.getvalue().strip().endswith("not succeeded: r-x") and len(rounds) == 1


def test_watch_on_a_tty_redraws_the_table(api: tuple[str, StubState]) -> None:
    url, state = api
    state.add(make_restore("r-t", "succeeded", "monitor", age_s=5, stages=[]))
    out = io.StringIO()
    restorectl.watch(restorectl.ApiClient(url + "/api", KEY), ["r-t"], out, tty=True, sleep=lambda s: None)
    assert out.getvalue().startswith("\x1b[H\x1b[2J") and "ID" in out.getvalue() and "r-t" in out.getvalue()


def test_duration_formatting() -> None:
    assert [restorectl.format_duration(s) for s in (None, 0, 59, 61, 3600 + 120, 2 * 86400 + 3 * 3600)] == [
        "-", "0s", "59s", "1m01s", "1h02m", "2d03h"]


def test_list_since_in_another_zone_is_sent_in_utc(api: tuple[str, StubState]) -> None:
    url, state = api
    code, _, err = run(["list", "--since", "2026-11-24T01:00:00+05:00", *conn(url)])
    assert (code, err) == (0, "")
    assert state.requests[-1]["query"]["since"] == "2026-11-23T20:00:00Z"


def test_list_since_that_is_not_a_time_is_a_usage_error(api: tuple[str, StubState]) -> None:
    url, state = api
    code, _, err = run(["list", "--since", "yesterday", *conn(url)])
    assert code == restorectl.EXIT_USAGE and "--since" in err and "ISO-8601" in err
    assert state.requests == []


VERIFY = {"stage": "verify", "label": "Verify", "status": "verifying", "cancellable": False,
          "queue_setting": "RESTORE_QUEUE_VERIFY"}


def _stage_section(out: str) -> list[str]:
    return [line.split()[0] for line in out.split("stages:\n")[1].split("timeline:")[0].splitlines()]


def test_a_stage_served_by_the_api_is_shown_with_its_label(api: tuple[str, StubState]) -> None:
    url, state = api
    assert state.stages is not None
    state.stages.append(dict(VERIFY))
    state.add(make_restore("r-v", "verifying", "verify", age_s=400, stages=[
        ("verify", 300, None), ("monitor", 20, 300), ("validate", 0, 10), ("trigger", 10, 20)]))
    state.add(make_restore("r-m", "restoring", "monitor", age_s=100, stages=[("monitor", 20, None)]))
    code, out, err = run(["list", *conn(url)])
    assert (code, err) == (0, "")
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert rows["r-v"][1:3] == ["verifying", "Verify"] and rows["r-m"][1:3] == ["restoring", "Monitor"]
    code, out, err = run(["show", "r-v", *conn(url)])
    assert (code, err) == (0, "")
    assert "stage: Verify" in out
    assert _stage_section(out) == ["validate", "trigger", "monitor", "verify"]  # the API's pipeline order


def test_the_stage_order_is_the_apis_not_a_copy(api: tuple[str, StubState]) -> None:
    url, state = api
    assert state.stages is not None
    state.stages.insert(3, dict(VERIFY))  # a stage added mid-pipeline, before trigger
    state.add(make_restore("r-v", "restoring", "monitor", age_s=400, stages=[
        ("monitor", 30, None), ("trigger", 20, 30), ("verify", 10, 20), ("validate", 0, 10)]))
    code, out, _ = run(["show", "r-v", *conn(url)])
    assert code == 0 and _stage_section(out) == ["validate", "verify", "trigger", "monitor"]


def test_without_the_stage_list_raw_stage_values_are_shown_with_a_warning(api: tuple[str, StubState]) -> None:
    url, state = api
    state.stages = None  # an API without GET /api/stages: 404
    state.add(make_restore("r-9", "restoring", "monitor", age_s=600, job="/x/backupJobs/job-77",
                           stages=[("monitor", 9, None), ("trigger", 5, 9), ("validate", 0, 5)]))
    code, out, err = run(["list", *conn(url)])
    assert code == 0 and out.splitlines()[1].split()[:3] == ["r-9", "restoring", "monitor"]
    assert err.startswith("restorectl: warning: no stage list from GET ") and "/api/stages (404" in err
    assert "showing raw stage values" in err
    code, out, err = run(["show", "r-9", *conn(url)])
    assert code == 0 and "warning" in err and "stage: monitor" in out
    assert _stage_section(out) == ["validate", "trigger", "monitor"]  # in the order they started


def test_a_stage_list_that_is_not_one_is_a_warning_not_a_crash(api: tuple[str, StubState]) -> None:
    url, state = api
    state.stages = [{"label": "no stage name"}]
    state.add(make_restore("r-1", "waiting", "wait", age_s=30, stages=[]))
    code, out, err = run(["list", *conn(url)])
    assert code == 0 and "r-1" in out and "wait" in out.split()
    assert "warning" in err and "without a stage name" in err


def test_stage_list_is_read_once_and_only_where_stages_are_shown(api: tuple[str, StubState]) -> None:
    url, state = api
    first, *rest = _progress("r-w", ("validating", "validate", None), ("restoring", "trigger", None),
                             ("succeeded", "monitor", "/j/job-5"))
    state.add(first, *rest)
    code, out, _ = run(["watch", "r-w", "--interval", "0.01", *conn(url)])
    assert code == 0 and "Validate" in out and "Trigger" in out
    assert [r["path"] for r in state.requests].count("/api/stages") == 1
    for argv in (["cancel", "r-w"], ["--json", "list"], ["show", "r-w", "--json"],
                 ["start", "--json", "-"]):
        state.requests.clear()
        run([*argv, *conn(url)], stdin="{}")
        assert state.requests and "/api/stages" not in [r["path"] for r in state.requests], argv


def test_a_refused_key_fails_at_the_stage_list_without_a_warning(api: tuple[str, StubState]) -> None:
    url, state = api
    code, _, err = run(["show", "r-1", "--url", url, "--key-file", str(key_file("wrong"))])
    assert code == restorectl.EXIT_FAILED
    assert "warning" not in err and "401" in err and len(state.requests) == 1


@pytest.mark.parametrize(("flags", "expected"), [
    (["--vault", "/v", "--datasource", "/d", "--recovery-point", "rp-7", "--container-url", "https://a/c",
      "--prefix", "p", "--container-id", "/c"],
     {"backup_instance": {"vault_id": "/v", "datasource_id": "/d"}, "recovery_point": {"id": "rp-7"},
      "target": {"kind": "files", "container_url": "https://a/c", "file_prefix": "p", "container_id": "/c"}}),
    (["--backup-instance", "/bi", "--recovery-point", "latest", "--container-url", "https://a/c", "--prefix", "p"],
     {"backup_instance": {"id": "/bi"},
      "target": {"kind": "files", "container_url": "https://a/c", "file_prefix": "p"}}),
])
def test_start_from_flags_builds_a_files_request(api: tuple[str, StubState], flags: list[str],
                                                 expected: dict[str, Any]) -> None:
    url, state = api
    code, _, err = run(["start", *flags, *conn(url)])
    assert (code, err) == (0, "")
    assert state.requests[-1]["body"] == expected


@pytest.mark.parametrize(("flags", "message"), [
    (["--backup-instance", "x", "--recovery-point", "rp", "--before", "2026-01-01T00:00:00Z"],
     "either --recovery-point or --before"),
    (["--backup-instance", "x", "--server", "s", "--database", "d", "--secret-uri", "u", "--prefix", "p"],
     "choose one target"),
    (["--backup-instance", "x", "--prefix", "p"], "needs both --container-url and --prefix"),
    (["--vault", "/v", "--server", "s", "--database", "d", "--secret-uri", "u"], "start needs --json FILE"),
])
def test_start_with_conflicting_flags_fails_before_calling_the_api(api: tuple[str, StubState], flags: list[str],
                                                                   message: str) -> None:
    url, state = api
    code, _, err = run(["start", *flags, *conn(url)])
    assert code == restorectl.EXIT_USAGE and message in err and state.requests == []


@pytest.mark.parametrize(("stdin", "message"), [("[1, 2]", "must hold a JSON object"), ("", "is not valid JSON")])
def test_start_json_that_is_not_a_request_object_is_refused(api: tuple[str, StubState], stdin: str,
                                                            message: str) -> None:
    url, state = api
    code, _, err = run(["start", "--json", "-", *conn(url)], stdin=stdin)
    assert code == restorectl.EXIT_USAGE and message in err and state.requests == []


def test_start_from_flags_builds_a_restore_into_a_server(api: tuple[str, StubState]) -> None:
    url, state = api
    code, _, err = run(["start", "--backup-instance", "/bi", "--into-server", "/subscriptions/s/flexibleServers/t",
                        "--databases", "appdb=app_copy,inventory", "--roles", "clean", "--owner", "app_owner",
                        "--auth-secret", "https://kv1.vault.azure.net/secrets/conn", *conn(url)])
    assert (code, err) == (0, "")
    assert state.requests[-1]["body"] == {
        "backup_instance": {"id": "/bi"},
        "target": {"kind": "server", "server_id": "/subscriptions/s/flexibleServers/t",
                   "databases": [{"source": "appdb", "target": "app_copy"}, {"source": "inventory"}],
                   "roles": "clean", "owner": "app_owner",
                   "auth": {"kind": "secret", "secret_uri": "https://kv1.vault.azure.net/secrets/conn"}}}


@pytest.mark.parametrize(("flags", "message"), [
    (["--backup-instance", "x", "--into-server", "/s", "--prefix", "p"], "choose one target"),
    (["--backup-instance", "x", "--container-url", "https://a/c", "--prefix", "p", "--owner", "o"],
     "--owner belong to --into-server"),
])
def test_server_target_flags_are_checked_before_calling_the_api(api: tuple[str, StubState], flags: list[str],
                                                                message: str) -> None:
    url, state = api
    code, _, err = run(["start", *flags, *conn(url)])
    assert code == restorectl.EXIT_USAGE and message in err and state.requests == []


def test_show_of_a_server_restore_says_what_was_created_where_and_who_owns_it() -> None:
    item = {"id": "r1", "status": "succeeded", "target": {"kind": "server"},
            "server": {"staging": {"container_url": "https://st.blob.core.windows.net/c", "prefix": "r1",
                                   "kept": False},
                       "replay": {"databases": [{"source": "appdb", "database": "appdb_restored", "owner": "app_owner",
                                                 "done": "created"}], "roles": {"mode": "clean",
                                                                                "created": ["app_owner"]}},
                       "verify": {"passed": True, "databases": [{"database": "appdb_restored", "tables": 2,
                                                                 "rows": 60}],
                                  "checks": [{"name": "items", "ok": True}]}}}
    text = restorectl.describe(item, datetime(2026, 12, 2, tzinfo=UTC))
    assert "appdb → appdb_restored  owner app_owner  created  2 tables, 60 rows" in text
    assert "https://st.blob.core.windows.net/c/r1*  (deleted)" in text
    assert "roles created:   app_owner" in text and "check:           items: ok" in text
    assert "verified:        yes" in text


def test_show_exit_codes_follow_the_outcome(api: tuple[str, StubState]) -> None:
    url, state = api
    for rid, status in (("r-ok", "succeeded"), ("r-rej", "rejected"), ("r-run", "restoring")):
        state.add(make_restore(rid, status, None, age_s=60, stages=[],
                               error={"code": "RecoveryPointNotFound", "message": "no point", "fix": "list them"}
                               if status == "rejected" else None))
    assert run(["show", "r-ok", *conn(url)])[0] == 0
    assert run(["show", "r-run", *conn(url)])[0] == 0
    code, out, _ = run(["show", "r-rej", *conn(url)])
    assert code == 1 and "fix:             list them" in out
    assert "restores:        pgsrv01/src_r-rej (database) -> pgsrv-restore/db_r-rej" in out
    assert "started by:      http" in out
    assert run(["show", "r-rej", "--json", *conn(url)])[0] == 1


def test_a_repeated_idempotent_start_says_it_returned_the_existing_restore(api: tuple[str, StubState]) -> None:
    url, state = api
    state.add(make_restore("r-first", "restoring", "monitor", age_s=60, stages=[]))
    state.existing = "r-first"
    code, out, _ = run(["start", "--json", "-", *conn(url)], stdin=json.dumps({"idempotency_key": "k1"}))
    assert code == 0 and out.startswith("existing restore r-first returned (status restoring)")
    assert "nothing new was started" in out


def test_list_passes_the_new_filters(api: tuple[str, StubState]) -> None:
    url, state = api
    run(["list", "--source", "salesdb", "--target", "pgsrv-restore", "--region", "secondary", "--started-by",
         "alert", "--until", "2026-11-24T10:30:00+01:00", *conn(url)])
    [get] = [r for r in state.requests if r["path"] == "/api/restores"]
    assert {k: get["query"].get(k) for k in ("source", "target", "region", "started_by", "until")} == {
        "source": "salesdb", "target": "pgsrv-restore", "region": "secondary", "started_by": "alert",
        "until": "2026-11-24T09:30:00Z"}


# --- issue 13 item 5: --retention-days, --wait, and what show says about expectations

START_FILES = ["start", "--backup-instance", "/subscriptions/s/bi1", "--container-url",
               "https://a.blob.core.windows.net/c", "--prefix", "p"]


def test_start_retention_days_and_priority_build_the_rehydration(api: tuple[str, StubState]) -> None:
    url, state = api
    code, _, err = run([*START_FILES, "--retention-days", "21", *conn(url)])
    assert (code, err) == (0, "")
    assert state.requests[-1]["body"]["rehydration"] == {"retention_days": 21}
    run([*START_FILES, "--retention-days", "12", "--priority", "Standard", *conn(url)])
    assert state.requests[-1]["body"]["rehydration"] == {"priority": "Standard", "retention_days": 12}
    run([*START_FILES, *conn(url)])
    assert "rehydration" not in state.requests[-1]["body"]  # nothing given: the API's defaults


def test_start_retention_days_out_of_range_shows_the_apis_field_and_fix(api: tuple[str, StubState]) -> None:
    url, state = api
    state.fail_next = (400, {"error": {"code": "InvalidRequest", "field": "rehydration.retention_days",
                                       "message": "rehydration.retention_days: Input should be less than or equal "
                                                  "to 30", "fix": "change rehydration.retention_days"}})
    code, _, err = run([*START_FILES, "--retention-days", "45", *conn(url)])
    assert code != 0 and "rehydration.retention_days" in err


@pytest.mark.parametrize(("end", "exit_code"), [("succeeded", 0), ("failed", 1)])
def test_start_wait_follows_the_restore_to_its_end_with_watchs_exit_code(api: tuple[str, StubState], end: str,
                                                                         exit_code: int) -> None:
    url, state = api
    state.created_then = _progress("r-any", ("validating", "validate", None), ("restoring", "monitor", "/j/job-9"),
                                   (end, "monitor", "/j/job-9"))
    code, out, err = run([*START_FILES, "--wait", "--interval", "0.01", *conn(url)])
    assert code == exit_code, (out, err)
    lines = out.strip().splitlines()
    assert lines[0] == "accepted r-0001 (status accepted)" and "restorectl watch" not in out
    assert [line.split()[2] for line in lines[1:-1]] == ["accepted", "validating", "restoring", end]
    assert lines[-1].startswith("all 1 restore(s) ended")
    gets = [r for r in state.requests if r["path"] == "/api/restores/r-0001"]
    assert len(gets) == 4  # followed until terminal, not beyond


def test_start_without_wait_returns_at_once(api: tuple[str, StubState]) -> None:
    url, state = api
    state.created_then = _progress("r-any", ("validating", "validate", None))
    code, out, _ = run([*START_FILES, *conn(url)])
    assert code == 0 and "restorectl watch r-0001" in out
    assert not [r for r in state.requests if r["path"] == "/api/restores/r-0001"]


def test_show_says_where_the_job_is_visible_the_rehydration_window_and_the_gap(api: tuple[str, StubState]) -> None:
    url, state = api
    r = make_restore("r-crr", "waiting", "wait", age_s=60, stages=[("wait", 0, None)])
    r.update(azure_job_visible_in="secondary region northeurope only: fetchCrossRegionRestoreJob",
             data_loss_gap_seconds=3 * 3600 + 120,
             expected={"what": "rehydration, priority Standard", "latest": "2026-11-24T23:00:00Z",
                       "note": "up to 14h10m left", "source": "Azure Storage documents up to 15 h"})
    state.add(r)
    code, out, _ = run(["show", "r-crr", *conn(url)])
    assert code == 0
    assert "job visible in:  secondary region northeurope only: fetchCrossRegionRestoreJob" in out
    assert ("expected:        rehydration, priority Standard by 2026-11-24T23:00:00Z (up to 14h10m left; Azure "
            "Storage documents up to 15 h)") in out
    assert "data-loss gap:   3h02m" in out


def test_redrive_resends_an_active_restores_stage_and_refuses_an_ended_one(api: tuple[str, StubState]) -> None:
    url, state = api
    state.add(make_restore("r-a", "restoring", "monitor", age_s=10, stages=[]))
    state.add(make_restore("r-b", "failed", None, age_s=10, stages=[]))
    code, out, _ = run(["redrive", "r-a", *conn(url)])
    assert code == 0 and "r-a: monitor message sent again (attempt 3)" in out
    assert state.requests[-1]["method"] == "POST" and state.requests[-1]["path"].endswith("/restores/r-a/redrive")
    code, _, err = run(["redrive", "r-b", *conn(url)])
    assert code == restorectl.EXIT_FAILED and "409 RestoreEnded" in err and "submit a new restore" in err


def test_drills_runs_shows_pass_fail_and_rto_against_the_target_flagging_an_overrun(
        api: tuple[str, StubState]) -> None:
    from .stub_api import make_drill_run

    url, state = api
    state.drill_runs = {"nightly": [make_drill_run("nightly", "pgsrv01-salesdb", 0, rto_s=1800.0, passed=False),
                                    make_drill_run("nightly", "pgsrv01-salesdb", 1, rto_s=600.0),
                                    make_drill_run("nightly", "pgsrv01-salesdb", 2, rto_s=None, passed=None)]}
    code, out, err = run(["drills", "runs", "nightly", *conn(url)])
    assert (code, err) == (0, "")
    failed, passed, running = out.splitlines()
    assert " FAIL " in failed and "RTO 30.0m/20.0m OVER " in failed and "checks items=FAILED" in failed
    assert " PASS " in passed and "RTO 10.0m/20.0m " in passed and "OVER" not in passed
    assert " running " in running and "RTO - " in running and "PASS" not in running and "FAIL" not in running
