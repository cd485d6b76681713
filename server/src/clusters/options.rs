//! What a cluster can be: targets with their regions and node sizes, Kubernetes versions,
//! defaults and limits. The create form and the validation both read these.

use serde::Serialize;
use utoipa::ToSchema;

/// A provisioning target: where and how a cluster's Terraform runs.
pub struct Target {
    pub id: &'static str,
    /// The cloud whose accounts it uses; `None` for the simulated `local` target.
    pub provider: Option<&'static str>,
    pub label: &'static str,
    pub regions: &'static [&'static str],
    pub instance_types: &'static [&'static str],
}

pub const TARGETS: &[Target] = &[
    Target {
        id: "aws-eks",
        provider: Some("aws"),
        label: "Amazon EKS",
        regions: &[
            "us-east-1",
            "us-east-2",
            "us-west-2",
            "ca-central-1",
            "sa-east-1",
            "eu-west-1",
            "eu-central-1",
            "eu-north-1",
            "ap-south-1",
            "ap-southeast-1",
            "ap-northeast-1",
        ],
        instance_types: &["t3.medium", "t3.large", "m6i.large", "m6i.xlarge", "m7i.large", "c6i.xlarge", "r6i.large"],
    },
    Target {
        id: "azure-aks",
        provider: Some("azure"),
        label: "Azure AKS",
        regions: &[
            "eastus",
            "eastus2",
            "westus2",
            "westeurope",
            "northeurope",
            "uksouth",
            "germanywestcentral",
            "swedencentral",
            "southeastasia",
            "japaneast",
            "australiaeast",
        ],
        instance_types: &["Standard_B2ms", "Standard_D2s_v5", "Standard_D4s_v5", "Standard_D8s_v5", "Standard_E4s_v5"],
    },
    Target {
        id: "gcp-gke",
        provider: Some("gcp"),
        label: "Google GKE",
        regions: &[
            "us-central1",
            "us-east1",
            "us-west1",
            "europe-west1",
            "europe-west3",
            "europe-west4",
            "europe-north1",
            "asia-southeast1",
            "asia-northeast1",
            "australia-southeast1",
        ],
        instance_types: &["e2-standard-2", "e2-standard-4", "n2-standard-2", "n2-standard-4", "n2-highmem-4"],
    },
    Target {
        id: "local",
        provider: None,
        label: "Local simulation",
        regions: &["local"],
        instance_types: &["local.small", "local.medium", "local.large"],
    },
];

pub const KUBERNETES_VERSIONS: &[&str] = &["1.31", "1.32", "1.33", "1.34"];
pub const NAME_MAX: usize = 40;
pub const NODE_MAX: u32 = 100;

pub fn target(id: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.id == id)
}

/// The real target for a cloud provider.
pub fn target_for_provider(provider: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.provider == Some(provider))
}

#[derive(Serialize, ToSchema)]
pub struct TargetView {
    pub id: &'static str,
    pub provider: Option<&'static str>,
    pub label: &'static str,
    pub regions: Vec<&'static str>,
    pub instance_types: Vec<&'static str>,
    /// `local` can be turned off by configuration.
    pub enabled: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Defaults {
    pub vpc_cidr: &'static str,
    pub public_subnets: Vec<&'static str>,
    pub private_subnets: Vec<&'static str>,
    pub node_min: u32,
    pub node_max: u32,
    pub node_desired: u32,
}

#[derive(Serialize, ToSchema)]
pub struct Limits {
    pub node_max: u32,
    pub name_max: usize,
}

#[derive(Serialize, ToSchema)]
pub struct ClusterOptions {
    pub targets: Vec<TargetView>,
    pub kubernetes_versions: Vec<&'static str>,
    pub defaults: Defaults,
    pub limits: Limits,
}

pub fn options(local_enabled: bool) -> ClusterOptions {
    ClusterOptions {
        targets: TARGETS
            .iter()
            .map(|t| TargetView {
                id: t.id,
                provider: t.provider,
                label: t.label,
                regions: t.regions.to_vec(),
                instance_types: t.instance_types.to_vec(),
                enabled: t.provider.is_some() || local_enabled,
            })
            .collect(),
        kubernetes_versions: KUBERNETES_VERSIONS.to_vec(),
        defaults: Defaults {
            vpc_cidr: "10.0.0.0/16",
            public_subnets: vec!["10.0.0.0/20", "10.0.16.0/20"],
            private_subnets: vec!["10.0.64.0/19", "10.0.96.0/19"],
            node_min: 1,
            node_max: 3,
            node_desired: 2,
        },
        limits: Limits { node_max: NODE_MAX, name_max: NAME_MAX },
    }
}
