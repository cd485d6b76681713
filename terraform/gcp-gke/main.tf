# A regional GKE cluster (control plane replicated over the region's zones) with private
# nodes, Dataplane V2 (eBPF, network policy enforcement), Workload Identity, and one
# autoscaled node pool.

data "google_compute_zones" "available" {
  region = var.region
  status = "UP"
}

locals {
  node_zones = slice(data.google_compute_zones.available.names, 0, min(3, length(data.google_compute_zones.available.names)))
}

resource "google_container_cluster" "this" {
  name     = var.cluster_name
  location = var.region

  network         = google_compute_network.this.id
  subnetwork      = google_compute_subnetwork.private[0].id
  networking_mode = "VPC_NATIVE"

  min_master_version = var.kubernetes_version
  release_channel {
    channel = "REGULAR"
  }

  # The default pool cannot be managed on its own; the pool below replaces it.
  remove_default_node_pool = true
  initial_node_count       = 1

  # Fleetplane deletes clusters through destroy runs, which the user confirms first.
  deletion_protection = false

  datapath_provider = "ADVANCED_DATAPATH"

  ip_allocation_policy {
    cluster_secondary_range_name  = "pods"
    services_secondary_range_name = "services"
  }

  # Nodes get internal addresses only; the control plane keeps its public endpoint (behind
  # Google sign-in) and reaches the nodes over Private Service Connect.
  private_cluster_config {
    enable_private_nodes    = true
    enable_private_endpoint = false
  }

  workload_identity_config {
    workload_pool = "${local.project}.svc.id.goog"
  }

  depends_on = [google_project_service.this, google_compute_router_nat.this]
}

resource "google_container_node_pool" "default" {
  name           = "default"
  cluster        = google_container_cluster.this.id
  location       = var.region
  node_locations = local.node_zones

  # Per zone: the pool starts with about node_desired nodes in all.
  initial_node_count = ceil(var.node_desired / length(local.node_zones))

  autoscaling {
    total_min_node_count = var.node_min
    total_max_node_count = var.node_max
    location_policy      = "BALANCED"
  }

  management {
    auto_repair  = true
    auto_upgrade = true
  }

  upgrade_settings {
    max_surge       = 1
    max_unavailable = 0
  }

  node_config {
    machine_type    = var.node_instance_type
    service_account = google_service_account.nodes.email
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]

    workload_metadata_config {
      mode = "GKE_METADATA"
    }

    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }
  }

  lifecycle {
    # The cluster autoscaler owns the size once the pool runs (and changing this recreates it).
    ignore_changes = [initial_node_count]
  }

  depends_on = [google_project_iam_member.nodes]
}
