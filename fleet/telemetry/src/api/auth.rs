//! Every API call carries `Authorization: Bearer <token>`: a token made with
//! `fleet-telemetry admin create-token`, stored hashed, with a scope (read < write < admin).

use axum::{
    extract::FromRequestParts,
    http::{StatusCode, request::Parts},
};
use fleetplane_common::http::{NotBearer, bearer_token};

use super::{ApiError, AppState, Result};
use crate::registry::tokens::{Scope, TokenInfo};

/// The caller: the token it presented, known and not revoked.
pub struct Caller(pub TokenInfo);

impl Caller {
    /// `Ok` when the caller's scope covers `needed`; 403 `insufficient_scope` otherwise.
    pub fn require(&self, needed: Scope) -> Result<()> {
        if self.0.scope.allows(needed) {
            return Ok(());
        }
        Err(ApiError::client(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!(
                "This needs a token with the `{}` scope; this one has `{}`.",
                needed.as_str(),
                self.0.scope.as_str()
            ),
        ))
    }

    /// Who the audit trail names.
    pub fn actor(&self) -> String {
        format!("token:{}", self.0.name)
    }
}

fn unauthenticated(detail: &'static str) -> ApiError {
    ApiError::client(StatusCode::UNAUTHORIZED, "unauthenticated", detail)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let token = bearer_token(&parts.headers)
            .map_err(|NotBearer| unauthenticated("The Authorization header must be `Bearer <token>`."))?
            .ok_or_else(|| {
                unauthenticated("Send `Authorization: Bearer <token>` (fleet-telemetry admin create-token).")
            })?;
        match state.registry.authenticate(token).await? {
            Some(info) => Ok(Self(info)),
            None => Err(unauthenticated("This token is not known, or it was revoked.")),
        }
    }
}
