//! Error bodies as `application/problem+json` (RFC 9457), the same for every service of the
//! workspace: a stable `code` clients branch on, a `detail` for people, and per-field problems.
//!
//! With the `http` feature, [`response`] renders one as an axum response.

use serde::{Deserialize, Serialize};

/// An error response body, as `application/problem+json` (RFC 9457).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Problem {
    /// A URI naming the kind of problem: `urn:fleetplane:problem:<code>`.
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub status: u16,
    #[serde(default)]
    pub detail: String,
    /// Stable, machine-readable; clients branch on this, not on the text.
    #[serde(default)]
    pub code: String,
    /// Present when the problem is with specific fields of the request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// One field's problem: `field` is its path in the request (`public_subnets.1`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct FieldError {
    pub field: String,
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), code: code.into(), message: message.into() }
    }
}

/// The content type of every problem response.
pub const CONTENT_TYPE: &str = "application/problem+json";

/// The `type` URI of a problem with `code`.
pub fn kind(code: &str) -> String {
    format!("urn:fleetplane:problem:{code}")
}

#[cfg(feature = "http")]
pub use response::{response, status_problem};

#[cfg(feature = "http")]
mod response {
    use axum::{
        http::{HeaderValue, StatusCode, header},
        response::{IntoResponse, Response},
    };

    use super::{CONTENT_TYPE, FieldError, Problem, kind};

    /// A problem response: `status`, its stable `code`, a `detail` for people, the fields at
    /// fault, and when to try again (`Retry-After`, in seconds) if that is known.
    pub fn response(
        status: StatusCode,
        code: &str,
        detail: impl Into<String>,
        errors: Vec<FieldError>,
        retry_after: Option<u64>,
    ) -> Response {
        let problem = Problem {
            kind: kind(code),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            code: code.to_owned(),
            errors,
        };
        let mut response = (status, axum::Json(problem)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        if let Some(secs) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response
    }

    /// A problem response for a status with no application error behind it (unknown route, 405).
    pub fn status_problem(status: StatusCode, code: &'static str, detail: &'static str) -> Response {
        response(status, code, detail, Vec::new(), None)
    }
}

#[cfg(all(test, feature = "http"))]
mod tests {
    use axum::http::{StatusCode, header};
    use http_body_util::BodyExt;

    use super::*;

    #[tokio::test]
    async fn a_problem_response_carries_its_code_type_and_retry_after() {
        let fields = vec![FieldError::new("serial", "too_long", "must be 1 to 64 characters")];
        let response = response(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", "Fix it.", fields, Some(0));
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(response.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1", "never 0: clients would spin");
        let body = response.into_body().collect().await.expect("body").to_bytes();
        let problem: Problem = serde_json::from_slice(&body).expect("a problem");
        assert_eq!(problem.kind, "urn:fleetplane:problem:validation_failed");
        assert_eq!(problem.title, "Unprocessable Entity");
        assert_eq!((problem.status, problem.code.as_str()), (422, "validation_failed"));
        assert_eq!(problem.errors[0].field, "serial");
    }
}
