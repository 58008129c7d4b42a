// Restore drills (docs/drills.md): one scheduled-query alert over the drills' log records: a failed drill run, a run
// over its RTO target, or a clean-up that failed (retried by the drill timer until it succeeds).
param location string
param tags object
@description('Application Insights resource the alert rule queries.')
param appInsightsId string
@description('Action group the alert notifies (the restore alerts\' group).')
param actionGroupId string
param resourceToken string

var drillProblemsQuery = 'traces | where isnotempty(tostring(customDimensions.drill_id)) | extend outcome = tostring(customDimensions.drill_outcome), rto = tostring(customDimensions.drill_rto), cleanup = tostring(customDimensions.drill_cleanup), drill_id = tostring(customDimensions.drill_id) | where outcome == "failed" or rto == "over" or cleanup == "failed" | summarize problems = count() by drill_id'

resource drillAlert 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: 'alert-restore-drill-${resourceToken}'
  location: location
  tags: tags
  properties: {
    displayName: 'Restore drill failed, over its RTO, or not cleaned up'
    description: 'A drill run failed, took longer than its RTO target, or its clean-up failed (drill_outcome, drill_rto, drill_cleanup). GET /api/drills/{id}/runs shows the run and its evidence.'
    severity: 2
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: drillProblemsQuery
          timeAggregation: 'Total'
          metricMeasureColumn: 'problems'
          dimensions: [
            {
              name: 'drill_id'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        actionGroupId
      ]
    }
  }
}

output alertId string = drillAlert.id
