locals {
  # Not a certificate: a stand-in with the shape of one, so that consumers of `ca_data`
  # (base64 of a PEM bundle, as every cloud module returns it) get the same format.
  fake_ca_pem = <<-EOT
    -----BEGIN CERTIFICATE-----
    ${base64encode("fleetplane simulated cluster CA for ${var.cluster_name}")}
    -----END CERTIFICATE-----
  EOT
}

output "cluster_name" {
  description = "Name of the cluster."
  value       = terraform_data.control_plane.output.name
}

output "endpoint" {
  description = "URL of the (simulated) Kubernetes API server."
  value       = terraform_data.control_plane.output.endpoint
}

output "ca_data" {
  description = "Base64 of the cluster CA bundle (PEM), as kubeconfig's certificate-authority-data."
  value       = base64encode(local.fake_ca_pem)
}

output "kubeconfig" {
  description = "Kubeconfig for the cluster, without credentials."
  # Every value is YAML-safe: a DNS-1123 name, a URL made of it, base64.
  value = <<-EOT
    apiVersion: v1
    kind: Config
    clusters:
      - name: ${var.cluster_name}
        cluster:
          server: ${terraform_data.control_plane.output.endpoint}
          certificate-authority-data: ${base64encode(local.fake_ca_pem)}
    contexts:
      - name: ${var.cluster_name}
        context:
          cluster: ${var.cluster_name}
          user: ${var.cluster_name}
    current-context: ${var.cluster_name}
    users:
      - name: ${var.cluster_name}
        user: {}
  EOT
}

output "node_count" {
  description = "Number of nodes the pool was created with."
  value       = terraform_data.node_pool.output.desired
}

output "admin_token" {
  description = "A made-up secret, so that the pipeline's handling of sensitive outputs is tested: its value starts with \"admin-\", which a test can look for in logs and stored outputs."
  value       = "admin-${substr(sha256("${terraform_data.control_plane.id}:admin"), 0, 32)}"
  sensitive   = true
}
