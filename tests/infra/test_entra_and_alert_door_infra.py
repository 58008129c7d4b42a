"""Infra of issue 14 item 3 (Entra callers through App Service authentication) and issue 13 item 2 (the alert door),
evaluated on the parsed templates."""

from __future__ import annotations

import json
from typing import Any

import pytest

from restore_core import config

from . import bicep_facts as facts

FUNCTION_APP = facts.INFRA / "modules" / "function-app.bicep"
DASHBOARDS = facts.INFRA / "modules" / "dashboards.bicep"


@pytest.fixture(scope="module")
def main_parsed() -> dict[str, Any]:
    return facts.parse(facts.MAIN_BICEP)


def test_authentication_is_on_only_with_an_app_registration_and_excludes_the_alert_door(
        main_parsed: dict[str, Any]) -> None:
    parsed = facts.parse(FUNCTION_APP)
    resource = parsed["resources"]["auth"]
    assert resource["type"] == "Microsoft.Web/sites/config"
    conditional = resource["config"]  # a conditional resource: {condition, config}
    assert conditional["config"]["name"] == "authsettingsV2"
    assert json.loads(json.dumps(conditional["condition"]))["operator"]["type"] == "not" and \
        '"item_to_test": "entraClientId"' in json.dumps(conditional["condition"]), \
        "authsettingsV2 must exist only when an app registration is given"
    props = conditional["config"]["properties"]
    assert props["platform"]["enabled"] is True
    glob = props["globalValidation"]
    assert glob["requireAuthentication"] is True and glob["unauthenticatedClientAction"] == "Return401"
    assert glob["excludedPaths"] == "authExcludedPaths"
    aad = props["identityProviders"]["azureActiveDirectory"]
    assert aad["registration"]["clientId"] == "entraClientId"
    assert props["login"]["tokenStore"]["enabled"] is False
    # main.bicep hands the door's path (the route of function_app.alerts_receive) to excludedPaths
    text = facts.MAIN_BICEP.read_text()
    assert "var alertDoorPath = '/api/alerts'" in text and "authExcludedPaths: [\n      alertDoorPath\n    ]" in text


def test_the_auth_mode_setting_follows_the_app_registration(main_parsed: dict[str, Any]) -> None:
    settings = facts.app_settings(main_parsed)
    assert settings[config.AUTH_MODE] == "authMode"
    text = facts.MAIN_BICEP.read_text()
    assert "var authMode = empty(entraClientId) ? 'key' : 'entra'" in text
    assert config.PLATFORM_AUTH_ENABLED in config.PLATFORM_SET_SETTINGS
    assert not set(config.PLATFORM_SET_SETTINGS) & facts.app_setting_names(main_parsed), \
        "WEBSITE_AUTH_ENABLED is the platform's: App Service sets it when authentication is on"


def test_own_resource_ids_name_the_function_app_and_its_telemetry(main_parsed: dict[str, Any]) -> None:
    value = json.dumps(facts.app_settings(main_parsed)[config.OWN_RESOURCE_IDS])
    for needle in ("Microsoft.Web/sites/${functionAppName}", "storage.outputs.id", "monitoring.outputs.appInsightsId",
                   "monitoring.outputs.workspaceId"):
        assert needle in value, needle
    # the product's own alert rules carry the prefix the feedback-loop rule recognises
    assert "name: 'alert-restore-${rule.key}-${resourceToken}'" in DASHBOARDS.read_text()
    assert config.DEFAULTS[config.OWN_ALERT_RULE_PREFIXES] == "alert-restore-"


def test_the_door_action_group_sends_the_common_alert_schema_to_a_secure_url() -> None:
    parsed = facts.parse(DASHBOARDS)
    receivers = json.dumps(parsed["resources"]["doorActionGroup"]["config"]["properties"]["webhookReceivers"])
    assert "alertDoorWebhookUrl" in receivers and '"useCommonAlertSchema": true' in receivers
    text = DASHBOARDS.read_text()
    assert "@secure()\nparam alertDoorWebhookUrl string = ''" in text
    main = facts.MAIN_BICEP.read_text()
    assert "@secure()\nparam alertDoorWebhookUrl string = ''" in main
    # the product's own rules alert the on-call group, never the door (no feedback loop through Azure Monitor)
    rules = parsed["resources"]["alerts"]["config"]["config"]["properties"]["actions"]["actionGroups"]
    assert "doorActionGroup" not in json.dumps(rules)


def test_the_failure_alert_counts_alerts_rejected_before_anything_started() -> None:
    failed = next(r for r in facts.parse(DASHBOARDS)["variables"]["alertRules"]["value"] if r["key"] == "failed")
    query = failed["query"]
    assert '(tostring(customDimensions.outcome) == "rejected" and tostring(customDimensions.source) == "alert"' \
        in query
    for not_a_failure in ("AlertDeduplicated", "AlertNotFired", "AlertAboutThisService"):
        assert f'"{not_a_failure}"' in query


def test_the_workbook_has_an_audit_view_over_the_logged_actors() -> None:
    wb = json.loads((facts.INFRA / "workbook" / "restore-workbook.json").read_text())
    audit = next(i for i in wb["items"] if i.get("name") == "audit")
    for field in ("audit_action", "actor_kind", "actor_id", "actor_name", "actor_rule", "actor_plan", "restore_id"):
        assert f"customDimensions.{field}" in audit["content"]["query"], field


def test_the_app_roles_file_defines_exactly_the_roles_the_app_checks() -> None:
    from restore_core import principal

    roles = json.loads((facts.INFRA / "entra-app-roles.json").read_text())
    assert sorted(r["value"] for r in roles) == sorted(principal.ROLES)
    assert len({r["id"] for r in roles}) == len(roles) and all(facts.GUID.fullmatch(r["id"]) for r in roles)
    assert all(set(r["allowedMemberTypes"]) == {"User", "Application"} and r["isEnabled"] for r in roles)
    params = json.loads((facts.INFRA / "main.parameters.json").read_text())["parameters"]
    assert params["entraClientId"]["value"] == "${ENTRA_CLIENT_ID=}"
    assert params["alertDoorWebhookUrl"]["value"] == "${ALERT_DOOR_WEBHOOK_URL=}"
