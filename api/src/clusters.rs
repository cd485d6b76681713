//! Clusters and what they may be: `/api/v1/orgs/{org}/clusters`, `/api/v1/cluster-options`,
//! `/api/v1/system`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{Provider, Run, Simulate};

/// Where a cluster is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ClusterStatus {
    Pending,
    Provisioning,
    Ready,
    Failed,
    Destroying,
    Destroyed,
}

impl ClusterStatus {
    pub const ALL: [ClusterStatus; 6] = [
        ClusterStatus::Pending,
        ClusterStatus::Provisioning,
        ClusterStatus::Ready,
        ClusterStatus::Failed,
        ClusterStatus::Destroying,
        ClusterStatus::Destroyed,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ClusterStatus::Pending => "pending",
            ClusterStatus::Provisioning => "provisioning",
            ClusterStatus::Ready => "ready",
            ClusterStatus::Failed => "failed",
            ClusterStatus::Destroying => "destroying",
            ClusterStatus::Destroyed => "destroyed",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        ClusterStatus::ALL.into_iter().find(|status| status.as_str() == value)
    }

    pub fn label(self) -> &'static str {
        match self {
            ClusterStatus::Pending => "Pending",
            ClusterStatus::Provisioning => "Provisioning",
            ClusterStatus::Ready => "Ready",
            ClusterStatus::Failed => "Failed",
            ClusterStatus::Destroying => "Destroying",
            ClusterStatus::Destroyed => "Destroyed",
        }
    }

    /// Something is happening to the cluster right now.
    pub fn is_changing(self) -> bool {
        matches!(self, ClusterStatus::Pending | ClusterStatus::Provisioning | ClusterStatus::Destroying)
    }
}

/// Where the cluster's Terraform state lives.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum StateBackend {
    /// Fleetplane's own, encrypted, with history and a visible lock.
    #[default]
    Fleetplane,
    S3 {
        bucket: String,
        #[serde(default)]
        key: Option<String>,
    },
    Gcs {
        bucket: String,
        #[serde(default)]
        key: Option<String>,
    },
    /// `bucket` is the storage account; state goes to its `tfstate` container.
    Azurerm {
        bucket: String,
        #[serde(default)]
        key: Option<String>,
    },
}

impl StateBackend {
    /// The `type` tag: `fleetplane`, `s3`, `gcs` or `azurerm`.
    pub fn kind(&self) -> &'static str {
        match self {
            StateBackend::Fleetplane => "fleetplane",
            StateBackend::S3 { .. } => "s3",
            StateBackend::Gcs { .. } => "gcs",
            StateBackend::Azurerm { .. } => "azurerm",
        }
    }

    /// The cloud whose storage holds the state; `None` for Fleetplane's own.
    pub fn provider(&self) -> Option<Provider> {
        match self {
            StateBackend::Fleetplane => None,
            StateBackend::S3 { .. } => Some(Provider::Aws),
            StateBackend::Gcs { .. } => Some(Provider::Gcp),
            StateBackend::Azurerm { .. } => Some(Provider::Azure),
        }
    }

    /// The bucket (or storage account) and key, for the cloud backends.
    pub fn location(&self) -> Option<(&str, Option<&str>)> {
        match self {
            StateBackend::Fleetplane => None,
            StateBackend::S3 { bucket, key }
            | StateBackend::Gcs { bucket, key }
            | StateBackend::Azurerm { bucket, key } => Some((bucket, key.as_deref())),
        }
    }
}

/// A cluster spec as a client sends it: every field optional, so that all problems are
/// reported at once. Regions, instance types and versions must be among the target's in
/// `GET /api/v1/cluster-options`; subnets must lie inside the VPC and not overlap.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct SpecInput {
    /// Lower-case letters, digits and dashes, starting with a letter. With the suffix, at
    /// most 40 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 38, pattern = r"^\s*[a-z][a-z0-9-]*\s*$")]
    pub name_prefix: Option<String>,
    /// Lower-case letters, digits and dashes, ending with a letter or digit.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 38, pattern = r"^\s*[a-z0-9-]*[a-z0-9]\s*$")]
    pub name_suffix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubernetes_version: Option<String>,
    /// A private IPv4 network from /16 to /24, like `10.0.0.0/16`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vpc_cidr: Option<String>,
    /// 1–6 networks of at least /28, inside the VPC.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(min_items = 1, max_items = 6)]
    pub public_subnets: Option<Vec<String>>,
    /// 1–6 networks of at least /28, inside the VPC.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(min_items = 1, max_items = 6)]
    pub private_subnets: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_instance_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 100)]
    #[serde(deserialize_with = "crate::whole::option")]
    pub node_min: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 100)]
    #[serde(deserialize_with = "crate::whole::option")]
    pub node_max: Option<i64>,
    /// Defaults to `node_min`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 100)]
    #[serde(deserialize_with = "crate::whole::option")]
    pub node_desired: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_backend: Option<StateBackend>,
}

/// `POST /api/v1/orgs/{org}/clusters`: a new cluster. `PATCH` takes the same fields; the
/// target, account, region and name cannot change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct CreateClusterRequest {
    /// The cloud account it runs in; omit for the `local` simulation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloud_account_id: Option<Uuid>,
    /// `aws-eks`, `azure-aks`, `gcp-gke` or `local`; defaults to the account's cloud.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(flatten)]
    pub spec: SpecInput,
    /// Options of the simulated `local` target for the first run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub simulate: Option<Simulate>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Cluster {
    pub id: Uuid,
    /// The organization's name.
    pub org: String,
    pub name: String,
    pub name_prefix: String,
    pub name_suffix: String,
    /// None for a local simulation created without an account.
    pub cloud_account_id: Option<Uuid>,
    /// The cloud it runs in; none for the local simulation.
    pub provider: Option<Provider>,
    pub target: String,
    pub region: String,
    pub kubernetes_version: String,
    pub vpc_cidr: String,
    pub public_subnets: Vec<String>,
    pub private_subnets: Vec<String>,
    pub node_instance_type: String,
    pub node_min: u32,
    pub node_max: u32,
    pub node_desired: u32,
    pub state_backend: StateBackend,
    pub status: ClusterStatus,
    /// Terraform's non-sensitive outputs of the last successful apply (endpoint, CA data,
    /// kubeconfig).
    #[schema(value_type = Option<Object>)]
    pub outputs: Option<Map<String, Value>>,
    pub last_run: Option<Run>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A cluster just created, with the run that provisions it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreatedCluster {
    pub cluster: Cluster,
    pub run: Run,
}

/// The answer to a dry run: the spec is valid, and this is the name it gives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CheckedCluster {
    pub name: String,
}

/// `GET /api/v1/cluster-options`: what a new cluster may be, and the form's defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClusterOptions {
    pub targets: Vec<TargetOption>,
    pub kubernetes_versions: Vec<String>,
    pub defaults: SpecDefaults,
    pub limits: SpecLimits,
}

impl ClusterOptions {
    pub fn target(&self, id: &str) -> Option<&TargetOption> {
        self.targets.iter().find(|target| target.id == id)
    }

    /// The targets an account of `provider` can create clusters on: its cloud's own, and
    /// `local`, which needs no cloud. Without an account (`None`), only `local`.
    pub fn targets_for(&self, provider: Option<Provider>) -> impl Iterator<Item = &TargetOption> {
        self.targets.iter().filter(move |target| target.provider.is_none_or(|own| Some(own) == provider))
    }

    /// Whether clusters can be created with no cloud account at all (the `local` target).
    pub fn local_enabled(&self) -> bool {
        self.targets.iter().any(|target| target.provider.is_none() && target.enabled)
    }
}

/// Where a cluster can be created: a managed Kubernetes service, or `local`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TargetOption {
    /// `aws-eks`, `azure-aks`, `gcp-gke` or `local`.
    pub id: String,
    /// The cloud it runs in; none for `local`.
    pub provider: Option<Provider>,
    pub label: String,
    pub regions: Vec<String>,
    pub instance_types: Vec<String>,
    /// `local` can be turned off by configuration.
    pub enabled: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SpecDefaults {
    pub vpc_cidr: String,
    pub public_subnets: Vec<String>,
    pub private_subnets: Vec<String>,
    pub node_min: u32,
    pub node_max: u32,
    pub node_desired: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SpecLimits {
    pub node_max: u32,
    /// The longest a cluster's name (`{prefix}-{suffix}`) may be.
    pub name_max: u32,
}

/// How this installation runs Terraform.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Executor {
    /// Provisioner containers on a Docker engine.
    Docker,
    /// Local `terraform` processes, because no Docker engine answered.
    Process,
    /// This server runs no workers itself; `fleetplane worker` processes do.
    None,
}

impl Executor {
    pub const ALL: [Executor; 3] = [Executor::Docker, Executor::Process, Executor::None];

    pub const fn as_str(self) -> &'static str {
        match self {
            Executor::Docker => "docker",
            Executor::Process => "process",
            Executor::None => "none",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Executor::ALL.into_iter().find(|executor| executor.as_str() == value)
    }
}

/// `GET /api/v1/system`: facts about the installation that change what the UI says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct System {
    /// What runs this server's jobs.
    pub executor: Executor,
    /// Workers seen alive, on any machine.
    pub workers: u64,
}
