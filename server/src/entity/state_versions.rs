use sea_orm::entity::prelude::*;

/// One version of a cluster's Terraform state, sealed.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "state_versions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub cluster_id: Uuid,
    pub serial: i64,
    pub lineage: String,
    pub run_id: Option<Uuid>,
    /// Plaintext size in bytes.
    pub size: i32,
    pub key_id: String,
    pub ciphertext: Vec<u8>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
