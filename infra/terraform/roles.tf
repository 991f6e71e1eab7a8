# What the function app's system-assigned identity may do, each role at the narrowest scope that works, and the
# one role the deploying principal needs to write the secret values.

locals {
  app_principal_id = azurerm_function_app_flex_consumption.main.identity[0].principal_id

  # Role -> scope for the app's identity.
  app_roles = {
    # Plans, advice and evidence: read and write blobs of the one container, nothing else of the account.
    plans-blob = {
      role  = "Storage Blob Data Contributor"
      scope = azurerm_storage_container.plans.id
    }
    # Key Vault references: read secret values, never list keys or change anything.
    key-vault-secrets = {
      role  = "Key Vault Secrets User"
      scope = azurerm_key_vault.main.id
    }
    # The Functions host (keys, leases, the deployment package) and the Durable task hub's blobs.
    runtime-blob = {
      role  = "Storage Blob Data Owner"
      scope = azurerm_storage_account.runtime.id
    }
    # The Durable task hub's work-item and control queues.
    runtime-queue = {
      role  = "Storage Queue Data Contributor"
      scope = azurerm_storage_account.runtime.id
    }
    # The Durable task hub's history and instance tables.
    runtime-table = {
      role  = "Storage Table Data Contributor"
      scope = azurerm_storage_account.runtime.id
    }
    # Telemetry to Application Insights with Entra ID (local authentication is off).
    telemetry = {
      role  = "Monitoring Metrics Publisher"
      scope = azurerm_application_insights.main.id
    }
  }
}

resource "azurerm_role_assignment" "app" {
  for_each = local.app_roles

  scope                = each.value.scope
  role_definition_name = each.value.role
  principal_id         = local.app_principal_id
  principal_type       = "ServicePrincipal"
}

# The principal that runs Terraform writes the secret values after provisioning (docs/deploy.md).
resource "azurerm_role_assignment" "deployer_secrets_officer" {
  scope                = azurerm_key_vault.main.id
  role_definition_name = "Key Vault Secrets Officer"
  principal_id         = data.azurerm_client_config.current.object_id
}
