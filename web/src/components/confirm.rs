//! A destructive button that asks once more, inline, before it acts.

use leptos::prelude::*;

/// Shows `label`; when pressed, asks `prompt` with Cancel and `confirm_label`. Only the second
/// button runs `on_confirm`. With `type_to_confirm`, the second button stays disabled until
/// that text (a cluster's name, say) is typed into the box beside it. Hooks: `data-test=<test>`
/// on the first button, `data-test=<test>-confirm` on the confirming one and
/// `data-test=<test>-input` on the box.
#[component]
pub fn ConfirmButton(
    label: &'static str,
    #[prop(into)] prompt: String,
    confirm_label: &'static str,
    /// True while the action runs.
    #[prop(into)]
    busy: Signal<bool>,
    test: &'static str,
    #[prop(into)] on_confirm: Callback<()>,
    #[prop(optional, into)] type_to_confirm: Option<String>,
) -> impl IntoView {
    let confirming = RwSignal::new(false);
    let typed = RwSignal::new(String::new());
    let first_ref = NodeRef::<leptos::html::Input>::new();
    let cancel_ref = NodeRef::<leptos::html::Button>::new();
    Effect::new(move |_| {
        if !confirming.get() {
            return;
        }
        // Focus lands on the box to type into, or else on the safe choice.
        if let Some(input) = first_ref.get() {
            let _ = input.focus();
        } else if let Some(button) = cancel_ref.get() {
            let _ = button.focus();
        }
    });
    let prompt = StoredValue::new(prompt);
    let expected = StoredValue::new(type_to_confirm);
    let matches =
        move || expected.with_value(|expected| expected.as_ref().is_none_or(|text| typed.with(|t| t == text)));
    let cancel = move || {
        confirming.set(false);
        typed.set(String::new());
    };
    move || {
        if confirming.get() {
            let input = expected.get_value().map(|text| {
                view! {
                    <input
                        type="text"
                        class="input input-sm mono"
                        autocomplete="off"
                        spellcheck="false"
                        node_ref=first_ref
                        placeholder=text.clone()
                        aria-label=format!("Type {text} to confirm")
                        data-test=format!("{test}-input")
                        bind:value=typed
                        on:keydown=move |event| {
                            if event.key() == "Escape" {
                                cancel();
                            }
                        }
                    />
                }
            });
            view! {
                <span class="confirm" role="group" aria-label=prompt.get_value()>
                    <span class="confirm-prompt">{prompt.get_value()}</span>
                    {input}
                    <button type="button" class="btn btn-secondary btn-sm" node_ref=cancel_ref on:click=move |_| cancel()>
                        "Cancel"
                    </button>
                    <button
                        type="button"
                        class="btn btn-danger btn-sm"
                        data-test=format!("{test}-confirm")
                        disabled=move || busy.get() || !matches()
                        on:click=move |_| {
                            if matches() {
                                on_confirm.run(());
                            }
                        }
                    >
                        {move || if busy.get() { "Working…" } else { confirm_label }}
                    </button>
                </span>
            }
            .into_any()
        } else {
            view! {
                <button
                    type="button"
                    class="btn btn-ghost-danger btn-sm"
                    data-test=test
                    on:click=move |_| confirming.set(true)
                >
                    {label}
                </button>
            }
            .into_any()
        }
    }
}
