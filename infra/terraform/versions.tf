# Terraform and provider versions. Write-only arguments (the PostgreSQL administrator password never enters the
# state) need Terraform 1.11; `local_authentication_enabled` on Application Insights needs azurerm 4.78.
terraform {
  required_version = ">= 1.11.0"

  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = "~> 4.78"
    }
  }
}

provider "azurerm" {
  subscription_id     = var.subscription_id
  storage_use_azuread = true

  features {
    key_vault {
      purge_soft_delete_on_destroy    = false
      recover_soft_deleted_key_vaults = true
    }

    resource_group {
      prevent_deletion_if_contains_resources = true
    }

    storage {
      # Both storage accounts refuse public network access and shared keys; Terraform manages them and their
      # containers through Azure Resource Manager only, never through the blob/queue data plane.
      data_plane_available = false
    }
  }
}
