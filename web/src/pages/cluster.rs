//! One cluster: its spec and status, how to reach it, its Terraform state and lock, its runs,
//! and the buttons that plan, apply and delete it.
//!
//! Operators and above start plans; admins and owners apply, delete and release a stuck state
//! lock. The page refreshes itself, often while a run is under way.

use std::time::Duration;

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;
use leptos_router::hooks::use_params_map;

use uuid::Uuid;

use crate::api::{
    self, ApiError, CloudAccount, Cluster, ClusterStatus, RequestedAction, Role, Run, StateBackend, StateInfo,
    StateLock,
};
use crate::browser;
use crate::components::{
    ActionButton, Alert, AlertKind, Card, ClusterStatusBadge, ConfirmButton, EmptyState, FormBanner, FormState,
    LoadError, Loading, PageHeader, RequireViewer, RunStatusBadge, Time,
};
use crate::format::{self, encode};
use crate::pages::clusters::{BUSY_REFRESH, ExecutorNotice, IDLE_REFRESH, TargetBadge, in_progress};
use crate::pages::deployments::ClusterDeployments;
use crate::pages::org::use_org_name;
use crate::pages::run::{OutputList, PlanSummaryLine};

#[component]
pub fn ClusterPage() -> impl IntoView {
    let org = use_org_name();
    let params = use_params_map();
    let id = Memo::new(move |_| params.with(|params| params.get("id").unwrap_or_default()));
    view! {
        <Title text="Cluster"/>
        <RequireViewer>
            {move || view! { <ClusterView org=org.get() id=id.get()/> }}
        </RequireViewer>
    }
}

/// What the parts of the page share.
#[derive(Clone, Copy)]
struct ClusterState {
    org: StoredValue<String>,
    id: Uuid,
    cluster: RwSignal<Option<Cluster>>,
    /// The last failure to load the cluster; the page keeps showing what it had.
    error: RwSignal<Option<ApiError>>,
    runs: RwSignal<Option<Vec<Run>>>,
    state: RwSignal<Option<Result<StateInfo, ApiError>>>,
    role: RwSignal<Option<Role>>,
    /// Bumped after an action, to refresh at once and start over at the fast pace.
    kick: RwSignal<u32>,
}

impl ClusterState {
    fn new(org: String, id: Uuid) -> Self {
        Self {
            org: StoredValue::new(org),
            id,
            cluster: RwSignal::new(None),
            error: RwSignal::new(None),
            runs: RwSignal::new(None),
            state: RwSignal::new(None),
            role: RwSignal::new(None),
            kick: RwSignal::new(0),
        }
    }

    // These run when a request finishes, which may be after the page is gone: hence `try_`.

    /// One refresh of everything; the delay until the next, or `None` to stop.
    async fn refresh(self) -> Option<Duration> {
        let (org, id) = (self.org.try_get_value()?, self.id);
        let cluster = match api::get_cluster(&org, id).await {
            Ok(cluster) => cluster,
            Err(error) => {
                let hopeless = matches!(error.status, 401 | 403 | 404);
                self.error.try_set(Some(error));
                return (!hopeless).then_some(IDLE_REFRESH);
            }
        };
        if self.role.try_get_untracked()?.is_none()
            && let Ok(org) = api::get_org(&org).await
        {
            self.role.try_set(Some(org.role));
        }
        let runs = api::list_cluster_runs(&org, id).await.ok();
        let busy = in_progress(&cluster) || runs.iter().flatten().any(|run| !run.status.is_terminal());
        if uses_fleetplane_state(&cluster) {
            self.state.try_set(Some(api::get_cluster_state(&org, id).await));
        }
        self.cluster.try_set(Some(cluster));
        self.error.try_set(None);
        if runs.is_some() {
            self.runs.try_set(runs);
        }
        Some(if busy { BUSY_REFRESH } else { IDLE_REFRESH })
    }

    fn path(self) -> String {
        format!("/orgs/{}/clusters", encode(&self.org.get_value()))
    }
}

fn uses_fleetplane_state(cluster: &Cluster) -> bool {
    cluster.state_backend == StateBackend::Fleetplane
}

#[component]
fn ClusterView(org: String, id: String) -> impl IntoView {
    let id = match api::parse_id(&id) {
        Ok(id) => id,
        Err(error) => return view! { <LoadError error/> }.into_any(),
    };
    let state = ClusterState::new(org, id);
    Effect::new(move |_| {
        state.kick.track();
        browser::poll(move || state.refresh());
    });
    // A status change anywhere in the organization: look again now.
    crate::live::on_change(move || state.kick.update(|n| *n += 1));
    let loaded = Memo::new(move |_| state.cluster.with(Option::is_some));
    (move || {
        if loaded.get() {
            return view! { <ClusterDetails state/> }.into_any();
        }
        match state.error.get() {
            Some(error) => view! { <LoadError error/> }.into_any(),
            None => view! { <Loading/> }.into_any(),
        }
    })
    .into_any()
}

/// The requests the page's buttons make, and what the last one queued.
#[derive(Clone, Copy)]
struct ClusterActions {
    plan: FormState,
    apply: FormState,
    delete: FormState,
    unlock: FormState,
    /// The run the last action queued, with what to say about it.
    queued: RwSignal<Option<(&'static str, Run)>>,
}

impl ClusterActions {
    fn new() -> Self {
        Self {
            plan: FormState::new(),
            apply: FormState::new(),
            delete: FormState::new(),
            unlock: FormState::new(),
            queued: RwSignal::new(None),
        }
    }

    fn start(self, state: ClusterState, action: RequestedAction) {
        let (form, message) = match action {
            RequestedAction::Plan => (self.plan, "Plan queued."),
            RequestedAction::Apply => (self.apply, "Apply queued."),
        };
        self.queued.set(None);
        let (org, id) = (state.org.get_value(), state.id);
        form.run(async move { api::start_run(&org, id, action).await }, move |run| {
            self.queued.set(Some((message, run)));
            state.kick.update(|n| *n += 1);
        });
    }

    fn delete(self, state: ClusterState) {
        self.queued.set(None);
        let (org, id) = (state.org.get_value(), state.id);
        self.delete.run(async move { api::delete_cluster(&org, id).await }, move |run| {
            self.queued.set(Some(("Deletion queued: the destroy run removes everything the cluster had.", run)));
            state.kick.update(|n| *n += 1);
        });
    }

    fn unlock(self, state: ClusterState) {
        let (org, id) = (state.org.get_value(), state.id);
        self.unlock.run(async move { api::release_state_lock(&org, id).await }, move |()| {
            state.kick.update(|n| *n += 1);
        });
    }
}

#[component]
fn ClusterDetails(state: ClusterState) -> impl IntoView {
    // Each refresh sets the cluster again; parts redraw only when what they show has changed.
    let cluster = Memo::new(move |_| state.cluster.get());
    let status = Memo::new(move |_| cluster.with(|c| c.as_ref().map(|c| c.status)));
    let name = Memo::new(move |_| cluster.with(|c| c.as_ref().map(|c| c.name.clone()).unwrap_or_default()));
    let outputs = Memo::new(move |_| {
        cluster.with(|c| c.as_ref().and_then(|c| c.outputs.clone()).filter(|outputs| !outputs.is_empty()))
    });
    let failed_run = Memo::new(move |_| {
        cluster.with(|c| {
            c.as_ref()
                .filter(|c| c.status == ClusterStatus::Failed)
                .and_then(|c| c.last_run.clone())
                .filter(|run| run.status == api::RunStatus::Failed)
        })
    });
    let waiting_run = Memo::new(move |_| {
        state
            .runs
            .with(|runs| runs.iter().flatten().find(|run| run.status == api::RunStatus::AwaitingApproval).cloned())
    });
    let actions = ClusterActions::new();
    let accounts = LocalResource::new(move || {
        let org = state.org.get_value();
        async move { api::list_cloud_accounts(&org).await }
    });
    let subtitle = Signal::derive(move || cluster.with(|c| c.as_ref().map(cluster_subtitle).unwrap_or_default()));

    view! {
        <Title text=move || name.get()/>
        <PageHeader
            title=Signal::derive(move || name.get())
            subtitle=subtitle
            eyebrow=Box::new(move || view! { <A href=state.path()>"← Clusters"</A> }.into_any())
            actions=Box::new(move || {
                view! {
                    {move || status.get().map(|status| view! { <ClusterStatusBadge status/> })}
                    <ClusterButtons state actions status name/>
                }
                .into_any()
            })
        />
        <ExecutorNotice/>
        <div class="stack-lg">
            {move || {
                actions
                    .queued
                    .get()
                    .map(|(message, run)| {
                        let href = format!("/runs/{}", run.id);
                        view! {
                            <Alert kind=AlertKind::Success>
                                {message} " "
                                <A href=href attr:data-test="queued-run-link">
                                    {format!("Follow run {}", format::short_id(run.id))}
                                </A>
                            </Alert>
                        }
                    })
            }}
            <FormBanner form=actions.plan fields=&[]/>
            <FormBanner form=actions.apply fields=&[]/>
            <FormBanner form=actions.delete fields=&[]/>
            {move || state.error.get().map(|error| view! { <Alert kind=AlertKind::Warning>{format!("Could not refresh: {}", error.message())}</Alert> })}
            {move || {
                waiting_run
                    .get()
                    .map(|run| {
                        let href = format!("/runs/{}", run.id);
                        view! {
                            <Alert kind=AlertKind::Warning title="A plan is waiting for approval">
                                {run.plan_summary.map(|summary| view! { <PlanSummaryLine summary/> })}
                                <A href=href attr:data-test="waiting-run-link">
                                    {format!("Review run {}", format::short_id(run.id))}
                                </A>
                            </Alert>
                        }
                    })
            }}
            {move || {
                failed_run
                    .get()
                    .map(|run| {
                        let href = format!("/runs/{}", run.id);
                        view! {
                            <Alert kind=AlertKind::Error title=format!("The last {} failed", run.action.as_str())>
                                {run.reason.map(|reason| view! { <p>{reason}</p> })}
                                <A href=href>"See the run and its log"</A>
                            </Alert>
                        }
                    })
            }}
            <div class="grid grid-main">
                <Card title="Spec">
                    {move || cluster.get().map(|cluster| view! { <SpecList cluster accounts/> })}
                </Card>
                <Card title="Terraform state">
                    <StateSection state actions/>
                </Card>
            </div>
            {move || {
                outputs
                    .get()
                    .map(|outputs| {
                        view! {
                            <Card title="Outputs" description="What Terraform reported after the last successful apply.">
                                <OutputList outputs test="cluster-outputs"/>
                            </Card>
                        }
                    })
            }}
            <ClusterDeployments
                org=state.org
                cluster=state.id
                target=Signal::derive(move || cluster.with(|c| c.as_ref().map(|c| c.target.clone()).unwrap_or_default()))
                ready=Signal::derive(move || status.get() == Some(ClusterStatus::Ready))
                role=Signal::derive(move || state.role.get())
            />
            <Card title="Runs">
                <RunHistory state/>
            </Card>
        </div>
    }
}

/// `aws-eks · eu-west-1 · Kubernetes 1.34`; the local target's region is `local` too.
fn cluster_subtitle(cluster: &Cluster) -> String {
    let mut parts = vec![cluster.target.clone()];
    if !cluster.region.is_empty() && cluster.region != cluster.target {
        parts.push(cluster.region.clone());
    }
    parts.push(format!("Kubernetes {}", cluster.kubernetes_version));
    parts.join(" · ")
}

/// Plan (operators and above), Apply and Delete (admins and owners). A destroyed cluster
/// has none.
#[component]
fn ClusterButtons(
    state: ClusterState,
    actions: ClusterActions,
    status: Memo<Option<ClusterStatus>>,
    name: Memo<String>,
) -> impl IntoView {
    let role = move || state.role.get();
    let alive = move || status.get() != Some(ClusterStatus::Destroyed);
    let deletable = move || alive() && status.get() != Some(ClusterStatus::Destroying);
    view! {
        {move || {
            (alive() && role().is_some_and(Role::operates_clusters))
                .then(|| {
                    view! {
                        <ActionButton
                            form=actions.plan
                            label="Plan"
                            busy_label="Queueing…"
                            test="plan-cluster"
                            on_click=move |()| actions.start(state, RequestedAction::Plan)
                        />
                    }
                })
        }}
        {move || {
            (alive() && role().is_some_and(Role::manages_clusters))
                .then(|| {
                    view! {
                        <ActionButton
                            form=actions.apply
                            label="Apply"
                            busy_label="Queueing…"
                            test="apply-cluster"
                            class="btn btn-primary"
                            on_click=move |()| actions.start(state, RequestedAction::Apply)
                        />
                    }
                })
        }}
        {move || {
            (deletable() && role().is_some_and(Role::manages_clusters))
                .then(|| {
                    let name = name.get();
                    view! {
                        <ConfirmButton
                            label="Delete cluster"
                            prompt="Type the cluster's name to destroy it and everything in it:"
                            confirm_label="Delete cluster"
                            busy=actions.delete.busy
                            test="delete-cluster"
                            type_to_confirm=name
                            on_confirm=move |()| actions.delete(state)
                        />
                    }
                })
        }}
    }
}

#[component]
fn SpecList(cluster: Cluster, accounts: LocalResource<api::ApiResult<Vec<CloudAccount>>>) -> impl IntoView {
    let account_id = cluster.cloud_account_id;
    let provider = cluster.provider;
    let account_name = move |id: Uuid| {
        accounts
            .get()
            .and_then(Result::ok)
            .and_then(|list| list.into_iter().find(|account| account.id == id).map(|account| account.name))
    };
    let nodes = node_summary(&cluster);
    view! {
        <dl class="details details-flush spec" data-test="cluster-spec">
            <div>
                <dt>"Name"</dt>
                <dd class="mono">{cluster.name}</dd>
            </div>
            <div>
                <dt>"Target"</dt>
                <dd><TargetBadge provider target=cluster.target/></dd>
            </div>
            <div>
                <dt>"Cloud account"</dt>
                <dd>
                    {move || match account_id {
                        None => "None: a local simulation".to_owned(),
                        Some(id) => account_name(id).unwrap_or_else(|| id.to_string()),
                    }}
                </dd>
            </div>
            <div>
                <dt>"Region"</dt>
                <dd class="mono">{cluster.region}</dd>
            </div>
            <div>
                <dt>"Kubernetes"</dt>
                <dd class="mono">{cluster.kubernetes_version}</dd>
            </div>
            <div>
                <dt>"VPC"</dt>
                <dd class="mono">{cluster.vpc_cidr}</dd>
            </div>
            <div>
                <dt>"Public subnets"</dt>
                <dd><CidrList cidrs=cluster.public_subnets/></dd>
            </div>
            <div>
                <dt>"Private subnets"</dt>
                <dd><CidrList cidrs=cluster.private_subnets/></dd>
            </div>
            <div>
                <dt>"Nodes"</dt>
                <dd>{nodes}</dd>
            </div>
            <div>
                <dt>"State"</dt>
                <dd>{backend_summary(&cluster.state_backend)}</dd>
            </div>
            <div>
                <dt>"Created"</dt>
                <dd><Time value=cluster.created_at/></dd>
            </div>
        </dl>
    }
}

#[component]
fn CidrList(cidrs: Vec<String>) -> impl IntoView {
    if cidrs.is_empty() {
        return view! { <span class="muted">"None"</span> }.into_any();
    }
    view! {
        <ul class="cidr-list">
            {cidrs.into_iter().map(|cidr| view! { <li class="code-pill mono">{cidr}</li> }).collect_view()}
        </ul>
    }
    .into_any()
}

/// `t3.medium · 2 nodes (1–3)`.
fn node_summary(cluster: &Cluster) -> String {
    let count = match cluster.node_desired {
        1 => "1 node".to_owned(),
        n => format!("{n} nodes"),
    };
    format!("{} · {count} ({}–{})", cluster.node_instance_type, cluster.node_min, cluster.node_max)
}

fn backend_summary(backend: &StateBackend) -> String {
    let (place, bucket, key) = match backend {
        StateBackend::Fleetplane => return "Fleetplane".to_owned(),
        StateBackend::S3 { bucket, key } => ("S3 bucket", bucket, key),
        StateBackend::Gcs { bucket, key } => ("GCS bucket", bucket, key),
        StateBackend::Azurerm { bucket, key } => ("Azure storage account", bucket, key),
    };
    let mut text = format!("{place} {bucket}");
    if let Some(key) = key.as_deref().filter(|key| !key.is_empty()) {
        text.push_str(&format!(", key {key}"));
    }
    text
}

/// The newest state version and the lock, with Force release for admins and owners.
#[component]
fn StateSection(state: ClusterState, actions: ClusterActions) -> impl IntoView {
    let backend = Memo::new(move |_| state.cluster.with(|c| c.as_ref().map(|c| c.state_backend.clone())));
    let info = Memo::new(move |_| state.state.get());
    move || {
        if let Some(backend) = backend.get().filter(|backend| *backend != StateBackend::Fleetplane) {
            return view! {
                <p class="muted">
                    {format!("Terraform keeps this cluster's state in your {}.", backend_summary(&backend))}
                    " Fleetplane does not see its versions or lock."
                </p>
            }
            .into_any();
        }
        match info.get() {
            None => view! { <Loading/> }.into_any(),
            Some(Err(error)) => view! { <LoadError error/> }.into_any(),
            Some(Ok(info)) => view! { <StateFacts info state actions/> }.into_any(),
        }
    }
}

#[component]
fn StateFacts(info: StateInfo, state: ClusterState, actions: ClusterActions) -> impl IntoView {
    let latest = info.latest().cloned();
    let count = info.versions.len();
    view! {
        <div class="stack">
            {match latest {
                Some(version) => view! {
                    <dl class="details details-flush" data-test="state-version" data-serial=version.serial>
                        <div>
                            <dt>"Latest"</dt>
                            <dd>{format!("Serial {} · {}", version.serial, format::bytes(version.size))}</dd>
                        </div>
                        <div>
                            <dt>"Written"</dt>
                            <dd><Time value=version.created_at relative=true/></dd>
                        </div>
                        {version.run_id.map(|run| {
                            let href = format!("/runs/{run}");
                            view! { <div><dt>"By"</dt><dd><A href=href attr:class="mono">{format!("run {}", format::short_id(run))}</A></dd></div> }
                        })}
                        <div>
                            <dt>"History"</dt>
                            <dd>{if count == 1 { "1 version kept".to_owned() } else { format!("{count} versions kept") }}</dd>
                        </div>
                    </dl>
                }
                .into_any(),
                None => view! { <p class="muted">"No state yet: the first apply writes it."</p> }.into_any(),
            }}
            {match info.lock {
                Some(lock) => view! { <LockHolder lock state actions/> }.into_any(),
                None => view! { <p class="state-unlocked muted" data-test="state-unlocked">"Not locked."</p> }.into_any(),
            }}
        </div>
    }
}

#[component]
fn LockHolder(lock: StateLock, state: ClusterState, actions: ClusterActions) -> impl IntoView {
    let admin = move || state.role.get().is_some_and(Role::manages_clusters);
    // Is the run that holds the lock still at work? Then releasing it is dangerous.
    let holder_running = {
        let run_id = lock.run_id;
        move || {
            state.runs.with(|runs| runs.iter().flatten().any(|run| Some(run.id) == run_id && !run.status.is_terminal()))
        }
    };
    let holder = match lock.run_id {
        Some(run) => {
            let href = format!("/runs/{run}");
            view! { <A href=href attr:class="mono" attr:data-test="lock-run">{format!("run {}", format::short_id(run))}</A> }
                .into_any()
        }
        None => view! { <span class="mono">{lock.who.clone()}</span> }.into_any(),
    };
    let operation = lock_operation(&lock.operation).map(|operation| format!(" ({operation})"));
    view! {
        <div class="state-lock" data-test="state-lock" data-run-id=lock.run_id.map(|id| id.to_string())>
            <p class="state-lock-title">
                <span class="lock-icon" aria-hidden="true"></span>
                "Locked"
            </p>
            <p>
                "Held by " {holder}
                {operation} " since " <Time value=lock.created_at relative=true/> "."
            </p>
            {(!lock.who.is_empty()).then(|| view! { <p class="small muted mono">{lock.who.clone()}</p> })}
            <FormBanner form=actions.unlock fields=&[]/>
            {move || {
                admin()
                    .then(|| {
                        let prompt = if holder_running() {
                            "The run holding it is still at work: releasing the lock now can corrupt the state. Release anyway?"
                        } else {
                            "Release the lock? Do this only when no run is using the state."
                        };
                        view! {
                            <ConfirmButton
                                label="Force release"
                                prompt=prompt
                                confirm_label="Release lock"
                                busy=actions.unlock.busy
                                test="force-unlock"
                                on_confirm=move |()| actions.unlock(state)
                            />
                        }
                    })
            }}
        </div>
    }
}

/// Terraform names a lock's operation `OperationTypeApply`: say `apply`.
fn lock_operation(operation: &str) -> Option<String> {
    let name = operation.strip_prefix("OperationType").unwrap_or(operation);
    (!name.is_empty()).then(|| name.to_ascii_lowercase())
}

#[component]
fn RunHistory(state: ClusterState) -> impl IntoView {
    let runs = Memo::new(move |_| state.runs.get());
    move || match runs.get() {
        None => view! { <Loading/> }.into_any(),
        Some(list) if list.is_empty() => {
            view! { <EmptyState title="No runs yet">"Plans, applies and the destroy run appear here."</EmptyState> }
                .into_any()
        }
        Some(list) => view! {
            <div class="table-wrap">
                <table class="table table-stack run-table" data-test="run-table">
                    <thead>
                        <tr>
                            <th scope="col">"Run"</th>
                            <th scope="col">"Status"</th>
                            <th scope="col">"Requested by"</th>
                            <th scope="col">"Queued"</th>
                            <th scope="col">"Took"</th>
                        </tr>
                    </thead>
                    <tbody>{list.into_iter().map(|run| view! { <RunRow run/> }).collect_view()}</tbody>
                </table>
            </div>
        }
        .into_any(),
    }
}

#[component]
fn RunRow(run: Run) -> impl IntoView {
    let href = format!("/runs/{}", run.id);
    let short = format::short_id(run.id);
    let took = run.started_at.zip(run.finished_at).map(|(from, to)| format::elapsed(from, to));
    view! {
        <tr data-test="run-row" data-run-id=run.id.to_string() data-status=run.status.as_str()>
            <td>
                <A href=href attr:class="run-link">
                    <span class="strong">{run.action.label()}</span>
                    " "
                    <span class="mono small muted">{short}</span>
                </A>
            </td>
            <td data-label="Status"><RunStatusBadge status=run.status/></td>
            <td data-label="Requested by">{run.requested_by.unwrap_or_else(|| "Fleetplane".to_owned())}</td>
            <td data-label="Queued"><Time value=run.created_at relative=true/></td>
            <td data-label="Took">
                {match took {
                    Some(took) => view! { <span>{took}</span> }.into_any(),
                    None => view! { <span class="muted">"—"</span> }.into_any(),
                }}
            </td>
        </tr>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cluster(extra: serde_json::Value) -> Cluster {
        let mut value = json!({
            "id": "01a20b29-8292-7196-af7e-d490e4f32cd3", "org": "acme", "name": "payments-prod",
            "name_prefix": "payments", "name_suffix": "prod", "cloud_account_id": null, "provider": "aws",
            "target": "aws-eks", "region": "eu-west-1", "kubernetes_version": "1.34", "vpc_cidr": "10.0.0.0/16",
            "public_subnets": [], "private_subnets": [], "node_instance_type": "t3.medium",
            "node_min": 1, "node_max": 3, "node_desired": 2, "state_backend": { "type": "fleetplane" },
            "status": "ready", "outputs": null, "last_run": null,
            "created_at": "2026-04-14T09:30:00Z", "updated_at": "2026-04-14T09:30:00Z"
        });
        if let (Some(fields), Some(more)) = (value.as_object_mut(), extra.as_object()) {
            fields.extend(more.clone());
        }
        serde_json::from_value(value).expect("cluster parses")
    }

    #[test]
    fn names_lock_operations_plainly() {
        assert_eq!(lock_operation("OperationTypeApply").as_deref(), Some("apply"));
        assert_eq!(lock_operation("migrate").as_deref(), Some("migrate"));
        assert_eq!(lock_operation(""), None);
    }

    #[test]
    fn says_where_the_cluster_runs() {
        let eks = cluster(json!({ "region": "eu-west-1", "kubernetes_version": "1.34" }));
        assert_eq!(cluster_subtitle(&eks), "aws-eks · eu-west-1 · Kubernetes 1.34");
        let local = cluster(json!({ "target": "local", "region": "local", "kubernetes_version": "1.34" }));
        assert_eq!(cluster_subtitle(&local), "local · Kubernetes 1.34");
    }

    #[test]
    fn summarises_the_node_pool() {
        assert_eq!(node_summary(&cluster(json!({}))), "t3.medium · 2 nodes (1–3)");
        assert_eq!(node_summary(&cluster(json!({ "node_desired": 1 }))), "t3.medium · 1 node (1–3)");
    }

    #[test]
    fn names_the_state_backend() {
        assert_eq!(backend_summary(&StateBackend::Fleetplane), "Fleetplane");
        let s3 = StateBackend::S3 { bucket: "tf".into(), key: Some("c/p.tfstate".into()) };
        assert_eq!(backend_summary(&s3), "S3 bucket tf, key c/p.tfstate");
        let with_s3 = cluster(json!({ "state_backend": { "type": "s3", "bucket": "tf" } }));
        assert!(!uses_fleetplane_state(&with_s3));
        assert!(uses_fleetplane_state(&cluster(json!({}))));
    }
}
