locals {
  # The cluster CA is public (every client needs it); the provider marks it sensitive only
  # because it sits in the same block as the credentials, which local_account_disabled keeps
  # empty here.
  ca_data = nonsensitive(azurerm_kubernetes_cluster.this.kube_config[0].cluster_ca_certificate)
  server  = "https://${azurerm_kubernetes_cluster.this.fqdn}:443"
}

output "cluster_name" {
  description = "Name of the AKS cluster."
  value       = azurerm_kubernetes_cluster.this.name
}

output "endpoint" {
  description = "URL of the Kubernetes API server."
  value       = local.server
}

output "ca_data" {
  description = "Base64 of the cluster CA bundle (PEM), as kubeconfig's certificate-authority-data."
  value       = local.ca_data
}

output "kubeconfig" {
  description = "Kubeconfig for the cluster, without credentials: kubelogin gets an Entra ID token from the caller's Azure CLI sign-in."
  # Every value is YAML-safe: a DNS-1123 name, a URL, base64. The server id is the Azure
  # Kubernetes Service AAD Server application, the same in every tenant.
  value = <<-EOT
    apiVersion: v1
    kind: Config
    clusters:
      - name: ${var.cluster_name}
        cluster:
          server: ${local.server}
          certificate-authority-data: ${local.ca_data}
    contexts:
      - name: ${var.cluster_name}
        context:
          cluster: ${var.cluster_name}
          user: clusterUser_${azurerm_resource_group.this.name}_${var.cluster_name}
    current-context: ${var.cluster_name}
    users:
      - name: clusterUser_${azurerm_resource_group.this.name}_${var.cluster_name}
        user:
          exec:
            apiVersion: client.authentication.k8s.io/v1beta1
            command: kubelogin
            args:
              - get-token
              - --login
              - azurecli
              - --server-id
              - 6dae42f8-4368-4678-94ff-3960e28e3630
            interactiveMode: IfAvailable
  EOT
}
