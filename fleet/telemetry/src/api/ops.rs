//! Health for orchestrators, metrics for Prometheus, and where bikes connect.

use axum::{
    Json,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
};
use fleetplane_common::{http::metrics::CONTENT_TYPE, problem::Problem};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    ApiError, AppState, Result,
    auth::Caller,
    model::{BrokerView, Health},
};
use crate::registry::tokens::Scope;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(broker))
}

fn status(status: &str) -> Json<Health> {
    Json(Health { status: status.to_owned(), ingest: None })
}

/// The process is up and serving HTTP.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()), responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    status("ok")
}

/// The service can do its work: the registry's database and the telemetry store answer.
#[utoipa::path(get, path = "/readyz", tag = "operations", security(()), responses(
    (status = 200, body = Health),
    (status = 503, description = "`database_unavailable`, `store_unavailable`", body = Problem, content_type = "application/problem+json"),
))]
async fn readyz(State(state): State<AppState>) -> Result<Json<Health>> {
    state.registry.database().ping().await.map_err(|e| {
        tracing::warn!(error = %e, "readiness check: the registry's database is unreachable");
        ApiError::Unavailable {
            code: "database_unavailable",
            detail: "The registry's database is not reachable.".into(),
        }
    })?;
    state.store.ping().await.map_err(ApiError::store)?;
    // The API serves while the broker is away: the ingest's state is told, not judged.
    let subscribed = state.stats.subscribed.load(std::sync::atomic::Ordering::Relaxed);
    let ingest = if subscribed { "subscribed" } else { "connecting" };
    Ok(Json(Health { status: "ready".to_owned(), ingest: Some(ingest.to_owned()) }))
}

/// Prometheus metrics in the text exposition format: requests, the ingest's counters, the
/// quarantine by reason. Needs a token (any scope).
#[utoipa::path(get, path = "/metrics", tag = "operations", responses(
    (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain; version=0.0.4"),
    (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
))]
async fn metrics(State(state): State<AppState>, caller: Caller) -> Result<impl IntoResponse> {
    caller.require(Scope::Read)?;
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], state.render_metrics()))
}

/// Where bikes connect: the broker's URL (MQTT over TLS, with the bike's own certificate).
#[utoipa::path(get, path = "/api/v1/broker", tag = "operations", responses(
    (status = 200, body = BrokerView),
    (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
))]
async fn broker(State(state): State<AppState>, caller: Caller) -> Result<Json<BrokerView>> {
    caller.require(Scope::Read)?;
    let url = state.settings.broker_url.clone();
    let rest = url.trim_start_matches("mqtts://");
    let (host, port) = rest.rsplit_once(':').map_or((rest, 8883), |(h, p)| (h, p.parse().unwrap_or(8883)));
    Ok(Json(BrokerView { host: host.to_owned(), port, url }))
}
