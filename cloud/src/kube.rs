//! Bearer tokens for a managed Kubernetes cluster's API server, minted for one run, and the
//! kubeconfig that carries one. Nothing long-lived goes into a deployment job: its kubeconfig
//! holds a token that expires within the hour (EKS's within fifteen minutes).
//!
//! - **EKS** reads a presigned STS `GetCallerIdentity` request, signed for the cluster's name
//!   (header `x-k8s-aws-id`), as `k8s-aws-v1.<base64url of the URL>`: the API server calls
//!   that URL to learn who the caller is. It is signed here; nothing is sent to AWS.
//! - **GKE** takes a Google OAuth 2.0 access token of the service account.
//! - **AKS** (with Entra ID integration) takes an Entra ID token for the AKS server
//!   application, by client credentials.

use std::{fmt, time::Duration};

use aws_sigv4::{
    http_request::{SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign},
    sign::v4,
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::json;

use crate::{CloudError, Endpoints, aws::StaticCredentials};

/// The Entra ID application every AKS cluster with Entra ID integration trusts.
pub const AKS_SERVER_APPLICATION: &str = "6dae42f8-4368-4678-94ff-3960e28e3630";
/// How long an EKS token is good for: the API server refuses presigned URLs older than 15 min.
pub const EKS_TOKEN_SECONDS: u64 = 60;

/// A bearer token for a cluster's API server.
#[derive(Clone, PartialEq, Eq)]
pub struct KubeToken {
    pub token: String,
    /// How long it stays good from now, at most.
    pub expires_in: Duration,
}

impl fmt::Debug for KubeToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeToken").field("token", &"[redacted]").field("expires_in", &self.expires_in).finish()
    }
}

/// The STS endpoint a presigned EKS token names: the emulator's, or AWS's regional one.
fn sts_url(endpoints: &Endpoints) -> String {
    match &endpoints.aws_endpoint_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => format!("https://sts.{}.amazonaws.com", endpoints.aws_region),
    }
}

/// An EKS token for `cluster`: `GetCallerIdentity` presigned with `credentials`.
pub(crate) fn eks_token(
    endpoints: &Endpoints,
    credentials: StaticCredentials,
    cluster: &str,
) -> Result<KubeToken, CloudError> {
    let url = format!("{}/?Action=GetCallerIdentity&Version=2011-06-15", sts_url(endpoints));
    let identity = credentials.into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(Duration::from_secs(EKS_TOKEN_SECONDS));
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&endpoints.aws_region)
        .name("sts")
        .time(std::time::SystemTime::now())
        .settings(settings)
        .build()
        .map_err(|e| CloudError::unreachable(format!("signing the EKS token: {e}")))?
        .into();
    let request =
        SignableRequest::new("GET", &url, std::iter::once(("x-k8s-aws-id", cluster)), SignableBody::Bytes(&[]))
            .map_err(|e| CloudError::unreachable(format!("signing the EKS token: {e}")))?;
    let (instructions, _signature) = sign(request, &params)
        .map_err(|e| CloudError::unreachable(format!("signing the EKS token: {e}")))?
        .into_parts();
    let mut presigned = url::Url::parse(&url).map_err(|e| CloudError::unreachable(format!("the STS URL: {e}")))?;
    presigned.query_pairs_mut().extend_pairs(instructions.params().iter().map(|(k, v)| (*k, v.as_ref())));
    Ok(KubeToken {
        token: format!("k8s-aws-v1.{}", URL_SAFE_NO_PAD.encode(presigned.as_str())),
        expires_in: Duration::from_secs(EKS_TOKEN_SECONDS),
    })
}

/// A kubeconfig (JSON, which kubectl and helm read as YAML) for one cluster, authenticated by
/// `token` alone: no client key, no exec plugin, nothing to refresh.
pub fn kubeconfig(name: &str, server: &str, ca_pem: &str, token: &KubeToken) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem.as_bytes());
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": name, "cluster": { "server": server, "certificate-authority-data": ca } }],
        "users": [{ "name": "fleetplane", "user": { "token": token.token } }],
        "contexts": [{ "name": name, "context": { "cluster": name, "user": "fleetplane" } }],
        "current-context": name,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints() -> Endpoints {
        Endpoints { aws_region: "eu-central-1".into(), ..Endpoints::default() }
    }

    fn decode(token: &KubeToken) -> url::Url {
        let encoded = token.token.strip_prefix("k8s-aws-v1.").expect("the EKS prefix");
        let url = String::from_utf8(URL_SAFE_NO_PAD.decode(encoded).expect("base64url")).expect("UTF-8");
        url::Url::parse(&url).expect("a URL")
    }

    #[test]
    fn an_eks_token_is_a_presigned_get_caller_identity_for_the_cluster() {
        let credentials = StaticCredentials::new("AKIDEXAMPLE", "secret-key", Some("session".into()), None, "test");
        let token = eks_token(&endpoints(), credentials, "fleet-prod").expect("signed");
        let url = decode(&token);
        assert_eq!(url.host_str(), Some("sts.eu-central-1.amazonaws.com"));
        let query: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
        assert_eq!(query["Action"], "GetCallerIdentity");
        assert_eq!(query["X-Amz-Algorithm"], "AWS4-HMAC-SHA256");
        assert_eq!(query["X-Amz-Expires"], EKS_TOKEN_SECONDS.to_string());
        assert!(query["X-Amz-Credential"].starts_with("AKIDEXAMPLE/"), "{query:?}");
        assert!(query["X-Amz-Credential"].contains("/eu-central-1/sts/aws4_request"), "{query:?}");
        assert_eq!(query["X-Amz-Security-Token"], "session");
        assert!(query["X-Amz-SignedHeaders"].split(';').any(|h| h == "x-k8s-aws-id"), "{query:?}");
        assert_eq!(query["X-Amz-Signature"].len(), 64);
        assert!(!token.token.contains("secret-key") && !url.as_str().contains("secret-key"));
        assert_eq!(format!("{token:?}"), "KubeToken { token: \"[redacted]\", expires_in: 60s }");
    }

    /// SigV4 for a presigned GET, written from AWS's documentation: the signature the API
    /// server's call to STS would be checked with.
    fn expected_signature(url: &url::Url, secret: &str, cluster: &str) -> String {
        use aws_lc_rs::{digest, hmac};
        let encode = |text: &str| -> String {
            text.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                    _ => format!("%{b:02X}"),
                })
                .collect()
        };
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let mut query: Vec<(String, String)> =
            url.query_pairs().into_owned().filter(|(k, _)| k != "X-Amz-Signature").collect();
        query.sort();
        let canonical_query = query.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>();
        let host = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_owned(),
        };
        let empty = hex(digest::digest(&digest::SHA256, b"").as_ref());
        let canonical = format!(
            "GET\n/\n{}\nhost:{host}\nx-k8s-aws-id:{cluster}\n\nhost;x-k8s-aws-id\n{empty}",
            canonical_query.join("&")
        );
        let get = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
        let amz_date = get("X-Amz-Date");
        let scope = get("X-Amz-Credential").split_once('/').map(|(_, scope)| scope.to_owned()).unwrap_or_default();
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
        );
        let mut key = format!("AWS4{secret}").into_bytes();
        for part in scope.split('/') {
            key = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &key), part.as_bytes()).as_ref().to_vec();
        }
        hex(hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &key), to_sign.as_bytes()).as_ref())
    }

    #[test]
    fn an_eks_token_carries_a_valid_signature_over_the_cluster_name() {
        let credentials = StaticCredentials::new("AKIDEXAMPLE", "secret-key", None, None, "test");
        let url = decode(&eks_token(&endpoints(), credentials, "fleet-prod").expect("signed"));
        let signature = url.query_pairs().find(|(k, _)| k == "X-Amz-Signature").expect("signed").1.into_owned();
        assert_eq!(signature, expected_signature(&url, "secret-key", "fleet-prod"));
        assert_ne!(signature, expected_signature(&url, "secret-key", "another-cluster"), "bound to its cluster");
        assert_ne!(signature, expected_signature(&url, "another-key", "fleet-prod"));
    }

    #[test]
    fn an_eks_token_names_the_emulator_when_there_is_one() {
        let endpoints = Endpoints { aws_endpoint_url: Some("http://127.0.0.1:5000/".into()), ..endpoints() };
        let credentials = StaticCredentials::new("AKIDEXAMPLE", "secret-key", None, None, "test");
        let url = decode(&eks_token(&endpoints, credentials, "c").expect("signed"));
        assert_eq!((url.host_str(), url.port()), (Some("127.0.0.1"), Some(5000)));
    }

    #[test]
    fn a_kubeconfig_holds_the_server_the_ca_and_the_token_only() {
        let token = KubeToken { token: "t0ken".into(), expires_in: Duration::from_secs(60) };
        let config: serde_json::Value =
            serde_json::from_str(&kubeconfig("prod", "https://k8s.example:443", "-----BEGIN CERTIFICATE-----", &token))
                .expect("JSON");
        assert_eq!(config["current-context"], "prod");
        assert_eq!(config["clusters"][0]["cluster"]["server"], "https://k8s.example:443");
        assert_eq!(config["users"][0]["user"], json!({ "token": "t0ken" }));
        let ca = config["clusters"][0]["cluster"]["certificate-authority-data"].as_str().expect("CA");
        assert_eq!(
            base64::engine::general_purpose::STANDARD.decode(ca).expect("base64"),
            b"-----BEGIN CERTIFICATE-----"
        );
    }
}
