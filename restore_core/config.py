"""Settings: every name the app reads, defined once, and the one reader of ``os.environ``.

Consumes: process environment (Function App settings in Azure, ``.local/local.settings.json`` locally).
Produces: a frozen, validated :class:`Settings`. Nothing else in ``restore_core`` touches ``os.environ``.
Production and local differ only by the values here (endpoints, credentials), never by code branches.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .arm_ids import VAULT_RE, parse_server_id, parse_vault_id
from .errors import RequestError
from .stages import registry

# --- connection (a Functions "connection" name: a connection string setting, or identity-based
#     ``<NAME>__queueServiceUri`` / ``__tableServiceUri`` / ``__blobServiceUri`` / ``__credential`` / ``__clientId``)
STORAGE_CONNECTION = "RestoreStorage"

# --- queues (binding expressions in function_app.py use %NAME%). The stage queues' settings and default names
#     come from the stage registry (restore_core/stages/registry.py); the two doors' queues are here.
QUEUE_REQUESTS = "RESTORE_QUEUE_REQUESTS"
QUEUE_EVENTS = "RESTORE_QUEUE_EVENTS"
STAGE_QUEUES: tuple[str, ...] = registry.QUEUE_SETTINGS
ALL_QUEUES: tuple[str, ...] = (QUEUE_REQUESTS, *STAGE_QUEUES, QUEUE_EVENTS)

# --- tables
TABLE_RESTORES = "RESTORE_TABLE_RESTORES"
TABLE_IDEMPOTENCY = "RESTORE_TABLE_IDEMPOTENCY"

# --- the app's storage calls (tables and queues): seconds, not the SDKs' minutes
STORAGE_CONNECT_TIMEOUT = "RESTORE_STORAGE_CONNECT_TIMEOUT_SECONDS"
STORAGE_READ_TIMEOUT = "RESTORE_STORAGE_READ_TIMEOUT_SECONDS"
STORAGE_RETRIES = "RESTORE_STORAGE_RETRIES"

# --- timer
WATCHDOG_SCHEDULE = "RESTORE_WATCHDOG_SCHEDULE"

# --- Azure Resource Manager / Data Protection
DATAPROTECTION_ENDPOINT = "DATAPROTECTION_ENDPOINT"
DATAPROTECTION_CA_BUNDLE = "DATAPROTECTION_CA_BUNDLE"
DATAPROTECTION_TOKEN = "DATAPROTECTION_TOKEN"  # noqa: S105 - a setting name, not a value
AZURE_CLIENT_ID = "AZURE_CLIENT_ID"

# --- behaviour
RESTORE_PLANS = "RESTORE_PLANS"
#: Browse: the vaults whose backup instances ``GET /api/backup-instances`` lists (ARM ids, comma-separated).
VAULTS = "RESTORE_VAULTS"
DEADLINE_HOURS = "RESTORE_DEADLINE_HOURS"
POLL_MIN_SECONDS = "RESTORE_POLL_MIN_SECONDS"
POLL_MAX_SECONDS = "RESTORE_POLL_MAX_SECONDS"
#: Longest re-check interval while a restore job runs past the end its progress promised (notice delay bound).
POLL_OVERDUE_SECONDS = "RESTORE_POLL_OVERDUE_SECONDS"
CONTINUE_INLINE = "RESTORE_CONTINUE_INLINE"
MAX_DEQUEUE_COUNT = "RESTORE_MAX_DEQUEUE_COUNT"
ARM_MAX_RETRIES = "RESTORE_ARM_MAX_RETRIES"
TRIGGER_GRACE_SECONDS = "RESTORE_TRIGGER_GRACE_SECONDS"
REHYDRATION_FLOW = "RESTORE_REHYDRATION_FLOW"
MESSAGE_IN_FLIGHT_SECONDS = "RESTORE_MESSAGE_IN_FLIGHT_SECONDS"

# --- restore into a server (staging, inventory, replay, verify; docs/server-restore.md)
STAGING = "RESTORE_STAGING"
STAGING_CONNECTION_STRING = "RESTORE_STAGING_CONNECTION_STRING"
POSTGRES_HOSTS = "RESTORE_POSTGRES_HOSTS"
POSTGRES_HOST_SUFFIX = "RESTORE_POSTGRES_HOST_SUFFIX"
POSTGRES_SSLMODE = "RESTORE_POSTGRES_SSLMODE"
POSTGRES_SSLROOTCERT = "RESTORE_POSTGRES_SSLROOTCERT"
ENTRA_USER = "RESTORE_ENTRA_USER"
REPLAY_ENTRA_USER = "RESTORE_REPLAY_ENTRA_USER"
ENTRA_STATIC_TOKEN = "ENTRA_STATIC_TOKEN"  # noqa: S105 - a setting name, not a value
KEYVAULT_ENDPOINT = "KEYVAULT_ENDPOINT"
KEYVAULT_CA_BUNDLE = "KEYVAULT_CA_BUNDLE"
REPLAY_CLIENT_VERSION = "RESTORE_REPLAY_CLIENT_VERSION"
REPLAY_JOBS = "RESTORE_REPLAY_JOBS"
REPLAY_WORKDIR = "RESTORE_REPLAY_WORKDIR"
REPLAY_LEASE_SECONDS = "RESTORE_REPLAY_LEASE_SECONDS"
REPLAY_MAX_PER_SERVER = "RESTORE_REPLAY_MAX_PER_SERVER"
REPLAY_DISK_BUDGET_MB = "RESTORE_REPLAY_DISK_BUDGET_MB"
REPLAY_MESSAGES_PER_EXECUTION = "RESTORE_REPLAY_MESSAGES_PER_EXECUTION"
REPLAY_EXECUTION_SECONDS = "RESTORE_REPLAY_EXECUTION_SECONDS"
REPLAY_IDLE_SECONDS = "RESTORE_REPLAY_IDLE_SECONDS"
PG_BINDIR = "RESTORE_PG_BINDIR"
VERIFY_COUNT_BUDGET_MB = "RESTORE_VERIFY_COUNT_BUDGET_MB"
DATABASE_SUFFIX = "RESTORE_DATABASE_SUFFIX"
CHECK_ROLE = "RESTORE_CHECK_ROLE"

# --- guards and preview (issue 14; restore_core/guards.py, locks.py, preview.py)
PROTECTED_VAULTS = "RESTORE_PROTECTED_VAULTS"
PROTECTED_SERVERS = "RESTORE_PROTECTED_SERVERS"
ALLOWED_TARGETS = "RESTORE_ALLOWED_TARGETS"
BESIDE_SOURCE_ROLE = "RESTORE_BESIDE_SOURCE_ROLE"
BLOB_HOST_SUFFIXES = "RESTORE_BLOB_HOST_SUFFIXES"
PREVIEW_PER_MINUTE = "RESTORE_PREVIEW_PER_MINUTE"

# --- restore drills (issue 15; restore_core/drills/, docs/drills.md)
DRILL_TARGETS = "RESTORE_DRILL_TARGETS"
DRILL_SCHEDULE = "RESTORE_DRILL_SCHEDULE"
DRILL_EVIDENCE_CONTAINER = "RESTORE_DRILL_EVIDENCE_CONTAINER"
DRILL_MAX_STARTS_PER_TICK = "RESTORE_DRILL_MAX_STARTS_PER_TICK"
# --- who asked (issue 14 item 3; restore_core/principal.py) and the alert door (issue 13 item 2; alerts.py)
AUTH_MODE = "RESTORE_AUTH_MODE"
#: Set by App Service when its built-in authentication is on (read-only platform setting; the local host sets it when
#: it plays that part). The app refuses user requests in ``entra`` mode without it: a principal header is only
#: trustworthy when the platform strips clients' own ``X-MS-*`` headers.
PLATFORM_AUTH_ENABLED = "WEBSITE_AUTH_ENABLED"
OWN_RESOURCE_IDS = "RESTORE_OWN_RESOURCE_IDS"
OWN_ALERT_RULE_PREFIXES = "RESTORE_OWN_ALERT_RULE_PREFIXES"

# --- telemetry
APPINSIGHTS_CONNECTION_STRING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
TELEMETRY_EXPORTER = "RESTORE_TELEMETRY_EXPORTER"
OTLP_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"

DEFAULTS: Mapping[str, str] = {
    QUEUE_REQUESTS: "restore-requests",
    **{s.queue_setting: s.default_queue for s in registry.REGISTRY},
    QUEUE_EVENTS: "restore-events",
    TABLE_RESTORES: "restores",
    TABLE_IDEMPOTENCY: "restoreidempotency",
    WATCHDOG_SCHEDULE: "0 */1 * * * *",
    DATAPROTECTION_ENDPOINT: "https://management.azure.com",
    DEADLINE_HOURS: "48",
    POLL_MIN_SECONDS: "30",
    POLL_MAX_SECONDS: "300",
    POLL_OVERDUE_SECONDS: "60",
    CONTINUE_INLINE: "true",
    MAX_DEQUEUE_COUNT: "5",
    ARM_MAX_RETRIES: "6",
    TRIGGER_GRACE_SECONDS: "660",
    REHYDRATION_FLOW: "one-request",
    MESSAGE_IN_FLIGHT_SECONDS: "600",
    TELEMETRY_EXPORTER: "none",
    RESTORE_PLANS: "{}",
    VAULTS: "",
    STORAGE_CONNECT_TIMEOUT: "5",
    STORAGE_READ_TIMEOUT: "10",
    STORAGE_RETRIES: "2",
    STAGING: "{}",
    POSTGRES_HOSTS: "{}",
    POSTGRES_HOST_SUFFIX: ".postgres.database.azure.com",
    POSTGRES_SSLMODE: "verify-full",
    REPLAY_CLIENT_VERSION: "18",
    REPLAY_JOBS: "2",
    REPLAY_LEASE_SECONDS: "300",
    REPLAY_MAX_PER_SERVER: "2",
    REPLAY_DISK_BUDGET_MB: "6144",
    REPLAY_MESSAGES_PER_EXECUTION: "20",
    REPLAY_EXECUTION_SECONDS: "21600",
    REPLAY_IDLE_SECONDS: "10",
    VERIFY_COUNT_BUDGET_MB: "1024",
    DATABASE_SUFFIX: "_restored",
    CHECK_ROLE: "restore_checks",
    BLOB_HOST_SUFFIXES: "blob.core.windows.net,blob.core.chinacloudapi.cn,blob.core.usgovcloudapi.net",
    PREVIEW_PER_MINUTE: "10",
    DRILL_SCHEDULE: "0 */5 * * * *",
    DRILL_EVIDENCE_CONTAINER: "drill-evidence",
    DRILL_MAX_STARTS_PER_TICK: "10",
    AUTH_MODE: "key",
    OWN_RESOURCE_IDS: "",
    OWN_ALERT_RULE_PREFIXES: "alert-restore-",
}

#: Every setting name the code reads (the infra parity test checks these against the Bicep).
ALL_SETTINGS: tuple[str, ...] = (
    *ALL_QUEUES,
    TABLE_RESTORES, TABLE_IDEMPOTENCY, WATCHDOG_SCHEDULE,
    STORAGE_CONNECT_TIMEOUT, STORAGE_READ_TIMEOUT, STORAGE_RETRIES,
    DATAPROTECTION_ENDPOINT, DATAPROTECTION_CA_BUNDLE, DATAPROTECTION_TOKEN, AZURE_CLIENT_ID,
    RESTORE_PLANS, VAULTS, DEADLINE_HOURS, POLL_MIN_SECONDS, POLL_MAX_SECONDS, POLL_OVERDUE_SECONDS, CONTINUE_INLINE,
    MAX_DEQUEUE_COUNT, ARM_MAX_RETRIES,
    TRIGGER_GRACE_SECONDS, REHYDRATION_FLOW, MESSAGE_IN_FLIGHT_SECONDS,
    APPINSIGHTS_CONNECTION_STRING, TELEMETRY_EXPORTER, OTLP_ENDPOINT,
    STAGING, STAGING_CONNECTION_STRING, POSTGRES_HOSTS, POSTGRES_HOST_SUFFIX, POSTGRES_SSLMODE, POSTGRES_SSLROOTCERT,
    ENTRA_USER, REPLAY_ENTRA_USER, ENTRA_STATIC_TOKEN, KEYVAULT_ENDPOINT, KEYVAULT_CA_BUNDLE,
    REPLAY_CLIENT_VERSION, REPLAY_JOBS, REPLAY_MAX_PER_SERVER, REPLAY_DISK_BUDGET_MB,
    REPLAY_WORKDIR, REPLAY_LEASE_SECONDS, REPLAY_MESSAGES_PER_EXECUTION, REPLAY_EXECUTION_SECONDS, REPLAY_IDLE_SECONDS,
    PG_BINDIR,
    VERIFY_COUNT_BUDGET_MB, DATABASE_SUFFIX, CHECK_ROLE,
    PROTECTED_VAULTS, PROTECTED_SERVERS, ALLOWED_TARGETS, BESIDE_SOURCE_ROLE, BLOB_HOST_SUFFIXES, PREVIEW_PER_MINUTE,
    DRILL_TARGETS, DRILL_SCHEDULE, DRILL_EVIDENCE_CONTAINER, DRILL_MAX_STARTS_PER_TICK,
    AUTH_MODE, OWN_RESOURCE_IDS, OWN_ALERT_RULE_PREFIXES,
)

#: Settings the platform sets itself (never in the Bicep's app settings): read by the code all the same.
PLATFORM_SET_SETTINGS: tuple[str, ...] = (PLATFORM_AUTH_ENABLED,)

#: Settings that are local-only by nature (the emulators' CA bundles, static tokens, endpoint overrides and the
#: Azurite connection string of the staging containers): absent in Azure.
LOCAL_ONLY_SETTINGS: tuple[str, ...] = (DATAPROTECTION_CA_BUNDLE, DATAPROTECTION_TOKEN, ENTRA_STATIC_TOKEN,
                                         KEYVAULT_ENDPOINT, KEYVAULT_CA_BUNDLE, STAGING_CONNECTION_STRING,
                                         POSTGRES_HOSTS, POSTGRES_SSLROOTCERT)

TELEMETRY_EXPORTERS = ("none", "console", "otlp", "memory")
#: ``one-request``: one AzureBackupRestoreWithRehydrationRequest (the documented route of the portal, the az CLI and
#: the REST docs); ``two-step``: a stand-alone rehydrate, then a restore of the rehydrated point.
REHYDRATION_FLOWS = ("one-request", "two-step")

#: Python worker settings (read by the Functions Python worker, not by restore_core). PYTHON_ENABLE_OPENTELEMETRY=true
#: makes the worker announce the ``WorkerOpenTelemetryEnabled`` capability, so the host (host.json
#: ``telemetryMode: OpenTelemetry``) stops exporting the worker's forwarded logs and each record is exported once,
#: by this app. PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true ALSO makes the worker call configure_azure_monitor()
#: itself (root logger, no Entra credential): a second exporter next to telemetry.configure's. See docs/deploy.md.
WORKER_OPENTELEMETRY = "PYTHON_ENABLE_OPENTELEMETRY"
WORKER_AZURE_MONITOR = "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"
_WORKER_TRUE = ("1", "true", "t", "yes", "y")  # the Python worker's is_true_like()


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the setting and what to change."""


@dataclass(frozen=True)
class StorageConnection:
    """How to reach the app's own storage account: a connection string, or identity-based service URIs."""

    connection_string: str | None = None
    queue_service_uri: str | None = None
    table_service_uri: str | None = None
    blob_service_uri: str | None = None
    client_id: str | None = None


@dataclass(frozen=True)
class StorageTimeouts:
    """Every call to the app's tables and queues: TCP connect and response timeouts (seconds) and the SDK's own
    retries of a failed call. Worst case of one call: (retries + 1) x (connect + read) plus a few seconds of backoff
    (about 50 s with the defaults, against many minutes with the SDKs' defaults: 300 s timeouts and up to 10 retries
    for tables, 20 s / 60 s and 3 retries 15 s and more apart for queues). A call that still fails raises
    RetryableError: the queue redelivers, an HTTP caller gets a 503."""

    connect_seconds: float = 5.0
    read_seconds: float = 10.0
    retries: int = 2


@dataclass(frozen=True)
class ServerRestoreSettings:
    """Restore into a server: staging, the target's connection, the replay job (docs/server-restore.md)."""

    staging: Mapping[str, Any] = field(default_factory=dict)
    staging_connection_string: str | None = field(default=None, repr=False)
    postgres_hosts: Mapping[str, str] = field(default_factory=dict)
    postgres_host_suffix: str = ".postgres.database.azure.com"
    postgres_sslmode: str = "verify-full"
    postgres_sslrootcert: str | None = None
    entra_user: str | None = None
    #: the PostgreSQL role the replay job connects as with Entra, when it is not this process's (the Function App
    #: checks that role's privileges by name in validation)
    replay_entra_user: str | None = None
    entra_static_token: str | None = field(default=None, repr=False)
    keyvault_endpoint: str | None = None
    keyvault_ca_bundle: str | None = None
    replay_client_version: int = 18
    replay_jobs: int = 2
    replay_workdir: str | None = None
    replay_lease_seconds: float = 300.0
    #: at most this many replays load into one target server at a time (the others wait for a slot)
    replay_max_per_server: int = 2
    #: temporary disk (MB) the replay may use for an archive; a larger one is streamed into pg_restore/psql
    replay_disk_budget_mb: float = 6144.0
    #: messages one replay-job execution handles before it exits (it exits earlier when the queues are empty or its
    #: time budget is half spent): the process start and the storage clients are paid once for them all
    replay_messages_per_execution: int = 20
    #: the job execution's time budget: the job's replica timeout (infra ``replayTimeoutSeconds``)
    replay_execution_seconds: float = 21600.0
    #: how long an execution that found the queues empty keeps looking before it exits (0: exit at once): a message
    #: that arrives meanwhile is taken at once instead of waiting for the scaler's next poll and a new execution
    replay_idle_seconds: float = 10.0
    pg_bindir: str | None = None
    verify_count_budget_mb: float = 1024.0
    database_suffix: str = "_restored"
    #: the role user checks run as (``SET LOCAL ROLE``): it can only read (restore_core/checkrole.py)
    check_role: str = "restore_checks"


SSLMODES = ("require", "verify-ca", "verify-full")


@dataclass(frozen=True)
class GuardSettings:
    """Guards checked before anything is paid for, and the preview's budget (README "Guards and preview")."""

    #: vaults whose backup instances' source servers are protected (read through the backup service, cached)
    protected_vaults: tuple[str, ...] = ()
    #: more protected servers (ARM ids)
    protected_servers: tuple[str, ...] = ()
    #: fnmatch patterns of target server ids and container ids/URLs; empty: every target is allowed
    allowed_targets: tuple[str, ...] = ()
    #: the role a caller must hold to restore beside a protected server (empty: no role is checked). Unset, it
    #: follows the auth mode: ``admin`` with Entra callers, none with function keys (whose callers carry no roles);
    #: ``none`` turns the check off explicitly.
    beside_source_role: str = ""
    blob_host_suffixes: tuple[str, ...] = ("blob.core.windows.net", "blob.core.chinacloudapi.cn",
                                           "blob.core.usgovcloudapi.net")
    preview_per_minute: int = 10
    #: fnmatch patterns of the servers reserved for restore drills (issue 15): only drills restore into them
    drill_targets: tuple[str, ...] = ()


@dataclass(frozen=True)
class DrillSettings:
    """Restore drills (docs/drills.md): the write-once evidence container and the scheduler's throttle."""

    evidence_container: str = "drill-evidence"
    max_starts_per_tick: int = 10


AUTH_MODES = ("key", "entra")


@dataclass(frozen=True)
class AuthSettings:
    """Who may call the HTTP API (README "Who asked"). ``key``: the Functions host checks a function key and every
    key holder may do everything (no roles). ``entra``: the user routes are anonymous at the Functions level and the
    app requires the platform's principal (App Service built-in authentication), whose app roles decide."""

    mode: str = "key"
    #: the platform's built-in authentication is on (``WEBSITE_AUTH_ENABLED``): principal headers can be trusted
    platform_auth: bool = False


@dataclass(frozen=True)
class AlertDoorSettings:
    """No feedback loops: alerts about this service's own resources, or raised by its own alert rules, start
    nothing."""

    own_resource_ids: tuple[str, ...] = ()
    own_rule_prefixes: tuple[str, ...] = ("alert-restore-",)


@dataclass(frozen=True)
class Settings:
    storage: StorageConnection
    queues: Mapping[str, str]
    table_restores: str
    table_idempotency: str
    dataprotection_endpoint: str
    dataprotection_ca_bundle: str | None
    dataprotection_token: str | None = field(repr=False)
    azure_client_id: str | None
    restore_plans: Mapping[str, Any]
    deadline_hours: float
    poll_min_seconds: float
    poll_max_seconds: float
    max_dequeue_count: int
    arm_max_retries: int
    trigger_grace_seconds: float
    rehydration_flow: str
    message_in_flight_seconds: float
    appinsights_connection_string: str | None = field(repr=False)
    telemetry_exporter: str
    otlp_endpoint: str | None
    storage_timeouts: StorageTimeouts = StorageTimeouts()
    server: ServerRestoreSettings = field(default_factory=lambda: ServerRestoreSettings())
    vaults: tuple[str, ...] = ()  #: RESTORE_VAULTS: the vaults browsed by default
    guards: GuardSettings = GuardSettings()
    drills: DrillSettings = DrillSettings()
    auth: AuthSettings = AuthSettings()
    alert_door: AlertDoorSettings = AlertDoorSettings()
    #: RESTORE_POLL_OVERDUE_SECONDS: how late a running job's end may be noticed past its earliest estimated end; also
    #: the longest re-check interval while a job overruns it
    poll_overdue_seconds: float = 60.0
    #: RESTORE_CONTINUE_INLINE: a stage the registry marks ``inline`` (the trigger) runs in the invocation that
    #: moved the restore there, when due at once; its queue message is then the delayed safety net
    continue_inline: bool = True

    @property
    def pickup_slack_seconds(self) -> float:
        """Time allowed for a due message to be picked up (the largest re-check interval, at least 30 s); also how
        far the active index may promise a check ahead of the row, to save index writes."""
        return max(self.poll_max_seconds, 30.0)

    @property
    def redrive_slack_seconds(self) -> float:
        """How long past an expected message the watchdog waits before treating it as lost. A message that is
        being processed stays invisible for ``message_in_flight_seconds`` (the Functions queue listener's fixed
        10 minutes, renewed while the function runs; after a host crash it reappears only then), so a re-drive
        sooner would race a message that is merely in flight; plus the pick-up slack."""
        return self.message_in_flight_seconds + self.pickup_slack_seconds

    @property
    def inline_safety_net_seconds(self) -> float:
        """Delay of the message of a stage that runs inline after the previous one (registry ``inline``), so that it
        is delivered after the inline run has ended one way or the other (stale when it moved the restore on, the
        stage's normal delivery when it did not): the longer of ``RESTORE_TRIGGER_GRACE_SECONDS`` (set longer than
        the function timeout) and ``RESTORE_MESSAGE_IN_FLIGHT_SECONDS`` (when the message of an invocation that died
        comes back: the safety net comes no sooner than that redelivery would). In Azure 660 s. Benchmarks that
        scale the grace down to simulated time still get a real-time bound here."""
        return max(self.trigger_grace_seconds, self.message_in_flight_seconds, self.poll_min_seconds)

    def queue(self, setting_name: str) -> str:
        """Queue name for a QUEUE_* setting name."""
        return self.queues[setting_name]


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None or value == "":
        value = DEFAULTS.get(name)
    return value


def _number(env: Mapping[str, str], name: str, *, minimum: float) -> float:
    raw = _get(env, name)
    try:
        value = float(raw or "")
    except ValueError:
        raise SettingsError(f"setting {name}={raw!r} is not a number; set it to a number >= {minimum}") from None
    if value < minimum:
        raise SettingsError(f"setting {name}={raw!r} is below {minimum}; set it to a number >= {minimum}")
    return value


def _storage(env: Mapping[str, str]) -> StorageConnection:
    conn = env.get(STORAGE_CONNECTION)
    if conn:
        return StorageConnection(connection_string=conn)
    prefix = STORAGE_CONNECTION + "__"
    account = env.get(prefix + "accountName")
    queue = env.get(prefix + "queueServiceUri") or (account and f"https://{account}.queue.core.windows.net")
    table = env.get(prefix + "tableServiceUri") or (account and f"https://{account}.table.core.windows.net")
    blob = env.get(prefix + "blobServiceUri") or (account and f"https://{account}.blob.core.windows.net")
    if not (queue and table):
        raise SettingsError(
            f"no storage connection: set {STORAGE_CONNECTION} to a connection string (local) or "
            f"{prefix}queueServiceUri and {prefix}tableServiceUri (identity-based, Azure)"
        )
    return StorageConnection(
        queue_service_uri=queue, table_service_uri=table, blob_service_uri=blob,
        client_id=env.get(prefix + "clientId"),
    )


#: CA-bundle variables ``requests`` reads on every request of a session that trusts the environment, in its order of
#: precedence (it also reads every ``*_proxy`` variable, and ``~/.netrc`` for Basic credentials).
HTTP_ENV_CA = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


def http_proxy_env(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The proxy variables set in ``env`` (default: the process's): every ``*_proxy``, any case, sorted."""
    env = os.environ if env is None else env
    return tuple(sorted(k for k, v in env.items() if v and k.lower().endswith("_proxy")))


def sdk_http_options(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """azure-core transport options of the app's ARM, table and queue clients, so that ``requests`` does not look
    the environment up on every request (every variable for proxies, ``~/.netrc``, the CA path: ~0.4 ms CPU per
    request, 9 requests in a validate invocation) when that look-up can be done once:
    * a proxy variable set (``HTTPS_PROXY``, ``NO_PROXY``, ...): ``{}`` — the environment is honoured per request,
      as before (``NO_PROXY`` matching has no per-client equivalent in ``requests``);
    * otherwise ``use_env_settings=False`` and, when ``REQUESTS_CA_BUNDLE`` (else ``CURL_CA_BUNDLE``) is set, that
      path as ``connection_verify`` — what ``requests`` would have used for a client without its own CA file (a
      client's own, e.g. ``DATAPROTECTION_CA_BUNDLE``, is set after this and wins, as before). ``~/.netrc`` is no
      longer read: its Basic credentials would replace these clients' bearer or shared-key authorization.
    The environment is read when the clients are built (once per process); app settings changes restart it."""
    env = os.environ if env is None else env
    if http_proxy_env(env):
        return {}
    bundle = next((env[k] for k in HTTP_ENV_CA if env.get(k)), None)
    return {"use_env_settings": False, **({"connection_verify": bundle} if bundle else {})}


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build and validate settings from ``env`` (default: ``os.environ``)."""
    env = os.environ if env is None else env
    queues = {name: str(_get(env, name)) for name in
              ALL_QUEUES}
    plans_raw = _get(env, RESTORE_PLANS) or "{}"
    try:
        plans = json.loads(plans_raw)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"setting {RESTORE_PLANS} is not valid JSON ({exc.msg}); fix the JSON") from None
    if not isinstance(plans, dict):
        raise SettingsError(f"setting {RESTORE_PLANS} must be a JSON object keyed by alerted resource id")
    poll_min = _number(env, POLL_MIN_SECONDS, minimum=0.05)
    poll_max = _number(env, POLL_MAX_SECONDS, minimum=0.05)
    if poll_max < poll_min:
        raise SettingsError(f"{POLL_MAX_SECONDS} ({poll_max}) must be >= {POLL_MIN_SECONDS} ({poll_min})")
    poll_overdue = _number(env, POLL_OVERDUE_SECONDS, minimum=0.05)
    inline = str(_get(env, CONTINUE_INLINE)).strip().lower()
    if inline not in ("true", "false"):
        raise SettingsError(f"{CONTINUE_INLINE}={inline!r}; choose true (the trigger runs in the validate "
                            "invocation when no rehydration is needed) or false (one stage per invocation)")
    exporter = str(_get(env, TELEMETRY_EXPORTER)).lower()
    if exporter not in TELEMETRY_EXPORTERS:
        raise SettingsError(f"{TELEMETRY_EXPORTER}={exporter!r}; choose one of {', '.join(TELEMETRY_EXPORTERS)}")
    flow = str(_get(env, REHYDRATION_FLOW)).lower()
    if flow not in REHYDRATION_FLOWS:
        raise SettingsError(f"{REHYDRATION_FLOW}={flow!r}; choose one of {', '.join(REHYDRATION_FLOWS)}")
    if (env.get(WORKER_AZURE_MONITOR) or "").strip().lower() in _WORKER_TRUE:
        raise SettingsError(
            f"{WORKER_AZURE_MONITOR}=true makes the Functions Python worker install its own Azure Monitor exporter "
            "next to this app's, so every restore_core record would be exported twice; remove it and set "
            f"{WORKER_OPENTELEMETRY}=true (with host.json telemetryMode OpenTelemetry) instead"
        )
    endpoint = str(_get(env, DATAPROTECTION_ENDPOINT)).rstrip("/")
    if not endpoint.startswith("https://"):
        raise SettingsError(f"{DATAPROTECTION_ENDPOINT}={endpoint!r} must be an https:// URL (ARM needs TLS)")
    return Settings(
        storage=_storage(env),
        queues=queues,
        table_restores=str(_get(env, TABLE_RESTORES)),
        table_idempotency=str(_get(env, TABLE_IDEMPOTENCY)),
        dataprotection_endpoint=endpoint,
        dataprotection_ca_bundle=_get(env, DATAPROTECTION_CA_BUNDLE),
        dataprotection_token=_get(env, DATAPROTECTION_TOKEN),
        azure_client_id=_get(env, AZURE_CLIENT_ID),
        restore_plans=plans,
        deadline_hours=_number(env, DEADLINE_HOURS, minimum=0.001),
        poll_min_seconds=poll_min,
        poll_max_seconds=poll_max,
        poll_overdue_seconds=poll_overdue,
        continue_inline=inline == "true",
        max_dequeue_count=int(_number(env, MAX_DEQUEUE_COUNT, minimum=1)),
        arm_max_retries=int(_number(env, ARM_MAX_RETRIES, minimum=0)),
        trigger_grace_seconds=_number(env, TRIGGER_GRACE_SECONDS, minimum=0),
        rehydration_flow=flow,
        message_in_flight_seconds=_number(env, MESSAGE_IN_FLIGHT_SECONDS, minimum=1),
        appinsights_connection_string=_get(env, APPINSIGHTS_CONNECTION_STRING),
        telemetry_exporter=exporter,
        otlp_endpoint=_get(env, OTLP_ENDPOINT),
        storage_timeouts=StorageTimeouts(
            connect_seconds=_number(env, STORAGE_CONNECT_TIMEOUT, minimum=0.1),
            read_seconds=_number(env, STORAGE_READ_TIMEOUT, minimum=0.1),
            retries=int(_number(env, STORAGE_RETRIES, minimum=0))),
        server=_server_settings(env),
        vaults=_vaults(env),
        guards=_guard_settings(env),
        drills=_drill_settings(env),
        auth=auth_settings(env),
        alert_door=AlertDoorSettings(own_resource_ids=_list(env, OWN_RESOURCE_IDS),
                                     own_rule_prefixes=tuple(p.lower() for p in _list(env, OWN_ALERT_RULE_PREFIXES))),
    )


def _drill_settings(env: Mapping[str, str]) -> DrillSettings:
    container = str(_get(env, DRILL_EVIDENCE_CONTAINER))
    if not re.fullmatch(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]", container):
        raise SettingsError(f"{DRILL_EVIDENCE_CONTAINER}={container!r} is not a blob container name: 3-63 lower-case "
                            "letters, digits and single hyphens")
    return DrillSettings(evidence_container=container,
                         max_starts_per_tick=int(_number(env, DRILL_MAX_STARTS_PER_TICK, minimum=1)))


def _vaults(env: Mapping[str, str]) -> tuple[str, ...]:
    """RESTORE_VAULTS: Backup vault ARM ids separated by commas (or spaces), or a JSON array (what the Bicep's
    ``string(backupVaultIds)`` gives), each checked."""
    raw = str(_get(env, VAULTS) or "").strip()
    try:
        listed = json.loads(raw) if raw.startswith("[") else re.split(r"[,\s]+", raw)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{VAULTS} is not a valid JSON array ({exc.msg}); fix it or use commas") from None
    ids = tuple(str(v) for v in listed if v)
    for vault_id in ids:
        if not VAULT_RE.match(vault_id):
            raise SettingsError(f"{VAULTS}: {vault_id!r} is not a Backup vault ARM id; use /subscriptions/{{sub}}/"
                                "resourceGroups/{rg}/providers/Microsoft.DataProtection/backupVaults/{vault}, "
                                "separated by commas")
    return ids


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A list setting: a JSON array of strings, or values separated by commas or new lines."""
    raw = (_get(env, name) or "").strip()
    if raw.startswith("["):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise SettingsError(f"setting {name} is not valid JSON ({exc.msg}); fix the JSON") from None
        if not all(isinstance(v, str) for v in value):
            raise SettingsError(f"setting {name} must be a JSON array of strings")
        return tuple(v.strip() for v in value if v.strip())
    return tuple(v.strip() for v in re.split(r"[,\n]", raw) if v.strip())


def auth_mode(env: Mapping[str, str] | None = None) -> str:
    """``RESTORE_AUTH_MODE`` (``key`` or ``entra``), checked. function_app.py reads it when the host indexes the
    functions, to choose the user routes' auth level."""
    env = os.environ if env is None else env
    mode = str(_get(env, AUTH_MODE)).strip().lower()
    if mode not in AUTH_MODES:
        raise SettingsError(f"{AUTH_MODE}={mode!r}; choose one of {', '.join(AUTH_MODES)}")
    return mode


def auth_settings(env: Mapping[str, str]) -> AuthSettings:
    return AuthSettings(mode=auth_mode(env),
                        platform_auth=(env.get(PLATFORM_AUTH_ENABLED) or "").strip().lower() in _WORKER_TRUE)


def _beside_source_role(env: Mapping[str, str]) -> str:
    """Unset: ``admin`` when callers are Entra principals (they carry roles), none with function keys; ``none``:
    no check."""
    raw = (_get(env, BESIDE_SOURCE_ROLE) or "").strip()
    if not raw:
        return "admin" if auth_mode(env) == "entra" else ""
    return "" if raw.lower() == "none" else raw


def _guard_settings(env: Mapping[str, str]) -> GuardSettings:
    vaults, servers = _list(env, PROTECTED_VAULTS), _list(env, PROTECTED_SERVERS)
    try:
        for v in vaults:
            parse_vault_id(v, PROTECTED_VAULTS)
        for srv in servers:
            parse_server_id(srv, PROTECTED_SERVERS)
    except RequestError as exc:
        raise SettingsError(f"{exc.message}; {exc.fix}") from None
    suffixes = tuple(s.lower().lstrip(".") for s in _list(env, BLOB_HOST_SUFFIXES))
    if not suffixes:
        raise SettingsError(f"{BLOB_HOST_SUFFIXES} is empty; leave it unset for the Azure clouds' blob endpoints")
    return GuardSettings(protected_vaults=vaults, protected_servers=servers,
                         allowed_targets=_list(env, ALLOWED_TARGETS),
                         beside_source_role=_beside_source_role(env),
                         blob_host_suffixes=suffixes,
                         preview_per_minute=int(_number(env, PREVIEW_PER_MINUTE, minimum=1)),
                         drill_targets=_drill_targets(env))


def _drill_targets(env: Mapping[str, str]) -> tuple[str, ...]:
    patterns = _list(env, DRILL_TARGETS)
    for p in patterns:
        if not p.lower().startswith("/subscriptions/") or "flexibleservers/" not in p.lower():
            raise SettingsError(f"{DRILL_TARGETS}: {p!r} is not a Flexible Server id pattern; use /subscriptions/"
                                "{sub}/resourceGroups/{rg}/providers/Microsoft.DBforPostgreSQL/flexibleServers/{name}"
                                " (fnmatch * allowed), separated by commas")
    return patterns


def _json_object(env: Mapping[str, str], name: str) -> dict[str, Any]:
    raw = _get(env, name) or "{}"
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"setting {name} is not valid JSON ({exc.msg}); fix the JSON") from None
    if not isinstance(value, dict):
        raise SettingsError(f"setting {name} must be a JSON object")
    return value


def _server_settings(env: Mapping[str, str]) -> ServerRestoreSettings:
    sslmode = str(_get(env, POSTGRES_SSLMODE)).lower()
    if sslmode not in SSLMODES:
        raise SettingsError(f"{POSTGRES_SSLMODE}={sslmode!r}; choose one of {', '.join(SSLMODES)} (never without TLS)")
    hosts = _json_object(env, POSTGRES_HOSTS)
    if not all(isinstance(v, str) and re.fullmatch(r"[^:\s]+:\d+", v) for v in hosts.values()):
        raise SettingsError(f"{POSTGRES_HOSTS} maps server names to \"host:port\" strings")
    suffix = str(_get(env, DATABASE_SUFFIX))
    if not re.fullmatch(r"[A-Za-z0-9_$-]{1,30}", suffix):
        raise SettingsError(f"{DATABASE_SUFFIX}={suffix!r}: 1-30 letters, digits, _ $ -")
    check_role = str(_get(env, CHECK_ROLE))
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", check_role) or check_role.startswith(("pg_", "azure")) \
            or check_role in ("azuresu", "replication", "public", "postgres"):
        raise SettingsError(f"{CHECK_ROLE}={check_role!r}: a new, ordinary role name (lower-case letters, digits, _; "
                            "not pg_*, azure*, azuresu, replication, public, postgres)")
    return ServerRestoreSettings(
        staging=_json_object(env, STAGING),
        staging_connection_string=_get(env, STAGING_CONNECTION_STRING),
        postgres_hosts={k.lower(): v for k, v in hosts.items()},
        postgres_host_suffix=str(_get(env, POSTGRES_HOST_SUFFIX)),
        postgres_sslmode=sslmode,
        postgres_sslrootcert=_get(env, POSTGRES_SSLROOTCERT),
        entra_user=_get(env, ENTRA_USER),
        replay_entra_user=_get(env, REPLAY_ENTRA_USER),
        entra_static_token=_get(env, ENTRA_STATIC_TOKEN),
        keyvault_endpoint=_get(env, KEYVAULT_ENDPOINT),
        keyvault_ca_bundle=_get(env, KEYVAULT_CA_BUNDLE),
        replay_client_version=int(_number(env, REPLAY_CLIENT_VERSION, minimum=9)),
        replay_jobs=int(_number(env, REPLAY_JOBS, minimum=1)),
        replay_workdir=_get(env, REPLAY_WORKDIR),
        replay_lease_seconds=_number(env, REPLAY_LEASE_SECONDS, minimum=5),
        replay_max_per_server=int(_number(env, REPLAY_MAX_PER_SERVER, minimum=1)),
        replay_disk_budget_mb=_number(env, REPLAY_DISK_BUDGET_MB, minimum=0),
        replay_messages_per_execution=int(_number(env, REPLAY_MESSAGES_PER_EXECUTION, minimum=1)),
        replay_execution_seconds=_number(env, REPLAY_EXECUTION_SECONDS, minimum=60),
        replay_idle_seconds=_number(env, REPLAY_IDLE_SECONDS, minimum=0),
        pg_bindir=_get(env, PG_BINDIR),
        verify_count_budget_mb=_number(env, VERIFY_COUNT_BUDGET_MB, minimum=0),
        database_suffix=suffix,
        check_role=check_role,
    )
