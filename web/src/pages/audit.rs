//! Audit logs, newest first, fetched a page at a time: an organization's page, and the log of
//! one's own account that the settings page shows.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;
use uuid::Uuid;

use crate::api::{self, AuditEvent};
use crate::components::{Card, EmptyState, FormBanner, FormState, Loading, PageHeader, RequireViewer, Time};
use crate::format::encode;
use crate::pages::org::use_org_name;

#[component]
pub fn AuditPage() -> impl IntoView {
    view! {
        <Title text="Audit log"/>
        <RequireViewer>
            <AuditContent/>
        </RequireViewer>
    }
}

#[component]
fn AuditContent() -> impl IntoView {
    let name = use_org_name();
    let back = move || format!("/orgs/{}", encode(&name.get()));
    view! {
        <PageHeader
            title="Audit log"
            subtitle=Signal::derive(move || format!("Who did what in {}.", name.get()))
            eyebrow=Box::new(move || view! { <A href=back>"← " {move || name.get()}</A> }.into_any())
        />
        <Card>
            <AuditLog org=Signal::derive(move || Some(name.get())) empty="Changes to this organization will appear here."/>
        </Card>
    }
}

/// The log of `org`, or with `None` of the signed-in account, with a "Load more" button.
#[component]
pub fn AuditLog(org: Signal<Option<String>>, empty: &'static str) -> impl IntoView {
    let entries = RwSignal::new(Vec::<AuditEvent>::new());
    let next_before = RwSignal::new(None::<Uuid>);
    let loaded = RwSignal::new(false);
    let form = FormState::new();

    let load = move |before: Option<Uuid>| {
        let org = org.get_untracked();
        form.run(async move { api::list_audit(org.as_deref(), before).await }, move |page| {
            entries.update(|list| list.extend(page.items));
            next_before.set(page.next_before);
            loaded.set(true);
        });
    };
    // The first page loads once the page runs in the browser (and again if the org changes).
    Effect::new(move |_| {
        org.track();
        entries.set(Vec::new());
        next_before.set(None);
        loaded.set(false);
        load(None);
    });

    view! {
        <div class="stack">
                <FormBanner form fields=&[]/>
                {move || {
                    if !loaded.get() {
                        return form.error.with(Option::is_none).then(|| view! { <Loading/> }.into_any());
                    }
                    if entries.with(Vec::is_empty) {
                        return Some(view! { <EmptyState title="Nothing recorded yet">{empty}</EmptyState> }.into_any());
                    }
                    Some(view! { <AuditTable entries/> }.into_any())
                }}
                {move || {
                    next_before
                        .get()
                        .map(|before| {
                            let before = StoredValue::new(before);
                            view! {
                                <div class="load-more">
                                    <button
                                        type="button"
                                        class="btn btn-secondary"
                                        data-test="load-more"
                                        disabled=move || form.busy.get()
                                        aria-busy=move || if form.busy.get() { "true" } else { "false" }
                                        on:click=move |_| load(Some(before.get_value()))
                                    >
                                        {move || if form.busy.get() { "Loading…" } else { "Load more" }}
                                    </button>
                                </div>
                            }
                        })
                }}
        </div>
    }
}

#[component]
fn AuditTable(entries: RwSignal<Vec<AuditEvent>>) -> impl IntoView {
    view! {
        <div class="table-wrap">
            <table class="table table-stack" data-test="audit-table">
                <thead>
                    <tr>
                        <th scope="col">"When"</th>
                        <th scope="col">"Actor"</th>
                        <th scope="col">"Action"</th>
                        <th scope="col">"Target"</th>
                        <th scope="col">"IP address"</th>
                        <th scope="col">"Details"</th>
                    </tr>
                </thead>
                <tbody>
                    <For each=move || entries.get() key=|entry| entry.id let:entry>
                        <AuditRow entry/>
                    </For>
                </tbody>
            </table>
        </div>
    }
}

#[component]
fn AuditRow(entry: AuditEvent) -> impl IntoView {
    let actor = entry
        .actor_name
        .clone()
        .or_else(|| entry.actor_id.map(|id| id.to_string()))
        .unwrap_or_else(|| "System".to_owned());
    let details = entry.details.as_ref().filter(|value| !value.is_null()).map(|value| value.to_string());
    view! {
        <tr data-test="audit-row" data-audit-id=entry.id.to_string()>
            <td class="nowrap" data-label="When"><Time value=entry.created_at/></td>
            <td class="strong" data-label="Actor">{actor}</td>
            <td data-label="Action"><code class="code-pill">{entry.action}</code></td>
            <td data-label="Target">{entry.target}</td>
            <td class="mono small" data-label="IP address">{entry.ip}</td>
            <td class="details-cell" data-label="Details">
                {details
                    .map(|text| {
                        let title = text.clone();
                        view! { <code class="mono small details-json" title=title>{text}</code> }
                    })}
            </td>
        </tr>
    }
}
