"""Clean a ``roles.sql`` (pg_dumpall --roles-only, PG 11-18) for Azure Database for PostgreSQL Flexible Server.

Microsoft's recipe (Azure Backup, "Restore Azure PostgreSQL-Flexible server as Files", section "Key considerations for
the Flexible server scenario") which this module follows:

* "Remove Superuser-Only Attributes: On Flexible server, there's no superuser privileges. So, remove attributes, such
  as ``NOSUPERUSER`` and ``NOBYPASSRLS`` from the roles dump."
* "Exclude Service-Specific Users: Exclude users specific to Flexible Server services (``azure_su``,
  ``azure_pg_admin``, ``replication``, ``localadmin``, ``Entra Admin``). These specific service roles are automatically
  recreated when administrators are added to the new Flexible server."
* its sed line: ``sed -i '/azure_superuser/d; /azure_pg_admin/d; /azuresu/d; /^CREATE ROLE replication/d;
  /^ALTER ROLE replication/d; /^ALTER ROLE/ {s/NOSUPERUSER//; s/NOBYPASSRLS//;}' roles.sql``

Our rules, stricter than the sed line (which deletes any line merely *mentioning* a platform role):

* dropped roles (with the reason in :attr:`RolesPlan.dropped`): ``azure_pg_admin``, ``azuresu``, ``azure_su``,
  ``azure_superuser``, ``replication``, ``localadmin``, ``postgres`` (bootstrap superuser), every ``pg_*`` role
  (built in), and the names in ``exclude`` (the target's admin, the connecting role, Entra admins);
* attributes: ``SUPERUSER``/``NOSUPERUSER``, ``BYPASSRLS``/``NOBYPASSRLS``, ``REPLICATION``/``NOREPLICATION`` are never
  emitted (a removed *positive* one is reported in :attr:`RolesPlan.removed_attributes`); ``LOGIN``, ``INHERIT``,
  ``CREATEDB``, ``CREATEROLE``, ``CONNECTION LIMIT`` and ``VALID UNTIL`` are kept;
* passwords are never carried (``PASSWORD '…'``/``PASSWORD NULL``/``ENCRYPTED PASSWORD``): restored login roles have no
  password (:attr:`RolesPlan.passwords_removed` names them; nothing of the secret is kept anywhere);
* role memberships (``GRANT a TO b``) only between kept roles, without ``GRANTED BY`` (the grantor may not exist);
* ``ALTER ROLE … SET`` kept for kept roles; ``ALTER ROLE … IN DATABASE … SET`` dropped (restored databases get new
  names); ``COMMENT ON ROLE`` kept; anything else is reported in :attr:`RolesPlan.skipped` (without its text).

Statements are idempotent: ``CREATE ROLE`` runs inside ``DO … IF NOT EXISTS (SELECT FROM pg_roles …)``, so a role that
already exists on the target is left exactly as it is. Run :meth:`RolesPlan.statements_for` with the target's existing
role names to touch only roles this restore creates; run the list in ONE transaction (role DDL is transactional).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

PLATFORM_ROLES = frozenset({"azure_pg_admin", "azuresu", "azure_su", "azure_superuser", "replication", "localadmin"})
_NEVER = {"SUPERUSER", "NOSUPERUSER", "BYPASSRLS", "NOBYPASSRLS", "REPLICATION", "NOREPLICATION"}
_KEPT_FLAGS = {"LOGIN", "NOLOGIN", "INHERIT", "NOINHERIT", "CREATEDB", "NOCREATEDB", "CREATEROLE", "NOCREATEROLE"}
_IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_TOKEN = re.compile(r"'(?:[^']|'')*'|[^\s;]+")

_RE_CREATE = re.compile(rf"^CREATE ROLE ({_IDENT})\s*;$")
_RE_ALTER_WITH = re.compile(rf"^ALTER ROLE ({_IDENT}) WITH (.*);$")
_RE_ALTER_SET = re.compile(rf"^ALTER ROLE ({_IDENT}) SET (.*);$")
_RE_ALTER_IN_DB = re.compile(rf"^ALTER ROLE ({_IDENT}) IN DATABASE ")
_RE_GRANT = re.compile(rf"^GRANT ({_IDENT}) TO ({_IDENT})(.*);$")
_RE_COMMENT = re.compile(rf"^COMMENT ON ROLE ({_IDENT}) IS (.*);$")
_RE_GRANTED_BY = re.compile(rf"\s+GRANTED BY {_IDENT}\s*$")
_SKIP_PREFIXES = ("--", "SET ", "\\restrict", "\\unrestrict", "\\connect", "SELECT pg_catalog.set_config")


def quote_ident(name: str) -> str:
    """Always-quoted identifier (safe for any role name)."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """SQL string literal (standard_conforming_strings on, as every supported server)."""
    return "'" + value.replace("'", "''") + "'"


def _unquote(ident: str) -> str:
    return ident[1:-1].replace('""', '"') if ident.startswith('"') else ident


@dataclass
class RoleSpec:
    name: str
    options: list[str] = field(default_factory=list)  # kept CREATE ROLE options, already SQL
    settings: list[str] = field(default_factory=list)  # "param TO value" of ALTER ROLE … SET
    comment: str | None = None  # SQL literal

    def create_statement(self) -> str:
        opts = (" WITH " + " ".join(self.options)) if self.options else ""
        body = (f"IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {quote_literal(self.name)}) "
                f"THEN CREATE ROLE {quote_ident(self.name)}{opts}; END IF;")
        tag = _dollar_tag(body)
        return f"DO {tag} BEGIN {body} END {tag};"


def _dollar_tag(body: str) -> str:
    n = 0
    while f"$r{n}$" in body:
        n += 1
    return f"$r{n}$"


@dataclass(frozen=True)
class Membership:
    role: str
    member: str
    options: str  # e.g. " WITH ADMIN OPTION" (GRANTED BY removed)

    def statement(self) -> str:
        return f"GRANT {quote_ident(self.role)} TO {quote_ident(self.member)}{self.options};"


@dataclass(frozen=True)
class DroppedRole:
    name: str
    reason: str


@dataclass
class RolesPlan:
    roles: list[RoleSpec] = field(default_factory=list)
    memberships: list[Membership] = field(default_factory=list)
    dropped: list[DroppedRole] = field(default_factory=list)
    removed_attributes: dict[str, list[str]] = field(default_factory=dict)
    passwords_removed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def role_names(self) -> list[str]:
        return [r.name for r in self.roles]

    @property
    def statements(self) -> list[str]:
        """Every statement, idempotent; prefer :meth:`statements_for` with the target's roles."""
        return self.statements_for(())

    def statements_for(self, existing: Iterable[str]) -> list[str]:
        """Statements that create the roles missing on the target and grant memberships to those roles only."""
        have = set(existing)
        created = [r for r in self.roles if r.name not in have]
        made = {r.name for r in created}
        out: list[str] = []
        for role in created:
            out.append(role.create_statement())
            out.extend(f"ALTER ROLE {quote_ident(role.name)} SET {s};" for s in role.settings)
            if role.comment is not None:
                out.append(f"COMMENT ON ROLE {quote_ident(role.name)} IS {role.comment};")
        out.extend(m.statement() for m in self.memberships if m.member in made)
        return out

    @property
    def notes(self) -> list[str]:
        if not self.passwords_removed:
            return []
        return [f"restored roles have no password ({', '.join(self.passwords_removed)}): set one with ALTER ROLE … "
                "PASSWORD or use Microsoft Entra authentication"]

    def summary(self) -> dict[str, object]:
        return {"roles": self.role_names, "dropped": [{"name": d.name, "reason": d.reason} for d in self.dropped],
                "memberships": [{"role": m.role, "member": m.member} for m in self.memberships],
                "removed_attributes": self.removed_attributes, "passwords_removed": self.passwords_removed,
                "skipped": self.skipped, "notes": self.notes}


def drop_reason(name: str, exclude: frozenset[str]) -> str | None:
    if name in PLATFORM_ROLES:
        return "Azure platform role: the target server has its own"
    if name.startswith("pg_"):
        return "PostgreSQL built-in role"
    if name == "postgres":
        return "bootstrap superuser of the source server"
    if name in exclude:
        return "exists on the target already (its admin or connecting role)"
    return None


class _Cleaner:
    def __init__(self, exclude: frozenset[str]) -> None:
        self.exclude = exclude
        self.plan = RolesPlan()
        self.specs: dict[str, RoleSpec] = {}
        self.dropped: dict[str, str] = {}

    def role(self, ident: str) -> RoleSpec | None:
        """The spec of a kept role (created on first sight), None for a dropped one."""
        name = _unquote(ident)
        reason = drop_reason(name, self.exclude)
        if reason is not None:
            self.dropped.setdefault(name, reason)
            return None
        if name not in self.specs:
            self.specs[name] = RoleSpec(name)
        return self.specs[name]

    def line(self, lineno: int, line: str) -> None:
        for handler in (self._create, self._alter_with, self._alter_set, self._grant, self._comment):
            if handler(line):
                return
        if _RE_ALTER_IN_DB.match(line):
            self.plan.skipped.append(f"line {lineno}: ALTER ROLE … IN DATABASE (restored databases get new names)")
        else:
            self.plan.skipped.append(f"line {lineno}: {' '.join(line.split()[:2])} statement not carried")

    def _create(self, line: str) -> bool:
        m = _RE_CREATE.match(line)
        if m:
            self.role(m.group(1))
        return m is not None

    def _alter_with(self, line: str) -> bool:
        m = _RE_ALTER_WITH.match(line)
        if m and (spec := self.role(m.group(1))) is not None:
            spec.options = self._options(spec.name, _TOKEN.findall(m.group(2)))
        return m is not None

    def _options(self, name: str, tokens: list[str]) -> list[str]:
        kept: list[str] = []
        i = 0
        while i < len(tokens):
            word = tokens[i].upper()
            if word in ("PASSWORD", "ENCRYPTED"):
                i += 3 if word == "ENCRYPTED" else 2
                self.plan.passwords_removed.append(name)
                continue
            if word in ("CONNECTION", "VALID"):  # CONNECTION LIMIT n / VALID UNTIL '…'
                kept.append(" ".join(tokens[i:i + 3]))
                i += 3
                continue
            self._flag(name, word, kept)
            i += 1
        return kept

    def _flag(self, name: str, word: str, kept: list[str]) -> None:
        if word in _KEPT_FLAGS:
            kept.append(word)
        elif word in _NEVER and not word.startswith("NO"):
            self.plan.removed_attributes.setdefault(name, []).append(word)

    def _alter_set(self, line: str) -> bool:
        m = _RE_ALTER_SET.match(line)
        if m and (spec := self.role(m.group(1))) is not None:
            spec.settings.append(m.group(2))
        return m is not None

    def _grant(self, line: str) -> bool:
        m = _RE_GRANT.match(line)
        if m:
            role, member = self.role(m.group(1)), self.role(m.group(2))
            if role is not None and member is not None:
                opts = _RE_GRANTED_BY.sub("", m.group(3))
                self.plan.memberships.append(Membership(role.name, member.name, opts))
        return m is not None

    def _comment(self, line: str) -> bool:
        m = _RE_COMMENT.match(line)
        if m and (spec := self.role(m.group(1))) is not None:
            spec.comment = m.group(2)
        return m is not None

    def finish(self) -> RolesPlan:
        self.plan.roles = list(self.specs.values())
        self.plan.dropped = [DroppedRole(n, r) for n, r in self.dropped.items()]
        self.plan.passwords_removed = list(dict.fromkeys(self.plan.passwords_removed))
        return self.plan


def clean_roles(sql: str, exclude: Iterable[str] = ()) -> RolesPlan:
    """A :class:`RolesPlan` from the text of roles.sql; ``exclude`` = roles of the target never to create or grant."""
    cleaner = _Cleaner(frozenset(exclude))
    for lineno, raw in enumerate(sql.splitlines(), start=1):
        line = raw.strip()
        if line and not line.startswith(_SKIP_PREFIXES):
            cleaner.line(lineno, line)
    return cleaner.finish()
