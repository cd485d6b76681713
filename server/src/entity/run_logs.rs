use sea_orm::entity::prelude::*;

/// One line of a run's output, in order.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "run_logs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub run_id: Uuid,
    /// 1, 2, 3… within the run, across attempts.
    #[sea_orm(primary_key, auto_increment = false)]
    pub seq: i64,
    pub attempt: i32,
    /// `stdout`, `stderr` or `system` (Fleetplane's own notes).
    pub stream: String,
    pub text: String,
    pub at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
