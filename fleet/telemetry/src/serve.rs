//! `fleet-telemetry serve`: the registry and its CA, the telemetry store, the broker (embedded
//! or external), the ingest, the upkeep and the API, started together and stopped together.
//! The ingest runs on a thread and a tokio runtime of its own, so that the milliseconds a
//! batch takes hold up none of the API's requests.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, SystemTime},
};

use anyhow::Context;
use fleet_proto::DeviceId;
use fleetplane_common::secrets::{KeySettings, Keyring};
use tokio_util::sync::CancellationToken;

use crate::{
    api::{self, ApiSettings, AppState},
    broker::EmbeddedBroker,
    config::{BrokerChoice, Config, StoreChoice},
    crl::CrlPublisher,
    fleet_state::{Latest, Standings},
    ingest::{Ingest, IngestSettings, IngestStats},
    pki::Authority,
    registry::Registry,
    store::{TelemetryStore, clickhouse::ClickHouseStore, sqlite::SqliteStore},
    upkeep,
};

/// The environment variable that may hold the master keys (else `master.key` in the data dir).
pub const MASTER_KEYS_VARIABLE: &str = "FLEET_MASTER_KEYS";

/// The ingest's identity: its certificate's CN, and the user mosquitto's ACL names.
pub const INGEST_IDENTITY: &str = "fleet-ingest";
/// The certificate the embedded broker's front for bikes presents to rumqttd.
const FRONT_IDENTITY: &str = "fleet-broker-front";

/// The master keys: from `FLEET_MASTER_KEYS`, or `master.key` in the data directory (created on
/// the first start).
pub fn keyring(config: &Config) -> anyhow::Result<Keyring> {
    let keys = std::env::var(MASTER_KEYS_VARIABLE).ok().filter(|v| !v.is_empty());
    Keyring::load(&KeySettings {
        variable: MASTER_KEYS_VARIABLE,
        keys: keys.as_deref(),
        file: config.data_dir.join("master.key"),
    })
    .context("loading the master keys")
}

/// Opens the registry (bringing its schema up to date).
pub async fn registry(config: &Config) -> anyhow::Result<Registry> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    Registry::open(&config.database_url, config.pool_size).await.context("opening the registry")
}

async fn store(config: &Config) -> anyhow::Result<Arc<dyn TelemetryStore>> {
    Ok(match &config.store {
        StoreChoice::Sqlite(path) => Arc::new(
            SqliteStore::open(path)
                .await
                .context("opening the SQLite store")?
                .with_quarantine_cap(config.quarantine_cap),
        ),
        StoreChoice::ClickHouse { url, database } => Arc::new(
            ClickHouseStore::open(url, database)
                .await
                .context("opening the ClickHouse store")?
                .with_quarantine_cap(config.quarantine_cap),
        ),
    })
}

/// A running service: where it listens, and how to stop it.
pub struct Running {
    pub api: SocketAddr,
    pub broker_url: String,
    pub state: AppState,
    stop: CancellationToken,
    tasks: tokio::task::JoinSet<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Stops taking requests and messages, lets the ingest store and acknowledge what it
    /// holds, and waits for every part to end.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.stop.cancel();
        while let Some(ended) = self.tasks.join_next().await {
            ended.context("a part of the service panicked")?;
        }
        self.server.await.context("the API server panicked")?.context("the API server")?;
        Ok(())
    }

    /// Runs until `shutdown`, then stops.
    pub async fn until(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        shutdown.await;
        self.stop().await
    }
}

/// Starts every part of the service.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    crate::install_crypto_provider();
    let keyring = keyring(&config)?;
    let registry = registry(&config).await?;
    let authority = Arc::new(registry.authority(&keyring, SystemTime::now()).await.context("opening the fleet CA")?);
    if let Some(hash) = &config.admin_token_sha256 {
        registry.ensure_managed_token(hash, chrono::Utc::now()).await.context("adding FLEET_ADMIN_TOKEN_SHA256")?;
    }
    let store = store(&config).await?;
    let standings = Standings::default();
    standings.refresh(&registry).await.context("reading the bikes' standings")?;
    let latest = Latest::default();
    let stats = Arc::new(IngestStats::default());
    let stop = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();

    let ingest_settings = ingest_settings(&config, &authority)?;
    let crl = CrlPublisher { path: config.crl_path.clone(), reload: config.crl_reload.clone() };
    if let Some(parent) = crl.path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }

    let ingest =
        Ingest { store: store.clone(), standings: standings.clone(), latest: latest.clone(), stats: stats.clone() };
    // The ingest runs on a thread and a runtime of its own. A batch takes milliseconds of CPU
    // to decode, check and write out; on the API's workers, every request queued behind it
    // would wait that long, `GET /bikes/{id}`s answered from memory in microseconds among them.
    // As threads of their own, the kernel shares the cores between the two.
    tasks.spawn_blocking({
        let stop = stop.clone();
        move || {
            let ended = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the ingest's runtime")
                .and_then(|runtime| runtime.block_on(ingest.run(&ingest_settings, stop)));
            if let Err(e) = ended {
                tracing::error!(error = format!("{e:#}"), "the ingest stopped");
            }
        }
    });
    tasks.spawn(upkeep::refresh_standings(
        registry.clone(),
        standings.clone(),
        upkeep::STANDINGS_INTERVAL,
        stop.clone(),
    ));
    tasks.spawn(upkeep::keep_crl_fresh(
        registry.clone(),
        authority.clone(),
        crl.clone(),
        Duration::from_secs(60),
        stop.clone(),
    ));
    tasks.spawn(upkeep::keep_retention(
        store.clone(),
        config.limits.retention,
        Duration::from_secs(3600),
        stop.clone(),
    ));

    let broker_url = config.broker_url();
    let state = AppState::new(api::Parts {
        registry,
        authority,
        store,
        standings,
        latest,
        stats,
        crl,
        settings: ApiSettings {
            online_window: config.online_window,
            certificate_validity: config.certificate_validity,
            broker_url: broker_url.clone(),
            heartbeat: Duration::from_secs(15),
        },
        shutdown: stop.clone(),
    });
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("the API cannot listen on {}", config.listen))?;
    let api = listener.local_addr()?;
    let server = tokio::spawn({
        let router = api::router(state.clone());
        let stop = stop.clone();
        async move { axum::serve(listener, router).with_graceful_shutdown(stop.cancelled_owned()).await }
    });
    Ok(Running { api, broker_url, state, stop, tasks, server })
}

/// How the ingest reaches the broker: the embedded one, started here, or the external one.
fn ingest_settings(config: &Config, authority: &Authority) -> anyhow::Result<IngestSettings> {
    let now = SystemTime::now();
    let validity = Duration::from_secs(365 * 24 * 3600);
    let identity = DeviceId::parse(INGEST_IDENTITY).expect("a valid id");
    let mut settings = match &config.broker {
        BrokerChoice::Embedded(bikes) => {
            let ingest_addr = SocketAddr::from(([127, 0, 0, 1], fleetplane_common::ports::free_port()));
            let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), bikes.ip().to_string()];
            names.extend(config.broker_public_host.clone());
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let server = authority.issue_server(&names, now, validity).context("the broker's certificate")?;
            let front = authority
                .issue_generated(&DeviceId::parse(FRONT_IDENTITY).expect("a valid id"), now, validity)
                .context("the broker front's certificate")?;
            let broker = EmbeddedBroker::start(
                &config.data_dir.join("broker"),
                (*bikes, ingest_addr),
                &server,
                &front,
                authority.issuing_cert_pem(),
                &config.crl_path,
            )?;
            let ingest = authority.issue_generated(&identity, now, validity).context("the ingest's certificate")?;
            let mut settings = IngestSettings::new(
                "127.0.0.1",
                broker.ingest.port(),
                authority.chain_pem().into_bytes(),
                ingest.issued.cert_pem.into_bytes(),
                ingest.key_pem.into_bytes(),
            );
            settings.max_message = crate::broker::MAX_MESSAGE;
            settings
        }
        BrokerChoice::External { host, port } => {
            let ca = match &config.broker_ca {
                Some(path) => {
                    std::fs::read(path).with_context(|| format!("reading FLEET_BROKER_CA {}", path.display()))?
                }
                None => authority.chain_pem().into_bytes(),
            };
            let (cert, key) = match (&config.ingest_cert, &config.ingest_key) {
                (Some(cert), Some(key)) => (
                    std::fs::read(cert).with_context(|| format!("reading FLEET_INGEST_CERT {}", cert.display()))?,
                    std::fs::read(key).with_context(|| format!("reading FLEET_INGEST_KEY {}", key.display()))?,
                ),
                _ => {
                    let ingest =
                        authority.issue_generated(&identity, now, validity).context("the ingest's certificate")?;
                    (ingest.issued.cert_pem.into_bytes(), ingest.key_pem.into_bytes())
                }
            };
            IngestSettings::new(host.clone(), *port, ca, cert, key)
        }
    };
    settings.batch_size = config.batch_size;
    settings.batch_linger = config.batch_linger;
    settings.inflight = config.inflight;
    settings.limits = config.limits.clone();
    settings.client_id = config.ingest_client_id.clone();
    settings.replicated = config.replicated;
    Ok(settings)
}

/// What `serve` prints once it is up: where it listens and how to register a first bike.
pub fn banner(running: &Running, tokens: usize) -> String {
    let api = format!("http://{}", running.api);
    let mut text = format!(
        "fleet-telemetry is up.\n  API:    {api}/api/v1 (OpenAPI at {api}/api/openapi.json)\n  Broker: {} (bikes connect with their own certificates)\n",
        running.broker_url
    );
    if tokens == 0 {
        text.push_str(
            "\nNo API token exists yet. To register a first bike:\n\
             \x20 1. fleet-telemetry admin create-token --name me --scope admin\n",
        );
    } else {
        text.push_str("\nTo register a bike (with a token from `fleet-telemetry admin create-token`):\n");
    }
    text.push_str(&format!(
        "  2. curl -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' \\\n\
         \x20      -d '{{\"serial\":\"SN-0001\",\"model\":\"City 3\",\"firmware_version\":\"1.0.0\"}}' {api}/api/v1/bikes\n\
         \x20 3. curl -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' -d '{{}}' \\\n\
         \x20      {api}/api/v1/bikes/<device_id>/certificates   (the bike's certificate and key, shown once)\n\
         Or let simulated bikes ride: fleet-sim --api {api} --token $TOKEN --bikes 5\n",
    ));
    text
}
