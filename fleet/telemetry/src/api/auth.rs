//! Every API call carries `Authorization: Bearer <token>`: a token made with
//! `fleet-telemetry admin create-token`, stored hashed, with a scope (read < write < admin).
//!
//! A token found good is remembered for [`REMEMBERED_FOR`], so that a client reading in a loop
//! does not send every request to the database; a token revoked (`admin revoke-token`, from
//! another process) is refused within that time.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use axum::{
    extract::FromRequestParts,
    http::{StatusCode, request::Parts},
};
use fleetplane_common::{
    http::{NotBearer, bearer_token},
    tokens,
};

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
        let hash = tokens::hash(token);
        if let Some(info) = state.known_tokens().get(&hash, Instant::now()) {
            return Ok(Self(info));
        }
        match state.registry.authenticate(token).await? {
            Some(info) => {
                state.known_tokens().remember(hash, info.clone(), Instant::now());
                Ok(Self(info))
            }
            None => Err(unauthenticated("This token is not known, or it was revoked.")),
        }
    }
}

/// How long a token found good is taken as good without asking the database again.
pub const REMEMBERED_FOR: Duration = Duration::from_secs(5);
/// The most tokens remembered at once.
const MOST_REMEMBERED: usize = 1_024;

/// Tokens found good lately, by their hash.
#[derive(Default)]
pub struct KnownTokens(Mutex<HashMap<String, (TokenInfo, Instant)>>);

impl KnownTokens {
    /// The token with this hash, if it was found good less than [`REMEMBERED_FOR`] ago.
    pub fn get(&self, hash: &str, now: Instant) -> Option<TokenInfo> {
        let known = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        known
            .get(hash)
            .filter(|(_, found)| now.saturating_duration_since(*found) < REMEMBERED_FOR)
            .map(|(info, _)| info.clone())
    }

    pub fn remember(&self, hash: String, info: TokenInfo, now: Instant) {
        let mut known = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if known.len() >= MOST_REMEMBERED {
            known.retain(|_, (_, found)| now.saturating_duration_since(*found) < REMEMBERED_FOR);
            if known.len() >= MOST_REMEMBERED {
                known.clear();
            }
        }
        known.insert(hash, (info, now));
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;
    use crate::registry::tokens::Scope;

    fn info(name: &str) -> TokenInfo {
        TokenInfo {
            id: name.into(),
            name: name.into(),
            prefix: "fltk_abcd".into(),
            scope: Scope::Read,
            created_at: DateTime::from_timestamp(1_796_126_400, 0).expect("a time"),
            revoked_at: None,
        }
    }

    #[test]
    fn a_token_is_remembered_for_a_while_and_then_asked_about_again() {
        let known = KnownTokens::default();
        let at = Instant::now();
        assert_eq!(known.get("h", at), None);
        known.remember("h".into(), info("a"), at);
        assert_eq!(known.get("h", at + REMEMBERED_FOR / 2), Some(info("a")));
        assert_eq!(known.get("h", at + REMEMBERED_FOR), None, "forgotten once its time is up");
        assert_eq!(known.get("other", at), None);
    }

    #[test]
    fn the_tokens_remembered_are_bounded() {
        let known = KnownTokens::default();
        let at = Instant::now();
        for i in 0..MOST_REMEMBERED * 3 {
            known.remember(format!("h{i}"), info("a"), at);
        }
        assert!(known.0.lock().expect("lock").len() <= MOST_REMEMBERED);
        let newest = format!("h{}", MOST_REMEMBERED * 3 - 1);
        assert_eq!(known.get(&newest, at), Some(info("a")), "the newest is kept");
    }
}
