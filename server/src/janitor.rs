//! The retention janitor: deletes, on a schedule (`[retention]`), what the control plane no
//! longer needs, so that the tables that grow with use stay bounded.
//!
//! A pass deletes:
//! - delivered mail (`sent`, or `logged` when no SMTP server is configured) delivered more than
//!   `outbox_days` ago. Mail still waiting stays, and so does mail that `failed` for good: it is
//!   what an operator looks at to find out why.
//! - email verification and password reset tokens that were used or have expired (the link then
//!   answers "not valid" rather than "already used").
//! - accounts that never verified their address: 24 hours after sign-up, once no verification
//!   link of theirs still works, with their personal organizations.
//! - invitations that were accepted, revoked or have expired (declined ones stay until they
//!   expire, so that the organization cannot tell). OAuth `state`, nonce and PKCE verifier of a Google
//!   sign-in live in a signed cookie, never in the database: there is nothing of theirs to delete.
//! - events older than `events_days`, except the newest `live.backlog`: a stream following the
//!   fan-out is at most that far behind the newest event (further, and it is told to resync), so
//!   a stream that keeps up loses nothing. A client that comes back with a `Last-Event-ID` that
//!   was deleted meanwhile, or that is still catching up through events that old, goes on from
//!   the next event still stored (streams read `id > last`, which needs no row at `last`); what
//!   was deleted in between it does not get.
//! - Terraform state versions beyond the newest `state_versions_keep` of each cluster. The
//!   current state is the newest version, so it is always among those kept.
//! - the logs of runs that finished more than `run_logs_days` ago, whole (a log is never cut
//!   short), except the log of each cluster's latest run.
//!
//! Every worker process runs one janitor (the worker pool starts it), so several may work on the
//! same database at once. That is safe: each statement deletes rows that are due whoever deletes
//! them, so a row deleted twice is simply not found the second time; and each deletes at most
//! [`BATCH`] rows in a transaction of its own, so a big backlog never holds a long transaction.
//! On PostgreSQL a statement picks its rows `FOR UPDATE SKIP LOCKED`: two janitors split the
//! rows between them instead of one waiting for the other's. The same query builder code runs on
//! SQLite, which has one writer at a time and no row locks (the builder leaves the clause out).

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use prometheus_client::{
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, DbErr, DeleteMany, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    QueryTrait,
    sea_query::{Alias, Expr, ExprTrait, LockBehavior, LockType, Query},
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    accounts,
    db::begin_write,
    entity::{
        email_verification_tokens, events, invitations, outbound_emails, password_reset_tokens, run_logs, runs,
        state_versions, users,
    },
    mail, orgs,
    state::AppState,
};

/// Most rows one statement deletes.
pub const BATCH: u64 = 1000;
/// Runs whose logs are looked at per query.
const RUNS_PAGE: u64 = 200;
/// A pause after a full batch: on SQLite, other writers waiting for the database get their turn
/// between two batches of a big backlog instead of timing out behind it.
const BREATHER: Duration = Duration::from_millis(100);

/// Rows one pass deleted, by what they were.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Deleted {
    pub outbox: u64,
    pub verification_tokens: u64,
    pub reset_tokens: u64,
    pub unverified_accounts: u64,
    pub invitations: u64,
    pub events: u64,
    pub state_versions: u64,
    pub run_logs: u64,
}

impl Deleted {
    pub fn total(&self) -> u64 {
        self.outbox
            + self.verification_tokens
            + self.reset_tokens
            + self.unverified_accounts
            + self.invitations
            + self.events
            + self.state_versions
            + self.run_logs
    }
}

/// What the janitors of this process deleted, for `/metrics`: `fleetplane_janitor_deleted_total`
/// by `what` (outbox, verification_tokens, reset_tokens, unverified_accounts, invitations,
/// events, state_versions, run_logs).
#[derive(Default)]
pub struct Tally(Family<[(&'static str, &'static str); 1], Counter>);

impl Tally {
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "janitor_deleted",
            "Rows the retention janitor deleted, by what: outbox (delivered mail), verification_tokens, \
             reset_tokens, unverified_accounts, invitations, events, state_versions, run_logs",
            self.0.clone(),
        );
    }

    fn add(&self, what: &'static str, rows: u64) {
        self.0.get_or_create(&[("what", what)]).inc_by(rows);
    }
}

/// A pass now, then one every `retention.interval_secs`, until `shutdown`.
pub async fn run(state: AppState, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(state.config.retention.interval());
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = shutdown.cancelled() => return,
        }
        // Stopping in the middle of a pass is fine: what was deleted is committed, the rest is
        // deleted by the next pass.
        tokio::select! {
            result = run_once(&state) => if let Err(e) = result {
                tracing::warn!(error = %e, "a retention pass failed; the next one carries on");
            },
            () = shutdown.cancelled() => return,
        }
    }
}

/// One pass: deletes everything that is due, in batches, and counts it.
pub async fn run_once(state: &AppState) -> Result<Deleted, DbErr> {
    let settings = &state.config.retention;
    let now = Utc::now();
    let backlog = u64::try_from(state.config.live.backlog).unwrap_or(u64::MAX);
    let pass = Pass { db: &state.db, tally: &state.janitor };
    let deleted = Deleted {
        outbox: delivered_mail(&pass, days_before(now, settings.outbox_days)).await?,
        verification_tokens: {
            use email_verification_tokens::{Column, Entity};
            spent_tokens::<Entity>(&pass, "verification_tokens", [Column::Id, Column::UsedAt, Column::ExpiresAt], now)
                .await?
        },
        reset_tokens: {
            use password_reset_tokens::{Column, Entity};
            spent_tokens::<Entity>(&pass, "reset_tokens", [Column::Id, Column::UsedAt, Column::ExpiresAt], now).await?
        },
        unverified_accounts: expired_unverified_accounts(&pass, now).await?,
        invitations: closed_invitations(&pass, now).await?,
        events: old_events(&pass, days_before(now, settings.events_days), backlog).await?,
        state_versions: old_state_versions(&pass, settings.state_versions_keep).await?,
        run_logs: old_run_logs(&pass, days_before(now, settings.run_logs_days)).await?,
    };
    if deleted.total() > 0 {
        tracing::info!(
            outbox = deleted.outbox,
            verification_tokens = deleted.verification_tokens,
            reset_tokens = deleted.reset_tokens,
            unverified_accounts = deleted.unverified_accounts,
            invitations = deleted.invitations,
            events = deleted.events,
            state_versions = deleted.state_versions,
            run_logs = deleted.run_logs,
            "the retention janitor deleted rows past their retention"
        );
    }
    Ok(deleted)
}

fn days_before(now: DateTime<Utc>, days: u64) -> DateTime<Utc> {
    i64::try_from(days)
        .ok()
        .and_then(TimeDelta::try_days)
        .and_then(|age| now.checked_sub_signed(age))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// A pass's way to the database, counting what it deletes as it goes.
struct Pass<'a> {
    db: &'a DatabaseConnection,
    tally: &'a Tally,
}

impl Pass<'_> {
    /// Runs `delete`, one bounded statement, until it deletes nothing; each batch is counted
    /// under `what` once committed (also when a later one fails). Returns how many rows went.
    async fn in_batches<E: EntityTrait>(&self, what: &'static str, delete: DeleteMany<E>) -> Result<u64, DbErr> {
        let mut total = 0;
        loop {
            let rows = delete.clone().exec(self.db).await?.rows_affected;
            if rows == 0 {
                return Ok(total);
            }
            self.tally.add(what, rows);
            total += rows;
            if rows >= BATCH {
                tokio::time::sleep(BREATHER).await;
            }
        }
    }
}

/// Mail delivered (or, with no SMTP server, logged) before `cutoff`.
async fn delivered_mail(pass: &Pass<'_>, cutoff: DateTime<Utc>) -> Result<u64, DbErr> {
    use outbound_emails::{Column, Entity};
    // Locks only rows that are deleted anyway; skipping locked rows leaves them to the janitor
    // that holds them (see the module's doc).
    let batch = Entity::find()
        .select_only()
        .column(Column::Id)
        .filter(Column::Status.is_in(mail::status::DELIVERED))
        .filter(Column::SentAt.lt(cutoff))
        .limit(BATCH)
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .into_query();
    pass.in_batches("outbox", Entity::delete_many().filter(Column::Id.in_subquery(batch))).await
}

/// Emailed tokens (verification, password reset) that can no longer do anything: used, or
/// expired. `[id, used_at, expires_at]` are the table's columns.
async fn spent_tokens<E: EntityTrait>(
    pass: &Pass<'_>,
    what: &'static str,
    [id, used_at, expires_at]: [E::Column; 3],
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    // Locks only rows that are deleted anyway, as for mail.
    let batch = E::find()
        .select_only()
        .column(id)
        .filter(Condition::any().add(used_at.is_not_null()).add(expires_at.lte(now)))
        .limit(BATCH)
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .into_query();
    pass.in_batches(what, E::delete_many().filter(id.in_subquery(batch))).await
}

/// Invitations no longer open: answered, revoked, or expired. Their history is in the audit log.
async fn closed_invitations(pass: &Pass<'_>, now: DateTime<Utc>) -> Result<u64, DbErr> {
    use invitations::{Column, Entity};
    let open = [orgs::invitation_status::PENDING, orgs::invitation_status::DECLINED];
    let batch = Entity::find()
        .select_only()
        .column(Column::Id)
        .filter(Condition::any().add(Column::Status.is_not_in(open)).add(Column::ExpiresAt.lte(now)))
        .limit(BATCH)
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .into_query();
    pass.in_batches("invitations", Entity::delete_many().filter(Column::Id.in_subquery(batch))).await
}

/// Accounts that never verified their address within [`accounts::VERIFICATION_TTL`] of signing up
/// and hold no verification link that still works, with their personal organizations: an
/// unverified account does not keep its address (or username) for long.
async fn expired_unverified_accounts(pass: &Pass<'_>, now: DateTime<Utc>) -> Result<u64, DbErr> {
    let mut total = 0;
    loop {
        let live_links = Query::select()
            .column(email_verification_tokens::Column::UserId)
            .from(email_verification_tokens::Entity)
            .and_where(email_verification_tokens::Column::UsedAt.is_null())
            .and_where(email_verification_tokens::Column::ExpiresAt.gt(now))
            .to_owned();
        let due: Vec<Uuid> = users::Entity::find()
            .select_only()
            .column(users::Column::Id)
            .filter(users::Column::EmailVerifiedAt.is_null())
            .filter(users::Column::CreatedAt.lte(now - accounts::VERIFICATION_TTL))
            .filter(users::Column::Id.not_in_subquery(live_links))
            .limit(BATCH)
            .into_tuple()
            .all(pass.db)
            .await?;
        if due.is_empty() {
            return Ok(total);
        }
        let txn = begin_write(pass.db).await?;
        let rows = accounts::delete_unverified(&txn, &due).await?;
        txn.commit().await?;
        pass.tally.add("unverified_accounts", rows);
        total += rows;
        if rows == 0 {
            // Verified meanwhile, all of them: the next pass looks again.
            return Ok(total);
        }
    }
}

/// Events created before `cutoff`, except the newest `backlog`.
///
/// `created_at` has no index, and ids grow with it: each statement takes the oldest ids below
/// the newest `backlog` (the primary key's order) and deletes those of them created before
/// `cutoff`, until a statement deletes none, that is, until the oldest left are recent. So no
/// statement scans the recent events. An event whose clock ran ahead (replicas' clocks differ a
/// little) is kept until it is old itself; the old ones after it still go, unless a whole batch
/// of such events comes first.
async fn old_events(pass: &Pass<'_>, cutoff: DateTime<Utc>, backlog: u64) -> Result<u64, DbErr> {
    use events::{Column, Entity};
    let newest_kept = Entity::find()
        .select_only()
        .column(Column::Id)
        .order_by_desc(Column::Id)
        .offset(backlog.saturating_sub(1))
        .limit(1)
        .into_tuple::<i64>()
        .one(pass.db)
        .await?;
    let Some(floor) = newest_kept else { return Ok(0) };
    // Locks the oldest events for the statement: nothing else writes them, and a second janitor
    // moves on to the next ones.
    let batch = Entity::find()
        .select_only()
        .column(Column::Id)
        .filter(Column::Id.lt(floor))
        .order_by_asc(Column::Id)
        .limit(BATCH)
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .into_query();
    let delete = Entity::delete_many().filter(Column::Id.in_subquery(batch)).filter(Column::CreatedAt.lt(cutoff));
    pass.in_batches("events", delete).await
}

/// State versions beyond each cluster's newest `keep` (ids are UUIDv7: newest is greatest, and
/// the newest is the current state).
async fn old_state_versions(pass: &Pass<'_>, keep: u64) -> Result<u64, DbErr> {
    use state_versions::{Column, Entity};
    let crowded: Vec<Uuid> = Entity::find()
        .select_only()
        .column(Column::ClusterId)
        .group_by(Column::ClusterId)
        .having(Column::Id.count().gt(keep))
        .into_tuple()
        .all(pass.db)
        .await?;
    let mut deleted = 0;
    for cluster in crowded {
        let oldest_kept = Entity::find()
            .select_only()
            .column(Column::Id)
            .filter(Column::ClusterId.eq(cluster))
            .order_by_desc(Column::Id)
            .offset(keep.saturating_sub(1))
            .limit(1)
            .into_tuple::<Uuid>()
            .one(pass.db)
            .await?;
        let Some(oldest_kept) = oldest_kept else { continue };
        // A version written meanwhile is newer than `oldest_kept`: it only makes this pass keep
        // one more. The rows locked are deleted anyway, as for mail.
        let batch = Entity::find()
            .select_only()
            .column(Column::Id)
            .filter(Column::ClusterId.eq(cluster))
            .filter(Column::Id.lt(oldest_kept))
            .order_by_asc(Column::Id)
            .limit(BATCH)
            .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
            .into_query();
        deleted +=
            pass.in_batches("state_versions", Entity::delete_many().filter(Column::Id.in_subquery(batch))).await?;
    }
    Ok(deleted)
}

/// The logs of runs that finished before `cutoff`, except each cluster's latest run's.
///
/// By run rather than by line: every line of a run is older than its end, `at` has no index
/// while `run_id` leads the primary key, and half a log would be worse than either.
async fn old_run_logs(pass: &Pass<'_>, cutoff: DateTime<Utc>) -> Result<u64, DbErr> {
    let mut deleted = 0;
    let mut after: Option<Uuid> = None;
    loop {
        let mut page = runs::Entity::find()
            .select_only()
            .column(runs::Column::Id)
            .filter(runs::Column::FinishedAt.lt(cutoff))
            .filter(superseded())
            .filter(has_logs())
            .order_by_asc(runs::Column::Id)
            .limit(RUNS_PAGE);
        if let Some(after) = after {
            page = page.filter(runs::Column::Id.gt(after));
        }
        let page: Vec<Uuid> = page.into_tuple().all(pass.db).await?;
        for &run in &page {
            // The rows locked are deleted anyway, as for mail.
            let batch = run_logs::Entity::find()
                .select_only()
                .column(run_logs::Column::Seq)
                .filter(run_logs::Column::RunId.eq(run))
                .order_by_asc(run_logs::Column::Seq)
                .limit(BATCH)
                .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
                .into_query();
            let delete = run_logs::Entity::delete_many()
                .filter(run_logs::Column::RunId.eq(run))
                .filter(run_logs::Column::Seq.in_subquery(batch));
            deleted += pass.in_batches("run_logs", delete).await?;
        }
        if (page.len() as u64) < RUNS_PAGE {
            return Ok(deleted);
        }
        after = page.last().copied();
    }
}

/// Holds for runs that a later run of the same cluster follows: not the cluster's latest (ids
/// are UUIDv7, in the order runs were queued). One correlated `EXISTS` on the `(cluster_id, id)`
/// index.
fn superseded() -> Condition {
    let later = Alias::new("later");
    let follower = Query::select()
        .expr(Expr::val(1))
        .from_as(runs::Entity, later.clone())
        .and_where(Expr::col((later.clone(), runs::Column::ClusterId)).equals((runs::Entity, runs::Column::ClusterId)))
        .and_where(Expr::col((later, runs::Column::Id)).gt(Expr::col((runs::Entity, runs::Column::Id))))
        .to_owned();
    Condition::all().add(Expr::exists(follower))
}

/// Holds for runs with at least one stored log line (a look at the primary key's first column).
fn has_logs() -> Condition {
    let line = Query::select()
        .expr(Expr::val(1))
        .from(run_logs::Entity)
        .and_where(Expr::col((run_logs::Entity, run_logs::Column::RunId)).equals((runs::Entity, runs::Column::Id)))
        .to_owned();
    Condition::all().add(Expr::exists(line))
}
