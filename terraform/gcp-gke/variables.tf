# The cluster spec, as Fleetplane validated it (DESIGN.md, "Clusters and runs").

variable "cluster_name" {
  description = "DNS-1123 name of the cluster."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.cluster_name))
    error_message = "cluster_name must be a DNS-1123 label: lowercase letters, digits and '-', at most 63 characters."
  }
}

variable "region" {
  description = "Google Cloud region, e.g. \"europe-west1\"; the cluster is regional."
  type        = string
}

variable "kubernetes_version" {
  description = "Kubernetes minor version, e.g. \"1.31\"."
  type        = string

  validation {
    condition     = can(regex("^1\\.[0-9]+$", var.kubernetes_version))
    error_message = "kubernetes_version must be a minor version such as \"1.31\"."
  }
}

variable "vpc_cidr" {
  description = "Address range of the VPC network; firewall rules allow traffic inside it."
  type        = string

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0))
    error_message = "vpc_cidr must be a CIDR block."
  }
}

variable "public_subnets" {
  description = "Address ranges of the public subnetworks, for instances with external addresses (bastions, proxies)."
  type        = list(string)

  validation {
    condition     = length(var.public_subnets) >= 1 && alltrue([for cidr in var.public_subnets : can(cidrhost(cidr, 0))])
    error_message = "public_subnets must hold at least one CIDR block."
  }
}

variable "private_subnets" {
  description = "Address ranges of the private subnetworks; the nodes use the first one, with egress through Cloud NAT."
  type        = list(string)

  validation {
    condition     = length(var.private_subnets) >= 1 && alltrue([for cidr in var.private_subnets : can(cidrhost(cidr, 0))])
    error_message = "private_subnets must hold at least one CIDR block."
  }
}

variable "node_instance_type" {
  description = "Machine type of the node pool, e.g. \"e2-standard-4\"."
  type        = string
}

variable "node_min" {
  description = "Minimum number of nodes in the pool."
  type        = number

  validation {
    condition     = var.node_min >= 0 && floor(var.node_min) == var.node_min
    error_message = "node_min must be a whole number, 0 or more."
  }
}

variable "node_max" {
  description = "Maximum number of nodes in the pool."
  type        = number

  validation {
    condition     = var.node_max >= var.node_min && floor(var.node_max) == var.node_max
    error_message = "node_max must be a whole number, at least node_min."
  }
}

variable "node_desired" {
  description = "Number of nodes the pool starts with (spread over its zones); the cluster autoscaler owns it afterwards."
  type        = number

  validation {
    condition     = var.node_desired >= var.node_min && var.node_desired <= var.node_max
    error_message = "node_desired must lie between node_min and node_max."
  }
}

# Kubernetes' own address ranges, secondary ranges of the node subnetwork. They must not
# overlap the subnetworks or anything the network peers with; the defaults come from the
# shared address space (RFC 6598), which GKE supports and networks rarely use.

variable "pods_cidr" {
  description = "Secondary range of the node subnetwork for pod addresses."
  type        = string
  default     = "100.64.0.0/14"
}

variable "services_cidr" {
  description = "Secondary range of the node subnetwork for service addresses."
  type        = string
  default     = "100.68.0.0/20"
}
