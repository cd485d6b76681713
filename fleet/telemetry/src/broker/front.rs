//! The embedded broker's front door for bikes: what rumqttd cannot check, checked before a
//! bike's bytes reach it.
//!
//! A bike connects here over TLS with its own certificate. The front
//! - refuses a certificate on the CRL (the file is read again whenever it changes);
//! - refuses a CONNECT whose client id is not the certificate's CN, so that no bike can take
//!   over another's session (`ConnAck` "identifier rejected");
//! - holds a bike to its own topics, as mosquitto's per-bike ACL does: a publish outside
//!   `bikes/{its id}/…` is dropped (and acknowledged, as MQTT 3.1.1 has no refusal), and a
//!   subscription outside `bikes/{its id}/commands/#` closes the connection.
//!
//! Everything else passes through unchanged, both ways, to rumqttd's own TLS listener on a
//! loopback port, which the front reaches with a certificate of its own.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use anyhow::{Context, bail};
use bytes::BytesMut;
use fleet_proto::{DeviceId, Topic};
use rumqttc::mqttbytes::{
    self, QoS,
    v4::{ConnAck, ConnectReturnCode, Packet, PubAck},
};
use rumqttc::tokio_rustls::{TlsAcceptor, TlsConnector};
use rustls::{
    RootCertStore, ServerConfig,
    pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, pem::PemObject},
    server::WebPkiClientVerifier,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// How long a client has to finish its TLS handshake and send CONNECT, as rumqttd gives it.
const OPENING_TIMEOUT: Duration = Duration::from_secs(60);

/// The PEM files the front is made of.
pub struct FrontTls {
    /// The broker's certificate chain and key, as bikes see it.
    pub cert_pem: String,
    pub key_pem: String,
    /// The issuing CA: bikes' certificates are signed by it.
    pub issuing_ca_pem: String,
    /// The CRL file, replaced on every revocation.
    pub crl_path: PathBuf,
    /// The front's own certificate and key, for rumqttd's listener.
    pub client_cert_pem: String,
    pub client_key_pem: String,
}

/// What the bikes' TLS is made of, parsed once.
struct BikesTls {
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    crl_path: PathBuf,
}

impl BikesTls {
    /// An acceptor checking bikes against the CRL file as it is now.
    fn acceptor(&self) -> anyhow::Result<TlsAcceptor> {
        let crls: Vec<CertificateRevocationListDer<'static>> = match std::fs::read(&self.crl_path) {
            Ok(pem) => CertificateRevocationListDer::pem_slice_iter(&pem)
                .collect::<Result<_, _>>()
                .with_context(|| format!("reading the CRL {}", self.crl_path.display()))?,
            // Not written yet: nothing is revoked.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("reading the CRL {}", self.crl_path.display())),
        };
        let none_revoked = crls.is_empty();
        let mut verifier =
            WebPkiClientVerifier::builder(self.roots.clone()).with_crls(crls).only_check_end_entity_revocation();
        if none_revoked {
            verifier = verifier.allow_unknown_revocation_status();
        }
        let config = ServerConfig::builder()
            .with_client_cert_verifier(verifier.build().context("the bikes' certificate check")?)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .context("the broker's certificate")?;
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// The bikes' acceptor, made again when the CRL file changes.
struct Acceptor {
    tls: BikesTls,
    current: Mutex<(Option<SystemTime>, TlsAcceptor)>,
}

impl Acceptor {
    fn new(tls: &FrontTls) -> anyhow::Result<Self> {
        let roots = crate::tls::roots(tls.issuing_ca_pem.as_bytes()).context("the bikes' CA")?;
        let (chain, key) = crate::tls::identity(tls.cert_pem.as_bytes(), tls.key_pem.as_bytes())
            .context("the broker's certificate")?;
        let tls = BikesTls { roots: Arc::new(roots), chain, key, crl_path: tls.crl_path.clone() };
        let current = (crl_stamp(&tls.crl_path), tls.acceptor()?);
        Ok(Self { tls, current: Mutex::new(current) })
    }

    /// The acceptor for the CRL as it is now on disk.
    fn current(&self) -> anyhow::Result<TlsAcceptor> {
        let stamp = crl_stamp(&self.tls.crl_path);
        let mut current = self.current.lock().expect("front lock");
        if current.0 != stamp {
            *current = (stamp, self.tls.acceptor()?);
        }
        Ok(current.1.clone())
    }
}

fn crl_stamp(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Serves bikes on `listener`, passing each one through to rumqttd at `upstream`, until the
/// runtime ends.
pub fn spawn(listener: TcpListener, upstream: SocketAddr, tls: FrontTls, max_message: usize) -> anyhow::Result<()> {
    let connector = TlsConnector::from(
        crate::tls::client_config(
            tls.issuing_ca_pem.as_bytes(),
            tls.client_cert_pem.as_bytes(),
            tls.client_key_pem.as_bytes(),
        )
        .context("the front's certificate towards rumqttd")?,
    );
    let acceptor = Arc::new(Acceptor::new(&tls)?);
    tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "the broker's front could not accept a connection");
                    continue;
                }
            };
            let acceptor = acceptor.clone();
            let connector = connector.clone();
            tokio::spawn(async move {
                if let Err(e) = serve_bike(stream, &acceptor, &connector, upstream, max_message).await {
                    tracing::info!(%peer, error = format!("{e:#}"), "a bike's connection ended");
                }
            });
        }
    });
    Ok(())
}

/// Reads the next whole MQTT 3.1.1 packet from `from` (buffered in `buffer`): the packet, and
/// its bytes as they came. `None` at the end of the stream.
async fn next_packet(
    from: &mut (impl AsyncReadExt + Unpin),
    buffer: &mut BytesMut,
    max_message: usize,
) -> anyhow::Result<Option<(Packet, BytesMut)>> {
    let Some(frame) = next_frame(from, buffer, max_message).await? else { return Ok(None) };
    let packet = Packet::read(&mut frame.clone(), max_message).context("a malformed MQTT packet")?;
    Ok(Some((packet, frame)))
}

/// The bytes of the next whole MQTT packet from `from` (buffered in `buffer`), unread.
async fn next_frame(
    from: &mut (impl AsyncReadExt + Unpin),
    buffer: &mut BytesMut,
    max_message: usize,
) -> anyhow::Result<Option<BytesMut>> {
    loop {
        match mqttbytes::check(buffer.iter(), max_message) {
            Ok(header) => return Ok(Some(buffer.split_to(header.frame_length()))),
            Err(mqttbytes::Error::InsufficientBytes(_)) => {
                if from.read_buf(buffer).await? == 0 {
                    return if buffer.is_empty() { Ok(None) } else { bail!("the connection ended inside a packet") };
                }
            }
            Err(e) => bail!("a malformed MQTT packet: {e}"),
        }
    }
}

/// What the front does with a packet from a bike.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Passed on to rumqttd.
    Pass,
    /// A publish outside the bike's topics: dropped, and acknowledged as mosquitto's ACL does
    /// (MQTT 3.1.1 has no way to refuse one), so that the bike's session goes on.
    Drop(String),
    /// The connection is closed.
    Close(String),
}

fn verdict(device: &DeviceId, packet: &Packet) -> Verdict {
    match packet {
        Packet::Publish(publish) => match Topic::parse(&publish.topic) {
            Ok(topic) if topic.device == *device => Verdict::Pass,
            // An acknowledgement of a dropped QoS 2 publish would take a PUBREC/PUBREL
            // exchange rumqttd never saw: bikes publish QoS 1.
            _ if publish.qos == QoS::ExactlyOnce => {
                Verdict::Close(format!("published QoS 2 on `{}`, outside its own topics", publish.topic))
            }
            _ => Verdict::Drop(format!("published on `{}`, outside its own topics", publish.topic)),
        },
        Packet::Subscribe(subscribe) => {
            let own = Topic::commands_filter(device);
            let prefix = own.trim_end_matches('#');
            subscribe
                .filters
                .iter()
                .find(|filter| filter.path != own && !filter.path.starts_with(prefix))
                .map_or(Verdict::Pass, |filter| {
                    Verdict::Close(format!("subscribed to `{}`, outside its own commands", filter.path))
                })
        }
        Packet::Connect(_) => Verdict::Close("sent a second CONNECT".to_owned()),
        _ => Verdict::Pass,
    }
}

async fn serve_bike(
    stream: TcpStream,
    acceptor: &Acceptor,
    connector: &TlsConnector,
    upstream: SocketAddr,
    max_message: usize,
) -> anyhow::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut buffer = BytesMut::with_capacity(4096);
    let opening = async {
        let mut bike = acceptor.current()?.accept(stream).await.context("the TLS handshake")?;
        let device = {
            let (_, session) = bike.get_ref();
            let cert = session.peer_certificates().and_then(|chain| chain.first()).context("no client certificate")?;
            common_name(cert)?
        };
        let Some((Packet::Connect(connect), frame)) = next_packet(&mut bike, &mut buffer, max_message).await? else {
            bail!("{device} did not open with a CONNECT");
        };
        anyhow::Ok((bike, device, connect, frame))
    };
    let (mut bike, device, connect, frame) =
        tokio::time::timeout(OPENING_TIMEOUT, opening).await.context("no CONNECT within a minute")??;
    if connect.client_id != device.as_str() {
        let mut refusal = BytesMut::new();
        ConnAck::new(ConnectReturnCode::BadClientId, false).write(&mut refusal)?;
        bike.write_all(&refusal).await?;
        bike.shutdown().await?;
        tracing::warn!(%device, client_id = connect.client_id, "a bike connected with another client id: refused");
        return Ok(());
    }
    let tcp = TcpStream::connect(upstream).await.context("reaching the embedded broker")?;
    let _ = tcp.set_nodelay(true);
    let broker = connector
        .connect(ServerName::try_from("localhost").expect("a valid name"), tcp)
        .await
        .context("the TLS handshake with the embedded broker")?;
    let (mut from_broker, mut to_broker) = tokio::io::split(broker);
    let (mut from_bike, mut to_bike) = tokio::io::split(bike);
    to_broker.write_all(&frame).await?;
    // Whole frames to the bike, from the broker and from the front's own acknowledgements, by
    // one writer: bounded, so a bike that does not read holds up the broker's side, as it
    // would without the front.
    let (frames, mut to_write) = tokio::sync::mpsc::channel::<BytesMut>(64);
    let writer = async {
        while let Some(frame) = to_write.recv().await {
            to_bike.write_all(&frame).await?;
        }
        anyhow::Ok(())
    };
    let downward = {
        let frames = frames.clone();
        async move {
            let mut buffer = BytesMut::with_capacity(4096);
            while let Some(frame) = next_frame(&mut from_broker, &mut buffer, usize::MAX).await? {
                if frames.send(frame).await.is_err() {
                    break;
                }
            }
            anyhow::Ok(())
        }
    };
    let upward = async {
        let mut dropped = 0u64;
        let ended = async {
            while let Some((packet, frame)) = next_packet(&mut from_bike, &mut buffer, max_message).await? {
                match verdict(&device, &packet) {
                    Verdict::Pass => to_broker.write_all(&frame).await?,
                    Verdict::Drop(why) => {
                        dropped += 1;
                        if dropped == 1 {
                            tracing::warn!(%device, "a bike {why}: dropped (and any more on this connection)");
                        }
                        if let Packet::Publish(publish) = &packet
                            && publish.qos == QoS::AtLeastOnce
                        {
                            let mut ack = BytesMut::new();
                            PubAck::new(publish.pkid).write(&mut ack)?;
                            if frames.send(ack).await.is_err() {
                                break;
                            }
                        }
                    }
                    Verdict::Close(why) => {
                        tracing::warn!(%device, "a bike {why}: disconnected");
                        break;
                    }
                }
            }
            anyhow::Ok(())
        }
        .await;
        if dropped > 1 {
            tracing::warn!(%device, dropped, "a bike's publishes outside its own topics were dropped");
        }
        ended
    };
    tokio::select! {
        ended = upward => ended,
        ended = downward => ended,
        ended = writer => ended,
    }
}

/// The device id a bike's certificate names (its CN).
fn common_name(cert: &CertificateDer<'_>) -> anyhow::Result<DeviceId> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert.as_ref()).context("reading the client certificate")?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .context("the client certificate has no CN")?;
    DeviceId::parse(cn).map_err(|e| anyhow::anyhow!("the client certificate's CN `{cn}`: {e}"))
}
