//! The dev outbox: with no SMTP server configured, the emails that would have been sent, for
//! people trying Fleetplane on their own machine. Answers only on loopback, so a server left
//! without SMTP never shows verification links to the network.

use axum::{Json, extract::State};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::extract::ClientIp;
use crate::{
    error::{AppError, Problem, Result},
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_outbox))
}

#[derive(Serialize, ToSchema)]
pub struct OutboxEmail {
    pub id: Uuid,
    pub to: String,
    pub subject: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

/// Emails written to the log instead of sent (no SMTP configured), newest first. Loopback only.
#[utoipa::path(get, path = "/api/v1/dev/outbox", tag = "development", responses(
    (status = 200, body = [OutboxEmail]),
    (status = 404, description = "`not_found`: SMTP is configured, or the request is not from loopback", body = Problem, content_type = "application/problem+json"),
))]
async fn list_outbox(State(state): State<AppState>, ClientIp(ip): ClientIp) -> Result<Json<Vec<OutboxEmail>>> {
    if !state.mail.dev_outbox_enabled() || !ip.is_loopback() {
        return Err(AppError::not_found("not_found", "Nothing exists at this address."));
    }
    let emails = state.mail.dev_outbox(50).await?;
    Ok(Json(
        emails
            .into_iter()
            .map(|e| OutboxEmail {
                id: e.id,
                to: e.to_address,
                subject: e.subject,
                body: e.body_text.unwrap_or_default(),
                created_at: e.created_at,
            })
            .collect(),
    ))
}
