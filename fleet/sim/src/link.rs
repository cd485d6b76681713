//! A bike's MQTT connection to the broker: TLS with the fleet CA, the bike's own certificate
//! as the client's, a persistent session (so that what was in flight when the bike lost
//! coverage is sent again), QoS 1, and the [`Ledger`] that says which PUBACK is whose.
//!
//! The client's event loop runs in a task of its own (publishing from the task that polls it
//! would deadlock once the request channel is full). Going offline sends DISCONNECT and then
//! stops polling, so that the client does not reconnect; going online polls again, which
//! reconnects and resumes the session.

use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use fleet_proto::DeviceId;
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, Incoming, MqttOptions, Outgoing, QoS, Request, TlsConfiguration,
    Transport,
};
use tokio::{
    sync::{Notify, watch},
    task::JoinHandle,
    time::Instant,
};
use tracing::{debug, warn};

use crate::{
    ledger::{Class, Ledger},
    report::BikeStats,
};

/// How many publishes may await their PUBACK at once.
const INFLIGHT: u16 = 100;
/// How many publishes the client holds before it has sent them.
const REQUEST_CAPACITY: usize = 1_000;
/// The largest message either way: a batch of 500 packets is about 60 KB.
const MAX_PACKET_BYTES: usize = 1 << 20;
/// Between attempts to reconnect.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

/// Where the broker is and how to trust it.
#[derive(Clone, Debug)]
pub struct Broker {
    pub host: String,
    pub port: u16,
    /// The fleet CA's chain (PEM).
    pub ca_pem: String,
}

/// A bike's certificate and key (PEM).
#[derive(Clone)]
pub struct Credentials {
    pub cert_pem: String,
    pub key_pem: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    Online,
    Offline,
    Closed,
}

struct Shared {
    ledger: Mutex<Ledger>,
    stats: Arc<BikeStats>,
    /// Something was acknowledged (or lost): [`Link::settle`] looks again.
    progress: Notify,
    last_error: Mutex<Option<String>>,
}

impl Shared {
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        // A panic while holding it leaves counts, not invariants, behind: go on with them.
        self.ledger.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

pub struct Link {
    client: AsyncClient,
    shared: Arc<Shared>,
    want: watch::Sender<Want>,
    connected: watch::Receiver<bool>,
    poller: JoinHandle<()>,
}

impl Link {
    /// Starts connecting `device` to `broker`; [`Link::wait_connected`] says when it has.
    pub fn open(device: &DeviceId, broker: &Broker, credentials: &Credentials, stats: Arc<BikeStats>) -> Self {
        let mut options = MqttOptions::new(device.as_str(), broker.host.as_str(), broker.port);
        options
            .set_keep_alive(Duration::from_secs(30))
            .set_clean_session(false)
            .set_inflight(INFLIGHT)
            .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES)
            .set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
                ca: broker.ca_pem.clone().into_bytes(),
                alpn: None,
                client_auth: Some((
                    credentials.cert_pem.clone().into_bytes(),
                    credentials.key_pem.clone().into_bytes(),
                )),
            }));
        let (client, eventloop) = AsyncClient::new(options, REQUEST_CAPACITY);
        let shared = Arc::new(Shared {
            ledger: Mutex::new(Ledger::default()),
            stats,
            progress: Notify::new(),
            last_error: Mutex::new(None),
        });
        let (want, want_rx) = watch::channel(Want::Online);
        let (connected_tx, connected) = watch::channel(false);
        let poller =
            tokio::spawn(poll(eventloop, client.clone(), shared.clone(), want_rx, connected_tx, device.clone()));
        Self { client, shared, want, connected, poller }
    }

    pub fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// Waits until connected, or `deadline`; then the last connection error, if any.
    pub async fn wait_connected(&self, deadline: Instant) -> Result<(), String> {
        let mut connected = self.connected.clone();
        match tokio::time::timeout_at(deadline, connected.wait_for(|c| *c)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(self.last_error().unwrap_or_else(|| "no answer from the broker".into())),
        }
    }

    pub fn last_error(&self) -> Option<String> {
        self.shared.last_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Hands a QoS 1 publish to the client; `false` if it holds too many already (nothing was
    /// handed over then).
    pub fn try_publish(&self, topic: String, payload: Vec<u8>, class: Class) -> bool {
        // Queued in the ledger and handed to the client under one lock, so that the poller
        // sees them in the same order.
        let mut ledger = self.shared.ledger();
        ledger.queue(class);
        let handed = self.client.try_publish(topic, QoS::AtLeastOnce, false, payload).is_ok();
        if !handed {
            ledger.unqueue_last();
        }
        handed
    }

    /// Loses coverage: DISCONNECT, and no reconnecting until [`Link::go_online`].
    pub fn go_offline(&self) {
        self.want.send_replace(Want::Offline);
        if self.is_connected() {
            let _ = self.client.try_disconnect();
        }
    }

    /// Coverage is back: reconnect, and resume the session.
    pub fn go_online(&self) {
        self.want.send_replace(Want::Online);
    }

    /// Waits until everything handed over is acknowledged, or `deadline`; whether it was.
    pub async fn settle(&self, deadline: Instant) -> bool {
        loop {
            let progress = self.shared.progress.notified();
            tokio::pin!(progress);
            progress.as_mut().enable();
            if self.shared.ledger().is_settled() {
                return true;
            }
            if tokio::time::timeout_at(deadline, progress).await.is_err() {
                return self.shared.ledger().is_settled();
            }
        }
    }

    /// Disconnects for good, waiting up to `within` for the DISCONNECT to go out.
    pub async fn close(self, within: Duration) {
        self.want.send_replace(Want::Closed);
        if self.is_connected() {
            let _ = self.client.try_disconnect();
        }
        let mut poller = self.poller;
        if tokio::time::timeout(within, &mut poller).await.is_err() {
            poller.abort();
        }
    }
}

/// Drives the client: connects, counts acknowledgements, reconnects after a drop (unless the
/// bike is offline), and stops when the link is closed.
async fn poll(
    mut eventloop: EventLoop,
    client: AsyncClient,
    shared: Arc<Shared>,
    mut want: watch::Receiver<Want>,
    connected: watch::Sender<bool>,
    device: DeviceId,
) {
    // Publishes the client held, never sent, when the connection last dropped.
    let mut held_at_drop = 0;
    loop {
        let event = eventloop.poll().await;
        match event {
            Ok(Event::Incoming(Incoming::ConnAck(ack))) => {
                if !ack.session_present {
                    let lost = shared.ledger().session_lost(held_at_drop);
                    if lost > 0 {
                        warn!(%device, lost, "the broker kept no session: packets in flight are lost");
                        BikeStats::add(&shared.stats.lost, lost);
                        shared.progress.notify_waiters();
                    }
                }
                held_at_drop = 0;
                connected.send_replace(true);
                debug!(%device, session_present = ack.session_present, "connected");
                if *want.borrow() != Want::Online {
                    // Coverage went while connecting.
                    let _ = client.try_disconnect();
                }
            }
            Ok(Event::Incoming(Incoming::PubAck(ack))) => {
                let acked = shared.ledger().acked(ack.pkid);
                if let Some(Class::Good { packets }) = acked {
                    BikeStats::add(&shared.stats.acked, u64::from(packets));
                }
                shared.progress.notify_waiters();
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => shared.ledger().sent(pkid),
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                connected.send_replace(false);
                if !wait_until_wanted(&mut want).await {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => {
                let was_connected = connected.send_replace(false);
                held_at_drop = eventloop
                    .pending
                    .iter()
                    .filter(|request| matches!(request, Request::Publish(publish) if publish.pkid == 0))
                    .count();
                note_error(&shared, &device, &e, was_connected);
                if *want.borrow() != Want::Online {
                    if !wait_until_wanted(&mut want).await {
                        return;
                    }
                } else {
                    // Try again shortly, unless the link closes meanwhile.
                    let closed = async {
                        let _ = want.wait_for(|w| *w == Want::Closed).await;
                    };
                    tokio::select! {
                        () = tokio::time::sleep(RECONNECT_PAUSE) => {}
                        () = closed => return,
                    }
                }
            }
        }
    }
}

/// Waits while the bike is offline; `false` if the link was closed instead.
async fn wait_until_wanted(want: &mut watch::Receiver<Want>) -> bool {
    match want.wait_for(|w| *w != Want::Offline).await {
        Ok(w) => *w == Want::Online,
        Err(_) => false,
    }
}

fn note_error(shared: &Shared, device: &DeviceId, error: &ConnectionError, was_connected: bool) {
    let text = error.to_string();
    if was_connected {
        warn!(%device, error = %text, "lost the connection to the broker; reconnecting");
    } else {
        debug!(%device, error = %text, "could not connect to the broker");
    }
    *shared.last_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(text);
}
