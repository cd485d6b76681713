//! Pieces for showing loaded data: loading and error states, badges, timestamps.

use chrono::{DateTime, Utc};
use leptos::prelude::*;

use crate::api::{ApiError, ClusterStatus, Provider, Role, RunStatus};
use crate::browser;
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

/// A cloud provider's name with its mark.
#[component]
pub fn ProviderBadge(provider: Provider) -> impl IntoView {
    view! {
        <span class=format!("provider provider-{}", provider.as_str()) data-test="provider-badge">
            {provider.label()}
        </span>
    }
}

/// A cluster's status. Clusters being created or destroyed show a live dot.
#[component]
pub fn ClusterStatusBadge(status: ClusterStatus) -> impl IntoView {
    let (tone, live) = match status {
        ClusterStatus::Ready => ("badge-success", false),
        ClusterStatus::Failed => ("badge-danger", false),
        ClusterStatus::Provisioning | ClusterStatus::Destroying => ("badge-info", true),
        ClusterStatus::Destroyed => ("badge-muted", false),
        ClusterStatus::Pending => ("badge-neutral", false),
    };
    view! { <StatusBadge tone live status=status.as_str() label=status.label() test="cluster-status"/> }
}

/// A run's status. Runs at work show a live dot; a run waiting for approval stands out.
#[component]
pub fn RunStatusBadge(status: RunStatus) -> impl IntoView {
    let (tone, live) = match status {
        RunStatus::Succeeded => ("badge-success", false),
        RunStatus::Failed => ("badge-danger", false),
        RunStatus::Running | RunStatus::Applying => ("badge-info", true),
        RunStatus::AwaitingApproval => ("badge-warning", false),
        RunStatus::Canceled => ("badge-muted", false),
        RunStatus::Queued => ("badge-neutral", false),
    };
    view! { <StatusBadge tone live status=status.as_str() label=status.label() test="run-status"/> }
}

#[component]
fn StatusBadge(
    tone: &'static str,
    live: bool,
    status: &'static str,
    label: &'static str,
    test: &'static str,
) -> impl IntoView {
    view! {
        <span class=format!("badge badge-status {tone}") class:badge-live=live data-test=test data-status=status>
            {label}
        </span>
    }
}

/// A button that puts `text` on the clipboard and says whether that worked.
#[component]
pub fn CopyButton(
    #[prop(into)] text: Signal<String>,
    test: &'static str,
    #[prop(default = "btn btn-secondary btn-sm")] class: &'static str,
    #[prop(default = "Copy")] label: &'static str,
) -> impl IntoView {
    let copied = RwSignal::new(None::<bool>);
    let copy = move |_| {
        let text = text.get_untracked();
        leptos::task::spawn_local(async move {
            let ok = browser::copy_text(&text).await;
            copied.try_set(Some(ok));
        });
    };
    view! {
        <button type="button" class=class data-test=test on:click=copy>
            {move || match copied.get() {
                Some(true) => "Copied",
                Some(false) => "Copy failed",
                None => label,
            }}
        </button>
    }
}

/// A timestamp, readable, with the exact value in the `datetime` attribute and tooltip.
#[component]
pub fn Time(
    value: DateTime<Utc>,
    /// Show only the date.
    #[prop(optional)]
    date_only: bool,
    /// Say how long ago it was ("5 minutes ago"), as of when it is drawn.
    #[prop(optional)]
    relative: bool,
) -> impl IntoView {
    let ago = relative.then(browser::now).flatten().map(|now| format::relative(value, now));
    let text = match ago {
        Some(ago) => ago,
        None if date_only => format::date(value),
        None => format::timestamp(value),
    };
    let datetime = format::rfc3339(value);
    let title = if relative { format::timestamp(value) } else { datetime.clone() };
    view! { <time datetime=datetime title=title>{text}</time> }
}
