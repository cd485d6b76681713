use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_events")]
pub struct Model {
    /// UUIDv7: ordered by time, so it doubles as the paging cursor.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The organization concerned; `None` for account events (sign-in, password change).
    pub org_id: Option<Uuid>,
    pub actor_id: Option<Uuid>,
    /// The actor's username (or the email tried, for failed sign-ins) at the time.
    pub actor_name: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub ip: Option<String>,
    pub details: Option<Json>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
