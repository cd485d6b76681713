//! Forms: fields with labels and inline errors, a busy submit button, and the request state
//! they share.
//!
//! Forms are real `<form>` elements with `novalidate`: the API is the one judge of what is
//! valid, and its problem details are shown next to the fields they name.

use std::future::Future;

use leptos::prelude::*;

use crate::api::{ApiError, ApiResult};
use crate::browser::ChosenFile;
use crate::components::{Alert, AlertKind};
use crate::format;

/// Whether the page is interactive yet; provided once by the app.
#[derive(Clone, Copy)]
pub struct Hydrated(pub ReadSignal<bool>);

impl Hydrated {
    /// A signal that turns true once the app runs in the browser (never on the server).
    pub fn track() -> Self {
        let (hydrated, set_hydrated) = signal(false);
        Effect::new(move |_| set_hydrated.set(true));
        Self(hydrated)
    }
}

/// True once the page is interactive in the browser (never during server rendering).
///
/// Submit buttons stay disabled until then, so that a form is never submitted natively (which
/// would put a password in a URL) before its handlers are attached.
pub fn use_hydrated() -> ReadSignal<bool> {
    use_context::<Hydrated>().unwrap_or_else(Hydrated::track).0
}

/// The state of one form's request: whether it is running and how the last one failed.
#[derive(Clone, Copy)]
pub struct FormState {
    pub busy: RwSignal<bool>,
    pub error: RwSignal<Option<ApiError>>,
}

impl Default for FormState {
    fn default() -> Self {
        Self::new()
    }
}

impl FormState {
    pub fn new() -> Self {
        Self { busy: RwSignal::new(false), error: RwSignal::new(None) }
    }

    /// Runs `request` in the browser, then `on_ok` with its value. While it runs the form is
    /// busy; a failure is kept in [`FormState::error`]. A second submit while busy is ignored.
    pub fn run<T, F>(self, request: F, on_ok: impl FnOnce(T) + 'static)
    where
        T: 'static,
        F: Future<Output = ApiResult<T>> + 'static,
    {
        if self.busy.get_untracked() {
            return;
        }
        self.busy.set(true);
        self.error.set(None);
        leptos::task::spawn_local(async move {
            let result = request.await;
            self.busy.try_set(false);
            match result {
                Ok(value) => on_ok(value),
                Err(error) => {
                    self.error.try_set(Some(error));
                }
            }
        });
    }

    /// The API's message for `field`, for the error line under that field.
    pub fn field_error(self, field: &'static str) -> Signal<Option<String>> {
        Signal::derive(move || self.error.with(|error| error.as_ref().and_then(|e| e.field(field)).map(str::to_owned)))
    }

    /// The error to show as a banner: the problem's `detail` unless every field error it
    /// carries is shown next to one of `fields`, plus any field error no field shows.
    pub fn banner(self, fields: &'static [&'static str]) -> Signal<Option<String>> {
        Signal::derive(move || {
            self.error.with(|error| {
                let error = error.as_ref()?;
                let unplaced: Vec<&str> = error
                    .errors
                    .iter()
                    .filter(|e| !fields.contains(&e.field.as_str()))
                    .map(|e| e.message.as_str())
                    .collect();
                let all_placed = !error.errors.is_empty() && unplaced.is_empty();
                if all_placed {
                    return None;
                }
                let mut text = error.message().to_owned();
                for message in unplaced {
                    text.push(' ');
                    text.push_str(message);
                }
                Some(text)
            })
        })
    }
}

/// The error banner of a form (see [`FormState::banner`]).
#[component]
pub fn FormBanner(form: FormState, fields: &'static [&'static str]) -> impl IntoView {
    let banner = form.banner(fields);
    move || banner.get().map(|text| view! { <Alert kind=AlertKind::Error>{text}</Alert> })
}

/// A labelled input with an optional hint and the API's error for it underneath.
#[component]
pub fn TextField(
    /// The element id, unique on the page (the label points at it).
    id: &'static str,
    /// The API field name; also the input's `name`.
    name: &'static str,
    label: &'static str,
    value: RwSignal<String>,
    form: FormState,
    #[prop(default = "text")] kind: &'static str,
    #[prop(optional)] autocomplete: Option<&'static str>,
    #[prop(optional)] placeholder: Option<&'static str>,
    #[prop(optional)] hint: Option<&'static str>,
    #[prop(optional)] required: bool,
    #[prop(optional)] autofocus: bool,
    /// Adds "(optional)" to the label.
    #[prop(optional)]
    mark_optional: bool,
) -> impl IntoView {
    let error = form.field_error(name);
    let hint_id = format!("{id}-hint");
    let error_id = format!("{id}-error");
    let described_by = {
        let hint_id = hint_id.clone();
        let error_id = error_id.clone();
        move || {
            let mut ids = Vec::new();
            if hint.is_some() {
                ids.push(hint_id.clone());
            }
            if error.with(Option::is_some) {
                ids.push(error_id.clone());
            }
            (!ids.is_empty()).then(|| ids.join(" "))
        }
    };
    view! {
        <div class="field" class:field-invalid=move || error.with(Option::is_some)>
            <label for=id class="field-label">
                {label}
                {mark_optional.then(|| view! { <span class="field-optional">" (optional)"</span> })}
            </label>
            <input
                id=id
                name=name
                type=kind
                class="input"
                autocomplete=autocomplete
                placeholder=placeholder
                required=required
                autofocus=autofocus
                aria-invalid=move || if error.with(Option::is_some) { "true" } else { "false" }
                aria-describedby=described_by
                bind:value=value
            />
            <FieldNotes name hint hint_id error error_id/>
        </div>
    }
}

/// A field's hint, and its error from the API's problem details when there is one.
#[component]
fn FieldNotes(
    name: &'static str,
    hint: Option<&'static str>,
    hint_id: String,
    error: Signal<Option<String>>,
    error_id: String,
) -> impl IntoView {
    view! {
        {hint.map(|hint| view! { <p class="field-hint" id=hint_id>{hint}</p> })}
        {move || {
            error
                .get()
                .map(|message| {
                    view! {
                        <p class="field-error" id=error_id.clone() data-test="field-error" data-field=name>
                            {message}
                        </p>
                    }
                })
        }}
    }
}

/// A labelled file picker whose file is read as text in the browser, for an API that takes a
/// file's contents in a JSON field (a key file, say). The file can also be dropped on it.
///
/// The text goes into `value` and the file's name into `file_name`; setting `file_name` back
/// to `None` empties the picker. Files over `max_bytes` are refused without being read.
#[component]
pub fn FileField(
    id: &'static str,
    /// The API field name; also the input's `name`.
    name: &'static str,
    label: &'static str,
    /// The input's `accept` attribute: which files the picker offers.
    accept: &'static str,
    value: RwSignal<String>,
    file_name: RwSignal<Option<String>>,
    form: FormState,
    max_bytes: u64,
    #[prop(default = "Choose file")] button_label: &'static str,
    #[prop(optional)] hint: Option<&'static str>,
) -> impl IntoView {
    let api_error = form.field_error(name);
    let read_error = RwSignal::new(None::<String>);
    let error = Signal::derive(move || read_error.get().or_else(|| api_error.get()));
    let size = RwSignal::new(None::<u64>);
    let dragging = RwSignal::new(false);
    let input = NodeRef::<leptos::html::Input>::new();
    // Counts choices, so that a slow read of an earlier file cannot overwrite a later one.
    let choices = StoredValue::new(0_u32);

    Effect::new(move |_| {
        if file_name.with(Option::is_none) {
            read_error.set(None);
            size.set(None);
            if let Some(input) = input.get() {
                input.set_value("");
            }
        }
    });
    let take = move |file: Option<ChosenFile>| {
        choices.update_value(|n| *n = n.wrapping_add(1));
        let choice = choices.get_value();
        value.set(String::new());
        read_error.set(None);
        let Some(file) = file else {
            file_name.set(None);
            return;
        };
        file_name.set(Some(file.name.clone()));
        size.set(Some(file.size));
        if file.size > max_bytes {
            let message =
                format!("This file is {}; choose one under {}.", format::bytes(file.size), format::bytes(max_bytes));
            read_error.set(Some(message));
            return;
        }
        leptos::task::spawn_local(async move {
            let text = file.text().await;
            if choices.try_get_value() != Some(choice) {
                return;
            }
            match text {
                Some(text) => {
                    value.try_set(text);
                }
                None => {
                    read_error.try_set(Some("This file could not be read.".to_owned()));
                }
            }
        });
    };

    let hint_id = format!("{id}-hint");
    let error_id = format!("{id}-error");
    let chosen_id = format!("{id}-chosen");
    let described_by = {
        let (hint_id, error_id, chosen_id) = (hint_id.clone(), error_id.clone(), chosen_id.clone());
        move || {
            let mut ids = vec![chosen_id.clone()];
            if hint.is_some() {
                ids.push(hint_id.clone());
            }
            if error.with(Option::is_some) {
                ids.push(error_id.clone());
            }
            ids.join(" ")
        }
    };
    view! {
        <div class="field" class:field-invalid=move || error.with(Option::is_some)>
            <label for=id class="field-label">{label}</label>
            <input
                id=id
                name=name
                type="file"
                accept=accept
                class="visually-hidden file-input"
                node_ref=input
                aria-invalid=move || if error.with(Option::is_some) { "true" } else { "false" }
                aria-describedby=described_by
                on:change=move |event| take(ChosenFile::from_input_event(&event))
            />
            // The visible picker: a second label for the same input, hidden from assistive
            // technology (which reads the input's own label and description).
            <label
                for=id
                class="file-picker"
                class:file-picker-active=move || dragging.get()
                aria-hidden="true"
                on:dragover=move |event| {
                    event.prevent_default();
                    dragging.set(true);
                }
                on:dragleave=move |_| dragging.set(false)
                on:drop=move |event| {
                    event.prevent_default();
                    dragging.set(false);
                    if let Some(file) = ChosenFile::from_drop_event(&event) {
                        take(Some(file));
                    }
                }
            >
                <span class="btn btn-secondary btn-sm">{button_label}</span>
                <span class="file-picker-text" id=chosen_id data-test="file-name">
                    {move || match file_name.get() {
                        Some(chosen) => view! {
                            <span class="file-picker-name">{chosen}</span>
                            {move || size.get().map(|bytes| view! { <span class="muted">" · " {format::bytes(bytes)}</span> })}
                        }
                        .into_any(),
                        None => view! { <span class="muted">"No file chosen, or drop one here"</span> }.into_any(),
                    }}
                </span>
            </label>
            <FieldNotes name hint hint_id error error_id/>
        </div>
    }
}

/// A labelled `<select>` over fixed options (`(value, label)` pairs).
#[component]
pub fn SelectField(
    id: &'static str,
    name: &'static str,
    label: &'static str,
    value: RwSignal<String>,
    form: FormState,
    options: Vec<(&'static str, &'static str)>,
    #[prop(optional)] hint: Option<&'static str>,
) -> impl IntoView {
    let error = form.field_error(name);
    let hint_id = format!("{id}-hint");
    let error_id = format!("{id}-error");
    view! {
        <div class="field" class:field-invalid=move || error.with(Option::is_some)>
            <label for=id class="field-label">{label}</label>
            <select
                id=id
                name=name
                class="input select"
                aria-invalid=move || if error.with(Option::is_some) { "true" } else { "false" }
                on:change=move |ev| value.set(event_target_value(&ev))
                prop:value=move || value.get()
            >
                {options
                    .into_iter()
                    .map(|(option, text)| {
                        view! {
                            <option value=option selected=move || value.with(|v| v == option)>
                                {text}
                            </option>
                        }
                    })
                    .collect_view()}
            </select>
            <FieldNotes name hint hint_id error error_id/>
        </div>
    }
}

/// A form's submit button: disabled until the page is interactive, busy while the request
/// runs (with `aria-busy` and the `busy_label` text).
#[component]
pub fn SubmitButton(
    form: FormState,
    label: &'static str,
    #[prop(into)] busy_label: Signal<&'static str>,
    #[prop(default = "btn btn-primary")] class: &'static str,
    #[prop(optional)] form_id: Option<&'static str>,
) -> impl IntoView {
    let hydrated = use_hydrated();
    let busy = form.busy;
    view! {
        <button
            type="submit"
            class=class
            form=form_id
            disabled=move || busy.get() || !hydrated.get()
            aria-busy=move || if busy.get() { "true" } else { "false" }
        >
            {move || busy.get().then(|| view! { <span class="spinner" aria-hidden="true"></span> })}
            <span>{move || if busy.get() { busy_label.get() } else { label }}</span>
        </button>
    }
}
