//! Organizations and their members. Every rule about roles lives here: who may grant what,
//! and that an organization always keeps at least one owner.

use std::{collections::HashMap, net::IpAddr};

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use serde_json::json;
use uuid::Uuid;

use crate::{
    audit::Event,
    auth::{Admin, MinRole, OrgMember},
    db::begin_write,
    domain::{Email, Invalid, OrgName, Role},
    entity::{memberships, organizations, users},
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

/// Adds the account with `email` to the organization with `role`.
pub async fn add_member(
    state: &AppState,
    actor: &OrgMember<Admin>,
    email: &str,
    role: Role,
    ip: IpAddr,
) -> Result<Member> {
    let mut errors = FieldErrors::new();
    let email = errors.check("email", Email::parse(email));
    errors.finish()?;
    let Some(email) = email else {
        return Err(AppError::Internal(anyhow::anyhow!("validated email missing")));
    };
    ensure_may_grant(actor, role)?;

    let user = users::Entity::find()
        .filter(users::Column::EmailNormalized.eq(email.normalized()))
        .one(&state.db)
        .await?
        .ok_or_else(|| {
            let message = "No Fleetplane account uses this email. Ask them to sign up first.";
            AppError::not_found("user_not_found", message).on_field("email", message)
        })?;
    let txn = begin_write(&state.db).await?;
    if memberships::Entity::find_by_id((actor.org.id, user.id)).one(&txn).await?.is_some() {
        let message = "This person is already a member.";
        return Err(AppError::conflict("already_member", message).on_field("email", message));
    }
    let membership = memberships::ActiveModel {
        org_id: Set(actor.org.id),
        user_id: Set(user.id),
        role: Set(role.as_str().to_owned()),
        created_at: Set(Utc::now()),
    }
    .insert(&txn)
    .await?;
    Event::new("org.member_added", Some(ip))
        .actor(&actor.user.user)
        .org(actor.org.id)
        .target(user.username.clone())
        .details(json!({ "role": role }))
        .record(&txn)
        .await?;
    membership_changed(&txn, actor, user.id, true).await?;
    crate::notifications::create(
        &txn,
        crate::notifications::NewNotification {
            user_id: user.id,
            org_id: Some(actor.org.id),
            kind: "org_added",
            title: format!("You were added to {}", actor.org.display_name),
            body: format!("{} added you as {role}.", actor.user.user.username),
            link: Some(format!("/orgs/{}", actor.org.name)),
        },
    )
    .await?;
    txn.commit().await?;
    state.events_written();
    Ok(Member { user, role, joined_at: membership.created_at })
}

/// Tells `user`'s live streams that their memberships changed (they see another set of
/// organizations' events from now on).
async fn membership_changed<R: MinRole>(
    conn: &impl ConnectionTrait,
    actor: &OrgMember<R>,
    user: Uuid,
    member: bool,
) -> Result<(), DbErr> {
    let payload = json!({ "org": actor.org.name, "org_id": actor.org.id, "member": member });
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
    membership_changed(&txn, actor, user.id, true).await?;
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
    membership_changed(&txn, actor, user_id, false).await?;
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
