//! The invitations to one's own address: join an organization, or decline.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::{self, ReceivedInvitation};
use crate::browser;
use crate::components::{
    Alert, AlertKind, Card, EmptyState, FormBanner, FormState, LoadError, Loading, PageHeader, RequireViewer,
    RoleBadge, Time,
};
use crate::format::encode;

#[component]
pub fn InvitationsPage() -> impl IntoView {
    view! {
        <Title text="Invitations"/>
        <RequireViewer>
            <InvitationsContent/>
        </RequireViewer>
    }
}

#[component]
fn InvitationsContent() -> impl IntoView {
    let invitations = LocalResource::new(api::received_invitations);
    let action = FormState::new();
    let notice = RwSignal::new(None::<String>);
    let on_accept = Callback::new(move |invitation: ReceivedInvitation| {
        notice.set(None);
        // A full load: the top bar and home page then list the new organization.
        action.run(async move { api::accept_invitation(invitation.id).await }, move |org| {
            browser::go_to(&format!("/orgs/{}", encode(&org.name)))
        });
    });
    let on_decline = Callback::new(move |invitation: ReceivedInvitation| {
        notice.set(None);
        action.run(async move { api::decline_invitation(invitation.id).await }, move |()| {
            notice.set(Some(format!("You declined to join {}.", invitation.org_display_name)));
            invitations.refetch();
        });
    });
    view! {
        <PageHeader
            title="Invitations"
            subtitle=Signal::derive(|| "Organizations that invited your email address.".to_owned())
        />
        <Card>
            <div class="stack">
                {move || notice.get().map(|text| view! { <Alert kind=AlertKind::Success>{text}</Alert> })}
                <FormBanner form=action fields=&[]/>
                <Suspense fallback=|| view! { <Loading/> }>
                    {move || {
                        invitations
                            .get()
                            .map(|result| match result {
                                Err(error) => view! { <LoadError error/> }.into_any(),
                                Ok(list) if list.is_empty() => view! {
                                    <EmptyState title="No invitations">
                                        "When someone invites your address to an organization, it shows here."
                                    </EmptyState>
                                }
                                .into_any(),
                                Ok(list) => list
                                    .into_iter()
                                    .map(|invitation| {
                                        view! { <InvitationItem invitation busy=action.busy on_accept on_decline/> }
                                    })
                                    .collect_view()
                                    .into_any(),
                            })
                    }}
                </Suspense>
            </div>
        </Card>
    }
}

#[component]
fn InvitationItem(
    invitation: ReceivedInvitation,
    busy: RwSignal<bool>,
    on_accept: Callback<ReceivedInvitation>,
    on_decline: Callback<ReceivedInvitation>,
) -> impl IntoView {
    let accepted = invitation.clone();
    let declined = invitation.clone();
    view! {
        <div class="invitation" data-test="invitation" data-org=invitation.org.clone()>
            <div class="invitation-text">
                <p class="strong">{invitation.org_display_name.clone()}</p>
                <p class="muted small">
                    {invitation.invited_by.clone()}
                    " invited you as "
                    <RoleBadge role=invitation.role/>
                    " · expires "
                    <Time value=invitation.expires_at/>
                </p>
            </div>
            <div class="invitation-actions">
                <button
                    type="button"
                    class="btn btn-primary"
                    data-test="accept-invitation"
                    disabled=move || busy.get()
                    on:click=move |_| on_accept.run(accepted.clone())
                >
                    "Accept"
                </button>
                <button
                    type="button"
                    class="btn btn-secondary"
                    data-test="decline-invitation"
                    disabled=move || busy.get()
                    on:click=move |_| on_decline.run(declined.clone())
                >
                    "Decline"
                </button>
            </div>
        </div>
    }
}
