// A user-assigned managed identity: main.bicep creates two, the Function App's (id-restore-*: storage, App Insights,
// ARM) and the replay job's (id-replay-*: storage data, staging blobs, registry, Key Vault, PostgreSQL; no ARM).
param name string
param location string
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
