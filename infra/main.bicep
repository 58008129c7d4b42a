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

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
  application: 'pg-restore-orchestrator'
}
var hostJson = loadJsonContent('../host.json')
var deploymentContainerName = 'app-package-${resourceToken}'
var armEndpoint = environment().resourceManager

// Queue and table names: the same values as restore_core/config.py DEFAULTS, keyed by the setting the code reads.
// The storage module creates each queue, its -poison twin and each table from these two objects.
var restoreQueues = {
  RESTORE_QUEUE_REQUESTS: 'restore-requests'
  RESTORE_QUEUE_VALIDATE: 'restore-validate'
  RESTORE_QUEUE_REHYDRATE: 'restore-rehydrate'
  RESTORE_QUEUE_WAIT: 'restore-wait'
  RESTORE_QUEUE_TRIGGER: 'restore-trigger'
  RESTORE_QUEUE_MONITOR: 'restore-monitor'
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
    name: 'id-restore-${resourceToken}'
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

// THE app settings: every setting the code reads (restore_core.config.ALL_SETTINGS minus LOCAL_ONLY_SETTINGS) plus the
// platform's identity-based connections. Defined here and nowhere else; tests/infra checks parity with the code.
var appSettings = union(restoreQueues, restoreTables, {
  // Functions host storage, identity-based (no AccountKey anywhere).
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identity.outputs.clientId
  AzureWebJobsStorage__blobServiceUri: storage.outputs.blobEndpoint
  AzureWebJobsStorage__queueServiceUri: storage.outputs.queueEndpoint
  AzureWebJobsStorage__tableServiceUri: storage.outputs.tableEndpoint
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
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.outputs.clientId};Authorization=AAD'
  // With host.json telemetryMode OpenTelemetry: the Python worker announces WorkerOpenTelemetryEnabled, so the host
  // does not export the worker's logs a second time (the app exports them itself). docs/deploy.md "Telemetry".
  PYTHON_ENABLE_OPENTELEMETRY: 'true'
  RESTORE_PLANS: restorePlans
  RESTORE_WATCHDOG_SCHEDULE: watchdogSchedule
  RESTORE_DEADLINE_HOURS: deadlineHours
  RESTORE_POLL_MIN_SECONDS: pollMinSeconds
  RESTORE_POLL_MAX_SECONDS: pollMaxSeconds
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
}, hostingPlan == 'Dedicated' ? {
  // Flex Consumption rejects these two (runtime comes from functionAppConfig); App Service plans need them.
  FUNCTIONS_EXTENSION_VERSION: '~4'
  FUNCTIONS_WORKER_RUNTIME: 'python'
} : {})

module app 'modules/function-app.bicep' = {
  name: 'function-app'
  scope: rg
  params: {
    name: 'func-restore-${resourceToken}'
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
    storageAccountName: storage.outputs.name
    appInsightsName: monitoring.outputs.appInsightsName
    backupVaultIds: backupVaultIds
    vaultOperatorRoleGuid: restoreRoleDefinitions.outputs.vaultOperatorRoleGuid
    crossRegionRoleGuid: restoreRoleDefinitions.outputs.crossRegionRoleGuid
    operationStatusRoleGuid: restoreRoleDefinitions.outputs.operationStatusRoleGuid
    restoreTargetAccess: restoreTargetAccess
  }
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
