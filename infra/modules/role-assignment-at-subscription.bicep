// Helper of roles.bicep (no role ids here): one role assignment at subscription scope.
targetScope = 'subscription'

param principalId string
param roleDefinitionGuid string
param description string

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, principalId, roleDefinitionGuid)
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionGuid)
    description: description
  }
}
