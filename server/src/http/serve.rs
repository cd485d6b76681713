//! The connection loop of `fleetplane serve`.
//!
//! Connections are served by hyper, as `axum::serve` does, with one exception. A request for an
//! event stream (`GET` with `Accept: text/event-stream`) that arrives whole in the connection's
//! first read is answered here. An event stream is idle nearly all its life, and hyper keeps a
//! read buffer (8 to 16 KiB) and a write buffer (8 KiB) for every connection as long as it is
//! open; ten thousand open streams would hold a quarter of a gigabyte in buffers. Here a stream
//! holds its socket and its own state, nothing more.
//!
//! The request still goes through the same router, middleware, extractors and handlers; only
//! the bytes on the wire are written here: the response head, then each event as an HTTP/1.1
//! chunk, straight to the socket. The response says `Connection: close`, so the connection
//! never goes back to reading requests; the client's next request opens a new one (EventSource
//! does so to reconnect anyway). Anything else or unusual (a head split across reads, a request
//! body, pipelining, HTTP/1.0, a head this module cannot take as it is) goes to hyper untouched:
//! the first bytes were only peeked at.
//!
//! A response body may also write to the connection itself: such a request carries its
//! [`Socket`], through which an event stream's events are written by whoever has them (the
//! fan-out, see `live::direct`) without waking the connection's task.

use std::{
    convert::Infallible,
    future::{Future, poll_fn},
    io::{self, IoSlice, Write as _},
    net::{Shutdown, SocketAddr},
    pin::{Pin, pin},
    sync::Arc,
    task::{Context, Poll, ready},
    time::{Duration, SystemTime},
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{ConnectInfo, Request},
    http::{HeaderName, HeaderValue, StatusCode, Version, header, response::Parts},
    response::Response,
};
use bytes::Buf;
use futures::FutureExt;
use http_body::{Body as _, Frame};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto::Builder,
    service::TowerToHyperService,
};
use prometheus_client::{
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};
use tokio::{
    io::AsyncReadExt,
    net::{TcpListener, TcpStream},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower::ServiceExt;

use super::{
    sse,
    timeouts::{self, Expired, Watch, Watched},
};
use crate::config::HttpSettings;

/// The longest request head answered here; a longer one goes to hyper.
const MAX_HEAD: usize = 8 * 1024;
const MAX_HEADERS: usize = 64;

/// How many connections each path took: `direct` (an event stream answered here) or `hyper`
/// (everything else), as `fleetplane_http_connections_total{by}`.
#[derive(Clone, Default)]
pub struct Connections(Family<[(&'static str, &'static str); 1], Counter>);

impl Connections {
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "http_connections",
            "Connections accepted, by the path that served them: direct (event streams) or hyper",
            self.0.clone(),
        );
    }

    fn took(&self, by: &'static str) {
        self.0.get_or_create(&[("by", by)]).inc();
    }

    /// Connections that have gone to hyper so far.
    pub fn by_hyper(&self) -> u64 {
        self.0.get_or_create(&[("by", "hyper")]).get()
    }
}

/// Serves `router` on `listener` until `shutdown` completes; then stops accepting, asks open
/// connections to finish (idle ones close, in-flight requests complete) and waits for them.
/// Connections that keep the server waiting are closed as `settings` say ([`timeouts`]).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    connections_seen: Connections,
    settings: HttpSettings,
    shutdown: impl Future<Output = ()>,
) {
    let settings = Arc::new(settings);
    let mut shutdown = pin!(shutdown);
    let stop = CancellationToken::new();
    let connections = TaskTracker::new();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let accepted = tokio::time::Instant::now();
        let settings = Arc::clone(&settings);
        connections.spawn(connection(
            tcp,
            peer,
            router.clone(),
            connections_seen.clone(),
            settings,
            stop.clone(),
            accepted,
        ));
    }
    drop(listener);
    stop.cancel();
    connections.close();
    connections.wait().await;
}

/// As `axum::serve` does: a connection that failed while being accepted is the client's
/// business; anything else (out of file descriptors, say) is logged and retried after a pause.
async fn accept_failed(e: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::error!(error = %e, "cannot accept a connection");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

async fn connection(
    mut tcp: TcpStream,
    peer: SocketAddr,
    router: Router,
    seen: Connections,
    settings: Arc<HttpSettings>,
    stop: CancellationToken,
    accepted: tokio::time::Instant,
) {
    // Events are small writes that must leave at once.
    let _ = tcp.set_nodelay(true);
    let first = tokio::select! {
        first = event_stream_request(&mut tcp) => first,
        // Closed before it said anything, or said nothing in time.
        () = stop.cancelled() => return,
        () = tokio::time::sleep_until(accepted + settings.header_timeout()) => return,
    };
    match first {
        Ok(Some(mut request)) => {
            seen.took("direct");
            let socket = Socket::new(tcp);
            request.extensions_mut().insert(ConnectInfo(peer));
            request.extensions_mut().insert(socket.clone());
            let Ok(response) = router.oneshot(request).await;
            // An error here is the client gone: there is nobody left to tell.
            let _ = respond(&socket, response, &stop).await;
            // Closed for good once the last holder of the socket lets go of it.
            let _ = socket2::SockRef::from(&*socket.0).shutdown(Shutdown::Write);
        }
        // Boxed: hyper's connection state is large, and an event stream's task should not
        // carry room for it.
        Ok(None) => {
            seen.took("hyper");
            Box::pin(with_hyper(tcp, peer, router, &settings, stop, accepted)).await;
        }
        Err(_) => {}
    }
}

/// Serves the connection with hyper, closing it when it keeps the server waiting: for a
/// request head (it has no chance to send a valid one after that), or idle between requests
/// (politely: hyper closes an idle connection at once, or after the response it is writing).
async fn with_hyper(
    tcp: TcpStream,
    peer: SocketAddr,
    router: Router,
    settings: &HttpSettings,
    stop: CancellationToken,
    accepted: tokio::time::Instant,
) {
    let watch = Watch::new(accepted);
    let body_timeout = settings.body_timeout();
    let requests = Arc::clone(&watch);
    let service = tower::service_fn(move |request: Request<Incoming>| {
        // Busy from its head until its response is sent whole.
        let in_flight = requests.request();
        let mut request = request.map(|body| timeouts::with_deadline(body, body_timeout));
        request.extensions_mut().insert(ConnectInfo(peer));
        let router = router.clone();
        async move {
            let Ok(response) = router.oneshot(request).await;
            Ok::<_, Infallible>(response.map(|body| timeouts::hold_until_sent(body, in_flight)))
        }
    });
    let builder = Builder::new(TokioExecutor::new());
    let io = TokioIo::new(Watched::new(tcp, Arc::clone(&watch)));
    let mut connection = pin!(builder.serve_connection_with_upgrades(io, TowerToHyperService::new(service)));
    tokio::select! {
        _ = connection.as_mut() => return,
        () = stop.cancelled() => connection.as_mut().graceful_shutdown(),
        expired = watch.expired(settings) => match expired {
            // Nothing more can come of it.
            Expired::Header => return,
            Expired::Idle => connection.as_mut().graceful_shutdown(),
        },
    }
    let _ = connection.await;
}

/// The connection's first request, when it is an event-stream request to answer here (and
/// then it has been read); otherwise nothing has been read.
async fn event_stream_request(tcp: &mut TcpStream) -> io::Result<Option<Request>> {
    // The buffer only exists once there is something to read: an idle connection holds none.
    tcp.readable().await?;
    let mut head = vec![0; MAX_HEAD];
    let peeked = tcp.peek(&mut head).await?;
    let Some((request, len)) = parse_event_stream_request(&head[..peeked]) else { return Ok(None) };
    tcp.read_exact(&mut head[..len]).await?;
    Ok(Some(request))
}

/// `bytes` as an event-stream request and the length of its head, when they are exactly one
/// whole, plain one: `GET`, HTTP/1.1, a `Host`, `Accept: text/event-stream`, no body, no
/// upgrade or expectation, nothing after the head.
fn parse_event_stream_request(bytes: &[u8]) -> Option<(Request, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(len) = parsed.parse(bytes).ok()? else { return None };
    if len != bytes.len() || parsed.method != Some("GET") || parsed.version != Some(1) {
        return None;
    }
    let mut request = Request::new(Body::empty());
    *request.uri_mut() = parsed.path?.parse().ok()?;
    *request.version_mut() = Version::HTTP_11;
    let headers = request.headers_mut();
    for field in parsed.headers.iter() {
        headers.append(HeaderName::from_bytes(field.name.as_bytes()).ok()?, HeaderValue::from_bytes(field.value).ok()?);
    }
    let wants_stream = headers
        .get_all(header::ACCEPT)
        .iter()
        .any(|accept| accept.to_str().is_ok_and(|accept| accept.contains(sse::CONTENT_TYPE)));
    let unusual = [header::CONTENT_LENGTH, header::TRANSFER_ENCODING, header::UPGRADE, header::EXPECT]
        .iter()
        .any(|name| headers.contains_key(name));
    (wants_stream && !unusual && headers.contains_key(header::HOST)).then_some((request, len))
}

/// The client's connection, for a response body that writes to it itself rather than yielding
/// its data (`sse::written_directly`): it writes whole HTTP/1.1 chunks ([`chunk`]), after the
/// head (sent before the body is first polled) and before the last chunk (sent once it ends).
/// Requests answered on a lean connection carry it as an extension.
#[derive(Clone)]
pub struct Socket(Arc<TcpStream>);

impl Socket {
    pub(crate) fn new(tcp: TcpStream) -> Self {
        Self(Arc::new(tcp))
    }

    /// Writes what the connection takes of `bytes` now, without waiting.
    pub fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
        self.0.try_write(bytes)
    }

    /// Writes what the connection takes of `bytes` now, without waiting.
    pub fn try_write_vectored(&self, bytes: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bytes)
    }

    /// Writes all of `bytes`, waiting while the client is not reading.
    pub async fn write_all(&self, mut bytes: impl Buf) -> io::Result<()> {
        while bytes.has_remaining() {
            let mut slices = [IoSlice::new(&[]); 4];
            let count = bytes.chunks_vectored(&mut slices);
            match self.0.try_write_vectored(&slices[..count]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => bytes.advance(written),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.0.writable().await?,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// `data` as one HTTP/1.1 chunk, in one buffer (to be written many times).
pub fn chunk(data: &[u8]) -> Bytes {
    let (size, size_len) = chunk_size(data.len());
    [&size[..size_len], data, b"\r\n"].concat().into()
}

/// `data` as one HTTP/1.1 chunk, without copying it.
pub fn chunked(data: Bytes) -> impl Buf {
    let (size, size_len) = chunk_size(data.len());
    Buf::chain(Buf::take(io::Cursor::new(size), size_len), data).chain(&b"\r\n"[..])
}

/// The size line of a chunk of `len` bytes.
fn chunk_size(len: usize) -> ([u8; 20], usize) {
    let mut size = [0; 20];
    let mut cursor = &mut size[..];
    let _ = write!(cursor, "{len:x}\r\n");
    let written = 20 - cursor.len();
    (size, written)
}

/// Writes `response` and its body: an event stream chunk by chunk as its events come, until it
/// ends or the client leaves; anything else (a problem, say) whole, with its length.
async fn respond(tcp: &Socket, response: Response, stop: &CancellationToken) -> io::Result<()> {
    let (parts, mut body) = response.into_parts();
    let streaming = parts.status == StatusCode::OK
        && parts
            .headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|t| t.as_bytes().starts_with(sse::CONTENT_TYPE.as_bytes()));
    if !streaming {
        let content = body.collect().await.map_err(io::Error::other)?.to_bytes();
        return write_all(tcp, head(&parts, Some(content.len())).chain(content), stop).await;
    }
    write_all(tcp, head(&parts, None), stop).await?;
    loop {
        let frame = match poll_fn(|cx| next_frame(&mut body, tcp, cx)).await {
            Next::Frame(frame) => frame,
            Next::PeerClosed(closed) => return closed,
        };
        let data = match frame {
            None => break,
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !data.is_empty() => data,
                _ => continue,
            },
            // No last chunk: the client sees the stream cut short, not ended.
            Some(Err(e)) => return Err(io::Error::other(e)),
        };
        write_all(tcp, chunked(data), stop).await?;
    }
    write_all(tcp, &b"0\r\n\r\n"[..], stop).await
}

/// The status line and headers of `parts`, framed for this connection: with `length`, or
/// chunked when it is not known; closed after.
fn head(parts: &Parts, length: Option<usize>) -> Bytes {
    let mut out = Vec::with_capacity(512);
    let status = parts.status;
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let framing = [header::CONTENT_LENGTH, header::TRANSFER_ENCODING, header::CONNECTION];
    for (name, value) in parts.headers.iter().filter(|(name, _)| !framing.contains(name)) {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !parts.headers.contains_key(header::DATE) {
        out.extend_from_slice(format!("date: {}\r\n", httpdate::fmt_http_date(SystemTime::now())).as_bytes());
    }
    match length {
        // These never have content, nor a length.
        _ if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED => {}
        Some(length) => out.extend_from_slice(format!("content-length: {length}\r\n").as_bytes()),
        None => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"connection: close\r\n\r\n");
    Bytes::from(out)
}

/// Writes all of `bytes`, unless the server stops while the client is not reading (the
/// response is then cut short: its last chunk may be half written).
pub(crate) async fn write_all(tcp: &Socket, bytes: impl Buf, stop: &CancellationToken) -> io::Result<()> {
    let mut write = pin!(tcp.write_all(bytes));
    // Almost always done at once; only a client that is not reading makes it wait.
    if let Some(written) = write.as_mut().now_or_never() {
        return written;
    }
    tokio::select! {
        written = write => written,
        () = stop.cancelled() => Err(io::Error::other("the server stopped while the client was not reading")),
    }
}

enum Next {
    Frame(Option<Result<Frame<Bytes>, axum::Error>>),
    /// The client closed its side (`Ok`) or the connection failed.
    PeerClosed(io::Result<()>),
}

/// The body's next frame, unless the client leaves first. The client has nothing more to send
/// on this connection; anything it sends anyway is read and dropped.
fn next_frame(body: &mut Body, tcp: &Socket, cx: &mut Context<'_>) -> Poll<Next> {
    let tcp = &*tcp.0;
    if let Poll::Ready(frame) = Pin::new(body).poll_frame(cx) {
        return Poll::Ready(Next::Frame(frame));
    }
    loop {
        if let Err(e) = ready!(tcp.poll_read_ready(cx)) {
            return Poll::Ready(Next::PeerClosed(Err(e)));
        }
        match tcp.try_read(&mut [0; 64]) {
            Ok(0) => return Poll::Ready(Next::PeerClosed(Ok(()))),
            // Read, or readiness was stale: look again, which also asks to be woken.
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Poll::Ready(Next::PeerClosed(Err(e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(head: &str) -> Option<Request> {
        parse_event_stream_request(head.as_bytes()).map(|(request, len)| {
            assert_eq!(len, head.len());
            request
        })
    }

    const STREAM: &str = "GET /api/v1/events?last_event_id=4 HTTP/1.1\r\nHost: fleet.example\r\n\
        Accept: text/event-stream\r\nCookie: fp_session=abc\r\nLast-Event-ID: 7\r\n\r\n";

    #[test]
    fn a_plain_event_stream_request_is_taken_whole() {
        let request = parse(STREAM).expect("an event-stream request");
        assert_eq!(request.uri(), "/api/v1/events?last_event_id=4");
        assert_eq!(request.version(), Version::HTTP_11);
        assert_eq!(request.headers()["cookie"], "fp_session=abc");
        assert_eq!(request.headers()["last-event-id"], "7");
    }

    #[test]
    fn anything_else_is_left_to_hyper() {
        let cases = [
            ("a head not complete yet", STREAM.trim_end_matches("\r\n").to_owned()),
            ("a second request behind the first", format!("{STREAM}GET / HTTP/1.1\r\n\r\n")),
            ("another method", STREAM.replacen("GET", "POST", 1)),
            ("HTTP/1.0", STREAM.replacen("HTTP/1.1", "HTTP/1.0", 1)),
            ("no Accept: text/event-stream", STREAM.replacen("text/event-stream", "text/html", 1)),
            ("no Host", STREAM.replacen("Host: fleet.example\r\n", "", 1)),
            ("a body", STREAM.replacen("\r\n\r\n", "\r\nContent-Length: 0\r\n\r\n", 1)),
            ("an upgrade", STREAM.replacen("\r\n\r\n", "\r\nUpgrade: websocket\r\n\r\n", 1)),
            ("a malformed head", "GET /api/v1/events HTTP/1.1\r\nHost fleet\r\n\r\n".to_owned()),
            ("an HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_owned()),
        ];
        for (case, head) in cases {
            assert!(parse_event_stream_request(head.as_bytes()).is_none(), "{case}");
        }
    }

    #[test]
    fn the_head_says_how_the_body_is_framed_and_that_the_connection_closes() {
        let streaming = Response::builder()
            .header(header::CONTENT_TYPE, sse::CONTENT_TYPE)
            .header(header::CONNECTION, "keep-alive")
            .header(header::DATE, "Tue, 24 Nov 2026 10:00:00 GMT")
            .body(())
            .expect("response")
            .into_parts()
            .0;
        assert_eq!(
            head(&streaming, None),
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ndate: Tue, 24 Nov 2026 10:00:00 GMT\r\n\
             transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        );
        let problem =
            Response::builder().status(StatusCode::TOO_MANY_REQUESTS).body(()).expect("response").into_parts().0;
        let text = String::from_utf8(head(&problem, Some(12)).to_vec()).expect("text");
        assert!(text.starts_with("HTTP/1.1 429 Too Many Requests\r\ndate: "), "{text}");
        assert!(text.ends_with(" GMT\r\ncontent-length: 12\r\nconnection: close\r\n\r\n"), "{text}");
    }
}
