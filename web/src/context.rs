//! What the server tells the UI about the request: who is signed in and which features are on.
//!
//! The server computes a [`UiContext`] per request and provides it to the server render; the
//! page shell embeds the same value as JSON so that the browser hydrates with exactly what the
//! server rendered.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// The `id` of the `<script type="application/json">` element that carries the context.
pub const SCRIPT_ID: &str = "fp-context";

/// The cookie that remembers the organization last opened in this browser, so the top bar
/// leads back to it. It holds an organization's name, which is not a secret; the server uses it
/// only if the viewer still belongs to that organization.
pub const LAST_ORG_COOKIE: &str = "fp_org";

/// The signed-in user.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Viewer {
    pub id: String,
    pub username: String,
    pub email: String,
    /// `false` for an account that signs in with Google only.
    #[serde(default)]
    pub has_password: bool,
    /// The organization the top bar leads to on pages outside any organization: the one last
    /// opened, if the viewer still belongs to it, else their personal one. `None` for a viewer
    /// in no organization.
    #[serde(default)]
    pub org: Option<String>,
}

/// Per-request facts the UI needs before it can talk to the API.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UiContext {
    /// `None` when nobody is signed in.
    pub viewer: Option<Viewer>,
    /// Whether new accounts may sign up.
    pub signup_open: bool,
    /// Whether sent mail is kept in the development outbox (`/dev/outbox`).
    pub dev_outbox: bool,
    /// Whether "Sign in with Google" is offered.
    #[serde(default)]
    pub google_sign_in: bool,
}

impl UiContext {
    /// The context as JSON that is safe inside a `<script>` element.
    ///
    /// Every `<`, `>` and `&` is written as a JSON unicode escape, so no value (a username
    /// containing `</script>`, say) can end the element or open a comment; `JSON.parse` and
    /// `serde_json` read the escapes back to the same characters.
    pub fn to_script_json(&self) -> String {
        // Serialising plain strings and bools cannot fail.
        let json = serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned());
        let mut out = String::with_capacity(json.len());
        for c in json.chars() {
            match c {
                '<' => out.push_str("\\u003c"),
                '>' => out.push_str("\\u003e"),
                '&' => out.push_str("\\u0026"),
                '\u{2028}' => out.push_str("\\u2028"),
                '\u{2029}' => out.push_str("\\u2029"),
                c => out.push(c),
            }
        }
        out
    }

    /// Reads the context the server embedded in the page; signed out if it is missing.
    #[cfg(feature = "hydrate")]
    pub fn from_document() -> Self {
        web_sys::window()
            .and_then(|window| window.document())
            .and_then(|document| document.get_element_by_id(SCRIPT_ID))
            .and_then(|element| element.text_content())
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default()
    }
}

/// The context of the current request (signed out when none was provided, as when the server
/// lists the routes at start-up).
pub fn use_ui_context() -> UiContext {
    use_context::<UiContext>().unwrap_or_default()
}

/// The signed-in user, if any.
pub fn use_viewer() -> Option<Viewer> {
    use_ui_context().viewer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_json_cannot_close_the_script_element() {
        let ui = UiContext {
            viewer: Some(Viewer {
                id: "1".into(),
                username: "</script><!--&".into(),
                email: "a@example.com".into(),
                has_password: true,
                org: Some("ada".into()),
            }),
            signup_open: true,
            dev_outbox: false,
            google_sign_in: true,
        };
        let json = ui.to_script_json();
        assert!(!json.contains('<') && !json.contains('>') && !json.contains('&'));
        let back: UiContext = serde_json::from_str(&json).expect("escaped JSON parses");
        assert_eq!(back, ui);
    }
}
