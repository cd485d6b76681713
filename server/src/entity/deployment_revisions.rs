use sea_orm::entity::prelude::*;

/// One version and set of values of a deployment, as a deploy, upgrade or rollback ran it.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "deployment_revisions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub deployment_id: Uuid,
    /// 1, 2, …: the order revisions were made in.
    pub revision: i32,
    pub version: String,
    /// Without secrets.
    pub values: Json,
    /// The secrets (JSON pointer → value), sealed, bound to this row's id.
    pub secrets_key_id: Option<String>,
    pub secrets_sealed: Option<Vec<u8>>,
    pub rollback_of: Option<i32>,
    pub run_id: Option<Uuid>,
    /// `pending`, `deployed`, `superseded` or `failed`.
    pub status: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
