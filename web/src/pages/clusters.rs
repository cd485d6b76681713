//! An organization's Kubernetes clusters: the list, and for admins and owners the form that
//! creates one.
//!
//! The list refreshes itself: every few seconds while a cluster is being created or destroyed,
//! and now and then otherwise.

use std::time::Duration;

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;

use crate::api::{self, ApiError, Cluster, Executor, Org};
use crate::browser;
use crate::components::{
    Alert, AlertKind, Card, ClusterStatusBadge, EmptyState, LoadError, Loading, PageHeader, ProviderBadge,
    RequireViewer, RoleBadge, RunStatusBadge, Time,
};
use crate::format::{self, encode};
use crate::pages::cluster_form::ClusterForm;
use crate::pages::org::use_org_name;

/// How often a list (or a cluster) with something in progress is asked for again. Status
/// changes arrive at once on the live stream; this covers a stream that is reconnecting.
pub const BUSY_REFRESH: Duration = Duration::from_secs(10);

/// How often it is asked for again when nothing is happening.
pub const IDLE_REFRESH: Duration = Duration::from_secs(30);

#[component]
pub fn ClustersPage() -> impl IntoView {
    view! {
        <Title text="Clusters"/>
        <RequireViewer>
            <ClustersContent/>
        </RequireViewer>
    }
}

#[component]
fn ClustersContent() -> impl IntoView {
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
            title="Clusters"
            subtitle=Signal::derive(move || format!("The Kubernetes clusters {} runs in its cloud accounts.", org_title()))
            eyebrow=Box::new(move || view! { <A href=back>"← " {move || name.get()}</A> }.into_any())
            actions=Box::new(move || {
                view! {
                    {move || {
                        loaded()
                            .map(|org| {
                                view! {
                                    <RoleBadge role=org.role/>
                                    {org.role.manages_clusters().then(|| view! { <NewClusterLink/> })}
                                }
                            })
                    }}
                }
                .into_any()
            })
        />
        <ExecutorNotice/>
        <Suspense fallback=|| view! { <Loading/> }>
            {move || {
                org.get()
                    .map(|result| match result {
                        Err(error) => view! { <LoadError error/> }.into_any(),
                        Ok(org) => view! { <Clusters org/> }.into_any(),
                    })
            }}
        </Suspense>
    }
}

/// A link to the create form further down the page (a plain fragment link, outside the router).
#[component]
fn NewClusterLink() -> impl IntoView {
    view! {
        <a href="#new-cluster" rel="external" class="btn btn-primary" data-test="new-cluster-link">
            "New cluster"
        </a>
    }
}

/// Says how runs are executed when that is not the usual way: local Terraform processes
/// because no Docker engine was found, or no worker at all.
#[component]
pub fn ExecutorNotice() -> impl IntoView {
    let system = LocalResource::new(api::get_system);
    move || {
        // The notice is a hint: if the question fails, the page says nothing.
        let system = system.get()?.ok()?;
        let notice = match system.executor {
            Executor::Process => view! {
                <Alert kind=AlertKind::Info title="Runs use local Terraform processes">
                    "No Docker engine was found, so Fleetplane runs the "
                    <code>"terraform"</code>
                    " binary on its own machine instead of in provisioner containers."
                </Alert>
            }
            .into_any(),
            Executor::None if system.workers == 0 => view! {
                <Alert kind=AlertKind::Warning title="No worker is running">
                    "This server runs no workers itself, and none has checked in: runs wait in the queue until a "
                    <code>"fleetplane worker"</code>
                    " starts."
                </Alert>
            }
            .into_any(),
            Executor::Docker | Executor::None => return None,
        };
        Some(view! {
            <div class="page-notice" data-test="executor-notice" data-executor=system.executor.as_str()>
                {notice}
            </div>
        })
    }
}

#[component]
fn Clusters(org: Org) -> impl IntoView {
    let manage = org.role.manages_clusters();
    let org_name = StoredValue::new(org.name.clone());
    let clusters = RwSignal::new(None::<Vec<Cluster>>);
    let error = RwSignal::new(None::<ApiError>);
    let kick = RwSignal::new(0u32);
    crate::live::on_change(move || kick.update(|n| *n += 1));
    Effect::new(move |_| {
        kick.track();
        browser::poll(move || async move {
            let result = api::list_clusters(&org_name.try_get_value()?).await;
            match result {
                Ok(list) => {
                    let busy = list.iter().any(in_progress);
                    clusters.try_set(Some(list));
                    error.try_set(None);
                    Some(if busy { BUSY_REFRESH } else { IDLE_REFRESH })
                }
                Err(failure) => {
                    let hopeless = failure.is_unauthenticated() || failure.status == 403;
                    error.try_set(Some(failure));
                    (!hopeless).then_some(IDLE_REFRESH)
                }
            }
        });
    });
    // Each refresh sets the list again; the table redraws only when it has changed.
    let list = Memo::new(move |_| clusters.get());

    view! {
        <div class="stack-lg">
            <Card title="Clusters">
                {move || match (list.get(), error.get()) {
                    (None, None) => view! { <Loading/> }.into_any(),
                    (None, Some(error)) => view! { <LoadError error/> }.into_any(),
                    (Some(list), _) if list.is_empty() => view! { <NoClusters manage/> }.into_any(),
                    (Some(list), _) => view! { <ClusterTable list/> }.into_any(),
                }}
            </Card>
            {if manage {
                view! {
                    <Card
                        title="New cluster"
                        id="new-cluster"
                        description="Fleetplane checks the spec as you type, then creates the cluster and queues the run that provisions it."
                    >
                        <ClusterForm org=org.name.clone()/>
                    </Card>
                }
                .into_any()
            } else {
                view! {
                    <Alert kind=AlertKind::Info>"Only owners and admins can create or delete clusters."</Alert>
                }
                .into_any()
            }}
        </div>
    }
}

/// Something is happening to the cluster, or its last run is not over.
pub fn in_progress(cluster: &Cluster) -> bool {
    cluster.status.is_changing() || cluster.last_run.as_ref().is_some_and(|run| !run.status.is_terminal())
}

#[component]
fn NoClusters(manage: bool) -> impl IntoView {
    view! {
        <EmptyState title="No clusters yet">
            {if manage {
                view! {
                    <p>"Create an EKS, AKS or GKE cluster in one of this organization's cloud accounts."</p>
                    <div class="empty-action">
                        <NewClusterLink/>
                    </div>
                }
                .into_any()
            } else {
                view! { <p>"An owner or admin of this organization can create one."</p> }.into_any()
            }}
        </EmptyState>
    }
}

#[component]
fn ClusterTable(list: Vec<Cluster>) -> impl IntoView {
    view! {
        <div class="table-wrap">
            <table class="table table-stack cluster-table" data-test="cluster-table">
                <thead>
                    <tr>
                        <th scope="col">"Cluster"</th>
                        <th scope="col">"Status"</th>
                        <th scope="col">"Target"</th>
                        <th scope="col">"Region"</th>
                        <th scope="col">"Kubernetes"</th>
                        <th scope="col">"Last run"</th>
                    </tr>
                </thead>
                <tbody>{list.into_iter().map(|cluster| view! { <ClusterRow cluster/> }).collect_view()}</tbody>
            </table>
        </div>
    }
}

#[component]
fn ClusterRow(cluster: Cluster) -> impl IntoView {
    let href = format!("/orgs/{}/clusters/{}", encode(&cluster.org), cluster.id);
    let name = cluster.name.clone();
    view! {
        <tr
            data-test="cluster-row"
            data-cluster-id=cluster.id.to_string()
            data-name=cluster.name.clone()
            data-status=cluster.status.as_str()
        >
            <td>
                <A href=href attr:class="strong cluster-link" attr:data-test="cluster-link">{name}</A>
            </td>
            <td data-label="Status">
                <ClusterStatusBadge status=cluster.status/>
            </td>
            <td data-label="Target">
                <TargetBadge provider=cluster.provider target=cluster.target/>
            </td>
            <td data-label="Region" class="mono small">{cluster.region}</td>
            <td data-label="Kubernetes" class="mono small">{cluster.kubernetes_version}</td>
            <td data-label="Last run">
                {match cluster.last_run {
                    Some(run) => view! { <RunSummary run/> }.into_any(),
                    None => view! { <span class="muted">"None yet"</span> }.into_any(),
                }}
            </td>
        </tr>
    }
}

/// Where a cluster runs: its cloud's mark and the target, or the local simulation.
#[component]
pub fn TargetBadge(provider: Option<api::Provider>, target: String) -> impl IntoView {
    let label = target.clone();
    view! {
        <span class="target" data-test="cluster-target" data-target=target>
            {match provider {
                Some(provider) => view! {
                    <ProviderBadge provider/>
                    <span class="mono small">{label}</span>
                }
                .into_any(),
                None => view! {
                    <span class="provider provider-local" data-test="provider-badge" title="Simulated: no cloud">
                        "Local"
                    </span>
                }
                .into_any(),
            }}
        </span>
    }
}

/// A run in one line: status, action and when, linking to the run.
#[component]
pub fn RunSummary(run: api::Run) -> impl IntoView {
    let href = format!("/runs/{}", run.id);
    let when = run.finished_at.or(run.started_at).unwrap_or(run.created_at);
    view! {
        <A href=href attr:class="run-summary" attr:data-test="last-run" attr:title=format!("Run {}", format::short_id(run.id))>
            <RunStatusBadge status=run.status/>
            <span class="run-summary-text">
                <span>{run.action.label()}</span>
                <span class="muted small">
                    <Time value=when relative=true/>
                </span>
            </span>
        </A>
    }
}
