//! `/api/v1/me`: the signed-in account, its username and password, its API tokens and its
//! sessions.

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{AppendHeaders, IntoResponse, Response},
};
use fleetplane_api as api;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    auth::{with_cookies, with_new_session},
    extract::{ApiJson, ApiPath, ClientIp},
};
use crate::{
    accounts,
    auth::{AuthVia, CurrentUser},
    entity::{api_tokens, sessions as sessions_entity, user_identities, users},
    error::{Problem, Result},
    sessions,
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_me))
        .routes(routes!(update_username))
        .routes(routes!(update_password))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
        .routes(routes!(list_identities))
        .routes(routes!(unlink_identity))
        .routes(routes!(list_sessions))
        .routes(routes!(revoke_session))
}

/// An account as its owner sees it.
pub fn user_view(user: &users::Model) -> api::User {
    api::User {
        id: user.id,
        email: user.email.clone(),
        username: user.username.clone(),
        email_verified: user.email_verified_at.is_some(),
        has_password: user.password_hash.is_some(),
        created_at: user.created_at,
    }
}

fn token_view(token: &api_tokens::Model) -> api::Token {
    api::Token {
        id: token.id,
        name: token.name.clone(),
        prefix: token.prefix.clone(),
        created_at: token.created_at,
        expires_at: token.expires_at,
        last_used_at: token.last_used_at,
    }
}

fn identity_view(identity: &user_identities::Model) -> api::LinkedIdentity {
    api::LinkedIdentity {
        provider: identity.provider.clone(),
        email: identity.email.clone(),
        linked_at: identity.created_at,
        last_used_at: identity.last_used_at,
    }
}

fn session_view(session: &sessions_entity::Model, caller: &CurrentUser) -> api::Session {
    api::Session {
        id: session.id,
        user_agent: session.user_agent.clone(),
        ip: session.ip.clone(),
        created_at: session.created_at,
        last_seen_at: session.last_seen_at,
        expires_at: session.expires_at,
        current: matches!(&caller.via, AuthVia::Session(claims) if claims.sid == session.id),
    }
}

/// Re-issues the session cookie for the changed `user` when the caller signed in with one (the
/// same session goes on), and the device cookie with it (a password change forgets every other
/// browser, not this one); token callers get `body`.
fn refresh_session(
    state: &AppState,
    caller: &CurrentUser,
    user: &users::Model,
    body: impl IntoResponse,
) -> Result<Response> {
    match &caller.via {
        AuthVia::Session(claims) => {
            let device = state.sessions.device_cookie(user)?;
            let session = with_cookies(state, &sessions::reissue(state, user, claims)?, body);
            Ok((AppendHeaders([(header::SET_COOKIE, device)]), session).into_response())
        }
        AuthVia::Token(_) => Ok(body.into_response()),
    }
}

/// The signed-in account.
#[utoipa::path(get, path = "/api/v1/me", tag = "account", responses(
    (status = 200, body = api::User),
    (status = 401, description = "`unauthenticated`, `session_expired`, `session_revoked`, `invalid_token`", body = Problem, content_type = "application/problem+json"),
))]
async fn get_me(caller: CurrentUser) -> Json<api::User> {
    Json(user_view(&caller.user))
}

/// Change the username (3–30 of `a-z 0-9 _ -`, starting with a letter; unique regardless of case).
#[utoipa::path(patch, path = "/api/v1/me/username", tag = "account", request_body = api::UsernameRequest, responses(
    (status = 200, description = "Changed; the session cookie is re-issued", body = api::User),
    (status = 409, description = "`username_taken`", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "`validation_failed`", body = Problem, content_type = "application/problem+json"),
))]
async fn update_username(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    caller: CurrentUser,
    ApiJson(body): ApiJson<api::UsernameRequest>,
) -> Result<Response> {
    let user = accounts::change_username(&state, &caller.user, &body.username, ip).await?;
    refresh_session(&state, &caller, &user, Json(user_view(&user)))
}

/// Change the password. Every other session is signed out; this one gets a new cookie.
#[utoipa::path(put, path = "/api/v1/me/password", tag = "account", request_body = api::PasswordRequest, responses(
    (status = 204, description = "Changed; other sessions revoked, this one re-issued"),
    (status = 422, description = "`validation_failed`: current password wrong, new one too short or unchanged", body = Problem, content_type = "application/problem+json"),
    (status = 429, description = "`rate_limited`", body = Problem, content_type = "application/problem+json"),
))]
async fn update_password(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    caller: CurrentUser,
    ApiJson(body): ApiJson<api::PasswordRequest>,
) -> Result<Response> {
    let user = accounts::change_password(&state, &caller.user, &body.current_password, &body.new_password, ip).await?;
    // Every session was revoked, this one too: the browser that asked gets a new one.
    match caller.via {
        AuthVia::Session(_) => {
            with_new_session(&state, &user, &sessions::Client::new(ip, &headers), StatusCode::NO_CONTENT).await
        }
        AuthVia::Token(_) => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

/// The account's active API tokens, newest first.
#[utoipa::path(get, path = "/api/v1/me/tokens", tag = "account", responses((status = 200, body = [api::Token])))]
async fn list_tokens(State(state): State<AppState>, caller: CurrentUser) -> Result<Json<Vec<api::Token>>> {
    let tokens = accounts::list_tokens(&state, caller.id()).await?;
    Ok(Json(tokens.iter().map(token_view).collect()))
}

/// Create a personal API token, for `Authorization: Bearer`. The token is in this response only.
#[utoipa::path(post, path = "/api/v1/me/tokens", tag = "account", request_body = api::CreateTokenRequest, responses(
    (status = 201, body = api::CreatedToken),
    (status = 422, description = "`validation_failed`", body = Problem, content_type = "application/problem+json"),
))]
async fn create_token(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    caller: CurrentUser,
    ApiJson(body): ApiJson<api::CreateTokenRequest>,
) -> Result<(StatusCode, Json<api::CreatedToken>)> {
    let (record, token) = accounts::create_token(&state, &caller.user, &body.name, body.expires_in_days, ip).await?;
    Ok((StatusCode::CREATED, Json(api::CreatedToken { token, info: token_view(&record) })))
}

/// Revoke an API token; it stops working at once.
#[utoipa::path(delete, path = "/api/v1/me/tokens/{id}", tag = "account",
    params(("id" = Uuid, Path, description = "The token's id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "`token_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn revoke_token(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    caller: CurrentUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode> {
    accounts::revoke_token(&state, &caller.user, id, ip).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The accounts at other providers (Google) this account signs in with.
#[utoipa::path(get, path = "/api/v1/me/identities", tag = "account", responses((status = 200, body = [api::LinkedIdentity])))]
async fn list_identities(State(state): State<AppState>, caller: CurrentUser) -> Result<Json<Vec<api::LinkedIdentity>>> {
    let identities = accounts::list_identities(&state, caller.id()).await?;
    Ok(Json(identities.iter().map(identity_view).collect()))
}

/// Unlink a provider's account. Needs a password, so that the account can still sign in.
#[utoipa::path(delete, path = "/api/v1/me/identities/{provider}", tag = "account",
    params(("provider" = String, Path, description = "`google`")),
    responses(
        (status = 204, description = "Unlinked"),
        (status = 404, description = "`identity_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`password_required`: set a password first", body = Problem, content_type = "application/problem+json"),
    ))]
async fn unlink_identity(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    caller: CurrentUser,
    ApiPath(provider): ApiPath<String>,
) -> Result<StatusCode> {
    accounts::unlink_identity(&state, &caller.user, &provider, ip).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The account's signed-in browsers, most recently used first.
#[utoipa::path(get, path = "/api/v1/me/sessions", tag = "account", responses(
    (status = 200, body = [api::Session]),
    (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
))]
async fn list_sessions(State(state): State<AppState>, caller: CurrentUser) -> Result<Json<Vec<api::Session>>> {
    let sessions = sessions::list(&state, caller.id()).await?;
    Ok(Json(sessions.iter().map(|session| session_view(session, &caller)).collect()))
}

/// Sign a browser out: its session stops working at once, on every server, and its open live
/// streams end.
#[utoipa::path(delete, path = "/api/v1/me/sessions/{id}", tag = "account",
    params(("id" = Uuid, Path, description = "The session's id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "`session_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn revoke_session(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    caller: CurrentUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode> {
    sessions::revoke(&state, &caller.user, id, ip, "auth.session_revoked").await?;
    Ok(StatusCode::NO_CONTENT)
}
