"""A drill definition: which backups to restore on a schedule, where, how to check them, and for how long to keep
what they created (issue 15). Validated strictly, like the restore request (:mod:`restore_core.models`): unknown
fields are refused, and every problem becomes one :class:`RequestError` naming the field and the fix.

Consumes: JSON from ``POST /api/drills`` / ``PUT /api/drills/{id}`` (and ``restorectl drills``).
Produces: :class:`DrillDefinition`; :func:`check_against_settings` adds the rules that need the settings (the target
must be a drill target of ``RESTORE_DRILL_TARGETS`` and no protected server).

Example::

    {"id": "nightly-flex", "schedule": "0 0 2 * * *", "start_window_minutes": 60,
     "backup_instances": {"vaults": ["/subscriptions/…/backupVaults/bv-prod"], "datasource_pattern": "pgflex*"},
     "recovery_point": {"select": "random", "within_days": 7},
     "target": {"server_id": "/subscriptions/…/flexibleServers/pg-drills", "database_suffix": "_drill_{run}"},
     "checks": [{"name": "items", "database": "inventory", "sql": "SELECT count(*) > 0 FROM items", "expect": "t"}],
     "rto_target_minutes": 45, "validation_window_minutes": 120}
"""

from __future__ import annotations

import fnmatch
import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .. import arm_ids
from ..config import GuardSettings
from ..errors import RequestError
from ..models import EntraAuth, Region, RolesMode, SecretAuth, UserCheck, decode_body, server_id_of_kind
from . import ncrontab

DRILL_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
#: the run token a database suffix must carry, so that two runs never pick the same names
RUN_TOKEN = "{run}"  # noqa: S105 - a placeholder, not a secret
RUN_TOKEN_LENGTH = 8
MAX_INSTANCES = 200


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class PointSelect(StrEnum):
    LATEST = "latest"
    """The newest recovery point."""
    RANDOM = "random"
    """A recovery point chosen at random among those of the last ``within_days`` days (the same for a run)."""
    OLDEST = "oldest"
    """The oldest point still retained (often in the archive tier: exercises rehydration)."""


class PointSelection(_Strict):
    select: PointSelect = PointSelect.LATEST
    within_days: Annotated[int, Field(ge=1, le=3650)] | None = None

    @model_validator(mode="after")
    def _days(self) -> PointSelection:
        if self.select == PointSelect.RANDOM and self.within_days is None:
            raise ValueError("select random needs within_days (the window it picks from, in days)")
        if self.select != PointSelect.RANDOM and self.within_days is not None:
            raise ValueError("within_days applies to select random only; remove it")
        return self


class InstanceSelection(_Strict):
    """Explicit backup instance ids, or every instance of ``vaults`` (optionally only datasources whose name matches
    ``datasource_pattern``, an fnmatch pattern, case-insensitive)."""

    ids: Annotated[list[str], Field(min_length=1, max_length=MAX_INSTANCES)] | None = None
    vaults: Annotated[list[str], Field(min_length=1, max_length=20)] | None = None
    datasource_pattern: Annotated[str, Field(min_length=1, max_length=200)] | None = None

    @model_validator(mode="after")
    def _one_way(self) -> InstanceSelection:
        if bool(self.ids) == bool(self.vaults):
            raise ValueError("give either ids (backup instance ids) or vaults (all their instances), not both")
        if self.ids and self.datasource_pattern:
            raise ValueError("datasource_pattern filters vaults' instances; remove it or use vaults")
        for i, bi in enumerate(self.ids or []):
            arm_ids.parse_backup_instance_id(bi, f"backup_instances.ids.{i}")
        for i, v in enumerate(self.vaults or []):
            arm_ids.parse_vault_id(v, f"backup_instances.vaults.{i}")
        return self

    def matches(self, datasource_name: str) -> bool:
        return self.datasource_pattern is None or fnmatch.fnmatchcase(datasource_name.lower(),
                                                                      self.datasource_pattern.lower())


class DrillTarget(_Strict):
    """The drill-only server the point is restored into, and how its databases are named: the source name plus
    ``database_suffix``, which must carry ``{run}`` (a token per run and instance)."""

    server_id: str
    database_suffix: str = "_drill_{run}"
    auth: Annotated[EntraAuth | SecretAuth, Field(discriminator="kind")] = EntraAuth()
    roles: RolesMode = RolesMode.SKIP
    owner: str | None = None

    @field_validator("server_id")
    @classmethod
    def _server(cls, v: str) -> str:
        return server_id_of_kind(v, "flexibleServers", "a drill restores into a Flexible Server (…/Microsoft."
                                 "DBforPostgreSQL/flexibleServers/{name})")

    @field_validator("database_suffix")
    @classmethod
    def _suffix(cls, v: str) -> str:
        if v.count(RUN_TOKEN) != 1:
            raise ValueError("database_suffix must contain {run} once (e.g. _drill_{run}): each run gets new names")
        if not re.fullmatch(r"[A-Za-z0-9_$-]{0,21}", v.replace(RUN_TOKEN, "")):
            raise ValueError("database_suffix around {run}: at most 21 letters, digits, _ $ -")
        return v

    def suffix_for(self, run_token: str) -> str:
        return self.database_suffix.replace(RUN_TOKEN, run_token)


class DrillCheck(_Strict):
    """A check on a restored database, named by its source name (the drill adds the run's suffix)."""

    name: Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9 _.:-]+$")]
    database: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_$-]{0,40}$")]
    sql: Annotated[str, Field(min_length=1, max_length=2000)]
    expect: Annotated[str, Field(max_length=500)]

    def for_run(self, suffix: str) -> UserCheck:
        return UserCheck(name=self.name, database=self.database + suffix, sql=self.sql, expect=self.expect)


class DrillDefinition(_Strict):
    schema_version: Literal["2026-12-01"] = "2026-12-01"
    id: str
    description: Annotated[str, Field(max_length=500)] | None = None
    enabled: bool = True
    schedule: str
    start_window_minutes: float = Field(default=60, ge=0, le=24 * 60)
    backup_instances: InstanceSelection
    recovery_point: PointSelection = PointSelection()
    region: Region = Region.PRIMARY
    target: DrillTarget
    checks: Annotated[list[DrillCheck], Field(max_length=20)] = []
    rto_target_minutes: float = Field(gt=0, le=30 * 24 * 60)
    validation_window_minutes: float = Field(default=60, ge=0, le=7 * 24 * 60)
    max_concurrent: int = Field(default=2, ge=1, le=50)
    deadline_hours: float | None = Field(default=None, gt=0, le=24 * 7)

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not DRILL_ID.match(v):
            raise ValueError("id must be 1-40 characters: lower-case letters, digits and -, starting with a letter or "
                             "digit")
        return v

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, v: str) -> str:
        try:
            return ncrontab.parse(v).expression
        except ValueError as exc:
            raise ValueError(f"not a valid NCRONTAB expression (UTC): {exc}") from None

    def cron(self) -> ncrontab.Schedule:
        return ncrontab.parse(self.schedule)


def _field_of(loc: tuple[int | str, ...]) -> str:
    tags = {"entra", "secret"}
    return ".".join(str(p) for p in loc if not (isinstance(p, str) and p in tags)) or "body"


def parse_drill(body: bytes | str | dict[str, Any], *, drill_id: str | None = None) -> DrillDefinition:
    """Validate a definition; ``drill_id``: the id of the path (``PUT /api/drills/{id}``), which the body may repeat
    but not contradict. Raises :class:`RequestError` with the first problem."""
    data = decode_body(body) if isinstance(body, (bytes, str)) else dict(body)
    if drill_id is not None:
        if "id" in data and data["id"] != drill_id:
            raise RequestError(f"the body's id {data['id']!r} differs from the path's {drill_id!r}", field="id",
                               fix="leave id out of the body, or send the same id")
        data["id"] = drill_id
    try:
        return DrillDefinition.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        first = sorted(errors, key=lambda e: e.get("type") != "extra_forbidden")[0]
        field = _field_of(tuple(first.get("loc", ())))
        msg = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        if first.get("type") == "extra_forbidden":
            raise RequestError(f"unknown field {field!r}", field=field,
                               fix="remove it; see the drill definition in docs/drills.md") from None
        if first.get("type") == "missing":
            raise RequestError(f"missing field {field!r}", field=field,
                               fix="add it; see the drill definition in docs/drills.md") from None
        raise RequestError(f"{field}: {msg}", field=field, fix=f"change {field}: {msg}") from None


def drill_target_problem(server_id: str, patterns: tuple[str, ...]) -> str | None:
    """Why ``server_id`` is no drill target (``RESTORE_DRILL_TARGETS``: fnmatch patterns of server ids), or None."""
    if not patterns:
        return "no drill target is configured (RESTORE_DRILL_TARGETS is empty)"
    if any(fnmatch.fnmatchcase(server_id.lower(), p.lower()) for p in patterns):
        return None
    return "it is not among the drill targets (RESTORE_DRILL_TARGETS)"


def is_drill_target(server_id: str, patterns: tuple[str, ...]) -> bool:
    return bool(patterns) and drill_target_problem(server_id, patterns) is None


def check_against_settings(d: DrillDefinition, guards: GuardSettings) -> None:
    """The rules that need the settings: a drill restores only into a drill target, never into a protected server."""
    problem = drill_target_problem(d.target.server_id, guards.drill_targets)
    if problem:
        raise RequestError(f"target.server_id: {problem}", field="target.server_id", code="NotADrillTarget",
                           fix="choose a server reserved for drills (one of: " +
                               (", ".join(guards.drill_targets[:10]) or "none configured") +
                               "), or ask the service's admins to add it to RESTORE_DRILL_TARGETS")
    if any(arm_ids.same_id(d.target.server_id, s) for s in guards.protected_servers):
        raise RequestError("target.server_id is a protected server (RESTORE_PROTECTED_SERVERS); a drill never "
                           "restores into a server that holds protected data", field="target.server_id",
                           code="TargetServerProtected", fix="choose a server reserved for drills")
