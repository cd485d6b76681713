//! A bike's live telemetry over Server-Sent Events, framed as the control plane's streams are
//! ([`fleetplane_common::http::sse`]).
//!
//! Every event's id is the packet's `seq`; the stream follows the bike forwards, each event
//! with a greater `seq` than the one before. A client that reconnects with `Last-Event-ID`
//! gets what it missed from the store (up to [`REPLAY`] back), then the live feed, nothing
//! twice. A packet older than one already sent (an offline batch that came late) is in the
//! history, not the live stream. A stream that falls behind the feed catches up from the store
//! the same way.

use std::{sync::Arc, time::Duration};

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::HeaderMap,
    response::Response,
};
use chrono::{TimeDelta, Utc};
use fleet_proto::DeviceId;
use fleetplane_common::{http::sse, problem::Problem};
use tokio::sync::{broadcast, mpsc};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{ApiError, AppState, Result, auth::Caller, bikes::device};
use crate::{
    packet::Packet,
    registry::tokens::Scope,
    store::{Range, Record},
};

/// How far back a resumed stream is replayed from the store.
pub const REPLAY: Duration = Duration::from_secs(15 * 60);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(live))
}

/// The bike's packets as they are stored (Server-Sent Events). Each event is named by the
/// packet's kind (`telemetry`, `trip_start`, `trip_end`, `fault`, `boot`); its data is the
/// packet as the history gives it; its id is the packet's `seq`. Without `Last-Event-ID` the
/// stream starts with the bike's latest telemetry, if it has any. A `: heartbeat` comment comes
/// every 15 s.
#[utoipa::path(get, path = "/api/v1/bikes/{device_id}/live", tag = "telemetry", responses(
    (status = 200, description = "`text/event-stream`", content_type = "text/event-stream", body = sse::StreamEvent),
    (status = 400, description = "`invalid_last_event_id`", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "`bike_not_found`", body = Problem, content_type = "application/problem+json"),
))]
async fn live(
    State(state): State<AppState>,
    caller: Caller,
    Path(device_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    caller.require(Scope::Read)?;
    let device = device(&device_id)?;
    let after = sse::last_event_id(&headers, None)
        .map_err(|e| ApiError::bad_request("invalid_last_event_id", e.to_string()))?
        .map(|id| u64::try_from(id).unwrap_or(0));
    state.bike(&device).await?;
    // Subscribed before anything is read, so that nothing stored from now on escapes both.
    let feed = state.latest.subscribe();
    let (frames, events) = mpsc::channel(64);
    tokio::spawn(follow(state.clone(), device, after, feed, frames));
    let events = futures::stream::unfold(events, |mut events| async move { events.recv().await.map(|e| (e, events)) });
    Ok(sse::response(events, state.settings.heartbeat))
}

fn frame(record: &Record) -> Bytes {
    let data = serde_json::to_string(&super::model::record_view(record)).unwrap_or_else(|_| "{}".to_owned());
    sse::frame(record.seq, record.body.kind(), &data)
}

/// Sends the stream's events until the client goes away.
async fn follow(
    state: AppState,
    device: DeviceId,
    after: Option<u64>,
    mut feed: broadcast::Receiver<Arc<[Packet]>>,
    frames: mpsc::Sender<Bytes>,
) {
    let mut last = match after {
        Some(after) => match replay(&state, &device, after, &frames).await {
            Some(last) => last,
            None => return,
        },
        None => {
            // The bike's newest telemetry first, so that a new view shows it at once; the
            // stream goes on from the newest packet (which may be newer: an event).
            let latest = state.latest.get(&device);
            if let Some(newest) = latest.as_ref().and_then(|s| s.telemetry.as_ref()) {
                let record = Record {
                    seq: newest.seq,
                    recorded_at: newest.recorded_at,
                    received_at: newest.recorded_at,
                    body: fleet_proto::envelope::Body::Telemetry(newest.telemetry),
                };
                if frames.send(frame(&record)).await.is_err() {
                    return;
                }
            }
            latest.map_or(0, |s| s.seq)
        }
    };
    loop {
        let received = tokio::select! {
            () = state.shutdown.cancelled() => return,
            received = feed.recv() => received,
        };
        match received {
            Ok(batch) => {
                let mut mine: Vec<&Packet> = batch.iter().filter(|p| p.device_id == device && p.seq > last).collect();
                mine.sort_by_key(|p| p.seq);
                for packet in mine {
                    if frames.send(frame(&Record::from(packet))).await.is_err() {
                        return;
                    }
                    last = packet.seq;
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => match replay(&state, &device, last, &frames).await {
                Some(caught_up) => last = caught_up,
                None => return,
            },
            Err(broadcast::error::RecvError::Closed) => return,
        }
        if frames.is_closed() {
            return;
        }
    }
}

/// Sends the stored packets after `after` (by seq) from the last [`REPLAY`]; returns the last
/// seq sent, or `None` when the client is gone.
async fn replay(state: &AppState, device: &DeviceId, after: u64, frames: &mpsc::Sender<Bytes>) -> Option<u64> {
    let to = Utc::now() + TimeDelta::minutes(10);
    let from = Utc::now() - TimeDelta::from_std(REPLAY).unwrap_or_default();
    let mut cursor = None;
    let mut missed = Vec::new();
    loop {
        match state.store.history(device, Range { from, to }, cursor, 1_000).await {
            Ok(page) => {
                missed.extend(page.records.into_iter().filter(|r| r.seq > after));
                match page.next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "a live stream could not read what it missed; it ends");
                return None;
            }
        }
    }
    missed.sort_by_key(|r| r.seq);
    let mut last = after;
    for record in missed {
        frames.send(frame(&record)).await.ok()?;
        last = record.seq;
    }
    Some(last)
}
