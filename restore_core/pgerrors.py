"""Classify pg_restore's stderr after ``pg_restore --no-owner`` into a Flexible Server: warnings vs failures.

Input is pg_restore's real stderr (PG 11-18 formats): ``pg_restore: error: could not execute query: ERROR:  <message>``
(older: ``pg_restore: [archiver (db)] could not execute query: …``), optional ``DETAIL:``/``HINT:`` lines, then
``Command was: <SQL>`` (possibly several lines, ended by a blank line), and at the end ``pg_restore: warning: errors
ignored on restore: N``. With ``-j`` the workers share stderr and prefixes can interleave
(``pg_restore:pg_restore: error:  error: …``), so errors are found by scanning for ``could not execute query:`` rather
than by line structure. Other ``pg_restore: error:`` lines (unsupported archive version, connection failures) are
fatal failures.

Benign (→ :attr:`ReplayDiagnosis.warnings`), each with its code:

* ``platform-role-grant``: ``GRANT``/``REVOKE`` to/from an Azure platform role (``azure_pg_admin``, ``azuresu``,
  ``azure_superuser``, ``replication``, ``localadmin``) that does not exist on the target or cannot be granted;
* ``skipped-role-grant``: the same for a role this restore deliberately did not create (``absent_roles``: roles
  ``skip``, or dropped by the roles cleaning);
* ``extension-comment``: ``must be owner of extension …`` for ``COMMENT ON EXTENSION`` (the extension belongs to the
  server's admin, e.g. plpgsql);
* ``public-schema-exists``: ``schema "public" already exists`` (``CREATE SCHEMA public`` in old dumps);
* ``unknown-setting``: ``unrecognized configuration parameter "transaction_timeout"`` (``SET`` from pg_dump 17+ on
  an older server).

Failures (→ :attr:`ReplayDiagnosis.failures`), each with the PostgreSQL message, the command and a fix:

* ``extension-not-allowed``: Azure's ``extension "X" is not allow-listed for "azure_pg_admin" users in Azure Database
  for PostgreSQL`` (learn.microsoft.com, "Possible errors when managing extensions") and ``could not open extension
  control file`` (extension not installed): fix = add X to the server parameter ``azure.extensions`` with
  ``az postgres flexible-server parameter set … --name azure.extensions --value …,X`` and retry;
* ``restore-error``: any other query error; ``restore-fatal``: pg_restore stopped (no ``Command was``);
* ``unparsed-errors``: pg_restore counted more ignored errors than were parsed (never silently benign).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

PLATFORM_ROLES = frozenset({"azure_pg_admin", "azuresu", "azure_superuser", "replication", "localadmin"})

_RE_QUERY_ERROR = re.compile(
    r"could not execute query: (?P<msg>.*?)\n\s*Command was: (?P<cmd>.*?)"
    r"(?=\n[ \t]*\n|\npg_restore:|\ncould not execute query:|\Z)", re.S)
_RE_FATAL = re.compile(r"pg_restore: (?:error|\[archiver[^\]]*\]):? (?!\s*(?:error:\s*)?could not execute query"
                       r"|Error while PROCESSING|Error from TOC)(?P<msg>[^\n]+)")
_RE_IGNORED = re.compile(r"errors ignored on restore: (\d+)")
_RE_ROLE_MISSING = re.compile(r'role "([^"]+)" does not exist')
_RE_NOT_ALLOWED = re.compile(r'extension "([^"]+)" is not allow-listed', re.I)
_RE_CONTROL_FILE = re.compile(r'could not open extension control file "[^"]*/([^"/]+)\.control"')
_RE_EXT_OWNER = re.compile(r'must be owner of extension (\S+)')
_RE_UNKNOWN_SETTING = re.compile(r'unrecognized configuration parameter "transaction_timeout"')
_RE_PUBLIC_EXISTS = re.compile(r'schema "public" already exists')


@dataclass(frozen=True)
class Issue:
    code: str
    message: str  # the PostgreSQL message (first line, ERROR: prefix removed)
    command: str  # the SQL pg_restore ran ("" for fatal errors)
    fix: str
    detail: str = ""  # DETAIL:/HINT: lines

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, "command": self.command, "fix": self.fix,
                "detail": self.detail}


@dataclass
class ReplayDiagnosis:
    warnings: list[Issue] = field(default_factory=list)
    failures: list[Issue] = field(default_factory=list)
    errors_ignored: int | None = None  # pg_restore's own count, when it printed one

    @property
    def ok(self) -> bool:
        return not self.failures


@dataclass(frozen=True)
class Target:
    """Fills the ``az`` fix; placeholders when unknown."""

    resource_group: str = "<resource group>"
    server_name: str = "<server>"
    subscription: str | None = None  # given: the fix names it (the server may be in another subscription)


def classify_output(stderr: str, *, absent_roles: Iterable[str] = (), target: Target | None = None) -> ReplayDiagnosis:
    """Warnings and failures of one pg_restore run (see the module docstring for the rules)."""
    absent = frozenset(absent_roles)
    tgt = target or Target()
    diag = ReplayDiagnosis()
    parsed = 0
    for m in _RE_QUERY_ERROR.finditer(stderr):
        parsed += 1
        issue = _classify_query(m.group("msg"), m.group("cmd").strip(), absent, tgt)
        (diag.warnings if issue.code in _BENIGN else diag.failures).append(issue)
    for m in _RE_FATAL.finditer(stderr):
        diag.failures.append(_fatal(m.group("msg").strip()))
    _check_count(stderr, parsed, diag)
    return diag


_BENIGN = {"platform-role-grant", "skipped-role-grant", "extension-comment", "public-schema-exists",
           "unknown-setting"}


def _split_message(raw: str) -> tuple[str, str]:
    lines = [ln.strip() for ln in raw.strip().splitlines() if ln.strip()]
    first = re.sub(r"^(ERROR|FATAL):\s+", "", lines[0]) if lines else ""
    return first, "\n".join(lines[1:])


def _classify_query(raw: str, command: str, absent: frozenset[str], tgt: Target) -> Issue:
    message, detail = _split_message(raw)
    for rule in _RULES:
        issue = rule(message, command, absent, tgt)
        if issue is not None:
            return Issue(issue.code, message, command, issue.fix, detail)
    return Issue("restore-error", message, command, _generic_fix(message), detail)


def _grant_rule(message: str, command: str, absent: frozenset[str], tgt: Target) -> Issue | None:
    """Benign only when every statement pg_restore did not get to (from the failing one on) grants to roles that are
    meant to be missing: an ACL entry is one multi-statement query, and the first error skips the rest of it."""
    m = _RE_ROLE_MISSING.search(message)
    if not m or not re.match(r"\s*(GRANT|REVOKE|ALTER DEFAULT PRIVILEGES)\b", command, re.I):
        return None
    role = m.group(1)
    if not _rest_only_to(command, role, PLATFORM_ROLES | absent):
        return None
    if role in PLATFORM_ROLES:
        return Issue("platform-role-grant", "", "", f"none: {role} is an Azure platform role of the source server")
    return Issue("skipped-role-grant", "", "",
                 f"none, or restore with roles \"clean\" (or create role {role}) to keep this grant")


_RE_GRANTEES = re.compile(r"\s(?:TO|FROM)\s+(.+?)(?:\s+WITH GRANT OPTION|\s+GRANTED BY\s.*|\s+CASCADE)?;?\s*$", re.S)


def _grantees(statement: str) -> set[str]:
    m = _RE_GRANTEES.search(statement)
    if not m:
        return {"?"}
    return {_unquote(n.strip()) for n in m.group(1).split(",")}


def _unquote(ident: str) -> str:
    return ident[1:-1].replace('""', '"') if ident.startswith('"') and ident.endswith('"') else ident


def _rest_only_to(command: str, role: str, allowed: frozenset[str]) -> bool:
    statements = [st for st in re.split(r";\s*\n", command) if st.strip()]
    rest = False
    for st in statements:
        names = _grantees(st)
        rest = rest or role in names or f"ROLE {role}" in st
        if rest and not names <= allowed:
            return False
    return rest


def _extension_rule(message: str, command: str, absent: frozenset[str], tgt: Target) -> Issue | None:
    m = _RE_NOT_ALLOWED.search(message) or _RE_CONTROL_FILE.search(message)
    if not m:
        return None
    ext = m.group(1)
    return Issue("extension-not-allowed", "", "", (
        f"add {ext} to the server parameter azure.extensions (az postgres flexible-server parameter set "
        f"--resource-group {tgt.resource_group} --server-name {tgt.server_name} --name azure.extensions "
        f"--value <current value>,{ext}"
        + (f" --subscription {tgt.subscription}" if tgt.subscription else "") + ") and retry"))


def _simple_rule(message: str, command: str, absent: frozenset[str], tgt: Target) -> Issue | None:
    if _RE_EXT_OWNER.search(message) and command.upper().startswith("COMMENT ON EXTENSION"):
        return Issue("extension-comment", "", "", "none: the extension belongs to the server's admin")
    if _RE_PUBLIC_EXISTS.search(message):
        return Issue("public-schema-exists", "", "", "none: every new database has the public schema")
    if _RE_UNKNOWN_SETTING.search(message):
        return Issue("unknown-setting", "", "", "none: the setting is newer than the target server")
    return None


_RULES = (_grant_rule, _extension_rule, _simple_rule)


def _generic_fix(message: str) -> str:
    role = _RE_ROLE_MISSING.search(message)
    if role:
        return f"create role {role.group(1)} on the target (or restore with roles \"clean\") and retry"
    if message.startswith("permission denied") or message.startswith("must be"):
        return "grant the connecting role the privilege named in the message (or name a role that has it) and retry"
    if "already exists" in message:
        return "restore into a new, empty database (the target database already held this object)"
    return "fix the cause named in the PostgreSQL message on the target and retry; the staged files are kept"


def _fatal(message: str) -> Issue:
    fix = "fix the cause named in the message and retry; the staged files are kept"
    if "unsupported version" in message:
        fix = "the replay client is older than the archive: rebuild the replay image with a newer postgresql-client"
    elif "connection to server" in message or "could not connect" in message:
        fix = "check the target server is reachable and the credentials are valid, then retry"
    return Issue("restore-fatal", message, "", fix)


def _check_count(stderr: str, parsed: int, diag: ReplayDiagnosis) -> None:
    m = _RE_IGNORED.search(stderr)
    if not m:
        return
    diag.errors_ignored = int(m.group(1))
    if diag.errors_ignored > parsed:
        diag.failures.append(Issue(
            "unparsed-errors", f"pg_restore ignored {diag.errors_ignored} errors, {parsed} could be read", "",
            "read the replay log for the errors not shown here; the staged files are kept"))
