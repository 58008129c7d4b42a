// Links an EXISTING private DNS zone (e.g. privatelink.postgres.database.azure.com, where the private endpoints of the
// target Flexible Servers register) to the VNet the Function App and the Container Apps environment use, so the
// service resolves private servers. Deployed into the zone's resource group (main.bicep parses the zone id).
param zoneName string
@description('Resource id of the virtual network to link.')
param virtualNetworkId string
param tags object

resource zone 'Microsoft.Network/privateDnsZones@2020-06-01' existing = {
  name: zoneName
}

resource link 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = {
  parent: zone
  name: 'link-restore-${uniqueString(virtualNetworkId)}'
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: virtualNetworkId
    }
  }
}

output linkId string = link.id
