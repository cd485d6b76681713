//! Connecting to the database both halves keep their records in: SQLite (the embedded default,
//! a file in the data directory) or PostgreSQL, chosen by the URL's scheme.

use std::{path::Path, str::FromStr, time::Duration};

use anyhow::Context;
use sea_orm::{
    ConnectOptions, Database, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, SqliteTransactionMode,
    TransactionOptions, TransactionTrait,
    sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous},
};

/// Whether a database URL names PostgreSQL (anything else is SQLite).
pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres")
}

/// Opens a pool of `pool_size` connections to `url`. For SQLite the file (and its directory)
/// is created readable by its owner only, in WAL mode with a busy timeout, foreign keys on.
/// Whether `err` means the database is not reachable (connection, pool or I/O), as opposed to
/// a query it refused: the first is a 503 to try again, the second a bug or a conflict.
pub fn is_unavailable(err: &sea_orm::DbErr) -> bool {
    use sea_orm::{DbErr, RuntimeErr, sqlx::Error as SqlxError};
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            matches!(**e, SqlxError::PoolTimedOut | SqlxError::PoolClosed | SqlxError::Io(_))
        }
        _ => false,
    }
}

pub async fn connect(url: &str, pool_size: u32) -> anyhow::Result<DatabaseConnection> {
    if !is_postgres(url) {
        let options = SqliteConnectOptions::from_str(url).context("reading the SQLite URL")?;
        let file = options.get_filename();
        if !file.as_os_str().is_empty() && file != Path::new(":memory:") {
            if let Some(dir) = file.parent().filter(|dir| !dir.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating the data directory {}", dir.display()))?;
            }
            owner_only(file)?;
        }
    }
    let mut options = ConnectOptions::new(url);
    options
        .max_connections(pool_size)
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
    let backend = if is_postgres(url) { "PostgreSQL" } else { "SQLite" };
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

/// Databases for tests, on the backend the test command chose: `FLEETPLANE_TEST_DATABASE` is
/// `sqlite` (the default) or `postgres`, with `FLEETPLANE_TEST_PG_URL` naming the server.
pub mod testing {
    use std::path::Path;

    use sea_orm::{ConnectionTrait, Database};

    /// Which database this run of the tests uses.
    pub fn backend() -> &'static str {
        match std::env::var("FLEETPLANE_TEST_DATABASE").as_deref() {
            Ok("postgres") => "postgres",
            Ok("sqlite") | Err(_) => "sqlite",
            Ok(other) => panic!("FLEETPLANE_TEST_DATABASE={other}: expected sqlite or postgres"),
        }
    }

    /// The URL of a new, empty database: on PostgreSQL one created for the caller, on SQLite
    /// a file `name.db` in `dir`.
    pub async fn fresh_database_url(dir: &Path, name: &str) -> String {
        match backend() {
            "postgres" => {
                let admin = std::env::var("FLEETPLANE_TEST_PG_URL").expect(
                    "FLEETPLANE_TEST_PG_URL must point at a PostgreSQL server when FLEETPLANE_TEST_DATABASE=postgres",
                );
                let suffix: String = rand::random::<[u8; 12]>().iter().map(|b| format!("{b:02x}")).collect();
                let database = format!("{name}_test_{suffix}");
                let server = Database::connect(format!("{admin}/postgres")).await.expect("connect to PostgreSQL");
                server.execute_unprepared(&format!("CREATE DATABASE {database}")).await.expect("create test database");
                server.close().await.expect("close admin connection");
                format!("{admin}/{database}")
            }
            _ => format!("sqlite://{}?mode=rwc", dir.join(format!("{name}.db")).display()),
        }
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

    #[tokio::test]
    async fn a_sqlite_database_is_created_with_its_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("nested").join("registry.db");
        let db = connect(&format!("sqlite://{}?mode=rwc", file.display()), 2).await.expect("connected");
        begin_write(&db).await.expect("a write transaction").commit().await.expect("committed");
        assert_eq!(mode(&file), 0o600);
    }
}
