//! The few browser APIs the UI calls directly, outside of the API client.
//!
//! They run only in event handlers and effects, which never run during server rendering; there
//! they do nothing.

/// A full page load of `path` on this site: the server renders it again with a fresh
/// [`UiContext`](crate::UiContext), which is what sign-in, sign-out and account changes need.
pub fn go_to(path: &str) {
    #[cfg(feature = "hydrate")]
    if let Some(window) = web_sys::window() {
        // If the browser refuses, staying on the page is the only option left.
        let _ = window.location().assign(path);
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = path;
}

/// Puts `text` on the clipboard; false when the browser does not allow it.
pub async fn copy_text(text: &str) -> bool {
    #[cfg(feature = "hydrate")]
    {
        let Some(window) = web_sys::window() else {
            return false;
        };
        let promise = window.navigator().clipboard().write_text(text);
        wasm_bindgen_futures::JsFuture::from(promise).await.is_ok()
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = text;
        false
    }
}
