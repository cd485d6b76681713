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

/// A file the user picked in an `<input type="file">` or dropped on one.
pub struct ChosenFile {
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    #[cfg(feature = "hydrate")]
    file: web_sys::File,
}

impl ChosenFile {
    /// The first file of the `<input type="file">` that fired `event` (a `change`), if any.
    pub fn from_input_event(event: &leptos::ev::Event) -> Option<Self> {
        #[cfg(feature = "hydrate")]
        {
            use wasm_bindgen::JsCast;

            let input = event.target()?.dyn_into::<web_sys::HtmlInputElement>().ok()?;
            Self::first(input.files()?)
        }
        #[cfg(not(feature = "hydrate"))]
        {
            let _ = event;
            None
        }
    }

    /// The first file dropped by a `drop` event, if any.
    pub fn from_drop_event(event: &leptos::ev::DragEvent) -> Option<Self> {
        #[cfg(feature = "hydrate")]
        {
            Self::first(event.data_transfer()?.files()?)
        }
        #[cfg(not(feature = "hydrate"))]
        {
            let _ = event;
            None
        }
    }

    #[cfg(feature = "hydrate")]
    fn first(files: web_sys::FileList) -> Option<Self> {
        let file = files.get(0)?;
        // A file's size is a whole number of bytes, well within f64's exact range.
        Some(Self { name: file.name(), size: file.size() as u64, file })
    }

    /// The file's contents as UTF-8 text; `None` when the browser could not read it.
    pub async fn text(&self) -> Option<String> {
        #[cfg(feature = "hydrate")]
        {
            wasm_bindgen_futures::JsFuture::from(self.file.text()).await.ok()?.as_string()
        }
        #[cfg(not(feature = "hydrate"))]
        None
    }
}
