// The replay stage's compute: a Container Apps environment (optionally VNet-injected, for private Flexible Servers) and
// an EVENT-DRIVEN Container Apps job. KEDA's azure-queue scaler watches each job stage queue (restore-replay and
// restore-verify: one rule each) with the job's own managed identity (scale rule `identity`, Microsoft.App 2025-01-01
// and later) and starts one execution per visible message; each execution runs `python -m restore_core.replay` from
// the image built from ./Dockerfile, which takes one message (replay first, else verify), runs that stage against the
// target server, deletes it and enqueues the next stage. docs/deploy.md "Restore into a server".
param environmentName string
param jobName string
param location string
param tags object
@description('Tags of the job only (azd finds the job to deploy the image to by azd-service-name).')
param jobTags object
@description('Log Analytics workspace receiving the environment logs (diagnostic settings; no shared key).')
param workspaceId string
@description('Subnet for a VNet-injected environment (delegated to Microsoft.App/environments, /27 or larger). Empty: no VNet.')
param infrastructureSubnetId string
@description('Resource id of the job\'s own user-assigned identity (its PostgreSQL Entra role): the job, its scale rules, the registry pull and the environment\'s Key Vault read use it.')
param identityId string
@description('Login server of the registry holding the image.')
param registryServer string
param image string
@description('App storage account holding the stage queues (the scale rules read their queue lengths with the identity).')
param queueAccountName string
@description('Queues of the job stages (replay, verify): one azure-queue scale rule each.')
param jobQueueNames array
@description('Restore settings (name -> value): the container environment, the Function App\'s names with the job identity\'s values (main.bicep replayJobSettings).')
param settings object
@description('vCPU of a replica, as a string (e.g. \'2.0\'); Consumption profile: 0.25 to 4.')
param cpu string
@description('Memory of a replica (e.g. \'4Gi\', twice the vCPU on the Consumption profile).')
param memory string
@minValue(1)
param parallelism int
@minValue(600)
@description('Longest run of one replay replica in seconds (replays of large archives take hours).')
param replicaTimeoutSeconds int
@minValue(0)
param replicaRetryLimit int
@minValue(1)
@description('Most replays running at once (executions started for a poll).')
param maxExecutions int
@minValue(10)
param pollingIntervalSeconds int
@description('Where the replay downloads archives (RESTORE_REPLAY_WORKDIR); the Azure Files share is mounted there.')
param workdir string
@description('Optional Azure Files share for archives larger than the replica disk: {accountName, shareName, accountKeySecretUrl}. {}: none.')
param replayFiles object

var vnetInjected = !empty(infrastructureSubnetId)
var useFiles = !empty(replayFiles)
var storageName = 'replay-files'
var volumeName = 'replay-workdir'

resource environment 'Microsoft.App/managedEnvironments@2025-07-01' = {
  name: environmentName
  location: location
  tags: tags
  // the environment reads the optional share's account key from Key Vault with the job identity
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    // logs go through diagnostic settings below (Entra-based), not a workspace shared key
    appLogsConfiguration: {
      destination: 'azure-monitor'
    }
    workloadProfiles: [
      {
        name: 'Consumption'
        workloadProfileType: 'Consumption'
      }
    ]
    // a job has no ingress: a VNet-injected environment can be internal (no public static IP)
    vnetConfiguration: vnetInjected ? {
      infrastructureSubnetId: infrastructureSubnetId
      internal: true
    } : null
    zoneRedundant: false
  }
}

resource environmentLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: environment
  properties: {
    workspaceId: workspaceId
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
  }
}

// SMB share; its account key stays in Key Vault (accountKeyVaultProperties), never in this template.
resource replayShare 'Microsoft.App/managedEnvironments/storages@2025-07-01' = if (useFiles) {
  parent: environment
  name: storageName
  properties: {
    azureFile: {
      accountName: useFiles ? replayFiles.accountName : ''
      shareName: useFiles ? replayFiles.shareName : ''
      accessMode: 'ReadWrite'
      accountKeyVaultProperties: {
        identity: identityId
        keyVaultUrl: useFiles ? replayFiles.accountKeySecretUrl : ''
      }
    }
  }
}

var volumes = useFiles ? [
  {
    name: volumeName
    storageType: 'AzureFile'
    storageName: storageName
    // the image runs as uid/gid 10001 (Dockerfile)
    mountOptions: 'uid=10001,gid=10001,dir_mode=0700,file_mode=0600'
  }
] : []
var volumeMounts = useFiles ? [
  {
    volumeName: volumeName
    mountPath: workdir
  }
] : []

resource job 'Microsoft.App/jobs@2025-07-01' = {
  name: jobName
  location: location
  tags: jobTags
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    environmentId: environment.id
    workloadProfileName: 'Consumption'
    configuration: {
      triggerType: 'Event'
      replicaTimeout: replicaTimeoutSeconds
      replicaRetryLimit: replicaRetryLimit
      eventTriggerConfig: {
        parallelism: parallelism
        replicaCompletionCount: 1
        scale: {
          minExecutions: 0
          maxExecutions: maxExecutions
          pollingInterval: pollingIntervalSeconds
          // one rule per job stage queue; an execution takes a message of either (replay first, restore_core/replay.py)
          rules: [for queueName in jobQueueNames: {
            name: queueName
            type: 'azure-queue'
            // KEDA azure-queue scaler, authenticated with the job's managed identity (no connection string secret)
            identity: identityId
            metadata: {
              accountName: queueAccountName
              queueName: queueName
              // one execution per message; count only visible messages (a running stage keeps its message invisible)
              queueLength: '1'
              queueLengthStrategy: 'visibleonly'
            }
          }]
        }
      }
      registries: [
        {
          server: registryServer
          identity: identityId
        }
      ]
    }
    template: {
      containers: [
        {
          name: 'replay'
          image: image
          command: [
            'python'
            '-m'
            'restore_core.replay'
          ]
          env: [for setting in items(settings): {
            name: setting.key
            value: setting.value
          }]
          resources: {
            cpu: json(cpu)
            memory: memory
          }
          volumeMounts: volumeMounts
        }
      ]
      volumes: volumes
    }
  }
  dependsOn: [
    replayShare
  ]
}

output environmentId string = environment.id
output jobName string = job.name
output jobId string = job.id
