use sea_orm::entity::prelude::*;

/// Something a user should know about: a run ended or needs approval, a cloud account failed
/// verification, they were added to an organization.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notifications")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: Uuid,
    pub org_id: Option<Uuid>,
    /// `run_succeeded`, `run_failed`, `approval_needed`, `cloud_account_failed`, `org_invitation`,
    /// `org_invitation_accepted`.
    pub kind: String,
    pub title: String,
    pub body: String,
    /// A page of the UI it is about.
    pub link: Option<String>,
    pub read_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
