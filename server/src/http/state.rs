//! `/api/v1/state/{cluster}`: Terraform's `http` state backend, for runs.
//!
//! Terraform sends `GET` (read), `POST` (write, with `?ID=` while locked), `LOCK` and `UNLOCK`
//! (its default lock methods), with the run's token as the basic-auth password.
//!
//! The token is checked before a byte of the body is read: an anonymous upload is answered at
//! once, whatever it declares. A state may be up to `runs.max_state_mb`; one declared larger is
//! refused at once, and one that turns out larger is refused when it passes the limit.

use axum::{
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::MethodRouter,
};
use base64::{Engine, engine::general_purpose::STANDARD};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::extract::{ApiPath, ApiQuery};
use crate::{
    error::{AppError, Problem, Result},
    state::AppState,
    terraform_state::{self, LockInfo, Locking, RunCaller},
};

/// Lock information is a small JSON object.
const MAX_LOCK_INFO: usize = 64 * 1024;

pub fn router() -> OpenApiRouter<AppState> {
    let (schemas, paths, methods): (_, _, MethodRouter<AppState>) = routes!(read_state, write_state);
    let methods = methods.fallback(lock_or_unlock);
    OpenApiRouter::new().routes((schemas, paths, methods))
}

#[derive(Deserialize)]
pub struct StatePath {
    pub cluster: Uuid,
}

/// The run token from `Authorization: Basic` (any user name).
fn run_token(headers: &HeaderMap) -> Result<String> {
    let unauthorized =
        || AppError::unauthorized("invalid_run_token", "Send the run's token as the basic-auth password.");
    let value = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).ok_or_else(unauthorized)?;
    let encoded = value.strip_prefix("Basic ").ok_or_else(unauthorized)?;
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| unauthorized())?;
    let text = String::from_utf8(decoded).map_err(|_| unauthorized())?;
    let (_, token) = text.split_once(':').ok_or_else(unauthorized)?;
    Ok(token.to_owned())
}

async fn caller(state: &AppState, headers: &HeaderMap, cluster: Uuid) -> Result<RunCaller> {
    terraform_state::authenticate(state, cluster, &run_token(headers)?).await
}

fn with_auth_challenge(error: AppError) -> Response {
    let unauthorized = error.status() == StatusCode::UNAUTHORIZED;
    let mut response = error.into_response();
    if unauthorized {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"fleetplane-state\""));
    }
    response
}

/// Read the latest state (204 when there is none yet). Run token only.
#[utoipa::path(get, path = "/api/v1/state/{cluster}", tag = "terraform state",
    params(("cluster" = Uuid, Path, description = "Cluster id")),
    security(("run_token" = [])),
    responses(
        (status = 200, description = "The state document", content_type = "application/json", body = Object),
        (status = 204, description = "No state yet"),
        (status = 401, description = "`invalid_run_token`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn read_state(State(state): State<AppState>, headers: HeaderMap, ApiPath(path): ApiPath<StatePath>) -> Response {
    let result = async {
        caller(&state, &headers, path.cluster).await?;
        terraform_state::latest(&state, path.cluster).await
    }
    .await;
    match result {
        Ok(Some(document)) => ([(header::CONTENT_TYPE, "application/json")], document).into_response(),
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => with_auth_challenge(e),
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WriteQuery {
    /// The lock's id, while the state is locked.
    #[serde(rename = "ID")]
    pub id: Option<String>,
}

/// Write a new state version (kept with history). While the state is locked, `ID` must name the
/// lock. Run token only; the token is checked before the body is read.
#[utoipa::path(post, path = "/api/v1/state/{cluster}", tag = "terraform state",
    params(("cluster" = Uuid, Path, description = "Cluster id"), WriteQuery),
    security(("run_token" = [])),
    request_body(content = Object, content_type = "application/json", description = "The state document"),
    responses(
        (status = 200, description = "Stored"),
        (status = 401, description = "`invalid_run_token`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`lock_lost`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`state_too_large`", body = Problem, content_type = "application/problem+json"),
        (status = 423, description = "`state_locked`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn write_state(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(path): ApiPath<StatePath>,
    ApiQuery(query): ApiQuery<WriteQuery>,
    body: Body,
) -> Response {
    let result = async {
        let caller = caller(&state, &headers, path.cluster).await?;
        let body = read_state_body(&headers, body, state.config.runs.max_state_bytes()).await?;
        terraform_state::store(&state, path.cluster, &caller, query.id.as_deref(), &body).await
    }
    .await;
    match result {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => with_auth_challenge(e),
    }
}

/// A state's body, up to `limit` bytes: refused at once when its `Content-Length` says more,
/// and as soon as it passes `limit` when it does not say.
async fn read_state_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<axum::body::Bytes> {
    let too_large = || {
        AppError::client(
            StatusCode::PAYLOAD_TOO_LARGE,
            "state_too_large",
            format!("A state may be up to {} MiB (`runs.max_state_mb`).", limit / (1024 * 1024)),
        )
    };
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| super::extract::unread_body(&e, too_large))
}

/// `LOCK` and `UNLOCK`, Terraform's lock methods; anything else is not allowed here.
async fn lock_or_unlock(State(state): State<AppState>, request: Request) -> Response {
    let method = request.method().clone();
    if method.as_str() != "LOCK" && method.as_str() != "UNLOCK" {
        return crate::error::status_problem(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "Use GET, POST, LOCK or UNLOCK.",
        );
    }
    let (mut parts, body) = request.into_parts();
    let path =
        match <ApiPath<StatePath> as axum::extract::FromRequestParts<AppState>>::from_request_parts(&mut parts, &state)
            .await
        {
            Ok(ApiPath(path)) => path,
            Err(e) => return e.into_response(),
        };
    let result = async {
        let caller = caller(&state, &parts.headers, path.cluster).await?;
        let bytes = axum::body::to_bytes(body, MAX_LOCK_INFO).await.map_err(|e| {
            super::extract::unread_body(&e, || {
                AppError::bad_request("invalid_lock", "The lock information is too large.")
            })
        })?;
        let raw: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|_| AppError::bad_request("invalid_lock", "The lock information is not JSON."))?;
        let info: LockInfo = serde_json::from_value(raw.clone())
            .map_err(|_| AppError::bad_request("invalid_lock", "The lock information has no `ID`."))?;
        if method == Method::from_bytes(b"LOCK").unwrap_or(Method::POST) {
            Ok(match terraform_state::lock(&state, path.cluster, &caller, &info, raw).await? {
                Locking::Acquired => StatusCode::OK.into_response(),
                Locking::Held(holder) => (StatusCode::LOCKED, axum::Json(holder)).into_response(),
            })
        } else {
            Ok(match terraform_state::unlock(&state, path.cluster, &info).await? {
                Ok(()) => StatusCode::OK.into_response(),
                Err(holder) => (StatusCode::CONFLICT, axum::Json(holder)).into_response(),
            })
        }
    }
    .await;
    result.unwrap_or_else(with_auth_challenge)
}
