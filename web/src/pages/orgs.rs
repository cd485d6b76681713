//! The organizations the user belongs to, and creating a new one.

use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;
use leptos_router::hooks::use_navigate;

use crate::api::{self, Org};
use crate::components::{
    Card, EmptyState, FormBanner, FormState, LoadError, Loading, PageHeader, RequireViewer, RoleBadge, SubmitButton,
    TextField,
};
use crate::format::encode;

#[component]
pub fn OrgsPage() -> impl IntoView {
    view! {
        <Title text="Organizations"/>
        <RequireViewer>
            <OrgsContent/>
        </RequireViewer>
    }
}

#[component]
fn OrgsContent() -> impl IntoView {
    let orgs = LocalResource::new(api::list_orgs);
    view! {
        <PageHeader
            title="Organizations"
            subtitle="Every cloud account and cluster belongs to an organization. Your role in each decides what you can do."
        />
        <div class="grid grid-main">
            <Card title="Your organizations">
                <OrgTable orgs/>
            </Card>
            <Card
                title="Create an organization"
                id="new-org"
                description="A shared space for a team: its members, cloud accounts and clusters. You will be its owner."
            >
                <CreateOrgForm/>
            </Card>
        </div>
    }
}

/// The user's organizations with their role in each.
#[component]
pub fn OrgTable(orgs: LocalResource<api::ApiResult<Vec<Org>>>) -> impl IntoView {
    view! {
        <Suspense fallback=|| view! { <Loading/> }>
            {move || {
                orgs.get()
                    .map(|result| match result {
                        Err(error) => view! { <LoadError error/> }.into_any(),
                        Ok(list) if list.is_empty() => view! {
                            <EmptyState title="No organizations yet">
                                "Create one to invite your team and connect cloud accounts."
                            </EmptyState>
                        }
                        .into_any(),
                        Ok(list) => view! {
                            <ul class="org-list" data-test="org-list">
                                {list.into_iter().map(|org| view! { <OrgRow org/> }).collect_view()}
                            </ul>
                        }
                        .into_any(),
                    })
            }}
        </Suspense>
    }
}

#[component]
fn OrgRow(org: Org) -> impl IntoView {
    let href = format!("/orgs/{}", encode(&org.name));
    let title = org.title().to_owned();
    let initial = title.chars().next().map(|c| c.to_uppercase().to_string()).unwrap_or_default();
    let slug = org.name.clone();
    view! {
        <li class="org-row" data-test="org-row" data-org=slug>
            <span class="org-avatar" aria-hidden="true">{initial}</span>
            <div class="org-row-text">
                <A href=href attr:class="org-link">{title}</A>
                <span class="org-slug mono">{org.name}</span>
            </div>
            <div class="org-row-badges">
                {org.personal.then(|| view! { <span class="badge badge-neutral">"Personal"</span> })}
                <RoleBadge role=org.role/>
            </div>
        </li>
    }
}

#[component]
fn CreateOrgForm() -> impl IntoView {
    let form = FormState::new();
    let name = RwSignal::new(String::new());
    let display_name = RwSignal::new(String::new());
    let navigate = use_navigate();
    let on_submit = move |event: SubmitEvent| {
        event.prevent_default();
        let name = name.get_untracked();
        let display_name = display_name.get_untracked();
        let navigate = navigate.clone();
        form.run(
            async move {
                let display_name = Some(display_name.trim()).filter(|d| !d.is_empty());
                api::create_org(&name, display_name).await
            },
            move |org| navigate(&format!("/orgs/{}", encode(&org.name)), Default::default()),
        );
    };
    view! {
        <form id="org-form" class="form" method="post" novalidate=true on:submit=on_submit>
            <FormBanner form fields=&["name", "display_name"]/>
            <TextField
                id="org-name"
                name="name"
                label="Name"
                value=name
                form
                required=true
                autocomplete="off"
                placeholder="acme-platform"
                hint="Used in URLs and the API. Lowercase letters, digits and dashes."
            />
            <TextField
                id="org-display-name"
                name="display_name"
                label="Display name"
                value=display_name
                form
                autocomplete="off"
                placeholder="Acme Platform Team"
                mark_optional=true
            />
            <SubmitButton form label="Create organization" busy_label="Creating…"/>
        </form>
    }
}
