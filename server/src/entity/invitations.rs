use sea_orm::entity::prelude::*;

/// An invitation to join an organization. See [`crate::orgs`] for its rules.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "invitations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    /// The address as the inviter typed it.
    pub email: String,
    /// [`crate::domain::Email::normalized`]: the form accounts are matched by.
    pub email_normalized: String,
    pub role: String,
    pub invited_by: Option<Uuid>,
    pub invited_by_name: String,
    /// `pending`, `accepted`, `declined` or `revoked`.
    pub status: String,
    pub created_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    pub responded_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
