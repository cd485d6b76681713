//! One run: where it stands and why, its plan, its outputs, and its log as it is written.
//!
//! The log streams live (Server-Sent Events): lines as Terraform prints them, then an `end`
//! event; after a network drop the browser reconnects and the stream resumes after the last
//! line it delivered. The run itself is fetched again whenever the live event stream says it
//! changed (and every 10 s while it is not over, in case that stream is reconnecting).
//! Operators and above can cancel a run that is not over; admins and owners approve plans that
//! wait for them and retry failed runs.

use std::time::Duration;

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;
use leptos_router::hooks::{use_navigate, use_params_map};
use serde_json::Value;
use uuid::Uuid;

use crate::api::{self, ApiError, LogLine, PlanSummary, Role, Run, RunAction, RunStatus};
use crate::browser;
use crate::components::{
    ActionButton, Alert, AlertKind, Card, CopyButton, FormBanner, FormState, LoadError, Loading, PageHeader,
    RequireViewer, RunStatusBadge, Time,
};
use crate::format::{self, Mention, encode};

/// How often the page asks again while the run is not over (status changes also arrive live).
const REFRESH: Duration = Duration::from_secs(10);

#[component]
pub fn RunPage() -> impl IntoView {
    let params = use_params_map();
    let id = Memo::new(move |_| params.with(|params| params.get("id").unwrap_or_default()));
    view! {
        <Title text="Run"/>
        <RequireViewer>
            // A retry opens another run on this same route: start over for it.
            {move || view! { <RunView id=id.get()/> }}
        </RequireViewer>
    }
}

/// What the parts of the page share.
#[derive(Clone, Copy)]
struct RunState {
    id: Uuid,
    run: RwSignal<Option<Run>>,
    /// The last failure to load the run; the page keeps showing what it had.
    error: RwSignal<Option<ApiError>>,
    /// The viewer's role in the run's organization, once known.
    role: RwSignal<Option<Role>>,
    log: RwSignal<Vec<LogLine>>,
    log_complete: RwSignal<bool>,
}

impl RunState {
    fn new(id: Uuid) -> Self {
        Self {
            id,
            run: RwSignal::new(None),
            error: RwSignal::new(None),
            role: RwSignal::new(None),
            log: RwSignal::new(Vec::new()),
            log_complete: RwSignal::new(false),
        }
    }

    /// Adds a line the page has not shown yet.
    fn append(self, chunk: LogLine) {
        self.log.try_update(|log| {
            if log.last().is_none_or(|last| chunk.seq > last.seq) {
                log.push(chunk);
            }
        });
    }

    // These run when a request finishes, which may be after the page is gone: hence `try_`.

    /// Fetches the run (and the viewer's role, the first time); `None` when the page is gone.
    async fn load_run(self) -> Option<Result<Run, ApiError>> {
        let result = api::get_run(self.id).await;
        match &result {
            Ok(run) => {
                if self.role.try_get_untracked()?.is_none()
                    && let Ok(org) = api::get_org(&run.org).await
                {
                    self.role.try_set(Some(org.role));
                }
                self.run.try_set(Some(run.clone()));
                self.error.try_set(None);
            }
            Err(error) => {
                self.error.try_set(Some(error.clone()));
            }
        }
        Some(result)
    }

    /// One refresh; the delay until the next, or `None` when there is nothing left to wait for.
    async fn refresh(self) -> Option<Duration> {
        match self.load_run().await? {
            Ok(run) => (!run.status.is_terminal()).then_some(REFRESH),
            // Signed out, gone, or not ours: asking again will not help.
            Err(error) if matches!(error.status, 401 | 403 | 404) => None,
            Err(_) => Some(REFRESH),
        }
    }

    /// Streams the log: every line from the first, then `end`.
    fn stream_log(self) {
        browser::listen(&format!("/api/v1/runs/{}/logs", self.id), &["line", "end"], move |kind, data| {
            if kind == "end" {
                self.log_complete.try_set(true);
                leptos::task::spawn_local(async move {
                    self.load_run().await;
                });
                return false;
            }
            if let Ok(chunk) = serde_json::from_str::<LogLine>(&data) {
                self.append(chunk);
            }
            true
        });
    }
}

#[component]
fn RunView(id: String) -> impl IntoView {
    let id = match api::parse_id(&id) {
        Ok(id) => id,
        Err(error) => return view! { <LoadError error/> }.into_any(),
    };
    let state = RunState::new(id);
    Effect::new(move |_| browser::poll(move || state.refresh()));
    Effect::new(move |_| state.stream_log());
    crate::live::on_change(move || {
        leptos::task::spawn_local(async move {
            state.load_run().await;
        })
    });

    let loaded = Memo::new(move |_| state.run.with(Option::is_some));
    (move || {
        if loaded.get() {
            return view! { <RunDetails state/> }.into_any();
        }
        match state.error.get() {
            Some(error) => view! { <LoadError error/> }.into_any(),
            None => view! { <Loading/> }.into_any(),
        }
    })
    .into_any()
}

#[component]
fn RunDetails(state: RunState) -> impl IntoView {
    // Each refresh sets the run again; parts redraw only when what they show has changed.
    let current = Memo::new(move |_| state.run.get());
    let run = move || current.get();
    let status = Memo::new(move |_| current.with(|run| run.as_ref().map(|run| run.status)));
    let header = Memo::new(move |_| {
        current
            .with(|run| run.as_ref().map(|run| (run.org.clone(), run.cluster_id, run.cluster_name.clone(), run.action)))
    });
    let cluster_name = move || header.with(|h| h.as_ref().map(|h| h.2.clone()).unwrap_or_default());
    let cluster_href = move || {
        header.with(|h| h.as_ref().map(|(org, cluster, ..)| format!("/orgs/{}/clusters/{cluster}", encode(org))))
    };
    let subtitle = Signal::derive(move || current.with(|run| run.as_ref().map(subtitle).unwrap_or_default()));
    let title = Signal::derive(move || {
        header.with(|h| h.as_ref().map(|h| format!("{} {}", h.3.label(), h.2)).unwrap_or_default())
    });
    let actions = RunActions::new(state);

    view! {
        <Title text=move || title.get()/>
        <PageHeader
            title=title
            subtitle=subtitle
            eyebrow=Box::new(move || {
                view! { <A href=move || cluster_href().unwrap_or_default()>"← " {cluster_name}</A> }.into_any()
            })
            actions=Box::new(move || {
                view! {
                    {move || status.get().map(|status| view! { <RunStatusBadge status/> })}
                    <RunButtons state actions status/>
                }
                .into_any()
            })
        />
        <div class="stack-lg">
            <FormBanner form=actions.approve fields=&[]/>
            <FormBanner form=actions.cancel fields=&[]/>
            <FormBanner form=actions.retry fields=&[]/>
            {move || state.error.get().map(|error| view! { <Alert kind=AlertKind::Warning>{format!("Could not refresh: {}", error.message())}</Alert> })}
            {move || run().map(|run| view! { <RunStateNotice run state actions/> })}
            <div class="grid grid-main">
                <Card title="Details">
                    {move || run().map(|run| view! { <RunFacts run/> })}
                </Card>
                <Card title="Plan">
                    {move || {
                        let run = run()?;
                        Some(match run.plan_summary {
                            Some(summary) => view! { <PlanSummaryLine summary/> }.into_any(),
                            None if run.status.is_terminal() => {
                                view! { <p class="muted">"This run made no plan."</p> }.into_any()
                            }
                            None => view! { <p class="muted">"The plan appears here once Terraform has made it."</p> }.into_any(),
                        })
                    }}
                </Card>
            </div>
            {move || {
                let outputs = run()?.outputs.filter(|outputs| !outputs.is_empty())?;
                Some(view! {
                    <Card title="Outputs">
                        <OutputList outputs test="run-outputs"/>
                    </Card>
                })
            }}
            <Card title="Log">
                <RunLog state/>
            </Card>
        </div>
    }
}

/// `Apply run 01ab… · attempt 2 of 3`.
fn subtitle(run: &Run) -> String {
    let mut text = format!("{} run {}", run.action.label(), format::short_id(run.id));
    if run.max_attempts > 1 && run.attempts > 0 {
        text.push_str(&format!(" · attempt {} of {}", run.attempts, run.max_attempts));
    }
    text
}

/// The requests the run's buttons make.
#[derive(Clone, Copy)]
struct RunActions {
    approve: FormState,
    cancel: FormState,
    retry: FormState,
}

impl RunActions {
    fn new(state: RunState) -> Self {
        let actions = Self { approve: FormState::new(), cancel: FormState::new(), retry: FormState::new() };
        // A refused action may mean the run moved on: show where it is now.
        Effect::new(move |_| {
            if actions.approve.error.with(Option::is_some) || actions.cancel.error.with(Option::is_some) {
                leptos::task::spawn_local(async move {
                    state.load_run().await;
                });
            }
        });
        actions
    }

    fn approve(self, state: RunState) {
        let id = state.id;
        self.approve.run(async move { api::approve_run(id).await }, move |()| reload(state));
    }

    fn cancel(self, state: RunState) {
        let id = state.id;
        self.cancel.run(async move { api::cancel_run(id).await }, move |()| reload(state));
    }

    fn retry(self, state: RunState, navigate: impl Fn(&str) + 'static) {
        let id = state.id;
        self.retry.run(async move { api::retry_run(id).await }, move |run| {
            navigate(&format!("/runs/{}", run.id));
        });
    }
}

fn reload(state: RunState) {
    leptos::task::spawn_local(async move {
        state.load_run().await;
    });
}

/// Cancel while the run is not over (operators and above; a plan waiting for approval has
/// its own); Retry once it failed or was canceled (admins and owners).
#[component]
fn RunButtons(state: RunState, actions: RunActions, status: Memo<Option<RunStatus>>) -> impl IntoView {
    let navigate = StoredValue::new_local(use_navigate());
    let role = move || state.role.get();
    let can_cancel = move || {
        let active = status.get().is_some_and(|status| !status.is_terminal() && status != RunStatus::AwaitingApproval);
        role().is_some_and(Role::operates_clusters) && active
    };
    let can_retry = move || {
        let ended = matches!(status.get(), Some(RunStatus::Failed | RunStatus::Canceled));
        role().is_some_and(Role::manages_clusters) && ended
    };
    let retry = move |()| {
        let navigate = navigate.get_value();
        actions.retry(state, move |path| navigate(path, Default::default()));
    };
    view! {
        {move || {
            can_cancel()
                .then(|| {
                    view! {
                        <ActionButton
                            form=actions.cancel
                            label="Cancel run"
                            busy_label="Canceling…"
                            test="cancel-run"
                            on_click=move |()| actions.cancel(state)
                        />
                    }
                })
        }}
        {move || {
            can_retry()
                .then(|| {
                    view! {
                        <ActionButton
                            form=actions.retry
                            label="Retry"
                            busy_label="Retrying…"
                            test="retry-run"
                            class="btn btn-primary"
                            on_click=retry
                        />
                    }
                })
        }}
    }
}

/// Where the run stands and why: its place in the queue, the approval it waits for, or how
/// it ended.
#[component]
fn RunStateNotice(run: Run, state: RunState, actions: RunActions) -> impl IntoView {
    let reason = run.reason.clone().filter(|reason| !reason.trim().is_empty());
    let reason_line =
        reason.clone().map(|text| view! { <p class="run-reason" data-test="run-reason"><Reason text/></p> });
    match run.status {
        RunStatus::Queued => {
            let position = run.position.map(|position| {
                view! {
                    <p class="run-position" data-test="run-position" data-position=position>
                        {queue_position(position)}
                    </p>
                }
            });
            let reason = reason.unwrap_or_else(|| "Waiting for a worker to pick it up.".to_owned());
            view! {
                <Alert kind=AlertKind::Info title="Queued">
                    {position}
                    <p class="run-reason" data-test="run-reason"><Reason text=reason/></p>
                </Alert>
            }
            .into_any()
        }
        RunStatus::AwaitingApproval => {
            let admin = move || state.role.get().is_some_and(Role::manages_clusters);
            let operator = move || state.role.get().is_some_and(Role::operates_clusters);
            view! {
                <section class="approval" data-test="approval" aria-labelledby="approval-title">
                    <h2 class="approval-title" id="approval-title">"This plan needs approval"</h2>
                    {run.plan_summary.map(|summary| view! { <PlanSummaryLine summary/> })}
                    {reason_line}
                    <p class="muted small">
                        "Review the plan in the log below. Applying it changes real infrastructure."
                    </p>
                    <div class="row-actions">
                        {move || {
                            if admin() {
                                view! {
                                    <ActionButton
                                        form=actions.approve
                                        label="Approve and apply"
                                        busy_label="Approving…"
                                        test="approve-run"
                                        class="btn btn-primary"
                                        on_click=move |()| actions.approve(state)
                                    />
                                }
                                .into_any()
                            } else {
                                view! { <p class="small">"An admin or owner of this organization must approve it."</p> }
                                    .into_any()
                            }
                        }}
                        {move || {
                            operator()
                                .then(|| {
                                    view! {
                                        <ActionButton
                                            form=actions.cancel
                                            label="Cancel run"
                                            busy_label="Canceling…"
                                            test="cancel-run"
                                            on_click=move |()| actions.cancel(state)
                                        />
                                    }
                                })
                        }}
                    </div>
                </section>
            }
            .into_any()
        }
        RunStatus::Failed => {
            // The reason usually says how Terraform ended; the exit code is the fallback.
            let exit =
                run.exit_code.filter(|_| reason.is_none()).map(|code| format!("Terraform exited with code {code}."));
            view! {
                <Alert kind=AlertKind::Error title="This run failed">
                    {reason_line}
                    {exit.map(|text| view! { <p class="small">{text}</p> })}
                    {(run.max_attempts > 1).then(|| {
                        view! { <p class="small">{format!("Tried {} of {} times.", run.attempts, run.max_attempts)}</p> }
                    })}
                </Alert>
            }
            .into_any()
        }
        RunStatus::Canceled => view! {
            <Alert kind=AlertKind::Info title="This run was canceled">{reason_line}</Alert>
        }
        .into_any(),
        RunStatus::Succeeded => {
            let text = match run.action {
                RunAction::Plan => "The plan is ready.",
                RunAction::Apply => "The cluster is up to date.",
                RunAction::Destroy => "Everything the cluster had is gone.",
                RunAction::Deploy | RunAction::Upgrade | RunAction::Rollback => "The deployment is up and ready.",
                RunAction::Uninstall => "The deployment is gone.",
            };
            view! { <Alert kind=AlertKind::Success title=text>{reason_line}</Alert> }.into_any()
        }
        RunStatus::Running | RunStatus::Applying => reason_line.into_any(),
    }
}

/// A run's reason, with the runs it names as links.
#[component]
fn Reason(text: String) -> impl IntoView {
    format::mentions(&text)
        .into_iter()
        .map(|part| match part {
            Mention::Text(text) => text.into_any(),
            Mention::Id(id) => {
                let href = format!("/runs/{id}");
                view! { <A href=href attr:class="mono" attr:title=id.to_string()>{format::short_id(id)}</A> }.into_any()
            }
        })
        .collect_view()
}

/// `Next in line`, `3rd in line`.
fn queue_position(position: u64) -> String {
    if position <= 1 {
        return "Next in line".to_owned();
    }
    let suffix = match (position % 10, position % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{position}{suffix} in line")
}

#[component]
fn RunFacts(run: Run) -> impl IntoView {
    let took = run.started_at.zip(run.finished_at).map(|(from, to)| format::elapsed(from, to));
    let attempts = (run.attempts > 0).then(|| format!("{} of {}", run.attempts, run.max_attempts));
    view! {
        <dl class="details details-flush">
            <div>
                <dt>"Action"</dt>
                <dd>{run.action.label()}</dd>
            </div>
            <div>
                <dt>"Requested by"</dt>
                <dd>{run.requested_by.unwrap_or_else(|| "Fleetplane".to_owned())}</dd>
            </div>
            {run.approved_by.map(|who| view! { <div><dt>"Approved by"</dt><dd>{who}</dd></div> })}
            <div>
                <dt>"Queued"</dt>
                <dd><Time value=run.created_at/></dd>
            </div>
            {run.started_at.map(|at| view! { <div><dt>"Started"</dt><dd><Time value=at/></dd></div> })}
            {run.finished_at.map(|at| view! { <div><dt>"Finished"</dt><dd><Time value=at/></dd></div> })}
            {took.map(|took| view! { <div><dt>"Took"</dt><dd>{took}</dd></div> })}
            {attempts.map(|text| view! { <div><dt>"Attempts"</dt><dd data-test="run-attempts">{text}</dd></div> })}
            {run.exit_code.map(|code| view! { <div><dt>"Exit code"</dt><dd class="mono">{code}</dd></div> })}
            {run.executor.map(|executor| view! { <div><dt>"Ran in"</dt><dd>{executor_label(&executor)}</dd></div> })}
            <div>
                <dt>"Run ID"</dt>
                <dd class="mono small">{run.id.to_string()}</dd>
            </div>
        </dl>
    }
}

fn executor_label(executor: &str) -> String {
    match executor {
        "docker" => "A provisioner container".to_owned(),
        "process" => "A local Terraform process".to_owned(),
        other => other.to_owned(),
    }
}

/// `+3 to add  ~1 to change  −0 to destroy`.
#[component]
pub fn PlanSummaryLine(summary: PlanSummary) -> impl IntoView {
    let nothing = summary == PlanSummary::default();
    view! {
        <p
            class="plan-summary"
            data-test="plan-summary"
            data-add=summary.add
            data-change=summary.change
            data-destroy=summary.destroy
        >
            <span class="plan-count plan-add" class:plan-zero=summary.add == 0>{format!("+{} to add", summary.add)}</span>
            <span class="plan-count plan-change" class:plan-zero=summary.change == 0>
                {format!("~{} to change", summary.change)}
            </span>
            <span class="plan-count plan-destroy" class:plan-zero=summary.destroy == 0>
                {format!("−{} to destroy", summary.destroy)}
            </span>
            {nothing.then(|| view! { <span class="muted small">"No changes."</span> })}
        </p>
    }
}

/// Terraform outputs: short values as a list, certificates folded away, a kubeconfig in a
/// block of its own with a copy button.
#[component]
pub fn OutputList(outputs: serde_json::Map<String, Value>, test: &'static str) -> impl IntoView {
    let mut short = Vec::new();
    let mut long = Vec::new();
    for (key, value) in outputs {
        let output = Output::new(key, value);
        if output.kind == OutputKind::Short { short.push(output) } else { long.push(output) }
    }
    view! {
        <div class="outputs" data-test=test>
            {(!short.is_empty())
                .then(|| {
                    view! {
                        <dl class="details details-flush">
                            {short
                                .into_iter()
                                .map(|output| {
                                    let key = output.key.clone();
                                    view! {
                                        <div data-test="output" data-key=key>
                                            <dt class="mono">{output.key}</dt>
                                            <dd class="mono">{output.text}</dd>
                                        </div>
                                    }
                                })
                                .collect_view()}
                        </dl>
                    }
                })}
            {long.into_iter().map(|output| view! { <LongOutput output/> }).collect_view()}
        </div>
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OutputKind {
    Short,
    /// A certificate or key: long and rarely read, so folded away.
    Folded,
    /// A kubeconfig or other multi-line text, shown in full with a copy button.
    Block,
}

#[derive(Clone, Debug, PartialEq)]
struct Output {
    key: String,
    text: String,
    kind: OutputKind,
}

impl Output {
    fn new(key: String, value: Value) -> Self {
        // Terraform's own JSON wraps each output: `{ "value": …, "type": …, "sensitive": … }`.
        let value = match value {
            Value::Object(mut fields) if fields.contains_key("value") && fields.len() <= 3 => {
                if fields.get("sensitive").and_then(Value::as_bool) == Some(true) {
                    return Self { key, text: "(sensitive, not shown)".to_owned(), kind: OutputKind::Short };
                }
                fields.remove("value").unwrap_or(Value::Null)
            }
            other => other,
        };
        let text = match value {
            Value::String(text) => text,
            Value::Null => String::new(),
            other => serde_json::to_string_pretty(&other).unwrap_or_default(),
        };
        let name = key.to_ascii_lowercase();
        let kind = if name.contains("kubeconfig") || name.contains("kube_config") {
            OutputKind::Block
        } else if name.contains("certificate")
            || name.contains("ca_data")
            || name.ends_with("_ca")
            || name.ends_with("_key")
        {
            OutputKind::Folded
        } else if text.contains('\n') || text.len() > 120 {
            OutputKind::Block
        } else {
            OutputKind::Short
        };
        Self { key, text, kind }
    }
}

#[component]
fn LongOutput(output: Output) -> impl IntoView {
    let key = output.key;
    let label = key.clone();
    let text = StoredValue::new(output.text);
    let copy_test = if output.kind == OutputKind::Block && key.to_ascii_lowercase().contains("kube") {
        "copy-kubeconfig"
    } else {
        "copy-output"
    };
    let block = move || {
        view! {
            <div class="code-block-wrap">
                <pre class="code-block" tabindex="0" data-test="output-text">{text.get_value()}</pre>
                <div class="code-block-actions">
                    <CopyButton text=text.get_value() test=copy_test/>
                </div>
            </div>
        }
    };
    match output.kind {
        OutputKind::Folded => view! {
            <details class="output-folded" data-test="output" data-key=key>
                <summary>
                    <span class="mono">{label}</span>
                    <span class="muted small">{format!(" · {}", format::bytes(text.with_value(String::len) as u64))}</span>
                </summary>
                {block()}
            </details>
        }
        .into_any(),
        OutputKind::Block | OutputKind::Short => view! {
            <div class="output-block" data-test="output" data-key=key>
                <p class="output-key mono">{label}</p>
                {block()}
            </div>
        }
        .into_any(),
    }
}

/// The run's log: one line per chunk, standard error and Fleetplane's own lines set apart.
/// It follows new lines unless the reader scrolls up or turns following off.
#[component]
fn RunLog(state: RunState) -> impl IntoView {
    let follow = RwSignal::new(true);
    let container = NodeRef::<leptos::html::Div>::new();
    let scroll_to_end = move || {
        if let Some(element) = container.get_untracked() {
            element.set_scroll_top(element.scroll_height());
        }
    };
    Effect::new(move |_| {
        state.log.with(Vec::len);
        if follow.get() {
            // After the new lines are laid out.
            request_animation_frame(scroll_to_end);
        }
    });
    let on_scroll = move |_| {
        if let Some(element) = container.get_untracked() {
            let at_end = element.scroll_top() + element.client_height() >= element.scroll_height() - 8;
            if follow.get_untracked() != at_end {
                follow.set(at_end);
            }
        }
    };
    let empty = move || state.log.with(Vec::is_empty);
    let running = move || state.run.with(|run| run.as_ref().is_some_and(|run| !run.status.is_terminal()));
    view! {
        <div class="log-toolbar">
            <label class="toggle" data-test="log-follow">
                <input type="checkbox" prop:checked=move || follow.get() on:change=move |event| follow.set(event_target_checked(&event))/>
                <span>"Follow"</span>
            </label>
            {move || running().then(|| view! { <span class="log-live small muted"><span class="live-dot" aria-hidden="true"></span>"Live"</span> })}
        </div>
        <div
            class="log"
            data-test="run-log"
            role="log"
            aria-label="Run log"
            aria-live="off"
            tabindex="0"
            node_ref=container
            on:scroll=on_scroll
        >
            {move || {
                empty()
                    .then(|| {
                        let text = if running() { "The log starts when a worker picks the run up." } else { "This run wrote no log." };
                        view! { <p class="log-empty">{text}</p> }
                    })
            }}
            <For each=move || state.log.get() key=|chunk| chunk.seq let:chunk>
                <LogRow chunk/>
            </For>
        </div>
    }
}

#[component]
fn LogRow(chunk: LogLine) -> impl IntoView {
    let text = format::strip_ansi(chunk.text.strip_suffix('\n').unwrap_or(&chunk.text));
    view! {
        <div class=format!("log-line log-{}", chunk.stream.as_str()) data-test="log-line" data-seq=chunk.seq title=format::rfc3339(chunk.at)>
            {text}
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn says_where_a_run_is_in_line() {
        assert_eq!(queue_position(1), "Next in line");
        assert_eq!(queue_position(2), "2nd in line");
        assert_eq!(queue_position(3), "3rd in line");
        assert_eq!(queue_position(4), "4th in line");
        assert_eq!(queue_position(11), "11th in line");
        assert_eq!(queue_position(21), "21st in line");
    }

    #[test]
    fn counts_attempts_only_when_there_can_be_more() {
        let mut run: Run = serde_json::from_value(json!({
            "id": "01a20b29-8292-7196-af7e-d490e4f32cd3", "org": "acme", "cluster_id": "01a20b29-8292-7196-af7e-d490e4f30000",
            "cluster_name": "payments-prod", "action": "apply", "status": "running", "reason": null, "position": null,
            "attempts": 2, "max_attempts": 3, "plan_summary": null, "outputs": null, "exit_code": null,
            "executor": "docker", "requested_by": "ada", "approved_by": null, "created_at": "2026-04-14T09:30:00Z",
            "started_at": "2026-04-14T09:30:05Z", "finished_at": null
        }))
        .expect("run parses");
        assert_eq!(subtitle(&run), "Apply run …e4f32cd3 · attempt 2 of 3");
        run.max_attempts = 1;
        assert_eq!(subtitle(&run), "Apply run …e4f32cd3");
    }

    #[test]
    fn sorts_outputs_by_how_they_read() {
        let endpoint = Output::new("endpoint".into(), json!("https://k8s.example:6443"));
        assert_eq!(endpoint.kind, OutputKind::Short);
        let ca = Output::new("cluster_ca_certificate".into(), json!("LS0tLS1CRUdJTi..."));
        assert_eq!(ca.kind, OutputKind::Folded);
        let kubeconfig =
            Output::new("kubeconfig".into(), json!({ "value": "apiVersion: v1\nkind: Config", "type": "string" }));
        assert_eq!(kubeconfig.kind, OutputKind::Block);
        assert_eq!(kubeconfig.text, "apiVersion: v1\nkind: Config");
        let secret = Output::new("token".into(), json!({ "value": "s3cret", "sensitive": true }));
        assert!(!secret.text.contains("s3cret"));
        let list = Output::new("node_ips".into(), json!(["10.0.0.1"]));
        assert_eq!(list.text, "[\n  \"10.0.0.1\"\n]");
        assert_eq!(list.kind, OutputKind::Block);
    }

    #[test]
    fn log_chunks_arriving_twice_are_kept_once() {
        Owner::new().with(|| {
            let state = RunState::new(Uuid::nil());
            let chunk = |seq: u64| LogLine {
                seq,
                stream: api::LogStream::Stdout,
                text: format!("line {seq}"),
                at: chrono::DateTime::UNIX_EPOCH,
            };
            for seq in [1, 2, 2, 3, 1] {
                state.append(chunk(seq));
            }
            let seqs: Vec<u64> = state.log.get_untracked().iter().map(|chunk| chunk.seq).collect();
            assert_eq!(seqs, [1, 2, 3]);
        });
    }
}
