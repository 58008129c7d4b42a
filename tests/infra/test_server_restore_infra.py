"""Infra of "restore into a server" (issue 12), offline on the parsed templates: stage queues, settings shared by the
Function App and the replay job, staging accounts per vault region and pair, the event-driven Container Apps job with
an identity-based azure-queue scale rule, least-privilege roles, registry and azd wiring, network parameters.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from restore_core import config
from restore_core.regions import PAIRED_REGIONS
from tests.infra import bicep_facts as facts

MODULES = facts.INFRA / "modules"


@pytest.fixture(scope="module")
def main() -> dict[str, Any]:
    return facts.parse(facts.MAIN_BICEP)


def _module(name: str) -> dict[str, Any]:
    return facts.parse(MODULES / name)


def _var(parsed: dict[str, Any], name: str) -> Any:
    return parsed["variables"][name]["value"]


def _module_params(parsed: dict[str, Any], name: str) -> dict[str, Any]:
    config_ = parsed["modules"][name]["config"]
    return dict((config_.get("config") or config_)["params"])


# --- queues and settings ---------------------------------------------------------------------------------------------

def test_new_stage_queues_are_declared_with_the_contract_names(main: dict[str, Any]) -> None:
    queues = facts.object_var(main, "restoreQueues")
    assert queues["RESTORE_QUEUE_INVENTORY"] == "restore-inventory"
    assert queues["RESTORE_QUEUE_REPLAY"] == "restore-replay"
    assert queues["RESTORE_QUEUE_VERIFY"] == "restore-verify"


def test_function_app_and_replay_job_get_the_same_restore_settings(main: dict[str, Any]) -> None:
    restore = facts.app_setting_names(main, "restoreSettings")
    wanted = set(config.ALL_SETTINGS) - set(config.LOCAL_ONLY_SETTINGS)
    assert not sorted(wanted - restore), "the replay job would miss these settings"
    assert not set(config.LOCAL_ONLY_SETTINGS) & restore
    union_args = _var(main, "appSettings")["function"]["parameters"]
    assert union_args["arg_1"] == "restoreSettings", "appSettings must be union(restoreSettings, platform settings...)"
    assert _module_params(main, "replayJob")["settings"] == "restoreSettings"
    job = _module("container-apps.bicep")["resources"]["job"]["config"]["properties"]
    env = job["template"]["containers"][0]["env"]
    assert env["loop_type"]["detail"]["object_name"] == "settings", "the job environment must be built from settings"
    assert env["config"] == {"name": "setting.key", "value": "setting.value"}


def test_server_restore_settings_have_the_deployed_values(main: dict[str, Any]) -> None:
    settings = facts.app_settings(main, "restoreSettings")
    assert settings["RESTORE_STAGING"] == {"function": {"type": "string", "parameters": {
        "value_to_convert": "stagingSetting"}}}
    assert settings["RESTORE_ENTRA_USER"] == "identityName"
    assert _module_params(main, "identity")["name"] == "identityName", "the Entra role must be the identity's name"
    assert settings["RESTORE_REPLAY_CLIENT_VERSION"] == "replayClientMajor" and _var(main, "replayClientMajor") == "18"
    assert settings["RESTORE_PG_BINDIR"] == "/usr/lib/postgresql/${replayClientMajor}/bin"
    assert settings["RESTORE_REPLAY_WORKDIR"] == "replayWorkdir" and _var(main, "replayWorkdir") == "/mnt/replay"
    assert _module_params(main, "replayJob")["workdir"] == "replayWorkdir"
    for name in ("RESTORE_POSTGRES_HOST_SUFFIX", "RESTORE_POSTGRES_SSLMODE", "RESTORE_REPLAY_JOBS",
                 "RESTORE_REPLAY_LEASE_SECONDS", "RESTORE_VERIFY_COUNT_BUDGET_MB", "RESTORE_DATABASE_SUFFIX"):
        param = settings[name]
        assert main["parameters"][param]["default"] == "", f"{name}: empty default = the code default"


def test_staging_setting_names_the_vault_region_and_its_pair(main: dict[str, Any]) -> None:
    primary = {"'${stagingRegions[0]}'": {"container_url": "staging[0].outputs.containerUrl",
                                           "container_id": "staging[0].outputs.containerId"}}
    pair = {"'${stagingRegions[1]}'": {"container_url": "staging[1].outputs.containerUrl",
                                        "container_id": "staging[1].outputs.containerId"}}
    variables = main["variables"]
    assert facts.evaluate("stagingSetting", variables, {"hasPairRegion": True}) == {**primary, **pair}
    assert facts.evaluate("stagingSetting", variables, {"hasPairRegion": False}) == primary
    text = facts.MAIN_BICEP.read_text()
    assert "var stagingRegions = empty(pairRegionKey) ? [vaultRegionKey] : [vaultRegionKey, pairRegionKey]" in text
    assert main["parameters"]["vaultRegion"]["default"] == "location"
    assert main["parameters"]["vaultPairedRegion"]["default"] == ""
    loop = main["modules"]["staging"]["config"]["loop_type"]["detail"]
    assert loop["array_name"] == "stagingRegions", "one staging account per region in stagingRegions"


def test_paired_regions_json_is_the_code_map() -> None:
    assert json.loads((facts.INFRA / "paired-regions.json").read_text()) == PAIRED_REGIONS
    assert "loadJsonContent('paired-regions.json')" in facts.MAIN_BICEP.read_text()


# --- staging accounts ------------------------------------------------------------------------------------------------

def test_staging_account_meets_the_restore_as_files_prerequisites(main: dict[str, Any]) -> None:
    staging = _module("staging.bicep")
    account = staging["resources"]["account"]["config"]["properties"]
    assert account["allowCrossTenantReplication"] is True, "Azure Backup copies across tenants into the target"
    assert account["publicNetworkAccess"] == "Enabled", "restore-as-files targets must be reachable publicly"
    assert account["allowSharedKeyAccess"] is False and account["allowBlobPublicAccess"] is False
    assert account["minimumTlsVersion"] == "TLS1_2"
    assert staging["resources"]["container"]["config"]["name"] == "containerName"
    assert _var(main, "stagingContainerName") == "restore-staging"


def test_staging_lifecycle_rule_deletes_staged_blobs_after_n_days(main: dict[str, Any]) -> None:
    policy = _module("staging.bicep")["resources"]["lifecycle"]["config"]["properties"]["policy"]
    (rule,) = policy["rules"]
    assert rule["enabled"] is True
    assert rule["definition"]["actions"]["baseBlob"]["delete"] == {"daysAfterModificationGreaterThan": "retentionDays"}
    assert rule["definition"]["filters"]["prefixMatch"] == ["${containerName}/"]
    assert main["parameters"]["stagingRetentionDays"]["default"] == 7
    assert main["modules"]["staging"]["config"]["config"]["params"]["retentionDays"] == "stagingRetentionDays"


# --- roles -----------------------------------------------------------------------------------------------------------

def test_least_privilege_roles_for_restore_into_a_server() -> None:
    roles = _module("roles.bicep")
    assert _var(roles, "acrPull") == "7f951dda-4ed3-4680-a7ca-43fe172d538d"

    def params(name: str) -> dict[str, Any]:
        return dict(roles["modules"][name]["config"]["config"]["params"])

    service = params("stagingService")
    assert service["roleDefinitionGuid"] == "storageBlobDataContributor" and service["principalIds"] == [
        "appPrincipalId"]
    vaults = params("stagingVaults")
    assert vaults["roleDefinitionGuid"] == "storageBlobDataContributor"
    assert vaults["principalIds"] == "stagingVaultPrincipalIds"
    secrets = params("targetSecretsService")
    assert secrets["roleDefinitionGuid"] == "keyVaultSecretsUser" and secrets["principalIds"] == ["appPrincipalId"]
    loop = roles["modules"]["targetSecretsService"]["config"]["loop_type"]["detail"]
    assert loop["array_name"] == "secretKeyVaultIds"
    pull = roles["resources"]["replayImagePull"]["config"]
    assert pull["scope"] == "registry" and "acrPull" in json.dumps(pull["properties"])
    # queues and tables of the app storage: the identity the job shares already holds exactly these data roles
    assert _var(roles, "storageRoles") == ["storageQueueDataContributor", "storageTableDataContributor",
                                           "storageBlobDataOwner"]


def test_main_passes_staging_containers_vault_principals_and_key_vaults_to_roles(main: dict[str, Any]) -> None:
    params = _module_params(main, "roles")
    assert params["stagingVaultPrincipalIds"] == "stagingVaultPrincipalIds"
    assert params["secretKeyVaultIds"] == "secretKeyVaultIds"
    assert params["registryName"] == "registry.outputs.name"
    assert "stagingAccountNames" in json.dumps(params["stagingContainerIds"])
    assert main["parameters"]["stagingVaultPrincipalIds"]["default"] == []
    assert main["parameters"]["secretKeyVaultIds"]["default"] == []


# --- Container Apps job ----------------------------------------------------------------------------------------------

def test_replay_job_is_event_driven_on_the_replay_queue_with_the_managed_identity(main: dict[str, Any]) -> None:
    aca = _module("container-apps.bicep")
    job = aca["resources"]["job"]
    assert job["type"] == "Microsoft.App/jobs" and job["api_version"] >= "2025-01-01", \
        "scale rule identity needs Microsoft.App 2025-01-01 or later"
    configuration = job["config"]["properties"]["configuration"]
    assert configuration["triggerType"] == "Event"
    (rule,) = configuration["eventTriggerConfig"]["scale"]["rules"]
    assert rule["type"] == "azure-queue" and rule["identity"] == "identityId"
    assert "auth" not in rule, "no connection-string secret: the scaler authenticates with the identity"
    assert rule["metadata"]["accountName"] == "queueAccountName" and rule["metadata"]["queueName"] == "replayQueueName"
    assert rule["metadata"]["queueLength"] == "1"
    assert configuration["registries"] == [{"server": "registryServer", "identity": "identityId"}]
    assert configuration["replicaTimeout"] == "replicaTimeoutSeconds"
    params = _module_params(main, "replayJob")
    assert params["replayQueueName"] == "restoreQueues.RESTORE_QUEUE_REPLAY"
    assert params["queueAccountName"] == "storage.outputs.name"
    assert params["identityId"] == "identity.outputs.id", "one service identity: one PostgreSQL Entra role"
    assert main["parameters"]["replayTimeoutSeconds"]["default"] >= 4 * 3600, "replays take hours"
    for param in ("replayParallelism", "replayRetryLimit", "replayCpu", "replayMemory", "replayMaxExecutions"):
        assert param in main["parameters"]


def test_replay_files_volume_is_optional_and_keyless_in_the_template() -> None:
    aca = _module("container-apps.bicep")
    assert _var(aca, "useFiles") == {"operator": {"type": "not", "operands": {"bool_value": {
        "function": {"type": "empty", "parameters": {"item_to_test": "replayFiles"}}}}}}
    share = aca["resources"]["replayShare"]["config"]
    assert share["condition"] == "useFiles", "the share exists only when replayFiles is given"
    azure_file = share["config"]["properties"]["azureFile"]
    assert "accountKey" not in azure_file and "accountKeyVaultProperties" in azure_file, "the key stays in Key Vault"
    mounts = facts.evaluate("volumeMounts", aca["variables"], {"useFiles": True})
    assert mounts == [{"volumeName": "volumeName", "mountPath": "workdir"}]
    assert facts.evaluate("volumeMounts", aca["variables"], {"useFiles": False}) == []


def test_container_apps_environment_is_keyless_and_optionally_vnet_injected() -> None:
    aca = _module("container-apps.bicep")
    env = aca["resources"]["environment"]["config"]["properties"]
    assert env["appLogsConfiguration"] == {"destination": "azure-monitor"}, "no Log Analytics shared key"
    injected = facts.evaluate(env["vnetConfiguration"], aca["variables"], {"vnetInjected": True})
    assert injected == {"infrastructureSubnetId": "infrastructureSubnetId", "internal": True}
    assert facts.evaluate(env["vnetConfiguration"], aca["variables"], {"vnetInjected": False}) is None
    assert aca["resources"]["environmentLogs"]["config"]["properties"]["workspaceId"] == "workspaceId"


# --- network ---------------------------------------------------------------------------------------------------------

def test_network_integration_is_parameterised_and_off_by_default(main: dict[str, Any]) -> None:
    for param in ("functionSubnetId", "containerAppsSubnetId", "postgresPrivateDnsZoneId", "privateDnsVnetId"):
        assert main["parameters"][param]["default"] == "", f"{param}: default no VNet (public servers)"
    assert _module_params(main, "app")["virtualNetworkSubnetId"] == "functionSubnetId"
    assert _module_params(main, "replayJob")["infrastructureSubnetId"] == "containerAppsSubnetId"
    site = facts.parse(MODULES / "function-app.bicep")
    on = facts.resource_properties(site, "site", {"isFlex": True, "vnetIntegrated": True})
    off = facts.resource_properties(site, "site", {"isFlex": True, "vnetIntegrated": False})
    assert on["virtualNetworkSubnetId"] == "virtualNetworkSubnetId" and off["virtualNetworkSubnetId"] is None
    link = _module("private-dns-link.bicep")["resources"]["link"]["config"]
    assert link["properties"]["registrationEnabled"] is False
    assert link["properties"]["virtualNetwork"] == {"id": "virtualNetworkId"}
    assert main["modules"]["postgresDnsLink"]["config"]["condition"] == "linkPrivateDns"


# --- registry and azd ------------------------------------------------------------------------------------------------

def test_registry_is_keyless() -> None:
    registry = _module("registry.bicep")["resources"]["registry"]["config"]["properties"]
    assert registry["adminUserEnabled"] is False and registry["anonymousPullEnabled"] is False


def test_azd_builds_the_replay_image_onto_the_job(main: dict[str, Any]) -> None:
    azure = yaml.safe_load((facts.ROOT / "azure.yaml").read_text())
    replay = azure["services"]["replay"]
    assert replay["host"] == "containerapp" and replay["docker"]["path"] == "./Dockerfile"
    assert azure["services"]["api"]["host"] == "function"
    assert main["outputs"]["AZURE_CONTAINER_REGISTRY_ENDPOINT"]["value"] == "registry.outputs.loginServer"
    job_tags = json.dumps(_module_params(main, "replayJob")["jobTags"])
    assert "'azd-service-name'" in job_tags and "replay" in job_tags, "azd finds the job by azd-service-name=replay"
    parameters = json.loads((facts.INFRA / "main.parameters.json").read_text())["parameters"]
    assert parameters["replayImage"]["value"] == "${SERVICE_REPLAY_IMAGE_NAME=}", \
        "a re-provision must keep the image azd deployed"


def test_deploy_docs_cover_restore_into_a_server() -> None:
    text = (facts.ROOT / "docs" / "deploy.md").read_text()
    section = text.split("## Restore into a server", 1)[1].split("\n## ", 1)[0]
    for needle in ("AllowCrossTenantReplication", "accessible via a public network", "stagingVaultPrincipalIds",
                   "stagingRetentionDays", "azure-queue", "python -m restore_core.replay",
                   "pgaadauth_create_principal(roleName text, isAdmin boolean, isMfa boolean)",
                   "SELECT * FROM pgaadauth_create_principal(", "CREATEDB", "CREATEROLE", "secretKeyVaultIds",
                   "functionSubnetId", "containerAppsSubnetId", "postgresPrivateDnsZoneId", "Costs to expect"):
        assert needle in section, f"docs/deploy.md \"Restore into a server\" lacks {needle!r}"
