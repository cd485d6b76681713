//! Local stand-ins for the clouds.
//!
//! Real emulators where they exist, run as processes: moto's server (AWS STS, IAM, S3) and the
//! `gcp-storage-emulator` (Cloud Storage's JSON API), installed from PyPI by `cargo xtask test`
//! into the directory `FLEETPLANE_TEST_EMULATORS` names. Where none exists, servers here speak
//! the documented wire formats: Microsoft Entra ID's client-credentials token endpoint and Azure
//! Resource Manager's subscription and storage-account lists (over TLS, as the Azure SDK
//! requires), and Google's OAuth 2.0 token endpoint for service-account JWT assertions, which
//! checks each assertion's RS256 signature against the service account's public key.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Form, Json, Router,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::ports::free_port;

/// A program from the environment of emulators and test tools `cargo xtask test` prepares.
pub fn emulator_program(name: &str) -> PathBuf {
    let dir = std::env::var_os("FLEETPLANE_TEST_EMULATORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("FLEETPLANE_TEST_EMULATORS is not set: run the cloud tests with `cargo xtask test`"));
    let program = dir.join(name);
    assert!(program.is_file(), "{} is missing: run `cargo xtask test`", program.display());
    program
}

/// A child process, killed with the test.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `url` until the server answers anything (30 s at most).
async fn wait_until_serving(url: &str, process: &mut Process) {
    let started = Instant::now();
    let client = reqwest::Client::new();
    loop {
        if client.get(url).send().await.is_ok() {
            return;
        }
        if let Ok(Some(status)) = process.0.try_wait() {
            panic!("{url}: the emulator exited with {status}");
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{url} did not start within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn xml_field(xml: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let start = xml.find(&open).unwrap_or_else(|| panic!("no <{tag}> in {xml}")) + open.len();
    let end = xml[start..].find("</").expect("closing tag") + start;
    xml[start..end].to_owned()
}

/// An IAM user's access key, as moto issued it.
#[derive(Clone, Debug)]
pub struct AwsKey {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub arn: String,
}

/// moto's server: AWS STS, IAM and S3 on one port. Starts with authentication off for setup;
/// [`Moto::enforce_auth`] turns it on, after which unknown keys, wrong secrets and actions a
/// user's policies do not allow are refused as AWS refuses them.
pub struct Moto {
    pub url: String,
    http: reqwest::Client,
    _process: Process,
}

impl Moto {
    pub async fn start() -> Self {
        let port = free_port();
        let child = Command::new(emulator_program("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let mut process = Process(child);
        let url = format!("http://127.0.0.1:{port}");
        wait_until_serving(&format!("{url}/moto-api/"), &mut process).await;
        let moto = Self { url, http: reqwest::Client::new(), _process: process };
        moto.set_unauthenticated_actions(1_000_000).await;
        moto
    }

    async fn set_unauthenticated_actions(&self, count: u64) {
        let response = self
            .http
            .post(format!("{}/moto-api/reset-auth", self.url))
            .header("content-type", "text/plain")
            .body(count.to_string())
            .send()
            .await
            .expect("reset-auth");
        assert!(response.status().is_success(), "moto reset-auth failed");
    }

    /// From now on every request must be signed with a key moto issued, and be allowed.
    pub async fn enforce_auth(&self) {
        self.set_unauthenticated_actions(0).await;
    }

    /// The authorization header only names the service (moto routes on it); with
    /// authentication off, its signature is not checked.
    fn unsigned(service: &str) -> String {
        format!(
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0"
        )
    }

    async fn iam(&self, params: &[(&str, &str)]) -> String {
        let mut form = vec![("Version", "2010-05-08")];
        form.extend_from_slice(params);
        let response = self
            .http
            .post(format!("{}/", self.url))
            .header("authorization", Self::unsigned("iam"))
            .form(&form)
            .send()
            .await
            .expect("IAM request");
        let status = response.status();
        let body = response.text().await.expect("IAM body");
        assert!(status.is_success(), "IAM {params:?}: {status} {body}");
        body
    }

    /// An IAM user with an access key and an inline policy allowing `actions` on everything.
    pub async fn create_user(&self, name: &str, actions: &[&str]) -> AwsKey {
        let user = self.iam(&[("Action", "CreateUser"), ("UserName", name)]).await;
        let key = self.iam(&[("Action", "CreateAccessKey"), ("UserName", name)]).await;
        if !actions.is_empty() {
            let policy = json!({ "Version": "2012-10-17", "Statement": [{ "Effect": "Allow", "Action": actions, "Resource": "*" }] });
            self.iam(&[
                ("Action", "PutUserPolicy"),
                ("UserName", name),
                ("PolicyName", "fleetplane-test"),
                ("PolicyDocument", &policy.to_string()),
            ])
            .await;
        }
        AwsKey {
            access_key_id: xml_field(&key, "AccessKeyId"),
            secret_access_key: xml_field(&key, "SecretAccessKey"),
            arn: xml_field(&user, "Arn"),
        }
    }

    /// A role that `trusted` (an IAM user ARN) may assume.
    pub async fn create_role(&self, name: &str, trusted: &str) -> String {
        let trust = json!({ "Version": "2012-10-17", "Statement": [{ "Effect": "Allow", "Principal": { "AWS": trusted }, "Action": "sts:AssumeRole" }] });
        let role = self
            .iam(&[("Action", "CreateRole"), ("RoleName", name), ("AssumeRolePolicyDocument", &trust.to_string())])
            .await;
        xml_field(&role, "Arn")
    }

    /// Deletes a key as an administrator would; when authentication is enforced, it stays so.
    pub async fn delete_access_key(&self, user: &str, access_key_id: &str) {
        // Exactly one unauthenticated action: this one.
        self.set_unauthenticated_actions(1).await;
        self.iam(&[("Action", "DeleteAccessKey"), ("UserName", user), ("AccessKeyId", access_key_id)]).await;
    }

    pub async fn create_bucket(&self, name: &str) {
        let response = self
            .http
            .put(format!("{}/{name}", self.url))
            .header("authorization", Self::unsigned("s3"))
            .send()
            .await
            .expect("S3 CreateBucket");
        assert!(response.status().is_success(), "CreateBucket {name}: {}", response.status());
    }
}

/// The Cloud Storage emulator (JSON API), in memory.
pub struct GcsEmulator {
    pub url: String,
    _process: Process,
}

impl GcsEmulator {
    pub async fn start() -> Self {
        let port = free_port();
        let child = Command::new(emulator_program("gcp-storage-emulator"))
            .args(["start", "--host", "127.0.0.1", "--port", &port.to_string(), "--in-memory", "--quiet"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start gcp-storage-emulator");
        let mut process = Process(child);
        let url = format!("http://127.0.0.1:{port}");
        wait_until_serving(&format!("{url}/storage/v1/b?project=probe"), &mut process).await;
        Self { url, _process: process }
    }

    pub async fn create_bucket(&self, project: &str, name: &str) {
        let response = reqwest::Client::new()
            .post(format!("{}/storage/v1/b", self.url))
            .query(&[("project", project)])
            .json(&json!({ "name": name, "location": "EU" }))
            .send()
            .await
            .expect("create bucket");
        assert!(response.status().is_success(), "create bucket {name}: {}", response.status());
    }
}

/// Serves `router` on 127.0.0.1 over TLS with a fresh self-signed certificate for 127.0.0.1 and
/// localhost; returns the address and the certificate's PEM (for the client to trust).
async fn serve_tls(router: Router) -> (SocketAddr, String) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("certificate");
    let certificate_pem = certified.cert.pem();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let addr = serve_tls_with(router, vec![certified.cert.der().clone()], key).await;
    (addr, certificate_pem)
}

/// Serves `router` on 127.0.0.1 (a port of its own) over TLS with this certificate chain and key.
pub async fn serve_tls_with(
    router: Router,
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> SocketAddr {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("TLS config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, router) = (acceptor.clone(), router.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = hyper_util::service::TowerToHyperService::new(router);
                let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

/// An Azure tenant as the fake knows it.
#[derive(Clone, Default)]
pub struct AzureTenant {
    /// client id → client secret
    pub clients: HashMap<String, String>,
    /// (subscription id, display name)
    pub subscriptions: Vec<(String, String)>,
    /// subscription id → (storage account name, location)
    pub storage_accounts: HashMap<String, Vec<(String, String)>>,
}

#[derive(Default)]
struct AzureState {
    tenants: HashMap<String, AzureTenant>,
    token_requests: std::sync::atomic::AtomicUsize,
    /// access token → tenant id
    tokens: Mutex<HashMap<String, String>>,
    /// access token → the scope it was issued for
    scopes: Mutex<HashMap<String, String>>,
    /// access token → the client (application) it was issued to
    clients: Mutex<HashMap<String, String>>,
    arm_audience: Mutex<String>,
}

/// Entra ID's token endpoint and ARM's subscription and storage lists, over TLS.
pub struct FakeAzure {
    pub url: String,
    /// The server's self-signed certificate, for `FLEETPLANE_EXTRA_CA_FILE`.
    pub ca_file: tempfile::NamedTempFile,
    state: Arc<AzureState>,
}

impl FakeAzure {
    pub async fn start(tenants: HashMap<String, AzureTenant>) -> Self {
        let state = Arc::new(AzureState { tenants, ..AzureState::default() });
        let router = Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(azure_token))
            .route("/subscriptions", get(arm_subscriptions))
            .route(
                "/subscriptions/{subscription}/providers/Microsoft.Storage/storageAccounts",
                get(arm_storage_accounts),
            )
            .with_state(state.clone());
        let (addr, certificate_pem) = serve_tls(router).await;
        let url = format!("https://127.0.0.1:{}", addr.port());
        *state.arm_audience.lock().expect("lock") = format!("{url}/.default");
        let ca_file = tempfile::NamedTempFile::new().expect("CA file");
        std::fs::write(ca_file.path(), certificate_pem).expect("write CA file");
        Self { url, ca_file, state }
    }

    /// How many token requests reached Entra ID.
    pub fn token_requests(&self) -> usize {
        self.state.token_requests.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The scope `token` was issued for, if this Entra ID issued it.
    pub fn scope_of(&self, token: &str) -> Option<String> {
        self.state.scopes.lock().expect("lock").get(token).cloned()
    }

    /// What an AKS cluster with Entra ID integration makes of a bearer token: the client it was
    /// issued to, when this Entra ID issued it for the AKS server application.
    pub fn aks_authenticator(&self) -> super::kube::Authenticator {
        let state = self.state.clone();
        Arc::new(move |token| {
            let for_aks = state.scopes.lock().expect("lock").get(token).is_some_and(|scope| scope == AKS_SCOPE);
            for_aks.then(|| state.clients.lock().expect("lock").get(token).cloned()).flatten()
        })
    }
}

/// The application every AKS cluster with Entra ID integration trusts, as its token scope.
const AKS_SCOPE: &str = "6dae42f8-4368-4678-94ff-3960e28e3630/.default";

#[derive(Deserialize)]
struct ClientCredentials {
    grant_type: String,
    client_id: String,
    client_secret: Option<String>,
    scope: String,
}

/// Entra ID's error body for the v2.0 token endpoint.
fn entra_error(status: StatusCode, error: &str, code: u32, description: String) -> Response {
    let body = json!({
        "error": error,
        "error_description": format!("AADSTS{code}: {description}\r\nTrace ID: 00000000-0000-0000-0000-000000000000\r\nCorrelation ID: 00000000-0000-0000-0000-000000000000\r\nTimestamp: 2026-11-24 00:00:00Z"),
        "error_codes": [code],
        "timestamp": "2026-11-24 00:00:00Z",
        "trace_id": "00000000-0000-0000-0000-000000000000",
        "correlation_id": "00000000-0000-0000-0000-000000000000",
        "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
    });
    (status, Json(body)).into_response()
}

async fn azure_token(
    State(state): State<Arc<AzureState>>,
    Path(tenant_id): Path<String>,
    Form(form): Form<ClientCredentials>,
) -> Response {
    state.token_requests.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let Some(tenant) = state.tenants.get(&tenant_id) else {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            format!(
                "Tenant '{tenant_id}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        );
    };
    if form.grant_type != "client_credentials" {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.".into(),
        );
    }
    let Some(secret) = tenant.clients.get(&form.client_id) else {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            format!("Application with identifier '{}' was not found in the directory '{tenant_id}'.", form.client_id),
        );
    };
    if form.client_secret.as_deref() != Some(secret.as_str()) {
        return entra_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.",
                form.client_id
            ),
        );
    }
    if form.scope != *state.arm_audience.lock().expect("lock") && form.scope != AKS_SCOPE {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            70011,
            format!("The provided value for scope {} is not valid.", form.scope),
        );
    }
    let token = format!("eyFake.{}", uuid::Uuid::new_v4().simple());
    state.tokens.lock().expect("lock").insert(token.clone(), tenant_id);
    state.scopes.lock().expect("lock").insert(token.clone(), form.scope);
    state.clients.lock().expect("lock").insert(token.clone(), form.client_id);
    Json(json!({ "token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token }))
        .into_response()
}

fn arm_error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({ "error": { "code": code, "message": message } }))).into_response()
}

/// The tenant behind the request's bearer token, as ARM checks it.
fn arm_caller<'a>(state: &'a AzureState, headers: &HeaderMap) -> Option<(String, &'a AzureTenant)> {
    let token = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let tenant_id = token.and_then(|t| state.tokens.lock().expect("lock").get(t).cloned())?;
    // A token for another audience (an AKS cluster's) is not one for ARM.
    let scope = token.and_then(|t| state.scopes.lock().expect("lock").get(t).cloned())?;
    if scope != *state.arm_audience.lock().expect("lock") {
        return None;
    }
    let tenant = state.tenants.get(&tenant_id)?;
    Some((tenant_id, tenant))
}

fn invalid_token() -> Response {
    arm_error(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", "The access token is invalid.")
}

#[derive(Deserialize)]
struct ApiVersion {
    #[serde(rename = "api-version")]
    api_version: Option<String>,
}

async fn arm_subscriptions(
    State(state): State<Arc<AzureState>>,
    headers: HeaderMap,
    Query(query): Query<ApiVersion>,
) -> Response {
    if query.api_version.is_none() {
        return arm_error(
            StatusCode::BAD_REQUEST,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        );
    }
    let Some((tenant_id, tenant)) = arm_caller(&state, &headers) else { return invalid_token() };
    let value: Vec<Value> = tenant
        .subscriptions
        .iter()
        .map(|(id, name)| {
            json!({
                "id": format!("/subscriptions/{id}"), "subscriptionId": id, "tenantId": tenant_id,
                "displayName": name, "state": "Enabled",
                "subscriptionPolicies": { "locationPlacementId": "Public_2014-09-01", "quotaId": "PayAsYouGo_2014-09-01", "spendingLimit": "Off" },
                "authorizationSource": "RoleBased",
            })
        })
        .collect();
    Json(json!({ "value": value, "count": { "type": "Total", "value": tenant.subscriptions.len() } })).into_response()
}

async fn arm_storage_accounts(
    State(state): State<Arc<AzureState>>,
    headers: HeaderMap,
    Path(subscription): Path<String>,
) -> Response {
    let Some((_, tenant)) = arm_caller(&state, &headers) else { return invalid_token() };
    if !tenant.subscriptions.iter().any(|(id, _)| *id == subscription) {
        return arm_error(
            StatusCode::NOT_FOUND,
            "SubscriptionNotFound",
            &format!("The subscription '{subscription}' could not be found."),
        );
    }
    let accounts = tenant.storage_accounts.get(&subscription).cloned().unwrap_or_default();
    let value: Vec<Value> = accounts
        .into_iter()
        .map(|(name, location)| {
            json!({
                "id": format!("/subscriptions/{subscription}/resourceGroups/tfstate/providers/Microsoft.Storage/storageAccounts/{name}"),
                "name": name, "type": "Microsoft.Storage/storageAccounts", "location": location,
                "kind": "StorageV2", "sku": { "name": "Standard_LRS", "tier": "Standard" },
            })
        })
        .collect();
    Json(json!({ "value": value })).into_response()
}

/// A service account's key file and the public key Google would check it against.
pub struct ServiceAccount {
    pub json: String,
    pub client_email: String,
    pub public_key_pem: String,
    pub private_key_pem: String,
}

/// A service account of `project`, with a fresh RSA key, whose `token_uri` is `token_uri`.
pub fn service_account(project: &str, name: &str, token_uri: &str) -> ServiceAccount {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("RSA key");
    let client_email = format!("{name}@{project}.iam.gserviceaccount.com");
    let private_key_pem = key.serialize_pem();
    let json = json!({
        "type": "service_account",
        "project_id": project,
        "private_key_id": format!("{:x}", rand::random::<u128>()),
        "private_key": private_key_pem,
        "client_email": client_email,
        "client_id": "109876543210987654321",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": format!("https://www.googleapis.com/robot/v1/metadata/x509/{client_email}"),
        "universe_domain": "googleapis.com",
    })
    .to_string();
    ServiceAccount { json, client_email, public_key_pem: key.public_key_pem(), private_key_pem }
}

#[derive(Default)]
struct GoogleState {
    /// client email → public key PEM of its active key
    keys: Mutex<HashMap<String, String>>,
    token_uri: Mutex<String>,
    /// access token → the service account it was issued to
    issued: Mutex<HashMap<String, String>>,
}

/// Google's OAuth 2.0 token endpoint for service accounts (JWT bearer grant, RFC 7523).
pub struct FakeGoogleOAuth {
    /// Where keys must send their assertions (`token_uri`).
    pub token_uri: String,
    state: Arc<GoogleState>,
}

impl FakeGoogleOAuth {
    pub async fn start() -> Self {
        let state = Arc::new(GoogleState::default());
        let router = Router::new().route("/token", post(google_token)).with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let token_uri = format!("http://{}/token", listener.local_addr().expect("addr"));
        *state.token_uri.lock().expect("lock") = token_uri.clone();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { token_uri, state }
    }

    /// Makes the account's key valid at Google.
    pub fn register(&self, account: &ServiceAccount) {
        self.state.keys.lock().expect("lock").insert(account.client_email.clone(), account.public_key_pem.clone());
    }

    /// How many tokens it has issued.
    pub fn issued(&self) -> usize {
        self.state.issued.lock().expect("lock").len()
    }

    /// Whether it issued `token`.
    pub fn has_issued(&self, token: &str) -> bool {
        self.state.issued.lock().expect("lock").contains_key(token)
    }

    /// What a GKE cluster makes of a bearer token: the service account it was issued to, when
    /// Google issued it.
    pub fn gke_authenticator(&self) -> super::kube::Authenticator {
        let state = self.state.clone();
        Arc::new(move |token| state.issued.lock().expect("lock").get(token).cloned())
    }
}

#[derive(Deserialize)]
struct JwtBearer {
    grant_type: String,
    assertion: String,
}

#[derive(Deserialize)]
struct AssertionClaims {
    iss: String,
}

fn invalid_grant(description: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": "invalid_grant", "error_description": description })))
        .into_response()
}

async fn google_token(State(state): State<Arc<GoogleState>>, Form(form): Form<JwtBearer>) -> Response {
    if form.grant_type != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": "unsupported_grant_type", "error_description": "Invalid grant_type" })),
        )
            .into_response();
    }
    // Find the account from the unverified claims, then verify the signature with its key.
    let Ok(unverified) = jsonwebtoken::dangerous::insecure_decode::<AssertionClaims>(&form.assertion) else {
        return invalid_grant(
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.",
        );
    };
    let Some(public_key) = state.keys.lock().expect("lock").get(&unverified.claims.iss).cloned() else {
        return invalid_grant("Invalid grant: account not found");
    };
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[state.token_uri.lock().expect("lock").clone()]);
    validation.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
    let key = DecodingKey::from_rsa_pem(public_key.as_bytes()).expect("public key");
    if jsonwebtoken::decode::<Value>(&form.assertion, &key, &validation).is_err() {
        return invalid_grant("Invalid JWT Signature.");
    }
    let token = format!("ya29.fake-{}", uuid::Uuid::new_v4().simple());
    state.issued.lock().expect("lock").insert(token.clone(), unverified.claims.iss.clone());
    Json(json!({ "access_token": token, "expires_in": 3599, "token_type": "Bearer" })).into_response()
}
