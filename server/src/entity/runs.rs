use sea_orm::entity::prelude::*;

/// A run is a row of the queue: see `crate::runs` for its life cycle.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "runs")]
pub struct Model {
    /// UUIDv7: the queue's first-in first-out order.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    pub cluster_id: Uuid,
    /// For the deployment actions: the deployment the run works on.
    pub deployment_id: Option<Uuid>,
    /// `apply`, `destroy` or `plan`; `deploy`, `upgrade`, `rollback` or `uninstall`.
    pub action: String,
    /// `queued`, `running`, `awaiting_approval`, `applying`, `succeeded`, `failed`, `canceled`.
    pub status: String,
    /// Why the run is in its status (for terminal runs: how it ended).
    pub reason: Option<String>,
    /// The cluster spec the run works from, as it was when queued.
    pub spec: Json,
    pub attempts: i32,
    pub max_attempts: i32,
    /// Not claimed before this time (backoff between attempts).
    pub not_before: DateTimeUtc,
    /// The worker holding the run, while its lease lasts.
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTimeUtc>,
    /// SHA-256 of the token the run's Terraform uses for the state backend (per attempt).
    pub token_hash: Option<String>,
    pub cancel_requested_at: Option<DateTimeUtc>,
    /// `{ "add": n, "change": n, "destroy": n }`.
    pub plan_summary: Option<Json>,
    /// The saved plan file, sealed (it can hold secrets), waiting for its apply.
    pub plan_key_id: Option<String>,
    pub plan_sealed: Option<Vec<u8>>,
    pub outputs: Option<Json>,
    pub exit_code: Option<i64>,
    /// `docker` or `process`: what ran the last attempt.
    pub executor: Option<String>,
    pub requested_by: Option<Uuid>,
    pub approved_by: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
