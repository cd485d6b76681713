//! Linked cloud accounts: `/api/v1/orgs/{org}/cloud-accounts`.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::text;

/// A cloud an account belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Aws,
    Azure,
    Gcp,
}

impl Provider {
    pub const ALL: [Provider; 3] = [Provider::Aws, Provider::Azure, Provider::Gcp];

    pub const fn as_str(self) -> &'static str {
        match self {
            Provider::Aws => "aws",
            Provider::Azure => "azure",
            Provider::Gcp => "gcp",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Provider::ALL.into_iter().find(|provider| provider.as_str() == value)
    }

    pub fn label(self) -> &'static str {
        match self {
            Provider::Aws => "AWS",
            Provider::Azure => "Azure",
            Provider::Gcp => "GCP",
        }
    }
}

/// What an account is for; a `prod` account's runs wait for an admin's approval, and
/// production accounts are marked as such everywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Prod,
    Dev,
    Uat,
    Sandbox,
    Other,
}

impl Environment {
    pub const ALL: [Environment; 5] =
        [Environment::Prod, Environment::Dev, Environment::Uat, Environment::Sandbox, Environment::Other];

    pub const fn as_str(self) -> &'static str {
        match self {
            Environment::Prod => "prod",
            Environment::Dev => "dev",
            Environment::Uat => "uat",
            Environment::Sandbox => "sandbox",
            Environment::Other => "other",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Environment::ALL.into_iter().find(|environment| environment.as_str() == value)
    }

    pub fn label(self) -> &'static str {
        match self {
            Environment::Prod => "Production",
            Environment::Dev => "Development",
            Environment::Uat => "UAT",
            Environment::Sandbox => "Sandbox",
            Environment::Other => "Other",
        }
    }
}

/// The outcome of the last check of an account's credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AccountStatus {
    Verified,
    /// The cloud refused the credentials.
    Invalid,
    /// The cloud could not be asked.
    Unreachable,
}

impl AccountStatus {
    pub const ALL: [AccountStatus; 3] = [AccountStatus::Verified, AccountStatus::Invalid, AccountStatus::Unreachable];

    pub const fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Verified => "verified",
            AccountStatus::Invalid => "invalid",
            AccountStatus::Unreachable => "unreachable",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        AccountStatus::ALL.into_iter().find(|status| status.as_str() == value)
    }

    pub fn label(self) -> &'static str {
        match self {
            AccountStatus::Verified => "Verified",
            AccountStatus::Invalid => "Invalid",
            AccountStatus::Unreachable => "Unreachable",
        }
    }
}

/// A linked account. Never carries a secret: only a masked hint and non-secret settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CloudAccount {
    pub id: Uuid,
    pub provider: Provider,
    pub name: String,
    pub environment: Environment,
    /// As of `checked_at`.
    pub status: AccountStatus,
    /// Why the last check failed.
    pub status_reason: Option<String>,
    /// Whom the credentials resolved to, as of the last successful check.
    pub identity: Option<CloudIdentity>,
    /// The configuration's non-secret parts (role ARN, tenant and client ids, project).
    #[schema(value_type = Object)]
    pub settings: Value,
    /// The end of the access key id, client id or key id.
    pub secret_hint: String,
    pub verified_at: Option<DateTime<Utc>>,
    pub checked_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl CloudAccount {
    /// A non-secret setting as text, e.g. `setting("role_arn")`.
    pub fn setting(&self, key: &str) -> Option<String> {
        match self.settings.get(key)? {
            Value::Null => None,
            Value::String(text) => Some(text.clone()),
            other => Some(other.to_string()),
        }
    }
}

/// Whom a cloud said a set of credentials belongs to, as of the last successful check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "provider", rename_all = "lowercase")]
pub enum CloudIdentity {
    Aws {
        account_id: String,
        /// The caller: the user, or the assumed role's session when a role is configured.
        arn: String,
        /// The user behind the access key, when a role was assumed on top of it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source_arn: Option<String>,
    },
    Azure {
        tenant_id: String,
        #[serde(default)]
        subscriptions: Vec<AzureSubscription>,
    },
    Gcp {
        project_id: String,
        client_email: String,
    },
}

impl CloudIdentity {
    /// One line naming the identity, for messages.
    pub fn summary(&self) -> String {
        match self {
            CloudIdentity::Aws { account_id, arn, .. } => format!("AWS account {account_id} ({arn})"),
            CloudIdentity::Azure { tenant_id, subscriptions } => {
                let count = match subscriptions.len() {
                    1 => "1 subscription".to_owned(),
                    n => format!("{n} subscriptions"),
                };
                format!("Azure tenant {tenant_id}, {count}")
            }
            CloudIdentity::Gcp { project_id, client_email } => format!("{client_email} in GCP project {project_id}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AzureSubscription {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub state: String,
}

/// A place an account can keep Terraform state: an S3 bucket, an Azure storage account or a
/// GCS bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Bucket {
    pub name: String,
    pub location: Option<String>,
    /// For Azure: the subscription holding the storage account.
    pub scope: Option<String>,
}

/// AWS credentials: an access key, optionally with a role to assume.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AwsCredentials {
    /// 16–128 capital letters and digits, like `AKIAIOSFODNN7EXAMPLE`.
    #[schema(required = true, pattern = r"^[A-Z0-9]{16,128}$")]
    pub access_key_id: String,
    #[schema(required = true, value_type = text::Secret)]
    pub secret_access_key: String,
    /// A role to assume with the key (`arn:aws:iam::123456789012:role/name`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^\s*(arn:aws[^:\u0000]*:iam::[0-9]{12}:role/[^\u0000]+)?\s*$")]
    pub role_arn: Option<String>,
    /// The external id the role's trust policy requires, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^\s*([A-Za-z0-9+=,.@:/_-]{2,1224})?\s*$")]
    pub external_id: Option<String>,
}

/// An Azure service principal (app registration) with a client secret.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AzureCredentials {
    /// Directory (tenant) id.
    #[schema(required = true, value_type = text::UuidText)]
    pub tenant_id: String,
    /// Application (client) id.
    #[schema(required = true, value_type = text::UuidText)]
    pub client_id: String,
    #[schema(required = true, value_type = text::Secret)]
    pub client_secret: String,
    /// The subscription to use; it must be visible to the service principal.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<text::UuidText>)]
    pub subscription_id: Option<String>,
}

/// A Google Cloud service-account key.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct GcpCredentials {
    /// The key file's contents, as downloaded from Google Cloud.
    #[schema(required = true, pattern = r"^[^\u0000]*[^\s\u0000][^\u0000]*$")]
    pub service_account_json: String,
}

/// The secret part of an account, for its provider; sent to the API, never returned by it.
/// `Debug` prints no secret, so logging one by mistake leaks nothing.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Credentials {
    Aws(AwsCredentials),
    Azure(AzureCredentials),
    Gcp(GcpCredentials),
}

impl Credentials {
    pub fn provider(&self) -> Provider {
        match self {
            Credentials::Aws(_) => Provider::Aws,
            Credentials::Azure(_) => Provider::Azure,
            Credentials::Gcp(_) => Provider::Gcp,
        }
    }
}

macro_rules! redacted_debug {
    ($($name:ty => $label:literal),* $(,)?) => {$(
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!($label, "([redacted])"))
            }
        }
    )*};
}

redacted_debug!(AwsCredentials => "AwsCredentials", AzureCredentials => "AzureCredentials", GcpCredentials => "GcpCredentials");

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({}, [redacted])", self.provider().as_str())
    }
}

/// `POST /api/v1/orgs/{org}/cloud-accounts`: credentials are verified with the cloud before
/// anything is stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LinkRequest {
    pub provider: Provider,
    /// 1–64 printable characters, unique in the organization.
    #[serde(default)]
    #[schema(required = true, value_type = text::AccountName)]
    pub name: String,
    pub environment: Environment,
    /// The provider's credentials. Read as JSON first, so that each wrong field is reported
    /// as `credentials.<field>`.
    #[serde(default)]
    #[schema(value_type = Credentials)]
    pub credentials: Value,
}

/// `PATCH /api/v1/orgs/{org}/cloud-accounts/{id}`: what is omitted stays as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAccountRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<text::AccountName>)]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<Environment>,
}

/// `PUT /api/v1/orgs/{org}/cloud-accounts/{id}/credentials`: the old credentials stay unless
/// the new ones verify.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RotateRequest {
    /// New credentials for the account's provider.
    #[serde(default)]
    #[schema(value_type = Credentials)]
    pub credentials: Value,
}
