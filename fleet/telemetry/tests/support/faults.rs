//! Faults the ingest tests inject: a TCP connection to the broker cut under the ingest, and a
//! store that holds a batch until the test lets it go.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicUsize, Ordering},
};

use chrono::NaiveDate;
use fleet_proto::DeviceId;
use fleet_telemetry::{
    packet::{Packet, Quarantined},
    store::{Bucket, Cursor, History, QuarantineEntry, QuarantineFilter, Range, TelemetryStore},
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
    task::{AbortHandle, JoinHandle},
};

/// A TCP proxy on loopback in front of the broker. [`cut`](Self::cut) drops the connections
/// through it: the ingest loses its connection and keeps running (its batcher included), as
/// when a network path fails, while the broker keeps the session.
pub struct CutProxy {
    pub port: u16,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    accept: JoinHandle<()>,
}

impl CutProxy {
    pub async fn start(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let port = listener.local_addr().expect("the proxy's address").port();
        let connections: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let accept = tokio::spawn({
            let connections = connections.clone();
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    let forward = tokio::spawn(async move {
                        let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target)).await else { return };
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    });
                    connections.lock().expect("lock").push(forward.abort_handle());
                }
            }
        });
        Self { port, connections, accept }
    }

    /// Drops every connection through the proxy; both ends see theirs closed.
    pub fn cut(&self) {
        for connection in self.connections.lock().expect("lock").drain(..) {
            connection.abort();
        }
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// A store whose inserts wait while its gate is shut; everything else goes straight through.
pub struct GatedStore {
    inner: Arc<dyn TelemetryStore>,
    open: watch::Sender<bool>,
    waiting: AtomicUsize,
}

impl GatedStore {
    pub fn shut(inner: Arc<dyn TelemetryStore>) -> Arc<Self> {
        Arc::new(Self { inner, open: watch::Sender::new(false), waiting: AtomicUsize::new(0) })
    }

    /// How many packets wait at the gate.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    pub fn open(&self) {
        self.open.send_replace(true);
    }
}

#[async_trait::async_trait]
impl TelemetryStore for GatedStore {
    async fn insert(&self, packets: &[Packet]) -> anyhow::Result<u64> {
        self.waiting.fetch_add(packets.len(), Ordering::SeqCst);
        let _ = self.open.subscribe().wait_for(|open| *open).await;
        self.waiting.fetch_sub(packets.len(), Ordering::SeqCst);
        self.inner.insert(packets).await
    }

    async fn quarantine(&self, entries: &[Quarantined]) -> anyhow::Result<()> {
        self.inner.quarantine(entries).await
    }

    async fn history(
        &self,
        device_id: &DeviceId,
        range: Range,
        after: Option<Cursor>,
        limit: u64,
    ) -> anyhow::Result<History> {
        self.inner.history(device_id, range, after, limit).await
    }

    async fn downsampled(
        &self,
        device_id: &DeviceId,
        range: Range,
        every: std::time::Duration,
    ) -> anyhow::Result<Vec<Bucket>> {
        self.inner.downsampled(device_id, range, every).await
    }

    async fn count(&self, device_id: Option<&DeviceId>) -> anyhow::Result<u64> {
        self.inner.count(device_id).await
    }

    async fn ping(&self) -> anyhow::Result<()> {
        self.inner.ping().await
    }

    async fn quarantined(
        &self,
        filter: &QuarantineFilter,
        before: Option<i64>,
        limit: u64,
    ) -> anyhow::Result<Vec<QuarantineEntry>> {
        self.inner.quarantined(filter, before, limit).await
    }

    async fn drop_days_before(&self, day: NaiveDate) -> anyhow::Result<Vec<NaiveDate>> {
        self.inner.drop_days_before(day).await
    }
}
