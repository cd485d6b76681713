output "cluster_name" {
  description = "Name of the EKS cluster."
  value       = aws_eks_cluster.this.name
}

output "endpoint" {
  description = "URL of the Kubernetes API server."
  value       = aws_eks_cluster.this.endpoint
}

output "ca_data" {
  description = "Base64 of the cluster CA bundle (PEM), as kubeconfig's certificate-authority-data."
  value       = aws_eks_cluster.this.certificate_authority[0].data
}

output "kubeconfig" {
  description = "Kubeconfig for the cluster, without credentials: the AWS CLI issues a token with the caller's own AWS identity."
  # Every value is YAML-safe: a DNS-1123 name, a region, a URL, base64.
  value = <<-EOT
    apiVersion: v1
    kind: Config
    clusters:
      - name: ${aws_eks_cluster.this.arn}
        cluster:
          server: ${aws_eks_cluster.this.endpoint}
          certificate-authority-data: ${aws_eks_cluster.this.certificate_authority[0].data}
    contexts:
      - name: ${var.cluster_name}
        context:
          cluster: ${aws_eks_cluster.this.arn}
          user: ${aws_eks_cluster.this.arn}
    current-context: ${var.cluster_name}
    users:
      - name: ${aws_eks_cluster.this.arn}
        user:
          exec:
            apiVersion: client.authentication.k8s.io/v1beta1
            command: aws
            args:
              - --region
              - ${var.region}
              - eks
              - get-token
              - --cluster-name
              - ${aws_eks_cluster.this.name}
              - --output
              - json
            interactiveMode: Never
  EOT
}
