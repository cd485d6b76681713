//! Creating an account: the sign-up form and the "check your email" page after it.

use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_navigate, use_query_map};

use crate::api;
use crate::components::{
    Alert, AlertKind, AuthCard, FormBanner, FormState, GoogleButton, OrDivider, RequireGuest, SubmitButton, TextField,
};
use crate::context::use_ui_context;
use crate::format::encode;
use crate::pages::verify::ResendVerification;

#[component]
pub fn SignupPage() -> impl IntoView {
    view! {
        <Title text="Create your account"/>
        <RequireGuest>
            <SignupForm/>
        </RequireGuest>
    }
}

#[component]
fn SignupForm() -> impl IntoView {
    if !use_ui_context().signup_open {
        return view! {
            <AuthCard title="Sign-up is closed">
                <Alert kind=AlertKind::Info>
                    "This Fleetplane server does not accept new accounts. Ask an administrator to add you."
                </Alert>
                <p class="auth-footer">"Already have an account? " <a href="/login">"Sign in"</a></p>
            </AuthCard>
        }
        .into_any();
    }

    let form = FormState::new();
    // An invitation's link names the invited address.
    let email = RwSignal::new(use_query_map().with_untracked(|query| query.get("email")).unwrap_or_default());
    let username = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let navigate = use_navigate();
    let on_submit = move |event: SubmitEvent| {
        event.prevent_default();
        let (email, username, password) = (email.get_untracked(), username.get_untracked(), password.get_untracked());
        let navigate = navigate.clone();
        let address = email.trim().to_owned();
        form.run(async move { api::signup(&email, &username, &password).await }, move |_sent| {
            let next = format!("/signup/check-email?email={}", encode(&address));
            navigate(&next, Default::default());
        });
    };

    view! {
        <AuthCard title="Create your account" subtitle="Run Kubernetes clusters on AWS, Azure and GCP from one place.">
            <GoogleButton label="Sign up with Google"/>
            <OrDivider/>
            <form id="signup-form" class="form" method="post" novalidate=true on:submit=on_submit>
                <FormBanner form fields=&["email", "username", "password"]/>
                <TextField
                    id="signup-email"
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
                    id="signup-username"
                    name="username"
                    label="Username"
                    value=username
                    form
                    autocomplete="username"
                    required=true
                    hint="How your teammates see you. You can change it later."
                />
                <TextField
                    id="signup-password"
                    name="password"
                    label="Password"
                    kind="password"
                    value=password
                    form
                    autocomplete="new-password"
                    required=true
                    hint="At least 8 characters."
                />
                <SubmitButton form label="Create account" busy_label="Creating account…" class="btn btn-primary btn-block"/>
            </form>
            <p class="auth-footer">"Already have an account? " <a href="/login">"Sign in"</a></p>
        </AuthCard>
    }
    .into_any()
}

/// Where sign-up leads: says where the verification mail went and offers to send it again.
#[component]
pub fn CheckEmailPage() -> impl IntoView {
    let email = use_query_map().with_untracked(|query| query.get("email"));
    let dev_outbox = use_ui_context().dev_outbox;
    view! {
        <Title text="Check your email"/>
        <AuthCard title="Check your email">
            <div class="stack">
                {match email.clone() {
                    Some(address) => view! {
                        <p class="lead">
                            "We sent a verification link to "
                            <strong data-test="check-email-address">{address}</strong>
                            ". Open its link and enter the password you just chose to activate your account."
                        </p>
                    }
                    .into_any(),
                    None => view! {
                        <p class="lead">"We sent you a verification link. Open it and enter your password to activate your account."</p>
                    }
                    .into_any(),
                }}
                {dev_outbox
                    .then(|| {
                        view! {
                            <Alert kind=AlertKind::Info title="Development server">
                                "Mail is not delivered from here. Read it in the "
                                <a href="/dev/outbox" data-test="dev-outbox-link">"development outbox"</a>
                                "."
                            </Alert>
                        }
                    })}
                <ResendVerification email=email/>
            </div>
            <p class="auth-footer"><a href="/login">"Back to sign in"</a></p>
        </AuthCard>
    }
}
