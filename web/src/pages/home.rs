//! The dashboard a signed-in user lands on.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;

use crate::api;
use crate::components::{Card, PageHeader, RequireViewer};
use crate::context::use_viewer;
use crate::pages::orgs::OrgTable;

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
    view! {
        <PageHeader
            title=format!("Welcome back, {name}")
            subtitle="Your organizations and where to go next."
        />
        <div class="grid grid-main">
            <Card title="Your organizations">
                <OrgTable orgs/>
            </Card>
            <Card title="Quick links">
                <ul class="quick-links">
                    <li>
                        <A href="/orgs#new-org" attr:class="quick-link">
                            <span class="quick-link-title">"Create an organization"</span>
                            <span class="quick-link-text">"Start a shared space for your team."</span>
                        </A>
                    </li>
                    <li>
                        <A href="/settings#tokens" attr:class="quick-link">
                            <span class="quick-link-title">"API tokens"</span>
                            <span class="quick-link-text">"Call the API from scripts and CI."</span>
                        </A>
                    </li>
                    <li>
                        <A href="/settings" attr:class="quick-link">
                            <span class="quick-link-title">"Account settings"</span>
                            <span class="quick-link-text">"Username, password and sessions."</span>
                        </A>
                    </li>
                </ul>
            </Card>
        </div>
    }
}
