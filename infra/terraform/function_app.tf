# The IronLayer Functions app on a Flex Consumption plan: Python 3.11, a system-assigned identity for every
# Azure service it uses (storage, Key Vault, Application Insights), secrets only as Key Vault references, all
# outbound traffic through the virtual network, and App Service Authentication (Entra ID) in front of every
# route except the two webhooks, which verify their own signatures.

locals {
  # The routes that authenticate their caller by a signature over the request body instead of a sign-in:
  # GitHub's X-Hub-Signature-256 (functions/webhook.py) and Stripe's Stripe-Signature (the billing blueprint).
  signature_verified_paths = ["/api/github/webhook", "/api/stripe/webhook"]

  app_settings = {
    # Host storage and the Durable task hub, by managed identity. The empty AzureWebJobsStorage replaces the
    # key-based connection string that azurerm writes for Flex Consumption apps even when the identity is used
    # (hashicorp/terraform-provider-azurerm#29693); the host then connects with the two settings below it. Until
    # the provider is fixed, every plan shows this setting being added back: that change is expected.
    AzureWebJobsStorage                       = ""
    AzureWebJobsStorage__accountName          = azurerm_storage_account.runtime.name
    AzureWebJobsStorage__credential           = "managedidentity"
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING = "Authorization=AAD"

    # App Service Authentication is on (auth_settings_v2 below): the platform strips X-MS-CLIENT-PRINCIPAL from
    # requests and sets it for signed-in users, so the app may trust it to identify who decides a plan.
    IRONLAYER_APP_SERVICE_AUTH = "true"

    IRONLAYER_ENVIRONMENT        = "production"
    IRONLAYER_TASK_HUB           = var.task_hub_name
    IRONLAYER_TENANT             = var.operator_tenant
    IRONLAYER_HOME               = "/tmp/ironlayer"
    IRONLAYER_BLOB_ACCOUNT_URL   = azurerm_storage_account.plans.primary_blob_endpoint
    IRONLAYER_BLOB_CONTAINER     = azurerm_storage_container.plans.name
    IRONLAYER_PUBLIC_BASE_URL    = local.public_base_url
    IRONLAYER_APPROVAL_TTL_HOURS = tostring(var.approval_ttl_hours)
    IRONLAYER_ENGINE             = "databricks"
    IRONLAYER_AUTH_MODE          = "oidc"
    IRONLAYER_AUTH_ISSUER        = "https://login.microsoftonline.com/${local.entra_tenant_id}/v2.0"
    IRONLAYER_AUTH_AUDIENCE      = var.entra_client_id
    IRONLAYER_OIDC_JWKS_URL      = "https://login.microsoftonline.com/${local.entra_tenant_id}/discovery/v2.0/keys"
  }
}

resource "azurerm_service_plan" "main" {
  #checkov:skip=CKV_AZURE_212:worker_count does not apply to Flex Consumption, which scales per function group; always_ready_instances keeps instances warm
  #checkov:skip=CKV_AZURE_225:Zone redundancy of a Flex Consumption plan is offered in some regions only; zone_redundant turns it on where it is
  name                   = "asp-${var.name}"
  resource_group_name    = azurerm_resource_group.main.name
  location               = azurerm_resource_group.main.location
  os_type                = "Linux"
  sku_name               = "FC1"
  zone_balancing_enabled = var.zone_redundant
  tags                   = local.tags
}

resource "azurerm_function_app_flex_consumption" "main" {
  name                                           = local.function_app_name
  resource_group_name                            = azurerm_resource_group.main.name
  location                                       = azurerm_resource_group.main.location
  service_plan_id                                = azurerm_service_plan.main.id
  runtime_name                                   = "python"
  runtime_version                                = "3.11"
  maximum_instance_count                         = var.maximum_instance_count
  instance_memory_in_mb                          = var.instance_memory_mb
  storage_container_type                         = "blobContainer"
  storage_container_endpoint                     = "${azurerm_storage_account.runtime.primary_blob_endpoint}${azurerm_storage_container.package.name}"
  storage_authentication_type                    = "SystemAssignedIdentity"
  https_only                                     = true
  public_network_access_enabled                  = true
  webdeploy_publish_basic_authentication_enabled = false
  virtual_network_subnet_id                      = azurerm_subnet.app.id
  app_settings                                   = merge(local.app_settings, local.key_vault_references)
  tags                                           = local.tags

  identity {
    type = "SystemAssigned"
  }

  dynamic "always_ready" {
    for_each = var.always_ready_instances

    content {
      name           = always_ready.key
      instance_count = always_ready.value
    }
  }

  site_config {
    application_insights_connection_string = azurerm_application_insights.main.connection_string
    minimum_tls_version                    = "1.2"
    scm_minimum_tls_version                = "1.2"
    http2_enabled                          = true
    remote_debugging_enabled               = false
    vnet_route_all_enabled                 = true
  }

  auth_settings_v2 {
    auth_enabled           = true
    require_authentication = true
    require_https          = true
    unauthenticated_action = "RedirectToLoginPage"
    default_provider       = "azureactivedirectory"
    excluded_paths         = local.signature_verified_paths

    active_directory_v2 {
      client_id                  = var.entra_client_id
      tenant_auth_endpoint       = "https://login.microsoftonline.com/${local.entra_tenant_id}/v2.0/"
      client_secret_setting_name = "MICROSOFT_PROVIDER_AUTHENTICATION_SECRET"
      allowed_audiences          = [var.entra_client_id, "api://${var.entra_client_id}"]
    }

    login {
      token_store_enabled = false
    }
  }
}
