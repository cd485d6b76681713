//! Who is calling: session cookies and API tokens become a [`CurrentUser`]; organization
//! routes take an [`OrgMember`] whose type parameter is the least role the route allows.
//!
//! Tenancy is enforced here, once: the organization comes from the path and the caller's
//! membership, never from the request body, and a caller who is not a member gets the same
//! 404 as for an organization that does not exist.

pub mod google;
pub mod password;
pub mod rate_limit;
pub mod session;
pub mod tokens;

use std::{
    collections::HashMap,
    marker::PhantomData,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    extract::{FromRequestParts, RawPathParams},
    http::{HeaderMap, request::Parts},
};
use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, IntoActiveModel, QueryFilter, Set,
};
use uuid::Uuid;

use self::session::{Claims, SESSION_COOKIE, SessionError};
use crate::{
    domain::Role,
    entity::{api_tokens, memberships, organizations, users},
    error::{AppError, Result},
    live::Credential,
    state::AppState,
};

/// The authenticated caller.
#[derive(Clone, Debug)]
pub struct CurrentUser {
    pub user: Arc<users::Model>,
    pub via: AuthVia,
}

#[derive(Clone, Debug)]
pub enum AuthVia {
    /// A browser session cookie (and so subject to CSRF checks).
    Session(Claims),
    /// A personal API token, by id.
    Token(Uuid),
}

impl CurrentUser {
    pub fn id(&self) -> Uuid {
        self.user.id
    }

    pub fn is_session(&self) -> bool {
        matches!(self.via, AuthVia::Session(_))
    }

    /// What the caller signed in with, for a stream that must end when it stops working.
    pub fn credential(&self) -> Credential {
        match &self.via {
            AuthVia::Session(claims) => Credential::Session(claims.sid),
            AuthVia::Token(id) => Credential::Token(*id),
        }
    }
}

fn unauthenticated() -> AppError {
    AppError::unauthorized("unauthenticated", "Sign in first.")
}

fn session_invalid() -> AppError {
    AppError::unauthorized("session_invalid", "Your session is not valid. Sign in again.")
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let token = fleetplane_common::http::bearer_token(&parts.headers)
            .map_err(|_| AppError::unauthorized("invalid_authorization", "Use `Authorization: Bearer <api token>`."))?;
        if let Some(token) = token {
            let (token_id, user) = authenticate_token(state, token).await?;
            return Ok(Self { user, via: AuthVia::Token(token_id) });
        }

        let jwt = session::cookie(&parts.headers, SESSION_COOKIE).ok_or_else(unauthenticated)?;
        let claims = state.sessions.decode(jwt).map_err(|e| match e {
            SessionError::Expired => {
                AppError::unauthorized("session_expired", "Your session has expired. Sign in again.")
            }
            SessionError::Invalid => session_invalid(),
        })?;
        let user = state.users.get(&state.db, claims.sub).await?.ok_or_else(session_invalid)?;
        if user.session_version != claims.sv {
            return Err(AppError::unauthorized("session_revoked", "This session was signed out. Sign in again."));
        }
        crate::sessions::check(state, &claims).await?;
        if !parts.method.is_safe() && !session::csrf_matches(&parts.headers, &claims) {
            return Err(AppError::forbidden(
                "csrf_failed",
                "Missing or wrong CSRF token: send the `fp_csrf` cookie's value in `X-CSRF-Token`.",
            ));
        }
        Ok(Self { user, via: AuthVia::Session(claims) })
    }
}

/// The signed-in user behind a request's session cookie, if it is valid. For rendering pages;
/// API routes use [`CurrentUser`].
pub async fn cookie_user(state: &AppState, headers: &HeaderMap) -> Option<users::Model> {
    let claims = state.sessions.decode(session::cookie(headers, SESSION_COOKIE)?).ok()?;
    let user = state.users.get(&state.db, claims.sub).await.ok()??;
    if user.session_version != claims.sv {
        return None;
    }
    crate::sessions::check(state, &claims).await.ok()?;
    Some((*user).clone())
}

/// Only write `last_used_at` when it is this stale, so a busy script does not write per request.
const LAST_USED_GRANULARITY: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

async fn authenticate_token(state: &AppState, token: &str) -> Result<(Uuid, Arc<users::Model>)> {
    let invalid = || AppError::unauthorized("invalid_token", "This API token is unknown, expired or revoked.");
    let now = Utc::now();
    let record = api_tokens::Entity::find()
        .filter(api_tokens::Column::TokenHash.eq(tokens::hash(token)))
        .one(&state.db)
        .await?
        .filter(|t| t.revoked_at.is_none() && t.expires_at.is_none_or(|at| at > now))
        .ok_or_else(invalid)?;
    let user = state.users.get(&state.db, record.user_id).await?.ok_or_else(invalid)?;
    if record.last_used_at.is_none_or(|at| now - at > LAST_USED_GRANULARITY) {
        let id = record.id;
        let mut active = record.into_active_model();
        active.last_used_at = Set(Some(now));
        active.update(&state.db).await?;
        return Ok((id, user));
    }
    Ok((record.id, user))
}

/// The least role a route allows, as a type: `OrgMember<Admin>`.
pub trait MinRole: Send + Sync + 'static {
    const ROLE: Role;
}

macro_rules! min_role {
    ($($name:ident => $role:expr),* $(,)?) => {$(
        #[derive(Debug)]
        pub struct $name;
        impl MinRole for $name {
            const ROLE: Role = $role;
        }
    )*};
}

min_role!(Viewer => Role::Viewer, Operator => Role::Operator, Admin => Role::Admin, Owner => Role::Owner);

/// A member of the organization named by the `{org}` path segment, with at least role `R`.
#[derive(Debug)]
pub struct OrgMember<R: MinRole = Viewer> {
    pub user: CurrentUser,
    pub org: organizations::Model,
    pub role: Role,
    _min: PhantomData<R>,
}

impl<R: MinRole> FromRequestParts<AppState> for OrgMember<R> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let user = CurrentUser::from_request_parts(parts, state).await?;
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|e| AppError::Internal(anyhow::anyhow!("OrgMember on a route without path params: {e}")))?;
        let name = params
            .iter()
            .find_map(|(key, value)| (key == "org").then(|| value.to_lowercase()))
            .ok_or_else(|| AppError::Internal(anyhow::anyhow!("OrgMember on a route without {{org}}")))?;

        let not_found = || AppError::not_found("org_not_found", format!("No organization named `{name}`."));
        let org = organizations::Entity::find()
            .filter(organizations::Column::Name.eq(&name))
            .one(&state.db)
            .await?
            .ok_or_else(not_found)?;
        let membership =
            memberships::Entity::find_by_id((org.id, user.id())).one(&state.db).await?.ok_or_else(not_found)?;
        let role = Role::parse(&membership.role)
            .ok_or_else(|| AppError::Internal(anyhow::anyhow!("unknown role {:?} in memberships", membership.role)))?;
        if role < R::ROLE {
            return Err(AppError::forbidden(
                "forbidden",
                format!("This needs the {} role or higher in `{}`; yours is {role}.", R::ROLE, org.name),
            ));
        }
        Ok(Self { user, org, role, _min: PhantomData })
    }
}

/// How long a cached user may be served without re-reading it. Every change invalidates it at
/// once, here and, through the bus, on the other replicas; the TTL bounds how long a lost
/// signal (Redis restarting) can leave one stale.
const USER_TTL: Duration = Duration::from_secs(5);
const USER_CACHE_MAX: usize = 100_000;

#[derive(Default)]
pub struct UserCache {
    entries: RwLock<HashMap<Uuid, (Arc<users::Model>, Instant)>>,
    /// Bumped by every invalidation; a load that started before one is not cached.
    epoch: AtomicU64,
}

impl UserCache {
    pub async fn get(&self, db: &DatabaseConnection, id: Uuid) -> Result<Option<Arc<users::Model>>, DbErr> {
        {
            let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
            if let Some((user, loaded)) = entries.get(&id)
                && loaded.elapsed() < USER_TTL
            {
                return Ok(Some(user.clone()));
            }
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let Some(user) = users::Entity::find_by_id(id).one(db).await? else {
            return Ok(None);
        };
        let user = Arc::new(user);
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if self.epoch.load(Ordering::Acquire) == epoch {
            if entries.len() >= USER_CACHE_MAX {
                entries.clear();
            }
            entries.insert(id, (user.clone(), Instant::now()));
        }
        Ok(Some(user))
    }

    /// Forgets every user.
    pub fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.entries.write().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Call after committing any change to the user.
    pub fn invalidate(&self, id: Uuid) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.entries.write().unwrap_or_else(|p| p.into_inner()).remove(&id);
    }
}
