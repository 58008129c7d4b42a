"""The replay's temporary disk and memory bounds (issue 17 item 1), without PostgreSQL: the staged file is
downloaded when it fits ``RESTORE_REPLAY_DISK_BUDGET_MB`` and streamed into the tool's stdin when it does not; the
row counts teed from the stream equal the counts read from the file; a stream that breaks (blob read error, short
blob, tool killed, lease lost) is never reported as a success; the tool's output is kept bounded.

The client tools are tiny shell scripts in a temporary ``RESTORE_PG_BINDIR`` that record what they were given."""

from __future__ import annotations

import io
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from restore_core import archive, lease, pgerrors
from restore_core.errors import RetryableError
from restore_core.models import ServerTarget, parse_request
from restore_core.pgtarget import TargetConn
from restore_core.stages import replay

from .fakes import BI_ID, Harness, database_body, settings
from .test_archive import make_archive

FLEX = "/subscriptions/s2/resourceGroups/rg-target/providers/Microsoft.DBforPostgreSQL/flexibleServers/pgflex-target"
RECORDING_TOOL = '#!/bin/sh\necho "$@" > "$FAKE_OUT.args"\ncat > "$FAKE_OUT"\n'


class ChunkArea:
    """The staging area port over one local file, served in ``chunk`` byte pieces; ``fail_after`` chunks a read
    error is raised, ``short`` drops the last bytes (a blob that ends early)."""

    def __init__(self, path: Path, chunk: int = 1000, fail_after: int | None = None, short: int = 0) -> None:
        self.path, self.chunk, self.fail_after, self.short = path, chunk, fail_after, short
        self.downloads: list[Path] = []
        self.streamed = 0

    def download_to(self, name: str, path: Path) -> int:
        self.downloads.append(path)
        path.write_bytes(self.path.read_bytes())
        return path.stat().st_size

    def chunks(self, name: str) -> Iterator[bytes]:
        data = self.path.read_bytes()
        data = data[: len(data) - self.short]
        for i, start in enumerate(range(0, len(data), self.chunk)):
            if self.fail_after is not None and i == self.fail_after:
                raise OSError("connection reset by the storage account")
            self.streamed += 1
            yield data[start:start + self.chunk]


def _tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str = RECORDING_TOOL) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    for name in ("pg_restore", "psql"):
        tool = bindir / name
        tool.write_text(body)
        tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    out = tmp_path / "received"
    monkeypatch.setenv("FAKE_OUT", str(out))
    monkeypatch.setattr(replay, "_prepare_database", lambda ctx, name: "created")
    monkeypatch.setattr(replay, "_grant_owner", lambda ctx, name: None)
    return out


def _ctx(tmp_path: Path, area: ChunkArea, budget_mb: str, **env: str) -> Any:
    t = parse_request({"backup_instance": {"id": BI_ID}, "target": {"kind": "server", "server_id": FLEX}}).target
    assert isinstance(t, ServerTarget)
    h = Harness(settings=settings(RESTORE_PG_BINDIR=str(tmp_path / "bin"), RESTORE_REPLAY_DISK_BUDGET_MB=budget_mb,
                                  **env))
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    conn = TargetConn("h", 5432, "restore-service", "x")
    return replay._Context(h.submit(database_body()), h.deps, t, conn, area, work,  # type: ignore[arg-type]
                           threading.Event())


def _entry(path: Path, fmt: str = "custom", offsets: bool = True) -> dict[str, Any]:
    return {"format": fmt, "file": path.name, "size": path.stat().st_size, "source": "shop", "target": "shop_r",
            "data_offsets": offsets}


def _archive(tmp_path: Path) -> Path:
    return make_archive(tmp_path / "shop.dump", rows=20000)


def test_an_archive_larger_than_the_disk_budget_is_streamed_into_pg_restore_with_its_counts_teed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = _tools(tmp_path, monkeypatch)
    path = _archive(tmp_path)
    area = ChunkArea(path, chunk=777)
    ctx = _ctx(tmp_path, area, "0")  # no temporary disk at all
    entry = _entry(path)
    result = replay._replay_database(ctx, entry)
    assert result["load"] == "stream" and area.downloads == [] and area.streamed > 1
    assert out.read_bytes() == path.read_bytes()  # pg_restore got the archive byte for byte on stdin
    args = (tmp_path / "received.args").read_text().split()
    assert "--no-owner" in args and not any(a.startswith("--jobs") for a in args)  # no seeking: single-threaded
    assert str(path) not in args and not any(a.endswith(".dump") for a in args)
    by_file = archive.count_rows(path, None, 10**9)
    assert entry["archive_counts"]["rows"] == {f"{s}.{t}": n for (s, t), n in by_file.rows.items()}
    assert entry["archive_counts"]["rows"] == {"public.items": 20000} and entry["archive_counts"]["complete"]


def test_an_archive_within_the_budget_and_the_free_disk_is_downloaded_and_restored_in_parallel(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _tools(tmp_path, monkeypatch, '#!/bin/sh\necho "$@" > "$FAKE_OUT.args"\n')
    path = _archive(tmp_path)
    area = ChunkArea(path)
    ctx = _ctx(tmp_path, area, "100")
    entry = _entry(path)
    result = replay._replay_database(ctx, entry)
    assert result["load"] == "download" and len(area.downloads) == 1 and area.streamed == 0
    args = (tmp_path / "received.args").read_text().split()
    assert "--jobs=2" in args and args[-1] == str(area.downloads[0])
    assert entry["archive_counts"]["rows"] == {"public.items": 20000}


def test_the_free_disk_bounds_the_download_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _archive(tmp_path)
    ctx = _ctx(tmp_path, ChunkArea(path), "100000")
    monkeypatch.setattr(replay.shutil, "disk_usage", lambda p: SimpleNamespace(free=path.stat().st_size))
    assert replay._load_mode(ctx, _entry(path)) == "stream"  # the budget allows it, the disk does not
    monkeypatch.setattr(replay.shutil, "disk_usage", lambda p: SimpleNamespace(free=10**12))
    assert replay._load_mode(ctx, _entry(path)) == "download"


def test_a_blob_read_that_breaks_midway_kills_psql_and_is_retried_not_reported_as_success(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """psql exits 0 at the end of its input: closing its stdin after a broken read would load half a dump."""
    out = _tools(tmp_path, monkeypatch)
    path = tmp_path / "shop.sql"
    path.write_text("".join(f"INSERT INTO t VALUES ({i});\n" for i in range(20000)))  # noqa: S608
    ctx = _ctx(tmp_path, ChunkArea(path, chunk=4096, fail_after=3), "0")
    with pytest.raises(RetryableError, match=r"streaming shop.sql into shop_r broke after 12288 of \d+ bytes "
                                             r"\(OSError: connection reset by the storage account\)"):
        replay._replay_database(ctx, _entry(path, "plain"))
    assert not out.exists() or out.stat().st_size <= 12288  # killed: maybe before it even opened its output
    assert all(p.poll() is not None and p.returncode != 0 for p in ctx.procs)  # killed, not ended cleanly


def test_a_blob_that_ends_early_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _tools(tmp_path, monkeypatch)
    path = _archive(tmp_path)
    ctx = _ctx(tmp_path, ChunkArea(path, short=100), "0")
    with pytest.raises(RetryableError, match="the blob gave .* bytes, the plan says"):
        replay._replay_database(ctx, _entry(path))


def test_a_tool_killed_mid_stream_fails_the_replay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _tools(tmp_path, monkeypatch, '#!/bin/sh\nhead -c 5000 > /dev/null\necho "some warning" >&2\nkill -9 $$\n')
    path = _archive(tmp_path)
    ctx = _ctx(tmp_path, ChunkArea(path, chunk=1000), "0")
    with pytest.raises(replay._Fail) as exc:
        replay._replay_database(ctx, _entry(path))
    assert exc.value.code == "ReplayToolFailed" and "killed by signal 9" in exc.value.message


def test_a_killed_tool_fails_even_when_its_output_had_only_benign_warnings(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, a non-zero exit with benign warnings passed: a signal is never benign."""
    stderr = ('pg_restore: error: could not execute query: ERROR:  schema "public" already exists\\n'
              'Command was: CREATE SCHEMA public;\\n\\n')
    _tools(tmp_path, monkeypatch, f'#!/bin/sh\ncat > /dev/null\nprintf \'{stderr}\' >&2\nkill -9 $$\n')
    path = _archive(tmp_path)
    ctx = _ctx(tmp_path, ChunkArea(path), "100")  # the download path
    with pytest.raises(replay._Fail, match="killed by signal 9"):
        replay._replay_database(ctx, _entry(path))


def test_a_lost_lease_kills_the_streaming_tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _tools(tmp_path, monkeypatch, "#!/bin/sh\nexec sleep 30\n")
    path = _archive(tmp_path)
    ctx = _ctx(tmp_path, ChunkArea(path, chunk=100), "0")
    threading.Timer(0.5, ctx.kill).start()  # what the heartbeat does when another runner took the lease
    with pytest.raises(lease.LeaseLost):
        replay._replay_database(ctx, _entry(path))
    assert all(p.returncode is not None for p in ctx.procs)


def test_tool_output_is_kept_bounded_and_counts_what_it_dropped() -> None:
    messages = ('syntax error', 'role "x" does not exist')
    lines = [f"psql:<stdin>:{i}: ERROR:  {messages[i % 2]}\n" for i in range(50000)]
    out = replay._CappedOutput(io.BytesIO("".join(lines).encode()), replay._plain_failure_line, cap=64 * 1024)
    text = out.text()
    assert len(text) <= 2 * 64 * 1024 + 100
    assert text.startswith(lines[0]) and text.endswith(lines[-1])
    assert out.dropped_lines > 40000 and "lines of output not kept" in text
    assert out.dropped_failures == pytest.approx(out.dropped_lines / 2, abs=1)  # the syntax errors only


def test_dropped_psql_failures_fail_the_plain_replay(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, ChunkArea(_archive(tmp_path)), "0")
    diag = replay._diagnose(ctx, {"format": "plain"}, "", dropped_failures=3)
    assert [f.code for f in diag.failures] == ["plain-sql-error"] and "3 more errors" in diag.failures[0].message


def test_pg_restore_errors_dropped_from_its_output_fail_through_its_own_count() -> None:
    block = ("pg_restore: error: could not execute query: ERROR:  permission denied for table t\n"
             "Command was: ALTER TABLE t ADD x int;\n\n")
    raw = (block * 20000 + "pg_restore: warning: errors ignored on restore: 20000\n").encode()
    text = replay._CappedOutput(io.BytesIO(raw), cap=64 * 1024).text()
    diag = pgerrors.classify_output(text)
    assert "unparsed-errors" in [f.code for f in diag.failures]


def test_many_warnings_of_one_kind_become_a_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = "".join(f'psql:<stdin>:{i}: ERROR:  role "r{i}" does not exist\n' for i in range(500))
    _tools(tmp_path, monkeypatch, f"#!/bin/sh\ncat > /dev/null\nprintf '{stderr}' >&2\n")
    path = tmp_path / "shop.sql"
    path.write_text("SELECT 1;\n")
    ctx = _ctx(tmp_path, ChunkArea(path), "0")
    result = replay._replay_database(ctx, _entry(path, "plain"))
    assert result["warnings"] == 500
    assert len(ctx.warnings) == replay._WARNINGS_PER_CODE + 1
    assert ctx.warnings[-1]["message"].startswith(f"and {500 - replay._WARNINGS_PER_CODE} more warnings")
