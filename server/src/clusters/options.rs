//! What a cluster can be: targets with their regions and node sizes, Kubernetes versions,
//! defaults and limits. The create form and the validation both read these.

use fleetplane_api::{self as api, Provider};

/// A provisioning target: where and how a cluster's Terraform runs.
pub struct Target {
    pub id: &'static str,
    /// The cloud whose accounts it uses; `None` for the simulated `local` target.
    pub provider: Option<Provider>,
    pub label: &'static str,
    pub regions: &'static [&'static str],
    pub instance_types: &'static [&'static str],
}

pub const TARGETS: &[Target] = &[
    Target {
        id: "aws-eks",
        provider: Some(Provider::Aws),
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
        provider: Some(Provider::Azure),
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
        provider: Some(Provider::Gcp),
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
pub fn target_for_provider(provider: Provider) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.provider == Some(provider))
}

/// What a new cluster may be, for `GET /api/v1/cluster-options`.
pub fn options(local_enabled: bool) -> api::ClusterOptions {
    let texts = |items: &[&str]| items.iter().map(|item| (*item).to_owned()).collect::<Vec<_>>();
    api::ClusterOptions {
        targets: TARGETS
            .iter()
            .map(|t| api::TargetOption {
                id: t.id.to_owned(),
                provider: t.provider,
                label: t.label.to_owned(),
                regions: texts(t.regions),
                instance_types: texts(t.instance_types),
                enabled: t.provider.is_some() || local_enabled,
            })
            .collect(),
        kubernetes_versions: texts(KUBERNETES_VERSIONS),
        defaults: api::SpecDefaults {
            vpc_cidr: "10.0.0.0/16".to_owned(),
            public_subnets: texts(&["10.0.0.0/20", "10.0.16.0/20"]),
            private_subnets: texts(&["10.0.64.0/19", "10.0.96.0/19"]),
            node_min: 1,
            node_max: 3,
            node_desired: 2,
        },
        limits: api::SpecLimits { node_max: NODE_MAX, name_max: NAME_MAX as u32 },
    }
}
