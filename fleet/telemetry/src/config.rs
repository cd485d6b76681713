//! `fleet-telemetry serve`'s settings: built-in defaults that run with nothing set, under an
//! optional TOML file, under `FLEET_*` environment variables (the layers of
//! [`fleetplane_common::config`]). Every problem names the variable it is about.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use fleetplane_common::config::{ConfigError, between_one_and, invalid, process_env, read_file};
use serde::Deserialize;

use crate::{crl::Reload, packet::Limits, store::DEFAULT_QUARANTINE_CAP};

/// The ingest's defaults that depend on the store.
#[derive(Clone, Copy, Debug)]
pub struct IngestDefaults {
    /// The most unacknowledged messages the broker may send the ingest (`FLEET_INFLIGHT`).
    pub inflight: u64,
    /// How long a batch may wait to fill (`FLEET_BATCH_LINGER_MS`).
    pub linger_ms: u64,
}

impl IngestDefaults {
    pub const SQLITE: Self = Self { inflight: 1_000, linger_ms: 50 };
    /// ClickHouse takes a batch in hundreds of milliseconds, not tens, so the broker may hand
    /// the ingest more while one is stored; and it wants few large inserts (each makes a part
    /// to merge), so a batch waits longer to fill.
    pub const CLICKHOUSE: Self = Self { inflight: 10_000, linger_ms: 250 };
}

/// Where the telemetry is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreChoice {
    /// SQLite in the data directory: the embedded default.
    Sqlite(PathBuf),
    /// ClickHouse's HTTP interface at this URL, in this database.
    ClickHouse { url: String, database: String },
}

/// Which broker the bikes and the ingest use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrokerChoice {
    /// The broker inside this process (rumqttd), listening here, client certificates required.
    Embedded(SocketAddr),
    /// An external broker (mosquitto, EMQX) at `mqtts://host:port`.
    External { host: String, port: u16 },
}

impl BrokerChoice {
    /// The URL bikes connect to.
    pub fn url(&self) -> String {
        match self {
            BrokerChoice::Embedded(addr) => format!("mqtts://{addr}"),
            BrokerChoice::External { host, port } => format!("mqtts://{host}:{port}"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// The registry's database: SQLite (default, in the data directory) or PostgreSQL.
    pub database_url: String,
    pub store: StoreChoice,
    pub broker: BrokerChoice,
    /// The host name bikes use to reach the broker, when it differs from where it listens
    /// (behind a load balancer).
    pub broker_public_host: Option<String>,
    /// The ingest's own client certificate and key, and the CA the broker's certificate is
    /// checked against, for an external broker. Unset: the ingest gets a certificate from the
    /// fleet CA, and the broker's is checked against the fleet CA.
    pub ingest_cert: Option<PathBuf>,
    pub ingest_key: Option<PathBuf>,
    pub broker_ca: Option<PathBuf>,
    /// The ingest's MQTT client id: the broker keeps its session (what it has not yet
    /// acknowledged) under it while it is away, so it must stay the same across restarts, and
    /// differ between replicas.
    pub ingest_client_id: String,
    /// Whether several replicas run: they split the packets through a shared subscription, and
    /// share the latest states they learn through the broker (`fleet/replicas/{client
    /// id}/latest`).
    pub replicated: bool,
    /// Where the CRL is written for the broker, and how the broker is told.
    pub crl_path: PathBuf,
    pub crl_reload: Reload,
    /// A bike is online if it was seen this recently.
    pub online_window: Duration,
    /// How long certificates issued without a stated validity last.
    pub certificate_validity: Duration,
    pub batch_size: usize,
    pub batch_linger: Duration,
    pub inflight: u16,
    pub quarantine_cap: u64,
    pub limits: Limits,
    /// How many registry connections the pool keeps.
    pub pool_size: u32,
    /// The SHA-256 (hex) of an admin token that whoever deploys the service holds
    /// (`FLEET_ADMIN_TOKEN_SHA256`): Fleetplane's, for its proxy. Only the hash is given, so
    /// the service's configuration holds no secret.
    pub admin_token_sha256: Option<String>,
}

/// The TOML file's shape: every key optional, unknown keys refused so typos are caught.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    store: Option<String>,
    broker: Option<String>,
    broker_listen: Option<String>,
    broker_public_host: Option<String>,
    ingest_cert: Option<PathBuf>,
    ingest_key: Option<PathBuf>,
    broker_ca: Option<PathBuf>,
    ingest_client_id: Option<String>,
    replicated: Option<bool>,
    crl_path: Option<PathBuf>,
    crl_reload: Option<String>,
    online_window_secs: Option<u64>,
    certificate_validity_days: Option<u64>,
    batch_size: Option<u64>,
    batch_linger_ms: Option<u64>,
    inflight: Option<u64>,
    quarantine_cap: Option<u64>,
    retention_days: Option<u64>,
    max_clock_skew_secs: Option<u64>,
    pool_size: Option<u64>,
    admin_token_sha256: Option<String>,
}

impl Config {
    /// The settings from `file` (if any) under the process environment, and `broker` (from
    /// `--broker`) over both.
    pub fn load(file: Option<&Path>, broker: Option<&str>) -> Result<Self, ConfigError> {
        let mut file: FileConfig = read_file(file)?;
        if let Some(broker) = broker {
            file.broker = Some(broker.to_owned());
        }
        let env = |key: &str| if key == "FLEET_BROKER" && broker.is_some() { None } else { process_env(key) };
        Self::from_sources(file, env)
    }

    /// Defaults for everything, with the data directory at `data_dir`.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        let file = FileConfig { data_dir: Some(data_dir.into()), ..FileConfig::default() };
        Self::from_sources(file, |_| None).expect("the built-in defaults are valid")
    }

    fn from_sources(file: FileConfig, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let listen = address("FLEET_LISTEN", env("FLEET_LISTEN").or(file.listen), "127.0.0.1:8090")?;
        let data_dir = env("FLEET_DATA_DIR").map(PathBuf::from).or(file.data_dir).unwrap_or_else(|| "data".into());

        let database_url = env("FLEET_DATABASE_URL")
            .or(file.database_url)
            .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", data_dir.join("registry.db").display()));
        let scheme = database_url.split(':').next().unwrap_or_default();
        if !matches!(scheme, "sqlite" | "postgres" | "postgresql") {
            return Err(invalid("FLEET_DATABASE_URL", "must start with sqlite:// or postgres://"));
        }

        let store = match env("FLEET_STORE").or(file.store).as_deref() {
            None | Some("sqlite") => StoreChoice::Sqlite(data_dir.join("telemetry.db")),
            Some(url) if url.starts_with("clickhouse://") || url.starts_with("http://") => clickhouse(url)?,
            Some(other) => {
                return Err(invalid(
                    "FLEET_STORE",
                    format!("`{other}` is not `sqlite` or a ClickHouse URL (http://host:8123/database)"),
                ));
            }
        };

        let broker = match env("FLEET_BROKER").or(file.broker) {
            None => BrokerChoice::Embedded(address(
                "FLEET_BROKER_LISTEN",
                env("FLEET_BROKER_LISTEN").or(file.broker_listen),
                "127.0.0.1:8883",
            )?),
            Some(url) => external_broker(&url)?,
        };
        let broker_public_host = env("FLEET_BROKER_PUBLIC_HOST").or(file.broker_public_host);

        let ingest_cert = env("FLEET_INGEST_CERT").map(PathBuf::from).or(file.ingest_cert);
        let ingest_key = env("FLEET_INGEST_KEY").map(PathBuf::from).or(file.ingest_key);
        if ingest_cert.is_some() != ingest_key.is_some() {
            return Err(invalid("FLEET_INGEST_CERT", "set both FLEET_INGEST_CERT and FLEET_INGEST_KEY, or neither"));
        }
        let broker_ca = env("FLEET_BROKER_CA").map(PathBuf::from).or(file.broker_ca);
        if matches!(broker, BrokerChoice::Embedded(_)) && (ingest_cert.is_some() || broker_ca.is_some()) {
            return Err(invalid(
                "FLEET_INGEST_CERT",
                "the ingest's certificate and the broker's CA are for an external broker: set FLEET_BROKER too",
            ));
        }

        let ingest_client_id =
            env("FLEET_INGEST_CLIENT_ID").or(file.ingest_client_id).unwrap_or_else(|| "fleet-ingest".to_owned());
        if ingest_client_id.is_empty()
            || ingest_client_id.len() > 64
            || !ingest_client_id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        {
            return Err(invalid("FLEET_INGEST_CLIENT_ID", "must be 1 to 64 ASCII letters, digits, `-` and `_`"));
        }

        let replicated = match env("FLEET_REPLICATED").as_deref() {
            Some("on" | "true" | "1") => true,
            Some("off" | "false" | "0") => false,
            Some(other) => return Err(invalid("FLEET_REPLICATED", format!("`{other}` is not `on` or `off`"))),
            None => file.replicated.unwrap_or(false),
        };
        if replicated && matches!(broker, BrokerChoice::Embedded(_)) {
            return Err(invalid("FLEET_REPLICATED", "is for replicas on an external broker: set FLEET_BROKER too"));
        }

        let crl_path =
            env("FLEET_CRL_PATH").map(PathBuf::from).or(file.crl_path).unwrap_or_else(|| data_dir.join("crl.pem"));
        let crl_reload = Reload::parse(&env("FLEET_CRL_RELOAD").or(file.crl_reload).unwrap_or_default())
            .map_err(|e| invalid("FLEET_CRL_RELOAD", e.to_string()))?;

        let admin_token_sha256 = env("FLEET_ADMIN_TOKEN_SHA256").or(file.admin_token_sha256);
        if admin_token_sha256.as_ref().is_some_and(|hash| {
            hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        }) {
            return Err(invalid("FLEET_ADMIN_TOKEN_SHA256", "must be a SHA-256 in lowercase hex (64 characters)"));
        }

        let mut online_window = file.online_window_secs.unwrap_or(120);
        let mut validity_days = file.certificate_validity_days.unwrap_or(365);
        let mut batch_size = file.batch_size.unwrap_or(2_000);
        let defaults = match store {
            StoreChoice::Sqlite(_) => IngestDefaults::SQLITE,
            StoreChoice::ClickHouse { .. } => IngestDefaults::CLICKHOUSE,
        };
        let mut linger_ms = file.batch_linger_ms.unwrap_or(defaults.linger_ms);
        let mut inflight = file.inflight.unwrap_or(defaults.inflight);
        let mut quarantine_cap = file.quarantine_cap.unwrap_or(DEFAULT_QUARANTINE_CAP);
        let mut retention_days = file.retention_days.unwrap_or(90);
        let mut skew = file.max_clock_skew_secs.unwrap_or(300);
        let mut pool_size = file.pool_size.unwrap_or(8);
        between_one_and(
            [
                ("FLEET_ONLINE_WINDOW_SECS", &mut online_window, 7 * 24 * 3600),
                ("FLEET_CERTIFICATE_VALIDITY_DAYS", &mut validity_days, 10 * 365),
                ("FLEET_BATCH_SIZE", &mut batch_size, 100_000),
                ("FLEET_BATCH_LINGER_MS", &mut linger_ms, 60_000),
                ("FLEET_INFLIGHT", &mut inflight, u64::from(u16::MAX)),
                ("FLEET_QUARANTINE_CAP", &mut quarantine_cap, 100_000_000),
                ("FLEET_RETENTION_DAYS", &mut retention_days, 10 * 365),
                ("FLEET_MAX_CLOCK_SKEW_SECS", &mut skew, 24 * 3600),
                ("FLEET_POOL_SIZE", &mut pool_size, 256),
            ],
            &env,
        )?;

        Ok(Self {
            listen,
            data_dir,
            database_url,
            store,
            broker,
            broker_public_host,
            ingest_cert,
            ingest_key,
            broker_ca,
            ingest_client_id,
            replicated,
            crl_path,
            crl_reload,
            online_window: Duration::from_secs(online_window),
            certificate_validity: Duration::from_secs(validity_days * 24 * 3600),
            batch_size: usize::try_from(batch_size).unwrap_or(usize::MAX),
            batch_linger: Duration::from_millis(linger_ms),
            inflight: u16::try_from(inflight).unwrap_or(u16::MAX),
            quarantine_cap,
            limits: Limits {
                max_skew: Duration::from_secs(skew),
                retention: Duration::from_secs(retention_days * 24 * 3600),
            },
            pool_size: u32::try_from(pool_size).unwrap_or(u32::MAX),
            admin_token_sha256,
        })
    }

    /// The URL bikes are told to connect to.
    pub fn broker_url(&self) -> String {
        match (&self.broker_public_host, &self.broker) {
            (Some(host), BrokerChoice::Embedded(addr)) => format!("mqtts://{host}:{}", addr.port()),
            (Some(host), BrokerChoice::External { port, .. }) => format!("mqtts://{host}:{port}"),
            (None, broker) => broker.url(),
        }
    }
}

fn address(key: &'static str, text: Option<String>, default: &str) -> Result<SocketAddr, ConfigError> {
    let text = text.unwrap_or_else(|| default.to_owned());
    text.parse().map_err(|e| invalid(key, format!("`{text}` is not an address:port ({e})")))
}

/// `clickhouse://host:port/database` or `http://host:port/database` (the HTTP interface).
fn clickhouse(url: &str) -> Result<StoreChoice, ConfigError> {
    let rest = url.strip_prefix("clickhouse://").or_else(|| url.strip_prefix("http://")).unwrap_or(url);
    let (authority, database) = rest.split_once('/').unwrap_or((rest, "fleet"));
    let database = if database.is_empty() { "fleet" } else { database };
    if authority.is_empty() || !database.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(invalid(
            "FLEET_STORE",
            format!(
                "`{url}` is not a ClickHouse URL: http://host:8123/database, the database of ASCII letters, digits and `_`"
            ),
        ));
    }
    Ok(StoreChoice::ClickHouse { url: format!("http://{authority}"), database: database.to_owned() })
}

/// `mqtts://host:port` (8883 when the port is left out).
fn external_broker(url: &str) -> Result<BrokerChoice, ConfigError> {
    let Some(rest) = url.strip_prefix("mqtts://") else {
        return Err(invalid(
            "FLEET_BROKER",
            format!("`{url}` is not an mqtts:// URL: bikes and the ingest always use TLS (mqtts://host:8883)"),
        ));
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => {
            let port = port
                .parse()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| invalid("FLEET_BROKER", format!("`{port}` in `{url}` is not a port")))?;
            (host, port)
        }
        None => (rest, 8883),
    };
    if host.is_empty() || host.contains('/') {
        return Err(invalid("FLEET_BROKER", format!("`{url}` names no host: mqtts://host:8883")));
    }
    Ok(BrokerChoice::External { host: host.to_owned(), port })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_env(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Config::from_sources(FileConfig::default(), move |key| {
            vars.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn with_nothing_set_it_runs_embedded_on_loopback() {
        let config = with_env(&[]).expect("defaults");
        assert_eq!(config.listen, "127.0.0.1:8090".parse().expect("addr"));
        assert_eq!(config.broker, BrokerChoice::Embedded("127.0.0.1:8883".parse().expect("addr")));
        assert_eq!(config.store, StoreChoice::Sqlite(PathBuf::from("data/telemetry.db")));
        assert_eq!(config.database_url, "sqlite://data/registry.db?mode=rwc");
        assert_eq!(config.crl_reload, Reload::Nothing);
        assert_eq!(config.broker_url(), "mqtts://127.0.0.1:8883");
        assert_eq!(config.certificate_validity, Duration::from_secs(365 * 24 * 3600));
        assert_eq!(config.inflight, 1_000);
        assert_eq!(config.batch_linger, Duration::from_millis(50));
    }

    #[test]
    fn an_external_broker_and_clickhouse_are_named_by_url() {
        let config = with_env(&[
            ("FLEET_BROKER", "mqtts://broker.example:8884"),
            ("FLEET_STORE", "http://127.0.0.1:8123/telemetry"),
            ("FLEET_BROKER_PUBLIC_HOST", "mqtt.fleet.example"),
        ])
        .expect("valid");
        assert_eq!(config.broker, BrokerChoice::External { host: "broker.example".into(), port: 8884 });
        assert_eq!(config.broker_url(), "mqtts://mqtt.fleet.example:8884");
        assert_eq!(
            config.store,
            StoreChoice::ClickHouse { url: "http://127.0.0.1:8123".into(), database: "telemetry".into() }
        );
        assert_eq!(config.inflight, 10_000, "ClickHouse's wider default window");
        assert_eq!(config.batch_linger, Duration::from_millis(250), "and its fewer, larger inserts");
        let set = with_env(&[("FLEET_STORE", "http://127.0.0.1:8123/telemetry"), ("FLEET_INFLIGHT", "500")]);
        assert_eq!(set.expect("valid").inflight, 500);
        let default_port = with_env(&[("FLEET_BROKER", "mqtts://broker.example")]).expect("valid");
        assert_eq!(default_port.broker, BrokerChoice::External { host: "broker.example".into(), port: 8883 });
    }

    #[test]
    fn every_bad_setting_is_refused_naming_its_variable() {
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: &[Case] = &[
            (&[("FLEET_LISTEN", "8090")], "FLEET_LISTEN", "address:port"),
            (&[("FLEET_DATABASE_URL", "mysql://x")], "FLEET_DATABASE_URL", "sqlite://"),
            (&[("FLEET_STORE", "cassandra")], "FLEET_STORE", "ClickHouse URL"),
            (&[("FLEET_STORE", "http://127.0.0.1:8123/no-dashes")], "FLEET_STORE", "database"),
            (&[("FLEET_BROKER", "mqtt://broker:1883")], "FLEET_BROKER", "always use TLS"),
            (&[("FLEET_BROKER", "mqtts://broker:http")], "FLEET_BROKER", "not a port"),
            (&[("FLEET_BROKER", "mqtts://:8883")], "FLEET_BROKER", "names no host"),
            (&[("FLEET_BROKER_LISTEN", "everywhere")], "FLEET_BROKER_LISTEN", "address:port"),
            (&[("FLEET_INGEST_CERT", "/x.pem")], "FLEET_INGEST_CERT", "or neither"),
            (&[("FLEET_INGEST_CERT", "/x.pem"), ("FLEET_INGEST_KEY", "/x.key")], "FLEET_INGEST_CERT", "FLEET_BROKER"),
            (&[("FLEET_CRL_RELOAD", "pid:1")], "FLEET_CRL_RELOAD", "above 1"),
            (&[("FLEET_INGEST_CLIENT_ID", "ingest/1")], "FLEET_INGEST_CLIENT_ID", "ASCII letters"),
            (&[("FLEET_REPLICATED", "yes")], "FLEET_REPLICATED", "`on` or `off`"),
            (&[("FLEET_REPLICATED", "on")], "FLEET_REPLICATED", "FLEET_BROKER"),
            (&[("FLEET_ONLINE_WINDOW_SECS", "0")], "FLEET_ONLINE_WINDOW_SECS", "between 1 and"),
            (&[("FLEET_BATCH_SIZE", "lots")], "FLEET_BATCH_SIZE", "not a number"),
            (&[("FLEET_INFLIGHT", "70000")], "FLEET_INFLIGHT", "between 1 and 65535"),
            (&[("FLEET_ADMIN_TOKEN_SHA256", "fltk_abc")], "FLEET_ADMIN_TOKEN_SHA256", "lowercase hex"),
            (
                &[("FLEET_ADMIN_TOKEN_SHA256", "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD")],
                "FLEET_ADMIN_TOKEN_SHA256",
                "lowercase hex",
            ),
        ];
        for (vars, key, message) in cases {
            let error = with_env(vars).expect_err("refused");
            let ConfigError::Invalid { key: named, message: text } = &error else { panic!("{error}") };
            assert_eq!(named, key, "{vars:?}: {error}");
            assert!(text.contains(message), "{vars:?}: {error}");
        }
    }

    #[test]
    fn a_broker_named_in_the_file_is_used() {
        let file = FileConfig { broker: Some("mqtts://file.example:1".into()), ..FileConfig::default() };
        let config = Config::from_sources(file, |_| None).expect("valid");
        assert_eq!(config.broker, BrokerChoice::External { host: "file.example".into(), port: 1 });
    }
}
