//! Security headers on every response, and the Content-Security-Policy reports browsers send.
//!
//! Pages get their own policy from [`page_policy`], with the nonce that their inline scripts
//! carry ([`crate::ui`]); everything else (JSON, the event streams, assets) gets
//! [`DEFAULT_POLICY`], which lets nothing load at all. Either way nothing may frame us.

use axum::{
    body::Bytes,
    extract::{Request, State},
    http::{HeaderName, HeaderValue, StatusCode, header},
    middleware::Next,
    response::Response,
};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    error::{AppError, Problem, Result},
    state::AppState,
};

/// Where browsers send the policy violations they see.
pub const REPORT_PATH: &str = "/api/v1/csp-reports";

/// For responses that are not pages: nothing is loaded from them, and they are never framed.
const DEFAULT_POLICY: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// HSTS for two years once users reach us over https; subdomains are not ours to decide.
const HSTS: &str = "max-age=63072000";

/// The policy of a page whose inline scripts carry `nonce`.
///
/// Scripts: the nonced inline ones (hydration, Leptos's streamed resources) and our own files
/// (the bundle the hydration script imports, and its `modulepreload`); `wasm-unsafe-eval`
/// compiles the wasm, and nothing else is evaluated. No `unsafe-inline` anywhere: styles come
/// from the stylesheet only, images from us or `data:` URLs (the favicon).
pub fn page_policy(nonce: &str) -> String {
    format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; style-src 'self'; \
         img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'; report-uri {REPORT_PATH}"
    )
}

/// Powerful browser features no page of ours uses, denied to them and to anything they embed.
const PERMISSIONS_POLICY: &str = "camera=(), microphone=(), geolocation=(), payment=(), usb=()";

/// Adds the security headers to every response; a response that set its own policy (a page)
/// keeps it. API answers and pages are never stored by a browser or a proxy: they hold what
/// one user may see (a token's plaintext, at its creation), and a page's nonce must not be
/// served twice. Assets keep whatever caching they set.
pub async fn secure(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let api = request.uri().path().starts_with("/api/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let page =
        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("text/html"));
    let defaults = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::CONTENT_SECURITY_POLICY, DEFAULT_POLICY),
        (HeaderName::from_static("cross-origin-opener-policy"), "same-origin"),
        (HeaderName::from_static("permissions-policy"), PERMISSIONS_POLICY),
    ];
    for (name, value) in defaults {
        headers.entry(name).or_insert(HeaderValue::from_static(value));
    }
    if api || page {
        headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    }
    if state.config.secure_cookies() {
        headers.entry(header::STRICT_TRANSPORT_SECURITY).or_insert(HeaderValue::from_static(HSTS));
    }
    response
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(csp_report))
}

/// Receives a browser's Content-Security-Policy violation report (`report-uri`; the body is
/// `application/csp-report` JSON), logs it and counts it in `fleetplane_csp_violations_total`.
///
/// Anyone may send one, so nothing in it is trusted: the label is one of a fixed set of
/// directives, and the log line is cut short. A body that is not a report is refused, and not
/// counted.
#[utoipa::path(post, path = "/api/v1/csp-reports", tag = "operations", security(()),
    request_body(
        content(
            (CspReport = "application/csp-report"),
            (CspReport = "application/json"),
        ),
        description = "A violation report, as browsers send it"),
    responses(
        (status = 204, description = "Counted"),
        (status = 400, description = "`invalid_report`: not a CSP violation report", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn csp_report(State(state): State<AppState>, body: Bytes) -> Result<StatusCode> {
    // Objects all the way: serde would also read a struct from an array.
    let report = serde_json::from_slice::<Value>(&body)
        .ok()
        .filter(|report| report.get("csp-report").is_some_and(Value::is_object))
        .and_then(|report| serde_json::from_value::<CspReport>(report).ok());
    let Some(CspReport { violation }) = report else {
        return Err(AppError::bad_request(
            "invalid_report",
            "Send a CSP violation report: a JSON object with a `csp-report` object.",
        ));
    };
    let text = |field: &Option<String>| field.as_deref().unwrap_or_default().to_owned();
    let directive = directive(&text(&violation.effective_directive));
    state.metrics.csp_violation(directive);
    tracing::warn!(
        directive,
        blocked = %truncated(&text(&violation.blocked_uri)),
        page = %truncated(&text(&violation.document_uri)),
        "a browser reported a Content-Security-Policy violation"
    );
    Ok(StatusCode::NO_CONTENT)
}

/// A violation report as browsers send it to `report-uri`; only these fields are read, the
/// others are ignored.
#[derive(Deserialize, ToSchema)]
struct CspReport {
    #[serde(rename = "csp-report")]
    violation: CspViolation,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
struct CspViolation {
    #[serde(default)]
    document_uri: Option<String>,
    #[serde(default)]
    effective_directive: Option<String>,
    #[serde(default)]
    blocked_uri: Option<String>,
}

/// The directive a report names, when it is one our policies set; `other` otherwise, so that
/// reports cannot grow the metric's labels.
fn directive(reported: &str) -> &'static str {
    const KNOWN: [&str; 14] = [
        "default-src",
        "script-src",
        "script-src-elem",
        "script-src-attr",
        "style-src",
        "style-src-elem",
        "style-src-attr",
        "img-src",
        "connect-src",
        "object-src",
        "base-uri",
        "form-action",
        "frame-ancestors",
        "font-src",
    ];
    KNOWN.into_iter().find(|known| *known == reported).unwrap_or("other")
}

fn truncated(text: &str) -> String {
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_policy_allows_only_nonced_inline_scripts() {
        let policy = page_policy("abc123");
        assert!(policy.contains("script-src 'self' 'nonce-abc123' 'wasm-unsafe-eval';"), "{policy}");
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
        assert!(!policy.contains("unsafe-inline"), "{policy}");
    }

    #[test]
    fn reported_directives_are_a_fixed_set() {
        assert_eq!(directive("script-src-elem"), "script-src-elem");
        assert_eq!(directive("img-src"), "img-src");
        assert_eq!(directive("made-up\nlabel"), "other");
        assert_eq!(directive(""), "other");
    }
}
