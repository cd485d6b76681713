//! Account settings: username, password, linked Google account, API tokens, sessions.

use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;
use uuid::Uuid;

use crate::api::{self, CreatedToken, Session, Token};
use crate::browser;
use crate::components::{
    Alert, AlertKind, Card, ConfirmButton, CopyButton, EmptyState, FormBanner, FormState, GoogleButton, GoogleError,
    LoadError, Loading, PageHeader, RequireViewer, SelectField, SubmitButton, TextField, Time,
};
use crate::context::{use_ui_context, use_viewer};
use crate::format;
use crate::pages::audit::AuditLog;

#[component]
pub fn SettingsPage() -> impl IntoView {
    view! {
        <Title text="Account settings"/>
        <RequireViewer>
            <SettingsContent/>
        </RequireViewer>
    }
}

#[component]
fn SettingsContent() -> impl IntoView {
    // Account changes reload the page (the session cookie changes with them); `saved` says
    // which one succeeded.
    let (saved, linked, error) =
        use_query_map().with_untracked(|query| (query.get("saved"), query.get("linked"), query.get("error")));
    let notice = match (saved.as_deref(), linked.as_deref()) {
        (Some("username"), _) => Some("Your username was changed."),
        (Some("password"), _) => Some("Your password was changed. Other sessions were signed out."),
        (_, Some("google")) => Some("Your Google account is linked: you can sign in with it from now on."),
        _ => None,
    };
    let has_password = use_viewer().is_some_and(|viewer| viewer.has_password);
    let (password_title, password_description) = if has_password {
        ("Password", "Changing it signs out your other sessions.")
    } else {
        ("Set a password", "You sign in with Google. A password lets you sign in without it, too.")
    };
    let show_linked = use_ui_context().google_sign_in || !has_password;
    view! {
        <PageHeader title="Account settings" subtitle="Your profile, password, API tokens and sessions."/>
        {notice.map(|text| view! { <Alert kind=AlertKind::Success>{text}</Alert> })}
        <GoogleError code=error linking=true/>
        <div class="sections">
            <Card title="Profile" id="profile" aside=true description="How you appear to your teammates.">
                <ProfileSection/>
            </Card>
            <Card title=password_title id="password" aside=true description=password_description>
                <PasswordForm has_password/>
            </Card>
            {show_linked
                .then(|| {
                    view! {
                        <Card
                            title="Linked accounts"
                            id="linked"
                            aside=true
                            description="Sign in with your Google account instead of a password."
                        >
                            <LinkedAccounts has_password/>
                        </Card>
                    }
                })}
            <Card
                title="API tokens"
                id="tokens"
                aside=true
                description="Personal tokens let scripts and the CLI call the API as you: send one in an “Authorization: Bearer” header."
            >
                <Tokens/>
            </Card>
            <Card
                title="Sessions"
                id="sessions"
                aside=true
                description="The browsers signed in to your account. Revoke one you do not recognise: it is signed out at once."
            >
                <Sessions/>
            </Card>
            <Card
                title="Account activity"
                id="activity"
                aside=true
                description="Sign-ins, password, session and token changes on your account. Only you see these: organizations you belong to do not."
            >
                <AuditLog org=Signal::derive(|| None) empty="Sign-ins and changes to your account will appear here."/>
            </Card>
            <Card
                title="Sign out everywhere"
                id="sign-out-everywhere"
                danger=true
                aside=true
                description="Sign out of every browser and device, including this one. API tokens keep working."
            >
                <SignOutEverywhere/>
            </Card>
        </div>
    }
}

#[component]
fn ProfileSection() -> impl IntoView {
    let viewer = use_viewer().unwrap_or_default();
    let form = FormState::new();
    let username = RwSignal::new(viewer.username.clone());
    let on_submit = move |event: SubmitEvent| {
        event.prevent_default();
        let username = username.get_untracked();
        form.run(async move { api::change_username(&username).await }, |_user| {
            browser::go_to("/settings?saved=username")
        });
    };
    view! {
        <dl class="details">
            <div>
                <dt>"Email"</dt>
                <dd data-test="account-email">{viewer.email}</dd>
            </div>
        </dl>
        <form id="username-form" class="form form-inline" method="post" novalidate=true on:submit=on_submit>
            <FormBanner form fields=&["username"]/>
            <TextField
                id="settings-username"
                name="username"
                label="Username"
                value=username
                form
                autocomplete="username"
                required=true
            />
            <SubmitButton form label="Save username" busy_label="Saving…" class="btn btn-secondary"/>
        </form>
    }
}

#[component]
fn PasswordForm(has_password: bool) -> impl IntoView {
    let form = FormState::new();
    let current = RwSignal::new(String::new());
    let new = RwSignal::new(String::new());
    let on_submit = move |event: SubmitEvent| {
        event.prevent_default();
        let (current, new) = (current.get_untracked(), new.get_untracked());
        form.run(async move { api::change_password(&current, &new).await }, |()| {
            browser::go_to("/settings?saved=password")
        });
    };
    view! {
        <form id="password-form" class="form" method="post" novalidate=true on:submit=on_submit>
            <FormBanner form fields=&["current_password", "new_password"]/>
            // Lets password managers tie the new password to this account.
            <input type="text" name="account" autocomplete="username" class="visually-hidden" tabindex="-1" aria-hidden="true" readonly=true prop:value=use_viewer().map(|v| v.email).unwrap_or_default()/>
            <div class="form-row">
                {has_password
                    .then(|| {
                        view! {
                            <TextField
                                id="current-password"
                                name="current_password"
                                label="Current password"
                                kind="password"
                                value=current
                                form
                                autocomplete="current-password"
                                required=true
                            />
                        }
                    })}
                <TextField
                    id="new-password"
                    name="new_password"
                    label="New password"
                    kind="password"
                    value=new
                    form
                    autocomplete="new-password"
                    required=true
                    hint="At least 8 characters, different from the current one."
                />
            </div>
            <SubmitButton
                form
                label=if has_password { "Change password" } else { "Set password" }
                busy_label="Saving…"
                class="btn btn-secondary"
            />
        </form>
    }
}

#[component]
fn LinkedAccounts(has_password: bool) -> impl IntoView {
    let identities = LocalResource::new(api::list_identities);
    let unlink = FormState::new();
    let on_unlink = Callback::new(move |provider: String| {
        unlink.run(async move { api::unlink_identity(&provider).await }, move |()| identities.refetch());
    });
    view! {
        <div class="stack">
            <FormBanner form=unlink fields=&[]/>
            <Suspense fallback=|| view! { <Loading/> }>
                {move || {
                    identities
                        .get()
                        .map(|result| match result {
                            Err(error) => view! { <LoadError error/> }.into_any(),
                            Ok(list) if list.is_empty() => view! {
                                <p class="muted">"No Google account is linked."</p>
                                <div class="actions-row">
                                    <GoogleButton label="Link a Google account" link=true/>
                                </div>
                            }
                            .into_any(),
                            Ok(list) => list
                                .into_iter()
                                .map(|identity| view! { <LinkedGoogle identity has_password busy=unlink.busy on_unlink/> })
                                .collect_view()
                                .into_any(),
                        })
                }}
            </Suspense>
        </div>
    }
}

#[component]
fn LinkedGoogle(
    identity: api::LinkedIdentity,
    has_password: bool,
    busy: RwSignal<bool>,
    on_unlink: Callback<String>,
) -> impl IntoView {
    let provider = identity.provider.clone();
    view! {
        <dl class="details" data-test="linked-identity">
            <div>
                <dt>"Google"</dt>
                <dd data-test="linked-email">{identity.email.clone()}</dd>
            </div>
            <div>
                <dt>"Linked"</dt>
                <dd><Time value=identity.linked_at/></dd>
            </div>
        </dl>
        {if has_password {
            view! {
                <ConfirmButton
                    label="Unlink Google"
                    prompt=format!("Unlink {}? You will sign in with your password only.", identity.email)
                    confirm_label="Unlink"
                    busy=busy
                    test="unlink-google"
                    on_confirm=move |()| on_unlink.run(provider.clone())
                />
            }
            .into_any()
        } else {
            view! {
                <p class="muted" data-test="unlink-needs-password">
                    "To unlink Google, set a password first: otherwise you could not sign in."
                </p>
            }
            .into_any()
        }}
    }
}

#[component]
fn Tokens() -> impl IntoView {
    let tokens = LocalResource::new(api::list_tokens);
    let created = RwSignal::new(None::<CreatedToken>);
    let revoke = FormState::new();
    let on_revoke = Callback::new(move |id: Uuid| {
        revoke.run(async move { api::revoke_token(id).await }, move |()| tokens.refetch());
    });
    view! {
        <div class="stack">
            {move || created.get().map(|token| view! { <NewTokenPanel token on_done=move || created.set(None)/> })}
            <FormBanner form=revoke fields=&[]/>
            <Suspense fallback=|| view! { <Loading/> }>
                {move || {
                    tokens
                        .get()
                        .map(|result| match result {
                            Err(error) => view! { <LoadError error/> }.into_any(),
                            Ok(list) if list.is_empty() => view! {
                                <EmptyState title="No tokens">"Create one below to use the API from a script."</EmptyState>
                            }
                            .into_any(),
                            Ok(list) => view! { <TokenTable list busy=revoke.busy on_revoke/> }.into_any(),
                        })
                }}
            </Suspense>
            <CreateTokenForm on_created=Callback::new(move |token: CreatedToken| {
                created.set(Some(token));
                tokens.refetch();
            })/>
        </div>
    }
}

#[component]
fn TokenTable(list: Vec<Token>, busy: RwSignal<bool>, on_revoke: Callback<Uuid>) -> impl IntoView {
    view! {
        <div class="table-wrap">
            <table class="table table-stack" data-test="token-table">
                <thead>
                    <tr>
                        <th scope="col">"Name"</th>
                        <th scope="col">"Token"</th>
                        <th scope="col">"Created"</th>
                        <th scope="col">"Expires"</th>
                        <th scope="col">"Last used"</th>
                        <th scope="col"><span class="visually-hidden">"Actions"</span></th>
                    </tr>
                </thead>
                <tbody>
                    {list
                        .into_iter()
                        .map(|token| {
                            let id = token.id;
                            let prompt = format!("Revoke “{}”?", token.name);
                            view! {
                                <tr data-test="token-row" data-token-id=token.id.to_string()>
                                    <td class="strong">{token.name}</td>
                                    <td data-label="Token"><code class="mono">{token.prefix}"…"</code></td>
                                    <td data-label="Created"><Time value=token.created_at date_only=true/></td>
                                    <td data-label="Expires">
                                        {match token.expires_at {
                                            Some(at) => view! { <Time value=at date_only=true/> }.into_any(),
                                            None => view! { <span class="muted">"Never"</span> }.into_any(),
                                        }}
                                    </td>
                                    <td data-label="Last used">
                                        {match token.last_used_at {
                                            Some(at) => view! { <Time value=at/> }.into_any(),
                                            None => view! { <span class="muted">"Never used"</span> }.into_any(),
                                        }}
                                    </td>
                                    <td class="actions">
                                        <ConfirmButton
                                            label="Revoke"
                                            prompt=prompt
                                            confirm_label="Revoke"
                                            busy=busy
                                            test="revoke-token"
                                            on_confirm=move |()| on_revoke.run(id)
                                        />
                                    </td>
                                </tr>
                            }
                        })
                        .collect_view()}
                </tbody>
            </table>
        </div>
    }
}

/// Expiry choices, in days; the empty value means "never".
const EXPIRY_OPTIONS: [(&str, &str); 5] =
    [("7", "7 days"), ("30", "30 days"), ("90", "90 days"), ("365", "1 year"), ("", "Never")];

#[component]
fn CreateTokenForm(on_created: Callback<CreatedToken>) -> impl IntoView {
    let form = FormState::new();
    let name = RwSignal::new(String::new());
    let expires = RwSignal::new("30".to_owned());
    let on_submit = move |event: SubmitEvent| {
        event.prevent_default();
        let name_value = name.get_untracked();
        let days = expires.get_untracked().parse::<u32>().ok();
        form.run(async move { api::create_token(&name_value, days).await }, move |token| {
            name.set(String::new());
            on_created.run(token);
        });
    };
    view! {
        <form id="token-form" class="form form-inline token-create" method="post" novalidate=true on:submit=on_submit>
            <FormBanner form fields=&["name", "expires_in_days"]/>
            <TextField
                id="token-name"
                name="name"
                label="Token name"
                value=name
                form
                autocomplete="off"
                placeholder="ci-deploy"
                required=true
            />
            <SelectField
                id="token-expiry"
                name="expires_in_days"
                label="Expires after"
                value=expires
                form
                options=EXPIRY_OPTIONS.to_vec()
            />
            <SubmitButton form label="Create token" busy_label="Creating…" class="btn btn-secondary"/>
        </form>
    }
}

/// Shows a new token's secret, once, with a copy button.
#[component]
fn NewTokenPanel(token: CreatedToken, on_done: impl Fn() + 'static) -> impl IntoView {
    let secret = StoredValue::new(token.token);
    view! {
        <div class="token-reveal" data-test="new-token-panel">
            <Alert kind=AlertKind::Success title=format!("Token “{}” created", token.info.name)>
                "Copy it now. It will not be shown again."
            </Alert>
            <div class="copy-field">
                <label for="new-token" class="visually-hidden">"New API token"</label>
                <input
                    id="new-token"
                    class="input mono"
                    readonly=true
                    data-test="new-token"
                    prop:value=secret.get_value()
                    value=secret.get_value()
                    on:focus=move |event| {
                        use leptos::wasm_bindgen::JsCast;
                        if let Some(input) = event
                            .target()
                            .and_then(|t| t.dyn_into::<leptos::web_sys::HtmlInputElement>().ok())
                        {
                            input.select();
                        }
                    }
                />
                <CopyButton text=secret.get_value() test="copy-token" class="btn btn-primary"/>
            </div>
            <button type="button" class="btn btn-link" on:click=move |_| on_done()>"Done"</button>
        </div>
    }
}

#[component]
fn Sessions() -> impl IntoView {
    let sessions = LocalResource::new(api::list_sessions);
    let revoke = FormState::new();
    let on_revoke = Callback::new(move |(id, current): (Uuid, bool)| {
        revoke.run(async move { api::revoke_session(id).await }, move |()| {
            if current {
                // This browser's own session: it is signed out now.
                browser::go_to("/login");
            } else {
                sessions.refetch();
            }
        });
    });
    view! {
        <div class="stack">
            <FormBanner form=revoke fields=&[]/>
            <Suspense fallback=|| view! { <Loading/> }>
                {move || {
                    sessions
                        .get()
                        .map(|result| match result {
                            Err(error) => view! { <LoadError error/> }.into_any(),
                            // Signed in with a token only: there is no browser session to show.
                            Ok(list) if list.is_empty() => view! {
                                <EmptyState title="No browser sessions">"Nothing is signed in with a password or Google."</EmptyState>
                            }
                            .into_any(),
                            Ok(list) => view! { <SessionTable list busy=revoke.busy on_revoke/> }.into_any(),
                        })
                }}
            </Suspense>
        </div>
    }
}

#[component]
fn SessionTable(list: Vec<Session>, busy: RwSignal<bool>, on_revoke: Callback<(Uuid, bool)>) -> impl IntoView {
    view! {
        <div class="table-wrap">
            <table class="table table-stack" data-test="session-table">
                <thead>
                    <tr>
                        <th scope="col">"Browser"</th>
                        <th scope="col">"IP address"</th>
                        <th scope="col">"Signed in"</th>
                        <th scope="col">"Last seen"</th>
                        <th scope="col"><span class="visually-hidden">"Actions"</span></th>
                    </tr>
                </thead>
                <tbody>
                    {list
                        .into_iter()
                        .map(|session| {
                            let browser = format::browser_name(&session.user_agent);
                            let (id, current) = (session.id, session.current);
                            let prompt = if current {
                                "Revoke this session? You will be signed out here.".to_owned()
                            } else {
                                format!("Revoke the session of {browser} from {}? It is signed out at once.", session.ip)
                            };
                            view! {
                                <tr data-test="session-row" data-session-id=session.id.to_string() data-current=current.to_string()>
                                    <td class="strong" title=session.user_agent.clone()>
                                        {browser}
                                        {current.then(|| view! { <span class="badge badge-success badge-inline" data-test="current-session">"This browser"</span> })}
                                    </td>
                                    <td data-label="IP address"><code class="mono">{session.ip.clone()}</code></td>
                                    <td data-label="Signed in"><Time value=session.created_at/></td>
                                    <td data-label="Last seen"><Time value=session.last_seen_at/></td>
                                    <td class="actions">
                                        <ConfirmButton
                                            label="Revoke"
                                            prompt=prompt
                                            confirm_label="Revoke"
                                            busy=busy
                                            test="revoke-session"
                                            on_confirm=move |()| on_revoke.run((id, current))
                                        />
                                    </td>
                                </tr>
                            }
                        })
                        .collect_view()}
                </tbody>
            </table>
        </div>
    }
}

#[component]
fn SignOutEverywhere() -> impl IntoView {
    let form = FormState::new();
    let on_submit = move |event: SubmitEvent| {
        event.prevent_default();
        form.run(api::logout_everywhere(), |()| browser::go_to("/login"));
    };
    view! {
        <form id="logout-all-form" class="form" method="post" on:submit=on_submit>
            <FormBanner form fields=&[]/>
            <div>
                <SubmitButton form label="Sign out everywhere" busy_label="Signing out…" class="btn btn-danger"/>
            </div>
        </form>
    }
}
