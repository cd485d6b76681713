# The nodes run as their own service account with GKE's least-privilege node role, not as the
# Compute Engine default service account (Editor on the whole project).

resource "google_service_account" "nodes" {
  # Account ids are 6-30 characters starting with a letter and unique in the project, which
  # the same cluster name in two regions would not be.
  account_id   = "gke-nodes-${substr(sha256("${var.region}/${var.cluster_name}"), 0, 12)}"
  display_name = "GKE nodes of ${var.cluster_name} (${var.region})"
}

resource "google_project_iam_member" "nodes" {
  for_each = toset([
    "roles/container.defaultNodeServiceAccount",
    "roles/artifactregistry.reader",
  ])

  project = local.project
  role    = each.value
  member  = "serviceAccount:${google_service_account.nodes.email}"
}
