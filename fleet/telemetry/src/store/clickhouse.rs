//! The production telemetry store: ClickHouse.
//!
//! One `telemetry` table, a ReplacingMergeTree partitioned by UTC day and ordered by
//! `(device_id, recorded_at, seq)`. Retention drops whole day partitions (ClickHouse 18.16,
//! which the tests use, has no TTL). A packet delivered twice is written twice, and
//! ClickHouse keeps one of the two when it merges parts; [`insert`](TelemetryStore::insert)
//! therefore returns how many packets it wrote, redeliveries included (finding out which were
//! stored before would read the whole table for every batch). Every read counts each packet
//! once even before that merge: a bike's rows are read keeping one per `(recorded_at, seq)`
//! ([`ONCE_EACH`]), and the count of all uses `FINAL`. `FINAL` on one bike's range would merge,
//! row by row, every part's whole index granules around it, other bikes' rows included, before
//! the `WHERE` drops them: tens of thousands of rows merged for a minute's few.
//!
//! Beside it, `telemetry_minutes` keeps every bike's telemetry rolled up by minute, filled by
//! a materialized view from every insert: an AggregatingMergeTree of the count, the fields'
//! sums, least and greatest values (as arrays, `-ForEach`: three columns to read, not 42),
//! and a bitmap of the minute's `seq`s. A redelivery is rolled up again like any row, so a
//! minute's rollup is trusted only where its count equals the bits its `seq`s set; a minute
//! that may hold a redelivery is aggregated from the rows instead (de-duplicated, so exact).
//! Redeliveries are rare (a broker or ingest restart), so history downsampled into whole
//! minutes reads the rollup for nearly every minute the range covers whole: a bike-day at one
//! minute is 1,440 rollup rows, not 86,400 packets. A database from before the rollup is
//! rolled up once, when the store is first opened on it.
//!
//! Rows are sent as TabSeparated over HTTP: ClickHouse servers older than 22.6 mis-read
//! RowBinary in rare cases, and TSV is what they read fastest. Every value sent is a number,
//! a day, a checked device id, or hex, so none needs escaping. Reads go through the client
//! with schema validation off (18.16 has no `RowBinaryWithNamesAndTypes`). The quarantine is
//! a MergeTree of its own: reads show its newest `cap` entries, and older ones are deleted
//! in the background once it holds twice that.

use std::{
    fmt::Write as _,
    sync::atomic::{AtomicI64, Ordering},
    time::Duration,
};

use anyhow::Context;
use chrono::{NaiveDate, Utc};
use clickhouse::Client;
use fleet_proto::{DeviceId, Envelope, Message, Telemetry, envelope::Body};
use serde::Deserialize;

use super::{
    AGGREGATED, Bucket, Cursor, DEFAULT_QUARANTINE_CAP, History, MAX_BUCKETS, MAX_RECORDS, MINUTE_MS, Partial,
    QuarantineEntry, QuarantineFilter, Range, Record, TelemetryStore, bucket_millis, from_millis, merged_buckets,
    millis, whole_minutes,
};
use crate::packet::{Packet, Quarantined, Reason};

/// The telemetry columns, in the order of `Telemetry`'s fields, with their ClickHouse types.
const TELEMETRY_COLUMNS: [(&str, &str); 16] = [
    ("lat", "Float64"),
    ("lon", "Float64"),
    ("altitude_m", "Float64"),
    ("gps_fix", "Int64"),
    ("hdop", "Float64"),
    ("speed_kmh", "Float64"),
    ("heading_deg", "Float64"),
    ("battery_soc_pct", "Float64"),
    ("battery_voltage_v", "Float64"),
    ("battery_current_a", "Float64"),
    ("battery_temp_c", "Float64"),
    ("motor_power_w", "Float64"),
    ("motor_temp_c", "Float64"),
    ("assist_level", "Int64"),
    ("cadence_rpm", "Float64"),
    ("odometer_m", "Int64"),
];

/// How a read of one bike's rows counts each packet once before ClickHouse has merged its
/// copies away: one row per `(recorded_at, seq)`, the rest of the sorting key.
const ONCE_EACH: &str = "LIMIT 1 BY recorded_at, seq";

/// How many rows [`insert`](TelemetryStore::insert) writes out at a time before it lets the
/// other tasks on its worker run.
const ROWS_BETWEEN_YIELDS: usize = 500;

pub struct ClickHouseStore {
    client: Client,
    quarantine_cap: u64,
    /// The last quarantine id handed out: ids grow within a process (microseconds, then +1).
    last_id: AtomicI64,
}

impl ClickHouseStore {
    /// Connects to the ClickHouse HTTP interface at `url`, in `database` (created if missing),
    /// and creates the tables.
    pub async fn open(url: &str, database: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !database.is_empty() && database.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "a ClickHouse database name has only ASCII letters, digits and `_`"
        );
        let server = Client::default().with_url(url).with_validation(false);
        server
            .query(&format!("CREATE DATABASE IF NOT EXISTS {database}"))
            .execute()
            .await
            .with_context(|| format!("reaching ClickHouse at {url}"))?;
        let client = server.with_database(database);
        let columns: String =
            TELEMETRY_COLUMNS.iter().map(|(name, kind)| format!("{name} Nullable({kind}), ")).collect();
        client
            .query(&format!(
                "CREATE TABLE IF NOT EXISTS telemetry (
                    device_id String, seq UInt64, recorded_at Int64, received_at Int64, day Date, kind String,
                    {columns} event String
                ) ENGINE = ReplacingMergeTree() PARTITION BY day ORDER BY (device_id, recorded_at, seq)"
            ))
            .execute()
            .await
            .context("creating the telemetry table")?;
        create_rollup(&client).await?;
        client
            .query(
                "CREATE TABLE IF NOT EXISTS quarantine (
                    id Int64, received_at Int64, topic String, device_id String, reason String, detail String,
                    payload String, payload_len UInt64
                ) ENGINE = MergeTree() ORDER BY id",
            )
            .execute()
            .await
            .context("creating the quarantine table")?;
        Ok(Self { client, quarantine_cap: DEFAULT_QUARANTINE_CAP, last_id: AtomicI64::new(0) })
    }

    /// Shows (and keeps) at most `cap` quarantine entries.
    #[must_use]
    pub fn with_quarantine_cap(mut self, cap: u64) -> Self {
        self.quarantine_cap = cap.max(1);
        self
    }

    fn next_id(&self) -> i64 {
        let now = Utc::now().timestamp_micros();
        let mut last = self.last_id.load(Ordering::Relaxed);
        loop {
            let next = now.max(last + 1);
            match self.last_id.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return next,
                Err(actual) => last = actual,
            }
        }
    }

    /// `device_id`'s telemetry rows recorded in any of `ranges` (each `[from, to)` ms),
    /// aggregated into buckets `width` ms wide (only the buckets starting at `only`, unless it
    /// is empty): the earliest [`MAX_BUCKETS`]. One query however many ranges, so that a
    /// range's two ragged ends cost one.
    async fn aggregated(
        &self,
        device_id: &DeviceId,
        ranges: &[(i64, i64)],
        width: i64,
        only: &[i64],
    ) -> anyhow::Result<Vec<(i64, Partial)>> {
        let ranges: Vec<(i64, i64)> = ranges.iter().copied().filter(|(from, to)| from < to).collect();
        if ranges.is_empty() {
            return Ok(Vec::new());
        }
        let within = vec!["(recorded_at >= ? AND recorded_at < ?)"; ranges.len()].join(" OR ");
        // The buckets are numbers this function was given: safe to put in the statement.
        let only = if only.is_empty() {
            String::new()
        } else {
            format!(" AND bucket IN ({})", only.iter().map(i64::to_string).collect::<Vec<_>>().join(", "))
        };
        let mut query = self
            .client
            .query(&format!(
                "SELECT bucket, count() AS n, toUInt8(0) AS redelivered,
                        sumForEach(v) AS sums, minForEach(v) AS mins, maxForEach(v) AS maxes
                 FROM (
                    SELECT intDiv(recorded_at, ?) * ? AS bucket, [{values}] AS v
                    FROM telemetry
                    PREWHERE device_id = ? AND ({within}) WHERE kind = 'telemetry' {only}
                    {ONCE_EACH}
                 )
                 GROUP BY bucket ORDER BY bucket LIMIT ?",
                values = aggregated_values(),
            ))
            .bind(width)
            .bind(width)
            .bind(device_id.as_str());
        for (from, to) in ranges {
            query = query.bind(from).bind(to);
        }
        let rows: Vec<BucketRow> = query.bind(MAX_BUCKETS).fetch_all().await?;
        rows.into_iter().map(BucketRow::into_partial).collect()
    }

    /// As [`aggregated`](Self::aggregated), from the minute rollup: `from`, `to` and `width`
    /// are whole minutes. Buckets with a minute whose rollup may hold a redelivery (see
    /// [`SEEN_BITS`]) are not among the buckets returned but the starts returned beside them,
    /// to be aggregated from the rows.
    async fn rolled_up(
        &self,
        device_id: &DeviceId,
        (from, to): (i64, i64),
        width: i64,
    ) -> anyhow::Result<(Vec<(i64, Partial)>, Vec<i64>)> {
        let (masks, distinct) = seen_in_minute();
        let day = |at: i64| from_millis(at).map(|at| at.date_naive().to_string());
        let rows: Vec<BucketRow> = self
            .client
            .query(&format!(
                "SELECT intDiv(minute, ?) * ? AS bucket, sum(c) AS n, max(c > {distinct}) AS redelivered,
                        sumForEach(s) AS sums, minForEach(l) AS mins, maxForEach(g) AS maxes
                 FROM (
                    SELECT minute, countMerge(n) AS c, sumForEachMerge(sums) AS s, minForEachMerge(mins) AS l,
                           maxForEachMerge(maxes) AS g {masks}
                    FROM telemetry_minutes
                    PREWHERE device_id = ? AND minute >= ? AND minute < ? WHERE day >= toDate(?) AND day <= toDate(?)
                    GROUP BY minute
                 )
                 GROUP BY bucket ORDER BY bucket LIMIT ?"
            ))
            .bind(width)
            .bind(width)
            .bind(device_id.as_str())
            .bind(from)
            .bind(to)
            .bind(day(from)?)
            .bind(day(to - 1)?)
            .bind(MAX_BUCKETS)
            .fetch_all()
            .await?;
        let mut buckets = Vec::with_capacity(rows.len());
        let mut redelivered = Vec::new();
        for row in rows {
            if row.redelivered == 0 {
                buckets.push(row.into_partial()?);
            } else {
                redelivered.push(row.bucket);
            }
        }
        Ok((buckets, redelivered))
    }

    /// The id of the oldest quarantine entry still shown (the cap-th newest), if it is full.
    async fn oldest_shown(&self) -> anyhow::Result<Option<i64>> {
        let ids: Vec<i64> = self
            .client
            .query("SELECT id FROM quarantine ORDER BY id DESC LIMIT 1 OFFSET ?")
            .bind(self.quarantine_cap - 1)
            .fetch_all()
            .await?;
        Ok(ids.first().copied())
    }
}

/// A minute's rollup tells its redeliveries by the `seq`s it has seen: one bit for each `seq`
/// modulo this. Its count of rows equals the number of bits set only if no two of its rows
/// share a `seq` (a redelivery shares one, and sets no new bit), so such a minute is exact;
/// any other is aggregated from the rows. Two `seq`s a multiple of this apart in one minute
/// (a bike sending more than four packets a second, or a reboot) only send that minute to
/// the rows too: never a wrong answer.
const SEEN_BITS: u64 = 256;
const SEEN_WORDS: u64 = SEEN_BITS / 64;

/// For a query grouped by minute over the rollup: the columns `, m0, m1, …` merging the
/// minute's `seq` bitmap, and an expression counting the bits set in them. A count of rows
/// above it means the minute may hold a redelivery.
fn seen_in_minute() -> (String, String) {
    let masks = (0..SEEN_WORDS).map(|k| format!(", groupBitOrMerge(seen{k}) AS m{k}")).collect();
    let distinct = (0..SEEN_WORDS).map(|k| bits_set(&format!("m{k}"))).collect::<Vec<_>>().join(" + ");
    (masks, distinct)
}

/// The number of bits set in the `UInt64` `x`, as ClickHouse 18.16 (without `bitCount`) can
/// say it: the length of the array of its powers of two.
fn bits_set(x: &str) -> String {
    format!("length(bitmaskToArray({x}))")
}

/// [`AGGREGATED`]'s values of a `telemetry` row, as one array of `Float64`: what the
/// `-ForEach` aggregates take.
fn aggregated_values() -> String {
    AGGREGATED.iter().map(|f| format!("toFloat64(assumeNotNull({f}))")).collect::<Vec<_>>().join(", ")
}

/// `SELECT` of the minute rollup's columns from `telemetry` rows, grouped by bike and minute:
/// what the materialized view runs on every insert, and what rolls up a database from
/// before the rollup.
fn rollup_select(from: &str) -> String {
    let values = aggregated_values();
    let seen: String = (0..SEEN_WORDS)
        .map(|k| {
            format!(
                ", groupBitOrState(if(intDiv(seq % {SEEN_BITS}, 64) = {k}, bitShiftLeft(toUInt64(1), seq % 64), \
                 toUInt64(0))) AS seen{k}"
            )
        })
        .collect();
    format!(
        "SELECT device_id, day, intDiv(recorded_at, {MINUTE_MS}) * {MINUTE_MS} AS minute, countState() AS n,
                sumForEachState([{values}]) AS sums, minForEachState([{values}]) AS mins,
                maxForEachState([{values}]) AS maxes {seen}
         FROM {from} WHERE kind = 'telemetry' GROUP BY device_id, day, minute"
    )
}

/// Creates the minute rollup and the view that fills it, and rolls up what was stored before
/// it existed. Rows the view takes while that runs are rolled up twice, which the reads see
/// (a count above the bits its `seq`s set) and answer from the rows: still exact. The
/// rollup's granules are small: a bike-day is 1,440 rows, and with the default 8,192 a read
/// of them would decode thousands of other bikes' states in every part too.
async fn create_rollup(client: &Client) -> anyhow::Result<()> {
    let seen: String = (0..SEEN_WORDS).map(|k| format!(", seen{k} AggregateFunction(groupBitOr, UInt64)")).collect();
    client
        .query(&format!(
            "CREATE TABLE IF NOT EXISTS telemetry_minutes (
                device_id String, day Date, minute Int64, n AggregateFunction(count),
                sums AggregateFunction(sumForEach, Array(Float64)), mins AggregateFunction(minForEach, Array(Float64)),
                maxes AggregateFunction(maxForEach, Array(Float64)) {seen}
            ) ENGINE = AggregatingMergeTree() PARTITION BY day ORDER BY (device_id, minute)
              SETTINGS index_granularity = 256"
        ))
        .execute()
        .await
        .context("creating the minute rollup")?;
    client
        .query(&format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS telemetry_minutes_view TO telemetry_minutes AS {}",
            rollup_select("telemetry")
        ))
        .execute()
        .await
        .context("creating the view that rolls telemetry up")?;
    client
        .query("CREATE TABLE IF NOT EXISTS rollup_done (rolled_up UInt8) ENGINE = TinyLog")
        .execute()
        .await
        .context("creating the rollup's marker")?;
    let done: u64 = client.query("SELECT count() FROM rollup_done").fetch_one().await?;
    if done == 0 {
        client
            .query(&format!("INSERT INTO telemetry_minutes {}", rollup_select("telemetry FINAL")))
            .execute()
            .await
            .context("rolling up the telemetry stored before the rollup")?;
        client.query("INSERT INTO rollup_done VALUES (1)").execute().await?;
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

fn unhex(text: &str) -> anyhow::Result<Vec<u8>> {
    anyhow::ensure!(text.len().is_multiple_of(2), "stored hex has an odd length");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).context("stored hex is not hex"))
        .collect()
}

/// One value for a TSV row: `\N` for none.
fn tsv<T: std::fmt::Display>(out: &mut String, value: Option<T>) {
    match value {
        Some(value) => {
            let _ = write!(out, "\t{value}");
        }
        None => out.push_str("\t\\N"),
    }
}

/// One packet as a TSV row. `f32` values are widened first, so that they are stored (and
/// aggregated) as the same `f64` on both stores.
fn row(out: &mut String, packet: &Packet) {
    let _ = write!(
        out,
        "{}\t{}\t{}\t{}\t{}\t{}",
        packet.device_id,
        packet.seq,
        millis(packet.recorded_at),
        millis(packet.received_at),
        packet.recorded_at.date_naive(),
        packet.body.kind()
    );
    let t = match &packet.body {
        Body::Telemetry(t) => Some(t),
        _ => None,
    };
    tsv(out, t.map(|t| t.lat));
    tsv(out, t.map(|t| t.lon));
    tsv(out, t.map(|t| f64::from(t.altitude_m)));
    tsv(out, t.map(|t| t.gps_fix));
    tsv(out, t.map(|t| f64::from(t.hdop)));
    tsv(out, t.map(|t| f64::from(t.speed_kmh)));
    tsv(out, t.map(|t| f64::from(t.heading_deg)));
    tsv(out, t.map(|t| f64::from(t.battery_soc_pct)));
    tsv(out, t.map(|t| f64::from(t.battery_voltage_v)));
    tsv(out, t.map(|t| f64::from(t.battery_current_a)));
    tsv(out, t.map(|t| f64::from(t.battery_temp_c)));
    tsv(out, t.map(|t| f64::from(t.motor_power_w)));
    tsv(out, t.map(|t| f64::from(t.motor_temp_c)));
    tsv(out, t.map(|t| t.assist_level));
    tsv(out, t.map(|t| f64::from(t.cadence_rpm)));
    tsv(out, t.map(|t| t.odometer_m));
    let event = match &packet.body {
        Body::Telemetry(_) => String::new(),
        other => hex(&Envelope { body: Some(other.clone()), ..Envelope::default() }.encode_to_vec()),
    };
    let _ = writeln!(out, "\t{event}");
}

/// A bucket as read back: its start, how many rows, whether the rollup may hold a
/// redelivery in it, and [`AGGREGATED`]'s sums, least and greatest values.
#[derive(clickhouse::Row, Deserialize)]
struct BucketRow {
    bucket: i64,
    n: u64,
    redelivered: u8,
    sums: Vec<f64>,
    mins: Vec<f64>,
    maxes: Vec<f64>,
}

impl BucketRow {
    fn into_partial(self) -> anyhow::Result<(i64, Partial)> {
        Ok((self.bucket, Partial::from_totals(self.n, &self.sums, &self.mins, &self.maxes)?))
    }
}

/// A stored packet as read back, columns in the order of [`RECORD_COLUMNS`].
#[derive(clickhouse::Row, Deserialize)]
struct StoredRow {
    seq: u64,
    recorded_at: i64,
    received_at: i64,
    kind: String,
    lat: Option<f64>,
    lon: Option<f64>,
    altitude_m: Option<f64>,
    gps_fix: Option<i64>,
    hdop: Option<f64>,
    speed_kmh: Option<f64>,
    heading_deg: Option<f64>,
    battery_soc_pct: Option<f64>,
    battery_voltage_v: Option<f64>,
    battery_current_a: Option<f64>,
    battery_temp_c: Option<f64>,
    motor_power_w: Option<f64>,
    motor_temp_c: Option<f64>,
    assist_level: Option<i64>,
    cadence_rpm: Option<f64>,
    odometer_m: Option<i64>,
    event: String,
}

const RECORD_COLUMNS: &str = "seq, recorded_at, received_at, kind, lat, lon, altitude_m, gps_fix, hdop, speed_kmh, \
     heading_deg, battery_soc_pct, battery_voltage_v, battery_current_a, battery_temp_c, motor_power_w, motor_temp_c, \
     assist_level, cadence_rpm, odometer_m, event";

impl StoredRow {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // stored from the same types
    fn into_record(self) -> anyhow::Result<Record> {
        let body = if self.kind == "telemetry" {
            let f = |v: Option<f64>| v.context("a stored telemetry value is missing");
            let i = |v: Option<i64>| v.context("a stored telemetry value is missing");
            Body::Telemetry(Telemetry {
                lat: f(self.lat)?,
                lon: f(self.lon)?,
                altitude_m: f(self.altitude_m)? as f32,
                gps_fix: i(self.gps_fix)? as i32,
                hdop: f(self.hdop)? as f32,
                speed_kmh: f(self.speed_kmh)? as f32,
                heading_deg: f(self.heading_deg)? as f32,
                battery_soc_pct: f(self.battery_soc_pct)? as f32,
                battery_voltage_v: f(self.battery_voltage_v)? as f32,
                battery_current_a: f(self.battery_current_a)? as f32,
                battery_temp_c: f(self.battery_temp_c)? as f32,
                motor_power_w: f(self.motor_power_w)? as f32,
                motor_temp_c: f(self.motor_temp_c)? as f32,
                assist_level: i(self.assist_level)? as u32,
                cadence_rpm: f(self.cadence_rpm)? as f32,
                odometer_m: i(self.odometer_m)? as u64,
            })
        } else {
            Envelope::decode(unhex(&self.event)?.as_slice())
                .context("decoding a stored event")?
                .body
                .with_context(|| format!("a stored {} event has no body", self.kind))?
        };
        Ok(Record {
            seq: self.seq,
            recorded_at: from_millis(self.recorded_at)?,
            received_at: from_millis(self.received_at)?,
            body,
        })
    }
}

#[derive(clickhouse::Row, Deserialize)]
struct QuarantineRow {
    id: i64,
    received_at: i64,
    topic: String,
    device_id: String,
    reason: String,
    detail: String,
    payload: String,
    payload_len: u64,
}

#[async_trait::async_trait]
impl TelemetryStore for ClickHouseStore {
    async fn insert(&self, packets: &[Packet]) -> anyhow::Result<u64> {
        if packets.is_empty() {
            return Ok(0);
        }
        let mut body = String::with_capacity(packets.len() * 160);
        for chunk in packets.chunks(ROWS_BETWEEN_YIELDS) {
            for packet in chunk {
                row(&mut body, packet);
            }
            // A batch of thousands of rows takes milliseconds to write out: the tasks sharing
            // this worker (API requests among them) get their turns in between.
            tokio::task::yield_now().await;
        }
        let mut insert = self.client.insert_formatted_with("INSERT INTO telemetry FORMAT TabSeparated");
        insert.send(body.into()).await.context("sending packets to ClickHouse")?;
        insert.end().await.context("storing packets in ClickHouse")?;
        // A redelivery is written again; merges keep one, and every read counts it once. Which
        // of these were stored before is not asked: that would scan the whole table per batch.
        Ok(packets.len() as u64)
    }

    async fn quarantine(&self, entries: &[Quarantined]) -> anyhow::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut body = String::new();
        for entry in entries {
            // Topics and details are text from outside: sent as hex, never as TSV text.
            let _ = writeln!(
                body,
                "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                self.next_id(),
                millis(entry.received_at),
                hex(entry.topic.as_bytes()),
                hex(entry.device_id.as_deref().unwrap_or_default().as_bytes()),
                entry.reason.as_str(),
                hex(entry.detail.as_bytes()),
                hex(&entry.payload),
                entry.payload_len
            );
        }
        let mut insert = self.client.insert_formatted_with("INSERT INTO quarantine FORMAT TabSeparated");
        insert.send(body.into()).await.context("sending the quarantine to ClickHouse")?;
        insert.end().await.context("storing the quarantine in ClickHouse")?;
        let count: u64 = self.client.query("SELECT count() FROM quarantine").fetch_one().await?;
        if count > self.quarantine_cap * 2
            && let Some(oldest) = self.oldest_shown().await?
        {
            // A mutation: ClickHouse rewrites the parts in the background.
            self.client.query("ALTER TABLE quarantine DELETE WHERE id < ?").bind(oldest).execute().await?;
        }
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
        let (after_at, after_seq) = after.map_or((i64::MIN, 0), |c| (millis(c.recorded_at), c.seq));
        let rows: Vec<StoredRow> = self
            .client
            .query(&format!(
                "SELECT {RECORD_COLUMNS} FROM telemetry
                 WHERE device_id = ? AND recorded_at >= ? AND recorded_at < ?
                   AND (recorded_at > ? OR (recorded_at = ? AND seq > ?))
                 ORDER BY recorded_at, seq {ONCE_EACH} LIMIT ?"
            ))
            .bind(device_id.as_str())
            .bind(millis(range.from))
            .bind(millis(range.to))
            .bind(after_at)
            .bind(after_at)
            .bind(after_seq)
            .bind(limit + 1)
            .fetch_all()
            .await?;
        let records = rows.into_iter().map(StoredRow::into_record).collect::<anyhow::Result<Vec<_>>>()?;
        Ok(History::page(records, limit))
    }

    async fn downsampled(&self, device_id: &DeviceId, range: Range, every: Duration) -> anyhow::Result<Vec<Bucket>> {
        let width = bucket_millis(every)?;
        let (from, to) = (millis(range.from), millis(range.to));
        if from >= to {
            return Ok(Vec::new());
        }
        let mut parts = Vec::new();
        match whole_minutes(from, to) {
            Some((first, last)) if width % MINUTE_MS == 0 => {
                // The whole minutes from the rollup, where it holds no redelivery; the rest,
                // and the two ragged ends, from the rows. The two queries go at once.
                let ends = [(from, first), (last, to)];
                let ((rolled_up, redelivered), ends) = futures::try_join!(
                    self.rolled_up(device_id, (first, last), width),
                    self.aggregated(device_id, &ends, width, &[]),
                )?;
                parts.extend(rolled_up.into_iter().chain(ends));
                if !redelivered.is_empty() {
                    parts.extend(self.aggregated(device_id, &[(first, last)], width, &redelivered).await?);
                }
            }
            _ => parts.extend(self.aggregated(device_id, &[(from, to)], width, &[]).await?),
        }
        merged_buckets(parts)
    }

    async fn count(&self, device_id: Option<&DeviceId>) -> anyhow::Result<u64> {
        let count = match device_id {
            Some(device_id) => {
                self.client
                    .query(&format!(
                        "SELECT count() FROM (SELECT recorded_at, seq FROM telemetry WHERE device_id = ? {ONCE_EACH})"
                    ))
                    .bind(device_id.as_str())
                    .fetch_one()
                    .await?
            }
            None => self.client.query("SELECT count() FROM telemetry FINAL").fetch_one().await?,
        };
        Ok(count)
    }

    async fn quarantined(
        &self,
        filter: &QuarantineFilter,
        before: Option<i64>,
        limit: u64,
    ) -> anyhow::Result<Vec<QuarantineEntry>> {
        let oldest = self.oldest_shown().await?.unwrap_or(i64::MIN);
        let rows: Vec<QuarantineRow> = self
            .client
            .query(
                "SELECT id, received_at, topic, device_id, reason, detail, payload, payload_len FROM quarantine
                 WHERE id >= ? AND id < ? AND (? = '' OR device_id = ?) AND (? = '' OR reason = ?)
                 ORDER BY id DESC LIMIT ?",
            )
            .bind(oldest)
            .bind(before.unwrap_or(i64::MAX))
            .bind(hex(filter.device_id.as_deref().unwrap_or_default().as_bytes()))
            .bind(hex(filter.device_id.as_deref().unwrap_or_default().as_bytes()))
            .bind(filter.reason.map(Reason::as_str).unwrap_or_default())
            .bind(filter.reason.map(Reason::as_str).unwrap_or_default())
            .bind(limit.clamp(1, MAX_RECORDS))
            .fetch_all()
            .await?;
        rows.into_iter()
            .map(|row| {
                let text = |hexed: &str| -> anyhow::Result<String> {
                    String::from_utf8(unhex(hexed)?).context("stored quarantine text is not UTF-8")
                };
                let device_id = text(&row.device_id)?;
                Ok(QuarantineEntry {
                    id: row.id,
                    quarantined: Quarantined {
                        received_at: from_millis(row.received_at)?,
                        topic: text(&row.topic)?,
                        device_id: (!device_id.is_empty()).then_some(device_id),
                        reason: Reason::parse(&row.reason)
                            .with_context(|| format!("a stored quarantine reason `{}`", row.reason))?,
                        detail: text(&row.detail)?,
                        payload: unhex(&row.payload)?,
                        payload_len: usize::try_from(row.payload_len).unwrap_or(usize::MAX),
                    },
                })
            })
            .collect()
    }

    async fn drop_days_before(&self, day: NaiveDate) -> anyhow::Result<Vec<NaiveDate>> {
        let partitions: Vec<String> = self
            .client
            .query(
                "SELECT DISTINCT partition FROM system.parts
                 WHERE database = currentDatabase() AND table = 'telemetry' AND active ORDER BY partition",
            )
            .fetch_all()
            .await?;
        let mut dropped = Vec::new();
        for partition in partitions {
            let Ok(partition_day) = NaiveDate::parse_from_str(partition.trim_matches('\''), "%Y-%m-%d") else {
                continue;
            };
            if partition_day < day {
                // The day is a parsed date: safe to put in the statement. The rollup first: a
                // day whose rows are gone is not downsampled from a rollup left behind.
                for table in ["telemetry_minutes", "telemetry"] {
                    self.client
                        .query(&format!("ALTER TABLE {table} DROP PARTITION '{partition_day}'"))
                        .execute()
                        .await
                        .with_context(|| format!("dropping the day {partition_day} from {table}"))?;
                }
                dropped.push(partition_day);
            }
        }
        Ok(dropped)
    }

    async fn ping(&self) -> anyhow::Result<()> {
        self.client.query("SELECT 1").execute().await?;
        Ok(())
    }
}

/// A throwaway clickhouse-server for tests (Debian's 18.16, which `cargo xtask test` installs).
pub mod testing {
    use std::{
        io::{Read, Write},
        net::TcpStream,
        path::Path,
        process::{Child, Command, Stdio},
        time::{Duration, Instant},
    };

    use super::ClickHouseStore;

    const CLICKHOUSE: &str = "/usr/sbin/clickhouse-server";

    /// A throwaway clickhouse-server on loopback, its data in a temporary directory.
    pub struct ClickHouseServer {
        child: Child,
        pub url: String,
        _dir: tempfile::TempDir,
    }

    impl ClickHouseServer {
        /// Starts it; panics (failing the test) if it does not answer within two minutes.
        pub fn start() -> Self {
            let dir = tempfile::tempdir().expect("tempdir");
            let d = dir.path().display().to_string();
            let (http, tcp) = (fleetplane_common::ports::free_port(), fleetplane_common::ports::free_port());
            std::fs::write(
                dir.path().join("users.xml"),
                "<yandex><profiles><default></default></profiles>\
                 <users><default><password></password><networks><ip>127.0.0.1</ip></networks>\
                 <profile>default</profile><quota>default</quota></default></users>\
                 <quotas><default></default></quotas></yandex>",
            )
            .expect("users.xml");
            std::fs::write(
                dir.path().join("config.xml"),
                format!(
                    "<yandex><logger><level>warning</level><log>{d}/server.log</log><errorlog>{d}/error.log</errorlog>\
                     <console>0</console></logger><listen_host>127.0.0.1</listen_host>\
                     <http_port>{http}</http_port><tcp_port>{tcp}</tcp_port>\
                     <path>{d}/data/</path><tmp_path>{d}/tmp/</tmp_path><user_files_path>{d}/user_files/</user_files_path>\
                     <format_schema_path>{d}/format_schemas/</format_schema_path><users_config>{d}/users.xml</users_config>\
                     <mark_cache_size>268435456</mark_cache_size><default_profile>default</default_profile>\
                     <default_database>default</default_database></yandex>"
                ),
            )
            .expect("config.xml");
            let child = Command::new(CLICKHOUSE)
                .arg(format!("--config-file={d}/config.xml"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("clickhouse-server starts (cargo xtask test installs it)");
            let errors = dir.path().join("error.log");
            let server = Self { child, url: format!("http://127.0.0.1:{http}"), _dir: dir };
            server.wait_ready(http, &errors);
            server
        }

        fn wait_ready(&self, port: u16, errors: &Path) {
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                let ping = TcpStream::connect(("127.0.0.1", port)).and_then(|mut stream| {
                    stream.write_all(b"GET /ping HTTP/1.0\r\n\r\n")?;
                    let mut answer = String::new();
                    stream.read_to_string(&mut answer)?;
                    Ok(answer)
                });
                if ping.is_ok_and(|answer| answer.ends_with("Ok.\n")) {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "clickhouse-server did not answer: {}",
                    std::fs::read_to_string(errors).unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }

        pub async fn store(&self, database: &str) -> ClickHouseStore {
            ClickHouseStore::open(&self.url, database).await.expect("store")
        }
    }

    impl Drop for ClickHouseServer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;
    use crate::store::tests as shared;

    /// One server for the store tests every store passes, each in a database of its own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs clickhouse-server: run `cargo xtask test`"]
    async fn the_store_tests_pass_on_clickhouse() {
        let server = testing::ClickHouseServer::start();
        shared::a_packet_delivered_again_is_stored_once(&server.store("once").await).await;
        shared::history_orders_late_packets_by_recorded_at_across_days(&server.store("late").await).await;
        shared::downsampled_history_matches_the_raw_rows(&server.store("downsampled").await).await;
        shared::downsampled_history_matches_the_raw_rows_at_any_width_and_edge(&server.store("edges").await).await;
        shared::the_quarantine_keeps_the_newest_up_to_its_cap(
            &server.store("quarantine").await.with_quarantine_cap(20),
            20,
        )
        .await;
        shared::retention_drops_whole_days(&server.store("retention").await).await;
        // Reopening finds what was stored, and tables are not created twice.
        let again = server.store("once").await;
        assert_eq!(again.count(None).await.expect("count"), 50);
        whole_minutes_are_answered_from_the_rollup(&server.store("rollup").await).await;
        the_bits_set_are_counted(&server.store("rollup").await).await;
        a_database_from_before_the_rollup_is_rolled_up_when_opened(&server).await;
    }

    async fn whole_minutes_are_answered_from_the_rollup(store: &ClickHouseStore) {
        let bike = shared::device(7);
        let start = shared::noon() - TimeDelta::minutes(30);
        let packets = shared::ride(&bike, 360, start);
        store.insert(&packets).await.expect("insert");
        // A redelivery in one minute: its rollup counts it twice, and that minute alone is
        // read from the rows.
        store.insert(&packets[100..101]).await.expect("redelivered");
        let window = Range { from: start, to: start + TimeDelta::minutes(30) };
        let every = Duration::from_secs(60);
        let buckets = store.downsampled(&bike, window, every).await.expect("downsampled");
        assert_eq!(buckets.len(), 30);
        assert_eq!(buckets.iter().map(|b| b.count).sum::<u64>(), 360);
        shared::assert_matches_raw(store, &bike, window, every, &buckets).await;
        let (masks, distinct) = seen_in_minute();
        let doubled: Vec<i64> = store
            .client
            .query(&format!(
                "SELECT minute FROM (SELECT minute, countMerge(n) AS c {masks} FROM telemetry_minutes GROUP BY minute)
                 WHERE c > {distinct}"
            ))
            .fetch_all()
            .await
            .expect("rollup");
        let redelivered = millis(packets[100].recorded_at);
        assert_eq!(doubled, [redelivered - redelivered.rem_euclid(MINUTE_MS)], "the rollup saw the redelivery");

        // With the rows set aside, the minutes without a redelivery are still answered: from
        // the rollup. (The one with it is not: it is read from the rows, now gone.)
        let day = shared::noon().date_naive();
        store.client.query(&format!("ALTER TABLE telemetry DETACH PARTITION '{day}'")).execute().await.expect("detach");
        assert_eq!(store.count(Some(&bike)).await.expect("count"), 0);
        let from_rollup = store.downsampled(&bike, window, every).await.expect("downsampled");
        let expected: Vec<&Bucket> = buckets.iter().filter(|b| millis(b.start) != doubled[0]).collect();
        assert_eq!(from_rollup.iter().collect::<Vec<_>>(), expected);
        store.client.query(&format!("ALTER TABLE telemetry ATTACH PARTITION '{day}'")).execute().await.expect("attach");
        assert_eq!(store.count(Some(&bike)).await.expect("count"), 360);
    }

    async fn the_bits_set_are_counted(store: &ClickHouseStore) {
        let values = [0_u64, 1, 7, 1 << 63, u64::MAX, 12_345_678_901_234_567, 0x5555_5555_5555_5555];
        for value in values {
            let counted: u64 = store
                .client
                .query(&format!("SELECT {}", bits_set(&format!("toUInt64({value})"))))
                .fetch_one()
                .await
                .expect("bits set");
            assert_eq!(counted, u64::from(value.count_ones()), "{value}");
        }
    }

    async fn a_database_from_before_the_rollup_is_rolled_up_when_opened(server: &testing::ClickHouseServer) {
        let store = server.store("before").await;
        let bike = shared::device(8);
        let start = shared::noon() + TimeDelta::seconds(13);
        let packets = shared::ride(&bike, 100, start);
        store.insert(&packets).await.expect("insert");
        store.insert(&packets[..10]).await.expect("redelivered");
        for table in ["telemetry_minutes_view", "telemetry_minutes", "rollup_done"] {
            store.client.query(&format!("DROP TABLE {table}")).execute().await.expect("drop");
        }
        let store = server.store("before").await;
        let rolled_up: u64 =
            store.client.query("SELECT countMerge(n) FROM telemetry_minutes").fetch_one().await.expect("rollup");
        assert_eq!(rolled_up, 100, "what was stored, once each");
        let window = Range { from: start - TimeDelta::minutes(1), to: start + TimeDelta::minutes(10) };
        for every in [60, 120].map(Duration::from_secs) {
            let buckets = store.downsampled(&bike, window, every).await.expect("downsampled");
            shared::assert_matches_raw(&store, &bike, window, every, &buckets).await;
        }
        // Opened again, it is not rolled up twice.
        let store = server.store("before").await;
        let rolled_up: u64 =
            store.client.query("SELECT countMerge(n) FROM telemetry_minutes").fetch_one().await.expect("rollup");
        assert_eq!(rolled_up, 100);
    }

    #[tokio::test]
    async fn a_database_name_is_checked_before_it_is_used() {
        let e = ClickHouseStore::open("http://127.0.0.1:9", "x; DROP TABLE y").await.err().expect("refused");
        assert!(e.to_string().contains("database name"), "{e}");
    }
}
