//! "Sign in with Google", and what to say when it did not work.
//!
//! The server's Google routes are browser navigations: the button is a plain link to
//! `/api/v1/auth/google/start`, and a failed sign-in comes back as `?error=<code>`.

use leptos::prelude::*;

use super::{Alert, AlertKind};
use crate::context::use_ui_context;
use crate::format::encode;

/// A link that starts Google sign-in (or, with `link`, links Google to this account); nothing
/// when the server has no Google client configured.
#[component]
pub fn GoogleButton(
    label: &'static str,
    /// Where to go once signed in.
    #[prop(optional, into)]
    next: Option<String>,
    #[prop(optional)] link: bool,
) -> impl IntoView {
    let enabled = use_ui_context().google_sign_in;
    let mut href = "/api/v1/auth/google/start".to_owned();
    let mut query = Vec::new();
    if link {
        query.push("intent=link".to_owned());
    }
    if let Some(next) = next.filter(|next| next != "/") {
        query.push(format!("next={}", encode(&next)));
    }
    if !query.is_empty() {
        href = format!("{href}?{}", query.join("&"));
    }
    // `rel="external"`: a full navigation, not a route of this app.
    enabled.then(|| {
        view! {
            <a class="btn btn-secondary btn-block btn-google" href=href rel="external" data-test="google-sign-in">
                <span class="google-mark" aria-hidden="true">"G"</span>
                {label}
            </a>
        }
    })
}

/// The "or" between Google and the password form, when Google is offered.
#[component]
pub fn OrDivider() -> impl IntoView {
    use_ui_context().google_sign_in.then(|| view! { <p class="or-divider"><span>"or"</span></p> })
}

/// Why a Google sign-in (or link) did not work, by the code the server sent back.
pub fn google_error_message(code: &str) -> &'static str {
    match code {
        "google_unavailable" => {
            "Google sign-in is unavailable right now: this server could not reach Google. Try again in a moment, or \
             use your password."
        }
        "google_state_invalid" => {
            "This Google sign-in could not be matched to this browser, or it took longer than 10 minutes. Start again."
        }
        "google_access_denied" => "Google sign-in was canceled at Google. Nothing was changed.",
        "google_error" => "Google reported a problem with this sign-in. Try again.",
        "google_code_rejected" => {
            "Google no longer accepts this sign-in: it was already used or has expired. Start again."
        }
        "google_token_invalid" => {
            "Google’s answer could not be verified, so you were not signed in. Try again; if it keeps happening, \
             tell your administrator."
        }
        "google_email_unverified" => {
            "Your Google account’s email address is not verified. Verify it with Google, then try again."
        }
        "google_account_mismatch" => {
            "The account with this email is linked to a different Google account. Sign in with that one, or with \
             your password."
        }
        "google_account_in_use" => "This Google account is already linked to another Fleetplane account.",
        "google_already_linked" => "Your account is already linked to a Google account. Unlink that one first.",
        "signup_closed" => {
            "No account uses this Google address, and this server does not accept new accounts. Ask an \
             administrator to add you."
        }
        "session_invalid" => "Your session ended before Google was linked. Sign in and try again.",
        "rate_limited" => "Too many sign-in attempts from here. Wait a minute, then try again.",
        _ => "Signing in with Google did not work. Try again.",
    }
}

/// The explanation for `?error=<code>`, if the page was given one.
#[component]
pub fn GoogleError(code: Option<String>, #[prop(optional)] linking: bool) -> impl IntoView {
    let title = if linking { "Google was not linked" } else { "You are not signed in" };
    code.filter(|code| !code.is_empty()).map(|code| {
        let message = google_error_message(&code);
        view! {
            <div data-error=code>
                <Alert kind=AlertKind::Error title=title>{message}</Alert>
            </div>
        }
    })
}
