//! `/api/v1/orgs`: organizations, their members, roles and invitations, and their audit log;
//! and, on `/api/v1/me`, the invitations a user received and their own account log.

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
    entity::{audit_events, invitations, organizations},
    error::{AppError, Problem, Result},
    orgs::{self, Member},
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_orgs, create_org))
        .routes(routes!(get_org))
        .routes(routes!(list_members))
        .routes(routes!(list_invitations, invite))
        .routes(routes!(revoke_invitation))
        .routes(routes!(received_invitations))
        .routes(routes!(accept_invitation))
        .routes(routes!(decline_invitation))
        .routes(routes!(update_member, remove_member))
        .routes(routes!(list_audit))
        .routes(routes!(list_account_audit))
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

fn invitation_view(invitation: &invitations::Model) -> api::Invitation {
    api::Invitation {
        id: invitation.id,
        email: invitation.email.clone(),
        role: Role::parse(&invitation.role).unwrap_or(Role::Viewer),
        invited_by: invitation.invited_by_name.clone(),
        created_at: invitation.created_at,
        expires_at: invitation.expires_at,
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

/// The organization's open invitations, newest first. Admins and owners.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/invitations", tag = "organizations",
    params(("org" = String, Path, description = "Organization name")),
    responses(
        (status = 200, body = [api::Invitation]),
        (status = 403, description = "`forbidden`: admins and owners only", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`org_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_invitations(
    State(state): State<AppState>,
    actor: OrgMember<Admin>,
) -> Result<Json<Vec<api::Invitation>>> {
    let invitations = orgs::list_invitations(&state, actor.org.id).await?;
    Ok(Json(invitations.iter().map(invitation_view).collect()))
}

/// Invite an address to join, by email (and a notification, if it has an account). Nobody joins
/// until they accept; the answer is the same whether or not the address has an account. Admins
/// and owners; only owners invite owners.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/invitations", tag = "organizations", request_body = api::InviteRequest,
    params(("org" = String, Path, description = "Organization name")),
    responses(
        (status = 201, body = api::Invitation),
        (status = 403, description = "`forbidden` or `owner_required`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`org_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`already_member` or `already_invited`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn invite(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    actor: OrgMember<Admin>,
    ApiJson(body): ApiJson<api::InviteRequest>,
) -> Result<(StatusCode, Json<api::Invitation>)> {
    let invitation = orgs::invite(&state, &actor, &body.email, body.role, ip).await?;
    Ok((StatusCode::CREATED, Json(invitation_view(&invitation))))
}

/// `/orgs/{org}/invitations/{id}` and `/me/invitations/{id}`.
#[derive(Deserialize)]
pub struct InvitationPath {
    pub id: Uuid,
}

/// Take back an open invitation. Admins and owners; only owners take back an owner's.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/invitations/{id}", tag = "organizations",
    params(("org" = String, Path, description = "Organization name"), ("id" = Uuid, Path, description = "The invitation's id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 403, description = "`forbidden` or `owner_required`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`org_not_found` or `invitation_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn revoke_invitation(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    actor: OrgMember<Admin>,
    ApiPath(path): ApiPath<InvitationPath>,
) -> Result<StatusCode> {
    orgs::revoke_invitation(&state, &actor, path.id, ip).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The open invitations to the caller's address, newest first.
#[utoipa::path(get, path = "/api/v1/me/invitations", tag = "account", responses(
    (status = 200, body = [api::ReceivedInvitation]),
    (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
))]
async fn received_invitations(
    State(state): State<AppState>,
    caller: CurrentUser,
) -> Result<Json<Vec<api::ReceivedInvitation>>> {
    let invitations = orgs::received_invitations(&state, &caller.user).await?;
    Ok(Json(
        invitations
            .iter()
            .map(|(invitation, org)| api::ReceivedInvitation {
                id: invitation.id,
                org: org.name.clone(),
                org_display_name: org.display_name.clone(),
                role: Role::parse(&invitation.role).unwrap_or(Role::Viewer),
                invited_by: invitation.invited_by_name.clone(),
                created_at: invitation.created_at,
                expires_at: invitation.expires_at,
            })
            .collect(),
    ))
}

/// Accept an invitation to the caller's address: join its organization with its role.
#[utoipa::path(post, path = "/api/v1/me/invitations/{id}/accept", tag = "account",
    params(("id" = Uuid, Path, description = "The invitation's id")),
    responses(
        (status = 200, description = "Joined; the organization with the caller's role in it", body = api::Org),
        (status = 404, description = "`invitation_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`invitation_expired`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn accept_invitation(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    caller: CurrentUser,
    ApiPath(path): ApiPath<InvitationPath>,
) -> Result<Json<api::Org>> {
    let (org, role) = orgs::accept_invitation(&state, &caller.user, path.id, ip).await?;
    Ok(Json(org_view(&org, role)))
}

/// Decline an invitation to the caller's address. The organization is not told.
#[utoipa::path(post, path = "/api/v1/me/invitations/{id}/decline", tag = "account",
    params(("id" = Uuid, Path, description = "The invitation's id")),
    responses(
        (status = 204, description = "Declined"),
        (status = 404, description = "`invitation_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`invitation_expired`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn decline_invitation(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    caller: CurrentUser,
    ApiPath(path): ApiPath<InvitationPath>,
) -> Result<StatusCode> {
    orgs::decline_invitation(&state, &caller.user, path.id, ip).await?;
    Ok(StatusCode::NO_CONTENT)
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

/// The organization's audit log, newest first: the events in this organization only (its
/// members' own account events are theirs, on `/api/v1/me/audit`).
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
    let limit = query.limit()?;
    let events = audit::list_for_org(&state.db, member.org.id, query.before, limit + 1).await?;
    Ok(Json(audit_page(events, limit)))
}

/// The caller's own account events, newest first: sign-ins, password and token changes.
#[utoipa::path(get, path = "/api/v1/me/audit", tag = "account", params(AuditQuery), responses(
    (status = 200, body = api::AuditPage),
    (status = 400, description = "`invalid_query`", body = Problem, content_type = "application/problem+json"),
    (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
))]
async fn list_account_audit(
    State(state): State<AppState>,
    caller: CurrentUser,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<api::AuditPage>> {
    let limit = query.limit()?;
    let events = audit::list_for_account(&state.db, caller.id(), query.before, limit + 1).await?;
    Ok(Json(audit_page(events, limit)))
}

impl AuditQuery {
    fn limit(&self) -> Result<u64> {
        let limit = self.limit.unwrap_or(50);
        if !(1..=api::MAX_PAGE_SIZE).contains(&limit) {
            return Err(AppError::bad_request("invalid_query", "`limit` must be between 1 and 100."));
        }
        Ok(limit)
    }
}

/// The first `limit` of `events` (fetched one more than that, to know whether more follow).
fn audit_page(events: Vec<audit_events::Model>, limit: u64) -> api::AuditPage {
    let more = events.len() as u64 > limit;
    let items: Vec<api::AuditEvent> = events.into_iter().take(limit as usize).map(audit_event_view).collect();
    let next_before = if more { items.last().map(|e| e.id) } else { None };
    api::AuditPage { items, next_before }
}
