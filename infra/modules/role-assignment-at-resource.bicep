// Helper of roles.bicep (no role ids here): one role for each principal at the narrowest scope named by targetResourceId,
// deployed into the target's resource group (module scope resourceGroup(sub, rg) parsed from the id in roles.bicep).
// Supported targets: a resource group, a Backup vault, a PostgreSQL flexible or single server, a Key Vault, a blob container.
@description('Principal (object) ids that get the role.')
param principalIds array
@description('GUID of the role definition (built-in or custom).')
param roleDefinitionGuid string
param targetResourceId string
@allowed(['ServicePrincipal', 'User', 'Group'])
param principalType string = 'ServicePrincipal'
param description string
@description('Optional ABAC condition (version 2.0) of the assignment; blob containers only. Empty: none.')
param condition string = ''

var parts = split(targetResourceId, '/')
var isResourceGroup = length(parts) == 5
var resourceType = isResourceGroup ? '' : toLower('${parts[6]}/${parts[7]}')
var isContainer = !isResourceGroup && length(parts) == 13 && toLower(parts[11]) == 'containers'
var isVault = !isContainer && resourceType == 'microsoft.dataprotection/backupvaults'
var isFlexibleServer = !isContainer && resourceType == 'microsoft.dbforpostgresql/flexibleservers'
var isSingleServer = !isContainer && resourceType == 'microsoft.dbforpostgresql/servers'
var isKeyVault = !isContainer && resourceType == 'microsoft.keyvault/vaults'
var resourceName = isResourceGroup ? '' : parts[8]
var roleDefinitionId = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionGuid)

resource rgAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for principalId in principalIds: if (isResourceGroup) {
  name: guid(targetResourceId, principalId, roleDefinitionGuid)
  properties: {
    principalId: principalId
    principalType: principalType
    roleDefinitionId: roleDefinitionId
    description: description
  }
}]

resource vault 'Microsoft.DataProtection/backupVaults@2024-04-01' existing = if (isVault) {
  name: resourceName
}

resource vaultAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for principalId in principalIds: if (isVault) {
  name: guid(targetResourceId, principalId, roleDefinitionGuid)
  scope: vault
  properties: {
    principalId: principalId
    principalType: principalType
    roleDefinitionId: roleDefinitionId
    description: description
  }
}]

resource flexibleServer 'Microsoft.DBforPostgreSQL/flexibleServers@2022-12-01' existing = if (isFlexibleServer) {
  name: resourceName
}

resource flexibleServerAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for principalId in principalIds: if (isFlexibleServer) {
  name: guid(targetResourceId, principalId, roleDefinitionGuid)
  scope: flexibleServer
  properties: {
    principalId: principalId
    principalType: principalType
    roleDefinitionId: roleDefinitionId
    description: description
  }
}]

resource singleServer 'Microsoft.DBforPostgreSQL/servers@2017-12-01' existing = if (isSingleServer) {
  name: resourceName
}

resource singleServerAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for principalId in principalIds: if (isSingleServer) {
  name: guid(targetResourceId, principalId, roleDefinitionGuid)
  scope: singleServer
  properties: {
    principalId: principalId
    principalType: principalType
    roleDefinitionId: roleDefinitionId
    description: description
  }
}]

resource keyVault 'Microsoft.KeyVault/vaults@2023-07-01' existing = if (isKeyVault) {
  name: resourceName
}

resource keyVaultAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for principalId in principalIds: if (isKeyVault) {
  name: guid(targetResourceId, principalId, roleDefinitionGuid)
  scope: keyVault
  properties: {
    principalId: principalId
    principalType: principalType
    roleDefinitionId: roleDefinitionId
    description: description
  }
}]

// .../storageAccounts/{account}/blobServices/default/containers/{container}
resource container 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = if (isContainer) {
  name: isContainer ? '${parts[8]}/${parts[10]}/${parts[12]}' : 'unused/default/unused'
}

resource containerAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for principalId in principalIds: if (isContainer) {
  name: guid(targetResourceId, principalId, roleDefinitionGuid)
  scope: container
  properties: {
    principalId: principalId
    principalType: principalType
    roleDefinitionId: roleDefinitionId
    description: description
    condition: empty(condition) ? null : condition
    conditionVersion: empty(condition) ? null : '2.0'
  }
}]
