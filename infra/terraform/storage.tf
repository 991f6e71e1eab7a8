# Two storage accounts, kept apart on purpose:
# - `runtime`: what the Functions platform needs to run the app: the host's own storage (AzureWebJobsStorage:
#   keys, timer and singleton leases), the Durable task hub (queues, tables and blobs of IRONLAYER_TASK_HUB)
#   and the deployment package container. Operational, high-churn, rebuildable.
# - `plans`: the tenants' data (plans, advice, evidence, logs under tenants/<tenant>/), with versioning and
#   soft delete. The app's identity may read and write only its one container, and nothing of the task hub's
#   queues or tables can reach it.
# Both refuse public network access, shared keys and anonymous blobs; the app reaches them through private
# endpoints with its managed identity.

resource "azurerm_storage_account" "runtime" {
  #checkov:skip=CKV2_AZURE_1:The task hub and package hold no customer data; Microsoft-managed keys plus infrastructure encryption
  #checkov:skip=CKV_AZURE_33:Classic queue logging needs the data plane with shared keys, which is off; logs go through a diagnostic setting
  name                              = local.runtime_storage_name
  resource_group_name               = azurerm_resource_group.main.name
  location                          = azurerm_resource_group.main.location
  account_kind                      = "StorageV2"
  account_tier                      = "Standard"
  account_replication_type          = "GZRS"
  min_tls_version                   = "TLS1_2"
  https_traffic_only_enabled        = true
  allow_nested_items_to_be_public   = false
  shared_access_key_enabled         = false
  public_network_access_enabled     = false
  default_to_oauth_authentication   = true
  local_user_enabled                = false
  sftp_enabled                      = false
  cross_tenant_replication_enabled  = false
  infrastructure_encryption_enabled = true
  tags                              = local.tags

  network_rules {
    default_action = "Deny"
    bypass         = ["AzureServices"]
  }

  blob_properties {
    delete_retention_policy {
      days = 7
    }

    container_delete_retention_policy {
      days = 7
    }
  }

  sas_policy {
    expiration_period = "00.01:00:00"
  }
}

resource "azurerm_storage_container" "package" {
  #checkov:skip=CKV2_AZURE_21:Storage Insights needs an account key and shared keys are off; the diagnostic setting below logs blob reads
  name                  = "app-package"
  storage_account_id    = azurerm_storage_account.runtime.id
  container_access_type = "private"
}

resource "azurerm_storage_account" "plans" {
  #checkov:skip=CKV2_AZURE_1:Microsoft-managed keys plus infrastructure encryption; a customer-managed key can be added without changing the app
  #checkov:skip=CKV_AZURE_33:The plans account has no queues; classic queue logging also needs shared keys, which are off
  name                              = local.plans_storage_name
  resource_group_name               = azurerm_resource_group.main.name
  location                          = azurerm_resource_group.main.location
  account_kind                      = "StorageV2"
  account_tier                      = "Standard"
  account_replication_type          = "GZRS"
  min_tls_version                   = "TLS1_2"
  https_traffic_only_enabled        = true
  allow_nested_items_to_be_public   = false
  shared_access_key_enabled         = false
  public_network_access_enabled     = false
  default_to_oauth_authentication   = true
  local_user_enabled                = false
  sftp_enabled                      = false
  cross_tenant_replication_enabled  = false
  infrastructure_encryption_enabled = true
  tags                              = local.tags

  network_rules {
    default_action = "Deny"
    bypass         = ["AzureServices"]
  }

  blob_properties {
    versioning_enabled = true

    delete_retention_policy {
      days = var.plans_blob_retention_days
    }

    container_delete_retention_policy {
      days = var.plans_blob_retention_days
    }
  }

  sas_policy {
    expiration_period = "00.01:00:00"
  }
}

resource "azurerm_storage_container" "plans" {
  #checkov:skip=CKV2_AZURE_21:Storage Insights needs an account key and shared keys are off; the diagnostic setting below logs blob reads
  name                  = "plans"
  storage_account_id    = azurerm_storage_account.plans.id
  container_access_type = "private"
}

# Who read, wrote or deleted what: every blob request of both accounts (reads, writes and deletes), and the
# audit logs of the task hub's queues and tables (their routine polling would cost more than it tells).
resource "azurerm_monitor_diagnostic_setting" "storage" {
  for_each = {
    runtime-blob  = { service = "${azurerm_storage_account.runtime.id}/blobServices/default", logs = "allLogs" }
    runtime-queue = { service = "${azurerm_storage_account.runtime.id}/queueServices/default", logs = "audit" }
    runtime-table = { service = "${azurerm_storage_account.runtime.id}/tableServices/default", logs = "audit" }
    plans-blob    = { service = "${azurerm_storage_account.plans.id}/blobServices/default", logs = "allLogs" }
  }

  name                       = "logs-${each.key}"
  target_resource_id         = each.value.service
  log_analytics_workspace_id = azurerm_log_analytics_workspace.main.id

  enabled_log {
    category_group = each.value.logs
  }
}
