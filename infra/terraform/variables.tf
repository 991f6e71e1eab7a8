# Inputs of one IronLayer deployment. terraform.tfvars.example shows a complete set; docs/deploy.md explains them.

variable "subscription_id" {
  description = "ID of the Azure subscription to deploy into."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", var.subscription_id))
    error_message = "subscription_id must be a subscription GUID (az account show --query id -o tsv)."
  }
}

variable "name" {
  description = "Short name of the deployment (3-12 lower-case letters and digits, starting with a letter); every resource name is derived from it."
  type        = string
  default     = "ironlayer"

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{2,11}$", var.name))
    error_message = "name must be 3-12 lower-case letters and digits and start with a letter (it becomes part of storage account names)."
  }
}

variable "location" {
  description = "Azure region of every resource; it must offer the Flex Consumption plan (az functionapp list-flexconsumption-locations)."
  type        = string
}

variable "tags" {
  description = "Tags added to every resource that takes tags."
  type        = map(string)
  default     = {}
}

variable "vnet_address_space" {
  description = "Address space of the deployment's virtual network (a /16 or larger): one /24 for the function app's outbound integration, one /24 for the private endpoints."
  type        = string
  default     = "10.60.0.0/16"

  validation {
    condition     = can(cidrsubnet(var.vnet_address_space, 8, 2))
    error_message = "vnet_address_space must be an IPv4 CIDR of /16 or larger, such as 10.60.0.0/16."
  }
}

variable "operator_tenant" {
  description = "IronLayer tenant of the operator (IRONLAYER_TENANT): its admins may onboard other tenants through POST /api/admin/tenants."
  type        = string
  default     = "operator"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9_-]{0,62}$", var.operator_tenant))
    error_message = "operator_tenant must be 1-63 lower-case letters, digits, '_' or '-', starting with a letter or digit."
  }
}

variable "public_base_url" {
  description = "Public https:// URL of the app that approval links point to (IRONLAYER_PUBLIC_BASE_URL); empty means https://<function app name>.azurewebsites.net."
  type        = string
  default     = ""

  validation {
    condition     = var.public_base_url == "" || can(regex("^https://[^/]+$", var.public_base_url))
    error_message = "public_base_url must be empty or an https:// origin without a path or trailing slash."
  }
}

variable "approval_ttl_hours" {
  description = "Hours an approval link stays valid (IRONLAYER_APPROVAL_TTL_HOURS), from 1 to 168."
  type        = number
  default     = 24

  validation {
    condition     = var.approval_ttl_hours >= 1 && var.approval_ttl_hours <= 168 && floor(var.approval_ttl_hours) == var.approval_ttl_hours
    error_message = "approval_ttl_hours must be a whole number from 1 to 168."
  }
}

variable "task_hub_name" {
  description = "Name of the Durable Functions task hub (IRONLAYER_TASK_HUB, read by host.json); change it to run a second deployment on the same storage or to start from an empty hub on upgrade."
  type        = string
  default     = "IronLayerHub"

  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9]{2,44}$", var.task_hub_name))
    error_message = "task_hub_name must be 3-45 letters and digits, starting with a letter."
  }
}

variable "maximum_instance_count" {
  description = "Most instances the Flex Consumption app scales out to (1 to 1000); each holds at most 4 PostgreSQL connections."
  type        = number
  default     = 40

  validation {
    condition     = var.maximum_instance_count >= 1 && var.maximum_instance_count <= 1000 && floor(var.maximum_instance_count) == var.maximum_instance_count
    error_message = "maximum_instance_count must be a whole number from 1 to 1000."
  }
}

variable "instance_memory_mb" {
  description = "Memory of each Flex Consumption instance in MB: 512, 2048 or 4096."
  type        = number
  default     = 2048

  validation {
    condition     = contains([512, 2048, 4096], var.instance_memory_mb)
    error_message = "instance_memory_mb must be 512, 2048 or 4096."
  }
}

variable "zone_redundant" {
  description = "Spread the function app's instances over availability zones; only in regions where Flex Consumption offers zone redundancy (fixed when the plan is created)."
  type        = bool
  default     = false
}

variable "always_ready_instances" {
  description = "Always-ready instances per Flex Consumption scale group: `http` serves every HTTP function, the GitHub webhook included (one instance keeps its answer well within GitHub's 10 s), `durable` the orchestrator and activities, `function:<name>` a single function of its own group. Zero for none."
  type        = map(number)
  default = {
    http = 1
  }

  validation {
    condition = alltrue([
      for group, count in var.always_ready_instances :
      (contains(["http", "durable", "blob"], group) || can(regex("^function:[A-Za-z_][A-Za-z0-9_]*$", group))) && count >= 0 && floor(count) == count
    ])
    error_message = "always_ready_instances keys must be http, durable, blob or function:<name>, with whole, non-negative counts."
  }
}

variable "entra_client_id" {
  description = "Application (client) ID of the Entra ID app registration that signs users in to App Service Authentication; API tokens carry it as their audience (IRONLAYER_AUTH_AUDIENCE)."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", var.entra_client_id))
    error_message = "entra_client_id must be the application (client) ID GUID of the app registration."
  }
}

variable "entra_tenant_id" {
  description = "Entra ID tenant that issues sign-ins and API tokens; empty means the tenant Terraform runs in."
  type        = string
  default     = ""

  validation {
    condition     = var.entra_tenant_id == "" || can(regex("^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", var.entra_tenant_id))
    error_message = "entra_tenant_id must be empty or a tenant GUID."
  }
}

variable "key_vault_allowed_ip_ranges" {
  description = "Public IPv4 addresses or CIDR ranges allowed to reach the Key Vault over the internet, for operators who write the secret values; empty (the default) turns public network access off, and the app reads the vault through its private endpoint."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for range in var.key_vault_allowed_ip_ranges : can(cidrhost(strcontains(range, "/") ? range : "${range}/32", 0)) && !startswith(range, "0.0.0.0")])
    error_message = "key_vault_allowed_ip_ranges must list IPv4 addresses or CIDR ranges, never 0.0.0.0."
  }
}

variable "postgres_sku_name" {
  description = "SKU of the PostgreSQL Flexible Server (tier_family_size, such as GP_Standard_D2ds_v5 or B_Standard_B2s)."
  type        = string
  default     = "GP_Standard_D2ds_v5"
}

variable "postgres_storage_mb" {
  description = "Storage of the PostgreSQL Flexible Server in MB (32768 and up, grows automatically)."
  type        = number
  default     = 32768
}

variable "postgres_admin_login" {
  description = "Login of the PostgreSQL administrator, used only to create the IronLayer roles (docs/deploy.md)."
  type        = string
  default     = "ironlayeradmin"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{2,62}$", var.postgres_admin_login)) && !contains(["admin", "administrator", "root", "postgres", "azure_superuser", "azure_pg_admin", "guest", "public"], var.postgres_admin_login)
    error_message = "postgres_admin_login must be 3-63 lower-case letters, digits or '_' and not a reserved name (admin, root, postgres, ...)."
  }
}

variable "postgres_admin_password" {
  description = "Password of the PostgreSQL administrator. Write-only: it is sent to Azure and never stored in the Terraform state or plan; pass it as TF_VAR_postgres_admin_password."
  type        = string
  sensitive   = true
  ephemeral   = true
}

variable "postgres_admin_password_version" {
  description = "Increase by one to send a changed postgres_admin_password to the server (write-only values are only sent when this changes)."
  type        = number
  default     = 1
}

variable "postgres_backup_retention_days" {
  description = "Days of point-in-time-restore backups of the PostgreSQL server, from 7 to 35."
  type        = number
  default     = 35

  validation {
    condition     = var.postgres_backup_retention_days >= 7 && var.postgres_backup_retention_days <= 35
    error_message = "postgres_backup_retention_days must be from 7 to 35."
  }
}

variable "postgres_geo_redundant_backup" {
  description = "Keep the PostgreSQL backups geo-redundant (restorable in the paired region); fixed when the server is created."
  type        = bool
  default     = true
}

variable "postgres_high_availability" {
  description = "Run a zone-redundant standby of the PostgreSQL server (not available on Burstable SKUs)."
  type        = bool
  default     = false
}

variable "postgres_firewall_rules" {
  description = "Named public IPv4 ranges allowed to reach PostgreSQL over the internet (for example an operator running migrations); empty (the default) turns public network access off, and the app reaches the server through its private endpoint."
  type = map(object({
    start_ip_address = string
    end_ip_address   = string
  }))
  default = {}

  validation {
    condition = alltrue([
      for name, rule in var.postgres_firewall_rules :
      can(regex("^[A-Za-z0-9_-]{1,80}$", name)) && can(cidrhost("${rule.start_ip_address}/32", 0)) && can(cidrhost("${rule.end_ip_address}/32", 0)) && rule.start_ip_address != "0.0.0.0"
    ])
    error_message = "postgres_firewall_rules need names of letters, digits, '_' or '-' and IPv4 addresses; 0.0.0.0 (every Azure service) is refused."
  }
}

variable "plans_blob_retention_days" {
  description = "Days a deleted or overwritten plan, advice or evidence blob can still be restored (blob soft delete and versioning)."
  type        = number
  default     = 30

  validation {
    condition     = var.plans_blob_retention_days >= 7 && var.plans_blob_retention_days <= 365
    error_message = "plans_blob_retention_days must be from 7 to 365."
  }
}

variable "log_retention_days" {
  description = "Days Log Analytics keeps the app's telemetry and the resources' diagnostic logs (30 to 730)."
  type        = number
  default     = 90

  validation {
    condition     = var.log_retention_days >= 30 && var.log_retention_days <= 730
    error_message = "log_retention_days must be from 30 to 730."
  }
}
