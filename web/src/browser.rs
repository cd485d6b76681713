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

/// Remembers `org` as the organization last opened (the [`LAST_ORG_COOKIE`] cookie, for a
/// year), so that the next page the server renders leads back to it.
///
/// [`LAST_ORG_COOKIE`]: crate::context::LAST_ORG_COOKIE
pub fn remember_org(org: &str) {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::JsCast;
        let document = web_sys::window().and_then(|window| window.document());
        if let Some(document) = document.and_then(|document| document.dyn_into::<web_sys::HtmlDocument>().ok()) {
            let cookie = format!(
                "{}={}; Path=/; Max-Age=31536000; SameSite=Lax",
                crate::context::LAST_ORG_COOKIE,
                crate::format::encode(org)
            );
            // A browser that refuses cookies only loses the convenience.
            let _ = document.set_cookie(&cookie);
        }
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = org;
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

/// The browser's clock; `None` on the server.
pub fn now() -> Option<chrono::DateTime<chrono::Utc>> {
    #[cfg(feature = "hydrate")]
    {
        // Milliseconds since the epoch fit an i64 for the next 292 million years.
        chrono::DateTime::from_timestamp_millis(web_sys::js_sys::Date::now() as i64)
    }
    #[cfg(not(feature = "hydrate"))]
    None
}

/// Runs `step` now, then again each time the delay it returns has passed, until it returns
/// `None` or the component that called this is gone. A step starts only after the previous
/// one has finished, so slow answers never pile up.
pub fn poll<F, Fut>(step: F)
where
    F: Fn() -> Fut + 'static,
    Fut: std::future::Future<Output = Option<std::time::Duration>> + 'static,
{
    #[cfg(feature = "hydrate")]
    {
        use std::rc::Rc;
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};

        use leptos::prelude::{TimeoutHandle, on_cleanup, set_timeout_with_handle};

        struct Poller<F> {
            step: F,
            alive: Arc<AtomicBool>,
            timer: Arc<Mutex<Option<TimeoutHandle>>>,
        }

        fn tick<F, Fut>(poller: Rc<Poller<F>>)
        where
            F: Fn() -> Fut + 'static,
            Fut: std::future::Future<Output = Option<std::time::Duration>> + 'static,
        {
            leptos::task::spawn_local(async move {
                let next = (poller.step)().await;
                let Some(delay) = next.filter(|_| poller.alive.load(Ordering::Relaxed)) else {
                    return;
                };
                let timer = Arc::clone(&poller.timer);
                if let Ok(handle) = set_timeout_with_handle(move || tick(poller), delay)
                    && let Ok(mut slot) = timer.lock()
                {
                    *slot = Some(handle);
                }
            });
        }

        let poller = Rc::new(Poller { step, alive: Arc::new(AtomicBool::new(true)), timer: Arc::default() });
        let (alive, timer) = (Arc::clone(&poller.alive), Arc::clone(&poller.timer));
        on_cleanup(move || {
            alive.store(false, Ordering::Relaxed);
            if let Some(handle) = timer.lock().ok().and_then(|mut slot| slot.take()) {
                handle.clear();
            }
        });
        tick(poller);
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = step;
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

/// Listens to the Server-Sent Events stream at `url` (same origin, so the session cookie goes
/// along) until the component that called this is gone or `on_event` returns `false`.
/// `on_event` gets each event of the `kinds` asked for, with its data. The browser's
/// EventSource reconnects by itself after a network drop and sends `Last-Event-ID`, so the
/// stream resumes where it stopped.
pub fn listen(url: &str, kinds: &'static [&'static str], on_event: impl Fn(&str, String) -> bool + 'static) {
    #[cfg(feature = "hydrate")]
    {
        use std::rc::Rc;

        use leptos::prelude::{LocalStorage, StoredValue, UpdateValue, on_cleanup};
        use wasm_bindgen::{JsCast, closure::Closure};

        let Ok(source) = web_sys::EventSource::new(url) else { return };
        let on_event = Rc::new(on_event);
        let mut listeners = Vec::with_capacity(kinds.len());
        for &kind in kinds {
            let (on_event, stream) = (Rc::clone(&on_event), source.clone());
            let listener = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |event: web_sys::MessageEvent| {
                if !on_event(kind, event.data().as_string().unwrap_or_default()) {
                    stream.close();
                }
            });
            let _ = source.add_event_listener_with_callback(kind, listener.as_ref().unchecked_ref());
            listeners.push(listener);
        }
        // The listeners live as long as the stream: both go when the component does.
        let stream = StoredValue::<_, LocalStorage>::new_local(Some((source, listeners)));
        on_cleanup(move || {
            stream.update_value(|stream| {
                if let Some((source, _listeners)) = stream.take() {
                    source.close();
                }
            });
        });
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = (url, kinds, on_event);
}
