//! Route guards: pages for signed-in users and pages for visitors.
//!
//! Who is signed in is known from the server's [`UiContext`](crate::UiContext), so these
//! decide during the first render: on the server a guard answers with a redirect, in the
//! browser it navigates.

use leptos::prelude::*;
use leptos_router::components::Redirect;
use leptos_router::hooks::{use_location, use_query_map};

use crate::context::use_viewer;
use crate::format;

/// The path and query of the current page, e.g. `/orgs/acme/audit?x=1`.
pub fn current_path() -> String {
    let location = use_location();
    let path = location.pathname.get_untracked();
    // The router's `search` has no leading `?`.
    let query = location.search.get_untracked();
    if query.is_empty() { path } else { format!("{path}?{query}") }
}

/// Renders `children` for a signed-in user; sends anyone else to `/login?next=<here>`.
#[component]
pub fn RequireViewer(children: Children) -> impl IntoView {
    if use_viewer().is_some() {
        children().into_any()
    } else {
        let here = current_path();
        let path = if here == "/" { "/login".to_owned() } else { format!("/login?next={}", format::encode(&here)) };
        view! { <Redirect path=path/> }.into_any()
    }
}

/// Renders `children` for a visitor; a signed-in user goes on to `next` (or `/`).
#[component]
pub fn RequireGuest(children: Children) -> impl IntoView {
    if use_viewer().is_none() {
        children().into_any()
    } else {
        let next = use_query_map().with_untracked(|query| query.get("next"));
        view! { <Redirect path=format::safe_next(next.as_deref())/> }.into_any()
    }
}
