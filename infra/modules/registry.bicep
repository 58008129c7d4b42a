// Azure Container Registry for the replay job image (built from ./Dockerfile by `azd deploy`, service replay).
// Keyless: no admin user, no anonymous pull; the job pulls with the service identity (AcrPull, roles.bicep) and azd
// pushes with the deploying user's Entra ID token.
param name string
param location string
param tags object
@allowed(['Basic', 'Standard', 'Premium'])
param sku string

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: sku
  }
  properties: {
    adminUserEnabled: false
    anonymousPullEnabled: false
    publicNetworkAccess: 'Enabled'
    zoneRedundancy: 'Disabled'
  }
}

output name string = registry.name
output id string = registry.id
output loginServer string = registry.properties.loginServer
