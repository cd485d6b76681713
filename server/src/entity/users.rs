use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// As the user typed it (trimmed); mail goes here.
    pub email: String,
    /// Lower-cased; unique, and what sign-in looks up.
    pub email_normalized: String,
    pub username: String,
    /// argon2id PHC string; `None` for accounts that only sign in through a provider.
    pub password_hash: Option<String>,
    pub email_verified_at: Option<DateTimeUtc>,
    /// Sessions carry the version they were issued under; bumping it revokes them all.
    pub session_version: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
