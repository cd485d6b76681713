//! `/api/v1/orgs`: organizations, their members and roles, and their audit log.

use axum::{Json, extract::State, http::StatusCode};
use fleetplane_api as api;
use serde::Deserialize;
use utoipa::IntoParams;
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

fn org_view(org: &organizations::Model, role: Role) -> api::Org {
    api::Org {
        id: org.id,
        name: org.name.clone(),
        display_name: org.display_name.clone(),
        role,
        personal: org.personal_owner_id.is_some(),
        created_at: org.created_at,
    }
}

fn member_view(member: &Member) -> api::Member {
    api::Member {
        user_id: member.user.id,
        username: member.user.username.clone(),
        email: member.user.email.clone(),
        role: member.role,
        joined_at: member.joined_at,
    }
}

fn audit_event_view(event: audit_events::Model) -> api::AuditEvent {
    api::AuditEvent {
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

/// `/orgs/{org}/members/{user_id}`; the organization itself is resolved by [`OrgMember`].
#[derive(Deserialize)]
pub struct MemberPath {
    pub user_id: Uuid,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Page size (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
    /// Only events older than this event id (the previous page's `next_before`).
    pub before: Option<Uuid>,
}

/// The organizations the caller belongs to.
#[utoipa::path(get, path = "/api/v1/orgs", tag = "organizations", responses((status = 200, body = [api::Org])))]
async fn list_orgs(State(state): State<AppState>, caller: CurrentUser) -> Result<Json<Vec<api::Org>>> {
    let orgs = orgs::list_for_user(&state, caller.id()).await?;
    Ok(Json(orgs.iter().map(|(org, role)| org_view(org, *role)).collect()))
}

/// Create an organization; the caller becomes its owner.
#[utoipa::path(post, path = "/api/v1/orgs", tag = "organizations", request_body = api::CreateOrgRequest, responses(
    (status = 201, body = api::Org),
    (status = 409, description = "`org_name_taken`", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "`validation_failed`", body = Problem, content_type = "application/problem+json"),
))]
async fn create_org(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    caller: CurrentUser,
    ApiJson(body): ApiJson<api::CreateOrgRequest>,
) -> Result<(StatusCode, Json<api::Org>)> {
    let org = orgs::create_org(&state, &caller.user, &body.name, body.display_name.as_deref(), Some(ip)).await?;
    Ok((StatusCode::CREATED, Json(org_view(&org, Role::Owner))))
}

/// One organization, with the caller's role in it.
#[utoipa::path(get, path = "/api/v1/orgs/{org}", tag = "organizations",
    params(("org" = String, Path, description = "Organization name")),
    responses(
        (status = 200, body = api::Org),
        (status = 404, description = "`org_not_found` (also when the caller is not a member)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_org(member: OrgMember<Viewer>) -> Json<api::Org> {
    Json(org_view(&member.org, member.role))
}

/// The organization's members, by username.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/members", tag = "organizations",
    params(("org" = String, Path, description = "Organization name")),
    responses(
        (status = 200, body = [api::Member]),
        (status = 404, description = "`org_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_members(State(state): State<AppState>, member: OrgMember<Viewer>) -> Result<Json<Vec<api::Member>>> {
    let members = orgs::list_members(&state, member.org.id).await?;
    Ok(Json(members.iter().map(member_view).collect()))
}

/// Add an existing account by email. Admins and owners; only owners add owners.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/members", tag = "organizations", request_body = api::AddMemberRequest,
    params(("org" = String, Path, description = "Organization name")),
    responses(
        (status = 201, body = api::Member),
        (status = 403, description = "`forbidden` or `owner_required`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`org_not_found` or `user_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`already_member`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn add_member(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    actor: OrgMember<Admin>,
    ApiJson(body): ApiJson<api::AddMemberRequest>,
) -> Result<(StatusCode, Json<api::Member>)> {
    let member = orgs::add_member(&state, &actor, &body.email, body.role, ip).await?;
    Ok((StatusCode::CREATED, Json(member_view(&member))))
}

/// Change a member's role. The last owner cannot be demoted.
#[utoipa::path(patch, path = "/api/v1/orgs/{org}/members/{user_id}", tag = "organizations", request_body = api::UpdateMemberRequest,
    params(("org" = String, Path, description = "Organization name"), ("user_id" = Uuid, Path, description = "The member's user id")),
    responses(
        (status = 200, body = api::Member),
        (status = 403, description = "`forbidden` or `owner_required`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`org_not_found` or `member_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`last_owner`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn update_member(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    actor: OrgMember<Admin>,
    ApiPath(path): ApiPath<MemberPath>,
    ApiJson(body): ApiJson<api::UpdateMemberRequest>,
) -> Result<Json<api::Member>> {
    let member = orgs::change_role(&state, &actor, path.user_id, body.role, ip).await?;
    Ok(Json(member_view(&member)))
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
        (status = 200, body = api::AuditPage),
        (status = 400, description = "`invalid_query`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: admins and owners only", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_audit(
    State(state): State<AppState>,
    member: OrgMember<Admin>,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<api::AuditPage>> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(AppError::bad_request("invalid_query", "`limit` must be between 1 and 100."));
    }
    let events = audit::list_for_org(&state.db, member.org.id, query.before, limit + 1).await?;
    let more = events.len() as u64 > limit;
    let items: Vec<api::AuditEvent> = events.into_iter().take(limit as usize).map(audit_event_view).collect();
    let next_before = if more { items.last().map(|e| e.id) } else { None };
    Ok(Json(api::AuditPage { items, next_before }))
}
