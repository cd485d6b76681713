//! The development outbox: mail the server would have sent, with working links.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::{self, OutboxEmail};
use crate::components::{Alert, AlertKind, EmptyState, LoadError, Loading, PageHeader, Time};
use crate::context::use_ui_context;
use crate::pages::NotFound;

/// Only exists when the server keeps a development outbox. It needs no sign-in: reading the
/// verification mail comes before the first sign-in.
#[component]
pub fn OutboxPage() -> impl IntoView {
    if !use_ui_context().dev_outbox {
        return view! { <NotFound/> }.into_any();
    }
    let mails = LocalResource::new(api::list_outbox);
    view! {
        <Title text="Development outbox"/>
        <PageHeader
            title="Development outbox"
            subtitle="This server does not deliver mail; everything it would have sent is kept here."
            actions=Box::new(move || {
                view! {
                    <button type="button" class="btn btn-secondary" data-test="outbox-refresh" on:click=move |_| mails.refetch()>
                        "Refresh"
                    </button>
                }
                .into_any()
            })
        />
        <Alert kind=AlertKind::Warning>"Development only. Turn the outbox off in production."</Alert>
        <Suspense fallback=|| view! { <Loading/> }>
            {move || {
                mails
                    .get()
                    .map(|result| match result {
                        Err(error) => view! { <LoadError error/> }.into_any(),
                        Ok(list) if list.is_empty() => view! {
                            <EmptyState title="No mail yet">"Sign up or ask for a verification email, then refresh."</EmptyState>
                        }
                        .into_any(),
                        Ok(mut list) => {
                            list.sort_by_key(|mail| std::cmp::Reverse(mail.created_at));
                            view! {
                                <div class="stack">
                                    {list.into_iter().map(|mail| view! { <Mail mail/> }).collect_view()}
                                </div>
                            }
                            .into_any()
                        }
                    })
            }}
        </Suspense>
    }
    .into_any()
}

#[component]
fn Mail(mail: OutboxEmail) -> impl IntoView {
    let body = linkify(&mail.body)
        .into_iter()
        .map(|segment| match segment {
            Segment::Text(text) => text.into_any(),
            Segment::Link(url) => {
                let href = url.clone();
                view! { <a href=href data-test="outbox-link">{url}</a> }.into_any()
            }
        })
        .collect_view();
    let to = mail.to.clone();
    view! {
        <article class="card mail" data-test="outbox-mail" data-to=to>
            <header class="mail-header">
                <h2 class="mail-subject">{mail.subject}</h2>
                <p class="mail-meta">
                    <span>"To " <strong>{mail.to}</strong></span>
                    <Time value=mail.created_at/>
                </p>
            </header>
            <pre class="mail-body">{body}</pre>
        </article>
    }
}

/// A piece of a mail body: plain text, or a URL to make clickable.
#[derive(Debug, PartialEq, Eq)]
enum Segment {
    Text(String),
    Link(String),
}

/// Splits `body` into text and `http(s)://` links. A link ends at whitespace or a quote or
/// angle bracket, and does not take trailing sentence punctuation.
fn linkify(body: &str) -> Vec<Segment> {
    let mut segments = Vec::new();
    let mut rest = body;
    while let Some(start) = next_link(rest) {
        let (before, from_link) = rest.split_at(start);
        let end = from_link
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>'))
            .unwrap_or(from_link.len());
        let link = from_link[..end].trim_end_matches(['.', ',', ';', ':', '!', '?', ')']);
        if !before.is_empty() {
            segments.push(Segment::Text(before.to_owned()));
        }
        segments.push(Segment::Link(link.to_owned()));
        rest = &from_link[link.len()..];
    }
    if !rest.is_empty() {
        segments.push(Segment::Text(rest.to_owned()));
    }
    segments
}

fn next_link(text: &str) -> Option<usize> {
    match (text.find("http://"), text.find("https://")) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_links_in_mail_text() {
        let body = "Verify: http://127.0.0.1:8080/verify-email?token=abc.\nThanks";
        assert_eq!(
            linkify(body),
            vec![
                Segment::Text("Verify: ".into()),
                Segment::Link("http://127.0.0.1:8080/verify-email?token=abc".into()),
                Segment::Text(".\nThanks".into()),
            ]
        );
        assert_eq!(linkify("no links"), vec![Segment::Text("no links".into())]);
    }
}
