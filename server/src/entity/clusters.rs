use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "clusters")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    /// `None` for the simulated `local` target when no account was chosen.
    pub cloud_account_id: Option<Uuid>,
    /// The DNS-1123 name: prefix and suffix joined.
    pub name: String,
    /// `name` while the cluster exists; a destroyed cluster's key is suffixed so the name is free.
    pub name_key: String,
    /// `aws-eks`, `azure-aks`, `gcp-gke` or `local`.
    pub target: String,
    /// The validated [`crate::clusters::spec::ClusterSpec`].
    pub spec: Json,
    /// Derived from the runs: `pending`, `provisioning`, `ready`, `failed`, `destroying`, `destroyed`.
    pub status: String,
    /// Non-sensitive Terraform outputs of the last successful apply.
    pub outputs: Option<Json>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
