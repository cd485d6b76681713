# A custom-mode VPC network. The nodes live in the first private subnetwork, whose secondary
# ranges hold pods and services (VPC-native cluster), and have no external addresses: they
# reach the internet through Cloud NAT. GCP subnetworks are not public or private by
# themselves; the public ones are for instances that do get an external address.

resource "google_project_service" "this" {
  for_each = toset(["compute.googleapis.com", "container.googleapis.com"])

  service = each.value
  # Other workloads of the project may use them too.
  disable_on_destroy = false
}

resource "google_compute_network" "this" {
  name                    = var.cluster_name
  auto_create_subnetworks = false
  routing_mode            = "REGIONAL"

  depends_on = [google_project_service.this]
}

resource "google_compute_subnetwork" "private" {
  count = length(var.private_subnets)

  name                     = "${var.cluster_name}-private-${count.index}"
  region                   = var.region
  network                  = google_compute_network.this.id
  ip_cidr_range            = var.private_subnets[count.index]
  private_ip_google_access = true

  dynamic "secondary_ip_range" {
    for_each = count.index == 0 ? { pods = var.pods_cidr, services = var.services_cidr } : {}

    content {
      range_name    = secondary_ip_range.key
      ip_cidr_range = secondary_ip_range.value
    }
  }
}

resource "google_compute_subnetwork" "public" {
  count = length(var.public_subnets)

  name                     = "${var.cluster_name}-public-${count.index}"
  region                   = var.region
  network                  = google_compute_network.this.id
  ip_cidr_range            = var.public_subnets[count.index]
  private_ip_google_access = true
}

resource "google_compute_firewall" "internal" {
  name          = "${var.cluster_name}-allow-internal"
  network       = google_compute_network.this.id
  direction     = "INGRESS"
  source_ranges = [var.vpc_cidr, var.pods_cidr, var.services_cidr]

  allow {
    protocol = "all"
  }
}

resource "google_compute_router" "this" {
  name    = var.cluster_name
  region  = var.region
  network = google_compute_network.this.id
}

resource "google_compute_router_nat" "this" {
  name                               = var.cluster_name
  router                             = google_compute_router.this.name
  region                             = var.region
  nat_ip_allocate_option             = "AUTO_ONLY"
  source_subnetwork_ip_ranges_to_nat = "ALL_SUBNETWORKS_ALL_IP_RANGES"

  log_config {
    enable = true
    filter = "ERRORS_ONLY"
  }
}
