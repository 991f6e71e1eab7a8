# One IronLayer deployment: names, the resource group, the virtual network that keeps the data services
# private, and monitoring. Storage, Key Vault, PostgreSQL and the function app have files of their own.

data "azurerm_client_config" "current" {}

locals {
  # A stable six-character suffix makes the globally unique names (storage, vault, server, app) unique per
  # subscription and deployment name without a random provider.
  suffix = substr(sha256("${var.subscription_id}/${var.name}"), 0, 6)

  resource_group_name  = "rg-${var.name}"
  function_app_name    = "func-${var.name}-${local.suffix}"
  runtime_storage_name = "st${var.name}rt${local.suffix}"
  plans_storage_name   = "st${var.name}pl${local.suffix}"
  key_vault_name       = "kv-${var.name}-${local.suffix}"
  postgres_server_name = "psql-${var.name}-${local.suffix}"
  entra_tenant_id      = var.entra_tenant_id != "" ? var.entra_tenant_id : data.azurerm_client_config.current.tenant_id
  public_base_url      = var.public_base_url != "" ? var.public_base_url : "https://${local.function_app_name}.azurewebsites.net"

  tags = merge(var.tags, {
    application = "ironlayer"
    deployment  = var.name
  })
}

resource "azurerm_resource_group" "main" {
  name     = local.resource_group_name
  location = var.location
  tags     = local.tags
}

# The function app sends all its outbound traffic through `app` (to the internet through the NAT gateway, so
# GitHub, Databricks and Stripe see one fixed address); PostgreSQL, Key Vault and both storage accounts are
# reachable only through their private endpoints in `private_endpoints` (private_endpoints.tf).
resource "azurerm_virtual_network" "main" {
  name                = "vnet-${var.name}"
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  address_space       = [var.vnet_address_space]
  tags                = local.tags
}

resource "azurerm_subnet" "app" {
  name                            = "snet-app"
  resource_group_name             = azurerm_resource_group.main.name
  virtual_network_name            = azurerm_virtual_network.main.name
  address_prefixes                = [cidrsubnet(var.vnet_address_space, 8, 1)]
  default_outbound_access_enabled = false

  delegation {
    name = "flex-consumption"

    service_delegation {
      name    = "Microsoft.App/environments"
      actions = ["Microsoft.Network/virtualNetworks/subnets/join/action"]
    }
  }
}

resource "azurerm_subnet" "private_endpoints" {
  name                            = "snet-private-endpoints"
  resource_group_name             = azurerm_resource_group.main.name
  virtual_network_name            = azurerm_virtual_network.main.name
  address_prefixes                = [cidrsubnet(var.vnet_address_space, 8, 2)]
  default_outbound_access_enabled = false
}

resource "azurerm_network_security_group" "main" {
  name                = "nsg-${var.name}"
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  tags                = local.tags
}

resource "azurerm_subnet_network_security_group_association" "app" {
  subnet_id                 = azurerm_subnet.app.id
  network_security_group_id = azurerm_network_security_group.main.id
}

resource "azurerm_subnet_network_security_group_association" "private_endpoints" {
  subnet_id                 = azurerm_subnet.private_endpoints.id
  network_security_group_id = azurerm_network_security_group.main.id
}

resource "azurerm_public_ip" "egress" {
  name                = "pip-${var.name}-egress"
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  allocation_method   = "Static"
  sku                 = "Standard"
  tags                = local.tags
}

resource "azurerm_nat_gateway" "egress" {
  name                = "ng-${var.name}"
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  sku_name            = "Standard"
  tags                = local.tags
}

resource "azurerm_nat_gateway_public_ip_association" "egress" {
  nat_gateway_id       = azurerm_nat_gateway.egress.id
  public_ip_address_id = azurerm_public_ip.egress.id
}

resource "azurerm_subnet_nat_gateway_association" "app" {
  subnet_id      = azurerm_subnet.app.id
  nat_gateway_id = azurerm_nat_gateway.egress.id
}

resource "azurerm_log_analytics_workspace" "main" {
  name                = "log-${var.name}"
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  sku                 = "PerGB2018"
  retention_in_days   = var.log_retention_days
  tags                = local.tags
}

# Local (instrumentation-key) authentication is off: the app's identity sends telemetry with Entra ID
# (APPLICATIONINSIGHTS_AUTHENTICATION_STRING and the Monitoring Metrics Publisher role).
resource "azurerm_application_insights" "main" {
  name                         = "appi-${var.name}"
  resource_group_name          = azurerm_resource_group.main.name
  location                     = azurerm_resource_group.main.location
  application_type             = "other"
  workspace_id                 = azurerm_log_analytics_workspace.main.id
  local_authentication_enabled = false
  retention_in_days            = var.log_retention_days
  tags                         = local.tags
}
