//! The application's error type and its `application/problem+json` rendering (RFC 9457).
//!
//! Client mistakes carry a status, a stable `code` and a human `detail`; field problems list
//! each field. Unique-constraint violations become 409s on the right field, an unreachable
//! database a 503, and anything else a 500 whose cause is logged but never sent to the client.

use std::borrow::Cow;

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use fleetplane_common::db::is_unavailable;
use sea_orm::{DbErr, SqlErr};

use crate::domain::Invalid;

pub type Result<T, E = AppError> = std::result::Result<T, E>;

/// An error response body (`application/problem+json`) and its per-field problems.
pub use fleetplane_api::{FieldError, Problem};

/// Reads a value the database stores as text (a status, a provider) with `parse`. One this build
/// cannot read (a newer schema, a bug) is a 500 that names the column, never a panic.
pub fn stored<T>(column: &'static str, value: &str, parse: impl FnOnce(&str) -> Option<T>) -> Result<T> {
    parse(value)
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("{column} holds {value:?}, which this build cannot read")))
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The client's request cannot be served as it is.
    #[error("{code}: {detail}")]
    Client {
        status: StatusCode,
        code: &'static str,
        detail: Cow<'static, str>,
        errors: Vec<FieldError>,
        retry_after: Option<u64>,
    },
    #[error("database: {0}")]
    Db(#[from] DbErr),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl AppError {
    pub fn client(status: StatusCode, code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Self::Client { status, code, detail: detail.into(), errors: Vec::new(), retry_after: None }
    }

    pub fn bad_request(code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Self::client(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn unauthorized(code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Self::client(StatusCode::UNAUTHORIZED, code, detail)
    }

    pub fn forbidden(code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Self::client(StatusCode::FORBIDDEN, code, detail)
    }

    pub fn not_found(code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Self::client(StatusCode::NOT_FOUND, code, detail)
    }

    pub fn conflict(code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Self::client(StatusCode::CONFLICT, code, detail)
    }

    pub fn unavailable(code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Self::client(StatusCode::SERVICE_UNAVAILABLE, code, detail)
    }

    /// The same error, telling the client when to try again (`Retry-After`).
    pub fn retry_after(self, secs: u64) -> Self {
        match self {
            Self::Client { status, code, detail, errors, .. } => {
                Self::Client { status, code, detail, errors, retry_after: Some(secs.max(1)) }
            }
            other => other,
        }
    }

    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Self::Client {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "rate_limited",
            detail: "Too many attempts. Wait a little and try again.".into(),
            errors: Vec::new(),
            retry_after: Some(retry_after_secs.max(1)),
        }
    }

    /// 422 with one entry per invalid field.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        Self::Client {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "validation_failed",
            detail: "Some fields need attention.".into(),
            errors,
            retry_after: None,
        }
    }

    /// 422 for a single field.
    pub fn invalid_field(field: &str, code: &'static str, message: impl Into<String>) -> Self {
        Self::validation(vec![FieldError { field: field.to_owned(), code: code.to_owned(), message: message.into() }])
    }

    /// Attaches the field a client error is about, so a form can show it in place.
    pub fn on_field(mut self, field: &str, message: impl Into<String>) -> Self {
        if let Self::Client { code, errors, .. } = &mut self {
            errors.push(FieldError { field: field.to_owned(), code: (*code).to_owned(), message: message.into() });
        }
        self
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Client { status, .. } => *status,
            Self::Db(err) if is_unavailable(err) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Db(err) if unique_violation(err).is_some() => StatusCode::CONFLICT,
            Self::Db(_) | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable code of a client error (`None` for server-side failures).
    pub fn code(&self) -> Option<&'static str> {
        match self {
            Self::Client { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// Collects field problems so a form gets all of them in one response, not one per attempt.
#[derive(Default)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps the value when valid; records the problem under `field` otherwise.
    pub fn check<T>(&mut self, field: &str, result: std::result::Result<T, Invalid>) -> Option<T> {
        result.map_err(|invalid| self.add(field, invalid)).ok()
    }

    pub fn add(&mut self, field: &str, invalid: Invalid) {
        self.0.push(FieldError { field: field.to_owned(), code: invalid.code.to_owned(), message: invalid.message });
    }

    /// `Ok` when nothing was recorded, else the 422 listing every problem.
    pub fn finish(self) -> Result<()> {
        if self.0.is_empty() { Ok(()) } else { Err(AppError::validation(self.0)) }
    }
}

/// A named unique index and what a conflict on it means to the client. PostgreSQL reports the
/// index name; SQLite reports `table.column`.
struct UniqueKey {
    index: &'static str,
    columns: &'static str,
    code: &'static str,
    field: &'static str,
    message: &'static str,
}

const UNIQUE_KEYS: &[UniqueKey] = &[
    UniqueKey {
        index: "users_email_key",
        columns: "users.email_normalized",
        code: "email_taken",
        field: "email",
        message: "An account with this email already exists.",
    },
    UniqueKey {
        index: "users_username_key",
        columns: "users.username",
        code: "username_taken",
        field: "username",
        message: "This username is taken.",
    },
    UniqueKey {
        index: "organizations_name_key",
        columns: "organizations.name",
        code: "org_name_taken",
        field: "name",
        message: "An organization with this name already exists.",
    },
    UniqueKey {
        index: "memberships_pkey",
        columns: "memberships.org_id, memberships.user_id",
        code: "already_member",
        field: "email",
        message: "This person is already a member.",
    },
];

fn unique_violation(err: &DbErr) -> Option<&'static UniqueKey> {
    let Some(SqlErr::UniqueConstraintViolation(message)) = err.sql_err() else {
        return None;
    };
    UNIQUE_KEYS.iter().find(|key| message.contains(key.index) || message.contains(key.columns))
}

fn problem_response(
    status: StatusCode,
    code: &str,
    detail: String,
    errors: Vec<FieldError>,
    retry_after: Option<u64>,
) -> Response {
    fleetplane_common::problem::response(status, code, detail, errors, retry_after)
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        match self {
            Self::Client { status, code, detail, errors, retry_after } => {
                problem_response(status, code, detail.into_owned(), errors, retry_after)
            }
            Self::Db(err) => {
                if let Some(key) = unique_violation(&err) {
                    let errors = vec![FieldError {
                        field: key.field.to_owned(),
                        code: key.code.to_owned(),
                        message: key.message.to_owned(),
                    }];
                    return problem_response(status, key.code, key.message.to_owned(), errors, None);
                }
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    tracing::warn!(error = %err, "database unavailable");
                    return problem_response(
                        status,
                        "database_unavailable",
                        "The database is not reachable right now. Try again shortly.".to_owned(),
                        Vec::new(),
                        Some(5),
                    );
                }
                tracing::error!(error = %err, "database error");
                internal()
            }
            Self::Internal(err) => {
                tracing::error!(error = format!("{err:#}"), "internal error");
                internal()
            }
        }
    }
}

fn internal() -> Response {
    problem_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "Something went wrong on our side. It has been logged.".to_owned(),
        Vec::new(),
        None,
    )
}

/// A problem response for a status with no application error behind it (unknown route, 405).
pub use fleetplane_common::problem::status_problem;

#[cfg(test)]
mod tests {
    use fleetplane_api::RunStatus;

    use super::*;

    #[test]
    fn an_unreadable_stored_value_is_a_server_error_naming_its_column() {
        assert_eq!(stored("runs.status", "queued", RunStatus::parse).ok(), Some(RunStatus::Queued));
        let error = stored("runs.status", "exploded", RunStatus::parse).expect_err("unknown status");
        assert!(matches!(&error, AppError::Internal(_)), "{error:?}");
        assert!(error.to_string().contains("runs.status") && error.to_string().contains("exploded"), "{error}");
    }
}
