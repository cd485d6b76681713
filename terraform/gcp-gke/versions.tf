terraform {
  # 1.9: validations that refer to other variables.
  required_version = ">= 1.9.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.20"
    }
  }
}

# Credentials and project come from the environment (GOOGLE_CREDENTIALS or
# GOOGLE_OAUTH_ACCESS_TOKEN, GOOGLE_PROJECT): Fleetplane passes a short-lived access token.
provider "google" {
  region = var.region

  default_labels = {
    "fleetplane-io-cluster" = var.cluster_name
    "fleetplane-io-managed" = "true"
  }
}

data "google_client_config" "current" {}

locals {
  project = data.google_client_config.current.project
}
