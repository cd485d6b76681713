//! A stand-in for a managed cluster's Kubernetes API server, for the helm jobs' tests: no
//! Kubernetes API server can run on these machines. It speaks the API server's documented wire
//! format as far as a client gets without credentials it accepts: HTTPS on 127.0.0.1 with a
//! certificate from a CA of its own (what a cluster's `ca_data` output holds), and to every
//! request the API server's answer to a bearer token its authenticators do not accept, `401`
//! with a `Status` object. It records each request's method, path and `Authorization` header.
//! [`FakeKubeApi::start_unresponsive`] makes one that takes requests and never answers, as an
//! overloaded or half-down API server does, to hold a job in its first call.

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
use serde_json::json;

use super::clouds::serve_tls_with;

/// One request the API server received.
#[derive(Clone, Debug)]
pub struct KubeRequest {
    pub method: String,
    /// With its query.
    pub path: String,
    pub authorization: Option<String>,
}

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
    answers: bool,
}

impl FakeKubeApi {
    pub async fn start() -> Self {
        Self::serve(true).await
    }

    /// One that records requests and never answers them.
    pub async fn start_unresponsive() -> Self {
        Self::serve(false).await
    }

    async fn serve(answers: bool) -> Self {
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
        let router = Router::new().fallback(unauthorized).with_state(ApiState { requests: requests.clone(), answers });
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

/// The API server's answer to a request whose credentials no authenticator accepts.
async fn unauthorized(State(state): State<ApiState>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    state.requests.lock().expect("lock").push(KubeRequest {
        method: method.to_string(),
        path: uri.path_and_query().map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned()),
        authorization: headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned),
    });
    if !state.answers {
        std::future::pending::<()>().await;
    }
    let status = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Unauthorized",
        "reason": "Unauthorized",
        "code": 401,
    });
    (StatusCode::UNAUTHORIZED, Json(status)).into_response()
}
