//! The ingest against a real mosquitto, over mutual TLS: nothing acknowledged is lost, nothing
//! is stored twice, and bikes that may not publish do not get stored.

mod support;

use std::{sync::atomic::Ordering, time::SystemTime};

use chrono::TimeDelta;
use fleet_proto::{Message, topic::Kind};
use fleet_telemetry::{
    packet::Reason,
    pki::Reason as RevocationReason,
    registry::Standing,
    store::{QuarantineFilter, TelemetryStore},
};
use support::*;

/// Publishes `total` telemetry packets from `bike` (seq 0 on), in a task of their own.
fn publish_in_background(bike: &BikeClient, total: u64) -> tokio::task::JoinHandle<()> {
    let client = bike.client.clone();
    let device = bike.device.clone();
    tokio::spawn(async move {
        for seq in 0..total {
            let payload = envelope(&device, seq, TimeDelta::seconds(1)).encode_to_vec();
            let topic = fleet_proto::Topic::new(device.clone(), Kind::Telemetry).to_string();
            client.publish(topic, rumqttc::QoS::AtLeastOnce, false, payload).await.expect("queued");
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto: run `cargo xtask test`"]
async fn every_acknowledged_packet_is_stored_once_and_the_latest_state_is_the_last_packet() {
    let fleet = Fleet::start().await;
    let ingest = fleet.start_ingest();
    ingest.connected().await;
    let mut bikes = Vec::new();
    for i in 0..5 {
        let identity = fleet.register(&format!("SN-{i}")).await;
        bikes.push(BikeClient::connect(&fleet, &identity));
    }
    const LIVE: u64 = 120;
    for bike in &bikes {
        // An offline buffer first, recorded an hour ago, then live packets.
        let offline: Vec<_> = (1_000..1_050).map(|seq| envelope(&bike.device, seq, TimeDelta::hours(1))).collect();
        bike.publish(Kind::Batch, batch(offline)).await;
        for seq in 0..LIVE {
            bike.publish(Kind::Telemetry, envelope(&bike.device, 2_000 + seq, TimeDelta::seconds(1)).encode_to_vec())
                .await;
        }
    }
    for bike in &bikes {
        bike.wait_acked(1 + LIVE).await;
    }
    for bike in &bikes {
        wait_for("every packet stored", || async { fleet.count(&bike.device).await == 50 + LIVE }).await;
    }
    // Everything is in: a redelivery now would show as a count above.
    let total = fleet.store.count(None).await.expect("count");
    assert_eq!(total, 5 * (50 + LIVE));
    for bike in &bikes {
        let state = fleet.latest.get(&bike.device).expect("a latest state");
        assert_eq!(state.seq, 2_000 + LIVE - 1, "the newest packet, not the late batch");
    }
    assert_eq!(ingest.stats.quarantined.load(Ordering::Relaxed), 0);
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto: run `cargo xtask test`"]
async fn an_ingest_that_dies_mid_stream_loses_nothing_and_stores_nothing_twice() {
    let fleet = Fleet::start().await;
    let identity = fleet.register("SN-crash").await;
    let bike = BikeClient::connect(&fleet, &identity);
    let first = fleet.start_ingest();
    first.connected().await;
    const TOTAL: u64 = 3_000;
    let publisher = publish_in_background(&bike, TOTAL);
    // Mid-stream: some stored, not all.
    wait_for("the ingest to store a first part", || async { fleet.count(&bike.device).await >= 300 }).await;
    first.task.abort();
    let _ = first.task.await;
    let stored_at_crash = fleet.count(&bike.device).await;
    // What the bike had acknowledged by then is all still there after the restart.
    let second = fleet.start_ingest();
    publisher.await.expect("published");
    bike.wait_acked(TOTAL).await;
    wait_for("every packet stored", || async { fleet.count(&bike.device).await >= TOTAL }).await;
    assert_eq!(fleet.count(&bike.device).await, TOTAL, "exactly once (stored {stored_at_crash} before the crash)");
    let history = fleet
        .store
        .history(
            &bike.device,
            fleet_telemetry::store::Range {
                from: chrono::Utc::now() - TimeDelta::hours(1),
                to: chrono::Utc::now() + TimeDelta::hours(1),
            },
            None,
            10_000,
        )
        .await
        .expect("history");
    let mut seqs: Vec<u64> = history.records.iter().map(|r| r.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..TOTAL).collect::<Vec<_>>());
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto: run `cargo xtask test`"]
async fn a_broker_restart_mid_stream_loses_nothing() {
    let mut fleet = Fleet::start().await;
    let identity = fleet.register("SN-restart").await;
    let ingest = fleet.start_ingest();
    ingest.connected().await;
    let bike = BikeClient::connect(&fleet, &identity);
    for seq in 0..500 {
        bike.publish(Kind::Telemetry, envelope(&bike.device, seq, TimeDelta::seconds(2)).encode_to_vec()).await;
    }
    wait_for("a first part stored", || async { fleet.count(&bike.device).await >= 100 }).await;
    fleet.broker.restart().await;
    for seq in 500..1_000 {
        bike.publish(Kind::Telemetry, envelope(&bike.device, seq, TimeDelta::seconds(1)).encode_to_vec()).await;
    }
    bike.wait_acked(1_000).await;
    wait_for("every packet stored", || async { fleet.count(&bike.device).await >= 1_000 }).await;
    assert_eq!(fleet.count(&bike.device).await, 1_000, "exactly once");
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto: run `cargo xtask test`"]
async fn a_revoked_bike_is_quarantined_on_its_open_session_and_refused_at_its_next_connect() {
    let fleet = Fleet::start().await;
    let identity = fleet.register("SN-stolen").await;
    let ingest = fleet.start_ingest();
    ingest.connected().await;
    let bike = BikeClient::connect(&fleet, &identity);
    bike.publish(Kind::Telemetry, envelope(&bike.device, 1, TimeDelta::seconds(1)).encode_to_vec()).await;
    wait_for("the first packet stored", || async { fleet.count(&bike.device).await == 1 }).await;

    let (_, crl) = fleet
        .registry
        .revoke("test", &identity.serial, RevocationReason::KeyCompromise, SystemTime::now())
        .await
        .expect("revoked");
    fleet.standings.refresh(&fleet.registry).await.expect("standings");
    assert_eq!(fleet.standings.get(&bike.device), Some(Standing::Revoked));
    fleet.broker.crl_publisher().publish(&fleet.authority, &crl, SystemTime::now()).expect("CRL published");

    // The session opened before stays open (mosquitto does not close it), but nothing on it
    // is stored any more.
    for seq in 2..12 {
        bike.publish(Kind::Telemetry, envelope(&bike.device, seq, TimeDelta::seconds(1)).encode_to_vec()).await;
    }
    bike.wait_acked(11).await;
    let revoked = QuarantineFilter { device_id: Some(bike.device.to_string()), reason: Some(Reason::Revoked) };
    wait_for("the packets quarantined as revoked", || async {
        fleet.store.quarantined(&revoked, None, 100).await.expect("quarantine").len() == 10
    })
    .await;
    assert_eq!(fleet.count(&bike.device).await, 1, "none stored after the revocation");

    // At its next connect, mosquitto refuses the certificate.
    let again = BikeClient::connect(&fleet, &identity);
    wait_for("mosquitto to refuse the revoked certificate", || async { again.refused().is_some() }).await;
    assert!(!again.is_connected());
    let refused = again.refused().unwrap_or_default();
    assert!(
        refused.contains("Tls")
            || refused.contains("ConnectionAborted")
            || refused.contains("reset")
            || refused.contains("Io"),
        "refused at the TLS handshake: {refused}"
    );
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto: run `cargo xtask test`"]
async fn a_bike_cannot_publish_as_another_and_a_packet_naming_another_is_quarantined() {
    let fleet = Fleet::start().await;
    let ours = fleet.register("SN-a").await;
    let theirs = fleet.register("SN-b").await;
    let ingest = fleet.start_ingest();
    ingest.connected().await;
    let bike = BikeClient::connect(&fleet, &ours);

    // On the other bike's topic: the ACL drops it (MQTT 3.1.1 still acknowledges it).
    let other_topic = fleet_proto::Topic::new(theirs.bike.device_id.clone(), Kind::Telemetry).to_string();
    bike.publish_on(&other_topic, envelope(&theirs.bike.device_id, 1, TimeDelta::seconds(1)).encode_to_vec()).await;
    // On its own topic, a packet that names the other bike.
    bike.publish(Kind::Telemetry, envelope(&theirs.bike.device_id, 2, TimeDelta::seconds(1)).encode_to_vec()).await;
    // And a good one, which shows the two before it were handled.
    bike.publish(Kind::Telemetry, envelope(&bike.device, 3, TimeDelta::seconds(1)).encode_to_vec()).await;
    bike.wait_acked(3).await;
    wait_for("the good packet stored", || async { fleet.count(&bike.device).await == 1 }).await;
    let mismatch = QuarantineFilter { device_id: Some(bike.device.to_string()), reason: Some(Reason::DeviceMismatch) };
    wait_for("the mismatch quarantined", || async {
        fleet.store.quarantined(&mismatch, None, 10).await.expect("quarantine").len() == 1
    })
    .await;
    assert_eq!(fleet.count(&theirs.bike.device_id).await, 0, "nothing stored for the other bike");
    let all = fleet.store.quarantined(&QuarantineFilter::default(), None, 10).await.expect("quarantine");
    assert_eq!(all.len(), 1, "the ACL dropped the other publish before the ingest saw it: {all:?}");
    ingest.stop().await;
}

/// MQTT names a session by the client id the client sends. A bike that sends another bike's,
/// or the ingest's, must not take over that connection: the broker names each bike's session
/// by its certificate instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto: run `cargo xtask test`"]
async fn a_bike_sending_another_client_id_takes_over_no_one_s_connection() {
    let fleet = Fleet::start().await;
    let ours = fleet.register("SN-a").await;
    let theirs = fleet.register("SN-b").await;
    let ingest = fleet.start_ingest();
    ingest.connected().await;
    let bike = BikeClient::connect(&fleet, &ours);
    bike.publish(Kind::Telemetry, envelope(&bike.device, 1, TimeDelta::seconds(1)).encode_to_vec()).await;
    bike.wait_acked(1).await;

    // The other bike, with its own certificate, sends our bike's client id, then the ingest's.
    let ingest_id = fleet_proto::DeviceId::parse(&fleet.ingest_settings().client_id).expect("an id");
    for claimed in [&bike.device, &ingest_id] {
        let intruder = BikeClient::connect_as(&fleet, claimed, &theirs.cert_pem, &theirs.key_pem);
        wait_for("the other bike to connect", || async { intruder.is_connected() }).await;
        // It is itself: what it publishes on its own topic is stored as its own.
        let seq = fleet.count(&theirs.bike.device_id).await + 1;
        let topic = fleet_proto::Topic::new(theirs.bike.device_id.clone(), Kind::Telemetry).to_string();
        intruder.publish_on(&topic, envelope(&theirs.bike.device_id, seq, TimeDelta::seconds(1)).encode_to_vec()).await;
        wait_for("its packet stored", || async { fleet.count(&theirs.bike.device_id).await == seq }).await;
        // Our bike's connection and the ingest's were not closed under them. (Had the broker
        // closed one, its client would have seen that before anything on a new connection.)
        let seq = bike.acked() + 1;
        bike.publish(Kind::Telemetry, envelope(&bike.device, seq, TimeDelta::seconds(1)).encode_to_vec()).await;
        bike.wait_acked(seq).await;
        wait_for("our packet stored", || async { fleet.count(&bike.device).await == seq }).await;
        assert_eq!(bike.refused(), None, "our bike was disconnected when another sent its client id");
        assert_eq!(
            ingest.stats.connections.load(Ordering::Relaxed),
            1,
            "the ingest was disconnected when a bike sent its client id"
        );
    }
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto: run `cargo xtask test`"]
async fn a_flood_of_bad_packets_is_counted_and_bounded_and_good_packets_still_get_stored() {
    let fleet = Fleet::start().await;
    let flooder = fleet.register("SN-flood").await;
    let good = fleet.register("SN-good").await;
    let ingest = fleet.start_ingest();
    ingest.connected().await;
    let flood = BikeClient::connect(&fleet, &flooder);
    let rider = BikeClient::connect(&fleet, &good);
    const BAD: u64 = 5_000;
    const GOOD: u64 = 300;
    let flooding = {
        let client = flood.client.clone();
        let topic = fleet_proto::Topic::new(flood.device.clone(), Kind::Telemetry).to_string();
        tokio::spawn(async move {
            for i in 0..BAD {
                let payload = format!("\u{ff}not protobuf {i}").into_bytes();
                client.publish(topic.clone(), rumqttc::QoS::AtLeastOnce, false, payload).await.expect("queued");
            }
        })
    };
    for seq in 0..GOOD {
        rider.publish(Kind::Telemetry, envelope(&rider.device, seq, TimeDelta::seconds(1)).encode_to_vec()).await;
    }
    flooding.await.expect("flooded");
    flood.wait_acked(BAD).await;
    rider.wait_acked(GOOD).await;
    wait_for("the good packets stored", || async { fleet.count(&rider.device).await == GOOD }).await;
    let malformed = Reason::ALL.iter().position(|r| *r == Reason::Malformed).expect("a reason");
    wait_for("every bad packet counted", || async { ingest.stats.by_reason[malformed].load(Ordering::Relaxed) == BAD })
        .await;
    // Every bad packet is counted, but the quarantine keeps only the newest, up to its cap.
    let kept = fleet.store.quarantined(&QuarantineFilter::default(), None, 10_000).await.expect("quarantine");
    assert!(kept.len() as u64 <= QUARANTINE_CAP, "{} entries kept", kept.len());
    assert!(kept.iter().all(|e| e.quarantined.reason == Reason::Malformed));
    assert_eq!(fleet.count(&flood.device).await, 0);
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto: run `cargo xtask test`"]
async fn the_service_killed_with_sigkill_mid_stream_loses_nothing_and_stores_nothing_twice() {
    fleet_telemetry::install_crypto_provider();
    let fleet = Fleet::start().await;
    let broker = format!("mqtts://127.0.0.1:{}", fleet.broker.ingest_port);
    let crl = fleet.dir.path().join("mosquitto").join("crl.pem");
    let (crl, reload) = (crl.display().to_string(), format!("pid:{}", fleet.broker.pid()));
    // Registered before the service starts, so that it knows them from its first packet.
    let mut identities = Vec::new();
    for i in 0..3 {
        identities.push(fleet.register(&format!("SN-kill-{i}")).await);
    }
    // The whole process, against the fleet's registry, store and mosquitto.
    let mut service = service::Service::start(
        fleet.dir.path(),
        &[
            ("FLEET_BROKER", broker.as_str()),
            ("FLEET_DATABASE_URL", fleet.database_url.as_str()),
            ("FLEET_CRL_PATH", crl.as_str()),
            ("FLEET_CRL_RELOAD", reload.as_str()),
            ("FLEET_BATCH_SIZE", "100"),
            ("FLEET_INFLIGHT", "200"),
        ],
    )
    .await;
    let token = service.create_token("test", "read");
    // The SQLite store belongs to the service's process: counts come through its API.
    let count = async |service: &service::Service, device: &fleet_proto::DeviceId| {
        service.get(&format!("/api/v1/bikes/{device}/telemetry/count"), &token).await["count"].as_u64().expect("count")
    };
    let bikes: Vec<BikeClient> = identities.iter().map(|identity| BikeClient::connect(&fleet, identity)).collect();
    const TOTAL: u64 = 2_000;
    let publishers: Vec<_> = bikes.iter().map(|bike| publish_in_background(bike, TOTAL / 2)).collect();
    // Mid-stream: the first bike has some stored, not all.
    wait_for("a first part stored", || async { count(&service, &bikes[0].device).await >= 200 }).await;
    service.kill_and_restart().await;
    for publisher in publishers {
        publisher.await.expect("published");
    }
    // The second half goes to the restarted service.
    for bike in &bikes {
        for seq in TOTAL / 2..TOTAL {
            bike.publish(Kind::Telemetry, envelope(&bike.device, seq, TimeDelta::seconds(1)).encode_to_vec()).await;
        }
    }
    for bike in &bikes {
        bike.wait_acked(TOTAL).await;
    }
    for bike in &bikes {
        wait_for("every packet stored", || async { count(&service, &bike.device).await >= TOTAL }).await;
        let stored = count(&service, &bike.device).await;
        assert_eq!(stored, TOTAL, "{}: exactly once\nservice: {}", bike.device, service.log());
    }
    assert!(service.log().matches("fleet-telemetry is up").count() == 2, "it was started twice");
}

/// The ingest's connection drops twice while the broker holds a backlog larger than the
/// packet-id space for it, and the ingest resumes its session each time: every packet the
/// broker acknowledged to the bike is stored, once. (mosquitto 2.0.11 overruns the ingest's
/// receive maximum after such a resume, tens of thousands in flight instead of 200.) Aborting
/// the ingest ends its batcher too; the next test cuts only the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto: run `cargo xtask test`"]
async fn an_ingest_resuming_its_session_behind_a_large_backlog_loses_nothing() {
    let fleet = Fleet::start_with(BrokerLimits { max_inflight: 200, max_queued: 1_000_000 }).await;
    let identity = fleet.register("SN-backlog").await;
    let bike = BikeClient::connect(&fleet, &identity);
    let first = fleet.start_ingest();
    first.connected().await;
    const TOTAL: u64 = 70_000;
    let publisher = publish_in_background(&bike, TOTAL);
    // Away without a word mid-stream, with messages in flight, as a connection dropped by a
    // missed keep-alive; the rest piles up at the broker.
    wait_for("the ingest to store a first part", || async { fleet.count(&bike.device).await >= 2_000 }).await;
    first.task.abort();
    let _ = first.task.await;
    publisher.await.expect("published");
    bike.wait_acked(TOTAL).await;
    // Resumed, and dropped again mid-way through the backlog, then resumed for good.
    let second = fleet.start_ingest();
    wait_for("the ingest to store more", || async { fleet.count(&bike.device).await >= 30_000 }).await;
    second.task.abort();
    let _ = second.task.await;
    let third = fleet.start_ingest();
    wait_for("every packet stored", || async { fleet.count(&bike.device).await >= TOTAL }).await;
    assert_eq!(fleet.count(&bike.device).await, TOTAL);
    third.stop().await;
}

/// The ingest's TCP connection is cut while its batcher holds a batch that came on it; the
/// process (batcher and all) keeps running. That batch's acknowledgements are not sent on the
/// next connection, where the old packet ids may name other messages: the broker sends those
/// messages again (DUP) and they are acknowledged there. Two more cuts follow, mid-way through
/// a backlog larger than the packet-id space; every packet is stored, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto: run `cargo xtask test`"]
async fn acknowledgements_from_a_cut_connection_are_not_sent_on_the_next() {
    let fleet = Fleet::start_with(BrokerLimits { max_inflight: 200, max_queued: 1_000_000 }).await;
    let proxy = faults::CutProxy::start(fleet.broker.ingest_port).await;
    let store = faults::GatedStore::shut(fleet.store.clone());
    let mut settings = fleet.ingest_settings();
    settings.port = proxy.port;
    let ingest = fleet.start_ingest_on(settings, store.clone());
    ingest.connected().await;
    let identity = fleet.register("SN-cut").await;
    let bike = BikeClient::connect(&fleet, &identity);
    const TOTAL: u64 = 70_000;
    let publisher = publish_in_background(&bike, TOTAL);

    // The batcher waits in the store with a batch from the first connection; the connection
    // is cut under it, and the ingest connects again before the batch is committed.
    wait_for("the batcher to hold a batch", || async { store.waiting() > 0 }).await;
    let held = store.waiting() as u64;
    proxy.cut();
    wait_for("the ingest to connect again", || async { ingest.stats.connections.load(Ordering::Relaxed) >= 2 }).await;
    store.open();
    wait_for("the held batch's acknowledgements to be dropped", || async {
        ingest.stats.superseded.load(Ordering::Relaxed) >= held
    })
    .await;

    // Cut twice more while the broker holds a backlog for the ingest.
    publisher.await.expect("published");
    bike.wait_acked(TOTAL).await;
    for (cut, stored) in [(3, 20_000), (4, 45_000)] {
        wait_for("the ingest to store more", || async { fleet.count(&bike.device).await >= stored }).await;
        proxy.cut();
        wait_for("the ingest to connect again", || async { ingest.stats.connections.load(Ordering::Relaxed) >= cut })
            .await;
    }
    wait_for("every packet stored", || async { fleet.count(&bike.device).await >= TOTAL }).await;
    assert_eq!(fleet.count(&bike.device).await, TOTAL, "every packet, once");
    assert!(ingest.stats.redelivered.load(Ordering::Relaxed) > 0, "the broker sent the held batch again");
    ingest.stop().await;
}
