//! `/api/v1/orgs`: organizations, their members and roles, and their audit log.

use axum::{Json, extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::extract::{ApiJson, ApiPath, ApiQuery, ClientIp};
use crate::{
    audit,
    auth::{Admin, CurrentUser, OrgMember, Viewer},
    domain::Role,
    entity::{audit_events, organizations},
    error::{AppError, Problem, Result},
    orgs::{self, Member},
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_orgs, create_org))
        .routes(routes!(get_org))
        .routes(routes!(list_members, add_member))
        .routes(routes!(update_member, remove_member))
        .routes(routes!(list_audit))
}

#[derive(Serialize, ToSchema)]
pub struct OrgView {
    pub id: Uuid,
    /// The URL name, as in `/api/v1/orgs/{org}`.
    pub name: String,
    pub display_name: String,
    /// The caller's role here.
    pub role: Role,
    /// Created with an account at sign-up.
    pub personal: bool,
    pub created_at: DateTime<Utc>,
}

impl OrgView {
    fn new(org: &organizations::Model, role: Role) -> Self {
        Self {
            id: org.id,
            name: org.name.clone(),
            display_name: org.display_name.clone(),
            role,
            personal: org.personal_owner_id.is_some(),
            created_at: org.created_at,
        }
    }
}

#[derive(Default, Deserialize, ToSchema)]
#[serde(default)]
pub struct CreateOrgRequest {
    /// 3–30 of `a-z 0-9 _ -`, starting with a letter.
    pub name: String,
    pub display_name: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct MemberView {
    pub user_id: Uuid,
    pub username: String,
    pub email: String,
    pub role: Role,
    pub joined_at: DateTime<Utc>,
}

impl From<&Member> for MemberView {
    fn from(member: &Member) -> Self {
        Self {
            user_id: member.user.id,
            username: member.user.username.clone(),
            email: member.user.email.clone(),
            role: member.role,
            joined_at: member.joined_at,
        }
    }
}

#[derive(Deserialize, ToSchema)]
pub struct AddMemberRequest {
    /// The email of an existing account.
    pub email: String,
    pub role: Role,
}

/// `/orgs/{org}/members/{user_id}`; the organization itself is resolved by [`OrgMember`].
#[derive(Deserialize)]
pub struct MemberPath {
    pub user_id: Uuid,
}

#[derive(Deserialize, ToSchema)]
pub struct UpdateMemberRequest {
    pub role: Role,
}

#[derive(Deserialize, IntoParams)]
pub struct AuditQuery {
    /// Page size, 1–100 (default 50).
    pub limit: Option<u64>,
    /// Only events older than this event id (the previous page's `next_before`).
    pub before: Option<Uuid>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditEventView {
    pub id: Uuid,
    pub action: String,
    pub actor_id: Option<Uuid>,
    pub actor_name: Option<String>,
    pub target: Option<String>,
    pub ip: Option<String>,
    pub details: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
}

impl From<audit_events::Model> for AuditEventView {
    fn from(event: audit_events::Model) -> Self {
        Self {
            id: event.id,
            action: event.action,
            actor_id: event.actor_id,
            actor_name: event.actor_name,
            target: event.target,
            ip: event.ip,
            details: event.details,
            created_at: event.created_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEventView>,
    /// Pass as `before` for the next page; absent on the last page.
    pub next_before: Option<Uuid>,
}

/// The organizations the caller belongs to.
#[utoipa::path(get, path = "/api/v1/orgs", tag = "organizations", responses((status = 200, body = [OrgView])))]
async fn list_orgs(State(state): State<AppState>, caller: CurrentUser) -> Result<Json<Vec<OrgView>>> {
    let orgs = orgs::list_for_user(&state, caller.id()).await?;
    Ok(Json(orgs.iter().map(|(org, role)| OrgView::new(org, *role)).collect()))
}

/// Create an organization; the caller becomes its owner.
#[utoipa::path(post, path = "/api/v1/orgs", tag = "organizations", request_body = CreateOrgRequest, responses(
    (status = 201, body = OrgView),
    (status = 409, description = "`org_name_taken`", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "`validation_failed`", body = Problem, content_type = "application/problem+json"),
))]
async fn create_org(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    caller: CurrentUser,
    ApiJson(body): ApiJson<CreateOrgRequest>,
) -> Result<(StatusCode, Json<OrgView>)> {
    let org = orgs::create_org(&state, &caller.user, &body.name, body.display_name.as_deref(), Some(ip)).await?;
    Ok((StatusCode::CREATED, Json(OrgView::new(&org, Role::Owner))))
}

/// One organization, with the caller's role in it.
#[utoipa::path(get, path = "/api/v1/orgs/{org}", tag = "organizations",
    params(("org" = String, Path, description = "Organization name")),
    responses(
        (status = 200, body = OrgView),
        (status = 404, description = "`org_not_found` (also when the caller is not a member)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_org(member: OrgMember<Viewer>) -> Json<OrgView> {
    Json(OrgView::new(&member.org, member.role))
}

/// The organization's members, by username.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/members", tag = "organizations",
    params(("org" = String, Path, description = "Organization name")),
    responses(
        (status = 200, body = [MemberView]),
        (status = 404, description = "`org_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_members(State(state): State<AppState>, member: OrgMember<Viewer>) -> Result<Json<Vec<MemberView>>> {
    let members = orgs::list_members(&state, member.org.id).await?;
    Ok(Json(members.iter().map(MemberView::from).collect()))
}

/// Add an existing account by email. Admins and owners; only owners add owners.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/members", tag = "organizations", request_body = AddMemberRequest,
    params(("org" = String, Path, description = "Organization name")),
    responses(
        (status = 201, body = MemberView),
        (status = 403, description = "`forbidden` or `owner_required`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`org_not_found` or `user_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`already_member`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn add_member(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    actor: OrgMember<Admin>,
    ApiJson(body): ApiJson<AddMemberRequest>,
) -> Result<(StatusCode, Json<MemberView>)> {
    let member = orgs::add_member(&state, &actor, &body.email, body.role, ip).await?;
    Ok((StatusCode::CREATED, Json(MemberView::from(&member))))
}

/// Change a member's role. The last owner cannot be demoted.
#[utoipa::path(patch, path = "/api/v1/orgs/{org}/members/{user_id}", tag = "organizations", request_body = UpdateMemberRequest,
    params(("org" = String, Path, description = "Organization name"), ("user_id" = Uuid, Path, description = "The member's user id")),
    responses(
        (status = 200, body = MemberView),
        (status = 403, description = "`forbidden` or `owner_required`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`org_not_found` or `member_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`last_owner`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn update_member(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    actor: OrgMember<Admin>,
    ApiPath(path): ApiPath<MemberPath>,
    ApiJson(body): ApiJson<UpdateMemberRequest>,
) -> Result<Json<MemberView>> {
    let member = orgs::change_role(&state, &actor, path.user_id, body.role, ip).await?;
    Ok(Json(MemberView::from(&member)))
}

/// Remove a member. Admins and owners remove others; anyone may leave; the last owner stays.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/members/{user_id}", tag = "organizations",
    params(("org" = String, Path, description = "Organization name"), ("user_id" = Uuid, Path, description = "The member's user id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "`forbidden` or `owner_required`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`org_not_found` or `member_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`last_owner`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn remove_member(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    actor: OrgMember<Viewer>,
    ApiPath(path): ApiPath<MemberPath>,
) -> Result<StatusCode> {
    orgs::remove_member(&state, &actor, path.user_id, ip).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The organization's audit log, newest first: its own events and its members' account events.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/audit", tag = "organizations",
    params(("org" = String, Path, description = "Organization name"), AuditQuery),
    responses(
        (status = 200, body = AuditPage),
        (status = 400, description = "`invalid_query`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: admins and owners only", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_audit(
    State(state): State<AppState>,
    member: OrgMember<Admin>,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<AuditPage>> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(AppError::bad_request("invalid_query", "`limit` must be between 1 and 100."));
    }
    let events = audit::list_for_org(&state.db, member.org.id, query.before, limit + 1).await?;
    let more = events.len() as u64 > limit;
    let items: Vec<AuditEventView> = events.into_iter().take(limit as usize).map(AuditEventView::from).collect();
    let next_before = if more { items.last().map(|e| e.id) } else { None };
    Ok(Json(AuditPage { items, next_before }))
}
