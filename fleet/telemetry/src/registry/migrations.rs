//! The registry's schema: one ordered list of migrations for SQLite and PostgreSQL, kept in a
//! table of its own (`fleet_migrations`) so that it never mixes with the control plane's.

use sea_orm_migration::{prelude::*, schema::*};

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(Registry), Box::new(ApiTokens)]
    }

    fn migration_table_name() -> DynIden {
        "fleet_migrations".into_iden()
    }
}

/// Bikes, their certificates, the fleet CA and the audit trail.
struct Registry;

impl MigrationName for Registry {
    fn name(&self) -> &str {
        "m20261206_000001_registry"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Registry {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The one fleet CA (id 1). Keys are sealed; the CRL number only ever grows.
        manager
            .create_table(
                Table::create()
                    .table(Authority::Table)
                    .col(integer(Authority::Id).primary_key())
                    .col(text(Authority::RootCertPem))
                    .col(string(Authority::RootKeyId))
                    .col(blob(Authority::RootKey))
                    .col(text(Authority::IssuingCertPem))
                    .col(string(Authority::IssuingKeyId))
                    .col(blob(Authority::IssuingKey))
                    .col(big_integer(Authority::CrlNumber))
                    .col(timestamp_with_time_zone(Authority::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Bikes::Table)
                    .col(string(Bikes::DeviceId).primary_key())
                    .col(string_uniq(Bikes::Serial))
                    .col(string(Bikes::Model))
                    .col(string(Bikes::FirmwareVersion))
                    .col(string_null(Bikes::DisplayName))
                    .col(timestamp_with_time_zone(Bikes::RegisteredAt))
                    .col(timestamp_with_time_zone_null(Bikes::DecommissionedAt))
                    .to_owned(),
            )
            .await?;
        // Listing filters by model and firmware.
        for (name, column) in [("bikes_model_idx", Bikes::Model), ("bikes_firmware_idx", Bikes::FirmwareVersion)] {
            manager.create_index(Index::create().name(name).table(Bikes::Table).col(column).to_owned()).await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(Certificates::Table)
                    .col(string(Certificates::Serial).primary_key())
                    .col(string(Certificates::DeviceId))
                    .col(string(Certificates::Source))
                    .col(text(Certificates::CertPem))
                    .col(timestamp_with_time_zone(Certificates::NotBefore))
                    .col(timestamp_with_time_zone(Certificates::NotAfter))
                    .col(timestamp_with_time_zone(Certificates::IssuedAt))
                    .col(timestamp_with_time_zone_null(Certificates::RevokedAt))
                    .col(string_null(Certificates::RevocationReason))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Certificates::Table, Certificates::DeviceId)
                            .to(Bikes::Table, Bikes::DeviceId)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("certificates_device_idx")
                    .table(Certificates::Table)
                    .col(Certificates::DeviceId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .col(big_integer(AuditEvents::Id).primary_key().auto_increment())
                    .col(timestamp_with_time_zone(AuditEvents::At))
                    .col(string(AuditEvents::Actor))
                    .col(string(AuditEvents::Action))
                    .col(string_null(AuditEvents::DeviceId))
                    .col(json_null(AuditEvents::Details))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("audit_events_device_idx")
                    .table(AuditEvents::Table)
                    .col(AuditEvents::DeviceId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [AuditEvents::Table.into_iden(), Certificates::Table.into_iden(), Bikes::Table.into_iden()] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        manager.drop_table(Table::drop().table(Authority::Table).to_owned()).await
    }
}

/// API tokens: stored hashed, each with one scope.
struct ApiTokens;

impl MigrationName for ApiTokens {
    fn name(&self) -> &str {
        "m20261206_000002_api_tokens"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for ApiTokens {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Tokens::Table)
                    .col(string(Tokens::Id).primary_key())
                    .col(string(Tokens::Name))
                    .col(string_uniq(Tokens::TokenHash))
                    .col(string(Tokens::Prefix))
                    .col(string(Tokens::Scope))
                    .col(timestamp_with_time_zone(Tokens::CreatedAt))
                    .col(timestamp_with_time_zone_null(Tokens::RevokedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Tokens::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum Tokens {
    #[sea_orm(iden = "api_tokens")]
    Table,
    Id,
    Name,
    TokenHash,
    Prefix,
    Scope,
    CreatedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum Authority {
    #[sea_orm(iden = "fleet_authority")]
    Table,
    Id,
    RootCertPem,
    RootKeyId,
    RootKey,
    IssuingCertPem,
    IssuingKeyId,
    IssuingKey,
    CrlNumber,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Bikes {
    Table,
    DeviceId,
    Serial,
    Model,
    FirmwareVersion,
    DisplayName,
    RegisteredAt,
    DecommissionedAt,
}

#[derive(DeriveIden)]
enum Certificates {
    Table,
    Serial,
    DeviceId,
    Source,
    CertPem,
    NotBefore,
    NotAfter,
    IssuedAt,
    RevokedAt,
    RevocationReason,
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Id,
    At,
    Actor,
    Action,
    DeviceId,
    Details,
}
