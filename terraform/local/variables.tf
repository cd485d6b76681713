# The cluster spec, as every target receives it. The simulation only uses some of it, but
# takes all of it so that the worker passes the same variables to every module.

variable "cluster_name" {
  description = "DNS-1123 name of the cluster."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.cluster_name))
    error_message = "cluster_name must be a DNS-1123 label: lowercase letters, digits and '-', at most 63 characters."
  }
}

variable "region" {
  description = "Region of the cluster (any string here)."
  type        = string
}

variable "kubernetes_version" {
  description = "Kubernetes minor version, e.g. \"1.31\"."
  type        = string
}

variable "vpc_cidr" {
  description = "CIDR block of the cluster's network."
  type        = string
}

variable "public_subnets" {
  description = "CIDR blocks of the public subnets."
  type        = list(string)
}

variable "private_subnets" {
  description = "CIDR blocks of the private subnets, where the nodes live."
  type        = list(string)
}

variable "node_instance_type" {
  description = "Machine type of the node pool."
  type        = string
}

variable "node_min" {
  description = "Minimum number of nodes."
  type        = number
}

variable "node_max" {
  description = "Maximum number of nodes."
  type        = number
}

variable "node_desired" {
  description = "Number of nodes to start with."
  type        = number

  validation {
    condition     = var.node_desired >= var.node_min && var.node_desired <= var.node_max
    error_message = "node_desired must lie between node_min and node_max."
  }
}

# Test controls: they make the pipeline's failure paths reproducible.

variable "fail_at" {
  description = "Make the run fail on purpose: \"plan\" fails `terraform plan`, \"apply\" fails `terraform apply` after the network and control plane exist. Empty: succeed."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = contains(["", "plan", "apply"], var.fail_at)
    error_message = "fail_at must be \"\", \"plan\" or \"apply\"."
  }
}

variable "step_seconds" {
  description = "How long each simulated step takes, in whole seconds."
  type        = number
  default     = 2
  nullable    = false

  validation {
    condition     = var.step_seconds >= 0 && floor(var.step_seconds) == var.step_seconds
    error_message = "step_seconds must be a whole number of seconds, 0 or more."
  }
}
