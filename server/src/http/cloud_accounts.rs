//! `/api/v1/orgs/{org}/cloud-accounts`: linked AWS, Azure and GCP accounts.

use axum::{Json, extract::State, http::StatusCode};
use fleetplane_api as api;
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::extract::{ApiJson, ApiPath, ClientIp};
use crate::{
    auth::{Admin, Operator, OrgMember, Viewer},
    cloud_accounts,
    entity::cloud_accounts as entity,
    error::{Problem, Result, stored},
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

/// A linked account as the API shows it: never a secret, only a masked hint and non-secret
/// settings.
fn account_view(account: entity::Model) -> Result<api::CloudAccount> {
    Ok(api::CloudAccount {
        id: account.id,
        provider: stored("cloud_accounts.provider", &account.provider, api::Provider::parse)?,
        name: account.name,
        environment: stored("cloud_accounts.environment", &account.environment, api::Environment::parse)?,
        status: stored("cloud_accounts.status", &account.status, api::AccountStatus::parse)?,
        status_reason: account.status_reason,
        identity: account.identity.map(serde_json::from_value).transpose().map_err(anyhow::Error::from)?,
        settings: account.settings,
        secret_hint: account.secret_hint,
        verified_at: account.verified_at,
        checked_at: account.checked_at,
        created_at: account.created_at,
        updated_at: account.updated_at,
    })
}

/// `/orgs/{org}/cloud-accounts/{id}`; the organization is resolved by [`OrgMember`].
#[derive(Deserialize)]
pub struct AccountPath {
    pub id: Uuid,
}

/// The organization's cloud accounts, newest first.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/cloud-accounts", tag = "cloud accounts",
    params(("org" = String, Path, description = "Organization name")),
    responses((status = 200, body = [api::CloudAccount])))]
async fn list_cloud_accounts(
    State(state): State<AppState>,
    member: OrgMember<Viewer>,
) -> Result<Json<Vec<api::CloudAccount>>> {
    let accounts = cloud_accounts::list(&state, &member).await?;
    accounts.into_iter().map(account_view).collect::<Result<_>>().map(Json)
}

/// Link an account. The credentials are verified with the cloud first; nothing is stored
/// unless that succeeds. Admins and owners.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/cloud-accounts", tag = "cloud accounts", request_body = api::LinkRequest,
    params(("org" = String, Path, description = "Organization name")),
    responses(
        (status = 201, body = api::CloudAccount),
        (status = 409, description = "`cloud_account_name_taken`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`, or `cloud_credentials_rejected` with the cloud's reason", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "`cloud_unreachable`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn link_cloud_account(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    actor: OrgMember<Admin>,
    ApiJson(body): ApiJson<api::LinkRequest>,
) -> Result<(StatusCode, Json<api::CloudAccount>)> {
    let account = cloud_accounts::link(&state, &actor, body, ip).await?;
    Ok((StatusCode::CREATED, Json(account_view(account)?)))
}

/// One cloud account.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/cloud-accounts/{id}", tag = "cloud accounts",
    params(("org" = String, Path, description = "Organization name"), ("id" = Uuid, Path, description = "Account id")),
    responses(
        (status = 200, body = api::CloudAccount),
        (status = 404, description = "`cloud_account_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_cloud_account(
    State(state): State<AppState>,
    member: OrgMember<Viewer>,
    ApiPath(path): ApiPath<AccountPath>,
) -> Result<Json<api::CloudAccount>> {
    Ok(Json(account_view(cloud_accounts::get(&state, &member, path.id).await?)?))
}

/// Rename an account or change its environment. Admins and owners.
#[utoipa::path(patch, path = "/api/v1/orgs/{org}/cloud-accounts/{id}", tag = "cloud accounts", request_body = api::UpdateAccountRequest,
    params(("org" = String, Path, description = "Organization name"), ("id" = Uuid, Path, description = "Account id")),
    responses(
        (status = 200, body = api::CloudAccount),
        (status = 409, description = "`cloud_account_name_taken`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn update_cloud_account(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    actor: OrgMember<Admin>,
    ApiPath(path): ApiPath<AccountPath>,
    ApiJson(body): ApiJson<api::UpdateAccountRequest>,
) -> Result<Json<api::CloudAccount>> {
    Ok(Json(account_view(cloud_accounts::update(&state, &actor, path.id, body, ip).await?)?))
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
#[utoipa::path(put, path = "/api/v1/orgs/{org}/cloud-accounts/{id}/credentials", tag = "cloud accounts", request_body = api::RotateRequest,
    params(("org" = String, Path, description = "Organization name"), ("id" = Uuid, Path, description = "Account id")),
    responses(
        (status = 200, body = api::CloudAccount),
        (status = 422, description = "`validation_failed` or `cloud_credentials_rejected`", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "`cloud_unreachable`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn rotate_credentials(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    actor: OrgMember<Admin>,
    ApiPath(path): ApiPath<AccountPath>,
    ApiJson(body): ApiJson<api::RotateRequest>,
) -> Result<Json<api::CloudAccount>> {
    Ok(Json(account_view(cloud_accounts::rotate(&state, &actor, path.id, &body.credentials, ip).await?)?))
}

/// Verify the stored credentials now. The account comes back `verified`, or `invalid` with the
/// cloud's reason. Operators and above.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/cloud-accounts/{id}/verify", tag = "cloud accounts",
    params(("org" = String, Path, description = "Organization name"), ("id" = Uuid, Path, description = "Account id")),
    responses(
        (status = 200, body = api::CloudAccount),
        (status = 502, description = "`cloud_unreachable` (recorded on the account)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn verify_cloud_account(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    member: OrgMember<Operator>,
    ApiPath(path): ApiPath<AccountPath>,
) -> Result<Json<api::CloudAccount>> {
    Ok(Json(account_view(cloud_accounts::verify(&state, &member, path.id, ip).await?)?))
}

/// The account's S3 buckets, Azure storage accounts or GCS buckets, to pick a Terraform state
/// bucket.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/cloud-accounts/{id}/buckets", tag = "cloud accounts",
    params(("org" = String, Path, description = "Organization name"), ("id" = Uuid, Path, description = "Account id")),
    responses(
        (status = 200, body = [api::Bucket]),
        (status = 422, description = "`cloud_credentials_rejected`", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "`cloud_unreachable`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_buckets(
    State(state): State<AppState>,
    member: OrgMember<Viewer>,
    ApiPath(path): ApiPath<AccountPath>,
) -> Result<Json<Vec<api::Bucket>>> {
    let buckets = cloud_accounts::buckets(&state, &member, path.id).await?;
    Ok(Json(buckets))
}
