//! Live updates: the ordered event log that SSE streams resume from, and per-user
//! notifications.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // An event is for an organization's members (`org_id`) or for one user (`user_id`).
        // Its id orders the stream and is the SSE event id; no foreign keys, so that the log
        // can be pruned independently of what it mentions.
        manager
            .create_table(
                Table::create()
                    .table(Events::Table)
                    .col(big_pk_auto(Events::Id))
                    .col(uuid_null(Events::OrgId))
                    .col(uuid_null(Events::UserId))
                    .col(string(Events::Kind))
                    .col(json(Events::Payload))
                    .col(timestamp_with_time_zone(Events::CreatedAt))
                    .to_owned(),
            )
            .await?;
        index(manager, "events_org_id", Events::Table, &[Events::OrgId, Events::Id]).await?;
        index(manager, "events_user_id", Events::Table, &[Events::UserId, Events::Id]).await?;

        manager
            .create_table(
                Table::create()
                    .table(Notifications::Table)
                    .col(pk_uuid(Notifications::Id))
                    .col(uuid(Notifications::UserId))
                    .col(uuid_null(Notifications::OrgId))
                    .col(string(Notifications::Kind))
                    .col(string(Notifications::Title))
                    .col(text(Notifications::Body))
                    .col(string_null(Notifications::Link))
                    .col(timestamp_with_time_zone_null(Notifications::ReadAt))
                    .col(timestamp_with_time_zone(Notifications::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Notifications::Table, Notifications::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        index(manager, "notifications_user_id", Notifications::Table, &[Notifications::UserId, Notifications::Id]).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Notifications::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Events::Table).to_owned()).await
    }
}

async fn index<T: IntoIden + Copy + 'static, C: IntoIden + Copy + 'static>(
    manager: &SchemaManager<'_>,
    name: &str,
    table: T,
    columns: &[C],
) -> Result<(), DbErr> {
    let mut index = Index::create();
    index.name(name).table(table);
    for &column in columns {
        index.col(column);
    }
    manager.create_index(index.to_owned()).await
}

#[derive(DeriveIden, Clone, Copy)]
enum Events {
    Table,
    Id,
    OrgId,
    UserId,
    Kind,
    Payload,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Notifications {
    Table,
    Id,
    UserId,
    OrgId,
    Kind,
    Title,
    Body,
    Link,
    ReadAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}
