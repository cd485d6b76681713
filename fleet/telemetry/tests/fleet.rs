//! Fifty simulated bikes ride against the whole service, as production runs it: mosquitto with
//! client certificates, the CRL and the per-bike ACL, and each telemetry store.

mod support;

use std::time::Duration;

use support::{Fleet, ride, service::Service};

/// The service over `fleet`'s registry and mosquitto, with `store` as FLEET_STORE if given.
async fn service(fleet: &Fleet, store: Option<&str>) -> Service {
    let broker = format!("mqtts://127.0.0.1:{}", fleet.broker.port);
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
