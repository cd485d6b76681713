//! Fifty simulated bikes ride against the whole service, as production runs it: mosquitto with
//! client certificates, the CRL and the per-bike ACL, and each telemetry store.

mod support;

use std::time::Duration;

use support::{Fleet, ride, service::Service};

/// The service over `fleet`'s registry and mosquitto, with `store` as FLEET_STORE if given.
async fn service(fleet: &Fleet, store: Option<&str>) -> Service {
    let broker = format!("mqtts://127.0.0.1:{}", fleet.broker.ingest_port);
    let crl = fleet.dir.path().join("mosquitto").join("crl.pem").display().to_string();
    let reload = format!("pid:{}", fleet.broker.pid());
    let mut env = vec![
        ("FLEET_BROKER", broker.as_str()),
        ("FLEET_DATABASE_URL", fleet.database_url.as_str()),
        ("FLEET_CRL_PATH", crl.as_str()),
        ("FLEET_CRL_RELOAD", reload.as_str()),
    ];
    env.extend(store.map(|url| ("FLEET_STORE", url)));
    Service::start(fleet.dir.path(), &env).await
}

async fn fifty_bikes_ride(store: Option<&str>) {
    fleet_telemetry::install_crypto_provider();
    let fleet = Fleet::start().await;
    let service = service(&fleet, store).await;
    let token = service.create_token("sim", "admin");
    let report = ride::ride(&service, &token, 50, Duration::from_secs(30)).await;
    ride::check(&service, &token, &report).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto: run `cargo xtask test`"]
async fn fifty_simulated_bikes_ride_on_sqlite_and_every_acknowledged_packet_is_stored_once() {
    fifty_bikes_ride(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto and clickhouse-server: run `cargo xtask test`"]
async fn fifty_simulated_bikes_ride_on_clickhouse_and_every_acknowledged_packet_is_stored_once() {
    let clickhouse = fleet_telemetry::store::clickhouse::testing::ClickHouseServer::start();
    fifty_bikes_ride(Some(&format!("{}/fleet", clickhouse.url))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto and clickhouse-server: run `cargo xtask test`"]
async fn two_replicas_share_one_subscription_and_each_knows_every_bikes_latest_state() {
    use chrono::TimeDelta;
    use fleet_proto::{Message, topic::Kind};
    use reqwest::{Method, StatusCode};
    use support::{BikeClient, envelope, wait_for};

    fleet_telemetry::install_crypto_provider();
    let clickhouse = fleet_telemetry::store::clickhouse::testing::ClickHouseServer::start();
    let store = format!("{}/fleet", clickhouse.url);
    let fleet = Fleet::start().await;
    let mut identities = Vec::new();
    for i in 0..4 {
        identities.push(fleet.register(&format!("SN-replica-{i}")).await);
    }
    let broker = format!("mqtts://127.0.0.1:{}", fleet.broker.ingest_port);
    let crl = fleet.dir.path().join("mosquitto").join("crl.pem").display().to_string();
    let reload = format!("pid:{}", fleet.broker.pid());
    let mut replicas = Vec::new();
    for name in ["a", "b"] {
        // Each replica its own data directory, with the fleet's master key.
        let dir = fleet.dir.path().join(format!("replica-{name}"));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::copy(fleet.dir.path().join("master.key"), dir.join("master.key")).expect("master key");
        let client_id = format!("fleet-ingest-{name}");
        let env = [
            ("FLEET_BROKER", broker.as_str()),
            ("FLEET_DATABASE_URL", fleet.database_url.as_str()),
            ("FLEET_STORE", store.as_str()),
            ("FLEET_CRL_PATH", crl.as_str()),
            ("FLEET_CRL_RELOAD", reload.as_str()),
            ("FLEET_INGEST_CLIENT_ID", client_id.as_str()),
            ("FLEET_REPLICATED", "on"),
        ];
        replicas.push(Service::start(&dir, &env).await);
    }
    let token = replicas[0].create_token("test", "read");

    const PACKETS: u64 = 200;
    let bikes: Vec<BikeClient> = identities.iter().map(|identity| BikeClient::connect(&fleet, identity)).collect();
    for bike in &bikes {
        for seq in 1..=PACKETS {
            let ago = TimeDelta::milliseconds(i64::try_from(PACKETS - seq).expect("small") * 10);
            bike.publish(Kind::Telemetry, envelope(&bike.device, seq, ago).encode_to_vec()).await;
        }
    }
    for bike in &bikes {
        bike.wait_acked(PACKETS).await;
    }
    // Both replicas took a share of the messages...
    for replica in &replicas {
        let (replica, token) = (replica, &token);
        wait_for("each replica to store a share", || async move {
            replica
                .text("/metrics", token)
                .await
                .lines()
                .any(|line| line.strip_prefix("fleet_ingest_stored_total ").is_some_and(|n| n.trim() != "0"))
        })
        .await;
    }
    // ...and each knows every bike's newest packet, and counts them all once in the shared store.
    for replica in &replicas {
        for bike in &bikes {
            let path = format!("/api/v1/bikes/{}", bike.device);
            wait_for("every replica to know the newest packet", || async {
                replica.get(&path, &token).await["latest"]["seq"] == PACKETS
            })
            .await;
            assert_eq!(replica.get(&path, &token).await["online"], true);
            let count = format!("/api/v1/bikes/{}/telemetry/count", bike.device);
            wait_for("every packet stored", || async { replica.get(&count, &token).await["count"] == PACKETS }).await;
        }
    }

    // With ClickHouse gone, a replica is alive but not ready, and says why.
    drop(clickhouse);
    for replica in &replicas {
        let (status, problem) = replica.call(Method::GET, "/readyz", "", None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
        assert_eq!(problem["code"], "store_unavailable", "{problem}");
        assert_eq!(replica.call(Method::GET, "/healthz", "", None).await.0, StatusCode::OK);
    }
}
