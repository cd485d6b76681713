//! A bike's history (raw and paged, or downsampled into time buckets), its stored count, and
//! the quarantine.

use std::time::Duration;

use axum::{
    Json,
    extract::{Path, Query, State, rejection::QueryRejection},
    http::header,
    response::{IntoResponse, Response},
};
use chrono::{DateTime, TimeDelta, Utc};
use fleetplane_common::problem::Problem;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    ApiError, AppState, Result,
    auth::Caller,
    bikes::{device, query},
    model::{BucketView, Count, QuarantinePage, QuarantineView, TelemetryPage},
};
use crate::{
    packet::Reason,
    registry::tokens::Scope,
    store::{AGGREGATED, Cursor, MAX_BUCKETS, MAX_RECORDS, QuarantineFilter, Range},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(history)).routes(routes!(count)).routes(routes!(quarantine))
}

/// The raw page size when none is asked for.
const DEFAULT_RECORDS: u64 = 500;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(default, deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// RFC 3339; default an hour before `to`.
    from: Option<String>,
    /// RFC 3339, not included; default now.
    to: Option<String>,
    /// Downsample into buckets this wide: `30s`, `1m`, `5m`, `1h`, `1d` (at most 10,000 buckets).
    every: Option<String>,
    /// Downsampled history only: the fields to aggregate, comma-separated (`speed_kmh,battery_soc_pct`);
    /// default all of them.
    fields: Option<String>,
    /// Raw history only: at most this many (1 to 10,000, default 500).
    limit: Option<u64>,
    /// Raw history only: the `next` of the previous page.
    cursor: Option<String>,
}

fn time(field: &str, text: Option<&str>) -> Result<Option<DateTime<Utc>>> {
    text.map(|text| {
        DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc)).map_err(|_| {
            ApiError::bad_request(
                "invalid_query",
                format!("`{field}` must be an RFC 3339 time, e.g. 2026-12-06T10:00:00Z"),
            )
        })
    })
    .transpose()
}

/// `30s`, `5m`, `1h`, `1d`: a bucket width of at least one second.
pub fn every(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok().filter(|n| *n > 0)?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    number.checked_mul(unit).map(Duration::from_secs)
}

/// The fields a downsampled history keeps: `text`'s, comma-separated, each one of
/// [`AGGREGATED`].
fn fields(text: &str) -> Result<Vec<&'static str>> {
    text.split(',')
        .map(|name| {
            AGGREGATED.iter().find(|field| **field == name).copied().ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_query",
                    format!("`fields` is a comma-separated list of {}", AGGREGATED.join(", ")),
                )
            })
        })
        .collect()
}

fn cursor_text(cursor: Cursor) -> String {
    format!("{}-{}", cursor.recorded_at.timestamp_millis(), cursor.seq)
}

fn parse_cursor(text: &str) -> Option<Cursor> {
    let (millis, seq) = text.split_once('-')?;
    Some(Cursor { recorded_at: DateTime::from_timestamp_millis(millis.parse().ok()?)?, seq: seq.parse().ok()? })
}

/// A bike's packets recorded in `[from, to)`, ordered by `recorded_at` (an offline batch that
/// came late sits where it was recorded). With `every`, its telemetry downsampled into buckets
/// of that width: count, and avg/min/max of each field (or of `fields` alone).
#[utoipa::path(get, path = "/api/v1/bikes/{device_id}/telemetry", tag = "telemetry", params(HistoryQuery), responses(
    (status = 200, body = TelemetryPage),
    (status = 400, description = "`invalid_query`, `too_many_buckets`", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "`bike_not_found`", body = Problem, content_type = "application/problem+json"),
))]
async fn history(
    State(state): State<AppState>,
    caller: Caller,
    Path(device_id): Path<String>,
    params: std::result::Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Response> {
    caller.require(Scope::Read)?;
    let params = query(params)?;
    let device = device(&device_id)?;
    let to = time("to", params.to.as_deref())?.unwrap_or_else(Utc::now);
    let from = time("from", params.from.as_deref())?.unwrap_or(to - TimeDelta::hours(1));
    if from >= to {
        return Err(ApiError::bad_request("invalid_query", "`from` must be before `to`"));
    }
    state.bike(&device).await?;
    let range = Range { from, to };
    if let Some(text) = params.every.as_deref() {
        if params.limit.is_some() || params.cursor.is_some() {
            return Err(ApiError::bad_request(
                "invalid_query",
                "`limit` and `cursor` page raw history; leave them out with `every`",
            ));
        }
        let every = every(text)
            .ok_or_else(|| ApiError::bad_request("invalid_query", "`every` must be a width like 30s, 5m, 1h or 1d"))?;
        let span = (to - from).to_std().unwrap_or_default();
        if span.as_secs() / every.as_secs() >= MAX_BUCKETS {
            return Err(ApiError::bad_request(
                "too_many_buckets",
                format!(
                    "`from`..`to` in buckets of {text} is more than {MAX_BUCKETS}: widen `every` or narrow the range"
                ),
            ));
        }
        let fields = params.fields.as_deref().map(fields).transpose()?;
        let mut buckets = state.store.downsampled(&device, range, every).await.map_err(ApiError::store)?;
        if let Some(fields) = fields {
            for bucket in &mut buckets {
                bucket.stats.retain(|field, _| fields.contains(field));
            }
        }
        return large_json(move || TelemetryPage {
            every_secs: Some(every.as_secs()),
            buckets: Some(buckets.into_iter().map(BucketView::from).collect()),
            ..TelemetryPage::default()
        })
        .await;
    }
    if params.fields.is_some() {
        return Err(ApiError::bad_request(
            "invalid_query",
            "`fields` chooses what a downsampled history aggregates: give it with `every`",
        ));
    }
    let limit = params.limit.unwrap_or(DEFAULT_RECORDS);
    if !(1..=MAX_RECORDS).contains(&limit) {
        return Err(ApiError::bad_request("invalid_query", format!("`limit` must be between 1 and {MAX_RECORDS}")));
    }
    let after = params
        .cursor
        .as_deref()
        .map(|text| {
            parse_cursor(text)
                .ok_or_else(|| ApiError::bad_request("invalid_query", "`cursor` is not one this API gave"))
        })
        .transpose()?;
    let history = state.store.history(&device, range, after, limit).await.map_err(ApiError::store)?;
    large_json(move || TelemetryPage {
        items: Some(history.records.iter().map(super::model::record_view).collect()),
        next: history.next.map(cursor_text),
        ..TelemetryPage::default()
    })
    .await
}

/// The page `page` makes, as a JSON response built and serialized on a blocking thread. A
/// bike-day in minutes is 1.5 MB of JSON, several milliseconds of work: on the runtime it
/// would hold up every request queued behind it on that worker, `GET /bikes/{id}`s answered
/// from memory in microseconds among them.
async fn large_json(page: impl FnOnce() -> TelemetryPage + Send + 'static) -> Result<Response> {
    let body = tokio::task::spawn_blocking(move || serde_json::to_vec(&page()))
        .await
        .map_err(anyhow::Error::from)?
        .map_err(anyhow::Error::from)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// How many packets of the bike are stored: each once, however often it was delivered.
#[utoipa::path(get, path = "/api/v1/bikes/{device_id}/telemetry/count", tag = "telemetry", responses(
    (status = 200, body = Count),
    (status = 404, description = "`bike_not_found`", body = Problem, content_type = "application/problem+json"),
))]
async fn count(State(state): State<AppState>, caller: Caller, Path(device_id): Path<String>) -> Result<Json<Count>> {
    caller.require(Scope::Read)?;
    let device = device(&device_id)?;
    state.bike(&device).await?;
    let count = state.store.count(Some(&device)).await.map_err(ApiError::store)?;
    Ok(Json(Count { count }))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(default, deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct QuarantineQuery {
    /// A reason code: `malformed`, `revoked`, `device_mismatch`, `out_of_range`, …
    reason: Option<String>,
    device_id: Option<String>,
    /// At most this many (1 to 500, default 50).
    limit: Option<u64>,
    /// The `next` of the previous page.
    cursor: Option<String>,
}

/// Packets that were not stored, newest first, with why and the bytes as they came (cut to a
/// cap). The quarantine keeps a bounded number; older entries make room.
#[utoipa::path(get, path = "/api/v1/quarantine", tag = "quarantine", params(QuarantineQuery), responses(
    (status = 200, body = QuarantinePage),
    (status = 400, description = "`invalid_query`", body = Problem, content_type = "application/problem+json"),
))]
async fn quarantine(
    State(state): State<AppState>,
    caller: Caller,
    params: std::result::Result<Query<QuarantineQuery>, QueryRejection>,
) -> Result<Json<QuarantinePage>> {
    caller.require(Scope::Read)?;
    let params = query(params)?;
    let reason = params
        .reason
        .as_deref()
        .map(|text| {
            Reason::parse(text).ok_or_else(|| {
                let all: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
                ApiError::bad_request("invalid_query", format!("`reason` must be one of {}", all.join(", ")))
            })
        })
        .transpose()?;
    let limit = params.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request("invalid_query", "`limit` must be between 1 and 500"));
    }
    let before = params
        .cursor
        .as_deref()
        .map(|text| {
            text.parse::<i64>().map_err(|_| ApiError::bad_request("invalid_query", "`cursor` is not one this API gave"))
        })
        .transpose()?;
    let filter = QuarantineFilter { device_id: params.device_id, reason };
    let mut entries = state.store.quarantined(&filter, before, limit + 1).await.map_err(ApiError::store)?;
    let next = if entries.len() as u64 > limit {
        entries.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        entries.last().map(|e| e.id.to_string())
    } else {
        None
    };
    Ok(Json(QuarantinePage { items: entries.into_iter().map(QuarantineView::from).collect(), next }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_width_is_a_number_and_a_unit() {
        assert_eq!(every("30s"), Some(Duration::from_secs(30)));
        assert_eq!(every("5m"), Some(Duration::from_secs(300)));
        assert_eq!(every("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(every("1d"), Some(Duration::from_secs(86_400)));
        for bad in ["", "m", "0s", "5", "5 m", "1w", "-1s", "99999999999999999999d"] {
            assert_eq!(every(bad), None, "{bad}");
        }
    }

    #[test]
    fn fields_are_names_of_aggregated_values() {
        assert_eq!(fields("speed_kmh,battery_soc_pct").expect("fields"), ["speed_kmh", "battery_soc_pct"]);
        assert_eq!(fields("lat").expect("one"), ["lat"]);
        for bad in ["", "speed", "speed_kmh,", "speed_kmh,,lat", " lat", "seq"] {
            assert!(fields(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_history_cursor_reads_back_what_it_was() {
        let cursor = Cursor { recorded_at: DateTime::from_timestamp_millis(1_800_000_000_123).expect("time"), seq: 42 };
        assert_eq!(parse_cursor(&cursor_text(cursor)), Some(cursor));
        assert_eq!(parse_cursor("x-1"), None);
        assert_eq!(parse_cursor("1"), None);
    }
}
