//! `/api/v1/runs/{id}`: a run, its log, and approve, cancel and retry.

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::extract::{ApiPath, ApiQuery, ClientIp};
use crate::{
    auth::CurrentUser,
    entity::{clusters, runs as entity},
    error::{AppError, Problem, Result},
    runs::{self, status},
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_run))
        .routes(routes!(approve_run))
        .routes(routes!(cancel_run))
        .routes(routes!(retry_run))
        .routes(routes!(run_logs))
}

#[derive(Clone, Serialize, ToSchema)]
pub struct RunView {
    pub id: Uuid,
    /// The organization's name.
    pub org: String,
    pub cluster_id: Uuid,
    pub cluster_name: String,
    /// `apply`, `destroy` or `plan`.
    pub action: String,
    /// `queued`, `running`, `awaiting_approval`, `applying`, `succeeded`, `failed`, `canceled`.
    pub status: String,
    /// Why the run is where it is: why it waits, or how it ended.
    pub reason: Option<String>,
    /// Place in the queue while waiting for a worker (1 = next).
    pub position: Option<u64>,
    pub attempts: i32,
    pub max_attempts: i32,
    /// `{ "add", "change", "destroy" }` once planned.
    #[schema(value_type = Object)]
    pub plan_summary: Option<serde_json::Value>,
    #[schema(value_type = Object)]
    pub outputs: Option<serde_json::Value>,
    pub exit_code: Option<i64>,
    /// `docker` or `process`.
    pub executor: Option<String>,
    pub requested_by: Option<String>,
    pub approved_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// Views of `runs` of organization `org`, with queue positions and user names.
pub async fn run_views(state: &AppState, runs: Vec<entity::Model>, org: &str) -> Result<Vec<RunView>> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let now = Utc::now();
    let people: Vec<Uuid> = runs.iter().flat_map(|r| [r.requested_by, r.approved_by]).flatten().collect();
    let names = runs::usernames(&state.db, people).await?;
    let cluster_ids: Vec<Uuid> = runs.iter().map(|r| r.cluster_id).collect();
    let cluster_names: std::collections::HashMap<Uuid, String> = clusters::Entity::find()
        .filter(clusters::Column::Id.is_in(cluster_ids))
        .all(&state.db)
        .await?
        .into_iter()
        .map(|c| (c.id, c.name))
        .collect();
    let mut views = Vec::with_capacity(runs.len());
    for run in runs {
        let waiting = runs::queue_position(&state.db, &run, now).await?;
        let (position, reason) = match waiting {
            Some((position, reason)) => (position, Some(reason)),
            None => (None, run.reason.clone()),
        };
        views.push(RunView {
            id: run.id,
            org: org.to_owned(),
            cluster_id: run.cluster_id,
            cluster_name: cluster_names.get(&run.cluster_id).cloned().unwrap_or_default(),
            action: run.action,
            status: run.status,
            reason,
            position,
            attempts: run.attempts,
            max_attempts: run.max_attempts,
            plan_summary: run.plan_summary,
            outputs: run.outputs,
            exit_code: run.exit_code,
            executor: run.executor,
            requested_by: run.requested_by.and_then(|id| names.get(&id).cloned()),
            approved_by: run.approved_by.and_then(|id| names.get(&id).cloned()),
            created_at: run.created_at,
            started_at: run.started_at,
            finished_at: run.finished_at,
        });
    }
    Ok(views)
}

#[derive(Deserialize)]
pub struct RunPath {
    pub id: Uuid,
}

async fn one_view(state: &AppState, run: entity::Model, org: &str) -> Result<RunView> {
    run_views(state, vec![run], org).await?.pop().ok_or_else(|| AppError::Internal(anyhow::anyhow!("run vanished")))
}

/// A run: its status, why it is there, its place in the queue, plan summary and outputs.
#[utoipa::path(get, path = "/api/v1/runs/{id}", tag = "runs",
    params(("id" = Uuid, Path, description = "Run id")),
    responses(
        (status = 200, body = RunView),
        (status = 404, description = "`run_not_found` (also for another organization's run)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_run(
    State(state): State<AppState>,
    caller: CurrentUser,
    ApiPath(path): ApiPath<RunPath>,
) -> Result<Json<RunView>> {
    let (run, org, _) = runs::load_for(&state, &caller, path.id).await?;
    Ok(Json(one_view(&state, run, &org.name).await?))
}

/// Approve a planned run against a `prod` account; it goes on to apply. Admins and owners.
#[utoipa::path(post, path = "/api/v1/runs/{id}/approve", tag = "runs",
    params(("id" = Uuid, Path, description = "Run id")),
    responses(
        (status = 200, body = RunView),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`run_state`: not awaiting approval", body = Problem, content_type = "application/problem+json"),
    ))]
async fn approve_run(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    caller: CurrentUser,
    ApiPath(path): ApiPath<RunPath>,
) -> Result<Json<RunView>> {
    let run = runs::approve(&state, &caller, path.id, ip).await?;
    let (_, org, _) = runs::load_for(&state, &caller, path.id).await?;
    Ok(Json(one_view(&state, run, &org.name).await?))
}

/// Cancel a run. A running one is interrupted (Terraform stops cleanly, releasing its lock) and
/// ends `canceled` shortly after. Operators and above.
#[utoipa::path(post, path = "/api/v1/runs/{id}/cancel", tag = "runs",
    params(("id" = Uuid, Path, description = "Run id")),
    responses(
        (status = 200, body = RunView),
        (status = 409, description = "`run_state`: already finished", body = Problem, content_type = "application/problem+json"),
    ))]
async fn cancel_run(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    caller: CurrentUser,
    ApiPath(path): ApiPath<RunPath>,
) -> Result<Json<RunView>> {
    let run = runs::cancel(&state, &caller, path.id, ip).await?;
    let (_, org, _) = runs::load_for(&state, &caller, path.id).await?;
    Ok(Json(one_view(&state, run, &org.name).await?))
}

/// Queue a new run like a failed or canceled one, from the cluster's current spec.
#[utoipa::path(post, path = "/api/v1/runs/{id}/retry", tag = "runs",
    params(("id" = Uuid, Path, description = "Run id")),
    responses(
        (status = 201, body = RunView),
        (status = 409, description = "`run_state`: not failed or canceled", body = Problem, content_type = "application/problem+json"),
    ))]
async fn retry_run(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    caller: CurrentUser,
    ApiPath(path): ApiPath<RunPath>,
) -> Result<(StatusCode, Json<RunView>)> {
    let run = runs::retry(&state, &caller, path.id, ip).await?;
    let (_, org, _) = runs::load_for(&state, &caller, run.id).await?;
    Ok((StatusCode::CREATED, Json(one_view(&state, run, &org.name).await?)))
}

#[derive(Deserialize, IntoParams)]
pub struct LogQuery {
    /// Only lines after this sequence number.
    #[serde(default)]
    pub after: i64,
    /// At most this many lines (1–1000, default 500).
    pub limit: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct LogLineView {
    pub seq: i64,
    /// `stdout`, `stderr` or `system`.
    pub stream: String,
    pub text: String,
    pub at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct LogPage {
    pub chunks: Vec<LogLineView>,
    /// Pass as `after` for the next page.
    pub next_after: i64,
    /// The run has ended and every line has been returned.
    pub complete: bool,
}

/// The run's log, in order, from `after`. With `Accept: text/event-stream`, a live stream
/// (Server-Sent Events) instead: each line as a `line` event whose id is its number, from
/// `after` or `Last-Event-ID`, then the lines as they come, then an `end` event with the run's
/// outcome; a `: heartbeat` comment every 15 s.
#[utoipa::path(get, path = "/api/v1/runs/{id}/logs", tag = "runs",
    params(("id" = Uuid, Path, description = "Run id"), LogQuery),
    responses(
        (status = 200, body = LogPage, description = "A page of lines; or, for `Accept: text/event-stream`, the live stream"),
        (status = 400, description = "`invalid_query`, `invalid_last_event_id`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`run_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`too_many_streams`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn run_logs(
    State(state): State<AppState>,
    caller: CurrentUser,
    headers: HeaderMap,
    ApiPath(path): ApiPath<RunPath>,
    ApiQuery(query): ApiQuery<LogQuery>,
) -> Result<Response> {
    let limit = query.limit.unwrap_or(500);
    if !(1..=1000).contains(&limit) || query.after < 0 {
        return Err(AppError::bad_request("invalid_query", "`limit` must be 1 to 1000 and `after` at least 0."));
    }
    let (run, _, _) = runs::load_for(&state, &caller, path.id).await?;
    let wants_stream = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("text/event-stream"));
    if wants_stream {
        let after = super::live::last_event_id(&headers, None)?.unwrap_or(query.after);
        let slot = super::live::stream_slot(&state, &caller)?;
        let stream = crate::live::log_stream(state.clone(), slot, run.id, after);
        return Ok(super::live::sse_response(&state, stream));
    }
    let lines = runs::logs(&state, run.id, query.after, limit).await?;
    let next_after = lines.last().map_or(query.after, |l| l.seq);
    let complete = status::is_terminal(&run.status) && (lines.len() as u64) < limit;
    Ok(Json(LogPage {
        chunks: lines
            .into_iter()
            .map(|l| LogLineView { seq: l.seq, stream: l.stream, text: l.text, at: l.at })
            .collect(),
        next_after,
        complete,
    })
    .into_response())
}
