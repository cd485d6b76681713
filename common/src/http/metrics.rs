//! Prometheus request metrics, the same in every service: requests counted and timed by method,
//! route template and status.

use std::time::Instant;

use axum::{
    extract::{MatchedPath, Request},
    middleware::Next,
    response::Response,
};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    /// The route template (`/api/v1/bikes/{id}`), never the raw path, so that the number of
    /// series stays bounded; requests that match no route share `unmatched`.
    route: String,
    status: u16,
}

type HistogramFamily = Family<RequestLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.25 ms to about 4 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
}

/// `http_requests` and `http_request_duration_seconds`, by method, route and status.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily,
}

impl HttpMetrics {
    /// The request metrics, registered with `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        registry.register("http_requests", "HTTP requests served", requests.clone());
        registry.register("http_request_duration_seconds", "Time from request to response headers", latency.clone());
        Self { requests, latency }
    }

    /// Serves `request` with `next`, recording its route, status and latency. Call it from an
    /// `axum::middleware::from_fn_with_state` function; the route is only known inside the
    /// router, so layer it with `route_layer` or on the router itself.
    pub async fn track(&self, request: Request, next: Next) -> Response {
        let started = Instant::now();
        let method = request.method().as_str().to_owned();
        let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_owned();
        let response = next.run(request).await;
        let labels = RequestLabels { method, route, status: response.status().as_u16() };
        self.requests.get_or_create(&labels).inc();
        self.latency.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
        response
    }
}

/// The Prometheus text exposition of every metric of `registry`.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    if let Err(e) = encode(&mut out, registry) {
        tracing::error!(error = %e, "encoding metrics");
    }
    out
}

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use axum::{Router, body::Body, middleware, routing::get};
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn requests_are_counted_by_route_template_and_status() {
        let mut registry = Registry::with_prefix("test");
        let metrics = HttpMetrics::register(&mut registry);
        let app = Router::new().route("/bikes/{id}", get(|| async { "ok" })).layer(middleware::from_fn(
            move |request, next| {
                let metrics = metrics.clone();
                async move { metrics.track(request, next).await }
            },
        ));
        for path in ["/bikes/a", "/bikes/b", "/nowhere"] {
            let request = axum::http::Request::get(path).body(Body::empty()).expect("request");
            app.clone().oneshot(request).await.expect("served");
        }
        let text = render(&registry);
        assert!(
            text.contains(r#"test_http_requests_total{method="GET",route="/bikes/{id}",status="200"} 2"#),
            "{text}"
        );
        assert!(text.contains(r#"test_http_requests_total{method="GET",route="unmatched",status="404"} 1"#), "{text}");
    }
}
