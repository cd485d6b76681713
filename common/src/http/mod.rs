//! What every HTTP service of the workspace does the same way: Server-Sent Events on the wire
//! ([`sse`]), request metrics ([`metrics`]), logs ([`logging`]) and graceful shutdown
//! ([`shutdown_signal`]). Problem responses are in [`crate::problem`].

use axum::http::{HeaderMap, header};

pub mod logging;
pub mod metrics;
pub mod sse;

/// The `Authorization` header is there but is not `Bearer <token>`.
#[derive(Debug, PartialEq, Eq)]
pub struct NotBearer;

/// The bearer token of `Authorization: Bearer <token>`: `Ok(None)` without the header,
/// `Err(NotBearer)` with one of another form (or an empty token).
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, NotBearer> {
    let Some(value) = headers.get(header::AUTHORIZATION) else { return Ok(None) };
    value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(Some)
        .ok_or(NotBearer)
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

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn a_bearer_token_is_read_from_the_authorization_header_only_in_that_form() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer_token(&headers), Ok(None));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer  fltk_abc "));
        assert_eq!(bearer_token(&headers), Ok(Some("fltk_abc")));
        for bad in ["Basic abc", "Bearer ", "bearer abc", "fltk_abc"] {
            headers.insert(header::AUTHORIZATION, HeaderValue::from_static(bad));
            assert_eq!(bearer_token(&headers), Err(NotBearer), "{bad}");
        }
    }
}
