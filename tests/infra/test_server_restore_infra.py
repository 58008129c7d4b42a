"""Infra of "restore into a server" (issue 12), offline on the parsed templates: stage queues, settings shared by the
Function App and the replay job (same names, the job's own identity values), staging accounts per vault region and
pair, the event-driven Container Apps job with identity-based azure-queue scale rules on every job stage queue, the
job's own identity and its least-privilege roles, registry and azd wiring, network parameters.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from restore_core import config
from restore_core.plans import counts_blob, objects_blob
from restore_core.regions import PAIRED_REGIONS
from restore_core.stages import registry
from restore_core.staging import plan_blob
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
    # the job: the same names, built on restoreSettings; only its identity values differ (next test)
    assert _module_params(main, "replayJob")["settings"] == "replayJobSettings"
    job_args = _var(main, "replayJobSettings")["function"]["parameters"]
    assert job_args["arg_1"] == "restoreSettings", "replayJobSettings must be union(restoreSettings, identity values)"
    assert facts.app_setting_names(main, "replayJobSettings") == restore, "the job must get exactly the same names"
    job = _module("container-apps.bicep")["resources"]["job"]["config"]["properties"]
    env = job["template"]["containers"][0]["env"]
    assert env["loop_type"]["detail"]["object_name"] == "settings", "the job environment must be built from settings"
    assert env["config"] == {"name": "setting.key", "value": "setting.value"}


def test_replay_job_settings_carry_the_job_identity_and_the_app_names_it(main: dict[str, Any]) -> None:
    app = facts.app_settings(main, "restoreSettings")
    job = facts.app_settings(main, "replayJobSettings")
    differing = {name for name in app if app[name] != job[name]}
    assert differing == {"RestoreStorage__clientId", "AZURE_CLIENT_ID", "RESTORE_ENTRA_USER"}, \
        "the job's settings differ from the app's exactly in its identity"
    assert job["RestoreStorage__clientId"] == job["AZURE_CLIENT_ID"] == "replayIdentity.outputs.clientId"
    assert job["RESTORE_ENTRA_USER"] == "replayIdentityName"
    assert app["RestoreStorage__clientId"] == app["AZURE_CLIENT_ID"] == "identity.outputs.clientId"
    assert app["RESTORE_ENTRA_USER"] == "identityName"
    # validation (the app) checks the job's PostgreSQL role by name; the job gets the same value
    assert app["RESTORE_REPLAY_ENTRA_USER"] == job["RESTORE_REPLAY_ENTRA_USER"] == "replayIdentityName"
    platform = facts.app_settings(main)
    assert platform["AzureWebJobsStorage__clientId"] == "identity.outputs.clientId"
    assert platform["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == \
        "ClientId=${identity.outputs.clientId};Authorization=AAD"
    assert main["outputs"]["RESTORE_REPLAY_ENTRA_USER"]["value"] == "replayIdentityName"
    assert main["outputs"]["RESTORE_ENTRA_USER"]["value"] == "identityName"


def test_replay_job_has_its_own_identity(main: dict[str, Any]) -> None:
    assert _var(main, "identityName") == "id-restore-${resourceToken}"
    assert _var(main, "replayIdentityName") == "id-replay-${resourceToken}"
    assert main["modules"]["replayIdentity"]["detail"]["path"] == "modules/identity.bicep"
    assert _module_params(main, "replayIdentity")["name"] == "replayIdentityName"
    assert _module_params(main, "identity")["name"] == "identityName"
    assert _module_params(main, "replayJob")["identityId"] == "replayIdentity.outputs.id"
    assert _module_params(main, "app")["identityId"] == "identity.outputs.id"
    roles = _module_params(main, "roles")
    assert roles["appPrincipalId"] == "identity.outputs.principalId"
    assert roles["replayPrincipalId"] == "replayIdentity.outputs.principalId"
    for name in ("REPLAY_IDENTITY_PRINCIPAL_ID", "REPLAY_IDENTITY_CLIENT_ID"):
        assert main["outputs"][name]["value"].startswith("replayIdentity.outputs."), name


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
                 "RESTORE_REPLAY_LEASE_SECONDS", "RESTORE_VERIFY_COUNT_BUDGET_MB", "RESTORE_DATABASE_SUFFIX",
                 "RESTORE_REPLAY_DISK_BUDGET_MB"):
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

#: Built-in role ids (learn.microsoft.com "Azure built-in roles") of every role variable the checks below name.
BUILT_IN = {
    "storageQueueDataContributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "storageTableDataContributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "storageBlobDataOwner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "storageBlobDataContributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "storageBlobDataReader": "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
    "monitoringMetricsPublisher": "3913510d-42f4-4e42-8a64-420c390055eb",
    "keyVaultSecretsUser": "4633458b-17de-408a-b874-0445c86b69e6",
    "acrPull": "7f951dda-4ed3-4680-a7ca-43fe172d538d",
}
VAULT_ROLES = {"vaultOperatorRoleGuid", "crossRegionRoleGuid", "operationStatusRoleGuid"}


@pytest.fixture(scope="module")
def grants() -> list[dict[str, Any]]:
    return facts.role_grants(_module("roles.bicep"))


def _of(grants: list[dict[str, Any]], principal: str) -> set[tuple[str, str, bool]]:
    return {(g["role"], g["scope"] if isinstance(g["scope"], str) else json.dumps(g["scope"]), bool(g["condition"]))
            for g in grants if g["principal"] == principal}


def test_role_variables_are_the_built_in_role_ids() -> None:
    roles = _module("roles.bicep")
    for name, guid in BUILT_IN.items():
        assert _var(roles, name) == guid, f"{name} is not the built-in role's id"


def test_replay_job_identity_gets_exactly_its_roles(grants: list[dict[str, Any]]) -> None:
    assert _of(grants, "replayPrincipalId") == {
        ("storageQueueDataContributor", "storageAccount", False),   # stage messages (and the scale rules' peek)
        ("storageTableDataContributor", "storageAccount", False),   # restore rows
        ("storageBlobDataContributor", "stagingContainerIds", False),  # download, and (verify) delete staged files
        ("acrPull", "registry", False),                             # its image
        ("keyVaultSecretsUser", "secretKeyVaultIds", False),        # auth kind secret, the replay share key
        ("monitoringMetricsPublisher", "appInsights", False),       # telemetry with Entra auth
    }


def test_replay_job_identity_gets_nothing_on_the_backup_vaults(grants: list[dict[str, Any]]) -> None:
    replay = [g for g in grants if g["principal"] == "replayPrincipalId"]
    assert replay, "no grant for the replay identity found: the extractor or roles.bicep changed"
    assert not [g for g in replay if g["role"] in VAULT_ROLES], "the job makes no ARM call: no vault role"
    assert not [g for g in replay if json.dumps(g["scope"]).count("backupVaultIds") or "vaultId" in json.dumps(
        g["scope"])], "no grant of the job identity at a vault's scope"
    # and the app still holds them (the Function App drives the vault restores)
    app_roles = {g["role"] for g in grants if g["principal"] == "appPrincipalId"}
    assert VAULT_ROLES <= app_roles


def test_function_app_identity_keeps_its_roles_and_only_reads_staged_files(grants: list[dict[str, Any]]) -> None:
    app = _of(grants, "appPrincipalId")
    staging = {(role, conditioned) for role, scope, conditioned in app if scope == "stagingContainerIds"}
    assert staging == {("storageBlobDataReader", False), ("storageBlobDataContributor", True)}, \
        "on staging the app reads (Reader); its only write is the replay plan, by condition"
    assert ("acrPull", "registry", False) not in app, "the app pulls no image: AcrPull is the job's"
    for kept in (("storageQueueDataContributor", "storageAccount", False),
                 ("storageTableDataContributor", "storageAccount", False),
                 ("storageBlobDataOwner", "storageAccount", False),
                 ("monitoringMetricsPublisher", "appInsights", False),
                 ("keyVaultSecretsUser", "secretKeyVaultIds", False)):
        assert kept in app, f"the app lost {kept}"


def test_app_staging_write_is_limited_to_replay_plans(grants: list[dict[str, Any]]) -> None:
    roles = _module("roles.bicep")
    (plans,) = [g for g in grants if g["principal"] == "appPrincipalId" and g["condition"]]
    assert plans["condition"] == "stagingPlanCondition"
    condition = " ".join(_var(roles, "stagingPlanCondition").split())
    prefix = plan_blob("x").rsplit("/", 1)[0] + "/"
    assert prefix == "_plans/", "the code's plan blob moved: update stagingPlanCondition"
    for name in (objects_blob("x", 0), counts_blob("x", 3)):  # every blob of the plan (restore_core/plans.py)
        assert name.startswith(prefix), f"{name} is outside the condition's path: update stagingPlanCondition"
    for action in ("blobs/write", "blobs/add/action", "blobs/delete", "blobs/move/action"):
        assert f"!(ActionMatches{{'Microsoft.Storage/storageAccounts/blobServices/containers/{action}'}})" \
            in condition, f"{action} is not limited by the condition"
    assert condition.endswith("OR ( @Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:path] "
                              f"StringLike '{prefix}*' ) )")
    assert condition.count("OR") == 1, "one escape only: the plan path"
    helper = _module("role-assignment-at-resource.bicep")
    props = helper["resources"]["containerAssignment"]["config"]["config"]["properties"]
    assert props["condition"]["operator"]["operands"]["false_value"] == "condition"
    assert props["conditionVersion"]["operator"]["operands"]["false_value"] == "2.0"


def test_role_grant_extractor_reads_loops_modules_and_conditions(tmp_path: Any) -> None:
    parsed = facts.parse_text(
        "param p string\nparam ids array\nvar a = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'\n"
        "var b = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'\nvar both = [\n  a\n  b\n]\n"
        "resource st 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {\n  name: 'x'\n}\n"
        "resource r 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for g in both: {\n"
        "  name: guid(st.id, p, g)\n  scope: st\n  properties: {\n    principalId: p\n"
        "    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', g)\n  }\n}]\n"
        "module m 'helper.bicep' = [for (id, i) in ids: {\n  name: 'm-${i}'\n  params: {\n"
        "    principalIds: [\n      p\n    ]\n    roleDefinitionGuid: b\n    targetResourceId: id\n"
        "    condition: 'c'\n  }\n}]\n", tmp_path)
    assert _of(facts.role_grants(parsed), "p") == {("a", "st", False), ("b", "st", False), ("b", "ids", True)}


def test_main_passes_staging_containers_vault_principals_and_key_vaults_to_roles(main: dict[str, Any]) -> None:
    params = _module_params(main, "roles")
    assert params["stagingVaultPrincipalIds"] == "stagingVaultPrincipalIds"
    assert params["secretKeyVaultIds"] == "secretKeyVaultIds"
    assert params["registryName"] == "registry.outputs.name"
    assert "stagingAccountNames" in json.dumps(params["stagingContainerIds"])
    assert main["parameters"]["stagingVaultPrincipalIds"]["default"] == []
    assert main["parameters"]["secretKeyVaultIds"]["default"] == []


# --- Container Apps job ----------------------------------------------------------------------------------------------

def test_replay_job_is_event_driven_on_every_job_queue_with_its_identity(main: dict[str, Any]) -> None:
    aca = _module("container-apps.bicep")
    job = aca["resources"]["job"]
    assert job["type"] == "Microsoft.App/jobs" and job["api_version"] >= "2025-01-01", \
        "scale rule identity needs Microsoft.App 2025-01-01 or later"
    configuration = job["config"]["properties"]["configuration"]
    assert configuration["triggerType"] == "Event"
    rules = configuration["eventTriggerConfig"]["scale"]["rules"]
    assert rules["loop_type"]["detail"] == {"item_name": "queueName", "array_name": "jobQueueNames"}, \
        "one scale rule per job queue"
    rule = rules["config"]
    assert rule["name"] == "queueName"
    assert rule["type"] == "azure-queue" and rule["identity"] == "identityId"
    assert "auth" not in rule, "no connection-string secret: the scaler authenticates with the identity"
    assert rule["metadata"]["accountName"] == "queueAccountName" and rule["metadata"]["queueName"] == "queueName"
    assert rule["metadata"]["queueLength"] == "1" and rule["metadata"]["queueLengthStrategy"] == "visibleonly"
    assert configuration["registries"] == [{"server": "registryServer", "identity": "identityId"}]
    assert configuration["replicaTimeout"] == "replicaTimeoutSeconds"
    assert job["config"]["identity"]["userAssignedIdentities"] == {"'${identityId}'": {}}
    environment = aca["resources"]["environment"]["config"]["identity"]["userAssignedIdentities"]
    assert environment == {"'${identityId}'": {}}, "the environment reads the share key with the job identity"
    params = _module_params(main, "replayJob")
    queues = [f"restoreQueues.{spec.queue_setting}" for spec in registry.JOB_STAGES]
    assert queues == ["restoreQueues.RESTORE_QUEUE_REPLAY", "restoreQueues.RESTORE_QUEUE_VERIFY"]
    assert params["jobQueueNames"] == queues, "a scale rule for each stage the job consumes, and no other"
    assert params["queueAccountName"] == "storage.outputs.name"
    assert params["identityId"] == "replayIdentity.outputs.id", "the job runs as its own identity"
    assert main["parameters"]["replayTimeoutSeconds"]["default"] >= 4 * 3600, "replays take hours"
    # an execution takes another message only while half its budget is left (replay.time_for_another): the budget,
    # which is the replica timeout, is twice the longest replay, so a message taken late still gets that long
    assert params["replicaTimeoutSeconds"] == "replayExecutionSeconds"
    text = facts.MAIN_BICEP.read_text()
    assert "var replayExecutionSeconds = 2 * replayTimeoutSeconds" in text
    assert "RESTORE_REPLAY_EXECUTION_SECONDS: string(replayExecutionSeconds)" in text
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
                   "SELECT * FROM pgaadauth_create_principal('id-replay-<token>', false, false);",
                   "ALTER ROLE \"id-replay-<token>\" CREATEDB;", "ALTER ROLE \"id-replay-<token>\" CREATEROLE;",
                   "SELECT * FROM pgaadauth_create_principal('id-restore-<token>', false, false);",
                   "RESTORE_REPLAY_ENTRA_USER", "restore-verify", "CREATEDB", "CREATEROLE", "secretKeyVaultIds",
                   "functionSubnetId", "containerAppsSubnetId", "postgresPrivateDnsZoneId", "Costs to expect"):
        assert needle in section, f"docs/deploy.md \"Restore into a server\" lacks {needle!r}"
    assert 'ALTER ROLE "id-restore-<token>"' not in section, "the Function App identity's login needs no privilege"
    assert "same user-assigned identity as the Function App" not in section
