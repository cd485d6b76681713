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
    entity::{
        api_tokens, email_verification_tokens, memberships, organizations, password_reset_tokens, user_identities,
        users,
    },
    error::{AppError, FieldErrors, Result},
    mail, sessions,
    state::AppState,
};

/// How long an emailed verification link works.
pub const VERIFICATION_TTL: TimeDelta = TimeDelta::hours(24);

/// Counts a request against `limit` for `key`, or answers 429 with the wait.
pub async fn rate_limit(state: &AppState, key: &str, limit: Limit) -> Result<()> {
    if !state.config.rate_limits.enabled {
        return Ok(());
    }
    state.limiter.check(key, limit).await.map_err(|wait| AppError::rate_limited(wait.as_secs_f64().ceil() as u64))
}

/// A new account's validated fields.
pub struct NewAccount {
    pub email: Email,
    pub username: Username,
    /// `None` for accounts that sign in with Google only (until they set a password).
    pub password: Option<NewPassword>,
    /// Accounts made by an administrator, or whose email Google verified, skip the
    /// verification email.
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
            (Some(email), Some(username), Some(password)) => {
                Ok(Self { email, username, password: Some(password), verified })
            }
            _ => unreachable!("FieldErrors::finish fails when a field is missing"),
        }
    }
}

/// Sign-up from the API: open sign-up only, rate-limited. It answers the same whether or not the
/// address has an account, so that it cannot tell anyone which addresses do:
/// - a new address gets an unverified account and a verification link;
/// - an address whose account is still unverified gets a new unverified account in place of the
///   old one (an unverified account does not hold its address: whoever signed up first may not
///   have been its owner);
/// - an address with a verified account gets nothing new, and its owner gets a mail saying
///   someone tried, with links to sign in or reset the password.
///
/// A username is taken when any other account has it; that answer depends on the username
/// alone, never on the address.
pub async fn sign_up(state: &AppState, account: NewAccount, ip: IpAddr) -> Result<()> {
    if !state.config.signup_open() {
        return Err(AppError::forbidden(
            "signup_closed",
            "Sign-up is closed on this server. Ask an administrator to create your account.",
        ));
    }
    let limits = &state.config.rate_limits;
    rate_limit(state, &format!("signup:ip:{ip}"), limits.signup_per_ip).await?;
    rate_limit(state, &format!("signup:address:{}", account.email.normalized()), limits.signup_per_address).await?;
    // Hashed whatever the address, so that a known one takes as long as a new one.
    let password_hash = match &account.password {
        Some(password) => Some(state.passwords.hash(password.expose()).await?),
        None => None,
    };

    let txn = begin_write(&state.db).await?;
    let holder = find_by_email(&txn, &account.email).await?;
    let replaced = holder.as_ref().filter(|u| u.email_verified_at.is_none()).map(|u| u.id);
    let username_holder =
        users::Entity::find().filter(users::Column::Username.eq(account.username.as_str())).one(&txn).await?;
    if username_holder.is_some_and(|u| Some(u.id) != replaced) {
        return Err(username_taken());
    }
    match holder {
        Some(owner) if owner.email_verified_at.is_some() => {
            state.mail.enqueue(&txn, mail::signup_attempt_email(&state.mail, &owner.email, &owner.username)).await?;
            Event::new("auth.signup_attempted", Some(ip)).actor(&owner).record(&txn).await?;
        }
        _ => {
            if let Some(replaced) = replaced {
                delete_unverified(&txn, &[replaced]).await?;
            }
            let user = insert_account(state, &txn, &account, password_hash, Some(ip), None).await?;
            tracing::info!(user = %user.id, username = %user.username, replaced = replaced.is_some(), "account signed up");
        }
    }
    txn.commit().await?;
    state.mail.wake();
    Ok(())
}

fn username_taken() -> AppError {
    AppError::conflict("username_taken", "This username is taken.").on_field("username", "This username is taken.")
}

/// Deletes accounts that never verified their address, with their personal organizations:
/// they never signed in, so nothing else is theirs. Verified accounts among `ids` are kept.
pub async fn delete_unverified(conn: &impl ConnectionTrait, ids: &[Uuid]) -> Result<u64, DbErr> {
    let unverified: Vec<Uuid> = users::Entity::find()
        .filter(users::Column::Id.is_in(ids.iter().copied()))
        .filter(users::Column::EmailVerifiedAt.is_null())
        .all(conn)
        .await?
        .into_iter()
        .map(|u| u.id)
        .collect();
    if unverified.is_empty() {
        return Ok(0);
    }
    organizations::Entity::delete_many()
        .filter(organizations::Column::PersonalOwnerId.is_in(unverified.iter().copied()))
        .exec(conn)
        .await?;
    Ok(users::Entity::delete_many().filter(users::Column::Id.is_in(unverified)).exec(conn).await?.rows_affected)
}

/// Creates the user, their personal organization (owned by them) and, unless pre-verified,
/// the verification token and email: all in one transaction.
pub async fn create_account(state: &AppState, account: NewAccount, ip: Option<IpAddr>) -> Result<users::Model> {
    create_account_with_identity(state, account, ip, None).await
}

/// [`create_account`], also linking `identity` to the new account in the same transaction.
async fn create_account_with_identity(
    state: &AppState,
    account: NewAccount,
    ip: Option<IpAddr>,
    identity: Option<&ExternalIdentity>,
) -> Result<users::Model> {
    // Friendly answers for the common case; the unique indexes still settle races.
    let mut taken = Vec::new();
    let holder = find_by_email(&state.db, &account.email).await?;
    // An unverified account does not hold its address (see [`sign_up`]).
    let replaced = holder.as_ref().filter(|u| u.email_verified_at.is_none()).map(|u| u.id);
    if holder.is_some() && replaced.is_none() {
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

    let password_hash = match &account.password {
        Some(password) => Some(state.passwords.hash(password.expose()).await?),
        None => None,
    };
    let txn = begin_write(&state.db).await?;
    if let Some(replaced) = replaced {
        delete_unverified(&txn, &[replaced]).await?;
    }
    let user = insert_account(state, &txn, &account, password_hash, ip, identity).await?;
    txn.commit().await?;
    state.mail.wake();
    tracing::info!(user = %user.id, username = %user.username, "account created");
    Ok(user)
}

/// Inserts the user, their personal organization and, unless pre-verified, the verification
/// token and email, in the caller's transaction.
async fn insert_account(
    state: &AppState,
    txn: &impl ConnectionTrait,
    account: &NewAccount,
    password_hash: Option<String>,
    ip: Option<IpAddr>,
    identity: Option<&ExternalIdentity>,
) -> Result<users::Model> {
    let now = Utc::now();
    let user = users::ActiveModel {
        id: Set(Uuid::now_v7()),
        email: Set(account.email.as_str().to_owned()),
        email_normalized: Set(account.email.normalized()),
        username: Set(account.username.as_str().to_owned()),
        password_hash: Set(password_hash),
        email_verified_at: Set(account.verified.then_some(now)),
        session_version: Set(1),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(txn)
    .await?;

    let org_name = free_org_name(txn, &account.username).await?;
    let org = organizations::ActiveModel {
        id: Set(Uuid::now_v7()),
        name: Set(org_name),
        display_name: Set(user.username.clone()),
        personal_owner_id: Set(Some(user.id)),
        created_at: Set(now),
    }
    .insert(txn)
    .await?;
    memberships::ActiveModel {
        org_id: Set(org.id),
        user_id: Set(user.id),
        role: Set(Role::Owner.as_str().to_owned()),
        created_at: Set(now),
    }
    .insert(txn)
    .await?;

    if account.verified {
        crate::orgs::invitations_arrived(txn, &user).await?;
    } else {
        send_verification(state, txn, &user).await?;
    }
    let mut event = Event::new("auth.signup", ip).actor(&user).target(user.email.clone());
    if let Some(identity) = identity {
        insert_identity(txn, user.id, identity).await?;
        event = event.details(json!({ "method": identity.provider, "subject": identity.subject }));
    }
    event.record(txn).await?;
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
    for n in 1..100 {
        let candidate = numbered(username.as_str(), n);
        let exists =
            organizations::Entity::find().filter(organizations::Column::Name.eq(&candidate)).count(conn).await?;
        if exists == 0 {
            return Ok(candidate);
        }
    }
    Ok(random_suffixed(username.as_str()))
}

/// The `n`th candidate name: `base`, then `base-2`, `base-3`, …, each cut to fit a [`Handle`].
fn numbered(base: &str, n: u32) -> String {
    if n == 1 {
        return base.to_owned();
    }
    let suffix = format!("-{n}");
    let keep = Handle::MAX - suffix.len();
    format!("{}{suffix}", &base[..base.len().min(keep)])
}

fn random_suffixed(base: &str) -> String {
    format!("{}-{:08x}", &base[..base.len().min(Handle::MAX - 9)], rand::random::<u32>())
}

/// A valid username made from an email's local part (`Ada.Lovelace+x@…` → `ada-lovelace-x`).
fn username_from_email(email: &Email) -> Username {
    let local = email.as_str().rsplit_once('@').map_or(email.as_str(), |(local, _)| local).to_lowercase();
    let mut name = String::new();
    for c in local.chars() {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' { c } else { '-' };
        if !(c == '-' && (name.is_empty() || name.ends_with('-'))) {
            name.push(c);
        }
    }
    let name = name.trim_start_matches(|c: char| !c.is_ascii_lowercase()).trim_end_matches('-');
    let mut name = name.chars().take(Handle::MAX).collect::<String>();
    while name.len() < Handle::MIN {
        name = if name.is_empty() { "user".to_owned() } else { format!("{name}-user") };
    }
    Handle::parse(name.trim_end_matches('-'))
        .unwrap_or_else(|_| Handle::parse("user").expect("`user` is a valid handle"))
}

/// A username derived from `email` that nobody has yet.
async fn free_username(conn: &impl ConnectionTrait, email: &Email) -> Result<Username> {
    let base = username_from_email(email);
    for n in 1..100 {
        let candidate = numbered(base.as_str(), n);
        if !username_exists(conn, &candidate).await? {
            return Ok(Handle::parse(&candidate).map_err(|e| anyhow::anyhow!("derived username {candidate}: {e:?}"))?);
        }
    }
    Ok(Handle::parse(&random_suffixed(base.as_str())).map_err(|e| anyhow::anyhow!("derived username: {e:?}"))?)
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

/// Redeems an emailed verification token with the password chosen at sign-up: single use,
/// expiring, and it retires the user's other outstanding tokens.
///
/// The link proves control of the inbox; the password proves this is the person who signed up.
/// Both are needed, so that neither a stranger who signed up with someone's address (who has no
/// link) nor the address's owner following a stranger's link (who has no password) activates
/// an account with a password someone else chose. A wrong password leaves the token unused.
pub async fn verify_email(state: &AppState, token: &str, password: &str, ip: IpAddr) -> Result<users::Model> {
    let token = token.trim();
    let mut errors = FieldErrors::new();
    if token.is_empty() {
        errors.add("token", Invalid::new("required", "The verification token is missing."));
    }
    if password.is_empty() {
        errors.add("password", Invalid::new("required", "Enter the password you chose when you signed up."));
    }
    errors.finish()?;
    let now = Utc::now();
    let record = email_verification_tokens::Entity::find()
        .filter(email_verification_tokens::Column::TokenHash.eq(tokens::hash(token)))
        .one(&state.db)
        .await?
        .ok_or_else(|| {
            AppError::bad_request(
                "verification_token_invalid",
                "This verification link is not valid. Request a new one.",
            )
        })?;
    let used = || {
        AppError::bad_request(
            "verification_token_used",
            "This verification link was already used. Sign in, or request a new link.",
        )
    };
    if record.used_at.is_some() {
        return Err(used());
    }
    if record.expires_at <= now {
        return Err(AppError::bad_request(
            "verification_token_expired",
            "This verification link has expired. Request a new one.",
        ));
    }
    let user = users::Entity::find_by_id(record.user_id)
        .one(&state.db)
        .await?
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("verification token without a user")))?;
    let limits = &state.config.rate_limits;
    rate_limit(state, &format!("login:ip:{ip}"), limits.login_per_ip).await?;
    rate_limit(state, &format!("login:account-ip:{}:{ip}", user.email_normalized), limits.login_per_account_ip).await?;
    if !state.passwords.verify(password, user.password_hash.as_deref()).await? {
        Event::new("auth.verification_failed", Some(ip)).actor(&user).record(&state.db).await?;
        let message = "This is not the password chosen when this address signed up. If you did not sign up, \
                       sign up yourself: that replaces the account waiting for verification.";
        return Err(AppError::unauthorized("invalid_credentials", message).on_field("password", message));
    }

    let txn = begin_write(&state.db).await?;
    // The token is spent by exactly one request, even if two race.
    let spent = email_verification_tokens::Entity::update_many()
        .col_expr(email_verification_tokens::Column::UsedAt, Expr::value(now))
        .filter(email_verification_tokens::Column::Id.eq(record.id))
        .filter(email_verification_tokens::Column::UsedAt.is_null())
        .exec(&txn)
        .await?;
    if spent.rows_affected == 0 {
        return Err(used());
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
        let user = active.update(&txn).await?;
        crate::orgs::invitations_arrived(&txn, &user).await?;
        user
    } else {
        user
    };
    Event::new("auth.email_verified", Some(ip)).actor(&user).target(user.email.clone()).record(&txn).await?;
    Event::new("auth.login", Some(ip)).actor(&user).details(json!({ "method": "verification" })).record(&txn).await?;
    txn.commit().await?;
    state.account_changed(user.id);
    state.events_written();
    Ok(user)
}

/// How long an emailed password reset link works.
pub const RESET_TTL: TimeDelta = TimeDelta::hours(1);

/// Sends a password reset link if `email` belongs to a verified account. Answers the same
/// either way, and is rate-limited per client and per address.
pub async fn request_password_reset(state: &AppState, email: &str, ip: IpAddr) -> Result<()> {
    let mut errors = FieldErrors::new();
    let email = errors.check("email", Email::parse(email));
    errors.finish()?;
    let Some(email) = email else { return Ok(()) };
    let limits = &state.config.rate_limits;
    rate_limit(state, &format!("reset:ip:{ip}"), limits.reset_per_ip).await?;
    rate_limit(state, &format!("reset:address:{}", email.normalized()), limits.reset_per_address).await?;

    let txn = begin_write(&state.db).await?;
    if let Some(user) = find_by_email(&txn, &email).await?.filter(|u| u.email_verified_at.is_some()) {
        let token = tokens::generate("");
        let now = Utc::now();
        password_reset_tokens::ActiveModel {
            id: Set(Uuid::now_v7()),
            user_id: Set(user.id),
            token_hash: Set(tokens::hash(&token)),
            expires_at: Set(now + RESET_TTL),
            used_at: Set(None),
            created_at: Set(now),
        }
        .insert(&txn)
        .await?;
        state.mail.enqueue(&txn, mail::password_reset_email(&state.mail, &user.email, &user.username, &token)).await?;
        Event::new("auth.password_reset_requested", Some(ip)).actor(&user).record(&txn).await?;
    }
    txn.commit().await?;
    state.mail.wake();
    Ok(())
}

/// Sets a new password with an emailed reset token: single use, 1 hour. Every session ends
/// (the caller starts a new one for the browser that asked), and every other reset link of the
/// account stops working.
pub async fn reset_password(state: &AppState, token: &str, new: &str, ip: IpAddr) -> Result<users::Model> {
    let token = token.trim();
    let mut errors = FieldErrors::new();
    if token.is_empty() {
        errors.add("token", Invalid::new("required", "The reset token is missing."));
    }
    let new_password = errors.check("new_password", NewPassword::parse(new));
    errors.finish()?;
    let Some(new_password) = new_password else {
        return Err(AppError::Internal(anyhow::anyhow!("validated password missing")));
    };
    rate_limit(state, &format!("reset:ip:{ip}"), state.config.rate_limits.reset_per_ip).await?;
    let now = Utc::now();
    let record = password_reset_tokens::Entity::find()
        .filter(password_reset_tokens::Column::TokenHash.eq(tokens::hash(token)))
        .one(&state.db)
        .await?
        .ok_or_else(|| {
            AppError::bad_request("reset_token_invalid", "This reset link is not valid. Ask for a new one.")
        })?;
    let used = || {
        AppError::bad_request("reset_token_used", "This reset link was already used. Sign in, or ask for a new link.")
    };
    if record.used_at.is_some() {
        return Err(used());
    }
    if record.expires_at <= now {
        return Err(AppError::bad_request("reset_token_expired", "This reset link has expired. Ask for a new one."));
    }
    let hash = state.passwords.hash(new_password.expose()).await?;

    let txn = begin_write(&state.db).await?;
    let spent = password_reset_tokens::Entity::update_many()
        .col_expr(password_reset_tokens::Column::UsedAt, Expr::value(now))
        .filter(password_reset_tokens::Column::UserId.eq(record.user_id))
        .filter(password_reset_tokens::Column::UsedAt.is_null())
        .exec(&txn)
        .await?;
    // Another request spent this token (or a newer one, which retires it) meanwhile.
    if spent.rows_affected == 0 {
        return Err(used());
    }
    let user = users::Entity::find_by_id(record.user_id)
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("reset token without a user")))?;
    let mut active = user.clone().into_active_model();
    active.password_hash = Set(Some(hash));
    active.session_version = Set(user.session_version + 1);
    active.updated_at = Set(now);
    let updated = active.update(&txn).await?;
    sessions::revoke_all(&txn, user.id).await?;
    Event::new("account.password_reset", Some(ip)).actor(&updated).record(&txn).await?;
    txn.commit().await?;
    state.account_changed(user.id);
    Ok(updated)
}

/// Sends a new verification link if `email` belongs to an unverified account. Answers the same
/// either way, so it cannot be used to find out which addresses have accounts.
pub async fn resend_verification(state: &AppState, email: &str, ip: IpAddr) -> Result<()> {
    let mut errors = FieldErrors::new();
    let email = errors.check("email", Email::parse(email));
    errors.finish()?;
    let Some(email) = email else { return Ok(()) };
    let limits = &state.config.rate_limits;
    rate_limit(state, &format!("resend:ip:{ip}"), limits.resend_per_ip).await?;
    rate_limit(state, &format!("resend:account:{}", email.normalized()), limits.resend_per_account).await?;

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
///
/// Limits: per address, per account and address (strict), and per account from anywhere,
/// which a browser that signed in to the account before (`known_device`) is exempt from.
pub async fn sign_in(
    state: &AppState,
    email: &str,
    password: &str,
    ip: IpAddr,
    known_device: impl Fn(&users::Model) -> bool,
) -> Result<users::Model> {
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
    let account = email.normalized();
    rate_limit(state, &format!("login:ip:{ip}"), limits.login_per_ip).await?;
    rate_limit(state, &format!("login:account-ip:{account}:{ip}"), limits.login_per_account_ip).await?;
    let user = find_by_email(&state.db, &email).await?;
    if !user.as_ref().is_some_and(&known_device) {
        rate_limit(state, &format!("login:account:{account}"), limits.login_per_account).await?;
    }

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
        return Err(username_taken());
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
    state.account_changed(user.id);
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
        rate_limit(state, &format!("password:account:{}", user.id), state.config.rate_limits.login_per_account).await?;
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
    sessions::revoke_all(&txn, user.id).await?;
    Event::new("account.password_changed", Some(ip)).actor(&updated).record(&txn).await?;
    txn.commit().await?;
    state.account_changed(user.id);
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
    sessions::revoke_all(&txn, user.id).await?;
    Event::new("auth.sessions_revoked", Some(ip)).actor(user).record(&txn).await?;
    txn.commit().await?;
    state.account_changed(user.id);
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
    // Its open streams end.
    state.account_changed(user.id);
    Ok(())
}

/// An account at an outside identity provider, as its verified id_token describes it.
pub struct ExternalIdentity {
    /// `google`.
    pub provider: &'static str,
    pub issuer: String,
    pub subject: String,
    /// An address the provider has verified.
    pub email: Email,
}

async fn insert_identity(conn: &impl ConnectionTrait, user_id: Uuid, identity: &ExternalIdentity) -> Result<(), DbErr> {
    let now = Utc::now();
    user_identities::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(user_id),
        provider: Set(identity.provider.to_owned()),
        issuer: Set(identity.issuer.clone()),
        subject: Set(identity.subject.clone()),
        email: Set(identity.email.as_str().to_owned()),
        created_at: Set(now),
        last_used_at: Set(Some(now)),
    }
    .insert(conn)
    .await?;
    Ok(())
}

async fn find_identity(
    conn: &impl ConnectionTrait,
    identity: &ExternalIdentity,
) -> Result<Option<user_identities::Model>, DbErr> {
    user_identities::Entity::find()
        .filter(user_identities::Column::Issuer.eq(&identity.issuer))
        .filter(user_identities::Column::Subject.eq(&identity.subject))
        .one(conn)
        .await
}

async fn identity_of(
    conn: &impl ConnectionTrait,
    user_id: Uuid,
    provider: &str,
) -> Result<Option<user_identities::Model>, DbErr> {
    user_identities::Entity::find()
        .filter(user_identities::Column::UserId.eq(user_id))
        .filter(user_identities::Column::Provider.eq(provider))
        .one(conn)
        .await
}

/// Signs in with an outside identity: a known identity signs its account in; a new one whose
/// (provider-verified) email belongs to a verified account is linked to that account; otherwise
/// a new account is made, unless sign-up is closed.
pub async fn sign_in_with_identity(state: &AppState, identity: ExternalIdentity, ip: IpAddr) -> Result<users::Model> {
    let method = json!({ "method": identity.provider });
    if let Some(known) = find_identity(&state.db, &identity).await? {
        let txn = begin_write(&state.db).await?;
        let mut active = known.clone().into_active_model();
        active.last_used_at = Set(Some(Utc::now()));
        active.email = Set(identity.email.as_str().to_owned());
        active.update(&txn).await?;
        let user = users::Entity::find_by_id(known.user_id)
            .one(&txn)
            .await?
            .ok_or_else(|| AppError::Internal(anyhow::anyhow!("identity {} without a user", known.id)))?;
        Event::new("auth.login", Some(ip)).actor(&user).details(method).record(&txn).await?;
        txn.commit().await?;
        return Ok(user);
    }

    // An unverified account with this address is not linked (that would hand the account to
    // whoever signed up with the address and chose its password): it is replaced by a new one,
    // since Google proved whose address it is.
    let verified = find_by_email(&state.db, &identity.email).await?.filter(|u| u.email_verified_at.is_some());
    if let Some(user) = verified {
        if identity_of(&state.db, user.id, identity.provider).await?.is_some() {
            return Err(AppError::conflict(
                "google_account_mismatch",
                "The account with this email is linked to a different Google account. Sign in with that one, or \
                 with your password.",
            ));
        }
        let txn = begin_write(&state.db).await?;
        insert_identity(&txn, user.id, &identity).await?;
        Event::new("account.identity_linked", Some(ip))
            .actor(&user)
            .target(identity.email.as_str().to_owned())
            .details(json!({ "provider": identity.provider, "subject": identity.subject, "by": "verified email" }))
            .record(&txn)
            .await?;
        Event::new("auth.login", Some(ip)).actor(&user).details(method).record(&txn).await?;
        txn.commit().await?;
        tracing::info!(user = %user.id, provider = identity.provider, "identity linked by verified email");
        return Ok(user);
    }

    if !state.config.signup_open() {
        return Err(AppError::forbidden(
            "signup_closed",
            "Sign-up is closed on this server. Ask an administrator to create your account.",
        ));
    }
    rate_limit(state, &format!("signup:ip:{ip}"), state.config.rate_limits.signup_per_ip).await?;
    let username = free_username(&state.db, &identity.email).await?;
    let account = NewAccount { email: identity.email.clone(), username, password: None, verified: true };
    create_account_with_identity(state, account, Some(ip), Some(&identity)).await
}

/// Links an outside identity to a signed-in user's account (from the settings page).
pub async fn link_identity(
    state: &AppState,
    user: &users::Model,
    identity: ExternalIdentity,
    ip: IpAddr,
) -> Result<()> {
    if let Some(known) = find_identity(&state.db, &identity).await? {
        if known.user_id == user.id {
            return Ok(());
        }
        return Err(AppError::conflict(
            "google_account_in_use",
            "This Google account is already linked to another Fleetplane account.",
        ));
    }
    if identity_of(&state.db, user.id, identity.provider).await?.is_some() {
        return Err(AppError::conflict(
            "google_already_linked",
            "Your account is already linked to a Google account. Unlink that one first.",
        ));
    }
    let txn = begin_write(&state.db).await?;
    insert_identity(&txn, user.id, &identity).await?;
    Event::new("account.identity_linked", Some(ip))
        .actor(user)
        .target(identity.email.as_str().to_owned())
        .details(json!({ "provider": identity.provider, "subject": identity.subject, "by": "signed-in user" }))
        .record(&txn)
        .await?;
    txn.commit().await?;
    Ok(())
}

/// The outside identities linked to an account.
pub async fn list_identities(state: &AppState, user_id: Uuid) -> Result<Vec<user_identities::Model>> {
    Ok(user_identities::Entity::find()
        .filter(user_identities::Column::UserId.eq(user_id))
        .order_by_asc(user_identities::Column::Id)
        .all(&state.db)
        .await?)
}

/// Unlinks the account's identity at `provider`. An account must keep a way to sign in, so
/// this needs a password.
pub async fn unlink_identity(state: &AppState, user: &users::Model, provider: &str, ip: IpAddr) -> Result<()> {
    let identity = identity_of(&state.db, user.id, provider)
        .await?
        .ok_or_else(|| AppError::not_found("identity_not_found", format!("No `{provider}` account is linked.")))?;
    if user.password_hash.is_none() {
        return Err(AppError::conflict(
            "password_required",
            "Set a password first: without it or Google, you could not sign in any more.",
        ));
    }
    let txn = begin_write(&state.db).await?;
    user_identities::Entity::delete_by_id(identity.id).exec(&txn).await?;
    Event::new("account.identity_unlinked", Some(ip))
        .actor(user)
        .target(identity.email.clone())
        .details(json!({ "provider": identity.provider, "subject": identity.subject }))
        .record(&txn)
        .await?;
    txn.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_from_emails_are_valid_handles() {
        let cases = [
            ("Ada.Lovelace+x@example.com", "ada-lovelace-x"),
            ("bob@example.com", "bob"),
            ("jo@example.com", "jo-user"),
            ("42@example.com", "user"),
            ("_x__y@example.com", "x__y"),
            ("a-very-long-local-part-that-goes-on-and-on@example.com", "a-very-long-local-part-that-go"),
            ("élodie@example.com", "lodie"),
        ];
        for (email, expected) in cases {
            let email = Email::parse(email).expect("valid email");
            assert_eq!(username_from_email(&email).as_str(), expected, "{}", email.as_str());
        }
    }

    #[test]
    fn numbered_names_fit_a_handle() {
        let base = "a".repeat(Handle::MAX);
        let names: Vec<String> = (1..=12).map(|n| numbered(&base, n)).collect();
        assert_eq!(names[0], base);
        assert!(names[11].ends_with("-12"));
        assert!(names.iter().all(|name| Handle::parse(name).is_ok()));
        assert!(Handle::parse(&random_suffixed(&base)).is_ok());
    }
}
