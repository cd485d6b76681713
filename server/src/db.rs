//! Database connection and migrations, for SQLite (embedded default) and PostgreSQL.

use std::{path::Path, str::FromStr, time::Duration};

use anyhow::Context;
use fleetplane_migrations::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, Database, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, SqliteTransactionMode,
    TransactionOptions, TransactionTrait,
    sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous},
};

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
        let options = SqliteConnectOptions::from_str(config.database_url.expose()).context("reading the SQLite URL")?;
        if !options.get_filename().as_os_str().is_empty() && options.get_filename() != Path::new(":memory:") {
            owner_only(options.get_filename())?;
        }
    }
    let mut options = ConnectOptions::new(config.database_url.expose());
    options
        .max_connections(pool_size(config))
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        .sqlx_logging_level(tracing::log::LevelFilter::Debug)
        // WAL lets readers work while one writer writes; the busy timeout makes a second
        // writer wait for the first instead of failing with "database is locked".
        .map_sqlx_sqlite_opts(|opts| {
            opts.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                .create_if_missing(true)
        });
    // The URL may hold a password: the error names the backend, never the URL.
    let backend = if config.is_postgres() { "PostgreSQL" } else { "SQLite" };
    Database::connect(options).await.with_context(|| format!("connecting to {backend}"))
}

/// Creates the SQLite file readable by its owner only (SQLite gives its `-wal` and `-shm`
/// files the same mode), or takes away what others may do with one that exists.
fn owner_only(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let opened = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path);
    match opened {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let mode =
                std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "the database file was readable by others; it is now 0600");
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                    .with_context(|| format!("making {} readable by its owner only", path.display()))?;
            }
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("creating the database file {}", path.display())),
    }
}

pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<()> {
    Migrator::up(db, None).await.context("running database migrations")
}

/// Starts a transaction that will write. On SQLite it takes the write lock up front
/// (`BEGIN IMMEDIATE`), so two writers queue on the busy timeout instead of one failing when
/// its read lock cannot be upgraded.
pub async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    match db.get_database_backend() {
        DbBackend::Sqlite => {
            db.begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..TransactionOptions::default()
            })
            .await
        }
        _ => db.begin().await,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn the_database_file_is_for_its_owner_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let new = dir.path().join("new.db");
        owner_only(&new).expect("created");
        assert_eq!(mode(&new), 0o600);
        let old = dir.path().join("old.db");
        std::fs::write(&old, b"").expect("write");
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        owner_only(&old).expect("tightened");
        assert_eq!(mode(&old), 0o600);
        let missing = dir.path().join("no such dir").join("x.db");
        assert!(owner_only(&missing).unwrap_err().to_string().contains("creating the database file"));
    }
}
