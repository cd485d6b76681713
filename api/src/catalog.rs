//! The deployment catalog: `/api/v1/catalog` and `/api/v1/catalog/{service}`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, value::RawValue};
use utoipa::ToSchema;

/// A service that can be deployed onto a cluster: its Helm chart, the versions of it Fleetplane
/// deploys, and the values a deployment may set.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CatalogEntry {
    /// Its id in deployments: `fleet-telemetry`, `jupyterhub`, `mlflow`, `airflow`, `superset`,
    /// `code-server`.
    pub service: String,
    pub title: String,
    pub description: String,
    pub chart: HelmChart,
    /// The chart versions a deployment may choose, newest first; the first is the default.
    /// Each is pinned: nothing floats to whatever the chart's repository publishes next.
    pub versions: Vec<ChartVersion>,
    /// A JSON Schema (draft 2020-12) of the values a deployment may set, in the chart's own
    /// keys. Every object closes with `additionalProperties: false`; a value marked `writeOnly`
    /// and `x-fleetplane-secret` is sealed when stored and never returned. Sent as written, so
    /// its properties keep their order.
    #[schema(value_type = Object)]
    pub values_schema: Box<RawValue>,
    /// The values a deployment gets when it sets none.
    #[schema(value_type = Object)]
    pub defaults: Map<String, Value>,
    /// The secret values, as JSON pointers (RFC 6901) into the values.
    pub secrets: Vec<String>,
    /// What a deployment reports once it is up.
    pub outputs: Vec<CatalogOutput>,
    /// Whether it runs on the `local` target (this machine's Docker engine), and if not, why.
    pub local: LocalSupport,
}

/// Where the chart comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HelmChart {
    pub name: String,
    pub source: ChartSource,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ChartSource {
    /// A chart in Fleetplane's own repository, at this directory.
    Workspace { path: String },
    /// A Helm chart repository, as `helm repo add` takes it.
    Repository { url: String },
    /// A directory of a git repository at a pinned commit, for a chart published nowhere else.
    Git { url: String, commit: String, path: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChartVersion {
    /// The chart's version.
    pub version: String,
    /// The version of the application it installs.
    pub app_version: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CatalogOutput {
    /// `url`, `admin_username`, `admin_password`, ...
    pub name: String,
    pub description: String,
    /// Sealed when stored, like secret values; shown only to those allowed to see secrets.
    pub secret: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LocalSupport {
    pub supported: bool,
    /// Why not, when it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
