//! How long a connection may keep the server waiting (`[http]` in the configuration).
//!
//! - **Header**: a request's head must arrive within `header_timeout` of its first byte (for a
//!   new connection, of its being accepted). A connection that says nothing, or stops half-way
//!   through a head, is closed.
//! - **Body**: a request's body must arrive within `body_timeout` of its head. A body that does
//!   not is cut off: the handler reading it answers 408 `body_timeout`, and the connection
//!   closes.
//! - **Idle**: a kept-alive connection with no request for `idle_timeout` is closed.
//!
//! hyper's own header timer also runs while a kept-alive connection is idle, so it cannot tell
//! the two apart; a connection's [`Watch`] does, from what passes through its socket
//! ([`Watched`]) and the requests its service starts and finishes.

use std::{
    error::Error as StdError,
    fmt,
    future::Future,
    io,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    task::{Context, Poll},
    time::Duration,
};

use axum::body::{Body, Bytes};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::Notify,
    time::{Instant, Sleep},
};

use crate::config::HttpSettings;

/// What a connection is doing, for its timeouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request, since then.
    Idle(Instant),
    /// Reading a request's head, since its first byte.
    Head(Instant),
    /// Serving this many requests (their responses are not yet sent whole).
    Busy(usize),
}

/// Which timeout ended a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expired {
    Idle,
    Header,
}

/// One connection's phase, shared by its socket, its service and its watchdog.
pub struct Watch {
    phase: Mutex<Phase>,
    changed: Notify,
}

impl Watch {
    /// A connection accepted at `accepted`: its first head is due `header_timeout` after.
    pub fn new(accepted: Instant) -> Arc<Self> {
        Arc::new(Self { phase: Mutex::new(Phase::Head(accepted)), changed: Notify::new() })
    }

    fn phase(&self) -> MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, phase: &mut Phase, to: Phase) {
        *phase = to;
        self.changed.notify_waiters();
    }

    /// Bytes came in: an idle connection starts reading a head.
    fn read(&self) {
        let mut phase = self.phase();
        if let Phase::Idle(_) = *phase {
            self.set(&mut phase, Phase::Head(Instant::now()));
        }
    }

    /// A request's head was read whole; until its [`InFlight`] is dropped, the connection is
    /// busy.
    pub fn request(self: &Arc<Self>) -> InFlight {
        let mut phase = self.phase();
        let serving = match *phase {
            Phase::Busy(serving) => serving + 1,
            Phase::Idle(_) | Phase::Head(_) => 1,
        };
        self.set(&mut phase, Phase::Busy(serving));
        InFlight(Arc::clone(self))
    }

    /// Completes when the connection has been idle, or reading a head, for too long.
    pub async fn expired(&self, settings: &HttpSettings) -> Expired {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let phase = *self.phase();
            let (deadline, expired) = match phase {
                Phase::Idle(since) => (since + settings.idle_timeout(), Expired::Idle),
                Phase::Head(since) => (since + settings.header_timeout(), Expired::Header),
                Phase::Busy(_) => {
                    changed.await;
                    continue;
                }
            };
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => return expired,
                () = changed => {}
            }
        }
    }
}

/// A request being served; when its response has been sent whole (or given up), the
/// connection is idle again once it serves nothing else.
pub struct InFlight(Arc<Watch>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut phase = self.0.phase();
        let to = match *phase {
            Phase::Busy(serving) if serving > 1 => Phase::Busy(serving - 1),
            _ => Phase::Idle(Instant::now()),
        };
        self.0.set(&mut phase, to);
    }
}

/// A connection's socket, telling its [`Watch`] when bytes come in.
pub struct Watched<T> {
    io: T,
    watch: Arc<Watch>,
}

impl<T> Watched<T> {
    pub fn new(io: T, watch: Arc<Watch>) -> Self {
        Self { io, watch }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.watch.read();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A response body that keeps its request [`InFlight`] until it is sent whole or dropped.
pub fn hold_until_sent(body: Body, in_flight: InFlight) -> Body {
    Body::new(Holding { body, _in_flight: in_flight })
}

struct Holding {
    body: Body,
    _in_flight: InFlight,
}

impl HttpBody for Holding {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The error a request body gives once its time is up.
#[derive(Debug)]
pub struct BodyTimedOut;

impl fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the request body did not arrive in time")
    }
}

impl StdError for BodyTimedOut {}

/// `body`, which must arrive whole within `timeout`.
pub fn with_deadline<B>(body: B, timeout: Duration) -> Body
where
    B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<axum::BoxError>,
{
    Body::new(Deadline { body, sleep: Box::pin(tokio::time::sleep(timeout)) })
}

struct Deadline<B> {
    body: B,
    sleep: Pin<Box<Sleep>>,
}

impl<B> HttpBody for Deadline<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|frame| frame.map_err(Into::into))),
            Poll::Pending => match this.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut)))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Whether reading a body failed because its time was up.
pub fn timed_out(error: &(dyn StdError + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(error) = source {
        if error.is::<BodyTimedOut>() {
            return true;
        }
        source = error.source();
    }
    false
}
