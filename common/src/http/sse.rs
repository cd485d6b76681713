//! Server-Sent Events on the wire: frames encoded once (so that one event sent to ten thousand
//! streams is one allocation, shared), a heartbeat comment, and the two kinds of response: one
//! whose body yields the events, one whose events are written straight to the connection.

use std::{
    convert::Infallible,
    fmt::Display,
    io,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use axum::{
    body::{Body, Bytes},
    http::{HeaderMap, HeaderValue, header},
    response::Response,
};
use futures::{FutureExt, Stream, future::Fuse};
use http_body::Frame;
use tokio::time::Sleep;

/// The comment sent on a quiet stream, so that clients and proxies see it is alive.
pub const HEARTBEAT: &[u8] = b": heartbeat\n\n";

/// The content type of every event stream.
pub const CONTENT_TYPE: &str = "text/event-stream";

/// One event as [`frame`] writes it, for the OpenAPI document: each event of a stream has this
/// shape, and its `data` is JSON.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct StreamEvent {
    /// Resume after this event with `Last-Event-ID`.
    pub id: String,
    /// The kind of event: the operation lists them.
    pub event: String,
    /// The event's body, as JSON.
    pub data: String,
}

/// A `Last-Event-ID` (or `?last_event_id=`) that is not an id the stream could have sent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`Last-Event-ID` must be an event id this stream sent")]
pub struct InvalidLastEventId;

/// Where a stream resumes: the `Last-Event-ID` header (sent by EventSource when it reconnects),
/// or `query` (`?last_event_id=`) for a first connection that already knows one. The header
/// wins; empty means from now.
pub fn last_event_id(headers: &HeaderMap, query: Option<&str>) -> Result<Option<i64>, InvalidLastEventId> {
    let header =
        headers.get("last-event-id").map(|value| value.to_str().map_err(|_| InvalidLastEventId)).transpose()?;
    let Some(text) = header.or(query).filter(|text| !text.is_empty()) else { return Ok(None) };
    // Only what a stream sends: up to 18 digits (no sign, no spaces), so always an i64.
    if text.len() > 18 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(InvalidLastEventId);
    }
    text.parse::<i64>().map(Some).map_err(|_| InvalidLastEventId)
}

/// One event: `id`, `event` and one `data:` line per line of `data`.
pub fn frame(id: impl Display, event: &str, data: &str) -> Bytes {
    use std::fmt::Write;
    let mut out = String::with_capacity(data.len() + event.len() + 40);
    let _ = write!(out, "id: {id}\nevent: {event}\n");
    for line in data.split('\n') {
        out.push_str("data: ");
        out.push_str(line.strip_suffix('\r').unwrap_or(line));
        out.push('\n');
    }
    out.push('\n');
    Bytes::from(out)
}

/// A `200 text/event-stream` response sending `events` as they come and a heartbeat comment
/// every `heartbeat`, until `events` ends.
pub fn response(events: impl Stream<Item = Bytes> + Send + 'static, heartbeat: Duration) -> Response {
    let body = SseBody { events, heartbeat: tokio::time::sleep(heartbeat), every: heartbeat };
    with_headers(Response::new(Body::new(body)))
}

/// A `200 text/event-stream` response whose events `writer` writes straight to the client's
/// connection (`serve::Socket`), not through the body. The body ends when `writer` does; cut
/// short, with no last chunk, when `writer` fails.
pub fn written_directly(writer: impl Future<Output = io::Result<()>> + Send + 'static) -> Response {
    with_headers(Response::new(Body::new(WrittenBody { writer: writer.fuse() })))
}

fn with_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Proxies must pass events on as they come.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

pin_project_lite::pin_project! {
    /// The events and the heartbeat's timer live inline, in the one allocation the response
    /// body is boxed into: sending an event to an idle stream touches as little memory as can be.
    ///
    /// The heartbeat keeps its own beat, events or not: resetting a timer for every event would
    /// cost each of ten thousand streams a trip through the timer for every broadcast.
    struct SseBody<S> {
        #[pin]
        events: S,
        #[pin]
        heartbeat: Sleep,
        every: Duration,
    }
}

pin_project_lite::pin_project! {
    /// A body with no data of its own: polling it drives the writer.
    struct WrittenBody<F> {
        #[pin]
        writer: Fuse<F>,
    }
}

impl<F: Future<Output = io::Result<()>>> http_body::Body for WrittenBody<F> {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        Poll::Ready(ready!(self.project().writer.poll(cx)).err().map(Err))
    }
}

impl<S: Stream<Item = Bytes>> http_body::Body for SseBody<S> {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let mut this = self.project();
        match this.events.poll_next(cx) {
            Poll::Ready(Some(event)) => return Poll::Ready(Some(Ok(Frame::data(event)))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        if this.heartbeat.as_mut().poll(cx).is_ready() {
            let next = this.heartbeat.deadline() + *this.every;
            this.heartbeat.reset(next);
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(HEARTBEAT)))));
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    #[test]
    fn a_frame_has_one_data_line_per_line() {
        assert_eq!(frame(7, "run", r#"{"a":1}"#), "id: 7\nevent: run\ndata: {\"a\":1}\n\n");
        assert_eq!(frame(8, "note", "one\r\ntwo\nthree"), "id: 8\nevent: note\ndata: one\ndata: two\ndata: three\n\n");
        assert_eq!(frame(9, "empty", ""), "id: 9\nevent: empty\ndata: \n\n");
    }

    #[tokio::test]
    async fn heartbeats_come_between_events_and_the_stream_ends_with_its_source() {
        let (send, receive) = futures::channel::mpsc::unbounded::<Bytes>();
        let mut body = response(receive, Duration::from_millis(50)).into_body();

        send.unbounded_send(frame(1, "run", "{}")).expect("send");
        let first = body.frame().await.expect("a frame").expect("no error").into_data().expect("data");
        assert_eq!(first, frame(1, "run", "{}"));
        for _ in 0..2 {
            let beat = body.frame().await.expect("a frame").expect("no error").into_data().expect("data");
            assert_eq!(&beat[..], HEARTBEAT);
        }
        send.unbounded_send(frame(2, "run", "{}")).expect("send");
        let second = body.frame().await.expect("a frame").expect("no error").into_data().expect("data");
        assert_eq!(second, frame(2, "run", "{}"));

        drop(send);
        assert!(body.frame().await.is_none(), "the stream ends with its source");
    }

    #[test]
    fn a_stream_resumes_after_the_id_it_sent_and_nothing_else() {
        let mut headers = HeaderMap::new();
        assert_eq!(last_event_id(&headers, None), Ok(None));
        assert_eq!(last_event_id(&headers, Some("")), Ok(None));
        assert_eq!(last_event_id(&headers, Some("4")), Ok(Some(4)));
        headers.insert("last-event-id", HeaderValue::from_static("7"));
        assert_eq!(last_event_id(&headers, Some("4")), Ok(Some(7)), "the header wins");
        for bad in ["-1", "+1", " 1", "1e3", "abc", "1234567890123456789"] {
            headers.insert("last-event-id", HeaderValue::from_static(bad));
            assert_eq!(last_event_id(&headers, None), Err(InvalidLastEventId), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_finite_stream_is_sent_whole() {
        let events = futures::stream::iter([frame(1, "line", "a"), frame(2, "end", "{}")]);
        let body = response(events, Duration::from_secs(15)).into_body();
        let all = body.collect().await.expect("collect").to_bytes();
        assert_eq!(all, [frame(1, "line", "a"), frame(2, "end", "{}")].concat());
    }
}
