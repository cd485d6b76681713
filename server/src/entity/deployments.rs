use sea_orm::entity::prelude::*;

/// A catalog service on a cluster: see `crate::deployments`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "deployments")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    pub cluster_id: Uuid,
    pub service: String,
    /// The chart version of the newest revision.
    pub version: String,
    pub release: String,
    /// `release` while the deployment exists; an uninstalled one's key is suffixed, freeing it.
    pub release_key: String,
    /// `pending`, `deploying`, `healthy`, `degraded`, `failed`, `uninstalling`, `uninstalled`.
    pub status: String,
    pub reason: Option<String>,
    pub current_revision: Option<i32>,
    pub health_checked_at: Option<DateTimeUtc>,
    /// The newest revision's values, without secrets.
    pub values: Json,
    /// The newest revision's secrets (JSON pointer → value), sealed.
    pub secrets_key_id: Option<String>,
    pub secrets_sealed: Option<Vec<u8>>,
    /// The token Fleetplane holds for the service's own API (fleet-telemetry's admin token, for
    /// the fleet proxy), sealed; the service is given only its SHA-256.
    pub service_token_key_id: Option<String>,
    pub service_token_sealed: Option<Vec<u8>>,
    /// What the last successful deploy reported (URL, broker address).
    pub outputs: Option<Json>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_by: Option<Uuid>,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
