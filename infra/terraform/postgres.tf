# PostgreSQL 16, the state store. TLS 1.2 or later is required on every connection. The app reaches the server
# through its private endpoint (private_endpoints.tf); the internet reaches it only through the named rules of
# postgres_firewall_rules, and with none (the default) public network access is off. The administrator only
# creates the IronLayer roles (docs/deploy.md): migrations run as ironlayer_owner, the app connects as
# ironlayer_app, which row-level security binds to one tenant per transaction.

resource "azurerm_postgresql_flexible_server" "main" {
  name                              = local.postgres_server_name
  resource_group_name               = azurerm_resource_group.main.name
  location                          = azurerm_resource_group.main.location
  version                           = "16"
  sku_name                          = var.postgres_sku_name
  storage_mb                        = var.postgres_storage_mb
  auto_grow_enabled                 = true
  administrator_login               = var.postgres_admin_login
  administrator_password_wo         = var.postgres_admin_password
  administrator_password_wo_version = var.postgres_admin_password_version
  backup_retention_days             = var.postgres_backup_retention_days
  geo_redundant_backup_enabled      = var.postgres_geo_redundant_backup
  public_network_access_enabled     = length(var.postgres_firewall_rules) > 0
  tags                              = local.tags

  authentication {
    active_directory_auth_enabled = false
    password_auth_enabled         = true
  }

  dynamic "high_availability" {
    for_each = var.postgres_high_availability ? ["ZoneRedundant"] : []

    content {
      mode = high_availability.value
    }
  }

  maintenance_window {
    day_of_week  = 0
    start_hour   = 3
    start_minute = 0
  }

  lifecycle {
    # Azure places the server (and its standby) in a zone and swaps them on failover.
    ignore_changes = [zone, high_availability[0].standby_availability_zone]
  }
}

resource "azurerm_postgresql_flexible_server_configuration" "require_secure_transport" {
  name      = "require_secure_transport"
  server_id = azurerm_postgresql_flexible_server.main.id
  value     = "on"
}

resource "azurerm_postgresql_flexible_server_configuration" "ssl_min_protocol_version" {
  name      = "ssl_min_protocol_version"
  server_id = azurerm_postgresql_flexible_server.main.id
  value     = "TLSv1.2"
}

resource "azurerm_postgresql_flexible_server_database" "ironlayer" {
  name      = "ironlayer"
  server_id = azurerm_postgresql_flexible_server.main.id
  charset   = "UTF8"
  collation = "en_US.utf8"

  lifecycle {
    prevent_destroy = true
  }
}

resource "azurerm_postgresql_flexible_server_firewall_rule" "named" {
  for_each = var.postgres_firewall_rules

  name             = each.key
  server_id        = azurerm_postgresql_flexible_server.main.id
  start_ip_address = each.value.start_ip_address
  end_ip_address   = each.value.end_ip_address
}

resource "azurerm_monitor_diagnostic_setting" "postgres" {
  name                       = "logs-postgres"
  target_resource_id         = azurerm_postgresql_flexible_server.main.id
  log_analytics_workspace_id = azurerm_log_analytics_workspace.main.id

  enabled_log {
    category_group = "allLogs"
  }
}
