//! Fleetplane's control plane: the HTTP API, the web UI host and background work, as a library
//! so that the `fleetplane` binary and the tests start exactly the same server.
//!
//! Layers, from the outside in: `http` (routes, extractors, problem+json) calls the services
//! (`accounts`, `orgs`, `cloud_accounts`, `audit`, `mail`), which use the `entity` models over sea-orm. Shared
//! state is one [`state::AppState`].

pub mod accounts;
pub mod audit;
pub mod auth;
pub mod bus;
pub mod catalog;
pub mod cloud_accounts;
pub mod clusters;
pub mod config;
pub mod crypto;
pub mod db;
pub mod deployments;
pub mod domain;
pub mod entity;
pub mod error;
pub mod events;
pub mod http;
pub mod janitor;
pub use fleetplane_common::keyfile;
pub mod live;
pub mod mail;
pub mod metrics;
pub mod notifications;
pub mod orgs;
pub mod queue;
pub mod runs;
pub mod sessions;
pub mod state;
pub mod terraform_state;
mod ui;
pub mod worker;

use std::future::Future;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// Serves `state` on `listener`, with the embedded workers, until `shutdown` completes. Then the
/// workers interrupt their jobs and hand their runs back to the queue (while the state backend
/// their Terraform talks to still answers), the server stops accepting connections and lets
/// in-flight requests finish, and the background tasks stop.
pub async fn launch(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let background = CancellationToken::new();
    let mailer = tokio::spawn({
        let (state, stop) = (state.clone(), background.clone());
        async move { state.mail.run(stop).await }
    });
    let accounts = tokio::spawn(sessions::follow_changes(state.clone(), state.bus.subscribe(), background.clone()));
    let fan_out = live::start_fan_out(state.clone(), background.clone()).await;
    let workers_stop = CancellationToken::new();
    let workers = start_workers(&state, workers_stop.clone()).await;
    let http_shutdown = {
        let state = state.clone();
        async move {
            shutdown.await;
            workers_stop.cancel();
            if let Some(workers) = workers
                && let Err(e) = workers.await
            {
                tracing::error!(error = %e, "the worker pool failed");
            }
            // Live streams never end by themselves; their clients reconnect with their last id.
            state.live.close();
        }
    };

    let settings = state.config.http.clone();
    http::serve::serve(listener, http::router(state.clone()), state.connections.clone(), settings, http_shutdown).await;

    background.cancel();
    mailer.await.context("mail dispatcher")?;
    fan_out.await.context("event fan-out")?;
    accounts.await.context("following account changes")?;
    state.db.clone().close().await.context("closing the database")?;
    Ok(())
}

/// Starts the embedded worker pool (`FLEETPLANE_WORKERS`, 0 for none).
async fn start_workers(state: &AppState, stop: CancellationToken) -> Option<tokio::task::JoinHandle<()>> {
    let concurrency = state.config.runs.workers;
    if concurrency == 0 {
        tracing::info!("no embedded workers (FLEETPLANE_WORKERS=0): runs wait for `fleetplane worker` processes");
        return None;
    }
    match worker::executor(state).await {
        Ok(executor) => {
            let _ = state.executor.set(executor.clone());
            let pool = worker::Worker::new(state.clone(), executor, concurrency);
            Some(tokio::spawn(pool.run(stop)))
        }
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "runs cannot be carried out on this server");
            None
        }
    }
}

/// Runs workers only (`fleetplane worker`) until `shutdown`, then lets their runs go back to the
/// queue.
pub async fn run_workers(state: AppState, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    let executor = worker::executor(&state).await?;
    let concurrency = state.config.runs.workers.max(1);
    let pool = worker::Worker::new(state.clone(), executor, concurrency);
    let running = tokio::spawn(pool.run(stop.clone()));
    shutdown.await;
    stop.cancel();
    running.await.context("worker pool")?;
    Ok(())
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub use fleetplane_common::http::shutdown_signal;
