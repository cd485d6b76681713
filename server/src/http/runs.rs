//! `/api/v1/runs/{id}`: a run, its log, and approve, cancel and retry.

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::Utc;
use fleetplane_api as api;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::extract::{ApiPath, ApiQuery, ClientIp};
use crate::{
    auth::CurrentUser,
    entity::{clusters, runs as entity},
    error::{AppError, Problem, Result, stored},
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

/// Views of `runs` of organization `org`, with queue positions and user names.
pub async fn run_views(state: &AppState, runs: Vec<entity::Model>, org: &str) -> Result<Vec<api::Run>> {
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
        views.push(api::Run {
            id: run.id,
            org: org.to_owned(),
            cluster_id: run.cluster_id,
            cluster_name: cluster_names.get(&run.cluster_id).cloned().unwrap_or_default(),
            deployment_id: run.deployment_id,
            action: stored("runs.action", &run.action, api::RunAction::parse)?,
            status: stored("runs.status", &run.status, api::RunStatus::parse)?,
            reason,
            position,
            attempts: count(run.attempts),
            max_attempts: count(run.max_attempts),
            plan_summary: run.plan_summary.map(serde_json::from_value).transpose().map_err(anyhow::Error::from)?,
            outputs: run.outputs.and_then(object),
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

/// A count the schema keeps non-negative.
fn count(value: i32) -> u32 {
    u32::try_from(value).unwrap_or_default()
}

/// Terraform's outputs are an object; anything else was never written by a run.
pub fn object(value: serde_json::Value) -> Option<serde_json::Map<String, serde_json::Value>> {
    match value {
        serde_json::Value::Object(map) => Some(map),
        _ => None,
    }
}

#[derive(Deserialize)]
pub struct RunPath {
    pub id: Uuid,
}

async fn one_view(state: &AppState, run: entity::Model, org: &str) -> Result<api::Run> {
    run_views(state, vec![run], org).await?.pop().ok_or_else(|| AppError::Internal(anyhow::anyhow!("run vanished")))
}

/// A run: its status, why it is there, its place in the queue, plan summary and outputs.
#[utoipa::path(get, path = "/api/v1/runs/{id}", tag = "runs",
    params(("id" = Uuid, Path, description = "Run id")),
    responses(
        (status = 200, body = api::Run),
        (status = 404, description = "`run_not_found` (also for another organization's run)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_run(
    State(state): State<AppState>,
    caller: CurrentUser,
    ApiPath(path): ApiPath<RunPath>,
) -> Result<Json<api::Run>> {
    let (run, org, _) = runs::load_for(&state, &caller, path.id).await?;
    Ok(Json(one_view(&state, run, &org.name).await?))
}

/// Approve a planned run against a `prod` account; it goes on to apply. Admins and owners.
#[utoipa::path(post, path = "/api/v1/runs/{id}/approve", tag = "runs",
    params(("id" = Uuid, Path, description = "Run id")),
    responses(
        (status = 200, body = api::Run),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`run_state`: not awaiting approval", body = Problem, content_type = "application/problem+json"),
    ))]
async fn approve_run(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    caller: CurrentUser,
    ApiPath(path): ApiPath<RunPath>,
) -> Result<Json<api::Run>> {
    let run = runs::approve(&state, &caller, path.id, ip).await?;
    let (_, org, _) = runs::load_for(&state, &caller, path.id).await?;
    Ok(Json(one_view(&state, run, &org.name).await?))
}

/// Cancel a run. A running one is interrupted (Terraform stops cleanly, releasing its lock) and
/// ends `canceled` shortly after. Operators and above.
#[utoipa::path(post, path = "/api/v1/runs/{id}/cancel", tag = "runs",
    params(("id" = Uuid, Path, description = "Run id")),
    responses(
        (status = 200, body = api::Run),
        (status = 409, description = "`run_state`: already finished", body = Problem, content_type = "application/problem+json"),
    ))]
async fn cancel_run(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    caller: CurrentUser,
    ApiPath(path): ApiPath<RunPath>,
) -> Result<Json<api::Run>> {
    let run = runs::cancel(&state, &caller, path.id, ip).await?;
    let (_, org, _) = runs::load_for(&state, &caller, path.id).await?;
    Ok(Json(one_view(&state, run, &org.name).await?))
}

/// Queue a new run like a failed or canceled one, from the cluster's current spec.
#[utoipa::path(post, path = "/api/v1/runs/{id}/retry", tag = "runs",
    params(("id" = Uuid, Path, description = "Run id")),
    responses(
        (status = 201, body = api::Run),
        (status = 409, description = "`run_state`: not failed or canceled", body = Problem, content_type = "application/problem+json"),
    ))]
async fn retry_run(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    caller: CurrentUser,
    ApiPath(path): ApiPath<RunPath>,
) -> Result<(StatusCode, Json<api::Run>)> {
    let run = runs::retry(&state, &caller, path.id, ip).await?;
    let (_, org, _) = runs::load_for(&state, &caller, run.id).await?;
    Ok((StatusCode::CREATED, Json(one_view(&state, run, &org.name).await?)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// Only lines after this sequence number.
    #[serde(default)]
    #[param(minimum = 0)]
    pub after: i64,
    /// At most this many lines (default 500).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
}

/// The run's log, in order, from `after`. With `Accept: text/event-stream`, a live stream
/// (Server-Sent Events) instead: each line as a `line` event whose id is its number, from
/// `after` or `Last-Event-ID`, then the lines as they come, then an `end` event with the run's
/// outcome; a `: heartbeat` comment every 15 s.
#[utoipa::path(get, path = "/api/v1/runs/{id}/logs", tag = "runs",
    params(("id" = Uuid, Path, description = "Run id"), LogQuery),
    responses(
        (status = 200, body = api::LogPage, description = "A page of lines; or, for `Accept: text/event-stream`, the live stream"),
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
    let chunks = lines
        .into_iter()
        .map(|l| {
            Ok(api::LogLine {
                seq: u64::try_from(l.seq).unwrap_or_default(),
                stream: stored("run_logs.stream", &l.stream, api::LogStream::parse)?,
                text: l.text,
                at: l.at,
            })
        })
        .collect::<Result<_>>()?;
    let next_after = u64::try_from(next_after).unwrap_or_default();
    Ok(Json(api::LogPage { chunks, next_after, complete }).into_response())
}
