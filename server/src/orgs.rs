//! Organizations, their members and invitations. Every rule about roles lives here: who may
//! grant what, and that an organization always keeps at least one owner.
//!
//! Nobody is put into an organization without consent: admins invite an address, and its owner
//! accepts or declines from their own account.

use std::{collections::HashMap, net::IpAddr};

use chrono::{TimeDelta, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, sea_query::Expr,
};
use serde_json::json;
use uuid::Uuid;

use crate::{
    audit::Event,
    auth::{Admin, MinRole, OrgMember},
    db::begin_write,
    domain::{Email, Invalid, OrgName, Role},
    entity::{invitations, memberships, organizations, users},
    error::{AppError, FieldErrors, Result},
    state::AppState,
};

const DISPLAY_NAME_MAX: usize = 100;

/// Creates an organization owned by `creator`.
pub async fn create_org(
    state: &AppState,
    creator: &users::Model,
    name: &str,
    display_name: Option<&str>,
    ip: Option<IpAddr>,
) -> Result<organizations::Model> {
    let mut errors = FieldErrors::new();
    let name = errors.check("name", OrgName::parse(name));
    let display_name = display_name.map(str::trim).filter(|d| !d.is_empty());
    if display_name.is_some_and(|d| d.chars().count() > DISPLAY_NAME_MAX) {
        errors.add("display_name", Invalid::new("length", format!("Use at most {DISPLAY_NAME_MAX} characters.")));
    }
    errors.finish()?;
    let Some(name) = name else {
        return Err(AppError::Internal(anyhow::anyhow!("validated name missing")));
    };
    if find_by_name(&state.db, &name).await?.is_some() {
        return Err(name_taken());
    }

    let now = Utc::now();
    let txn = begin_write(&state.db).await?;
    let org = organizations::ActiveModel {
        id: Set(Uuid::now_v7()),
        name: Set(name.as_str().to_owned()),
        display_name: Set(display_name.unwrap_or(name.as_str()).to_owned()),
        personal_owner_id: Set(None),
        created_at: Set(now),
    }
    .insert(&txn)
    .await?;
    memberships::ActiveModel {
        org_id: Set(org.id),
        user_id: Set(creator.id),
        role: Set(Role::Owner.as_str().to_owned()),
        created_at: Set(now),
    }
    .insert(&txn)
    .await?;
    Event::new("org.created", ip).actor(creator).org(org.id).target(org.name.clone()).record(&txn).await?;
    txn.commit().await?;
    Ok(org)
}

fn name_taken() -> AppError {
    let message = "An organization with this name already exists.";
    AppError::conflict("org_name_taken", message).on_field("name", message)
}

pub async fn find_by_name(conn: &impl ConnectionTrait, name: &OrgName) -> Result<Option<organizations::Model>, DbErr> {
    organizations::Entity::find().filter(organizations::Column::Name.eq(name.as_str())).one(conn).await
}

/// The organizations `user_id` belongs to, with their role in each, by name.
pub async fn list_for_user(state: &AppState, user_id: Uuid) -> Result<Vec<(organizations::Model, Role)>> {
    let roles: HashMap<Uuid, Role> = memberships::Entity::find()
        .filter(memberships::Column::UserId.eq(user_id))
        .all(&state.db)
        .await?
        .into_iter()
        .filter_map(|m| Some((m.org_id, Role::parse(&m.role)?)))
        .collect();
    let orgs = organizations::Entity::find()
        .filter(organizations::Column::Id.is_in(roles.keys().copied()))
        .order_by_asc(organizations::Column::Name)
        .all(&state.db)
        .await?;
    Ok(orgs.into_iter().filter_map(|org| roles.get(&org.id).map(|&role| (org, role))).collect())
}

/// A member as the API shows it.
pub struct Member {
    pub user: users::Model,
    pub role: Role,
    pub joined_at: chrono::DateTime<Utc>,
}

/// The members of `org_id`, by username.
pub async fn list_members(state: &AppState, org_id: Uuid) -> Result<Vec<Member>> {
    let memberships = memberships::Entity::find().filter(memberships::Column::OrgId.eq(org_id)).all(&state.db).await?;
    let mut users: HashMap<Uuid, users::Model> = users::Entity::find()
        .filter(users::Column::Id.is_in(memberships.iter().map(|m| m.user_id)))
        .all(&state.db)
        .await?
        .into_iter()
        .map(|u| (u.id, u))
        .collect();
    let mut members: Vec<Member> = memberships
        .into_iter()
        .filter_map(|m| {
            Some(Member { role: Role::parse(&m.role)?, joined_at: m.created_at, user: users.remove(&m.user_id)? })
        })
        .collect();
    members.sort_by(|a, b| a.user.username.cmp(&b.user.username));
    Ok(members)
}

/// Admins may grant any role but owner; only owners make or unmake owners.
fn ensure_may_grant<R: MinRole>(actor: &OrgMember<R>, role: Role) -> Result<()> {
    if role == Role::Owner && actor.role < Role::Owner {
        return Err(owner_required());
    }
    Ok(())
}

fn owner_required() -> AppError {
    AppError::forbidden("owner_required", "Only an owner can add, change or remove owners.")
}

fn last_owner() -> AppError {
    AppError::conflict("last_owner", "An organization needs at least one owner. Make someone else an owner first.")
}

/// What an invitation can be. A declined invitation looks `pending` to the organization until it
/// expires: until they accept, the inviter learns nothing of the invitee, not even a "no".
pub mod invitation_status {
    pub const PENDING: &str = "pending";
    pub const ACCEPTED: &str = "accepted";
    pub const DECLINED: &str = "declined";
    pub const REVOKED: &str = "revoked";
}
use invitation_status as status;

fn invitation_not_found() -> AppError {
    AppError::not_found("invitation_not_found", "This invitation does not exist or is no longer open.")
}

/// Invites `email` to the organization with `role`: an email to the address and, if it has an
/// account, a notification. The answer (and everything the inviter can see afterwards) is the
/// same whether or not the address has an account; nobody joins until the invitee accepts.
pub async fn invite(
    state: &AppState,
    actor: &OrgMember<Admin>,
    email: &str,
    role: Role,
    ip: IpAddr,
) -> Result<invitations::Model> {
    let mut errors = FieldErrors::new();
    let email = errors.check("email", Email::parse(email));
    errors.finish()?;
    let Some(email) = email else {
        return Err(AppError::Internal(anyhow::anyhow!("validated email missing")));
    };
    ensure_may_grant(actor, role)?;
    let limit = state.config.rate_limits.invite_per_user;
    crate::accounts::rate_limit(state, &format!("invite:user:{}", actor.user.id()), limit).await?;

    let now = Utc::now();
    let txn = begin_write(&state.db).await?;
    let account = users::Entity::find()
        .filter(users::Column::EmailNormalized.eq(email.normalized()))
        .filter(users::Column::EmailVerifiedAt.is_not_null())
        .one(&txn)
        .await?;
    // Members' addresses are on the members list already: saying so tells the inviter nothing new.
    if let Some(account) = &account
        && memberships::Entity::find_by_id((actor.org.id, account.id)).one(&txn).await?.is_some()
    {
        let message = "This person is already a member.";
        return Err(AppError::conflict("already_member", message).on_field("email", message));
    }
    let open = invitations::Entity::find()
        .filter(invitations::Column::OrgId.eq(actor.org.id))
        .filter(invitations::Column::EmailNormalized.eq(email.normalized()))
        .filter(invitations::Column::Status.is_in([status::PENDING, status::DECLINED]))
        .filter(invitations::Column::ExpiresAt.gt(now))
        .count(&txn)
        .await?;
    if open > 0 {
        let message = "This address has an open invitation already. Revoke it first to send a new one.";
        return Err(AppError::conflict("already_invited", message).on_field("email", message));
    }
    let ttl = TimeDelta::from_std(state.config.invitation_ttl).unwrap_or(TimeDelta::days(7));
    let invitation = invitations::ActiveModel {
        id: Set(Uuid::now_v7()),
        org_id: Set(actor.org.id),
        email: Set(email.as_str().to_owned()),
        email_normalized: Set(email.normalized()),
        role: Set(role.as_str().to_owned()),
        invited_by: Set(Some(actor.user.id())),
        invited_by_name: Set(actor.user.user.username.clone()),
        status: Set(status::PENDING.to_owned()),
        created_at: Set(now),
        expires_at: Set(now + ttl),
        responded_at: Set(None),
    }
    .insert(&txn)
    .await?;
    Event::new("org.member_invited", Some(ip))
        .actor(&actor.user.user)
        .org(actor.org.id)
        .target(email.as_str().to_owned())
        .details(json!({ "role": role, "invitation": invitation.id }))
        .record(&txn)
        .await?;
    let expires = invitation.expires_at.format("%Y-%m-%d %H:%M UTC").to_string();
    let mail = crate::mail::invitation_email(
        &state.mail,
        email.as_str(),
        &actor.user.user.username,
        &actor.org.display_name,
        role.as_str(),
        &expires,
    );
    state.mail.enqueue(&txn, mail).await?;
    if let Some(account) = account {
        notify_invited(&txn, &invitation, &account, &actor.org).await?;
    }
    txn.commit().await?;
    state.mail.wake();
    state.events_written();
    Ok(invitation)
}

async fn notify_invited(
    conn: &impl ConnectionTrait,
    invitation: &invitations::Model,
    invitee: &users::Model,
    org: &organizations::Model,
) -> Result<(), DbErr> {
    crate::notifications::create(
        conn,
        crate::notifications::NewNotification {
            user_id: invitee.id,
            org_id: None,
            kind: "org_invitation",
            title: format!("{} invited you to {}", invitation.invited_by_name, org.display_name),
            body: format!("Join as {}: accept or decline on your invitations page.", invitation.role),
            link: Some("/invitations".to_owned()),
        },
    )
    .await
    .map(drop)
}

/// For an account that just proved its address: a notification for each open invitation to it.
pub async fn invitations_arrived(conn: &impl ConnectionTrait, user: &users::Model) -> Result<(), DbErr> {
    for (invitation, org) in open_invitations_for(conn, user).await? {
        notify_invited(conn, &invitation, user, &org).await?;
    }
    Ok(())
}

async fn open_invitations_for(
    conn: &impl ConnectionTrait,
    user: &users::Model,
) -> Result<Vec<(invitations::Model, organizations::Model)>, DbErr> {
    let invitations = invitations::Entity::find()
        .filter(invitations::Column::EmailNormalized.eq(&user.email_normalized))
        .filter(invitations::Column::Status.eq(status::PENDING))
        .filter(invitations::Column::ExpiresAt.gt(Utc::now()))
        .order_by_desc(invitations::Column::Id)
        .all(conn)
        .await?;
    let orgs: HashMap<Uuid, organizations::Model> = organizations::Entity::find()
        .filter(organizations::Column::Id.is_in(invitations.iter().map(|i| i.org_id)))
        .all(conn)
        .await?
        .into_iter()
        .map(|o| (o.id, o))
        .collect();
    Ok(invitations.into_iter().filter_map(|i| orgs.get(&i.org_id).cloned().map(|org| (i, org))).collect())
}

/// The organization's open invitations, newest first (declined ones among them, see
/// [`invitation_status`]).
pub async fn list_invitations(state: &AppState, org_id: Uuid) -> Result<Vec<invitations::Model>> {
    Ok(invitations::Entity::find()
        .filter(invitations::Column::OrgId.eq(org_id))
        .filter(invitations::Column::Status.is_in([status::PENDING, status::DECLINED]))
        .filter(invitations::Column::ExpiresAt.gt(Utc::now()))
        .order_by_desc(invitations::Column::Id)
        .all(&state.db)
        .await?)
}

/// Takes back an open invitation. Like granting, only owners take back an owner's invitation.
pub async fn revoke_invitation(state: &AppState, actor: &OrgMember<Admin>, id: Uuid, ip: IpAddr) -> Result<()> {
    let txn = begin_write(&state.db).await?;
    let invitation = invitations::Entity::find_by_id(id)
        .filter(invitations::Column::OrgId.eq(actor.org.id))
        .filter(invitations::Column::Status.is_in([status::PENDING, status::DECLINED]))
        .one(&txn)
        .await?
        .ok_or_else(invitation_not_found)?;
    ensure_may_grant(actor, Role::parse(&invitation.role).unwrap_or(Role::Viewer))?;
    let email = invitation.email.clone();
    let mut active = invitation.into_active_model();
    active.status = Set(status::REVOKED.to_owned());
    active.responded_at = Set(Some(Utc::now()));
    active.update(&txn).await?;
    Event::new("org.invitation_revoked", Some(ip))
        .actor(&actor.user.user)
        .org(actor.org.id)
        .target(email)
        .details(json!({ "invitation": id }))
        .record(&txn)
        .await?;
    txn.commit().await?;
    Ok(())
}

/// The open invitations to the caller's (verified) address, with their organizations.
pub async fn received_invitations(
    state: &AppState,
    user: &users::Model,
) -> Result<Vec<(invitations::Model, organizations::Model)>> {
    Ok(open_invitations_for(&state.db, user).await?)
}

/// The invitation `id` to `user`'s address, still pending, for accepting or declining it.
async fn pending_for(
    conn: &impl ConnectionTrait,
    user: &users::Model,
    id: Uuid,
) -> Result<(invitations::Model, organizations::Model)> {
    if user.email_verified_at.is_none() {
        return Err(invitation_not_found());
    }
    let invitation = invitations::Entity::find_by_id(id)
        .filter(invitations::Column::EmailNormalized.eq(&user.email_normalized))
        .filter(invitations::Column::Status.eq(status::PENDING))
        .one(conn)
        .await?
        .ok_or_else(invitation_not_found)?;
    if invitation.expires_at <= Utc::now() {
        return Err(AppError::client(
            axum::http::StatusCode::GONE,
            "invitation_expired",
            "This invitation has expired. Ask for a new one.",
        ));
    }
    let org = organizations::Entity::find_by_id(invitation.org_id).one(conn).await?.ok_or_else(invitation_not_found)?;
    Ok((invitation, org))
}

/// Marks a pending invitation answered; `false` when another request answered it first.
async fn answer(conn: &impl ConnectionTrait, id: Uuid, to: &str) -> Result<bool, DbErr> {
    let result = invitations::Entity::update_many()
        .col_expr(invitations::Column::Status, Expr::value(to))
        .col_expr(invitations::Column::RespondedAt, Expr::value(Utc::now()))
        .filter(invitations::Column::Id.eq(id))
        .filter(invitations::Column::Status.eq(status::PENDING))
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Joins the organization of an invitation to the caller's address, with its role. Someone
/// already a member keeps the role they have.
pub async fn accept_invitation(
    state: &AppState,
    user: &users::Model,
    id: Uuid,
    ip: IpAddr,
) -> Result<(organizations::Model, Role)> {
    let txn = begin_write(&state.db).await?;
    let (invitation, org) = pending_for(&txn, user, id).await?;
    if !answer(&txn, id, status::ACCEPTED).await? {
        return Err(invitation_not_found());
    }
    let invited = Role::parse(&invitation.role).unwrap_or(Role::Viewer);
    let role = match memberships::Entity::find_by_id((org.id, user.id)).one(&txn).await? {
        Some(existing) => Role::parse(&existing.role).unwrap_or(Role::Viewer),
        None => {
            memberships::ActiveModel {
                org_id: Set(org.id),
                user_id: Set(user.id),
                role: Set(invited.as_str().to_owned()),
                created_at: Set(Utc::now()),
            }
            .insert(&txn)
            .await?;
            invited
        }
    };
    Event::new("org.member_joined", Some(ip))
        .actor(user)
        .org(org.id)
        .target(user.username.clone())
        .details(json!({ "role": role, "invitation": id, "invited_by": invitation.invited_by_name }))
        .record(&txn)
        .await?;
    membership_changed(&txn, &org, user.id, true).await?;
    if let Some(inviter) = invitation.invited_by {
        crate::notifications::create(
            &txn,
            crate::notifications::NewNotification {
                user_id: inviter,
                org_id: Some(org.id),
                kind: "org_invitation_accepted",
                title: format!("{} joined {}", user.username, org.display_name),
                body: format!("{} accepted your invitation and is now {role}.", user.username),
                link: Some(format!("/orgs/{}", org.name)),
            },
        )
        .await?;
    }
    txn.commit().await?;
    state.events_written();
    Ok((org, role))
}

/// Declines an invitation. It is recorded in the invitee's own account log only: the
/// organization is not told (see [`invitation_status`]).
pub async fn decline_invitation(state: &AppState, user: &users::Model, id: Uuid, ip: IpAddr) -> Result<()> {
    let txn = begin_write(&state.db).await?;
    let (_, org) = pending_for(&txn, user, id).await?;
    if !answer(&txn, id, status::DECLINED).await? {
        return Err(invitation_not_found());
    }
    Event::new("account.invitation_declined", Some(ip))
        .actor(user)
        .target(org.name.clone())
        .details(json!({ "invitation": id }))
        .record(&txn)
        .await?;
    txn.commit().await?;
    Ok(())
}

/// Tells `user`'s live streams that their memberships changed (they see another set of
/// organizations' events from now on).
async fn membership_changed(
    conn: &impl ConnectionTrait,
    org: &organizations::Model,
    user: Uuid,
    member: bool,
) -> Result<(), DbErr> {
    let payload = json!({ "org": org.name, "org_id": org.id, "member": member });
    crate::events::record(conn, crate::events::Audience::User(user), "membership", payload).await?;
    Ok(())
}

/// Number of owners, with their rows locked (PostgreSQL) so that two concurrent demotions
/// cannot both see "another owner remains". SQLite serialises writers already (`begin_write`).
async fn owners_locked(conn: &impl ConnectionTrait, org_id: Uuid) -> Result<u64, DbErr> {
    let owners = memberships::Entity::find()
        .filter(memberships::Column::OrgId.eq(org_id))
        .filter(memberships::Column::Role.eq(Role::Owner.as_str()))
        .lock_exclusive()
        .all(conn)
        .await?;
    Ok(owners.len() as u64)
}

fn member_not_found() -> AppError {
    AppError::not_found("member_not_found", "This person is not a member of the organization.")
}

pub async fn change_role(
    state: &AppState,
    actor: &OrgMember<Admin>,
    user_id: Uuid,
    role: Role,
    ip: IpAddr,
) -> Result<Member> {
    let txn = begin_write(&state.db).await?;
    let membership =
        memberships::Entity::find_by_id((actor.org.id, user_id)).one(&txn).await?.ok_or_else(member_not_found)?;
    let user = users::Entity::find_by_id(user_id).one(&txn).await?.ok_or_else(member_not_found)?;
    let current = Role::parse(&membership.role).unwrap_or(Role::Viewer);
    if current == role {
        return Ok(Member { user, role, joined_at: membership.created_at });
    }
    ensure_may_grant(actor, role)?;
    ensure_may_grant(actor, current)?;
    if current == Role::Owner && owners_locked(&txn, actor.org.id).await? <= 1 {
        return Err(last_owner());
    }
    let joined_at = membership.created_at;
    let mut active = membership.into_active_model();
    active.role = Set(role.as_str().to_owned());
    active.update(&txn).await?;
    Event::new("org.member_role_changed", Some(ip))
        .actor(&actor.user.user)
        .org(actor.org.id)
        .target(user.username.clone())
        .details(json!({ "from": current, "to": role }))
        .record(&txn)
        .await?;
    membership_changed(&txn, &actor.org, user.id, true).await?;
    txn.commit().await?;
    state.events_written();
    Ok(Member { user, role, joined_at })
}

/// Removes a member. Admins remove others; anyone may leave; owners are removed by owners;
/// the last owner stays.
pub async fn remove_member<R: MinRole>(
    state: &AppState,
    actor: &OrgMember<R>,
    user_id: Uuid,
    ip: IpAddr,
) -> Result<()> {
    let leaving = user_id == actor.user.id();
    if !leaving && actor.role < Role::Admin {
        return Err(AppError::forbidden("forbidden", "Only admins and owners can remove members."));
    }
    let txn = begin_write(&state.db).await?;
    let membership =
        memberships::Entity::find_by_id((actor.org.id, user_id)).one(&txn).await?.ok_or_else(member_not_found)?;
    let role = Role::parse(&membership.role).unwrap_or(Role::Viewer);
    if role == Role::Owner {
        if !leaving && actor.role < Role::Owner {
            return Err(owner_required());
        }
        if owners_locked(&txn, actor.org.id).await? <= 1 {
            return Err(last_owner());
        }
    }
    let username = users::Entity::find_by_id(user_id).one(&txn).await?.map(|u| u.username);
    memberships::Entity::delete_by_id((actor.org.id, user_id)).exec(&txn).await?;
    Event::new("org.member_removed", Some(ip))
        .actor(&actor.user.user)
        .org(actor.org.id)
        .target(username.unwrap_or_else(|| user_id.to_string()))
        .details(json!({ "role": role }))
        .record(&txn)
        .await?;
    membership_changed(&txn, &actor.org, user_id, false).await?;
    txn.commit().await?;
    state.events_written();
    Ok(())
}

/// For `fleetplane admin create-user --org-owner ORG`: makes `user` an owner of the
/// organization named `name`, creating it if needed.
pub async fn ensure_owner(state: &AppState, user: &users::Model, name: &str) -> Result<organizations::Model> {
    let name = OrgName::parse(name).map_err(|e| AppError::invalid_field("org", e.code, e.message))?;
    let Some(org) = find_by_name(&state.db, &name).await? else {
        return create_org(state, user, name.as_str(), None, None).await;
    };
    let txn = begin_write(&state.db).await?;
    match memberships::Entity::find_by_id((org.id, user.id)).one(&txn).await? {
        Some(m) if m.role == Role::Owner.as_str() => {}
        Some(m) => {
            let mut active = m.into_active_model();
            active.role = Set(Role::Owner.as_str().to_owned());
            active.update(&txn).await?;
        }
        None => {
            memberships::ActiveModel {
                org_id: Set(org.id),
                user_id: Set(user.id),
                role: Set(Role::Owner.as_str().to_owned()),
                created_at: Set(Utc::now()),
            }
            .insert(&txn)
            .await?;
        }
    }
    Event::new("org.member_added", None)
        .actor_name("fleetplane admin")
        .org(org.id)
        .target(user.username.clone())
        .details(json!({ "role": Role::Owner }))
        .record(&txn)
        .await?;
    txn.commit().await?;
    Ok(org)
}
