//! One organization: its members and their roles, and the way to its clusters, cloud
//! accounts and audit log.

use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;
use leptos_router::hooks::use_params_map;

use crate::api::{self, Invitation, Member, Org, Role};
use crate::components::{
    Alert, AlertKind, Card, ConfirmButton, EmptyState, FormBanner, FormState, LoadError, Loading, PageHeader,
    RequireViewer, RoleBadge, SelectField, SubmitButton, TextField, Time,
};
use crate::context::use_viewer;
use crate::format::encode;

/// The `:org` path parameter (the organization's name).
pub fn use_org_name() -> Memo<String> {
    let params = use_params_map();
    Memo::new(move |_| params.with(|params| params.get("org").unwrap_or_default()))
}

#[component]
pub fn OrgPage() -> impl IntoView {
    view! {
        <RequireViewer>
            <OrgContent/>
        </RequireViewer>
    }
}

#[component]
fn OrgContent() -> impl IntoView {
    let name = use_org_name();
    let org = LocalResource::new(move || {
        let name = name.get();
        async move { api::get_org(&name).await }
    });
    let members = LocalResource::new(move || {
        let name = name.get();
        async move { api::list_members(&name).await }
    });
    let loaded = move || org.get().and_then(Result::ok);
    let title = Signal::derive(move || loaded().map(|org| org.title().to_owned()).unwrap_or_else(|| name.get()));
    let audit_href = move || format!("/orgs/{}/audit", encode(&name.get()));
    let cloud_href = move || format!("/orgs/{}/cloud-accounts", encode(&name.get()));
    let clusters_href = move || format!("/orgs/{}/clusters", encode(&name.get()));

    view! {
        <Title text=move || title.get()/>
        <PageHeader
            title=title
            subtitle=Signal::derive(move || name.get())
            eyebrow=Box::new(|| view! { <A href="/orgs">"← Organizations"</A> }.into_any())
            actions=Box::new(move || {
                view! {
                    {move || loaded().map(|org| view! { <RoleBadge role=org.role/> })}
                    <A href=clusters_href attr:class="btn btn-secondary" attr:data-test="clusters-link">"Clusters"</A>
                    <A href=cloud_href attr:class="btn btn-secondary" attr:data-test="cloud-accounts-link">
                        "Cloud accounts"
                    </A>
                    <A href=audit_href attr:class="btn btn-secondary" attr:data-test="audit-link">"Audit log"</A>
                }
                .into_any()
            })
        />
        <Suspense fallback=|| view! { <Loading/> }>
            {move || {
                org.get()
                    .map(|result| match result {
                        Err(error) => view! { <LoadError error/> }.into_any(),
                        Ok(org) => view! { <Members org members/> }.into_any(),
                    })
            }}
        </Suspense>
    }
}

/// The members card and, for admins and owners, the invitations.
#[component]
fn Members(org: Org, members: LocalResource<api::ApiResult<Vec<Member>>>) -> impl IntoView {
    let manage = org.role.manages_members();
    let org_name = StoredValue::new(org.name.clone());
    let action = FormState::new();
    let notice = RwSignal::new(None::<String>);

    let on_role = Callback::new(move |(member, role): (Member, Role)| {
        notice.set(None);
        let org = org_name.get_value();
        let user_id = member.user_id;
        action.run(async move { api::change_member_role(&org, user_id, role).await }, move |updated| {
            notice.set(Some(format!("{} is now {}.", updated.username, updated.role.label())));
            members.refetch();
        });
    });
    let on_remove = Callback::new(move |member: Member| {
        notice.set(None);
        let org = org_name.get_value();
        let user_id = member.user_id;
        action.run(async move { api::remove_member(&org, user_id).await }, move |()| {
            notice.set(Some(format!("{} was removed.", member.username)));
            members.refetch();
        });
    });
    // A refused role change leaves the select showing the new value: redraw from the server.
    Effect::new(move |_| {
        if action.error.with(Option::is_some) {
            members.refetch();
        }
    });

    view! {
        <div class="stack-lg">
            <Card title="Members">
                <div class="stack">
                    {move || notice.get().map(|text| view! { <Alert kind=AlertKind::Success>{text}</Alert> })}
                    <FormBanner form=action fields=&[]/>
                    <Suspense fallback=|| view! { <Loading/> }>
                        {move || {
                            members
                                .get()
                                .map(|result| match result {
                                    Err(error) => view! { <LoadError error/> }.into_any(),
                                    Ok(list) if list.is_empty() => view! {
                                        <EmptyState title="No members">"Invite someone below."</EmptyState>
                                    }
                                    .into_any(),
                                    Ok(list) => view! {
                                        <MemberTable list manage busy=action.busy on_role on_remove/>
                                    }
                                    .into_any(),
                                })
                        }}
                    </Suspense>
                </div>
            </Card>
            {if manage {
                view! { <Invitations org=org.name.clone()/> }.into_any()
            } else {
                view! {
                    <Alert kind=AlertKind::Info>
                        "Only owners and admins can invite members or change roles."
                    </Alert>
                }
                .into_any()
            }}
        </div>
    }
}

#[component]
fn MemberTable(
    list: Vec<Member>,
    manage: bool,
    busy: RwSignal<bool>,
    on_role: Callback<(Member, Role)>,
    on_remove: Callback<Member>,
) -> impl IntoView {
    // The page context names the viewer by the id's text.
    let me = use_viewer().map(|viewer| viewer.id).unwrap_or_default();
    view! {
        <div class="table-wrap">
            <table class="table table-stack" data-test="member-table">
                <thead>
                    <tr>
                        <th scope="col">"Member"</th>
                        <th scope="col">"Role"</th>
                        <th scope="col">"Joined"</th>
                        {manage.then(|| view! { <th scope="col"><span class="visually-hidden">"Actions"</span></th> })}
                    </tr>
                </thead>
                <tbody>
                    {list
                        .into_iter()
                        .map(|member| {
                            let is_me = member.user_id.to_string() == me;
                            view! { <MemberRow member is_me manage busy on_role on_remove/> }
                        })
                        .collect_view()}
                </tbody>
            </table>
        </div>
    }
}

#[component]
fn MemberRow(
    member: Member,
    is_me: bool,
    manage: bool,
    busy: RwSignal<bool>,
    on_role: Callback<(Member, Role)>,
    on_remove: Callback<Member>,
) -> impl IntoView {
    let select_id = format!("role-{}", member.user_id);
    let current = member.role;
    let stored = StoredValue::new(member.clone());
    let role_cell = if manage {
        view! {
            <label for=select_id.clone() class="visually-hidden">{format!("Role of {}", member.username)}</label>
            <select
                id=select_id
                name="role"
                class="input select select-sm"
                data-test="member-role"
                disabled=move || busy.get()
                on:change=move |event| {
                    if let Some(role) = Role::parse(&event_target_value(&event))
                        && role != current
                    {
                        on_role.run((stored.get_value(), role));
                    }
                }
            >
                {Role::ALL
                    .into_iter()
                    .map(|role| view! { <option value=role.as_str() selected=role == current>{role.label()}</option> })
                    .collect_view()}
            </select>
        }
        .into_any()
    } else {
        view! { <RoleBadge role=current/> }.into_any()
    };
    let prompt = if is_me { "Leave this organization?".to_owned() } else { format!("Remove {}?", member.username) };
    view! {
        <tr data-test="member-row" data-user-id=member.user_id.to_string() data-username=member.username.clone()>
            <td>
                <div class="member">
                    <span class="avatar avatar-sm" aria-hidden="true">
                        {member.username.chars().next().map(|c| c.to_uppercase().to_string())}
                    </span>
                    <div class="member-text">
                        <span class="strong">
                            {member.username.clone()}
                            {is_me.then(|| view! { <span class="badge badge-neutral badge-inline">"You"</span> })}
                        </span>
                        <span class="muted small">{member.email.clone()}</span>
                    </div>
                </div>
            </td>
            <td>{role_cell}</td>
            <td data-label="Joined"><Time value=member.joined_at date_only=true/></td>
            {manage
                .then(|| {
                    view! {
                        <td class="actions">
                            <ConfirmButton
                                label=if is_me { "Leave" } else { "Remove" }
                                prompt=prompt
                                confirm_label=if is_me { "Leave" } else { "Remove" }
                                busy=busy
                                test="remove-member"
                                on_confirm=move |()| on_remove.run(stored.get_value())
                            />
                        </td>
                    }
                })}
        </tr>
    }
}

/// Open invitations, each with a revoke button, and the form to send one. Nobody joins until
/// they accept, and an invitation shows only what was typed here.
#[component]
fn Invitations(org: String) -> impl IntoView {
    let org = StoredValue::new(org);
    let invitations = LocalResource::new(move || {
        let org = org.get_value();
        async move { api::list_invitations(&org).await }
    });
    let action = FormState::new();
    let notice = RwSignal::new(None::<String>);
    let on_revoke = Callback::new(move |invitation: Invitation| {
        notice.set(None);
        let org = org.get_value();
        action.run(async move { api::revoke_invitation(&org, invitation.id).await }, move |()| {
            notice.set(Some(format!("The invitation to {} was revoked.", invitation.email)));
            invitations.refetch();
        });
    });
    let on_sent = Callback::new(move |invitation: Invitation| {
        notice.set(Some(format!(
            "Invitation sent to {}. They join as {} once they accept.",
            invitation.email,
            invitation.role.label()
        )));
        invitations.refetch();
    });
    view! {
        <Card
            title="Invite a member"
            id="invite-member"
            description="We email the address an invitation. They join once they accept it, signed in with that address; until then you see only what you typed here."
        >
            <div class="stack">
                {move || notice.get().map(|text| view! { <Alert kind=AlertKind::Success>{text}</Alert> })}
                <FormBanner form=action fields=&[]/>
                <InviteForm org=org.get_value() on_sent/>
                <Suspense fallback=|| view! { <Loading/> }>
                    {move || {
                        invitations
                            .get()
                            .map(|result| match result {
                                Err(error) => view! { <LoadError error/> }.into_any(),
                                Ok(list) if list.is_empty() => ().into_any(),
                                Ok(list) => view! { <InvitationTable list busy=action.busy on_revoke/> }.into_any(),
                            })
                    }}
                </Suspense>
            </div>
        </Card>
    }
}

#[component]
fn InvitationTable(list: Vec<Invitation>, busy: RwSignal<bool>, on_revoke: Callback<Invitation>) -> impl IntoView {
    view! {
        <div class="table-wrap">
            <table class="table table-stack" data-test="invitation-table">
                <caption class="table-caption">"Open invitations"</caption>
                <thead>
                    <tr>
                        <th scope="col">"Email"</th>
                        <th scope="col">"Role"</th>
                        <th scope="col">"Invited by"</th>
                        <th scope="col">"Expires"</th>
                        <th scope="col"><span class="visually-hidden">"Actions"</span></th>
                    </tr>
                </thead>
                <tbody>
                    {list
                        .into_iter()
                        .map(|invitation| {
                            let email = invitation.email.clone();
                            let prompt = format!("Revoke the invitation to {email}? The link in their email stops working.");
                            let revoked = invitation.clone();
                            let row_email = email.clone();
                            view! {
                                <tr data-test="invitation-row" data-email=row_email>
                                    <td class="strong" data-label="Email">{email}</td>
                                    <td data-label="Role"><RoleBadge role=invitation.role/></td>
                                    <td data-label="Invited by">{invitation.invited_by.clone()}</td>
                                    <td class="nowrap" data-label="Expires"><Time value=invitation.expires_at/></td>
                                    <td class="actions">
                                        <ConfirmButton
                                            label="Revoke"
                                            prompt
                                            confirm_label="Revoke invitation"
                                            busy
                                            test="revoke-invitation"
                                            on_confirm=move |()| on_revoke.run(revoked.clone())
                                        />
                                    </td>
                                </tr>
                            }
                        })
                        .collect_view()}
                </tbody>
            </table>
        </div>
    }
}

#[component]
fn InviteForm(org: String, on_sent: Callback<Invitation>) -> impl IntoView {
    let org = StoredValue::new(org);
    let form = FormState::new();
    let email = RwSignal::new(String::new());
    let role = RwSignal::new(Role::Viewer.as_str().to_owned());
    let on_submit = move |event: SubmitEvent| {
        event.prevent_default();
        let org = org.get_value();
        let address = email.get_untracked();
        let Some(chosen) = Role::parse(&role.get_untracked()) else {
            return;
        };
        form.run(async move { api::invite(&org, &address, chosen).await }, move |invitation| {
            email.set(String::new());
            on_sent.run(invitation);
        });
    };
    let options = Role::ALL.into_iter().map(|role| (role.as_str(), role.label())).collect::<Vec<_>>();
    view! {
        <form id="invite-form" class="form form-inline" method="post" novalidate=true on:submit=on_submit>
            <FormBanner form fields=&["email", "role"]/>
            <TextField
                id="invite-email"
                name="email"
                label="Email"
                kind="email"
                value=email
                form
                autocomplete="off"
                placeholder="teammate@example.com"
                required=true
            />
            <SelectField id="invite-role" name="role" label="Role" value=role form options/>
            <SubmitButton form label="Send invitation" busy_label="Sending…"/>
        </form>
        <ul class="role-help">
            <li><RoleBadge role=Role::Owner/>" Everything, including deleting the organization."</li>
            <li><RoleBadge role=Role::Admin/>" Manages members, cloud accounts and clusters."</li>
            <li><RoleBadge role=Role::Operator/>" Runs plans and deploys services."</li>
            <li><RoleBadge role=Role::Viewer/>" Reads everything, changes nothing."</li>
        </ul>
    }
}
