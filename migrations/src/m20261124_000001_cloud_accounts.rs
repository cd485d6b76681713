//! Linked cloud accounts. Credentials are stored only sealed (see the server's `crypto`).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(CloudAccounts::Table)
                    .col(pk_uuid(CloudAccounts::Id))
                    .col(uuid(CloudAccounts::OrgId))
                    .col(string(CloudAccounts::Provider))
                    .col(string(CloudAccounts::Name))
                    .col(string(CloudAccounts::NameKey))
                    .col(string(CloudAccounts::Environment))
                    .col(string(CloudAccounts::Status))
                    .col(text_null(CloudAccounts::StatusReason))
                    .col(json_null(CloudAccounts::Identity))
                    .col(json(CloudAccounts::Settings))
                    .col(string(CloudAccounts::SecretHint))
                    .col(string(CloudAccounts::SecretKeyId))
                    .col(blob(CloudAccounts::SecretCiphertext))
                    .col(timestamp_with_time_zone_null(CloudAccounts::VerifiedAt))
                    .col(timestamp_with_time_zone(CloudAccounts::CheckedAt))
                    .col(uuid_null(CloudAccounts::CreatedBy))
                    .col(timestamp_with_time_zone(CloudAccounts::CreatedAt))
                    .col(timestamp_with_time_zone(CloudAccounts::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(CloudAccounts::Table, CloudAccounts::OrgId)
                            .to(Organizations::Table, Organizations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(CloudAccounts::Table, CloudAccounts::CreatedBy)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        // Names are unique within an organization regardless of case (`name_key` is lower-cased).
        manager
            .create_index(
                Index::create()
                    .name("cloud_accounts_org_name_key")
                    .table(CloudAccounts::Table)
                    .col(CloudAccounts::OrgId)
                    .col(CloudAccounts::NameKey)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(CloudAccounts::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum CloudAccounts {
    Table,
    Id,
    OrgId,
    Provider,
    Name,
    NameKey,
    Environment,
    Status,
    StatusReason,
    Identity,
    Settings,
    SecretHint,
    SecretKeyId,
    SecretCiphertext,
    VerifiedAt,
    CheckedAt,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Organizations {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}
