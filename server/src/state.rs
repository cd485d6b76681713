//! The application state every handler and background task shares.

use std::{ops::Deref, sync::Arc};

use anyhow::Context;
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use crate::{
    auth::{UserCache, google::GoogleSignIn, password::PasswordHasher, rate_limit::RateLimiter, session::Sessions},
    bus::{Bus, Signal},
    config::Config,
    crypto::Keyring,
    janitor::Tally,
    keyfile,
    live::Live,
    mail::Mailer,
    metrics::Metrics,
    sessions::SessionCache,
};

/// Cheap to clone: one `Arc` around [`App`].
#[derive(Clone)]
pub struct AppState(Arc<App>);

impl Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.0
    }
}

pub struct App {
    pub config: Config,
    pub db: DatabaseConnection,
    /// Issues and checks session cookies.
    pub sessions: Sessions,
    /// argon2id, off the runtime, a bounded number at a time.
    pub passwords: PasswordHasher,
    /// Sign-in, sign-up and resend limits per IP and per account; shared by the replicas
    /// through Redis when it is configured.
    pub limiter: RateLimiter,
    /// Users by id for session checks, so `GET /me` does not hit the database every time.
    pub users: UserCache,
    /// Valid sessions by id, for the same reason.
    pub session_cache: SessionCache,
    /// The outbox: mail is stored with the change that causes it, then delivered.
    pub mail: Mailer,
    pub metrics: Metrics,
    /// Seals and opens secrets at rest.
    pub keyring: Keyring,
    /// The clouds' APIs, at the configured endpoints.
    pub clouds: fleetplane_cloud::Clouds,
    /// Signals to this process and, with Redis, to the other replicas.
    pub bus: Bus,
    /// Fans events out to this process's live streams.
    pub live: Live,
    /// What this process's retention janitor deleted, for `/metrics`.
    pub janitor: Tally,
    /// Finished passes of the workers' search for orphaned jobs
    /// (`fleetplane_worker_orphan_sweeps_total`).
    pub sweeps: prometheus_client::metrics::counter::Counter,
    /// Connections by the path that served them.
    pub connections: crate::http::serve::Connections,
    /// Google sign-in, when configured.
    pub google: Option<GoogleSignIn>,
    /// Run log lines that could not be stored, for `/metrics`.
    pub log_health: crate::worker::LogHealth,
    /// What runs this process's jobs (Docker or processes), once its worker has started.
    pub executor: std::sync::OnceLock<Arc<dyn fleetplane_executor::Executor>>,
}

impl App {
    /// Tells every worker (here and, with Redis, on other machines) that a run may be waiting,
    /// and every live stream that runs changed.
    pub fn wake_workers(&self) {
        self.bus.publish(Signal::Queue);
        self.events_written();
    }

    /// Tells the live streams that new events are stored.
    pub fn events_written(&self) {
        self.bus.publish(Signal::Events);
    }

    /// Call after committing a change to a user's account, sessions or tokens: this process
    /// forgets its cached copies at once, and every replica (this one included) hears it on the
    /// bus, forgets them too, and ends the user's streams whose session or token stopped working.
    pub fn account_changed(&self, user_id: Uuid) {
        self.forget_account(user_id);
        self.bus.publish(Signal::Account(user_id));
    }

    /// Drops this process's cached copies of the user and their sessions.
    pub fn forget_account(&self, user_id: Uuid) {
        self.users.invalidate(user_id);
        self.session_cache.invalidate_user(user_id);
    }
}

impl AppState {
    /// Connects to the database, applies migrations and loads (or creates) the keys.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let db = crate::db::connect(&config).await?;
        crate::db::migrate(&db).await?;
        Self::with_database(config, db)
    }

    /// The state around an existing, migrated database connection.
    pub fn with_database(config: Config, db: DatabaseConnection) -> anyhow::Result<Self> {
        let session_secret = match &config.session_secret {
            Some(secret) => secret.expose().as_bytes().to_vec(),
            None => keyfile::load_or_create(&config.data_dir.join("session.key"), 32)
                .context("loading the session signing key")?,
        };
        let sessions = Sessions::new(&session_secret, config.session_ttl, config.secure_cookies());
        let passwords = PasswordHasher::new(config.password_hash_concurrency)?;
        let mail = Mailer::new(&config, db.clone())?;
        let keyring = crate::crypto::keyring(&config).context("loading the master keys")?;
        let clouds = fleetplane_cloud::Clouds::new(config.cloud.endpoints()?).context("configuring cloud access")?;
        let bus = match &config.redis_url {
            Some(url) => Bus::redis(url.expose()).context("configuring Redis")?,
            None => Bus::in_process(),
        };
        let google = match &config.google {
            Some(settings) => Some(
                GoogleSignIn::new(
                    settings.clone(),
                    &config.public_url,
                    &session_secret,
                    config.secure_cookies(),
                    std::time::Duration::from_secs(config.cloud.timeout_secs),
                )
                .context("configuring Google sign-in")?,
            ),
            None => None,
        };
        let live = Live::new(&config.live);
        let session_cache = SessionCache::default();
        let janitor = Tally::default();
        let sweeps = prometheus_client::metrics::counter::Counter::default();
        let connections = crate::http::serve::Connections::default();
        let log_health = crate::worker::LogHealth::default();
        let metrics = Metrics::with(|registry| {
            log_health.register_metrics(registry);
            live.register_metrics(registry);
            session_cache.register_metrics(registry);
            janitor.register_metrics(registry);
            connections.register_metrics(registry);
            registry.register(
                "worker_orphan_sweeps",
                "Finished passes of the workers' search for jobs no live worker watches",
                sweeps.clone(),
            );
        });
        Ok(Self(Arc::new(App {
            sessions,
            passwords,
            limiter: match bus.redis_client() {
                Some(redis) => RateLimiter::shared(redis.clone()),
                None => RateLimiter::local(),
            },
            users: UserCache::default(),
            session_cache,
            mail,
            metrics,
            keyring,
            clouds,
            google,
            bus,
            live,
            janitor,
            sweeps,
            connections,
            log_health,
            executor: std::sync::OnceLock::new(),
            db,
            config,
        })))
    }
}
