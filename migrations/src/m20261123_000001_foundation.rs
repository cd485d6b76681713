//! Accounts, sessions, API tokens, organizations, memberships, the audit log and the mail outbox.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(pk_uuid(Users::Id))
                    .col(string(Users::Email))
                    .col(string(Users::EmailNormalized))
                    .col(string(Users::Username))
                    .col(string_null(Users::PasswordHash))
                    .col(timestamp_with_time_zone_null(Users::EmailVerifiedAt))
                    .col(big_integer(Users::SessionVersion).default(1))
                    .col(timestamp_with_time_zone(Users::CreatedAt))
                    .col(timestamp_with_time_zone(Users::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        // Unique indexes carry the names the API's conflict mapping looks for.
        unique_index(manager, "users_email_key", Users::Table, &[Users::EmailNormalized]).await?;
        unique_index(manager, "users_username_key", Users::Table, &[Users::Username]).await?;

        manager
            .create_table(
                Table::create()
                    .table(EmailVerificationTokens::Table)
                    .col(pk_uuid(EmailVerificationTokens::Id))
                    .col(uuid(EmailVerificationTokens::UserId))
                    .col(string(EmailVerificationTokens::TokenHash))
                    .col(timestamp_with_time_zone(EmailVerificationTokens::ExpiresAt))
                    .col(timestamp_with_time_zone_null(EmailVerificationTokens::UsedAt))
                    .col(timestamp_with_time_zone(EmailVerificationTokens::CreatedAt))
                    .foreign_key(&mut cascade_to_user(EmailVerificationTokens::Table, EmailVerificationTokens::UserId))
                    .to_owned(),
            )
            .await?;
        unique_index(
            manager,
            "email_verification_tokens_hash_key",
            EmailVerificationTokens::Table,
            &[EmailVerificationTokens::TokenHash],
        )
        .await?;
        index(
            manager,
            "email_verification_tokens_user_idx",
            EmailVerificationTokens::Table,
            &[EmailVerificationTokens::UserId],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(ApiTokens::Table)
                    .col(pk_uuid(ApiTokens::Id))
                    .col(uuid(ApiTokens::UserId))
                    .col(string(ApiTokens::Name))
                    .col(string(ApiTokens::TokenHash))
                    .col(string(ApiTokens::Prefix))
                    .col(timestamp_with_time_zone_null(ApiTokens::ExpiresAt))
                    .col(timestamp_with_time_zone_null(ApiTokens::LastUsedAt))
                    .col(timestamp_with_time_zone_null(ApiTokens::RevokedAt))
                    .col(timestamp_with_time_zone(ApiTokens::CreatedAt))
                    .foreign_key(&mut cascade_to_user(ApiTokens::Table, ApiTokens::UserId))
                    .to_owned(),
            )
            .await?;
        unique_index(manager, "api_tokens_hash_key", ApiTokens::Table, &[ApiTokens::TokenHash]).await?;
        index(manager, "api_tokens_user_idx", ApiTokens::Table, &[ApiTokens::UserId]).await?;

        manager
            .create_table(
                Table::create()
                    .table(Organizations::Table)
                    .col(pk_uuid(Organizations::Id))
                    .col(string(Organizations::Name))
                    .col(string(Organizations::DisplayName))
                    .col(uuid_null(Organizations::PersonalOwnerId))
                    .col(timestamp_with_time_zone(Organizations::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Organizations::Table, Organizations::PersonalOwnerId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        unique_index(manager, "organizations_name_key", Organizations::Table, &[Organizations::Name]).await?;

        manager
            .create_table(
                Table::create()
                    .table(Memberships::Table)
                    .col(uuid(Memberships::OrgId))
                    .col(uuid(Memberships::UserId))
                    .col(string(Memberships::Role))
                    .col(timestamp_with_time_zone(Memberships::CreatedAt))
                    .primary_key(Index::create().col(Memberships::OrgId).col(Memberships::UserId))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Memberships::Table, Memberships::OrgId)
                            .to(Organizations::Table, Organizations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(&mut cascade_to_user(Memberships::Table, Memberships::UserId))
                    .to_owned(),
            )
            .await?;
        index(manager, "memberships_user_idx", Memberships::Table, &[Memberships::UserId]).await?;

        // No foreign keys: the audit trail outlives the users and organizations it mentions.
        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .col(pk_uuid(AuditEvents::Id))
                    .col(uuid_null(AuditEvents::OrgId))
                    .col(uuid_null(AuditEvents::ActorId))
                    .col(string_null(AuditEvents::ActorName))
                    .col(string(AuditEvents::Action))
                    .col(string_null(AuditEvents::Target))
                    .col(string_null(AuditEvents::Ip))
                    .col(json_null(AuditEvents::Details))
                    .col(timestamp_with_time_zone(AuditEvents::CreatedAt))
                    .to_owned(),
            )
            .await?;
        index(manager, "audit_events_org_idx", AuditEvents::Table, &[AuditEvents::OrgId, AuditEvents::Id]).await?;
        index(manager, "audit_events_actor_idx", AuditEvents::Table, &[AuditEvents::ActorId, AuditEvents::Id]).await?;

        manager
            .create_table(
                Table::create()
                    .table(OutboundEmails::Table)
                    .col(pk_uuid(OutboundEmails::Id))
                    .col(string(OutboundEmails::ToAddress))
                    .col(string(OutboundEmails::Subject))
                    .col(text_null(OutboundEmails::BodyText))
                    .col(string(OutboundEmails::Status))
                    .col(integer(OutboundEmails::Attempts).default(0))
                    .col(timestamp_with_time_zone(OutboundEmails::NextAttemptAt))
                    .col(text_null(OutboundEmails::LastError))
                    .col(timestamp_with_time_zone(OutboundEmails::CreatedAt))
                    .col(timestamp_with_time_zone_null(OutboundEmails::SentAt))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "outbound_emails_due_idx",
            OutboundEmails::Table,
            &[OutboundEmails::Status, OutboundEmails::NextAttemptAt],
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            OutboundEmails::Table.into_iden(),
            AuditEvents::Table.into_iden(),
            Memberships::Table.into_iden(),
            Organizations::Table.into_iden(),
            ApiTokens::Table.into_iden(),
            EmailVerificationTokens::Table.into_iden(),
            Users::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}

async fn unique_index<T, C>(manager: &SchemaManager<'_>, name: &str, table: T, cols: &[C]) -> Result<(), DbErr>
where
    T: IntoIden + 'static,
    C: IntoIden + Copy + 'static,
{
    let mut stmt = Index::create();
    stmt.name(name).table(table).unique();
    for &col in cols {
        stmt.col(col);
    }
    manager.create_index(stmt.to_owned()).await
}

async fn index<T, C>(manager: &SchemaManager<'_>, name: &str, table: T, cols: &[C]) -> Result<(), DbErr>
where
    T: IntoIden + 'static,
    C: IntoIden + Copy + 'static,
{
    let mut stmt = Index::create();
    stmt.name(name).table(table);
    for &col in cols {
        stmt.col(col);
    }
    manager.create_index(stmt.to_owned()).await
}

fn cascade_to_user<T: IntoIden + 'static, C: IntoIden + 'static>(table: T, col: C) -> ForeignKeyCreateStatement {
    ForeignKey::create().from(table, col).to(Users::Table, Users::Id).on_delete(ForeignKeyAction::Cascade).to_owned()
}

#[derive(DeriveIden, Clone, Copy)]
enum Users {
    Table,
    Id,
    Email,
    EmailNormalized,
    Username,
    PasswordHash,
    EmailVerifiedAt,
    SessionVersion,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum EmailVerificationTokens {
    Table,
    Id,
    UserId,
    TokenHash,
    ExpiresAt,
    UsedAt,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum ApiTokens {
    Table,
    Id,
    UserId,
    Name,
    TokenHash,
    Prefix,
    ExpiresAt,
    LastUsedAt,
    RevokedAt,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Organizations {
    Table,
    Id,
    Name,
    DisplayName,
    PersonalOwnerId,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Memberships {
    Table,
    OrgId,
    UserId,
    Role,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum AuditEvents {
    Table,
    Id,
    OrgId,
    ActorId,
    ActorName,
    Action,
    Target,
    Ip,
    Details,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum OutboundEmails {
    Table,
    Id,
    ToAddress,
    Subject,
    BodyText,
    Status,
    Attempts,
    NextAttemptAt,
    LastError,
    CreatedAt,
    SentAt,
}
