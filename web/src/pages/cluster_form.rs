//! The form that creates a cluster.
//!
//! Its choices and defaults come from the API (`/cluster-options`, the organization's cloud
//! accounts). While the user types, the form sends its current body as a dry run
//! (`?dry_run=true`), debounced, and shows the field errors that come back under their inputs,
//! but only for fields the user has touched, so that a half-filled form is not a wall of red.
//! The submit sends the same body for real and opens the new cluster.

use std::collections::BTreeSet;
use std::time::Duration;

use leptos::ev::{Event, SubmitEvent};
use leptos::prelude::*;
use leptos::wasm_bindgen::JsCast;
use leptos_router::components::A;
use leptos_router::hooks::use_navigate;
use uuid::Uuid;

use crate::api::{
    self, AccountStatus, ApiError, Bucket, CloudAccount, ClusterOptions, CreateClusterRequest, FieldError, Provider,
    Simulate, SpecInput, StateBackend,
};
use crate::components::{
    Alert, AlertKind, FormBanner, FormState, LoadError, Loading, SelectField, SelectOption, SubmitButton, TextField,
    TextListField, list_of,
};
use crate::format::encode;

/// How long typing must pause before the form is checked.
const CHECK_DELAY: Duration = Duration::from_millis(400);

/// Every field the form shows an error under, for its banner (see [`FormState::banner`]).
const FIELDS: &[&str] = &[
    "cloud_account_id",
    "target",
    "name_prefix",
    "name_suffix",
    "name",
    "region",
    "kubernetes_version",
    "vpc_cidr",
    "public_subnets",
    "private_subnets",
    "node_instance_type",
    "node_min",
    "node_max",
    "node_desired",
    "state_backend.type",
    "state_backend.bucket",
    "state_backend.key",
    "simulate.fail_at",
    "simulate.step_seconds",
];

/// Fields whose errors depend on each other: touching one shows the others' errors too
/// (the name is made of prefix and suffix, though an untouched suffix is not yet missing;
/// subnets must lie inside the VPC; the desired node count must lie between the others).
const RELATED: &[&[&str]] = &[
    &["name_prefix", "name"],
    &["name_suffix", "name"],
    &["vpc_cidr", "public_subnets", "private_subnets"],
    &["node_min", "node_max", "node_desired"],
    &["cloud_account_id", "target", "region", "node_instance_type"],
    &["state_backend.type", "state_backend.bucket", "state_backend.key"],
    &["simulate.fail_at", "simulate.step_seconds"],
];

/// The `local` target: a simulation that needs no cloud, with knobs to make it fail.
const LOCAL_TARGET: &str = "local";

/// The create form, once its choices have loaded.
#[component]
pub fn ClusterForm(org: String) -> impl IntoView {
    let org = StoredValue::new(org);
    let options = LocalResource::new(api::get_cluster_options);
    let accounts = LocalResource::new(move || {
        let org = org.get_value();
        async move { api::list_cloud_accounts(&org).await }
    });
    move || match (options.get(), accounts.get()) {
        (Some(Err(error)), _) | (_, Some(Err(error))) => view! { <LoadError error/> }.into_any(),
        (Some(Ok(options)), Some(Ok(accounts))) => {
            if options.local_enabled() || accounts.iter().any(|account| account.status == AccountStatus::Verified) {
                view! { <SpecForm org=org.get_value() options accounts/> }.into_any()
            } else {
                view! { <NoVerifiedAccount org=org.get_value()/> }.into_any()
            }
        }
        _ => view! { <Loading/> }.into_any(),
    }
}

#[component]
fn NoVerifiedAccount(org: String) -> impl IntoView {
    let href = format!("/orgs/{}/cloud-accounts", encode(&org));
    view! {
        <Alert kind=AlertKind::Info title="Link a cloud account first">
            "A cluster is created with the credentials of a verified cloud account. "
            <A href=href attr:data-test="cloud-accounts-link">"Add or verify one"</A>
            ", then come back here."
        </Alert>
    }
}

/// The values of the form's inputs. Numbers are kept as typed, and checked when the body is
/// built.
#[derive(Clone, Copy)]
struct ClusterInputs {
    /// The account's id, or empty for the local simulation without one.
    cloud_account_id: RwSignal<String>,
    target: RwSignal<String>,
    name_prefix: RwSignal<String>,
    name_suffix: RwSignal<String>,
    region: RwSignal<String>,
    kubernetes_version: RwSignal<String>,
    vpc_cidr: RwSignal<String>,
    public_subnets: RwSignal<Vec<String>>,
    private_subnets: RwSignal<Vec<String>>,
    node_instance_type: RwSignal<String>,
    node_min: RwSignal<String>,
    node_max: RwSignal<String>,
    node_desired: RwSignal<String>,
    /// `fleetplane`, or the provider's bucket backend (`s3`, `gcs`, `azurerm`).
    backend: RwSignal<String>,
    bucket: RwSignal<String>,
    key: RwSignal<String>,
    /// The simulation's knobs, for the `local` target: `""`, `plan` or `apply`.
    fail_at: RwSignal<String>,
    step_seconds: RwSignal<String>,
}

impl ClusterInputs {
    /// The inputs filled with the API's defaults and the first verified account.
    fn new(options: &ClusterOptions, accounts: &[CloudAccount]) -> Self {
        let text = |value: &str| RwSignal::new(value.to_owned());
        let count = |value: u32| RwSignal::new(value.to_string());
        let defaults = &options.defaults;
        let account = accounts.iter().find(|account| account.status == AccountStatus::Verified);
        let inputs = Self {
            cloud_account_id: RwSignal::new(account.map(|account| account.id.to_string()).unwrap_or_default()),
            target: text(""),
            name_prefix: text(""),
            name_suffix: text(""),
            region: text(""),
            kubernetes_version: text(newest_first(&options.kubernetes_versions).first().map_or("", String::as_str)),
            vpc_cidr: text(&defaults.vpc_cidr),
            public_subnets: RwSignal::new(defaults.public_subnets.clone()),
            private_subnets: RwSignal::new(defaults.private_subnets.clone()),
            node_instance_type: text(""),
            node_min: count(defaults.node_min),
            node_max: count(defaults.node_max),
            node_desired: count(defaults.node_desired),
            backend: text(StateBackend::Fleetplane.kind()),
            bucket: text(""),
            key: text(""),
            fail_at: text(""),
            step_seconds: text(""),
        };
        inputs.fit(options, account.map(|account| account.provider));
        inputs
    }

    /// Keeps the choices that depend on others valid: a target the account's cloud offers (its
    /// own, else `local`), a region and machine type of that target, and a state backend the
    /// account can hold. Values that are still valid stay as they are.
    fn fit(self, options: &ClusterOptions, provider: Option<Provider>) {
        let usable: Vec<_> = options.targets_for(provider).filter(|target| target.enabled).collect();
        let current = self.target.get_untracked();
        let Some(target) = usable
            .iter()
            .find(|target| target.id == current)
            .or_else(|| usable.iter().find(|target| provider.is_some() && target.provider == provider))
            .or_else(|| usable.first())
        else {
            return;
        };
        set_if_changed(self.target, &target.id);
        if !target.regions.contains(&self.region.get_untracked()) {
            set_if_changed(self.region, target.regions.first().map_or("", String::as_str));
        }
        if !target.instance_types.contains(&self.node_instance_type.get_untracked()) {
            set_if_changed(self.node_instance_type, target.instance_types.first().map_or("", String::as_str));
        }
        let backend = self.backend.get_untracked();
        // A bucket backend lives in the target's own cloud; the local simulation has none.
        if backend != StateBackend::Fleetplane.kind() && Some(backend.as_str()) != target.provider.map(bucket_kind) {
            set_if_changed(self.backend, StateBackend::Fleetplane.kind());
            set_if_changed(self.bucket, "");
        }
    }

    /// The chosen account; `None` for the local simulation without one.
    fn account(self) -> Option<Uuid> {
        self.cloud_account_id.with(|id| Uuid::parse_str(id).ok())
    }

    /// The request body, or the fields whose values cannot be sent (a count that is not a
    /// number) as a validation error shaped like the API's.
    fn spec(self) -> Result<CreateClusterRequest, ApiError> {
        let mut problems = Vec::new();
        let mut count = |field: &str, input: RwSignal<String>, required: bool| -> Option<u32> {
            let text = input.with(|value| value.trim().to_owned());
            if text.is_empty() && !required {
                return None;
            }
            let parsed = text.parse().ok();
            if parsed.is_none() {
                problems.push(FieldError {
                    field: field.to_owned(),
                    code: "invalid".to_owned(),
                    message: "Enter a whole number.".to_owned(),
                });
            }
            parsed
        };
        let node_min = count("node_min", self.node_min, true);
        let node_max = count("node_max", self.node_max, true);
        let node_desired = count("node_desired", self.node_desired, false);
        let local = self.target.with(|target| target == LOCAL_TARGET);
        let step_seconds = if local { count("simulate.step_seconds", self.step_seconds, false) } else { None };
        let (Some(node_min), Some(node_max)) = (node_min, node_max) else {
            return Err(invalid(problems));
        };
        if !problems.is_empty() {
            return Err(invalid(problems));
        }
        let trimmed = |input: RwSignal<String>| input.with(|value| value.trim().to_owned());
        // Empty items are sent too, so that the API's `public_subnets.<index>` errors point at
        // the inputs as the user sees them.
        let list = |input: RwSignal<Vec<String>>| {
            input.with(|items| items.iter().map(|item| item.trim().to_owned()).collect())
        };
        let state_backend = self.backend.with(|kind| {
            state_backend(kind, trimmed(self.bucket), Some(trimmed(self.key)).filter(|key| !key.is_empty()))
        });
        let fail_at = self.fail_at.with(|step| (local && !step.is_empty()).then(|| step.clone()));
        let simulate = (fail_at.is_some() || step_seconds.is_some()).then_some(Simulate { fail_at, step_seconds });
        // Every field is sent, empty or not, so that the API reports each missing one.
        Ok(CreateClusterRequest {
            cloud_account_id: self.account(),
            target: Some(self.target.get()),
            spec: SpecInput {
                name_prefix: Some(trimmed(self.name_prefix)),
                name_suffix: Some(trimmed(self.name_suffix)),
                region: Some(self.region.get()),
                kubernetes_version: Some(self.kubernetes_version.get()),
                vpc_cidr: Some(trimmed(self.vpc_cidr)),
                public_subnets: Some(list(self.public_subnets)),
                private_subnets: Some(list(self.private_subnets)),
                node_instance_type: Some(self.node_instance_type.get()),
                node_min: Some(node_min.into()),
                node_max: Some(node_max.into()),
                node_desired: node_desired.map(i64::from),
                state_backend: Some(state_backend),
            },
            simulate,
        })
    }

    /// The name the cluster will get, as the form can tell before the API answers.
    fn joined_name(self) -> String {
        let (prefix, suffix) =
            (self.name_prefix.with(|p| p.trim().to_owned()), self.name_suffix.with(|s| s.trim().to_owned()));
        match (prefix.is_empty(), suffix.is_empty()) {
            (false, false) => format!("{prefix}-{suffix}"),
            (false, true) => prefix,
            (true, _) => suffix,
        }
    }
}

/// Kubernetes versions (`1.31`, `1.34`) newest first, comparing their numbers.
/// The state backend the form describes: `kind` is the picker's value (a [`StateBackend::kind`]).
fn state_backend(kind: &str, bucket: String, key: Option<String>) -> StateBackend {
    match kind {
        "s3" => StateBackend::S3 { bucket, key },
        "gcs" => StateBackend::Gcs { bucket, key },
        "azurerm" => StateBackend::Azurerm { bucket, key },
        _ => StateBackend::Fleetplane,
    }
}

/// The picker's value for the bucket backend in `provider`'s cloud.
fn bucket_kind(provider: Provider) -> &'static str {
    match provider {
        Provider::Aws => "s3",
        Provider::Gcp => "gcs",
        Provider::Azure => "azurerm",
    }
}

fn newest_first(versions: &[String]) -> Vec<String> {
    let numbers = |version: &String| -> Vec<u32> { version.split('.').map(|part| part.parse().unwrap_or(0)).collect() };
    let mut sorted = versions.to_vec();
    sorted.sort_by_key(|version| std::cmp::Reverse(numbers(version)));
    sorted
}

fn set_if_changed(signal: RwSignal<String>, value: &str) {
    if signal.with_untracked(|current| current != value) {
        signal.set(value.to_owned());
    }
}

fn invalid(errors: Vec<FieldError>) -> ApiError {
    ApiError {
        status: 422,
        code: "validation_failed".to_owned(),
        title: "Invalid request".to_owned(),
        detail: Some("Some fields are invalid.".to_owned()),
        errors,
    }
}

/// Whether an error for `field` should show yet: the user touched it (or a related field), or
/// tried to submit.
fn shown(field: &str, touched: &BTreeSet<String>) -> bool {
    let field = list_of(field);
    touched.contains(field)
        || RELATED.iter().any(|group| group.contains(&field) && group.iter().any(|other| touched.contains(*other)))
}

/// A dry run's answer, trimmed to the errors that should show; `None` when none should.
fn visible_errors(error: ApiError, touched: &BTreeSet<String>) -> Option<ApiError> {
    let errors: Vec<FieldError> = error.errors.into_iter().filter(|e| shown(&e.field, touched)).collect();
    (!errors.is_empty()).then_some(ApiError { errors, ..error })
}

/// The state of the as-you-type check.
#[derive(Clone, Copy)]
struct Check {
    /// Counts scheduled checks, so that only the latest one's answer is used.
    generation: StoredValue<u64>,
    timer: StoredValue<Option<TimeoutHandle>>,
    running: RwSignal<bool>,
    /// The name the API gave the current body.
    name: RwSignal<Option<String>>,
    touched: RwSignal<BTreeSet<String>>,
    /// After a submit, every error shows.
    submitted: RwSignal<bool>,
}

impl Check {
    fn new() -> Self {
        Self {
            generation: StoredValue::new(0),
            timer: StoredValue::new(None),
            running: RwSignal::new(false),
            name: RwSignal::new(None),
            touched: RwSignal::new(BTreeSet::new()),
            submitted: RwSignal::new(false),
        }
    }

    /// Forgets any pending check; returns the new generation.
    fn invalidate(self) -> u64 {
        if let Some(timer) = self.timer.get_value() {
            timer.clear();
        }
        self.timer.set_value(None);
        self.generation.update_value(|n| *n += 1);
        self.generation.get_value()
    }

    /// Shows `error`'s field errors, as far as they should show; `None` clears them.
    fn show(self, form: FormState, error: Option<ApiError>) {
        if form.busy.get_untracked() {
            return;
        }
        let all = self.submitted.get_untracked();
        let visible =
            error.and_then(
                |error| if all { Some(error) } else { self.touched.with_untracked(|t| visible_errors(error, t)) },
            );
        form.error.set(visible);
    }

    /// Checks `spec` with the API after [`CHECK_DELAY`], unless another check replaces it.
    fn schedule(self, org: StoredValue<String>, form: FormState, spec: Result<CreateClusterRequest, ApiError>) {
        let generation = self.invalidate();
        self.name.set(None);
        // Defaults need no checking: wait for the user's first change.
        if self.touched.with_untracked(BTreeSet::is_empty) && !self.submitted.get_untracked() {
            return;
        }
        let spec = match spec {
            Ok(spec) => spec,
            Err(local) => {
                self.running.set(false);
                self.show(form, Some(local));
                return;
            }
        };
        let run = move || {
            self.running.try_set(true);
            leptos::task::spawn_local(async move {
                let Some(org) = org.try_get_value() else {
                    return;
                };
                let result = api::check_cluster(&org, &spec).await;
                if self.generation.try_get_value() != Some(generation) {
                    return;
                }
                self.running.try_set(false);
                match result {
                    Ok(checked) => {
                        self.name.try_set(Some(checked.name));
                        self.show(form, None);
                    }
                    Err(error) if matches!(error.status, 409 | 422) => self.show(form, Some(error)),
                    // Anything else (a dropped connection) is for the submit to report.
                    Err(_) => {}
                }
            });
        };
        if let Ok(handle) = set_timeout_with_handle(run, CHECK_DELAY) {
            self.timer.set_value(Some(handle));
        }
    }
}

/// The name of the input an `input` or `change` event came from.
fn input_name(event: &Event) -> Option<String> {
    let element = event.target()?.dyn_into::<leptos::web_sys::Element>().ok()?;
    element.get_attribute("name")
}

#[component]
fn SpecForm(org: String, options: ClusterOptions, accounts: Vec<CloudAccount>) -> impl IntoView {
    let org = StoredValue::new(org);
    let form = FormState::new();
    let inputs = ClusterInputs::new(&options, &accounts);
    let check = Check::new();
    let navigate = StoredValue::new_local(use_navigate());

    let mut account_options: Vec<SelectOption> = accounts.iter().map(account_option).collect();
    if options.local_enabled() {
        account_options.push(SelectOption::new("", "None: a local simulation"));
    }
    let providers: Vec<(Uuid, Provider)> = accounts.iter().map(|account| (account.id, account.provider)).collect();
    let provider = Memo::new(move |_| {
        let chosen = inputs.account()?;
        providers.iter().find(|(known, _)| *known == chosen).map(|(_, provider)| *provider)
    });
    let limits = options.limits.clone();
    let options = StoredValue::new(options);

    // Another account or target may rule out the current target, region, machine type or
    // state backend: pick valid ones.
    Effect::new(move |_| {
        inputs.target.track();
        let provider = provider.get();
        options.with_value(|options| inputs.fit(options, provider));
    });

    let target_options = Memo::new(move |_| {
        let provider = provider.get();
        options.with_value(|options| {
            options
                .targets_for(provider)
                .map(|target| {
                    let label =
                        if target.enabled { target.label.clone() } else { format!("{} (not available)", target.label) };
                    SelectOption::new(target.id.clone(), label).disabled(!target.enabled)
                })
                .collect()
        })
    });
    let target_choices = move |pick: fn(&api::TargetOption) -> &Vec<String>| {
        Memo::new(move |_| {
            inputs.target.with(|id| {
                options.with_value(|options| {
                    options
                        .target(id)
                        .map(|target| {
                            pick(target).iter().map(|value| SelectOption::new(value.clone(), value.clone())).collect()
                        })
                        .unwrap_or_default()
                })
            })
        })
    };
    let region_options = target_choices(|target| &target.regions);
    let instance_options = target_choices(|target| &target.instance_types);
    let version_options: Vec<SelectOption> = options.with_value(|options| {
        newest_first(&options.kubernetes_versions)
            .into_iter()
            .enumerate()
            .map(|(index, version)| {
                let label = if index == 0 { format!("{version} (newest)") } else { version.clone() };
                SelectOption::new(version, label)
            })
            .collect()
    });
    let backend_options = Memo::new(move |_| {
        let mut choices = vec![SelectOption::new(
            StateBackend::Fleetplane.kind(),
            "Fleetplane (encrypted, with history and a visible lock)",
        )];
        let target_provider = inputs
            .target
            .with(|id| options.with_value(|options| options.target(id).and_then(|target| target.provider)));
        if let Some(provider) = target_provider {
            choices.push(SelectOption::new(bucket_kind(provider), bucket_backend_label(provider)));
        }
        choices
    });
    let is_local = Memo::new(move |_| inputs.target.with(|target| target == LOCAL_TARGET));
    let uses_bucket = Memo::new(move |_| inputs.backend.with(|kind| kind != StateBackend::Fleetplane.kind()));

    // Check the body with the API whenever it changes, once typing pauses.
    let spec = Memo::new(move |_| inputs.spec());
    Effect::new(move |_| check.schedule(org, form, spec.get()));
    on_cleanup(move || {
        check.invalidate();
    });

    let touch = move |event: Event| {
        if let Some(name) = input_name(&event) {
            check.touched.update(|touched| {
                touched.insert(name);
            });
        }
    };
    let on_submit = move |event: SubmitEvent| {
        event.prevent_default();
        check.submitted.set(true);
        check.invalidate();
        check.running.set(false);
        let spec = match spec.get_untracked() {
            Ok(spec) => spec,
            Err(local) => {
                form.error.set(Some(local));
                return;
            }
        };
        let org = org.get_value();
        let path_org = org.clone();
        form.run(async move { api::create_cluster(&org, &spec).await }, move |created| {
            let path = format!("/orgs/{}/clusters/{}", encode(&path_org), created.cluster.id);
            if let Some(navigate) = navigate.try_get_value() {
                navigate(&path, Default::default());
            }
        });
    };

    let name_hint =
        format!("Lowercase letters, digits and hyphens; the whole name at most {} characters.", limits.name_max);
    let nodes_hint =
        format!("The node pool scales between the minimum and the maximum, up to {} nodes.", limits.node_max);
    let name_error = form.field_error("name");
    let preview = move || check.name.get().unwrap_or_else(|| inputs.joined_name());

    view! {
        <form
            id="cluster-form"
            class="form cluster-form"
            method="post"
            novalidate=true
            on:submit=on_submit
            on:input=touch
            on:change=touch
        >
            <FormBanner form fields=FIELDS/>
            <fieldset class="fieldset">
                <legend class="fieldset-legend">"Where"</legend>
                <div class="form-row form-row-2">
                    <SelectField
                        id="cluster-account"
                        name="cloud_account_id"
                        label="Cloud account"
                        value=inputs.cloud_account_id
                        form
                        options=Signal::stored(account_options)
                        hint="Only verified accounts can be used; the local simulation needs none."
                    />
                    <SelectField
                        id="cluster-target"
                        name="target"
                        label="Target"
                        value=inputs.target
                        form
                        options=target_options
                        hint="The account's managed Kubernetes, or a local simulation that needs no cloud."
                    />
                    <SelectField id="cluster-region" name="region" label="Region" value=inputs.region form options=region_options/>
                    <SelectField
                        id="cluster-version"
                        name="kubernetes_version"
                        label="Kubernetes version"
                        value=inputs.kubernetes_version
                        form
                        options=Signal::stored(version_options)
                    />
                </div>
            </fieldset>
            <fieldset class="fieldset">
                <legend class="fieldset-legend">"Name"</legend>
                <p class="fieldset-hint">{name_hint}</p>
                <div class="form-row form-row-2">
                    <TextField
                        id="cluster-name-prefix"
                        name="name_prefix"
                        label="Prefix"
                        value=inputs.name_prefix
                        form
                        autocomplete="off"
                        placeholder="payments"
                        required=true
                    />
                    <TextField
                        id="cluster-name-suffix"
                        name="name_suffix"
                        label="Suffix"
                        value=inputs.name_suffix
                        form
                        autocomplete="off"
                        placeholder="prod-eu"
                        required=true
                    />
                </div>
                <div class="name-preview" class:field-invalid=move || name_error.with(Option::is_some)>
                    <span class="muted">"Cluster name "</span>
                    <code class="code-pill" data-test="cluster-name-preview" aria-live="polite">
                        {move || {
                            let name = preview();
                            if name.is_empty() { "—".to_owned() } else { name }
                        }}
                    </code>
                    {move || {
                        name_error
                            .get()
                            .map(|message| view! { <p class="field-error" data-test="field-error" data-field="name">{message}</p> })
                    }}
                </div>
            </fieldset>
            <fieldset class="fieldset">
                <legend class="fieldset-legend">"Network"</legend>
                <TextField
                    id="cluster-vpc-cidr"
                    name="vpc_cidr"
                    label="VPC CIDR"
                    value=inputs.vpc_cidr
                    form
                    autocomplete="off"
                    placeholder="10.0.0.0/16"
                    hint="The subnets below must lie inside it and must not overlap."
                />
                <div class="form-row form-row-2">
                    <TextListField
                        id="cluster-public-subnets"
                        name="public_subnets"
                        label="Public subnets"
                        values=inputs.public_subnets
                        form
                        item="subnet"
                        placeholder="10.0.0.0/24"
                        hint="Load balancers live here."
                    />
                    <TextListField
                        id="cluster-private-subnets"
                        name="private_subnets"
                        label="Private subnets"
                        values=inputs.private_subnets
                        form
                        item="subnet"
                        placeholder="10.0.100.0/24"
                        hint="The nodes live here."
                    />
                </div>
            </fieldset>
            <fieldset class="fieldset">
                <legend class="fieldset-legend">"Nodes"</legend>
                <p class="fieldset-hint">{nodes_hint}</p>
                <div class="form-row form-row-nodes">
                    <SelectField
                        id="cluster-instance-type"
                        name="node_instance_type"
                        label="Machine type"
                        value=inputs.node_instance_type
                        form
                        options=instance_options
                    />
                    <TextField id="cluster-node-min" name="node_min" label="Minimum" kind="number" value=inputs.node_min form/>
                    <TextField
                        id="cluster-node-desired"
                        name="node_desired"
                        label="Desired"
                        kind="number"
                        value=inputs.node_desired
                        form
                        mark_optional=true
                    />
                    <TextField id="cluster-node-max" name="node_max" label="Maximum" kind="number" value=inputs.node_max form/>
                </div>
            </fieldset>
            <fieldset class="fieldset">
                <legend class="fieldset-legend">"Terraform state"</legend>
                <SelectField
                    id="cluster-state-backend"
                    name="state_backend.type"
                    label="Keep the state in"
                    value=inputs.backend
                    form
                    options=backend_options
                />
                {move || {
                    uses_bucket
                        .get()
                        .then(|| inputs.account())
                        .flatten()
                        .map(|account| {
                            view! {
                                <BucketFields
                                    org=org.get_value()
                                    account
                                    provider=provider.get_untracked()
                                    bucket=inputs.bucket
                                    key=inputs.key
                                    form
                                />
                            }
                        })
                }}
            </fieldset>
            {move || is_local.get().then(|| view! { <SimulationFields inputs form/> })}
            <div class="form-actions">
                <SubmitButton form label="Create cluster" busy_label="Creating…"/>
                <span class="check-status small muted" data-test="cluster-check" aria-live="polite">
                    {move || {
                        if check.running.get() {
                            "Checking…"
                        } else if check.name.with(Option::is_some) && form.error.with(Option::is_none) {
                            "Looks good."
                        } else {
                            ""
                        }
                    }}
                </span>
            </div>
        </form>
    }
}

/// The `local` target's knobs: a step to fail at, and how long each step takes.
#[component]
fn SimulationFields(inputs: ClusterInputs, form: FormState) -> impl IntoView {
    let steps = vec![("", "Nothing: succeed"), ("plan", "The plan"), ("apply", "The apply")];
    view! {
        <fieldset class="fieldset" data-test="simulation">
            <legend class="fieldset-legend">"Simulation"</legend>
            <p class="fieldset-hint">
                "The local target pretends to build a cluster with Terraform and no cloud. Make it fail or slow it down to see how Fleetplane handles that."
            </p>
            <div class="form-row form-row-2">
                <SelectField
                    id="cluster-fail-at"
                    name="simulate.fail_at"
                    label="Fail at"
                    value=inputs.fail_at
                    form
                    options=steps
                />
                <TextField
                    id="cluster-step-seconds"
                    name="simulate.step_seconds"
                    label="Seconds per step"
                    kind="number"
                    value=inputs.step_seconds
                    form
                    placeholder="2"
                    mark_optional=true
                />
            </div>
        </fieldset>
    }
}

/// `prod-aws · AWS · Production`, and whether it can be chosen.
fn account_option(account: &CloudAccount) -> SelectOption {
    let mut label = format!("{} · {} · {}", account.name, account.provider.label(), account.environment.label());
    let verified = account.status == AccountStatus::Verified;
    if !verified {
        label.push_str(" (not verified)");
    }
    SelectOption::new(account.id.to_string(), label).disabled(!verified)
}

fn bucket_backend_label(provider: Provider) -> &'static str {
    match provider {
        Provider::Aws => "An S3 bucket of this account",
        Provider::Gcp => "A GCS bucket of this account",
        Provider::Azure => "An Azure storage account of this account",
    }
}

/// The bucket (picked from those the account can see) and the key of a bucket backend. When
/// the account cannot list its buckets, the name can be typed instead.
#[component]
fn BucketFields(
    org: String,
    account: Uuid,
    provider: Option<Provider>,
    bucket: RwSignal<String>,
    key: RwSignal<String>,
    form: FormState,
) -> impl IntoView {
    let buckets = LocalResource::new(move || {
        let org = org.clone();
        async move { api::list_buckets(&org, account).await }
    });
    // Start with the first bucket unless one the account has is chosen.
    Effect::new(move |_| {
        if let Some(Ok(list)) = buckets.get()
            && !list.iter().any(|known| bucket.with_untracked(|chosen| *chosen == known.name))
            && let Some(first) = list.first()
        {
            bucket.set(first.name.clone());
        }
    });
    let label = if provider == Some(Provider::Azure) { "Storage account" } else { "Bucket" };
    view! {
        <div class="form-row form-row-2">
            {move || match buckets.get() {
                None => view! { <Loading label="Listing buckets…" spinner=true/> }.into_any(),
                Some(Ok(list)) if !list.is_empty() => {
                    let choices: Vec<SelectOption> = list.iter().map(bucket_option).collect();
                    view! {
                        <SelectField
                            id="cluster-state-bucket"
                            name="state_backend.bucket"
                            label=label
                            value=bucket
                            form
                            options=Signal::stored(choices)
                        />
                    }
                    .into_any()
                }
                Some(result) => {
                    let hint = match result {
                        Ok(_) => "The account sees none: type the name of one it can write to.",
                        Err(_) => "Fleetplane could not list them: type the name of one the account can write to.",
                    };
                    view! {
                        <TextField
                            id="cluster-state-bucket"
                            name="state_backend.bucket"
                            label=label
                            value=bucket
                            form
                            autocomplete="off"
                            hint=hint
                        />
                    }
                    .into_any()
                }
            }}
            <TextField
                id="cluster-state-key"
                name="state_backend.key"
                label="Key or prefix"
                value=key
                form
                autocomplete="off"
                placeholder="fleetplane/my-cluster.tfstate"
                hint="Where in the bucket the state goes. Leave empty for the default."
                mark_optional=true
            />
        </div>
    }
}

fn bucket_option(bucket: &Bucket) -> SelectOption {
    let label = match &bucket.location {
        Some(location) => format!("{} ({location})", bucket.name),
        None => bucket.name.clone(),
    };
    SelectOption::new(bucket.name.clone(), label)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn options() -> ClusterOptions {
        serde_json::from_value(json!({
            "targets": [
                { "id": "aws-eks", "provider": "aws", "label": "Amazon EKS", "regions": ["eu-west-1", "us-east-1"],
                  "instance_types": ["t3.medium", "m5.large"], "enabled": true },
                { "id": "gcp-gke", "provider": "gcp", "label": "Google GKE", "regions": ["europe-west1"],
                  "instance_types": ["e2-standard-2"], "enabled": false },
                { "id": "local", "provider": null, "label": "Local simulation", "regions": ["local"],
                  "instance_types": ["sim.small"], "enabled": true }
            ],
            "kubernetes_versions": ["1.9", "1.31", "1.30"],
            "defaults": { "vpc_cidr": "10.0.0.0/16", "public_subnets": ["10.0.0.0/24", "10.0.1.0/24"],
                          "private_subnets": ["10.0.100.0/24"], "node_min": 1, "node_max": 3, "node_desired": 2 },
            "limits": { "node_max": 100, "name_max": 40 }
        }))
        .expect("options parse")
    }

    fn account(id: u128, provider: &str, status: &str) -> CloudAccount {
        serde_json::from_value(json!({
            "id": Uuid::from_u128(id), "provider": provider, "name": format!("account-{id}"), "environment": "dev",
            "status": status, "status_reason": null, "identity": null, "settings": {}, "secret_hint": "…abcd",
            "verified_at": null, "checked_at": "2026-04-14T09:30:00Z", "created_at": "2026-04-14T09:30:00Z",
            "updated_at": "2026-04-14T09:30:00Z"
        }))
        .expect("account parses")
    }

    #[test]
    fn starts_from_the_defaults_and_the_first_verified_account() {
        Owner::new().with(|| {
            let accounts = [account(1, "aws", "invalid"), account(2, "aws", "verified")];
            let inputs = ClusterInputs::new(&options(), &accounts);
            inputs.name_prefix.set(" payments ".into());
            inputs.name_suffix.set("prod".into());
            let spec = inputs.spec().expect("the defaults make a body");
            assert_eq!(spec.cloud_account_id, Some(Uuid::from_u128(2)));
            assert_eq!(spec.target.as_deref(), Some("aws-eks"));
            assert_eq!(spec.spec.region.as_deref(), Some("eu-west-1"));
            assert_eq!(spec.spec.node_instance_type.as_deref(), Some("t3.medium"));
            assert_eq!(spec.spec.kubernetes_version.as_deref(), Some("1.31"));
            assert_eq!(spec.spec.name_prefix.as_deref(), Some("payments"));
            assert_eq!(inputs.joined_name(), "payments-prod");
            assert_eq!(
                serde_json::to_value(&spec).expect("serialises"),
                json!({
                    "cloud_account_id": Uuid::from_u128(2), "target": "aws-eks", "name_prefix": "payments", "name_suffix": "prod",
                    "region": "eu-west-1", "kubernetes_version": "1.31", "vpc_cidr": "10.0.0.0/16",
                    "public_subnets": ["10.0.0.0/24", "10.0.1.0/24"], "private_subnets": ["10.0.100.0/24"],
                    "node_instance_type": "t3.medium", "node_min": 1, "node_max": 3, "node_desired": 2,
                    "state_backend": { "type": "fleetplane" }
                })
            );
        });
    }

    #[test]
    fn without_an_account_only_the_local_simulation_is_offered() {
        Owner::new().with(|| {
            let inputs = ClusterInputs::new(&options(), &[account(1, "aws", "invalid")]);
            inputs.name_prefix.set("try".into());
            inputs.name_suffix.set("it".into());
            let spec = inputs.spec().expect("the defaults make a body");
            assert_eq!(spec.target.as_deref(), Some("local"));
            assert_eq!(spec.spec.region.as_deref(), Some("local"));
            let body = serde_json::to_value(&spec).expect("serialises");
            assert!(body.get("cloud_account_id").is_none(), "no account is sent: {body}");
        });
    }

    #[test]
    fn a_bucket_backend_keeps_state_in_its_own_cloud() {
        for provider in Provider::ALL {
            let backend = state_backend(bucket_kind(provider), "tf".into(), None);
            assert_eq!((backend.provider(), backend.kind()), (Some(provider), bucket_kind(provider)));
        }
        assert_eq!(state_backend(StateBackend::Fleetplane.kind(), "tf".into(), None), StateBackend::Fleetplane);
    }

    #[test]
    fn offers_the_newest_kubernetes_first() {
        let versions = ["1.9".to_owned(), "1.31".to_owned(), "1.30".to_owned()];
        assert_eq!(newest_first(&versions), ["1.31", "1.30", "1.9"]);
    }

    #[test]
    fn another_account_or_target_brings_valid_choices() {
        Owner::new().with(|| {
            let options = options();
            let inputs = ClusterInputs::new(&options, &[account(1, "aws", "verified")]);
            inputs.backend.set("s3".into());
            inputs.bucket.set("tf-state".into());
            // GKE is not available, so a GCP account gets the local target.
            inputs.fit(&options, Some(Provider::Gcp));
            assert_eq!(inputs.target.get_untracked(), "local");
            assert_eq!(inputs.region.get_untracked(), "local");
            assert_eq!(inputs.node_instance_type.get_untracked(), "sim.small");
            assert_eq!(inputs.backend.get_untracked(), "fleetplane");
            assert_eq!(inputs.bucket.get_untracked(), "");
            // A choice that is still valid stays.
            inputs.fit(&options, Some(Provider::Aws));
            assert_eq!(inputs.target.get_untracked(), "local");
            inputs.target.set("aws-eks".into());
            inputs.region.set("us-east-1".into());
            inputs.fit(&options, Some(Provider::Aws));
            assert_eq!(inputs.region.get_untracked(), "us-east-1");
            assert_eq!(inputs.node_instance_type.get_untracked(), "t3.medium");
            // S3 suits EKS; the local simulation keeps its state in Fleetplane, account or not.
            inputs.backend.set("s3".into());
            inputs.fit(&options, Some(Provider::Aws));
            assert_eq!(inputs.backend.get_untracked(), "s3");
            inputs.target.set("local".into());
            inputs.fit(&options, Some(Provider::Aws));
            assert_eq!(inputs.backend.get_untracked(), "fleetplane");
        });
    }

    #[test]
    fn counts_that_are_not_numbers_are_reported_under_their_fields() {
        Owner::new().with(|| {
            let inputs = ClusterInputs::new(&options(), &[account(1, "aws", "verified")]);
            inputs.node_min.set("one".into());
            inputs.node_desired.set(String::new());
            let error = inputs.spec().expect_err("not a number");
            assert_eq!(error.field("node_min"), Some("Enter a whole number."));
            assert_eq!(error.field("node_desired"), None);
            inputs.node_min.set("1".into());
            assert_eq!(inputs.spec().expect("valid").spec.node_desired, None);
        });
    }

    #[test]
    fn a_bucket_backend_sends_its_bucket_and_key() {
        Owner::new().with(|| {
            let inputs = ClusterInputs::new(&options(), &[account(1, "aws", "verified")]);
            inputs.backend.set("s3".into());
            inputs.bucket.set("acme-tf-state".into());
            inputs.public_subnets.set(vec!["10.0.0.0/24".into(), " ".into()]);
            let spec = inputs.spec().expect("valid");
            assert_eq!(
                serde_json::to_value(&spec.spec.state_backend).expect("serialises"),
                json!({ "type": "s3", "bucket": "acme-tf-state", "key": null })
            );
            assert_eq!(spec.spec.public_subnets.expect("sent"), ["10.0.0.0/24", ""]);
        });
    }

    #[test]
    fn only_the_local_target_sends_simulation_knobs() {
        Owner::new().with(|| {
            let inputs = ClusterInputs::new(&options(), &[account(1, "aws", "verified")]);
            inputs.fail_at.set("apply".into());
            inputs.step_seconds.set("1".into());
            assert_eq!(inputs.spec().expect("valid").simulate, None);
            inputs.target.set("local".into());
            assert_eq!(
                inputs.spec().expect("valid").simulate,
                Some(Simulate { fail_at: Some("apply".into()), step_seconds: Some(1) })
            );
            inputs.fail_at.set(String::new());
            inputs.step_seconds.set(String::new());
            assert_eq!(inputs.spec().expect("valid").simulate, None);
        });
    }

    #[test]
    fn errors_show_only_for_touched_fields_and_their_relatives() {
        let touched: BTreeSet<String> = ["name_suffix".to_owned(), "public_subnets".to_owned()].into();
        assert!(!shown("name_prefix", &touched));
        assert!(shown("name", &touched));
        assert!(shown("public_subnets.1", &touched));
        assert!(shown("vpc_cidr", &touched));
        assert!(!shown("node_min", &touched));
        let error = ApiError {
            status: 422,
            errors: vec![
                FieldError { field: "node_max".into(), code: "range".into(), message: "Too many.".into() },
                FieldError { field: "name".into(), code: "too_long".into(), message: "Too long.".into() },
            ],
            ..ApiError::default()
        };
        let visible = visible_errors(error.clone(), &touched).expect("one shows");
        assert_eq!(visible.errors.len(), 1);
        assert_eq!(visible.field("name"), Some("Too long."));
        assert_eq!(visible_errors(error, &BTreeSet::new()), None);
    }
}
