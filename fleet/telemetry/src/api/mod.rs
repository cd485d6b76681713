//! The HTTP API, `/api/v1`, with the control plane's conventions: JSON bodies, problem+json
//! errors with stable codes, cursor paging, an OpenAPI document at `/api/openapi.json`,
//! `/healthz`, `/readyz` and `/metrics`. Every `/api/v1` call needs a bearer token ([`auth`]).

use std::{collections::HashMap, ops::Deref, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::{Request, State},
    http::StatusCode,
    middleware::{self, Next},
    response::Response,
    routing::{any, get},
};
use fleet_proto::DeviceId;
use fleetplane_common::{
    http::metrics::{self as http_metrics, HttpMetrics},
    problem::{self, FieldError, Problem},
};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry as MetricsRegistry,
};
use utoipa::{
    Modify, OpenApi,
    openapi::{
        OpenApi as OpenApiDoc,
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};
use utoipa_axum::router::OpenApiRouter;

pub mod auth;
mod bikes;
mod error;
mod live;
pub mod model;
mod ops;
mod telemetry;

pub use error::{ApiError, Result};

use crate::{
    crl::CrlPublisher,
    fleet_state::{Latest, Standings},
    ingest::IngestStats,
    packet::Reason,
    pki::Authority,
    registry::{Bike, Registry, RegistryError, Standing},
    store::TelemetryStore,
};

/// What the API is configured with.
#[derive(Clone, Debug)]
pub struct ApiSettings {
    /// A bike is online if it was seen this recently.
    pub online_window: Duration,
    /// Certificates issued without a stated validity last this long.
    pub certificate_validity: Duration,
    /// Where bikes connect: `mqtts://host:port`.
    pub broker_url: String,
    /// The comment sent on a quiet live stream.
    pub heartbeat: Duration,
}

/// Everything a request may need: the parts it was built from, and its metrics.
pub struct Service {
    parts: Parts,
    metrics: MetricsRegistry,
    http_metrics: HttpMetrics,
    known_tokens: auth::KnownTokens,
    known_bikes: KnownBikes,
}

impl Deref for Service {
    type Target = Parts;

    fn deref(&self) -> &Parts {
        &self.parts
    }
}

#[derive(Clone)]
pub struct AppState(Arc<Service>);

impl Deref for AppState {
    type Target = Service;

    fn deref(&self) -> &Service {
        &self.0
    }
}

/// What [`AppState::new`] is built from, and what requests read.
pub struct Parts {
    pub registry: Registry,
    pub authority: Arc<Authority>,
    pub store: Arc<dyn TelemetryStore>,
    pub standings: Standings,
    pub latest: Latest,
    pub stats: Arc<IngestStats>,
    pub crl: CrlPublisher,
    pub settings: ApiSettings,
    pub shutdown: tokio_util::sync::CancellationToken,
}

impl AppState {
    pub fn new(parts: Parts) -> Self {
        let mut metrics = MetricsRegistry::with_prefix("fleet");
        let http_metrics = HttpMetrics::register(&mut metrics);
        metrics.register_collector(Box::new(IngestCollector(parts.stats.clone(), parts.latest.clone())));
        Self(Arc::new(Service {
            parts,
            metrics,
            http_metrics,
            known_tokens: auth::KnownTokens::default(),
            known_bikes: KnownBikes::default(),
        }))
    }

    fn known_tokens(&self) -> &auth::KnownTokens {
        &self.0.known_tokens
    }

    /// The registry's bike, from memory when it was read before. A bike changes only when it
    /// is decommissioned, which the standings learn (at once here, within their refresh from
    /// other replicas); a bike remembered in service whose standing says decommissioned is read
    /// again.
    async fn bike(&self, device_id: &DeviceId) -> std::result::Result<Bike, RegistryError> {
        let decommissioned = self.standings.get(device_id) == Some(Standing::Decommissioned);
        if let Some(bike) = self.0.known_bikes.get(device_id)
            && (bike.decommissioned_at.is_some() || !decommissioned)
        {
            return Ok(bike);
        }
        let bike = self.registry.bike(device_id).await?;
        self.0.known_bikes.remember(bike.clone());
        Ok(bike)
    }

    fn render_metrics(&self) -> String {
        http_metrics::render(&self.metrics)
    }
}

/// The most bikes remembered at once; past it, the memory starts again.
const MOST_BIKES_REMEMBERED: usize = 100_000;

/// Bikes read from the registry, by device id.
#[derive(Default)]
struct KnownBikes(std::sync::Mutex<HashMap<DeviceId, Bike>>);

impl KnownBikes {
    fn get(&self, device_id: &DeviceId) -> Option<Bike> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(device_id).cloned()
    }

    fn remember(&self, bike: Bike) {
        let mut known = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if known.len() >= MOST_BIKES_REMEMBERED {
            known.clear();
        }
        known.insert(bike.device_id.clone(), bike);
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "fleet-telemetry API",
        description = "The fleet's bikes, their certificates, their telemetry (history, downsampled, live) and the \
            quarantine. Every call under /api/v1 needs `Authorization: Bearer <token>` (`fleet-telemetry admin \
            create-token`); scopes are read < write < admin. Errors are `application/problem+json` with a stable `code`.",
    ),
    modifiers(&BearerAuth),
    components(schemas(Problem, FieldError)),
    security(("bearer" = [])),
    tags(
        (name = "bikes", description = "The registry of bikes, with their latest state"),
        (name = "certificates", description = "Bikes' certificates, the fleet CA and its CRL"),
        (name = "telemetry", description = "History, downsampled history and live telemetry"),
        (name = "quarantine", description = "Packets that were not stored, and why"),
        (name = "operations", description = "Health, readiness and metrics"),
    ),
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("fltk_…").build()),
        );
    }
}

fn api() -> (Router<AppState>, OpenApiDoc) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(bikes::router())
        .merge(telemetry::router())
        .merge(live::router())
        .merge(ops::router())
        .split_for_parts()
}

/// The OpenAPI document served at `/api/openapi.json`.
pub fn openapi() -> OpenApiDoc {
    api().1
}

pub fn router(state: AppState) -> Router {
    let (api, openapi) = api();
    let openapi = Arc::new(openapi.to_json().unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")));
    api.route(
        "/api/openapi.json",
        get(move || async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], openapi.as_str().to_owned()) }),
    )
    .fallback(any(not_found))
    .method_not_allowed_fallback(method_not_allowed)
    .layer(middleware::from_fn_with_state(state.clone(), track))
    .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
    .with_state(state)
}

/// The largest request body: a CSR is at most 16 KiB.
const MAX_BODY: usize = 64 * 1024;

async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    state.http_metrics.track(request, next).await
}

async fn not_found() -> Response {
    problem::status_problem(StatusCode::NOT_FOUND, "not_found", "There is nothing at this path.")
}

async fn method_not_allowed() -> Response {
    problem::status_problem(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "This path does not take that method.",
    )
}

/// The ingest's counters and the fleet's size, read on every scrape.
struct IngestCollector(Arc<IngestStats>, Latest);

impl std::fmt::Debug for IngestCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestCollector").field("stats", &self.0).finish_non_exhaustive()
    }
}

impl Collector for IngestCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::result::Result<(), std::fmt::Error> {
        use std::sync::atomic::Ordering::Relaxed;
        let s = &self.0;
        let counters: [(&str, &str, u64); 11] = [
            ("ingest_messages", "MQTT messages the ingest took", s.messages.load(Relaxed)),
            (
                "ingest_stored",
                "Packets stored, each once (on ClickHouse: written, redeliveries included)",
                s.stored.load(Relaxed),
            ),
            (
                "ingest_duplicates",
                "Packets delivered again and not stored again (on ClickHouse: only within one batch)",
                s.duplicates.load(Relaxed),
            ),
            (
                "ingest_acknowledged",
                "Messages acknowledged to the broker after their batch committed",
                s.acknowledged.load(Relaxed),
            ),
            (
                "ingest_acks_superseded",
                "Acknowledgements not sent: the message came on an earlier connection, and the broker sends it again",
                s.superseded.load(Relaxed),
            ),
            ("ingest_batches", "Batches committed", s.batches.load(Relaxed)),
            ("ingest_store_failures", "Batch commits that failed and were retried", s.store_failures.load(Relaxed)),
            ("ingest_connections", "Connections to the broker", s.connections.load(Relaxed)),
            ("ingest_redelivered", "Messages the broker marked as sent again", s.redelivered.load(Relaxed)),
            (
                "ingest_quarantine_dropped",
                "Quarantined packets over the per-batch cap: counted, not kept",
                s.quarantine_dropped.load(Relaxed),
            ),
            (
                "ingest_queue_high_water",
                "The most messages waiting for the batcher at once",
                s.queue_high_water.load(Relaxed),
            ),
        ];
        for (name, help, value) in counters {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(value).encode(metric)?;
        }
        let mut family = encoder.encode_descriptor(
            "ingest_quarantined",
            "Packets quarantined, by reason",
            None,
            MetricType::Counter,
        )?;
        for (reason, count) in Reason::ALL.iter().zip(&s.by_reason) {
            let labels = [("reason", reason.as_str())];
            ConstCounter::new(count.load(Relaxed)).encode(family.encode_family(&labels)?)?;
        }
        let bikes =
            encoder.encode_descriptor("bikes_seen", "Bikes with a latest state in memory", None, MetricType::Gauge)?;
        ConstGauge::new(i64::try_from(self.1.len()).unwrap_or(i64::MAX)).encode(bikes)?;
        Ok(())
    }
}
