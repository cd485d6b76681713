//! The fleet benchmark. `cargo xtask bench --only fleet` runs it once per store and writes what
//! it prints into BENCHMARKS.md; by hand:
//!
//! ```text
//! cargo bench -p fleet-telemetry --bench fleet -- --store sqlite|clickhouse [--bikes 10000] [--seconds 60]
//! ```
//!
//! The system under test is what production runs: mosquitto on loopback (client certificates,
//! the CRL and the per-bike ACL, from the tests' support) and the `fleet-telemetry serve`
//! binary in its own process, on SQLite or a throwaway ClickHouse. This program is the fleet:
//! every bike its own rumqttc client over mutual TLS with its own certificate, all in one
//! tokio runtime, sharing the two cores with the broker and the service. Phases, in order:
//!
//! - one bike's day of history is seeded (one packet a second for 24 h, as batches of 500);
//! - `--bikes` bikes connect (in steps, each step waiting for its connections);
//! - steady: each bike sends one telemetry packet a second, for a warm-up and then `--seconds`;
//! - peak, single packets: `--single-rate` telemetry messages a second, round-robin over the
//!   bikes, for a warm-up and then `--seconds` measured;
//! - peak, batches: `--peak-rate` packets a second, as `Batch` messages of `--batch-packets` (an
//!   offline buffer) on `bikes/{id}/batch`;
//! - at the end, every bike's stored count (the API's `/telemetry/count`) is compared with the
//!   acknowledgements it got from the broker, over all phases.
//!
//! During every phase ~100 bikes' live streams (`GET /api/v1/bikes/{id}/live`, whose events go
//! out right after the batch commit) are read: publish → visible is the time from handing a
//! packet to the bike's client to its event arriving, per `(bike, seq)`. During the peaks
//! readers send `GET /api/v1/bikes/{id}` (`--bike-rate`, 2,000 a second) and ask for a bike-day
//! of history at 1 minute (`--day-rate`, 10 a second), each sent when due, answered or not the
//! ones before it.
//! Stored throughput is `fleet_ingest_stored_total` over the measured window. Resident memory
//! and CPU time come from `/proc`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::{
    collections::HashMap,
    fmt::Write as _,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use chrono::{SecondsFormat, TimeDelta, Utc};
use fleet_proto::{Envelope, Message, SCHEMA_VERSION, Topic, envelope::Body, topic::Kind};
use fleet_telemetry::config::IngestDefaults;
use futures::StreamExt;
use rumqttc::QoS;
use support::{BikeClient, BikeIdentity, BrokerLimits, Fleet, service::Service};

/// The issue's targets.
const VISIBLE_P99_MS: f64 = 1_000.0;
const PEAK_PACKETS_PER_SEC: f64 = 25_000.0;
const BIKE_P99_MS: f64 = 5.0;
const DAY_MS: f64 = 50.0;
/// A day of history, one packet a second.
const DAY_PACKETS: u64 = 86_400;
/// The seeding's batches: rumqttc's clients send at most 10 KiB a message by default.
const SEED_BATCH: u64 = 50;
/// Bikes connecting at once: the broker does the TLS handshakes one after the other.
const CONNECT_STEP: usize = 250;
/// The peak's warm-up before its measured window.
const WARM_UP: Duration = Duration::from_secs(5);
/// How long a phase's acknowledgements and commits may take to catch up before the run fails.
const DRAIN_DEADLINE: Duration = Duration::from_secs(600);
/// `/proc/<pid>/stat` counts CPU time in USER_HZ ticks, 100 a second on Linux.
const TICKS_PER_SEC: f64 = 100.0;

struct Options {
    clickhouse: bool,
    bikes: usize,
    seconds: u64,
    peak_rate: u64,
    /// The single-packet peak's offered messages a second: 30,000 a second through mosquitto
    /// builds a backlog on two cores that takes minutes to drain, so it is offered less.
    single_rate: u64,
    batch_packets: u64,
    sample: usize,
    /// `GET /api/v1/bikes/{id}` a second during the peaks: each of 10,000 riders' apps asking
    /// for its bike every 5 s.
    bike_rate: u64,
    /// Bike-days of history a second during the peaks. Either rate 0: no such reads.
    day_rate: u64,
    /// The ingest's inflight window (`FLEET_INFLIGHT`); unset, the service's default for the
    /// store (1,000 on SQLite, 10,000 on ClickHouse).
    inflight: Option<u32>,
    /// The ingest's batch size in messages (`FLEET_BATCH_SIZE`); unset, the service's
    /// default (2,000).
    batch_size: Option<u64>,
}

impl Options {
    fn parse() -> Result<Self> {
        let mut options = Self {
            clickhouse: false,
            bikes: 10_000,
            seconds: 60,
            peak_rate: 30_000,
            single_rate: 15_000,
            batch_packets: 25,
            sample: 100,
            bike_rate: 2_000,
            day_rate: 10,
            inflight: None,
            batch_size: None,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut number = || -> Result<u64> {
                args.next().with_context(|| format!("{arg} needs a number"))?.parse().with_context(|| arg.clone())
            };
            match arg.as_str() {
                "--bikes" => options.bikes = usize::try_from(number()?)?,
                "--seconds" => options.seconds = number()?,
                "--peak-rate" => options.peak_rate = number()?,
                "--single-rate" => options.single_rate = number()?,
                "--batch-packets" => options.batch_packets = number()?,
                "--sample" => options.sample = usize::try_from(number()?)?,
                "--bike-rate" => options.bike_rate = number()?,
                "--day-rate" => options.day_rate = number()?,
                "--inflight" => options.inflight = Some(u32::try_from(number()?)?),
                "--batch-size" => options.batch_size = Some(number()?),
                "--store" => match args.next().as_deref() {
                    Some("sqlite") => options.clickhouse = false,
                    Some("clickhouse") => options.clickhouse = true,
                    _ => bail!("--store takes `sqlite` or `clickhouse`"),
                },
                // `cargo bench` passes this to every bench target.
                "--bench" => {}
                other => bail!(
                    "unexpected argument `{other}` (options: --store sqlite|clickhouse, --bikes N, --seconds N, \
                     --peak-rate N, --single-rate N, --batch-packets N, --sample N, --bike-rate N, --day-rate N, \
                     --inflight N, --batch-size N)"
                ),
            }
        }
        ensure!(options.bikes > 0 && options.seconds > 0 && options.batch_packets > 0, "nothing to measure");
        options.sample = options.sample.clamp(1, options.bikes);
        Ok(options)
    }
}

fn main() -> Result<()> {
    let options = Options::parse()?;
    raise_fd_limit()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let report = runtime.block_on(run(&options))?;
    println!("{report}");
    // The bikes' tasks are left to the runtime's shutdown; nothing waits on them.
    runtime.shutdown_timeout(Duration::from_secs(5));
    Ok(())
}

/// Ten thousand TLS connections need more descriptors than the usual soft limit of 1024; the
/// broker, started from here, inherits the raised limit.
fn raise_fd_limit() -> Result<()> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = limit.maximum;
    setrlimit(Resource::Nofile, limit).context("raising the open-file limit")?;
    eprintln!("open files: up to {:?}", limit.current);
    Ok(())
}

/// One bike of the generator: its connection and the next seq it sends.
struct Bike {
    client: BikeClient,
    telemetry_topic: String,
    batch_topic: String,
    next_seq: u64,
    /// Messages its client took; the broker acknowledges each.
    messages: u64,
    /// Its index among the sampled bikes, whose publish instants are kept.
    sampled: Option<usize>,
}

/// When each sampled packet was handed to its bike's client, and the latencies seen so far.
#[derive(Default)]
struct Visibility {
    /// `(sampled bike, seq)` → (the phase, publish instant).
    published: Mutex<HashMap<(usize, u64), (usize, Instant)>>,
    /// (phase, publish → visible in ms).
    seen: Mutex<Vec<(usize, f64)>>,
}

impl Visibility {
    fn publish(&self, bike: usize, seq: u64, phase: usize) {
        self.published.lock().expect("lock").insert((bike, seq), (phase, Instant::now()));
    }

    fn visible(&self, bike: usize, seq: u64) {
        let now = Instant::now();
        if let Some((phase, at)) = self.published.lock().expect("lock").remove(&(bike, seq)) {
            self.seen.lock().expect("lock").push((phase, (now - at).as_secs_f64() * 1000.0));
        }
    }

    fn of(&self, phase: usize) -> Vec<f64> {
        self.seen.lock().expect("lock").iter().filter(|(p, _)| *p == phase).map(|(_, ms)| *ms).collect()
    }
}

/// The processes whose memory and CPU time are read.
#[derive(Clone, Copy)]
struct Pids {
    service: u32,
    broker: u32,
}

/// CPU time, in seconds, of the service, the broker, this generator and the whole machine.
#[derive(Clone, Copy, Default)]
struct Cpu {
    service: f64,
    broker: f64,
    generator: f64,
    machine: f64,
    at: Option<Instant>,
}

impl Cpu {
    fn read(pids: Pids) -> Self {
        let process = |pid: String| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    // The fields after the command name (which may hold spaces) in parentheses.
                    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
                    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
                    Some((ticks(11)? + ticks(12)?) / TICKS_PER_SEC)
                })
                .unwrap_or(f64::NAN)
        };
        let machine = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|stat| {
                let values: Vec<f64> =
                    stat.lines().next()?.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
                // user nice system idle iowait irq softirq steal …: busy is all but idle and iowait.
                let idle = values.get(3)? + values.get(4)?;
                Some((values.iter().take(8).sum::<f64>() - idle) / TICKS_PER_SEC)
            })
            .unwrap_or(f64::NAN);
        Self {
            service: process(pids.service.to_string()),
            broker: process(pids.broker.to_string()),
            generator: process("self".into()),
            machine,
            at: Some(Instant::now()),
        }
    }

    /// Cores used by each between `earlier` and `self`: service, broker, generator, the rest.
    fn cores_since(&self, earlier: &Cpu) -> [f64; 4] {
        let wall = match (earlier.at, self.at) {
            (Some(a), Some(b)) => (b - a).as_secs_f64(),
            _ => f64::NAN,
        };
        let service = (self.service - earlier.service) / wall;
        let broker = (self.broker - earlier.broker) / wall;
        let generator = (self.generator - earlier.generator) / wall;
        let machine = (self.machine - earlier.machine) / wall;
        [service, broker, generator, (machine - service - broker - generator).max(0.0)]
    }
}

fn rss_kib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status.lines().find_map(|l| l.strip_prefix("VmRSS:")?.split_whitespace().next()?.parse::<f64>().ok())
        })
        .unwrap_or(f64::NAN)
}

/// What one sending phase did.
struct Phase {
    name: &'static str,
    /// Messages and packets handed to the bikes' clients in the measured window.
    messages: u64,
    packets: u64,
    /// Messages a bike's client could not take (its queue full): not sent, not counted.
    refused: u64,
    seconds: f64,
    /// Packets the service stored in the measured window.
    stored: u64,
    cores: [f64; 4],
    visible: Vec<f64>,
    bike_reads: Vec<f64>,
    day_reads: Vec<f64>,
    /// How long after the phase its last acknowledgement and commit came.
    drained_in: Duration,
}

async fn run(options: &Options) -> Result<String> {
    let label = if options.clickhouse { "ClickHouse" } else { "SQLite" };
    eprintln!("==> {label}: {} bikes, {} s per phase", options.bikes, options.seconds);
    // The ingest's inflight window is the service's; the broker is let hold as many for it,
    // and queues without a limit, so that nothing acknowledged to a bike is dropped.
    let defaults = if options.clickhouse { IngestDefaults::CLICKHOUSE } else { IngestDefaults::SQLITE };
    let inflight = options.inflight.unwrap_or(u32::try_from(defaults.inflight)?);
    let fleet = Fleet::start_with(BrokerLimits { max_inflight: inflight, max_queued: 0 }).await;
    let started = Instant::now();
    let identities = enroll(&fleet, options.bikes + 1).await;
    let enrolled_in = started.elapsed();
    eprintln!("    {} bikes registered with certificates in {:.1} s", identities.len(), enrolled_in.as_secs_f64());

    let clickhouse = options.clickhouse.then(fleet_telemetry::store::clickhouse::testing::ClickHouseServer::start);
    let store = clickhouse.as_ref().map(|server| format!("{}/fleet", server.url));
    let batch_size = options.batch_size.unwrap_or(2_000);
    let service = start_service(&fleet, store.as_deref(), inflight, batch_size).await;
    let token = service.create_token("bench", "admin");
    let pids = Pids { service: service.pid(), broker: fleet.broker.pid() };
    let api = Api { base: service.url(""), token: token.clone(), http: reqwest::Client::new() };

    let (history, identities) = identities.split_last().context("no bikes")?;
    let seed_started = Instant::now();
    seed_history(&fleet, &api, history).await?;
    let seeded_in = seed_started.elapsed();
    eprintln!("    one bike-day of history ({DAY_PACKETS} packets) stored in {:.1} s", seeded_in.as_secs_f64());

    let rss_before = (rss_kib(pids.service), rss_kib(pids.broker));
    let connect_started = Instant::now();
    let mut bikes = connect(&fleet, identities, options.sample).await?;
    let connected_in = connect_started.elapsed();
    let rss_connected = (rss_kib(pids.service), rss_kib(pids.broker));
    eprintln!("    {} bikes connected in {:.1} s", bikes.len(), connected_in.as_secs_f64());

    let visibility = Arc::new(Visibility::default());
    let streams = follow_live(&api, &bikes, &visibility).await?;

    let mut phases = Vec::new();
    let n = bikes.len() as u64;
    phases.push(
        send(
            "steady",
            0,
            &mut bikes,
            &api,
            &visibility,
            pids,
            None,
            Rate { messages_per_sec: n, packets: 1 },
            WARM_UP,
            options,
        )
        .await?,
    );
    let rss_sending = (rss_kib(pids.service), rss_kib(pids.broker));
    let readers = Readers {
        day_device: history.bike.device_id.as_str().to_owned(),
        bike_rate: options.bike_rate,
        day_rate: options.day_rate,
    };
    phases.push(
        send(
            "peak, single packets",
            1,
            &mut bikes,
            &api,
            &visibility,
            pids,
            Some(&readers),
            Rate { messages_per_sec: options.single_rate, packets: 1 },
            WARM_UP,
            options,
        )
        .await?,
    );
    phases.push(
        send(
            "peak, batches",
            2,
            &mut bikes,
            &api,
            &visibility,
            pids,
            Some(&readers),
            Rate {
                messages_per_sec: options.peak_rate.div_ceil(options.batch_packets),
                packets: options.batch_packets,
            },
            WARM_UP,
            options,
        )
        .await?,
    );
    streams.iter().for_each(tokio::task::JoinHandle::abort);

    eprintln!("    checking every bike's stored count against its acknowledgements");
    let check = check_counts(&api, &bikes).await?;
    let metrics = api.metrics().await?;
    let reconnects = bikes.iter().filter(|b| b.client.refused().is_some()).count();
    drop(bikes);
    drop(service);
    drop(clickhouse);

    let mut out = String::new();
    writeln!(out, "### {label}\n")?;
    let rate = |count: u64, seconds: f64| count as f64 / seconds;
    let steady = &phases[0];
    let per_bike = |(before, after): (f64, f64)| (after - before) / n as f64;
    let visible = percentiles(&steady.visible);
    writeln!(out, "| figure | measured | target | met |")?;
    writeln!(out, "|---|---|---|---|")?;
    writeln!(
        out,
        "| bikes connected over mutual TLS, each its own certificate | {} (connected in {:.0} s, {} reconnected) | \
         10,000 | {} |",
        thousands(n),
        connected_in.as_secs_f64(),
        reconnects,
        met(n >= 10_000)
    )?;
    writeln!(
        out,
        "| steady: one packet a second per bike, {:.0} s after a 5 s warm-up | {} packets sent, {:.0} stored/s | {} packets/s | {} |",
        steady.seconds,
        thousands(steady.packets),
        rate(steady.stored, steady.seconds),
        thousands(n),
        met(rate(steady.stored, steady.seconds) >= 0.99 * n as f64)
    )?;
    writeln!(
        out,
        "| lost / duplicated, every phase (per bike: stored count vs the broker's acknowledgements) | {} lost, \
         {} duplicated, over {} bikes and {} acknowledged packets ({} redeliveries stored once) | 0 / 0 | {} |",
        thousands(check.lost),
        thousands(check.duplicated),
        thousands(n),
        thousands(check.acknowledged),
        thousands(metric(&metrics, "fleet_ingest_duplicates_total")),
        met(check.lost == 0 && check.duplicated == 0)
    )?;
    writeln!(
        out,
        "| steady: publish → queryable (live event after commit), {} samples from {} bikes | p50 {:.0} ms, \
         p99 {:.0} ms, max {:.0} ms | p99 ≤ 1 s | {} |",
        thousands(steady.visible.len() as u64),
        options.sample,
        visible.p50,
        visible.p99,
        visible.max,
        met(visible.p99 <= VISIBLE_P99_MS)
    )?;
    writeln!(
        out,
        "| service RSS per connected bike | {:.0} MiB before, {:.0} MiB all connected, {:.0} MiB after the steady \
         phase: {:.2} KiB per bike | stated | |",
        rss_before.0 / 1024.0,
        rss_connected.0 / 1024.0,
        rss_sending.0 / 1024.0,
        per_bike((rss_before.0, rss_sending.0))
    )?;
    writeln!(
        out,
        "| mosquitto RSS per connected bike | {:.0} MiB before, {:.0} MiB all connected, {:.0} MiB after the \
         steady phase: {:.1} KiB per bike | stated | |",
        rss_before.1 / 1024.0,
        rss_connected.1 / 1024.0,
        rss_sending.1 / 1024.0,
        per_bike((rss_before.1, rss_sending.1))
    )?;
    for phase in &phases[1..] {
        let stored_rate = rate(phase.stored, phase.seconds);
        let messages_rate = rate(phase.messages, phase.seconds);
        let packets_per_message = phase.packets / phase.messages.max(1);
        writeln!(
            out,
            "| {}: stored and acknowledged after commit, {:.0} s after a {} s warm-up (offered {} packets/s as {} \
             msgs/s of {} packet{}) | **{} packets/s** ({} msgs/s stored); sent {} packets/s; {} refused by full client \
             queues; drained {:.1} s after | ≥ 25,000 packets/s | {} |",
            phase.name,
            phase.seconds,
            WARM_UP.as_secs(),
            thousands(if packets_per_message == 1 { options.single_rate } else { options.peak_rate }),
            thousands(messages_rate.round() as u64),
            packets_per_message,
            if packets_per_message == 1 { "" } else { "s" },
            thousands(stored_rate.round() as u64),
            thousands((stored_rate / packets_per_message as f64).round() as u64),
            thousands(rate(phase.packets, phase.seconds).round() as u64),
            thousands(phase.refused),
            phase.drained_in.as_secs_f64(),
            met(stored_rate >= PEAK_PACKETS_PER_SEC)
        )?;
        let visible = percentiles(&phase.visible);
        writeln!(
            out,
            "| {}: publish → queryable, {} samples | p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms | (p99 ≤ 1 s in the \
             steady fleet) | |",
            phase.name,
            thousands(phase.visible.len() as u64),
            visible.p50,
            visible.p99,
            visible.max
        )?;
        let reads = percentiles(&phase.bike_reads);
        writeln!(
            out,
            "| {}: `GET /api/v1/bikes/{{id}}`, {} a second, {} requests | p50 {:.2} ms, p99 {:.2} ms | p99 ≤ 5 ms | {} \
             |",
            phase.name,
            thousands(options.bike_rate),
            thousands(phase.bike_reads.len() as u64),
            reads.p50,
            reads.p99,
            met(reads.p99 <= BIKE_P99_MS)
        )?;
        let day = percentiles(&phase.day_reads);
        writeln!(
            out,
            "| {}: a bike-day ({} packets) downsampled to 1 min, {} a second, {} requests | p50 {:.1} ms, p99 {:.1} \
             ms | ≤ 50 ms | {} |",
            phase.name,
            thousands(DAY_PACKETS),
            thousands(options.day_rate),
            thousands(phase.day_reads.len() as u64),
            day.p50,
            day.p99,
            met(day.p99 <= DAY_MS)
        )?;
    }
    writeln!(
        out,
        "\nCPU in cores (of {}) during each phase's measured window — service / mosquitto / this generator (the \
         bikes) / the rest (ClickHouse, the kernel's share not charged to a process, other work):\n",
        std::thread::available_parallelism().map_or(0, usize::from)
    )?;
    for phase in &phases {
        let [service, broker, generator, rest] = phase.cores;
        writeln!(
            out,
            "- {}: {service:.2} / {broker:.2} / {generator:.2} / {rest:.2} ({} msgs/s sent)",
            phase.name,
            thousands(rate(phase.messages, phase.seconds).round() as u64)
        )?;
    }
    writeln!(
        out,
        "\nSetup: {} bikes registered in-process with generated keys in {:.0} s; the day of history stored in {:.0} s; \
         the ingest's inflight window {} (`FLEET_INFLIGHT`, mosquitto's `max_inflight_messages` the same), batches \
         of up to {} messages (`FLEET_BATCH_SIZE`) or {} ms (`FLEET_BATCH_LINGER_MS`, the service's default for the store).",
        thousands(n + 1),
        enrolled_in.as_secs_f64(),
        seeded_in.as_secs_f64(),
        inflight,
        thousands(batch_size),
        defaults.linger_ms,
    )?;
    Ok(out)
}

/// Registers `count` bikes with their certificates, a few at a time.
async fn enroll(fleet: &Fleet, count: usize) -> Vec<BikeIdentity> {
    let mut identities = Vec::with_capacity(count);
    let serials: Vec<String> = (0..count).map(|i| format!("BENCH-{i:06}")).collect();
    for chunk in serials.chunks(16) {
        identities.extend(futures::future::join_all(chunk.iter().map(|serial| fleet.enroll(serial))).await);
    }
    identities
}

async fn start_service(fleet: &Fleet, store: Option<&str>, inflight: u32, batch_size: u64) -> Service {
    let broker = format!("mqtts://127.0.0.1:{}", fleet.broker.ingest_port);
    let crl = fleet.dir.path().join("mosquitto").join("crl.pem").display().to_string();
    let reload = format!("pid:{}", fleet.broker.pid());
    let (inflight, batch_size) = (inflight.to_string(), batch_size.to_string());
    let mut env = vec![
        ("FLEET_BROKER", broker.as_str()),
        ("FLEET_DATABASE_URL", fleet.database_url.as_str()),
        ("FLEET_CRL_PATH", crl.as_str()),
        ("FLEET_CRL_RELOAD", reload.as_str()),
        ("FLEET_INFLIGHT", inflight.as_str()),
        ("FLEET_BATCH_SIZE", batch_size.as_str()),
    ];
    env.extend(store.map(|url| ("FLEET_STORE", url)));
    Service::start(fleet.dir.path(), &env).await
}

/// The service's API with the benchmark's token.
#[derive(Clone)]
struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    async fn get(&self, path: &str) -> Result<reqwest::Response> {
        let response = self.http.get(format!("{}{path}", self.base)).bearer_auth(&self.token).send().await?;
        ensure!(response.status().is_success(), "GET {path}: {}", response.status());
        Ok(response)
    }

    async fn count(&self, device: &str) -> Result<u64> {
        let body: serde_json::Value =
            self.get(&format!("/api/v1/bikes/{device}/telemetry/count")).await?.json().await?;
        body["count"].as_u64().with_context(|| format!("no count in {body}"))
    }

    async fn metrics(&self) -> Result<String> {
        Ok(self.get("/metrics").await?.text().await?)
    }

    async fn stored(&self) -> Result<u64> {
        Ok(metric(&self.metrics().await?, "fleet_ingest_stored_total"))
    }
}

fn metric(metrics: &str, name: &str) -> u64 {
    metrics.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or(0)
}

fn envelope(device: &str, seq: u64, recorded_at: chrono::DateTime<Utc>) -> Envelope {
    Envelope {
        schema_version: SCHEMA_VERSION,
        device_id: device.to_owned(),
        seq,
        recorded_at: support::now_ts(recorded_at),
        body: Some(Body::Telemetry(support::telemetry(seq))),
    }
}

/// One packet a second over the past day for `bike`, as batches of [`SEED_BATCH`]; returns
/// once the service has stored them all.
async fn seed_history(fleet: &Fleet, api: &Api, bike: &BikeIdentity) -> Result<()> {
    let client = BikeClient::connect(fleet, bike);
    let device = bike.bike.device_id.as_str();
    let topic = Topic::new(bike.bike.device_id.clone(), Kind::Batch).to_string();
    let start = Utc::now() - TimeDelta::days(1);
    let mut sent = 0;
    for first in (1..=DAY_PACKETS).step_by(usize::try_from(SEED_BATCH)?) {
        let packets = (first..(first + SEED_BATCH).min(DAY_PACKETS + 1))
            .map(|seq| Ok(envelope(device, seq, start + TimeDelta::seconds(i64::try_from(seq)?))))
            .collect::<Result<Vec<_>>>()?;
        client.publish_on(&topic, support::batch(packets)).await;
        sent += 1;
    }
    wait_until("the seeded history's acknowledgements", || async {
        ensure!(client.acked() > 0 || client.refused().is_none(), "the seeding bike failed: {:?}", client.refused());
        Ok(client.acked() >= sent)
    })
    .await?;
    wait_until("the seeded history to be stored", || async { Ok(api.count(device).await? >= DAY_PACKETS) }).await
}

async fn wait_until<F, Fut>(what: &str, mut done: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + DRAIN_DEADLINE;
    while !done().await? {
        ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Connects the bikes [`CONNECT_STEP`] at a time, each step waiting for its connections.
async fn connect(fleet: &Fleet, identities: &[BikeIdentity], sample: usize) -> Result<Vec<Bike>> {
    let every = (identities.len() / sample).max(1);
    let mut bikes: Vec<Bike> = Vec::with_capacity(identities.len());
    for (step, chunk) in identities.chunks(CONNECT_STEP).enumerate() {
        for (j, identity) in chunk.iter().enumerate() {
            let i = step * CONNECT_STEP + j;
            let device = identity.bike.device_id.clone();
            bikes.push(Bike {
                client: BikeClient::connect(fleet, identity),
                telemetry_topic: Topic::new(device.clone(), Kind::Telemetry).to_string(),
                batch_topic: Topic::new(device, Kind::Batch).to_string(),
                next_seq: 1,
                messages: 0,
                sampled: (i.is_multiple_of(every) && i / every < sample).then_some(i / every),
            });
        }
        let from = step * CONNECT_STEP;
        let deadline = Instant::now() + Duration::from_secs(120);
        while !bikes[from..].iter().all(|b| b.client.is_connected()) {
            if Instant::now() > deadline {
                let failed = bikes[from..].iter().find(|b| !b.client.is_connected());
                bail!("bikes did not connect: {:?}", failed.and_then(|b| b.client.refused()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if step % 8 == 7 {
            eprintln!("    {} connected", bikes.len());
        }
    }
    Ok(bikes)
}

/// Reads the sampled bikes' live streams, noting when each packet becomes visible.
async fn follow_live(
    api: &Api,
    bikes: &[Bike],
    visibility: &Arc<Visibility>,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut tasks = Vec::new();
    for bike in bikes {
        let Some(index) = bike.sampled else { continue };
        let response = api.get(&format!("/api/v1/bikes/{}/live", bike.client.device.as_str())).await?;
        let visibility = visibility.clone();
        tasks.push(tokio::spawn(async move {
            let mut stream = response.bytes_stream();
            let mut buffer = Vec::new();
            while let Some(Ok(chunk)) = stream.next().await {
                buffer.extend_from_slice(&chunk);
                while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buffer.drain(..=end).collect();
                    if let Some(seq) = line.strip_prefix(b"id: ").or_else(|| line.strip_prefix(b"id:"))
                        && let Some(seq) = std::str::from_utf8(seq).ok().and_then(|s| s.trim().parse().ok())
                    {
                        visibility.visible(index, seq);
                    }
                }
            }
        }));
    }
    Ok(tasks)
}

/// A sending phase's offered load: messages a second, each of `packets` packets.
#[derive(Clone, Copy)]
struct Rate {
    messages_per_sec: u64,
    packets: u64,
}

/// The peak's readers: `GET /api/v1/bikes/{id}` and the day of history, each at its own rate
/// (0: none).
#[derive(Clone)]
struct Readers {
    day_device: String,
    bike_rate: u64,
    day_rate: u64,
}

/// The readers of one phase. They run on a thread and a runtime of their own, with their own
/// connections, as a client on another machine would: what they time is the service's
/// answer, not their turn in the queue of the runtime that drives ten thousand bikes.
///
/// The load is open: each request is sent when it falls due at its rate, whether or not the
/// ones before it have been answered. A slow answer then holds up no other request's sending
/// (no coordinated omission), and the readers offer the same load to every store and phase.
struct Readings {
    base: String,
    token: String,
    devices: Arc<Vec<String>>,
    readers: Readers,
    measuring: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    bike_reads: Arc<Mutex<Vec<f64>>>,
    day_reads: Arc<Mutex<Vec<f64>>>,
}

impl Readings {
    fn run(self) -> Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let api = Api { base: self.base.clone(), token: self.token.clone(), http: reqwest::Client::new() };
        runtime.block_on(async {
            let mut k = 0usize;
            let bikes = self.paced(&api, self.readers.bike_rate, &self.bike_reads, || {
                k = k.wrapping_add(7_919);
                format!("/api/v1/bikes/{}", self.devices[k % self.devices.len()])
            });
            let day = self.paced(&api, self.readers.day_rate, &self.day_reads, || {
                let to = Utc::now();
                let from = to - TimeDelta::days(1);
                format!(
                    "/api/v1/bikes/{}/telemetry?from={}&to={}&every=1m",
                    self.readers.day_device,
                    from.to_rfc3339_opts(SecondsFormat::Secs, true),
                    to.to_rfc3339_opts(SecondsFormat::Secs, true)
                )
            });
            futures::join!(bikes, day);
        });
        Ok(())
    }

    /// Sends `rate` requests a second to the paths `next` makes until told to stop, and puts
    /// in `reads` how long each took to be answered (∞ for a failed one), for those sent while
    /// measuring.
    async fn paced(&self, api: &Api, rate: u64, reads: &Mutex<Vec<f64>>, mut next: impl FnMut() -> String) {
        if rate == 0 {
            return;
        }
        let timed = |path: String, measured: bool| async move {
            let at = Instant::now();
            let ok = match api.get(&path).await {
                Ok(response) => response.bytes().await.is_ok(),
                Err(_) => false,
            };
            (measured, if ok { at.elapsed().as_secs_f64() * 1000.0 } else { f64::INFINITY })
        };
        let period = Duration::from_secs_f64(1.0 / rate as f64);
        let mut due = tokio::time::Instant::now();
        let mut in_flight = futures::stream::FuturesUnordered::new();
        let record = |(measured, ms): (bool, f64)| {
            if measured {
                reads.lock().expect("lock").push(ms);
            }
        };
        while !self.stop.load(Ordering::Relaxed) {
            tokio::select! {
                () = tokio::time::sleep_until(due) => {
                    // Sent when due, however many are still unanswered; any that fell due
                    // while this thread was held up go now.
                    let now = tokio::time::Instant::now();
                    while due <= now {
                        in_flight.push(timed(next(), self.measuring.load(Ordering::Relaxed)));
                        due += period;
                    }
                }
                Some(read) = in_flight.next() => record(read),
            }
        }
        while let Some(read) = in_flight.next().await {
            record(read);
        }
    }
}

/// Sends at `rate` for `warm_up` and then `options.seconds` measured, with `readers` reading
/// during the measured window; then waits until every acknowledgement and commit has come.
#[allow(clippy::too_many_arguments)]
async fn send(
    name: &'static str,
    phase: usize,
    bikes: &mut [Bike],
    api: &Api,
    visibility: &Visibility,
    pids: Pids,
    readers: Option<&Readers>,
    rate: Rate,
    warm_up: Duration,
    options: &Options,
) -> Result<Phase> {
    eprintln!("==> {name}: {} msgs/s of {} packet(s), {} s", rate.messages_per_sec, rate.packets, options.seconds);
    let measured = Duration::from_secs(options.seconds);
    let start = Instant::now();
    let window_start = start + warm_up;
    let end = window_start + measured;
    let mut window: Option<(u64, Cpu)> = None;
    let (mut messages, mut packets, mut refused) = (0u64, 0u64, 0u64);
    let acknowledged_before = metric(&api.metrics().await?, "fleet_ingest_acknowledged_total");
    let mut phase_messages = 0u64;
    let mut sent = 0u64;
    let mut cursor = 0usize;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let reading = Arc::new(AtomicBool::new(false));
    let bike_reads = Arc::new(Mutex::new(Vec::new()));
    let day_reads = Arc::new(Mutex::new(Vec::new()));
    let devices: Arc<Vec<String>> = Arc::new(bikes.iter().map(|b| b.client.device.as_str().to_owned()).collect());
    let stop_reading = Arc::new(AtomicBool::new(false));
    let reader_thread = readers.map(|readers| {
        let readings = Readings {
            base: api.base.clone(),
            token: api.token.clone(),
            devices: devices.clone(),
            readers: readers.clone(),
            measuring: reading.clone(),
            stop: stop_reading.clone(),
            bike_reads: bike_reads.clone(),
            day_reads: day_reads.clone(),
        };
        std::thread::spawn(move || readings.run())
    });

    loop {
        let now = tick.tick().await.into_std();
        if now >= end {
            break;
        }
        if window.is_none() && now >= window_start {
            window = Some((api.stored().await?, Cpu::read(pids)));
            reading.store(true, Ordering::Relaxed);
            (messages, packets, refused) = (0, 0, 0);
        }
        let due = (rate.messages_per_sec as f64 * (now - start).as_secs_f64()) as u64;
        let recorded_at = Utc::now();
        while sent < due {
            sent += 1;
            let count = bikes.len();
            let bike = &mut bikes[cursor];
            cursor = (cursor + 1) % count;
            let first = bike.next_seq;
            let device = bike.client.device.as_str();
            let (topic, payload) = if rate.packets == 1 {
                (&bike.telemetry_topic, envelope(device, first, recorded_at).encode_to_vec())
            } else {
                // An offline buffer: a packet a second up to now.
                let envelopes = (0..rate.packets)
                    .map(|k| {
                        let ago = i64::try_from(rate.packets - k).unwrap_or(0);
                        envelope(device, first + k, recorded_at - TimeDelta::seconds(ago))
                    })
                    .collect();
                (&bike.batch_topic, support::batch(envelopes))
            };
            if bike.client.client.try_publish(topic.as_str(), QoS::AtLeastOnce, false, payload).is_err() {
                refused += 1;
                continue;
            }
            bike.next_seq += rate.packets;
            bike.messages += 1;
            phase_messages += 1;
            messages += 1;
            packets += rate.packets;
            if let Some(index) = bike.sampled {
                for seq in first..first + rate.packets {
                    visibility.publish(index, seq, phase);
                }
            }
        }
    }
    let sent_until = Instant::now();
    reading.store(false, Ordering::Relaxed);
    let (stored_at_start, cpu_start) = match window {
        Some(window) => window,
        None => bail!("the phase ended before its measured window began"),
    };
    let stored = api.stored().await? - stored_at_start;
    let cores = Cpu::read(pids).cores_since(&cpu_start);
    stop_reading.store(true, Ordering::Relaxed);
    if let Some(thread) = reader_thread {
        thread.join().map_err(|_| anyhow::anyhow!("a reader panicked"))??;
    }
    let seconds = (sent_until - window_start).as_secs_f64();
    eprintln!("    {name}: {:.0} stored/s in the window; draining", stored as f64 / seconds);

    // Everything sent is acknowledged to the bikes by the broker, then by the ingest to the
    // broker after its commit.
    wait_until(&format!("{name}: the broker's acknowledgements"), || async {
        Ok(bikes.iter().all(|b| b.client.acked() >= b.messages))
    })
    .await?;
    let acknowledged = wait_until(&format!("{name}: the ingest to acknowledge everything"), || async {
        let metrics = api.metrics().await?;
        Ok(metric(&metrics, "fleet_ingest_acknowledged_total") >= acknowledged_before + phase_messages)
    })
    .await;
    if let Err(e) = acknowledged {
        let metrics = api.metrics().await?;
        let ingest: Vec<&str> = metrics.lines().filter(|l| l.starts_with("fleet_ingest_")).collect();
        bail!("{e:#}: expected {} acknowledged; {ingest:?}", acknowledged_before + phase_messages);
    }
    let drained_in = sent_until.elapsed();
    eprintln!("    {name}: drained {:.1} s after", drained_in.as_secs_f64());
    // Let the last live events of the phase arrive before the next phase begins.
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(Phase {
        name,
        messages,
        packets,
        refused,
        seconds,
        stored,
        cores,
        visible: visibility.of(phase),
        bike_reads: std::mem::take(&mut *bike_reads.lock().expect("lock")),
        day_reads: std::mem::take(&mut *day_reads.lock().expect("lock")),
        drained_in,
    })
}

/// Per bike over every phase: stored packets against the packets of the messages the broker
/// acknowledged (all of them, once a phase has drained).
struct Check {
    acknowledged: u64,
    lost: u64,
    duplicated: u64,
}

async fn check_counts(api: &Api, bikes: &[Bike]) -> Result<Check> {
    let counts: Vec<Result<(u64, u64)>> = futures::stream::iter(bikes)
        .map(|bike| async move {
            let acked = bike.next_seq - 1;
            ensure!(bike.client.acked() >= bike.messages, "{} lacks acknowledgements", bike.client.device);
            Ok((acked, api.count(bike.client.device.as_str()).await?))
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut check = Check { acknowledged: 0, lost: 0, duplicated: 0 };
    for count in counts {
        let (acked, stored) = count?;
        check.acknowledged += acked;
        check.lost += acked.saturating_sub(stored);
        check.duplicated += stored.saturating_sub(acked);
    }
    Ok(check)
}

struct Percentiles {
    p50: f64,
    p99: f64,
    max: f64,
}

fn percentiles(samples: &[f64]) -> Percentiles {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| {
        if sorted.is_empty() {
            return f64::NAN;
        }
        let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
        sorted[i]
    };
    Percentiles { p50: at(0.5), p99: at(0.99), max: at(1.0) }
}

/// 12345 → `12,345`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn met(yes: bool) -> &'static str {
    if yes { "yes" } else { "**no**" }
}
