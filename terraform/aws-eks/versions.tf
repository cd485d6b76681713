terraform {
  # 1.9: validations that refer to other variables.
  required_version = ">= 1.9.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.90"
    }
  }
}

# Credentials come from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
# AWS_SESSION_TOKEN): Fleetplane passes a short-lived STS session.
provider "aws" {
  region = var.region

  default_tags {
    tags = {
      "fleetplane.io/cluster" = var.cluster_name
      "fleetplane.io/managed" = "true"
    }
  }
}
