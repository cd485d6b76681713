//! Database connection and migrations, for SQLite (embedded default) and PostgreSQL.

use anyhow::Context;
pub use fleetplane_common::db::begin_write;
use fleetplane_migrations::{Migrator, MigratorTrait};
use sea_orm::DatabaseConnection;

use crate::config::Config;

/// How many connections the server's pool holds: 20 on PostgreSQL, 8 on SQLite (one writer at
/// a time, and readers that seldom wait).
pub fn pool_size(config: &Config) -> u32 {
    if config.is_postgres() { 20 } else { 8 }
}

pub async fn connect(config: &Config) -> anyhow::Result<DatabaseConnection> {
    if !config.is_postgres() {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    }
    fleetplane_common::db::connect(config.database_url.expose(), pool_size(config)).await
}

pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<()> {
    Migrator::up(db, None).await.context("running database migrations")
}
