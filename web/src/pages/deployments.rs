//! Services on a cluster: the cluster page's Deployments card (what runs there, and a form to
//! deploy a catalog service), and one deployment's page (status, health, outputs, revisions,
//! and upgrade, rollback and uninstall).
//!
//! Operators and above deploy, upgrade, roll back and uninstall; viewers look. A fleet-telemetry
//! deployment that is up links to its fleet.

use std::time::Duration;

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;
use leptos_router::hooks::use_params_map;
use uuid::Uuid;

use crate::api::{
    self, ApiError, CatalogEntry, CreateDeploymentRequest, Deployment, DeploymentStatus, Role, UpgradeDeploymentRequest,
};
use crate::browser;
use crate::components::{
    ActionButton, Alert, AlertKind, Card, ConfirmButton, EmptyState, FormBanner, FormState, LoadError, Loading,
    PageHeader, RequireViewer, RunStatusBadge, SelectField, SelectOption, SubmitButton, Time,
};
use crate::format::{self, encode};
use crate::pages::org::use_org_name;

/// How often a page showing a deployment at work looks again, and one at rest.
const BUSY_REFRESH: Duration = Duration::from_secs(2);
const IDLE_REFRESH: Duration = Duration::from_secs(15);

pub fn deployment_href(org: &str, id: Uuid) -> String {
    format!("/orgs/{}/deployments/{id}", encode(org))
}

fn at_work(status: DeploymentStatus) -> bool {
    matches!(status, DeploymentStatus::Pending | DeploymentStatus::Deploying | DeploymentStatus::Uninstalling)
}

/// Whether the deployment has a fleet to show: fleet-telemetry, up.
pub fn has_fleet(deployment: &Deployment) -> bool {
    deployment.service == "fleet-telemetry"
        && matches!(deployment.status, DeploymentStatus::Healthy | DeploymentStatus::Degraded)
}

/// The values typed into a form: nothing for an empty box, else JSON, refused here as the API
/// would refuse it.
fn values_json(text: &str) -> Result<Option<serde_json::Value>, ApiError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(text).map(Some).map_err(|error| ApiError {
        status: 422,
        code: "validation_failed".into(),
        title: "Invalid values".into(),
        detail: Some(format!("The values are not JSON: {error}.")),
        errors: Vec::new(),
    })
}

/// A deployment's status. Deployments at work show a live dot.
#[component]
pub fn DeploymentStatusBadge(status: DeploymentStatus) -> impl IntoView {
    let tone = match status {
        DeploymentStatus::Healthy => "badge-success",
        DeploymentStatus::Degraded => "badge-warning",
        DeploymentStatus::Failed => "badge-danger",
        DeploymentStatus::Pending => "badge-neutral",
        DeploymentStatus::Deploying | DeploymentStatus::Uninstalling => "badge-info",
        DeploymentStatus::Uninstalled => "badge-muted",
    };
    let label = match status {
        DeploymentStatus::Pending => "Pending",
        DeploymentStatus::Deploying => "Deploying",
        DeploymentStatus::Healthy => "Healthy",
        DeploymentStatus::Degraded => "Degraded",
        DeploymentStatus::Failed => "Failed",
        DeploymentStatus::Uninstalling => "Uninstalling",
        DeploymentStatus::Uninstalled => "Uninstalled",
    };
    view! {
        <span
            class=format!("badge badge-status {tone}")
            class:badge-live=at_work(status)
            data-test="deployment-status"
            data-status=status.as_str()
        >
            {label}
        </span>
    }
}

/// The cluster page's list of deployments, and, for operators on a ready cluster, the form
/// that deploys a catalog service.
#[component]
pub fn ClusterDeployments(
    org: StoredValue<String>,
    cluster: Uuid,
    /// The cluster's target (`local`, `aws-eks`, …): some services cannot run on `local`.
    #[prop(into)]
    target: Signal<String>,
    #[prop(into)] ready: Signal<bool>,
    #[prop(into)] role: Signal<Option<Role>>,
) -> impl IntoView {
    let list = RwSignal::new(None::<Result<Vec<Deployment>, ApiError>>);
    let kick = RwSignal::new(0u32);
    Effect::new(move |_| {
        kick.track();
        browser::poll(move || async move {
            let org = org.try_get_value()?;
            let result = api::list_cluster_deployments(&org, cluster).await.map(|page| page.items);
            let busy = result.as_ref().is_ok_and(|items| items.iter().any(|d| at_work(d.status)));
            list.try_set(Some(result));
            Some(if busy { BUSY_REFRESH } else { IDLE_REFRESH })
        });
    });
    crate::live::on_change(move || kick.update(|n| *n += 1));
    let can_deploy = move || ready.get() && role.get().is_some_and(Role::operates_clusters);
    view! {
        <Card title="Deployments" id="deployments">
            <div class="stack">
                {move || match list.get() {
                    None => view! { <Loading/> }.into_any(),
                    Some(Err(error)) => view! { <LoadError error/> }.into_any(),
                    Some(Ok(items)) if items.is_empty() => view! {
                        <EmptyState title="Nothing deployed yet">
                            "Services from the catalog that run on this cluster appear here."
                        </EmptyState>
                    }
                    .into_any(),
                    Some(Ok(items)) => view! { <DeploymentTable org=org.get_value() items/> }.into_any(),
                }}
                {move || can_deploy().then(|| view! { <DeployForm org cluster target on_done=move || kick.update(|n| *n += 1)/> })}
            </div>
        </Card>
    }
}

#[component]
fn DeploymentTable(org: String, items: Vec<Deployment>) -> impl IntoView {
    view! {
        <div class="table-wrap">
            <table class="table table-stack" data-test="deployment-table">
                <thead>
                    <tr>
                        <th scope="col">"Service"</th>
                        <th scope="col">"Status"</th>
                        <th scope="col">"Version"</th>
                        <th scope="col">"Revision"</th>
                        <th scope="col">"Updated"</th>
                    </tr>
                </thead>
                <tbody>
                    {items
                        .into_iter()
                        .map(|deployment| {
                            let href = deployment_href(&org, deployment.id);
                            view! {
                                <tr data-test="deployment-row" data-service=deployment.service.clone() data-status=deployment.status.as_str()>
                                    <td><A href=href attr:class="strong">{deployment.release.clone()}</A></td>
                                    <td data-label="Status"><DeploymentStatusBadge status=deployment.status/></td>
                                    <td data-label="Version" class="mono">{deployment.version.clone()}</td>
                                    <td data-label="Revision">{deployment.current_revision.map_or_else(|| "—".to_owned(), |n| n.to_string())}</td>
                                    <td data-label="Updated"><Time value=deployment.updated_at relative=true/></td>
                                </tr>
                            }
                        })
                        .collect_view()}
                </tbody>
            </table>
        </div>
    }
}

/// Service and version from the catalog, and values as JSON (empty: the entry's defaults).
#[component]
fn DeployForm(
    org: StoredValue<String>,
    cluster: Uuid,
    target: Signal<String>,
    #[prop(into)] on_done: Callback<()>,
) -> impl IntoView {
    let catalog = LocalResource::new(api::list_catalog);
    let service = RwSignal::new("fleet-telemetry".to_owned());
    let version = RwSignal::new(String::new());
    let values = RwSignal::new(String::new());
    let form = FormState::new();
    let queued = RwSignal::new(None::<(Uuid, Uuid)>);
    let entries = move || catalog.get().and_then(Result::ok).unwrap_or_default();
    let chosen = move || entries().into_iter().find(|entry| entry.service == service.get());
    let service_options = Memo::new(move |_| {
        let local = target.get() == "local";
        entries()
            .into_iter()
            .map(|entry: CatalogEntry| {
                let unsupported = local && !entry.local.supported;
                let label =
                    if unsupported { format!("{} (not on the local target)", entry.title) } else { entry.title };
                SelectOption::new(entry.service, label).disabled(unsupported)
            })
            .collect::<Vec<_>>()
    });
    let version_options = Memo::new(move |_| {
        let mut options = vec![SelectOption::new("", "Newest")];
        if let Some(entry) = chosen() {
            options.extend(entry.versions.into_iter().map(|v| {
                let label = format!("{} (app {})", v.version, v.app_version);
                SelectOption::new(v.version, label)
            }));
        }
        options
    });
    let local_reason = move || {
        chosen()
            .filter(|_| target.get() == "local")
            .and_then(|entry| entry.local.reason.filter(|_| !entry.local.supported))
    };
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let values = match values_json(&values.get_untracked()) {
            Ok(values) => values,
            Err(error) => return form.error.set(Some(error)),
        };
        let request = CreateDeploymentRequest {
            service: Some(service.get_untracked()),
            version: Some(version.get_untracked()).filter(|v| !v.is_empty()),
            values,
        };
        let org = org.get_value();
        form.run(async move { api::create_deployment(&org, cluster, &request).await }, move |created| {
            queued.set(Some((created.deployment.id, created.run.id)));
            on_done.run(());
        });
    };
    view! {
        <form id="deploy-form" class="form stack" on:submit=submit data-test="deploy-form" novalidate>
            <h3 class="section-title">"Deploy a service"</h3>
            {move || {
                queued
                    .get()
                    .map(|(deployment, run)| {
                        let href = deployment_href(&org.get_value(), deployment);
                        view! {
                            <Alert kind=AlertKind::Success>
                                "Deploy queued. "
                                <A href=href attr:data-test="queued-deployment-link">"Follow the deployment"</A>
                                " · "
                                <A href=format!("/runs/{run}")>{format!("run {}", format::short_id(run))}</A>
                            </Alert>
                        }
                    })
            }}
            <FormBanner form fields=&["service", "version"]/>
            <div class="grid grid-2">
                <SelectField id="deploy-service" name="service" label="Service" value=service form options=service_options/>
                <SelectField id="deploy-version" name="version" label="Chart version" value=version form options=version_options/>
            </div>
            {move || local_reason().map(|reason| view! { <Alert kind=AlertKind::Info>{reason}</Alert> })}
            {move || chosen().map(|entry| view! { <p class="muted small">{entry.description}</p> })}
            <div class="field">
                <label for="deploy-values" class="field-label">
                    "Values" <span class="field-optional">" (optional, JSON)"</span>
                </label>
                <textarea
                    id="deploy-values"
                    name="values"
                    class="input mono"
                    rows="4"
                    placeholder="{}: the catalog's defaults"
                    bind:value=values
                ></textarea>
                <p class="field-hint">"Checked against the service's values schema, field by field. Secrets are sealed and never shown again."</p>
            </div>
            <div class="form-actions">
                <SubmitButton form label="Deploy" busy_label="Queueing…"/>
            </div>
        </form>
    }
}

/// The fleet API's address of a fleet-telemetry deployment on the `local` target (a container
/// on this machine's loopback), if it is up.
fn local_fleet_url(deployment: &Deployment) -> Option<String> {
    let url = deployment.outputs.as_ref()?.get("url")?.as_str()?;
    (has_fleet(deployment) && url.starts_with("http://127.0.0.1:")).then(|| url.to_owned())
}

/// The shell commands that ride five simulated bikes against the local fleet at `url`.
fn simulate_commands(deployment: Uuid, url: &str) -> String {
    format!(
        "TOKEN=$(docker exec $(docker ps -q --filter label=fleetplane.deployment={deployment}) \\\n    \
         /fleet-telemetry admin create-token --name sim --scope write)\n\
         cargo run -p fleet-sim -- --api {url} --token \"$TOKEN\" --bikes 5"
    )
}

#[component]
pub fn DeploymentPage() -> impl IntoView {
    let org = use_org_name();
    let params = use_params_map();
    let id = Memo::new(move |_| params.with(|params| params.get("id").unwrap_or_default()));
    view! {
        <Title text="Deployment"/>
        <RequireViewer>{move || view! { <DeploymentView org=org.get() id=id.get()/> }}</RequireViewer>
    }
}

#[component]
fn DeploymentView(org: String, id: String) -> impl IntoView {
    let id = match api::parse_id(&id) {
        Ok(id) => id,
        Err(error) => return view! { <LoadError error/> }.into_any(),
    };
    let org = StoredValue::new(org);
    let deployment = RwSignal::new(None::<Deployment>);
    let error = RwSignal::new(None::<ApiError>);
    let role = RwSignal::new(None::<Role>);
    let kick = RwSignal::new(0u32);
    Effect::new(move |_| {
        kick.track();
        browser::poll(move || async move {
            let name = org.try_get_value()?;
            if role.try_get_untracked()?.is_none()
                && let Ok(found) = api::get_org(&name).await
            {
                role.try_set(Some(found.role));
            }
            match api::get_deployment(&name, id).await {
                Ok(found) => {
                    let busy = at_work(found.status);
                    deployment.try_set(Some(found));
                    error.try_set(None);
                    Some(if busy { BUSY_REFRESH } else { IDLE_REFRESH })
                }
                Err(failed) => {
                    let hopeless = matches!(failed.status, 401 | 403 | 404);
                    error.try_set(Some(failed));
                    (!hopeless).then_some(IDLE_REFRESH)
                }
            }
        });
    });
    crate::live::on_change(move || kick.update(|n| *n += 1));
    (move || match (deployment.get(), error.get()) {
        (Some(shown), _) => view! { <DeploymentDetails org deployment=shown role kick/> }.into_any(),
        (None, Some(error)) => view! { <LoadError error/> }.into_any(),
        (None, None) => view! { <Loading/> }.into_any(),
    })
    .into_any()
}

#[component]
fn DeploymentDetails(
    org: StoredValue<String>,
    deployment: Deployment,
    role: RwSignal<Option<Role>>,
    kick: RwSignal<u32>,
) -> impl IntoView {
    let id = deployment.id;
    let cluster_href = format!("/orgs/{}/clusters/{}", encode(&org.get_value()), deployment.cluster_id);
    let subtitle = format!("{} on {} · chart {}", deployment.service, deployment.cluster_name, deployment.version);
    let operator = move || role.get().is_some_and(Role::operates_clusters);
    let alive = deployment.status != DeploymentStatus::Uninstalled;
    let fleet_href = has_fleet(&deployment).then(|| format!("{}/fleet", deployment_href(&org.get_value(), id)));
    let upgrade = FormState::new();
    let rollback = FormState::new();
    let uninstall = FormState::new();
    let queued = RwSignal::new(None::<(&'static str, Uuid)>);
    let values = RwSignal::new(serde_json::to_string_pretty(&deployment.values).unwrap_or_default());
    let after = move |message: &'static str| {
        move |done: api::DeploymentWithRun| {
            queued.set(Some((message, done.run.id)));
            kick.update(|n| *n += 1);
        }
    };
    let on_upgrade = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let values = match values_json(&values.get_untracked()) {
            Ok(values) => values,
            Err(error) => return upgrade.error.set(Some(error)),
        };
        let request = UpgradeDeploymentRequest { version: None, values };
        let org = org.get_value();
        upgrade.run(async move { api::upgrade_deployment(&org, id, &request).await }, after("Upgrade queued."));
    };
    let outputs = deployment.outputs.clone().unwrap_or_default();
    let simulate = local_fleet_url(&deployment).map(|url| simulate_commands(id, &url));
    let revisions = deployment.revisions.clone();
    let current = deployment.current_revision;
    view! {
        <Title text=deployment.release.clone()/>
        <PageHeader
            title=deployment.release.clone()
            subtitle=subtitle
            eyebrow=Box::new(move || view! { <A href=cluster_href.clone()>"← Cluster"</A> }.into_any())
            actions=Box::new(move || {
                view! {
                    <DeploymentStatusBadge status=deployment.status/>
                    {fleet_href.clone().map(|href| view! { <A href=href attr:class="btn btn-primary" attr:data-test="open-fleet">"Open fleet"</A> })}
                }
                .into_any()
            })
        />
        <div class="stack-lg">
            {move || {
                queued
                    .get()
                    .map(|(message, run)| {
                        view! {
                            <Alert kind=AlertKind::Success>
                                {message} " " <A href=format!("/runs/{run}")>{format!("Follow run {}", format::short_id(run))}</A>
                            </Alert>
                        }
                    })
            }}
            <FormBanner form=rollback fields=&[]/>
            <FormBanner form=uninstall fields=&[]/>
            {deployment.reason.clone().map(|reason| {
                let kind = match deployment.status {
                    DeploymentStatus::Failed => AlertKind::Error,
                    DeploymentStatus::Degraded => AlertKind::Warning,
                    _ => AlertKind::Info,
                };
                view! { <Alert kind><span data-test="deployment-reason">{reason}</span></Alert> }
            })}
            <div class="grid grid-main">
                <Card title="Status">
                    <dl class="details details-flush" data-test="deployment-details">
                        <div><dt>"Service"</dt><dd>{deployment.service.clone()}</dd></div>
                        <div><dt>"Chart version"</dt><dd class="mono">{deployment.version.clone()}</dd></div>
                        <div><dt>"Revision"</dt><dd>{current.map_or_else(|| "—".to_owned(), |n| n.to_string())}</dd></div>
                        <div>
                            <dt>"Health checked"</dt>
                            <dd>{deployment.health_checked_at.map(|at| view! { <Time value=at relative=true/> })}</dd>
                        </div>
                        {deployment.last_run.clone().map(|run| view! {
                            <div>
                                <dt>"Last run"</dt>
                                <dd>
                                    <A href=format!("/runs/{}", run.id)>{run.action.label()}</A>
                                    " " <RunStatusBadge status=run.status/>
                                </dd>
                            </div>
                        })}
                    </dl>
                </Card>
                <Card title="Outputs">
                    {if outputs.is_empty() {
                        view! { <p class="muted">"Reported once it is up."</p> }.into_any()
                    } else {
                        view! {
                            <dl class="details details-flush" data-test="deployment-outputs">
                                {outputs
                                    .into_iter()
                                    .map(|(name, value)| {
                                        let text = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
                                        view! { <div><dt>{name}</dt><dd class="mono">{text}</dd></div> }
                                    })
                                    .collect_view()}
                            </dl>
                        }
                        .into_any()
                    }}
                </Card>
            </div>
            {simulate.map(|commands| view! {
                <Card title="Simulate bikes" description="Ride simulated bikes against this fleet from the workspace: a write token from the service, then fleet-sim.">
                    <pre class="code-block" data-test="simulate-commands"><code>{commands}</code></pre>
                </Card>
            })}
            <Card title="Revisions">
                <div class="table-wrap">
                    <table class="table table-stack" data-test="revision-table">
                        <thead>
                            <tr>
                                <th scope="col">"Revision"</th>
                                <th scope="col">"Version"</th>
                                <th scope="col">"Status"</th>
                                <th scope="col">"Made"</th>
                                <th scope="col"><span class="visually-hidden">"Actions"</span></th>
                            </tr>
                        </thead>
                        <tbody>
                            {revisions
                                .into_iter()
                                .map(|revision| {
                                    let number = revision.revision;
                                    let can_roll_back = alive && Some(number) != current;
                                    view! {
                                        <tr data-test="revision-row" data-revision=number.to_string()>
                                            <td>
                                                {number.to_string()}
                                                {revision.rollback_of.map(|of| view! { <span class="muted small">{format!(" (rollback to {of})")}</span> })}
                                            </td>
                                            <td data-label="Version" class="mono">{revision.version}</td>
                                            <td data-label="Status">{revision.status}</td>
                                            <td data-label="Made"><Time value=revision.created_at relative=true/></td>
                                            <td>
                                                {move || (can_roll_back && operator()).then(|| view! {
                                                    <ActionButton
                                                        form=rollback
                                                        label="Roll back to this"
                                                        busy_label="Queueing…"
                                                        test="rollback"
                                                        on_click=move |()| {
                                                            let org = org.get_value();
                                                            rollback.run(
                                                                async move { api::rollback_deployment(&org, id, number).await },
                                                                after("Rollback queued."),
                                                            );
                                                        }
                                                    />
                                                })}
                                            </td>
                                        </tr>
                                    }
                                })
                                .collect_view()}
                        </tbody>
                    </table>
                </div>
            </Card>
            {move || (alive && operator()).then(|| view! {
                <Card title="Upgrade" description="New values make a new revision, installed by an upgrade run. Secret values left out keep their sealed value.">
                    <form class="form stack" on:submit=on_upgrade data-test="upgrade-form" novalidate>
                        <FormBanner form=upgrade fields=&[]/>
                        <div class="field">
                            <label for="upgrade-values" class="field-label">"Values (JSON)"</label>
                            <textarea id="upgrade-values" name="values" class="input mono" rows="8" bind:value=values></textarea>
                        </div>
                        <div class="form-actions"><SubmitButton form=upgrade label="Upgrade" busy_label="Queueing…"/></div>
                    </form>
                </Card>
                <Card title="Uninstall" danger=true description="Removes the service and its data from the cluster.">
                    <ConfirmButton
                        label="Uninstall"
                        prompt="Uninstall this deployment and delete its data?"
                        confirm_label="Uninstall"
                        busy=uninstall.busy
                        test="uninstall-deployment"
                        on_confirm=move |()| {
                            let org = org.get_value();
                            uninstall.run(async move { api::uninstall_deployment(&org, id).await }, after("Uninstall queued."));
                        }
                    />
                </Card>
            })}
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_json_or_nothing() {
        assert_eq!(values_json("  "), Ok(None));
        assert_eq!(values_json(r#"{"replicaCount": 1}"#), Ok(Some(serde_json::json!({ "replicaCount": 1 }))));
        let refused = values_json("{replicaCount: 1}").unwrap_err();
        assert_eq!((refused.status, refused.code.as_str()), (422, "validation_failed"));
        assert!(refused.message().starts_with("The values are not JSON"), "{refused}");
    }

    #[test]
    fn the_simulator_commands_name_the_deployments_container_and_address() {
        let id = Uuid::from_u128(7);
        let commands = simulate_commands(id, "http://127.0.0.1:41234");
        assert_eq!(
            commands,
            format!(
                "TOKEN=$(docker exec $(docker ps -q --filter label=fleetplane.deployment={id}) \\\n    /fleet-telemetry \
                 admin create-token --name sim --scope write)\ncargo run -p fleet-sim -- --api http://127.0.0.1:41234 \
                 --token \"$TOKEN\" --bikes 5"
            )
        );
    }
}
