//! The notification bell: the unread count, a list with mark read, mark all read and delete,
//! and a toast when one arrives. All of it follows the live event stream, so every open tab
//! agrees.

use std::{future::Future, pin::Pin};

use leptos::prelude::*;

use super::Time;
use crate::api::{self, Notification};
use crate::live::use_live;

/// How many of the newest notifications the list shows.
const SHOWN: u32 = 10;

/// A change to make, from one of the list's buttons.
type Request = Pin<Box<dyn Future<Output = Result<(), api::ApiError>>>>;

#[component]
pub fn NotificationBell() -> impl IntoView {
    let Some(live) = use_live() else { return ().into_any() };
    let count = LocalResource::new(move || {
        live.notifications.track();
        api::unread_notifications()
    });
    let list = LocalResource::new(move || {
        live.notifications.track();
        api::list_notifications(SHOWN)
    });
    let unread = move || count.get().and_then(Result::ok).map_or(0, |count| count.count);
    let busy = RwSignal::new(false);
    let act = move |request: Request| {
        busy.set(true);
        leptos::task::spawn_local(async move {
            let _ = request.await;
            busy.try_set(false);
            // The stream says so too; this also covers a stream that is reconnecting.
            live.notifications.try_update(|n| *n += 1);
        });
    };

    let menu = NodeRef::<leptos::html::Details>::new();
    super::layout::close_on_click_outside(menu);

    view! {
        <details class="bell" node_ref=menu data-test="bell">
            <summary class="bell-button" aria-label=move || format!("Notifications, {} unread", unread())>
                <svg class="bell-icon" viewBox="0 0 24 24" width="20" height="20" aria-hidden="true">
                    <path
                        d="M6 8a6 6 0 1 1 12 0c0 7 3 9 3 9H3s3-2 3-9M10.3 21a1.94 1.94 0 0 0 3.4 0"
                        fill="none"
                        stroke="currentColor"
                        stroke-width="2"
                        stroke-linecap="round"
                        stroke-linejoin="round"
                    ></path>
                </svg>
                {move || {
                    let n = unread();
                    (n > 0).then(|| view! { <span class="bell-count" data-test="bell-count">{n.min(99)}</span> })
                }}
            </summary>
            <div class="menu bell-menu">
                <div class="bell-header">
                    <p class="menu-name">"Notifications"</p>
                    <button
                        type="button"
                        class="btn btn-ghost btn-sm"
                        data-test="bell-read-all"
                        disabled=move || busy.get() || unread() == 0
                        on:click=move |_| act(Box::pin(async { api::mark_all_notifications_read().await.map(|_| ()) }))
                    >
                        "Mark all read"
                    </button>
                </div>
                {move || match list.get() {
                    None => view! { <p class="bell-empty muted">"Loading…"</p> }.into_any(),
                    Some(Err(error)) => view! { <p class="menu-error" role="alert">{error.message().to_owned()}</p> }.into_any(),
                    Some(Ok(page)) if page.items.is_empty() => {
                        view! { <p class="bell-empty muted">"Nothing new."</p> }.into_any()
                    }
                    Some(Ok(page)) => view! {
                        <ul class="bell-list">
                            {page
                                .items
                                .into_iter()
                                .map(|notification| view! { <Item notification busy act/> })
                                .collect_view()}
                        </ul>
                    }
                    .into_any(),
                }}
            </div>
        </details>
    }
    .into_any()
}

#[component]
fn Item(notification: Notification, busy: RwSignal<bool>, act: impl Fn(Request) + Copy + 'static) -> impl IntoView {
    let id = notification.id;
    let class = if notification.read { "bell-item" } else { "bell-item bell-unread" };
    view! {
        <li class=class data-test="bell-item" data-read=notification.read.to_string()>
            <div class="bell-text">
                {match notification.link.clone() {
                    Some(link) => view! { <a class="bell-title" href=link>{notification.title.clone()}</a> }.into_any(),
                    None => view! { <span class="bell-title">{notification.title.clone()}</span> }.into_any(),
                }}
                {(!notification.body.is_empty()).then(|| view! { <p class="bell-body small muted">{notification.body.clone()}</p> })}
                <Time value=notification.created_at/>
            </div>
            <div class="bell-actions">
                {(!notification.read)
                    .then(|| {
                        view! {
                            <button
                                type="button"
                                class="btn btn-ghost btn-sm"
                                data-test="bell-mark-read"
                                disabled=move || busy.get()
                                on:click=move |_| {
                                    act(Box::pin(async move { api::mark_notification_read(id).await.map(|_| ()) }))
                                }
                            >
                                "Mark read"
                            </button>
                        }
                    })}
                <button
                    type="button"
                    class="btn btn-ghost btn-sm"
                    data-test="bell-delete"
                    aria-label="Delete notification"
                    disabled=move || busy.get()
                    on:click=move |_| {
                        act(Box::pin(async move { api::delete_notification(id).await }))
                    }
                >
                    "Delete"
                </button>
            </div>
        </li>
    }
}

/// The newest notification, for a few seconds after it arrives. Placed outside the top bar,
/// whose backdrop would otherwise be what it is fixed to.
#[component]
pub fn Toast() -> impl IntoView {
    let Some(live) = use_live() else { return ().into_any() };
    let shown = RwSignal::new(None::<Notification>);
    Effect::new(move |_| {
        if let Some(arrived) = live.arrived.get() {
            shown.set(Some(arrived.clone()));
            set_timeout(
                move || {
                    if shown.try_get_untracked().flatten().is_some_and(|current| current.id == arrived.id) {
                        shown.try_set(None);
                    }
                },
                std::time::Duration::from_secs(8),
            );
        }
    });
    view! {
        {move || {
            shown
                .get()
                .map(|arrived| {
                    view! {
                        <div class="toast" role="status" data-test="toast">
                            <p class="toast-title">{arrived.title}</p>
                            {(!arrived.body.is_empty()).then(|| view! { <p class="toast-body small">{arrived.body}</p> })}
                            <button type="button" class="btn btn-ghost btn-sm" on:click=move |_| shown.set(None)>
                                "Dismiss"
                            </button>
                        </div>
                    }
                })
        }}
    }
    .into_any()
}
