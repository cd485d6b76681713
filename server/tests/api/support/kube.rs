//! A stand-in for a managed cluster's Kubernetes API server, for the helm jobs' tests: no
//! Kubernetes API server can run on these machines. It speaks the API server's documented wire
//! format for the first calls a client makes: HTTPS on 127.0.0.1 with a certificate from a CA of
//! its own (what a cluster's `ca_data` output holds), bearer tokens checked by an authenticator
//! (as the API server asks a webhook or its cloud's IAM), and `Status` objects for refusals:
//!
//! - a request whose token the authenticator does not accept (or [`FakeKubeApi::start`], which
//!   accepts none): `401 Unauthorized`;
//! - an accepted one: `GET /version` answers the server's version; anything else is `403
//!   Forbidden`, as RBAC refuses an identity that was granted nothing in the cluster.
//!
//! [`FakeKubeApi::start_unresponsive`] takes requests and never answers, as an overloaded or
//! half-down API server does, to hold a job in its first call. Every request's method, path and
//! `Authorization` header is recorded.

use std::sync::{Arc, Mutex};

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use serde_json::{Value, json};

use super::clouds::serve_tls_with;

/// One request the API server received.
#[derive(Clone, Debug)]
pub struct KubeRequest {
    pub method: String,
    /// With its query.
    pub path: String,
    pub authorization: Option<String>,
}

/// Who a bearer token is, if the cluster's identity provider says it is anyone.
pub type Authenticator = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

pub struct FakeKubeApi {
    /// `https://127.0.0.1:<port>`, the cluster's `endpoint`.
    pub url: String,
    /// The cluster CA's certificate (PEM), which signed the server's.
    pub ca_pem: String,
    requests: Arc<Mutex<Vec<KubeRequest>>>,
}

#[derive(Clone)]
struct ApiState {
    requests: Arc<Mutex<Vec<KubeRequest>>>,
    authenticate: Authenticator,
    answers: bool,
}

impl FakeKubeApi {
    /// One that accepts no token.
    pub async fn start() -> Self {
        Self::serve(Arc::new(|_| None), true).await
    }

    /// One whose tokens `authenticate` checks.
    pub async fn start_with(authenticate: Authenticator) -> Self {
        Self::serve(authenticate, true).await
    }

    /// One that records requests and never answers them.
    pub async fn start_unresponsive() -> Self {
        Self::serve(Arc::new(|_| None), false).await
    }

    async fn serve(authenticate: Authenticator, answers: bool) -> Self {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.distinguished_name.push(DnType::CommonName, "kubernetes");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca, &ca_key);
        let server_key = KeyPair::generate().expect("server key");
        let mut server = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("params");
        server.distinguished_name.push(DnType::CommonName, "kube-apiserver");
        server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server.signed_by(&server_key, &issuer).expect("server certificate");

        let requests = Arc::new(Mutex::new(Vec::new()));
        let state = ApiState { requests: requests.clone(), authenticate, answers };
        let router = Router::new().fallback(answer).with_state(state);
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into());
        let addr = serve_tls_with(router, vec![server_cert.der().clone()], key).await;
        Self { url: format!("https://127.0.0.1:{}", addr.port()), ca_pem: ca_cert.pem(), requests }
    }

    /// The CA as a cluster's `ca_data` output holds it: base64 of the PEM.
    pub fn ca_data(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.ca_pem)
    }

    pub fn requests(&self) -> Vec<KubeRequest> {
        self.requests.lock().expect("lock").clone()
    }
}

/// A `Status` object, the API server's body for every refusal.
fn status(code: StatusCode, reason: &str, message: &str, details: Value) -> Response {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details,
        "code": code.as_u16(),
    });
    (code, Json(body)).into_response()
}

async fn answer(State(state): State<ApiState>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let path = uri.path_and_query().map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned());
    state.requests.lock().expect("lock").push(KubeRequest {
        method: method.to_string(),
        path: path.clone(),
        authorization: authorization.clone(),
    });
    if !state.answers {
        std::future::pending::<()>().await;
    }
    let user = authorization.as_deref().and_then(|a| a.strip_prefix("Bearer ")).and_then(|t| (state.authenticate)(t));
    let Some(user) = user else {
        return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized", json!({}));
    };
    if method == Method::GET && uri.path() == "/version" {
        return Json(json!({
            "major": "1", "minor": "33", "gitVersion": "v1.33.1", "gitCommit": "8adc0f041b8e7ad1d30e29cc59c6ae7a15e19828",
            "gitTreeState": "clean", "buildDate": "2025-05-15T08:19:08Z", "goVersion": "go1.24.2",
            "compiler": "gc", "platform": "linux/amd64",
        }))
        .into_response();
    }
    // `/api/v1/namespaces/{namespace}/{resource}`: what RBAC names in its refusal.
    let parts: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let (namespace, resource) = match parts.as_slice() {
        ["api", "v1", "namespaces", namespace, resource, ..] => (Some(*namespace), *resource),
        [.., resource] => (None, *resource),
        [] => (None, ""),
    };
    let verb = match (method.as_str(), parts.len()) {
        ("GET", 5) => "list",
        ("GET", _) => "get",
        ("POST", _) => "create",
        ("PUT" | "PATCH", _) => "update",
        ("DELETE", _) => "delete",
        _ => "access",
    };
    let scope =
        namespace.map(|n| format!(" in the namespace \"{n}\"")).unwrap_or_else(|| " at the cluster scope".into());
    let message = format!(
        "{resource} is forbidden: User \"{user}\" cannot {verb} resource \"{resource}\" in API group \"\"{scope}"
    );
    status(StatusCode::FORBIDDEN, "Forbidden", &message, json!({ "kind": resource }))
}
