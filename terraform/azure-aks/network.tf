# A virtual network with public subnets (for ingress) and private subnets; the nodes live in
# the first private subnet and leave through a NAT gateway, not through default outbound
# access, which Azure is retiring.

resource "azurerm_resource_group" "this" {
  name     = "${var.cluster_name}-rg"
  location = var.region

  tags = local.tags
}

locals {
  tags = {
    "fleetplane.io/cluster" = var.cluster_name
    "fleetplane.io/managed" = "true"
  }
}

resource "azurerm_virtual_network" "this" {
  name                = var.cluster_name
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  address_space       = [var.vpc_cidr]

  tags = local.tags
}

resource "azurerm_subnet" "public" {
  count = length(var.public_subnets)

  name                 = "public-${count.index}"
  resource_group_name  = azurerm_resource_group.this.name
  virtual_network_name = azurerm_virtual_network.this.name
  address_prefixes     = [var.public_subnets[count.index]]
}

resource "azurerm_subnet" "private" {
  count = length(var.private_subnets)

  name                            = "private-${count.index}"
  resource_group_name             = azurerm_resource_group.this.name
  virtual_network_name            = azurerm_virtual_network.this.name
  address_prefixes                = [var.private_subnets[count.index]]
  default_outbound_access_enabled = false
}

resource "azurerm_public_ip" "nat" {
  name                = "${var.cluster_name}-nat"
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  allocation_method   = "Static"
  sku                 = "Standard"

  tags = local.tags
}

resource "azurerm_nat_gateway" "this" {
  name                = var.cluster_name
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  sku_name            = "Standard"

  tags = local.tags
}

resource "azurerm_nat_gateway_public_ip_association" "this" {
  nat_gateway_id       = azurerm_nat_gateway.this.id
  public_ip_address_id = azurerm_public_ip.nat.id
}

resource "azurerm_subnet_nat_gateway_association" "private" {
  count = length(var.private_subnets)

  subnet_id      = azurerm_subnet.private[count.index].id
  nat_gateway_id = azurerm_nat_gateway.this.id
}
