//! The embedded telemetry store: SQLite in WAL mode, one table per UTC day
//! (`telemetry_dYYYYMMDD`), so that retention drops whole days. Each day's table is keyed by
//! `(device_id, seq)`: a packet delivered twice is ignored the second time (its `recorded_at`,
//! and so its day, is the same). Commits are synchronous (`synchronous = FULL`): what
//! [`insert`](TelemetryStore::insert) returned is on disk.

use std::{
    collections::{BTreeMap, BTreeSet},
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
    AGGREGATED, Bucket, Cursor, DEFAULT_QUARANTINE_CAP, History, MAX_BUCKETS, MAX_RECORDS, QuarantineEntry,
    QuarantineFilter, Range, Record, Stat, TelemetryStore, bucket_millis, from_millis, millis,
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
/// Rows per INSERT statement: 22 values each, well under SQLite's 32,766 variables.
const ROWS_PER_STATEMENT: usize = 500;

pub struct SqliteStore {
    pool: SqlitePool,
    /// One writer at a time, so writers queue here rather than on SQLite's busy timeout.
    writer: Mutex<()>,
    /// The days that have a table.
    days: Mutex<BTreeSet<NaiveDate>>,
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
            .busy_timeout(Duration::from_secs(10));
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
        let days = tables.iter().filter_map(|name| day_of_table(name)).collect();
        Ok(Self { pool, writer: Mutex::new(()), days: Mutex::new(days), quarantine_cap: DEFAULT_QUARANTINE_CAP })
    }

    /// Keeps at most `cap` quarantine entries.
    #[must_use]
    pub fn with_quarantine_cap(mut self, cap: u64) -> Self {
        self.quarantine_cap = cap.max(1);
        self
    }

    /// The days with a table in `range`, in order.
    async fn days_in(&self, range: Range) -> Vec<NaiveDate> {
        if range.to <= range.from {
            return Vec::new();
        }
        let first = range.from.date_naive();
        let last = (range.to - chrono::TimeDelta::milliseconds(1)).date_naive();
        self.days.lock().await.range(first..=last).copied().collect()
    }
}

fn table_of(day: NaiveDate) -> String {
    format!("telemetry_d{}", day.format("%Y%m%d"))
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
        CREATE INDEX IF NOT EXISTS {table}_time ON {table} (device_id, recorded_at, seq);"
    )
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
        let mut days = self.days.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut new = Vec::new();
        for day in by_day.keys() {
            if !days.contains(day) {
                sqlx::raw_sql(AssertSqlSafe(create_day(*day))).execute(&mut *tx).await?;
                new.push(*day);
            }
        }
        let mut inserted = 0;
        for (day, packets) in &by_day {
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
                inserted += insert.build().execute(&mut *tx).await?.rows_affected();
            }
        }
        tx.commit().await?;
        days.extend(new);
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
        let aggregates: String = AGGREGATED
            .iter()
            .map(|field| format!(", avg({field}) AS {field}_avg, CAST(min({field}) AS REAL) AS {field}_min, CAST(max({field}) AS REAL) AS {field}_max"))
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
            query.push(" AND recorded_at >= ").push_bind(millis(range.from));
            query.push(" AND recorded_at < ").push_bind(millis(range.to));
        }
        query
            .push(") GROUP BY bucket ORDER BY bucket LIMIT ")
            .push_bind(i64::try_from(MAX_BUCKETS).unwrap_or(i64::MAX));
        let rows = query.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let mut stats = BTreeMap::new();
                for field in AGGREGATED {
                    let get = |suffix: &str| -> anyhow::Result<f64> {
                        Ok(row.try_get(format!("{field}_{suffix}").as_str())?)
                    };
                    stats.insert(field, Stat { avg: get("avg")?, min: get("min")?, max: get("max")? });
                }
                Ok(Bucket {
                    start: from_millis(row.try_get("bucket")?)?,
                    count: u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or_default(),
                    stats,
                })
            })
            .collect()
    }

    async fn count(&self, device_id: Option<&DeviceId>) -> anyhow::Result<u64> {
        let days: Vec<NaiveDate> = self.days.lock().await.iter().copied().collect();
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
        let mut days = self.days.lock().await;
        let old: Vec<NaiveDate> = days.range(..day).copied().collect();
        for old_day in &old {
            sqlx::raw_sql(AssertSqlSafe(format!("DROP TABLE IF EXISTS {}", table_of(*old_day))))
                .execute(&self.pool)
                .await?;
            days.remove(old_day);
        }
        Ok(old)
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
