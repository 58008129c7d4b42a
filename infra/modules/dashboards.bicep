// Azure Monitor workbook (infra/workbook/restore-workbook.json) over the restore_core telemetry, an action group and
// three scheduled-query alert rules: a failed restore, a restore past its RTO target, a non-empty poison queue.
param location string
param tags object
@description('Application Insights resource the workbook and the alert rules query.')
param appInsightsId string
param resourceToken string
@minValue(1)
param rtoTargetMinutes int
@description('Optional e-mail receiver of the action group.')
param alertEmail string
@description('The alert door URL with its function key (main.bicep alertDoorWebhookUrl). Empty: the door action group has no receiver yet.')
@secure()
param alertDoorWebhookUrl string = ''

var workbookJson = loadTextContent('../workbook/restore-workbook.json')

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, 'restore-workbook', resourceToken)
  location: location
  tags: union(tags, { 'hidden-title': 'PostgreSQL restores' })
  kind: 'shared'
  properties: {
    displayName: 'PostgreSQL restores'
    category: 'workbook'
    sourceId: appInsightsId
    serializedData: workbookJson
    version: 'Notebook/1.0'
  }
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: 'ag-restore-${resourceToken}'
  location: 'Global'
  tags: tags
  properties: {
    groupShortName: 'pgrestore'
    enabled: true
    emailReceivers: empty(alertEmail) ? [] : [
      {
        name: 'restore-oncall'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

// The door: alerts about protected databases routed here (alert rules' actions, or an alert processing rule for alerts
// Azure raises itself) reach POST /api/alerts with the common alert schema. The webhook URL carries the function key,
// which Bicep could read only with the key-listing function (forbidden here): it comes in as a secure parameter on a second
// provisioning, docs/deploy.md "Alerts in". The product's own rules below never use this group (no feedback loops).
resource doorActionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: 'ag-restore-door-${resourceToken}'
  location: 'Global'
  tags: tags
  properties: {
    groupShortName: 'pgrestdoor'
    enabled: true
    webhookReceivers: empty(alertDoorWebhookUrl) ? [] : [
      {
        name: 'restore-alert-door'
        serviceUri: alertDoorWebhookUrl
        useCommonAlertSchema: true
        useAadAuth: false
      }
    ]
  }
}

var alertRules = [
  {
    key: 'failed'
    displayName: 'Restore failed'
    description: 'A restore ended with outcome failed, or an alert reached the door and started nothing (rejected before anything started: no plan, invalid plan, guards), per the "restore finished" log record (event restore.finished). Deduplicated alerts, resolved alerts and alerts about this service itself do not count (no feedback loops). The restore dimension names the restore, its target (server/database or container) and the error code.'
    severity: 1
    query: 'traces | where tostring(customDimensions.event) == "restore.finished" | extend error_code = tostring(customDimensions.error_code), restore_id = tostring(customDimensions.restore_id), target = tostring(customDimensions.target), databases = tostring(customDimensions.target_databases) | where tostring(customDimensions.outcome) == "failed" or (tostring(customDimensions.outcome) == "rejected" and tostring(customDimensions.source) == "alert" and error_code !in ("AlertDeduplicated", "AlertNotFired", "AlertAboutThisService")) | extend restore = strcat(restore_id, " → ", target, iff(isempty(databases), "", strcat(" (", databases, ")")), ": ", error_code) | summarize failed = count() by restore'
    timeAggregation: 'Total'
    measure: 'failed'
    dimension: 'restore'
    threshold: 0
    window: 'PT5M'
  }
  {
    key: 'rto'
    displayName: 'Restore past its RTO target'
    description: 'A restore took longer than ${rtoTargetMinutes} minutes from acceptance to the Azure job end (restore.rto).'
    severity: 2
    query: 'customMetrics | where name == "restore.rto" | extend target_kind = tostring(customDimensions.target_kind) | summarize worst_minutes = max(valueMax) / 60.0 by target_kind'
    timeAggregation: 'Maximum'
    measure: 'worst_minutes'
    dimension: 'target_kind'
    threshold: rtoTargetMinutes
    window: 'PT15M'
  }
  {
    key: 'poison'
    displayName: 'Restore poison queue not empty'
    description: 'A -poison queue holds messages (restore.poison.depth, recorded by the watchdog). Inspect and re-drive them.'
    severity: 2
    query: 'customMetrics | where name == "restore.poison.depth" | extend queue = tostring(customDimensions.queue) | summarize depth = max(valueMax) by queue'
    timeAggregation: 'Maximum'
    measure: 'depth'
    dimension: 'queue'
    threshold: 0
    window: 'PT15M'
  }
]

resource alerts 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = [for rule in alertRules: {
  name: 'alert-restore-${rule.key}-${resourceToken}'
  location: location
  tags: tags
  properties: {
    displayName: rule.displayName
    description: rule.description
    severity: rule.severity
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: rule.window
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: rule.query
          timeAggregation: rule.timeAggregation
          metricMeasureColumn: rule.measure
          dimensions: [
            {
              name: rule.dimension
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: rule.threshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}]

output workbookId string = workbook.id
output actionGroupId string = actionGroup.id
output doorActionGroupId string = doorActionGroup.id
