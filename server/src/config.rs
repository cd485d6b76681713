//! Typed configuration: built-in defaults, then an optional TOML file, then the environment.
//!
//! Every setting has a default that runs with nothing configured (SQLite and keys in
//! `./data`, mail to the log). The documented environment variables override the file.

use std::{
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

pub use fleetplane_common::config::ConfigError;
use fleetplane_common::config::{between_one_and, invalid, parse_number, process_env, read_file};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use url::Url;

/// A configuration value that must never be printed: `Debug` and `Display` show `[redacted]`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The plaintext, for the one place that needs it (a connection, a key derivation).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("[redacted]")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SignupMode {
    Open,
    Closed,
}

/// A limit of `max` requests per `window_secs`, counted per client IP or per account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct Limit {
    pub max: u32,
    pub window_secs: u64,
}

impl Limit {
    pub const fn new(max: u32, window_secs: u64) -> Self {
        Self { max, window_secs }
    }

    pub fn window(&self) -> Duration {
        Duration::from_secs(self.window_secs)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimits {
    /// `false` turns every limit off (load tests); `FLEETPLANE_RATE_LIMITS=off` does the same.
    pub enabled: bool,
    pub login_per_ip: Limit,
    /// Sign-ins to one account from one address: the strict limit.
    pub login_per_account_ip: Limit,
    /// Sign-ins to one account from anywhere; the owner's own browser (its device cookie, left
    /// by an earlier successful sign-in) is exempt, so guessing from elsewhere cannot lock the
    /// owner out.
    pub login_per_account: Limit,
    pub signup_per_ip: Limit,
    /// Sign-ups naming one address, whether or not it has an account (each one sends it mail).
    pub signup_per_address: Limit,
    pub resend_per_ip: Limit,
    pub resend_per_account: Limit,
    /// Password reset requests from one client address.
    pub reset_per_ip: Limit,
    /// Password reset requests naming one address.
    pub reset_per_address: Limit,
    /// Invitations one member sends (each one is an email to an address of their choosing).
    pub invite_per_user: Limit,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            enabled: true,
            login_per_ip: Limit::new(30, 60),
            login_per_account_ip: Limit::new(10, 60),
            login_per_account: Limit::new(20, 600),
            signup_per_ip: Limit::new(20, 3600),
            resend_per_ip: Limit::new(10, 3600),
            signup_per_address: Limit::new(5, 3600),
            resend_per_account: Limit::new(3, 3600),
            reset_per_ip: Limit::new(10, 3600),
            reset_per_address: Limit::new(3, 3600),
            invite_per_user: Limit::new(50, 3600),
        }
    }
}

/// The server's configuration. See the README's "Configuration" table for every key.
#[derive(Clone, Debug, Serialize)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: Secret,
    /// The address users reach the server at: links in emails, and the cookies' `Secure` flag.
    pub public_url: Url,
    pub smtp_url: Option<Secret>,
    pub mail_from: String,
    pub signup: SignupMode,
    /// Signs session cookies. Absent: a random key is generated into the data dir on first start.
    pub session_secret: Option<Secret>,
    pub session_ttl: Duration,
    /// How long an invitation to an organization can be accepted.
    pub invitation_ttl: Duration,
    /// Built UI assets (`pkg/fleetplane_web.js` and `.wasm`), produced by `cargo xtask build-ui`.
    pub site_dir: PathBuf,
    /// The reverse proxies whose `X-Forwarded-For` is believed (addresses or CIDRs). The
    /// client is the rightmost address in it that is not one of them; a request from any other
    /// peer is taken at its own address.
    pub trusted_proxies: Vec<IpNet>,
    /// The dev outbox (`/api/v1/dev/outbox`) on or off; unset: see [`Config::dev_outbox`].
    pub dev_outbox: Option<bool>,
    /// How many argon2 hashes may run at once; the rest wait, so logins cannot starve the server.
    pub password_hash_concurrency: usize,
    pub rate_limits: RateLimits,
    /// Master keys for secrets at rest, base64, comma-separated, newest first. Absent: a key is
    /// generated into `<data dir>/master.key` on first start.
    pub master_keys: Option<Secret>,
    pub cloud: CloudSettings,
    pub runs: RunSettings,
    /// Google sign-in, when a client id is configured.
    pub google: Option<GoogleSettings>,
    /// Redis for the bus between replicas (`redis://…` or `rediss://…`); none: in-process.
    pub redis_url: Option<Secret>,
    pub live: LiveSettings,
    pub retention: RetentionSettings,
    pub http: HttpSettings,
    /// Lets Prometheus read `/metrics` from another host with `Authorization: Bearer <token>`;
    /// without it only direct loopback clients may.
    pub metrics_token: Option<Secret>,
}

/// How long a connection may keep the server waiting.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// A request's head must have arrived this long after its first byte (a new connection's,
    /// after it was accepted).
    pub header_timeout_secs: u64,
    /// A request's body must have arrived this long after its head.
    pub body_timeout_secs: u64,
    /// A kept-alive connection with no request is closed after this long.
    pub idle_timeout_secs: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self { header_timeout_secs: 10, body_timeout_secs: 60, idle_timeout_secs: 60 }
    }
}

impl HttpSettings {
    pub fn header_timeout(&self) -> Duration {
        Duration::from_secs(self.header_timeout_secs)
    }

    pub fn body_timeout(&self) -> Duration {
        Duration::from_secs(self.body_timeout_secs)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }
}

/// The live streams (SSE).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LiveSettings {
    /// Open streams one user may hold at once (tabs, scripts); more get 429.
    pub max_streams_per_user: usize,
    /// A comment line is sent this often so that proxies and browsers keep the stream open.
    pub heartbeat_secs: u64,
    /// Events a server keeps for its slowest stream; a stream further behind is told to resync.
    pub backlog: usize,
}

impl Default for LiveSettings {
    fn default() -> Self {
        Self { max_streams_per_user: 10, heartbeat_secs: 15, backlog: 1024 }
    }
}

/// What the janitor ([`crate::janitor`]) deletes, and how often it looks.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionSettings {
    /// Seconds between two passes; the first runs when the worker starts.
    pub interval_secs: u64,
    /// Delivered mail is deleted this many days after its delivery.
    pub outbox_days: u64,
    /// Events older than this are deleted, except the newest `live.backlog`.
    pub events_days: u64,
    /// Terraform state versions kept per cluster, the current one among them.
    pub state_versions_keep: u64,
    /// The logs of runs that finished longer ago than this are deleted, except the logs of each
    /// cluster's latest run.
    pub run_logs_days: u64,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self { interval_secs: 3600, outbox_days: 7, events_days: 30, state_versions_keep: 20, run_logs_days: 90 }
    }
}

impl RetentionSettings {
    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_secs)
    }
}

/// Google's OpenID issuer; [`GoogleSettings::issuer`] points elsewhere only for tests or other
/// OpenID providers.
pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";

/// Sign-in with Google (or another OpenID provider at `issuer`): the OAuth client registered
/// for this server, whose redirect URI is `<public url>api/v1/auth/google/callback`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GoogleSettings {
    pub client_id: String,
    pub client_secret: Secret,
    /// The issuer, without a trailing slash; its `/.well-known/openid-configuration` names
    /// the endpoints.
    pub issuer: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileGoogle {
    client_id: Option<String>,
    client_secret: Option<Secret>,
    issuer: Option<String>,
}

/// Which executor runs provisioning jobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorChoice {
    /// Docker when its engine answers, local processes otherwise.
    Auto,
    Docker,
    Process,
}

/// How runs are carried out: workers, executors, limits.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunSettings {
    /// Runs `fleetplane serve` works on at once; 0 leaves runs to `fleetplane worker` processes.
    pub workers: usize,
    pub executor: ExecutorChoice,
    /// Provisioner images are `<image_prefix><target>:<image_tag>`.
    pub image_prefix: String,
    pub image_tag: String,
    /// Docker network mode for provisioner containers.
    pub network: String,
    pub cpus: f64,
    pub memory_mb: u64,
    /// After an interrupt, how long Terraform may take to stop before it is killed.
    pub grace_secs: u64,
    pub timeout_secs: u64,
    /// A worker must renew its hold on a run this often, or the run is taken back.
    pub lease_secs: u64,
    pub max_attempts: i32,
    /// Offer the simulated `local` target (no cloud needed).
    pub local_target: bool,
    /// The Terraform binary for the process executor.
    pub terraform: PathBuf,
    /// How provisioners reach this server's state backend; default: the public URL.
    pub state_url: Option<Url>,
    /// The largest Terraform state the state backend takes, in MiB.
    pub max_state_mb: u64,
    /// How long a run's log lines are retried while the database cannot store them, before
    /// they are given up (and the run says its log is incomplete).
    pub log_patience_secs: u64,
}

impl RunSettings {
    /// [`Self::max_state_mb`] in bytes.
    pub fn max_state_bytes(&self) -> usize {
        usize::try_from(self.max_state_mb * 1024 * 1024).unwrap_or(usize::MAX)
    }
}

impl Default for RunSettings {
    fn default() -> Self {
        Self {
            workers: 2,
            executor: ExecutorChoice::Auto,
            image_prefix: "fleetplane/provisioner-".into(),
            image_tag: "latest".into(),
            network: "bridge".into(),
            cpus: 1.0,
            memory_mb: 2048,
            grace_secs: 30,
            timeout_secs: 2 * 3600,
            lease_secs: 30,
            max_attempts: 3,
            local_target: true,
            terraform: "terraform".into(),
            state_url: None,
            max_state_mb: 64,
            log_patience_secs: 120,
        }
    }
}

/// Where the clouds are; the defaults are the real public clouds. Tests point these at local
/// emulators.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CloudSettings {
    pub aws_endpoint_url: Option<String>,
    pub aws_region: String,
    pub azure_authority_host: String,
    pub azure_arm_endpoint: String,
    /// The token endpoint GCP keys must name; keys naming another are refused.
    pub gcp_token_uri: String,
    pub gcp_storage_endpoint: String,
    pub timeout_secs: u64,
    /// PEM certificates trusted for cloud calls besides the standard roots.
    pub extra_ca_file: Option<PathBuf>,
}

impl Default for CloudSettings {
    fn default() -> Self {
        let endpoints = fleetplane_cloud::Endpoints::default();
        Self {
            aws_endpoint_url: endpoints.aws_endpoint_url,
            aws_region: endpoints.aws_region,
            azure_authority_host: endpoints.azure_authority_host,
            azure_arm_endpoint: endpoints.azure_arm_endpoint,
            gcp_token_uri: endpoints.gcp_token_uri,
            gcp_storage_endpoint: endpoints.gcp_storage_endpoint,
            timeout_secs: endpoints.timeout.as_secs(),
            extra_ca_file: None,
        }
    }
}

impl CloudSettings {
    /// The endpoints for [`fleetplane_cloud::Clouds`], reading the extra CA file if one is set.
    pub fn endpoints(&self) -> anyhow::Result<fleetplane_cloud::Endpoints> {
        let extra_ca_pem = match &self.extra_ca_file {
            Some(path) => Some(
                std::fs::read(path).map_err(|e| anyhow::anyhow!("FLEETPLANE_EXTRA_CA_FILE {}: {e}", path.display()))?,
            ),
            None => None,
        };
        Ok(fleetplane_cloud::Endpoints {
            aws_endpoint_url: self.aws_endpoint_url.clone(),
            aws_region: self.aws_region.clone(),
            azure_authority_host: self.azure_authority_host.clone(),
            azure_arm_endpoint: self.azure_arm_endpoint.clone(),
            gcp_token_uri: self.gcp_token_uri.clone(),
            gcp_storage_endpoint: self.gcp_storage_endpoint.clone(),
            timeout: Duration::from_secs(self.timeout_secs),
            extra_ca_pem,
        })
    }
}

/// The dev outbox: the mail a server without SMTP keeps instead of sending, with its
/// verification links.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DevOutbox {
    /// Not served.
    Off,
    /// Served to clients on this host that connect directly (no proxy says it forwarded the
    /// request): the default without SMTP, on a loopback listener.
    DirectLoopback,
    /// Served to whoever reaches the server: `dev_outbox = true`, for a development setup.
    On,
}

/// The TOML file's shape: every key optional, unknown keys rejected so typos are caught.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    database_url: Option<Secret>,
    public_url: Option<String>,
    smtp_url: Option<Secret>,
    mail_from: Option<String>,
    signup: Option<SignupMode>,
    session_secret: Option<Secret>,
    session_ttl_hours: Option<u64>,
    invitation_ttl_days: Option<u64>,
    site_dir: Option<PathBuf>,
    /// Replaced by `trusted_proxies`; kept to say so.
    trust_forwarded_for: Option<bool>,
    trusted_proxies: Option<Vec<String>>,
    dev_outbox: Option<bool>,
    password_hash_concurrency: Option<usize>,
    rate_limits: Option<RateLimits>,
    master_keys: Option<Secret>,
    cloud: Option<CloudSettings>,
    runs: Option<RunSettings>,
    google: Option<FileGoogle>,
    redis_url: Option<Secret>,
    live: Option<LiveSettings>,
    retention: Option<RetentionSettings>,
    http: Option<HttpSettings>,
    metrics_token: Option<Secret>,
}

impl Config {
    /// Loads the configuration from an optional file and the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::from_sources(read_file(file)?, process_env)
    }

    /// Defaults for everything, with the data directory (and so the SQLite file) at `data_dir`.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        let file = FileConfig { data_dir: Some(data_dir.into()), ..FileConfig::default() };
        Self::from_sources(file, |_| None).expect("built-in defaults are valid")
    }

    fn from_sources(file: FileConfig, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let listen_text = env("FLEETPLANE_LISTEN").or(file.listen).unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen: SocketAddr = listen_text
            .parse()
            .map_err(|e| invalid("FLEETPLANE_LISTEN", format!("`{listen_text}` is not an address:port ({e})")))?;

        let data_dir = env("FLEETPLANE_DATA_DIR").map(PathBuf::from).or(file.data_dir).unwrap_or_else(|| "data".into());

        let database_url = env("DATABASE_URL")
            .map(Secret::new)
            .or(file.database_url)
            .unwrap_or_else(|| Secret::new(format!("sqlite://{}?mode=rwc", data_dir.join("fleetplane.db").display())));
        let scheme = database_url.expose().split(':').next().unwrap_or_default();
        if !matches!(scheme, "sqlite" | "postgres" | "postgresql") {
            return Err(invalid("DATABASE_URL", "must start with sqlite:// or postgres://"));
        }

        let public_url = match env("FLEETPLANE_PUBLIC_URL").or(file.public_url) {
            Some(text) => {
                let url = Url::parse(&text)
                    .map_err(|e| invalid("FLEETPLANE_PUBLIC_URL", format!("`{text}` is not a URL ({e})")))?;
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(invalid("FLEETPLANE_PUBLIC_URL", "must be an http:// or https:// URL"));
                }
                url
            }
            None => default_public_url(listen),
        };

        let smtp_url = env("FLEETPLANE_SMTP_URL").map(Secret::new).or(file.smtp_url);
        if let Some(url) = &smtp_url {
            // The URL may carry a password: never echo it back.
            let ok = Url::parse(url.expose()).is_ok_and(|u| matches!(u.scheme(), "smtp" | "smtps"));
            if !ok {
                return Err(invalid("FLEETPLANE_SMTP_URL", "must be an smtp:// or smtps:// URL"));
            }
        }

        let mail_from = env("FLEETPLANE_MAIL_FROM")
            .or(file.mail_from)
            .unwrap_or_else(|| format!("Fleetplane <fleetplane@{}>", public_url.host_str().unwrap_or("localhost")));
        if mail_from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(invalid("FLEETPLANE_MAIL_FROM", format!("`{mail_from}` is not a mailbox")));
        }

        let signup = match env("FLEETPLANE_SIGNUP").as_deref() {
            Some("open") => SignupMode::Open,
            Some("closed") => SignupMode::Closed,
            Some(other) => {
                return Err(invalid("FLEETPLANE_SIGNUP", format!("`{other}` is not `open` or `closed`")));
            }
            None => file.signup.unwrap_or(SignupMode::Open),
        };

        let session_secret = env("FLEETPLANE_SESSION_SECRET").map(Secret::new).or(file.session_secret);
        if session_secret.as_ref().is_some_and(|s| s.expose().len() < 32) {
            return Err(invalid("FLEETPLANE_SESSION_SECRET", "must be at least 32 characters"));
        }

        let ttl_hours = match env("FLEETPLANE_SESSION_TTL_HOURS") {
            Some(text) => text
                .parse()
                .map_err(|_| invalid("FLEETPLANE_SESSION_TTL_HOURS", format!("`{text}` is not a number of hours")))?,
            None => file.session_ttl_hours.unwrap_or(7 * 24),
        };
        if ttl_hours == 0 || ttl_hours > 90 * 24 {
            return Err(invalid("FLEETPLANE_SESSION_TTL_HOURS", "must be between 1 and 2160"));
        }

        let mut invitation_days = file.invitation_ttl_days.unwrap_or(7);
        between_one_and([("FLEETPLANE_INVITATION_TTL_DAYS", &mut invitation_days, 90)], &env)?;

        let site_dir = env("FLEETPLANE_SITE_DIR").map(PathBuf::from).or(file.site_dir).unwrap_or_else(default_site_dir);

        if env("FLEETPLANE_TRUST_FORWARDED_FOR").is_some() || file.trust_forwarded_for.is_some() {
            return Err(invalid(
                "FLEETPLANE_TRUST_FORWARDED_FOR",
                "was replaced by FLEETPLANE_TRUSTED_PROXIES: list your reverse proxies' addresses or CIDRs \
                 (for a proxy on this host, 127.0.0.1)",
            ));
        }
        let trusted_proxies = match env("FLEETPLANE_TRUSTED_PROXIES") {
            Some(text) => parse_proxies(text.split(',').map(str::trim).filter(|entry| !entry.is_empty()))?,
            None => parse_proxies(file.trusted_proxies.iter().flatten().map(String::as_str))?,
        };
        let dev_outbox = match env("FLEETPLANE_DEV_OUTBOX") {
            Some(text) => Some(parse_bool("FLEETPLANE_DEV_OUTBOX", &text)?),
            None => file.dev_outbox,
        };
        if dev_outbox == Some(true) && smtp_url.is_some() {
            return Err(invalid(
                "FLEETPLANE_DEV_OUTBOX",
                "is for servers without SMTP: with FLEETPLANE_SMTP_URL set, mail is sent, not kept",
            ));
        }

        let password_hash_concurrency = file
            .password_hash_concurrency
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1)));
        if password_hash_concurrency == 0 {
            return Err(invalid("password_hash_concurrency", "must be at least 1"));
        }

        let mut rate_limits = file.rate_limits.unwrap_or_default();
        match env("FLEETPLANE_RATE_LIMITS").as_deref() {
            Some("off") => rate_limits.enabled = false,
            Some("on") | None => {}
            Some(other) => {
                return Err(invalid("FLEETPLANE_RATE_LIMITS", format!("`{other}` is not `on` or `off`")));
            }
        }

        let master_keys = env("FLEETPLANE_MASTER_KEY").map(Secret::new).or(file.master_keys);

        let mut cloud = file.cloud.unwrap_or_default();
        let urls: [(&'static str, &mut String); 5] = [
            ("FLEETPLANE_AZURE_AUTHORITY_HOST", &mut cloud.azure_authority_host),
            ("FLEETPLANE_AZURE_ARM_ENDPOINT", &mut cloud.azure_arm_endpoint),
            ("FLEETPLANE_GCP_TOKEN_URI", &mut cloud.gcp_token_uri),
            ("FLEETPLANE_GCP_STORAGE_ENDPOINT", &mut cloud.gcp_storage_endpoint),
            ("FLEETPLANE_AWS_REGION", &mut cloud.aws_region),
        ];
        for (key, value) in urls {
            if let Some(text) = env(key) {
                *value = text;
            }
        }
        if let Some(url) = env("FLEETPLANE_AWS_ENDPOINT_URL") {
            cloud.aws_endpoint_url = Some(url);
        }
        for (key, url) in [
            ("FLEETPLANE_AWS_ENDPOINT_URL", cloud.aws_endpoint_url.as_deref()),
            ("FLEETPLANE_AZURE_AUTHORITY_HOST", Some(cloud.azure_authority_host.as_str())),
            ("FLEETPLANE_AZURE_ARM_ENDPOINT", Some(cloud.azure_arm_endpoint.as_str())),
            ("FLEETPLANE_GCP_TOKEN_URI", Some(cloud.gcp_token_uri.as_str())),
            ("FLEETPLANE_GCP_STORAGE_ENDPOINT", Some(cloud.gcp_storage_endpoint.as_str())),
        ] {
            if let Some(url) = url
                && !Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
            {
                return Err(invalid(key, format!("`{url}` is not an http(s) URL")));
            }
        }
        if let Some(text) = env("FLEETPLANE_CLOUD_TIMEOUT_SECS") {
            cloud.timeout_secs = text.parse().map_err(|_| {
                invalid("FLEETPLANE_CLOUD_TIMEOUT_SECS", format!("`{text}` is not a number of seconds"))
            })?;
        }
        if !(1..=300).contains(&cloud.timeout_secs) {
            return Err(invalid("FLEETPLANE_CLOUD_TIMEOUT_SECS", "must be between 1 and 300"));
        }
        if let Some(path) = env("FLEETPLANE_EXTRA_CA_FILE") {
            cloud.extra_ca_file = Some(PathBuf::from(path));
        }

        let runs = run_settings(file.runs.unwrap_or_default(), &env)?;
        let google = google_settings(file.google.unwrap_or_default(), &env)?;
        let redis_url = env("REDIS_URL").map(Secret::new).or(file.redis_url);
        if let Some(url) = &redis_url {
            // The URL may carry a password: never echo it back.
            let ok = Url::parse(url.expose()).is_ok_and(|u| matches!(u.scheme(), "redis" | "rediss"));
            if !ok {
                return Err(invalid("REDIS_URL", "must be a redis:// or rediss:// URL"));
            }
        }
        let mut live = file.live.unwrap_or_default();
        if let Some(text) = env("FLEETPLANE_SSE_MAX_STREAMS_PER_USER") {
            live.max_streams_per_user = parse_number("FLEETPLANE_SSE_MAX_STREAMS_PER_USER", &text)?;
        }
        if let Some(text) = env("FLEETPLANE_SSE_HEARTBEAT_SECS") {
            live.heartbeat_secs = parse_number("FLEETPLANE_SSE_HEARTBEAT_SECS", &text)?;
        }
        if !(1..=100_000).contains(&live.max_streams_per_user) {
            return Err(invalid("FLEETPLANE_SSE_MAX_STREAMS_PER_USER", "must be between 1 and 100000"));
        }
        if !(1..=300).contains(&live.heartbeat_secs) {
            return Err(invalid("FLEETPLANE_SSE_HEARTBEAT_SECS", "must be between 1 and 300"));
        }
        if !(16..=1_000_000).contains(&live.backlog) {
            return Err(invalid("live.backlog", "must be between 16 and 1000000"));
        }
        let retention = retention_settings(file.retention.unwrap_or_default(), &env)?;
        let http = http_settings(file.http.unwrap_or_default(), &env)?;

        let metrics_token = env("FLEETPLANE_METRICS_TOKEN").map(Secret::new).or(file.metrics_token);
        if metrics_token.as_ref().is_some_and(|token| token.expose().len() < 32) {
            return Err(invalid("FLEETPLANE_METRICS_TOKEN", "must be at least 32 characters"));
        }

        Ok(Self {
            listen,
            data_dir,
            database_url,
            public_url,
            smtp_url,
            mail_from,
            signup,
            session_secret,
            session_ttl: Duration::from_secs(ttl_hours * 3600),
            invitation_ttl: Duration::from_secs(invitation_days * 24 * 3600),
            site_dir,
            trusted_proxies,
            dev_outbox,
            password_hash_concurrency,
            rate_limits,
            master_keys,
            cloud,
            runs,
            google,
            redis_url,
            live,
            retention,
            http,
            metrics_token,
        })
    }

    /// Who may read the dev outbox: none with SMTP configured (mail is sent, not kept);
    /// otherwise as `dev_outbox` says, or by default the direct clients on this host of a server
    /// that listens on loopback.
    pub fn dev_outbox(&self) -> DevOutbox {
        match self.dev_outbox {
            _ if self.smtp_url.is_some() => DevOutbox::Off,
            Some(true) => DevOutbox::On,
            Some(false) => DevOutbox::Off,
            None if self.listen.ip().is_loopback() => DevOutbox::DirectLoopback,
            None => DevOutbox::Off,
        }
    }

    pub fn signup_open(&self) -> bool {
        self.signup == SignupMode::Open
    }

    /// Cookies get the `Secure` attribute exactly when users reach us over https.
    pub fn secure_cookies(&self) -> bool {
        self.public_url.scheme() == "https"
    }

    pub fn is_postgres(&self) -> bool {
        fleetplane_common::db::is_postgres(self.database_url.expose())
    }

    /// The effective configuration as TOML, secrets shown as `[redacted]`.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render configuration: {e}\n"))
    }
}

fn run_settings(mut runs: RunSettings, env: &impl Fn(&str) -> Option<String>) -> Result<RunSettings, ConfigError> {
    if let Some(text) = env("FLEETPLANE_WORKERS") {
        runs.workers = parse_number("FLEETPLANE_WORKERS", &text)?;
    }
    if let Some(text) = env("FLEETPLANE_EXECUTOR") {
        runs.executor = match text.as_str() {
            "auto" => ExecutorChoice::Auto,
            "docker" => ExecutorChoice::Docker,
            "process" => ExecutorChoice::Process,
            other => return Err(invalid("FLEETPLANE_EXECUTOR", format!("`{other}` is not auto, docker or process"))),
        };
    }
    let strings: [(&'static str, &mut String); 3] = [
        ("FLEETPLANE_PROVISIONER_IMAGE_PREFIX", &mut runs.image_prefix),
        ("FLEETPLANE_PROVISIONER_TAG", &mut runs.image_tag),
        ("FLEETPLANE_RUN_NETWORK", &mut runs.network),
    ];
    for (key, value) in strings {
        if let Some(text) = env(key) {
            *value = text;
        }
    }
    if let Some(text) = env("FLEETPLANE_RUN_CPUS") {
        runs.cpus = parse_number("FLEETPLANE_RUN_CPUS", &text)?;
    }
    let numbers: [(&'static str, &mut u64); 6] = [
        ("FLEETPLANE_RUN_LOG_PATIENCE_SECS", &mut runs.log_patience_secs),
        ("FLEETPLANE_RUN_MAX_STATE_MB", &mut runs.max_state_mb),
        ("FLEETPLANE_RUN_MEMORY_MB", &mut runs.memory_mb),
        ("FLEETPLANE_RUN_GRACE_SECS", &mut runs.grace_secs),
        ("FLEETPLANE_RUN_TIMEOUT_SECS", &mut runs.timeout_secs),
        ("FLEETPLANE_RUN_LEASE_SECS", &mut runs.lease_secs),
    ];
    for (key, value) in numbers {
        if let Some(text) = env(key) {
            *value = parse_number(key, &text)?;
        }
    }
    if let Some(text) = env("FLEETPLANE_RUN_MAX_ATTEMPTS") {
        runs.max_attempts = parse_number("FLEETPLANE_RUN_MAX_ATTEMPTS", &text)?;
    }
    if let Some(text) = env("FLEETPLANE_LOCAL_TARGET") {
        runs.local_target = parse_bool("FLEETPLANE_LOCAL_TARGET", &text)?;
    }
    if let Some(text) = env("FLEETPLANE_TERRAFORM") {
        runs.terraform = PathBuf::from(text);
    }
    if let Some(text) = env("FLEETPLANE_STATE_URL") {
        runs.state_url = Some(
            Url::parse(&text).map_err(|e| invalid("FLEETPLANE_STATE_URL", format!("`{text}` is not a URL ({e})")))?,
        );
    }
    if !(runs.cpus > 0.0 && runs.cpus <= 64.0) {
        return Err(invalid("FLEETPLANE_RUN_CPUS", "must be above 0 and at most 64"));
    }
    if runs.memory_mb < 64 {
        return Err(invalid("FLEETPLANE_RUN_MEMORY_MB", "must be at least 64"));
    }
    if !(1..=1024).contains(&runs.max_state_mb) {
        return Err(invalid("FLEETPLANE_RUN_MAX_STATE_MB", "must be between 1 and 1024"));
    }
    if !(5..=3600).contains(&runs.lease_secs) {
        return Err(invalid("FLEETPLANE_RUN_LEASE_SECS", "must be between 5 and 3600"));
    }
    if runs.log_patience_secs > 24 * 3600 {
        return Err(invalid("FLEETPLANE_RUN_LOG_PATIENCE_SECS", "must be at most 86400 (a day)"));
    }
    if runs.timeout_secs < 10 {
        return Err(invalid("FLEETPLANE_RUN_TIMEOUT_SECS", "must be at least 10"));
    }
    if !(1..=20).contains(&runs.max_attempts) {
        return Err(invalid("FLEETPLANE_RUN_MAX_ATTEMPTS", "must be between 1 and 20"));
    }
    if runs.workers > 64 {
        return Err(invalid("FLEETPLANE_WORKERS", "must be at most 64"));
    }
    Ok(runs)
}

/// At most a hundred years: longer is "forever", and day counts stay far from overflowing dates.
const MAX_DAYS: u64 = 36_500;

fn http_settings(mut http: HttpSettings, env: &impl Fn(&str) -> Option<String>) -> Result<HttpSettings, ConfigError> {
    let settings = [
        ("FLEETPLANE_HTTP_HEADER_TIMEOUT_SECS", &mut http.header_timeout_secs, 3600),
        ("FLEETPLANE_HTTP_BODY_TIMEOUT_SECS", &mut http.body_timeout_secs, 3600),
        ("FLEETPLANE_HTTP_IDLE_TIMEOUT_SECS", &mut http.idle_timeout_secs, 3600),
    ];
    between_one_and(settings, env)?;
    Ok(http)
}

/// Takes each setting from the environment when it is there, and checks it is between 1 and
/// its maximum: zero would mean no time at all, or keeping nothing, which is a mistake rather
/// than a choice. Read signed, so that a negative value is told the range rather than "not a
/// number".
fn retention_settings(
    mut retention: RetentionSettings,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<RetentionSettings, ConfigError> {
    let settings = [
        ("FLEETPLANE_RETENTION_INTERVAL_SECS", &mut retention.interval_secs, 7 * 24 * 3600),
        ("FLEETPLANE_RETENTION_OUTBOX_DAYS", &mut retention.outbox_days, MAX_DAYS),
        ("FLEETPLANE_RETENTION_EVENTS_DAYS", &mut retention.events_days, MAX_DAYS),
        ("FLEETPLANE_RETENTION_STATE_VERSIONS_KEEP", &mut retention.state_versions_keep, 1_000_000),
        ("FLEETPLANE_RETENTION_RUN_LOGS_DAYS", &mut retention.run_logs_days, MAX_DAYS),
    ];
    between_one_and(settings, env)?;
    Ok(retention)
}

fn google_settings(
    file: FileGoogle,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Option<GoogleSettings>, ConfigError> {
    let client_id = env("FLEETPLANE_GOOGLE_CLIENT_ID").or(file.client_id).filter(|id| !id.trim().is_empty());
    let client_secret = env("FLEETPLANE_GOOGLE_CLIENT_SECRET").map(Secret::new).or(file.client_secret);
    let issuer = env("FLEETPLANE_GOOGLE_ISSUER").or(file.issuer).unwrap_or_else(|| GOOGLE_ISSUER.to_owned());
    let Some(client_id) = client_id else {
        if client_secret.is_some() {
            return Err(invalid("FLEETPLANE_GOOGLE_CLIENT_ID", "is required when a client secret is set"));
        }
        return Ok(None);
    };
    let client_secret = client_secret
        .filter(|secret| !secret.expose().is_empty())
        .ok_or_else(|| invalid("FLEETPLANE_GOOGLE_CLIENT_SECRET", "is required when a client id is set"))?;
    let url = Url::parse(&issuer)
        .map_err(|e| invalid("FLEETPLANE_GOOGLE_ISSUER", format!("`{issuer}` is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") || url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("FLEETPLANE_GOOGLE_ISSUER", format!("`{issuer}` is not an http(s) issuer URL")));
    }
    Ok(Some(GoogleSettings {
        client_id: client_id.trim().to_owned(),
        client_secret,
        issuer: issuer.trim_end_matches('/').to_owned(),
    }))
}

/// Proxy addresses or CIDRs: `10.0.0.7`, `10.0.0.0/8`, `::1`.
fn parse_proxies<'a>(entries: impl Iterator<Item = &'a str>) -> Result<Vec<IpNet>, ConfigError> {
    entries
        .map(|entry| {
            entry.parse::<IpNet>().or_else(|_| entry.parse::<std::net::IpAddr>().map(IpNet::from)).map_err(|_| {
                invalid(
                    "FLEETPLANE_TRUSTED_PROXIES",
                    format!("`{entry}` is not an IP address or CIDR (like 10.0.0.0/8)"),
                )
            })
        })
        .collect()
}

fn parse_bool(key: &'static str, text: &str) -> Result<bool, ConfigError> {
    match text {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        other => Err(invalid(key, format!("`{other}` is not true or false"))),
    }
}

fn default_public_url(listen: SocketAddr) -> Url {
    let host = if listen.ip().is_unspecified() { "localhost".to_owned() } else { listen.ip().to_string() };
    let host = if listen.is_ipv6() && !listen.ip().is_unspecified() { format!("[{host}]") } else { host };
    Url::parse(&format!("http://{host}:{}/", listen.port())).expect("a host and port form a valid URL")
}

/// Where `cargo xtask build-ui` puts the UI: `<target>/site`, next to `<target>/<profile>/fleetplane`.
fn default_site_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("site")))
        .filter(|dir| dir.is_dir())
        .unwrap_or_else(|| "site".into())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn load(file: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let file: FileConfig = toml::from_str(file).expect("test TOML parses");
        Config::from_sources(file, |k| env.get(k).cloned())
    }

    #[test]
    fn runs_with_nothing_configured() {
        let config = load("", &[]).expect("defaults are valid");
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.public_url.as_str(), "http://127.0.0.1:8080/");
        assert!(config.database_url.expose().starts_with("sqlite://data/fleetplane.db"));
        assert!(config.signup_open());
        assert!(!config.secure_cookies());
        assert!(config.smtp_url.is_none());
    }

    #[test]
    fn environment_overrides_the_file() {
        let config = load(
            "listen = \"127.0.0.1:9000\"\nsignup = \"open\"\n",
            &[("FLEETPLANE_LISTEN", "127.0.0.1:9100"), ("FLEETPLANE_SIGNUP", "closed")],
        )
        .expect("valid");
        assert_eq!(config.listen.port(), 9100);
        assert!(!config.signup_open());
    }

    #[test]
    fn https_public_url_makes_cookies_secure() {
        let config = load("", &[("FLEETPLANE_PUBLIC_URL", "https://fleet.example.com")]).expect("valid");
        assert!(config.secure_cookies());
    }

    #[test]
    fn a_metrics_token_must_be_long_and_prints_redacted() {
        let error = load("", &[("FLEETPLANE_METRICS_TOKEN", "short")]).expect_err("too short");
        assert!(error.to_string().contains("FLEETPLANE_METRICS_TOKEN"), "{error}");
        let token = "prometheus-0123456789abcdefghijklmnop";
        let config = load(&format!("metrics_token = \"{token}\"\n"), &[]).expect("valid");
        assert_eq!(config.metrics_token.as_ref().map(Secret::expose), Some(token));
        assert!(!config.to_redacted_toml().contains(token));
    }

    #[test]
    fn secrets_print_redacted() {
        let config = load(
            "",
            &[
                ("DATABASE_URL", "postgres://fp:hunter2-db@localhost/fp"),
                ("FLEETPLANE_SMTP_URL", "smtp://mail:hunter2-smtp@localhost:25"),
                ("FLEETPLANE_SESSION_SECRET", "hunter2-session-0123456789abcdefghijkl"),
                ("FLEETPLANE_MASTER_KEY", "hunter2-master-key"),
            ],
        )
        .expect("valid");
        for shown in [format!("{config:?}"), config.to_redacted_toml()] {
            assert!(!shown.contains("hunter2"), "secret leaked in: {shown}");
            assert!(shown.contains("[redacted]"));
        }
    }

    #[test]
    fn bad_values_are_named_in_the_error() {
        let cases = [
            ("FLEETPLANE_LISTEN", "not-an-address"),
            ("DATABASE_URL", "mysql://x"),
            ("FLEETPLANE_PUBLIC_URL", "ftp://x"),
            ("FLEETPLANE_SIGNUP", "maybe"),
            ("FLEETPLANE_SMTP_URL", "http://x"),
            ("FLEETPLANE_SESSION_SECRET", "short"),
            ("FLEETPLANE_SESSION_TTL_HOURS", "0"),
            ("FLEETPLANE_RATE_LIMITS", "sometimes"),
            ("FLEETPLANE_AWS_ENDPOINT_URL", "not a url"),
            ("FLEETPLANE_AZURE_AUTHORITY_HOST", "ftp://x"),
            ("FLEETPLANE_CLOUD_TIMEOUT_SECS", "0"),
            ("FLEETPLANE_RUN_LOG_PATIENCE_SECS", "86401"),
            ("FLEETPLANE_RUN_LOG_PATIENCE_SECS", "soon"),
        ];
        for (key, value) in cases {
            let err = load("", &[(key, value)]).expect_err(key);
            assert!(err.to_string().starts_with(key), "{key}: {err}");
        }
    }

    #[test]
    fn cloud_endpoints_default_to_the_real_clouds_and_can_be_overridden() {
        let config = load("", &[]).expect("valid");
        assert_eq!(config.cloud.azure_authority_host, "https://login.microsoftonline.com");
        assert_eq!(config.cloud.aws_endpoint_url, None);
        let config = load(
            "[cloud]\ngcp_storage_endpoint = \"http://127.0.0.1:9023\"\n",
            &[("FLEETPLANE_AWS_ENDPOINT_URL", "http://127.0.0.1:5000"), ("FLEETPLANE_CLOUD_TIMEOUT_SECS", "3")],
        )
        .expect("valid");
        assert_eq!(config.cloud.aws_endpoint_url.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(config.cloud.gcp_storage_endpoint, "http://127.0.0.1:9023");
        assert_eq!(config.cloud.endpoints().expect("endpoints").timeout, Duration::from_secs(3));
    }

    #[test]
    fn google_sign_in_is_off_without_a_client_id_and_needs_its_secret() {
        assert_eq!(load("", &[]).expect("valid").google, None);
        let config = load(
            "[google]\nclient_id = \"abc.apps.googleusercontent.com\"\n",
            &[("FLEETPLANE_GOOGLE_CLIENT_SECRET", "hunter2-google")],
        )
        .expect("valid");
        let google = config.google.as_ref().expect("configured");
        assert_eq!(google.issuer, GOOGLE_ISSUER);
        assert_eq!(google.client_id, "abc.apps.googleusercontent.com");
        assert!(!config.to_redacted_toml().contains("hunter2"));

        let custom = load(
            "",
            &[
                ("FLEETPLANE_GOOGLE_CLIENT_ID", "id"),
                ("FLEETPLANE_GOOGLE_CLIENT_SECRET", "s"),
                ("FLEETPLANE_GOOGLE_ISSUER", "http://127.0.0.1:9000/"),
            ],
        )
        .expect("valid");
        assert_eq!(custom.google.expect("configured").issuer, "http://127.0.0.1:9000");

        let cases: [(&[(&str, &str)], &str); 3] = [
            (&[("FLEETPLANE_GOOGLE_CLIENT_ID", "id")], "FLEETPLANE_GOOGLE_CLIENT_SECRET"),
            (&[("FLEETPLANE_GOOGLE_CLIENT_SECRET", "s")], "FLEETPLANE_GOOGLE_CLIENT_ID"),
            (
                &[
                    ("FLEETPLANE_GOOGLE_CLIENT_ID", "id"),
                    ("FLEETPLANE_GOOGLE_CLIENT_SECRET", "s"),
                    ("FLEETPLANE_GOOGLE_ISSUER", "ftp://x"),
                ],
                "FLEETPLANE_GOOGLE_ISSUER",
            ),
        ];
        for (env, key) in cases {
            let err = load("", env).expect_err(key);
            assert!(err.to_string().starts_with(key), "{key}: {err}");
        }
    }

    #[test]
    fn unknown_file_keys_are_rejected() {
        assert!(toml::from_str::<FileConfig>("lisen = \"x\"").is_err());
        assert!(toml::from_str::<FileConfig>("[retention]\nevent_days = 3").is_err());
    }

    #[test]
    fn retention_has_defaults_the_file_and_the_environment_override() {
        let defaults = load("", &[]).expect("valid").retention;
        assert_eq!(defaults, RetentionSettings::default());
        assert_eq!(
            (defaults.interval_secs, defaults.outbox_days, defaults.events_days),
            (3600, 7, 30),
            "hourly; a week of delivered mail; a month of events"
        );
        assert_eq!((defaults.state_versions_keep, defaults.run_logs_days), (20, 90));

        let config = load(
            "[retention]\ninterval_secs = 600\nevents_days = 10\nstate_versions_keep = 5\n",
            &[("FLEETPLANE_RETENTION_EVENTS_DAYS", "3"), ("FLEETPLANE_RETENTION_RUN_LOGS_DAYS", "30")],
        )
        .expect("valid");
        let retention = &config.retention;
        assert_eq!(retention.interval(), Duration::from_secs(600));
        assert_eq!(retention.events_days, 3, "the environment wins over the file");
        assert_eq!((retention.state_versions_keep, retention.run_logs_days, retention.outbox_days), (5, 30, 7));
        let printed = config.to_redacted_toml();
        assert!(printed.contains("[retention]") && printed.contains("events_days = 3"), "{printed}");
    }

    #[test]
    fn retention_refuses_zero_negative_and_absurd_values() {
        let keys = [
            "FLEETPLANE_RETENTION_INTERVAL_SECS",
            "FLEETPLANE_RETENTION_OUTBOX_DAYS",
            "FLEETPLANE_RETENTION_EVENTS_DAYS",
            "FLEETPLANE_RETENTION_STATE_VERSIONS_KEEP",
            "FLEETPLANE_RETENTION_RUN_LOGS_DAYS",
        ];
        for key in keys {
            for value in ["0", "-1", "99999999"] {
                let err = load("", &[(key, value)]).expect_err(key);
                assert!(err.to_string().starts_with(&format!("{key}: must be between 1 and ")), "{key}={value}: {err}");
            }
            let err = load("", &[(key, "soon")]).expect_err(key);
            assert_eq!(err.to_string(), format!("{key}: `soon` is not a number"));
        }
        let err = load("[retention]\nstate_versions_keep = 0\n", &[]).expect_err("zero in the file");
        assert_eq!(err.to_string(), "FLEETPLANE_RETENTION_STATE_VERSIONS_KEEP: must be between 1 and 1000000");
        assert!(toml::from_str::<FileConfig>("[retention]\nrun_logs_days = -5\n").is_err(), "negative in the file");
    }

    #[test]
    fn the_state_limit_is_in_mib_and_bounded() {
        let config = load("[runs]\nmax_state_mb = 8\n", &[]).expect("valid");
        assert_eq!(config.runs.max_state_bytes(), 8 * 1024 * 1024);
        assert_eq!(load("", &[]).expect("defaults").runs.max_state_mb, 64);
        for value in ["0", "1025"] {
            let err = load("", &[("FLEETPLANE_RUN_MAX_STATE_MB", value)]).expect_err(value);
            assert_eq!(err.to_string(), "FLEETPLANE_RUN_MAX_STATE_MB: must be between 1 and 1024");
        }
    }

    #[test]
    fn trusted_proxies_are_addresses_or_cidrs_and_the_old_switch_says_what_replaced_it() {
        let config = load("trusted_proxies = [\"10.0.0.0/8\", \"192.0.2.7\"]\n", &[]).expect("valid");
        assert_eq!(
            config.trusted_proxies,
            vec!["10.0.0.0/8".parse::<IpNet>().expect("cidr"), "192.0.2.7/32".parse().expect("cidr")]
        );
        let config = load("", &[("FLEETPLANE_TRUSTED_PROXIES", " ::1, 172.16.0.0/12 ")]).expect("valid");
        assert_eq!(config.trusted_proxies.len(), 2);
        assert!(load("", &[]).expect("defaults").trusted_proxies.is_empty(), "none by default");
        let err = load("", &[("FLEETPLANE_TRUSTED_PROXIES", "10.0.0.0/33")]).expect_err("bad cidr");
        assert!(err.to_string().contains("`10.0.0.0/33` is not an IP address or CIDR"), "{err}");
        for old in [load("", &[("FLEETPLANE_TRUST_FORWARDED_FOR", "true")]), load("trust_forwarded_for = true\n", &[])]
        {
            let err = old.expect_err("replaced");
            assert!(err.to_string().contains("replaced by FLEETPLANE_TRUSTED_PROXIES"), "{err}");
        }
    }

    #[test]
    fn the_dev_outbox_is_there_by_default_only_without_smtp_on_loopback() {
        assert_eq!(load("", &[]).expect("defaults").dev_outbox(), DevOutbox::DirectLoopback);
        let everywhere = load("listen = \"0.0.0.0:8080\"\n", &[]).expect("valid");
        assert_eq!(everywhere.dev_outbox(), DevOutbox::Off, "a server others can reach");
        let smtp = load("smtp_url = \"smtp://127.0.0.1:25\"\n", &[]).expect("valid");
        assert_eq!(smtp.dev_outbox(), DevOutbox::Off);
        let on = load("listen = \"0.0.0.0:8080\"\n", &[("FLEETPLANE_DEV_OUTBOX", "true")]).expect("valid");
        assert_eq!(on.dev_outbox(), DevOutbox::On);
        assert_eq!(load("", &[("FLEETPLANE_DEV_OUTBOX", "false")]).expect("valid").dev_outbox(), DevOutbox::Off);
        let err = load("smtp_url = \"smtp://127.0.0.1:25\"\n", &[("FLEETPLANE_DEV_OUTBOX", "true")]).expect_err("both");
        assert!(err.to_string().starts_with("FLEETPLANE_DEV_OUTBOX: is for servers without SMTP"), "{err}");
    }

    #[test]
    fn http_timeouts_have_defaults_and_bounds() {
        let defaults = load("", &[]).expect("defaults").http;
        assert_eq!(
            (defaults.header_timeout_secs, defaults.body_timeout_secs, defaults.idle_timeout_secs),
            (10, 60, 60)
        );
        let config =
            load("[http]\nidle_timeout_secs = 5\n", &[("FLEETPLANE_HTTP_HEADER_TIMEOUT_SECS", "4")]).expect("valid");
        assert_eq!(
            (config.http.header_timeout(), config.http.idle_timeout()),
            (Duration::from_secs(4), Duration::from_secs(5))
        );
        for key in [
            "FLEETPLANE_HTTP_HEADER_TIMEOUT_SECS",
            "FLEETPLANE_HTTP_BODY_TIMEOUT_SECS",
            "FLEETPLANE_HTTP_IDLE_TIMEOUT_SECS",
        ] {
            let err = load("", &[(key, "0")]).expect_err(key);
            assert_eq!(err.to_string(), format!("{key}: must be between 1 and 3600"));
        }
    }
}
