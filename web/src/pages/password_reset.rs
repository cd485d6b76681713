//! "Forgot password?": asking for a reset link, and the page the link opens to choose a new
//! password.

use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::api;
use crate::browser;
use crate::components::{Alert, AlertKind, AuthCard, FormBanner, FormState, RequireGuest, SubmitButton, TextField};
use crate::context::use_ui_context;

#[component]
pub fn ForgotPasswordPage() -> impl IntoView {
    view! {
        <Title text="Reset your password"/>
        <RequireGuest>
            <ForgotPasswordForm/>
        </RequireGuest>
    }
}

#[component]
fn ForgotPasswordForm() -> impl IntoView {
    let form = FormState::new();
    let email = RwSignal::new(use_query_map().with_untracked(|query| query.get("email")).unwrap_or_default());
    let sent = RwSignal::new(None::<String>);
    let dev_outbox = use_ui_context().dev_outbox;
    let on_submit = move |event: SubmitEvent| {
        event.prevent_default();
        let address = email.get_untracked();
        sent.set(None);
        form.run(async move { api::request_password_reset(&address).await }, move |reply| {
            sent.set(Some(reply.message))
        });
    };
    view! {
        <AuthCard title="Reset your password" subtitle="We email you a link to choose a new one.">
            <form id="forgot-form" class="form" method="post" novalidate=true on:submit=on_submit>
                {move || {
                    sent.get()
                        .map(|message| {
                            view! {
                                <Alert kind=AlertKind::Success title="Check your email">
                                    <span data-test="reset-sent">{message}</span>
                                    {dev_outbox
                                        .then(|| {
                                            view! {
                                                " On this development server, read it in the "
                                                <a href="/dev/outbox">"development outbox"</a>
                                                "."
                                            }
                                        })}
                                </Alert>
                            }
                        })
                }}
                <FormBanner form fields=&["email"]/>
                <TextField
                    id="forgot-email"
                    name="email"
                    label="Email"
                    kind="email"
                    value=email
                    form
                    autocomplete="email"
                    required=true
                    autofocus=true
                />
                <SubmitButton form label="Send reset link" busy_label="Sending…" class="btn btn-primary btn-block"/>
            </form>
            <p class="auth-footer"><a href="/login">"Back to sign in"</a></p>
        </AuthCard>
    }
}

/// Where a reset link leads: choose a new password, which signs out every other browser and
/// signs this one in.
#[component]
pub fn ResetPasswordPage() -> impl IntoView {
    let token = use_query_map().with_untracked(|query| query.get("token")).unwrap_or_default();
    let token = StoredValue::new(token);
    let form = FormState::new();
    let password = RwSignal::new(String::new());
    let on_submit = move |event: SubmitEvent| {
        event.prevent_default();
        let (token, password) = (token.get_value(), password.get_untracked());
        // A full load, so the server renders the home page for the new session.
        form.run(async move { api::reset_password(&token, &password).await }, move |_user| browser::go_to("/"));
    };
    let link_failed = move || {
        form.error.with(|error| {
            error.as_ref().and_then(|e| match e.code.as_str() {
                "reset_token_expired" => Some("This link has expired: reset links work for one hour."),
                "reset_token_used" => Some("This link was already used: each works once."),
                "reset_token_invalid" => Some("This link is not valid: it may be incomplete or mistyped."),
                _ => None,
            })
        })
    };
    view! {
        <Title text="Choose a new password"/>
        <AuthCard title="Choose a new password">
            {move || match link_failed() {
                Some(text) => view! {
                    <div class="stack" data-test="reset-link-failed">
                        <Alert kind=AlertKind::Error title="This link does not work">{text}</Alert>
                        <a class="btn btn-primary btn-block" href="/forgot-password">"Send a new link"</a>
                    </div>
                }
                .into_any(),
                None => view! {
                    <form id="reset-form" class="form" method="post" novalidate=true on:submit=on_submit>
                        <FormBanner form fields=&["new_password"]/>
                        <TextField
                            id="reset-password"
                            name="new_password"
                            label="New password"
                            kind="password"
                            value=password
                            form
                            autocomplete="new-password"
                            required=true
                            autofocus=true
                            hint="At least 8 characters. Every browser signed in to your account is signed out."
                        />
                        <SubmitButton form label="Set password and sign in" busy_label="Saving…" class="btn btn-primary btn-block"/>
                    </form>
                }
                .into_any(),
            }}
        </AuthCard>
    }
}
