locals {
  server = "https://${google_container_cluster.this.endpoint}"
  # kubectl's convention for GKE contexts.
  context = "gke_${local.project}_${var.region}_${var.cluster_name}"
}

output "cluster_name" {
  description = "Name of the GKE cluster."
  value       = google_container_cluster.this.name
}

output "endpoint" {
  description = "URL of the Kubernetes API server."
  value       = local.server
}

output "ca_data" {
  description = "Base64 of the cluster CA bundle (PEM), as kubeconfig's certificate-authority-data."
  value       = google_container_cluster.this.master_auth[0].cluster_ca_certificate
}

output "kubeconfig" {
  description = "Kubeconfig for the cluster, without credentials: gke-gcloud-auth-plugin gets a token from the caller's gcloud sign-in."
  # Every value is YAML-safe: a project id, a region, a DNS-1123 name, a URL, base64.
  value = <<-EOT
    apiVersion: v1
    kind: Config
    clusters:
      - name: ${local.context}
        cluster:
          server: ${local.server}
          certificate-authority-data: ${google_container_cluster.this.master_auth[0].cluster_ca_certificate}
    contexts:
      - name: ${local.context}
        context:
          cluster: ${local.context}
          user: ${local.context}
    current-context: ${local.context}
    users:
      - name: ${local.context}
        user:
          exec:
            apiVersion: client.authentication.k8s.io/v1beta1
            command: gke-gcloud-auth-plugin
            installHint: Install gke-gcloud-auth-plugin, e.g. gcloud components install gke-gcloud-auth-plugin
            provideClusterInfo: true
            interactiveMode: IfAvailable
  EOT
}
