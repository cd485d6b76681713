# The AKS cluster: Entra ID sign-in with Azure RBAC and no local accounts (so no kubeconfig
# holds a credential), Azure CNI overlay with Cilium, and an autoscaled system node pool in
# the first private subnet.

# The control plane's identity, created first so that it can be granted the network before
# the cluster needs it.
resource "azurerm_user_assigned_identity" "control_plane" {
  name                = "${var.cluster_name}-control-plane"
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name

  tags = local.tags
}

# Joins nodes to the subnet, manages load balancers and the outbound NAT gateway.
resource "azurerm_role_assignment" "control_plane_network" {
  scope                = azurerm_virtual_network.this.id
  role_definition_name = "Network Contributor"
  principal_id         = azurerm_user_assigned_identity.control_plane.principal_id
}

resource "azurerm_kubernetes_cluster" "this" {
  name                = var.cluster_name
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  node_resource_group = "${var.cluster_name}-nodes-rg"
  dns_prefix          = var.cluster_name
  kubernetes_version  = var.kubernetes_version
  sku_tier            = "Standard"

  automatic_upgrade_channel = "patch"
  node_os_upgrade_channel   = "NodeImage"

  local_account_disabled    = true
  oidc_issuer_enabled       = true
  workload_identity_enabled = true

  azure_active_directory_role_based_access_control {
    azure_rbac_enabled = true
    tenant_id          = data.azurerm_client_config.current.tenant_id
  }

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.control_plane.id]
  }

  default_node_pool {
    name                        = "system"
    temporary_name_for_rotation = "systemtmp"
    vm_size                     = var.node_instance_type
    vnet_subnet_id              = azurerm_subnet.private[0].id
    auto_scaling_enabled        = true
    min_count                   = var.node_min
    max_count                   = var.node_max
    node_count                  = var.node_desired

    upgrade_settings {
      max_surge = "33%"
    }

    tags = local.tags
  }

  network_profile {
    network_plugin      = "azure"
    network_plugin_mode = "overlay"
    network_data_plane  = "cilium"
    network_policy      = "cilium"
    pod_cidr            = var.pod_cidr
    service_cidr        = var.service_cidr
    dns_service_ip      = cidrhost(var.service_cidr, 10)
    outbound_type       = "userAssignedNATGateway"
  }

  tags = local.tags

  lifecycle {
    # The cluster autoscaler owns the node count once the pool runs.
    ignore_changes = [default_node_pool[0].node_count]
  }

  depends_on = [
    azurerm_role_assignment.control_plane_network,
    azurerm_subnet_nat_gateway_association.private,
    azurerm_nat_gateway_public_ip_association.this,
  ]
}

# Like EKS's cluster creator: the identity that runs Terraform administers the cluster, since
# Azure RBAC grants nobody anything by default.
resource "azurerm_role_assignment" "cluster_admin" {
  scope                = azurerm_kubernetes_cluster.this.id
  role_definition_name = "Azure Kubernetes Service RBAC Cluster Admin"
  principal_id         = data.azurerm_client_config.current.object_id
}
