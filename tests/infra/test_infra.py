"""Infrastructure checks, offline: every template parses, checkov passes, the Bicep and the code agree on every
setting, queue and table, no template carries a key, and every role id lives in roles.bicep with a comment.

No Azure access here: these checks are what stands behind "the templates are right"; see docs/deploy.md.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from restore_core import config
from tests.infra import bicep_facts as facts

BICEP_FILES = facts.bicep_files()


@pytest.fixture(scope="module")
def main_parsed() -> dict:
    return facts.parse(facts.MAIN_BICEP)


@pytest.fixture(scope="module")
def bicep_settings(main_parsed: dict) -> set[str]:
    return facts.app_setting_names(main_parsed)


# --- parse ------------------------------------------------------------------------------------------------------

def test_infra_has_the_expected_templates() -> None:
    names = {p.relative_to(facts.INFRA).as_posix() for p in BICEP_FILES}
    for expected in ("main.bicep", "modules/roles.bicep", "modules/storage.bicep", "modules/function-app.bicep",
                     "modules/dashboards.bicep", "modules/monitoring.bicep"):
        assert expected in names, f"infra/{expected} is missing"


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.relative_to(facts.INFRA).as_posix())
def test_every_bicep_file_parses(path: Path) -> None:
    parsed = facts.parse(path)
    assert parsed["resources"] or parsed["modules"] or parsed["variables"], f"{path.name} parsed to nothing"


def test_parser_rejects_broken_bicep(tmp_path: Path) -> None:
    with pytest.raises(Exception):  # noqa: B017 - pycep raises lark errors of several types
        facts.parse_text("resource x 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  name: \n", tmp_path)


# --- checkov ------------------------------------------------------------------------------------------------------

def _checkov(directory: Path) -> dict:
    exe = Path(sys.executable).with_name("checkov")
    if not exe.exists():
        pytest.fail(f"checkov is not installed next to {sys.executable}; run `make setup` (requirements-dev.txt)")
    proc = subprocess.run(
        [str(exe), "-d", str(directory), "--framework", "bicep", "--quiet", "--compact", "--skip-download",
         "-o", "json"],
        capture_output=True, text=True, timeout=180,
        env={"PATH": str(exe.parent) + ":/usr/bin:/bin", "HOME": str(directory), "BC_SKIP_MAPPING": "TRUE"},
    )
    out = proc.stdout.strip()
    assert out.startswith(("{", "[")), f"checkov gave no JSON (rc={proc.returncode}): {proc.stderr[-2000:]}"
    report = json.loads(out)
    return report if isinstance(report, dict) else report[0]


def test_checkov_passes_on_infra() -> None:
    report = _checkov(facts.INFRA)
    summary = report["summary"]
    failed = [f"{c['check_id']} {c['resource']} ({c['file_path']})" for c in report.get("results", {}).get(
        "failed_checks", [])]
    assert summary["parsing_errors"] == 0, "checkov could not parse a template"
    assert summary["failed"] == 0, "checkov failures:\n" + "\n".join(failed)
    assert summary["passed"] > 0, "checkov ran no check at all"


def test_checkov_catches_an_insecure_storage_account(tmp_path: Path) -> None:
    (tmp_path / "bad.bicep").write_text(
        "resource st 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n"
        "  name: 'stbad'\n  location: 'westeurope'\n  kind: 'StorageV2'\n  sku: { name: 'Standard_LRS' }\n"
        "  properties: {\n    minimumTlsVersion: 'TLS1_0'\n    supportsHttpsTrafficOnly: false\n  }\n}\n"
    )
    assert _checkov(tmp_path)["summary"]["failed"] > 0


def test_every_checkov_skip_is_justified() -> None:
    for path in BICEP_FILES:
        for line in path.read_text().splitlines():
            if "checkov:skip=" in line:
                m = re.search(r"checkov:skip=(CKV\w*_\d+)\s*:\s*(.*)", line)
                assert m, f"{path.name}: skip without ': reason' -> {line.strip()}"
                assert len(m.group(2)) >= 30, f"{path.name}: {m.group(1)} needs a real justification"


# --- parity: the Bicep and the code ---------------------------------------------------------------------------------

def test_every_setting_the_code_reads_is_set_in_the_bicep(bicep_settings: set[str]) -> None:
    wanted = set(config.ALL_SETTINGS) - set(config.LOCAL_ONLY_SETTINGS)
    missing = sorted(wanted - bicep_settings)
    assert not missing, f"add these settings to var appSettings in infra/main.bicep: {missing}"


def test_local_only_settings_are_absent_from_the_bicep(bicep_settings: set[str]) -> None:
    present = sorted(set(config.LOCAL_ONLY_SETTINGS) & bicep_settings)
    assert not present, f"local-only settings must not be deployed: {present}"


def test_every_bicep_setting_is_read_by_the_code_or_a_documented_platform_setting(bicep_settings: set[str]) -> None:
    unknown = sorted(s for s in bicep_settings if s not in config.ALL_SETTINGS and not facts.is_platform_setting(s))
    assert not unknown, (
        f"app settings nobody reads: {unknown}; remove them or add them to restore_core/config.py "
        "(or, for a platform setting, to PLATFORM_SETTINGS in tests/infra/bicep_facts.py with the reason)"
    )


def test_identity_based_connections_are_complete(bicep_settings: set[str]) -> None:
    for prefix in facts.PLATFORM_PREFIXES:
        for suffix in ("credential", "clientId", "queueServiceUri", "tableServiceUri", "blobServiceUri"):
            assert f"{prefix}{suffix}" in bicep_settings, f"missing {prefix}{suffix}"
    assert config.STORAGE_CONNECTION + "__credential" in bicep_settings
    assert config.STORAGE_CONNECTION not in bicep_settings, "RestoreStorage must be identity-based, not a string"


def test_every_binding_expression_in_function_app_is_set_in_the_bicep(bicep_settings: set[str]) -> None:
    assert facts.FUNCTION_APP.exists(), "function_app.py is missing: the binding parity check needs it"
    names = facts.binding_setting_names(facts.FUNCTION_APP.read_text())
    assert names, "function_app.py uses no %NAME% binding expression; queue names must come from app settings"
    missing = sorted(names - bicep_settings)
    assert not missing, f"%NAME% bindings without an app setting in infra/main.bicep: {missing}"


def test_queue_and_table_names_match_config_defaults(main_parsed: dict) -> None:
    queues = facts.object_var(main_parsed, "restoreQueues")
    tables = facts.object_var(main_parsed, "restoreTables")
    for name, value in {**queues, **tables}.items():
        default = config.DEFAULTS.get(name)
        assert default == value, f"{name}: Bicep {value!r} != config default {default!r}"
    code_queues = {n for n in config.ALL_SETTINGS if n.startswith("RESTORE_QUEUE_")}
    code_tables = {n for n in config.ALL_SETTINGS if n.startswith("RESTORE_TABLE_")}
    assert set(queues) == code_queues, f"queues differ: {sorted(set(queues) ^ code_queues)}"
    assert set(tables) == code_tables, f"tables differ: {sorted(set(tables) ^ code_tables)}"


def test_storage_creates_every_queue_its_poison_twin_and_every_table(main_parsed: dict) -> None:
    storage = facts.parse(facts.INFRA / "modules" / "storage.bicep")
    text = (facts.INFRA / "modules" / "storage.bicep").read_text()
    assert "'${q}-poison'" in text and "concat(queueNames, poisonQueueNames)" in text, "poison twins not created"
    kinds = {r["type"] for r in storage["resources"].values()}
    assert "Microsoft.Storage/storageAccounts/queueServices/queues" in kinds
    assert "Microsoft.Storage/storageAccounts/tableServices/tables" in kinds
    assert "Microsoft.Storage/storageAccounts/blobServices/containers" in kinds, "Flex deployment container missing"
    main_text = facts.MAIN_BICEP.read_text()
    assert "queueNames: [for q in items(restoreQueues): q.value]" in main_text
    assert "tableNames: [for t in items(restoreTables): t.value]" in main_text


def test_binding_settings_deployed_with_the_code_defaults(main_parsed: dict) -> None:
    schedule = main_parsed["parameters"]["watchdogSchedule"]["default"]
    assert schedule == config.DEFAULTS[config.WATCHDOG_SCHEDULE]


def test_behaviour_settings_default_to_the_code_defaults(main_parsed: dict) -> None:
    # Empty app setting = restore_core.config DEFAULTS apply: defaults live in one place (the code).
    for param in ("deadlineHours", "pollMinSeconds", "pollMaxSeconds", "armMaxRetries", "triggerGraceSeconds"):
        assert main_parsed["parameters"][param]["default"] == "", f"param {param} must default to '' (code default)"


def test_max_dequeue_count_comes_from_host_json() -> None:
    text = facts.MAIN_BICEP.read_text()
    assert "loadJsonContent('../host.json')" in text
    assert "RESTORE_MAX_DEQUEUE_COUNT: string(hostJson.extensions.queues.maxDequeueCount)" in text
    host = json.loads((facts.ROOT / "host.json").read_text())
    assert isinstance(host["extensions"]["queues"]["maxDequeueCount"], int)


def test_settings_extractor_sees_a_missing_setting(tmp_path: Path) -> None:
    parsed = facts.parse_text(
        "var q = {\n  RESTORE_QUEUE_WAIT: 'restore-wait'\n}\n"
        "var appSettings = union(q, {\n  AZURE_CLIENT_ID: 'x'\n})\n", tmp_path)
    names = facts.app_setting_names(parsed)
    assert names == {"RESTORE_QUEUE_WAIT", "AZURE_CLIENT_ID"}
    assert "RESTORE_PLANS" not in names


def test_binding_extractor_reads_percent_expressions() -> None:
    src = 'queue_name="%RESTORE_QUEUE_WAIT%", schedule="%RESTORE_WATCHDOG_SCHEDULE%" # 100% sure'
    assert facts.binding_setting_names(src) == {"RESTORE_QUEUE_WAIT", "RESTORE_WATCHDOG_SCHEDULE"}


# --- Flex Consumption ------------------------------------------------------------------------------------------------

FUNCTION_APP_BICEP = facts.INFRA / "modules" / "function-app.bicep"


def test_flex_site_carries_no_property_flex_rejects() -> None:
    parsed = facts.parse(FUNCTION_APP_BICEP)
    flex = facts.resource_properties(parsed, "site", {"isFlex": True, "vnetIntegrated": False})
    assert isinstance(flex["functionAppConfig"], dict), "the Flex site needs functionAppConfig (runtime, deployment)"
    assert flex["functionAppConfig"]["runtime"] == {"name": "python", "version": "3.11"}
    site_config = flex.get("siteConfig") or {}
    assert site_config.get("minTlsVersion") == "1.2" and site_config.get("http20Enabled") is True
    for where, keys in (("properties", flex), ("properties.siteConfig", site_config)):
        present = sorted(set(keys) & set(facts.FLEX_REJECTED_SITE_PROPERTIES))
        assert not present, f"the Flex site sets {where}.{present}: ARM rejects them even when null; leave them out"


def test_dedicated_site_keeps_its_runtime_and_ftp_hardening() -> None:
    parsed = facts.parse(FUNCTION_APP_BICEP)
    dedicated = facts.resource_properties(parsed, "site", {"isFlex": False, "vnetIntegrated": False})
    assert dedicated["functionAppConfig"] is None
    site_config = dedicated["siteConfig"]
    assert site_config["linuxFxVersion"] == "PYTHON|3.11" and site_config["alwaysOn"] is True
    assert site_config["ftpsState"] == "Disabled" and site_config["minTlsVersion"] == "1.2"
    assert site_config["http20Enabled"] is True and site_config["remoteDebuggingEnabled"] is False


def test_flex_evaluator_sees_a_nulled_property(tmp_path: Path) -> None:
    parsed = facts.parse_text(
        "param plan string\nvar isFlex = plan == 'Flex'\nvar base = {\n  minTlsVersion: '1.2'\n}\n"
        "resource site 'Microsoft.Web/sites@2024-04-01' = {\n  name: 'x'\n  properties: {\n"
        "    siteConfig: union(base, {\n      ftpsState: isFlex ? null : 'Disabled'\n    })\n  }\n}\n", tmp_path)
    flex = facts.resource_properties(parsed, "site", {"isFlex": True})
    assert flex["siteConfig"] == {"minTlsVersion": "1.2", "ftpsState": None}
    with pytest.raises(AssertionError):
        facts.resource_properties(parsed, "site", {})


# --- keyless ------------------------------------------------------------------------------------------------------

def _template_files() -> list[Path]:
    return BICEP_FILES + sorted(facts.INFRA.rglob("*.json")) + [facts.ROOT / "azure.yaml"]


def test_no_template_contains_a_key_or_sas() -> None:
    findings = facts.secret_findings(_template_files())
    assert not findings, "keys or SAS in templates:\n" + "\n".join(findings)


def test_secret_scan_flags_keys(tmp_path: Path) -> None:
    bad = tmp_path / "bad.bicep"
    bad.write_text(
        "var a = 'DefaultEndpointsProtocol=https;AccountName=x;AccountKey=abc=='\n"
        "var b = st.listKeys().keys[0].value\nvar c = 'SharedAccessSignature=sv=2020'\n")
    labels = {f.rsplit(": ", 1)[1] for f in facts.secret_findings([bad])}
    assert {"listKeys(", "AccountKey=", "SharedAccessSignature", "connection string with a key"} <= labels


def test_storage_and_monitoring_disable_local_auth() -> None:
    storage = (facts.INFRA / "modules" / "storage.bicep").read_text()
    for needle in ("allowSharedKeyAccess: false", "minimumTlsVersion: 'TLS1_2'", "allowBlobPublicAccess: false",
                   "supportsHttpsTrafficOnly: true"):
        assert needle in storage, f"storage.bicep lacks {needle}"
    monitoring = (facts.INFRA / "modules" / "monitoring.bicep").read_text()
    assert "DisableLocalAuth: true" in monitoring and "disableLocalAuth: true" in monitoring


# --- roles ----------------------------------------------------------------------------------------------------------

def test_role_ids_live_only_in_roles_bicep() -> None:
    stray = facts.role_guid_literals_outside(BICEP_FILES, facts.ROLES_BICEP)
    assert not stray, "role ids outside infra/modules/roles.bicep:\n" + "\n".join(stray)


def test_every_role_id_in_roles_bicep_is_named_and_commented() -> None:
    text = facts.ROLES_BICEP.read_text()
    guids = [line for _, line in facts.code_lines(text) if facts.GUID.search(line)]
    assert len(guids) >= 7, "expected the built-in role ids as named variables in roles.bicep"
    assert all(re.match(r"\s*var\s+\w+\s*=\s*'", g) for g in guids), f"role id not in a named variable: {guids}"
    assert not facts.role_vars_without_comment(text)


def test_role_comment_check_flags_an_uncommented_role() -> None:
    assert facts.role_vars_without_comment("param x string\nvar reader = 'acdd72a7-3385-48ef-bd42-f606fba81ae7'\n")


def test_app_identity_gets_no_broad_data_protection_role() -> None:
    roles_text = (facts.INFRA / "modules" / "restore-operator-roles.bicep").read_text()
    actions = re.findall(r"^\s*'(Microsoft\.DataProtection/[^']+)'", roles_text, re.MULTILINE)
    assert "Microsoft.DataProtection/backupVaults/backupInstances/restore/action" in actions
    assert "Microsoft.DataProtection/backupVaults/backupJobs/read" in actions
    forbidden = [a for a in actions if "*" in a or a.endswith(("/delete", "/write")) or "backup/action" in a]
    assert not forbidden, f"restore identity must not get: {forbidden}"


# --- dashboards and alerts -------------------------------------------------------------------------------------------

def test_workbook_covers_the_required_views() -> None:
    wb = json.loads((facts.INFRA / "workbook" / "restore-workbook.json").read_text())
    queries = "\n".join(i["content"]["query"] for i in wb["items"] if i.get("type") == 3)
    for metric in ("restore.active", "restore.finished", "restore.rto", "restore.stage.duration", "restore.arm.calls",
                   "restore.poison.depth", "restore.queue.lag"):
        assert f'"{metric}"' in queries, f"workbook has no panel over {metric}"
    assert "percentile(" in queries and '"429"' in queries and "error_code" in queries
    dashboards = (facts.INFRA / "modules" / "dashboards.bicep").read_text()
    assert "loadTextContent('../workbook/restore-workbook.json')" in dashboards


def test_alert_rules_cover_failure_rto_and_poison() -> None:
    parsed = facts.parse(facts.INFRA / "modules" / "dashboards.bicep")
    text = (facts.INFRA / "modules" / "dashboards.bicep").read_text()
    assert "Microsoft.Insights/scheduledQueryRules" in text
    assert len(parsed["variables"]["alertRules"]["value"]) == 3
    assert '(customDimensions.outcome) == "failed"' in text
    for needle in ('tostring(customDimensions.event) == "restore.finished"', 'name == "restore.rto"',
                   'name == "restore.poison.depth"', "threshold: rtoTargetMinutes"):
        assert needle in text, f"dashboards.bicep lacks {needle}"


def test_every_registry_stage_has_its_queue_and_poison_twin_in_infra_and_the_sample(main_parsed: dict) -> None:
    """A stage added to the registry without its queue in infra/ or local.settings.sample.json fails here."""
    from restore_core.stages import registry

    queues = facts.object_var(main_parsed, "restoreQueues")
    storage_text = (facts.INFRA / "modules" / "storage.bicep").read_text()
    sample = json.loads((facts.ROOT / "local.settings.sample.json").read_text())["Values"]
    for spec in registry.REGISTRY:
        assert queues.get(spec.queue_setting) == spec.default_queue, f"{spec.stage}: no queue in infra/main.bicep"
        assert sample.get(spec.queue_setting) == spec.default_queue, f"{spec.stage}: not in the sample settings"
    assert "'${q}-poison'" in storage_text, "every queue of restoreQueues gets its -poison twin"


def test_the_failure_alert_names_the_restore_its_target_and_the_error() -> None:
    """Issue 13.6: the alert's dimension is one value per failed restore: its id, target (and databases) and code."""
    failed = next(r for r in facts.parse(facts.INFRA / "modules" / "dashboards.bicep")["variables"]["alertRules"]
                  ["value"] if r["key"] == "failed")
    assert failed["dimension"] == "restore" and "summarize failed = count() by restore" in failed["query"]
    for field in ("restore_id", "target", "target_databases", "error_code"):
        assert f"customDimensions.{field}" in failed["query"], field


def test_the_workbook_has_a_table_of_restores_with_source_target_status_stage_times_and_error() -> None:
    from restore_core.pipeline import finished_fields
    from restore_core.stages import registry

    wb = json.loads((facts.INFRA / "workbook" / "restore-workbook.json").read_text())
    table = next(i for i in wb["items"] if i.get("name") == "restores")["content"]
    assert table["visualization"] == "table" and "order by timestamp desc" in table["query"]
    logged = {"event", "restore_id", "outcome", "source", "source_resource", "target", "target_databases", "region",
              "error_code", "stage_seconds", "rto_seconds"}
    for field in logged:
        assert f"customDimensions.{field}" in table["query"], field
    for spec in registry.REGISTRY:  # a column per stage (rehydrate and wait together)
        assert f"stages.{spec.stage.value}" in table["query"], spec.stage.value
    assert finished_fields.__doc__ and "customDimensions" in finished_fields.__doc__
