//! Signing in and out.

use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::Redirect;
use leptos_router::hooks::use_query_map;

use crate::api;
use crate::browser;
use crate::components::{
    Alert, AlertKind, AuthCard, FormBanner, FormState, GoogleButton, GoogleError, Loading, OrDivider, RequireGuest,
    SubmitButton, TextField, sign_out,
};
use crate::context::{use_ui_context, use_viewer};
use crate::format::{encode, safe_next};
use crate::pages::verify::ResendVerification;

#[component]
pub fn LoginPage() -> impl IntoView {
    view! {
        <Title text="Sign in"/>
        <RequireGuest>
            <LoginForm/>
        </RequireGuest>
    }
}

#[component]
fn LoginForm() -> impl IntoView {
    let query = use_query_map();
    let next = query.with_untracked(|query| query.get("next"));
    let google_error = query.with_untracked(|query| query.get("error"));
    let google_next = safe_next(next.as_deref());
    let form = FormState::new();
    let email = RwSignal::new(query.with_untracked(|query| query.get("email")).unwrap_or_default());
    let password = RwSignal::new(String::new());
    let signup_open = use_ui_context().signup_open;

    let on_submit = move |event: SubmitEvent| {
        event.prevent_default();
        let (email, password) = (email.get_untracked(), password.get_untracked());
        let target = safe_next(next.as_deref());
        form.run(
            async move { api::login(&email, &password).await },
            // A full load, so the server renders the next page for the new session.
            move |_user| browser::go_to(&target),
        );
    };
    let unverified = move || form.error.with(|error| error.as_ref().is_some_and(|e| e.code == "email_not_verified"));

    view! {
        <AuthCard title="Sign in to Fleetplane">
            <GoogleError code=google_error/>
            <GoogleButton label="Sign in with Google" next=google_next/>
            <OrDivider/>
            <form id="login-form" class="form" method="post" novalidate=true on:submit=on_submit>
                <FormBanner form fields=&["email", "password"]/>
                <TextField
                    id="login-email"
                    name="email"
                    label="Email"
                    kind="email"
                    value=email
                    form
                    autocomplete="email"
                    required=true
                    autofocus=true
                />
                <TextField
                    id="login-password"
                    name="password"
                    label="Password"
                    kind="password"
                    value=password
                    form
                    autocomplete="current-password"
                    required=true
                />
                <p class="field-aside">
                    <a href=move || forgot_href(&email.get()) data-test="forgot-password-link">"Forgot password?"</a>
                </p>
                <SubmitButton form label="Sign in" busy_label="Signing in…" class="btn btn-primary btn-block"/>
            </form>
            {move || {
                unverified()
                    .then(|| {
                        view! {
                            <div class="resend-block" data-test="email-not-verified">
                                <ResendVerification email=Some(email.get_untracked())/>
                            </div>
                        }
                    })
            }}
            {signup_open
                .then(|| {
                    view! { <p class="auth-footer">"New to Fleetplane? " <a href="/signup">"Create an account"</a></p> }
                })}
        </AuthCard>
    }
}

/// The "forgot password" page, with the address typed so far.
fn forgot_href(email: &str) -> String {
    match email.trim() {
        "" => "/forgot-password".to_owned(),
        email => format!("/forgot-password?email={}", encode(email)),
    }
}

/// Signs out as soon as the page runs in the browser, then goes to the sign-in page.
#[component]
pub fn LogoutPage() -> impl IntoView {
    if use_viewer().is_none() {
        return view! { <Redirect path="/login"/> }.into_any();
    }
    let form = FormState::new();
    Effect::new(move |_| sign_out(form));
    view! {
        <Title text="Signing out"/>
        <AuthCard title="Signing out">
            {move || match form.error.get() {
                None => view! { <Loading label="Signing you out…" spinner=true/> }.into_any(),
                Some(error) => view! {
                    <div class="stack">
                        <Alert kind=AlertKind::Error title="Could not sign you out">{error.message().to_owned()}</Alert>
                        <button type="button" class="btn btn-primary btn-block" on:click=move |_| sign_out(form)>
                            "Try again"
                        </button>
                    </div>
                }
                .into_any(),
            }}
        </AuthCard>
    }
    .into_any()
}
