use sea_orm::entity::prelude::*;

/// The lock Terraform holds on a cluster's state, if any.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "state_locks")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub cluster_id: Uuid,
    pub lock_id: String,
    /// Terraform's lock info, as it sent it.
    pub info: Json,
    /// The run whose Terraform took the lock.
    pub run_id: Option<Uuid>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
