// One staging storage account for ONE region that Backup vaults restore into (restore as files for the server target).
// main.bicep deploys it for the vault region and, for Cross Region Restore, its paired region. Azure Backup documents
// what a restore-as-files target needs ("Restore Azure PostgreSQL-Flexible server as Files", prerequisites):
//   "Ensure that the target storage account for the restore has the AllowCrossTenantReplication property set to true."
//   "Ensure the target storage account for restoring backup as a file is accessible via a public network."
// plus the vault identity as Storage Blob Data Contributor (granted on the container in roles.bicep). The service reads
// and deletes the staged blobs with its identity (also roles.bicep); a lifecycle rule deletes what is left after N days.
param name string
@description('Region of this staging account: the region the vault restores into.')
param location string
param tags object
@description('Blob container the vault restores into (one prefix per restore).')
param containerName string
@minValue(1)
@description('Lifecycle safety net: staged blobs older than this many days are deleted (the verify stage deletes them on success).')
param retentionDays int

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  //checkov:skip=CKV_AZURE_35: Azure Backup restores as files only into an account "accessible via a public network" (restore-azure-database-postgresql-flex prerequisites), so the firewall stays open; shared keys are off and every request needs an Entra ID token with a data role.
  //checkov:skip=CKV_AZURE_59: public network access is a documented prerequisite of restore-as-files targets (see CKV_AZURE_35); anonymous blob access and shared keys are disabled.
  //checkov:skip=CKV_AZURE_206: staged dumps are transient copies of what the Backup vault keeps durably (and the lifecycle rule deletes them); LRS exists in every region, ZRS does not (paired regions included).
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    // Azure Backup copies the restored files from its own (Microsoft) tenant into this account: required true.
    allowCrossTenantReplication: true
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
    encryption: {
      requireInfrastructureEncryption: true
      keySource: 'Microsoft.Storage'
      services: {
        blob: { enabled: true }
        file: { enabled: true }
        queue: { enabled: true, keyType: 'Account' }
        table: { enabled: true, keyType: 'Account' }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    // short: a staged dump deleted after a successful restore should not stay billed for long
    deleteRetentionPolicy: {
      enabled: true
      days: 1
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource container 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: containerName
  properties: {
    publicAccess: 'None'
  }
}

// Safety net: whatever a failed or abandoned restore left behind is deleted after retentionDays.
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          enabled: true
          name: 'delete-staged-restore-files'
          type: 'Lifecycle'
          definition: {
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: retentionDays
                }
              }
            }
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${containerName}/'
              ]
            }
          }
        }
      ]
    }
  }
}

output name string = account.name
output containerId string = container.id
output containerUrl string = '${account.properties.primaryEndpoints.blob}${containerName}'
