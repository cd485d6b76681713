//! Notifications, per user. Each is stored with the change that raises it and, like every
//! change to it (read, all read, deleted), also goes on the user's event stream, so that every
//! open tab updates.

use chrono::Utc;
use fleetplane_api as api;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, sea_query::Expr,
};
use serde_json::json;
use uuid::Uuid;

use crate::{
    bus::Signal,
    db::begin_write,
    entity::notifications,
    error::{AppError, Result},
    events::{self, Audience},
    state::AppState,
};

pub struct NewNotification {
    pub user_id: Uuid,
    pub org_id: Option<Uuid>,
    pub kind: &'static str,
    pub title: String,
    pub body: String,
    pub link: Option<String>,
}

/// A notification as its recipient sees it, in the API and on the event stream.
pub fn view(n: &notifications::Model) -> api::Notification {
    api::Notification {
        id: n.id,
        kind: n.kind.clone(),
        title: n.title.clone(),
        body: n.body.clone(),
        link: n.link.clone(),
        read: n.read_at.is_some(),
        created_at: n.created_at,
    }
}

/// Stores a notification and its event, inside the caller's transaction.
pub async fn create(conn: &impl ConnectionTrait, new: NewNotification) -> Result<notifications::Model, DbErr> {
    let notification = notifications::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(new.user_id),
        org_id: Set(new.org_id),
        kind: Set(new.kind.to_owned()),
        title: Set(new.title),
        body: Set(new.body),
        link: Set(new.link),
        read_at: Set(None),
        created_at: Set(Utc::now()),
    }
    .insert(conn)
    .await?;
    let payload = serde_json::to_value(view(&notification))
        .map_err(|e| DbErr::Custom(format!("serialising a notification: {e}")))?;
    events::record(conn, Audience::User(new.user_id), "notification", payload).await?;
    Ok(notification)
}

/// A page of the user's notifications, newest first, older than `before` when given.
pub async fn list(
    state: &AppState,
    user: Uuid,
    unread_only: bool,
    before: Option<Uuid>,
    limit: u64,
) -> Result<Vec<notifications::Model>> {
    let mut query = notifications::Entity::find().filter(notifications::Column::UserId.eq(user));
    if unread_only {
        query = query.filter(notifications::Column::ReadAt.is_null());
    }
    if let Some(before) = before {
        query = query.filter(notifications::Column::Id.lt(before));
    }
    Ok(query.order_by_desc(notifications::Column::Id).limit(limit).all(&state.db).await?)
}

pub async fn unread_count(state: &AppState, user: Uuid) -> Result<u64> {
    Ok(notifications::Entity::find()
        .filter(notifications::Column::UserId.eq(user))
        .filter(notifications::Column::ReadAt.is_null())
        .count(&state.db)
        .await?)
}

fn not_found() -> AppError {
    AppError::not_found("notification_not_found", "No such notification.")
}

/// Marks one of the user's notifications read (again: reading twice is fine).
pub async fn mark_read(state: &AppState, user: Uuid, id: Uuid) -> Result<notifications::Model> {
    let txn = begin_write(&state.db).await?;
    let notification = notifications::Entity::find_by_id(id)
        .filter(notifications::Column::UserId.eq(user))
        .one(&txn)
        .await?
        .ok_or_else(not_found)?;
    if notification.read_at.is_some() {
        return Ok(notification);
    }
    let mut active = notification.into_active_model();
    active.read_at = Set(Some(Utc::now()));
    let notification = active.update(&txn).await?;
    events::record(&txn, Audience::User(user), "notification_read", json!({ "id": id })).await?;
    txn.commit().await?;
    state.bus.publish(Signal::Events);
    Ok(notification)
}

/// Marks every unread notification of the user read; returns how many.
pub async fn mark_all_read(state: &AppState, user: Uuid) -> Result<u64> {
    let txn = begin_write(&state.db).await?;
    let changed = notifications::Entity::update_many()
        .col_expr(notifications::Column::ReadAt, Expr::value(Some(Utc::now())))
        .filter(notifications::Column::UserId.eq(user))
        .filter(notifications::Column::ReadAt.is_null())
        .exec(&txn)
        .await?
        .rows_affected;
    if changed > 0 {
        events::record(&txn, Audience::User(user), "notifications_read_all", json!({ "count": changed })).await?;
    }
    txn.commit().await?;
    if changed > 0 {
        state.bus.publish(Signal::Events);
    }
    Ok(changed)
}

pub async fn delete(state: &AppState, user: Uuid, id: Uuid) -> Result<()> {
    let txn = begin_write(&state.db).await?;
    let deleted = notifications::Entity::delete_many()
        .filter(notifications::Column::Id.eq(id))
        .filter(notifications::Column::UserId.eq(user))
        .exec(&txn)
        .await?
        .rows_affected;
    if deleted == 0 {
        return Err(not_found());
    }
    events::record(&txn, Audience::User(user), "notification_deleted", json!({ "id": id })).await?;
    txn.commit().await?;
    state.bus.publish(Signal::Events);
    Ok(())
}
