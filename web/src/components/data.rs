//! Pieces for showing loaded data: loading and error states, role badges, timestamps.

use leptos::prelude::*;

use crate::api::{ApiError, Role};
use crate::components::guard::current_path;
use crate::components::{Alert, AlertKind};
use crate::format;

/// Placeholder while something loads. Lists get a few shimmering rows; with `spinner`, a
/// spinner and the label, for a single action the page is waiting on.
#[component]
pub fn Loading(#[prop(default = "Loading…")] label: &'static str, #[prop(optional)] spinner: bool) -> impl IntoView {
    if spinner {
        return view! {
            <div class="loading loading-inline" role="status" aria-live="polite" data-test="loading">
                <span class="spinner" aria-hidden="true"></span>
                <span>{label}</span>
            </div>
        }
        .into_any();
    }
    view! {
        <div class="loading" role="status" aria-live="polite" data-test="loading">
            <span class="visually-hidden">{label}</span>
            <div class="skeleton" aria-hidden="true"></div>
            <div class="skeleton" aria-hidden="true"></div>
            <div class="skeleton skeleton-short" aria-hidden="true"></div>
        </div>
    }
    .into_any()
}

/// A failed load. An ended session gets a way to sign in again and come back here.
#[component]
pub fn LoadError(error: ApiError) -> impl IntoView {
    if error.is_unauthenticated() {
        let href = format!("/login?next={}", format::encode(&current_path()));
        view! {
            <Alert kind=AlertKind::Error title="Your session has ended">
                <a href=href rel="external">"Sign in again"</a>
                " to continue."
            </Alert>
        }
        .into_any()
    } else {
        let message = error.message().to_owned();
        view! {
            <Alert kind=AlertKind::Error title="Could not load this">
                {message}
            </Alert>
        }
        .into_any()
    }
}

/// What an empty list shows.
#[component]
pub fn EmptyState(title: &'static str, children: Children) -> impl IntoView {
    view! {
        <div class="empty" data-test="empty">
            <p class="empty-title">{title}</p>
            <div class="empty-text">{children()}</div>
        </div>
    }
}

/// A member's role as a coloured badge.
#[component]
pub fn RoleBadge(role: Role) -> impl IntoView {
    view! {
        <span class=format!("badge badge-role-{}", role.as_str()) data-test="role-badge">
            {role.label()}
        </span>
    }
}

/// A timestamp, readable, with the exact value in the `datetime` attribute and tooltip.
#[component]
pub fn Time(
    #[prop(into)] value: String,
    /// Show only the date.
    #[prop(optional)]
    date_only: bool,
) -> impl IntoView {
    let text = if date_only { format::date(&value) } else { format::timestamp(&value) };
    view! { <time datetime=value.clone() title=value>{text}</time> }
}
