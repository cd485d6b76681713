//! Clusters, their runs (the run queue itself), run logs, Terraform state, and workers.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Clusters::Table)
                    .col(pk_uuid(Clusters::Id))
                    .col(uuid(Clusters::OrgId))
                    // None for the simulated `local` target, which needs no cloud.
                    .col(uuid_null(Clusters::CloudAccountId))
                    .col(string(Clusters::Name))
                    // Lower-cased name while the cluster exists; freed when it is destroyed.
                    .col(string(Clusters::NameKey))
                    .col(string(Clusters::Target))
                    .col(json(Clusters::Spec))
                    .col(string(Clusters::Status))
                    .col(json_null(Clusters::Outputs))
                    .col(uuid_null(Clusters::CreatedBy))
                    .col(timestamp_with_time_zone(Clusters::CreatedAt))
                    .col(timestamp_with_time_zone(Clusters::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Clusters::Table, Clusters::OrgId)
                            .to(Organizations::Table, Organizations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    // A cloud account cannot be deleted while a cluster uses it.
                    .foreign_key(
                        ForeignKey::create()
                            .from(Clusters::Table, Clusters::CloudAccountId)
                            .to(CloudAccounts::Table, CloudAccounts::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("clusters_org_name_key")
                    .table(Clusters::Table)
                    .col(Clusters::OrgId)
                    .col(Clusters::NameKey)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Runs::Table)
                    .col(pk_uuid(Runs::Id))
                    .col(uuid(Runs::OrgId))
                    .col(uuid(Runs::ClusterId))
                    .col(string(Runs::Action))
                    .col(string(Runs::Status))
                    .col(text_null(Runs::Reason))
                    .col(json(Runs::Spec))
                    .col(integer(Runs::Attempts).default(0))
                    .col(integer(Runs::MaxAttempts))
                    .col(timestamp_with_time_zone(Runs::NotBefore))
                    .col(string_null(Runs::LeaseOwner))
                    .col(timestamp_with_time_zone_null(Runs::LeaseExpiresAt))
                    .col(string_null(Runs::TokenHash))
                    .col(timestamp_with_time_zone_null(Runs::CancelRequestedAt))
                    .col(json_null(Runs::PlanSummary))
                    .col(string_null(Runs::PlanKeyId))
                    .col(blob_null(Runs::PlanSealed))
                    .col(json_null(Runs::Outputs))
                    .col(big_integer_null(Runs::ExitCode))
                    .col(string_null(Runs::Executor))
                    .col(uuid_null(Runs::RequestedBy))
                    .col(uuid_null(Runs::ApprovedBy))
                    .col(timestamp_with_time_zone(Runs::CreatedAt))
                    .col(timestamp_with_time_zone_null(Runs::StartedAt))
                    .col(timestamp_with_time_zone_null(Runs::FinishedAt))
                    .col(timestamp_with_time_zone(Runs::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Runs::Table, Runs::ClusterId)
                            .to(Clusters::Table, Clusters::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, cols) in [
            ("runs_status_idx", vec![Runs::Status, Runs::Id]),
            ("runs_cluster_idx", vec![Runs::ClusterId, Runs::Id]),
            ("runs_org_idx", vec![Runs::OrgId, Runs::Id]),
            ("runs_lease_idx", vec![Runs::LeaseExpiresAt]),
        ] {
            let mut index = Index::create();
            index.name(name).table(Runs::Table);
            for col in cols {
                index.col(col);
            }
            manager.create_index(index.to_owned()).await?;
        }
        manager
            .create_index(
                Index::create().name("runs_token_key").table(Runs::Table).col(Runs::TokenHash).unique().to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(RunLogs::Table)
                    .col(uuid(RunLogs::RunId))
                    .col(big_integer(RunLogs::Seq))
                    .col(integer(RunLogs::Attempt))
                    .col(string(RunLogs::Stream))
                    .col(text(RunLogs::Text))
                    .col(timestamp_with_time_zone(RunLogs::At))
                    .primary_key(Index::create().col(RunLogs::RunId).col(RunLogs::Seq))
                    .foreign_key(
                        ForeignKey::create()
                            .from(RunLogs::Table, RunLogs::RunId)
                            .to(Runs::Table, Runs::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(StateVersions::Table)
                    .col(pk_uuid(StateVersions::Id))
                    .col(uuid(StateVersions::ClusterId))
                    .col(big_integer(StateVersions::Serial))
                    .col(string(StateVersions::Lineage))
                    .col(uuid_null(StateVersions::RunId))
                    .col(integer(StateVersions::Size))
                    .col(string(StateVersions::KeyId))
                    .col(blob(StateVersions::Ciphertext))
                    .col(timestamp_with_time_zone(StateVersions::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(StateVersions::Table, StateVersions::ClusterId)
                            .to(Clusters::Table, Clusters::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("state_versions_cluster_idx")
                    .table(StateVersions::Table)
                    .col(StateVersions::ClusterId)
                    .col(StateVersions::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(StateLocks::Table)
                    .col(uuid(StateLocks::ClusterId).primary_key())
                    .col(string(StateLocks::LockId))
                    .col(json(StateLocks::Info))
                    .col(uuid_null(StateLocks::RunId))
                    .col(timestamp_with_time_zone(StateLocks::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(StateLocks::Table, StateLocks::ClusterId)
                            .to(Clusters::Table, Clusters::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Workers::Table)
                    .col(string(Workers::Id).primary_key())
                    .col(string(Workers::Host))
                    .col(string(Workers::Executor))
                    .col(integer(Workers::Concurrency))
                    .col(timestamp_with_time_zone(Workers::StartedAt))
                    .col(timestamp_with_time_zone(Workers::LastSeenAt))
                    .col(timestamp_with_time_zone_null(Workers::StoppedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Workers::Table.into_iden(),
            StateLocks::Table.into_iden(),
            StateVersions::Table.into_iden(),
            RunLogs::Table.into_iden(),
            Runs::Table.into_iden(),
            Clusters::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Clusters {
    Table,
    Id,
    OrgId,
    CloudAccountId,
    Name,
    NameKey,
    Target,
    Spec,
    Status,
    Outputs,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Runs {
    Table,
    Id,
    OrgId,
    ClusterId,
    Action,
    Status,
    Reason,
    Spec,
    Attempts,
    MaxAttempts,
    NotBefore,
    LeaseOwner,
    LeaseExpiresAt,
    TokenHash,
    CancelRequestedAt,
    PlanSummary,
    PlanKeyId,
    PlanSealed,
    Outputs,
    ExitCode,
    Executor,
    RequestedBy,
    ApprovedBy,
    CreatedAt,
    StartedAt,
    FinishedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum RunLogs {
    Table,
    RunId,
    Seq,
    Attempt,
    Stream,
    Text,
    At,
}

#[derive(DeriveIden)]
enum StateVersions {
    Table,
    Id,
    ClusterId,
    Serial,
    Lineage,
    RunId,
    Size,
    KeyId,
    Ciphertext,
    CreatedAt,
}

#[derive(DeriveIden)]
enum StateLocks {
    Table,
    ClusterId,
    LockId,
    Info,
    RunId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Workers {
    Table,
    Id,
    Host,
    Executor,
    Concurrency,
    StartedAt,
    LastSeenAt,
    StoppedAt,
}

#[derive(DeriveIden)]
enum Organizations {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum CloudAccounts {
    Table,
    Id,
}
