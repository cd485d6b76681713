//! Banners for the outcome of an action.

use leptos::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertKind {
    Success,
    Error,
    Info,
    Warning,
}

impl AlertKind {
    fn class(self) -> &'static str {
        match self {
            AlertKind::Success => "alert alert-success",
            AlertKind::Error => "alert alert-error",
            AlertKind::Info => "alert alert-info",
            AlertKind::Warning => "alert alert-warning",
        }
    }

    /// The `data-test` hook browser tests look for.
    fn hook(self) -> &'static str {
        match self {
            AlertKind::Success => "alert-success",
            AlertKind::Error => "alert-error",
            AlertKind::Info => "alert-info",
            AlertKind::Warning => "alert-warning",
        }
    }
}

/// A banner. Errors are announced to screen readers at once, the rest politely.
#[component]
pub fn Alert(
    kind: AlertKind,
    /// Bold first line.
    #[prop(optional, into)]
    title: Option<String>,
    children: Children,
) -> impl IntoView {
    let role = if kind == AlertKind::Error { "alert" } else { "status" };
    view! {
        <div class=kind.class() role=role data-test=kind.hook()>
            <span class="alert-icon" aria-hidden="true"></span>
            <div class="alert-body">
                {title.map(|title| view! { <p class="alert-title">{title}</p> })}
                <div class="alert-text">{children()}</div>
            </div>
        </div>
    }
}
