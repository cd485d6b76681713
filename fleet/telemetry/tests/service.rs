//! `fleet-telemetry serve` as a newcomer runs it, zero-config: the embedded broker, SQLite, the
//! API. Bikes registered and certified through the API connect with their own certificates and
//! publish; the API shows their latest state, history (raw and downsampled) and live telemetry.
//! Every bad input to the API gets a clear problem and changes nothing.

mod support;

use chrono::TimeDelta;
use fleet_proto::{DeviceId, Message, topic::Kind};
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{BikeClient, envelope, service::Service, wait_for};

async fn started() -> (tempfile::TempDir, Service, String) {
    fleet_telemetry::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let service = Service::start(dir.path(), &[]).await;
    let token = service.create_token("test", "admin");
    assert!(token.starts_with("fltk_"), "{token}");
    (dir, service, token)
}

/// Registers a bike and issues it a generated certificate: (device id, cert, key, serial).
async fn certified(service: &Service, token: &str, serial: &str) -> (DeviceId, String, String, String) {
    let (status, bike) = service
        .call(
            Method::POST,
            "/api/v1/bikes",
            token,
            Some(json!({ "serial": serial, "model": "City 3", "firmware_version": "1.0.0" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{bike}");
    let id = bike["device_id"].as_str().expect("device id").to_owned();
    let (status, issued) =
        service.call(Method::POST, &format!("/api/v1/bikes/{id}/certificates"), token, Some(json!({}))).await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    let bundle = &issued["bundle"];
    (
        DeviceId::parse(&id).expect("id"),
        bundle["cert_pem"].as_str().expect("cert").to_owned(),
        bundle["key_pem"].as_str().expect("key").to_owned(),
        issued["certificate"]["serial"].as_str().expect("serial").to_owned(),
    )
}

/// Revokes the certificate `serial` through the API for `reason`: the certificate as it is now.
async fn revoke(service: &Service, token: &str, serial: &str, reason: &str) -> Value {
    let (status, revoked) = service
        .call(Method::POST, &format!("/api/v1/certificates/{serial}/revoke"), token, Some(json!({ "reason": reason })))
        .await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    revoked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bike_registered_through_the_api_publishes_and_its_state_history_and_live_telemetry_show() {
    let (_dir, service, token) = started().await;
    assert!(service.log().contains("No API token exists yet"), "the first start says how to begin:\n{}", service.log());
    let (device, cert, key, _) = certified(&service, &token, "SN-1").await;
    let ca = service.text("/api/v1/ca.pem", &token).await;
    let broker = service.get("/api/v1/broker", &token).await;
    assert_eq!(broker["port"], service.broker_port);

    // Live, from before the bike publishes.
    let live = service
        .http
        .get(service.url(&format!("/api/v1/bikes/{device}/live")))
        .bearer_auth(&token)
        .send()
        .await
        .expect("live");
    assert_eq!(live.status(), StatusCode::OK);
    assert_eq!(live.headers()["content-type"], "text/event-stream");
    let mut live = live.bytes_stream();

    let bike = BikeClient::connect_to(service.broker_port, &ca, &device, &cert, &key);
    // Ten packets recorded a second apart, the newest now.
    for seq in 1..=10 {
        let packet = envelope(&device, seq, TimeDelta::seconds(10 - i64::try_from(seq).expect("small")));
        bike.publish(Kind::Telemetry, packet.encode_to_vec()).await;
    }
    bike.wait_acked(10).await;
    let path = format!("/api/v1/bikes/{device}");
    wait_for("the latest state to be the last packet", || async {
        service.get(&path, &token).await["latest"]["seq"] == 10
    })
    .await;
    let view = service.get(&path, &token).await;
    assert_eq!(view["online"], true, "{view}");
    assert_eq!(view["latest"]["telemetry"]["odometer_m"], 1_010, "{view}");
    let online = service.get("/api/v1/bikes?online=true", &token).await;
    assert_eq!(online["items"].as_array().expect("items").len(), 1);
    let offline = service.get("/api/v1/bikes?online=false", &token).await;
    assert_eq!(offline["items"].as_array().expect("items").len(), 0);

    let count = service.get(&format!("/api/v1/bikes/{device}/telemetry/count"), &token).await;
    assert_eq!(count["count"], 10);
    let page = service.get(&format!("/api/v1/bikes/{device}/telemetry?limit=4"), &token).await;
    let seqs: Vec<u64> =
        page["items"].as_array().expect("items").iter().map(|r| r["seq"].as_u64().expect("seq")).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    let cursor = page["next"].as_str().expect("a next page");
    let rest = service.get(&format!("/api/v1/bikes/{device}/telemetry?cursor={cursor}"), &token).await;
    assert_eq!(rest["items"].as_array().expect("items").len(), 6);
    assert!(rest.get("next").is_none(), "{rest}");
    let buckets = service.get(&format!("/api/v1/bikes/{device}/telemetry?every=1h"), &token).await;
    let counted: u64 =
        buckets["buckets"].as_array().expect("buckets").iter().map(|b| b["count"].as_u64().expect("n")).sum();
    assert_eq!(counted, 10, "{buckets}");
    let some = service
        .get(&format!("/api/v1/bikes/{device}/telemetry?every=1h&fields=speed_kmh,battery_soc_pct"), &token)
        .await;
    let (some, all) = (some["buckets"].as_array().expect("buckets"), buckets["buckets"].as_array().expect("buckets"));
    assert_eq!(some.len(), all.len());
    for (bucket, whole) in some.iter().zip(all) {
        let names: Vec<&str> = bucket["stats"].as_object().expect("stats").keys().map(String::as_str).collect();
        assert_eq!(names, ["battery_soc_pct", "speed_kmh"], "{bucket}");
        assert_eq!(bucket["stats"]["speed_kmh"], whole["stats"]["speed_kmh"], "the same figures");
        assert_eq!(bucket["count"], whole["count"]);
    }

    // The live stream saw every packet, in order, each with its seq as id.
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + support::DEADLINE;
    while text.matches("event: telemetry").count() < 10 {
        let chunk =
            tokio::time::timeout_at(deadline, live.next()).await.expect("live events").expect("open").expect("bytes");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    for seq in 1..=10 {
        assert!(text.contains(&format!("id: {seq}\nevent: telemetry\n")), "{text}");
    }

    // Resuming after 7 gives 8, 9, 10 from the store, and nothing else.
    let resumed = service
        .http
        .get(service.url(&format!("/api/v1/bikes/{device}/live")))
        .bearer_auth(&token)
        .header("Last-Event-ID", "7")
        .send()
        .await
        .expect("live");
    let mut resumed = resumed.bytes_stream();
    let mut text = String::new();
    while text.matches("event: telemetry").count() < 3 {
        let chunk =
            tokio::time::timeout_at(deadline, resumed.next()).await.expect("events").expect("open").expect("bytes");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let ids: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("id: ")).collect();
    assert_eq!(ids, ["8", "9", "10"], "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_revoked_through_the_api_quarantines_the_bikes_packets_at_once() {
    let (_dir, service, token) = started().await;
    let (device, cert, key, serial) = certified(&service, &token, "SN-2").await;
    let ca = service.text("/api/v1/ca.pem", &token).await;
    let bike = BikeClient::connect_to(service.broker_port, &ca, &device, &cert, &key);
    bike.publish(Kind::Telemetry, envelope(&device, 1, TimeDelta::zero()).encode_to_vec()).await;
    let count = format!("/api/v1/bikes/{device}/telemetry/count");
    wait_for("the first packet to be stored", || async { service.get(&count, &token).await["count"] == 1 }).await;

    let revoked = revoke(&service, &token, &serial, "key_compromise").await;
    assert_eq!(revoked["revocation_reason"], "key_compromise");
    let crl = service.text("/api/v1/crl.pem", &token).await;
    assert!(crl.contains("BEGIN X509 CRL"), "{crl}");
    let written = std::fs::read_to_string(service.data_dir.join("crl.pem")).expect("the CRL is written for the broker");
    assert!(written.contains("BEGIN X509 CRL"));

    // The same session, still open: its packets go to quarantine as `revoked`.
    bike.publish(Kind::Telemetry, envelope(&device, 2, TimeDelta::zero()).encode_to_vec()).await;
    wait_for("the packet to be quarantined as revoked", || async {
        let page = service.get(&format!("/api/v1/quarantine?reason=revoked&device_id={device}"), &token).await;
        !page["items"].as_array().expect("items").is_empty()
    })
    .await;
    assert_eq!(service.get(&count, &token).await["count"], 1, "nothing of a revoked bike is stored");
    let metrics = service.text("/metrics", &token).await;
    assert!(metrics.contains(r#"fleet_ingest_quarantined_total{reason="revoked"} 1"#), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_or_foreign_certificate_is_refused_by_the_embedded_broker_at_its_next_connect() {
    let (_dir, service, token) = started().await;
    let (device, cert, key, serial) = certified(&service, &token, "SN-R").await;
    let ca = service.text("/api/v1/ca.pem", &token).await;
    let before = BikeClient::connect_to(service.broker_port, &ca, &device, &cert, &key);
    wait_for("the bike to connect", || async { before.is_connected() }).await;
    drop(before);
    revoke(&service, &token, &serial, "superseded").await;

    let after = BikeClient::connect_to(service.broker_port, &ca, &device, &cert, &key);
    wait_for("the revoked bike to be refused", || async { after.refused().is_some() }).await;
    assert!(!after.is_connected(), "a revoked certificate connected");
    let why = after.refused().expect("refused");
    assert!(why.contains("Tls") || why.contains("Io"), "refused in the TLS handshake: {why}");

    // A certificate naming a registered bike, from a CA that is not the fleet's.
    let (other, _, _, _) = certified(&service, &token, "SN-F").await;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(rcgen::DnType::CommonName, other.as_str());
    let key = rcgen::KeyPair::generate().expect("key");
    let foreign = params.self_signed(&key).expect("self-signed");
    let stranger = BikeClient::connect_to(service.broker_port, &ca, &other, &foreign.pem(), &key.serialize_pem());
    wait_for("the foreign certificate to be refused", || async { stranger.refused().is_some() }).await;
    assert!(!stranger.is_connected(), "a certificate from another CA connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_holds_each_bike_to_its_own_client_id_topics_and_commands() {
    let (_dir, service, token) = started().await;
    let ca = service.text("/api/v1/ca.pem", &token).await;
    let (victim, victim_cert, victim_key, _) = certified(&service, &token, "SN-V").await;
    let (intruder, intruder_cert, intruder_key, _) = certified(&service, &token, "SN-I").await;
    let (listener, listener_cert, listener_key, _) = certified(&service, &token, "SN-L").await;
    let count = |device: &DeviceId| format!("/api/v1/bikes/{device}/telemetry/count");

    let bike = BikeClient::connect_to(service.broker_port, &ca, &victim, &victim_cert, &victim_key);
    wait_for("the bike to connect", || async { bike.is_connected() }).await;

    // Another bike's client id, with its own certificate: refused, and the bike stays connected.
    let takeover = BikeClient::connect_to(service.broker_port, &ca, &victim, &intruder_cert, &intruder_key);
    wait_for("the takeover to be refused", || async { takeover.refused().is_some() }).await;
    assert!(takeover.refused().expect("refused").contains("BadClientId"), "{:?}", takeover.refused());
    assert!(!takeover.is_connected());
    drop(takeover);
    assert!(service.log().contains("another client id"), "{}", service.log());
    bike.publish(Kind::Telemetry, envelope(&victim, 1, TimeDelta::zero()).encode_to_vec()).await;
    bike.wait_acked(1).await;
    assert!(bike.is_connected() && bike.refused().is_none(), "the bike's connection was taken: {:?}", bike.refused());

    // Publishing on another bike's topic, as that bike: acknowledged (MQTT 3.1.1 has no
    // refusal, and mosquitto's ACL does the same) and dropped; the forger stays connected.
    let forger = BikeClient::connect_to(service.broker_port, &ca, &intruder, &intruder_cert, &intruder_key);
    wait_for("the intruder to connect", || async { forger.is_connected() }).await;
    forger
        .publish_on(&format!("bikes/{victim}/telemetry"), envelope(&victim, 2, TimeDelta::zero()).encode_to_vec())
        .await;
    forger.wait_acked(1).await;
    forger.publish(Kind::Telemetry, envelope(&intruder, 1, TimeDelta::zero()).encode_to_vec()).await;
    forger.wait_acked(2).await;
    wait_for("the forger's own packet to be stored", || async {
        service.get(&count(&intruder), &token).await["count"] == 1
    })
    .await;
    assert!(forger.refused().is_none(), "{:?}", forger.refused());
    assert!(service.log().contains("outside its own topics"), "{}", service.log());
    // The bike's own packet after it is stored: the forged one, sent before, is not.
    bike.publish(Kind::Telemetry, envelope(&victim, 3, TimeDelta::zero()).encode_to_vec()).await;
    bike.wait_acked(2).await;
    wait_for("the bike's packets to be stored", || async { service.get(&count(&victim), &token).await["count"] == 2 })
        .await;
    let stored = service.get(&format!("/api/v1/bikes/{victim}/telemetry"), &token).await;
    let seqs: Vec<u64> =
        stored["items"].as_array().expect("items").iter().map(|r| r["seq"].as_u64().expect("seq")).collect();
    assert_eq!(seqs, [1, 3], "{stored}");
    drop(forger);

    // Subscribing to another bike's commands: disconnected.
    let snoop = BikeClient::connect_to(service.broker_port, &ca, &listener, &listener_cert, &listener_key);
    wait_for("the listener to connect", || async { snoop.is_connected() }).await;
    snoop.client.subscribe(format!("bikes/{victim}/commands/#"), rumqttc::QoS::AtLeastOnce).await.expect("queued");
    wait_for("the snoop to be disconnected", || async { snoop.refused().is_some() }).await;
    assert!(service.log().contains("outside its own commands"), "{}", service.log());

    // Its own commands are fine.
    let own = BikeClient::connect_to(service.broker_port, &ca, &intruder, &intruder_cert, &intruder_key);
    wait_for("the bike to connect", || async { own.is_connected() }).await;
    own.client.subscribe(format!("bikes/{intruder}/commands/#"), rumqttc::QoS::AtLeastOnce).await.expect("queued");
    own.publish(Kind::Telemetry, envelope(&intruder, 1, TimeDelta::zero()).encode_to_vec()).await;
    own.wait_acked(1).await;
    assert!(own.refused().is_none(), "{:?}", own.refused());
}

/// One bad request: what is sent, and the status and code it must get.
struct Bad {
    method: Method,
    path: String,
    token: Option<String>,
    body: Option<Body>,
    status: StatusCode,
    code: &'static str,
}

enum Body {
    Json(Value),
    Raw(&'static str, String),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_request_gets_a_problem_with_a_stable_code_and_changes_nothing() {
    let (_dir, service, admin) = started().await;
    let reader = service.create_token("reader", "read");
    let writer = service.create_token("writer", "write");
    let (device, _, _, serial) = certified(&service, &admin, "SN-3").await;
    let before_bikes = service.get("/api/v1/bikes?decommissioned=true", &admin).await;
    let before_certs = service.get(&format!("/api/v1/bikes/{device}/certificates"), &admin).await;

    let bike = |fields: Value| {
        let mut body = json!({ "serial": "SN-NEW", "model": "City 3", "firmware_version": "1.0.0" });
        for (k, v) in fields.as_object().expect("object") {
            body[k] = v.clone();
        }
        Some(Body::Json(body))
    };
    let bad = |method: Method, path: &str, token: &str, body: Option<Body>, status: u16, code: &'static str| Bad {
        method,
        path: path.to_owned(),
        token: Some(token.to_owned()),
        body,
        status: StatusCode::from_u16(status).expect("status"),
        code,
    };
    let (a, r, w) = (admin.as_str(), reader.as_str(), writer.as_str());
    let certs = format!("/api/v1/bikes/{device}/certificates");
    let history = format!("/api/v1/bikes/{device}/telemetry");
    let revoke = format!("/api/v1/certificates/{serial}/revoke");
    let mut cases = vec![
        Bad { token: None, ..bad(Method::GET, "/api/v1/bikes", a, None, 401, "unauthenticated") },
        bad(Method::GET, "/api/v1/bikes", "fltk_not-a-token", None, 401, "unauthenticated"),
        bad(Method::GET, "/api/v1/bikes", "Basic abc", None, 401, "unauthenticated"),
        bad(Method::GET, "/metrics", "nope", None, 401, "unauthenticated"),
        bad(Method::POST, "/api/v1/bikes", r, bike(json!({})), 403, "insufficient_scope"),
        bad(Method::POST, &revoke, w, Some(Body::Json(json!({ "reason": "superseded" }))), 403, "insufficient_scope"),
        bad(Method::DELETE, &format!("/api/v1/bikes/{device}"), w, None, 403, "insufficient_scope"),
        bad(
            Method::POST,
            "/api/v1/bikes",
            a,
            Some(Body::Raw("text/plain", "{}".into())),
            415,
            "unsupported_media_type",
        ),
        bad(
            Method::POST,
            "/api/v1/bikes",
            a,
            Some(Body::Raw("application/json", "{not json".into())),
            400,
            "malformed_json",
        ),
        bad(Method::POST, "/api/v1/bikes", a, Some(Body::Json(json!({ "serial": "x" }))), 422, "validation_failed"),
        bad(Method::POST, "/api/v1/bikes", a, bike(json!({ "colour": "red" })), 422, "validation_failed"),
        bad(Method::POST, "/api/v1/bikes", a, bike(json!({ "serial": "" })), 422, "validation_failed"),
        bad(Method::POST, "/api/v1/bikes", a, bike(json!({ "serial": "x".repeat(65) })), 422, "validation_failed"),
        bad(Method::POST, "/api/v1/bikes", a, bike(json!({ "model": "a\u{7}b" })), 422, "validation_failed"),
        bad(Method::POST, "/api/v1/bikes", a, bike(json!({ "firmware_version": "1 0" })), 422, "validation_failed"),
        bad(Method::POST, "/api/v1/bikes", a, bike(json!({ "serial": "SN-3" })), 409, "serial_taken"),
        bad(Method::GET, "/api/v1/bikes/bike-0000000000000000", a, None, 404, "bike_not_found"),
        bad(Method::GET, "/api/v1/bikes/NOT%20AN%20ID", a, None, 404, "bike_not_found"),
        bad(Method::GET, "/api/v1/bikes?limit=0", a, None, 400, "invalid_query"),
        bad(Method::GET, "/api/v1/bikes?limit=501", a, None, 400, "invalid_query"),
        bad(Method::GET, "/api/v1/bikes?online=maybe", a, None, 400, "invalid_query"),
        bad(Method::GET, "/api/v1/bikes?colour=red", a, None, 400, "invalid_query"),
        bad(Method::POST, &certs, a, Some(Body::Json(json!({ "csr_pem": "not a csr" }))), 422, "validation_failed"),
        bad(
            Method::POST,
            &certs,
            a,
            Some(Body::Json(json!({ "csr_pem": "x".repeat(20_000) }))),
            422,
            "validation_failed",
        ),
        bad(Method::POST, &certs, a, Some(Body::Json(json!({ "validity_days": 0 }))), 422, "validation_failed"),
        bad(Method::POST, &certs, a, Some(Body::Json(json!({ "validity_days": 99_999 }))), 422, "validation_failed"),
        bad(
            Method::POST,
            "/api/v1/bikes/bike-0000000000000000/certificates",
            a,
            Some(Body::Json(json!({}))),
            404,
            "bike_not_found",
        ),
        bad(Method::POST, &revoke, a, Some(Body::Json(json!({ "reason": "bored" }))), 422, "validation_failed"),
        bad(Method::POST, &revoke, a, Some(Body::Json(json!({}))), 422, "validation_failed"),
        bad(
            Method::POST,
            "/api/v1/certificates/abcdef/revoke",
            a,
            Some(Body::Json(json!({ "reason": "superseded" }))),
            404,
            "certificate_not_found",
        ),
        bad(
            Method::POST,
            "/api/v1/certificates/not-hex/revoke",
            a,
            Some(Body::Json(json!({ "reason": "superseded" }))),
            404,
            "certificate_not_found",
        ),
        bad(Method::GET, &format!("{history}?from=yesterday"), a, None, 400, "invalid_query"),
        bad(
            Method::GET,
            &format!("{history}?from=2026-12-06T12:00:00Z&to=2026-12-06T11:00:00Z"),
            a,
            None,
            400,
            "invalid_query",
        ),
        bad(Method::GET, &format!("{history}?every=fortnightly"), a, None, 400, "invalid_query"),
        bad(Method::GET, &format!("{history}?every=0s"), a, None, 400, "invalid_query"),
        bad(
            Method::GET,
            &format!("{history}?every=1s&from=2026-01-01T00:00:00Z&to=2026-12-01T00:00:00Z"),
            a,
            None,
            400,
            "too_many_buckets",
        ),
        bad(Method::GET, &format!("{history}?every=1m&limit=5"), a, None, 400, "invalid_query"),
        bad(Method::GET, &format!("{history}?every=1m&fields=speed"), a, None, 400, "invalid_query"),
        bad(Method::GET, &format!("{history}?every=1m&fields="), a, None, 400, "invalid_query"),
        bad(Method::GET, &format!("{history}?fields=speed_kmh"), a, None, 400, "invalid_query"),
        bad(Method::GET, &format!("{history}?limit=0"), a, None, 400, "invalid_query"),
        bad(Method::GET, &format!("{history}?limit=10001"), a, None, 400, "invalid_query"),
        bad(Method::GET, &format!("{history}?cursor=yesterday"), a, None, 400, "invalid_query"),
        bad(Method::GET, "/api/v1/bikes/bike-0000000000000000/telemetry", a, None, 404, "bike_not_found"),
        bad(Method::GET, "/api/v1/quarantine?reason=gremlins", a, None, 400, "invalid_query"),
        bad(Method::GET, "/api/v1/quarantine?limit=0", a, None, 400, "invalid_query"),
        bad(Method::GET, "/api/v1/quarantine?cursor=x", a, None, 400, "invalid_query"),
        bad(Method::GET, "/api/v1/nowhere", a, None, 404, "not_found"),
        bad(Method::PUT, "/api/v1/bikes", a, None, 405, "method_not_allowed"),
        bad(Method::DELETE, "/api/v1/bikes/bike-0000000000000000", a, None, 404, "bike_not_found"),
    ];
    cases.push(bad(
        Method::POST,
        "/api/v1/bikes",
        a,
        Some(Body::Raw("application/json", format!("{{\"serial\":\"{}\"}}", "x".repeat(70_000)))),
        413,
        "payload_too_large",
    ));

    for case in &cases {
        let mut request = service.http.request(case.method.clone(), service.url(&case.path));
        if let Some(token) = &case.token {
            request = request.header(
                "Authorization",
                if token.starts_with("Basic") { token.clone() } else { format!("Bearer {token}") },
            );
        }
        request = match &case.body {
            Some(Body::Json(value)) => request.json(value),
            Some(Body::Raw(content_type, text)) => request.header("Content-Type", *content_type).body(text.clone()),
            None => request,
        };
        let response = request.send().await.expect("answers");
        let status = response.status();
        let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap_or("").to_owned());
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let what = format!("{} {}", case.method, case.path);
        assert_eq!(status, case.status, "{what}: {body}");
        assert_eq!(content_type.as_deref(), Some("application/problem+json"), "{what}");
        assert_eq!(body["code"], case.code, "{what}: {body}");
        assert!(!body["detail"].as_str().unwrap_or("").is_empty(), "{what}: a detail for people: {body}");
    }

    // Last-Event-ID that no stream sent.
    let response = service
        .http
        .get(service.url(&format!("/api/v1/bikes/{device}/live")))
        .bearer_auth(&admin)
        .header("Last-Event-ID", "-3")
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.json::<Value>().await.expect("problem")["code"], "invalid_last_event_id");

    // Revoking twice: the second is a conflict, and the first stands.
    let (status, _) = service.call(Method::POST, &revoke, &admin, Some(json!({ "reason": "superseded" }))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = service.call(Method::POST, &revoke, &admin, Some(json!({ "reason": "key_compromise" }))).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("already_revoked")));
    let certificates = service.get(&format!("/api/v1/bikes/{device}/certificates"), &admin).await;
    assert_eq!(certificates["items"][0]["revocation_reason"], "superseded");
    let mut expected = before_certs.clone();
    expected["items"][0]["revoked_at"] = certificates["items"][0]["revoked_at"].clone();
    expected["items"][0]["revocation_reason"] = json!("superseded");
    assert_eq!(certificates, expected, "only the one revocation changed anything");

    // Nothing else changed: no bike registered, decommissioned or altered.
    assert_eq!(service.get("/api/v1/bikes?decommissioned=true", &admin).await, before_bikes);

    // The OpenAPI document lists every route.
    let openapi: Value =
        service.http.get(service.url("/api/openapi.json")).send().await.expect("doc").json().await.expect("json");
    for path in [
        "/api/v1/bikes",
        "/api/v1/bikes/{device_id}",
        "/api/v1/bikes/{device_id}/telemetry",
        "/api/v1/bikes/{device_id}/live",
        "/api/v1/quarantine",
        "/api/v1/certificates/{serial}/revoke",
        "/metrics",
    ] {
        assert!(openapi["paths"].get(path).is_some(), "{path} is in the OpenAPI document");
    }
}

/// The API remembers a good token for a few seconds: a token revoked from the command line
/// (another process) is refused once that time is up, and then for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_from_the_command_line_is_refused_within_seconds() {
    let (_dir, service, _admin) = started().await;
    let reader = service.create_token("reader", "read");
    let (status, _) = service.call(Method::GET, "/api/v1/bikes", &reader, None).await;
    assert_eq!(status, StatusCode::OK);
    let listed = service.admin(&["tokens"]);
    let id = listed
        .lines()
        .find_map(|line| line.split('\t').nth(1).filter(|name| *name == "reader").and(line.split('\t').next()))
        .unwrap_or_else(|| panic!("the reader token is listed: {listed}"))
        .to_owned();
    assert!(service.admin(&["revoke-token", &id]).contains("Revoked"));
    wait_for("the revoked token to be refused", || async {
        service.call(Method::GET, "/api/v1/bikes", &reader, None).await.0 == StatusCode::UNAUTHORIZED
    })
    .await;
    let (status, body) = service.call(Method::GET, "/api/v1/bikes/some-bike", &reader, None).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthenticated")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decommissioned_bike_is_listed_no_more_and_sigterm_stops_the_service_cleanly() {
    let (_dir, mut service, token) = started().await;
    let (device, _, _, _) = certified(&service, &token, "SN-4").await;
    // Read first, so that the service remembers it in service.
    let before = service.get(&format!("/api/v1/bikes/{device}"), &token).await;
    assert!(before["decommissioned_at"].is_null(), "{before}");
    let (status, view) = service.call(Method::DELETE, &format!("/api/v1/bikes/{device}"), &token, None).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert!(view["decommissioned_at"].is_string());
    let after = service.get(&format!("/api/v1/bikes/{device}"), &token).await;
    assert_eq!(after["decommissioned_at"], view["decommissioned_at"], "not the bike remembered from before");
    assert_eq!(service.get("/api/v1/bikes", &token).await["items"], json!([]));
    let all = service.get("/api/v1/bikes?decommissioned=true", &token).await;
    assert_eq!(all["items"].as_array().expect("items").len(), 1);
    let certificates = service.get(&format!("/api/v1/bikes/{device}/certificates"), &token).await;
    assert_eq!(certificates["items"][0]["revocation_reason"], "cessation_of_operation");
    let (status, body) = service.call(Method::DELETE, &format!("/api/v1/bikes/{device}"), &token, None).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("bike_decommissioned")));

    // A live stream open at shutdown ends with it, rather than holding it up.
    let (other, _, _, _) = certified(&service, &token, "SN-5").await;
    let live = service
        .http
        .get(service.url(&format!("/api/v1/bikes/{other}/live")))
        .bearer_auth(&token)
        .send()
        .await
        .expect("live");
    assert_eq!(live.status(), StatusCode::OK);
    let exit = service.terminate().await;
    assert!(exit.success(), "SIGTERM is a clean stop: {exit:?}\n{}", service.log());
    drop(live);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_bikes_ride_against_the_zero_config_service_and_every_acknowledged_packet_is_stored_once() {
    let (_dir, service, token) = started().await;
    let report = support::ride::ride(&service, &token, 5, std::time::Duration::from_secs(15)).await;
    support::ride::check(&service, &token, &report).await;
}
