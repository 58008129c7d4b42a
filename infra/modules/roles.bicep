// ALL role assignments of the deployment, and every built-in role id it uses (one named variable + comment each).
// Cross-scope assignments go through two id-free helpers: role-assignment-at-resource.bicep (deployed into the target's
// resource group via resourceGroup(sub, rg) parsed from the ARM id) and role-assignment-at-subscription.bicep.
// The three custom Data Protection roles are defined in restore-operator-roles.bicep (why custom: see there).

@description('Principal (object) id of the app user-assigned identity.')
param appPrincipalId string
@description('Principal (object) id of the replay job\'s own user-assigned identity (replay and verify stages).')
param replayPrincipalId string
param storageAccountName string
param appInsightsName string
@description('ARM ids of the Backup vaults the app restores from.')
param backupVaultIds array
param vaultOperatorRoleGuid string
param crossRegionRoleGuid string
param operationStatusRoleGuid string
@description('Optional grants for the VAULT identities on restore targets: {enabled, vaultPrincipalIds, targetServerIds, keyVaultIds, targetContainerIds}.')
param restoreTargetAccess object
@description('ARM ids of the staging containers (restore into a server: one per region vaults restore into).')
param stagingContainerIds array
@description('Principal (object) ids of the Backup vault identities that restore as files into the staging containers.')
param stagingVaultPrincipalIds array
@description('Registry holding the replay job image (same resource group).')
param registryName string
@description('Key Vaults holding target connection-string secrets (request auth kind "secret"): both identities read them.')
param secretKeyVaultIds array

// --- built-in role definition ids (https://learn.microsoft.com/azure/role-based-access-control/built-in-roles)
// Storage Queue Data Contributor: read/add/update/delete queue messages (stage queues, RestoreStorage + host; the job
// receives, hides, deletes and sends stage messages, and its KEDA scale rules read the queue lengths).
var storageQueueDataContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
// Storage Table Data Contributor: state rows, timeline, idempotency index (the app; the job reads/writes restore rows).
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
// Storage Blob Data Owner: AzureWebJobsStorage (host locks, timer state) and the Flex deployment container need it.
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
// Monitoring Metrics Publisher: send telemetry to Application Insights with local auth disabled (Entra ID ingestion;
// the app and the job).
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'
// Reader: the vault identity reads the target PostgreSQL server (restore as database).
var reader = 'acdd72a7-3385-48ef-bd42-f606fba81ae7'
// Key Vault Secrets User: the vault identity reads the target connection-string secret (restore as database); the app
// identity (validation) and the job identity (replay, verify; the optional replay share key) read the target
// connection-string secrets of restores into a server (auth kind "secret").
var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'
// Storage Blob Data Contributor: the vault identity writes dump files into the target container (restore as files) and
// into the staging containers; the job identity reads and (verify) deletes the staged files (narrowest role with delete).
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
// Storage Blob Data Reader: the app identity lists and reads the staged files (inventory); it deletes none.
var storageBlobDataReader = '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
// AcrPull: the replay job (its own identity) pulls its image from the registry.
var acrPull = '7f951dda-4ed3-4680-a7ca-43fe172d538d'

resource storageAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' existing = {
  name: registryName
}

var storageRoles = [
  storageQueueDataContributor
  storageTableDataContributor
  storageBlobDataOwner
]

resource appStorage 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for roleGuid in storageRoles: {
  name: guid(storageAccount.id, appPrincipalId, roleGuid)
  scope: storageAccount
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleGuid)
    description: 'restore orchestrator: own storage (queues, tables, host blobs, deployment package)'
  }
}]

resource appTelemetry 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, appPrincipalId, monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    description: 'restore orchestrator: Entra ID telemetry ingestion'
  }
}

// --- The replay job's identity: exactly its data-plane needs. No Backup vault role: the job makes no ARM call.
// Queues and tables of the app storage (no blob role there: the job has no blob in the app account).
var replayStorageRoles = [
  storageQueueDataContributor
  storageTableDataContributor
]

resource replayStorage 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for roleGuid in replayStorageRoles: {
  name: guid(storageAccount.id, replayPrincipalId, roleGuid)
  scope: storageAccount
  properties: {
    principalId: replayPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleGuid)
    description: 'restore replay job: stage messages and restore rows'
  }
}]

resource replayTelemetry 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, replayPrincipalId, monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    principalId: replayPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    description: 'restore replay job: Entra ID telemetry ingestion'
  }
}

// --- Data Protection rights of the app identity (custom roles from restore-operator-roles.bicep)
module vaultOperator 'role-assignment-at-resource.bicep' = [for (vaultId, i) in backupVaultIds: {
  name: 'vault-operator-${i}'
  scope: resourceGroup(split(vaultId, '/')[2], split(vaultId, '/')[4])
  params: {
    principalIds: [
      appPrincipalId
    ]
    roleDefinitionGuid: vaultOperatorRoleGuid
    targetResourceId: vaultId
    description: 'restore orchestrator: read and restore from this vault'
  }
}]

module crossRegion 'role-assignment-at-resource.bicep' = [for (vaultId, i) in backupVaultIds: {
  name: 'vault-cross-region-${i}'
  scope: resourceGroup(split(vaultId, '/')[2], split(vaultId, '/')[4])
  params: {
    principalIds: [
      appPrincipalId
    ]
    roleDefinitionGuid: crossRegionRoleGuid
    targetResourceId: '/subscriptions/${split(vaultId, '/')[2]}/resourceGroups/${split(vaultId, '/')[4]}'
    description: 'restore orchestrator: Cross Region Restore calls of the vaults in this resource group'
  }
}]

var vaultSubscriptionIdsAll = [for vaultId in backupVaultIds: split(vaultId, '/')[2]]
var vaultSubscriptionIds = union(vaultSubscriptionIdsAll, [])

module operationStatus 'role-assignment-at-subscription.bicep' = [for (subId, i) in vaultSubscriptionIds: {
  name: 'operation-status-${i}'
  scope: subscription(subId)
  params: {
    principalId: appPrincipalId
    roleDefinitionGuid: operationStatusRoleGuid
    description: 'restore orchestrator: poll Data Protection long-running operations'
  }
}]

// --- Optional: restore-target permissions of the VAULT identities (what design.md says must otherwise be granted by hand)
var targetsEnabled = contains(restoreTargetAccess, 'enabled') && restoreTargetAccess.enabled
var vaultPrincipals = targetsEnabled ? restoreTargetAccess.vaultPrincipalIds : []
var targetServers = targetsEnabled && contains(restoreTargetAccess, 'targetServerIds') ? restoreTargetAccess.targetServerIds : []
var targetKeyVaults = targetsEnabled && contains(restoreTargetAccess, 'keyVaultIds') ? restoreTargetAccess.keyVaultIds : []
var targetContainers = targetsEnabled && contains(restoreTargetAccess, 'targetContainerIds') ? restoreTargetAccess.targetContainerIds : []

module targetServerReader 'role-assignment-at-resource.bicep' = [for (targetId, i) in targetServers: {
  name: 'target-server-${i}'
  scope: resourceGroup(split(targetId, '/')[2], split(targetId, '/')[4])
  params: {
    principalIds: vaultPrincipals
    roleDefinitionGuid: reader
    targetResourceId: targetId
    description: 'Backup vault identity: read the restore target server'
  }
}]

module targetSecretsUser 'role-assignment-at-resource.bicep' = [for (targetId, i) in targetKeyVaults: {
  name: 'target-keyvault-${i}'
  scope: resourceGroup(split(targetId, '/')[2], split(targetId, '/')[4])
  params: {
    principalIds: vaultPrincipals
    roleDefinitionGuid: keyVaultSecretsUser
    targetResourceId: targetId
    description: 'Backup vault identity: read the target connection-string secret'
  }
}]

module targetContainerWriter 'role-assignment-at-resource.bicep' = [for (targetId, i) in targetContainers: {
  name: 'target-container-${i}'
  scope: resourceGroup(split(targetId, '/')[2], split(targetId, '/')[4])
  params: {
    principalIds: vaultPrincipals
    roleDefinitionGuid: storageBlobDataContributor
    targetResourceId: targetId
    description: 'Backup vault identity: write restored dump files into the target container'
  }
}]

// --- Restore into a server (docs/deploy.md "Restore into a server")
// The Function App (inventory) lists and reads staged blobs; it deletes none: Storage Blob Data Reader.
// Inventory also writes the replay plan _plans/<id>.json and _plans/<id>.<n>.objects.jsonl (restore_core/plans.py;
// the replay job writes _plans/<id>.<n>.counts.jsonl under its own role on the containers, above): Storage Blob Data
// Contributor with an ABAC condition that allows no write, create, delete or move outside _plans/ (the staged dumps
// stay read-only for the app). Condition format: learn.microsoft.com role-based-access-control/conditions-format and
// storage/blobs/storage-auth-abac-attributes ("Blob path" is a resource attribute of these four data actions).
var stagingPlanCondition = '''(
 (
  !(ActionMatches{'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write'})
  AND
  !(ActionMatches{'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/add/action'})
  AND
  !(ActionMatches{'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete'})
  AND
  !(ActionMatches{'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/move/action'})
 )
 OR
 (
  @Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:path] StringLike '_plans/*'
 )
)'''

module stagingService 'role-assignment-at-resource.bicep' = [for (containerId, i) in stagingContainerIds: {
  name: 'staging-service-${i}'
  scope: resourceGroup(split(containerId, '/')[2], split(containerId, '/')[4])
  params: {
    principalIds: [
      appPrincipalId
    ]
    roleDefinitionGuid: storageBlobDataReader
    targetResourceId: containerId
    description: 'restore orchestrator: list and read staged restore files (inventory)'
  }
}]

module stagingPlans 'role-assignment-at-resource.bicep' = [for (containerId, i) in stagingContainerIds: {
  name: 'staging-plans-${i}'
  scope: resourceGroup(split(containerId, '/')[2], split(containerId, '/')[4])
  params: {
    principalIds: [
      appPrincipalId
    ]
    roleDefinitionGuid: storageBlobDataContributor
    targetResourceId: containerId
    description: 'restore orchestrator: write replay plans (_plans/ only, by condition)'
    condition: stagingPlanCondition
  }
}]

// The replay job downloads staged files (replay, verify's row counts) and deletes them after a success (verify).
// Storage Blob Data Contributor is the narrowest built-in role with blob delete.
module stagingReplay 'role-assignment-at-resource.bicep' = [for (containerId, i) in stagingContainerIds: {
  name: 'staging-replay-${i}'
  scope: resourceGroup(split(containerId, '/')[2], split(containerId, '/')[4])
  params: {
    principalIds: [
      replayPrincipalId
    ]
    roleDefinitionGuid: storageBlobDataContributor
    targetResourceId: containerId
    description: 'restore replay job: read and delete staged restore files'
  }
}]

// The Backup vault identities write the restored files (Azure Backup: Storage Blob Data Contributor on the target).
module stagingVaults 'role-assignment-at-resource.bicep' = [for (containerId, i) in stagingContainerIds: if (!empty(stagingVaultPrincipalIds)) {
  name: 'staging-vaults-${i}'
  scope: resourceGroup(split(containerId, '/')[2], split(containerId, '/')[4])
  params: {
    principalIds: stagingVaultPrincipalIds
    roleDefinitionGuid: storageBlobDataContributor
    targetResourceId: containerId
    description: 'Backup vault identity: restore files into the staging container'
  }
}]

resource replayImagePull 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registry.id, replayPrincipalId, acrPull)
  scope: registry
  properties: {
    principalId: replayPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', acrPull)
    description: 'restore replay job: pull its image'
  }
}

// Only where secrets are used: the Key Vaults named for target auth kind "secret" (and the optional replay share key).
// The app reads the secret to validate the target; the job to replay and verify (and its environment, the share key).
module targetSecretsService 'role-assignment-at-resource.bicep' = [for (keyVaultId, i) in secretKeyVaultIds: {
  name: 'secret-keyvault-${i}'
  scope: resourceGroup(split(keyVaultId, '/')[2], split(keyVaultId, '/')[4])
  params: {
    principalIds: [
      appPrincipalId
    ]
    roleDefinitionGuid: keyVaultSecretsUser
    targetResourceId: keyVaultId
    description: 'restore orchestrator: read target connection-string secrets'
  }
}]

module targetSecretsReplay 'role-assignment-at-resource.bicep' = [for (keyVaultId, i) in secretKeyVaultIds: {
  name: 'secret-keyvault-replay-${i}'
  scope: resourceGroup(split(keyVaultId, '/')[2], split(keyVaultId, '/')[4])
  params: {
    principalIds: [
      replayPrincipalId
    ]
    roleDefinitionGuid: keyVaultSecretsUser
    targetResourceId: keyVaultId
    description: 'restore replay job: read target connection-string secrets (and the replay share key)'
  }
}]
