//! `/api/v1/orgs/{org}/cloud-accounts`: linked AWS, Azure and GCP accounts.

use axum::{Json, extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::extract::{ApiJson, ApiPath, ClientIp};
use crate::{
    auth::{Admin, Operator, OrgMember, Viewer},
    cloud_accounts::{self, LinkRequest, UpdateRequest},
    entity::cloud_accounts as entity,
    error::{Problem, Result},
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_cloud_accounts, link_cloud_account))
        .routes(routes!(get_cloud_account, update_cloud_account, delete_cloud_account))
        .routes(routes!(rotate_credentials))
        .routes(routes!(verify_cloud_account))
        .routes(routes!(list_buckets))
}

/// A linked account. Never carries a secret: only a masked hint and non-secret settings.
#[derive(Serialize, ToSchema)]
pub struct CloudAccountView {
    pub id: Uuid,
    /// `aws`, `azure` or `gcp`.
    pub provider: String,
    pub name: String,
    /// `prod`, `dev`, `uat`, `sandbox` or `other`.
    pub environment: String,
    /// `verified`, `invalid` or `unreachable`, as of `checked_at`.
    pub status: String,
    /// Why the last check failed.
    pub status_reason: Option<String>,
    /// Whom the credentials resolved to: AWS account and ARN, Azure tenant and subscriptions,
    /// GCP project and service account.
    #[schema(value_type = Object)]
    pub identity: Option<serde_json::Value>,
    /// The configuration's non-secret parts (role ARN, tenant and client ids, project).
    #[schema(value_type = Object)]
    pub settings: serde_json::Value,
    /// The end of the access key id, client id or key id.
    pub secret_hint: String,
    pub verified_at: Option<DateTime<Utc>>,
    pub checked_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<entity::Model> for CloudAccountView {
    fn from(account: entity::Model) -> Self {
        Self {
            id: account.id,
            provider: account.provider,
            name: account.name,
            environment: account.environment,
            status: account.status,
            status_reason: account.status_reason,
            identity: account.identity,
            settings: account.settings,
            secret_hint: account.secret_hint,
            verified_at: account.verified_at,
            checked_at: account.checked_at,
            created_at: account.created_at,
            updated_at: account.updated_at,
        }
    }
}

#[derive(Deserialize, ToSchema)]
pub struct RotateRequest {
    /// New credentials for the account's provider; see `CredentialsInput`.
    #[schema(value_type = crate::cloud_accounts::CredentialsInput)]
    #[serde(default)]
    pub credentials: serde_json::Value,
}

#[derive(Serialize, ToSchema)]
pub struct BucketView {
    pub name: String,
    pub location: Option<String>,
    /// For Azure: the subscription holding the storage account.
    pub scope: Option<String>,
}

/// `/orgs/{org}/cloud-accounts/{id}`; the organization is resolved by [`OrgMember`].
#[derive(Deserialize)]
pub struct AccountPath {
    pub id: Uuid,
}

/// The organization's cloud accounts, newest first.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/cloud-accounts", tag = "cloud accounts",
    params(("org" = String, Path, description = "Organization name")),
    responses((status = 200, body = [CloudAccountView])))]
async fn list_cloud_accounts(
    State(state): State<AppState>,
    member: OrgMember<Viewer>,
) -> Result<Json<Vec<CloudAccountView>>> {
    let accounts = cloud_accounts::list(&state, &member).await?;
    Ok(Json(accounts.into_iter().map(CloudAccountView::from).collect()))
}

/// Link an account. The credentials are verified with the cloud first; nothing is stored
/// unless that succeeds. Admins and owners.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/cloud-accounts", tag = "cloud accounts", request_body = LinkRequest,
    params(("org" = String, Path, description = "Organization name")),
    responses(
        (status = 201, body = CloudAccountView),
        (status = 409, description = "`cloud_account_name_taken`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`, or `cloud_credentials_rejected` with the cloud's reason", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "`cloud_unreachable`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn link_cloud_account(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    actor: OrgMember<Admin>,
    ApiJson(body): ApiJson<LinkRequest>,
) -> Result<(StatusCode, Json<CloudAccountView>)> {
    let account = cloud_accounts::link(&state, &actor, body, ip).await?;
    Ok((StatusCode::CREATED, Json(account.into())))
}

/// One cloud account.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/cloud-accounts/{id}", tag = "cloud accounts",
    params(("org" = String, Path, description = "Organization name"), ("id" = Uuid, Path, description = "Account id")),
    responses(
        (status = 200, body = CloudAccountView),
        (status = 404, description = "`cloud_account_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_cloud_account(
    State(state): State<AppState>,
    member: OrgMember<Viewer>,
    ApiPath(path): ApiPath<AccountPath>,
) -> Result<Json<CloudAccountView>> {
    Ok(Json(cloud_accounts::get(&state, &member, path.id).await?.into()))
}

/// Rename an account or change its environment. Admins and owners.
#[utoipa::path(patch, path = "/api/v1/orgs/{org}/cloud-accounts/{id}", tag = "cloud accounts", request_body = UpdateRequest,
    params(("org" = String, Path, description = "Organization name"), ("id" = Uuid, Path, description = "Account id")),
    responses(
        (status = 200, body = CloudAccountView),
        (status = 409, description = "`cloud_account_name_taken`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn update_cloud_account(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    actor: OrgMember<Admin>,
    ApiPath(path): ApiPath<AccountPath>,
    ApiJson(body): ApiJson<UpdateRequest>,
) -> Result<Json<CloudAccountView>> {
    Ok(Json(cloud_accounts::update(&state, &actor, path.id, body, ip).await?.into()))
}

/// Delete an account. Refused while clusters use it. Admins and owners.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/cloud-accounts/{id}", tag = "cloud accounts",
    params(("org" = String, Path, description = "Organization name"), ("id" = Uuid, Path, description = "Account id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 409, description = "`cloud_account_in_use`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn delete_cloud_account(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    actor: OrgMember<Admin>,
    ApiPath(path): ApiPath<AccountPath>,
) -> Result<StatusCode> {
    cloud_accounts::delete(&state, &actor, path.id, ip).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Replace the credentials. The new ones are verified first; if that fails, nothing changes.
/// Admins and owners.
#[utoipa::path(put, path = "/api/v1/orgs/{org}/cloud-accounts/{id}/credentials", tag = "cloud accounts", request_body = RotateRequest,
    params(("org" = String, Path, description = "Organization name"), ("id" = Uuid, Path, description = "Account id")),
    responses(
        (status = 200, body = CloudAccountView),
        (status = 422, description = "`validation_failed` or `cloud_credentials_rejected`", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "`cloud_unreachable`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn rotate_credentials(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    actor: OrgMember<Admin>,
    ApiPath(path): ApiPath<AccountPath>,
    ApiJson(body): ApiJson<RotateRequest>,
) -> Result<Json<CloudAccountView>> {
    Ok(Json(cloud_accounts::rotate(&state, &actor, path.id, &body.credentials, ip).await?.into()))
}

/// Verify the stored credentials now. The account comes back `verified`, or `invalid` with the
/// cloud's reason. Operators and above.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/cloud-accounts/{id}/verify", tag = "cloud accounts",
    params(("org" = String, Path, description = "Organization name"), ("id" = Uuid, Path, description = "Account id")),
    responses(
        (status = 200, body = CloudAccountView),
        (status = 502, description = "`cloud_unreachable` (recorded on the account)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn verify_cloud_account(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    member: OrgMember<Operator>,
    ApiPath(path): ApiPath<AccountPath>,
) -> Result<Json<CloudAccountView>> {
    Ok(Json(cloud_accounts::verify(&state, &member, path.id, ip).await?.into()))
}

/// The account's S3 buckets, Azure storage accounts or GCS buckets, to pick a Terraform state
/// bucket.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/cloud-accounts/{id}/buckets", tag = "cloud accounts",
    params(("org" = String, Path, description = "Organization name"), ("id" = Uuid, Path, description = "Account id")),
    responses(
        (status = 200, body = [BucketView]),
        (status = 422, description = "`cloud_credentials_rejected`", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "`cloud_unreachable`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_buckets(
    State(state): State<AppState>,
    member: OrgMember<Viewer>,
    ApiPath(path): ApiPath<AccountPath>,
) -> Result<Json<Vec<BucketView>>> {
    let buckets = cloud_accounts::buckets(&state, &member, path.id).await?;
    Ok(Json(buckets.into_iter().map(|b| BucketView { name: b.name, location: b.location, scope: b.scope }).collect()))
}
