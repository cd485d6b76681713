//! The dev outbox: with no SMTP server configured, the emails that would have been sent, for
//! people trying Fleetplane on their own machine. Answers only on loopback, so a server left
//! without SMTP never shows verification links to the network.

use axum::{Json, extract::State};
use fleetplane_api as api;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::ClientIp;
use crate::{
    error::{AppError, Problem, Result},
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_outbox))
}

/// Emails written to the log instead of sent (no SMTP configured), newest first. Loopback only.
#[utoipa::path(get, path = "/api/v1/dev/outbox", tag = "development", security(()), responses(
    (status = 200, body = [api::OutboxEmail]),
    (status = 404, description = "`not_found`: SMTP is configured, or the request is not from loopback", body = Problem, content_type = "application/problem+json"),
))]
async fn list_outbox(State(state): State<AppState>, ClientIp(ip): ClientIp) -> Result<Json<Vec<api::OutboxEmail>>> {
    if !state.mail.dev_outbox_enabled() || !ip.is_loopback() {
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
