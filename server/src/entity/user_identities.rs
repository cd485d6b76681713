use sea_orm::entity::prelude::*;

/// An account at an outside identity provider (Google) that signs in as a local user.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "user_identities")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: Uuid,
    /// `google`.
    pub provider: String,
    /// The OpenID issuer, and the subject it gave the account: together, the identity.
    pub issuer: String,
    pub subject: String,
    /// The provider's email for the account when last seen, for display.
    pub email: String,
    pub created_at: DateTimeUtc,
    pub last_used_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
