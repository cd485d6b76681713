//! A destructive button that asks once more, inline, before it acts.

use leptos::prelude::*;

/// Shows `label`; when pressed, asks `prompt` with Cancel and `confirm_label`. Only the second
/// button runs `on_confirm`. Hooks: `data-test=<test>` on the first button and
/// `data-test=<test>-confirm` on the confirming one.
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
) -> impl IntoView {
    let confirming = RwSignal::new(false);
    let cancel_ref = NodeRef::<leptos::html::Button>::new();
    Effect::new(move |_| {
        if confirming.get()
            && let Some(button) = cancel_ref.get()
        {
            // Focus lands on the safe choice.
            let _ = button.focus();
        }
    });
    let prompt = StoredValue::new(prompt);
    move || {
        if confirming.get() {
            view! {
                <span class="confirm" role="group" aria-label=prompt.get_value()>
                    <span class="confirm-prompt">{prompt.get_value()}</span>
                    <button
                        type="button"
                        class="btn btn-secondary btn-sm"
                        node_ref=cancel_ref
                        on:click=move |_| confirming.set(false)
                    >
                        "Cancel"
                    </button>
                    <button
                        type="button"
                        class="btn btn-danger btn-sm"
                        data-test=format!("{test}-confirm")
                        disabled=move || busy.get()
                        on:click=move |_| on_confirm.run(())
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
