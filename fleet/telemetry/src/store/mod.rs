//! Where telemetry is kept: every packet once, by `(device_id, seq)`, and the quarantine.
//!
//! Both stores sit behind [`TelemetryStore`] and pass the same tests: [`sqlite`], the embedded
//! default, and ClickHouse for production. A store's [`insert`](TelemetryStore::insert) is
//! durable when it returns, and idempotent: a packet delivered again is not stored again,
//! which is what lets the ingest acknowledge only after a commit and still count every packet
//! once after a crash.

pub mod clickhouse;
pub mod sqlite;

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, NaiveDate, Utc};
use fleet_proto::{DeviceId, Telemetry, envelope::Body};

use crate::packet::{Packet, Quarantined, Reason};

/// The most raw records one history page holds.
pub const MAX_RECORDS: u64 = 10_000;
/// The most buckets one downsampled history holds.
pub const MAX_BUCKETS: u64 = 10_000;
/// The quarantine keeps this many entries, the newest.
pub const DEFAULT_QUARANTINE_CAP: u64 = 100_000;

/// The telemetry values a downsampled history aggregates, as the API names them.
pub const AGGREGATED: [&str; 14] = [
    "lat",
    "lon",
    "altitude_m",
    "hdop",
    "speed_kmh",
    "battery_soc_pct",
    "battery_voltage_v",
    "battery_current_a",
    "battery_temp_c",
    "motor_power_w",
    "motor_temp_c",
    "assist_level",
    "cadence_rpm",
    "odometer_m",
];

/// `name`'s value in `telemetry` (one of [`AGGREGATED`]).
pub fn value_of(telemetry: &Telemetry, name: &str) -> Option<f64> {
    Some(match name {
        "lat" => telemetry.lat,
        "lon" => telemetry.lon,
        "altitude_m" => telemetry.altitude_m.into(),
        "hdop" => telemetry.hdop.into(),
        "speed_kmh" => telemetry.speed_kmh.into(),
        "battery_soc_pct" => telemetry.battery_soc_pct.into(),
        "battery_voltage_v" => telemetry.battery_voltage_v.into(),
        "battery_current_a" => telemetry.battery_current_a.into(),
        "battery_temp_c" => telemetry.battery_temp_c.into(),
        "motor_power_w" => telemetry.motor_power_w.into(),
        "motor_temp_c" => telemetry.motor_temp_c.into(),
        "assist_level" => telemetry.assist_level.into(),
        "cadence_rpm" => telemetry.cadence_rpm.into(),
        #[allow(clippy::cast_precision_loss)] // an odometer in metres stays far below 2^53
        "odometer_m" => telemetry.odometer_m as f64,
        _ => return None,
    })
}

/// A stored packet.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub seq: u64,
    pub recorded_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub body: Body,
}

impl From<&Packet> for Record {
    fn from(packet: &Packet) -> Self {
        Self {
            seq: packet.seq,
            recorded_at: packet.recorded_at,
            received_at: packet.received_at,
            body: packet.body.clone(),
        }
    }
}

/// Where a history page starts: after this packet, in `(recorded_at, seq)` order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub recorded_at: DateTime<Utc>,
    pub seq: u64,
}

/// A time range, `from` included and `to` not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// One page of a history.
#[derive(Clone, Debug, PartialEq)]
pub struct History {
    pub records: Vec<Record>,
    pub next: Option<Cursor>,
}

impl History {
    /// A page of at most `limit` from `records`, which holds one more when another page
    /// follows: the cursor then points after the last record kept.
    fn page(mut records: Vec<Record>, limit: u64) -> Self {
        let next = if records.len() as u64 > limit {
            records.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
            records.last().map(|last| Cursor { recorded_at: last.recorded_at, seq: last.seq })
        } else {
            None
        };
        Self { records, next }
    }
}

/// The average, least and greatest value of one field in a bucket.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stat {
    pub avg: f64,
    pub min: f64,
    pub max: f64,
}

/// The telemetry of one time bucket, aggregated.
#[derive(Clone, Debug, PartialEq)]
pub struct Bucket {
    /// The bucket's start: a multiple of its width since the Unix epoch.
    pub start: DateTime<Utc>,
    /// How many telemetry packets it holds.
    pub count: u64,
    /// Each of [`AGGREGATED`].
    pub stats: BTreeMap<&'static str, Stat>,
}

/// A quarantined packet, as kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuarantineEntry {
    pub id: i64,
    pub quarantined: Quarantined,
}

/// Which quarantine entries a listing returns.
#[derive(Clone, Debug, Default)]
pub struct QuarantineFilter {
    pub device_id: Option<String>,
    pub reason: Option<Reason>,
}

/// A telemetry store.
#[async_trait::async_trait]
pub trait TelemetryStore: Send + Sync {
    /// Stores `packets`, each `(device_id, seq)` counted once however often it is given, and
    /// returns how many were new, or, on a store that settles redeliveries when it reads
    /// (ClickHouse), how many it wrote. When it returns they are durable.
    async fn insert(&self, packets: &[Packet]) -> anyhow::Result<u64>;

    /// Keeps `entries` in the quarantine, dropping the oldest beyond its cap.
    async fn quarantine(&self, entries: &[Quarantined]) -> anyhow::Result<()>;

    /// `device_id`'s packets recorded in `range`, in `(recorded_at, seq)` order, after `after`,
    /// at most `limit` (up to [`MAX_RECORDS`]).
    async fn history(
        &self,
        device_id: &DeviceId,
        range: Range,
        after: Option<Cursor>,
        limit: u64,
    ) -> anyhow::Result<History>;

    /// `device_id`'s telemetry in `range`, aggregated in buckets `every` wide (up to
    /// [`MAX_BUCKETS`] of them, the earliest).
    async fn downsampled(&self, device_id: &DeviceId, range: Range, every: Duration) -> anyhow::Result<Vec<Bucket>>;

    /// How many packets are stored, of one bike or of all. Of all, it reads every row: not
    /// for a readiness check, which has [`ping`](Self::ping).
    async fn count(&self, device_id: Option<&DeviceId>) -> anyhow::Result<u64>;

    /// Quarantine entries, newest first, before the entry `before`, at most `limit`.
    async fn quarantined(
        &self,
        filter: &QuarantineFilter,
        before: Option<i64>,
        limit: u64,
    ) -> anyhow::Result<Vec<QuarantineEntry>>;

    /// Drops every day before `day` whole, and returns the days dropped.
    async fn drop_days_before(&self, day: NaiveDate) -> anyhow::Result<Vec<NaiveDate>>;

    /// Answers when the store can be reached, at once whatever it holds.
    async fn ping(&self) -> anyhow::Result<()>;
}

/// The grain of both stores' rollups.
const MINUTE_MS: i64 = 60_000;

/// The whole minutes within `[from, to)` ms, if there are any: the part of a range that a
/// minute rollup can answer. The rest, its ragged ends, is read from the rows.
fn whole_minutes(from: i64, to: i64) -> Option<(i64, i64)> {
    let first = from + (MINUTE_MS - from.rem_euclid(MINUTE_MS)) % MINUTE_MS;
    let last = to - to.rem_euclid(MINUTE_MS);
    (first < last).then_some((first, last))
}

/// Buckets from parts of them (the same start may come from several reads): merged, in
/// order, the earliest [`MAX_BUCKETS`].
fn merged_buckets(parts: impl IntoIterator<Item = (i64, Partial)>) -> anyhow::Result<Vec<Bucket>> {
    let mut buckets: BTreeMap<i64, Partial> = BTreeMap::new();
    for (start, partial) in parts {
        buckets.entry(start).and_modify(|sum| sum.merge(&partial)).or_insert(partial);
    }
    buckets
        .into_iter()
        .take(usize::try_from(MAX_BUCKETS).unwrap_or(usize::MAX))
        .map(|(start, partial)| partial.into_bucket(start))
        .collect()
}

/// The running aggregate of one bucket (or one minute): how many rows, and each of
/// [`AGGREGATED`]'s sum, least and greatest value, in that order.
#[derive(Clone, Debug)]
struct Partial {
    count: i64,
    totals: [(f64, f64, f64); AGGREGATED.len()],
}

impl Partial {
    fn of(telemetry: &Telemetry) -> Self {
        let mut totals = [(0.0, 0.0, 0.0); AGGREGATED.len()];
        for (total, field) in totals.iter_mut().zip(AGGREGATED) {
            let value = value_of(telemetry, field).unwrap_or_default();
            *total = (value, value, value);
        }
        Self { count: 1, totals }
    }

    /// `count` rows whose [`AGGREGATED`] values sum to `sums`, and whose least and greatest
    /// are `mins` and `maxes`.
    fn from_totals(count: u64, sums: &[f64], mins: &[f64], maxes: &[f64]) -> anyhow::Result<Self> {
        let n = AGGREGATED.len();
        anyhow::ensure!(
            sums.len() == n && mins.len() == n && maxes.len() == n,
            "totals of {}, {} and {} fields for {n}",
            sums.len(),
            mins.len(),
            maxes.len()
        );
        let mut totals = [(0.0, 0.0, 0.0); AGGREGATED.len()];
        for (i, total) in totals.iter_mut().enumerate() {
            *total = (sums[i], mins[i], maxes[i]);
        }
        Ok(Self { count: i64::try_from(count).unwrap_or(i64::MAX), totals })
    }

    fn merge(&mut self, other: &Self) {
        self.count += other.count;
        for (mine, theirs) in self.totals.iter_mut().zip(&other.totals) {
            *mine = (mine.0 + theirs.0, mine.1.min(theirs.1), mine.2.max(theirs.2));
        }
    }

    fn into_bucket(self, start: i64) -> anyhow::Result<Bucket> {
        #[allow(clippy::cast_precision_loss)] // a bucket holds far fewer than 2^53 rows
        let n = self.count as f64;
        let stats = AGGREGATED
            .iter()
            .zip(self.totals)
            .map(|(field, (sum, min, max))| (*field, Stat { avg: sum / n, min, max }))
            .collect();
        Ok(Bucket { start: from_millis(start)?, count: u64::try_from(self.count).unwrap_or_default(), stats })
    }
}

/// Milliseconds since the Unix epoch, as the stores keep times.
fn millis(time: DateTime<Utc>) -> i64 {
    time.timestamp_millis()
}

fn from_millis(millis: i64) -> anyhow::Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(millis).ok_or_else(|| anyhow::anyhow!("a stored time is out of range: {millis}"))
}

/// The width of a bucket in milliseconds, if it is at least one.
fn bucket_millis(every: Duration) -> anyhow::Result<i64> {
    let millis = i64::try_from(every.as_millis()).unwrap_or(i64::MAX);
    anyhow::ensure!(millis >= 1, "a bucket is at least 1 ms wide");
    Ok(millis)
}

#[cfg(test)]
pub(crate) mod tests;
