//! The API token Fleetplane holds for a deployed service's own API (fleet-telemetry's admin
//! token, for the fleet proxy), sealed like secret values. The service is given only its hash.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters a table one change at a time.
        manager
            .alter_table(
                Table::alter()
                    .table(Deployments::Table)
                    .add_column(string_null(Deployments::ServiceTokenKeyId))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Deployments::Table)
                    .add_column(blob_null(Deployments::ServiceTokenSealed))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter().table(Deployments::Table).drop_column(Deployments::ServiceTokenSealed).to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter().table(Deployments::Table).drop_column(Deployments::ServiceTokenKeyId).to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Deployments {
    Table,
    ServiceTokenKeyId,
    ServiceTokenSealed,
}
