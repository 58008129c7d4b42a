"""The admin API (``/admin/...``): run-time configuration, the simulated clock, faults, metering, caller tokens,
throttling, backups on demand, role assignments and a summary of the world.

Consumes: calls the front door has authenticated with the main token (the Python client is :mod:`.admin`; every
call is documented in ``docs/emulator.md``). Produces: a :class:`Reply` with a JSON body; bad input answers 400 with
``{"error": "<what to change>"}``, an unknown call 404. Admin calls are never metered.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from .control import FAULT_MODES, ControlError, Controls
from .engine import Engine
from .model import BadRequest
from .replies import Reply
from .timeutil import iso, parse_duration
from .world import check_emulation_choices, check_files_layout, check_job_progress

#: ``PUT /admin/config`` duration keys -> the :class:`~.world.Settings` attribute they set.
DURATIONS = {"lro_duration": "lro_duration", "restore_job_duration": "restore_job_duration",
             "rehydration_duration_standard": "rehydration_standard",
             "rehydration_duration_high": "rehydration_high", "crr_replication_lag": "crr_replication_lag"}

#: One admin call family: (method, path parts after its name, JSON body) -> reply, or None when not served.
AdminHandler = Callable[[str, list[str], Any], Reply | None]
ConfigSetter = Callable[[str, Any], None]


def _flag(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{key}: give true or false")
    return value


class AdminApi:
    def __init__(self, engine: Engine, controls: Controls, base_url: str) -> None:
        self.engine = engine
        self.controls = controls
        self.base_url = base_url.rstrip("/")
        self.handlers: dict[str, AdminHandler] = {
            "": self._status, "config": self._config_call, "clock": self._clock, "faults": self._faults,
            "metering": self._metering, "tokens": self._tokens, "throttling": self._throttling,
            "backups": self._backups, "role-assignments": self._role_assignments, "world": self._world,
            "secrets": self._secrets,
        }
        self.config_setters: dict[str, ConfigSetter] = {
            **{key: self._set_duration for key in DURATIONS},
            "integer_retry_after": self._set_integer_retry_after,
            "job_destination_format": self._set_job_destination_format,
            "files_layout": self._set_files_layout,
            "job_progress": self._set_job_progress,
            "flexible_point_db_names": self._set_flexible_point_db_names,
            "rehydration_reported_on": self._set_rehydration_reported_on,
            "strict_identity_details": self._set_strict_identity_details,
            "time_scale": self._set_time_scale,
            "page_size": self._set_page_size,
            "job_page_size": self._set_page_size,
            "arm_latency_seconds": self._set_arm_latency,
            "data_plane": self._set_data_plane,
        }

    def handle(self, method: str, path: str, raw: bytes) -> Reply:
        """``path`` is matched case-insensitively on its parts: ``/admin/<name>[/<rest>...]``."""
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return Reply(400, {"error": "body is not valid JSON"})
        parts = [x for x in path.lower().split("/") if x][1:]
        handler = self.handlers.get(parts[0] if parts else "")
        try:
            reply = handler(method, parts[1:], body) if handler else None
        except (ControlError, ValueError) as exc:
            return Reply(400, {"error": str(exc)})
        except BadRequest as exc:
            return Reply(exc.status, {"error": exc.message})
        return reply or Reply(404, {"error": f"unknown admin call {method} {path}; see docs/emulator.md"})

    # ================================================================ calls
    def _status(self, method: str, rest: list[str], body: Any) -> Reply | None:
        if method != "GET":
            return None
        e = self.engine
        return Reply(200, {"endpoint": self.base_url, "now": iso(e.clock.now()), "time_scale": e.clock.scale,
                           "jobs": len(e.jobs), "operations": len(e.ops)})

    def _config_call(self, method: str, rest: list[str], body: Any) -> Reply | None:
        if method == "PUT":
            self.set_config(body)
        return Reply(200, self.config())

    def _clock(self, method: str, rest: list[str], body: Any) -> Reply | None:
        clock = self.engine.clock
        if method == "POST" and rest == ["advance"]:
            clock.advance(parse_duration(str(body.get("duration", ""))))
        return Reply(200, {"now": iso(clock.now()), "time_scale": clock.scale})

    def _faults(self, method: str, rest: list[str], body: Any) -> Reply | None:
        c = self.controls
        if method == "POST":
            return Reply(201, c.add_fault(body).to_json())
        if method == "DELETE":
            return Reply(200, {"removed": c.clear_faults(rest[0] if rest else None)})
        return Reply(200, {"faults": [f.to_json() for f in c.faults], "modes": sorted(FAULT_MODES)})

    def _metering(self, method: str, rest: list[str], body: Any) -> Reply | None:
        if method == "DELETE":
            self.controls.reset_metering()
        return Reply(200, self.controls.metering())

    def _tokens(self, method: str, rest: list[str], body: Any) -> Reply | None:
        if method != "POST":
            return None
        caller = body.get("caller")
        return Reply(201, {"caller": caller, "token": self.controls.issue_token(str(caller or ""))})

    def _throttling(self, method: str, rest: list[str], body: Any) -> Reply | None:
        if method == "PUT":
            return Reply(200, self.controls.set_throttling(body))
        return Reply(200, self.controls.throttling)

    def _backups(self, method: str, rest: list[str], body: Any) -> Reply | None:
        if method != "POST":
            return None
        e = self.engine
        ref = body.get("backup_instance")
        if not isinstance(ref, str):
            raise ControlError("backup_instance: give the backup instance name or ARM id")
        sql = body.get("seed_sql")
        if sql:
            _, bi = e.find_bi_any(ref)
            srv = e.world.servers[bi.server_id.lower()]
            e.data.run_sql(srv.cluster, bi.database or srv.databases[0].name, str(sql))
        return Reply(201, e.backup_now(ref, str(body.get("state") or "Completed"), str(body.get("tier") or "vault"),
                                       parse_duration(str(body.get("age") or "PT0S"))))

    def _role_assignments(self, method: str, rest: list[str], body: Any) -> Reply | None:
        if method not in ("POST", "DELETE"):
            return None
        return Reply(200, self.engine.add_role(body, remove=method == "DELETE"))

    def _secrets(self, method: str, rest: list[str], body: Any) -> Reply | None:
        """``GET /admin/secrets``: secret URIs and version counts (never values); ``PUT /admin/secrets`` with
        ``{"vault", "name", "value"}``: a new version; ``DELETE /admin/secrets/{vault}/{name}``: all versions."""
        e = self.engine
        if method == "GET" and not rest:
            with e.lock:
                return Reply(200, {"secrets": {u: len(v) for u, v in e.secret_versions.items()}})
        if method == "PUT" and not rest:
            vault, name, value = (body.get(k) for k in ("vault", "name", "value"))
            if not all(isinstance(x, str) and x for x in (vault, name, value)):
                raise ControlError("give {\"vault\": <key vault name>, \"name\": <secret name>, \"value\": <text>}")
            if not re.fullmatch(r"[0-9A-Za-z-]{1,127}", name):
                raise ControlError(f"name '{name}': Key Vault secret names are 1-127 letters, digits and '-'")
            if vault.lower() not in e.world.key_vaults:
                raise ControlError(f"vault '{vault}' is not in the world's key_vaults: "
                                   f"{sorted(e.world.key_vaults)}")
            uri = e.secret_uri(vault, name)
            version = e.put_secret(uri, value)
            return Reply(200, {"id": f"https://{vault.lower()}.vault.azure.net/secrets/{name}/{version.version}",
                               "version": version.version})
        if method == "DELETE" and len(rest) == 2:
            return Reply(200, {"removed": e.delete_secret(e.secret_uri(rest[0], rest[1]))})
        return None

    def _world(self, method: str, rest: list[str], body: Any) -> Reply | None:
        if method != "GET":
            return None
        w = self.engine.world
        return Reply(200, {
            "servers": {s.id: {"cluster": s.cluster, "location": s.location, "postgres_version": s.postgres_version,
                               "kind": s.kind, "databases": [d.name for d in s.databases]}
                        for s in w.servers.values()},
            "containers": {c.url: {"id": c.id, "azurite_container": c.azurite_container, "location": c.location}
                           for c in w.containers.values()},
            "secrets": [s.uri for s in w.secrets.values()],
            "vaults": {v.id: {"location": v.location, "principal_id": v.principal_id,
                              "user_assigned_identities": {u.id: u.principal_id for u in v.user_identities},
                              "backup_instances": [b.id for b in v.backup_instances]} for v in w.vaults.values()},
            "datastore_container": w.settings.datastore_container,
        })

    # ================================================================ configuration
    def config(self) -> dict[str, Any]:
        s = self.engine.settings
        return {"time_scale": self.engine.clock.scale, "page_size": s.page_size, "job_page_size": s.job_page_size,
                "lro_duration": f"PT{s.lro_duration.total_seconds():g}S",
                "restore_job_duration": f"PT{s.restore_job_duration.total_seconds():g}S",
                "rehydration_duration_standard": f"PT{s.rehydration_standard.total_seconds():g}S",
                "rehydration_duration_high": f"PT{s.rehydration_high.total_seconds():g}S",
                "crr_replication_lag": f"PT{s.crr_replication_lag.total_seconds():g}S",
                "arm_latency_seconds": self.controls.arm_latency_seconds,
                "integer_retry_after": self.controls.integer_retry_after,
                "job_destination_format": s.job_destination_format,
                "files_layout": s.files_layout,
                "job_progress": s.job_progress,
                "flexible_point_db_names": s.flexible_point_db_names,
                "rehydration_reported_on": list(s.rehydration_reported_on),
                "strict_identity_details": s.strict_identity_details,
                "data_plane": s.data_plane}

    def set_config(self, body: dict[str, Any]) -> None:
        """Apply the keys, all or none: an unknown or invalid key raises ValueError naming it, and the keys applied
        before it are put back (bad input changes nothing)."""
        unknown = sorted(k for k in body if k not in self.config_setters)
        if unknown:
            raise ValueError(f"unknown config key '{unknown[0]}'; known: {sorted(self.config_setters)}")
        before = self.config()
        try:
            for key, value in body.items():
                self.config_setters[key](key, value)
        except (ValueError, ControlError):
            for key, value in before.items():
                self.config_setters[key](key, value)
            raise

    def _set_duration(self, key: str, value: Any) -> None:
        d = parse_duration(str(value))
        if d.total_seconds() < 0:
            raise ValueError(f"{key}: give a non-negative ISO-8601 duration like PT1H")
        setattr(self.engine.settings, DURATIONS[key], d)

    def _set_job_progress(self, key: str, value: Any) -> None:
        self.engine.settings.job_progress = check_job_progress(value)

    def _set_integer_retry_after(self, key: str, value: Any) -> None:
        self.controls.integer_retry_after = _flag(key, value)

    def _set_data_plane(self, key: str, value: Any) -> None:
        if not isinstance(value, bool):
            raise ValueError(f"{key}: got {value!r}; use true or false")
        self.engine.settings.data_plane = value

    def _set_strict_identity_details(self, key: str, value: Any) -> None:
        self.engine.settings.strict_identity_details = _flag(key, value)

    def _set_job_destination_format(self, key: str, value: Any) -> None:
        s = self.engine.settings
        s.job_destination_format, _ = check_emulation_choices(value, s.rehydration_reported_on)

    def _set_flexible_point_db_names(self, key: str, value: Any) -> None:
        if not isinstance(value, bool):
            raise ValueError(f"{key}: got {value!r}; use true or false")
        self.engine.settings.flexible_point_db_names = value

    def _set_files_layout(self, key: str, value: Any) -> None:
        self.engine.settings.files_layout = check_files_layout(value)

    def _set_rehydration_reported_on(self, key: str, value: Any) -> None:
        s = self.engine.settings
        _, s.rehydration_reported_on = check_emulation_choices(s.job_destination_format, value)

    def _set_time_scale(self, key: str, value: Any) -> None:
        self.engine.clock.set_scale(float(value))

    def _set_page_size(self, key: str, value: Any) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{key}: give a positive integer")
        setattr(self.engine.settings, key, value)

    def _set_arm_latency(self, key: str, value: Any) -> None:
        if float(value) < 0:
            raise ValueError("arm_latency_seconds: give a number >= 0")
        self.controls.arm_latency_seconds = float(value)
