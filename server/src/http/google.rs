//! `/api/v1/auth/google`: sign in with Google (or the OpenID provider configured in its place).
//!
//! Both routes are browser navigations, not API calls: `start` redirects to the provider, and
//! `callback` redirects to the page to show next. A failed sign-in lands on the sign-in page
//! (or, when linking, the settings page) with `?error=<code>`, which the page explains. With no
//! client id configured, both answer 404.

use axum::{
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{AppendHeaders, IntoResponse, Response},
};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{ApiQuery, ClientIp};
use crate::{
    accounts::{self, ExternalIdentity},
    auth::{
        self,
        google::{CallbackParams, FLOW_COOKIE, GoogleError, GoogleSignIn, StartRequest},
        session,
    },
    domain::Email,
    error::{AppError, Problem, Result},
    sessions,
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(start)).routes(routes!(callback))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct StartQuery {
    /// Where to go once signed in: a path on this server (default `/`).
    pub next: Option<String>,
    /// Passed on to the provider to preselect an account.
    pub login_hint: Option<String>,
    /// `link` adds the Google account to the signed-in user's account instead of signing in.
    pub intent: Option<String>,
}

fn google(state: &AppState) -> Result<&GoogleSignIn> {
    state.google.as_ref().ok_or_else(|| {
        AppError::not_found("google_sign_in_disabled", "Google sign-in is not configured on this server.")
    })
}

fn redirect(location: &str, cookies: impl IntoIterator<Item = HeaderValue>) -> Response {
    let cookies: Vec<_> = cookies.into_iter().map(|cookie| (header::SET_COOKIE, cookie)).collect();
    let location = HeaderValue::try_from(location).unwrap_or_else(|_| HeaderValue::from_static("/"));
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)], AppendHeaders(cookies)).into_response()
}

/// Start signing in with Google: redirects to the provider with a new state, nonce and PKCE
/// challenge, bound to this browser by a short-lived cookie.
#[utoipa::path(get, path = "/api/v1/auth/google/start", tag = "auth", operation_id = "google_start", params(StartQuery), security(()), responses(
    (status = 303, description = "Redirect to the provider (or to the sign-in page with `?error=google_unavailable`)"),
    (status = 401, description = "`unauthenticated`: `intent=link` without a session", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "`google_sign_in_disabled`", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "`validation_failed`: an unknown `intent`", body = Problem, content_type = "application/problem+json"),
    (status = 429, description = "`rate_limited`", body = Problem, content_type = "application/problem+json"),
))]
async fn start(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<StartQuery>,
) -> Result<Response> {
    let google = google(&state)?;
    let link = match query.intent.as_deref() {
        None | Some("" | "sign_in") => None,
        Some("link") => Some(
            auth::cookie_user(&state, &headers)
                .await
                .ok_or_else(|| AppError::unauthorized("unauthenticated", "Sign in first, then link Google."))?
                .id,
        ),
        Some(other) => {
            return Err(AppError::invalid_field(
                "intent",
                "invalid",
                format!("`{other}` is not an intent: use `link`, or leave it out to sign in."),
            ));
        }
    };
    accounts::rate_limit(&state, &format!("login:ip:{ip}"), state.config.rate_limits.login_per_ip).await?;
    let failure_page = if link.is_some() { "/settings" } else { "/login" };
    let request =
        StartRequest { login_hint: query.login_hint, next: fleetplane_web::safe_next(query.next.as_deref()), link };
    match google.start(request).await {
        Ok((url, cookie)) => Ok(redirect(url.as_str(), [cookie])),
        Err(error) => {
            tracing::warn!(%error, issuer = google.issuer(), "Google sign-in could not start");
            Ok(redirect(&format!("{failure_page}?error={}", error.code()), []))
        }
    }
}

/// Where the provider sends the browser back. Checks the state against this browser's flow,
/// exchanges the code, verifies the id_token, then signs in, links or creates the account.
#[utoipa::path(get, path = "/api/v1/auth/google/callback", tag = "auth", operation_id = "google_callback", params(CallbackParams), security(()), responses(
    (status = 303, description = "Signed in (session cookies set) and sent on; or sent to the sign-in page with `?error=<code>`"),
    (status = 404, description = "`google_sign_in_disabled`", body = Problem, content_type = "application/problem+json"),
))]
async fn callback(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<CallbackParams>,
) -> Result<Response> {
    let google = google(&state)?;
    let clear = google.clear_cookie();
    let flow = match google.flow(session::cookie(&headers, FLOW_COOKIE)) {
        Ok(flow) => flow,
        Err(error) => return Ok(failed("/login", &error.to_string(), error.code(), clear)),
    };
    let failure_page = if flow.link.is_some() { "/settings" } else { "/login" };
    let identity = match google.finish(&flow, params).await.and_then(|claims| {
        let email =
            claims.email.as_deref().and_then(|email| Email::parse(email).ok()).ok_or(GoogleError::EmailUnverified)?;
        Ok(ExternalIdentity { provider: "google", issuer: google.issuer().to_owned(), subject: claims.sub, email })
    }) {
        Ok(identity) => identity,
        Err(error) => return Ok(failed(failure_page, &error.to_string(), error.code(), clear)),
    };

    if let Some(user_id) = flow.link {
        // The same person must still be signed in here.
        let user = auth::cookie_user(&state, &headers).await;
        let Some(user) = user.filter(|user| user.id == user_id) else {
            return Ok(failed("/login", "the session that started linking has ended", "session_invalid", clear));
        };
        return Ok(match accounts::link_identity(&state, &user, identity, ip).await {
            Ok(()) => redirect("/settings?linked=google", [clear]),
            Err(error) => account_failure("/settings", error, clear)?,
        });
    }
    match accounts::sign_in_with_identity(&state, identity, ip).await {
        Ok(user) => {
            let issued = sessions::start(&state, &user, &sessions::Client::new(ip, &headers)).await?;
            let [session, csrf] = state.sessions.cookies(&issued);
            Ok(redirect(&flow.next, [clear, session, csrf]))
        }
        Err(error) => account_failure("/login", error, clear),
    }
}

/// A refused account change (sign-up closed, a conflicting link) goes to `page` with its code;
/// anything else is a server error.
fn account_failure(page: &str, error: AppError, clear: HeaderValue) -> Result<Response> {
    match error.code() {
        Some(code) if matches!(error, AppError::Client { .. }) => Ok(failed(page, &error.to_string(), code, clear)),
        _ => Err(error),
    }
}

fn failed(page: &str, reason: &str, code: &str, clear: HeaderValue) -> Response {
    tracing::info!(code, reason, "Google sign-in refused");
    let query: String = url::form_urlencoded::Serializer::new(String::new()).append_pair("error", code).finish();
    redirect(&format!("{page}?{query}"), [clear])
}
