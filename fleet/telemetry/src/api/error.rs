//! The API's errors, rendered as the workspace's problem+json ([`fleetplane_common::problem`]):
//! a status, a stable code, a detail for people and the fields at fault.

use std::borrow::Cow;

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use fleetplane_common::{
    db::is_unavailable,
    problem::{self, FieldError},
};

use crate::{pki::PkiError, registry::RegistryError};

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request cannot be served as it is.
    #[error("{code}: {detail}")]
    Client { status: StatusCode, code: &'static str, detail: Cow<'static, str>, errors: Vec<FieldError> },
    /// A part the service needs (the registry's database, the telemetry store) is not answering.
    #[error("{code}: {detail}")]
    Unavailable { code: &'static str, detail: Cow<'static, str> },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn client(status: StatusCode, code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Self::Client { status, code, detail: detail.into(), errors: Vec::new() }
    }

    pub fn bad_request(code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Self::client(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn not_found(code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Self::client(StatusCode::NOT_FOUND, code, detail)
    }

    /// 422 for one field.
    pub fn invalid_field(field: &str, code: &'static str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::Client {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "validation_failed",
            detail: format!("{field}: {message}").into(),
            errors: vec![FieldError::new(field, code, message)],
        }
    }

    /// A store that failed: unavailable to the client, logged here.
    pub fn store(error: anyhow::Error) -> Self {
        tracing::warn!(error = format!("{error:#}"), "the telemetry store failed");
        Self::Unavailable {
            code: "store_unavailable",
            detail: "The telemetry store is not answering right now. Try again shortly.".into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Client { status, .. } => *status,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(error: RegistryError) -> Self {
        let detail = error.to_string();
        match error {
            RegistryError::Invalid { field, message } => Self::invalid_field(field, "invalid", message),
            RegistryError::SerialTaken(_) => Self::Client {
                status: StatusCode::CONFLICT,
                code: "serial_taken",
                detail: detail.clone().into(),
                errors: vec![FieldError::new("serial", "serial_taken", detail)],
            },
            RegistryError::BikeNotFound(_) => Self::not_found("bike_not_found", detail),
            RegistryError::CertificateNotFound(_) => Self::not_found("certificate_not_found", detail),
            RegistryError::TokenNotFound(_) => Self::not_found("token_not_found", detail),
            RegistryError::Decommissioned(_) => Self::client(StatusCode::CONFLICT, "bike_decommissioned", detail),
            RegistryError::AlreadyRevoked(_) => Self::client(StatusCode::CONFLICT, "already_revoked", detail),
            RegistryError::Pki(PkiError::InvalidCsr(reason)) => Self::invalid_field("csr_pem", "invalid_csr", reason),
            RegistryError::Pki(PkiError::CsrTooLarge) => Self::invalid_field("csr_pem", "csr_too_large", detail),
            RegistryError::Pki(PkiError::InvalidValidity) => {
                Self::invalid_field("validity_days", "invalid_validity", detail)
            }
            RegistryError::Pki(e) => Self::Internal(e.into()),
            RegistryError::Database(e) if is_unavailable(&e) => {
                tracing::warn!(error = %e, "the registry's database is unavailable");
                Self::Unavailable {
                    code: "database_unavailable",
                    detail: "The registry's database is not reachable right now. Try again shortly.".into(),
                }
            }
            RegistryError::Database(e) => Self::Internal(e.into()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match self {
            Self::Client { code, detail, errors, .. } => problem::response(status, code, detail, errors, None),
            Self::Unavailable { code, detail } => problem::response(status, code, detail, Vec::new(), Some(5)),
            Self::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "internal error");
                problem::response(
                    status,
                    "internal",
                    "Something went wrong on our side. It has been logged.",
                    Vec::new(),
                    None,
                )
            }
        }
    }
}
