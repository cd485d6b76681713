//! The audit trail: who did what, when, from which address.
//!
//! Account events (sign-in, password change, tokens) have no organization and are shown only to
//! the account's owner, on their settings page. An organization's log shows only the events in
//! that organization: joining it never lets anyone read a member's own history.

use std::net::IpAddr;

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use uuid::Uuid;

use crate::entity::{audit_events, users};

/// One event to record; build with [`Event::new`] and the setters.
pub struct Event {
    action: &'static str,
    ip: Option<IpAddr>,
    org_id: Option<Uuid>,
    actor_id: Option<Uuid>,
    actor_name: Option<String>,
    target: Option<String>,
    details: Option<serde_json::Value>,
}

impl Event {
    pub fn new(action: &'static str, ip: Option<IpAddr>) -> Self {
        Self { action, ip, org_id: None, actor_id: None, actor_name: None, target: None, details: None }
    }

    pub fn actor(mut self, user: &users::Model) -> Self {
        self.actor_id = Some(user.id);
        self.actor_name = Some(user.username.clone());
        self
    }

    /// For events with no account behind them (a sign-in attempt for an unknown email).
    pub fn actor_name(mut self, name: impl Into<String>) -> Self {
        self.actor_name = Some(name.into());
        self
    }

    pub fn org(mut self, org_id: Uuid) -> Self {
        self.org_id = Some(org_id);
        self
    }

    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }

    /// Stores the event, inside the caller's transaction when given one.
    pub async fn record(self, conn: &impl ConnectionTrait) -> Result<(), DbErr> {
        audit_events::ActiveModel {
            id: Set(Uuid::now_v7()),
            org_id: Set(self.org_id),
            actor_id: Set(self.actor_id),
            actor_name: Set(self.actor_name),
            action: Set(self.action.to_owned()),
            target: Set(self.target),
            ip: Set(self.ip.map(|ip| ip.to_string())),
            details: Set(self.details),
            created_at: Set(Utc::now()),
        }
        .insert(conn)
        .await
        .map(drop)
    }
}

/// A page of `org_id`'s log, newest first, strictly older than `before` when given.
pub async fn list_for_org(
    conn: &impl ConnectionTrait,
    org_id: Uuid,
    before: Option<Uuid>,
    limit: u64,
) -> Result<Vec<audit_events::Model>, DbErr> {
    page(conn, Condition::all().add(audit_events::Column::OrgId.eq(org_id)), before, limit).await
}

/// A page of `user_id`'s own account events (no organization's), newest first.
pub async fn list_for_account(
    conn: &impl ConnectionTrait,
    user_id: Uuid,
    before: Option<Uuid>,
    limit: u64,
) -> Result<Vec<audit_events::Model>, DbErr> {
    let own =
        Condition::all().add(audit_events::Column::OrgId.is_null()).add(audit_events::Column::ActorId.eq(user_id));
    page(conn, own, before, limit).await
}

async fn page(
    conn: &impl ConnectionTrait,
    which: Condition,
    before: Option<Uuid>,
    limit: u64,
) -> Result<Vec<audit_events::Model>, DbErr> {
    let mut query = audit_events::Entity::find().filter(which);
    if let Some(before) = before {
        query = query.filter(audit_events::Column::Id.lt(before));
    }
    query.order_by_desc(audit_events::Column::Id).limit(limit).all(conn).await
}
