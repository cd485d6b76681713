//! The page for paths that match no route.

use leptos::prelude::*;
use leptos_meta::Title;

/// "Page not found", with HTTP status 404 when rendered on the server.
#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(http::StatusCode::NOT_FOUND);
    }
    view! {
        <Title text="Page not found"/>
        <div class="not-found" data-test="not-found">
            <p class="not-found-code">"404"</p>
            <h1 class="page-title">"Page not found"</h1>
            <p class="muted">"The page you asked for does not exist, or it has moved."</p>
            <a class="btn btn-primary" href="/">"Go to the dashboard"</a>
        </div>
    }
}
