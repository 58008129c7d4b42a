"""The public, versioned restore request and the enums every module shares.

Consumes: JSON from ``POST /api/restores`` and from the ``restore-requests`` queue.
Produces: a validated :class:`RestoreRequest`; :func:`parse_request` turns every validation problem into one
:class:`RequestError` naming the field and what to change. Strict: unknown fields are rejected. Bounded twice: the
raw body (:data:`MAX_BODY_BYTES`) and the form the restore row stores (:data:`limits.REQUEST_COST`: characters
outside ASCII take 6 to 12 bytes there), so an accepted request can always be stored.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from . import arm_ids
from .errors import RequestError
from .limits import REQUEST_COST
from .timeformat import request_time

SCHEMA_VERSION = "2026-11-01"
MAX_BODY_BYTES = 16 * 1024

#: Idempotency-key prefixes the doors give themselves (an alert's id, a queue message's id, a poison-queue copy's
#: id). A client key may not use them, or an HTTP request could take over an alert's restore (or the other way round).
ALERT_KEY_PREFIX = "alert:"
MESSAGE_KEY_PREFIX = "msg:"
POISON_KEY_PREFIX = "poison:"
DRILL_KEY_PREFIX = "drill:"  # a drill run's restore (restore_core/drills)
RESERVED_KEY_PREFIXES = (ALERT_KEY_PREFIX, MESSAGE_KEY_PREFIX, POISON_KEY_PREFIX, DRILL_KEY_PREFIX)


def reserved_key_problem(key: str) -> str | None:
    """Why a client idempotency key is refused (it starts with a door's own prefix), or None."""
    for prefix in RESERVED_KEY_PREFIXES:
        if key.lower().startswith(prefix):
            return (f"idempotency keys starting with {prefix!r} are reserved for the service's own doors (alerts, "
                    "queue messages and drills)")
    return None


class Status(StrEnum):
    """Where a restore stands. Terminal: succeeded, failed, rejected, cancelled."""

    ACCEPTED = "accepted"
    """Recorded; validation not started yet."""
    VALIDATING = "validating"
    """Resolving the backup instance and recovery point, checking rules, asking Azure to validate."""
    REHYDRATING = "rehydrating"
    """Asking Azure to rehydrate an archived recovery point."""
    WAITING = "waiting"
    """Waiting for the rehydration to complete."""
    RESTORING = "restoring"
    """The restore is being triggered or the Azure job is running."""
    SUCCEEDED = "succeeded"
    """The Azure job ended Completed or CompletedWithWarnings."""
    FAILED = "failed"
    """The Azure job failed, was cancelled in Azure, or the pipeline gave up (reason recorded)."""
    REJECTED = "rejected"
    """Validation failed; nothing was started in Azure."""
    CANCELLED = "cancelled"
    """Cancelled by an operator before the trigger."""

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.REJECTED, Status.CANCELLED})


class Stage(StrEnum):
    """Queue-triggered stages; each has its own queue."""

    VALIDATE = "validate"
    """Resolve, select the point, check rules, call validateRestore."""
    REHYDRATE = "rehydrate"
    """Reuse or trigger the rehydration of an archived point."""
    WAIT = "wait"
    """Watch the rehydration with delayed self-messages."""
    TRIGGER = "trigger"
    """Trigger the restore exactly once (or adopt the job a previous attempt started)."""
    MONITOR = "monitor"
    """Follow the Azure job to its end and publish the completion event."""
    INVENTORY = "inventory"
    """Server targets: list the staged files, read each archive's table of contents, store the replay plan."""
    REPLAY = "replay"
    """Server targets: roles, CREATE DATABASE, pg_restore --no-owner into the target (a Container Apps job)."""
    VERIFY = "verify"
    """Server targets: check objects, row counts and user checks in the target; delete the staged files."""


class TargetKind(StrEnum):
    DATABASE = "database"
    """A new database on a target server (Single Server only)."""
    FILES = "files"
    """Dump files in a blob container."""
    SERVER = "server"
    """New databases on a Flexible Server, replayed by this service from the vault's files (restore into a server)."""


class Region(StrEnum):
    PRIMARY = "primary"
    """The vault's own region."""
    SECONDARY = "secondary"
    """The paired region (Cross Region Restore)."""


class Tier(StrEnum):
    VAULT = "vault"
    """Recovery point in the vault (standard) tier."""
    ARCHIVE = "archive"
    """Recovery point in the archive tier: must be rehydrated before restore."""


class RehydrationPriority(StrEnum):
    STANDARD = "Standard"
    """Azure's default; the only value CLI/PowerShell expose."""
    HIGH = "High"
    """Faster and dearer; accepted by the API."""


_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$-]{0,62}$")
_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
#: A Key Vault secret URI of an Azure cloud: Key Vault host (public, China, US Government), no port, no user info
#: (issue 14.4: a secret URI naming another host could send the vault's identity token elsewhere).
_SECRET_URI = re.compile(r"^https://[a-z][a-z0-9-]{1,22}[a-z0-9]\.vault\.(azure\.net|azure\.cn|usgovcloudapi\.net)"
                         r"/secrets/[A-Za-z0-9-]{1,127}(/[0-9a-f]{32})?/?$")
#: The blob endpoints of the Azure clouds (public, China, US Government); RESTORE_BLOB_HOST_SUFFIXES may name more
#: (restore_core.guards checks the host against the configured list; this module checks the shape).
_CONTAINER_HOST = re.compile(r"^[a-z0-9]{3,24}\.blob\.[a-z0-9.-]+[a-z0-9]$")
_RESERVED_DB = {"postgres", "template0", "template1", "azure_maintenance", "azure_sys"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class BackupInstanceSelector(_Strict):
    """Either the backup instance ARM id, or the vault + the protected datasource to look up."""

    id: str | None = None
    vault_id: str | None = None
    datasource_id: str | None = Field(default=None, description="ARM id of the protected database or server")

    @model_validator(mode="after")
    def _one_way(self) -> BackupInstanceSelector:
        if self.id:
            if self.vault_id or self.datasource_id:
                raise ValueError("give either id, or vault_id + datasource_id, not both")
            arm_ids.parse_backup_instance_id(self.id)
        else:
            if not (self.vault_id and self.datasource_id):
                raise ValueError("give the backup instance id, or vault_id + datasource_id to look it up")
            arm_ids.parse_vault_id(self.vault_id, "backup_instance.vault_id")
            arm_ids.parse_resource_id(self.datasource_id, "backup_instance.datasource_id")
        return self


class RecoveryPointSelector(_Strict):
    """``latest`` (default), an explicit ``id``, or the latest point strictly before ``latest_before``."""

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9-]{1,64}$")] | None = None
    latest_before: datetime | None = None

    @field_validator("latest_before", mode="before")
    @classmethod
    def _documented_form(cls, v: Any) -> Any:
        return request_time(v, "latest_before")  # no unix numbers, bare dates or zone-less times

    @field_validator("latest_before")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("latest_before needs a timezone, e.g. 2026-11-24T08:00:00Z")
        try:
            return v.astimezone(UTC) if v else v
        except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00: before the first moment a datetime can hold in UTC
            raise ValueError("latest_before is outside the range of times that can be expressed in UTC") from None

    @model_validator(mode="after")
    def _exclusive(self) -> RecoveryPointSelector:
        if self.id and self.latest_before:
            raise ValueError("give either id or latest_before, not both")
        return self

    @property
    def mode(self) -> str:
        return "id" if self.id else "latest_before" if self.latest_before else "latest"


def server_id_of_kind(v: str, kind: str, message: str) -> str:
    """``v`` as a PostgreSQL server id (``target.server_id``) of resource type ``kind``, else ``message``."""
    if arm_ids.parse_server_id(v, "target.server_id")["kind"].lower() != kind.lower():
        raise ValueError(message)
    return v


class DatabaseTarget(_Strict):
    """Restore as a new database on a target server (never the source, never an existing name)."""

    kind: Literal["database"]
    server_id: str
    database_name: str
    secret_uri: str = Field(description="Key Vault secret URI holding the target server's connection string")
    beside_source: bool = Field(default=False, description="allow a new database on a protected server (e.g. the "
                                                          "source server itself); never under the source's own name")

    @field_validator("server_id")
    @classmethod
    def _server(cls, v: str) -> str:
        return server_id_of_kind(v, "servers", "restore as database needs a Single Server target (…/Microsoft."
                                 "DBforPostgreSQL/servers/{name}); Flexible Server backups restore as files only")

    @field_validator("database_name")
    @classmethod
    def _db(cls, v: str) -> str:
        if not _DB_NAME.match(v):
            raise ValueError("database_name must be 1-63 characters: letters, digits, _ $ -, not starting with a digit")
        if v.lower() in _RESERVED_DB:
            raise ValueError(f"database_name {v!r} is reserved; choose a new name")
        return v

    @field_validator("secret_uri")
    @classmethod
    def _secret(cls, v: str) -> str:
        if not _SECRET_URI.match(v):
            raise ValueError("secret_uri must be a Key Vault secret URI of an Azure cloud without a port, like "
                             "https://{vault}.vault.azure.net/secrets/{name} (vault.azure.cn, vault.usgovcloudapi.net)")
        return v

    @property
    def database_id(self) -> str:
        return f"{self.server_id}/databases/{self.database_name}"


class FilesTarget(_Strict):
    """Restore as dump files into a blob container the vault may write to."""

    kind: Literal["files"]
    container_url: str
    container_id: str | None = None
    file_prefix: str

    @field_validator("container_url")
    @classmethod
    def _url(cls, v: str) -> str:
        u = urlsplit(v)
        shape = ("container_url must be https://{account}.blob.core.windows.net/{container} (no SAS, no path below "
                 "the container)")
        if "@" in u.netloc:  # never echo it: user info may hold a key or a password
            raise ValueError("container_url must not carry user info (name:password@); give "
                             "https://{account}.blob.core.windows.net/{container}; the vault authenticates itself")
        if u.netloc.rsplit("]", 1)[-1].count(":") or u.netloc.endswith(":"):
            raise ValueError("container_url must not name a port; give https://{account}.blob.core.windows.net/"
                             "{container}")
        if u.scheme != "https" or not u.hostname or u.query or u.fragment or len(u.path.strip("/").split("/")) != 1 \
                or not u.path.strip("/") or "\\" in v:
            raise ValueError(shape)
        if not _CONTAINER_HOST.match(u.netloc):
            raise ValueError("container_url's host must be a storage account's blob endpoint, "
                             "{account}.blob.core.windows.net (or the blob endpoint of another Azure cloud)")
        return v.rstrip("/")

    @field_validator("container_id")
    @classmethod
    def _cid(cls, v: str | None) -> str | None:
        if v is not None:
            arm_ids.parse_container_id(v, "target.container_id")
        return v

    @field_validator("file_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not _PREFIX.match(v) or ".." in v:
            raise ValueError("file_prefix must be 1-200 characters: letters, digits, . _ - (no '..', no '/')")
        return v


class RolesMode(StrEnum):
    SKIP = "skip"
    """Restore no roles: objects are owned by ``owner`` (or the connecting role); grants to missing roles are
    reported as warnings."""
    CLEAN = "clean"
    """Create the point's roles that the target lacks, cleaned as Microsoft's recipe says (no Azure platform roles,
    no superuser, no replication, no BYPASSRLS, no passwords)."""


class DatabaseMapping(_Strict):
    """One database of the recovery point and the new name it gets on the target server."""

    source: str
    target: str | None = Field(default=None, description="default: source + suffix")

    @field_validator("source", "target")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None and not _DB_NAME.match(v):
            raise ValueError(f"{v!r} is not a database name: 1-63 characters, letters, digits, _ $ -, not starting "
                             "with a digit")
        return v


class EntraAuth(_Strict):
    """Connect as the service's managed identity (a PostgreSQL Microsoft Entra role; the token is the password)."""

    kind: Literal["entra"] = "entra"


class SecretAuth(_Strict):
    """Connect with the connection string held in a Key Vault secret, read by this service."""

    kind: Literal["secret"]
    secret_uri: str

    @field_validator("secret_uri")
    @classmethod
    def _secret(cls, v: str) -> str:
        if not _SECRET_URI.match(v):
            raise ValueError("secret_uri must be a Key Vault secret URI of an Azure cloud without a port, like "
                             "https://{vault}.vault.azure.net/secrets/{name} (vault.azure.cn, vault.usgovcloudapi.net)")
        return v


class UserCheck(_Strict):
    """A query run on a restored database in a read-only transaction; the first column of the first row, as text,
    must equal ``expect``."""

    name: Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9 _.:-]+$")]
    database: str
    sql: Annotated[str, Field(min_length=1, max_length=2000)]
    expect: Annotated[str, Field(max_length=500)]


_ROLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_@.$-]{0,62}$")
_SUFFIX = re.compile(r"^[A-Za-z0-9_$-]{1,30}$")


class ServerTarget(_Strict):
    """Restore into a server: the vault restores files into this service's staging container, and the service
    replays them into new databases on a Flexible Server (``docs/server-restore.md``)."""

    kind: Literal["server"]
    server_id: str
    databases: Annotated[list[DatabaseMapping], Field(min_length=1, max_length=64)] | None = None
    suffix: str | None = None
    roles: RolesMode = RolesMode.SKIP
    auth: Annotated[EntraAuth | SecretAuth, Field(discriminator="kind")] = EntraAuth()
    owner: str | None = None
    beside_source: bool = False
    checks: Annotated[list[UserCheck], Field(max_length=20)] = []

    @field_validator("server_id")
    @classmethod
    def _server(cls, v: str) -> str:
        return server_id_of_kind(v, "flexibleServers", "restore into a server needs a Flexible Server target (…/"
                                 "Microsoft.DBforPostgreSQL/flexibleServers/{name}); Single Server was retired on "
                                 "2025-03-28")

    @field_validator("suffix")
    @classmethod
    def _suffix(cls, v: str | None) -> str | None:
        if v is not None and not _SUFFIX.match(v):
            raise ValueError("suffix must be 1-30 characters: letters, digits, _ $ -")
        return v

    @field_validator("owner")
    @classmethod
    def _owner(cls, v: str | None) -> str | None:
        if v is not None and (not _ROLE_NAME.match(v) or v.lower().startswith(("pg_", "azure_")) or
                              v.lower() in {"azuresu", "replication", "public"}):
            raise ValueError(f"owner {v!r} must be an ordinary role name (not a pg_/azure_ platform role)")
        return v

    @model_validator(mode="after")
    def _unique(self) -> ServerTarget:
        if self.databases:
            sources = [d.source.lower() for d in self.databases]
            if len(set(sources)) != len(sources):
                raise ValueError("target.databases names a source database twice")
            targets = [d.target.lower() for d in self.databases if d.target]
            if len(set(targets)) != len(targets):
                raise ValueError("target.databases gives two databases the same target name")
            for name in targets:
                if name in _RESERVED_DB:
                    raise ValueError(f"target database name {name!r} is reserved; choose a new name")
        return self

    @property
    def server_name(self) -> str:
        return self.server_id.rstrip("/").rsplit("/", 1)[-1]


class Rehydration(_Strict):
    priority: RehydrationPriority = RehydrationPriority.STANDARD
    retention_days: int = Field(default=15, ge=10, le=30)


class RestoreRequest(_Strict):
    """Version ``2026-11-01`` of the public restore request."""

    schema_version: Literal["2026-11-01"] = "2026-11-01"
    backup_instance: BackupInstanceSelector
    recovery_point: RecoveryPointSelector = RecoveryPointSelector()
    target: Annotated[DatabaseTarget | FilesTarget | ServerTarget, Field(discriminator="kind")]
    region: Region = Region.PRIMARY
    rehydration: Rehydration = Rehydration()
    idempotency_key: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")] | None = None
    deadline_hours: float | None = Field(default=None, gt=0, le=24 * 30)
    description: Annotated[str, Field(max_length=500)] | None = None

    @field_validator("idempotency_key")
    @classmethod
    def _client_key(cls, v: str | None) -> str | None:
        problem = reserved_key_problem(v) if v else None
        if problem:
            raise ValueError(f"{problem}; choose a key with another prefix")
        return v

    @field_validator("recovery_point", mode="before")
    @classmethod
    def _rp_shorthand(cls, v: Any) -> Any:
        if v is None or v == "latest":
            return {}
        if isinstance(v, str):
            raise ValueError("recovery_point must be \"latest\", {\"id\": ...} or {\"latest_before\": ...}")
        return v


def _field_of(loc: tuple[int | str, ...]) -> str:
    tags = {"database", "files", "server", "entra", "secret"}
    parts = [str(p) for p in loc if not (isinstance(p, str) and p in tags and loc and loc[0] ==
                                         "target")]
    return ".".join(parts) or "body"


def _fields_at(path: list[str]) -> set[str]:
    """The field names valid at ``path`` (integers and union tags left out) of the request."""
    levels: dict[tuple[str, ...], tuple[type[BaseModel], ...]] = {
        (): (RestoreRequest,), ("backup_instance",): (BackupInstanceSelector,),
        ("recovery_point",): (RecoveryPointSelector,), ("rehydration",): (Rehydration,),
        ("target",): (DatabaseTarget, FilesTarget, ServerTarget), ("target", "databases"): (DatabaseMapping,),
        ("target", "checks"): (UserCheck,), ("target", "auth"): (EntraAuth, SecretAuth)}
    return {name for model in levels.get(tuple(path), ()) for name in model.model_fields}


def _nearest_field(field: str) -> str:
    """``" (did you mean `x`?)"`` for a misspelt field, from the names valid where it was given."""
    import difflib

    parts = [p for p in field.split(".") if not p.isdigit()]
    close = difflib.get_close_matches(parts[-1], sorted(_fields_at(parts[:-1])), n=1, cutoff=0.6) if parts else []
    return f" (did you mean `{close[0]}`?)" if close else ""


def request_error_from(exc: ValidationError) -> RequestError:
    errors = exc.errors(include_url=False)
    first = sorted(errors, key=lambda e: e.get("type") != "extra_forbidden")[0]
    field = _field_of(tuple(first.get("loc", ())))
    msg = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    kind = first.get("type", "")
    if kind == "extra_forbidden":
        hint = _nearest_field(field)
        return RequestError(f"unknown field {field!r}{hint}", field=field,
                            fix=(f"rename it{hint}, or " if hint else "")
                            + "remove it; see the request schema in the README")
    if kind == "missing":
        return RequestError(f"missing field {field!r}", field=field, fix="add it; see the request schema in the README")
    if kind == "union_tag_invalid" or kind == "union_tag_not_found":
        if any(str(p) == "auth" for p in first.get("loc", ())):
            return RequestError("target.auth.kind must be \"entra\" or \"secret\"", field="target.auth.kind",
                                fix="set target.auth to {\"kind\": \"entra\"} or {\"kind\": \"secret\", "
                                    "\"secret_uri\": ...}")
        return RequestError("target.kind must be \"database\", \"files\" or \"server\"", field="target.kind",
                            fix="set target.kind to database, files or server")
    return RequestError(f"{field}: {msg}", field=field, fix=f"change {field}: {msg}")


def decode_body(raw: bytes | str) -> dict[str, Any]:
    """A request body (HTTP or queue) as a JSON object, within the size limit; :class:`RequestError` otherwise."""
    raw = raw.encode() if isinstance(raw, str) else raw
    if len(raw) > MAX_BODY_BYTES:
        raise RequestError(f"body is {len(raw)} bytes; the limit is {MAX_BODY_BYTES}", field="body",
                           fix="send a smaller request", status=413, code="RequestTooLarge")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(f"body is not valid JSON: {exc}", field="body", fix="send a JSON object") from None
    except ValueError:  # an integer literal of more digits than Python converts (sys.get_int_max_str_digits())
        raise RequestError("body holds a number with thousands of digits", field="body",
                           fix="send numbers of ordinary size (see the request schema in the README)") from None
    except RecursionError:
        raise RequestError("body is nested too deeply", field="body",
                           fix="send a flat JSON object as in the README") from None
    if not isinstance(data, dict):
        raise RequestError("body must be a JSON object", field="body", fix="send a JSON object")
    return data


def parse_request(body: bytes | str | dict[str, Any]) -> RestoreRequest:
    """Validate a request body; raises :class:`RequestError` with the first problem found."""
    data = decode_body(body) if isinstance(body, (bytes, str)) else body
    if not isinstance(data, dict):
        raise RequestError("body must be a JSON object", field="body", fix="send a JSON object")
    try:
        req = RestoreRequest.model_validate(data)
    except ValidationError as exc:
        raise request_error_from(exc) from None
    size = len(json.dumps(stored_form(req), separators=(",", ":"), sort_keys=True))
    if size > REQUEST_COST:
        raise RequestError(f"the request takes {size} bytes once stored (characters outside ASCII are stored "
                           f"escaped, 6 to 12 bytes each); the limit is {REQUEST_COST}", field="body", status=413,
                           code="RequestTooLarge", fix="shorten the longest fields (description, ids, names)")
    return req


def stored_form(req: RestoreRequest) -> dict[str, Any]:
    """The request as the restore row keeps it (bounded by :func:`parse_request`)."""
    return req.model_dump(mode="json", exclude_none=True)
