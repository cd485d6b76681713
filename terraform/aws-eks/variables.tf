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
  description = "AWS region, e.g. \"eu-west-1\"."
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
  description = "CIDR block of the VPC."
  type        = string

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0))
    error_message = "vpc_cidr must be a CIDR block."
  }
}

variable "public_subnets" {
  description = "CIDR blocks of the public subnets (load balancers, the NAT gateway), spread over the availability zones."
  type        = list(string)

  validation {
    condition     = length(var.public_subnets) >= 1 && alltrue([for cidr in var.public_subnets : can(cidrhost(cidr, 0))])
    error_message = "public_subnets must hold at least one CIDR block."
  }
}

variable "private_subnets" {
  description = "CIDR blocks of the private subnets (nodes, control plane network interfaces), spread over the availability zones."
  type        = list(string)

  validation {
    condition     = length(var.private_subnets) >= 2 && alltrue([for cidr in var.private_subnets : can(cidrhost(cidr, 0))])
    error_message = "EKS needs private subnets in at least two availability zones: give two or more CIDR blocks."
  }
}

variable "node_instance_type" {
  description = "EC2 instance type of the managed node group, e.g. \"m6i.large\"."
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
  description = "Number of nodes the node group runs."
  type        = number

  validation {
    condition     = var.node_desired >= var.node_min && var.node_desired <= var.node_max
    error_message = "node_desired must lie between node_min and node_max."
  }
}
