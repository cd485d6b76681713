//! `/api/v1/auth`: sign-up, email verification, password reset, sign-in and sign-out.

use axum::{
    Json,
    extract::{FromRequestParts, State},
    http::{HeaderMap, StatusCode, header, request::Parts},
    response::{AppendHeaders, IntoResponse, Response},
};
use fleetplane_api as api;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    extract::{ApiJson, ClientIp},
    me::user_view,
};
use crate::{
    accounts::{self, NewAccount},
    audit::Event,
    auth::{AuthVia, CurrentUser, session::IssuedSession},
    entity::users,
    error::{AppError, Problem, Result},
    sessions,
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(sign_up))
        .routes(routes!(verify_email))
        .routes(routes!(resend_verification))
        .routes(routes!(request_password_reset))
        .routes(routes!(reset_password))
        .routes(routes!(log_in))
        .routes(routes!(log_out))
        .routes(routes!(log_out_everywhere))
}

/// Starts a session for `user` signing in from `client`, and attaches its cookies to `body`.
pub async fn with_new_session(
    state: &AppState,
    user: &users::Model,
    client: &sessions::Client,
    body: impl IntoResponse,
) -> Result<Response> {
    let issued = sessions::start(state, user, client).await?;
    let device = state.sessions.device_cookie(user)?;
    Ok((AppendHeaders([(header::SET_COOKIE, device)]), with_cookies(state, &issued, body)).into_response())
}

/// Attaches the cookies of `session` to `body`.
pub fn with_cookies(state: &AppState, session: &IssuedSession, body: impl IntoResponse) -> Response {
    let [session, csrf] = state.sessions.cookies(session);
    (AppendHeaders([(header::SET_COOKIE, session), (header::SET_COOKIE, csrf)]), body).into_response()
}

fn without_session(state: &AppState) -> Response {
    let [session, csrf] = state.sessions.clear_cookies();
    (StatusCode::NO_CONTENT, AppendHeaders([(header::SET_COOKIE, session), (header::SET_COOKIE, csrf)])).into_response()
}

/// Sign up. The answer is the same whether or not the address has an account: a new address
/// gets a verification link (an unverified account with it is replaced), and an address with an
/// account gets a mail telling its owner that someone tried.
#[utoipa::path(post, path = "/api/v1/auth/signup", tag = "auth", request_body = api::SignupRequest, security(()), responses(
    (status = 202, description = "A verification link is on its way (or, for an address with an account, a note to its owner)", body = api::Message),
    (status = 403, description = "`signup_closed`", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "`username_taken`", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "`validation_failed`", body = Problem, content_type = "application/problem+json"),
    (status = 429, description = "`rate_limited`", body = Problem, content_type = "application/problem+json"),
))]
async fn sign_up(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<api::SignupRequest>,
) -> Result<(StatusCode, Json<api::Message>)> {
    let account = NewAccount::parse(&body.email, &body.username, &body.password, false)?;
    let email = account.email.as_str().to_owned();
    accounts::sign_up(&state, account, ip).await?;
    let message = format!(
        "We sent an email to {email}. Follow its link, and enter your password there, to activate your account."
    );
    Ok((StatusCode::ACCEPTED, Json(api::Message { message })))
}

/// Redeem the token from a verification email, with the password chosen at sign-up. The
/// account is then verified and signed in.
#[utoipa::path(post, path = "/api/v1/auth/verify-email", tag = "auth", request_body = api::VerifyEmailRequest, security(()), responses(
    (status = 200, description = "Email verified; signed in, session cookies set", body = api::User),
    (status = 400, description = "`verification_token_invalid`, `verification_token_expired` or `verification_token_used`", body = Problem, content_type = "application/problem+json"),
    (status = 401, description = "`invalid_credentials`: not the password chosen at sign-up (the link stays usable)", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "`validation_failed`", body = Problem, content_type = "application/problem+json"),
    (status = 429, description = "`rate_limited`", body = Problem, content_type = "application/problem+json"),
))]
async fn verify_email(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    ApiJson(body): ApiJson<api::VerifyEmailRequest>,
) -> Result<Response> {
    let user = accounts::verify_email(&state, &body.token, &body.password, ip).await?;
    with_new_session(&state, &user, &sessions::Client::new(ip, &headers), Json(user_view(&user))).await
}

/// Ask for a password reset link. Answers the same whether or not the address has an account.
#[utoipa::path(post, path = "/api/v1/auth/password-reset", tag = "auth", request_body = api::PasswordResetRequest, security(()), responses(
    (status = 202, description = "If a verified account uses this address, a reset link is on its way", body = api::Message),
    (status = 422, description = "`validation_failed`", body = Problem, content_type = "application/problem+json"),
    (status = 429, description = "`rate_limited`", body = Problem, content_type = "application/problem+json"),
))]
async fn request_password_reset(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<api::PasswordResetRequest>,
) -> Result<(StatusCode, Json<api::Message>)> {
    accounts::request_password_reset(&state, &body.email, ip).await?;
    let message = "If an account uses this address, we sent it a link to choose a new password. It works for \
                   one hour."
        .to_owned();
    Ok((StatusCode::ACCEPTED, Json(api::Message { message })))
}

/// Set a new password with the token from a reset email. Every session of the account ends;
/// this browser is signed in with the new password.
#[utoipa::path(post, path = "/api/v1/auth/password-reset/confirm", tag = "auth", request_body = api::PasswordResetConfirm, security(()), responses(
    (status = 200, description = "Password set; every other session revoked; signed in", body = api::User),
    (status = 400, description = "`reset_token_invalid`, `reset_token_expired` or `reset_token_used`", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "`validation_failed`", body = Problem, content_type = "application/problem+json"),
    (status = 429, description = "`rate_limited`", body = Problem, content_type = "application/problem+json"),
))]
async fn reset_password(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    ApiJson(body): ApiJson<api::PasswordResetConfirm>,
) -> Result<Response> {
    let user = accounts::reset_password(&state, &body.token, &body.new_password, ip).await?;
    with_new_session(&state, &user, &sessions::Client::new(ip, &headers), Json(user_view(&user))).await
}

/// Send a new verification link. Answers the same whether or not the address has an account.
#[utoipa::path(post, path = "/api/v1/auth/resend-verification", tag = "auth", request_body = api::ResendRequest, security(()), responses(
    (status = 202, description = "If an unverified account uses this address, a new link is on its way", body = api::Message),
    (status = 422, description = "`validation_failed`", body = Problem, content_type = "application/problem+json"),
    (status = 429, description = "`rate_limited`", body = Problem, content_type = "application/problem+json"),
))]
async fn resend_verification(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<api::ResendRequest>,
) -> Result<(StatusCode, Json<api::Message>)> {
    accounts::resend_verification(&state, &body.email, ip).await?;
    let message = "If an unverified account uses this address, we sent it a new verification link.".to_owned();
    Ok((StatusCode::ACCEPTED, Json(api::Message { message })))
}

/// Sign in with email and password; sets the `fp_session` and `fp_csrf` cookies.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = api::LoginRequest, security(()), responses(
    (status = 200, description = "Signed in; session cookies set", body = api::User),
    (status = 401, description = "`invalid_credentials`", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "`email_not_verified`", body = Problem, content_type = "application/problem+json"),
    (status = 429, description = "`rate_limited`", body = Problem, content_type = "application/problem+json"),
))]
async fn log_in(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    ApiJson(body): ApiJson<api::LoginRequest>,
) -> Result<Response> {
    let known_device = |user: &_| state.sessions.known_device(&headers, user);
    let user = accounts::sign_in(&state, &body.email, &body.password, ip, known_device).await?;
    with_new_session(&state, &user, &sessions::Client::new(ip, &headers), Json(user_view(&user))).await
}

/// Sign out this browser: its session is revoked on the server at once (on every replica), and
/// the cookies are cleared.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security((), ("session" = []), ("token" = [])), responses(
    (status = 204, description = "Signed out; session revoked, cookies cleared"),
    (status = 403, description = "`csrf_failed`", body = Problem, content_type = "application/problem+json"),
))]
async fn log_out(State(state): State<AppState>, ClientIp(ip): ClientIp, caller: MaybeUser) -> Result<Response> {
    match caller.0 {
        Some(CurrentUser { user, via: AuthVia::Session(claims) }) => {
            sessions::revoke(&state, &user, claims.sid, ip, "auth.logout").await?;
        }
        Some(caller) => Event::new("auth.logout", Some(ip)).actor(&caller.user).record(&state.db).await?,
        None => {}
    }
    Ok(without_session(&state))
}

/// Sign out everywhere: every session of this account stops working, here and elsewhere.
#[utoipa::path(post, path = "/api/v1/auth/logout-all", tag = "auth", responses(
    (status = 204, description = "All sessions revoked; cookies cleared"),
    (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
))]
async fn log_out_everywhere(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    caller: CurrentUser,
) -> Result<Response> {
    accounts::revoke_sessions(&state, &caller.user, ip).await?;
    Ok(without_session(&state))
}

/// The caller if signed in. A bad or stale session counts as signed out, but a valid session
/// without its CSRF token is still refused.
struct MaybeUser(Option<CurrentUser>);

impl FromRequestParts<AppState> for MaybeUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        match CurrentUser::from_request_parts(parts, state).await {
            Ok(user) => Ok(Self(Some(user))),
            Err(e) if e.code() == Some("csrf_failed") => Err(e),
            Err(AppError::Client { .. }) => Ok(Self(None)),
            Err(e) => Err(e),
        }
    }
}
