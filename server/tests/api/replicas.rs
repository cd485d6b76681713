//! Two replicas on one database and one Redis: a session signed out on one stops on the other
//! and its streams there end, caches of an account follow its changes, and rate limits are
//! counted once for both.

use std::time::{Duration, Instant};

use fleetplane::config::{Limit, Secret};
use reqwest::StatusCode;
use serde_json::json;

use crate::support::{Client, TestApp, redis::Redis, server::ServerProcess, sse::Stream};

const WAIT: Duration = Duration::from_secs(30);
const SECRET: &str = "a session key both replicas share, long enough";

/// This test's server and a second replica, both on `redis`, with login limited to `per_ip`
/// attempts a minute per address.
async fn replicas(redis: &Redis, dir: &tempfile::TempDir, per_ip: u32) -> (TestApp, ServerProcess) {
    let app = TestApp::spawn_with(|config| {
        config.redis_url = Some(Secret::new(redis.url()));
        config.session_secret = Some(Secret::new(SECRET.to_owned()));
        config.rate_limits.login_per_ip = Limit::new(per_ip, 60);
    })
    .await;
    let config = dir.path().join("fleetplane.toml");
    std::fs::write(&config, format!("[rate_limits]\nlogin_per_ip = {{ max = {per_ip}, window_secs = 60 }}\n"))
        .expect("config");
    let port = crate::support::ports::free_port();
    let redis_url = redis.url();
    let env = [
        ("FLEETPLANE_WORKERS", "0"),
        ("FLEETPLANE_CONFIG", config.to_str().expect("path")),
        ("FLEETPLANE_SESSION_SECRET", SECRET),
        ("REDIS_URL", redis_url.as_str()),
    ];
    let other = ServerProcess::start(dir.path(), app.state.config.database_url.expose(), port, &env);
    (app, other)
}

/// Account changes the replica behind `client` has heard and acted on, from its `/metrics`.
async fn changes_heard(client: &Client) -> u64 {
    client.metric("fleetplane_account_changes_heard_total").await
}

/// Waits until the replica behind `there` has heard one more account change than `before`.
async fn heard_after(there: &Client, before: u64) {
    let started = Instant::now();
    while changes_heard(there).await <= before {
        assert!(started.elapsed() < WAIT, "the other replica never heard the change");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the other replica hears this one's account changes through Redis (both connect
/// to it in the background).
async fn connected(app: &TestApp, user: uuid::Uuid, there: &Client) {
    let started = Instant::now();
    let before = changes_heard(there).await;
    loop {
        app.state.account_changed(user);
        tokio::time::sleep(Duration::from_millis(100)).await;
        if changes_heard(there).await > before {
            return;
        }
        assert!(started.elapsed() < WAIT, "the replicas never heard each other through Redis");
    }
}

/// `client`'s session, on the other replica.
fn same_browser_on(other: &ServerProcess, client: &Client) -> Client {
    let there = other.client();
    for name in ["fp_session", "fp_csrf"] {
        there.set_cookie(name, &client.cookie(name).expect("signed in"));
    }
    there
}

#[tokio::test]
#[ignore = "needs Redis: run `cargo xtask test`"]
async fn a_session_signed_out_on_one_replica_stops_on_the_other_and_its_streams_there_end() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().expect("dir");
    let (app, other) = replicas(&redis, &dir, 100).await;
    let ada = app.user("ada").await;
    let there = same_browser_on(&other, &ada);
    connected(&app, ada.user_id().await, &there).await;
    // The other replica has the session cached, and streams to it.
    there.get("/api/v1/me").await.expect_status(StatusCode::OK);
    let mut stream = Stream::open(&there, "/api/v1/events", None).await.expect("stream");

    ada.post_empty("/api/v1/auth/logout").await.expect_status(StatusCode::NO_CONTENT);
    // Only the bus can end it, and the cache is dropped before streams are looked at.
    assert!(stream.next(WAIT).await.is_none(), "the stream on the other replica ends");
    there.get("/api/v1/me").await.expect_problem(StatusCode::UNAUTHORIZED, "session_revoked");
}

#[tokio::test]
#[ignore = "needs Redis: run `cargo xtask test`"]
async fn an_account_changed_on_one_replica_is_not_served_stale_by_the_other() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().expect("dir");
    let (app, other) = replicas(&redis, &dir, 100).await;
    let ada = app.user("ada").await;
    let there = same_browser_on(&other, &ada);
    connected(&app, ada.user_id().await, &there).await;
    assert_eq!(there.get("/api/v1/me").await.json()["username"], "ada", "cached there now");

    let before = changes_heard(&there).await;
    ada.patch("/api/v1/me/username", json!({ "username": "ada-lovelace" })).await.expect_status(StatusCode::OK);
    heard_after(&there, before).await;
    assert_eq!(there.get("/api/v1/me").await.json()["username"], "ada-lovelace");
}

#[tokio::test]
#[ignore = "needs Redis: run `cargo xtask test`"]
async fn rate_limits_are_counted_once_for_every_replica_and_per_replica_while_redis_is_down() {
    let mut redis = Redis::start();
    let dir = tempfile::tempdir().expect("dir");
    let (app, other) = replicas(&redis, &dir, 4).await;
    let (here, there) = (app.client(), other.client());
    connected(&app, uuid::Uuid::now_v7(), &there).await;
    let attempt = async |client: &Client, n: u32| {
        client
            .post(
                "/api/v1/auth/login",
                json!({ "email": format!("nobody{n}@example.com"), "password": "wrong password" }),
            )
            .await
    };
    // Four attempts from this address, alternating between the replicas, then the limit.
    for n in 0..4 {
        let client = if n % 2 == 0 { &here } else { &there };
        attempt(client, n).await.expect_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    for client in [&here, &there] {
        let refused = attempt(client, 9).await;
        refused.expect_problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
        assert!(refused.headers.contains_key("retry-after"));
    }

    // Without Redis each replica counts on its own, from zero: still limited, per replica.
    redis.stop();
    for n in 0..4 {
        attempt(&here, 10 + n).await.expect_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    attempt(&here, 20).await.expect_problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
}
