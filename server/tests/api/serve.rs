//! The connection loop: event streams answered on lean connections of their own, everything
//! else by hyper, and a shutdown that ends open streams instead of waiting for them forever.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::support::{Client, TestApp, runs::local_cluster, sse::Stream};

const WAIT: Duration = Duration::from_secs(30);

async fn token(client: &Client) -> String {
    client.post("/api/v1/me/tokens", json!({ "name": "raw" })).await.json()["token"].as_str().expect("token").to_owned()
}

fn stream_request(path: &str, token: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: fleet.test\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
    )
}

/// A connection to `app` that has sent `request`.
async fn send(app: &TestApp, request: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(app.state.config.listen).await.expect("connect");
    tcp.write_all(request.as_bytes()).await.expect("send");
    tcp
}

/// Connects and sends `part` of a request head, and waits until the server has seen it is not
/// a whole one and handed the connection to hyper.
async fn send_to_hyper(app: &TestApp, part: &str) -> TcpStream {
    let before = app.state.connections.by_hyper();
    let tcp = send(app, part).await;
    app.wait_for("the connection handed to hyper", 1, |state| usize::from(state.connections.by_hyper() > before)).await;
    tcp
}

/// The response head (lower-cased header names, as sent) and the body bytes read with it.
async fn read_head(tcp: &mut TcpStream) -> (String, Vec<u8>) {
    let mut bytes = Vec::new();
    let mut chunk = [0; 4096];
    loop {
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8(bytes[..end + 4].to_vec()).expect("text head");
            return (head, bytes[end + 4..].to_vec());
        }
        let read = tokio::time::timeout(WAIT, tcp.read(&mut chunk)).await.expect("a response").expect("read");
        assert!(read > 0, "closed before the response head: {}", String::from_utf8_lossy(&bytes));
        bytes.extend_from_slice(&chunk[..read]);
    }
}

/// Everything the server sends until it closes the connection.
async fn read_to_end(tcp: &mut TcpStream, mut bytes: Vec<u8>) -> Vec<u8> {
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut bytes)).await.expect("the server closes").expect("read");
    bytes
}

/// One HTTP/1.1 chunk from `buffer` (read from `tcp` as needed): its data, `None` for the last.
async fn next_chunk(tcp: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut chunk = [0; 4096];
    loop {
        if let Some(line) = buffer.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(std::str::from_utf8(&buffer[..line]).expect("size"), 16).expect("hex");
            if buffer.len() >= line + 2 + size + 2 {
                let data = buffer[line + 2..line + 2 + size].to_vec();
                assert_eq!(&buffer[line + 2 + size..line + 4 + size], b"\r\n", "a chunk ends with CRLF");
                buffer.drain(..line + 4 + size);
                return (size > 0).then_some(data);
            }
        }
        let read = tokio::time::timeout(WAIT, tcp.read(&mut chunk)).await.expect("a chunk").expect("read");
        assert!(read > 0, "closed in the middle of the body");
        buffer.extend_from_slice(&chunk[..read]);
    }
}

async fn wait_for_open_streams(app: &TestApp, count: usize) {
    app.wait_for("streams open", count, |state| state.live.open_streams()).await;
}

#[tokio::test]
async fn an_event_stream_is_sent_in_chunks_on_its_own_connection_and_its_place_is_freed_when_the_client_leaves() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let mut tcp = send(&app, &stream_request("/api/v1/events", &token(&ada).await)).await;
    let (head, mut body) = read_head(&mut tcp).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    for line in [
        "content-type: text/event-stream",
        "cache-control: no-store",
        "transfer-encoding: chunked",
        "connection: close",
        // The router's own headers are there: the request went through its middleware.
        "x-content-type-options: nosniff",
    ] {
        assert!(head.contains(&format!("\r\n{line}\r\n")), "no `{line}` in {head}");
    }
    assert!(head.contains("\r\ndate: "), "{head}");
    wait_for_open_streams(&app, 1).await;

    ada.post("/api/v1/orgs/ada/clusters", local_cluster("raw", json!(null))).await.expect_status(StatusCode::CREATED);
    let event = String::from_utf8(next_chunk(&mut tcp, &mut body).await.expect("an event")).expect("text");
    let lines: Vec<&str> = event.lines().collect();
    assert!(lines[0].starts_with("id: "), "{event}");
    assert!(matches!(lines[1], "event: cluster" | "event: run"), "{event}");
    let data: Value = serde_json::from_str(lines[2].strip_prefix("data: ").expect("data")).expect("json");
    assert!(data["id"].is_string(), "{event}");
    assert!(event.ends_with("\n\n"), "one event per chunk: {event:?}");

    drop(tcp);
    wait_for_open_streams(&app, 0).await;
}

#[tokio::test]
async fn a_refused_event_stream_gets_its_whole_problem_and_the_connection_closes() {
    let app = TestApp::spawn().await;
    let mut tcp =
        send(&app, "GET /api/v1/events HTTP/1.1\r\nHost: fleet.test\r\nAccept: text/event-stream\r\n\r\n").await;
    let (head, body) = read_head(&mut tcp).await;
    let body = read_to_end(&mut tcp, body).await;
    assert!(head.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{head}");
    assert!(head.contains("\r\ncontent-type: application/problem+json\r\n"), "{head}");
    assert!(head.contains(&format!("\r\ncontent-length: {}\r\n", body.len())), "{head}");
    assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
    let problem: Value = serde_json::from_slice(&body).expect("problem");
    assert_eq!(problem["code"], "unauthenticated");
    assert_eq!(app.state.live.open_streams(), 0);
}

#[tokio::test]
async fn an_ordinary_answer_to_a_request_that_accepts_event_streams_comes_whole() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let mut tcp = send(&app, &stream_request("/api/v1/me", &token(&ada).await)).await;
    let (head, body) = read_head(&mut tcp).await;
    let body = read_to_end(&mut tcp, body).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains(&format!("\r\ncontent-length: {}\r\n", body.len())), "{head}");
    let me: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(me["username"], "ada");
}

#[tokio::test]
async fn requests_not_taken_whole_are_served_by_hyper() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let request = stream_request("/api/v1/events", &token(&ada).await);

    // A head that arrives in two parts: the second is sent once the first went to hyper.
    let (first, second) = request.split_at(30);
    let mut tcp = send_to_hyper(&app, first).await;
    tcp.write_all(second.as_bytes()).await.expect("send");
    let (head, mut body) = read_head(&mut tcp).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("\r\ncontent-type: text/event-stream\r\n"), "{head}");
    assert!(!head.contains("connection: close"), "hyper keeps the connection: {head}");
    wait_for_open_streams(&app, 1).await;
    // Its events come through its body.
    ada.post("/api/v1/orgs/ada/clusters", local_cluster("split", json!(null))).await.expect_status(StatusCode::CREATED);
    let event = String::from_utf8(next_chunk(&mut tcp, &mut body).await.expect("an event")).expect("text");
    assert!(event.starts_with("id: ") && event.contains("\nevent: "), "{event}");
    drop(tcp);
    wait_for_open_streams(&app, 0).await;

    // Two requests in one write: both answered, in order, on one connection.
    let health = "GET /healthz HTTP/1.1\r\nHost: fleet.test\r\n\r\n";
    let mut tcp = send(&app, &format!("{health}{health}")).await;
    let (first, rest) = read_head(&mut tcp).await;
    assert!(first.starts_with("HTTP/1.1 200 OK\r\n"), "{first}");
    let mut bytes = rest;
    let mut chunk = [0; 4096];
    while !bytes.windows(17).any(|w| w == b"HTTP/1.1 200 OK\r\n") {
        let read = tokio::time::timeout(WAIT, tcp.read(&mut chunk)).await.expect("a second answer").expect("read");
        assert!(read > 0, "closed before the second answer");
        bytes.extend_from_slice(&chunk[..read]);
    }
}

#[tokio::test]
async fn stopping_the_server_ends_open_streams_cleanly() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let token = token(&ada).await;
    let created = ada.post("/api/v1/orgs/ada/clusters", local_cluster("stop", json!(null))).await;
    let run = created.expect_status(StatusCode::CREATED).json()["run"]["id"].as_str().expect("run").to_owned();

    // One event stream here, one through hyper (its head split), one log stream.
    let mut lean = send(&app, &stream_request("/api/v1/events", &token)).await;
    let (_, mut lean_body) = read_head(&mut lean).await;
    let request = stream_request("/api/v1/events", &token);
    let mut through_hyper = send_to_hyper(&app, &request[..20]).await;
    through_hyper.write_all(&request.as_bytes()[20..]).await.expect("send");
    let (_, mut hyper_body) = read_head(&mut through_hyper).await;
    let mut log = Stream::open(&ada, &format!("/api/v1/runs/{run}/logs"), None).await.expect("log stream");
    wait_for_open_streams(&app, 3).await;

    let stopped = tokio::spawn(app.stop());
    // Each ends with its last chunk (a clean end the client can tell from a cut).
    while next_chunk(&mut lean, &mut lean_body).await.is_some() {}
    while next_chunk(&mut through_hyper, &mut hyper_body).await.is_some() {}
    while log.next(WAIT).await.is_some() {}
    tokio::time::timeout(WAIT, stopped)
        .await
        .expect("the server stops with streams open")
        .expect("join")
        .expect("a clean stop");
}

#[tokio::test]
async fn a_client_that_stops_reading_does_not_hold_up_the_stop() {
    let app = TestApp::spawn_with(|config| config.live.backlog = 100_000).await;
    let ada = app.user("ada").await;
    let ada_id = ada.user_id().await;
    let mut stuck = send(&app, &stream_request("/api/v1/events", &token(&ada).await)).await;
    let _ = read_head(&mut stuck).await;
    wait_for_open_streams(&app, 1).await;
    // Far more than the sockets hold, and never read: the server's writes to it block.
    let filler = "x".repeat(16 * 1024);
    for batch in 0..20 {
        app.record_events(ada_id, "membership", batch * 50..batch * 50 + 50, &filler).await;
    }
    app.wait_for("writes waiting on the client", 1, |state| state.live.writes_waiting()).await;
    tokio::time::timeout(WAIT, app.stop())
        .await
        .expect("the server stops while a client is not reading")
        .expect("a clean stop");
    drop(stuck);
}
