use sea_orm::entity::prelude::*;

/// One entry of the ordered event log behind the SSE streams: for an organization's members
/// (`org_id`) or for one user (`user_id`).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "events")]
pub struct Model {
    /// Orders the stream; the SSE event id.
    #[sea_orm(primary_key)]
    pub id: i64,
    pub org_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    /// `run`, `cluster`, `notification`, `notification_read`, `notifications_read_all`,
    /// `notification_deleted`, `membership`.
    pub kind: String,
    pub payload: Json,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
