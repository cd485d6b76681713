# A cluster simulated with Terraform's built-in `terraform_data` and `local-exec`: the same
# shape as the cloud modules (network, then control plane, then node pool), taking real time
# and printing progress, so that runs, logs, cancel and failures can be exercised end to end
# without a cloud account or a provider download.
#
# Values reach the commands through `environment`, never by interpolation into the script,
# so that no spec value is ever parsed by the shell. The commands run `sh` from PATH rather
# than local-exec's default /bin/sh: in the FROM-scratch provisioner image on a read-only root
# file system, busybox's `sh` link lives in the work directory.

locals {
  endpoint = "https://${var.cluster_name}.local.fleetplane.invalid"

  # Each step sleeps one second at a time: an interrupted local-exec only kills its own shell,
  # and a long `sleep` child would keep Terraform waiting on its output pipe until it ended.
  wait_steps = <<-EOT
    i=1
    while [ "$i" -le "$STEPS" ]; do
      echo "$WHAT: $DOING ($i/$STEPS)"
      sleep 1
      i=$((i + 1))
    done
  EOT
}

resource "terraform_data" "network" {
  triggers_replace = {
    name            = var.cluster_name
    region          = var.region
    vpc_cidr        = var.vpc_cidr
    public_subnets  = var.public_subnets
    private_subnets = var.private_subnets
  }
  # Destroy-time provisioners can only read `self`, so what they print lives here.
  input = {
    name         = var.cluster_name
    step_seconds = var.step_seconds
  }

  provisioner "local-exec" {
    interpreter = ["sh", "-c"]
    command     = <<-EOT
      echo "network: creating VPC $CIDR for $NAME in $REGION"
      ${local.wait_steps}
      echo "network: public subnets $PUBLIC, private subnets $PRIVATE"
      echo "network: ready"
    EOT
    environment = {
      WHAT    = "network"
      DOING   = "creating"
      STEPS   = var.step_seconds
      NAME    = var.cluster_name
      REGION  = var.region
      CIDR    = var.vpc_cidr
      PUBLIC  = join(",", var.public_subnets)
      PRIVATE = join(",", var.private_subnets)
    }
  }

  provisioner "local-exec" {
    # Destroy-time provisioners may only refer to `self`, hence the loop written out here.
    when        = destroy
    interpreter = ["sh", "-c"]
    command     = <<-EOT
      echo "network: deleting the network of $NAME"
      i=1
      while [ "$i" -le "$STEPS" ]; do
        echo "$WHAT: $DOING ($i/$STEPS)"
        sleep 1
        i=$((i + 1))
      done
      echo "network: deleted"
    EOT
    environment = {
      WHAT  = "network"
      DOING = "deleting"
      STEPS = self.input.step_seconds
      NAME  = self.input.name
    }
  }
}

resource "terraform_data" "control_plane" {
  triggers_replace = {
    network = terraform_data.network.id
  }
  input = {
    name               = var.cluster_name
    kubernetes_version = var.kubernetes_version
    endpoint           = local.endpoint
    step_seconds       = var.step_seconds
  }

  lifecycle {
    precondition {
      condition     = var.fail_at != "plan"
      error_message = "Simulated plan failure: the control plane of \"${var.cluster_name}\" cannot be planned (fail_at = \"plan\")."
    }
  }

  provisioner "local-exec" {
    interpreter = ["sh", "-c"]
    command     = <<-EOT
      echo "control plane: creating Kubernetes $VERSION control plane for $NAME"
      ${local.wait_steps}
      echo "control plane: ready at $ENDPOINT"
    EOT
    environment = {
      WHAT     = "control plane"
      DOING    = "creating"
      STEPS    = var.step_seconds
      NAME     = var.cluster_name
      VERSION  = var.kubernetes_version
      ENDPOINT = local.endpoint
    }
  }

  provisioner "local-exec" {
    # Destroy-time provisioners may only refer to `self`, hence the loop written out here.
    when        = destroy
    interpreter = ["sh", "-c"]
    command     = <<-EOT
      echo "control plane: deleting $NAME"
      i=1
      while [ "$i" -le "$STEPS" ]; do
        echo "$WHAT: $DOING ($i/$STEPS)"
        sleep 1
        i=$((i + 1))
      done
      echo "control plane: deleted"
    EOT
    environment = {
      WHAT  = "control plane"
      DOING = "deleting"
      STEPS = self.input.step_seconds
      NAME  = self.input.name
    }
  }
}

resource "terraform_data" "node_pool" {
  # A new machine type replaces the pool; new sizes change it in place.
  triggers_replace = {
    control_plane = terraform_data.control_plane.id
    instance_type = var.node_instance_type
  }
  input = {
    name         = var.cluster_name
    min          = var.node_min
    max          = var.node_max
    desired      = var.node_desired
    step_seconds = var.step_seconds
  }

  provisioner "local-exec" {
    interpreter = ["sh", "-c"]
    command     = <<-EOT
      echo "node pool: creating $DESIRED x $TYPE nodes (min $MIN, max $MAX) in $PRIVATE"
      ${local.wait_steps}
      if [ "$FAIL" = "1" ]; then
        echo "node pool: simulated failure: nodes did not join $NAME (fail_at = \"apply\")" >&2
        exit 1
      fi
      echo "node pool: $DESIRED nodes ready"
    EOT
    environment = {
      WHAT    = "node pool"
      DOING   = "creating"
      STEPS   = var.step_seconds
      NAME    = var.cluster_name
      TYPE    = var.node_instance_type
      MIN     = var.node_min
      MAX     = var.node_max
      DESIRED = var.node_desired
      PRIVATE = join(",", var.private_subnets)
      FAIL    = var.fail_at == "apply" ? "1" : "0"
    }
  }

  provisioner "local-exec" {
    # Destroy-time provisioners may only refer to `self`, hence the loop written out here.
    when        = destroy
    interpreter = ["sh", "-c"]
    command     = <<-EOT
      echo "node pool: draining and deleting the nodes of $NAME"
      i=1
      while [ "$i" -le "$STEPS" ]; do
        echo "$WHAT: $DOING ($i/$STEPS)"
        sleep 1
        i=$((i + 1))
      done
      echo "node pool: deleted"
    EOT
    environment = {
      WHAT  = "node pool"
      DOING = "deleting"
      STEPS = self.input.step_seconds
      NAME  = self.input.name
    }
  }
}
