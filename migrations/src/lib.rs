//! Fleetplane's database schema.
//!
//! One ordered list of migrations, written with sea-query's schema builder so the same
//! definition produces the right DDL for SQLite (the embedded default) and PostgreSQL.
//! Migrations only ever move forward: a released migration is never edited, a new one is added.

pub use sea_orm_migration::MigratorTrait;
use sea_orm_migration::prelude::*;

mod m20261123_000001_foundation;
mod m20261124_000001_cloud_accounts;
mod m20261125_000001_clusters_runs;
mod m20261126_000001_user_identities;
mod m20261127_000001_events_notifications;
mod m20261203_000001_sessions;
mod m20261204_000001_invitations_resets;
mod m20261207_000001_deployments;
mod m20261208_000001_deployment_tokens;

/// Applies Fleetplane's migrations in order; `fleetplane migrate` and `fleetplane serve` run it.
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_foundation::Migration),
            Box::new(m20261124_000001_cloud_accounts::Migration),
            Box::new(m20261125_000001_clusters_runs::Migration),
            Box::new(m20261126_000001_user_identities::Migration),
            Box::new(m20261127_000001_events_notifications::Migration),
            Box::new(m20261203_000001_sessions::Migration),
            Box::new(m20261204_000001_invitations_resets::Migration),
            Box::new(m20261207_000001_deployments::Migration),
            Box::new(m20261208_000001_deployment_tokens::Migration),
        ]
    }
}
