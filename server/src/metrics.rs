//! Prometheus metrics: request counts and latency histograms by route and status, and those of
//! other parts (the live streams') registered with them.

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::Response,
};
use fleetplane_common::http::metrics::{self as http_metrics, HttpMetrics};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

use crate::state::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectiveLabels {
    /// One of a fixed set ([`crate::http`]'s report handler maps the rest to `other`).
    directive: &'static str,
}

pub struct Metrics {
    registry: Registry,
    http: HttpMetrics,
    csp_violations: Family<DirectiveLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::with(|_| {})
    }
}

impl Metrics {
    /// The request metrics, and those `more` registers.
    pub fn with(more: impl FnOnce(&mut Registry)) -> Self {
        let mut registry = Registry::with_prefix("fleetplane");
        let http = HttpMetrics::register(&mut registry);
        let csp_violations = Family::<DirectiveLabels, Counter>::default();
        registry.register(
            "csp_violations",
            "Content-Security-Policy violations that browsers reported, by directive",
            csp_violations.clone(),
        );
        more(&mut registry);
        Self { registry, http, csp_violations }
    }

    /// Counts a violation report for `directive`.
    pub fn csp_violation(&self, directive: &'static str) {
        self.csp_violations.get_or_create(&DirectiveLabels { directive }).inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        http_metrics::render(&self.registry)
    }
}

/// Middleware recording every request's route, status and latency.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    state.metrics.http.track(request, next).await
}
