//! Fleetplane's web UI.
//!
//! One Leptos application, rendered on the server (`ssr`, linked into the `fleetplane` binary)
//! and hydrated in the browser (`hydrate`, built to wasm by `cargo xtask build-ui`). The UI is a
//! client of the REST API under `/api/v1`, like any other: the server only hands it a small
//! [`UiContext`] (who is signed in, which features are on) so that the first render is right.

mod api;
mod app;
mod browser;
mod components;
mod context;
mod format;
mod live;
mod pages;

pub use app::App;
#[cfg(feature = "ssr")]
pub use app::shell;
pub use context::{LAST_ORG_COOKIE, UiContext, Viewer};
pub use format::safe_next;

/// The application's one stylesheet, served by the server at `/assets/app.css`.
#[cfg(feature = "ssr")]
pub const STYLESHEET: &str = include_str!("../style/app.css");

/// A fingerprint of [`STYLESHEET`], put in the stylesheet's URL (`?v=`) so that a browser can
/// cache it forever and still pick up a new one after an upgrade.
#[cfg(feature = "ssr")]
pub const STYLESHEET_VERSION: u64 = format::fingerprint(STYLESHEET.as_bytes());

/// Browser entry point, called by the script that `HydrationScripts` puts in the page.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    use leptos::prelude::*;

    console_error_panic_hook::set_once();
    let ui = UiContext::from_document();
    leptos::mount::hydrate_body(move || {
        provide_context(ui);
        view! { <App/> }
    });
}
