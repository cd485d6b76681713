//! The embedded broker (rumqttd), for running with nothing else installed: bikes connect over
//! TLS with their own certificates (MQTT 3.1.1, on the bikes' address), and the ingest over TLS
//! with its own (MQTT 5, on a loopback port of its own, for its manual acknowledgements and
//! receive window).
//!
//! rumqttd checks no CRL, has no per-client ACL, and names a session by whatever client id a
//! client sends. So bikes do not reach it directly: they connect to its front
//! (`broker/front.rs`), which checks the CRL at connect, accepts only a bike's own id as its
//! client id, and holds a bike to its own topics, before passing its bytes on to rumqttd's
//! listener on a loopback port. Production runs mosquitto (`--broker mqtts://…`).

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use anyhow::Context;
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings, TlsConfig};

use crate::pki::Bundle;

mod front;

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
    /// thread of its own (rumqttd runs its own runtime), and its front for bikes on this
    /// runtime, with `front` as its certificate towards rumqttd and the CRL read from
    /// `crl_path`. They run until the process ends.
    pub fn start(
        dir: &Path,
        (bikes, ingest): (SocketAddr, SocketAddr),
        server: &Bundle,
        front: &Bundle,
        issuing_ca_pem: &str,
        crl_path: &Path,
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
        // Bikes reach rumqttd through the front only.
        let behind_front = SocketAddr::from(([127, 0, 0, 1], fleetplane_common::ports::free_port()));
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
            v4: Some(HashMap::from([("bikes".to_owned(), server_settings("bikes", behind_front, 100))])),
            v5: Some(HashMap::from([("ingest".to_owned(), server_settings("ingest", ingest, 1_000))])),
            ..Config::default()
        };
        // Bind rumqttd's addresses first, so that one already taken is an error here, not a
        // log line on the broker's thread.
        for addr in [behind_front, ingest] {
            std::net::TcpListener::bind(addr)
                .with_context(|| format!("the embedded broker cannot listen on {addr}"))?;
        }
        let listener = std::net::TcpListener::bind(bikes)
            .and_then(|listener| {
                listener.set_nonblocking(true)?;
                tokio::net::TcpListener::from_std(listener)
            })
            .with_context(|| format!("the embedded broker cannot listen on {bikes}"))?;
        front::spawn(
            listener,
            behind_front,
            front::FrontTls {
                cert_pem: format!("{}{}", server.issued.cert_pem, issuing_ca_pem),
                key_pem: server.key_pem.clone(),
                issuing_ca_pem: issuing_ca_pem.to_owned(),
                crl_path: crl_path.to_owned(),
                client_cert_pem: front.issued.cert_pem.clone(),
                client_key_pem: front.key_pem.clone(),
            },
            MAX_MESSAGE,
        )?;
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
