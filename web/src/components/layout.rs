//! The application frame: top bar with navigation and user menu, page headers, cards.

use leptos::ev;
use leptos::prelude::*;
use leptos::wasm_bindgen::JsCast;
use leptos_router::components::A;
use leptos_router::hooks::use_location;

use crate::api;
use crate::browser;
use crate::components::FormState;
use crate::context::{Viewer, use_ui_context};
use crate::format::encode;

/// Where a navigation entry leads.
#[derive(Clone, Copy)]
enum Href {
    /// Always the same page.
    Fixed(&'static str),
    /// A page of the current organization: `/orgs/{org}` followed by this.
    InOrg(&'static str),
}

/// One entry of the main navigation.
struct NavItem {
    href: Href,
    label: &'static str,
    /// Shown only when the development outbox is on.
    dev_only: bool,
}

/// The main navigation, in order.
const NAV: &[NavItem] = &[
    NavItem { href: Href::InOrg("/clusters"), label: "Clusters", dev_only: false },
    NavItem { href: Href::InOrg("/cloud-accounts"), label: "Cloud accounts", dev_only: false },
    NavItem { href: Href::Fixed("/orgs"), label: "Organizations", dev_only: false },
    NavItem { href: Href::Fixed("/settings"), label: "Settings", dev_only: false },
    NavItem { href: Href::Fixed("/dev/outbox"), label: "Dev outbox", dev_only: true },
];

/// The organization named by `path`, if it is one of an organization's pages (`/orgs/{org}`
/// and below).
fn org_in_path(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/orgs/")?;
    let org = rest.split('/').next()?;
    // Organization names are plain slugs: anything else is not one (a 404 page, say).
    let slug = !org.is_empty() && org.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    slug.then_some(org)
}

/// The organization whose pages the top bar leads to: the one in the URL, else the one last
/// opened, starting from the one the server chose for this page ([`Viewer::org`]). Opening an
/// organization's page also tells the server, for the next full page load.
fn use_current_org(initial: Option<String>) -> Signal<Option<String>> {
    let location = use_location();
    let last = RwSignal::new(initial);
    let in_url = Memo::new(move |_| org_in_path(&location.pathname.get()).map(str::to_owned));
    Effect::new(move || {
        if let Some(org) = in_url.get() {
            if last.get_untracked().as_deref() != Some(org.as_str()) {
                browser::remember_org(&org);
            }
            last.set(Some(org));
        }
    });
    Signal::derive(move || in_url.get().or_else(|| last.get()))
}

/// The product mark: three stacked planes.
#[component]
fn Logo() -> impl IntoView {
    view! {
        <svg class="logo" viewBox="0 0 32 32" width="28" height="28" aria-hidden="true">
            <rect width="32" height="32" rx="8" class="logo-bg"></rect>
            <path d="M8 11.5 16 7l8 4.5-8 4.5z" class="logo-top"></path>
            <path d="m8 16 8 4.5 8-4.5" class="logo-line"></path>
            <path d="m8 20.5 8 4.5 8-4.5" class="logo-line"></path>
        </svg>
    }
}

/// The bar at the top of every page.
#[component]
pub fn TopBar() -> impl IntoView {
    let ui = use_ui_context();
    let dev_outbox = ui.dev_outbox;
    let end = match ui.viewer {
        Some(viewer) => {
            let org = use_current_org(viewer.org.clone());
            let items = NAV
                .iter()
                .filter(|item| dev_outbox || !item.dev_only)
                .map(|item| {
                    let class = if item.dev_only { "nav-link nav-link-dev" } else { "nav-link" };
                    match item.href {
                        Href::Fixed(href) => view! {
                            <li>
                                <A href=href attr:class=class>{item.label}</A>
                            </li>
                        }
                        .into_any(),
                        Href::InOrg(page) => {
                            let label = item.label;
                            let test = format!("nav-{}", page.trim_start_matches('/'));
                            view! {
                                {move || {
                                    org.get()
                                        .map(|org| {
                                            let href = format!("/orgs/{}{page}", encode(&org));
                                            view! {
                                                <li>
                                                    <A
                                                        href=href
                                                        attr:class=class
                                                        attr:data-test=test.clone()
                                                        attr:title=format!("{label} of {org}")
                                                    >
                                                        {label}
                                                    </A>
                                                </li>
                                            }
                                        })
                                }}
                            }
                            .into_any()
                        }
                    }
                })
                .collect_view();
            let org_chip = move || {
                org.get().map(|org| {
                    let href = format!("/orgs/{}", encode(&org));
                    view! {
                        <A href=href attr:class="nav-org" attr:data-test="nav-org" attr:title="The organization these links are for">
                            <span class="nav-org-avatar" aria-hidden="true">
                                {org.chars().next().map(|c| c.to_uppercase().to_string()).unwrap_or_default()}
                            </span>
                            <span class="nav-org-name">{org}</span>
                        </A>
                    }
                })
            };
            view! {
                <nav class="nav" aria-label="Main">
                    {org_chip}
                    <ul class="nav-list">{items}</ul>
                </nav>
                <super::NotificationBell/>
                <UserMenu viewer=viewer/>
            }
            .into_any()
        }
        None => view! {
            <nav class="nav nav-guest" aria-label="Account">
                <a class="nav-link" href="/login">"Sign in"</a>
                {ui.signup_open.then(|| view! { <a class="btn btn-primary btn-sm" href="/signup">"Create account"</a> })}
            </nav>
        }
        .into_any(),
    };
    view! {
        <a class="skip-link" href="#main">"Skip to content"</a>
        <header class="topbar">
            <div class="topbar-inner">
                <a class="brand" href="/" aria-label="Fleetplane home">
                    <Logo/>
                    <span class="brand-name">"Fleetplane"</span>
                </a>
                {end}
            </div>
        </header>
    }
}

/// Signs this browser out, then loads the sign-in page. A session that has already ended
/// counts as signed out.
pub fn sign_out(form: FormState) {
    let request = async {
        match api::logout().await {
            Err(error) if error.status == 401 => Ok(()),
            other => other,
        }
    };
    form.run(request, |()| browser::go_to("/login"));
}

/// Closes the disclosure `menu` when a click lands outside it (for as long as the component
/// that calls this lives).
pub fn close_on_click_outside(menu: NodeRef<leptos::html::Details>) {
    let outside_click = window_event_listener(ev::click, move |event| {
        let Some(details) = menu.get_untracked() else {
            return;
        };
        let inside = event
            .target()
            .and_then(|target| target.dyn_into::<leptos::web_sys::Node>().ok())
            .is_some_and(|node| details.contains(Some(&node)));
        if details.open() && !inside {
            details.set_open(false);
        }
    });
    on_cleanup(move || outside_click.remove());
}

/// The signed-in user's menu: a disclosure (`<details>`), so it works with keyboard and
/// screen readers without scripts; Escape and a click elsewhere close it.
#[component]
fn UserMenu(viewer: Viewer) -> impl IntoView {
    let menu = NodeRef::<leptos::html::Details>::new();
    let form = FormState::new();
    let close = move || {
        if let Some(details) = menu.get_untracked() {
            details.set_open(false);
        }
    };
    close_on_click_outside(menu);

    let initial = viewer.username.chars().next().map(|c| c.to_uppercase().to_string()).unwrap_or_default();
    view! {
        <details
            class="user-menu"
            node_ref=menu
            on:keydown=move |event: ev::KeyboardEvent| {
                if event.key() == "Escape" {
                    close();
                }
            }
        >
            <summary class="user-menu-button" aria-label="Account menu">
                <span class="avatar" aria-hidden="true">{initial}</span>
                <span class="user-menu-name" data-test="nav-username">{viewer.username.clone()}</span>
                <span class="chevron" aria-hidden="true"></span>
            </summary>
            <div class="menu" on:click=move |_| close()>
                <div class="menu-header">
                    <p class="menu-name">{viewer.username}</p>
                    <p class="menu-email">{viewer.email}</p>
                </div>
                <A href="/settings" attr:class="menu-item">"Account settings"</A>
                <button
                    type="button"
                    class="menu-item menu-item-danger"
                    data-test="sign-out"
                    disabled=move || form.busy.get()
                    on:click=move |event| {
                        // Keep the menu open so the busy state is visible.
                        event.stop_propagation();
                        sign_out(form);
                    }
                >
                    {move || if form.busy.get() { "Signing out…" } else { "Sign out" }}
                </button>
                {move || {
                    form.error
                        .get()
                        .map(|error| view! { <p class="menu-error" role="alert">{error.message().to_owned()}</p> })
                }}
            </div>
        </details>
    }
}

/// The title block of a page, with optional actions on the right.
#[component]
pub fn PageHeader(
    #[prop(into)] title: Signal<String>,
    #[prop(optional, into)] subtitle: Option<Signal<String>>,
    /// Small text above the title (e.g. a back link).
    #[prop(optional)]
    eyebrow: Option<Children>,
    #[prop(optional)] actions: Option<Children>,
) -> impl IntoView {
    view! {
        <div class="page-header">
            <div class="page-header-text">
                {eyebrow.map(|eyebrow| view! { <div class="eyebrow">{eyebrow()}</div> })}
                <h1 class="page-title">{move || title.get()}</h1>
                {subtitle.map(|subtitle| view! { <p class="page-subtitle">{move || subtitle.get()}</p> })}
            </div>
            {actions.map(|actions| view! { <div class="page-actions">{actions()}</div> })}
        </div>
    }
}

/// A titled panel. With `aside`, the title and description sit beside the panel instead of
/// in it (the settings layout); on narrow screens they stack above it.
#[component]
pub fn Card(
    #[prop(optional)] title: Option<&'static str>,
    #[prop(optional)] description: Option<&'static str>,
    /// `id` of the section, for links to it.
    #[prop(optional)]
    id: Option<&'static str>,
    #[prop(optional)] danger: bool,
    #[prop(optional)] aside: bool,
    children: Children,
) -> impl IntoView {
    let heading_id = id.map(|id| format!("{id}-title"));
    let labelled_by = heading_id.clone();
    let header = title.map(|title| {
        view! {
            <header class="card-header">
                <h2 class="card-title" id=heading_id>{title}</h2>
                {description.map(|text| view! { <p class="card-description">{text}</p> })}
            </header>
        }
    });
    if aside {
        view! {
            <section class="section-aside" class:section-danger=danger id=id aria-labelledby=labelled_by>
                {header}
                <div class="card" class:card-danger=danger>
                    <div class="card-body">{children()}</div>
                </div>
            </section>
        }
        .into_any()
    } else {
        view! {
            <section class="card" class:card-danger=danger id=id aria-labelledby=labelled_by>
                {header}
                <div class="card-body">{children()}</div>
            </section>
        }
        .into_any()
    }
}

/// The centred card of the sign-in and sign-up pages.
#[component]
pub fn AuthCard(
    title: &'static str,
    #[prop(optional)] subtitle: Option<&'static str>,
    children: Children,
) -> impl IntoView {
    view! {
        <div class="auth">
            <div class="auth-card">
                <h1 class="auth-title">{title}</h1>
                {subtitle.map(|text| view! { <p class="auth-subtitle">{text}</p> })}
                {children()}
            </div>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::org_in_path;

    #[test]
    fn the_organization_comes_from_its_pages_only() {
        assert_eq!(org_in_path("/orgs/acme"), Some("acme"));
        assert_eq!(org_in_path("/orgs/acme/clusters/0190"), Some("acme"));
        assert_eq!(org_in_path("/orgs/team-1/cloud-accounts"), Some("team-1"));
        assert_eq!(org_in_path("/orgs"), None);
        assert_eq!(org_in_path("/orgs/"), None);
        assert_eq!(org_in_path("/orgs/%3Cscript%3E"), None);
        assert_eq!(org_in_path("/runs/0190"), None);
        assert_eq!(org_in_path("/settings"), None);
    }
}
