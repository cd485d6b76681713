//! Fleetplane's side of the clouds: checks linked credentials with each cloud's own SDK, reports
//! the identity they resolve to, and lists the account's storage (to pick a Terraform state
//! bucket).
//!
//! - AWS: `aws-sdk-sts` `GetCallerIdentity` (and `AssumeRole` when a role is given); S3
//!   `ListBuckets` with `aws-sdk-s3`.
//! - Azure: `azure_identity`'s client-secret credential for an ARM token, then the ARM REST API
//!   for subscriptions and storage accounts (no maintained crate covers those calls).
//! - GCP: `google-cloud-auth` parses the service-account key and signs the OAuth 2.0 JWT-bearer
//!   assertion, which is exchanged at the key's `token_uri`; the token then lists buckets through
//!   the Cloud Storage JSON API. (The SDK's own credentials self-sign tokens and never ask the
//!   token endpoint, which would not prove the key is still valid.)
//!
//! Every endpoint can be overridden ([`Endpoints`]), which is how tests reach local emulators,
//! and every call is bounded by a timeout. Secrets never appear in `Debug` output or in errors.

mod aws;
mod azure;
mod gcp;
pub mod kube;

use std::{fmt, time::Duration};

use serde::{Deserialize, Serialize};

pub use gcp::ServiceAccountKey;

/// Where the clouds are. The defaults are the real public clouds.
#[derive(Clone, Debug)]
pub struct Endpoints {
    /// STS and S3 endpoint (`None`: AWS's regional endpoints).
    pub aws_endpoint_url: Option<String>,
    pub aws_region: String,
    pub azure_authority_host: String,
    pub azure_arm_endpoint: String,
    /// The only token endpoint a GCP key may name in its `token_uri` (keys come from users, and
    /// the server must not be made to post to arbitrary addresses).
    pub gcp_token_uri: String,
    pub gcp_storage_endpoint: String,
    /// Bound on each verification or listing, end to end.
    pub timeout: Duration,
    /// PEM certificates to trust besides the usual roots (a corporate proxy, a test server).
    pub extra_ca_pem: Option<Vec<u8>>,
}

impl Default for Endpoints {
    fn default() -> Self {
        Self {
            aws_endpoint_url: None,
            aws_region: "us-east-1".into(),
            azure_authority_host: "https://login.microsoftonline.com".into(),
            azure_arm_endpoint: "https://management.azure.com".into(),
            gcp_token_uri: "https://oauth2.googleapis.com/token".into(),
            gcp_storage_endpoint: "https://storage.googleapis.com".into(),
            timeout: Duration::from_secs(20),
            extra_ca_pem: None,
        }
    }
}

/// Credentials for one cloud account. `Debug` never shows the secret parts.
#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "provider", rename_all = "lowercase")]
pub enum Credentials {
    Aws(AwsCredentials),
    Azure(AzureCredentials),
    Gcp(GcpCredentials),
}

#[derive(Clone, Serialize, Deserialize)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub role_arn: Option<String>,
    pub external_id: Option<String>,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct AzureCredentials {
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
    pub subscription_id: Option<String>,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct GcpCredentials {
    /// The service-account key file, as downloaded from Google Cloud.
    pub service_account_json: String,
}

impl Credentials {
    /// The secret strings in these credentials, for scrubbing any text that might echo them.
    /// For GCP, the parts of the key file's private key (`gcp::key_secrets`): the file whole
    /// would never match a line of text.
    pub fn secrets(&self) -> Vec<String> {
        let all = match self {
            Credentials::Aws(aws) => {
                vec![aws.secret_access_key.clone(), aws.external_id.clone().unwrap_or_default()]
            }
            Credentials::Azure(azure) => vec![azure.client_secret.clone()],
            Credentials::Gcp(gcp) => gcp::key_secrets(&gcp.service_account_json),
        };
        all.into_iter().filter(|s| s.len() >= 4).collect()
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Aws(aws) => f
                .debug_struct("Aws")
                .field("access_key_id", &aws.access_key_id)
                .field("secret_access_key", &"[redacted]")
                .field("role_arn", &aws.role_arn)
                .finish_non_exhaustive(),
            Credentials::Azure(azure) => f
                .debug_struct("Azure")
                .field("tenant_id", &azure.tenant_id)
                .field("client_id", &azure.client_id)
                .field("client_secret", &"[redacted]")
                .finish_non_exhaustive(),
            Credentials::Gcp(_) => f.write_str("Gcp { service_account_json: [redacted] }"),
        }
    }
}

/// Who the credentials turned out to be, and the storage that can hold Terraform state: the
/// API shows them as the clouds report them, so they are the API's own types.
pub use fleetplane_api::{AzureSubscription, Bucket, CloudIdentity as Identity};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloudError {
    /// The input is malformed before any call is made (a key file that is not JSON, say).
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    /// The cloud answered and refused: unknown key, wrong secret, access denied.
    #[error("{message}")]
    Rejected { message: String },
    /// The cloud could not be reached, did not answer in time, or failed on its side.
    #[error("{message}")]
    Unreachable { message: String },
}

impl CloudError {
    fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid { field, message: message.into() }
    }

    fn rejected(message: impl Into<String>) -> Self {
        Self::Rejected { message: message.into() }
    }

    fn unreachable(message: impl Into<String>) -> Self {
        Self::Unreachable { message: message.into() }
    }

    /// Replaces any of `secrets` in the message, in case a cloud echoed one back.
    fn scrubbed(self, secrets: &[String]) -> Self {
        let scrub = |mut text: String| {
            for secret in secrets {
                text = text.replace(secret.as_str(), "[redacted]");
            }
            text
        };
        match self {
            Self::Invalid { field, message } => Self::Invalid { field, message: scrub(message) },
            Self::Rejected { message } => Self::Rejected { message: scrub(message) },
            Self::Unreachable { message } => Self::Unreachable { message: scrub(message) },
        }
    }
}

/// The clouds, as configured: build once and share.
#[derive(Clone)]
pub struct Clouds {
    endpoints: Endpoints,
    http: reqwest::Client,
}

impl Clouds {
    pub fn new(endpoints: Endpoints) -> Result<Self, CloudError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(endpoints.timeout)
            .user_agent(concat!("fleetplane/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &endpoints.extra_ca_pem {
            let certificates = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| CloudError::invalid("extra_ca_file", format!("not a PEM certificate bundle: {e}")))?;
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder.build().map_err(|e| CloudError::invalid("http", format!("HTTP client: {e}")))?;
        Ok(Self { endpoints, http })
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// Checks that the credentials work and says whose they are.
    pub async fn verify(&self, credentials: &Credentials) -> Result<Identity, CloudError> {
        let work = async {
            match credentials {
                Credentials::Aws(aws) => aws::verify(&self.endpoints, aws).await,
                Credentials::Azure(azure) => azure::verify(self, azure).await,
                Credentials::Gcp(gcp) => gcp::verify(self, gcp).await,
            }
        };
        self.bounded(work).await.map_err(|e| e.scrubbed(&credentials.secrets()))
    }

    /// The account's buckets (S3), storage accounts (Azure) or buckets (GCS).
    pub async fn list_buckets(&self, credentials: &Credentials) -> Result<Vec<Bucket>, CloudError> {
        let work = async {
            match credentials {
                Credentials::Aws(aws) => aws::list_buckets(&self.endpoints, aws).await,
                Credentials::Azure(azure) => azure::list_storage_accounts(self, azure).await,
                Credentials::Gcp(gcp) => gcp::list_buckets(self, gcp).await,
            }
        };
        self.bounded(work).await.map_err(|e| e.scrubbed(&credentials.secrets()))
    }

    /// Credentials for a provisioning job, as environment variables for the cloud's Terraform
    /// provider: short-lived where the cloud allows (an AWS STS session, a GCP access token);
    /// Azure's client credentials otherwise. `session` names the job (AWS role sessions).
    pub async fn job_environment(
        &self,
        credentials: &Credentials,
        session: &str,
    ) -> Result<Vec<(String, String)>, CloudError> {
        let work = async {
            match credentials {
                Credentials::Aws(aws) => aws::job_environment(&self.endpoints, aws, session).await,
                Credentials::Azure(azure) => {
                    let mut env = vec![
                        ("ARM_TENANT_ID".to_owned(), azure.tenant_id.clone()),
                        ("ARM_CLIENT_ID".to_owned(), azure.client_id.clone()),
                        ("ARM_CLIENT_SECRET".to_owned(), azure.client_secret.clone()),
                    ];
                    if let Some(subscription) = &azure.subscription_id {
                        env.push(("ARM_SUBSCRIPTION_ID".to_owned(), subscription.clone()));
                    }
                    Ok(env)
                }
                Credentials::Gcp(gcp) => gcp::job_environment(self, gcp).await,
            }
        };
        self.bounded(work).await.map_err(|e| e.scrubbed(&credentials.secrets()))
    }

    /// A bearer token for the managed Kubernetes cluster `cluster` (its name, as EKS needs it)
    /// in the account `credentials` open: minted now, good for an hour at most (see [`kube`]).
    pub async fn kubernetes_token(
        &self,
        credentials: &Credentials,
        cluster: &str,
    ) -> Result<kube::KubeToken, CloudError> {
        let work = async {
            match credentials {
                Credentials::Aws(aws) => aws::kube_token(&self.endpoints, aws, cluster).await,
                Credentials::Azure(azure) => azure::kube_token(self, azure).await,
                Credentials::Gcp(gcp) => gcp::kube_token(self, gcp).await,
            }
        };
        self.bounded(work).await.map_err(|e| e.scrubbed(&credentials.secrets()))
    }

    async fn bounded<T>(&self, work: impl Future<Output = Result<T, CloudError>>) -> Result<T, CloudError> {
        tokio::time::timeout(self.endpoints.timeout, work).await.unwrap_or_else(|_| {
            Err(CloudError::unreachable(format!(
                "The cloud did not answer within {} seconds.",
                self.endpoints.timeout.as_secs()
            )))
        })
    }
}

/// A message from an HTTP error, for requests made with reqwest.
fn http_failure(service: &str, error: &reqwest::Error) -> CloudError {
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    // reqwest's error may carry the URL; ours never hold secrets in URLs, but keep it short.
    CloudError::unreachable(format!("{service}: the request {what}."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_secrets() {
        let creds = [
            Credentials::Aws(AwsCredentials {
                access_key_id: "AKIAEXAMPLE".into(),
                secret_access_key: "very-secret-aws".into(),
                role_arn: None,
                external_id: Some("ext-secret-id".into()),
            }),
            Credentials::Azure(AzureCredentials {
                tenant_id: "t".into(),
                client_id: "c".into(),
                client_secret: "very-secret-azure".into(),
                subscription_id: None,
            }),
            Credentials::Gcp(GcpCredentials { service_account_json: "{\"private_key\":\"very-secret-gcp\"}".into() }),
        ];
        for cred in &creds {
            let shown = format!("{cred:?}");
            assert!(!shown.contains("very-secret") && !shown.contains("ext-secret"), "{shown}");
        }
    }

    #[test]
    fn errors_are_scrubbed_of_secrets() {
        let error = CloudError::rejected("bad secret hunter2-secret given").scrubbed(&["hunter2-secret".to_owned()]);
        assert_eq!(error.to_string(), "bad secret [redacted] given");
    }
}
