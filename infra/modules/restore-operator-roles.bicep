// Custom role DEFINITIONS for the app identity on Backup vaults (the assignments are all in roles.bicep).
// Why custom: no built-in role is both sufficient and narrow. Backup Operator (00c29273-979b-4161-815c-10b084fb9324) and
// Backup Contributor (5e467623-bb1f-42f4-a55d-6e525e11384b) list no Microsoft.DataProtection/backupVaults/backupJobs/read
// (the monitor stage reads jobs), and they add what a restorer must not have: backup/action, validateForBackup,
// Recovery Services vault rights, Microsoft.Resources/deployments/*, Microsoft.Support/*; Backup Contributor even deletes
// backup instances and writes policies. So we define exactly the actions the app calls (dataprotection-api.md §2).
targetScope = 'subscription'

param environmentName string
@description('Vault ARM ids: their subscriptions become assignable scopes of the custom roles.')
param backupVaultIds array

var vaultSubscriptionScopes = [for id in backupVaultIds: '/subscriptions/${split(id, '/')[2]}']
var assignableScopes = union([subscription().id], vaultSubscriptionScopes)

// Assigned on each listed vault: read the vault, its backup instances, recovery points and jobs; validate, rehydrate and
// trigger restores; read the vault-scoped LRO results.
resource vaultOperator 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, 'pg-restore-vault-operator', environmentName)
  properties: {
    roleName: 'PostgreSQL restore orchestrator - vault operator (${environmentName})'
    description: 'Read vault, backup instances, recovery points and jobs; validate, rehydrate and trigger restores. No backup, delete or policy rights.'
    type: 'CustomRole'
    assignableScopes: assignableScopes
    permissions: [
      {
        actions: [
          'Microsoft.DataProtection/backupVaults/read'
          'Microsoft.DataProtection/backupVaults/operationResults/read'
          'Microsoft.DataProtection/backupVaults/operationStatus/read'
          'Microsoft.DataProtection/backupVaults/backupInstances/read'
          'Microsoft.DataProtection/backupVaults/backupInstances/operationResults/read'
          'Microsoft.DataProtection/backupVaults/backupInstances/recoveryPoints/read'
          'Microsoft.DataProtection/backupVaults/backupInstances/findRestorableTimeRanges/action'
          'Microsoft.DataProtection/backupVaults/backupInstances/validateRestore/action'
          'Microsoft.DataProtection/backupVaults/backupInstances/restore/action'
          // UNCONFIRMED action name: not in the published operations list we could check; POST .../rehydrate needs it.
          'Microsoft.DataProtection/backupVaults/backupInstances/rehydrate/action'
          'Microsoft.DataProtection/backupVaults/backupJobs/read'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
  }
}

// Assigned on each vault's resource group: the Cross Region Restore calls are resource-group-scoped POSTs
// (.../resourceGroups/{vaultRg}/providers/Microsoft.DataProtection/locations/{region}/...).
resource crossRegion 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, 'pg-restore-cross-region', environmentName)
  properties: {
    roleName: 'PostgreSQL restore orchestrator - cross region restore (${environmentName})'
    description: 'Cross Region Restore calls of Backup vaults: secondary recovery points, validate, trigger, read CRR jobs.'
    type: 'CustomRole'
    assignableScopes: assignableScopes
    permissions: [
      {
        actions: [
          'Microsoft.DataProtection/subscriptions/resourceGroups/providers/locations/fetchSecondaryRecoveryPoints/action'
          'Microsoft.DataProtection/subscriptions/resourceGroups/providers/locations/validateCrossRegionRestore/action'
          'Microsoft.DataProtection/subscriptions/resourceGroups/providers/locations/crossRegionRestore/action'
          'Microsoft.DataProtection/subscriptions/resourceGroups/providers/locations/fetchCrossRegionRestoreJob/action'
          'Microsoft.DataProtection/subscriptions/resourceGroups/providers/locations/fetchCrossRegionRestoreJobs/action'
          'Microsoft.DataProtection/subscriptions/resourceGroups/providers/operationStatus/read'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
  }
}

// Assigned on each vault's subscription: the LRO polling URLs are subscription-scoped
// (/subscriptions/{sub}/providers/Microsoft.DataProtection/locations/{region}/operationStatus|operationResults/{id}).
// Read-only on operation status documents; grants nothing on vaults or data.
resource operationStatus 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, 'pg-restore-operation-status', environmentName)
  properties: {
    roleName: 'PostgreSQL restore orchestrator - operation status reader (${environmentName})'
    description: 'Read Data Protection long-running operation status and results.'
    type: 'CustomRole'
    assignableScopes: assignableScopes
    permissions: [
      {
        actions: [
          'Microsoft.DataProtection/locations/operationStatus/read'
          'Microsoft.DataProtection/locations/operationResults/read'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
  }
}

output vaultOperatorRoleGuid string = vaultOperator.name
output crossRegionRoleGuid string = crossRegion.name
output operationStatusRoleGuid string = operationStatus.name
