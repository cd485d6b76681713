//! The signed-in user's live events: one stream (`/api/v1/events`) per tab, shared by every
//! part of the page through context. Parts that show server state track [`Live::changed`] and
//! fetch again when it moves; the notification bell tracks [`Live::notifications`].

use leptos::prelude::*;

use crate::api::Notification;
use crate::browser;

#[derive(Clone, Copy)]
pub struct Live {
    /// Moves on every run or cluster status change in the user's organizations.
    pub changed: RwSignal<u64>,
    /// Moves on every change to the user's notifications (new, read, deleted).
    pub notifications: RwSignal<u64>,
    /// The newest notification that arrived while the page was open.
    pub arrived: RwSignal<Option<Notification>>,
}

/// Starts the stream for a signed-in user and provides [`Live`] to the page.
pub fn provide_live() {
    let live = Live { changed: RwSignal::new(0), notifications: RwSignal::new(0), arrived: RwSignal::new(None) };
    provide_context(live);
    const KINDS: &[&str] = &[
        "run",
        "cluster",
        "membership",
        "notification",
        "notification_read",
        "notifications_read_all",
        "notification_deleted",
    ];
    Effect::new(move |_| {
        browser::listen("/api/v1/events", KINDS, move |kind, data| {
            match kind {
                "run" | "cluster" | "membership" => {
                    live.changed.try_update(|n| *n += 1);
                }
                "notification" => {
                    if let Ok(arrived) = serde_json::from_str::<Notification>(&data) {
                        live.arrived.try_set(Some(arrived));
                    }
                    live.notifications.try_update(|n| *n += 1);
                }
                _ => {
                    live.notifications.try_update(|n| *n += 1);
                }
            }
            true
        });
    });
}

pub fn use_live() -> Option<Live> {
    use_context::<Live>()
}

/// Calls `refresh` whenever run or cluster statuses change (not on the first run).
pub fn on_change(refresh: impl Fn() + 'static) {
    let Some(live) = use_live() else { return };
    Effect::new(move |previous: Option<u64>| {
        let now = live.changed.get();
        if previous.is_some_and(|previous| previous != now) {
            refresh();
        }
        now
    });
}
