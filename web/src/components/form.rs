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
    pub fn field_error(self, field: impl Into<String>) -> Signal<Option<String>> {
        let field = field.into();
        Signal::derive(move || self.error.with(|error| error.as_ref().and_then(|e| e.field(&field)).map(str::to_owned)))
    }

    /// The error to show as a banner: the problem's `detail` unless every field error it
    /// carries is shown next to one of `fields`, plus any field error no field shows. An item
    /// of a list field (`public_subnets.1`) is shown by that list (`public_subnets`).
    pub fn banner(self, fields: &'static [&'static str]) -> Signal<Option<String>> {
        Signal::derive(move || {
            self.error.with(|error| {
                let error = error.as_ref()?;
                let unplaced: Vec<&str> = error
                    .errors
                    .iter()
                    .filter(|e| !fields.contains(&list_of(&e.field)))
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

/// The list field an item's field name belongs to (`public_subnets.1` → `public_subnets`);
/// other names are returned as they are.
pub fn list_of(field: &str) -> &str {
    match field.rsplit_once('.') {
        Some((list, index)) if !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()) => list,
        _ => field,
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

/// One choice of a [`SelectField`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelectOption {
    pub value: String,
    pub label: String,
    /// Shown but not choosable (an account that is not verified, say).
    pub disabled: bool,
}

impl SelectOption {
    pub fn new(value: impl Into<String>, label: impl Into<String>) -> Self {
        Self { value: value.into(), label: label.into(), disabled: false }
    }

    pub fn disabled(self, disabled: bool) -> Self {
        Self { disabled, ..self }
    }
}

/// The choices of a [`SelectField`]: fixed `(value, label)` pairs, or a list that changes.
#[derive(Clone, Copy)]
pub struct SelectOptions(Signal<Vec<SelectOption>>);

impl From<Vec<(&'static str, &'static str)>> for SelectOptions {
    fn from(pairs: Vec<(&'static str, &'static str)>) -> Self {
        Self(Signal::stored(pairs.into_iter().map(|(value, label)| SelectOption::new(value, label)).collect()))
    }
}

impl From<Signal<Vec<SelectOption>>> for SelectOptions {
    fn from(options: Signal<Vec<SelectOption>>) -> Self {
        Self(options)
    }
}

impl From<Memo<Vec<SelectOption>>> for SelectOptions {
    fn from(options: Memo<Vec<SelectOption>>) -> Self {
        Self(options.into())
    }
}

/// A labelled `<select>`.
#[component]
pub fn SelectField(
    id: &'static str,
    name: &'static str,
    label: &'static str,
    value: RwSignal<String>,
    form: FormState,
    #[prop(into)] options: SelectOptions,
    #[prop(optional)] hint: Option<&'static str>,
) -> impl IntoView {
    let error = form.field_error(name);
    let hint_id = format!("{id}-hint");
    let error_id = format!("{id}-error");
    let options = options.0;
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
                {move || {
                    options
                        .get()
                        .into_iter()
                        .map(|option| {
                            let chosen = option.value.clone();
                            view! {
                                <option
                                    value=option.value
                                    disabled=option.disabled
                                    selected=move || value.with(|v| *v == chosen)
                                >
                                    {option.label}
                                </option>
                            }
                        })
                        .collect_view()
                }}
            </select>
            <FieldNotes name hint hint_id error error_id/>
        </div>
    }
}

/// A labelled list of text inputs, one per item, with buttons to add and remove items. The
/// inputs share the API field `name`; an item's error comes back as `name.<index>`, and the
/// list's own as `name`.
#[component]
pub fn TextListField(
    id: &'static str,
    name: &'static str,
    label: &'static str,
    values: RwSignal<Vec<String>>,
    form: FormState,
    /// What one item is called, for the buttons and the inputs' labels ("subnet").
    item: &'static str,
    #[prop(optional)] placeholder: Option<&'static str>,
    #[prop(optional)] hint: Option<&'static str>,
    /// No fewer items than this can be left.
    #[prop(optional)]
    min_items: usize,
) -> impl IntoView {
    let error = form.field_error(name);
    let hint_id = format!("{id}-hint");
    let error_id = format!("{id}-error");
    // The inputs are drawn again only when items come or go, so typing keeps the focus.
    let count = Memo::new(move |_| values.with(Vec::len));
    let add_ref = NodeRef::<leptos::html::Button>::new();
    let items = move || {
        (0..count.get())
            .map(|index| {
                let input_id = format!("{id}-{index}");
                let item_error = form.field_error(format!("{name}.{index}"));
                let item_error_id = format!("{input_id}-error");
                let described_by = item_error_id.clone();
                view! {
                    <li class="list-field-item" class:field-invalid=move || item_error.with(Option::is_some)>
                        <div class="list-field-row">
                            <label for=input_id.clone() class="visually-hidden">{format!("{label}, {item} {}", index + 1)}</label>
                            <input
                                id=input_id
                                name=name
                                type="text"
                                class="input mono"
                                autocomplete="off"
                                placeholder=placeholder
                                aria-invalid=move || if item_error.with(Option::is_some) { "true" } else { "false" }
                                aria-describedby=move || item_error.with(Option::is_some).then(|| described_by.clone())
                                prop:value=move || values.with(|list| list.get(index).cloned().unwrap_or_default())
                                on:input=move |event| {
                                    let text = event_target_value(&event);
                                    values.update(|list| {
                                        if let Some(slot) = list.get_mut(index) {
                                            *slot = text;
                                        }
                                    });
                                }
                            />
                            <button
                                type="button"
                                class="btn btn-ghost btn-sm"
                                data-test="remove-item"
                                aria-label=format!("Remove {item} {}", index + 1)
                                disabled=move || count.get() <= min_items
                                on:click=move |_| {
                                    values.update(|list| {
                                        if index < list.len() {
                                            list.remove(index);
                                        }
                                    });
                                    // The pressed button is gone: keep the focus in the list.
                                    if let Some(add) = add_ref.get_untracked() {
                                        let _ = add.focus();
                                    }
                                }
                            >
                                "Remove"
                            </button>
                        </div>
                        {move || {
                            item_error
                                .get()
                                .map(|message| {
                                    view! {
                                        <p
                                            class="field-error"
                                            id=item_error_id.clone()
                                            data-test="field-error"
                                            data-field=format!("{name}.{index}")
                                        >
                                            {message}
                                        </p>
                                    }
                                })
                        }}
                    </li>
                }
            })
            .collect_view()
    };
    view! {
        <fieldset class="field list-field" class:field-invalid=move || error.with(Option::is_some) id=id>
            <legend class="field-label">{label}</legend>
            <ul class="list-field-items">{items}</ul>
            <div>
                <button
                    type="button"
                    class="btn btn-secondary btn-sm"
                    data-test="add-item"
                    node_ref=add_ref
                    on:click=move |_| values.update(|list| list.push(String::new()))
                >
                    {format!("Add {item}")}
                </button>
            </div>
            <FieldNotes name hint hint_id error error_id/>
        </fieldset>
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

/// A button that starts a request outside of a form (Verify, Approve, Retry): busy, with
/// `aria-busy` and the `busy_label` text, while `form`'s request runs.
#[component]
pub fn ActionButton(
    form: FormState,
    label: &'static str,
    busy_label: &'static str,
    test: &'static str,
    #[prop(default = "btn btn-secondary")] class: &'static str,
    #[prop(into)] on_click: Callback<()>,
) -> impl IntoView {
    let hydrated = use_hydrated();
    let busy = form.busy;
    view! {
        <button
            type="button"
            class=class
            data-test=test
            disabled=move || busy.get() || !hydrated.get()
            aria-busy=move || if busy.get() { "true" } else { "false" }
            on:click=move |_| on_click.run(())
        >
            {move || busy.get().then(|| view! { <span class="spinner" aria-hidden="true"></span> })}
            <span>{move || if busy.get() { busy_label } else { label }}</span>
        </button>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::FieldError;

    #[test]
    fn list_items_belong_to_their_list() {
        assert_eq!(list_of("public_subnets.1"), "public_subnets");
        assert_eq!(list_of("state_backend.bucket"), "state_backend.bucket");
        assert_eq!(list_of("name"), "name");
        assert_eq!(list_of("a."), "a.");
    }

    #[test]
    fn a_banner_leaves_out_errors_its_fields_show() {
        Owner::new().with(|| {
            let form = FormState::new();
            let error = |fields: &[&str]| ApiError {
                status: 422,
                code: "validation_failed".into(),
                title: "Invalid request".into(),
                detail: Some("Some fields are invalid.".into()),
                errors: fields
                    .iter()
                    .map(|field| FieldError {
                        field: (*field).into(),
                        code: "invalid".into(),
                        message: format!("Bad {field}."),
                    })
                    .collect(),
            };
            let banner = form.banner(&["name", "public_subnets"]);
            form.error.set(Some(error(&["name", "public_subnets.2"])));
            assert_eq!(banner.get_untracked(), None);
            form.error.set(Some(error(&["name", "simulate"])));
            assert_eq!(banner.get_untracked().as_deref(), Some("Some fields are invalid. Bad simulate."));
            assert_eq!(form.field_error("public_subnets.2").get_untracked(), None);
        });
    }
}
