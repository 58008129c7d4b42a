"""The replay job image (./Dockerfile), checked offline: no Docker engine runs here, so the Dockerfile is parsed.

Base image pinned to the Function App's Python and to the Debian release the PostgreSQL project's (PGDG) suite names;
postgresql-client of the major infra/main.bicep deploys as RESTORE_REPLAY_CLIENT_VERSION; non-root; the entrypoint is
the replay module of this repository, the same command the Container Apps job runs.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

from tests.infra import bicep_facts as facts

DOCKERFILE = facts.ROOT / "Dockerfile"
DOCKERIGNORE = facts.ROOT / ".dockerignore"
REPLAY_MODULE = "restore_core.replay"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile: comments dropped, backslash continuations joined."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    if current:
        logical.append(current)
    result = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        result.append((keyword.upper(), args.strip()))
    return result


def base_image_problems(steps: list[tuple[str, str]], python_version: str, pgdg_codename: str | None) -> list[str]:
    froms = [args for keyword, args in steps if keyword == "FROM"]
    if len(froms) != 1:
        return [f"expected one FROM, found {froms}"]
    m = re.fullmatch(r"python:(\d+\.\d+)(?:\.\d+)?-slim-([a-z]+)(@sha256:[0-9a-f]{64})?", froms[0])
    if not m:
        return [f"base image {froms[0]!r} is not a pinned python:<version>-slim-<debian release> image"]
    problems = []
    if m.group(1) != python_version:
        problems.append(f"base image Python {m.group(1)} differs from the Function App's {python_version}")
    if m.group(2) != pgdg_codename:
        problems.append(f"base image Debian {m.group(2)!r} differs from the PGDG suite {pgdg_codename!r}")
    return problems


def pgdg_codename(text: str) -> str | None:
    m = re.search(r"deb \[signed-by=[^\]]+\] https://apt\.postgresql\.org/pub/repos/apt ([a-z]+)-pgdg main", text)
    return m.group(1) if m else None


def client_majors(steps: list[tuple[str, str]]) -> set[str]:
    return {m for keyword, args in steps if keyword == "RUN" for m in re.findall(r"postgresql-client-(\d+)", args)}


def _main_var(name: str) -> object:
    return facts.parse(facts.MAIN_BICEP)["variables"][name]["value"]


def _function_python_version() -> str:
    site = facts.resource_properties(facts.parse(facts.INFRA / "modules" / "function-app.bicep"), "site",
                                     {"isFlex": True, "vnetIntegrated": False})
    return str(site["functionAppConfig"]["runtime"]["version"])


def test_dockerfile_exists_with_dockerignore() -> None:
    assert DOCKERFILE.exists(), "add ./Dockerfile: the replay job image (azure.yaml service replay)"
    ignore = DOCKERIGNORE.read_text().splitlines()
    assert "*" in ignore and "!restore_core/" in ignore and "!requirements.txt" in ignore, \
        ".dockerignore must exclude everything but restore_core/ and requirements.txt (no .venv, no .local secrets)"


def test_base_image_is_pinned_to_the_function_python_and_the_pgdg_release() -> None:
    text = DOCKERFILE.read_text()
    problems = base_image_problems(instructions(text), _function_python_version(), pgdg_codename(text))
    assert not problems, problems


def test_base_image_check_flags_floating_or_mismatched_images() -> None:
    def check(image: str, codename: str = "bookworm") -> list[str]:
        return base_image_problems([("FROM", image)], "3.11", codename)
    assert check("python:latest") and check("python:3-slim") and check("debian:bookworm-slim")
    assert check("python:3.12-slim-bookworm"), "a Python other than the Function App's must be flagged"
    assert check("python:3.11-slim-trixie"), "a Debian release other than the PGDG suite's must be flagged"
    assert not check("python:3.11-slim-bookworm") and not check("python:3.11.9-slim-bookworm")


def test_postgresql_client_comes_from_pgdg_in_the_deployed_major() -> None:
    text = DOCKERFILE.read_text()
    steps = instructions(text)
    assert pgdg_codename(text), "the apt.postgresql.org (PGDG) source with signed-by is missing"
    key = "https://www.postgresql.org/media/keys/ACCC4CF8.asc"
    assert key in text, "the PGDG signing key must come from postgresql.org"
    major = _main_var("replayClientMajor")
    assert client_majors(steps) == {major}, f"install postgresql-client-{major} (RESTORE_REPLAY_CLIENT_VERSION) only"
    assert major == "18", "the replay image carries the newest PostgreSQL client (18)"
    settings = facts.app_settings(facts.parse(facts.MAIN_BICEP), "restoreSettings")
    assert settings["RESTORE_PG_BINDIR"] == "/usr/lib/postgresql/${replayClientMajor}/bin"
    assert f"/usr/lib/postgresql/{major}/bin/pg_restore --version" in text, "the build must prove the bindir"


def test_image_runs_as_non_root() -> None:
    users = [args for keyword, args in instructions(DOCKERFILE.read_text()) if keyword == "USER"]
    assert users, "add USER: the replay must not run as root"
    assert users[-1].split(":")[0] not in ("root", "0"), f"last USER is {users[-1]!r}"


def test_image_installs_this_package_and_its_requirements() -> None:
    steps = instructions(DOCKERFILE.read_text())
    copies = [args for keyword, args in steps if keyword == "COPY"]
    assert any(c.split()[0] == "requirements.txt" for c in copies)
    assert any(c.split()[0] == "restore_core" for c in copies)
    assert any(k == "RUN" and "pip install" in a and "-r requirements.txt" in a for k, a in steps)


def test_entrypoint_is_the_replay_module_the_job_runs() -> None:
    steps = instructions(DOCKERFILE.read_text())
    entry = [json.loads(args) for keyword, args in steps if keyword == "ENTRYPOINT"]
    assert entry == [["python", "-m", REPLAY_MODULE]], f"ENTRYPOINT must be exec form python -m {REPLAY_MODULE}"
    job = facts.parse(facts.INFRA / "modules" / "container-apps.bicep")["resources"]["job"]["config"]
    assert job["properties"]["template"]["containers"][0]["command"] == entry[0]


def test_replay_module_exists_in_the_repository() -> None:
    # restore_core/replay.py or restore_core/replay/__main__.py: what `python -m restore_core.replay` runs in the image
    package = facts.ROOT / "restore_core"
    files = [package / "replay.py", package / "replay" / "__main__.py"]
    assert any(f.exists() for f in files), f"{REPLAY_MODULE} is missing from this repository: the image cannot start"
    spec = importlib.util.find_spec(REPLAY_MODULE)
    assert spec is not None and spec.origin is not None
    assert Path(spec.origin).resolve().is_relative_to(package.resolve()), \
        f"{REPLAY_MODULE} resolves outside this repository ({spec.origin}): the image copies only ./restore_core"


def test_dockerfile_parser_joins_continuations_and_drops_comments() -> None:
    steps = instructions("# c\nFROM a\nRUN x \\\n    # inner comment\n    y\nUSER 1\n")
    assert steps == [("FROM", "a"), ("RUN", "x  y"), ("USER", "1")]
