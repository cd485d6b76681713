//! Stored sessions: every sign-in is a row, named by the `sid` in its cookie's JWT.
//!
//! A session is valid while its row is neither revoked nor expired, and while the user's
//! session version is the one in the JWT. Sign-out revokes its own row; "sign out everywhere"
//! and a password change revoke them all. Checking a session reads it from a small cache
//! ([`SessionCache`]); every revocation drops it from this process's cache at once and, through
//! the bus ([`crate::bus::Signal::Account`]), from every other replica's, whose open streams of
//! the session end too.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    sync::RwLock,
    time::{Duration, Instant},
};

use axum::http::{HeaderMap, header};
use chrono::{DateTime, Utc};
use prometheus_client::{metrics::counter::Counter, registry::Registry};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    sea_query::{Expr, ExprTrait},
};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    audit::Event,
    auth::session::{Claims, IssuedSession},
    bus::Signal,
    db::begin_write,
    entity::{api_tokens, sessions, users},
    error::{AppError, Result},
    live::Credential,
    state::AppState,
};

/// `User-Agent` is kept to this many characters: enough to name a browser.
const USER_AGENT_MAX: usize = 200;
/// `last_seen_at` is written only when it is this stale, so a busy page does not write per request.
const LAST_SEEN_GRANULARITY: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

/// Where a sign-in comes from, as the sessions list shows it.
#[derive(Clone, Debug)]
pub struct Client {
    pub ip: IpAddr,
    pub user_agent: String,
}

impl Client {
    pub fn new(ip: IpAddr, headers: &HeaderMap) -> Self {
        let user_agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("").trim();
        Self { ip, user_agent: user_agent.chars().take(USER_AGENT_MAX).collect() }
    }
}

/// Starts a session for `user` (a sign-in): stores it, and returns the token for its cookie.
pub async fn start(state: &AppState, user: &users::Model, client: &Client) -> Result<IssuedSession> {
    let now = Utc::now();
    let ttl = chrono::Duration::from_std(state.sessions.ttl()).map_err(anyhow::Error::from)?;
    let session = sessions::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(user.id),
        user_agent: Set(client.user_agent.clone()),
        ip: Set(client.ip.to_string()),
        created_at: Set(now),
        last_seen_at: Set(now),
        expires_at: Set(now + ttl),
        revoked_at: Set(None),
    }
    .insert(&state.db)
    .await?;
    Ok(state.sessions.issue(user, session.id, session.expires_at.timestamp())?)
}

/// A new token for the session `claims` belong to, carrying `user` as it is now (after a change
/// of username or password); the session and its expiry stay.
pub fn reissue(state: &AppState, user: &users::Model, claims: &Claims) -> Result<IssuedSession> {
    Ok(state.sessions.issue(user, claims.sid, claims.exp)?)
}

/// Whether the session behind `claims` may still be used; notes that it was.
pub async fn check(state: &AppState, claims: &Claims) -> Result<()> {
    let revoked = || AppError::unauthorized("session_revoked", "This session was signed out. Sign in again.");
    if let Some(last_seen) = state.session_cache.get(claims.sid) {
        return seen(state, claims.sid, last_seen).await;
    }
    let epoch = state.session_cache.epoch();
    let session = sessions::Entity::find_by_id(claims.sid).one(&state.db).await?.ok_or_else(revoked)?;
    let now = Utc::now();
    if session.user_id != claims.sub || session.revoked_at.is_some() {
        return Err(revoked());
    }
    if session.expires_at <= now {
        return Err(AppError::unauthorized("session_expired", "Your session has expired. Sign in again."));
    }
    state.session_cache.insert(epoch, &session);
    seen(state, session.id, session.last_seen_at).await
}

/// Writes `last_seen_at` when it is stale.
async fn seen(state: &AppState, sid: Uuid, last_seen: DateTime<Utc>) -> Result<()> {
    let now = Utc::now();
    if now - last_seen < LAST_SEEN_GRANULARITY {
        return Ok(());
    }
    sessions::Entity::update_many()
        .col_expr(sessions::Column::LastSeenAt, Expr::value(now))
        .filter(sessions::Column::Id.eq(sid))
        .exec(&state.db)
        .await?;
    state.session_cache.seen(sid, now);
    Ok(())
}

/// The user's sessions that are still valid, most recently used first.
pub async fn list(state: &AppState, user_id: Uuid) -> Result<Vec<sessions::Model>> {
    Ok(sessions::Entity::find()
        .filter(sessions::Column::UserId.eq(user_id))
        .filter(sessions::Column::RevokedAt.is_null())
        .filter(sessions::Column::ExpiresAt.gt(Utc::now()))
        .order_by_desc(sessions::Column::LastSeenAt)
        .order_by_desc(sessions::Column::Id)
        .all(&state.db)
        .await?)
}

/// Ends one of the user's sessions, audited as `action`: a sign-out (`auth.logout`), or a
/// revoke from the sessions list (`auth.session_revoked`).
pub async fn revoke(state: &AppState, user: &users::Model, sid: Uuid, ip: IpAddr, action: &'static str) -> Result<()> {
    let txn = begin_write(&state.db).await?;
    let ended = sessions::Entity::update_many()
        .col_expr(sessions::Column::RevokedAt, Expr::value(Some(Utc::now())))
        .filter(sessions::Column::Id.eq(sid))
        .filter(sessions::Column::UserId.eq(user.id))
        .filter(sessions::Column::RevokedAt.is_null())
        .exec(&txn)
        .await?;
    if ended.rows_affected == 0 {
        return Err(AppError::not_found("session_not_found", "No active session with this id."));
    }
    Event::new(action, Some(ip)).actor(user).target(sid.to_string()).record(&txn).await?;
    txn.commit().await?;
    state.account_changed(user.id);
    Ok(())
}

/// Revokes every session of `user_id`, in the caller's transaction; the caller announces the
/// change ([`crate::state::App::account_changed`]) once it has committed.
pub async fn revoke_all(conn: &impl ConnectionTrait, user_id: Uuid) -> Result<(), DbErr> {
    sessions::Entity::update_many()
        .col_expr(sessions::Column::RevokedAt, Expr::value(Some(Utc::now())))
        .filter(sessions::Column::UserId.eq(user_id))
        .filter(sessions::Column::RevokedAt.is_null())
        .exec(conn)
        .await
        .map(drop)
}

/// Which of `credentials` still work: sessions neither revoked nor expired, API tokens
/// neither revoked nor expired. For streams, which outlive the request that checked them.
pub async fn still_working(state: &AppState, credentials: &HashSet<Credential>) -> Result<HashSet<Credential>, DbErr> {
    const CHUNK: usize = 500;
    let now = Utc::now();
    let (mut sessions, mut tokens) = (Vec::new(), Vec::new());
    for credential in credentials {
        match credential {
            Credential::Session(id) => sessions.push(*id),
            Credential::Token(id) => tokens.push(*id),
        }
    }
    let mut working = HashSet::new();
    for chunk in sessions.chunks(CHUNK) {
        let found: Vec<Uuid> = sessions::Entity::find()
            .select_only()
            .column(sessions::Column::Id)
            .filter(sessions::Column::Id.is_in(chunk.iter().copied()))
            .filter(sessions::Column::RevokedAt.is_null())
            .filter(sessions::Column::ExpiresAt.gt(now))
            .into_tuple()
            .all(&state.db)
            .await?;
        working.extend(found.into_iter().map(Credential::Session));
    }
    for chunk in tokens.chunks(CHUNK) {
        let found: Vec<Uuid> = api_tokens::Entity::find()
            .select_only()
            .column(api_tokens::Column::Id)
            .filter(api_tokens::Column::Id.is_in(chunk.iter().copied()))
            .filter(api_tokens::Column::RevokedAt.is_null())
            .filter(api_tokens::Column::ExpiresAt.is_null().or(api_tokens::Column::ExpiresAt.gt(now)))
            .into_tuple()
            .all(&state.db)
            .await?;
        working.extend(found.into_iter().map(Credential::Token));
    }
    Ok(working)
}

/// Ends the open streams (of `user`, or everyone's) whose credential stopped working.
async fn end_revoked_streams(state: &AppState, user: Option<Uuid>) {
    let open = state.live.credentials(user);
    if open.is_empty() {
        return;
    }
    match still_working(state, &open).await {
        Ok(working) => state.live.end_streams(&open.difference(&working).copied().collect()),
        Err(e) => tracing::warn!(error = %e, "cannot tell whether open streams' sessions and tokens still work"),
    }
}

/// How long a cached session is trusted without reading it again: revocations reach the cache
/// at once through the bus; this bounds the time a lost signal (Redis restarting) can matter.
const CACHE_TTL: Duration = Duration::from_secs(5);
const CACHE_MAX: usize = 100_000;

/// Valid sessions by id, as recently read.
#[derive(Default)]
pub struct SessionCache {
    entries: RwLock<HashMap<Uuid, Cached>>,
    /// Bumped by every invalidation; a load that started before one is not cached.
    epoch: std::sync::atomic::AtomicU64,
    /// Account changes heard on the bus and acted on.
    changes_heard: Counter,
}

struct Cached {
    user_id: Uuid,
    last_seen: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    loaded: Instant,
}

impl SessionCache {
    /// The session's last use, when it is cached and still valid.
    fn get(&self, sid: Uuid) -> Option<DateTime<Utc>> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        let cached = entries.get(&sid)?;
        (cached.loaded.elapsed() < CACHE_TTL && cached.expires_at > Utc::now()).then_some(cached.last_seen)
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(std::sync::atomic::Ordering::Acquire)
    }

    fn insert(&self, epoch: u64, session: &sessions::Model) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if self.epoch() != epoch {
            return;
        }
        if entries.len() >= CACHE_MAX {
            entries.clear();
        }
        let cached = Cached {
            user_id: session.user_id,
            last_seen: session.last_seen_at,
            expires_at: session.expires_at,
            loaded: Instant::now(),
        };
        entries.insert(session.id, cached);
    }

    fn seen(&self, sid: Uuid, at: DateTime<Utc>) {
        if let Some(cached) = self.entries.write().unwrap_or_else(|p| p.into_inner()).get_mut(&sid) {
            cached.last_seen = at;
        }
    }

    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "account_changes_heard",
            "Changes to accounts, sessions or API tokens heard on the bus (this replica's and the others') \
             and acted on: cached copies dropped, streams of revoked sessions and tokens ended",
            self.changes_heard.clone(),
        );
    }

    /// Forgets every session.
    pub fn clear(&self) {
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.entries.write().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Forgets the sessions of `user_id`: one of them (or all) changed.
    pub fn invalidate_user(&self, user_id: Uuid) {
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.entries.write().unwrap_or_else(|p| p.into_inner()).retain(|_, cached| cached.user_id != user_id);
    }
}

/// Open streams are checked this often even when the bus says nothing, in case it lost a
/// revocation (Redis restarting).
const RECHECK_EVERY: Duration = Duration::from_secs(60);

/// Hears account changes on the bus (this replica's own and, with Redis, the others') until
/// `stop`: forgets the cached copies, and ends the user's streams whose session or token no
/// longer works. Having missed some (the bus fell behind), and every minute regardless, it
/// checks every open stream (and, having missed some, forgets everything cached).
pub async fn follow_changes(state: AppState, mut signals: broadcast::Receiver<Signal>, stop: CancellationToken) {
    let mut recheck = tokio::time::interval(RECHECK_EVERY);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let signal = tokio::select! {
            signal = signals.recv() => signal,
            _ = recheck.tick() => {
                end_revoked_streams(&state, None).await;
                continue;
            }
            () = stop.cancelled() => return,
        };
        match signal {
            Ok(Signal::Account(user)) => {
                state.forget_account(user);
                end_revoked_streams(&state, Some(user)).await;
                state.session_cache.changes_heard.inc();
            }
            Ok(_) => {}
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "fell behind on the bus; forgetting every cached session, checking every stream"
                );
                state.users.clear();
                state.session_cache.clear();
                end_revoked_streams(&state, None).await;
            }
            Err(RecvError::Closed) => return,
        }
    }
}
