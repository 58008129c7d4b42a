"""Tiny client for the emulator's admin API (tests, benchmarks, the demo).

``EmulatorAdmin(admin_url, token, ca_bundle)``; every method returns the decoded JSON answer and raises
:class:`AdminError` (with the emulator's message) on a non-2xx answer. Admin calls are never metered.
"""

from __future__ import annotations

import ssl
from typing import Any

import httpx


class AdminError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"admin API answered {status}: {message}")
        self.status = status


class EmulatorAdmin:
    def __init__(self, admin_url: str, token: str, ca_bundle: str, timeout: float = 60) -> None:
        self.url = admin_url.rstrip("/")
        self._http = httpx.Client(verify=ssl.create_default_context(cafile=ca_bundle), timeout=timeout,
                                  headers={"Authorization": f"Bearer {token}"})

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        r = self._http.request(method, f"{self.url}{path}", json=body)
        if r.status_code >= 300:
            raise AdminError(r.status_code, r.text)
        return r.json() if r.content else None

    def close(self) -> None:
        self._http.close()

    # --- state / config / time
    def info(self) -> dict[str, Any]:
        return dict(self._call("GET", ""))

    def world(self) -> dict[str, Any]:
        return dict(self._call("GET", "/world"))

    def config(self) -> dict[str, Any]:
        return dict(self._call("GET", "/config"))

    def set_config(self, **values: Any) -> dict[str, Any]:
        """Keys: time_scale, page_size, lro_duration, restore_job_duration, rehydration_duration_standard,
        rehydration_duration_high, crr_replication_lag (ISO durations), arm_latency_seconds."""
        return dict(self._call("PUT", "/config", values))

    def clock(self) -> dict[str, Any]:
        return dict(self._call("GET", "/clock"))

    def advance(self, duration: str) -> dict[str, Any]:
        return dict(self._call("POST", "/clock/advance", {"duration": duration}))

    # --- faults
    def add_fault(self, mode: str, operation: str = "*", **kw: Any) -> dict[str, Any]:
        """kw: count, probability, error_code, error_message, delay_seconds, retry_after, duration (job_pause)."""
        return dict(self._call("POST", "/faults", {"mode": mode, "operation": operation, **kw}))

    def faults(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/faults")["faults"])

    def clear_faults(self, fault_id: str | None = None) -> int:
        return int(self._call("DELETE", f"/faults/{fault_id}" if fault_id else "/faults")["removed"])

    # --- metering / callers / throttling
    def metering(self) -> dict[str, Any]:
        return dict(self._call("GET", "/metering"))

    def reset_metering(self) -> None:
        self._call("DELETE", "/metering")

    def issue_token(self, caller: str) -> str:
        return str(self._call("POST", "/tokens", {"caller": caller})["token"])

    def throttling(self) -> dict[str, Any]:
        return dict(self._call("GET", "/throttling"))

    def set_throttling(self, **values: Any) -> dict[str, Any]:
        """Keys: enabled, read_burst, read_rate, write_burst, write_rate."""
        return dict(self._call("PUT", "/throttling", values))

    # --- world changes
    def take_backup(self, backup_instance: str, seed_sql: str | None = None, state: str | None = None, *,
                    tier: str = "vault", age: str | None = None) -> dict[str, Any]:
        """A real backup now. ``state``: the new point's recoveryPointState, Completed (default) or Partial;
        ``tier`` archive puts it in the archive tier; ``age`` (ISO duration) dates it that long ago (so it does not
        become the latest point)."""
        body: dict[str, Any] = {"backup_instance": backup_instance, "tier": tier}
        if age:
            body["age"] = age
        if seed_sql:
            body["seed_sql"] = seed_sql
        if state:
            body["state"] = state
        return dict(self._call("POST", "/backups", body))

    def grant(self, principal: str, role: str, scope: str) -> dict[str, Any]:
        return dict(self._call("POST", "/role-assignments", {"principal": principal, "role": role, "scope": scope}))

    def revoke(self, principal: str, role: str, scope: str) -> dict[str, Any]:
        return dict(self._call("DELETE", "/role-assignments", {"principal": principal, "role": role, "scope": scope}))

    # Key Vault secrets (the emulated Key Vault's data; values are never listed)
    def secrets(self) -> dict[str, int]:
        return dict(self._call("GET", "/secrets")["secrets"])

    def put_secret(self, vault: str, name: str, value: str) -> dict[str, Any]:
        """A new version of secret ``name`` in Key Vault ``vault``; returns its ``id`` and ``version``."""
        return dict(self._call("PUT", "/secrets", {"vault": vault, "name": name, "value": value}))

    def delete_secret(self, vault: str, name: str) -> bool:
        return bool(self._call("DELETE", f"/secrets/{vault}/{name}")["removed"])
