// The Function App (Python 3.11, Linux) on Flex Consumption (default) or a Dedicated App Service plan, running as the
// user-assigned identity. App settings arrive as ONE object from main.bicep and are applied here unchanged.
param name string
param planName string
param location string
param tags object
@allowed(['FlexConsumption', 'Dedicated'])
param hostingPlan string
param dedicatedSkuName string
param flexMaximumInstanceCount int
param flexInstanceMemoryMB int
@description('Resource id of the user-assigned identity.')
param identityId string
@description('https URL of the blob container holding the Flex deployment package.')
param deploymentContainerUrl string
@description('Every app setting (built in main.bicep).')
param appSettings object
@description('VNet integration subnet (private target servers). Flex Consumption: delegated to Microsoft.App/environments; Dedicated: to Microsoft.Web/serverFarms. Empty: no VNet.')
param virtualNetworkSubnetId string = ''
@description('Client id of the app registration of Entra callers. Empty: no built-in authentication (function keys).')
param entraClientId string = ''
param entraTenantId string = tenant().tenantId
@description('Client applications allowed to call (empty: any in the tenant; app roles still decide).')
param entraAllowedClientApplications array = []
@description('Paths outside built-in authentication (the keyed alert door).')
param authExcludedPaths array = []

var isFlex = hostingPlan == 'FlexConsumption'
var vnetIntegrated = !empty(virtualNetworkSubnetId)

// Site settings for the Dedicated plan ONLY. Flex Consumption deprecates them ("Flex Consumption plan deprecations"
// in the Functions app settings reference) and ARM rejects them on a Flex site even when null (error 51021 "The
// following site configuration property (...) for Flex Consumption sites is invalid"), so the Flex site must not
// carry the keys at all: its runtime is functionAppConfig.runtime, and it has no FTP (basic publishing credentials
// are off below for both plans). docs/deploy.md quotes the sources; tests/infra checks the parsed template.
var dedicatedOnlySiteConfig = {
  linuxFxVersion: 'PYTHON|3.11'
  alwaysOn: true
  ftpsState: 'Disabled'
  use32BitWorkerProcess: false
  // with VNet integration, all outbound traffic (and DNS of private zones) goes through the VNet; Flex does so by default
  vnetRouteAllEnabled: true
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: isFlex ? 'functionapp' : 'linux'
  sku: isFlex ? {
    name: 'FC1'
    tier: 'FlexConsumption'
  } : {
    name: dedicatedSkuName
  }
  properties: {
    reserved: true
    zoneRedundant: false
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  //checkov:skip=CKV_AZURE_17: incoming client certificates are not used; callers authenticate to the HTTP API with function keys (or Easy Auth added by the operator), queue/timer triggers take no inbound HTTP.
  //checkov:skip=CKV_AZURE_15: minTlsVersion is '1.2' in the siteConfig union below, which checkov cannot evaluate; tests/infra asserts it on the evaluated template for both plans.
  //checkov:skip=CKV_AZURE_18: http20Enabled is true in the siteConfig union below, which checkov cannot evaluate; tests/infra asserts it on the evaluated template for both plans.
  name: name
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    keyVaultReferenceIdentity: identityId
    // outbound through the VNet to private Flexible Servers (docs/deploy.md "Private servers")
    virtualNetworkSubnetId: vnetIntegrated ? virtualNetworkSubnetId : null
    functionAppConfig: isFlex ? {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: flexMaximumInstanceCount
        instanceMemoryMB: flexInstanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    } : null
    // settings for both plans, plus the Dedicated-only ones (never on a Flex site, see dedicatedOnlySiteConfig)
    siteConfig: union({
      minTlsVersion: '1.2'
      http20Enabled: true
      remoteDebuggingEnabled: false
    }, isFlex ? {} : dedicatedOnlySiteConfig)
  }
}

// Publishing with basic (user/password) credentials is off: azd deploys with Entra ID tokens.
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

resource settings 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov reads every sites/config resource as the web config; this one is only the app settings dictionary.
  //checkov:skip=CKV_AZURE_13: App Service Authentication is the authsettingsV2 resource below (on when entraClientId is given); this resource is only the app settings dictionary.
  //checkov:skip=CKV_AZURE_63: HTTP logging is a web config property, not an app setting; the app logs to Application Insights.
  //checkov:skip=CKV_AZURE_65: detailed error pages are a web config property, not an app setting; not relevant to a Functions API.
  //checkov:skip=CKV_AZURE_66: failed request tracing is a web config property, not an app setting; requests are traced in Application Insights.
  //checkov:skip=CKV_AZURE_80: .NET Framework version does not apply to a Python app.
  //checkov:skip=CKV_AZURE_88: Azure Files content share does not apply: Flex deploys from a blob container and Dedicated runs from the zip package.
  parent: site
  name: 'appsettings'
  properties: appSettings
}

// Microsoft Entra callers (README "Who asked"): App Service built-in authentication validates the bearer token of the
// app registration in front of the app, answers 401 without one, strips clients' X-MS-* headers and passes the
// caller on as X-MS-CLIENT-PRINCIPAL*; the app reads the app roles from it. The keyed alert door is excluded: an action
// group's webhook carries a function key, not an Entra token. Tokens only (no login redirects, no token store).
resource auth 'Microsoft.Web/sites/config@2024-04-01' = if (!empty(entraClientId)) {
  // checkov reads every sites/config resource as the web config; this one is only the authentication settings.
  //checkov:skip=CKV_AZURE_13: this resource IS App Service Authentication (platform.enabled true, requireAuthentication true).
  //checkov:skip=CKV_AZURE_63: HTTP logging is a web config property, not an authentication setting; the app logs to Application Insights.
  //checkov:skip=CKV_AZURE_65: detailed error pages are a web config property, not an authentication setting.
  //checkov:skip=CKV_AZURE_66: failed request tracing is a web config property, not an authentication setting.
  //checkov:skip=CKV_AZURE_80: .NET Framework version does not apply to a Python app.
  //checkov:skip=CKV_AZURE_88: Azure Files content share does not apply: Flex deploys from a blob container and Dedicated runs from the zip package.
  parent: site
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'Return401'
      excludedPaths: authExcludedPaths
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: entraClientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${entraTenantId}/v2.0'
        }
        validation: {
          allowedAudiences: [
            'api://${entraClientId}'
            entraClientId
          ]
          defaultAuthorizationPolicy: {
            allowedApplications: entraAllowedClientApplications
          }
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
    httpSettings: {
      requireHttps: true
    }
  }
}

output id string = site.id
output name string = site.name
output uri string = 'https://${site.properties.defaultHostName}'
