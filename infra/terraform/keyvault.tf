# The deployment's secrets. Access is by Azure RBAC only (no access policies); deleted secrets and the vault
# itself stay recoverable for 90 days and cannot be purged early. Terraform creates the vault but never the
# secret values, so no secret ever enters the Terraform state: the operator writes them (docs/deploy.md) and
# the app reads them through Key Vault references in its app settings (function_app.tf).

locals {
  # App setting -> name of the secret it is read from.
  key_vault_secrets = {
    IRONLAYER_DATABASE_URL                   = "database-url"
    IRONLAYER_GITHUB_WEBHOOK_SECRET          = "github-webhook-secret"
    IRONLAYER_APPROVAL_SECRET                = "approval-secret"
    IRONLAYER_CREDENTIAL_KEYS                = "credential-keys"
    IRONLAYER_STRIPE_WEBHOOK_SECRET          = "stripe-webhook-secret"
    IRONLAYER_STRIPE_API_KEY                 = "stripe-api-key"
    MICROSOFT_PROVIDER_AUTHENTICATION_SECRET = "entra-client-secret"
  }

  # Versionless references: a new secret version is picked up by the app within a day, or at once on restart.
  key_vault_references = {
    for setting, secret in local.key_vault_secrets :
    setting => "@Microsoft.KeyVault(SecretUri=${azurerm_key_vault.main.vault_uri}secrets/${secret}/)"
  }
}

resource "azurerm_key_vault" "main" {
  #checkov:skip=CKV_AZURE_189:Public access is on only while key_vault_allowed_ip_ranges lists operator addresses, and then only for them (network_acls deny the rest); off by default, as tests/infra checks
  name                          = local.key_vault_name
  resource_group_name           = azurerm_resource_group.main.name
  location                      = azurerm_resource_group.main.location
  tenant_id                     = data.azurerm_client_config.current.tenant_id
  sku_name                      = "standard"
  rbac_authorization_enabled    = true
  purge_protection_enabled      = true
  soft_delete_retention_days    = 90
  public_network_access_enabled = length(var.key_vault_allowed_ip_ranges) > 0
  tags                          = local.tags

  network_acls {
    default_action = "Deny"
    bypass         = "AzureServices"
    ip_rules       = var.key_vault_allowed_ip_ranges
  }
}

resource "azurerm_monitor_diagnostic_setting" "key_vault" {
  name                       = "logs-key-vault"
  target_resource_id         = azurerm_key_vault.main.id
  log_analytics_workspace_id = azurerm_log_analytics_workspace.main.id

  enabled_log {
    category_group = "audit"
  }
}
