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
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct User {
    pub id: String,
    pub email: String,
    pub username: String,
    #[serde(default)]
    pub email_verified: bool,
    #[serde(default)]
    pub created_at: String,
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
    let mut path = format!("/api/v1/orgs/{}/cloud-accounts", encode(org));
    if let Some(id) = id {
        path.push('/');
        path.push_str(&encode(id));
    }
    path.push_str(rest);
    path
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
}
