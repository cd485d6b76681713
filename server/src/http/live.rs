//! `/api/v1/events` (the signed-in user's live stream, SSE) and `/api/v1/notifications`.

use std::time::Duration;

use axum::{
    Extension, Json,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
};
use fleetplane_api as api;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    extract::{ApiPath, ApiQuery},
    serve::Socket,
    sse,
};
use crate::{
    auth::CurrentUser,
    error::{AppError, Problem, Result},
    live::{self, Live, Slot},
    notifications,
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(event_stream))
        .routes(routes!(list_notifications))
        .routes(routes!(unread_count))
        .routes(routes!(mark_read))
        .routes(routes!(mark_all_read))
        .routes(routes!(delete_notification))
}

impl From<live::OpenError> for AppError {
    fn from(error: live::OpenError) -> Self {
        match error {
            live::OpenError::Starting => AppError::unavailable(
                "live_starting",
                "Live updates are starting: the server cannot read the event log yet. Try again in a moment.",
            )
            .retry_after(5),
            live::OpenError::Db(e) => e.into(),
        }
    }
}

/// Where a stream resumes: the `Last-Event-ID` header (sent by EventSource when it
/// reconnects), or `?last_event_id=` for a first connection that already knows one.
pub fn last_event_id(headers: &HeaderMap, query: Option<&str>) -> Result<Option<i64>> {
    let invalid =
        || AppError::bad_request("invalid_last_event_id", "`Last-Event-ID` must be an event id this stream sent.");
    let header = headers.get("last-event-id").map(|value| value.to_str().map_err(|_| invalid())).transpose()?;
    let Some(text) = header.or(query).filter(|text| !text.is_empty()) else { return Ok(None) };
    // Only what the stream sends: up to 18 digits (no sign, no spaces), so always an i64.
    if text.len() > 18 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    text.parse::<i64>().map(Some).map_err(|_| invalid())
}

/// One of the caller's stream places, or 429.
pub fn stream_slot(state: &AppState, caller: &CurrentUser) -> Result<Slot> {
    Live::acquire(state, caller.id(), caller.credential()).ok_or_else(|| {
        AppError::client(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_streams",
            format!(
                "You have {} live streams open, the most allowed. Close a tab or another stream first.",
                state.config.live.max_streams_per_user
            ),
        )
    })
}

/// The response sending `stream`'s events, with the heartbeat comment, until the server stops.
pub fn sse_response(state: &AppState, stream: impl futures::Stream<Item = Bytes> + Send + 'static) -> Response {
    sse::response(stream, heartbeat(state))
}

fn heartbeat(state: &AppState) -> Duration {
    Duration::from_secs(state.config.live.heartbeat_secs)
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Resume after this event (the `Last-Event-ID` header wins).
    #[param(pattern = "^([0-9]{1,18})?$")]
    pub last_event_id: Option<String>,
}

/// The caller's live events (Server-Sent Events): run and cluster status changes in their
/// organizations, and their notifications (new, read, all read, deleted). Every event has an
/// `id`; reconnecting with `Last-Event-ID` resumes with nothing missed and nothing twice. A
/// `: heartbeat` comment comes every 15 s. A stream that falls too far behind gets a `resync`
/// event and ends; reconnect with its id.
#[utoipa::path(get, path = "/api/v1/events", tag = "live", params(StreamQuery), responses(
    (status = 200, description = "`text/event-stream`: events `run`, `cluster`, `notification`, `notification_read`, `notifications_read_all`, `notification_deleted`, `membership`, `resync`", content_type = "text/event-stream", body = sse::StreamEvent),
    (status = 400, description = "`invalid_last_event_id`", body = Problem, content_type = "application/problem+json"),
    (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
    (status = 429, description = "`too_many_streams`", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "`live_starting`: the server cannot read the event log yet; try again after `Retry-After`", body = Problem, content_type = "application/problem+json"),
))]
async fn event_stream(
    State(state): State<AppState>,
    caller: CurrentUser,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<StreamQuery>,
    lean: Option<Extension<Socket>>,
) -> Result<Response> {
    let after = last_event_id(&headers, query.last_event_id.as_deref())?;
    let slot = stream_slot(&state, &caller)?;
    let stream = live::event_stream(state.clone(), slot, caller.id(), after).await?;
    Ok(match lean {
        // The fan-out may then write the events itself.
        Some(Extension(socket)) => sse::written_directly(stream.write_to(socket, heartbeat(&state))),
        None => sse_response(&state, stream.into_stream()),
    })
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct NotificationQuery {
    /// Only unread ones.
    pub unread: bool,
    /// Older than this notification (paging).
    pub before: Option<Uuid>,
    /// Page size (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
}

/// The caller's notifications, newest first.
#[utoipa::path(get, path = "/api/v1/notifications", tag = "live", params(NotificationQuery), responses(
    (status = 200, body = api::NotificationPage),
    (status = 400, description = "`invalid_query`", body = Problem, content_type = "application/problem+json"),
))]
async fn list_notifications(
    State(state): State<AppState>,
    caller: CurrentUser,
    ApiQuery(query): ApiQuery<NotificationQuery>,
) -> Result<Json<api::NotificationPage>> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(AppError::bad_request("invalid_query", "`limit` must be 1 to 100."));
    }
    let rows = notifications::list(&state, caller.id(), query.unread, query.before, limit + 1).await?;
    let more = rows.len() as u64 > limit;
    let items: Vec<api::Notification> = rows.iter().take(limit as usize).map(notifications::view).collect();
    let next_before = if more { items.last().map(|n| n.id) } else { None };
    Ok(Json(api::NotificationPage { items, next_before }))
}

/// How many of the caller's notifications are unread.
#[utoipa::path(get, path = "/api/v1/notifications/unread-count", tag = "live", responses((status = 200, body = api::Count)))]
async fn unread_count(State(state): State<AppState>, caller: CurrentUser) -> Result<Json<api::Count>> {
    Ok(Json(api::Count { count: notifications::unread_count(&state, caller.id()).await? }))
}

#[derive(Deserialize)]
struct NotificationPath {
    id: Uuid,
}

/// Mark a notification read.
#[utoipa::path(post, path = "/api/v1/notifications/{id}/read", tag = "live",
    params(("id" = Uuid, Path, description = "Notification id")),
    responses(
        (status = 200, body = api::Notification),
        (status = 404, description = "`notification_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn mark_read(
    State(state): State<AppState>,
    caller: CurrentUser,
    ApiPath(path): ApiPath<NotificationPath>,
) -> Result<Json<api::Notification>> {
    let notification = notifications::mark_read(&state, caller.id(), path.id).await?;
    Ok(Json(notifications::view(&notification)))
}

/// Mark every notification read; answers how many were unread.
#[utoipa::path(post, path = "/api/v1/notifications/read-all", tag = "live", responses((status = 200, body = api::Count)))]
async fn mark_all_read(State(state): State<AppState>, caller: CurrentUser) -> Result<Json<api::Count>> {
    Ok(Json(api::Count { count: notifications::mark_all_read(&state, caller.id()).await? }))
}

/// Delete a notification.
#[utoipa::path(delete, path = "/api/v1/notifications/{id}", tag = "live",
    params(("id" = Uuid, Path, description = "Notification id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`notification_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn delete_notification(
    State(state): State<AppState>,
    caller: CurrentUser,
    ApiPath(path): ApiPath<NotificationPath>,
) -> Result<StatusCode> {
    notifications::delete(&state, caller.id(), path.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_last_event_id_is_digits_as_the_stream_sends_them() {
        let none = HeaderMap::new();
        assert_eq!(last_event_id(&none, Some("42")).ok(), Some(Some(42)));
        assert_eq!(last_event_id(&none, Some("")).ok(), Some(None));
        assert_eq!(last_event_id(&none, None).ok(), Some(None));
        for bad in ["+5", " 5", "-1", "5 ", "1234567890123456789", "x"] {
            assert!(last_event_id(&none, Some(bad)).is_err(), "{bad:?}");
        }
        let mut header = HeaderMap::new();
        header.insert("last-event-id", "7".parse().expect("header"));
        assert_eq!(last_event_id(&header, Some("42")).ok(), Some(Some(7)), "the header wins");
    }

    #[tokio::test]
    async fn a_stream_the_fan_out_is_not_ready_for_is_a_503_that_says_when_to_retry() {
        let response = axum::response::IntoResponse::into_response(AppError::from(live::OpenError::Starting));
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[axum::http::header::RETRY_AFTER], "5");
        let body = axum::body::to_bytes(response.into_body(), 4096).await.expect("body");
        let problem: serde_json::Value = serde_json::from_slice(&body).expect("problem+json");
        assert_eq!(problem["code"], "live_starting");
    }
}
