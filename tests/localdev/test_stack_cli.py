"""The stack CLI's answers that need no running stack: a malformed --set, status and down without a stack."""

from __future__ import annotations

from pathlib import Path

import pytest

from localdev.stack import main


def test_malformed_set_is_a_usage_error_and_starts_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["up", "--dir", str(tmp_path / "stack"), "--set", "NO_EQUALS_SIGN"])
    assert exit_info.value.code == 2
    assert "--set 'NO_EQUALS_SIGN': write it as NAME=VALUE" in capsys.readouterr().err
    assert not (tmp_path / "stack").exists()


def test_status_and_down_without_a_stack(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--dir", str(tmp_path)]) == 1
    assert "no stack in" in capsys.readouterr().out
    assert main(["down", "--dir", str(tmp_path)]) == 0
    assert "stopped nothing (no running stack)" in capsys.readouterr().out
