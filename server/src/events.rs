//! The event log: what the live streams show, stored first, in order.
//!
//! A change that users watch (a run's or a cluster's status, a notification) writes an event in
//! the same transaction as the change itself. Event ids are the SSE event ids, so a client that
//! reconnects with `Last-Event-ID` gets exactly what it missed from here. Ids must become
//! visible in order, or a reader could pass over one that commits late: SQLite has one writer
//! at a time anyway, and on PostgreSQL each writer of events takes a transaction-scoped
//! advisory lock first, so event-writing transactions commit one after another (they are
//! short, and a few per run).

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, Statement, sea_query::Condition,
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    domain::Role,
    entity::{clusters, events, memberships, runs},
    notifications::{self, NewNotification},
    runs::status as run_status,
};

/// The advisory lock key that orders event writers on PostgreSQL ("fpev").
const EVENT_LOCK: i64 = 0x6670_6576;

/// Who an event is for.
#[derive(Clone, Copy, Debug)]
pub enum Audience {
    /// Every member of the organization.
    Org(Uuid),
    /// One user.
    User(Uuid),
}

/// Appends an event, inside the caller's transaction. Publish [`crate::bus::Signal::Events`]
/// after committing.
pub async fn record(
    conn: &impl ConnectionTrait,
    audience: Audience,
    kind: &'static str,
    payload: Value,
) -> Result<i64, DbErr> {
    if conn.get_database_backend() == DbBackend::Postgres {
        let lock = Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock($1)",
            [EVENT_LOCK.into()],
        );
        conn.execute_raw(lock).await?;
    }
    let (org_id, user_id) = match audience {
        Audience::Org(org) => (Some(org), None),
        Audience::User(user) => (None, Some(user)),
    };
    let event = events::ActiveModel {
        org_id: Set(org_id),
        user_id: Set(user_id),
        kind: Set(kind.to_owned()),
        payload: Set(payload),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(conn)
    .await?;
    Ok(event.id)
}

/// Events after `after` that a member of `orgs` with id `user` may see, oldest first.
pub async fn visible_after(
    conn: &impl ConnectionTrait,
    user: Uuid,
    orgs: &[Uuid],
    after: i64,
    limit: u64,
) -> Result<Vec<events::Model>, DbErr> {
    let mut audience = Condition::any().add(events::Column::UserId.eq(user));
    if !orgs.is_empty() {
        audience = audience.add(events::Column::OrgId.is_in(orgs.iter().copied()));
    }
    events::Entity::find()
        .filter(events::Column::Id.gt(after))
        .filter(audience)
        .order_by_asc(events::Column::Id)
        .limit(limit)
        .all(conn)
        .await
}

/// The newest event id (0 when there is none).
pub async fn latest_id(conn: &impl ConnectionTrait) -> Result<i64, DbErr> {
    Ok(events::Entity::find()
        .select_only()
        .column_as(events::Column::Id.max(), "id")
        .into_tuple::<Option<i64>>()
        .one(conn)
        .await?
        .flatten()
        .unwrap_or(0))
}

/// Events after `after`, oldest first, for every audience (what a server fans out).
pub async fn after(conn: &impl ConnectionTrait, after: i64, limit: u64) -> Result<Vec<events::Model>, DbErr> {
    events::Entity::find()
        .filter(events::Column::Id.gt(after))
        .order_by_asc(events::Column::Id)
        .limit(limit)
        .all(conn)
        .await
}

/// A run's view in events: what a page showing it needs to update itself.
pub fn run_payload(run: &runs::Model) -> Value {
    json!({
        "id": run.id,
        "cluster_id": run.cluster_id,
        "action": run.action,
        "status": run.status,
        "reason": run.reason,
        "attempts": run.attempts,
        "updated_at": run.updated_at,
    })
}

/// Records that run `run_id` changed state, inside the caller's transaction: the run's event,
/// its cluster's new status (if it changed), and the notifications the new state raises.
pub async fn run_changed(conn: &impl ConnectionTrait, run_id: Uuid) -> Result<(), DbErr> {
    let Some(run) = runs::Entity::find_by_id(run_id).one(conn).await? else { return Ok(()) };
    record(conn, Audience::Org(run.org_id), "run", run_payload(&run)).await?;
    if crate::clusters::refresh_status(conn, run.cluster_id).await?
        && let Some(cluster) = clusters::Entity::find_by_id(run.cluster_id).one(conn).await?
    {
        cluster_changed(conn, &cluster).await?;
    }
    if let Some(deployment) = crate::deployments::refresh(conn, &run).await? {
        deployment_changed(conn, &deployment).await?;
    }
    notify_about_run(conn, &run).await
}

/// Records a deployment's current status.
pub async fn deployment_changed(
    conn: &impl ConnectionTrait,
    deployment: &crate::entity::deployments::Model,
) -> Result<(), DbErr> {
    let payload = json!({
        "id": deployment.id,
        "cluster_id": deployment.cluster_id,
        "service": deployment.service,
        "status": deployment.status,
        "reason": deployment.reason,
        "current_revision": deployment.current_revision,
    });
    record(conn, Audience::Org(deployment.org_id), "deployment", payload).await.map(drop)
}

/// Records a cluster's current status (a new cluster, or a changed one).
pub async fn cluster_changed(conn: &impl ConnectionTrait, cluster: &clusters::Model) -> Result<(), DbErr> {
    let payload = json!({ "id": cluster.id, "name": cluster.name, "status": cluster.status });
    record(conn, Audience::Org(cluster.org_id), "cluster", payload).await?;
    Ok(())
}

async fn notify_about_run(conn: &impl ConnectionTrait, run: &runs::Model) -> Result<(), DbErr> {
    let cluster = clusters::Entity::find_by_id(run.cluster_id).one(conn).await?;
    let cluster_name = cluster.as_ref().map_or("a cluster", |c| c.name.as_str());
    let link = Some(format!("/runs/{}", run.id));
    let reason = run.reason.clone().unwrap_or_default();
    let (kind, title, recipients) = match run.status.as_str() {
        run_status::SUCCEEDED => (
            "run_succeeded",
            format!("{} of {cluster_name} succeeded", action_name(&run.action)),
            run.requested_by.into_iter().collect(),
        ),
        run_status::FAILED => (
            "run_failed",
            format!("{} of {cluster_name} failed", action_name(&run.action)),
            run.requested_by.into_iter().collect(),
        ),
        run_status::AWAITING_APPROVAL => (
            "approval_needed",
            format!("{} of {cluster_name} needs approval", action_name(&run.action)),
            members_with_role(conn, run.org_id, Role::Admin).await?,
        ),
        _ => return Ok(()),
    };
    for user_id in recipients {
        let notification = NewNotification {
            user_id,
            org_id: Some(run.org_id),
            kind,
            title: title.clone(),
            body: reason.clone(),
            link: link.clone(),
        };
        notifications::create(conn, notification).await?;
    }
    Ok(())
}

fn action_name(action: &str) -> &'static str {
    match action {
        "plan" => "A plan",
        "destroy" => "Destroying",
        "deploy" => "A deployment",
        "upgrade" => "An upgrade",
        "rollback" => "A rollback",
        "uninstall" => "An uninstall",
        _ => "Provisioning",
    }
}

/// Members of `org` whose role is `least` or higher.
pub async fn members_with_role(conn: &impl ConnectionTrait, org: Uuid, least: Role) -> Result<Vec<Uuid>, DbErr> {
    let members = memberships::Entity::find().filter(memberships::Column::OrgId.eq(org)).all(conn).await?;
    Ok(members
        .into_iter()
        .filter(|m| Role::parse(&m.role).is_some_and(|role| role >= least))
        .map(|m| m.user_id)
        .collect())
}
