//! One MQTT 5 connection to the broker over mutual TLS, held by the ingest's poller.
//!
//! rumqttc's event loop writes and flushes every acknowledgement on its own: one TLS record,
//! one system call each. mosquitto reads one packet per wake-up of a socket unless more is
//! left in the TLS record it decrypted, so one acknowledgement per record caps the ingest at
//! the rate mosquitto's loop comes round to its socket. Under load the acknowledgements
//! queued in the socket, a PINGREQ waited behind them, its PINGRESP came after the keep-alive,
//! and rumqttc dropped the connection (`Last pingreq isn't acked`).
//!
//! This connection encodes with rumqttc's MQTT codec but sends whatever is waiting in one
//! write: a batch's acknowledgements travel in one record, read by mosquitto in one go. Reading
//! and writing are separate steps, so the poller can stop reading (the batcher is behind) and
//! still acknowledge and ping.

use std::time::Duration;

use anyhow::{Context, bail};
use bytes::BytesMut;
use rumqttc::{
    tokio_rustls::{TlsConnector, client::TlsStream},
    v5::mqttbytes::{
        self, QoS,
        v5::{
            ConnAck, Connect, ConnectProperties, ConnectReturnCode, Disconnect, DisconnectReasonCode, Filter, Packet,
            PingReq, PubAck, Subscribe,
        },
    },
};
use rustls::pki_types::ServerName;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use super::IngestSettings;

/// How long connecting (TCP, TLS and CONNACK) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS side of connecting, built once from the ingest's certificates.
pub(super) struct Dialer {
    connector: TlsConnector,
    server_name: ServerName<'static>,
    address: (String, u16),
}

impl Dialer {
    pub(super) fn new(settings: &IngestSettings) -> anyhow::Result<Self> {
        let config = crate::tls::client_config(&settings.ca_pem, &settings.cert_pem, &settings.key_pem)
            .context("the ingest's TLS set-up")?;
        let server_name = ServerName::try_from(settings.host.clone())
            .with_context(|| format!("{:?} is not a host name or an IP address", settings.host))?;
        Ok(Self { connector: TlsConnector::from(config), server_name, address: (settings.host.clone(), settings.port) })
    }
}

/// What the broker answered to CONNECT, as far as the ingest cares.
pub(super) struct Accepted {
    pub(super) session_present: bool,
    /// The keep-alive the broker asked for, if it overrode the ingest's (never zero).
    pub(super) keep_alive: Option<Duration>,
}

pub(super) struct Connection {
    stream: TlsStream<TcpStream>,
    /// Bytes read and not yet decoded: at most one partial packet once drained.
    inbound: BytesMut,
    /// Packets encoded and not yet written.
    outbound: BytesMut,
    max_incoming: Option<u32>,
    max_outgoing: Option<u32>,
}

impl Connection {
    /// Connects, sends CONNECT and waits for the broker's CONNACK.
    pub(super) async fn open(
        dialer: &Dialer,
        settings: &IngestSettings,
        keep_alive: Duration,
    ) -> anyhow::Result<(Self, Accepted)> {
        tokio::time::timeout(CONNECT_TIMEOUT, Self::connect(dialer, settings, keep_alive))
            .await
            .context("the broker did not answer in time")?
    }

    async fn connect(
        dialer: &Dialer,
        settings: &IngestSettings,
        keep_alive: Duration,
    ) -> anyhow::Result<(Self, Accepted)> {
        let (host, port) = &dialer.address;
        let tcp =
            TcpStream::connect((host.as_str(), *port)).await.with_context(|| format!("connecting to {host}:{port}"))?;
        tcp.set_nodelay(true)?;
        let stream =
            dialer.connector.connect(dialer.server_name.clone(), tcp).await.context("the TLS handshake failed")?;
        let max_incoming = u32::try_from(settings.max_message).ok();
        let mut connection = Self {
            stream,
            inbound: BytesMut::with_capacity(64 * 1024),
            outbound: BytesMut::new(),
            max_incoming,
            max_outgoing: None,
        };
        let properties = ConnectProperties {
            // The broker keeps the session (its subscriptions and what is unacknowledged) for a
            // day while the ingest is away.
            session_expiry_interval: Some(24 * 3600),
            receive_maximum: Some(settings.inflight.max(1)),
            max_packet_size: max_incoming,
            ..ConnectProperties::new()
        };
        let connect = Connect {
            keep_alive: u16::try_from(keep_alive.as_secs()).unwrap_or(u16::MAX),
            client_id: settings.client_id.clone(),
            clean_start: false,
            properties: Some(properties),
        };
        connection.queue(&Packet::Connect(connect, None, None))?;
        connection.send().await?;
        let connack = loop {
            if let Some(packet) = connection.next_buffered()? {
                break packet;
            }
            connection.read_more().await?;
        };
        let ConnAck { session_present, code, properties } = match connack {
            Packet::ConnAck(connack) => connack,
            other => bail!("the broker answered CONNECT with {other:?}"),
        };
        if code != ConnectReturnCode::Success {
            bail!("the broker refused the ingest: {code:?}");
        }
        // A broker's keep-alive of 0 turns its check off; the ingest still pings at its own.
        let keep_alive = properties
            .as_ref()
            .and_then(|p| p.server_keep_alive)
            .filter(|&secs| secs > 0)
            .map(|secs| Duration::from_secs(secs.into()));
        connection.max_outgoing = properties.and_then(|p| p.max_packet_size);
        Ok((connection, Accepted { session_present, keep_alive }))
    }

    /// The next whole packet among the bytes already read, if there is one.
    pub(super) fn next_buffered(&mut self) -> anyhow::Result<Option<Packet>> {
        match Packet::read(&mut self.inbound, self.max_incoming) {
            Ok(packet) => Ok(Some(packet)),
            Err(mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
            Err(e) => Err(e).context("the broker sent a packet that does not decode"),
        }
    }

    /// Waits for more bytes from the broker. Cancel-safe: nothing read is lost if the future
    /// is dropped.
    pub(super) async fn read_more(&mut self) -> anyhow::Result<()> {
        let read = self.stream.read_buf(&mut self.inbound).await.context("reading from the broker")?;
        if read == 0 {
            bail!("the broker closed the connection");
        }
        Ok(())
    }

    /// Encodes `packet` to go with the next [`send`](Self::send); a packet larger than the
    /// broker takes (its CONNACK may cap the size) is refused, and nothing is queued.
    pub(super) fn queue(&mut self, packet: &Packet) -> anyhow::Result<()> {
        packet.write(&mut self.outbound, self.max_outgoing).context("encoding a packet for the broker")?;
        Ok(())
    }

    pub(super) fn acknowledge(&mut self, pkid: u16) -> anyhow::Result<()> {
        self.queue(&Packet::PubAck(PubAck::new(pkid, None)))
    }

    pub(super) fn ping(&mut self) -> anyhow::Result<()> {
        self.queue(&Packet::PingReq(PingReq))
    }

    pub(super) fn subscribe(
        &mut self,
        pkid: u16,
        filters: impl IntoIterator<Item = (String, QoS)>,
    ) -> anyhow::Result<()> {
        let mut subscribe = Subscribe::new_many(filters.into_iter().map(|(path, qos)| Filter::new(path, qos)), None);
        subscribe.pkid = pkid;
        self.queue(&Packet::Subscribe(subscribe))
    }

    /// Writes everything queued, in as few TLS records as it takes.
    pub(super) async fn send(&mut self) -> anyhow::Result<()> {
        if self.outbound.is_empty() {
            return Ok(());
        }
        let outbound = self.outbound.split();
        self.stream.write_all(&outbound).await.context("writing to the broker")?;
        self.stream.flush().await.context("writing to the broker")?;
        Ok(())
    }

    /// Says goodbye: the broker keeps the session, and does not publish a will.
    pub(super) async fn close(mut self) {
        if self.queue(&Packet::Disconnect(Disconnect::new(DisconnectReasonCode::NormalDisconnection))).is_ok() {
            let _ = self.send().await;
        }
        let _ = self.stream.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, KeyPair};

    use super::*;

    /// A self-signed certificate and its key, both PEM.
    fn certified() -> (String, String) {
        let key = KeyPair::generate().expect("key");
        let cert =
            CertificateParams::new(vec!["localhost".to_owned()]).expect("params").self_signed(&key).expect("cert");
        (cert.pem(), key.serialize_pem())
    }

    fn settings(ca: &str, cert: &str, key: &str, host: &str) -> IngestSettings {
        IngestSettings::new(host, 8883, ca.into(), cert.into(), key.into())
    }

    fn refused(settings: &IngestSettings) -> String {
        format!("{:#}", Dialer::new(settings).err().expect("refused"))
    }

    #[test]
    fn certificates_that_cannot_make_a_tls_client_are_refused_naming_what_is_wrong() {
        crate::install_crypto_provider();
        let (cert, key) = certified();
        let (_, other_key) = certified();
        assert!(Dialer::new(&settings(&cert, &cert, &key, "localhost")).is_ok());
        assert!(refused(&settings("", &cert, &key, "localhost")).contains("holds no certificate"));
        let garbled = "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n";
        assert!(refused(&settings(garbled, &cert, &key, "localhost")).contains("CA chain is not PEM"));
        assert!(refused(&settings(&cert, &cert, "", "localhost")).contains("key is not PEM"));
        assert!(refused(&settings(&cert, &cert, &other_key, "localhost")).contains("do not go together"));
        assert!(refused(&settings(&cert, &cert, &key, "not a host")).contains("not a host name"));
    }
}
