// Entry point for `azd up` and `az deployment sub create`: one resource group holding the restore orchestrator
// (Function App, its own storage, monitoring, dashboards, alerts) plus the least-privilege role assignments.
// Keyless: the app reaches storage, Application Insights and ARM with its user-assigned managed identity only.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name; seeds the deterministic resource names (uniqueString) and the azd-env-name tag.')
param environmentName string

@minLength(1)
@description('Azure region for every resource (Flex Consumption must be available there).')
@metadata({ azd: { type: 'location' } })
param location string

@description('Resource group to create or reuse. Empty: rg-<environmentName>.')
param resourceGroupName string = ''

@description('Hosting plan: FlexConsumption (default, scales per queue) or Dedicated (App Service plan, always on).')
@allowed(['FlexConsumption', 'Dedicated'])
param hostingPlan string = 'FlexConsumption'

@description('App Service plan SKU when hostingPlan is Dedicated (Linux).')
param dedicatedSkuName string = 'P0v3'

@description('Flex Consumption: maximum instances (caps the ARM call rate of the app identity too).')
@minValue(40)
@maxValue(1000)
param flexMaximumInstanceCount int = 40

@description('Flex Consumption: instance memory size in MB.')
@allowed([512, 2048, 4096])
param flexInstanceMemoryMB int = 2048

@description('RESTORE_PLANS: JSON object keyed by alerted resource id (see the restore request contract). Not a secret.')
param restorePlans string = '{}'

@description('ARM ids of the Backup vaults the app may restore from. The app identity gets a custom, restore-only role on each.')
param backupVaultIds array = []

@description('Restore-target permissions for the vault identities (optional). Leave enabled=false to grant them by hand (docs/deploy.md).')
param restoreTargetAccess object = {
  enabled: false
  vaultPrincipalIds: []
  targetServerIds: []
  keyVaultIds: []
  targetContainerIds: []
}

@description('Restore RTO target in minutes: the "restore past its RTO target" alert fires above it.')
@minValue(1)
param rtoTargetMinutes int = 240

@description('Optional e-mail address for the alert action group. Empty: the action group has no receiver.')
param alertEmail string = ''

// Behaviour settings: empty means "use the default in restore_core/config.py" (defaults live in the code only).
@description('RESTORE_DEADLINE_HOURS: a restore not terminal after this many hours is failed. Empty: code default.')
param deadlineHours string = ''

@description('RESTORE_POLL_MIN_SECONDS: shortest re-check interval of Azure jobs. Empty: code default.')
param pollMinSeconds string = ''

@description('RESTORE_POLL_MAX_SECONDS: longest re-check interval of Azure jobs. Empty: code default.')
param pollMaxSeconds string = ''

@description('RESTORE_POLL_OVERDUE_SECONDS: longest re-check interval while a job overruns its estimated end. Empty: code default.')
param pollOverdueSeconds string = ''

@description('RESTORE_CONTINUE_INLINE: true runs the trigger in the validate invocation when no rehydration is needed (its queue message, delayed 660 s, is the safety net); false: one stage per invocation. Empty: code default (true).')
param continueInline string = ''

@description('RESTORE_ARM_MAX_RETRIES: retries for throttled or transient ARM calls. Empty: code default.')
param armMaxRetries string = ''

@description('RESTORE_TRIGGER_GRACE_SECONDS: wait before adopting or re-triggering an unconfirmed restore. Empty: code default.')
param triggerGraceSeconds string = ''

@description('RESTORE_REHYDRATION_FLOW: one-request (default, the documented route) or two-step (stand-alone rehydrate, then restore).')
@allowed(['one-request', 'two-step'])
param rehydrationFlow string = 'one-request'
@description('RESTORE_STORAGE_CONNECT_TIMEOUT_SECONDS: TCP connect timeout of every table/queue call. Empty: code default.')
param storageConnectTimeoutSeconds string = ''

@description('RESTORE_STORAGE_READ_TIMEOUT_SECONDS: response timeout of every table/queue call. Empty: code default.')
param storageReadTimeoutSeconds string = ''

@description('RESTORE_STORAGE_RETRIES: SDK retries of a failed table/queue call. Empty: code default.')
param storageRetries string = ''

@description('RESTORE_WATCHDOG_SCHEDULE: NCRONTAB (six fields) of the watchdog timer (a binding expression: must be set).')
param watchdogSchedule string = '0 */1 * * * *'

@description('RESTORE_TELEMETRY_EXPORTER: local exporter when no App Insights connection string is set; keep none in Azure.')
@allowed(['none', 'console', 'otlp', 'memory'])
param telemetryExporter string = 'none'

@description('OTEL_EXPORTER_OTLP_ENDPOINT: only used with telemetryExporter=otlp. Empty: unused.')
param otlpEndpoint string = ''

// --- Restore into a server (docs/deploy.md "Restore into a server"): staging, replay job, network
@description('Region of the Backup vaults the service restores from: its staging account receives their restores as files.')
param vaultRegion string = location

@description('Paired region of vaultRegion, where Cross Region Restore lands. Empty: looked up in infra/paired-regions.json; none: no second staging account.')
param vaultPairedRegion string = ''

@description('Principal (object) ids of the Backup vaults\' managed identities: Storage Blob Data Contributor on every staging container.')
param stagingVaultPrincipalIds array = []

@description('Lifecycle safety net: staged restore files older than this many days are deleted.')
@minValue(1)
param stagingRetentionDays int = 7

@description('Key Vault ids holding target connection-string secrets (request auth kind "secret"): the service identity gets Key Vault Secrets User on each.')
param secretKeyVaultIds array = []

@description('RESTORE_POSTGRES_HOST_SUFFIX: DNS suffix of Flexible Servers in this cloud. Empty: code default (.postgres.database.azure.com).')
param postgresHostSuffix string = ''

@description('RESTORE_POSTGRES_SSLMODE: libpq sslmode to target servers. Empty: code default (verify-full).')
param postgresSslMode string = ''

@description('RESTORE_REPLAY_JOBS: pg_restore -j of a replay. Empty: code default.')
param replayJobs string = ''

@description('RESTORE_REPLAY_LEASE_SECONDS: fenced lease of a running replay. Empty: code default.')
param replayLeaseSeconds string = ''

@description('RESTORE_REPLAY_DISK_BUDGET_MB: temporary disk (MB) a replay may use to download an archive; a larger archive is streamed into pg_restore (single-threaded). Empty: code default (6144: the 8 GiB ephemeral storage of a replica over 1 vCPU, minus headroom).')
param replayDiskBudgetMb string = ''

@description('RESTORE_VERIFY_COUNT_BUDGET_MB: archive bytes the replay may read again to count rows. Empty: code default.')
param verifyCountBudgetMb string = ''

@description('RESTORE_DATABASE_SUFFIX: default suffix of restored database names. Empty: code default (_restored).')
param databaseSuffix string = ''

@description('RESTORE_CHECK_ROLE: the read-only role user checks run as (created by the replay job when missing). Empty: code default (restore_checks).')
param checkRole string = ''

@description('RESTORE_PROTECTED_VAULTS: Backup vault ids (JSON array or comma-separated) whose backups\' source servers are never restore targets without beside_source. Empty: none.')
param protectedVaults string = ''

@description('RESTORE_PROTECTED_SERVERS: more protected server ids (JSON array or comma-separated). Empty: none.')
param protectedServers string = ''

@description('RESTORE_ALLOWED_TARGETS: fnmatch patterns of target server ids and container ids/URLs the service may restore into. Empty: any target.')
param allowedTargets string = ''

@description('RESTORE_BESIDE_SOURCE_ROLE: role a caller needs for beside_source (callers carry roles once Entra authentication is configured). Empty: no role check.')
param besideSourceRole string = ''

@description('RESTORE_BLOB_HOST_SUFFIXES: blob endpoints a files target may use. Empty: code default (the Azure clouds\' blob endpoints).')
param blobHostSuffixes string = ''

@description('RESTORE_PREVIEW_PER_MINUTE: previews per caller and minute. Empty: code default (10).')
param previewPerMinute string = ''

@description('RESTORE_DRILL_TARGETS: Flexible Server id patterns (fnmatch, JSON array or comma-separated) reserved for restore drills: only drills restore into them. Empty: no drills.')
param drillTargets string = ''

@description('RESTORE_DRILL_SCHEDULE: NCRONTAB (six fields) of the drill timer (a binding expression: must be set).')
param drillSchedule string = '0 */5 * * * *'

@description('RESTORE_DRILL_EVIDENCE_CONTAINER: write-once container (time-based immutability policy) of the drill evidence documents.')
param drillEvidenceContainer string = 'drill-evidence'

@description('Days a drill evidence document stays immutable (time-based retention of the evidence container).')
@minValue(1)
param drillEvidenceRetentionDays int = 400

@description('RESTORE_DRILL_MAX_STARTS_PER_TICK: drill runs the timer starts per tick at most (ARM budget). Empty: code default (10).')
param drillMaxStartsPerTick string = ''
@description('Microsoft Entra ID callers (README "Who asked"): the client id of the app registration that defines the app roles reader/operator/admin (Bicep cannot create app registrations without the Microsoft Graph extension: create it first, docs/deploy.md "Entra callers"). Empty: function keys (RESTORE_AUTH_MODE=key), no built-in authentication.')
param entraClientId string = ''

@description('Tenant of the app registration. Default: the deployment\'s tenant.')
param entraTenantId string = tenant().tenantId

@description('Client ids of the applications allowed to call with tokens for the app registration (e.g. the Azure CLI, docs/deploy.md). Empty: any client of the tenant (roles still decide).')
param entraAllowedClientApplications array = []

@description('The alert door\'s webhook URL WITH its function key (https://<app>/api/alerts?code=<key>): the action group ag-restore-door gets a webhook receiver to it. Secure: never logged in the deployment history. Empty on the first deployment (the key exists only after it): docs/deploy.md "Alerts in".')
@secure()
param alertDoorWebhookUrl string = ''

@description('RESTORE_OWN_ALERT_RULE_PREFIXES: alerts whose rule name starts with one of these never start a restore (no feedback loops). Empty: code default (alert-restore-, the prefix of this template\'s own rules).')
param ownAlertRulePrefixes string = ''

@description('Replay job image. Empty: a placeholder until `azd deploy` pushes the image built from ./Dockerfile (azd passes SERVICE_REPLAY_IMAGE_NAME on later provisions).')
param replayImage string = ''

@description('SKU of the registry holding the replay image.')
@allowed(['Basic', 'Standard', 'Premium'])
param registrySku string = 'Basic'

@description('vCPU of a replay replica (Consumption profile: 0.25 to 4, with memory = 2 x vCPU Gi).')
param replayCpu string = '2.0'

@description('Memory of a replay replica.')
param replayMemory string = '4Gi'

@description('Replicas started per replay execution (each drains the job queues, one message at a time).')
@minValue(1)
param replayParallelism int = 1

@description('Longest replay in seconds: every message a replay execution takes has at least this long. Default 6 h. The replica timeout (and the execution\'s time budget, RESTORE_REPLAY_EXECUTION_SECONDS) is twice it: the first message gets all of it, and an execution takes another message only while half of it is left. A replica still running at the timeout is stopped; the lease expires and the restore is re-driven.')
@minValue(600)
param replayTimeoutSeconds int = 21600

// the replay execution's time budget = the job's replica timeout: twice the longest replay, so that a message taken
// while half of it is left still has the longest replay's time (restore_core/replay.py time_for_another)
var replayExecutionSeconds = 2 * replayTimeoutSeconds

@description('RESTORE_REPLAY_MESSAGES_PER_EXECUTION: messages one replay execution handles before it exits (it exits earlier when the queues are empty or half its time budget is spent). Empty: code default (20). 1: one message per execution.')
param replayMessagesPerExecution string = ''

@description('RESTORE_REPLAY_IDLE_SECONDS: how long a replay execution that found the queues empty keeps looking (every 0.2 s, doubling to 1 s) before it exits, so a message arriving meanwhile is taken at once instead of waiting for the next scaler poll (replayPollingSeconds) and a new replica. Empty: code default (10). 0: exit as soon as the queues are empty.')
param replayIdleSeconds string = ''

@description('Platform retries of a failed replica. 0: the queue message and the fenced lease re-drive a failed replay instead.')
@minValue(0)
param replayRetryLimit int = 0

@description('Most replays running at once.')
@minValue(1)
param replayMaxExecutions int = 5

@description('How often (seconds) KEDA polls the replay queue.')
@minValue(10)
param replayPollingSeconds int = 30

@description('Optional Azure Files share mounted at RESTORE_REPLAY_WORKDIR for archives larger than the replica disk: {accountName, shareName, accountKeySecretUrl} (the key stays in Key Vault; list that vault in secretKeyVaultIds). {}: none.')
param replayFiles object = {}

@description('Function App VNet integration subnet, for private target servers (Flex Consumption: delegated to Microsoft.App/environments). Empty: no VNet.')
param functionSubnetId string = ''

@description('Container Apps environment infrastructure subnet (delegated to Microsoft.App/environments, /27 or larger). Empty: no VNet.')
param containerAppsSubnetId string = ''

@description('Existing private DNS zone of the target servers (privatelink.postgres.database.azure.com) to link to privateDnsVnetId. Empty: no link.')
param postgresPrivateDnsZoneId string = ''

@description('VNet (holding functionSubnetId and containerAppsSubnetId) to link the private DNS zone to. Empty: no link.')
param privateDnsVnetId string = ''

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
  application: 'pg-restore-orchestrator'
}
var hostJson = loadJsonContent('../host.json')
var deploymentContainerName = 'app-package-${resourceToken}'
var armEndpoint = environment().resourceManager
var identityName = 'id-restore-${resourceToken}'
// The replay job's own identity (replay and verify): its PostgreSQL Entra role creates, loads and verifies databases.
var replayIdentityName = 'id-replay-${resourceToken}'
var functionAppName = 'func-restore-${resourceToken}'
// RESTORE_AUTH_MODE follows the app registration: Entra callers when one is given, function keys otherwise.
var authMode = empty(entraClientId) ? 'key' : 'entra'
// The alert door stays keyed and outside the platform's authentication (function_app.py alerts_receive).
var alertDoorPath = '/api/alerts'

// Staging (restore into a server): one account per region vaults restore into, the vault's and its pair (CRR).
// infra/paired-regions.json = restore_core/regions.py PAIRED_REGIONS (tests/infra checks they agree).
var pairedRegions = loadJsonContent('paired-regions.json')
var vaultRegionKey = toLower(replace(vaultRegion, ' ', ''))
var pairLookup = contains(pairedRegions, vaultRegionKey) ? pairedRegions[vaultRegionKey] : ''
var pairRegionKey = vaultPairedRegion == 'none' ? '' : (empty(vaultPairedRegion) ? pairLookup : toLower(replace(vaultPairedRegion, ' ', '')))
var stagingRegions = empty(pairRegionKey) ? [vaultRegionKey] : [vaultRegionKey, pairRegionKey]
var hasPairRegion = !empty(pairRegionKey)
var stagingContainerName = 'restore-staging'
var stagingAccountNames = [for region in stagingRegions: 'ststg${uniqueString(subscription().id, environmentName, region)}']

// The replay image's PostgreSQL client (Dockerfile: postgresql-client-18 from apt.postgresql.org); tests/infra ties them.
var replayClientMajor = '18'
var replayWorkdir = '/mnt/replay'
// Until `azd deploy` pushes the real image: a Microsoft sample job image (its executions fail fast on the command).
var placeholderImage = 'mcr.microsoft.com/k8se/quickstart-jobs:latest'

// Queue and table names: the same values as restore_core/config.py DEFAULTS, keyed by the setting the code reads.
// The storage module creates each queue, its -poison twin and each table from these two objects.
var restoreQueues = {
  RESTORE_QUEUE_REQUESTS: 'restore-requests'
  RESTORE_QUEUE_VALIDATE: 'restore-validate'
  RESTORE_QUEUE_REHYDRATE: 'restore-rehydrate'
  RESTORE_QUEUE_WAIT: 'restore-wait'
  RESTORE_QUEUE_TRIGGER: 'restore-trigger'
  RESTORE_QUEUE_MONITOR: 'restore-monitor'
  RESTORE_QUEUE_INVENTORY: 'restore-inventory'
  RESTORE_QUEUE_REPLAY: 'restore-replay'
  RESTORE_QUEUE_VERIFY: 'restore-verify'
  RESTORE_QUEUE_EVENTS: 'restore-events'
}
var restoreTables = {
  RESTORE_TABLE_RESTORES: 'restores'
  RESTORE_TABLE_IDEMPOTENCY: 'restoreidempotency'
}

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: identityName
    location: location
    tags: tags
  }
}

module replayIdentity 'modules/identity.bicep' = {
  name: 'replay-identity'
  scope: rg
  params: {
    name: replayIdentityName
    location: location
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'strestore${resourceToken}'
    location: location
    tags: tags
    queueNames: [for q in items(restoreQueues): q.value]
    tableNames: [for t in items(restoreTables): t.value]
    deploymentContainerName: deploymentContainerName
    drillEvidenceContainerName: drillEvidenceContainer
    drillEvidenceRetentionDays: drillEvidenceRetentionDays
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-restore-${resourceToken}'
    appInsightsName: 'appi-restore-${resourceToken}'
    location: location
    tags: tags
  }
}

module staging 'modules/staging.bicep' = [for (region, i) in stagingRegions: {
  name: 'staging-${region}'
  scope: rg
  params: {
    name: stagingAccountNames[i]
    location: region
    tags: tags
    containerName: stagingContainerName
    retentionDays: stagingRetentionDays
  }
}]

// RESTORE_STAGING: {region: {container_url, container_id}} for the vault region and its pair (restore_core/config.py).
var stagingSetting = union({
  '${stagingRegions[0]}': {
    container_url: staging[0].outputs.containerUrl
    container_id: staging[0].outputs.containerId
  }
}, hasPairRegion ? {
  '${stagingRegions[1]}': {
    container_url: staging[1].outputs.containerUrl
    container_id: staging[1].outputs.containerId
  }
} : {})

// The settings restore_core reads (restore_core.config.ALL_SETTINGS minus LOCAL_ONLY_SETTINGS) plus the identity-based
// "RestoreStorage" connection: the Function App AND the replay job get these names (one place, tests/infra checks);
// the job's identity values differ (replayJobSettings below).
var restoreSettings = union(restoreQueues, restoreTables, {
  // The app's own connection "RestoreStorage" (bindings: connection="RestoreStorage"; code: config.STORAGE_CONNECTION).
  RestoreStorage__credential: 'managedidentity'
  RestoreStorage__clientId: identity.outputs.clientId
  RestoreStorage__blobServiceUri: storage.outputs.blobEndpoint
  RestoreStorage__queueServiceUri: storage.outputs.queueEndpoint
  RestoreStorage__tableServiceUri: storage.outputs.tableEndpoint
  // DefaultAzureCredential picks the user-assigned identity.
  AZURE_CLIENT_ID: identity.outputs.clientId
  // ARM endpoint of this cloud, without the trailing slash.
  DATAPROTECTION_ENDPOINT: endsWith(armEndpoint, '/') ? substring(armEndpoint, 0, length(armEndpoint) - 1) : armEndpoint
  // Ingestion connection string (not a credential); with local auth disabled the host authenticates with Entra ID.
  APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.connectionString
  RESTORE_PLANS: restorePlans
  // Browse (GET /api/backup-instances): the vaults this app restores from, as a JSON array.
  RESTORE_VAULTS: string(backupVaultIds)
  RESTORE_WATCHDOG_SCHEDULE: watchdogSchedule
  RESTORE_DEADLINE_HOURS: deadlineHours
  RESTORE_POLL_MIN_SECONDS: pollMinSeconds
  RESTORE_POLL_MAX_SECONDS: pollMaxSeconds
  RESTORE_POLL_OVERDUE_SECONDS: pollOverdueSeconds
  RESTORE_CONTINUE_INLINE: continueInline
  // Must equal host.json extensions.queues.maxDequeueCount (the settings validation checks it): read from host.json.
  RESTORE_MAX_DEQUEUE_COUNT: string(hostJson.extensions.queues.maxDequeueCount)
  RESTORE_ARM_MAX_RETRIES: armMaxRetries
  RESTORE_TRIGGER_GRACE_SECONDS: triggerGraceSeconds
  RESTORE_REHYDRATION_FLOW: rehydrationFlow
  RESTORE_STORAGE_CONNECT_TIMEOUT_SECONDS: storageConnectTimeoutSeconds
  RESTORE_STORAGE_READ_TIMEOUT_SECONDS: storageReadTimeoutSeconds
  RESTORE_STORAGE_RETRIES: storageRetries
  // Empty = the code default 600: the Functions queue listener keeps a running message invisible 10 minutes (fixed).
  RESTORE_MESSAGE_IN_FLIGHT_SECONDS: ''
  RESTORE_TELEMETRY_EXPORTER: telemetryExporter
  OTEL_EXPORTER_OTLP_ENDPOINT: otlpEndpoint
  // Restore into a server: staging containers (JSON), target servers, the service's Entra role, the replay image.
  RESTORE_STAGING: string(stagingSetting)
  RESTORE_POSTGRES_HOST_SUFFIX: postgresHostSuffix
  RESTORE_POSTGRES_SSLMODE: postgresSslMode
  // PostgreSQL Entra role = the managed identity's name (pgaadauth_create_principal, docs/deploy.md).
  RESTORE_ENTRA_USER: identityName
  // The role the replay job connects as = the job identity's name (validation checks its privileges by name).
  RESTORE_REPLAY_ENTRA_USER: replayIdentityName
  RESTORE_REPLAY_CLIENT_VERSION: replayClientMajor
  RESTORE_REPLAY_JOBS: replayJobs
  RESTORE_REPLAY_WORKDIR: replayWorkdir
  RESTORE_REPLAY_LEASE_SECONDS: replayLeaseSeconds
  RESTORE_REPLAY_DISK_BUDGET_MB: replayDiskBudgetMb
  // An execution drains several messages (process start and storage clients paid once), within the job's replica
  // timeout: the time budget is that timeout, so the two cannot disagree.
  RESTORE_REPLAY_MESSAGES_PER_EXECUTION: replayMessagesPerExecution
  RESTORE_REPLAY_EXECUTION_SECONDS: string(replayExecutionSeconds)
  RESTORE_REPLAY_IDLE_SECONDS: replayIdleSeconds
  // Empty = the code default 2: replays loading into one target server at a time.
  RESTORE_REPLAY_MAX_PER_SERVER: ''
  RESTORE_PG_BINDIR: '/usr/lib/postgresql/${replayClientMajor}/bin'
  RESTORE_VERIFY_COUNT_BUDGET_MB: verifyCountBudgetMb
  RESTORE_DATABASE_SUFFIX: databaseSuffix
  RESTORE_CHECK_ROLE: checkRole
  RESTORE_PROTECTED_VAULTS: protectedVaults
  RESTORE_PROTECTED_SERVERS: protectedServers
  RESTORE_ALLOWED_TARGETS: allowedTargets
  RESTORE_BESIDE_SOURCE_ROLE: besideSourceRole
  RESTORE_BLOB_HOST_SUFFIXES: blobHostSuffixes
  RESTORE_PREVIEW_PER_MINUTE: previewPerMinute
  // Restore drills (docs/drills.md): drill-only servers, the drill timer, the write-once evidence container.
  RESTORE_DRILL_TARGETS: drillTargets
  RESTORE_DRILL_SCHEDULE: drillSchedule
  RESTORE_DRILL_EVIDENCE_CONTAINER: drillEvidenceContainer
  RESTORE_DRILL_MAX_STARTS_PER_TICK: drillMaxStartsPerTick
  // Who asked: function keys or Entra callers behind App Service authentication (function-app.bicep authsettingsV2).
  RESTORE_AUTH_MODE: authMode
  // No feedback loops: alerts about the service's own resources (and its own rules) never start a restore.
  RESTORE_OWN_RESOURCE_IDS: string([
    '${rg.id}/providers/Microsoft.Web/sites/${functionAppName}'
    storage.outputs.id
    monitoring.outputs.appInsightsId
    monitoring.outputs.workspaceId
  ])
  RESTORE_OWN_ALERT_RULE_PREFIXES: ownAlertRulePrefixes
})

// The replay job: the same settings with its own identity (storage, Key Vault, staging blobs, telemetry, PostgreSQL).
var replayJobSettings = union(restoreSettings, {
  RestoreStorage__clientId: replayIdentity.outputs.clientId
  AZURE_CLIENT_ID: replayIdentity.outputs.clientId
  RESTORE_ENTRA_USER: replayIdentityName
})

// THE app settings: every setting the code reads (restoreSettings) plus the platform's identity-based connections.
// Defined here and nowhere else; tests/infra checks parity with the code.
var appSettings = union(restoreSettings, {
  // Functions host storage, identity-based (no AccountKey anywhere).
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identity.outputs.clientId
  AzureWebJobsStorage__blobServiceUri: storage.outputs.blobEndpoint
  AzureWebJobsStorage__queueServiceUri: storage.outputs.queueEndpoint
  AzureWebJobsStorage__tableServiceUri: storage.outputs.tableEndpoint
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.outputs.clientId};Authorization=AAD'
  // With host.json telemetryMode OpenTelemetry: the Python worker announces WorkerOpenTelemetryEnabled, so the host
  // does not export the worker's logs a second time (the app exports them itself). docs/deploy.md "Telemetry".
  PYTHON_ENABLE_OPENTELEMETRY: 'true'
}, hostingPlan == 'Dedicated' ? {
  // Flex Consumption rejects these two (runtime comes from functionAppConfig); App Service plans need them.
  FUNCTIONS_EXTENSION_VERSION: '~4'
  FUNCTIONS_WORKER_RUNTIME: 'python'
} : {})

module app 'modules/function-app.bicep' = {
  name: 'function-app'
  scope: rg
  params: {
    name: functionAppName
    planName: 'plan-restore-${resourceToken}'
    location: location
    tags: union(tags, { 'azd-service-name': 'api' })
    hostingPlan: hostingPlan
    dedicatedSkuName: dedicatedSkuName
    flexMaximumInstanceCount: flexMaximumInstanceCount
    flexInstanceMemoryMB: flexInstanceMemoryMB
    identityId: identity.outputs.id
    deploymentContainerUrl: '${storage.outputs.blobEndpoint}${deploymentContainerName}'
    appSettings: appSettings
    virtualNetworkSubnetId: functionSubnetId
    entraClientId: entraClientId
    entraTenantId: entraTenantId
    entraAllowedClientApplications: entraAllowedClientApplications
    authExcludedPaths: [
      alertDoorPath
    ]
  }
}

module registry 'modules/registry.bicep' = {
  name: 'registry'
  scope: rg
  params: {
    name: 'crrestore${resourceToken}'
    location: location
    tags: tags
    sku: registrySku
  }
}

// The job stages (registry consumer "job": replay, verify): an event-driven Container Apps job on their queues, running
// as its own identity (replayIdentity).
module replayJob 'modules/container-apps.bicep' = {
  name: 'container-apps'
  scope: rg
  params: {
    environmentName: 'cae-restore-${resourceToken}'
    jobName: 'caj-replay-${resourceToken}'
    location: location
    tags: tags
    jobTags: union(tags, { 'azd-service-name': 'replay' })
    workspaceId: monitoring.outputs.workspaceId
    infrastructureSubnetId: containerAppsSubnetId
    identityId: replayIdentity.outputs.id
    registryServer: registry.outputs.loginServer
    image: empty(replayImage) ? placeholderImage : replayImage
    queueAccountName: storage.outputs.name
    // one azure-queue scale rule per job stage queue (restore_core/stages/registry.py JOB_STAGES)
    jobQueueNames: [
      restoreQueues.RESTORE_QUEUE_REPLAY
      restoreQueues.RESTORE_QUEUE_VERIFY
    ]
    settings: replayJobSettings
    cpu: replayCpu
    memory: replayMemory
    parallelism: replayParallelism
    replicaTimeoutSeconds: replayExecutionSeconds
    replicaRetryLimit: replayRetryLimit
    maxExecutions: replayMaxExecutions
    pollingIntervalSeconds: replayPollingSeconds
    workdir: replayWorkdir
    replayFiles: replayFiles
  }
  // the job pulls with AcrPull and scales with the queue role: grant them first
  dependsOn: [
    roles
  ]
}

// Private target servers: link their existing private DNS zone to the service's VNet (optional).
var linkPrivateDns = !empty(postgresPrivateDnsZoneId) && !empty(privateDnsVnetId)
var dnsZoneParts = split(linkPrivateDns ? postgresPrivateDnsZoneId : '/subscriptions/${subscription().subscriptionId}/resourceGroups/unused/providers/Microsoft.Network/privateDnsZones/unused', '/')

module postgresDnsLink 'modules/private-dns-link.bicep' = if (linkPrivateDns) {
  name: 'postgres-private-dns-link'
  scope: resourceGroup(dnsZoneParts[2], dnsZoneParts[4])
  params: {
    zoneName: dnsZoneParts[8]
    virtualNetworkId: privateDnsVnetId
    tags: tags
  }
}

module dashboards 'modules/dashboards.bicep' = {
  name: 'dashboards'
  scope: rg
  params: {
    location: location
    tags: tags
    appInsightsId: monitoring.outputs.appInsightsId
    resourceToken: resourceToken
    rtoTargetMinutes: rtoTargetMinutes
    alertEmail: alertEmail
    alertDoorWebhookUrl: alertDoorWebhookUrl
  }
}

module drillAlerts 'modules/drill-alerts.bicep' = {
  name: 'drill-alerts'
  scope: rg
  params: {
    location: location
    tags: tags
    appInsightsId: monitoring.outputs.appInsightsId
    actionGroupId: dashboards.outputs.actionGroupId
    resourceToken: resourceToken
  }
}

module restoreRoleDefinitions 'modules/restore-operator-roles.bicep' = {
  name: 'restore-operator-roles'
  params: {
    environmentName: environmentName
    backupVaultIds: backupVaultIds
  }
}

module roles 'modules/roles.bicep' = {
  name: 'roles'
  scope: rg
  params: {
    appPrincipalId: identity.outputs.principalId
    replayPrincipalId: replayIdentity.outputs.principalId
    storageAccountName: storage.outputs.name
    appInsightsName: monitoring.outputs.appInsightsName
    backupVaultIds: backupVaultIds
    vaultOperatorRoleGuid: restoreRoleDefinitions.outputs.vaultOperatorRoleGuid
    crossRegionRoleGuid: restoreRoleDefinitions.outputs.crossRegionRoleGuid
    operationStatusRoleGuid: restoreRoleDefinitions.outputs.operationStatusRoleGuid
    restoreTargetAccess: restoreTargetAccess
    stagingContainerIds: [for name in stagingAccountNames: resourceId(subscription().subscriptionId, rg.name, 'Microsoft.Storage/storageAccounts/blobServices/containers', name, 'default', stagingContainerName)]
    stagingVaultPrincipalIds: stagingVaultPrincipalIds
    registryName: registry.outputs.name
    secretKeyVaultIds: secretKeyVaultIds
  }
  dependsOn: [
    staging
  ]
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output SERVICE_API_NAME string = app.outputs.name
output SERVICE_API_URI string = app.outputs.uri
output AZURE_FUNCTION_APP_NAME string = app.outputs.name
output APP_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output APP_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output STORAGE_ACCOUNT_NAME string = storage.outputs.name
output APPLICATION_INSIGHTS_NAME string = monitoring.outputs.appInsightsName
output WORKBOOK_ID string = dashboards.outputs.workbookId
output RESTORE_AUTH_MODE string = authMode
output ALERT_DOOR_URL string = '${app.outputs.uri}${alertDoorPath}'
output ALERT_DOOR_ACTION_GROUP_ID string = dashboards.outputs.doorActionGroupId
output AZURE_CONTAINER_REGISTRY_ENDPOINT string = registry.outputs.loginServer
output REPLAY_JOB_NAME string = replayJob.outputs.jobName
output RESTORE_ENTRA_USER string = identityName
output RESTORE_REPLAY_ENTRA_USER string = replayIdentityName
output REPLAY_IDENTITY_PRINCIPAL_ID string = replayIdentity.outputs.principalId
output REPLAY_IDENTITY_CLIENT_ID string = replayIdentity.outputs.clientId
output RESTORE_STAGING string = string(stagingSetting)
