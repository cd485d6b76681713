//! The embedded telemetry store: SQLite in WAL mode, one table per UTC day
//! (`telemetry_dYYYYMMDD`), so that retention drops whole days. Each day's table is keyed by
//! `(device_id, seq)`: a packet delivered twice is ignored the second time (its `recorded_at`,
//! and so its day, is the same). Commits are synchronous (`synchronous = FULL`): what
//! [`insert`](TelemetryStore::insert) returned is on disk.
//!
//! Beside each day's packets, `minutes_dYYYYMMDD` keeps every bike's telemetry rolled up by
//! minute: a count, and each field's sum, least and greatest value packed in one blob (one
//! column to read per row, not 42). It is written in the same transaction from the rows the
//! insert actually added (`RETURNING`), so a redelivery is not counted twice. History
//! downsampled into whole minutes reads the rollup for the minutes the range covers whole and
//! the raw rows only for its ragged ends: a bike-day at one minute is 1,440 rows, not 86,400.
//! A day stored before the rollups existed has none and is downsampled from its rows.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    path::Path,
    str::FromStr,
    time::Duration,
};

use anyhow::Context;
use chrono::NaiveDate;
use fleet_proto::{DeviceId, Envelope, Message, Telemetry, envelope::Body};
use sea_orm::sqlx::{
    self, AssertSqlSafe, QueryBuilder, Row, Sqlite, SqlitePool,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous},
};
use tokio::sync::Mutex;

use super::{
    AGGREGATED, Bucket, Cursor, DEFAULT_QUARANTINE_CAP, History, MAX_BUCKETS, MAX_RECORDS, MINUTE_MS, Partial,
    QuarantineEntry, QuarantineFilter, Range, Record, TelemetryStore, bucket_millis, from_millis, merged_buckets,
    millis, whole_minutes,
};
use crate::packet::{Packet, Quarantined, Reason};

/// The telemetry columns, in the order of `Telemetry`'s fields.
const TELEMETRY_COLUMNS: [&str; 16] = [
    "lat",
    "lon",
    "altitude_m",
    "gps_fix",
    "hdop",
    "speed_kmh",
    "heading_deg",
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
/// Rows per INSERT statement: at most 45 values each, well under SQLite's 32,766 variables.
const ROWS_PER_STATEMENT: usize = 500;

/// The days stored, and those of them with a minute rollup (all but days stored by a version
/// before the rollups).
#[derive(Default)]
struct Days {
    all: BTreeSet<NaiveDate>,
    rolled_up: BTreeSet<NaiveDate>,
}

pub struct SqliteStore {
    pool: SqlitePool,
    /// One writer at a time, so writers queue here rather than on SQLite's busy timeout.
    writer: Mutex<()>,
    /// The days that have a table. Held only to look or to change, never across a query: a
    /// read does not wait for a write.
    days: std::sync::Mutex<Days>,
    quarantine_cap: u64,
}

impl SqliteStore {
    /// Opens (or creates) the store in the file `path`.
    pub async fn open(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            // Ten thousand bikes' inserts land all over the key's b-tree: with SQLite's default
            // 2 MiB cache most of them read a page from the kernel first.
            .pragma("cache_size", "-65536")
            .pragma("mmap_size", "268435456");
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .with_context(|| format!("opening the telemetry store {}", path.display()))?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS quarantine (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                received_at INTEGER NOT NULL,
                topic TEXT NOT NULL,
                device_id TEXT,
                reason TEXT NOT NULL,
                detail TEXT NOT NULL,
                payload BLOB NOT NULL,
                payload_len INTEGER NOT NULL
            )",
        )
        .execute(&pool)
        .await?;
        sqlx::query("CREATE INDEX IF NOT EXISTS quarantine_device ON quarantine (device_id, id)")
            .execute(&pool)
            .await?;
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'telemetry_d%'")
                .fetch_all(&pool)
                .await?;
        let days: BTreeSet<NaiveDate> = tables.iter().filter_map(|name| day_of_table(name)).collect();
        let rollups: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'minutes_d%'")
                .fetch_all(&pool)
                .await?;
        // A day stored before the rollups existed has none, and is read from its rows.
        let rolled_up = days.iter().filter(|day| rollups.contains(&rollup_of(**day))).copied().collect();
        Ok(Self {
            pool,
            writer: Mutex::new(()),
            days: std::sync::Mutex::new(Days { all: days, rolled_up }),
            quarantine_cap: DEFAULT_QUARANTINE_CAP,
        })
    }

    /// Keeps at most `cap` quarantine entries.
    #[must_use]
    pub fn with_quarantine_cap(mut self, cap: u64) -> Self {
        self.quarantine_cap = cap.max(1);
        self
    }

    /// `device_id`'s raw telemetry rows recorded in `[from, to)` ms, aggregated into buckets
    /// `width` ms wide: the earliest [`MAX_BUCKETS`].
    async fn aggregated(
        &self,
        days: &[NaiveDate],
        device_id: &DeviceId,
        (from, to): (i64, i64),
        width: i64,
    ) -> anyhow::Result<Vec<(i64, Partial)>> {
        if from >= to {
            return Ok(Vec::new());
        }
        let aggregates: String = AGGREGATED
            .iter()
            .map(|f| format!(", CAST(sum({f}) AS REAL), CAST(min({f}) AS REAL), CAST(max({f}) AS REAL)"))
            .collect();
        let mut query = QueryBuilder::<Sqlite>::new("SELECT (recorded_at / ");
        query.push_bind(width).push(") * ").push_bind(width).push(" AS bucket, count(*) AS n");
        query.push(aggregates).push(" FROM (");
        for (i, day) in days.iter().enumerate() {
            if i > 0 {
                query.push(" UNION ALL ");
            }
            query.push(format!("SELECT * FROM {} WHERE kind = 'telemetry' AND device_id = ", table_of(*day)));
            query.push_bind(device_id.as_str().to_owned());
            query.push(" AND recorded_at >= ").push_bind(from);
            query.push(" AND recorded_at < ").push_bind(to);
        }
        query
            .push(") GROUP BY bucket ORDER BY bucket LIMIT ")
            .push_bind(i64::try_from(MAX_BUCKETS).unwrap_or(i64::MAX));
        query.build().fetch_all(&self.pool).await?.iter().map(Partial::from_row).collect()
    }

    /// As [`aggregated`](Self::aggregated), from the minute rollup of `days`: `from`, `to`
    /// and `width` are whole minutes. Buckets of one minute are the rollup's rows as they are.
    async fn rolled_up(
        &self,
        days: &[NaiveDate],
        device_id: &DeviceId,
        (from, to): (i64, i64),
        width: i64,
    ) -> anyhow::Result<Vec<(i64, Partial)>> {
        let mut query = QueryBuilder::<Sqlite>::new("SELECT minute, n, totals FROM (");
        for (i, day) in days.iter().enumerate() {
            if i > 0 {
                query.push(" UNION ALL ");
            }
            query.push(format!("SELECT minute, n, totals FROM {} WHERE device_id = ", rollup_of(*day)));
            query.push_bind(device_id.as_str().to_owned());
            query.push(" AND minute >= ").push_bind(from);
            query.push(" AND minute < ").push_bind(to);
        }
        query.push(") ORDER BY minute");
        if width == MINUTE_MS {
            query.push(" LIMIT ").push_bind(i64::try_from(MAX_BUCKETS).unwrap_or(i64::MAX));
        }
        let mut buckets: Vec<(i64, Partial)> = Vec::new();
        for row in query.build().fetch_all(&self.pool).await? {
            let minute: i64 = row.try_get(0)?;
            let partial = Partial::from_rollup(row.try_get(1)?, &row.try_get::<Vec<u8>, _>(2)?)?;
            let start = minute - minute.rem_euclid(width);
            match buckets.last_mut() {
                Some((last, sum)) if *last == start => sum.merge(&partial),
                _ => buckets.push((start, partial)),
            }
        }
        Ok(buckets)
    }

    fn known_days(&self) -> std::sync::MutexGuard<'_, Days> {
        self.days.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The days with a table in `range`, in order.
    async fn days_in(&self, range: Range) -> Vec<NaiveDate> {
        if range.to <= range.from {
            return Vec::new();
        }
        let first = range.from.date_naive();
        let last = (range.to - chrono::TimeDelta::milliseconds(1)).date_naive();
        self.known_days().all.range(first..=last).copied().collect()
    }
}

fn table_of(day: NaiveDate) -> String {
    format!("telemetry_d{}", day.format("%Y%m%d"))
}

fn rollup_of(day: NaiveDate) -> String {
    format!("minutes_d{}", day.format("%Y%m%d"))
}

fn day_of_table(name: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(name.strip_prefix("telemetry_d")?, "%Y%m%d").ok()
}

fn create_day(day: NaiveDate) -> String {
    let table = table_of(day);
    let columns: String = TELEMETRY_COLUMNS
        .iter()
        .map(|c| {
            let kind = if matches!(*c, "gps_fix" | "assist_level" | "odometer_m") { "INTEGER" } else { "REAL" };
            format!("{c} {kind}, ")
        })
        .collect();
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (
            device_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            recorded_at INTEGER NOT NULL,
            received_at INTEGER NOT NULL,
            kind TEXT NOT NULL,
            {columns}
            event BLOB,
            PRIMARY KEY (device_id, seq)
        ) WITHOUT ROWID;
        CREATE INDEX IF NOT EXISTS {table}_time ON {table} (device_id, recorded_at, seq);
        {}",
        create_rollup(day)
    )
}

/// A day's rollup: a row per bike and minute, `totals` as [`Partial::totals_blob`] packs them.
fn create_rollup(day: NaiveDate) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (
            device_id TEXT NOT NULL,
            minute INTEGER NOT NULL,
            n INTEGER NOT NULL,
            totals BLOB NOT NULL,
            PRIMARY KEY (device_id, minute)
        ) WITHOUT ROWID;",
        rollup_of(day)
    )
}

/// The rollup rows of `day` for these bikes' minutes. A join on the key, not
/// `(device_id, minute) IN (…)`: SQLite scans the whole table for a row-value IN list.
fn existing_minutes<'a>(day: NaiveDate, keys: impl Iterator<Item = (&'a str, i64)>) -> QueryBuilder<Sqlite> {
    let mut query = QueryBuilder::<Sqlite>::new("WITH k (device_id, minute) AS (VALUES ");
    let mut values = query.separated(", ");
    for (device_id, minute) in keys {
        values.push("(").push_bind_unseparated(device_id.to_owned());
        values.push_unseparated(", ").push_bind_unseparated(minute).push_unseparated(")");
    }
    query.push(format!(
        ") SELECT m.device_id, m.minute, m.n, m.totals FROM k JOIN {} AS m \
         ON m.device_id = k.device_id AND m.minute = k.minute",
        rollup_of(day)
    ));
    query
}

/// Adds `minutes` to `day`'s rollup: each minute's row is read, merged and written back.
async fn roll_up(
    tx: &mut sqlx::SqliteConnection,
    day: NaiveDate,
    minutes: BTreeMap<(&str, i64), Partial>,
) -> anyhow::Result<()> {
    let minutes: Vec<((&str, i64), Partial)> = minutes.into_iter().collect();
    for chunk in minutes.chunks(ROWS_PER_STATEMENT) {
        let mut existing = existing_minutes(day, chunk.iter().map(|(key, _)| *key));
        let mut before: HashMap<(String, i64), Partial> = HashMap::new();
        for row in existing.build().fetch_all(&mut *tx).await? {
            let partial = Partial::from_rollup(row.try_get(2)?, &row.try_get::<Vec<u8>, _>(3)?)?;
            before.insert((row.try_get(0)?, row.try_get(1)?), partial);
        }
        let mut write = QueryBuilder::<Sqlite>::new(format!(
            "INSERT OR REPLACE INTO {} (device_id, minute, n, totals) ",
            rollup_of(day)
        ));
        write.push_values(chunk, |mut row, ((device_id, minute), partial)| {
            let mut partial = partial.clone();
            if let Some(earlier) = before.get(&((*device_id).to_owned(), *minute)) {
                partial.merge(earlier);
            }
            row.push_bind((*device_id).to_owned())
                .push_bind(*minute)
                .push_bind(partial.count)
                .push_bind(partial.totals_blob());
        });
        write.build().execute(&mut *tx).await?;
    }
    Ok(())
}

/// How SQLite's rows and rollup blobs become partial aggregates.
impl Partial {
    /// A row of `bucket, n`, then each of [`AGGREGATED`]'s sum, min and max, in that order.
    fn from_row(row: &SqliteRow) -> anyhow::Result<(i64, Self)> {
        let mut totals = [(0.0, 0.0, 0.0); AGGREGATED.len()];
        for (i, total) in totals.iter_mut().enumerate() {
            let at = 2 + 3 * i;
            *total = (row.try_get(at)?, row.try_get(at + 1)?, row.try_get(at + 2)?);
        }
        Ok((row.try_get(0)?, Self { count: row.try_get(1)?, totals }))
    }

    /// The totals as a rollup keeps them: each sum, min and max as 8 little-endian bytes.
    fn totals_blob(&self) -> Vec<u8> {
        self.totals.iter().flat_map(|(sum, min, max)| [sum, min, max]).flat_map(|v| v.to_le_bytes()).collect()
    }

    fn from_rollup(count: i64, blob: &[u8]) -> anyhow::Result<Self> {
        anyhow::ensure!(blob.len() == AGGREGATED.len() * 24, "a rollup's totals are {} bytes", blob.len());
        let mut values = blob.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap_or_default()));
        let mut totals = [(0.0, 0.0, 0.0); AGGREGATED.len()];
        for total in &mut totals {
            let mut next = || values.next().unwrap_or_default();
            *total = (next(), next(), next());
        }
        Ok(Self { count, totals })
    }
}

/// The envelope's body alone, encoded: how events (not telemetry) are kept.
fn encode_event(body: &Body) -> Vec<u8> {
    Envelope { body: Some(body.clone()), ..Envelope::default() }.encode_to_vec()
}

/// `seq` as SQLite keeps it: the same 64 bits, as a signed integer.
#[allow(clippy::cast_possible_wrap)]
fn seq_to_sql(seq: u64) -> i64 {
    seq as i64
}

#[allow(clippy::cast_sign_loss)]
fn seq_from_sql(seq: i64) -> u64 {
    seq as u64
}

#[allow(clippy::cast_possible_wrap)] // an odometer in metres stays far below 2^63
fn push_telemetry(row: &mut sqlx::query_builder::Separated<'_, Sqlite, &'static str>, t: Option<&Telemetry>) {
    row.push_bind(t.map(|t| t.lat))
        .push_bind(t.map(|t| t.lon))
        .push_bind(t.map(|t| t.altitude_m))
        .push_bind(t.map(|t| t.gps_fix))
        .push_bind(t.map(|t| t.hdop))
        .push_bind(t.map(|t| t.speed_kmh))
        .push_bind(t.map(|t| t.heading_deg))
        .push_bind(t.map(|t| t.battery_soc_pct))
        .push_bind(t.map(|t| t.battery_voltage_v))
        .push_bind(t.map(|t| t.battery_current_a))
        .push_bind(t.map(|t| t.battery_temp_c))
        .push_bind(t.map(|t| t.motor_power_w))
        .push_bind(t.map(|t| t.motor_temp_c))
        .push_bind(t.map(|t| i64::from(t.assist_level)))
        .push_bind(t.map(|t| t.cadence_rpm))
        .push_bind(t.map(|t| t.odometer_m as i64));
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // stored from the same types
fn record_from(row: &SqliteRow) -> anyhow::Result<Record> {
    let kind: String = row.try_get("kind")?;
    let body = if kind == "telemetry" {
        let real = |name: &str| -> anyhow::Result<f64> { Ok(row.try_get::<f64, _>(name)?) };
        Body::Telemetry(Telemetry {
            lat: real("lat")?,
            lon: real("lon")?,
            altitude_m: real("altitude_m")? as f32,
            gps_fix: row.try_get("gps_fix")?,
            hdop: real("hdop")? as f32,
            speed_kmh: real("speed_kmh")? as f32,
            heading_deg: real("heading_deg")? as f32,
            battery_soc_pct: real("battery_soc_pct")? as f32,
            battery_voltage_v: real("battery_voltage_v")? as f32,
            battery_current_a: real("battery_current_a")? as f32,
            battery_temp_c: real("battery_temp_c")? as f32,
            motor_power_w: real("motor_power_w")? as f32,
            motor_temp_c: real("motor_temp_c")? as f32,
            assist_level: row.try_get::<i64, _>("assist_level")? as u32,
            cadence_rpm: real("cadence_rpm")? as f32,
            odometer_m: row.try_get::<i64, _>("odometer_m")? as u64,
        })
    } else {
        let event: Vec<u8> = row.try_get("event")?;
        Envelope::decode(event.as_slice())
            .context("decoding a stored event")?
            .body
            .with_context(|| format!("a stored {kind} event has no body"))?
    };
    Ok(Record {
        seq: seq_from_sql(row.try_get("seq")?),
        recorded_at: from_millis(row.try_get("recorded_at")?)?,
        received_at: from_millis(row.try_get("received_at")?)?,
        body,
    })
}

#[async_trait::async_trait]
impl TelemetryStore for SqliteStore {
    async fn insert(&self, packets: &[Packet]) -> anyhow::Result<u64> {
        if packets.is_empty() {
            return Ok(0);
        }
        let mut by_day: BTreeMap<NaiveDate, Vec<&Packet>> = BTreeMap::new();
        for packet in packets {
            by_day.entry(packet.recorded_at.date_naive()).or_default().push(packet);
        }
        let _writer = self.writer.lock().await;
        let (missing, rolled_up): (Vec<NaiveDate>, Vec<NaiveDate>) = {
            let days = self.known_days();
            (
                by_day.keys().filter(|day| !days.all.contains(day)).copied().collect(),
                by_day.keys().filter(|day| days.rolled_up.contains(day)).copied().collect(),
            )
        };
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut new = Vec::new();
        for day in by_day.keys() {
            if missing.contains(day) {
                sqlx::raw_sql(AssertSqlSafe(create_day(*day))).execute(&mut *tx).await?;
                new.push(*day);
            }
        }
        let mut inserted = 0;
        for (day, packets) in &by_day {
            // Which rows this insert added, by device and seq: only those are rolled up.
            let mut added: HashMap<String, HashSet<i64>> = HashMap::new();
            for chunk in packets.chunks(ROWS_PER_STATEMENT) {
                let mut insert = QueryBuilder::<Sqlite>::new(format!(
                    "INSERT OR IGNORE INTO {} (device_id, seq, recorded_at, received_at, kind, {}, event) ",
                    table_of(*day),
                    TELEMETRY_COLUMNS.join(", ")
                ));
                insert.push_values(chunk, |mut row, packet| {
                    row.push_bind(packet.device_id.as_str().to_owned())
                        .push_bind(seq_to_sql(packet.seq))
                        .push_bind(millis(packet.recorded_at))
                        .push_bind(millis(packet.received_at))
                        .push_bind(packet.body.kind());
                    match &packet.body {
                        Body::Telemetry(t) => {
                            push_telemetry(&mut row, Some(t));
                            row.push_bind(None::<Vec<u8>>);
                        }
                        other => {
                            push_telemetry(&mut row, None);
                            row.push_bind(Some(encode_event(other)));
                        }
                    }
                });
                insert.push(" RETURNING device_id, seq");
                for row in insert.build().fetch_all(&mut *tx).await? {
                    added.entry(row.try_get("device_id")?).or_default().insert(row.try_get("seq")?);
                    inserted += 1;
                }
            }
            let mut minutes: BTreeMap<(&str, i64), Partial> = BTreeMap::new();
            for packet in packets {
                let Body::Telemetry(telemetry) = &packet.body else { continue };
                let fresh = added.get_mut(packet.device_id.as_str()).is_some_and(|s| s.remove(&seq_to_sql(packet.seq)));
                if fresh {
                    let at = millis(packet.recorded_at);
                    let minute = at - at.rem_euclid(MINUTE_MS);
                    let partial = Partial::of(telemetry);
                    minutes
                        .entry((packet.device_id.as_str(), minute))
                        .and_modify(|sum| sum.merge(&partial))
                        .or_insert(partial);
                }
            }
            if rolled_up.contains(day) || missing.contains(day) {
                roll_up(&mut tx, *day, minutes).await?;
            }
        }
        tx.commit().await?;
        let mut days = self.known_days();
        days.all.extend(&new);
        days.rolled_up.extend(new);
        Ok(inserted)
    }

    async fn quarantine(&self, entries: &[Quarantined]) -> anyhow::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let _writer = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for chunk in entries.chunks(ROWS_PER_STATEMENT) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO quarantine (received_at, topic, device_id, reason, detail, payload, payload_len) ",
            );
            insert.push_values(chunk, |mut row, entry| {
                row.push_bind(millis(entry.received_at))
                    .push_bind(entry.topic.clone())
                    .push_bind(entry.device_id.clone())
                    .push_bind(entry.reason.as_str())
                    .push_bind(entry.detail.clone())
                    .push_bind(entry.payload.clone())
                    .push_bind(i64::try_from(entry.payload_len).unwrap_or(i64::MAX));
            });
            insert.build().execute(&mut *tx).await?;
        }
        sqlx::query("DELETE FROM quarantine WHERE id <= (SELECT max(id) FROM quarantine) - ?")
            .bind(i64::try_from(self.quarantine_cap).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn history(
        &self,
        device_id: &DeviceId,
        range: Range,
        after: Option<Cursor>,
        limit: u64,
    ) -> anyhow::Result<History> {
        let limit = limit.clamp(1, MAX_RECORDS);
        let days = self.days_in(range).await;
        if days.is_empty() {
            return Ok(History { records: Vec::new(), next: None });
        }
        let mut query = QueryBuilder::<Sqlite>::new("SELECT * FROM (");
        for (i, day) in days.iter().enumerate() {
            if i > 0 {
                query.push(" UNION ALL ");
            }
            query.push(format!("SELECT * FROM {} WHERE device_id = ", table_of(*day)));
            query.push_bind(device_id.as_str().to_owned());
            query.push(" AND recorded_at >= ").push_bind(millis(range.from));
            query.push(" AND recorded_at < ").push_bind(millis(range.to));
            if let Some(after) = after {
                query.push(" AND (recorded_at, seq) > (").push_bind(millis(after.recorded_at));
                query.push(", ").push_bind(seq_to_sql(after.seq)).push(")");
            }
        }
        query.push(") ORDER BY recorded_at, seq LIMIT ").push_bind(i64::try_from(limit + 1).unwrap_or(i64::MAX));
        let rows = query.build().fetch_all(&self.pool).await?;
        let records = rows.iter().map(record_from).collect::<anyhow::Result<Vec<_>>>()?;
        Ok(History::page(records, limit))
    }

    async fn downsampled(&self, device_id: &DeviceId, range: Range, every: Duration) -> anyhow::Result<Vec<Bucket>> {
        let width = bucket_millis(every)?;
        let days = self.days_in(range).await;
        if days.is_empty() {
            return Ok(Vec::new());
        }
        let (from, to) = (millis(range.from), millis(range.to));
        let mut parts = Vec::new();
        let rolled_up = {
            let known = self.known_days();
            days.iter().all(|day| known.rolled_up.contains(day))
        };
        match whole_minutes(from, to) {
            Some((first, last)) if width % MINUTE_MS == 0 && rolled_up => {
                // The whole minutes from the rollup, the ragged ends from the rows.
                parts.push(self.rolled_up(&days, device_id, (first, last), width).await?);
                parts.push(self.aggregated(&days, device_id, (from, first), width).await?);
                parts.push(self.aggregated(&days, device_id, (last, to), width).await?);
            }
            _ => parts.push(self.aggregated(&days, device_id, (from, to), width).await?),
        }
        merged_buckets(parts.into_iter().flatten())
    }

    async fn count(&self, device_id: Option<&DeviceId>) -> anyhow::Result<u64> {
        let days: Vec<NaiveDate> = self.known_days().all.iter().copied().collect();
        let mut total = 0u64;
        for day in days {
            let mut query = QueryBuilder::<Sqlite>::new(format!("SELECT count(*) FROM {}", table_of(day)));
            if let Some(device_id) = device_id {
                query.push(" WHERE device_id = ").push_bind(device_id.as_str().to_owned());
            }
            let count: i64 = query.build_query_scalar().fetch_one(&self.pool).await?;
            total += u64::try_from(count).unwrap_or_default();
        }
        Ok(total)
    }

    async fn quarantined(
        &self,
        filter: &QuarantineFilter,
        before: Option<i64>,
        limit: u64,
    ) -> anyhow::Result<Vec<QuarantineEntry>> {
        let mut query = QueryBuilder::<Sqlite>::new("SELECT * FROM quarantine WHERE 1 = 1");
        if let Some(device_id) = &filter.device_id {
            query.push(" AND device_id = ").push_bind(device_id.clone());
        }
        if let Some(reason) = filter.reason {
            query.push(" AND reason = ").push_bind(reason.as_str());
        }
        if let Some(before) = before {
            query.push(" AND id < ").push_bind(before);
        }
        query.push(" ORDER BY id DESC LIMIT ").push_bind(i64::try_from(limit.clamp(1, MAX_RECORDS)).unwrap_or(1));
        let rows = query.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let reason: String = row.try_get("reason")?;
                Ok(QuarantineEntry {
                    id: row.try_get("id")?,
                    quarantined: Quarantined {
                        received_at: from_millis(row.try_get("received_at")?)?,
                        topic: row.try_get("topic")?,
                        device_id: row.try_get("device_id")?,
                        reason: Reason::parse(&reason)
                            .with_context(|| format!("a stored quarantine reason `{reason}`"))?,
                        detail: row.try_get("detail")?,
                        payload: row.try_get("payload")?,
                        payload_len: usize::try_from(row.try_get::<i64, _>("payload_len")?).unwrap_or_default(),
                    },
                })
            })
            .collect()
    }

    async fn drop_days_before(&self, day: NaiveDate) -> anyhow::Result<Vec<NaiveDate>> {
        let _writer = self.writer.lock().await;
        let old: Vec<NaiveDate> = {
            let mut days = self.known_days();
            let old: Vec<NaiveDate> = days.all.range(..day).copied().collect();
            // Reads stop asking for these days before their tables go.
            days.all.retain(|known| *known >= day);
            old
        };
        for (i, old_day) in old.iter().enumerate() {
            let dropped = sqlx::raw_sql(AssertSqlSafe(format!(
                "DROP TABLE IF EXISTS {}; DROP TABLE IF EXISTS {}",
                table_of(*old_day),
                rollup_of(*old_day)
            )))
            .execute(&self.pool)
            .await;
            if let Err(e) = dropped {
                // The days not dropped are still there, and the next round tries again.
                self.known_days().all.extend(&old[i..]);
                return Err(e.into());
            }
        }
        Ok(old)
    }

    async fn ping(&self) -> anyhow::Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests as shared;

    async fn store(dir: &tempfile::TempDir) -> SqliteStore {
        SqliteStore::open(&dir.path().join("telemetry.db")).await.expect("store")
    }

    #[tokio::test]
    async fn a_packet_delivered_again_is_stored_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        shared::a_packet_delivered_again_is_stored_once(&store(&dir).await).await;
    }

    #[tokio::test]
    async fn insert_counts_only_the_packets_it_added() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir).await;
        let bike = shared::device(2);
        let packets = shared::ride(&bike, 50, shared::noon());
        assert_eq!(store.insert(&packets[..40]).await.expect("insert"), 40);
        assert_eq!(store.insert(&packets[..40]).await.expect("again"), 0);
        assert_eq!(store.insert(&packets[30..]).await.expect("overlapping"), 10);
        let twice: Vec<Packet> = packets[..2].iter().chain(&packets[..2]).cloned().collect();
        assert_eq!(store.insert(&twice).await.expect("the same packet twice in one call"), 0);
    }

    #[tokio::test]
    async fn history_orders_late_packets_by_recorded_at_across_days() {
        let dir = tempfile::tempdir().expect("tempdir");
        shared::history_orders_late_packets_by_recorded_at_across_days(&store(&dir).await).await;
    }

    #[tokio::test]
    async fn downsampled_history_matches_the_raw_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        shared::downsampled_history_matches_the_raw_rows(&store(&dir).await).await;
    }

    #[tokio::test]
    async fn downsampled_history_matches_the_raw_rows_at_any_width_and_edge() {
        let dir = tempfile::tempdir().expect("tempdir");
        shared::downsampled_history_matches_the_raw_rows_at_any_width_and_edge(&store(&dir).await).await;
    }

    #[tokio::test]
    async fn a_day_stored_before_the_rollups_existed_is_downsampled_from_its_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bike = shared::device(6);
        let stored = store(&dir).await;
        stored.insert(&shared::ride(&bike, 100, shared::noon())).await.expect("insert");
        let window = Range { from: shared::noon(), to: shared::noon() + chrono::TimeDelta::hours(1) };
        let every = Duration::from_secs(60);
        let before = stored.downsampled(&bike, window, every).await.expect("downsampled");
        assert_eq!(before.iter().map(|b| b.count).sum::<u64>(), 100);
        let rollup = rollup_of(shared::noon().date_naive());
        sqlx::raw_sql(AssertSqlSafe(format!("DROP TABLE {rollup}"))).execute(&stored.pool).await.expect("drop");
        drop(stored);
        let reopened = store(&dir).await;
        let from_rows = reopened.downsampled(&bike, window, every).await.expect("downsampled");
        assert_eq!(from_rows.len(), before.len());
        shared::assert_matches_raw(&reopened, &bike, window, every, &from_rows).await;
        // Late packets for that day are stored, and counted.
        reopened.insert(&shared::ride(&bike, 110, shared::noon())).await.expect("more");
        let after = reopened.downsampled(&bike, window, every).await.expect("downsampled");
        assert_eq!(after.iter().map(|b| b.count).sum::<u64>(), 110);
        shared::assert_matches_raw(&reopened, &bike, window, every, &after).await;
        // A new day has its rollup.
        let tomorrow = shared::noon() + chrono::TimeDelta::days(1);
        reopened.insert(&shared::ride(&bike, 10, tomorrow)).await.expect("tomorrow");
        assert!(reopened.known_days().rolled_up.contains(&tomorrow.date_naive()));
    }

    #[test]
    fn a_rollup_blob_of_the_wrong_length_is_an_error_not_zeros() {
        let partial = Partial::of(&shared::telemetry(3));
        let blob = partial.totals_blob();
        let back = Partial::from_rollup(partial.count, &blob).expect("its own blob");
        assert_eq!((back.count, back.totals), (partial.count, partial.totals));
        let e = Partial::from_rollup(1, &blob[..blob.len() - 8]).expect_err("short");
        assert!(e.to_string().contains("totals are"), "{e}");
    }

    #[tokio::test]
    async fn merging_into_the_rollup_looks_minutes_up_by_key_not_by_scanning() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir).await;
        let day = shared::noon().date_naive();
        store.insert(&shared::ride(&shared::device(8), 3, shared::noon())).await.expect("insert");
        let lookup = existing_minutes(day, [("bike-a", 0), ("bike-b", 60_000)].into_iter());
        let plan: Vec<String> = sqlx::query(AssertSqlSafe(format!("EXPLAIN QUERY PLAN {}", lookup.sql().as_str())))
            .bind("bike-a")
            .bind(0)
            .bind("bike-b")
            .bind(60_000)
            .fetch_all(&store.pool)
            .await
            .expect("plan")
            .iter()
            .map(|row| row.try_get::<String, _>("detail").expect("detail"))
            .collect();
        let rollup = rollup_of(day);
        assert!(plan.iter().any(|step| step.starts_with("SEARCH m USING PRIMARY KEY")), "{plan:?}");
        assert!(!plan.iter().any(|step| step == "SCAN m" || step.contains(&format!("SCAN {rollup}"))), "{plan:?}");
    }

    #[tokio::test]
    async fn the_quarantine_keeps_the_newest_up_to_its_cap() {
        let dir = tempfile::tempdir().expect("tempdir");
        shared::the_quarantine_keeps_the_newest_up_to_its_cap(&store(&dir).await.with_quarantine_cap(20), 20).await;
    }

    #[tokio::test]
    async fn retention_drops_whole_days() {
        let dir = tempfile::tempdir().expect("tempdir");
        shared::retention_drops_whole_days(&store(&dir).await).await;
    }

    #[tokio::test]
    async fn what_was_stored_is_there_after_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bike = shared::device(5);
        store(&dir).await.insert(&shared::ride(&bike, 12, shared::noon())).await.expect("insert");
        let reopened = store(&dir).await;
        assert_eq!(reopened.count(Some(&bike)).await.expect("count"), 12, "the days are found again");
        assert_eq!(reopened.insert(&shared::ride(&bike, 12, shared::noon())).await.expect("again"), 0);
    }
}
