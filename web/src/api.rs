//! A typed client for Fleetplane's REST API (`/api/v1`), as the browser sees it.
//!
//! Requests are same-origin `fetch` calls that carry the session cookie; unsafe methods add the
//! `X-CSRF-Token` header from the `fp_csrf` cookie. Every failure, including a network error,
//! becomes an [`ApiError`] shaped like the API's problem details, so pages handle one kind.
//!
//! Only the browser talks to the API: pages call this from event handlers and local resources,
//! which never run during server rendering.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};

use crate::format::encode;

/// An error from the API (its `application/problem+json` body) or from getting there.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct ApiError {
    /// HTTP status; `0` when the request never got an answer.
    #[serde(default)]
    pub status: u16,
    /// Stable machine-readable code, e.g. `email_not_verified`.
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub detail: Option<String>,
    /// Problems with individual request fields.
    #[serde(default)]
    pub errors: Vec<FieldError>,
}

/// One field's problem in a `validation_failed` (or conflict) response.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct FieldError {
    pub field: String,
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
}

impl ApiError {
    fn network(reason: impl fmt::Display) -> Self {
        Self {
            status: 0,
            code: "network_error".into(),
            title: "Could not reach Fleetplane".into(),
            detail: Some(format!("Check your connection and try again. ({reason})")),
            errors: Vec::new(),
        }
    }

    /// An error response whose body was not problem details (a proxy's error page, say).
    fn from_status(status: u16) -> Self {
        let title = match status {
            401 => "You are not signed in",
            403 => "You are not allowed to do that",
            404 => "Not found",
            429 => "Too many requests",
            502..=504 => "Fleetplane is unavailable",
            _ => "Something went wrong",
        };
        Self { status, code: format!("http_{status}"), title: title.into(), detail: None, errors: Vec::new() }
    }

    fn unexpected_body(status: u16, reason: impl fmt::Display) -> Self {
        Self {
            detail: Some(format!("The server sent a response the UI did not understand ({reason}).")),
            ..Self::from_status(status)
        }
    }

    /// The message for `field`, if the API reported one.
    pub fn field(&self, field: &str) -> Option<&str> {
        self.errors.iter().find(|error| error.field == field).map(|error| error.message.as_str())
    }

    /// The same error with `prefix` removed from its field names, so that a form whose inputs
    /// are named after a nested object's fields (`credentials.client_id` → `client_id`) shows
    /// each message under its input.
    pub fn strip_field_prefix(mut self, prefix: &str) -> Self {
        for error in &mut self.errors {
            if let Some(rest) = error.field.strip_prefix(prefix) {
                error.field = rest.to_owned();
            }
        }
        self
    }

    /// The sentence to show in a banner.
    pub fn message(&self) -> &str {
        match &self.detail {
            Some(detail) if !detail.is_empty() => detail,
            _ if !self.title.is_empty() => &self.title,
            _ => "Something went wrong.",
        }
    }

    /// The session is missing or has ended.
    pub fn is_unauthenticated(&self) -> bool {
        self.status == 401 && self.code != "invalid_credentials"
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// An organization role, highest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Admin,
    Operator,
    Viewer,
    /// A role this UI does not know yet.
    #[serde(other)]
    Unknown,
}

impl Role {
    /// The roles a member can be given, highest first.
    pub const ASSIGNABLE: [Role; 4] = [Role::Owner, Role::Admin, Role::Operator, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
            Role::Unknown => "unknown",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Role::Owner => "Owner",
            Role::Admin => "Admin",
            Role::Operator => "Operator",
            Role::Viewer => "Viewer",
            Role::Unknown => "Unknown",
        }
    }

    pub fn parse(value: &str) -> Option<Role> {
        Role::ASSIGNABLE.into_iter().find(|role| role.as_str() == value)
    }

    /// Admins and owners manage members.
    pub fn manages_members(self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }

    /// Admins and owners connect, change and remove cloud accounts.
    pub fn manages_cloud_accounts(self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }

    /// Operators and above may use a cloud account: check it, list its storage.
    pub fn uses_cloud_accounts(self) -> bool {
        matches!(self, Role::Owner | Role::Admin | Role::Operator)
    }

    /// Admins and owners create, apply and delete clusters, approve and retry runs, and
    /// release a cluster's state lock.
    pub fn manages_clusters(self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }

    /// Operators and above run plans and cancel runs.
    pub fn operates_clusters(self) -> bool {
        matches!(self, Role::Owner | Role::Admin | Role::Operator)
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct User {
    pub id: String,
    pub email: String,
    pub username: String,
    #[serde(default)]
    pub email_verified: bool,
    #[serde(default)]
    pub has_password: bool,
    #[serde(default)]
    pub created_at: String,
}

/// An account at another provider (Google) that signs in as this one.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct LinkedIdentity {
    pub provider: String,
    pub email: String,
    pub linked_at: String,
    #[serde(default)]
    pub last_used_at: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Message {
    #[serde(default)]
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct SignedUp {
    pub user: User,
    #[serde(default)]
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Token {
    #[serde(deserialize_with = "text")]
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub prefix: String,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub last_used_at: Option<String>,
}

/// A signed-in browser (`GET /api/v1/me/sessions`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Session {
    #[serde(deserialize_with = "text")]
    pub id: String,
    #[serde(default)]
    pub user_agent: String,
    #[serde(default)]
    pub ip: String,
    pub created_at: String,
    pub last_seen_at: String,
    #[serde(default)]
    pub expires_at: String,
    /// The session making the request.
    #[serde(default)]
    pub current: bool,
}

/// A token just created: the secret is in `token`, and is never shown again.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct NewToken {
    pub token: String,
    #[serde(flatten)]
    pub info: Token,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Org {
    #[serde(deserialize_with = "text")]
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub display_name: Option<String>,
    pub role: Role,
    #[serde(default)]
    pub personal: bool,
    #[serde(default)]
    pub created_at: String,
}

impl Org {
    /// The name to show: the display name, or the slug when there is none.
    pub fn title(&self) -> &str {
        match &self.display_name {
            Some(name) if !name.trim().is_empty() => name,
            _ => &self.name,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Member {
    #[serde(deserialize_with = "text")]
    pub user_id: String,
    pub username: String,
    #[serde(default)]
    pub email: String,
    pub role: Role,
    #[serde(default)]
    pub joined_at: String,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct AuditPage {
    pub items: Vec<AuditEntry>,
    #[serde(default, deserialize_with = "optional_text")]
    pub next_before: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct AuditEntry {
    #[serde(deserialize_with = "text")]
    pub id: String,
    pub action: String,
    #[serde(default, deserialize_with = "optional_text")]
    pub actor_id: Option<String>,
    #[serde(default)]
    pub actor_name: Option<String>,
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub details: Option<Value>,
    #[serde(default)]
    pub created_at: String,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct OutboxMail {
    #[serde(deserialize_with = "text")]
    pub id: String,
    #[serde(deserialize_with = "text")]
    pub to: String,
    #[serde(default)]
    pub subject: String,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub created_at: String,
}

/// A cloud a [`CloudAccount`] belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Aws,
    Azure,
    Gcp,
    /// A provider this UI does not know yet.
    #[serde(other)]
    Unknown,
}

impl Provider {
    pub const ALL: [Provider; 3] = [Provider::Aws, Provider::Azure, Provider::Gcp];

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Aws => "aws",
            Provider::Azure => "azure",
            Provider::Gcp => "gcp",
            Provider::Unknown => "unknown",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Provider::Aws => "AWS",
            Provider::Azure => "Azure",
            Provider::Gcp => "GCP",
            Provider::Unknown => "Unknown",
        }
    }

    pub fn parse(value: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|provider| provider.as_str() == value)
    }
}

/// What a cloud account is used for; production accounts are marked as such everywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Prod,
    Dev,
    Uat,
    Sandbox,
    Other,
    /// An environment this UI does not know yet.
    #[serde(other)]
    Unknown,
}

impl Environment {
    pub const ALL: [Environment; 5] =
        [Environment::Prod, Environment::Dev, Environment::Uat, Environment::Sandbox, Environment::Other];

    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Prod => "prod",
            Environment::Dev => "dev",
            Environment::Uat => "uat",
            Environment::Sandbox => "sandbox",
            Environment::Other => "other",
            Environment::Unknown => "unknown",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Environment::Prod => "Production",
            Environment::Dev => "Development",
            Environment::Uat => "UAT",
            Environment::Sandbox => "Sandbox",
            Environment::Other => "Other",
            Environment::Unknown => "Unknown",
        }
    }

    pub fn parse(value: &str) -> Option<Environment> {
        Environment::ALL.into_iter().find(|environment| environment.as_str() == value)
    }
}

/// The outcome of the last check of a cloud account's credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountStatus {
    Verified,
    /// The cloud refused the credentials.
    Invalid,
    /// The cloud could not be asked.
    Unreachable,
    #[serde(other)]
    Unknown,
}

impl AccountStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Verified => "verified",
            AccountStatus::Invalid => "invalid",
            AccountStatus::Unreachable => "unreachable",
            AccountStatus::Unknown => "unknown",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            AccountStatus::Verified => "Verified",
            AccountStatus::Invalid => "Invalid",
            AccountStatus::Unreachable => "Unreachable",
            AccountStatus::Unknown => "Unknown",
        }
    }
}

/// Credentials for one cloud, stored by Fleetplane once the cloud accepts them. The secrets
/// are never sent back; `secret_hint` shows which ones are stored.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct CloudAccount {
    #[serde(deserialize_with = "text")]
    pub id: String,
    pub provider: Provider,
    pub name: String,
    pub environment: Environment,
    pub status: AccountStatus,
    #[serde(default)]
    pub status_reason: Option<String>,
    /// Who the credentials turned out to be, as of the last successful check.
    #[serde(default)]
    pub identity: Option<Identity>,
    /// The non-secret part of the credentials (AWS role ARN, Azure tenant and client ids, ...).
    #[serde(default)]
    pub settings: Value,
    #[serde(default)]
    pub secret_hint: String,
    #[serde(default)]
    pub verified_at: Option<String>,
    #[serde(default)]
    pub checked_at: String,
}

impl CloudAccount {
    /// A non-secret setting as text, e.g. `setting("role_arn")`.
    pub fn setting(&self, key: &str) -> Option<String> {
        self.settings.get(key).filter(|value| !value.is_null()).map(value_text)
    }
}

/// The identity a cloud reported for a set of credentials. Told apart by their fields, so a
/// shape this UI does not know is kept as JSON instead of failing the whole list.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Identity {
    Aws {
        #[serde(deserialize_with = "text")]
        account_id: String,
        /// The caller: the user, or the assumed role's session.
        arn: String,
        /// The user behind the access key when a role was assumed.
        #[serde(default)]
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
    Other(Value),
}

impl Identity {
    /// One line naming the identity, for messages.
    pub fn summary(&self) -> String {
        match self {
            Identity::Aws { account_id, arn, .. } => format!("AWS account {account_id} ({arn})"),
            Identity::Azure { tenant_id, subscriptions } => {
                let count = match subscriptions.len() {
                    1 => "1 subscription".to_owned(),
                    n => format!("{n} subscriptions"),
                };
                format!("Azure tenant {tenant_id}, {count}")
            }
            Identity::Gcp { project_id, client_email } => format!("{client_email} in GCP project {project_id}"),
            Identity::Other(value) => value.to_string(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct AzureSubscription {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub state: String,
}

/// A place a cloud account can keep Terraform state: an S3 bucket, an Azure storage account or
/// a GCS bucket.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Bucket {
    pub name: String,
    #[serde(default)]
    pub location: Option<String>,
    /// Where the bucket lives inside the account (an Azure subscription).
    #[serde(default)]
    pub scope: Option<String>,
}

/// The secret part of a cloud account, as sent to the API (never received from it).
///
/// `Debug` prints no secret, so logging one by mistake leaks nothing.
#[derive(Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Credentials {
    Aws {
        access_key_id: String,
        secret_access_key: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        role_arn: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        external_id: Option<String>,
    },
    Azure {
        tenant_id: String,
        client_id: String,
        client_secret: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        subscription_id: Option<String>,
    },
    Gcp {
        service_account_json: String,
    },
}

impl Credentials {
    pub fn provider(&self) -> Provider {
        match self {
            Credentials::Aws { .. } => Provider::Aws,
            Credentials::Azure { .. } => Provider::Azure,
            Credentials::Gcp { .. } => Provider::Gcp,
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({}, [redacted])", self.provider().as_str())
    }
}

/// How this installation runs Terraform.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Executor {
    /// Provisioner containers on a Docker engine.
    Docker,
    /// Local `terraform` processes, because no Docker engine answered.
    Process,
    /// This server runs no workers itself; `fleetplane worker` processes do.
    None,
    #[serde(other)]
    Unknown,
}

impl Executor {
    pub fn as_str(self) -> &'static str {
        match self {
            Executor::Docker => "docker",
            Executor::Process => "process",
            Executor::None => "none",
            Executor::Unknown => "unknown",
        }
    }
}

/// `GET /api/v1/system`: facts about the installation that change what the UI says.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct System {
    pub executor: Executor,
    #[serde(default)]
    pub workers: u32,
}

/// `GET /api/v1/cluster-options`: what a new cluster may be, and the form's defaults.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct ClusterOptions {
    #[serde(default)]
    pub targets: Vec<TargetOption>,
    #[serde(default)]
    pub kubernetes_versions: Vec<String>,
    #[serde(default)]
    pub defaults: SpecDefaults,
    #[serde(default)]
    pub limits: SpecLimits,
}

impl ClusterOptions {
    pub fn target(&self, id: &str) -> Option<&TargetOption> {
        self.targets.iter().find(|target| target.id == id)
    }

    /// The targets a cloud account of `provider` can create clusters on: its cloud's own, and
    /// `local`, which needs no cloud. Without an account (`None`), only `local`.
    pub fn targets_for(&self, provider: Option<Provider>) -> impl Iterator<Item = &TargetOption> {
        self.targets.iter().filter(move |target| target.provider.is_none_or(|own| Some(own) == provider))
    }

    /// Whether clusters can be created with no cloud account at all (the `local` target).
    pub fn local_enabled(&self) -> bool {
        self.targets.iter().any(|target| target.provider.is_none() && target.enabled)
    }
}

/// Where a cluster can be created: a managed Kubernetes service, or `local`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct TargetOption {
    /// `aws-eks`, `azure-aks`, `gcp-gke` or `local`.
    pub id: String,
    /// The cloud it runs in; `None` for `local`.
    #[serde(default)]
    pub provider: Option<Provider>,
    pub label: String,
    #[serde(default)]
    pub regions: Vec<String>,
    #[serde(default)]
    pub instance_types: Vec<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct SpecDefaults {
    #[serde(default)]
    pub vpc_cidr: String,
    #[serde(default)]
    pub public_subnets: Vec<String>,
    #[serde(default)]
    pub private_subnets: Vec<String>,
    #[serde(default)]
    pub node_min: Option<u32>,
    #[serde(default)]
    pub node_max: Option<u32>,
    #[serde(default)]
    pub node_desired: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct SpecLimits {
    #[serde(default)]
    pub node_max: Option<u32>,
    #[serde(default)]
    pub name_max: Option<u32>,
}

/// Where Terraform keeps a cluster's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Fleetplane itself (Terraform's `http` backend), with history and a visible lock.
    #[default]
    Fleetplane,
    S3,
    Gcs,
    Azurerm,
    #[serde(other)]
    Unknown,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Fleetplane => "fleetplane",
            BackendKind::S3 => "s3",
            BackendKind::Gcs => "gcs",
            BackendKind::Azurerm => "azurerm",
            BackendKind::Unknown => "unknown",
        }
    }

    /// The bucket backend of a cloud account's provider.
    pub fn bucket_of(provider: Provider) -> Option<BackendKind> {
        match provider {
            Provider::Aws => Some(BackendKind::S3),
            Provider::Gcp => Some(BackendKind::Gcs),
            Provider::Azure => Some(BackendKind::Azurerm),
            Provider::Unknown => None,
        }
    }

    pub fn parse(value: &str) -> Option<BackendKind> {
        [BackendKind::Fleetplane, BackendKind::S3, BackendKind::Gcs, BackendKind::Azurerm]
            .into_iter()
            .find(|kind| kind.as_str() == value)
    }
}

/// A cluster's state backend, as the API takes and returns it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StateBackend {
    #[serde(rename = "type")]
    pub kind: BackendKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// What a new cluster should be: the body of `POST /api/v1/orgs/{org}/clusters`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClusterSpec {
    /// Empty for a local simulation without an account.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cloud_account_id: String,
    pub target: String,
    pub name_prefix: String,
    pub name_suffix: String,
    pub region: String,
    pub kubernetes_version: String,
    pub vpc_cidr: String,
    pub public_subnets: Vec<String>,
    pub private_subnets: Vec<String>,
    pub node_instance_type: String,
    pub node_min: u32,
    pub node_max: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_desired: Option<u32>,
    pub state_backend: StateBackend,
    /// Knobs of the simulated `local` target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub simulate: Option<Simulate>,
}

/// How the `local` target's simulation behaves, to see failures and slow runs on purpose.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Simulate {
    /// `plan` or `apply`: the step that fails.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fail_at: Option<String>,
    /// Seconds each simulated step takes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_seconds: Option<u32>,
}

/// Where a cluster is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterStatus {
    Pending,
    Provisioning,
    Ready,
    Failed,
    Destroying,
    Destroyed,
    #[serde(other)]
    Unknown,
}

impl ClusterStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterStatus::Pending => "pending",
            ClusterStatus::Provisioning => "provisioning",
            ClusterStatus::Ready => "ready",
            ClusterStatus::Failed => "failed",
            ClusterStatus::Destroying => "destroying",
            ClusterStatus::Destroyed => "destroyed",
            ClusterStatus::Unknown => "unknown",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            ClusterStatus::Pending => "Pending",
            ClusterStatus::Provisioning => "Provisioning",
            ClusterStatus::Ready => "Ready",
            ClusterStatus::Failed => "Failed",
            ClusterStatus::Destroying => "Destroying",
            ClusterStatus::Destroyed => "Destroyed",
            ClusterStatus::Unknown => "Unknown",
        }
    }

    /// Something is happening to the cluster right now.
    pub fn is_changing(self) -> bool {
        matches!(self, ClusterStatus::Pending | ClusterStatus::Provisioning | ClusterStatus::Destroying)
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Cluster {
    #[serde(deserialize_with = "text")]
    pub id: String,
    #[serde(default, deserialize_with = "text")]
    pub org: String,
    pub name: String,
    #[serde(default)]
    pub name_prefix: String,
    #[serde(default)]
    pub name_suffix: String,
    #[serde(default, deserialize_with = "text")]
    pub cloud_account_id: String,
    /// The cloud the cluster runs in; `None` for the `local` simulation.
    #[serde(default)]
    pub provider: Option<Provider>,
    pub target: String,
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub kubernetes_version: String,
    #[serde(default)]
    pub vpc_cidr: String,
    #[serde(default)]
    pub public_subnets: Vec<String>,
    #[serde(default)]
    pub private_subnets: Vec<String>,
    #[serde(default)]
    pub node_instance_type: String,
    #[serde(default)]
    pub node_min: Option<u32>,
    #[serde(default)]
    pub node_max: Option<u32>,
    #[serde(default)]
    pub node_desired: Option<u32>,
    #[serde(default)]
    pub state_backend: Option<StateBackend>,
    pub status: ClusterStatus,
    /// Terraform's outputs after the last successful apply.
    #[serde(default)]
    pub outputs: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    pub last_run: Option<Run>,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub updated_at: String,
}

/// What a run does to its cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunAction {
    Plan,
    Apply,
    Destroy,
    #[serde(other)]
    Unknown,
}

impl RunAction {
    pub fn as_str(self) -> &'static str {
        match self {
            RunAction::Plan => "plan",
            RunAction::Apply => "apply",
            RunAction::Destroy => "destroy",
            RunAction::Unknown => "unknown",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            RunAction::Plan => "Plan",
            RunAction::Apply => "Apply",
            RunAction::Destroy => "Destroy",
            RunAction::Unknown => "Run",
        }
    }
}

/// `queued → running → (awaiting_approval →) applying → succeeded | failed | canceled`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Running,
    AwaitingApproval,
    Applying,
    Succeeded,
    Failed,
    Canceled,
    #[serde(other)]
    Unknown,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::AwaitingApproval => "awaiting_approval",
            RunStatus::Applying => "applying",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Canceled => "canceled",
            RunStatus::Unknown => "unknown",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            RunStatus::Queued => "Queued",
            RunStatus::Running => "Running",
            RunStatus::AwaitingApproval => "Awaiting approval",
            RunStatus::Applying => "Applying",
            RunStatus::Succeeded => "Succeeded",
            RunStatus::Failed => "Failed",
            RunStatus::Canceled => "Canceled",
            RunStatus::Unknown => "Unknown",
        }
    }

    /// The run is over and will not change again.
    pub fn is_terminal(self) -> bool {
        matches!(self, RunStatus::Succeeded | RunStatus::Failed | RunStatus::Canceled)
    }
}

/// What a plan would do, as Terraform counts resources.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct PlanSummary {
    #[serde(default)]
    pub add: u32,
    #[serde(default)]
    pub change: u32,
    #[serde(default)]
    pub destroy: u32,
}

/// One execution of Terraform against a cluster.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Run {
    #[serde(deserialize_with = "text")]
    pub id: String,
    #[serde(default, deserialize_with = "text")]
    pub org: String,
    #[serde(default, deserialize_with = "text")]
    pub cluster_id: String,
    #[serde(default)]
    pub cluster_name: String,
    pub action: RunAction,
    pub status: RunStatus,
    /// Why the run is in its status: what it waits for, or why it failed.
    #[serde(default)]
    pub reason: Option<String>,
    /// Its place in the queue while queued (1 is next).
    #[serde(default)]
    pub position: Option<u32>,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub max_attempts: u32,
    #[serde(default)]
    pub plan_summary: Option<PlanSummary>,
    #[serde(default)]
    pub outputs: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    pub exit_code: Option<i64>,
    /// What ran it: `docker` or `process`.
    #[serde(default)]
    pub executor: Option<String>,
    #[serde(default, deserialize_with = "optional_text")]
    pub requested_by: Option<String>,
    #[serde(default, deserialize_with = "optional_text")]
    pub approved_by: Option<String>,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub finished_at: Option<String>,
}

/// A cluster's Terraform state as Fleetplane keeps it: the versions and the current lock.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct StateInfo {
    #[serde(default)]
    pub versions: Vec<StateVersion>,
    #[serde(default)]
    pub lock: Option<StateLock>,
}

impl StateInfo {
    /// The newest version (the highest serial).
    pub fn latest(&self) -> Option<&StateVersion> {
        self.versions.iter().max_by_key(|version| version.serial)
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct StateVersion {
    pub serial: u64,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default, deserialize_with = "optional_text")]
    pub run_id: Option<String>,
}

/// Who holds a state lock, as Terraform described itself when it took it.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct StateLock {
    #[serde(default, deserialize_with = "text")]
    pub id: String,
    #[serde(default, deserialize_with = "optional_text")]
    pub run_id: Option<String>,
    #[serde(default)]
    pub operation: String,
    #[serde(default)]
    pub who: String,
    #[serde(default)]
    pub created_at: String,
}

/// Which output of the provisioner a log chunk came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    Stdout,
    Stderr,
    /// Fleetplane's own lines: claimed, retried, canceled.
    System,
    #[serde(other)]
    Unknown,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
            LogStream::System => "system",
            LogStream::Unknown => "unknown",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct LogChunk {
    pub seq: u64,
    pub stream: LogStream,
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub at: String,
}

/// A cluster just created, with the run that provisions it.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct CreatedCluster {
    pub cluster: Cluster,
    pub run: Run,
}

/// The answer to a dry run: the spec is valid, and this is the name it gives.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct CheckedCluster {
    pub name: String,
}

fn yes() -> bool {
    true
}

/// Accepts a string, a number, or a list of strings (joined with ", ") as text, so that ids
/// and recipients read the same whichever JSON type the server picks.
fn text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(value_text(&Value::deserialize(deserializer)?))
}

fn optional_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(deserializer)? {
        Value::Null => None,
        value => Some(value_text(&value)),
    })
}

fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(value_text).collect::<Vec<_>>().join(", "),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Endpoints

pub async fn signup(email: &str, username: &str, password: &str) -> ApiResult<SignedUp> {
    let body = json!({ "email": email, "username": username, "password": password });
    call(Method::Post, "/api/v1/auth/signup", Some(body)).await
}

pub async fn verify_email(token: &str) -> ApiResult<User> {
    call(Method::Post, "/api/v1/auth/verify-email", Some(json!({ "token": token }))).await
}

pub async fn resend_verification(email: &str) -> ApiResult<Message> {
    let body = json!({ "email": email });
    call(Method::Post, "/api/v1/auth/resend-verification", Some(body)).await
}

pub async fn login(email: &str, password: &str) -> ApiResult<User> {
    let body = json!({ "email": email, "password": password });
    call(Method::Post, "/api/v1/auth/login", Some(body)).await
}

pub async fn logout() -> ApiResult<()> {
    call_empty(Method::Post, "/api/v1/auth/logout", None).await
}

pub async fn logout_everywhere() -> ApiResult<()> {
    call_empty(Method::Post, "/api/v1/auth/logout-all", None).await
}

pub async fn change_username(username: &str) -> ApiResult<User> {
    let body = json!({ "username": username });
    call(Method::Patch, "/api/v1/me/username", Some(body)).await
}

pub async fn change_password(current_password: &str, new_password: &str) -> ApiResult<()> {
    let body = json!({ "current_password": current_password, "new_password": new_password });
    call_empty(Method::Put, "/api/v1/me/password", Some(body)).await
}

/// A notification, as its recipient sees it.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Notification {
    pub id: String,
    pub kind: String,
    pub title: String,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub link: Option<String>,
    #[serde(default)]
    pub read: bool,
    pub created_at: String,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct NotificationPage {
    pub items: Vec<Notification>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Count {
    pub count: u64,
}

pub async fn list_notifications(limit: u32) -> ApiResult<NotificationPage> {
    call(Method::Get, &format!("/api/v1/notifications?limit={limit}"), None).await
}

pub async fn unread_notifications() -> ApiResult<Count> {
    call(Method::Get, "/api/v1/notifications/unread-count", None).await
}

pub async fn mark_notification_read(id: &str) -> ApiResult<Notification> {
    call(Method::Post, &format!("/api/v1/notifications/{}/read", encode(id)), None).await
}

pub async fn mark_all_notifications_read() -> ApiResult<Count> {
    call(Method::Post, "/api/v1/notifications/read-all", None).await
}

pub async fn delete_notification(id: &str) -> ApiResult<()> {
    call_empty(Method::Delete, &format!("/api/v1/notifications/{}", encode(id)), None).await
}

pub async fn list_identities() -> ApiResult<Vec<LinkedIdentity>> {
    call(Method::Get, "/api/v1/me/identities", None).await
}

pub async fn unlink_identity(provider: &str) -> ApiResult<()> {
    let path = format!("/api/v1/me/identities/{}", encode(provider));
    call_empty(Method::Delete, &path, None).await
}

pub async fn list_tokens() -> ApiResult<Vec<Token>> {
    call(Method::Get, "/api/v1/me/tokens", None).await
}

pub async fn create_token(name: &str, expires_in_days: Option<u32>) -> ApiResult<NewToken> {
    let mut body = json!({ "name": name });
    if let (Some(days), Value::Object(fields)) = (expires_in_days, &mut body) {
        fields.insert("expires_in_days".into(), json!(days));
    }
    call(Method::Post, "/api/v1/me/tokens", Some(body)).await
}

pub async fn revoke_token(id: &str) -> ApiResult<()> {
    let path = format!("/api/v1/me/tokens/{}", encode(id));
    call_empty(Method::Delete, &path, None).await
}

pub async fn list_sessions() -> ApiResult<Vec<Session>> {
    call(Method::Get, "/api/v1/me/sessions", None).await
}

pub async fn revoke_session(id: &str) -> ApiResult<()> {
    let path = format!("/api/v1/me/sessions/{}", encode(id));
    call_empty(Method::Delete, &path, None).await
}

pub async fn list_orgs() -> ApiResult<Vec<Org>> {
    call(Method::Get, "/api/v1/orgs", None).await
}

pub async fn create_org(name: &str, display_name: Option<&str>) -> ApiResult<Org> {
    let mut body = json!({ "name": name });
    if let (Some(display_name), Value::Object(fields)) = (display_name, &mut body) {
        fields.insert("display_name".into(), json!(display_name));
    }
    call(Method::Post, "/api/v1/orgs", Some(body)).await
}

pub async fn get_org(org: &str) -> ApiResult<Org> {
    call(Method::Get, &format!("/api/v1/orgs/{}", encode(org)), None).await
}

pub async fn list_members(org: &str) -> ApiResult<Vec<Member>> {
    let path = format!("/api/v1/orgs/{}/members", encode(org));
    call(Method::Get, &path, None).await
}

pub async fn add_member(org: &str, email: &str, role: Role) -> ApiResult<Member> {
    let path = format!("/api/v1/orgs/{}/members", encode(org));
    let body = json!({ "email": email, "role": role });
    call(Method::Post, &path, Some(body)).await
}

pub async fn change_member_role(org: &str, user_id: &str, role: Role) -> ApiResult<Member> {
    let path = format!("/api/v1/orgs/{}/members/{}", encode(org), encode(user_id));
    call(Method::Patch, &path, Some(json!({ "role": role }))).await
}

pub async fn remove_member(org: &str, user_id: &str) -> ApiResult<()> {
    let path = format!("/api/v1/orgs/{}/members/{}", encode(org), encode(user_id));
    call_empty(Method::Delete, &path, None).await
}

/// One page of the audit log, newest first; `before` is the previous page's `next_before`.
pub async fn list_audit(org: &str, before: Option<&str>) -> ApiResult<AuditPage> {
    let mut path = format!("/api/v1/orgs/{}/audit?limit={AUDIT_PAGE_SIZE}", encode(org));
    if let Some(before) = before {
        path.push_str("&before=");
        path.push_str(&encode(before));
    }
    call(Method::Get, &path, None).await
}

pub const AUDIT_PAGE_SIZE: u32 = 50;

pub async fn list_cloud_accounts(org: &str) -> ApiResult<Vec<CloudAccount>> {
    call(Method::Get, &cloud_accounts_path(org, None, ""), None).await
}

pub async fn create_cloud_account(
    org: &str,
    name: &str,
    environment: Environment,
    credentials: &Credentials,
) -> ApiResult<CloudAccount> {
    let body = json!({
        "provider": credentials.provider(),
        "name": name,
        "environment": environment,
        "credentials": credentials,
    });
    call(Method::Post, &cloud_accounts_path(org, None, ""), Some(body)).await
}

pub async fn get_cloud_account(org: &str, id: &str) -> ApiResult<CloudAccount> {
    call(Method::Get, &cloud_accounts_path(org, Some(id), ""), None).await
}

/// Renames an account and/or changes its environment; `None` leaves that one as it is.
pub async fn update_cloud_account(
    org: &str,
    id: &str,
    name: Option<&str>,
    environment: Option<Environment>,
) -> ApiResult<CloudAccount> {
    let mut fields = serde_json::Map::new();
    if let Some(name) = name {
        fields.insert("name".into(), json!(name));
    }
    if let Some(environment) = environment {
        fields.insert("environment".into(), json!(environment));
    }
    call(Method::Patch, &cloud_accounts_path(org, Some(id), ""), Some(Value::Object(fields))).await
}

/// Replaces an account's credentials; the server keeps the old ones unless the new ones verify.
pub async fn rotate_cloud_credentials(org: &str, id: &str, credentials: &Credentials) -> ApiResult<CloudAccount> {
    let body = json!({ "credentials": credentials });
    call(Method::Put, &cloud_accounts_path(org, Some(id), "/credentials"), Some(body)).await
}

/// Checks the stored credentials with the cloud again; the answer carries the new status.
pub async fn verify_cloud_account(org: &str, id: &str) -> ApiResult<CloudAccount> {
    call(Method::Post, &cloud_accounts_path(org, Some(id), "/verify"), None).await
}

pub async fn delete_cloud_account(org: &str, id: &str) -> ApiResult<()> {
    call_empty(Method::Delete, &cloud_accounts_path(org, Some(id), ""), None).await
}

pub async fn list_buckets(org: &str, id: &str) -> ApiResult<Vec<Bucket>> {
    call(Method::Get, &cloud_accounts_path(org, Some(id), "/buckets"), None).await
}

/// `/api/v1/orgs/{org}/cloud-accounts[/{id}]{rest}`.
fn cloud_accounts_path(org: &str, id: Option<&str>, rest: &str) -> String {
    org_path(org, "cloud-accounts", id, rest)
}

pub async fn get_system() -> ApiResult<System> {
    call(Method::Get, "/api/v1/system", None).await
}

pub async fn get_cluster_options() -> ApiResult<ClusterOptions> {
    call(Method::Get, "/api/v1/cluster-options", None).await
}

pub async fn list_clusters(org: &str) -> ApiResult<Vec<Cluster>> {
    call(Method::Get, &clusters_path(org, None, ""), None).await
}

/// Creates the cluster and queues the run that provisions it.
pub async fn create_cluster(org: &str, spec: &ClusterSpec) -> ApiResult<CreatedCluster> {
    call(Method::Post, &clusters_path(org, None, ""), Some(json!(spec))).await
}

/// Validates `spec` as [`create_cluster`] would, without creating anything.
pub async fn check_cluster(org: &str, spec: &ClusterSpec) -> ApiResult<CheckedCluster> {
    call(Method::Post, &clusters_path(org, None, "?dry_run=true"), Some(json!(spec))).await
}

pub async fn get_cluster(org: &str, id: &str) -> ApiResult<Cluster> {
    call(Method::Get, &clusters_path(org, Some(id), ""), None).await
}

/// Queues the run that destroys the cluster, and returns it.
pub async fn delete_cluster(org: &str, id: &str) -> ApiResult<Run> {
    call(Method::Delete, &clusters_path(org, Some(id), ""), None).await
}

/// The cluster's runs, newest first.
pub async fn list_cluster_runs(org: &str, id: &str) -> ApiResult<Vec<Run>> {
    call(Method::Get, &clusters_path(org, Some(id), "/runs"), None).await
}

pub async fn start_run(org: &str, id: &str, action: RunAction) -> ApiResult<Run> {
    let body = json!({ "action": action });
    call(Method::Post, &clusters_path(org, Some(id), "/runs"), Some(body)).await
}

pub async fn get_cluster_state(org: &str, id: &str) -> ApiResult<StateInfo> {
    call(Method::Get, &clusters_path(org, Some(id), "/state"), None).await
}

/// Releases the cluster's state lock whoever holds it.
pub async fn release_state_lock(org: &str, id: &str) -> ApiResult<()> {
    call_empty(Method::Delete, &clusters_path(org, Some(id), "/state/lock"), None).await
}

/// `/api/v1/orgs/{org}/clusters[/{id}]{rest}`.
fn clusters_path(org: &str, id: Option<&str>, rest: &str) -> String {
    org_path(org, "clusters", id, rest)
}

/// `/api/v1/orgs/{org}/{collection}[/{id}]{rest}`, with the org and id encoded.
fn org_path(org: &str, collection: &str, id: Option<&str>, rest: &str) -> String {
    let mut path = format!("/api/v1/orgs/{}/{collection}", encode(org));
    if let Some(id) = id {
        path.push('/');
        path.push_str(&encode(id));
    }
    path.push_str(rest);
    path
}

pub async fn get_run(id: &str) -> ApiResult<Run> {
    call(Method::Get, &run_path(id, ""), None).await
}

pub async fn approve_run(id: &str) -> ApiResult<()> {
    call_empty(Method::Post, &run_path(id, "/approve"), None).await
}

pub async fn cancel_run(id: &str) -> ApiResult<()> {
    call_empty(Method::Post, &run_path(id, "/cancel"), None).await
}

/// Queues the run again as a new run, and returns that one.
pub async fn retry_run(id: &str) -> ApiResult<Run> {
    call(Method::Post, &run_path(id, "/retry"), None).await
}

fn run_path(id: &str, rest: &str) -> String {
    format!("/api/v1/runs/{}{rest}", encode(id))
}

pub async fn list_outbox() -> ApiResult<Vec<OutboxMail>> {
    call(Method::Get, "/api/v1/dev/outbox", None).await
}

// ---------------------------------------------------------------------------------------------
// Transport

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

/// A response as it came off the wire.
struct Raw {
    status: u16,
    body: String,
}

async fn call<T: DeserializeOwned>(method: Method, path: &str, body: Option<Value>) -> ApiResult<T> {
    let raw = checked(method, path, body).await?;
    serde_json::from_str(&raw.body).map_err(|error| ApiError::unexpected_body(raw.status, error))
}

async fn call_empty(method: Method, path: &str, body: Option<Value>) -> ApiResult<()> {
    checked(method, path, body).await.map(|_| ())
}

/// Sends the request and turns any non-2xx answer into an [`ApiError`].
async fn checked(method: Method, path: &str, body: Option<Value>) -> ApiResult<Raw> {
    let raw = transport(method, path, body.map(|body| body.to_string())).await?;
    if (200..300).contains(&raw.status) {
        return Ok(raw);
    }
    Err(problem(raw.status, &raw.body))
}

fn problem(status: u16, body: &str) -> ApiError {
    match serde_json::from_str::<ApiError>(body) {
        Ok(mut error) => {
            if error.status == 0 {
                error.status = status;
            }
            if error.title.is_empty() {
                error.title = ApiError::from_status(status).title;
            }
            error
        }
        Err(_) => ApiError::from_status(status),
    }
}

#[cfg(feature = "hydrate")]
async fn transport(method: Method, path: &str, body: Option<String>) -> ApiResult<Raw> {
    use gloo_net::http::{Method as HttpMethod, RequestBuilder};

    let http_method = match method {
        Method::Get => HttpMethod::GET,
        Method::Post => HttpMethod::POST,
        Method::Put => HttpMethod::PUT,
        Method::Patch => HttpMethod::PATCH,
        Method::Delete => HttpMethod::DELETE,
    };
    let mut builder =
        RequestBuilder::new(path).method(http_method).header("Accept", "application/json, application/problem+json");
    if method != Method::Get
        && let Some(token) = csrf_token()
    {
        builder = builder.header("X-CSRF-Token", &token);
    }
    let request = match body {
        Some(body) => builder.header("Content-Type", "application/json").body(body),
        None => builder.build(),
    }
    .map_err(ApiError::network)?;
    let response = request.send().await.map_err(ApiError::network)?;
    let status = response.status();
    let body = response.text().await.map_err(ApiError::network)?;
    Ok(Raw { status, body })
}

/// The server never calls its own API while rendering; data loads start in the browser.
#[cfg(not(feature = "hydrate"))]
async fn transport(_method: Method, _path: &str, _body: Option<String>) -> ApiResult<Raw> {
    Err(ApiError::network("not available during server rendering"))
}

/// The value of the `fp_csrf` cookie, which the server sets next to the session cookie.
#[cfg(feature = "hydrate")]
fn csrf_token() -> Option<String> {
    use wasm_bindgen::JsCast;

    let document = web_sys::window()?.document()?;
    let cookies = document.dyn_into::<web_sys::HtmlDocument>().ok()?.cookie().ok()?;
    cookie_value(&cookies, "fp_csrf")
}

#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
fn cookie_value(cookies: &str, name: &str) -> Option<String> {
    cookies.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key == name && !value.is_empty()).then(|| value.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_problem_details_with_field_errors() {
        let body = r#"{"type":"about:blank","title":"Invalid request","status":422,
            "detail":"Some fields are invalid.","code":"validation_failed",
            "errors":[{"field":"username","code":"invalid","message":"Use letters."}]}"#;
        let error = problem(422, body);
        assert_eq!(error.code, "validation_failed");
        assert_eq!(error.field("username"), Some("Use letters."));
        assert_eq!(error.field("email"), None);
        assert_eq!(error.message(), "Some fields are invalid.");
    }

    #[test]
    fn non_problem_bodies_still_give_an_error() {
        let error = problem(502, "<html>Bad gateway</html>");
        assert_eq!(error.status, 502);
        assert_eq!(error.message(), "Fleetplane is unavailable");
    }

    #[test]
    fn finds_the_csrf_cookie() {
        assert_eq!(cookie_value("a=1; fp_csrf=abc; b=2", "fp_csrf"), Some("abc".into()));
        assert_eq!(cookie_value("xfp_csrf=abc", "fp_csrf"), None);
    }

    #[test]
    fn ids_may_be_numbers_or_strings() {
        let page: AuditPage = serde_json::from_str(
            r#"{"items":[{"id":7,"action":"org.create","actor_id":null,"created_at":"x"}],"next_before":7}"#,
        )
        .expect("audit page parses");
        assert_eq!(page.items[0].id, "7");
        assert_eq!(page.next_before.as_deref(), Some("7"));
    }

    #[test]
    fn unknown_roles_do_not_break_lists() {
        let member: Member =
            serde_json::from_str(r#"{"user_id":"u","username":"ann","email":"a@x","role":"auditor","joined_at":""}"#)
                .expect("member parses");
        assert_eq!(member.role, Role::Unknown);
    }

    #[test]
    fn credential_field_errors_lose_their_prefix() {
        let body = r#"{"status":422,"code":"validation_failed","title":"Invalid request",
            "errors":[{"field":"credentials.access_key_id","message":"Required."},
                      {"field":"name","message":"Taken."}]}"#;
        let error = problem(422, body).strip_field_prefix("credentials.");
        assert_eq!(error.field("access_key_id"), Some("Required."));
        assert_eq!(error.field("name"), Some("Taken."));
    }

    #[test]
    fn parses_cloud_accounts_of_every_provider() {
        let body = r#"[
          {"id":"a1","provider":"aws","name":"prod","environment":"prod","status":"verified",
           "status_reason":null,"identity":{"provider":"aws","account_id":"123456789012",
           "arn":"arn:aws:sts::123456789012:assumed-role/fp/s","source_arn":"arn:aws:iam::123456789012:user/ci"},
           "settings":{"role_arn":"arn:aws:iam::123456789012:role/fp"},"secret_hint":"AKIA…WXYZ",
           "verified_at":"2026-04-14T09:30:00Z","checked_at":"2026-04-14T09:30:00Z",
           "created_at":"2026-04-14T09:30:00Z","updated_at":"2026-04-14T09:30:00Z"},
          {"id":"a2","provider":"azure","name":"dev","environment":"dev","status":"invalid",
           "status_reason":"AADSTS7000215: invalid secret","identity":{"provider":"azure","tenant_id":"t",
           "subscriptions":[{"id":"s1","name":"Main","state":"Enabled"}]},"settings":{},"secret_hint":"…abc",
           "verified_at":null,"checked_at":"2026-04-14T09:30:00Z"},
          {"id":"a3","provider":"gcp","name":"lab","environment":"sandbox","status":"unreachable",
           "identity":{"provider":"gcp","project_id":"p","client_email":"fp@p.iam.gserviceaccount.com"},
           "secret_hint":"key 1a2b…"},
          {"id":"a4","provider":"oci","name":"new","environment":"staging","status":"pending",
           "identity":{"provider":"oci","tenancy":"x"}}
        ]"#;
        let accounts: Vec<CloudAccount> = serde_json::from_str(body).expect("accounts parse");
        assert_eq!(accounts[0].provider, Provider::Aws);
        assert_eq!(accounts[0].setting("role_arn").as_deref(), Some("arn:aws:iam::123456789012:role/fp"));
        assert_eq!(accounts[0].setting("subscription_id"), None);
        assert_eq!(
            accounts[0].identity.as_ref().map(Identity::summary).as_deref(),
            Some("AWS account 123456789012 (arn:aws:sts::123456789012:assumed-role/fp/s)")
        );
        assert_eq!(accounts[1].status, AccountStatus::Invalid);
        assert_eq!(
            accounts[1].identity.as_ref().map(Identity::summary).as_deref(),
            Some("Azure tenant t, 1 subscription")
        );
        assert!(matches!(accounts[2].identity, Some(Identity::Gcp { .. })));
        assert_eq!(accounts[3].provider, Provider::Unknown);
        assert_eq!(accounts[3].environment, Environment::Unknown);
        assert_eq!(accounts[3].status, AccountStatus::Unknown);
        assert!(matches!(accounts[3].identity, Some(Identity::Other(_))));
    }

    #[test]
    fn credentials_omit_empty_options_and_never_print_secrets() {
        let aws = Credentials::Aws {
            access_key_id: "AKIA1".into(),
            secret_access_key: "s3cret".into(),
            role_arn: None,
            external_id: Some("ext".into()),
        };
        assert_eq!(
            serde_json::to_value(&aws).expect("serialises"),
            json!({ "access_key_id": "AKIA1", "secret_access_key": "s3cret", "external_id": "ext" })
        );
        let gcp = Credentials::Gcp { service_account_json: "{\"private_key\":\"k\"}".into() };
        assert_eq!(
            serde_json::to_value(&gcp).expect("serialises"),
            json!({ "service_account_json": "{\"private_key\":\"k\"}" })
        );
        for credentials in [aws, gcp] {
            let printed = format!("{credentials:?}");
            assert!(!printed.contains("s3cret") && !printed.contains("private_key"), "{printed}");
        }
    }

    #[test]
    fn cloud_account_paths_encode_their_parts() {
        assert_eq!(cloud_accounts_path("acme", None, ""), "/api/v1/orgs/acme/cloud-accounts");
        assert_eq!(
            cloud_accounts_path("a b", Some("x/y"), "/verify"),
            "/api/v1/orgs/a%20b/cloud-accounts/x%2Fy/verify"
        );
    }

    #[test]
    fn cluster_and_run_paths_encode_their_parts() {
        assert_eq!(clusters_path("acme", None, "?dry_run=true"), "/api/v1/orgs/acme/clusters?dry_run=true");
        assert_eq!(clusters_path("acme", Some("c/1"), "/state/lock"), "/api/v1/orgs/acme/clusters/c%2F1/state/lock");
        assert_eq!(run_path("r 1", "/logs"), "/api/v1/runs/r%201/logs");
    }

    #[test]
    fn parses_clusters_with_their_last_run() {
        let body = r#"[
          {"id":"c1","org":"acme","name":"pay-prod","name_prefix":"pay","name_suffix":"prod",
           "cloud_account_id":"a1","provider":"aws","target":"aws-eks","region":"eu-west-1",
           "kubernetes_version":"1.34","vpc_cidr":"10.0.0.0/16","public_subnets":["10.0.0.0/20"],
           "private_subnets":["10.0.64.0/19"],"node_instance_type":"t3.medium","node_min":1,"node_max":3,
           "node_desired":2,"state_backend":{"type":"s3","bucket":"tf","key":null},"status":"provisioning",
           "outputs":null,"created_at":"2026-04-14T09:30:00Z","updated_at":"2026-04-14T09:30:00Z",
           "last_run":{"id":"r1","org":"acme","cluster_id":"c1","cluster_name":"pay-prod","action":"apply",
             "status":"awaiting_approval","reason":"Waiting for an admin to approve the plan.","position":null,
             "attempts":1,"max_attempts":3,"plan_summary":{"add":3,"change":1,"destroy":0},"outputs":null,
             "exit_code":null,"executor":"docker","requested_by":"ada","approved_by":null,
             "created_at":"2026-04-14T09:30:00Z","started_at":"2026-04-14T09:30:05Z","finished_at":null}},
          {"id":"c2","name":"sim","provider":null,"target":"local","status":"rebuilding",
           "state_backend":{"type":"fleetplane"},"outputs":{"endpoint":"https://127.0.0.1:6443"}}
        ]"#;
        let clusters: Vec<Cluster> = serde_json::from_str(body).expect("clusters parse");
        assert_eq!(clusters[0].provider, Some(Provider::Aws));
        assert_eq!(clusters[0].status, ClusterStatus::Provisioning);
        assert_eq!(
            clusters[0].state_backend,
            Some(StateBackend { kind: BackendKind::S3, bucket: Some("tf".into()), key: None })
        );
        let run = clusters[0].last_run.as_ref().expect("last run");
        assert_eq!(run.status, RunStatus::AwaitingApproval);
        assert_eq!(run.plan_summary, Some(PlanSummary { add: 3, change: 1, destroy: 0 }));
        assert!(!run.status.is_terminal());
        assert_eq!(clusters[1].provider, None);
        assert_eq!(clusters[1].status, ClusterStatus::Unknown);
        assert!(clusters[1].outputs.as_ref().is_some_and(|outputs| outputs.contains_key("endpoint")));
    }

    #[test]
    fn parses_options_state_and_log_pages() {
        let options: ClusterOptions = serde_json::from_str(
            r#"{"targets":[{"id":"aws-eks","provider":"aws","label":"Amazon EKS","regions":["eu-west-1"],
                 "instance_types":["t3.medium"],"enabled":true},
                {"id":"local","provider":null,"label":"Local simulation","regions":["local"],
                 "instance_types":["local.small"],"enabled":false}],
               "kubernetes_versions":["1.34"],
               "defaults":{"vpc_cidr":"10.0.0.0/16","public_subnets":["10.0.0.0/20"],"private_subnets":[],
                 "node_min":1,"node_max":3,"node_desired":2},
               "limits":{"node_max":100,"name_max":40}}"#,
        )
        .expect("options parse");
        let ids: Vec<&str> = options.targets_for(Some(Provider::Gcp)).map(|target| target.id.as_str()).collect();
        assert_eq!(ids, ["local"]);
        assert_eq!(options.target("aws-eks").map(|target| target.enabled), Some(true));

        let state: StateInfo = serde_json::from_str(
            r#"{"versions":[{"serial":3,"created_at":"x","size":10,"run_id":"r1"},
                            {"serial":7,"created_at":"y","size":20,"run_id":null}],
                "lock":{"id":"l1","run_id":"r2","operation":"OperationTypeApply","who":"worker@host","created_at":"z"}}"#,
        )
        .expect("state parses");
        assert_eq!(state.latest().map(|version| version.serial), Some(7));
        assert_eq!(state.lock.and_then(|lock| lock.run_id).as_deref(), Some("r2"));

        // Log lines as the live stream's `line` events carry them.
        let lines = [
            r#"{"seq":1,"stream":"stdout","text":"Initializing…\n","at":"t"}"#,
            r#"{"seq":2,"stream":"stderr","text":"Error: boom","at":"t"}"#,
            r#"{"seq":3,"stream":"system","text":"Retrying","at":"t"}"#,
        ];
        let chunks: Vec<LogChunk> = lines.iter().map(|line| serde_json::from_str(line).expect("line parses")).collect();
        let streams: Vec<LogStream> = chunks.iter().map(|chunk| chunk.stream).collect();
        assert_eq!(streams, [LogStream::Stdout, LogStream::Stderr, LogStream::System]);
        assert_eq!(chunks[2].seq, 3);
    }
}
