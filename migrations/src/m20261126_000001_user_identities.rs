//! Sign-in identities at outside providers (Google), linked to local accounts.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(UserIdentities::Table)
                    .col(pk_uuid(UserIdentities::Id))
                    .col(uuid(UserIdentities::UserId))
                    .col(string(UserIdentities::Provider))
                    .col(string(UserIdentities::Issuer))
                    .col(string(UserIdentities::Subject))
                    .col(string(UserIdentities::Email))
                    .col(timestamp_with_time_zone(UserIdentities::CreatedAt))
                    .col(timestamp_with_time_zone_null(UserIdentities::LastUsedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(UserIdentities::Table, UserIdentities::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // The provider's subject is the identity; the email can change at the provider.
        manager
            .create_index(
                Index::create()
                    .name("user_identities_issuer_subject_key")
                    .table(UserIdentities::Table)
                    .col(UserIdentities::Issuer)
                    .col(UserIdentities::Subject)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // One identity per provider and account.
        manager
            .create_index(
                Index::create()
                    .name("user_identities_user_provider_key")
                    .table(UserIdentities::Table)
                    .col(UserIdentities::UserId)
                    .col(UserIdentities::Provider)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(UserIdentities::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum UserIdentities {
    Table,
    Id,
    UserId,
    Provider,
    Issuer,
    Subject,
    Email,
    CreatedAt,
    LastUsedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}
