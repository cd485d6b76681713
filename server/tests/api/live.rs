//! Live updates: the event stream and run log streams (SSE), notifications, and the bus.

use std::time::Duration;

use fleetplane::{
    bus::{Bus, Signal},
    config::{ExecutorChoice, Secret},
    entity::{run_logs, runs},
    events::{self, Audience},
};
use reqwest::StatusCode;
use sea_orm::{ActiveModelTrait, EntityTrait, Set, TransactionTrait};
use serde_json::json;

use crate::support::{
    Client, TestApp,
    redis::Redis,
    runs::{local_cluster, with_workers},
    server::ServerProcess,
    sse::{Message, Stream},
};

/// Generous: CI's machine may be busy.
const WAIT: Duration = Duration::from_secs(30);

/// Invites `email` to `org` of ada's as `role` (which notifies them).
async fn invite(ada: &Client, org: &str, email: &str, role: &str) {
    ada.post(&format!("/api/v1/orgs/{org}/invitations"), json!({ "email": email, "role": role }))
        .await
        .expect_status(StatusCode::CREATED);
}

/// A queued run on a local cluster of ada's organization (no workers run it).
async fn queued_run(ada: &Client) -> String {
    let created = ada.post("/api/v1/orgs/ada/clusters", local_cluster("live", json!(null))).await;
    created.expect_status(StatusCode::CREATED).json()["run"]["id"].as_str().expect("run id").to_owned()
}

/// Stores log lines for `run` as a worker does, and says so on the bus.
async fn append_lines(app: &TestApp, run: &str, from: i64, count: i64) {
    let run_id: uuid::Uuid = run.parse().expect("uuid");
    let lines = (from..from + count).map(|seq| run_logs::ActiveModel {
        run_id: Set(run_id),
        seq: Set(seq),
        attempt: Set(1),
        stream: Set("stdout".into()),
        text: Set(format!("line {seq}")),
        at: Set(chrono::Utc::now()),
    });
    run_logs::Entity::insert_many(lines).exec(app.db()).await.expect("insert lines");
    app.state.bus.publish(Signal::Logs(run_id));
}

/// Ends `run` as a worker does: its status, its event, then the signal.
async fn finish_run(app: &TestApp, run: &str, status: &str) {
    let run_id: uuid::Uuid = run.parse().expect("uuid");
    let txn = app.db().begin().await.expect("txn");
    let model = runs::Entity::find_by_id(run_id).one(&txn).await.expect("read").expect("run");
    let mut active: runs::ActiveModel = model.into();
    active.status = Set(status.to_owned());
    active.reason = Set(Some("Completed.".into()));
    active.finished_at = Set(Some(chrono::Utc::now()));
    active.update(&txn).await.expect("update");
    events::run_changed(&txn, run_id).await.expect("event");
    txn.commit().await.expect("commit");
    app.state.events_written();
}

#[tokio::test]
async fn streams_need_a_session_or_token_and_respect_tenancy() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let bob = app.user("bob").await;
    let run = queued_run(&ada).await;

    let anonymous = app.client();
    Stream::open(&anonymous, "/api/v1/events", None)
        .await
        .err()
        .expect("refused")
        .expect_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    Stream::open(&anonymous, &format!("/api/v1/runs/{run}/logs"), None)
        .await
        .err()
        .expect("refused")
        .expect_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    // Another organization's run does not exist for bob.
    Stream::open(&bob, &format!("/api/v1/runs/{run}/logs"), None)
        .await
        .err()
        .expect("refused")
        .expect_problem(StatusCode::NOT_FOUND, "run_not_found");
    Stream::open(&ada, "/api/v1/events", Some("not-a-number"))
        .await
        .err()
        .expect("refused")
        .expect_problem(StatusCode::BAD_REQUEST, "invalid_last_event_id");

    // A script with a token gets the same stream.
    let token = ada.post("/api/v1/me/tokens", json!({ "name": "stream" })).await.json()["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let request = app
        .client()
        .http
        .get(app.base.join("api/v1/events").expect("url"))
        .bearer_auth(&token)
        .header("accept", "text/event-stream");
    let mut stream = Stream::from_request(request).await.expect("token stream");
    ada.post(&format!("/api/v1/runs/{run}/cancel"), json!({})).await.expect_status(StatusCode::OK);
    let event = stream.next_of("run", WAIT).await;
    assert_eq!(event.json()["id"], run.as_str());
    assert_eq!(event.json()["status"], "canceled");
}

#[tokio::test]
async fn status_changes_reach_members_and_viewers_do_not_get_approval_notifications() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let vera = app.user("vera").await;
    let mut vera_events = Stream::open(&vera, "/api/v1/events", None).await.expect("stream");
    ada.add_to_org("ada", &vera, "viewer").await;
    // Vera hears she was invited, then that she joined, and from then on sees the organization's
    // status changes.
    assert_eq!(vera_events.next_of("notification", WAIT).await.json()["kind"], "org_invitation");
    assert_eq!(vera_events.next(WAIT).await.expect("event").event, "membership");

    let mut ada_events = Stream::open(&ada, "/api/v1/events", None).await.expect("stream");
    let run = queued_run(&ada).await;
    for stream in [&mut ada_events, &mut vera_events] {
        let cluster = stream.next(WAIT).await.expect("the new cluster");
        assert_eq!((cluster.event.as_str(), cluster.json()["status"].as_str()), ("cluster", Some("pending")));
        let queued = stream.next(WAIT).await.expect("its run");
        assert_eq!(queued.event, "run");
        assert_eq!(queued.json()["id"], run.as_str());
        assert_eq!(queued.json()["status"], "queued");
        assert!(queued.id() > cluster.id());
    }

    // Waiting for approval notifies admins and owners only.
    finish_run(&app, &run, "awaiting_approval").await;
    let approval = ada_events.next_of("notification", WAIT).await;
    assert_eq!(approval.json()["kind"], "approval_needed");
    let seen = vera_events.next_of("run", WAIT).await;
    assert_eq!(seen.json()["status"], "awaiting_approval");
    let vera_list = vera.get("/api/v1/notifications").await.json();
    assert!(
        vera_list["items"].as_array().expect("items").iter().all(|n| n["kind"] != "approval_needed"),
        "{vera_list}"
    );

    // Once removed, vera's open stream no longer carries the organization's changes.
    let members = ada.get("/api/v1/orgs/ada/members").await.json();
    let vera_id =
        members.as_array().expect("members").iter().find(|m| m["username"] == "vera").expect("vera")["user_id"]
            .as_str()
            .expect("id")
            .to_owned();
    ada.delete(&format!("/api/v1/orgs/ada/members/{vera_id}")).await.expect_status(StatusCode::NO_CONTENT);
    let removed = vera_events.next(WAIT).await.expect("removal");
    assert_eq!((removed.event.as_str(), removed.json()["member"].as_bool()), ("membership", Some(false)));
    ada.post(&format!("/api/v1/runs/{run}/cancel"), json!({})).await.expect_status(StatusCode::OK);
    ada.post("/api/v1/orgs", json!({ "name": "two", "display_name": "Two" })).await.expect_status(StatusCode::CREATED);
    ada.add_to_org("two", &vera, "viewer").await;
    let invited = vera_events.next(WAIT).await.expect("the next event for vera");
    assert_eq!(
        (invited.event.as_str(), invited.json()["kind"].as_str()),
        ("notification", Some("org_invitation")),
        "the canceled run of an organization vera left is not on her stream"
    );
    let joined = vera_events.next(WAIT).await.expect("the event after it");
    assert_eq!((joined.event.as_str(), joined.json()["org"].as_str()), ("membership", Some("two")));
}

#[tokio::test]
async fn notifications_are_counted_read_and_deleted_per_user_and_pushed_to_other_tabs() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let bob = app.user("bob").await;
    app.user("carl").await;
    for org in ["two", "three"] {
        ada.post("/api/v1/orgs", json!({ "name": org, "display_name": org })).await.expect_status(StatusCode::CREATED);
        invite(&ada, org, "bob@example.com", "viewer").await;
    }
    invite(&ada, "ada", "bob@example.com", "operator").await;
    invite(&ada, "ada", "carl@example.com", "viewer").await;

    // Exactly one notification per invitation, to the person invited.
    assert_eq!(bob.get("/api/v1/notifications/unread-count").await.json()["count"], 3);
    assert_eq!(ada.get("/api/v1/notifications/unread-count").await.json()["count"], 0);
    let page = bob.get("/api/v1/notifications?limit=2").await.expect_status(StatusCode::OK).json();
    assert_eq!(page["items"].as_array().expect("items").len(), 2);
    assert_eq!(page["items"][0]["title"], "ada invited you to ada", "newest first");
    let before = page["next_before"].as_str().expect("another page");
    let rest = bob.get(&format!("/api/v1/notifications?before={before}")).await.json();
    assert_eq!(rest["items"].as_array().expect("items").len(), 1);
    assert!(rest["next_before"].is_null());
    bob.get("/api/v1/notifications?limit=0").await.expect_problem(StatusCode::BAD_REQUEST, "invalid_query");

    // Another tab of bob's hears about every change.
    let mut tab = Stream::open(&bob, "/api/v1/events", None).await.expect("stream");
    let first = page["items"][0]["id"].as_str().expect("id").to_owned();
    let read = bob.post_empty(&format!("/api/v1/notifications/{first}/read")).await.expect_status(StatusCode::OK);
    assert_eq!(read.json()["read"], true);
    assert_eq!(tab.next_of("notification_read", WAIT).await.json()["id"], first.as_str());
    assert_eq!(bob.get("/api/v1/notifications/unread-count").await.json()["count"], 2);
    let unread = bob.get("/api/v1/notifications?unread=true").await.json();
    assert_eq!(unread["items"].as_array().expect("items").len(), 2);

    // Nobody else can read or delete bob's notifications.
    let carl = app.client();
    carl.sign_in("carl@example.com", crate::support::PASSWORD).await;
    carl.post_empty(&format!("/api/v1/notifications/{first}/read"))
        .await
        .expect_problem(StatusCode::NOT_FOUND, "notification_not_found");
    carl.delete(&format!("/api/v1/notifications/{first}"))
        .await
        .expect_problem(StatusCode::NOT_FOUND, "notification_not_found");
    assert_eq!(carl.get("/api/v1/notifications/unread-count").await.json()["count"], 1);

    let all = bob.post_empty("/api/v1/notifications/read-all").await.expect_status(StatusCode::OK);
    assert_eq!(all.json()["count"], 2);
    assert_eq!(tab.next_of("notifications_read_all", WAIT).await.json()["count"], 2);
    assert_eq!(bob.get("/api/v1/notifications/unread-count").await.json()["count"], 0);
    bob.delete(&format!("/api/v1/notifications/{first}")).await.expect_status(StatusCode::NO_CONTENT);
    assert_eq!(tab.next_of("notification_deleted", WAIT).await.json()["id"], first.as_str());
    bob.delete(&format!("/api/v1/notifications/{first}"))
        .await
        .expect_problem(StatusCode::NOT_FOUND, "notification_not_found");
    assert_eq!(bob.get("/api/v1/notifications").await.json()["items"].as_array().expect("items").len(), 2);
    assert_eq!(carl.get("/api/v1/notifications/unread-count").await.json()["count"], 1, "carl's are untouched");
}

/// Reads events until `count` have arrived (comments skipped).
async fn take(stream: &mut Stream, count: usize) -> Vec<Message> {
    let mut messages = Vec::new();
    while messages.len() < count {
        messages.push(stream.next(WAIT).await.expect("the stream goes on"));
    }
    messages
}

#[tokio::test]
async fn the_event_stream_resumes_from_last_event_id_without_gap_or_duplicate() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let ada_id = ada.user_id().await;
    let record = |n: u32| {
        let db = app.db().clone();
        async move {
            events::record(&db, Audience::User(ada_id), "membership", json!({ "n": n })).await.expect("record");
        }
    };

    let mut stream = Stream::open(&ada, "/api/v1/events", None).await.expect("stream");
    for n in 0..5 {
        record(n).await;
    }
    app.state.events_written();
    let first = take(&mut stream, 3).await;
    drop(stream);
    for n in 5..10 {
        record(n).await;
    }
    app.state.events_written();
    let last_id = first.last().expect("three").id.clone();
    let mut resumed = Stream::open(&ada, "/api/v1/events", last_id.as_deref()).await.expect("resumed");
    let rest = take(&mut resumed, 7).await;
    let seen: Vec<u64> = first.iter().chain(&rest).map(|m| m.json()["n"].as_u64().expect("n")).collect();
    assert_eq!(seen, (0..10).collect::<Vec<u64>>(), "every event once, in order");
    let ids: Vec<i64> = first.iter().chain(&rest).map(Message::id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
}

#[tokio::test]
async fn a_stream_that_falls_behind_is_told_to_resync_and_ends() {
    falls_behind(false).await;
}

#[tokio::test]
async fn a_stream_the_fan_out_writes_to_that_falls_behind_is_told_to_resync_and_ends() {
    falls_behind(true).await;
}

async fn falls_behind(alone: bool) {
    let app = TestApp::spawn_with(|config| config.live.backlog = 16).await;
    let ada = app.user("ada").await;
    let ada_id = ada.user_id().await;
    let mut marker = Marker::open(&app).await;
    wait_until_attached(&app, 1).await;
    let stream = match alone {
        true => Stream::open_alone(&ada, "/api/v1/events").await,
        // On the connection that asked for `/me`, through hyper.
        false => Stream::open(&ada, "/api/v1/events", None).await,
    }
    .expect("stream");
    match alone {
        true => wait_until_attached(&app, 2).await,
        false => assert_eq!(app.state.live.attached_streams(), 1, "the marker's only: ada's is served through hyper"),
    }
    let start = events::latest_id(app.db()).await.expect("latest id");
    // Stop reading while far more than the backlog arrives (and more than the sockets hold).
    let filler = "x".repeat(16 * 1024);
    for batch in 0..20 {
        app.record_events(ada_id, "membership", batch * 50..batch * 50 + 50, &filler).await;
    }
    // The premise, before the client reads again: the server waited for it (when it writes the
    // stream itself, and can tell), and the fan-out went a whole ring past it meanwhile.
    if alone {
        app.wait_for("writes waiting on the client", 1, |state| state.live.writes_waiting()).await;
    }
    marker.fanned_out(&app).await;
    told_to_resync(&app, &ada, stream, start, 1).await;
}

/// A user of its own whose stream tells when the fan-out has broadcast everything stored.
struct Marker {
    id: uuid::Uuid,
    stream: Stream,
    next: u64,
}

impl Marker {
    async fn open(app: &TestApp) -> Self {
        let marker = app.user("marker").await;
        let id = marker.user_id().await;
        let stream = Stream::open_alone(&marker, "/api/v1/events").await.expect("the marker's stream");
        Self { id, stream, next: 0 }
    }

    /// Records a note for the marker and waits until its stream has it: by then the fan-out
    /// has broadcast every event stored before it.
    async fn fanned_out(&mut self, app: &TestApp) {
        let mark = self.next;
        self.next += 1;
        app.record_events(self.id, "mark", mark..mark + 1, "").await;
        assert_eq!(self.stream.next_of("mark", WAIT).await.json()["n"], mark, "the marker's note");
    }
}

#[tokio::test]
async fn a_stream_that_fell_behind_its_fan_out_and_then_waited_on_its_client_is_told_to_resync() {
    let app = TestApp::spawn_with(|config| config.live.backlog = 16).await;
    let ada = app.user("ada").await;
    let ada_id = ada.user_id().await;
    let mut marker = Marker::open(&app).await;
    let stream = Stream::open_alone(&ada, "/api/v1/events").await.expect("stream");
    wait_until_attached(&app, 2).await;
    let start = events::latest_id(app.db()).await.expect("latest id");
    // One page for the fan-out, broadcast in one go: the shard falls behind before it writes
    // any of it, and the stream listens again only after all of it went by, so its own receiver
    // never lags. Catching up from the database, it waits for its client (far more than the
    // sockets hold), which is no faster for the server having been busy.
    let filler = "x".repeat(64 * 1024);
    app.record_events(ada_id, "note", 0..400, &filler).await;
    app.wait_for("writes waiting on the client", 1, |state| state.live.writes_waiting()).await;
    assert!(handbacks(&ada, "shard_behind").await >= 1, "the shard fell behind");
    marker.fanned_out(&app).await;
    told_to_resync(&app, &ada, stream, start, 1).await;
}

/// Reads `stream` until its `resync` (which must come, and name the last event sent, or
/// `start`), sees the stream end (leaving `others` open), and resumes from the resync's id.
async fn told_to_resync(app: &TestApp, ada: &Client, mut stream: Stream, start: i64, others: usize) {
    let mut last = None;
    let mut read = 0;
    let resync = loop {
        let message = match stream.next_within(WAIT).await {
            Ok(Some(message)) => message,
            Ok(None) => {
                panic!("the stream ended without a resync after {read} events, the last {last:?}, from {start}")
            }
            Err(_) => panic!("no resync: silence after {read} events, the last {last:?}, from {start}"),
        };
        if message.event == "resync" {
            break message;
        }
        read += 1;
        last = Some(message.id());
    };
    assert!(resync.json()["message"].as_str().expect("message").contains("Last-Event-ID"));
    assert_eq!(resync.id(), last.unwrap_or(start), "resync names the last event sent (or where the stream began)");
    assert!(stream.next(WAIT).await.is_none(), "the server ends the stream after resync");
    // Its place is given back, and resuming from the resync's id catches up.
    app.wait_for("open streams", others, |state| state.live.open_streams()).await;
    let mut resumed = Stream::open(ada, "/api/v1/events", resync.id.as_deref()).await.expect("resume");
    let next = resumed.next(WAIT).await.expect("caught up");
    assert_eq!(next.id(), resync.id.as_deref().expect("id").parse::<i64>().expect("number") + 1);
}

/// How many streams the fan-out handed back to their own task for `reason`, from `/metrics`.
async fn handbacks(client: &Client, reason: &str) -> u64 {
    client.metric(&format!("fleetplane_sse_handbacks_total{{reason=\"{reason}\"}}")).await
}

/// Waits until the server's fan-out writes to `count` event streams itself.
async fn wait_until_attached(app: &TestApp, count: usize) {
    app.wait_for("streams attached", count, |state| state.live.attached_streams()).await;
}

#[tokio::test]
async fn a_stream_too_slow_for_its_socket_gets_every_event_in_order_and_goes_on() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let ada_id = ada.user_id().await;
    let mut stream = Stream::open_alone(&ada, "/api/v1/events").await.expect("stream");
    let filler = "x".repeat(64 * 1024);
    let mut expected = 0;
    // Twice: once handed back, the stream is attached again when it has caught up.
    for round in 1..=2 {
        wait_until_attached(&app, 1).await;
        let from = expected;
        // Not read while more arrives than the sockets hold (however far the kernel lets them
        // grow), though less than the backlog: the fan-out's writes fall short and it hands the
        // stream back to its task. Then a little more, for the task to send.
        while handbacks(&ada, "slow_client").await < round {
            assert!(expected - from < 960, "the fan-out never found the socket full");
            app.record_events(ada_id, "note", expected..expected + 16, &filler).await;
            expected += 16;
        }
        app.record_events(ada_id, "note", expected..expected + 16, &filler).await;
        expected += 16;
        let got = take(&mut stream, usize::try_from(expected - from).expect("count")).await;
        let seen: Vec<u64> = got.iter().map(|m| m.json()["n"].as_u64().expect("n")).collect();
        assert_eq!(seen, (from..expected).collect::<Vec<u64>>(), "every event once, in order");
        assert!(got.iter().all(|m| m.event == "note"), "no resync");
    }
    app.record_events(ada_id, "note", expected..expected + 1, "").await;
    assert_eq!(stream.next(WAIT).await.expect("live").json()["n"], expected);
    assert_eq!(handbacks(&ada, "shard_behind").await, 0);
}

#[tokio::test]
async fn a_burst_bigger_than_the_servers_backlog_reaches_a_reading_stream_whole() {
    let app = TestApp::spawn_with(|config| config.live.backlog = 4).await;
    let ada = app.user("ada").await;
    let ada_id = ada.user_id().await;
    let mut stream = Stream::open_alone(&ada, "/api/v1/events").await.expect("stream");
    wait_until_attached(&app, 1).await;
    // Twenty events broadcast at once, while the fan-out keeps four: the stream's shard falls
    // behind, and the stream catches up from the database instead of being told to resync.
    app.record_events(ada_id, "note", 0..20, "").await;
    let got = take(&mut stream, 20).await;
    let seen: Vec<u64> = got.iter().map(|m| m.json()["n"].as_u64().expect("n")).collect();
    assert_eq!(seen, (0..20).collect::<Vec<u64>>());
    assert!(handbacks(&ada, "shard_behind").await >= 1, "the shard fell behind");
    app.record_events(ada_id, "note", 20..21, "").await;
    assert_eq!(stream.next(WAIT).await.expect("live").json()["n"], 20);
}

/// The resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    let line = status.lines().find(|line| line.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).and_then(|kib| kib.parse().ok()).expect("a size in kB")
}

#[tokio::test]
async fn a_client_that_stops_reading_costs_the_server_no_memory_and_is_told_to_resync() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let ada_id = ada.user_id().await;
    // A server of its own (so that its memory is its own), on the same database, keeping 16 events.
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("fleetplane.toml");
    std::fs::write(&config, "[live]\nbacklog = 16\n").expect("config");
    let port = crate::support::ports::free_port();
    // One malloc arena: freed memory is reused by whichever thread reads the next page of events,
    // so that the server's size shows what it holds, not how many threads once read a page.
    let env =
        [("FLEETPLANE_WORKERS", "0"), ("FLEETPLANE_CONFIG", config.to_str().expect("path")), ("MALLOC_ARENA_MAX", "1")];
    let server = ServerProcess::start(dir.path(), app.state.config.database_url.expose(), port, &env);
    let (ada_there, token) = token_client(&ada, &server).await;
    // Bob reads his stream there: when the server has sent him a note of his, it has broadcast
    // every event stored before it.
    let bob = app.user("bob").await;
    let bob_id = bob.user_id().await;
    let (_, bob_token) = token_client(&bob, &server).await;
    let mut bobs = open_with_token(&server, &bob_token, "/api/v1/events", None).await;
    let mut marks = 0..;
    let mut broadcast = async || {
        let mark = marks.next().expect("a mark");
        app.record_events(bob_id, "note", mark..mark + 1, "").await;
        assert_eq!(bobs.next_of("note", WAIT).await.json()["n"], mark, "bob's mark");
    };

    // The client asks for its events, then reads nothing, with as small a buffer as it may have.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("buffer size");
    let mut tcp = socket.connect(([127, 0, 0, 1], port).into()).await.expect("connect");
    let request = format!(
        "GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
         Accept: text/event-stream\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.expect("send");

    // More than the sockets hold, until the server waits for this client to read.
    let filler = "x".repeat(8 * 1024);
    let mut sent = 0;
    while ada_there.metric("fleetplane_sse_writes_waiting").await == 0 {
        assert!(sent < 4000, "the server's writes to a client reading nothing never fell short");
        app.record_events(ada_id, "note", sent..sent + 50, &filler).await;
        sent += 50;
        broadcast().await;
    }
    // 8 MiB more, so that the server has read events in whole pages before it is measured.
    let flood = async |from: u64, count: u64| {
        for batch in (from..from + count).step_by(50) {
            app.record_events(ada_id, "note", batch..batch + 50, &filler).await;
        }
    };
    flood(sent, 1000).await;
    broadcast().await;
    let before = rss_kib(server.child.id());
    // 16 MiB more go by.
    flood(sent + 1000, 2000).await;
    broadcast().await;
    let after = rss_kib(server.child.id());
    assert!(
        after < before + 8 * 1024,
        "the server grew from {before} to {after} KiB while 16 MiB of events went by a client reading nothing"
    );

    // Reading again, the client gets what was on its way, then at once `resync` (not the 16 MiB
    // it missed), then the end.
    let mut received = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut received)).await.expect("the server ends it").expect("read");
    let received = String::from_utf8_lossy(&received);
    assert!(received.contains("\nevent: resync\n"), "no resync in {} bytes", received.len());
    assert!(received.ends_with("\r\n0\r\n\r\n"), "a clean end");
    // Everything in the sockets was sent before the server waited; a stream may read a page
    // (500) more before it sees that it fell behind, never the 2000 it missed.
    let notes = received.matches("\nevent: note\n").count();
    assert!(notes < sent as usize + 500, "{notes} events before the resync: the stream replayed what it missed");
}

#[tokio::test]
async fn as_many_clients_as_the_pool_holds_that_stop_reading_leave_it_to_everyone_else() {
    use tokio::io::AsyncWriteExt;

    let app = TestApp::spawn_with(|config| {
        config.live.max_streams_per_user = 32;
        config.live.heartbeat_secs = 1;
        config.live.backlog = 16;
    })
    .await;
    let pool = usize::try_from(fleetplane::db::pool_size(&app.state.config)).expect("pool size");
    let ada = app.user("ada").await;
    let ada_id = ada.user_id().await;
    let token = ada.post("/api/v1/me/tokens", json!({ "name": "quiet" })).await.json()["token"]
        .as_str()
        .expect("token")
        .to_owned();

    // One stream per pooled connection, each asked for and then never read, with as small a
    // buffer as its socket may have.
    let port = app.base.port().expect("port");
    let mut clients = Vec::new();
    for _ in 0..pool {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("buffer size");
        let mut tcp = socket.connect(([127, 0, 0, 1], port).into()).await.expect("connect");
        let request = format!(
            "GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
             Accept: text/event-stream\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await.expect("send");
        clients.push(tcp);
    }
    app.wait_for("open streams", pool, |state| state.live.open_streams()).await;

    // Far more than the backlog, so that each stream catches up from the database page by page
    // (with heartbeats falling due meanwhile), and more than the sockets hold, until every one
    // of them waits for its client.
    let filler = "x".repeat(8 * 1024);
    let mut sent = 0;
    while app.state.live.writes_waiting() < pool {
        assert!(sent < 20_000, "{} of {pool} streams wait for their client", app.state.live.writes_waiting());
        app.record_events(ada_id, "note", sent..sent + 50, &filler).await;
        sent += 50;
    }

    // Everyone else is served from the pool as ever: the database's readiness, the signed-in
    // user, a listing. (A pool held by the quiet streams would time out here, with 503s.)
    for _ in 0..3 {
        ada.get("/readyz").await.expect_status(StatusCode::OK);
        ada.get("/api/v1/me").await.expect_status(StatusCode::OK);
        ada.get("/api/v1/orgs").await.expect_status(StatusCode::OK);
        app.record_events(ada_id, "note", sent..sent + 50, &filler).await;
        sent += 50;
    }
    assert_eq!(app.state.live.writes_waiting(), pool, "the quiet clients still have not read");
    drop(clients);
}

/// Stores a note for `user` through `state` (a server of its own) and tells that server's fan-out.
async fn note_through(state: &fleetplane::state::AppState, user: uuid::Uuid, n: u64) {
    let txn = state.db.begin().await.expect("txn");
    events::record(&txn, Audience::User(user), "note", json!({ "n": n })).await.expect("record");
    txn.commit().await.expect("commit");
    state.events_written();
}

#[tokio::test]
async fn a_stream_opened_before_the_fan_out_knows_where_the_log_ends_waits_for_it_and_misses_nothing() {
    use fleetplane::live::{self, Credential, Live};

    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let ada_id = ada.user_id().await;
    // A second server on the same database, as it starts: its fan-out has not read the log yet.
    let starting = fleetplane::state::AppState::build(app.state.config.clone()).await.expect("state");
    let slot = Live::acquire(&starting, ada_id, Credential::Token(uuid::Uuid::now_v7())).expect("a place");
    let mut opening = std::pin::pin!(live::event_stream(starting.clone(), slot, ada_id, None));
    let pending = std::future::poll_fn(|cx| std::task::Poll::Ready(opening.as_mut().poll(cx).is_pending())).await;
    assert!(pending, "the stream opened before the fan-out knew where the event log ends");
    // Stored meanwhile: before the stream's start, which is not yet.
    note_through(&starting, ada_id, 0).await;

    let stop = tokio_util::sync::CancellationToken::new();
    let fan_out = live::start_fan_out(starting.clone(), stop.clone()).await;
    let mut stream = Box::pin(opening.await.expect("opened once the fan-out started").into_stream());
    for n in 1..4 {
        note_through(&starting, ada_id, n).await;
    }
    for n in 1..4 {
        let frame = tokio::time::timeout(WAIT, futures::StreamExt::next(&mut stream))
            .await
            .expect("the next event within the wait")
            .expect("the stream goes on");
        let text = String::from_utf8_lossy(&frame);
        assert!(text.contains(&format!("\"n\":{n}")), "note {n} expected next: {text}");
    }
    stop.cancel();
    fan_out.await.expect("the fan-out stops");
}

#[tokio::test]
async fn a_stream_whose_server_cannot_read_the_event_log_is_refused_with_a_retry_after() {
    use fleetplane::live::{self, Credential, Live, OpenError};

    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let ada_id = ada.user_id().await;
    // A server whose fan-out never reads the log (as when the database does not answer).
    let starting = fleetplane::state::AppState::build(app.state.config.clone()).await.expect("state");
    let slot = Live::acquire(&starting, ada_id, Credential::Token(uuid::Uuid::now_v7())).expect("a place");
    let refused = live::event_stream(starting, slot, ada_id, None).await.err().expect("refused");
    assert!(matches!(refused, OpenError::Starting), "{refused:?}");
}

#[tokio::test]
async fn each_user_may_hold_a_limited_number_of_streams() {
    let app = TestApp::spawn_with(|config| config.live.max_streams_per_user = 2).await;
    let ada = app.user("ada").await;
    let run = queued_run(&ada).await;
    let first = Stream::open(&ada, "/api/v1/events", None).await.expect("first");
    let _second = Stream::open(&ada, &format!("/api/v1/runs/{run}/logs"), None).await.expect("second");
    Stream::open(&ada, "/api/v1/events", None)
        .await
        .err()
        .expect("third refused")
        .expect_problem(StatusCode::TOO_MANY_REQUESTS, "too_many_streams");
    let bob = app.user("bob").await;
    Stream::open(&bob, "/api/v1/events", None).await.expect("others are not affected");
    drop(first);
    let started = std::time::Instant::now();
    loop {
        match Stream::open(&ada, "/api/v1/events", None).await {
            Ok(_) => break,
            Err(refused) => {
                refused.expect_problem(StatusCode::TOO_MANY_REQUESTS, "too_many_streams");
                assert!(started.elapsed() < WAIT, "a closed stream frees its place");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test]
async fn heartbeats_keep_a_quiet_stream_open() {
    let app = TestApp::spawn_with(|config| config.live.heartbeat_secs = 1).await;
    let ada = app.user("ada").await;
    // Through hyper, and attached to the fan-out.
    let pooled = Stream::open(&ada, "/api/v1/events", None).await.expect("stream");
    let alone = Stream::open_alone(&ada, "/api/v1/events").await.expect("stream");
    for mut stream in [pooled, alone] {
        for _ in 0..2 {
            let comment = stream.next_raw(Duration::from_secs(5)).await.expect("open");
            assert_eq!((comment.event.as_str(), comment.data.as_str()), (":", "heartbeat"));
        }
    }
}

#[tokio::test]
async fn a_run_log_stream_wakes_for_its_own_run_only() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let ada_id = ada.user_id().await;
    let run = queued_run(&ada).await;
    // The run's own events are broadcast before its stream opens.
    let mut marker = Marker::open(&app).await;
    marker.fanned_out(&app).await;
    let mut stream = Stream::open(&ada, &format!("/api/v1/runs/{run}/logs"), None).await.expect("stream");
    let woken = async || ada.metric("fleetplane_sse_log_wakes_total{cause=\"run\"}").await;
    let before = woken().await;

    // Fifty events and fifty other runs' lines: none is for this stream.
    for n in 0..50 {
        app.record_events(ada_id, "note", n..n + 1, "").await;
        app.state.bus.publish(Signal::Logs(uuid::Uuid::now_v7()));
    }
    marker.fanned_out(&app).await;
    // Its own line (signalled after the others, so heard after them) and its end.
    append_lines(&app, &run, 1, 1).await;
    assert_eq!(stream.next_of("line", WAIT).await.json()["text"], "line 1");
    finish_run(&app, &run, "succeeded").await;
    assert_eq!(stream.next(WAIT).await.expect("the end").event, "end");

    // A wake-up for the line and one for the end; one more at most, when the line's came while
    // the stream was reading it.
    let wakes = woken().await - before;
    assert!((1..=3).contains(&wakes), "{wakes} wake-ups for one line and the end, among 100 signals for others");
}

#[tokio::test]
async fn a_run_log_streams_live_resumes_exactly_and_ends_with_the_outcome() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let run = queued_run(&ada).await;
    let path = format!("/api/v1/runs/{run}/logs");
    append_lines(&app, &run, 1, 3).await;

    let mut stream = Stream::open(&ada, &path, None).await.expect("stream");
    let mut seen: Vec<String> = Vec::new();
    for _ in 0..3 {
        let line = stream.next_of("line", WAIT).await;
        seen.push(line.json()["text"].as_str().expect("text").to_owned());
    }
    // Live: lines stored now arrive without asking again.
    append_lines(&app, &run, 4, 2).await;
    for _ in 0..2 {
        let line = stream.next_of("line", WAIT).await;
        assert_eq!(line.id(), line.json()["seq"].as_i64().expect("seq"));
        seen.push(line.json()["text"].as_str().expect("text").to_owned());
    }
    // Drop mid-log; more lines come; resume from the last id.
    let last = seen.len().to_string();
    drop(stream);
    append_lines(&app, &run, 6, 500).await;
    let mut resumed = Stream::open(&ada, &path, Some(&last)).await.expect("resumed");
    for _ in 0..400 {
        seen.push(resumed.next_of("line", WAIT).await.json()["text"].as_str().expect("text").to_owned());
    }
    drop(resumed);
    // `?after=` works too, as for the paged API.
    let mut again = Stream::open(&ada, &format!("{path}?after={}", seen.len()), None).await.expect("again");
    for _ in 0..100 {
        seen.push(again.next_of("line", WAIT).await.json()["text"].as_str().expect("text").to_owned());
    }
    finish_run(&app, &run, "succeeded").await;
    let end = again.next(WAIT).await.expect("end");
    assert_eq!(end.event, "end");
    assert_eq!(end.json()["status"], "succeeded");
    assert!(again.next(WAIT).await.is_none(), "the stream ends after `end`");

    let stored: Vec<String> = (1..=505).map(|seq| format!("line {seq}")).collect();
    assert_eq!(seen, stored, "the concatenated stream is the stored log, no gap, no duplicate");

    // A finished run's stream is its whole log, then `end`.
    let mut finished = Stream::open(&ada, &path, None).await.expect("finished");
    let mut count = 0;
    while finished.next(WAIT).await.expect("until end").event == "line" {
        count += 1;
    }
    assert_eq!(count, 505);
}

/// Publishes on `from` until `to`'s subscriber hears `signal` (Redis connects in the background).
async fn heard(from: &Bus, to: &mut tokio::sync::broadcast::Receiver<Signal>, signal: Signal) {
    let started = std::time::Instant::now();
    loop {
        from.publish(signal);
        if let Ok(Ok(got)) = tokio::time::timeout(Duration::from_millis(200), to.recv()).await
            && got == signal
        {
            return;
        }
        assert!(started.elapsed() < WAIT * 2, "{signal} did not cross Redis");
    }
}

#[tokio::test]
#[ignore = "needs Redis: run `cargo xtask test`"]
async fn the_redis_bus_carries_signals_between_replicas_and_survives_a_restart() {
    let mut redis = Redis::start();
    let (a, b) = (Bus::redis(&redis.url()).expect("a"), Bus::redis(&redis.url()).expect("b"));
    let mut a_hears = a.subscribe();
    let mut b_hears = b.subscribe();
    let run = uuid::Uuid::now_v7();
    heard(&a, &mut b_hears, Signal::Logs(run)).await;
    // A hears its own signals once, locally, not again through Redis.
    while a_hears.try_recv().is_ok() {}
    a.publish(Signal::Queue);
    assert_eq!(a_hears.recv().await.expect("own"), Signal::Queue);
    // Once B has heard it through Redis, an echo to A would already be on A's subscription,
    // ahead of anything B publishes next: B's marker coming first proves there is none.
    let started = std::time::Instant::now();
    while tokio::time::timeout(WAIT, b_hears.recv()).await.expect("B hears A").expect("signal") != Signal::Queue {
        assert!(started.elapsed() < WAIT, "B never heard A's signal");
    }
    let marker = Signal::Logs(uuid::Uuid::now_v7());
    b.publish(marker);
    let next = tokio::time::timeout(WAIT, a_hears.recv()).await.expect("A hears B").expect("signal");
    assert_eq!(next, marker, "no echo from Redis");

    // Redis goes away: publishing neither blocks nor fails the caller, and local delivery goes on.
    redis.stop();
    a.publish(Signal::Events);
    assert_eq!(a_hears.recv().await.expect("local"), Signal::Events);
    redis.resume();
    heard(&b, &mut a_hears, Signal::Queue).await;
    heard(&a, &mut b_hears, Signal::Events).await;
}

/// A second server, as its own process, on the same database and Redis as `app`.
fn second_server(app: &TestApp, dir: &std::path::Path, redis: &Redis) -> ServerProcess {
    let port = crate::support::ports::free_port();
    let env = [("REDIS_URL", redis.url()), ("FLEETPLANE_WORKERS", "0".into())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ServerProcess::start(dir, app.state.config.database_url.expose(), port, &env)
}

/// Signs in on `server` through an API token made on `app` (sessions are per server key).
async fn token_client(ada: &Client, server: &ServerProcess) -> (Client, String) {
    let token = ada.post("/api/v1/me/tokens", json!({ "name": "replica" })).await.json()["token"]
        .as_str()
        .expect("token")
        .to_owned();
    (server.client(), token)
}

async fn open_with_token(server: &ServerProcess, token: &str, path: &str, last: Option<&str>) -> Stream {
    let mut request = server
        .client()
        .http
        .get(server.base.join(path.trim_start_matches('/')).expect("url"))
        .bearer_auth(token)
        .header("accept", "text/event-stream");
    if let Some(last) = last {
        request = request.header("last-event-id", last);
    }
    Stream::from_request(request).await.expect("stream")
}

/// The run's whole stored log, through the paged API.
async fn stored_log(ada: &Client, run: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut after = 0;
    loop {
        let page = ada.get(&format!("/api/v1/runs/{run}/logs?after={after}")).await.json();
        for line in page["chunks"].as_array().expect("chunks") {
            lines.push(line["text"].as_str().expect("text").to_owned());
        }
        after = page["next_after"].as_i64().expect("next_after");
        if page["complete"] == true {
            return lines;
        }
    }
}

#[tokio::test]
#[ignore = "needs Terraform and Redis: run `cargo xtask test`"]
async fn a_run_on_one_server_streams_its_log_and_status_to_a_client_of_another() {
    let redis = Redis::start();
    let app = TestApp::spawn_with(|config| {
        with_workers(config, ExecutorChoice::Process, 1);
        config.redis_url = Some(Secret::new(redis.url()));
    })
    .await;
    let ada = app.user("ada").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let other = second_server(&app, dir.path(), &redis);
    let (_, token) = token_client(&ada, &other).await;
    let mut events = open_with_token(&other, &token, "/api/v1/events", None).await;

    let created = ada.post("/api/v1/orgs/ada/clusters", local_cluster("replica", json!({ "step_seconds": 1 }))).await;
    let run = created.expect_status(StatusCode::CREATED).json()["run"]["id"].as_str().expect("run").to_owned();
    let mut log = open_with_token(&other, &token, &format!("/api/v1/runs/{run}/logs"), None).await;
    let mut streamed = Vec::new();
    let end = loop {
        let message = log.next(Duration::from_secs(60)).await.expect("the log goes on until `end`");
        match message.event.as_str() {
            "line" => streamed.push(message.json()["text"].as_str().expect("text").to_owned()),
            "end" => break message,
            other => panic!("unexpected `{other}` in a log stream"),
        }
    };
    assert_eq!(end.json()["status"], "succeeded", "{}", end.data);
    assert_eq!(streamed, stored_log(&ada, &run).await, "the other server streamed the whole log, in order");

    let mut statuses = Vec::new();
    while statuses.last().map(String::as_str) != Some("succeeded") {
        let event = events.next_of("run", WAIT).await;
        if event.json()["id"] == run.as_str() {
            statuses.push(event.json()["status"].as_str().expect("status").to_owned());
        }
    }
    assert_eq!(statuses.first().map(String::as_str), Some("queued"));
    assert!(statuses.iter().any(|s| s == "running"), "{statuses:?}");
    let ready = events.next_of("cluster", WAIT).await;
    assert_eq!(ready.json()["status"], "ready");
}

#[tokio::test]
#[ignore = "needs Terraform and Redis: run `cargo xtask test`"]
async fn with_redis_down_during_a_run_servers_keep_serving_and_clients_catch_up() {
    let mut redis = Redis::start();
    let app = TestApp::spawn_with(|config| {
        with_workers(config, ExecutorChoice::Process, 1);
        config.redis_url = Some(Secret::new(redis.url()));
    })
    .await;
    let ada = app.user("ada").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let other = second_server(&app, dir.path(), &redis);
    let (_, token) = token_client(&ada, &other).await;
    let mut events = open_with_token(&other, &token, "/api/v1/events", None).await;

    let created = ada.post("/api/v1/orgs/ada/clusters", local_cluster("outage", json!({ "step_seconds": 2 }))).await;
    let run = created.expect_status(StatusCode::CREATED).json()["run"]["id"].as_str().expect("run").to_owned();
    let first = events.next_of("cluster", WAIT).await;
    redis.stop();

    // Both servers keep answering, and the run goes on and finishes on the first.
    let other_client = other.client();
    assert_eq!(other_client.get("/healthz").await.status, StatusCode::OK);
    assert_eq!(ada.get(&format!("/api/v1/runs/{run}")).await.status, StatusCode::OK);
    crate::support::runs::wait_for_run(&ada, &run, 120, |r| r["status"] == "succeeded").await;
    drop(events);
    redis.resume();

    // A client reconnecting to the other server with its last id gets everything it missed.
    let mut resumed = open_with_token(&other, &token, "/api/v1/events", first.id.as_deref()).await;
    let mut statuses = Vec::new();
    let mut ids = vec![first.id()];
    while statuses.last().map(String::as_str) != Some("succeeded") {
        let event = resumed.next(WAIT).await.expect("caught up");
        ids.push(event.id());
        if event.event == "run" {
            statuses.push(event.json()["status"].as_str().expect("status").to_owned());
        }
    }
    assert_eq!(statuses.first().map(String::as_str), Some("queued"), "{statuses:?}");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in order, once: {ids:?}");
    let mut log = open_with_token(&other, &token, &format!("/api/v1/runs/{run}/logs"), None).await;
    let mut lines = Vec::new();
    while let Some(message) = log.next(WAIT).await {
        if message.event == "line" {
            lines.push(message.json()["text"].as_str().expect("text").to_owned());
        }
    }
    assert_eq!(lines, stored_log(&ada, &run).await, "nothing durable was lost");
    assert!(!lines.is_empty());
}
