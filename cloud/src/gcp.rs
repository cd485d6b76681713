//! GCP: the service-account key, an OAuth 2.0 token for it, and Cloud Storage.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{Bucket, CloudError, Clouds, GcpCredentials, Identity, http_failure};

const FIELD: &str = "service_account_json";
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The parts of a service-account key file Fleetplane uses, after validation. `Debug` leaves
/// the file (and so its private key) out.
#[derive(Clone)]
pub struct ServiceAccountKey {
    pub project_id: String,
    pub client_email: String,
    pub private_key_id: String,
    pub token_uri: String,
    json: Value,
}

impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("project_id", &self.project_id)
            .field("client_email", &self.client_email)
            .field("private_key_id", &self.private_key_id)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

/// The secret parts of a key file, for scrubbing text that might echo them: its private key
/// whole, and each line of the key's body on its own (an error may quote a piece of it, or the
/// key with its line breaks escaped). Nothing for a file that is not JSON.
pub(crate) fn key_secrets(text: &str) -> Vec<String> {
    let Some(pem) = serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|json| json.get("private_key").and_then(Value::as_str).map(str::to_owned))
    else {
        return Vec::new();
    };
    let mut secrets: Vec<String> = pem
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with("-----") && line.len() >= 16)
        .map(str::to_owned)
        .collect();
    secrets.push(pem.replace('\n', "\\n"));
    secrets.push(pem);
    // Longest first, so that a whole key is replaced before its lines are.
    secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
    secrets
}

impl ServiceAccountKey {
    /// Checks a key file before anything is sent anywhere: JSON, of type `service_account`,
    /// with the fields a token needs, an RSA private key, and the expected token endpoint.
    pub fn parse(text: &str, allowed_token_uri: &str) -> Result<Self, CloudError> {
        let json: Value = serde_json::from_str(text).map_err(|_| {
            CloudError::invalid(FIELD, "This is not a JSON key file. Upload the file Google Cloud gave you.")
        })?;
        let field = |name: &str| json.get(name).and_then(Value::as_str).map(str::trim).filter(|v| !v.is_empty());
        match field("type") {
            Some("service_account") => {}
            Some(other) => {
                return Err(CloudError::invalid(
                    FIELD,
                    format!("The key's type is `{other}`; Fleetplane needs a `service_account` key."),
                ));
            }
            None => return Err(CloudError::invalid(FIELD, "The key has no `type`; expected `service_account`.")),
        }
        let missing = ["project_id", "private_key_id", "private_key", "client_email"]
            .into_iter()
            .filter(|name| field(name).is_none())
            .collect::<Vec<_>>();
        if !missing.is_empty() {
            return Err(CloudError::invalid(FIELD, format!("The key file lacks {}.", missing.join(", "))));
        }
        check_rsa(field("private_key").unwrap_or_default())?;
        let token_uri = field("token_uri").unwrap_or("https://oauth2.googleapis.com/token").to_owned();
        if token_uri != allowed_token_uri {
            return Err(CloudError::invalid(
                FIELD,
                format!("The key's token_uri is `{token_uri}`; this server only accepts `{allowed_token_uri}`."),
            ));
        }
        Ok(Self {
            project_id: field("project_id").unwrap_or_default().to_owned(),
            client_email: field("client_email").unwrap_or_default().to_owned(),
            private_key_id: field("private_key_id").unwrap_or_default().to_owned(),
            token_uri,
            json,
        })
    }
}

/// The private key must be a PKCS#8 PEM RSA key: Google signs service-account tokens with RS256.
fn check_rsa(pem: &str) -> Result<(), CloudError> {
    let not_rsa = || CloudError::invalid(FIELD, "The key's private_key is not an RSA private key in PKCS#8 PEM form.");
    let body: String = pem
        .lines()
        .map(str::trim)
        .skip_while(|line| *line != "-----BEGIN PRIVATE KEY-----")
        .skip(1)
        .take_while(|line| *line != "-----END PRIVATE KEY-----")
        .collect();
    let der = STANDARD.decode(body).map_err(|_| not_rsa())?;
    aws_lc_rs::rsa::KeyPair::from_pkcs8(&der).map(drop).map_err(|_| not_rsa())
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
}

#[derive(Deserialize)]
struct OAuthError {
    error: String,
    error_description: Option<String>,
}

/// Exchanges a JWT assertion signed with the key (by `google-cloud-auth`) for an access token
/// at the key's token endpoint: the step where Google says whether the key is still valid.
async fn access_token(clouds: &Clouds, key: &ServiceAccountKey) -> Result<String, CloudError> {
    let signer = google_cloud_auth::credentials::service_account::Builder::new(key.json.clone())
        .build_signer()
        .map_err(|_| CloudError::invalid(FIELD, "The key file could not be read as a service-account key."))?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let header = json!({ "alg": "RS256", "typ": "JWT", "kid": key.private_key_id });
    let claims =
        json!({ "iss": key.client_email, "scope": SCOPE, "aud": key.token_uri, "iat": now, "exp": now + 3600 });
    let signing_input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let signature = signer
        .sign(signing_input.as_bytes())
        .await
        .map_err(|_| CloudError::invalid(FIELD, "The key's private key cannot sign (is it a valid RSA key?)."))?;
    let assertion = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature));

    let response = clouds
        .http
        .post(&key.token_uri)
        .form(&[("grant_type", JWT_BEARER), ("assertion", assertion.as_str())])
        .send()
        .await
        .map_err(|e| http_failure("Google's token endpoint", &e))?;
    let status = response.status();
    if status.is_server_error() {
        return Err(CloudError::unreachable(format!("Google's token endpoint failed (HTTP {status}).")));
    }
    if !status.is_success() {
        let reason = match response.json::<OAuthError>().await {
            Ok(e) => format!("{}{}", e.error, e.error_description.map(|d| format!(": {d}")).unwrap_or_default()),
            Err(_) => format!("HTTP {status}"),
        };
        return Err(CloudError::rejected(format!("Google refused the service-account key ({reason}).")));
    }
    let token: TokenResponse = response
        .json()
        .await
        .map_err(|_| CloudError::unreachable("Google's token endpoint answered with something that is not a token."))?;
    Ok(token.access_token)
}

#[derive(Deserialize)]
struct BucketList {
    #[serde(default)]
    items: Vec<BucketJson>,
}

#[derive(Deserialize)]
struct BucketJson {
    name: String,
    location: Option<String>,
}

async fn buckets(clouds: &Clouds, key: &ServiceAccountKey, token: &str, max: u32) -> Result<Vec<Bucket>, CloudError> {
    let url = format!("{}/storage/v1/b", clouds.endpoints().gcp_storage_endpoint.trim_end_matches('/'));
    let response = clouds
        .http
        .get(&url)
        .query(&[("project", key.project_id.as_str()), ("maxResults", &max.to_string())])
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| http_failure("Cloud Storage", &e))?;
    let status = response.status();
    if status.is_server_error() {
        return Err(CloudError::unreachable(format!("Cloud Storage failed (HTTP {status}).")));
    }
    if !status.is_success() {
        return Err(CloudError::rejected(format!(
            "Cloud Storage refused to list the buckets of project {} (HTTP {status}).",
            key.project_id
        )));
    }
    let list: BucketList = response
        .json()
        .await
        .map_err(|_| CloudError::unreachable("Cloud Storage answered with something unexpected."))?;
    let mut buckets: Vec<Bucket> =
        list.items.into_iter().map(|b| Bucket { name: b.name, location: b.location, scope: None }).collect();
    buckets.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(buckets)
}

/// An access token for a provisioning job, in the variables the Google provider reads.
pub async fn job_environment(clouds: &Clouds, gcp: &GcpCredentials) -> Result<Vec<(String, String)>, CloudError> {
    let key = ServiceAccountKey::parse(&gcp.service_account_json, &clouds.endpoints().gcp_token_uri)?;
    let token = access_token(clouds, &key).await?;
    Ok(vec![
        ("GOOGLE_OAUTH_ACCESS_TOKEN".to_owned(), token),
        ("GOOGLE_PROJECT".to_owned(), key.project_id.clone()),
        ("CLOUDSDK_CORE_PROJECT".to_owned(), key.project_id),
    ])
}

/// A token for a GKE cluster's API server: the service account's OAuth 2.0 access token.
pub async fn kube_token(clouds: &Clouds, gcp: &GcpCredentials) -> Result<crate::kube::KubeToken, CloudError> {
    let key = ServiceAccountKey::parse(&gcp.service_account_json, &clouds.endpoints().gcp_token_uri)?;
    let token = access_token(clouds, &key).await?;
    Ok(crate::kube::KubeToken { token, expires_in: std::time::Duration::from_secs(3600) })
}

pub async fn verify(clouds: &Clouds, gcp: &GcpCredentials) -> Result<Identity, CloudError> {
    let key = ServiceAccountKey::parse(&gcp.service_account_json, &clouds.endpoints().gcp_token_uri)?;
    let token = access_token(clouds, &key).await?;
    buckets(clouds, &key, &token, 1).await?;
    Ok(Identity::Gcp { project_id: key.project_id, client_email: key.client_email })
}

pub async fn list_buckets(clouds: &Clouds, gcp: &GcpCredentials) -> Result<Vec<Bucket>, CloudError> {
    let key = ServiceAccountKey::parse(&gcp.service_account_json, &clouds.endpoints().gcp_token_uri)?;
    let token = access_token(clouds, &key).await?;
    buckets(clouds, &key, &token, 1000).await
}

#[cfg(test)]
mod tests {
    use super::*;

    const URI: &str = "https://oauth2.googleapis.com/token";

    fn invalid(text: &str) -> String {
        match ServiceAccountKey::parse(text, URI) {
            Err(CloudError::Invalid { message, .. }) => message,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    const PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKB\n-----END PRIVATE KEY-----\n";

    #[test]
    fn a_key_never_shows_in_debug_output() {
        let key = ServiceAccountKey {
            project_id: "p".into(),
            client_email: "a@p.iam.gserviceaccount.com".into(),
            private_key_id: "k".into(),
            token_uri: URI.into(),
            json: json!({ "private_key": PEM }),
        };
        let shown = format!("{key:?}");
        assert!(
            shown.contains("a@p.iam.gserviceaccount.com") && !shown.contains("MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"),
            "{shown}"
        );
    }

    #[test]
    fn the_parts_of_a_key_are_secrets_whole_escaped_and_line_by_line() {
        let file = json!({ "type": "service_account", "private_key": PEM }).to_string();
        let secrets = key_secrets(&file);
        for echoed in [
            PEM.to_owned(),
            PEM.replace('\n', "\\n"),
            "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC".to_owned(),
            "BKcwggSjAgEAAoIBAQC7VJTUt9Us8cKB".to_owned(),
        ] {
            let text = format!("the cloud said: {echoed} was refused");
            let scrubbed = secrets.iter().fold(text, |text, secret| text.replace(secret.as_str(), "[redacted]"));
            assert!(!scrubbed.contains("MIIEvQ") && !scrubbed.contains("BKcwgg"), "{scrubbed}");
        }
        assert!(key_secrets("{not json").is_empty());
    }

    #[test]
    fn key_files_are_checked_before_any_call() {
        assert!(invalid("{not json").contains("not a JSON key file"));
        assert!(invalid(r#"{"type":"authorized_user"}"#).contains("`authorized_user`"));
        assert!(invalid(r#"{"project_id":"p"}"#).contains("no `type`"));
        let missing = invalid(r#"{"type":"service_account","project_id":"p","private_key_id":"k"}"#);
        assert!(missing.contains("private_key") && missing.contains("client_email"), "{missing}");
        let not_pem = r#"{"type":"service_account","project_id":"p","private_key_id":"k","client_email":"a@b","private_key":"nope"}"#;
        assert!(invalid(not_pem).contains("not an RSA private key"));
    }
}
