//! The retention janitor: what one pass deletes and what it keeps, kind by kind, and that a
//! worker runs passes by itself.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use chrono::{DateTime, TimeDelta, Utc};
use fleetplane::{
    config::ExecutorChoice,
    entity::{email_verification_tokens, events, outbound_emails, run_logs, runs, state_versions},
    janitor::{self, Deleted},
};
use reqwest::StatusCode;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter, Set};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{
    Client, PASSWORD, TestApp,
    runs::{local_cluster, with_workers},
    sse::{Message, Stream},
};

fn days_ago(days: i64) -> DateTime<Utc> {
    Utc::now() - TimeDelta::days(days)
}

/// Stores an outbox row as the mail dispatcher leaves it.
async fn store_mail(app: &TestApp, status: &str, created: DateTime<Utc>, sent: Option<DateTime<Utc>>) -> Uuid {
    let id = Uuid::now_v7();
    outbound_emails::ActiveModel {
        id: Set(id),
        to_address: Set("ada@example.com".into()),
        subject: Set(format!("{status} mail")),
        body_text: Set(None),
        status: Set(status.into()),
        attempts: Set(1),
        // A pending message is not due before tomorrow: the dispatcher leaves it alone.
        next_attempt_at: Set(Utc::now() + TimeDelta::days(1)),
        last_error: Set(None),
        created_at: Set(created),
        sent_at: Set(sent),
    }
    .insert(app.db())
    .await
    .expect("insert mail");
    id
}

async fn mail_ids(app: &TestApp) -> BTreeSet<Uuid> {
    outbound_emails::Entity::find().all(app.db()).await.expect("outbox").into_iter().map(|m| m.id).collect()
}

#[tokio::test]
async fn delivered_mail_goes_after_its_days_and_mail_not_delivered_stays() {
    let app = TestApp::spawn().await;
    store_mail(&app, "sent", days_ago(9), Some(days_ago(8))).await;
    store_mail(&app, "logged", days_ago(8), Some(days_ago(8))).await;
    let recent = store_mail(&app, "sent", days_ago(7), Some(days_ago(6))).await;
    let pending = store_mail(&app, "pending", days_ago(30), None).await;
    let failed = store_mail(&app, "failed", days_ago(30), None).await;

    let deleted = janitor::run_once(&app.state).await.expect("pass");
    assert_eq!(deleted, Deleted { outbox: 2, ..Deleted::default() });
    assert_eq!(mail_ids(&app).await, BTreeSet::from([recent, pending, failed]));

    let metrics = app.client().get("/metrics").await.expect_status(StatusCode::OK).text;
    assert!(metrics.contains("fleetplane_janitor_deleted_total{what=\"outbox\"} 2\n"), "{metrics}");
    assert_eq!(janitor::run_once(&app.state).await.expect("pass"), Deleted::default(), "nothing is due twice");
}

#[tokio::test]
async fn used_and_expired_verification_tokens_go_and_a_pending_link_still_verifies() {
    let app = TestApp::spawn().await;
    app.user("ada").await; // her link is used
    let browser = app.client();
    browser
        .post("/api/v1/auth/signup", json!({ "email": "grace@example.com", "username": "grace", "password": PASSWORD }))
        .await
        .expect_status(StatusCode::ACCEPTED);
    let pending_link = app.smtp.first_to("grace@example.com").await.token();
    let grace = email_verification_tokens::Entity::find()
        .filter(email_verification_tokens::Column::UsedAt.is_null())
        .one(app.db())
        .await
        .expect("tokens")
        .expect("grace's token");
    let expired = email_verification_tokens::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(grace.user_id),
        token_hash: Set("an older link's hash".into()),
        expires_at: Set(Utc::now() - TimeDelta::minutes(1)),
        used_at: Set(None),
        created_at: Set(Utc::now() - TimeDelta::hours(25)),
    };
    expired.insert(app.db()).await.expect("insert");

    let deleted = janitor::run_once(&app.state).await.expect("pass");
    assert_eq!(deleted.verification_tokens, 2, "ada's used token and grace's expired one");
    let left: Vec<Uuid> =
        email_verification_tokens::Entity::find().all(app.db()).await.expect("tokens").iter().map(|t| t.id).collect();
    assert_eq!(left, [grace.id]);
    browser
        .post("/api/v1/auth/verify-email", json!({ "token": pending_link, "password": PASSWORD }))
        .await
        .expect_status(StatusCode::OK);
}

/// Stores an event for `user` created at `at` for each of `numbers` (`{"n": number}`), and tells
/// the fan-out; returns their ids.
async fn store_events(app: &TestApp, user: Uuid, numbers: std::ops::Range<u64>, at: DateTime<Utc>) -> Vec<i64> {
    let mut ids = Vec::new();
    for n in numbers {
        let event = events::ActiveModel {
            org_id: Set(None),
            user_id: Set(Some(user)),
            kind: Set("notification".into()),
            payload: Set(json!({ "n": n })),
            created_at: Set(at),
            ..Default::default()
        };
        ids.push(event.insert(app.db()).await.expect("insert event").id);
    }
    app.state.events_written();
    ids
}

async fn event_ids(app: &TestApp) -> Vec<i64> {
    let mut ids: Vec<i64> = events::Entity::find().all(app.db()).await.expect("events").iter().map(|e| e.id).collect();
    ids.sort_unstable();
    ids
}

#[tokio::test]
async fn old_events_go_in_batches_but_recent_ones_and_the_newest_backlog_stay() {
    let app = TestApp::spawn_with(|config| config.live.backlog = 16).await;
    let someone = Uuid::new_v4();
    let old = store_events(&app, someone, 0..2500, days_ago(31)).await;
    let recent = store_events(&app, someone, 2500..2520, days_ago(29)).await;
    // Old by their clocks, but the newest 16 with the last 6 recent ones: streams may still need them.
    let old_but_newest = store_events(&app, someone, 2520..2530, days_ago(40)).await;
    assert_eq!(old.len() as u64, 5 * janitor::BATCH / 2, "more than two batches");

    let deleted = janitor::run_once(&app.state).await.expect("pass");
    assert_eq!(deleted, Deleted { events: 2500, ..Deleted::default() });
    assert_eq!(event_ids(&app).await, [recent, old_but_newest].concat());
}

#[tokio::test]
async fn two_janitors_at_once_share_the_work_and_neither_fails() {
    let app = TestApp::spawn_with(|config| config.live.backlog = 16).await;
    store_events(&app, Uuid::new_v4(), 0..3000, days_ago(31)).await;

    let (first, second) = tokio::join!(janitor::run_once(&app.state), janitor::run_once(&app.state));
    let (first, second) = (first.expect("first janitor"), second.expect("second janitor"));
    assert_eq!(first.events + second.events, 3000 - 16, "each row deleted once");
    assert_eq!(event_ids(&app).await.len(), 16, "the newest 16 stay");
}

async fn take(stream: &mut Stream, count: usize) -> Vec<Message> {
    let mut messages = Vec::new();
    while messages.len() < count {
        messages.push(stream.next(Duration::from_secs(10)).await.expect("the stream goes on"));
    }
    messages
}

#[tokio::test]
async fn a_client_resuming_from_a_deleted_event_catches_up_from_the_next_one_stored() {
    // Each burst below is at most the server's backlog, so that no stream is told to resync.
    let app = TestApp::spawn_with(|config| config.live.backlog = 16).await;
    let ada = app.user("ada").await;
    let ada_id = ada.user_id().await;
    let mut stream = Stream::open(&ada, "/api/v1/events", None).await.expect("stream");
    store_events(&app, ada_id, 0..6, days_ago(40)).await;
    let seen = take(&mut stream, 3).await;
    let last = seen.last().expect("three").id.clone().expect("an id");
    drop(stream);
    store_events(&app, ada_id, 6..12, days_ago(40)).await;
    store_events(&app, ada_id, 12..22, days_ago(1)).await;

    let deleted = janitor::run_once(&app.state).await.expect("pass");
    assert_eq!(deleted.events, 6, "the old ones outside the newest 16: 0 to 5");
    let pruned = events::Entity::find_by_id(last.parse::<i64>().expect("id")).one(app.db()).await.expect("read");
    assert!(pruned.is_none(), "the event the client saw last is gone");

    let mut resumed = Stream::open(&ada, "/api/v1/events", Some(&last)).await.expect("resume");
    let rest = take(&mut resumed, 16).await;
    let numbers: Vec<u64> = rest.iter().map(|m| m.json()["n"].as_u64().expect("n")).collect();
    assert_eq!(numbers, (6..22).collect::<Vec<u64>>(), "from the next event stored, in order; 3 to 5 are lost");
}

/// Creates a local cluster in ada's organization; returns its id and its run (queued: no worker
/// runs it).
async fn cluster(app: &TestApp, ada: &Client, suffix: &str) -> (Uuid, runs::Model) {
    let created = ada.post("/api/v1/orgs/ada/clusters", local_cluster(suffix, json!(null))).await;
    let created = created.expect_status(StatusCode::CREATED).json();
    let id = created["cluster"]["id"].as_str().expect("cluster id").parse().expect("uuid");
    let run: Uuid = created["run"]["id"].as_str().expect("run id").parse().expect("uuid");
    (id, runs::Entity::find_by_id(run).one(app.db()).await.expect("read").expect("the run"))
}

/// Stores a sealed state version of `cluster` with this serial, as the state backend does.
async fn store_state(app: &TestApp, cluster: Uuid, serial: i64) {
    let body = serde_json::to_vec(&json!({ "version": 4, "serial": serial, "lineage": "l" })).expect("json");
    let id = Uuid::now_v7();
    let sealed = app.state.keyring.seal(&body, id.as_bytes()).expect("seal");
    state_versions::ActiveModel {
        id: Set(id),
        cluster_id: Set(cluster),
        serial: Set(serial),
        lineage: Set("l".into()),
        run_id: Set(None),
        size: Set(i32::try_from(body.len()).expect("small")),
        key_id: Set(sealed.key_id),
        ciphertext: Set(sealed.bytes),
        created_at: Set(days_ago(100 - serial)),
    }
    .insert(app.db())
    .await
    .expect("insert state version");
}

/// The serials of a cluster's state versions as its page shows them, newest first.
async fn serials(ada: &Client, cluster: Uuid) -> Vec<i64> {
    let info = ada.get(&format!("/api/v1/orgs/ada/clusters/{cluster}/state")).await.expect_status(StatusCode::OK);
    info.json()["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| v["serial"].as_i64().expect("serial"))
        .collect()
}

#[tokio::test]
async fn each_cluster_keeps_its_newest_state_versions_and_the_current_state_among_them() {
    let app = TestApp::spawn_with(|config| config.retention.state_versions_keep = 3).await;
    let ada = app.user("ada").await;
    let (busy, _) = cluster(&app, &ada, "busy").await;
    let (quiet, _) = cluster(&app, &ada, "quiet").await;
    for serial in 1..=6 {
        store_state(&app, busy, serial).await;
    }
    for serial in 1..=2 {
        store_state(&app, quiet, serial).await;
    }

    let deleted = janitor::run_once(&app.state).await.expect("pass");
    assert_eq!(deleted.state_versions, 3);
    assert_eq!(serials(&ada, busy).await, [6, 5, 4]);
    assert_eq!(serials(&ada, quiet).await, [2, 1], "fewer than three: all stay");
    let current = fleetplane::terraform_state::latest(&app.state, busy).await.expect("read").expect("a state");
    assert_eq!(serde_json::from_slice::<Value>(&current).expect("json")["serial"], 6, "the current state opens");
}

/// Ends `run` long ago: succeeded and finished at `at`.
async fn finish(app: &TestApp, run: runs::Model, at: DateTime<Utc>) -> Uuid {
    let mut active = run.into_active_model();
    active.status = Set("succeeded".into());
    active.reason = Set(Some("Completed.".into()));
    active.finished_at = Set(Some(at));
    active.updated_at = Set(at);
    active.update(app.db()).await.expect("finish the run").id
}

/// Another run of `earlier`'s cluster, queued after it, which finished at `at`.
async fn later_run(app: &TestApp, earlier: &runs::Model, at: DateTime<Utc>) -> Uuid {
    let mut active = earlier.clone().into_active_model().reset_all();
    active.id = Set(Uuid::now_v7());
    active.created_at = Set(at);
    let run = active.insert(app.db()).await.expect("insert a run");
    finish(app, run, at).await
}

/// Stores `count` log lines of `run`, written at `at`.
async fn store_lines(app: &TestApp, run: Uuid, count: i64, at: DateTime<Utc>) {
    let lines = (1..=count).map(|seq| run_logs::ActiveModel {
        run_id: Set(run),
        seq: Set(seq),
        attempt: Set(1),
        stream: Set("stdout".into()),
        text: Set(format!("line {seq}")),
        at: Set(at),
    });
    run_logs::Entity::insert_many(lines).exec(app.db()).await.expect("insert lines");
}

async fn lines(app: &TestApp, run: Uuid) -> u64 {
    run_logs::Entity::find().filter(run_logs::Column::RunId.eq(run)).count(app.db()).await.expect("count")
}

#[tokio::test]
async fn logs_of_runs_finished_long_ago_go_whole_but_each_clusters_latest_run_keeps_its_log() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let (_, first) = cluster(&app, &ada, "busy").await;
    let (_, only) = cluster(&app, &ada, "quiet").await;
    let long_ago = finish(&app, first.clone(), days_ago(100)).await;
    let recently = later_run(&app, &first, days_ago(80)).await;
    let latest = later_run(&app, &first, days_ago(100)).await;
    let only = finish(&app, only, days_ago(200)).await;
    store_lines(&app, long_ago, 2500, days_ago(100)).await;
    store_lines(&app, recently, 10, days_ago(80)).await;
    store_lines(&app, latest, 10, days_ago(100)).await;
    store_lines(&app, only, 10, days_ago(200)).await;

    let deleted = janitor::run_once(&app.state).await.expect("pass");
    assert_eq!(deleted.run_logs, 2500, "in three batches");
    let mut left = Vec::new();
    for run in [long_ago, recently, latest, only] {
        left.push(lines(&app, run).await);
    }
    assert_eq!(left, [0, 10, 10, 10], "gone: the superseded run's of 100 days ago; kept: 80 days ago, latest runs'");
}

#[tokio::test]
async fn a_worker_runs_passes_by_itself_on_schedule() {
    let app = TestApp::spawn_with(|config| {
        with_workers(config, ExecutorChoice::Process, 1);
        // No run is queued: the worker needs its executor's program to exist, not Terraform.
        config.runs.terraform = std::env::current_exe().expect("the test binary");
        config.retention.interval_secs = 1;
    })
    .await;
    // Twice: the second row can only go in a later pass than the first.
    for round in 1..=2 {
        let old = store_mail(&app, "sent", days_ago(9), Some(days_ago(8))).await;
        let started = Instant::now();
        while mail_ids(&app).await.contains(&old) {
            assert!(started.elapsed() < Duration::from_secs(30), "round {round}: the old mail is still there");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
