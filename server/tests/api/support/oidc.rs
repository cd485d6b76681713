//! A real OpenID provider standing in for Google: npm's `oidc-provider` (panva's certified
//! implementation), run by `server/tests/oidc-provider/provider.mjs`, which `cargo xtask test`
//! installs and names in `FLEETPLANE_TEST_OIDC_PROVIDER`.
//!
//! It logs in whoever the authorization request's `login_hint` names (or whoever a browser
//! types into its one-field form), and can be told per account to misbehave: sign with an
//! unpublished key, put the wrong audience, issuer, nonce or expiry in the id_token, or deny.
//! One provider serves a whole test binary (it takes a second or two to start); tests keep to
//! their own accounts, and a test that counts key fetches starts its own.

use std::{
    io::{BufRead, BufReader},
    process::{Child, ChildStdin, Command, Stdio},
    sync::{Mutex, OnceLock},
};

use fleetplane::config::{Config, GoogleSettings, Secret};
use reqwest::{StatusCode, header};
use serde_json::{Value, json};
use url::Url;

use super::Client;

pub const CLIENT_ID: &str = "fleetplane-test";
pub const CLIENT_SECRET: &str = "fleetplane-test-secret";
const CALLBACK: &str = "/api/v1/auth/google/callback";

pub struct OidcProvider {
    pub issuer: String,
    /// The provider exits when this pipe closes: when the provider is dropped or the test
    /// process ends, whichever is first.
    _stdin: Mutex<ChildStdin>,
    child: Mutex<Child>,
}

/// What a scripted sign-in ended with: where the server sent the browser at the end.
#[derive(Debug)]
pub struct Landing {
    pub location: String,
    pub set_cookies: Vec<String>,
}

impl Landing {
    /// The `error` code of a landing on an error page.
    pub fn error(&self) -> Option<String> {
        let url = Url::parse("http://x").expect("url").join(&self.location).expect("location");
        url.query_pairs().find(|(key, _)| key == "error").map(|(_, value)| value.into_owned())
    }

    pub fn signed_in(&self) -> bool {
        self.set_cookies.iter().any(|cookie| cookie.starts_with("fp_session=") && !cookie.starts_with("fp_session=;"))
    }
}

impl OidcProvider {
    /// The provider shared by this test binary.
    pub fn shared() -> &'static Self {
        static SHARED: OnceLock<OidcProvider> = OnceLock::new();
        SHARED.get_or_init(Self::start)
    }

    /// A provider of one's own (for tests that count what it is asked).
    pub fn start() -> Self {
        let script = std::env::var_os("FLEETPLANE_TEST_OIDC_PROVIDER").unwrap_or_else(|| {
            panic!("FLEETPLANE_TEST_OIDC_PROVIDER is not set: run the Google sign-in tests with `cargo xtask test`")
        });
        let mut child = Command::new("node")
            .arg(&script)
            .env("OIDC_PORT", "0")
            .env("OIDC_CLIENT_ID", CLIENT_ID)
            .env("OIDC_CLIENT_SECRET", CLIENT_SECRET)
            // Loopback redirect URIs match on any port (RFC 8252), so one provider serves
            // every test server.
            .env("OIDC_REDIRECT_URIS", format!("http://127.0.0.1{CALLBACK}"))
            .env("OIDC_ANY_LOOPBACK_PORT", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start node with the OpenID provider");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut ready = String::new();
        BufReader::new(stdout).read_line(&mut ready).expect("read the provider's ready line");
        let ready: Value = serde_json::from_str(&ready)
            .unwrap_or_else(|e| panic!("the OpenID provider did not start ({e}): {ready:?}"));
        let issuer = ready["issuer"].as_str().expect("issuer").to_owned();
        let stdin = child.stdin.take().expect("piped stdin");
        Self { issuer, _stdin: Mutex::new(stdin), child: Mutex::new(child) }
    }

    /// Points `config`'s Google sign-in at this provider.
    pub fn configure(&self, config: &mut Config) {
        config.google = Some(GoogleSettings {
            client_id: CLIENT_ID.to_owned(),
            client_secret: Secret::new(CLIENT_SECRET),
            issuer: self.issuer.clone(),
        });
    }

    async fn control(&self, path: &str, body: Value) -> Value {
        let response = reqwest::Client::new()
            .post(format!("{}/__test/{path}", self.issuer))
            .json(&body)
            .send()
            .await
            .expect("provider control API");
        assert_eq!(response.status(), StatusCode::OK, "provider control {path}");
        response.json().await.expect("JSON")
    }

    /// Creates or replaces an account at the provider; returns its subject.
    pub async fn account(&self, email: &str, email_verified: bool, scenario: Option<&str>) -> String {
        let account = self
            .control("accounts", json!({ "email": email, "email_verified": email_verified, "scenario": scenario }))
            .await;
        account["sub"].as_str().expect("sub").to_owned()
    }

    /// Signs with a new key from now on (the old one stays published); returns its key id.
    pub async fn rotate_key(&self) -> String {
        self.control("rotate", json!({})).await["kid"].as_str().expect("kid").to_owned()
    }

    /// How often its key set (JWKS) has been fetched.
    pub async fn key_fetches(&self) -> u64 {
        let state: Value = reqwest::Client::new()
            .get(format!("{}/__test/state", self.issuer))
            .send()
            .await
            .expect("provider state")
            .json()
            .await
            .expect("JSON");
        state["jwks_hits"].as_u64().expect("jwks_hits")
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Plays the browser: from `start` (with `query`) through the provider's redirects, stopping
/// at the redirect back to the server's callback. Returns the callback URL.
pub async fn to_callback(client: &Client, query: &str) -> Url {
    let http = client.without_redirects();
    let mut url = client.base.join(&format!("api/v1/auth/google/start?{query}")).expect("url");
    for _ in 0..10 {
        let response = http.get(url.clone()).send().await.expect("request");
        let location = location(&response).unwrap_or_else(|| panic!("{url}: {} without a redirect", response.status()));
        let next = url.join(&location).expect("location");
        if next.path() == CALLBACK {
            return next;
        }
        if next.origin() == client.base.origin() {
            panic!("the sign-in stopped at {next} before reaching the provider's callback");
        }
        url = next;
    }
    panic!("too many redirects from {url}");
}

/// Plays the browser arriving at `callback`: where the server sends it next.
pub async fn land(client: &Client, callback: &Url) -> Landing {
    let response = client.without_redirects().get(callback.clone()).send().await.expect("callback");
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "the callback redirects");
    let set_cookies = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    Landing { location: location(&response).expect("location"), set_cookies }
}

/// A whole sign-in as `email` (who must be at the provider already, or is created verified).
pub async fn sign_in(client: &Client, email: &str) -> Landing {
    let callback = to_callback(client, &format!("login_hint={}", urlencode(email))).await;
    land(client, &callback).await
}

fn location(response: &reqwest::Response) -> Option<String> {
    response.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

pub fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
