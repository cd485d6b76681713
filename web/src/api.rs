//! A typed client for Fleetplane's REST API (`/api/v1`), as the browser sees it.
//!
//! Requests are same-origin `fetch` calls that carry the session cookie; unsafe methods add the
//! `X-CSRF-Token` header from the `fp_csrf` cookie. Every failure, including a network error,
//! becomes an [`ApiError`] shaped like the API's problem details, so pages handle one kind.
//! The bodies are the API contract's own types ([`fleetplane_api`]), the ones the server
//! serializes, re-exported here so that pages name them next to the calls that return them.
//!
//! Only the browser talks to the API: pages call this from event handlers and local resources,
//! which never run during server rendering.

use std::fmt;

pub use fleet_api as fleet;
pub use fleetplane_api::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::format::encode;

/// An error from the API (its `application/problem+json` body) or from getting there.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ApiError {
    /// HTTP status; `0` when the request never got an answer.
    pub status: u16,
    /// Stable machine-readable code, e.g. `email_not_verified`.
    pub code: String,
    pub title: String,
    pub detail: Option<String>,
    /// Problems with individual request fields.
    pub errors: Vec<FieldError>,
}

impl From<Problem> for ApiError {
    fn from(problem: Problem) -> Self {
        Self {
            status: problem.status,
            code: problem.code,
            title: problem.title,
            detail: Some(problem.detail).filter(|detail| !detail.is_empty()),
            errors: problem.errors,
        }
    }
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

/// The id in a page's address. One that is no UUID names nothing, so it gets the API's answer
/// for such an address (404 `not_found`) without asking.
pub fn parse_id(text: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(text).map_err(|_| ApiError {
        status: 404,
        code: "not_found".into(),
        title: "Not Found".into(),
        detail: Some("Nothing exists at this address.".into()),
        errors: Vec::new(),
    })
}

// ---------------------------------------------------------------------------------------------
// Endpoints

pub async fn signup(email: &str, username: &str, password: &str) -> ApiResult<Message> {
    let request = SignupRequest { email: email.into(), username: username.into(), password: password.into() };
    call(Method::Post, "/api/v1/auth/signup", body(request)).await
}

/// Verifies the address and signs in: the link's token with the password chosen at sign-up.
pub async fn verify_email(token: &str, password: &str) -> ApiResult<User> {
    let request = VerifyEmailRequest { token: token.into(), password: password.into() };
    call(Method::Post, "/api/v1/auth/verify-email", body(request)).await
}

pub async fn request_password_reset(email: &str) -> ApiResult<Message> {
    call(Method::Post, "/api/v1/auth/password-reset", body(PasswordResetRequest { email: email.into() })).await
}

/// Sets a new password with a reset link's token, and signs in.
pub async fn reset_password(token: &str, new_password: &str) -> ApiResult<User> {
    let request = PasswordResetConfirm { token: token.into(), new_password: new_password.into() };
    call(Method::Post, "/api/v1/auth/password-reset/confirm", body(request)).await
}

pub async fn resend_verification(email: &str) -> ApiResult<Message> {
    call(Method::Post, "/api/v1/auth/resend-verification", body(ResendRequest { email: email.into() })).await
}

pub async fn login(email: &str, password: &str) -> ApiResult<User> {
    let request = LoginRequest { email: email.into(), password: password.into() };
    call(Method::Post, "/api/v1/auth/login", body(request)).await
}

pub async fn logout() -> ApiResult<()> {
    call_empty(Method::Post, "/api/v1/auth/logout", None).await
}

pub async fn logout_everywhere() -> ApiResult<()> {
    call_empty(Method::Post, "/api/v1/auth/logout-all", None).await
}

pub async fn change_username(username: &str) -> ApiResult<User> {
    call(Method::Patch, "/api/v1/me/username", body(UsernameRequest { username: username.into() })).await
}

pub async fn change_password(current_password: &str, new_password: &str) -> ApiResult<()> {
    let request = PasswordRequest { current_password: current_password.into(), new_password: new_password.into() };
    call_empty(Method::Put, "/api/v1/me/password", body(request)).await
}

pub async fn list_notifications(limit: u32) -> ApiResult<NotificationPage> {
    call(Method::Get, &format!("/api/v1/notifications?limit={limit}"), None).await
}

pub async fn unread_notifications() -> ApiResult<Count> {
    call(Method::Get, "/api/v1/notifications/unread-count", None).await
}

pub async fn mark_notification_read(id: Uuid) -> ApiResult<Notification> {
    call(Method::Post, &format!("/api/v1/notifications/{id}/read"), None).await
}

pub async fn mark_all_notifications_read() -> ApiResult<Count> {
    call(Method::Post, "/api/v1/notifications/read-all", None).await
}

pub async fn delete_notification(id: Uuid) -> ApiResult<()> {
    call_empty(Method::Delete, &format!("/api/v1/notifications/{id}"), None).await
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

pub async fn create_token(name: &str, expires_in_days: Option<u32>) -> ApiResult<CreatedToken> {
    let request = CreateTokenRequest { name: name.into(), expires_in_days };
    call(Method::Post, "/api/v1/me/tokens", body(request)).await
}

pub async fn revoke_token(id: Uuid) -> ApiResult<()> {
    call_empty(Method::Delete, &format!("/api/v1/me/tokens/{id}"), None).await
}

pub async fn list_sessions() -> ApiResult<Vec<Session>> {
    call(Method::Get, "/api/v1/me/sessions", None).await
}

pub async fn revoke_session(id: Uuid) -> ApiResult<()> {
    call_empty(Method::Delete, &format!("/api/v1/me/sessions/{id}"), None).await
}

pub async fn list_orgs() -> ApiResult<Vec<Org>> {
    call(Method::Get, "/api/v1/orgs", None).await
}

pub async fn create_org(name: &str, display_name: Option<&str>) -> ApiResult<Org> {
    let request = CreateOrgRequest { name: name.into(), display_name: display_name.map(str::to_owned) };
    call(Method::Post, "/api/v1/orgs", body(request)).await
}

pub async fn get_org(org: &str) -> ApiResult<Org> {
    call(Method::Get, &format!("/api/v1/orgs/{}", encode(org)), None).await
}

pub async fn list_members(org: &str) -> ApiResult<Vec<Member>> {
    call(Method::Get, &members_path(org, None), None).await
}

pub async fn list_invitations(org: &str) -> ApiResult<Vec<Invitation>> {
    call(Method::Get, &org_path(org, "invitations", None, ""), None).await
}

pub async fn invite(org: &str, email: &str, role: Role) -> ApiResult<Invitation> {
    let request = InviteRequest { email: email.into(), role };
    call(Method::Post, &org_path(org, "invitations", None, ""), body(request)).await
}

pub async fn revoke_invitation(org: &str, id: Uuid) -> ApiResult<()> {
    call_empty(Method::Delete, &org_path(org, "invitations", Some(id), ""), None).await
}

pub async fn received_invitations() -> ApiResult<Vec<ReceivedInvitation>> {
    call(Method::Get, "/api/v1/me/invitations", None).await
}

pub async fn accept_invitation(id: Uuid) -> ApiResult<Org> {
    call(Method::Post, &format!("/api/v1/me/invitations/{id}/accept"), None).await
}

pub async fn decline_invitation(id: Uuid) -> ApiResult<()> {
    call_empty(Method::Post, &format!("/api/v1/me/invitations/{id}/decline"), None).await
}

pub async fn change_member_role(org: &str, user_id: Uuid, role: Role) -> ApiResult<Member> {
    call(Method::Patch, &members_path(org, Some(user_id)), body(UpdateMemberRequest { role })).await
}

pub async fn remove_member(org: &str, user_id: Uuid) -> ApiResult<()> {
    call_empty(Method::Delete, &members_path(org, Some(user_id)), None).await
}

/// `/api/v1/orgs/{org}/members[/{user_id}]`.
fn members_path(org: &str, user_id: Option<Uuid>) -> String {
    org_path(org, "members", user_id, "")
}

/// One page of an audit log, newest first: an organization's, or with `None` the caller's own
/// account log. `before` is the previous page's `next_before`.
pub async fn list_audit(org: Option<&str>, before: Option<Uuid>) -> ApiResult<AuditPage> {
    let mut path = match org {
        Some(org) => format!("/api/v1/orgs/{}/audit?limit={AUDIT_PAGE_SIZE}", encode(org)),
        None => format!("/api/v1/me/audit?limit={AUDIT_PAGE_SIZE}"),
    };
    if let Some(before) = before {
        path.push_str(&format!("&before={before}"));
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
    let request = LinkRequest {
        provider: credentials.provider(),
        name: name.into(),
        environment,
        credentials: json!(credentials),
    };
    call(Method::Post, &cloud_accounts_path(org, None, ""), body(request)).await
}

pub async fn get_cloud_account(org: &str, id: Uuid) -> ApiResult<CloudAccount> {
    call(Method::Get, &cloud_accounts_path(org, Some(id), ""), None).await
}

/// Renames an account and/or changes its environment; `None` leaves that one as it is.
pub async fn update_cloud_account(
    org: &str,
    id: Uuid,
    name: Option<&str>,
    environment: Option<Environment>,
) -> ApiResult<CloudAccount> {
    let request = UpdateAccountRequest { name: name.map(str::to_owned), environment };
    call(Method::Patch, &cloud_accounts_path(org, Some(id), ""), body(request)).await
}

/// Replaces an account's credentials; the server keeps the old ones unless the new ones verify.
pub async fn rotate_cloud_credentials(org: &str, id: Uuid, credentials: &Credentials) -> ApiResult<CloudAccount> {
    let request = RotateRequest { credentials: json!(credentials) };
    call(Method::Put, &cloud_accounts_path(org, Some(id), "/credentials"), body(request)).await
}

/// Checks the stored credentials with the cloud again; the answer carries the new status.
pub async fn verify_cloud_account(org: &str, id: Uuid) -> ApiResult<CloudAccount> {
    call(Method::Post, &cloud_accounts_path(org, Some(id), "/verify"), None).await
}

pub async fn delete_cloud_account(org: &str, id: Uuid) -> ApiResult<()> {
    call_empty(Method::Delete, &cloud_accounts_path(org, Some(id), ""), None).await
}

pub async fn list_buckets(org: &str, id: Uuid) -> ApiResult<Vec<Bucket>> {
    call(Method::Get, &cloud_accounts_path(org, Some(id), "/buckets"), None).await
}

/// `/api/v1/orgs/{org}/cloud-accounts[/{id}]{rest}`.
fn cloud_accounts_path(org: &str, id: Option<Uuid>, rest: &str) -> String {
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
pub async fn create_cluster(org: &str, request: &CreateClusterRequest) -> ApiResult<CreatedCluster> {
    call(Method::Post, &clusters_path(org, None, ""), body(request)).await
}

/// Validates `request` as [`create_cluster`] would, without creating anything.
pub async fn check_cluster(org: &str, request: &CreateClusterRequest) -> ApiResult<CheckedCluster> {
    call(Method::Post, &clusters_path(org, None, "?dry_run=true"), body(request)).await
}

pub async fn get_cluster(org: &str, id: Uuid) -> ApiResult<Cluster> {
    call(Method::Get, &clusters_path(org, Some(id), ""), None).await
}

/// Queues the run that destroys the cluster, and returns it.
pub async fn delete_cluster(org: &str, id: Uuid) -> ApiResult<Run> {
    call(Method::Delete, &clusters_path(org, Some(id), ""), None).await
}

/// The cluster's runs, newest first.
pub async fn list_cluster_runs(org: &str, id: Uuid) -> ApiResult<Vec<Run>> {
    call(Method::Get, &clusters_path(org, Some(id), "/runs"), None).await
}

/// Queues a plan or an apply of the cluster's current spec.
pub async fn start_run(org: &str, id: Uuid, action: RequestedAction) -> ApiResult<Run> {
    let request = RunRequest { action, simulate: None };
    call(Method::Post, &clusters_path(org, Some(id), "/runs"), body(request)).await
}

pub async fn get_cluster_state(org: &str, id: Uuid) -> ApiResult<StateInfo> {
    call(Method::Get, &clusters_path(org, Some(id), "/state"), None).await
}

/// Releases the cluster's state lock whoever holds it.
pub async fn release_state_lock(org: &str, id: Uuid) -> ApiResult<()> {
    call_empty(Method::Delete, &clusters_path(org, Some(id), "/state/lock"), None).await
}

/// `/api/v1/orgs/{org}/clusters[/{id}]{rest}`.
fn clusters_path(org: &str, id: Option<Uuid>, rest: &str) -> String {
    org_path(org, "clusters", id, rest)
}

/// `/api/v1/orgs/{org}/{collection}[/{id}]{rest}`, with the org encoded.
fn org_path(org: &str, collection: &str, id: Option<Uuid>, rest: &str) -> String {
    let mut path = format!("/api/v1/orgs/{}/{collection}", encode(org));
    if let Some(id) = id {
        path.push_str(&format!("/{id}"));
    }
    path.push_str(rest);
    path
}

pub async fn get_run(id: Uuid) -> ApiResult<Run> {
    call(Method::Get, &run_path(id, ""), None).await
}

pub async fn approve_run(id: Uuid) -> ApiResult<()> {
    call_empty(Method::Post, &run_path(id, "/approve"), None).await
}

pub async fn cancel_run(id: Uuid) -> ApiResult<()> {
    call_empty(Method::Post, &run_path(id, "/cancel"), None).await
}

/// Queues the run again as a new run, and returns that one.
pub async fn retry_run(id: Uuid) -> ApiResult<Run> {
    call(Method::Post, &run_path(id, "/retry"), None).await
}

fn run_path(id: Uuid, rest: &str) -> String {
    format!("/api/v1/runs/{id}{rest}")
}

pub async fn list_catalog() -> ApiResult<Vec<CatalogEntry>> {
    call(Method::Get, "/api/v1/catalog", None).await
}

pub async fn list_cluster_deployments(org: &str, cluster: Uuid) -> ApiResult<DeploymentPage> {
    call(Method::Get, &clusters_path(org, Some(cluster), "/deployments"), None).await
}

pub async fn create_deployment(
    org: &str,
    cluster: Uuid,
    request: &CreateDeploymentRequest,
) -> ApiResult<DeploymentWithRun> {
    call(Method::Post, &clusters_path(org, Some(cluster), "/deployments"), body(request)).await
}

pub async fn get_deployment(org: &str, id: Uuid) -> ApiResult<Deployment> {
    call(Method::Get, &deployment_path(org, id, ""), None).await
}

pub async fn upgrade_deployment(
    org: &str,
    id: Uuid,
    request: &UpgradeDeploymentRequest,
) -> ApiResult<DeploymentWithRun> {
    call(Method::Patch, &deployment_path(org, id, ""), body(request)).await
}

pub async fn rollback_deployment(org: &str, id: Uuid, revision: u32) -> ApiResult<DeploymentWithRun> {
    let request = RollbackRequest { revision: Some(revision) };
    call(Method::Post, &deployment_path(org, id, "/rollback"), body(request)).await
}

pub async fn uninstall_deployment(org: &str, id: Uuid) -> ApiResult<DeploymentWithRun> {
    call(Method::Delete, &deployment_path(org, id, ""), None).await
}

fn deployment_path(org: &str, id: Uuid, rest: &str) -> String {
    format!("/api/v1/orgs/{}/deployments/{id}{rest}", encode(org))
}

// The fleet of a fleet-telemetry deployment, through Fleetplane's proxy. The bodies are the
// fleet API's own types ([`fleet`]).

/// The proxy's address for the fleet API's `rest` (which starts with `/`).
pub fn fleet_path(deployment: Uuid, rest: &str) -> String {
    format!("/api/v1/deployments/{deployment}/fleet{rest}")
}

/// `query` is the query string without `?`, empty for none.
pub async fn fleet_bikes(deployment: Uuid, query: &str) -> ApiResult<fleet::BikePage> {
    let query = if query.is_empty() { String::new() } else { format!("?{query}") };
    call(Method::Get, &fleet_path(deployment, &format!("/bikes{query}")), None).await
}

pub async fn fleet_register_bike(deployment: Uuid, bike: &fleet::NewBike) -> ApiResult<fleet::BikeView> {
    call(Method::Post, &fleet_path(deployment, "/bikes"), body(bike)).await
}

pub async fn fleet_bike(deployment: Uuid, device: &str) -> ApiResult<fleet::BikeView> {
    call(Method::Get, &fleet_path(deployment, &format!("/bikes/{}", encode(device))), None).await
}

pub async fn fleet_certificates(deployment: Uuid, device: &str) -> ApiResult<fleet::CertificateList> {
    call(Method::Get, &fleet_path(deployment, &format!("/bikes/{}/certificates", encode(device))), None).await
}

/// A certificate with a key generated by the fleet, returned this once in the bundle.
pub async fn fleet_issue_certificate(deployment: Uuid, device: &str) -> ApiResult<fleet::IssuedView> {
    let path = fleet_path(deployment, &format!("/bikes/{}/certificates", encode(device)));
    call(Method::Post, &path, body(fleet::NewCertificate::default())).await
}

pub async fn fleet_revoke_certificate(
    deployment: Uuid,
    serial: &str,
    reason: &str,
) -> ApiResult<fleet::CertificateView> {
    let path = fleet_path(deployment, &format!("/certificates/{}/revoke", encode(serial)));
    call(Method::Post, &path, body(fleet::Revocation { reason: reason.to_owned() })).await
}

/// Telemetry of `device` from `from` to `to` (RFC 3339), downsampled into buckets of `every`,
/// with the stats of `fields` only.
pub async fn fleet_telemetry(
    deployment: Uuid,
    device: &str,
    (from, to): (&str, &str),
    every: &str,
    fields: &[&str],
) -> ApiResult<fleet::TelemetryPage> {
    let query =
        format!("from={}&to={}&every={}&fields={}", encode(from), encode(to), encode(every), encode(&fields.join(",")));
    call(Method::Get, &fleet_path(deployment, &format!("/bikes/{}/telemetry?{query}", encode(device))), None).await
}

pub async fn fleet_quarantine(deployment: Uuid) -> ApiResult<fleet::QuarantinePage> {
    call(Method::Get, &fleet_path(deployment, "/quarantine?limit=100"), None).await
}

pub async fn fleet_broker(deployment: Uuid) -> ApiResult<fleet::BrokerView> {
    call(Method::Get, &fleet_path(deployment, "/broker"), None).await
}

pub async fn list_outbox() -> ApiResult<Vec<OutboxEmail>> {
    call(Method::Get, "/api/v1/dev/outbox", None).await
}

/// `request` as a JSON body. Request types are plain data with string keys, which always
/// serialize.
fn body(request: impl Serialize) -> Option<Value> {
    Some(json!(request))
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
    match serde_json::from_str::<Problem>(body) {
        Ok(problem) => {
            let mut error = ApiError::from(problem);
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
    fn problems_missing_status_or_title_take_them_from_the_response() {
        let error = problem(404, r#"{"code":"not_found","detail":""}"#);
        assert_eq!(error.status, 404);
        assert_eq!(error.detail, None);
        assert_eq!(error.message(), "Not found");
    }

    #[test]
    fn finds_the_csrf_cookie() {
        assert_eq!(cookie_value("a=1; fp_csrf=abc; b=2", "fp_csrf"), Some("abc".into()));
        assert_eq!(cookie_value("xfp_csrf=abc", "fp_csrf"), None);
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
    fn ids_in_the_address_that_are_no_uuids_are_not_found() {
        let id = "01a20b29-8292-7196-af7e-d490e4f32cd3";
        assert_eq!(parse_id(id).map(|id| id.to_string()).as_deref(), Ok(id));
        let error = parse_id("nonsense").expect_err("no uuid");
        assert_eq!((error.status, error.code.as_str()), (404, "not_found"));
    }

    #[test]
    fn link_requests_carry_only_the_credentials_given() {
        let aws = Credentials::Aws(AwsCredentials {
            access_key_id: "AKIA1".into(),
            secret_access_key: "s3cret".into(),
            role_arn: None,
            external_id: Some("ext".into()),
        });
        let request = LinkRequest {
            provider: aws.provider(),
            name: "prod".into(),
            environment: Environment::Prod,
            credentials: json!(aws),
        };
        assert_eq!(
            json!(request),
            json!({
                "provider": "aws", "name": "prod", "environment": "prod",
                "credentials": { "access_key_id": "AKIA1", "secret_access_key": "s3cret", "external_id": "ext" },
            })
        );
    }

    #[test]
    fn paths_encode_the_organization() {
        let id = Uuid::from_u128(0x01a2_0b29_8292_7196_af7e_d490_e4f3_2cd3);
        assert_eq!(cloud_accounts_path("acme", None, ""), "/api/v1/orgs/acme/cloud-accounts");
        assert_eq!(
            cloud_accounts_path("a b", Some(id), "/verify"),
            "/api/v1/orgs/a%20b/cloud-accounts/01a20b29-8292-7196-af7e-d490e4f32cd3/verify"
        );
        assert_eq!(clusters_path("acme", None, "?dry_run=true"), "/api/v1/orgs/acme/clusters?dry_run=true");
        assert_eq!(
            clusters_path("acme", Some(id), "/state/lock"),
            "/api/v1/orgs/acme/clusters/01a20b29-8292-7196-af7e-d490e4f32cd3/state/lock"
        );
        assert_eq!(run_path(id, "/logs"), "/api/v1/runs/01a20b29-8292-7196-af7e-d490e4f32cd3/logs");
    }
}
