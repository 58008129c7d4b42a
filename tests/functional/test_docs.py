"""The project's docs stand alone: every relative link resolves to a file in this repository, none leaves it, and
no doc names a path of a particular machine."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
MACHINE_PATH = re.compile(r"(?<![\w.])/(?:work|home|root|Users|tmp/pytest)/")


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_relative_links_resolve_inside_the_repository(doc: Path) -> None:
    for target in LINK.findall(doc.read_text()):
        if re.match(r"^[a-z]+:", target):
            continue  # http(s), mailto: not a file
        path = (doc.parent / target).resolve()
        assert path.is_relative_to(ROOT), f"{doc.name} links outside the repository: {target}"
        assert path.exists(), f"{doc.name} links to a missing file: {target}"


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_no_doc_names_a_path_of_a_particular_machine(doc: Path) -> None:
    found = MACHINE_PATH.findall(doc.read_text())
    assert not found, f"{doc.name} names machine paths: {found}"


def test_architecture_doc_lists_what_adding_a_stage_touches() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    for needle in ("restore_core/stages/registry.py", "restore_core/transitions.py", "function_app.py",
                   "infra/main.bicep", "local.settings.sample.json"):
        assert needle in text


NOQA_C901 = "noqa: " + "C901"  # spelled apart so this file does not find itself


def test_complexity_rule_is_on_with_no_escapes() -> None:
    """ruff's C90 at 10 is part of `make lint`, and no function escapes it with a noqa."""
    import tomllib

    lint = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]
    assert "C90" in lint["select"] and lint["mccabe"]["max-complexity"] == 10
    escapes = [f"{p.relative_to(ROOT)}:{n}" for p in ROOT.rglob("*.py")
               if not {".venv", "node_modules", ".local"} & set(p.relative_to(ROOT).parts)
               for n, line in enumerate(p.read_text().splitlines(), start=1) if NOQA_C901 in line]
    assert not escapes, escapes


def test_every_setting_the_app_reads_is_in_the_readmes_configuration_table() -> None:
    """A setting added to restore_core/config.py without a README row is invisible to whoever deploys the app. Queue
    names may use the table's shorthand (`RESTORE_QUEUE_REQUESTS`, `_VALIDATE`, …)."""
    from restore_core import config

    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Configuration"):readme.index("## Deploying to Azure")]
    missing = [s for s in config.ALL_SETTINGS
               if f"`{s}`" not in table and f"`{s.removeprefix('RESTORE_QUEUE')}`" not in table]
    assert missing == []
