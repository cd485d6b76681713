//! What the ingest tests run against: a fleet CA, a registry and a store in a temporary
//! directory, a real mosquitto on loopback (client certificates required, the CRL and the
//! per-bike ACL in force), and bikes that publish over mutual TLS.

#![allow(dead_code)] // each test binary uses its own part

pub mod faults;
pub mod ride;
pub mod service;

use std::{
    fs,
    net::TcpStream,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use chrono::{DateTime, TimeDelta, Utc};
use fleet_proto::{
    Batch, DeviceId, Envelope, GpsFix, Message, SCHEMA_VERSION, Telemetry, Timestamp, Topic, envelope::Body,
    topic::Kind,
};
use fleet_telemetry::{
    crl::{CrlPublisher, Reload},
    fleet_state::{Latest, Standings},
    ingest::{Ingest, IngestSettings, IngestStats},
    pki::{Authority, DEFAULT_VALIDITY},
    registry::{Bike, NewBike, Registry, Request},
    store::{TelemetryStore, sqlite::SqliteStore},
};
use fleetplane_common::{
    db::testing::fresh_database_url,
    ports::free_port,
    secrets::{KeySettings, Keyring},
};
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS, TlsConfiguration, Transport};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const MOSQUITTO: &str = "/usr/sbin/mosquitto";
/// The quarantine's cap in these tests: small, so that a flood goes past it.
pub const QUARANTINE_CAP: u64 = 1_000;
/// How long any wait on the system under test may take before the test fails: generous, for
/// a loaded 2-core machine; a passing test never waits this long.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// Polls `done` until it holds, failing the test after [`DEADLINE`] with `what`.
pub async fn wait_for<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub struct Fleet {
    pub dir: tempfile::TempDir,
    pub database_url: String,
    pub keyring: Keyring,
    pub authority: Authority,
    pub registry: Registry,
    pub store: Arc<SqliteStore>,
    pub standings: Standings,
    pub latest: Latest,
    pub broker: Mosquitto,
    ingest_identity: (String, String),
}

/// A registered bike with its certificate.
pub struct BikeIdentity {
    pub bike: Bike,
    pub serial: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// mosquitto's per-client limits: the tests' defaults, or a benchmark's larger ones.
#[derive(Clone, Copy, Debug)]
pub struct BrokerLimits {
    /// `max_inflight_messages`: QoS 1 messages sent to a client and not yet acknowledged.
    pub max_inflight: u32,
    /// `max_queued_messages` (0: no limit): more than this waiting for a client are dropped.
    pub max_queued: u32,
}

impl Default for BrokerLimits {
    fn default() -> Self {
        Self { max_inflight: 200, max_queued: 100_000 }
    }
}

impl Fleet {
    pub async fn start() -> Self {
        Self::start_with(BrokerLimits::default()).await
    }

    pub async fn start_with(limits: BrokerLimits) -> Self {
        fleet_telemetry::install_crypto_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        // mosquitto, started as root, reads its files as user mosquitto.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        // Where `fleet-telemetry serve` with this data directory finds them too.
        let keyring =
            Keyring::load(&KeySettings { variable: "TEST_KEYS", keys: None, file: dir.path().join("master.key") })
                .expect("keyring");
        let url = fresh_database_url(dir.path(), "fleet").await;
        let registry = Registry::open(&url, 4).await.expect("registry");
        let authority = registry.authority(&keyring, SystemTime::now()).await.expect("CA");
        let store = Arc::new(
            SqliteStore::open(&dir.path().join("telemetry.db"))
                .await
                .expect("store")
                .with_quarantine_cap(QUARANTINE_CAP),
        );
        let ingest = authority
            .issue_generated(&DeviceId::parse("fleet-ingest").expect("id"), SystemTime::now(), DEFAULT_VALIDITY)
            .expect("the ingest's certificate");
        let broker = Mosquitto::start(dir.path(), &authority, &registry, limits).await;
        Self {
            dir,
            database_url: url,
            keyring,
            authority,
            registry,
            store,
            standings: Standings::default(),
            latest: Latest::default(),
            broker,
            ingest_identity: (ingest.issued.cert_pem, ingest.key_pem),
        }
    }

    pub async fn register(&self, serial: &str) -> BikeIdentity {
        let identity = self.enroll(serial).await;
        self.standings.refresh(&self.registry).await.expect("standings");
        identity
    }

    /// Registers a bike and issues its certificate, without reading the standings again (a
    /// running service reads them within its refresh interval).
    pub async fn enroll(&self, serial: &str) -> BikeIdentity {
        let bike = self
            .registry
            .register(
                "test",
                &NewBike {
                    serial: serial.into(),
                    model: "Cargo 2".into(),
                    firmware_version: "1.4.2".into(),
                    display_name: None,
                },
                Utc::now(),
            )
            .await
            .expect("registered");
        let issued = self
            .registry
            .issue("test", &self.authority, &bike.device_id, Request::Generate, DEFAULT_VALIDITY, SystemTime::now())
            .await
            .expect("issued");
        let bundle = issued.bundle.expect("a generated key");
        BikeIdentity {
            bike,
            serial: issued.certificate.serial,
            cert_pem: bundle.issued.cert_pem,
            key_pem: bundle.key_pem,
        }
    }

    pub fn ingest_settings(&self) -> IngestSettings {
        let mut settings = IngestSettings::new(
            "127.0.0.1",
            self.broker.ingest_port,
            self.authority.chain_pem().into_bytes(),
            self.ingest_identity.0.clone().into_bytes(),
            self.ingest_identity.1.clone().into_bytes(),
        );
        settings.inflight = 200;
        settings.batch_size = 100;
        settings
    }

    /// Starts the ingest; it runs until the returned handle is stopped or aborted.
    pub fn start_ingest(&self) -> RunningIngest {
        self.start_ingest_with(self.ingest_settings())
    }

    pub fn start_ingest_with(&self, settings: IngestSettings) -> RunningIngest {
        self.start_ingest_on(settings, self.store.clone())
    }

    /// Starts the ingest with `store` in place of the fleet's own.
    pub fn start_ingest_on(&self, settings: IngestSettings, store: Arc<dyn TelemetryStore>) -> RunningIngest {
        let ingest = Ingest {
            store,
            standings: self.standings.clone(),
            latest: self.latest.clone(),
            stats: Arc::new(IngestStats::default()),
        };
        let shutdown = CancellationToken::new();
        let stats = ingest.stats.clone();
        let task = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { ingest.run(&settings, shutdown).await.expect("the ingest runs") }
        });
        RunningIngest { task, shutdown, stats }
    }

    pub async fn count(&self, device: &DeviceId) -> u64 {
        self.store.count(Some(device)).await.expect("count")
    }
}

pub struct RunningIngest {
    pub task: JoinHandle<()>,
    pub shutdown: CancellationToken,
    pub stats: Arc<IngestStats>,
}

impl RunningIngest {
    /// Waits until the ingest is subscribed: it has connected to the broker.
    pub async fn connected(&self) {
        let stats = self.stats.clone();
        wait_for("the ingest to connect", move || {
            let stats = stats.clone();
            async move { stats.connections.load(std::sync::atomic::Ordering::Relaxed) > 0 }
        })
        .await;
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.expect("the ingest stopped");
    }
}

/// mosquitto on loopback, with the fleet CA's chain, a server certificate, the CRL and the
/// ACL; its persistence in the directory, so a restart keeps its sessions. Two listeners, as
/// in production: the bikes' (`port`), where a session is named by the certificate whatever
/// client id a bike sends, and the ingest's (`ingest_port`), where each replica names its own.
pub struct Mosquitto {
    child: Option<Child>,
    pub port: u16,
    pub ingest_port: u16,
    dir: PathBuf,
}

impl Mosquitto {
    async fn start(dir: &Path, authority: &Authority, registry: &Registry, limits: BrokerLimits) -> Self {
        let dir = dir.join("mosquitto");
        fs::create_dir_all(&dir).expect("mosquitto dir");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).expect("chmod");
        let server = authority
            .issue_server(&["localhost", "127.0.0.1"], SystemTime::now(), DEFAULT_VALIDITY)
            .expect("server cert");
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            fs::write(&path, text).expect("write");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
            path
        };
        write("ca.pem", &authority.chain_pem());
        write("server.pem", &server.issued.cert_pem);
        write("server.key", &server.key_pem);
        let crl = registry.crl_input(SystemTime::now()).await.expect("crl input");
        write("crl.pem", &authority.crl(&crl.revoked, crl.number, SystemTime::now()).expect("crl"));
        write(
            "acl",
            "# The ingest reads every bike's topics; each bike uses only its own.\n\
             user fleet-ingest\ntopic read bikes/+/telemetry\ntopic read bikes/+/events\ntopic read bikes/+/batch\n\
             topic readwrite fleet/replicas/#\n\n\
             pattern readwrite bikes/%u/#\n",
        );
        let (port, ingest_port) = (free_port(), free_port());
        let d = dir.display();
        let tls = format!(
            "cafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n\
             require_certificate true\nuse_identity_as_username true\ncrlfile {d}/crl.pem\n"
        );
        write(
            "mosquitto.conf",
            &format!(
                "per_listener_settings false\n\
                 persistence true\npersistence_location {d}/\nautosave_interval 1\n\
                 max_inflight_messages {inflight}\nmax_queued_messages {queued}\n\
                 log_dest stderr\nlog_type error\nlog_type warning\n\
                 acl_file {d}/acl\n\
                 listener {port} 127.0.0.1\n{tls}use_username_as_clientid true\n\
                 listener {ingest_port} 127.0.0.1\n{tls}",
                inflight = limits.max_inflight,
                queued = limits.max_queued,
            ),
        );
        let mut broker = Self { child: None, port, ingest_port, dir };
        broker.spawn().await;
        broker
    }

    async fn spawn(&mut self) {
        let log = fs::File::create(self.dir.join("mosquitto.log")).expect("log");
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(self.dir.join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("mosquitto starts (cargo xtask test installs it)");
        self.child = Some(child);
        let ports = [self.port, self.ingest_port];
        let dir = self.dir.clone();
        wait_for("mosquitto to listen", move || {
            let dir = dir.clone();
            async move {
                let up = ports.iter().all(|port| TcpStream::connect(("127.0.0.1", *port)).is_ok());
                if !up {
                    let log = fs::read_to_string(dir.join("mosquitto.log")).unwrap_or_default();
                    assert!(!log.contains("Error"), "mosquitto failed to start: {log}");
                }
                up
            }
        })
        .await;
    }

    /// What the service publishes revocations with: the CRL file mosquitto reads, and
    /// SIGHUP to mosquitto.
    pub fn crl_publisher(&self) -> CrlPublisher {
        CrlPublisher { path: self.dir.join("crl.pem"), reload: Reload::Pid(self.pid()) }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let status = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status().expect("kill");
        assert!(status.success());
    }

    /// Stops mosquitto as an operator would (SIGTERM: it saves its sessions), and starts it
    /// again on the same port.
    pub async fn restart(&mut self) {
        self.signal("TERM");
        self.child.take().expect("running").wait().expect("mosquitto exits");
        self.spawn().await;
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A bike's MQTT connection: it publishes QoS 1 and counts the acknowledgements it gets.
pub struct BikeClient {
    pub client: AsyncClient,
    pub device: DeviceId,
    acked: Arc<std::sync::atomic::AtomicU64>,
    refused: Arc<std::sync::Mutex<Option<String>>>,
    connected: Arc<std::sync::atomic::AtomicBool>,
    poller: JoinHandle<()>,
}

impl BikeClient {
    pub fn connect(fleet: &Fleet, identity: &BikeIdentity) -> Self {
        Self::connect_as(fleet, &identity.bike.device_id, &identity.cert_pem, &identity.key_pem)
    }

    pub fn connect_as(fleet: &Fleet, device: &DeviceId, cert_pem: &str, key_pem: &str) -> Self {
        Self::connect_to(fleet.broker.port, &fleet.authority.chain_pem(), device, cert_pem, key_pem)
    }

    /// Connects to the broker on loopback `port` that `ca_pem` vouches for, as `device`.
    pub fn connect_to(port: u16, ca_pem: &str, device: &DeviceId, cert_pem: &str, key_pem: &str) -> Self {
        let mut options = MqttOptions::new(device.as_str(), "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(30)).set_clean_session(false).set_inflight(100).set_transport(
            Transport::tls_with_config(TlsConfiguration::Simple {
                ca: ca_pem.as_bytes().to_vec(),
                alpn: None,
                client_auth: Some((cert_pem.as_bytes().to_vec(), key_pem.as_bytes().to_vec())),
            }),
        );
        let (client, mut eventloop) = AsyncClient::new(options, 1_000);
        let acked = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let refused = Arc::new(std::sync::Mutex::new(None));
        let connected = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let poller = tokio::spawn({
            let (acked, refused, connected) = (acked.clone(), refused.clone(), connected.clone());
            async move {
                loop {
                    match eventloop.poll().await {
                        Ok(Event::Incoming(Incoming::PubAck(_))) => {
                            acked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                            connected.store(true, std::sync::atomic::Ordering::SeqCst);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            connected.store(false, std::sync::atomic::Ordering::SeqCst);
                            *refused.lock().expect("lock") = Some(format!("{e:?}"));
                            // Reconnect, as a bike does, without hammering the broker.
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
            }
        });
        Self { client, device: device.clone(), acked, refused, connected, poller }
    }

    pub async fn publish(&self, kind: Kind, payload: Vec<u8>) {
        self.publish_on(&Topic::new(self.device.clone(), kind).to_string(), payload).await;
    }

    pub async fn publish_on(&self, topic: &str, payload: Vec<u8>) {
        self.client.publish(topic, QoS::AtLeastOnce, false, payload).await.expect("queued");
    }

    pub fn acked(&self) -> u64 {
        self.acked.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The last connection error, if the broker refused or dropped the bike.
    pub fn refused(&self) -> Option<String> {
        self.refused.lock().expect("lock").clone()
    }

    pub async fn wait_acked(&self, count: u64) {
        wait_for(&format!("{count} acknowledgements for {}", self.device), || async move { self.acked() >= count })
            .await;
    }
}

impl Drop for BikeClient {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

pub fn now_ts(time: DateTime<Utc>) -> Option<Timestamp> {
    Some(Timestamp { seconds: time.timestamp(), nanos: i32::try_from(time.timestamp_subsec_nanos()).expect("nanos") })
}

pub fn telemetry(i: u64) -> Telemetry {
    #[allow(clippy::cast_precision_loss)]
    let x = i as f64;
    Telemetry {
        lat: 52.5 + x * 1e-5,
        lon: 13.4,
        altitude_m: 35.0,
        gps_fix: GpsFix::ThreeD.into(),
        hdop: 0.8,
        speed_kmh: (i % 25) as f32,
        heading_deg: 90.0,
        battery_soc_pct: 80.0,
        battery_voltage_v: 39.0,
        battery_current_a: 4.0,
        battery_temp_c: 21.0,
        motor_power_w: 180.0,
        motor_temp_c: 38.0,
        assist_level: 2,
        cadence_rpm: 65.0,
        odometer_m: 1_000 + i,
    }
}

/// A telemetry envelope of `device`, recorded `ago` before now.
pub fn envelope(device: &DeviceId, seq: u64, ago: TimeDelta) -> Envelope {
    Envelope {
        schema_version: SCHEMA_VERSION,
        device_id: device.as_str().to_owned(),
        seq,
        recorded_at: now_ts(Utc::now() - ago),
        body: Some(Body::Telemetry(telemetry(seq))),
    }
}

pub fn batch(envelopes: Vec<Envelope>) -> Vec<u8> {
    Batch { packets: envelopes }.encode_to_vec()
}
