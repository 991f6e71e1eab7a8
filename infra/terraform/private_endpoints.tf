# Private endpoints of the data services in the `private_endpoints` subnet, with the private DNS zones that make
# their usual host names resolve to those endpoints inside the virtual network.

locals {
  private_dns_zones = {
    blob     = "privatelink.blob.core.windows.net"
    queue    = "privatelink.queue.core.windows.net"
    table    = "privatelink.table.core.windows.net"
    vault    = "privatelink.vaultcore.azure.net"
    postgres = "privatelink.postgres.database.azure.com"
  }

  # Endpoint -> the resource, its sub-resource and the DNS zone its address is registered in.
  private_endpoints = {
    runtime-blob = {
      resource_id = azurerm_storage_account.runtime.id
      subresource = "blob"
      zone        = "blob"
    }
    runtime-queue = {
      resource_id = azurerm_storage_account.runtime.id
      subresource = "queue"
      zone        = "queue"
    }
    runtime-table = {
      resource_id = azurerm_storage_account.runtime.id
      subresource = "table"
      zone        = "table"
    }
    plans-blob = {
      resource_id = azurerm_storage_account.plans.id
      subresource = "blob"
      zone        = "blob"
    }
    key-vault = {
      resource_id = azurerm_key_vault.main.id
      subresource = "vault"
      zone        = "vault"
    }
    postgres = {
      resource_id = azurerm_postgresql_flexible_server.main.id
      subresource = "postgresqlServer"
      zone        = "postgres"
    }
  }
}

resource "azurerm_private_dns_zone" "main" {
  for_each = local.private_dns_zones

  name                = each.value
  resource_group_name = azurerm_resource_group.main.name
  tags                = local.tags
}

resource "azurerm_private_dns_zone_virtual_network_link" "main" {
  for_each = local.private_dns_zones

  name                  = "link-${each.key}"
  resource_group_name   = azurerm_resource_group.main.name
  private_dns_zone_name = azurerm_private_dns_zone.main[each.key].name
  virtual_network_id    = azurerm_virtual_network.main.id
  tags                  = local.tags
}

resource "azurerm_private_endpoint" "main" {
  for_each = local.private_endpoints

  name                = "pe-${var.name}-${each.key}"
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  subnet_id           = azurerm_subnet.private_endpoints.id
  tags                = local.tags

  private_service_connection {
    name                           = "psc-${each.key}"
    private_connection_resource_id = each.value.resource_id
    subresource_names              = [each.value.subresource]
    is_manual_connection           = false
  }

  private_dns_zone_group {
    name                 = "dns-${each.key}"
    private_dns_zone_ids = [azurerm_private_dns_zone.main[each.value.zone].id]
  }
}
