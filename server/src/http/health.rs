//! Liveness, readiness and metrics for orchestrators and Prometheus.

use std::net::{IpAddr, SocketAddr};

use axum::{
    Json,
    extract::{ConnectInfo, State},
    http::{HeaderMap, StatusCode, header},
    response::IntoResponse,
};
use fleetplane_api as api;
use subtle::ConstantTimeEq;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    config::Secret,
    error::{AppError, Problem, Result},
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(healthz)).routes(routes!(readyz)).routes(routes!(metrics))
}

fn status(status: &str) -> Json<api::Health> {
    Json(api::Health { status: status.to_owned() })
}

/// The process is up and serving HTTP.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()), responses((status = 200, body = api::Health)))]
async fn healthz() -> Json<api::Health> {
    status("ok")
}

/// The server can do its work: the database answers.
#[utoipa::path(get, path = "/readyz", tag = "operations", security(()), responses(
    (status = 200, body = api::Health),
    (status = 503, description = "`database_unavailable`", body = Problem, content_type = "application/problem+json"),
))]
async fn readyz(State(state): State<AppState>) -> Result<Json<api::Health>> {
    state.db.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "readiness check: database unreachable");
        AppError::unavailable("database_unavailable", "The database is not reachable.")
    })?;
    Ok(status("ready"))
}

/// Prometheus metrics in the text exposition format.
///
/// Only for clients on this host that reach it directly, or for `Authorization: Bearer` with
/// the configured metrics token (`FLEETPLANE_METRICS_TOKEN`).
#[utoipa::path(get, path = "/metrics", tag = "operations", security(()), responses(
    (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain; version=0.0.4"),
    (status = 401, description = "`metrics_token_invalid`: the bearer token is not the metrics token",
        body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "`metrics_forbidden`: not a direct loopback client, and no metrics token sent",
        body = Problem, content_type = "application/problem+json"),
))]
async fn metrics(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<impl IntoResponse> {
    may_read_metrics(peer.ip(), &headers, state.config.metrics_token.as_ref())?;
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render()))
}

/// Whether a request from `peer` with `headers` may read the metrics.
///
/// A loopback peer counts as local only when no proxy says it forwarded the request: a reverse
/// proxy on this host would otherwise open the metrics to everyone it serves.
fn may_read_metrics(peer: IpAddr, headers: &HeaderMap, token: Option<&Secret>) -> Result<()> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    if let (Some(sent), Some(token)) = (bearer, token) {
        if bool::from(sent.as_bytes().ct_eq(token.expose().as_bytes())) {
            return Ok(());
        }
        return Err(AppError::unauthorized("metrics_token_invalid", "This is not the metrics token."));
    }
    if super::extract::direct_loopback(peer, headers) {
        return Ok(());
    }
    Err(AppError::forbidden(
        "metrics_forbidden",
        "Metrics are served to clients on this host, or with the metrics token (FLEETPLANE_METRICS_TOKEN) as a bearer token.",
    ))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (header::HeaderName::from_static(name), HeaderValue::from_static(value)))
            .collect()
    }

    #[test]
    fn metrics_are_for_direct_loopback_clients_or_the_token() {
        let loopback: IpAddr = "127.0.0.1".parse().expect("ip");
        let remote: IpAddr = "203.0.113.7".parse().expect("ip");
        let token = Secret::new("prometheus-0123456789abcdefghijklmnop");
        let code = |result: Result<()>| result.err().and_then(|e| e.code());

        assert_eq!(code(may_read_metrics(loopback, &HeaderMap::new(), None)), None);
        assert_eq!(code(may_read_metrics("::1".parse().expect("ip"), &HeaderMap::new(), None)), None);
        assert_eq!(code(may_read_metrics(remote, &HeaderMap::new(), None)), Some("metrics_forbidden"));
        assert_eq!(code(may_read_metrics(remote, &HeaderMap::new(), Some(&token))), Some("metrics_forbidden"));
        // Through a proxy on this host.
        let proxied = headers(&[("x-forwarded-for", "203.0.113.7")]);
        assert_eq!(code(may_read_metrics(loopback, &proxied, None)), Some("metrics_forbidden"));
        let proxied = headers(&[("forwarded", "for=203.0.113.7")]);
        assert_eq!(code(may_read_metrics(loopback, &proxied, None)), Some("metrics_forbidden"));

        let right = headers(&[("authorization", "Bearer prometheus-0123456789abcdefghijklmnop")]);
        assert_eq!(code(may_read_metrics(remote, &right, Some(&token))), None);
        let wrong = headers(&[("authorization", "Bearer prometheus-0123456789abcdefghijklmnoq")]);
        assert_eq!(code(may_read_metrics(remote, &wrong, Some(&token))), Some("metrics_token_invalid"));
        // A bearer token with none configured proves nothing; the peer decides.
        assert_eq!(code(may_read_metrics(remote, &right, None)), Some("metrics_forbidden"));
    }
}
