//! The application root: the HTML shell (server only) and the router.

use leptos::prelude::*;
use leptos_meta::{Title, provide_meta_context};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::path;

use crate::components::{Hydrated, Toast, TopBar};
use crate::context::use_ui_context;
use crate::pages;

/// The whole HTML document, rendered on the server around [`App`].
///
/// Besides the usual head it carries the request's [`UiContext`](crate::UiContext) as JSON,
/// which [`hydrate`](crate::hydrate) reads back in the browser.
#[cfg(feature = "ssr")]
pub fn shell(options: LeptosOptions) -> impl IntoView {
    use leptos_meta::MetaTags;

    let ui = use_ui_context();
    let stylesheet = format!("/assets/app.css?v={:016x}", crate::STYLESHEET_VERSION);
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="color-scheme" content="light dark"/>
                <link rel="stylesheet" href=stylesheet/>
                <link rel="icon" href=FAVICON/>
                <script id=crate::context::SCRIPT_ID type="application/json" inner_html=ui.to_script_json()></script>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// The logo as an inline SVG data URL, so the favicon costs no request.
#[cfg(feature = "ssr")]
const FAVICON: &str = "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 32 32'%3E%3Crect width='32' height='32' rx='8' fill='%234f46e5'/%3E%3Cpath d='M8 11.5 16 7l8 4.5-8 4.5z' fill='white'/%3E%3Cpath d='m8 16 8 4.5 8-4.5M8 20.5l8 4.5 8-4.5' fill='none' stroke='white' stroke-width='2' stroke-linecap='round' stroke-linejoin='round'/%3E%3C/svg%3E";

/// The application: top bar and routed pages.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    let ui = use_ui_context();
    let signed_in = ui.viewer.is_some();
    provide_context(ui);
    let hydrated = Hydrated::track();
    provide_context(hydrated);
    if signed_in {
        crate::live::provide_live();
    }

    view! {
        <Title formatter=|page: String| {
            if page.is_empty() { "Fleetplane".to_owned() } else { format!("{page} · Fleetplane") }
        }/>
        <Router>
            <div class="app" data-hydrated=move || hydrated.0.get().then_some("true")>
                <TopBar/>
                <main id="main" class="main" tabindex="-1">
                    <Routes fallback=pages::NotFound>
                        <Route path=path!("/") view=pages::HomePage/>
                        <Route path=path!("/signup") view=pages::SignupPage/>
                        <Route path=path!("/signup/check-email") view=pages::CheckEmailPage/>
                        <Route path=path!("/verify-email") view=pages::VerifyEmailPage/>
                        <Route path=path!("/login") view=pages::LoginPage/>
                        <Route path=path!("/forgot-password") view=pages::ForgotPasswordPage/>
                        <Route path=path!("/reset-password") view=pages::ResetPasswordPage/>
                        <Route path=path!("/invitations") view=pages::InvitationsPage/>
                        <Route path=path!("/logout") view=pages::LogoutPage/>
                        <Route path=path!("/settings") view=pages::SettingsPage/>
                        <Route path=path!("/orgs") view=pages::OrgsPage/>
                        <Route path=path!("/orgs/:org") view=pages::OrgPage/>
                        <Route path=path!("/orgs/:org/audit") view=pages::AuditPage/>
                        <Route path=path!("/orgs/:org/cloud-accounts") view=pages::CloudAccountsPage/>
                        <Route path=path!("/orgs/:org/clusters") view=pages::ClustersPage/>
                        <Route path=path!("/orgs/:org/clusters/:id") view=pages::ClusterPage/>
                        <Route path=path!("/orgs/:org/deployments/:id") view=pages::DeploymentPage/>
                        <Route path=path!("/orgs/:org/deployments/:id/fleet") view=pages::FleetPage/>
                        <Route path=path!("/orgs/:org/deployments/:id/fleet/quarantine") view=pages::QuarantinePage/>
                        <Route path=path!("/orgs/:org/deployments/:id/fleet/bikes/:device") view=pages::BikePage/>
                        <Route path=path!("/runs/:id") view=pages::RunPage/>
                        <Route path=path!("/dev/outbox") view=pages::OutboxPage/>
                    </Routes>
                </main>
                <Toast/>
            </div>
        </Router>
    }
}
