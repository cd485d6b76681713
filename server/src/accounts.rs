//! Accounts: sign-up, email verification, sign-in, username and password changes, session
//! revocation and personal API tokens. Used by the HTTP API and by `fleetplane admin`.

use std::net::IpAddr;

use chrono::{TimeDelta, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter,
    QueryOrder, Set,
    sea_query::{Expr, ExprTrait},
};
use serde_json::json;
use uuid::Uuid;

use crate::{
    audit::Event,
    auth::tokens,
    config::Limit,
    db::begin_write,
    domain::{Email, Handle, Invalid, NewPassword, Role, Username},
    entity::{api_tokens, email_verification_tokens, memberships, organizations, users},
    error::{AppError, FieldErrors, Result},
    mail,
    state::AppState,
};

/// How long an emailed verification link works.
pub const VERIFICATION_TTL: TimeDelta = TimeDelta::hours(24);

/// Counts a request against `limit` for `key`, or answers 429 with the wait.
pub fn rate_limit(state: &AppState, key: &str, limit: Limit) -> Result<()> {
    if !state.config.rate_limits.enabled {
        return Ok(());
    }
    state.limiter.check(key, limit).map_err(|wait| AppError::rate_limited(wait.as_secs_f64().ceil() as u64))
}

/// A new account's validated fields.
pub struct NewAccount {
    pub email: Email,
    pub username: Username,
    pub password: NewPassword,
    /// Accounts made by an administrator skip the verification email.
    pub verified: bool,
}

impl NewAccount {
    /// Validates all three fields and reports every problem at once.
    pub fn parse(email: &str, username: &str, password: &str, verified: bool) -> Result<Self> {
        let mut errors = FieldErrors::new();
        let email = errors.check("email", Email::parse(email));
        let username = errors.check("username", Handle::parse(username));
        let password = errors.check("password", NewPassword::parse(password));
        errors.finish()?;
        match (email, username, password) {
            (Some(email), Some(username), Some(password)) => Ok(Self { email, username, password, verified }),
            _ => unreachable!("FieldErrors::finish fails when a field is missing"),
        }
    }
}

/// Sign-up from the API: open sign-up only, rate-limited, then [`create_account`].
pub async fn sign_up(state: &AppState, account: NewAccount, ip: IpAddr) -> Result<users::Model> {
    if !state.config.signup_open() {
        return Err(AppError::forbidden(
            "signup_closed",
            "Sign-up is closed on this server. Ask an administrator to create your account.",
        ));
    }
    rate_limit(state, &format!("signup:ip:{ip}"), state.config.rate_limits.signup_per_ip)?;
    create_account(state, account, Some(ip)).await
}

/// Creates the user, their personal organization (owned by them) and, unless pre-verified,
/// the verification token and email: all in one transaction.
pub async fn create_account(state: &AppState, account: NewAccount, ip: Option<IpAddr>) -> Result<users::Model> {
    // Friendly answers for the common case; the unique indexes still settle races.
    let mut taken = Vec::new();
    if find_by_email(&state.db, &account.email).await?.is_some() {
        taken.push(("email", "email_taken", "An account with this email already exists."));
    }
    if username_exists(&state.db, account.username.as_str()).await? {
        taken.push(("username", "username_taken", "This username is taken."));
    }
    if let Some(&(_, code, message)) = taken.first() {
        let mut error = AppError::conflict(code, message);
        for (field, _, message) in taken {
            error = error.on_field(field, message);
        }
        return Err(error);
    }

    let password_hash = state.passwords.hash(account.password.expose()).await?;
    let now = Utc::now();
    let txn = begin_write(&state.db).await?;
    let user = users::ActiveModel {
        id: Set(Uuid::now_v7()),
        email: Set(account.email.as_str().to_owned()),
        email_normalized: Set(account.email.normalized()),
        username: Set(account.username.as_str().to_owned()),
        password_hash: Set(Some(password_hash)),
        email_verified_at: Set(account.verified.then_some(now)),
        session_version: Set(1),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await?;

    let org_name = free_org_name(&txn, &account.username).await?;
    let org = organizations::ActiveModel {
        id: Set(Uuid::now_v7()),
        name: Set(org_name),
        display_name: Set(user.username.clone()),
        personal_owner_id: Set(Some(user.id)),
        created_at: Set(now),
    }
    .insert(&txn)
    .await?;
    memberships::ActiveModel {
        org_id: Set(org.id),
        user_id: Set(user.id),
        role: Set(Role::Owner.as_str().to_owned()),
        created_at: Set(now),
    }
    .insert(&txn)
    .await?;

    if !account.verified {
        send_verification(state, &txn, &user).await?;
    }
    Event::new("auth.signup", ip).actor(&user).target(user.email.clone()).record(&txn).await?;
    txn.commit().await?;
    state.mail.wake();
    tracing::info!(user = %user.id, username = %user.username, "account created");
    Ok(user)
}

async fn find_by_email(conn: &impl ConnectionTrait, email: &Email) -> Result<Option<users::Model>, DbErr> {
    users::Entity::find().filter(users::Column::EmailNormalized.eq(email.normalized())).one(conn).await
}

async fn username_exists(conn: &impl ConnectionTrait, username: &str) -> Result<bool, DbErr> {
    Ok(users::Entity::find().filter(users::Column::Username.eq(username)).count(conn).await? > 0)
}

/// The personal organization's name: the username, or the username with a number after it
/// when an organization already has that name.
async fn free_org_name(conn: &impl ConnectionTrait, username: &Username) -> Result<String, DbErr> {
    let base = username.as_str();
    for n in 1..100u32 {
        let candidate = if n == 1 {
            base.to_owned()
        } else {
            let suffix = format!("-{n}");
            let keep = Handle::MAX - suffix.len();
            format!("{}{suffix}", &base[..base.len().min(keep)])
        };
        let exists =
            organizations::Entity::find().filter(organizations::Column::Name.eq(&candidate)).count(conn).await?;
        if exists == 0 {
            return Ok(candidate);
        }
    }
    Ok(format!("{}-{:x}", &base[..base.len().min(Handle::MAX - 9)], rand::random::<u32>()))
}

/// Stores a new verification token for `user` and queues the email carrying it.
async fn send_verification(state: &AppState, conn: &impl ConnectionTrait, user: &users::Model) -> Result<(), DbErr> {
    let token = tokens::generate("");
    let now = Utc::now();
    email_verification_tokens::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(user.id),
        token_hash: Set(tokens::hash(&token)),
        expires_at: Set(now + VERIFICATION_TTL),
        used_at: Set(None),
        created_at: Set(now),
    }
    .insert(conn)
    .await?;
    state.mail.enqueue(conn, mail::verification_email(&state.mail, &user.email, &user.username, &token)).await
}

/// Redeems an emailed verification token: single use, expiring, and it retires the user's
/// other outstanding tokens.
pub async fn verify_email(state: &AppState, token: &str, ip: IpAddr) -> Result<users::Model> {
    let token = token.trim();
    if token.is_empty() {
        return Err(AppError::invalid_field("token", "required", "The verification token is missing."));
    }
    let now = Utc::now();
    let txn = begin_write(&state.db).await?;
    let record = email_verification_tokens::Entity::find()
        .filter(email_verification_tokens::Column::TokenHash.eq(tokens::hash(token)))
        .one(&txn)
        .await?
        .ok_or_else(|| {
            AppError::bad_request(
                "verification_token_invalid",
                "This verification link is not valid. Request a new one.",
            )
        })?;
    if record.used_at.is_some() {
        return Err(AppError::bad_request(
            "verification_token_used",
            "This verification link was already used. Sign in, or request a new link.",
        ));
    }
    if record.expires_at <= now {
        return Err(AppError::bad_request(
            "verification_token_expired",
            "This verification link has expired. Request a new one.",
        ));
    }
    email_verification_tokens::Entity::update_many()
        .col_expr(email_verification_tokens::Column::UsedAt, Expr::value(now))
        .filter(email_verification_tokens::Column::UserId.eq(record.user_id))
        .filter(email_verification_tokens::Column::UsedAt.is_null())
        .exec(&txn)
        .await?;
    let user = users::Entity::find_by_id(record.user_id)
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("verification token without a user")))?;
    let user = if user.email_verified_at.is_none() {
        let mut active = user.into_active_model();
        active.email_verified_at = Set(Some(now));
        active.updated_at = Set(now);
        active.update(&txn).await?
    } else {
        user
    };
    Event::new("auth.email_verified", Some(ip)).actor(&user).target(user.email.clone()).record(&txn).await?;
    txn.commit().await?;
    state.users.invalidate(user.id);
    Ok(user)
}

/// Sends a new verification link if `email` belongs to an unverified account. Answers the same
/// either way, so it cannot be used to find out which addresses have accounts.
pub async fn resend_verification(state: &AppState, email: &str, ip: IpAddr) -> Result<()> {
    let mut errors = FieldErrors::new();
    let email = errors.check("email", Email::parse(email));
    errors.finish()?;
    let Some(email) = email else { return Ok(()) };
    let limits = &state.config.rate_limits;
    rate_limit(state, &format!("resend:ip:{ip}"), limits.resend_per_ip)?;
    rate_limit(state, &format!("resend:account:{}", email.normalized()), limits.resend_per_account)?;

    let txn = begin_write(&state.db).await?;
    if let Some(user) = find_by_email(&txn, &email).await?.filter(|u| u.email_verified_at.is_none()) {
        send_verification(state, &txn, &user).await?;
        Event::new("auth.verification_resent", Some(ip)).actor(&user).record(&txn).await?;
    }
    txn.commit().await?;
    state.mail.wake();
    Ok(())
}

/// Checks an email and password. Unknown emails and wrong passwords get the same answer in the
/// same time; an unverified account is only reported once the password is right.
pub async fn sign_in(state: &AppState, email: &str, password: &str, ip: IpAddr) -> Result<users::Model> {
    let mut errors = FieldErrors::new();
    let email = errors.check("email", Email::parse(email));
    if password.is_empty() {
        errors.add("password", Invalid::new("required", "Enter your password."));
    }
    errors.finish()?;
    let Some(email) = email else {
        return Err(AppError::Internal(anyhow::anyhow!("validated email missing")));
    };
    let limits = &state.config.rate_limits;
    rate_limit(state, &format!("login:ip:{ip}"), limits.login_per_ip)?;
    rate_limit(state, &format!("login:account:{}", email.normalized()), limits.login_per_account)?;

    let user = find_by_email(&state.db, &email).await?;
    let hash = user.as_ref().and_then(|u| u.password_hash.as_deref());
    let matches = state.passwords.verify(password, hash).await?;
    let user = match user {
        Some(user) if matches => user,
        user => {
            let event = Event::new("auth.login_failed", Some(ip)).details(json!({ "email": email.as_str() }));
            let event = match &user {
                Some(user) => event.actor(user),
                None => event.actor_name(email.as_str()),
            };
            event.record(&state.db).await?;
            return Err(AppError::unauthorized("invalid_credentials", "The email or password is incorrect."));
        }
    };
    if user.email_verified_at.is_none() {
        return Err(AppError::forbidden(
            "email_not_verified",
            "Confirm your email address first: follow the link we sent you, or request a new one.",
        ));
    }
    Event::new("auth.login", Some(ip)).actor(&user).record(&state.db).await?;
    Ok(user)
}

pub async fn change_username(
    state: &AppState,
    user: &users::Model,
    username: &str,
    ip: IpAddr,
) -> Result<users::Model> {
    let mut errors = FieldErrors::new();
    let username = errors.check("username", Handle::parse(username));
    errors.finish()?;
    let Some(username) = username else {
        return Ok(user.clone());
    };
    if username.as_str() == user.username {
        return Ok(user.clone());
    }
    if username_exists(&state.db, username.as_str()).await? {
        return Err(AppError::conflict("username_taken", "This username is taken.")
            .on_field("username", "This username is taken."));
    }
    let txn = begin_write(&state.db).await?;
    let mut active = user.clone().into_active_model();
    active.username = Set(username.as_str().to_owned());
    active.updated_at = Set(Utc::now());
    let updated = active.update(&txn).await?;
    Event::new("account.username_changed", Some(ip))
        .actor(&updated)
        .details(json!({ "from": user.username, "to": updated.username }))
        .record(&txn)
        .await?;
    txn.commit().await?;
    state.users.invalidate(user.id);
    Ok(updated)
}

/// Sets a new password and revokes every session, returning the user with the new session
/// version (so the caller can issue a fresh session for the browser that asked).
pub async fn change_password(
    state: &AppState,
    user: &users::Model,
    current: &str,
    new: &str,
    ip: IpAddr,
) -> Result<users::Model> {
    let mut errors = FieldErrors::new();
    let has_password = user.password_hash.is_some();
    if has_password && current.is_empty() {
        errors.add("current_password", Invalid::new("required", "Enter your current password."));
    }
    let new_password = errors.check("new_password", NewPassword::parse(new));
    if has_password && !current.is_empty() {
        // A stolen session must not become a way to guess the password.
        rate_limit(state, &format!("password:account:{}", user.id), state.config.rate_limits.login_per_account)?;
        if !state.passwords.verify(current, user.password_hash.as_deref()).await? {
            errors.add("current_password", Invalid::new("incorrect", "Your current password is not correct."));
        } else if current == new {
            errors.add("new_password", Invalid::new("unchanged", "Choose a password different from your current one."));
        }
    }
    errors.finish()?;
    let Some(new_password) = new_password else { return Ok(user.clone()) };
    let hash = state.passwords.hash(new_password.expose()).await?;
    let txn = begin_write(&state.db).await?;
    let mut active = user.clone().into_active_model();
    active.password_hash = Set(Some(hash));
    active.session_version = Set(user.session_version + 1);
    active.updated_at = Set(Utc::now());
    let updated = active.update(&txn).await?;
    Event::new("account.password_changed", Some(ip)).actor(&updated).record(&txn).await?;
    txn.commit().await?;
    state.users.invalidate(user.id);
    Ok(updated)
}

/// Signs the user out everywhere: every session issued so far stops working.
pub async fn revoke_sessions(state: &AppState, user: &users::Model, ip: IpAddr) -> Result<()> {
    let txn = begin_write(&state.db).await?;
    users::Entity::update_many()
        .col_expr(users::Column::SessionVersion, Expr::col(users::Column::SessionVersion).add(1))
        .col_expr(users::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(users::Column::Id.eq(user.id))
        .exec(&txn)
        .await?;
    Event::new("auth.sessions_revoked", Some(ip)).actor(user).record(&txn).await?;
    txn.commit().await?;
    state.users.invalidate(user.id);
    Ok(())
}

/// Creates a personal API token; the plaintext is returned here and never again.
pub async fn create_token(
    state: &AppState,
    user: &users::Model,
    name: &str,
    expires_in_days: Option<u32>,
    ip: IpAddr,
) -> Result<(api_tokens::Model, String)> {
    let mut errors = FieldErrors::new();
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        errors.add("name", Invalid::new("length", "Give the token a name of 1 to 100 characters."));
    }
    if expires_in_days.is_some_and(|days| !(1..=3650).contains(&days)) {
        errors.add("expires_in_days", Invalid::new("range", "Choose between 1 and 3650 days, or no expiry."));
    }
    errors.finish()?;

    let token = tokens::generate(tokens::API_TOKEN_PREFIX);
    let now = Utc::now();
    let txn = begin_write(&state.db).await?;
    let record = api_tokens::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(user.id),
        name: Set(name.to_owned()),
        token_hash: Set(tokens::hash(&token)),
        prefix: Set(token.chars().take(tokens::API_TOKEN_PREFIX.len() + 6).collect()),
        expires_at: Set(expires_in_days.map(|days| now + TimeDelta::days(i64::from(days)))),
        last_used_at: Set(None),
        revoked_at: Set(None),
        created_at: Set(now),
    }
    .insert(&txn)
    .await?;
    Event::new("api_token.created", Some(ip)).actor(user).target(record.name.clone()).record(&txn).await?;
    txn.commit().await?;
    Ok((record, token))
}

/// The user's tokens that have not been revoked, newest first.
pub async fn list_tokens(state: &AppState, user_id: Uuid) -> Result<Vec<api_tokens::Model>> {
    Ok(api_tokens::Entity::find()
        .filter(api_tokens::Column::UserId.eq(user_id))
        .filter(api_tokens::Column::RevokedAt.is_null())
        .order_by_desc(api_tokens::Column::Id)
        .all(&state.db)
        .await?)
}

pub async fn revoke_token(state: &AppState, user: &users::Model, token_id: Uuid, ip: IpAddr) -> Result<()> {
    let txn = begin_write(&state.db).await?;
    let record = api_tokens::Entity::find_by_id(token_id)
        .filter(api_tokens::Column::UserId.eq(user.id))
        .filter(api_tokens::Column::RevokedAt.is_null())
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::not_found("token_not_found", "No such API token."))?;
    let name = record.name.clone();
    let mut active = record.into_active_model();
    active.revoked_at = Set(Some(Utc::now()));
    active.update(&txn).await?;
    Event::new("api_token.revoked", Some(ip)).actor(user).target(name).record(&txn).await?;
    txn.commit().await?;
    Ok(())
}
