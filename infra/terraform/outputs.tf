# What the operator needs after `terraform apply` (docs/deploy.md uses every one of these).

output "resource_group_name" {
  description = "Resource group that holds the whole deployment."
  value       = azurerm_resource_group.main.name
}

output "function_app_name" {
  description = "Name of the Flex Consumption function app (the target of `az functionapp deployment source config-zip`)."
  value       = azurerm_function_app_flex_consumption.main.name
}

output "function_app_hostname" {
  description = "Default host name of the function app."
  value       = azurerm_function_app_flex_consumption.main.default_hostname
}

output "function_app_principal_id" {
  description = "Object ID of the function app's system-assigned identity (the principal of its role assignments)."
  value       = local.app_principal_id
}

output "public_base_url" {
  description = "Origin that approval links point to (IRONLAYER_PUBLIC_BASE_URL)."
  value       = local.public_base_url
}

output "github_webhook_url" {
  description = "Payload URL of the GitHub App or repository webhook (content type application/json)."
  value       = "${local.public_base_url}/api/github/webhook"
}

output "stripe_webhook_url" {
  description = "Endpoint URL to register in Stripe for the billing webhook."
  value       = "${local.public_base_url}/api/stripe/webhook"
}

output "auth_redirect_uri" {
  description = "Web redirect URI to register on the Entra ID app registration for App Service Authentication."
  value       = "${local.public_base_url}/.auth/login/aad/callback"
}

output "signature_verified_paths" {
  description = "Routes that App Service Authentication lets through unauthenticated because they verify a webhook signature themselves."
  value       = local.signature_verified_paths
}

output "egress_ip_address" {
  description = "Public IPv4 address all of the app's outbound internet traffic leaves from (for Databricks or GitHub Enterprise IP allow lists)."
  value       = azurerm_public_ip.egress.ip_address
}

output "key_vault_name" {
  description = "Name of the Key Vault that holds the app's secrets."
  value       = azurerm_key_vault.main.name
}

output "key_vault_secret_names" {
  description = "App setting -> name of the Key Vault secret the operator must set for it."
  value       = local.key_vault_secrets
}

output "postgres_server_fqdn" {
  description = "Host name of the PostgreSQL Flexible Server (resolves to its private endpoint inside the virtual network)."
  value       = azurerm_postgresql_flexible_server.main.fqdn
}

output "postgres_database_name" {
  description = "Name of the IronLayer database on the server."
  value       = azurerm_postgresql_flexible_server_database.ironlayer.name
}

output "postgres_admin_login" {
  description = "Login of the PostgreSQL administrator (its password is write-only and not in the state)."
  value       = azurerm_postgresql_flexible_server.main.administrator_login
}

output "plans_storage_account_name" {
  description = "Storage account of the plans container."
  value       = azurerm_storage_account.plans.name
}

output "plans_container_url" {
  description = "URL of the private plans container (IRONLAYER_BLOB_ACCOUNT_URL plus IRONLAYER_BLOB_CONTAINER)."
  value       = "${azurerm_storage_account.plans.primary_blob_endpoint}${azurerm_storage_container.plans.name}"
}

output "runtime_storage_account_name" {
  description = "Storage account of the Functions host, the Durable task hub and the deployment package."
  value       = azurerm_storage_account.runtime.name
}

output "task_hub_name" {
  description = "Name of the Durable Functions task hub (IRONLAYER_TASK_HUB)."
  value       = var.task_hub_name
}

output "application_insights_name" {
  description = "Application Insights resource that receives the app's logs and traces."
  value       = azurerm_application_insights.main.name
}
