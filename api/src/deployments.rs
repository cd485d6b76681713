//! Deployments of catalog services onto clusters: `/api/v1/orgs/{org}/clusters/{id}/deployments`
//! and `/api/v1/orgs/{org}/deployments/{id}`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::Run;

/// `pending → deploying → healthy | degraded | failed`, and `uninstalling → uninstalled`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentStatus {
    /// Its first run waits in the queue.
    Pending,
    /// A deploy, upgrade or rollback run is carrying it out.
    Deploying,
    /// Up, and its service says it is ready.
    Healthy,
    /// Up, but its service does not say it is ready.
    Degraded,
    Failed,
    Uninstalling,
    Uninstalled,
}

impl DeploymentStatus {
    pub const ALL: [DeploymentStatus; 7] = [
        DeploymentStatus::Pending,
        DeploymentStatus::Deploying,
        DeploymentStatus::Healthy,
        DeploymentStatus::Degraded,
        DeploymentStatus::Failed,
        DeploymentStatus::Uninstalling,
        DeploymentStatus::Uninstalled,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            DeploymentStatus::Pending => "pending",
            DeploymentStatus::Deploying => "deploying",
            DeploymentStatus::Healthy => "healthy",
            DeploymentStatus::Degraded => "degraded",
            DeploymentStatus::Failed => "failed",
            DeploymentStatus::Uninstalling => "uninstalling",
            DeploymentStatus::Uninstalled => "uninstalled",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        DeploymentStatus::ALL.into_iter().find(|status| status.as_str() == value)
    }
}

/// `POST /api/v1/orgs/{org}/clusters/{id}/deployments`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreateDeploymentRequest {
    /// A catalog service (`GET /api/v1/catalog`).
    #[serde(default)]
    #[schema(required = true, max_length = 100)]
    pub service: Option<String>,
    /// One of the service's pinned chart versions; none: the newest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Values for the service's schema; none: every default. Secret values are sealed and never
    /// returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub values: Option<Value>,
}

/// `PATCH /api/v1/orgs/{org}/deployments/{id}`: an upgrade. Values replace the current ones
/// whole, except that secrets not given keep their stored value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UpgradeDeploymentRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub values: Option<Value>,
}

/// `POST /api/v1/orgs/{org}/deployments/{id}/rollback`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RollbackRequest {
    /// The revision whose version and values to deploy again (as a new revision).
    #[serde(default)]
    #[schema(required = true, minimum = 1)]
    pub revision: Option<u32>,
}

/// `?dry_run=true`: the request is valid; nothing was stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CheckedDeployment {
    pub service: String,
    pub version: String,
    /// The values with their defaults, without secrets.
    #[schema(value_type = Object)]
    pub values: Map<String, Value>,
    /// The secret values that were given, as JSON pointers (their values are never returned).
    pub secrets: Vec<String>,
}

/// One version and set of values a deployment ran, or tried to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeploymentRevision {
    pub revision: u32,
    pub version: String,
    /// Without secrets.
    #[schema(value_type = Object)]
    pub values: Map<String, Value>,
    /// The secret values it holds, as JSON pointers.
    pub secrets: Vec<String>,
    pub run_id: Option<Uuid>,
    /// `pending`, `deployed`, `superseded` or `failed`.
    pub status: String,
    /// For a rollback: the revision it copied.
    pub rollback_of: Option<u32>,
    pub created_at: DateTime<Utc>,
}

/// A catalog service on a cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Deployment {
    pub id: Uuid,
    /// The organization's name.
    pub org: String,
    pub cluster_id: Uuid,
    pub cluster_name: String,
    pub service: String,
    /// The release's name: the service's, unique on the cluster.
    pub release: String,
    /// The version of the revision deployed now (or being deployed first).
    pub version: String,
    pub status: DeploymentStatus,
    /// Why it is in its status.
    pub reason: Option<String>,
    /// The revision running now; none before the first deploy succeeds.
    pub current_revision: Option<u32>,
    /// When its service last said it was ready.
    pub health_checked_at: Option<DateTime<Utc>>,
    /// The values of the newest revision, without secrets.
    #[schema(value_type = Object)]
    pub values: Map<String, Value>,
    /// What it reports once up (its URL, the broker's address).
    #[schema(value_type = Option<Object>)]
    pub outputs: Option<Map<String, Value>>,
    /// Newest first.
    pub revisions: Vec<DeploymentRevision>,
    /// Its newest run.
    pub last_run: Option<Run>,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_by: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// A deployment and the run that carries out what was asked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeploymentWithRun {
    pub deployment: Deployment,
    pub run: Run,
}

/// One page of a cluster's deployments, newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeploymentPage {
    pub items: Vec<Deployment>,
    /// Pass as `before` for the next page; absent on the last page.
    pub next_before: Option<Uuid>,
}
