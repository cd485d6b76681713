//! Fleetplane's control plane: the HTTP API, the web UI host and background work, as a library
//! so that the `fleetplane` binary and the tests start exactly the same server.
//!
//! Layers, from the outside in: `http` (routes, extractors, problem+json) calls the services
//! (`accounts`, `orgs`, `cloud_accounts`, `audit`, `mail`), which use the `entity` models over sea-orm. Shared
//! state is one [`state::AppState`].

pub mod accounts;
pub mod audit;
pub mod auth;
pub mod cloud_accounts;
pub mod config;
pub mod crypto;
pub mod db;
pub mod domain;
pub mod entity;
pub mod error;
pub mod http;
pub mod keyfile;
pub mod mail;
pub mod metrics;
pub mod orgs;
pub mod state;
mod ui;

use std::{future::Future, net::SocketAddr};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// Serves `state` on `listener` until `shutdown` completes, then stops accepting connections,
/// lets in-flight requests finish, and stops the background tasks.
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

    let app = http::router(state.clone());
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving HTTP")?;

    background.cancel();
    mailer.await.context("mail dispatcher")?;
    state.db.clone().close().await.context("closing the database")?;
    Ok(())
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
