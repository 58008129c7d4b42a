// The app's own storage account: Functions host state, the Flex deployment package, the stage queues (+ -poison twins)
// and the state tables. Shared-key access is disabled: every client authenticates with Entra ID.
param name string
param location string
param tags object
@description('Stage queue names; each also gets its <name>-poison twin (the host moves exhausted messages there).')
param queueNames array
param tableNames array
@description('Blob container Flex Consumption deploys the app package into.')
param deploymentContainerName string
@description('Write-once container of the restore drills\' evidence documents (RESTORE_DRILL_EVIDENCE_CONTAINER).')
param drillEvidenceContainerName string
@description('Days each evidence document stays immutable (time-based retention policy of that container).')
param drillEvidenceRetentionDays int

var poisonQueueNames = [for q in queueNames: '${q}-poison']

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  //checkov:skip=CKV_AZURE_35: Flex Consumption without VNet integration reaches storage over the public endpoint; shared keys are off, so every call needs an Entra ID token with a data role. Private endpoints + defaultAction Deny need a VNet (not part of this template).
  //checkov:skip=CKV_AZURE_59: same reason as CKV_AZURE_35: public network access stays enabled for the Functions platform; anonymous blob access and shared keys are disabled.
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_ZRS'
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
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
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    cors: {
      corsRules: []
    }
  }
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [for q in concat(queueNames, poisonQueueNames): {
  parent: queueService
  name: q
}]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource tables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [for t in tableNames: {
  parent: tableService
  name: t
}]

// Restore drills' evidence (docs/drills.md): a time-based retention policy makes every document write-once; the app
// writes each document once (overwrite refused) and never deletes one. Locking the policy is a deliberate one-way step
// (az storage container immutability-policy lock), left to the operator (docs/drills.md).
resource drillEvidenceContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: drillEvidenceContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource drillEvidenceImmutability 'Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies@2023-05-01' = {
  parent: drillEvidenceContainer
  name: 'default'
  properties: {
    immutabilityPeriodSinceCreationInDays: drillEvidenceRetentionDays
    allowProtectedAppendWrites: false
  }
}

output id string = account.id
output name string = account.name
output blobEndpoint string = account.properties.primaryEndpoints.blob
output queueEndpoint string = account.properties.primaryEndpoints.queue
output tableEndpoint string = account.properties.primaryEndpoints.table
