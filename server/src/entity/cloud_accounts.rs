use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "cloud_accounts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    /// `aws`, `azure` or `gcp`.
    pub provider: String,
    pub name: String,
    /// The name lower-cased: unique within the organization.
    pub name_key: String,
    /// `prod`, `dev`, `uat`, `sandbox` or `other`.
    pub environment: String,
    /// `verified`, `invalid` or `unreachable`, as of `checked_at`.
    pub status: String,
    pub status_reason: Option<String>,
    /// What the credentials resolved to at the last successful verification.
    pub identity: Option<Json>,
    /// The non-secret parts of the configuration (role ARN, tenant id, project id...).
    pub settings: Json,
    /// A masked fragment of a non-secret identifier, so people can tell credentials apart.
    pub secret_hint: String,
    /// Which master key sealed `secret_ciphertext`.
    pub secret_key_id: String,
    /// The credentials, sealed with AES-256-GCM, bound to this row's id.
    pub secret_ciphertext: Vec<u8>,
    pub verified_at: Option<DateTimeUtc>,
    pub checked_at: DateTimeUtc,
    pub created_by: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
