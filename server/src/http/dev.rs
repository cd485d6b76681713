//! The dev outbox: with no SMTP server configured, the emails that would have been sent, for
//! people trying Fleetplane on their own machine. By default it exists only on a server that
//! listens on loopback, and answers only clients that connect directly (no proxy says it
//! forwarded the request), so a server left without SMTP never shows verification links to the
//! network; `dev_outbox = true` serves it to everyone, `false` turns it off.

use std::net::SocketAddr;

use axum::{
    Json,
    extract::{ConnectInfo, State},
    http::HeaderMap,
};
use fleetplane_api as api;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::direct_loopback;
use crate::{
    config::DevOutbox,
    error::{AppError, Problem, Result},
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_outbox))
}

/// Whether this server has a dev outbox: it keeps mail rather than sending it, and may show it.
pub fn exists(state: &AppState) -> bool {
    state.config.dev_outbox() != DevOutbox::Off
}

/// Emails written to the log instead of sent (no SMTP configured), newest first. By default
/// for direct clients on this host only.
#[utoipa::path(get, path = "/api/v1/dev/outbox", tag = "development", security(()), responses(
    (status = 200, body = [api::OutboxEmail]),
    (status = 404, description = "`not_found`: there is no dev outbox, or not for this client", body = Problem, content_type = "application/problem+json"),
))]
async fn list_outbox(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<Vec<api::OutboxEmail>>> {
    let open = match state.config.dev_outbox() {
        DevOutbox::Off => false,
        DevOutbox::DirectLoopback => direct_loopback(peer.ip(), &headers),
        DevOutbox::On => true,
    };
    if !open {
        return Err(AppError::not_found("not_found", "Nothing exists at this address."));
    }
    let emails = state.mail.dev_outbox(50).await?;
    Ok(Json(
        emails
            .into_iter()
            .map(|e| api::OutboxEmail {
                id: e.id,
                to: e.to_address,
                subject: e.subject,
                body: e.body_text.unwrap_or_default(),
                created_at: e.created_at,
            })
            .collect(),
    ))
}
