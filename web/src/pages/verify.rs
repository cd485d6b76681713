//! Email verification: the page a verification link opens, and the "resend" form.

use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::api::{self, ApiError};
use crate::browser;
use crate::components::{Alert, AlertKind, AuthCard, FormBanner, FormState, SubmitButton, TextField};

/// Verifies the link's token with the password chosen at sign-up, then signs in.
///
/// The link proves the inbox, the password the person who signed up: someone who follows a link
/// for an account they did not make cannot activate it. The token is single-use and only spent
/// by the form (a link scanner fetching the page does not use it up).
#[component]
pub fn VerifyEmailPage() -> impl IntoView {
    let token = use_query_map().with_untracked(|query| query.get("token"));
    let body = match token {
        None => view! {
            <VerifyFailed error=ApiError {
                code: "verification_token_invalid".into(),
                ..ApiError::default()
            }/>
        }
        .into_any(),
        Some(token) => view! { <VerifyForm token/> }.into_any(),
    };
    view! {
        <Title text="Verify your email"/>
        <AuthCard title="Verify your email">{body}</AuthCard>
    }
}

#[component]
fn VerifyForm(token: String) -> impl IntoView {
    let token = StoredValue::new(token);
    let form = FormState::new();
    let password = RwSignal::new(String::new());
    let on_submit = move |event: SubmitEvent| {
        event.prevent_default();
        let (token, password) = (token.get_value(), password.get_untracked());
        // A full load, so the server renders the home page for the new session.
        form.run(async move { api::verify_email(&token, &password).await }, move |_user| browser::go_to("/"));
    };
    let link_failed =
        move || form.error.with(|error| error.as_ref().filter(|e| e.code.starts_with("verification_token_")).cloned());
    view! {
        {move || match link_failed() {
            Some(error) => view! { <VerifyFailed error/> }.into_any(),
            None => view! {
                <form id="verify-form" class="form" method="post" novalidate=true on:submit=on_submit>
                    <p class="lead">"Enter the password you chose when you signed up, to confirm it is you."</p>
                    <FormBanner form fields=&["password"]/>
                    <TextField
                        id="verify-password"
                        name="password"
                        label="Password"
                        kind="password"
                        value=password
                        form
                        autocomplete="current-password"
                        required=true
                        autofocus=true
                    />
                    <SubmitButton form label="Verify and sign in" busy_label="Verifying…" class="btn btn-primary btn-block"/>
                    <p class="muted small">
                        "Did not sign up, or forgot the password? "
                        <a href="/signup">"Sign up"</a>
                        " with this address again: that replaces the account waiting here."
                    </p>
                </form>
            }
            .into_any(),
        }}
    }
}

#[component]
fn VerifyFailed(error: ApiError) -> impl IntoView {
    let (title, text) = match error.code.as_str() {
        "verification_token_expired" => {
            ("This link has expired", "Verification links are valid for a limited time. Send yourself a new one.")
        }
        "verification_token_used" => (
            "This link was already used",
            "Your email may already be verified: try signing in. Otherwise send yourself a new link.",
        ),
        "verification_token_invalid" => {
            ("This link is not valid", "It may be incomplete or mistyped. Send yourself a new one.")
        }
        _ => ("We could not verify your email", error.message()),
    };
    let text = text.to_owned();
    view! {
        <div class="stack">
            <Alert kind=AlertKind::Error title=title>{text}</Alert>
            <ResendVerification email=None/>
            <p class="auth-footer"><a href="/login">"Sign in"</a></p>
        </div>
    }
}

/// "Send the verification email again". With a known address it is a single button;
/// otherwise it asks for the address.
#[component]
pub fn ResendVerification(email: Option<String>) -> impl IntoView {
    let form = FormState::new();
    let known = email.is_some();
    let address = RwSignal::new(email.unwrap_or_default());
    let sent = RwSignal::new(None::<String>);
    let on_submit = move |event: SubmitEvent| {
        event.prevent_default();
        let email = address.get_untracked();
        sent.set(None);
        form.run(async move { api::resend_verification(&email).await }, move |reply| {
            let message = if reply.message.is_empty() {
                "If that address belongs to an unverified account, a new link is on its way.".to_owned()
            } else {
                reply.message
            };
            sent.set(Some(message));
        });
    };
    view! {
        <form id="resend-form" class="form resend" method="post" novalidate=true on:submit=on_submit>
            {move || sent.get().map(|message| view! { <Alert kind=AlertKind::Success>{message}</Alert> })}
            <FormBanner form fields=&["email"]/>
            {if known {
                view! {
                    <input type="hidden" name="email" prop:value=move || address.get()/>
                    <p class="muted small">"Didn't get it? Check your spam folder, or send it again."</p>
                }
                .into_any()
            } else {
                view! {
                    <TextField
                        id="resend-email"
                        name="email"
                        label="Email"
                        kind="email"
                        value=address
                        form
                        autocomplete="email"
                        required=true
                        hint="We will send a new verification link."
                    />
                }
                .into_any()
            }}
            <SubmitButton form label="Resend verification email" busy_label="Sending…" class="btn btn-secondary btn-block"/>
        </form>
    }
}
