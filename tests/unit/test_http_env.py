"""The Azure SDK clients look the HTTP environment (proxies, CA bundle, ~/.netrc) up once, not on every request,
unless a proxy variable asks for requests' per-request matching (docs/performance.md, overhead)."""

from __future__ import annotations

from typing import Any

import pytest

from restore_core import runtime
from restore_core.config import StorageTimeouts, http_proxy_env, sdk_http_options
from restore_core.dp_client import DataProtection

from .fakes import settings


@pytest.mark.parametrize("env, expected", [
    ({}, {"use_env_settings": False}),
    ({"PATH": "/bin", "HTTPS_PROXY": ""}, {"use_env_settings": False}),  # empty: not set
    ({"HTTPS_PROXY": "http://proxy:3128"}, {}),
    ({"no_proxy": "localhost"}, {}),
    ({"ALL_PROXY": "socks5://p:1080", "REQUESTS_CA_BUNDLE": "/etc/ca.pem"}, {}),  # proxies: all per request
    ({"REQUESTS_CA_BUNDLE": "/etc/a.pem", "CURL_CA_BUNDLE": "/etc/b.pem"},
     {"use_env_settings": False, "connection_verify": "/etc/a.pem"}),  # requests' precedence
    ({"CURL_CA_BUNDLE": "/etc/b.pem"}, {"use_env_settings": False, "connection_verify": "/etc/b.pem"}),
])
def test_the_environment_is_read_once_unless_a_proxy_variable_is_set(env: dict[str, str],
                                                                     expected: dict[str, Any]) -> None:
    assert sdk_http_options(env) == expected


def test_proxy_variables_are_found_in_any_case() -> None:
    assert http_proxy_env({"https_proxy": "x", "NO_PROXY": "y", "PROXY": "z", "FTP_PROXY": ""}) == \
        ("NO_PROXY", "https_proxy")


def _transport(client: Any) -> Any:
    transport = client._pipeline._transport
    return getattr(transport, "_transport", transport)  # azure-data-tables wraps it


def test_the_arm_and_storage_clients_get_the_options(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY",
                 "no_proxy", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/env-ca.pem")
    s = settings(DATAPROTECTION_TOKEN="t0ken")
    arm = _transport(DataProtection(s).client("sub")._client)
    assert arm._use_env_settings is False and arm.connection_config.verify == "/etc/ssl/env-ca.pem"
    own = _transport(DataProtection(settings(DATAPROTECTION_TOKEN="t0ken", DATAPROTECTION_CA_BUNDLE="/own.pem"))
                     .client("sub")._client)
    assert own.connection_config.verify == "/own.pem"  # the client's own CA file wins, as it did over the env
    assert runtime.table_options(StorageTimeouts())["use_env_settings"] is False
    assert runtime.queue_options(StorageTimeouts())["use_env_settings"] is False
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    assert _transport(DataProtection(s).client("sub")._client)._use_env_settings is True
    assert "use_env_settings" not in runtime.table_options(StorageTimeouts())
