//! An organization's cloud accounts: the AWS, Azure and GCP credentials its clusters are
//! created with.
//!
//! Everyone in the organization sees the list and each account's storage; operators and above
//! can check an account again; admins and owners add, change and remove accounts.
//!
//! Secrets live only in the inputs they are typed into and the request that sends them:
//! switching provider, a successful submit and closing a panel all empty them.

use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;
use uuid::Uuid;

use crate::api::{
    self, AccountStatus, AwsCredentials, AzureCredentials, Bucket, CloudAccount, CloudIdentity, Credentials,
    Environment, GcpCredentials, Org, Provider,
};
use crate::components::{
    ActionButton, Alert, AlertKind, Card, ConfirmButton, EmptyState, FileField, FormBanner, FormState, LoadError,
    Loading, PageHeader, ProviderBadge, RequireViewer, RoleBadge, SelectField, SubmitButton, TextField, Time,
};
use crate::format::encode;
use crate::pages::org::use_org_name;

/// The largest service-account key file the picker reads; real ones are about 2 KB.
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// The credential inputs, named after the fields of the API's `credentials` object.
const CREDENTIAL_FIELDS: &[&str] = &[
    "access_key_id",
    "secret_access_key",
    "role_arn",
    "external_id",
    "tenant_id",
    "client_id",
    "client_secret",
    "subscription_id",
    "service_account_json",
];

/// Every input of the add form, for its banner (see [`FormState::banner`]).
const ADD_FIELDS: &[&str] = &[
    "provider",
    "name",
    "environment",
    "access_key_id",
    "secret_access_key",
    "role_arn",
    "external_id",
    "tenant_id",
    "client_id",
    "client_secret",
    "subscription_id",
    "service_account_json",
];

/// How many columns the accounts table has (the actions row spans them all).
const COLUMNS: &str = "5";

#[component]
pub fn CloudAccountsPage() -> impl IntoView {
    view! {
        <Title text="Cloud accounts"/>
        <RequireViewer>
            <CloudAccountsContent/>
        </RequireViewer>
    }
}

#[component]
fn CloudAccountsContent() -> impl IntoView {
    let name = use_org_name();
    let org = LocalResource::new(move || {
        let name = name.get();
        async move { api::get_org(&name).await }
    });
    let loaded = move || org.get().and_then(Result::ok);
    let org_title = move || loaded().map(|org| org.title().to_owned()).unwrap_or_else(|| name.get());
    let back = move || format!("/orgs/{}", encode(&name.get()));

    view! {
        <PageHeader
            title="Cloud accounts"
            subtitle=Signal::derive(move || {
                format!("The AWS, Azure and GCP credentials {} creates clusters with.", org_title())
            })
            eyebrow=Box::new(move || view! { <A href=back>"← " {move || name.get()}</A> }.into_any())
            actions=Box::new(move || {
                view! {
                    {move || {
                        loaded()
                            .map(|org| {
                                view! {
                                    <RoleBadge role=org.role/>
                                    {org.role.manages_cloud_accounts().then(|| view! { <AddAccountLink/> })}
                                }
                            })
                    }}
                }
                .into_any()
            })
        />
        <Suspense fallback=|| view! { <Loading/> }>
            {move || {
                org.get()
                    .map(|result| match result {
                        Err(error) => view! { <LoadError error/> }.into_any(),
                        Ok(org) => view! { <Accounts org/> }.into_any(),
                    })
            }}
        </Suspense>
    }
}

/// A link to the add form further down the page (a plain fragment link, outside the router).
#[component]
fn AddAccountLink() -> impl IntoView {
    view! {
        <a href="#add-account" rel="external" class="btn btn-primary" data-test="add-account-link">
            "Add account"
        </a>
    }
}

/// Which inline panel of an account is open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Panel {
    Edit,
    Rotate,
    Buckets,
}

/// What the parts of the page share: the list as the browser knows it, and who may do what.
#[derive(Clone, Copy)]
struct AccountsPage {
    org: StoredValue<String>,
    accounts: RwSignal<Vec<CloudAccount>>,
    /// The one open panel on the page, so that the panel forms' element ids stay unique.
    open: RwSignal<Option<(Uuid, Panel)>>,
    /// What the last action on the list did; one message at a time, so they never pile up.
    outcome: RwSignal<Option<Outcome>>,
    /// Admins and owners: add, rename, rotate, delete.
    manage: bool,
    /// Operators and above: verify.
    operate: bool,
}

/// The message an action leaves.
#[derive(Clone, Debug, PartialEq)]
struct Outcome {
    /// The row it is shown in; `None` above the list (the row may be gone).
    account: Option<Uuid>,
    kind: AlertKind,
    text: String,
}

impl AccountsPage {
    // These run when a request finishes, which may be after the page is gone: hence `try_`.

    fn say(self, account: Option<Uuid>, kind: AlertKind, text: String) {
        self.outcome.try_set(Some(Outcome { account, kind, text }));
    }

    /// The outcome to show in `account`'s row (or above the list for `None`).
    fn outcome_for(self, account: Option<Uuid>) -> impl Fn() -> Option<AnyView> {
        move || {
            let outcome = self.outcome.get().filter(|outcome| outcome.account == account)?;
            Some(view! { <Alert kind=outcome.kind>{outcome.text}</Alert> }.into_any())
        }
    }

    fn add(self, account: CloudAccount) {
        self.accounts.try_update(|list| {
            list.retain(|known| known.id != account.id);
            list.insert(0, account);
        });
    }

    fn replace(self, account: CloudAccount) {
        self.accounts.try_update(|list| {
            if let Some(known) = list.iter_mut().find(|known| known.id == account.id) {
                *known = account;
            }
        });
    }

    fn remove(self, id: Uuid) {
        self.accounts.try_update(|list| list.retain(|known| known.id != id));
        self.open.try_update(|open| {
            if open.is_some_and(|(open_id, _)| open_id == id) {
                *open = None;
            }
        });
    }
}

#[component]
fn Accounts(org: Org) -> impl IntoView {
    let page = AccountsPage {
        org: StoredValue::new(org.name.clone()),
        accounts: RwSignal::new(Vec::new()),
        open: RwSignal::new(None),
        outcome: RwSignal::new(None),
        manage: org.role.manages_cloud_accounts(),
        operate: org.role.uses_cloud_accounts(),
    };
    let load = FormState::new();
    let loaded = RwSignal::new(false);
    // The list loads once the page runs in the browser.
    Effect::new(move |_| {
        let org = page.org.get_value();
        load.run(async move { api::list_cloud_accounts(&org).await }, move |list| {
            page.accounts.set(list);
            loaded.set(true);
        });
    });
    // Only a change between empty and not swaps the table for the empty state: rows keep
    // their open panels and messages while accounts come and go.
    let empty = Memo::new(move |_| page.accounts.with(Vec::is_empty));

    view! {
        <div class="stack-lg">
            <Card title="Accounts">
                <div class="stack">
                    {page.outcome_for(None)}
                    {move || {
                        if !loaded.get() {
                            return match load.error.get() {
                                Some(error) => view! { <LoadError error/> }.into_any(),
                                None => view! { <Loading/> }.into_any(),
                            };
                        }
                        if empty.get() {
                            return view! { <NoAccounts manage=page.manage/> }.into_any();
                        }
                        view! { <AccountTable page/> }.into_any()
                    }}
                </div>
            </Card>
            {if page.manage {
                view! {
                    <Card
                        title="Add an account"
                        id="add-account"
                        description="Fleetplane checks the credentials with the cloud before it saves them. Secrets are stored encrypted and never shown again."
                    >
                        <AddAccountForm page/>
                    </Card>
                }
                .into_any()
            } else {
                view! {
                    <Alert kind=AlertKind::Info>
                        "Only owners and admins can add cloud accounts or change their credentials."
                    </Alert>
                }
                .into_any()
            }}
        </div>
    }
}

#[component]
fn NoAccounts(manage: bool) -> impl IntoView {
    view! {
        <EmptyState title="No cloud accounts yet">
            {if manage {
                view! {
                    <p>"Connect an AWS, Azure or GCP account to create clusters in it."</p>
                    <div class="empty-action">
                        <AddAccountLink/>
                    </div>
                }
                .into_any()
            } else {
                view! { <p>"An owner or admin of this organization can connect one."</p> }.into_any()
            }}
        </EmptyState>
    }
}

#[component]
fn AccountTable(page: AccountsPage) -> impl IntoView {
    view! {
        <div class="table-wrap">
            <table class="table table-stack account-table" data-test="cloud-account-table">
                <thead>
                    <tr>
                        <th scope="col">"Account"</th>
                        <th scope="col">"Environment"</th>
                        <th scope="col">"Status"</th>
                        <th scope="col">"Identity"</th>
                        <th scope="col">"Last verified"</th>
                    </tr>
                </thead>
                <For each=move || page.accounts.get() key=|account| account.id let:account>
                    <AccountRow page id=account.id provider=account.provider/>
                </For>
            </table>
        </div>
    }
}

/// One account: its row of facts and, below it, its actions and open panel. Both rows sit in
/// one `<tbody>`, the element the `cloud-account-row` hook names.
#[component]
fn AccountRow(page: AccountsPage, id: Uuid, provider: Provider) -> impl IntoView {
    let account = Memo::new(move |_| page.accounts.with(|list| list.iter().find(|known| known.id == id).cloned()));
    let name = Memo::new(move |_| account.with(|account| account.as_ref().map(|a| a.name.clone()).unwrap_or_default()));
    let status = move || account.with(|account| account.as_ref().map(|a| a.status.as_str()));
    view! {
        <tbody
            class="account"
            data-test="cloud-account-row"
            data-account-id=id.to_string()
            data-name=move || name.get()
            data-provider=provider.as_str()
            data-status=status
        >
            <tr>{move || account.get().map(|account| view! { <AccountCells account/> })}</tr>
            <tr class="account-actions-row">
                <td colspan=COLUMNS>
                    <AccountActions page id provider name/>
                </td>
            </tr>
        </tbody>
    }
}

#[component]
fn AccountCells(account: CloudAccount) -> impl IntoView {
    let reason = account.status_reason.clone().filter(|_| account.status != AccountStatus::Verified);
    let checked = format!("Checked {}", crate::format::timestamp(account.checked_at));
    view! {
        <td>
            <div class="account-name">
                <ProviderBadge provider=account.provider/>
                <div class="account-name-text">
                    <span class="strong">{account.name}</span>
                    <code class="secret-hint" title="The stored secret, masked" data-test="secret-hint">
                        {account.secret_hint}
                    </code>
                </div>
            </div>
        </td>
        <td data-label="Environment">
            <EnvironmentBadge environment=account.environment/>
        </td>
        <td class="status-cell" data-label="Status">
            <span
                class=format!("badge {}", status_class(account.status))
                data-test="cloud-account-status"
                title=checked
            >
                {account.status.label()}
            </span>
            {reason.map(|reason| view! { <p class="status-reason" data-test="cloud-account-status-reason">{reason}</p> })}
        </td>
        <td class="identity-cell" data-label="Identity" data-test="cloud-account-identity">
            <IdentityDetails identity=account.identity/>
        </td>
        <td data-label="Last verified">
            {match account.verified_at {
                Some(at) => view! { <Time value=at/> }.into_any(),
                None => view! { <span class="muted">"Never"</span> }.into_any(),
            }}
        </td>
    }
}

fn status_class(status: AccountStatus) -> &'static str {
    match status {
        AccountStatus::Verified => "badge-success",
        AccountStatus::Invalid => "badge-danger",
        AccountStatus::Unreachable => "badge-warning",
    }
}

/// Production stands out; other environments are plain.
#[component]
fn EnvironmentBadge(environment: Environment) -> impl IntoView {
    let class = if environment == Environment::Prod { "badge badge-warning" } else { "badge badge-neutral" };
    view! {
        <span class=class data-test="environment-badge" data-environment=environment.as_str()>
            {environment.label()}
        </span>
    }
}

/// Who the credentials turned out to be, as the cloud said at the last successful check.
#[component]
fn IdentityDetails(identity: Option<CloudIdentity>) -> impl IntoView {
    let Some(identity) = identity else {
        return view! { <span class="muted">"Not verified yet"</span> }.into_any();
    };
    match identity {
        CloudIdentity::Aws { account_id, arn, source_arn } => view! {
            <dl class="identity">
                <div>
                    <dt>"Account"</dt>
                    <dd class="mono">{account_id}</dd>
                </div>
                <div>
                    <dt>"ARN"</dt>
                    <dd class="mono">{arn}</dd>
                </div>
                {source_arn
                    .map(|source| {
                        view! {
                            <div>
                                <dt>"Key of"</dt>
                                <dd class="mono">{source}</dd>
                            </div>
                        }
                    })}
            </dl>
        }
        .into_any(),
        CloudIdentity::Azure { tenant_id, subscriptions } => view! {
            <dl class="identity">
                <div>
                    <dt>"Tenant"</dt>
                    <dd class="mono">{tenant_id}</dd>
                </div>
                <div>
                    <dt>"Subscriptions"</dt>
                    <dd>
                        {if subscriptions.is_empty() {
                            view! { <span class="muted">"None visible"</span> }.into_any()
                        } else {
                            view! {
                                <ul class="identity-list">
                                    {subscriptions
                                        .into_iter()
                                        .map(|subscription| {
                                            let name = if subscription.name.is_empty() {
                                                subscription.id.clone()
                                            } else {
                                                subscription.name
                                            };
                                            view! {
                                                <li>
                                                    <span>{name}</span>
                                                    " "
                                                    <span class="mono muted">{subscription.id}</span>
                                                </li>
                                            }
                                        })
                                        .collect_view()}
                                </ul>
                            }
                            .into_any()
                        }}
                    </dd>
                </div>
            </dl>
        }
        .into_any(),
        CloudIdentity::Gcp { project_id, client_email } => view! {
            <dl class="identity">
                <div>
                    <dt>"Project"</dt>
                    <dd class="mono">{project_id}</dd>
                </div>
                <div>
                    <dt>"Account"</dt>
                    <dd class="mono">{client_email}</dd>
                </div>
            </dl>
        }
        .into_any(),
    }
}

/// An account's buttons, the messages their outcomes leave, and the open panel.
#[component]
fn AccountActions(page: AccountsPage, id: Uuid, provider: Provider, name: Memo<String>) -> impl IntoView {
    let verify = FormState::new();
    let delete = FormState::new();
    let panel =
        Memo::new(move |_| page.open.with(|open| open.filter(|(open_id, _)| *open_id == id).map(|(_, panel)| panel)));
    let toggle = move |which: Panel| {
        page.outcome.set(None);
        let next = (panel.get_untracked() != Some(which)).then_some((id, which));
        page.open.set(next);
    };
    let close = Callback::new(move |()| page.open.set(None));
    let on_verify = move |()| {
        page.outcome.set(None);
        let org = page.org.get_value();
        let request = async move {
            let result = api::verify_cloud_account(&org, id).await;
            // An unreachable cloud is recorded on the account too: show that status.
            if result.as_ref().is_err_and(|error| error.code == "cloud_unreachable")
                && let Ok(account) = api::get_cloud_account(&org, id).await
            {
                page.replace(account);
            }
            result
        };
        verify.run(request, move |account| {
            let (kind, text) = check_outcome(&account);
            page.say(Some(account.id), kind, text);
            page.replace(account);
        });
    };
    let on_delete = Callback::new(move |()| {
        page.outcome.set(None);
        let org = page.org.get_value();
        let deleted = name.get_untracked();
        delete.run(async move { api::delete_cloud_account(&org, id).await }, move |()| {
            page.say(None, AlertKind::Success, format!("Deleted “{deleted}”."));
            page.remove(id);
        });
    });
    let on_saved = Callback::new(move |(account, message): (CloudAccount, String)| {
        page.open.set(None);
        page.say(Some(account.id), AlertKind::Success, message);
        page.replace(account);
    });

    let panel_id = move || format!("account-panel-{id}");
    let expanded = move |which: Panel| move || if panel.get() == Some(which) { "true" } else { "false" };
    view! {
        <div class="account-actions">
            <div class="row-actions" role="group" aria-label=move || format!("Actions for {}", name.get())>
                {page
                    .operate
                    .then(|| {
                        view! {
                            <ActionButton
                                form=verify
                                label="Verify now"
                                busy_label="Verifying…"
                                test="verify-account"
                                class="btn btn-secondary btn-sm"
                                on_click=on_verify
                            />
                        }
                    })}
                <button
                    type="button"
                    class="btn btn-secondary btn-sm"
                    data-test="list-buckets"
                    aria-expanded=expanded(Panel::Buckets)
                    aria-controls=panel_id
                    on:click=move |_| toggle(Panel::Buckets)
                >
                    {storage_label(provider)}
                </button>
                {page
                    .manage
                    .then(|| {
                        view! {
                            <button
                                type="button"
                                class="btn btn-ghost btn-sm"
                                data-test="edit-account"
                                aria-expanded=expanded(Panel::Edit)
                                aria-controls=panel_id
                                on:click=move |_| toggle(Panel::Edit)
                            >
                                "Rename / environment"
                            </button>
                            <button
                                type="button"
                                class="btn btn-ghost btn-sm"
                                data-test="rotate-account"
                                aria-expanded=expanded(Panel::Rotate)
                                aria-controls=panel_id
                                on:click=move |_| toggle(Panel::Rotate)
                            >
                                "Rotate credentials"
                            </button>
                            <span class="row-actions-end">
                                {move || {
                                    view! {
                                        <ConfirmButton
                                            label="Delete"
                                            prompt=format!("Delete “{}”?", name.get())
                                            confirm_label="Delete"
                                            busy=delete.busy
                                            test="delete-account"
                                            on_confirm=on_delete
                                        />
                                    }
                                }}
                            </span>
                        }
                    })}
            </div>
            {page.outcome_for(Some(id))}
            <FormBanner form=verify fields=&[]/>
            <FormBanner form=delete fields=&[]/>
            <div id=panel_id>
                {move || {
                    let account = || page.accounts.with_untracked(|list| list.iter().find(|known| known.id == id).cloned());
                    match panel.get()? {
                        Panel::Edit => account().map(|account| view! { <EditPanel page account on_saved on_cancel=close/> }.into_any()),
                        Panel::Rotate => account().map(|account| view! { <RotatePanel page account on_saved on_cancel=close/> }.into_any()),
                        Panel::Buckets => Some(view! { <BucketsPanel page id provider/> }.into_any()),
                    }
                }}
            </div>
        </div>
    }
}

/// The message for a check's outcome, from the account the server sent back.
fn check_outcome(account: &CloudAccount) -> (AlertKind, String) {
    let reason = account.status_reason.clone().unwrap_or_default();
    match account.status {
        AccountStatus::Verified => (AlertKind::Success, format!("The credentials still work{}.", verified_as(account))),
        AccountStatus::Invalid => (AlertKind::Error, format!("Not verified: {reason}")),
        AccountStatus::Unreachable => {
            (AlertKind::Warning, format!("{} could not be reached: {reason}", account.provider.label()))
        }
    }
}

/// `, verified as <identity>` for messages; empty when the server sent no identity.
fn verified_as(account: &CloudAccount) -> String {
    account.identity.as_ref().map(|identity| format!(", verified as {}", identity.summary())).unwrap_or_default()
}

/// What a provider calls the containers that can hold Terraform state.
fn storage_label(provider: Provider) -> &'static str {
    match provider {
        Provider::Azure => "Storage accounts",
        Provider::Aws | Provider::Gcp => "Buckets",
    }
}

/// The busy label of a submit that makes the server call the cloud.
fn verifying_label(provider: Provider) -> &'static str {
    match provider {
        Provider::Aws => "Verifying with AWS…",
        Provider::Azure => "Verifying with Azure…",
        Provider::Gcp => "Verifying with GCP…",
    }
}

/// Said while a submit waits on the cloud, which can take several seconds.
#[component]
fn VerifyingNote(form: FormState, #[prop(into)] provider: Signal<Provider>) -> impl IntoView {
    move || {
        form.busy.get().then(|| {
            view! {
                <p class="field-hint" role="status" data-test="verifying">
                    {format!(
                        "Fleetplane is asking {} who these credentials belong to. This can take a few seconds.",
                        provider.get().label(),
                    )}
                </p>
            }
        })
    }
}

fn environment_options() -> Vec<(&'static str, &'static str)> {
    Environment::ALL.into_iter().map(|environment| (environment.as_str(), environment.label())).collect()
}

/// Renames an account or moves it to another environment.
#[component]
fn EditPanel(
    page: AccountsPage,
    account: CloudAccount,
    on_saved: Callback<(CloudAccount, String)>,
    on_cancel: Callback<()>,
) -> impl IntoView {
    let form = FormState::new();
    let name = RwSignal::new(account.name.clone());
    let environment = RwSignal::new(account.environment.as_str().to_owned());
    let original = StoredValue::new((account.name, account.environment));
    let id = account.id;
    let on_submit = move |event: SubmitEvent| {
        event.prevent_default();
        let (old_name, old_environment) = original.get_value();
        let new_name = name.get_untracked();
        let new_environment = Environment::parse(&environment.get_untracked()).filter(|env| *env != old_environment);
        let renamed = (new_name != old_name).then_some(new_name);
        if renamed.is_none() && new_environment.is_none() {
            on_cancel.run(());
            return;
        }
        let org = page.org.get_value();
        form.run(
            async move { api::update_cloud_account(&org, id, renamed.as_deref(), new_environment).await },
            move |account| {
                let message = format!("Saved “{}” ({}).", account.name, account.environment.label());
                on_saved.run((account, message));
            },
        );
    };
    view! {
        <form id="cloud-account-edit-form" class="form form-inline panel" method="post" novalidate=true on:submit=on_submit>
            <FormBanner form fields=&["name", "environment"]/>
            <TextField id="edit-account-name" name="name" label="Name" value=name form autocomplete="off" required=true/>
            <SelectField
                id="edit-account-environment"
                name="environment"
                label="Environment"
                value=environment
                form
                options=environment_options()
            />
            <SubmitButton form label="Save" busy_label="Saving…"/>
            <button type="button" class="btn btn-secondary" on:click=move |_| on_cancel.run(())>"Cancel"</button>
        </form>
    }
}

/// Replaces an account's credentials with new ones, which the server checks first.
#[component]
fn RotatePanel(
    page: AccountsPage,
    account: CloudAccount,
    on_saved: Callback<(CloudAccount, String)>,
    on_cancel: Callback<()>,
) -> impl IntoView {
    let form = FormState::new();
    let provider = account.provider;
    let inputs = CredentialInputs::new();
    // The non-secret settings usually stay the same when a secret is rotated.
    for (key, input) in [
        ("role_arn", inputs.role_arn),
        ("tenant_id", inputs.tenant_id),
        ("client_id", inputs.client_id),
        ("subscription_id", inputs.subscription_id),
    ] {
        if let Some(value) = account.setting(key) {
            input.set(value);
        }
    }
    let id = account.id;
    let on_submit = move |event: SubmitEvent| {
        event.prevent_default();
        let credentials = inputs.credentials(provider);
        let org = page.org.get_value();
        form.run(
            async move {
                api::rotate_cloud_credentials(&org, id, &credentials)
                    .await
                    .map_err(|error| error.strip_field_prefix("credentials."))
            },
            move |account| {
                inputs.clear();
                let message =
                    format!("New credentials saved{}. The old ones are no longer used.", verified_as(&account));
                on_saved.run((account, message));
            },
        );
    };
    view! {
        <form id="cloud-account-rotate-form" class="form panel" method="post" novalidate=true on:submit=on_submit>
            <p class="panel-intro">
                {format!(
                    "Fleetplane checks the new credentials with {} before it replaces the stored ones. If the check fails, nothing changes.",
                    provider.label(),
                )}
            </p>
            <FormBanner form fields=CREDENTIAL_FIELDS/>
            {move || {
                form.error
                    .with(Option::is_some)
                    .then(|| view! { <p class="field-hint">"The account still uses its current credentials."</p> })
            }}
            <CredentialFields provider inputs form ids=&ROTATE_IDS/>
            <div class="form-actions">
                <SubmitButton form label="Verify and replace" busy_label=verifying_label(provider)/>
                <button type="button" class="btn btn-secondary" on:click=move |_| on_cancel.run(())>"Cancel"</button>
            </div>
            <VerifyingNote form provider/>
        </form>
    }
}

/// The buckets (or storage accounts) the account can see, fetched when the panel opens.
#[component]
fn BucketsPanel(page: AccountsPage, id: Uuid, provider: Provider) -> impl IntoView {
    let form = FormState::new();
    let buckets = RwSignal::new(None::<Vec<Bucket>>);
    Effect::new(move |_| {
        let org = page.org.get_value();
        form.run(async move { api::list_buckets(&org, id).await }, move |list| buckets.set(Some(list)));
    });
    let loading = match provider {
        Provider::Aws => "Asking AWS…",
        Provider::Azure => "Asking Azure…",
        Provider::Gcp => "Asking GCP…",
    };
    view! {
        <div class="panel" data-test="bucket-panel">
            <p class="panel-title">{storage_label(provider)}</p>
            <FormBanner form fields=&[]/>
            {move || match buckets.get() {
                None => form.busy.get().then(|| view! { <Loading label=loading spinner=true/> }.into_any()),
                Some(list) if list.is_empty() => Some(
                    view! { <p class="muted">"None found that these credentials can see."</p> }.into_any(),
                ),
                Some(list) => Some(
                    view! {
                        <ul class="bucket-list" data-test="bucket-list">
                            {list.into_iter().map(|bucket| view! { <BucketItem bucket provider/> }).collect_view()}
                        </ul>
                    }
                    .into_any(),
                ),
            }}
        </div>
    }
}

#[component]
fn BucketItem(bucket: Bucket, provider: Provider) -> impl IntoView {
    let scope_label = if provider == Provider::Azure { "Subscription" } else { "Scope" };
    let name = bucket.name.clone();
    view! {
        <li class="bucket" data-test="bucket" data-name=name>
            <span class="mono strong bucket-name">{bucket.name}</span>
            <span class="bucket-meta">
                {bucket.location.map(|location| view! { <span class="badge badge-neutral">{location}</span> })}
                {bucket
                    .scope
                    .map(|scope| {
                        view! {
                            <span class="small muted">
                                {scope_label} " " <span class="mono">{scope}</span>
                            </span>
                        }
                    })}
            </span>
        </li>
    }
}

#[component]
fn AddAccountForm(page: AccountsPage) -> impl IntoView {
    let form = FormState::new();
    let provider = RwSignal::new(Provider::Aws.as_str().to_owned());
    let chosen = Signal::derive(move || provider.with(|value| Provider::parse(value).unwrap_or(Provider::Aws)));
    let name = RwSignal::new(String::new());
    let environment = RwSignal::new(Environment::Dev.as_str().to_owned());
    let inputs = CredentialInputs::new();
    let added = RwSignal::new(None::<String>);
    // Another provider's fields replace these: what was typed for the old one is forgotten, as
    // are errors about fields no longer shown.
    Effect::new(move |previous: Option<Provider>| {
        let current = chosen.get();
        if previous.is_some_and(|previous| previous != current) {
            inputs.clear();
            form.error.set(None);
        }
        current
    });
    let on_submit = move |event: SubmitEvent| {
        event.prevent_default();
        added.set(None);
        let credentials = inputs.credentials(chosen.get_untracked());
        let Some(environment) = Environment::parse(&environment.get_untracked()) else {
            return;
        };
        let (org, account_name) = (page.org.get_value(), name.get_untracked());
        form.run(
            async move {
                api::create_cloud_account(&org, &account_name, environment, &credentials)
                    .await
                    .map_err(|error| error.strip_field_prefix("credentials."))
            },
            move |account| {
                inputs.clear();
                name.set(String::new());
                added.set(Some(format!("Added “{}”{}.", account.name, verified_as(&account))));
                page.outcome.set(None);
                page.add(account);
            },
        );
    };
    let providers = Provider::ALL.into_iter().map(|provider| (provider.as_str(), provider.label())).collect::<Vec<_>>();
    view! {
        <form id="cloud-account-form" class="form" method="post" novalidate=true on:submit=on_submit>
            {move || added.get().map(|text| view! { <Alert kind=AlertKind::Success>{text}</Alert> })}
            <FormBanner form fields=ADD_FIELDS/>
            <div class="form-row">
                <SelectField id="account-provider" name="provider" label="Provider" value=provider form options=providers/>
                <TextField
                    id="account-name"
                    name="name"
                    label="Name"
                    value=name
                    form
                    autocomplete="off"
                    placeholder="aws-production"
                    required=true
                />
                <SelectField
                    id="account-environment"
                    name="environment"
                    label="Environment"
                    value=environment
                    form
                    options=environment_options()
                />
            </div>
            {move || view! { <CredentialFields provider=chosen.get() inputs form ids=&ADD_IDS/> }}
            <div class="form-actions">
                <SubmitButton
                    form
                    label="Verify and add"
                    busy_label=Signal::derive(move || verifying_label(chosen.get()))
                />
            </div>
            <VerifyingNote form provider=chosen/>
        </form>
    }
}

/// The values of the credential inputs of one form, for every provider.
#[derive(Clone, Copy)]
struct CredentialInputs {
    access_key_id: RwSignal<String>,
    secret_access_key: RwSignal<String>,
    role_arn: RwSignal<String>,
    external_id: RwSignal<String>,
    tenant_id: RwSignal<String>,
    client_id: RwSignal<String>,
    client_secret: RwSignal<String>,
    subscription_id: RwSignal<String>,
    service_account_json: RwSignal<String>,
    key_file_name: RwSignal<Option<String>>,
}

impl CredentialInputs {
    fn new() -> Self {
        let empty = || RwSignal::new(String::new());
        Self {
            access_key_id: empty(),
            secret_access_key: empty(),
            role_arn: empty(),
            external_id: empty(),
            tenant_id: empty(),
            client_id: empty(),
            client_secret: empty(),
            subscription_id: empty(),
            service_account_json: empty(),
            key_file_name: RwSignal::new(None),
        }
    }

    /// Empties every input (and the file picker).
    fn clear(self) {
        for input in [
            self.access_key_id,
            self.secret_access_key,
            self.role_arn,
            self.external_id,
            self.tenant_id,
            self.client_id,
            self.client_secret,
            self.subscription_id,
            self.service_account_json,
        ] {
            input.set(String::new());
        }
        self.key_file_name.set(None);
    }

    /// The request's `credentials` for `provider`; optional inputs left empty are left out.
    fn credentials(self, provider: Provider) -> Credentials {
        let text = |input: RwSignal<String>| input.with_untracked(|value| value.trim().to_owned());
        let optional = |input: RwSignal<String>| Some(text(input)).filter(|value| !value.is_empty());
        match provider {
            Provider::Aws => Credentials::Aws(AwsCredentials {
                access_key_id: text(self.access_key_id),
                secret_access_key: text(self.secret_access_key),
                role_arn: optional(self.role_arn),
                external_id: optional(self.external_id),
            }),
            Provider::Azure => Credentials::Azure(AzureCredentials {
                tenant_id: text(self.tenant_id),
                client_id: text(self.client_id),
                client_secret: text(self.client_secret),
                subscription_id: optional(self.subscription_id),
            }),
            Provider::Gcp => {
                Credentials::Gcp(GcpCredentials { service_account_json: self.service_account_json.get_untracked() })
            }
        }
    }
}

/// Element ids of one form's credential inputs (each unique on the page).
struct CredentialIds {
    access_key_id: &'static str,
    secret_access_key: &'static str,
    role_arn: &'static str,
    external_id: &'static str,
    tenant_id: &'static str,
    client_id: &'static str,
    client_secret: &'static str,
    subscription_id: &'static str,
    service_account_json: &'static str,
}

const ADD_IDS: CredentialIds = CredentialIds {
    access_key_id: "account-access-key-id",
    secret_access_key: "account-secret-access-key",
    role_arn: "account-role-arn",
    external_id: "account-external-id",
    tenant_id: "account-tenant-id",
    client_id: "account-client-id",
    client_secret: "account-client-secret",
    subscription_id: "account-subscription-id",
    service_account_json: "account-service-account-json",
};

const ROTATE_IDS: CredentialIds = CredentialIds {
    access_key_id: "rotate-access-key-id",
    secret_access_key: "rotate-secret-access-key",
    role_arn: "rotate-role-arn",
    external_id: "rotate-external-id",
    tenant_id: "rotate-tenant-id",
    client_id: "rotate-client-id",
    client_secret: "rotate-client-secret",
    subscription_id: "rotate-subscription-id",
    service_account_json: "rotate-service-account-json",
};

/// The inputs a provider's credentials need, in a fieldset of their own.
#[component]
fn CredentialFields(
    provider: Provider,
    inputs: CredentialInputs,
    form: FormState,
    ids: &'static CredentialIds,
) -> impl IntoView {
    match provider {
        Provider::Aws => view! {
            <fieldset class="fieldset" data-provider="aws">
                <legend class="fieldset-legend">"AWS access key"</legend>
                <p class="fieldset-hint">"An IAM user's access key. Fleetplane calls STS GetCallerIdentity to check it."</p>
                <div class="form-row form-row-2">
                    <TextField
                        id=ids.access_key_id
                        name="access_key_id"
                        label="Access key ID"
                        value=inputs.access_key_id
                        form
                        autocomplete="off"
                        placeholder="AKIA…"
                        required=true
                    />
                    <TextField
                        id=ids.secret_access_key
                        name="secret_access_key"
                        label="Secret access key"
                        kind="password"
                        value=inputs.secret_access_key
                        form
                        autocomplete="off"
                        required=true
                    />
                    <TextField
                        id=ids.role_arn
                        name="role_arn"
                        label="Role to assume"
                        value=inputs.role_arn
                        form
                        autocomplete="off"
                        placeholder="arn:aws:iam::123456789012:role/fleetplane"
                        hint="Fleetplane assumes this role with the key above."
                        mark_optional=true
                    />
                    <TextField
                        id=ids.external_id
                        name="external_id"
                        label="External ID"
                        value=inputs.external_id
                        form
                        autocomplete="off"
                        hint="Only if the role's trust policy asks for one."
                        mark_optional=true
                    />
                </div>
            </fieldset>
        }
        .into_any(),
        Provider::Azure => view! {
            <fieldset class="fieldset" data-provider="azure">
                <legend class="fieldset-legend">"Azure service principal"</legend>
                <p class="fieldset-hint">
                    "An app registration with a client secret. Fleetplane signs in as it and lists its subscriptions."
                </p>
                <div class="form-row form-row-2">
                    <TextField
                        id=ids.tenant_id
                        name="tenant_id"
                        label="Directory (tenant) ID"
                        value=inputs.tenant_id
                        form
                        autocomplete="off"
                        placeholder="00000000-0000-0000-0000-000000000000"
                        required=true
                    />
                    <TextField
                        id=ids.client_id
                        name="client_id"
                        label="Application (client) ID"
                        value=inputs.client_id
                        form
                        autocomplete="off"
                        placeholder="00000000-0000-0000-0000-000000000000"
                        required=true
                    />
                    <TextField
                        id=ids.client_secret
                        name="client_secret"
                        label="Client secret"
                        kind="password"
                        value=inputs.client_secret
                        form
                        autocomplete="off"
                        hint="The secret's value, not its ID."
                        required=true
                    />
                    <TextField
                        id=ids.subscription_id
                        name="subscription_id"
                        label="Subscription ID"
                        value=inputs.subscription_id
                        form
                        autocomplete="off"
                        hint="Leave empty to use every subscription the app can see."
                        mark_optional=true
                    />
                </div>
            </fieldset>
        }
        .into_any(),
        Provider::Gcp => view! {
            <fieldset class="fieldset" data-provider="gcp">
                <legend class="fieldset-legend">"Google Cloud service account"</legend>
                <p class="fieldset-hint">
                    "Fleetplane signs in as the service account and lists the project's buckets."
                </p>
                <FileField
                    id=ids.service_account_json
                    name="service_account_json"
                    label="Service-account key (JSON)"
                    accept="application/json,.json"
                    value=inputs.service_account_json
                    file_name=inputs.key_file_name
                    form
                    max_bytes=MAX_KEY_FILE_BYTES
                    button_label="Choose key file"
                    hint="Create a key under IAM → Service accounts → Keys and choose the downloaded file. It is read in this browser and sent once."
                />
            </fieldset>
        }
        .into_any(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Signals need an owner when Leptos's `ssr` feature (with sandboxed arenas) is on, as it
    /// is when the whole workspace is built together.
    fn with_owner(test: impl FnOnce()) {
        Owner::new().with(test);
    }

    #[test]
    fn credentials_are_trimmed_and_empty_options_left_out() {
        with_owner(credentials_are_trimmed);
    }

    fn credentials_are_trimmed() {
        let inputs = CredentialInputs::new();
        inputs.access_key_id.set(" AKIA1 ".into());
        inputs.secret_access_key.set("secret\n".into());
        inputs.role_arn.set("   ".into());
        inputs.external_id.set("ext".into());
        assert_eq!(
            inputs.credentials(Provider::Aws),
            Credentials::Aws(AwsCredentials {
                access_key_id: "AKIA1".into(),
                secret_access_key: "secret".into(),
                role_arn: None,
                external_id: Some("ext".into()),
            })
        );
    }

    #[test]
    fn clearing_forgets_every_secret() {
        with_owner(clearing_forgets_secrets);
    }

    fn clearing_forgets_secrets() {
        let inputs = CredentialInputs::new();
        inputs.client_secret.set("hunter2".into());
        inputs.service_account_json.set("{\"private_key\":\"k\"}".into());
        inputs.key_file_name.set(Some("key.json".into()));
        inputs.clear();
        assert_eq!(inputs.client_secret.get_untracked(), "");
        assert_eq!(inputs.service_account_json.get_untracked(), "");
        assert_eq!(inputs.key_file_name.get_untracked(), None);
    }

    #[test]
    fn a_failed_check_says_why() {
        let account: CloudAccount = serde_json::from_str(
            r#"{"id":"01a20b29-8292-7196-af7e-d490e4f32cd3","provider":"aws","name":"prod","environment":"prod",
                "status":"invalid","status_reason":"AWS refused GetCallerIdentity (InvalidClientTokenId).",
                "identity":null,"settings":{},"secret_hint":"AKIA…WXYZ","verified_at":null,
                "checked_at":"2026-04-14T09:30:00Z","created_at":"2026-04-14T09:30:00Z",
                "updated_at":"2026-04-14T09:30:00Z"}"#,
        )
        .expect("account parses");
        let (kind, text) = check_outcome(&account);
        assert_eq!(kind, AlertKind::Error);
        assert!(text.contains("InvalidClientTokenId"), "{text}");
    }
}
