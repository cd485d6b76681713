//! The web UI, as this server serves it: the stylesheet, the browser bundle built by
//! `cargo xtask build-ui`, and every page rendered by Leptos with the request's [`UiContext`].
//!
//! The UI reads and changes data only through the REST API, like any other client; all the
//! server tells it directly is who is signed in and which features are on.

use std::convert::Infallible;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use fleetplane_web::{App, LAST_ORG_COOKIE, STYLESHEET, STYLESHEET_VERSION, UiContext, Viewer};
use leptos::config::LeptosOptions;
use leptos::nonce::Nonce;
use leptos::prelude::provide_context;
use tower::ServiceExt;
use tower_http::services::ServeDir;

use crate::http::headers::page_policy;
use crate::state::AppState;

/// Leptos's name for the bundle: the pages load `/pkg/fleetplane_web.js` and
/// `/pkg/fleetplane_web_bg.wasm`.
const OUTPUT_NAME: &str = "fleetplane_web";
const PKG_DIR: &str = "pkg";

/// Routes for the UI: one per page (from the Leptos router), the assets, and a fallback that
/// renders the "not found" page (with status 404) for any other path. Unknown `/api/` paths
/// must be routed by the API itself so that they get a problem instead.
pub fn routes() -> Router<AppState> {
    let mut router = Router::new().route("/assets/app.css", get(stylesheet)).route("/pkg/{*file}", get(bundle));
    for page in leptos_axum::generate_route_list(App) {
        router = router.route(page.path(), get(render_page));
    }
    router.fallback(render_page)
}

/// What the UI needs to know about this request before it can call the API.
async fn ui_context(state: &AppState, headers: &HeaderMap) -> UiContext {
    let viewer = match crate::auth::cookie_user(state, headers).await {
        Some(user) => Some(Viewer {
            id: user.id.to_string(),
            has_password: user.password_hash.is_some(),
            org: current_org(state, headers, user.id).await,
            username: user.username,
            email: user.email,
        }),
        None => None,
    };
    UiContext {
        viewer,
        signup_open: state.config.signup_open(),
        dev_outbox: crate::http::dev::exists(state),
        google_sign_in: state.google.is_some(),
    }
}

/// The organization the top bar leads to: the one last opened in this browser if the user
/// still belongs to it, else their personal one, else the first they belong to. A page renders
/// without it rather than fail when the organizations cannot be read.
async fn current_org(state: &AppState, headers: &HeaderMap, user: uuid::Uuid) -> Option<String> {
    let orgs = match crate::orgs::list_for_user(state, user).await {
        Ok(orgs) => orgs,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the viewer's organizations for the top bar");
            return None;
        }
    };
    let last = crate::auth::session::cookie(headers, LAST_ORG_COOKIE);
    let by_cookie = orgs.iter().find(|(org, _)| Some(org.name.as_str()) == last);
    let personal = || orgs.iter().find(|(org, _)| org.personal_owner_id == Some(user));
    by_cookie.or_else(personal).or(orgs.first()).map(|(org, _)| org.name.clone())
}

fn leptos_options(state: &AppState) -> LeptosOptions {
    LeptosOptions::builder()
        .output_name(OUTPUT_NAME)
        .site_root(state.config.site_dir.to_string_lossy().as_ref())
        .site_pkg_dir(PKG_DIR)
        .build()
}

/// Renders a page on the server; the browser then hydrates it with the same context.
///
/// Each response has its own nonce: Leptos puts it on every inline script it writes (the
/// hydration script, streamed resources), and the page's Content-Security-Policy allows only
/// scripts that carry it.
async fn render_page(State(state): State<AppState>, request: Request) -> Response {
    let ui = ui_context(&state, request.headers()).await;
    let options = leptos_options(&state);
    let nonce = Nonce::new();
    let policy = HeaderValue::try_from(page_policy(&nonce));
    let render = leptos_axum::render_app_to_stream_with_context(
        move || {
            provide_context(ui.clone());
            provide_context(nonce.clone());
        },
        move || fleetplane_web::shell(options.clone()),
    );
    let mut response = render(request).await;
    let headers = response.headers_mut();
    // Pages carry the signed-in user's data and a nonce for this response only: never kept.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // A nonce is URL-safe base64, so this cannot fail; if it did, the default policy would
    // apply, which blocks the scripts rather than allowing any.
    if let Ok(policy) = policy {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    response
}

/// The stylesheet. Its URL carries a fingerprint (`?v=`), so that URL can be cached forever.
async fn stylesheet(uri: Uri) -> Response {
    let current = uri.query().is_some_and(|query| query == format!("v={STYLESHEET_VERSION:016x}"));
    let cache = if current { "public, max-age=31536000, immutable" } else { "no-cache" };
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, cache)], STYLESHEET).into_response()
}

/// The wasm bundle and its JS glue, from `<site dir>/pkg`. Their names do not change between
/// builds, so browsers revalidate them (cheaply, by `Last-Modified`); the gzip files that
/// `cargo xtask build-ui` writes next to them are used when the browser accepts gzip.
async fn bundle(State(state): State<AppState>, request: Request) -> Response {
    let files = ServeDir::new(&state.config.site_dir).precompressed_gzip();
    let result: Result<_, Infallible> = files.oneshot(request).await;
    let mut response = match result {
        Ok(response) => response.into_response(),
        Err(never) => match never {},
    };
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
