//! The embedded broker (rumqttd), for running with nothing else installed: bikes connect over
//! TLS with their own certificates (MQTT 3.1.1, on the bikes' address), and the ingest over TLS
//! with its own (MQTT 5, on a loopback port of its own, for its manual acknowledgements and
//! receive window).
//!
//! What it cannot do, and what stands in for it: rumqttd checks no CRL and has no per-client
//! ACL. The ingest refuses a revoked or decommissioned bike's packets (quarantined as
//! `revoked`), and a packet whose `device_id` is not its topic's (`device_mismatch`); but a bike
//! could publish on another bike's topic with that bike's id. Production runs mosquitto
//! (`--broker mqtts://…`), which checks the CRL at connect and enforces the per-bike ACL.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use anyhow::Context;
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings, TlsConfig};

use crate::pki::Bundle;

/// Where the embedded broker listens, and the files it reads.
pub struct EmbeddedBroker {
    /// Bikes' address (MQTT 3.1.1).
    pub bikes: SocketAddr,
    /// The ingest's address (MQTT 5), on loopback.
    pub ingest: SocketAddr,
}

/// The largest message the embedded broker takes: an offline batch of a few thousand packets.
pub const MAX_MESSAGE: usize = 1024 * 1024;

impl EmbeddedBroker {
    /// Writes the broker's certificate and trust anchor into `dir` and starts the broker on a
    /// thread of its own (rumqttd runs its own runtime). It runs until the process ends.
    pub fn start(
        dir: &Path,
        bikes: SocketAddr,
        ingest: SocketAddr,
        server: &Bundle,
        issuing_ca_pem: &str,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let write = |name: &str, text: &str| -> anyhow::Result<PathBuf> {
            let path = dir.join(name);
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            Ok(path)
        };
        // rumqttd trusts the first certificate of its CA file only: the issuing CA, which
        // signs every bike's certificate.
        let ca = write("broker-ca.pem", issuing_ca_pem)?;
        let cert = write("broker.pem", &format!("{}{}", server.issued.cert_pem, issuing_ca_pem))?;
        let key = write("broker.key", &server.key_pem)?;
        let tls =
            TlsConfig::Rustls { capath: Some(path_text(&ca)?), certpath: path_text(&cert)?, keypath: path_text(&key)? };
        let server_settings = |name: &str, listen: SocketAddr, inflight: usize| ServerSettings {
            name: name.to_owned(),
            listen,
            tls: Some(tls.clone()),
            next_connection_delay_ms: 0,
            connections: ConnectionSettings {
                connection_timeout_ms: 60_000,
                max_payload_size: MAX_MESSAGE,
                max_inflight_count: inflight,
                auth: None,
                external_auth: None,
                dynamic_filters: true,
            },
        };
        let config = Config {
            id: 0,
            router: RouterConfig {
                max_connections: 100_000,
                max_outgoing_packet_count: 1_000,
                max_segment_size: 100 * 1024 * 1024,
                max_segment_count: 10,
                custom_segment: None,
                initialized_filters: None,
                shared_subscriptions_strategy: rumqttd::Strategy::default(),
            },
            v4: Some(HashMap::from([("bikes".to_owned(), server_settings("bikes", bikes, 100))])),
            v5: Some(HashMap::from([("ingest".to_owned(), server_settings("ingest", ingest, 1_000))])),
            ..Config::default()
        };
        // Bind both addresses first, so that one already taken is an error here, not a log
        // line on the broker's thread.
        for addr in [bikes, ingest] {
            std::net::TcpListener::bind(addr)
                .with_context(|| format!("the embedded broker cannot listen on {addr}"))?;
        }
        std::thread::Builder::new()
            .name("broker".into())
            .spawn(move || {
                let mut broker = Broker::new(config);
                if let Err(e) = broker.start() {
                    tracing::error!(error = %e, "the embedded broker stopped");
                }
            })
            .context("starting the broker's thread")?;
        Ok(Self { bikes, ingest })
    }
}

fn path_text(path: &Path) -> anyhow::Result<String> {
    path.to_str().map(str::to_owned).with_context(|| format!("{} is not UTF-8", path.display()))
}
