//! Deployments of catalog services onto clusters, their revisions, and the runs that carry them
//! out (`runs.deployment_id`).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Deployments::Table)
                    .col(pk_uuid(Deployments::Id))
                    .col(uuid(Deployments::OrgId))
                    .col(uuid(Deployments::ClusterId))
                    .col(string(Deployments::Service))
                    // The version of the newest revision.
                    .col(string(Deployments::Version))
                    .col(string(Deployments::Release))
                    // The release's name while the deployment exists; freed when it is uninstalled.
                    .col(string(Deployments::ReleaseKey))
                    // `pending`, `deploying`, `healthy`, `degraded`, `failed`, `uninstalling`,
                    // `uninstalled`.
                    .col(string(Deployments::Status))
                    .col(text_null(Deployments::Reason))
                    .col(integer_null(Deployments::CurrentRevision))
                    .col(timestamp_with_time_zone_null(Deployments::HealthCheckedAt))
                    // The newest revision's values without their secrets.
                    .col(json(Deployments::Values))
                    // The newest revision's secret values (JSON pointer → value), sealed.
                    .col(string_null(Deployments::SecretsKeyId))
                    .col(blob_null(Deployments::SecretsSealed))
                    .col(json_null(Deployments::Outputs))
                    .col(uuid_null(Deployments::CreatedBy))
                    .col(timestamp_with_time_zone(Deployments::CreatedAt))
                    .col(uuid_null(Deployments::UpdatedBy))
                    .col(timestamp_with_time_zone(Deployments::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Deployments::Table, Deployments::ClusterId)
                            .to(Clusters::Table, Clusters::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Deployments::Table, Deployments::OrgId)
                            .to(Organizations::Table, Organizations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("deployments_release_key")
                    .table(Deployments::Table)
                    .col(Deployments::ClusterId)
                    .col(Deployments::ReleaseKey)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("deployments_org_idx")
                    .table(Deployments::Table)
                    .col(Deployments::OrgId)
                    .col(Deployments::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(DeploymentRevisions::Table)
                    .col(pk_uuid(DeploymentRevisions::Id))
                    .col(uuid(DeploymentRevisions::DeploymentId))
                    .col(integer(DeploymentRevisions::Revision))
                    .col(string(DeploymentRevisions::Version))
                    .col(json(DeploymentRevisions::Values))
                    .col(string_null(DeploymentRevisions::SecretsKeyId))
                    .col(blob_null(DeploymentRevisions::SecretsSealed))
                    // For a rollback: the revision it copied.
                    .col(integer_null(DeploymentRevisions::RollbackOf))
                    .col(uuid_null(DeploymentRevisions::RunId))
                    // `pending`, `deployed`, `superseded` or `failed`.
                    .col(string(DeploymentRevisions::Status))
                    .col(timestamp_with_time_zone(DeploymentRevisions::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(DeploymentRevisions::Table, DeploymentRevisions::DeploymentId)
                            .to(Deployments::Table, Deployments::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("deployment_revisions_number_key")
                    .table(DeploymentRevisions::Table)
                    .col(DeploymentRevisions::DeploymentId)
                    .col(DeploymentRevisions::Revision)
                    .unique()
                    .to_owned(),
            )
            .await?;

        // Without a foreign key: SQLite cannot add one to an existing table. Deleting a
        // deployment is not possible through the API (an uninstalled one stays as history).
        manager
            .alter_table(Table::alter().table(Runs::Table).add_column(uuid_null(Runs::DeploymentId)).to_owned())
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("runs_deployment_idx")
                    .table(Runs::Table)
                    .col(Runs::DeploymentId)
                    .col(Runs::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name("runs_deployment_idx").table(Runs::Table).to_owned()).await?;
        manager.alter_table(Table::alter().table(Runs::Table).drop_column(Runs::DeploymentId).to_owned()).await?;
        manager.drop_table(Table::drop().table(DeploymentRevisions::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Deployments::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum Deployments {
    Table,
    Id,
    OrgId,
    ClusterId,
    Service,
    Version,
    Release,
    ReleaseKey,
    Status,
    Reason,
    CurrentRevision,
    HealthCheckedAt,
    Values,
    SecretsKeyId,
    SecretsSealed,
    Outputs,
    CreatedBy,
    CreatedAt,
    UpdatedBy,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum DeploymentRevisions {
    Table,
    Id,
    DeploymentId,
    Revision,
    Version,
    Values,
    SecretsKeyId,
    SecretsSealed,
    RollbackOf,
    RunId,
    Status,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Runs {
    Table,
    Id,
    DeploymentId,
}

#[derive(DeriveIden)]
enum Clusters {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Organizations {
    Table,
    Id,
}
