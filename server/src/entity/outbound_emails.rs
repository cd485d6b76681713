use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outbound_emails")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub to_address: String,
    pub subject: String,
    /// Dropped once the message is delivered: it may carry a single-use link.
    pub body_text: Option<String>,
    /// `pending`, `sending`, `sent`, `logged` (no SMTP configured) or `failed`.
    pub status: String,
    pub attempts: i32,
    /// When `pending`: not before then. When `sending`: the claim expires then.
    pub next_attempt_at: DateTimeUtc,
    pub last_error: Option<String>,
    pub created_at: DateTimeUtc,
    pub sent_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
