use sea_orm::entity::prelude::*;

/// A browser session: one sign-in, named by the `sid` in its cookie's JWT.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sessions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: Uuid,
    /// The browser's `User-Agent` when it signed in, shortened.
    pub user_agent: String,
    /// The client's address when it signed in.
    pub ip: String,
    pub created_at: DateTimeUtc,
    /// Updated at most once a minute while the session is used.
    pub last_seen_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    pub revoked_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
