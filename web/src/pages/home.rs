//! The dashboard a signed-in user lands on: each organization with its clusters and their
//! status, or, where there are none yet, the first steps to one.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;

use crate::api::{self, ApiError, Cluster, Org};
use crate::components::{
    Alert, AlertKind, Card, ClusterStatusBadge, EmptyState, LoadError, Loading, PageHeader, RequireViewer, RoleBadge,
};
use crate::context::use_viewer;
use crate::format::encode;
use crate::pages::clusters::TargetBadge;

#[component]
pub fn HomePage() -> impl IntoView {
    view! {
        <Title text="Dashboard"/>
        <RequireViewer>
            <Dashboard/>
        </RequireViewer>
    }
}

#[component]
fn Dashboard() -> impl IntoView {
    let name = use_viewer().map(|viewer| viewer.username).unwrap_or_default();
    let orgs = LocalResource::new(api::list_orgs);
    let invitations = LocalResource::new(api::received_invitations);
    let waiting = move || invitations.get().and_then(Result::ok).map_or(0, |list| list.len());
    view! {
        <PageHeader
            title=format!("Welcome back, {name}")
            subtitle="Your clusters, organization by organization, and where to go next."
        />
        {move || {
            let count = waiting();
            (count > 0)
                .then(|| {
                    let text = match count {
                        1 => "An organization invited you to join it.".to_owned(),
                        n => format!("{n} organizations invited you to join them."),
                    };
                    view! {
                        <Alert kind=AlertKind::Info title="Invitations">
                            <span data-test="invitations-waiting">{text}</span>
                            " "
                            <A href="/invitations">"Accept or decline"</A>
                        </Alert>
                    }
                })
        }}
        <div class="grid grid-main">
            <div class="org-overviews" data-test="org-overviews">
                <Suspense fallback=|| view! { <Loading/> }>
                    {move || {
                        orgs.get()
                            .map(|result| match result {
                                Err(error) => view! { <LoadError error/> }.into_any(),
                                Ok(list) if list.is_empty() => view! {
                                    <Card>
                                        <EmptyState title="No organizations yet">
                                            "Create one to invite your team and connect cloud accounts."
                                        </EmptyState>
                                    </Card>
                                }
                                .into_any(),
                                Ok(list) => list.into_iter().map(|org| view! { <OrgOverview org/> }).collect_view().into_any(),
                            })
                    }}
                </Suspense>
            </div>
            <Card title="Quick links">
                <ul class="quick-links">
                    {QUICK_LINKS
                        .iter()
                        .map(|&(href, title, text)| view! { <li><QuickLink href title text/></li> })
                        .collect_view()}
                </ul>
            </Card>
        </div>
    }
}

/// What the dashboard shows of one organization.
#[derive(Clone)]
struct Overview {
    clusters: Vec<Cluster>,
    /// Read only when there are no clusters, to say what the first step is.
    cloud_accounts: Option<usize>,
}

async fn overview(org: &str) -> Result<Overview, ApiError> {
    let clusters = api::list_clusters(org).await?;
    let cloud_accounts = match clusters.is_empty() {
        true => Some(api::list_cloud_accounts(org).await?.len()),
        false => None,
    };
    Ok(Overview { clusters, cloud_accounts })
}

/// One organization: its clusters with their status, kept current from the live stream.
#[component]
fn OrgOverview(org: Org) -> impl IntoView {
    let slug = StoredValue::new(org.name.clone());
    let kick = RwSignal::new(0_u64);
    crate::live::on_change(move || kick.update(|n| *n += 1));
    let overview = LocalResource::new(move || {
        kick.track();
        let slug = slug.get_value();
        async move { overview(&slug).await }
    });

    let org_href = format!("/orgs/{}", encode(&org.name));
    let clusters_href = format!("/orgs/{}/clusters", encode(&org.name));
    let heading = format!("org-overview-{}", org.name);
    let labelled_by = heading.clone();
    let role = org.role;
    let title = org.title().to_owned();
    view! {
        <section class="card" data-test="org-overview" data-org=org.name.clone() aria-labelledby=labelled_by>
            <header class="card-header org-overview-header">
                <h2 class="card-title org-overview-title" id=heading>
                    <A href=org_href attr:class="org-link">{title}</A>
                    {org.personal.then(|| view! { <span class="badge badge-neutral">"Personal"</span> })}
                    <RoleBadge role/>
                </h2>
            </header>
            <div class="card-body">
                <Suspense fallback=|| view! { <Loading/> }>
                    {move || {
                        overview
                            .get()
                            .map(|result| match result {
                                Err(error) => view! { <LoadError error/> }.into_any(),
                                Ok(Overview { clusters, .. }) if !clusters.is_empty() => {
                                    view! { <ClusterList clusters all=clusters_href.clone()/> }.into_any()
                                }
                                Ok(Overview { cloud_accounts, .. }) => view! {
                                    <FirstSteps org=slug.get_value() role cloud_accounts=cloud_accounts.unwrap_or(0)/>
                                }
                                .into_any(),
                            })
                    }}
                </Suspense>
            </div>
        </section>
    }
}

#[component]
fn ClusterList(clusters: Vec<Cluster>, all: String) -> impl IntoView {
    let count = clusters.len();
    let rows = clusters
        .into_iter()
        .map(|cluster| {
            let href = format!("/orgs/{}/clusters/{}", encode(&cluster.org), cluster.id);
            let name = cluster.name.clone();
            view! {
                <li
                    class="org-overview-cluster"
                    data-test="home-cluster"
                    data-name=name
                    data-status=cluster.status.as_str()
                >
                    <A href=href attr:class="strong cluster-link">{cluster.name}</A>
                    <TargetBadge provider=cluster.provider target=cluster.target/>
                    <ClusterStatusBadge status=cluster.status/>
                </li>
            }
        })
        .collect_view();
    let label = if count == 1 { "1 cluster".to_owned() } else { format!("All {count} clusters") };
    view! {
        <ul class="org-overview-list">{rows}</ul>
        <p class="small">
            <A href=all attr:data-test="home-all-clusters">{label} " →"</A>
        </p>
    }
}

/// An organization without clusters: link a cloud account, then create a cluster (the local
/// target needs no account, so both are offered from the start).
#[component]
fn FirstSteps(org: String, role: api::Role, cloud_accounts: usize) -> impl IntoView {
    if !role.manages_clusters() {
        return view! {
            <EmptyState title="No clusters yet">
                <p>"An owner or admin of this organization can create one."</p>
            </EmptyState>
        }
        .into_any();
    }
    let accounts_href = format!("/orgs/{}/cloud-accounts#add-account", encode(&org));
    let cluster_href = format!("/orgs/{}/clusters#new-cluster", encode(&org));
    let accounts = match cloud_accounts {
        0 => view! {
            <QuickLink
                href=accounts_href
                title="1. Link a cloud account"
                text="AWS, Azure or GCP. Fleetplane checks it before use."
                test="first-cloud-account"
            />
        }
        .into_any(),
        linked => view! {
            <QuickLink
                href=accounts_href
                title="1. Cloud accounts ✓"
                text=if linked == 1 { "1 account linked.".to_owned() } else { format!("{linked} accounts linked.") }
                test="first-cloud-account"
                done=true
            />
        }
        .into_any(),
    };
    view! {
        <p class="muted">"No clusters yet. Two steps to the first one:"</p>
        <div class="getting-started">
            {accounts}
            <QuickLink
                href=cluster_href
                title="2. Create a cluster"
                text="EKS, AKS or GKE, planned and applied by Terraform."
                test="first-cluster"
            />
        </div>
    }
    .into_any()
}

/// Where the quick links card leads: `(href, title, text)`.
const QUICK_LINKS: [(&str, &str, &str); 4] = [
    ("/orgs", "Organizations", "Members, roles and audit logs."),
    ("/orgs#new-org", "Create an organization", "Start a shared space for your team."),
    ("/settings#tokens", "API tokens", "Call the API from scripts and CI."),
    ("/settings", "Account settings", "Username, password and sessions."),
];

/// A link with a title and a line saying where it leads; `done` marks a step already taken.
#[component]
fn QuickLink(
    #[prop(into)] href: String,
    title: &'static str,
    #[prop(into)] text: String,
    #[prop(optional)] test: &'static str,
    #[prop(optional)] done: bool,
) -> impl IntoView {
    let class = if done { "quick-link quick-link-done" } else { "quick-link" };
    view! {
        <A href attr:class=class attr:data-test=(!test.is_empty()).then_some(test)>
            <span class="quick-link-title">{title}</span>
            <span class="quick-link-text">{text}</span>
        </A>
    }
}
