//! A run, as its steps: check the API and the token and find the broker; enrol the bikes
//! (register, key, CSR, certificate); connect each as itself; ride until told to stop (or for
//! the duration), with progress lines; wind down (each bike parks, sends what it holds and
//! waits for its acknowledgements); and, with `verify`, wait until the fleet has stored all
//! of it.

use std::{collections::BTreeMap, collections::VecDeque, future::Future, sync::Arc, time::Duration};

use anyhow::{Context, anyhow, bail};
use fleet_proto::DeviceId;
use rand::{RngExt, SeedableRng, rngs::StdRng};
use reqwest::StatusCode;
use tokio::{sync::Semaphore, task::JoinSet, time::Instant};
use tokio_util::sync::CancellationToken;
use tracing::{info, instrument, warn};

use crate::{
    api::{Api, ApiError, NewBike},
    bad::BadKind,
    bike::{BadOrder, Bike, Timing},
    config::{RunId, SimConfig},
    identity,
    link::{Broker, Credentials, Link},
    offline::{Coverage, Outbox},
    recorder::Recorder,
    report::{BikeReport, BikeStats, Report, progress_line},
    ride::Ride,
};

/// How many bikes are enrolled at once: enough to be quick, few enough not to swamp the API.
const ENROL_CONCURRENCY: usize = 8;
/// How often `verify` asks for the counts again.
const VERIFY_POLL: Duration = Duration::from_millis(500);

/// Runs the simulator as `config` says until `shutdown` completes (or the configured
/// duration passes), and reports what it did. Fails only when the run cannot be made (the
/// API, the token, the broker); whether it went well is the report's to say
/// ([`Report::is_success`]).
// Not `err`: the caller shows the error (the CLI prints it, with its causes).
#[instrument(skip_all, fields(bikes = config.bikes))]
pub async fn run(config: SimConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<Report> {
    crate::install_crypto_provider();
    config.validate()?;
    let api = Api::new(&config.api, config.token.clone()).context("setting up the HTTP client")?;
    let broker = find_broker(&api, &config).await?;
    let run_id = config.run_id.clone().unwrap_or_else(RunId::random);
    let seed = config.seed.unwrap_or_else(|| rand::rng().random());
    info!(run = %run_id, seed, broker = %format!("{}:{}", broker.host, broker.port), "enrolling {} bikes", config.bikes);

    tokio::pin!(shutdown);
    let setup = async {
        let fleet = enrol_all(&api, &config, &run_id).await?;
        let bikes = connect_all(fleet, &broker, &config, &run_id, seed).await?;
        let revoked = match config.bad_counts().iter().find(|(kind, _)| *kind == BadKind::Revoked) {
            Some(&(_, count)) => Some(revoked_bike(&api, &broker, &config, &run_id, seed, count).await?),
            None => None,
        };
        anyhow::Ok((bikes, revoked))
    };
    let (bikes, revoked) = tokio::select! {
        ready = setup => ready?,
        () = &mut shutdown => bail!("stopped before the bikes were ready"),
    };

    info!(run = %run_id, "{} bikes connected and riding", bikes.len());
    let stop = CancellationToken::new();
    let tick = config.ride.sample_every.min(Duration::from_secs(1)).max(Duration::from_millis(1));
    let timing = Timing { tick, ack_timeout: config.ack_timeout };
    let stats: Vec<Arc<BikeStats>> = bikes.iter().map(|b| b.stats.clone()).collect();
    let started = Instant::now();
    let progress = tokio::spawn(log_progress(stats.clone(), config.progress_every, started, stop.clone()));
    let riding: Vec<_> = bikes.into_iter().map(|bike| tokio::spawn(bike.run(stop.clone(), timing))).collect();
    let revoked = revoked.map(|bike| tokio::spawn(bike.send_orders_only(config.ack_timeout)));

    let ride_for = async {
        match config.duration {
            Some(duration) => tokio::time::sleep(duration).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = &mut shutdown => info!("stopping: the bikes send what they hold and wait for acknowledgements"),
        () = ride_for => info!("time is up: the bikes send what they hold and wait for acknowledgements"),
    }
    let elapsed = started.elapsed();
    stop.cancel();
    let mut reports = Vec::with_capacity(riding.len());
    for bike in riding {
        reports.push(bike.await.context("a bike's task failed")?);
    }
    let revoked = match revoked {
        Some(task) => Some(task.await.context("the revoked bike's task failed")?),
        None => None,
    };
    progress.abort();

    let mut bad = BTreeMap::new();
    for (kind, _) in config.bad_counts() {
        let sent = stats.iter().chain(&revoked).map(|s| BikeStats::get(&s.bad[kind.index()])).sum();
        bad.insert(kind, sent);
    }
    if config.verify {
        verify(&api, &mut reports, config.verify_timeout).await;
    }
    Ok(Report { run_id: run_id.to_string(), elapsed, bikes: reports, bad, verified: config.verify })
}

/// Installs aws-lc-rs as the process's TLS crypto provider (the build links ring too, through
/// dependencies, so rustls cannot pick one by itself). Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Asks the API where the broker is, and for the CA that vouches for it: the first calls,
/// so a wrong address or token shows here.
async fn find_broker(api: &Api, config: &SimConfig) -> anyhow::Result<Broker> {
    let info = api.broker().await.map_err(|e| explain(e, "asking the fleet API where the broker is"))?;
    let ca_pem = api.ca_pem().await.map_err(|e| explain(e, "fetching the fleet CA"))?;
    let (host, port) = config.broker.clone().unwrap_or((info.host, info.port));
    Ok(Broker { host, port, ca_pem })
}

/// `error`, said in terms of what was being done, with a hint when the token is the problem.
fn explain(error: ApiError, doing: &str) -> anyhow::Error {
    let hint = match &error {
        ApiError::Refused { status, .. } if *status == StatusCode::UNAUTHORIZED => " (check --token or FLEET_TOKEN)",
        ApiError::Refused { status, .. } if *status == StatusCode::FORBIDDEN => " (the token lacks a scope this needs)",
        _ => "",
    };
    anyhow::Error::new(error).context(format!("{doing}{hint}"))
}

/// A bike, registered and certified.
struct Enrolled {
    device: DeviceId,
    serial: String,
    certificate_serial: String,
    credentials: Credentials,
}

async fn enrol_all(api: &Api, config: &SimConfig, run_id: &RunId) -> anyhow::Result<Vec<Enrolled>> {
    let permits = Arc::new(Semaphore::new(ENROL_CONCURRENCY));
    let mut tasks = JoinSet::new();
    for n in 1..=config.bikes {
        let (api, permits) = (api.clone(), permits.clone());
        let serial = format!("sim-{run_id}-{n:04}");
        let (model, firmware) = (config.model.clone(), config.firmware.clone());
        let display_name = format!("Sim bike {n} (run {run_id})");
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            (n, enrol(&api, serial, &model, &firmware, Some(&display_name)).await)
        });
    }
    let mut enrolled: Vec<Option<Enrolled>> = (0..config.bikes).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        let (n, bike) = joined.context("enrolling a bike")?;
        enrolled[n - 1] = Some(bike?);
    }
    Ok(enrolled.into_iter().flatten().collect())
}

/// Registers a bike as `serial`, makes its key and has the fleet CA certify it.
async fn enrol(
    api: &Api,
    serial: String,
    model: &str,
    firmware: &str,
    display_name: Option<&str>,
) -> anyhow::Result<Enrolled> {
    let new = NewBike { serial: &serial, model, firmware_version: firmware, display_name };
    let bike = api.register_bike(&new).await.map_err(|e| {
        if e.code() == Some("serial_taken") {
            anyhow!("{e}").context(format!(
                "registering bike {serial}: the serial is taken; pass another --run-id, or none for a random one"
            ))
        } else {
            explain(e, &format!("registering bike {serial}"))
        }
    })?;
    let device = DeviceId::parse(&bike.device_id)
        .map_err(|e| anyhow!("the API named bike {serial} `{}`, which is no device id: {e}", bike.device_id))?;
    let keys = identity::key_and_csr(&device).with_context(|| format!("making a key and CSR for {device}"))?;
    let issued = api
        .issue_certificate(&device, &keys.csr_pem)
        .await
        .map_err(|e| explain(e, &format!("getting a certificate for {device}")))?;
    Ok(Enrolled {
        device,
        serial,
        certificate_serial: issued.certificate.serial,
        credentials: Credentials { cert_pem: issued.certificate.cert_pem, key_pem: keys.key_pem },
    })
}

/// Connects every bike as itself and makes it ready to ride; fails if one cannot connect.
async fn connect_all(
    fleet: Vec<Enrolled>,
    broker: &Broker,
    config: &SimConfig,
    run_id: &RunId,
    seed: u64,
) -> anyhow::Result<Vec<Bike>> {
    let devices: Vec<DeviceId> = fleet.iter().map(|b| b.device.clone()).collect();
    let ghost = DeviceId::parse(&format!("sim-{run_id}-ghost")).context("a device id for the ghost bike")?;
    let mut orders = plan_bad(&config.bad_counts(), &devices, &ghost).into_iter();
    let bikes: Vec<Bike> = fleet
        .into_iter()
        .enumerate()
        .map(|(i, enrolled)| {
            make_bike(enrolled, broker, config, stream(seed, i as u64), orders.next().unwrap_or_default())
        })
        .collect();
    let deadline = Instant::now() + config.connect_timeout;
    for bike in &bikes {
        bike.link.wait_connected(deadline).await.map_err(|e| {
            anyhow!(
                "bike {} could not connect to the broker at {}:{}: {e}",
                bike.recorder.device(),
                broker.host,
                broker.port
            )
        })?;
    }
    Ok(bikes)
}

fn make_bike(enrolled: Enrolled, broker: &Broker, config: &SimConfig, seed: u64, bad: VecDeque<BadOrder>) -> Bike {
    let stats = Arc::new(BikeStats::default());
    Bike {
        link: Link::open(&enrolled.device, broker, &enrolled.credentials, stats.clone()),
        serial: enrolled.serial,
        ride: Ride::new(config.ride.clone(), config.firmware.clone(), seed),
        recorder: Recorder::new(enrolled.device, 1),
        coverage: Coverage::new(config.offline, stream(seed, 1)),
        outbox: Outbox::new(config.outbox_capacity),
        stats,
        bad,
        rng: StdRng::seed_from_u64(stream(seed, 2)),
        batch_max: config.batch_max,
    }
}

/// The bike for [`BadKind::Revoked`]: enrolled and connected like the others, then its
/// certificate is revoked (with the admin token) while its session stays open; it will send
/// `count` packets on that session.
async fn revoked_bike(
    api: &Api,
    broker: &Broker,
    config: &SimConfig,
    run_id: &RunId,
    seed: u64,
    count: u32,
) -> anyhow::Result<Bike> {
    let enrolled =
        enrol(api, format!("sim-{run_id}-revoked"), &config.model, &config.firmware, Some("Sim bike, revoked")).await?;
    let certificate_serial = enrolled.certificate_serial.clone();
    let orders = (0..count).map(|_| BadOrder { kind: BadKind::Revoked, other: enrolled.device.clone() }).collect();
    let bike = make_bike(enrolled, broker, config, stream(seed, u64::MAX), orders);
    let deadline = Instant::now() + config.connect_timeout;
    bike.link
        .wait_connected(deadline)
        .await
        .map_err(|e| anyhow!("the bike to be revoked could not connect to the broker: {e}"))?;
    let admin = config.admin_token.clone().map_or_else(|| api.clone(), |token| api.with_token(token));
    admin.revoke_certificate(&certificate_serial, "key_compromise").await.map_err(|e| {
        explain(
            e,
            &format!(
                "revoking the certificate of {} (this needs an admin token: --admin-token)",
                bike.recorder.device()
            ),
        )
    })?;
    info!(device = %bike.recorder.device(), "certificate revoked; the bike publishes on its open session");
    Ok(bike)
}

/// Spreads the bad packets asked for over the bikes, round robin; each names (or uses the
/// topic of) the next bike, or a ghost when there is only one. [`BadKind::Revoked`] is left
/// out: a bike of its own sends those.
fn plan_bad(counts: &[(BadKind, u32)], devices: &[DeviceId], ghost: &DeviceId) -> Vec<VecDeque<BadOrder>> {
    let mut orders = vec![VecDeque::new(); devices.len()];
    let mut next = 0;
    for &(kind, count) in counts.iter().filter(|(kind, _)| *kind != BadKind::Revoked) {
        for _ in 0..count {
            let i = next % devices.len();
            let other = if devices.len() > 1 { &devices[(i + 1) % devices.len()] } else { ghost };
            orders[i].push_back(BadOrder { kind, other: other.clone() });
            next += 1;
        }
    }
    orders
}

/// An independent seed for stream `n` of `seed` (SplitMix64's finaliser).
fn stream(seed: u64, n: u64) -> u64 {
    let mut z = seed.wrapping_add(n.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

async fn log_progress(stats: Vec<Arc<BikeStats>>, every: Duration, started: Instant, stop: CancellationToken) {
    let mut ticker = tokio::time::interval_at(started + every, every);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {
                let bikes: Vec<&BikeStats> = stats.iter().map(Arc::as_ref).collect();
                info!("{}", progress_line(started.elapsed(), &bikes));
            }
        }
    }
}

/// Asks for each bike's stored count until it has all it acknowledged, or `within` passes.
/// A count that cannot be had stays unknown (the report says so).
async fn verify(api: &Api, bikes: &mut [BikeReport], within: Duration) {
    let deadline = Instant::now() + within;
    let mut rounds = 0u32;
    loop {
        let mut waiting = 0;
        for bike in bikes.iter_mut().filter(|b| b.stored.is_none_or(|stored| stored < b.acknowledged)) {
            match api.telemetry_count(&bike.device_id).await {
                Ok(count) => bike.stored = Some(count),
                Err(e @ ApiError::Refused { .. }) => {
                    warn!(device = %bike.device_id, "cannot read the stored count: {e}");
                    return;
                }
                Err(e) => warn!(device = %bike.device_id, "cannot read the stored count yet: {e}"),
            }
            if bike.stored.is_none_or(|stored| stored < bike.acknowledged) {
                waiting += 1;
            }
        }
        if waiting == 0 || Instant::now() >= deadline {
            return;
        }
        if rounds.is_multiple_of(20) {
            info!("{waiting} bikes have packets acknowledged but not yet stored; waiting");
        }
        rounds += 1;
        tokio::time::sleep(VERIFY_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn devices(n: usize) -> Vec<DeviceId> {
        (0..n).map(|i| DeviceId::parse(&format!("bike-{i}")).expect("id")).collect()
    }

    #[test]
    fn bad_packets_are_spread_over_the_bikes_and_name_another() {
        let ghost = DeviceId::parse("ghost").expect("id");
        let counts = [(BadKind::Malformed, 3), (BadKind::Revoked, 5), (BadKind::WrongTopic, 2)];
        let plan = plan_bad(&counts, &devices(3), &ghost);
        assert_eq!(plan.iter().map(VecDeque::len).collect::<Vec<_>>(), [2, 2, 1], "revoked goes elsewhere");
        for (i, orders) in plan.iter().enumerate() {
            for order in orders {
                assert_ne!(order.other, devices(3)[i], "another bike");
                assert_ne!(order.kind, BadKind::Revoked);
            }
        }
        let alone = plan_bad(&counts, &devices(1), &ghost);
        assert!(alone[0].iter().all(|order| order.other == ghost), "a lone bike names the ghost");
    }

    #[test]
    fn seed_streams_differ() {
        let seeds: std::collections::HashSet<u64> = (0..1_000).map(|n| stream(42, n)).collect();
        assert_eq!(seeds.len(), 1_000);
        assert_eq!(stream(42, 7), stream(42, 7));
        assert_ne!(stream(42, 7), stream(43, 7));
    }
}
