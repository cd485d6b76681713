//! Test support: a real server per test (port 0, its own database), a browser-like client, and
//! a real SMTP server capturing the mail.
//!
//! The database is SQLite in a temporary directory by default. With
//! `FLEETPLANE_TEST_DATABASE=postgres` and `FLEETPLANE_TEST_PG_URL=postgres://user@host:port`,
//! each test gets a fresh PostgreSQL database instead; `cargo xtask test` runs the suite both ways.

pub mod clouds;
pub mod kube;
pub mod oidc;
pub use fleetplane_common::ports;
pub mod redis;
pub mod runs;
pub mod server;
pub mod smtp;
pub mod sse;

use std::{future::Future, ops::Range, sync::Arc};

use fleetplane::{config::Config, state::AppState};
use reqwest::{
    Method, StatusCode,
    cookie::{CookieStore, Jar},
    header::{self, HeaderMap},
};
use sea_orm::{DatabaseConnection, EntityTrait, PaginatorTrait};
use serde_json::{Value, json};
use tokio::{sync::oneshot, task::JoinHandle};
use url::Url;

pub use self::smtp::SmtpSink;

pub const PASSWORD: &str = "correct horse battery";

pub struct TestApp {
    pub base: Url,
    pub state: AppState,
    pub smtp: SmtpSink,
    pub dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

pub use fleetplane_common::db::testing::backend;

/// A database URL for a new, empty database.
pub async fn fresh_database_url(dir: &std::path::Path) -> String {
    fleetplane_common::db::testing::fresh_database_url(dir, "fleetplane").await
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Starts a server whose configuration `adjust` may change first.
    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let _ = rustls_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        let smtp = SmtpSink::start().await;
        let mut config = Config::with_data_dir(dir.path());
        config.database_url = fleetplane::config::Secret::new(fresh_database_url(dir.path()).await);
        config.smtp_url = Some(fleetplane::config::Secret::new(smtp.url()));
        config.site_dir = dir.path().join("site");
        // Runs are only carried out in tests that ask for workers.
        config.runs.workers = 0;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        config.listen = addr;
        config.public_url = format!("http://{addr}/").parse().expect("url");
        adjust(&mut config);

        let state = AppState::build(config).await.expect("app state");
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(fleetplane::launch(state.clone(), listener, async move {
            let _ = rx.await;
        }));
        Self {
            base: format!("http://{addr}/").parse().expect("url"),
            state,
            smtp,
            dir,
            shutdown: Some(tx),
            server: Some(server),
        }
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.state.db
    }

    /// A new client with its own cookie jar, like a fresh browser.
    pub fn client(&self) -> Client {
        let jar = Arc::new(Jar::default());
        let http = reqwest::Client::builder().cookie_provider(jar.clone()).build().expect("client");
        Client { http, jar, base: self.base.clone() }
    }

    /// Signs up `name` (email `name@example.com`), verifies through the delivered email, and
    /// returns a signed-in client.
    pub async fn user(&self, name: &str) -> Client {
        let client = self.client();
        let email = format!("{name}@example.com");
        client
            .post("/api/v1/auth/signup", json!({ "email": email, "username": name, "password": PASSWORD }))
            .await
            .expect_status(StatusCode::ACCEPTED);
        let mail = self.smtp.first_with_subject(&email, "Verify your email").await;
        // Verifying signs in.
        client
            .post("/api/v1/auth/verify-email", json!({ "token": mail.token(), "password": PASSWORD }))
            .await
            .expect_status(StatusCode::OK);
        client
    }

    /// Stores an event for `user` for each number of `numbers` (`{"n": number, "filler": filler}`)
    /// in one transaction, and tells the fan-out, as code that records events does.
    pub async fn record_events(&self, user: uuid::Uuid, kind: &'static str, numbers: Range<u64>, filler: &str) {
        use fleetplane::events::{self, Audience};
        use sea_orm::TransactionTrait;
        let txn = self.db().begin().await.expect("txn");
        for n in numbers {
            events::record(&txn, Audience::User(user), kind, json!({ "n": n, "filler": filler }))
                .await
                .expect("record");
        }
        txn.commit().await.expect("commit");
        self.state.events_written();
    }

    /// Waits (30 s at most) until `count` of the server's state is `expected`: `what` names it
    /// in the failure.
    pub async fn wait_for(&self, what: &str, expected: usize, count: impl Fn(&AppState) -> usize) {
        let started = std::time::Instant::now();
        loop {
            let now = count(&self.state);
            if now == expected {
                return;
            }
            assert!(started.elapsed() < std::time::Duration::from_secs(30), "{now} {what}, {expected} expected");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Row counts of the tables a refused request must not touch.
    pub async fn counts(&self) -> [u64; 8] {
        use fleetplane::entity::*;
        let db = self.db();
        [
            users::Entity::find().count(db).await.expect("count"),
            organizations::Entity::find().count(db).await.expect("count"),
            memberships::Entity::find().count(db).await.expect("count"),
            api_tokens::Entity::find().count(db).await.expect("count"),
            email_verification_tokens::Entity::find().count(db).await.expect("count"),
            outbound_emails::Entity::find().count(db).await.expect("count"),
            invitations::Entity::find().count(db).await.expect("count"),
            password_reset_tokens::Entity::find().count(db).await.expect("count"),
        ]
    }

    /// Asserts that `action` leaves every account, organization and token table as it was.
    pub async fn assert_unchanged<F: Future<Output = ()>>(&self, action: F) {
        let before = self.counts().await;
        action.await;
        assert_eq!(self.counts().await, before, "a refused request changed stored state");
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.server.take().expect("running").await.expect("server task")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// rustls may see two crypto providers in the dependency graph; pick one once per process.
fn rustls_provider() -> bool {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
    true
}

#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    jar: Arc<Jar>,
    pub base: Url,
}

impl Client {
    /// A client on an existing HTTP client and cookie jar (for servers not started by [`TestApp`]).
    pub fn from_parts(http: reqwest::Client, jar: Arc<Jar>, base: Url) -> Self {
        Self { http, jar, base }
    }

    /// A client on the same cookie jar that does not follow redirects, to see each hop.
    pub fn without_redirects(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .cookie_provider(self.jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client")
    }

    /// A cookie's value in this client's jar.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookie_at("/", name)
    }

    /// A cookie's value, as the jar would send it to `path` (cookies may be scoped to a path).
    pub fn cookie_at(&self, path: &str, name: &str) -> Option<String> {
        let header = self.jar.cookies(&self.base.join(path).ok()?)?;
        header.to_str().ok()?.split("; ").find_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            (key == name).then(|| value.to_owned())
        })
    }

    pub fn set_cookie(&self, name: &str, value: &str) {
        self.set_cookie_at("/", name, value);
    }

    pub fn set_cookie_at(&self, path: &str, name: &str, value: &str) {
        self.jar.add_cookie_str(&format!("{name}={value}; Path={path}"), &self.base);
    }

    /// A request that echoes the CSRF cookie in `X-CSRF-Token`, as the web UI does.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let url = self.base.join(path).expect("path");
        let mut builder = self.http.request(method, url);
        if let Some(csrf) = self.cookie("fp_csrf") {
            builder = builder.header("x-csrf-token", csrf);
        }
        builder
    }

    pub async fn send(&self, builder: reqwest::RequestBuilder) -> Resp {
        Resp::from(builder.send().await.expect("request reaches the server")).await
    }

    /// The signed-in user's id.
    pub async fn user_id(&self) -> uuid::Uuid {
        self.get("/api/v1/me").await.json()["id"].as_str().expect("id").parse().expect("uuid")
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(self.request(Method::GET, path)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.send(self.request(Method::POST, path).json(&body)).await
    }

    pub async fn post_empty(&self, path: &str) -> Resp {
        self.send(self.request(Method::POST, path)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Resp {
        self.send(self.request(Method::PATCH, path).json(&body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.send(self.request(Method::PUT, path).json(&body)).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send(self.request(Method::DELETE, path)).await
    }

    /// Invites `member`'s address to `org` as `role`, and has them accept: how anyone joins an
    /// organization.
    pub async fn add_to_org(&self, org: &str, member: &Client, role: &str) {
        let email = member.get("/api/v1/me").await.expect_status(StatusCode::OK).json()["email"].clone();
        let invitation = self
            .post(&format!("/api/v1/orgs/{org}/invitations"), json!({ "email": email, "role": role }))
            .await
            .expect_status(StatusCode::CREATED)
            .json();
        let id = invitation["id"].as_str().expect("invitation id");
        member.post_empty(&format!("/api/v1/me/invitations/{id}/accept")).await.expect_status(StatusCode::OK);
    }

    pub async fn sign_in(&self, email: &str, password: &str) -> Resp {
        self.post("/api/v1/auth/login", json!({ "email": email, "password": password })).await
    }

    /// The value of one series of the server's `/metrics` (0 when it has none yet), such as
    /// `fleetplane_sse_handbacks_total{reason="slow_client"}`.
    pub async fn metric(&self, series: &str) -> u64 {
        let metrics = self.get("/metrics").await.expect_status(StatusCode::OK).text;
        let series = format!("{series} ");
        metrics.lines().find_map(|line| line.strip_prefix(&series)).map_or(0, |count| count.parse().expect("a count"))
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Resp {
    async fn from(response: reqwest::Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        Self { status, headers, text }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    #[track_caller]
    pub fn expect_status(self, status: StatusCode) -> Self {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.text);
        self
    }

    /// Asserts a problem+json response with this status and code, and returns its body.
    #[track_caller]
    pub fn expect_problem(&self, status: StatusCode, code: &str) -> Value {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.text);
        let content_type = self.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert_eq!(content_type, "application/problem+json", "body: {}", self.text);
        let body = self.json();
        assert_eq!(body["code"], code, "body: {}", self.text);
        assert_eq!(body["status"], status.as_u16());
        assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()), "a problem says what is wrong");
        body
    }

    /// The `field` names of a problem's field errors.
    pub fn fields(&self) -> Vec<String> {
        self.json()["errors"]
            .as_array()
            .map(|errors| errors.iter().filter_map(|e| e["field"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers.get_all(header::SET_COOKIE).iter().filter_map(|v| v.to_str().ok().map(str::to_owned)).collect()
    }
}

/// Asks `check` again until it holds, for `seconds` at most; `what` names it in the failure.
/// For state that changes on its own (a cache expiring, a connection noticed closed): the
/// deadline is generous, and the pause between asks only spares the machine.
pub async fn eventually<F, Fut>(what: &str, seconds: u64, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "still not {what} after {seconds} s");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
