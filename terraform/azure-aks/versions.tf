terraform {
  # 1.9: validations that refer to other variables.
  required_version = ">= 1.9.0"

  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = "~> 4.20"
    }
  }
}

# Credentials and subscription come from the environment (ARM_TENANT_ID, ARM_CLIENT_ID,
# ARM_CLIENT_SECRET, ARM_SUBSCRIPTION_ID).
provider "azurerm" {
  features {}
}

data "azurerm_client_config" "current" {}
