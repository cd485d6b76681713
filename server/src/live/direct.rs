//! Event streams written by the fan-out itself.
//!
//! An event stream is idle nearly all its life, and when an event comes it is often one that
//! thousands of streams wait for. Waking a task per stream to write the same bytes costs more
//! than the writes do. So while a stream on a lean connection has nothing of its own to send
//! (it is caught up, and its socket takes what it is given), it is *attached*: a shard of the
//! fan-out writes every event the stream may see straight to its socket, as an HTTP/1.1 chunk
//! encoded once for all, with one write that never waits. The stream's task sleeps meanwhile,
//! waking for the heartbeat only.
//!
//! A shard *hands a stream back* to its task when a write would wait or is partial (the client
//! is slow), when an event changes the user's organizations without saying how (they must be
//! read again), or when the shard itself fell behind the fan-out. The task writes what the
//! shard could not, catches up from the database after the stream's last event (as a
//! reconnecting stream does), and attaches again once it has nothing left to send.
//!
//! Whoever holds a stream's lock owns its socket: a shard writes under it, and the task writes
//! only while the stream is not attached, so bytes never interleave. The task attaches under
//! the lock, and only when its receiver has nothing waiting: an event broadcast before that is
//! in the receiver, and one broadcast after is written by the shard (which takes the lock after
//! it hears the event); the stream's last id keeps either from sending one twice.

use std::{
    io::{self, IoSlice},
    mem,
    pin::pin,
    sync::{
        Arc, LazyLock, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::body::Bytes;
use bytes::{Buf, BytesMut};
use futures::FutureExt;
use prometheus_client::{
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use slab::Slab;
use tokio::{
    sync::{
        Notify,
        broadcast::{
            self,
            error::{RecvError, TryRecvError},
        },
    },
    task::JoinSet,
    time::{Instant, MissedTickBehavior},
};
use tokio_util::sync::CancellationToken;

use super::{Due, EventStream, Fanned, Filter, Parked};
use crate::http::{
    serve::{self, Socket},
    sse,
};

/// Streams a shard writes to before it lets the other tasks on its thread run.
const YIELD_EVERY: usize = 256;

/// The heartbeat comment as a chunk.
static HEARTBEAT: LazyLock<Bytes> = LazyLock::new(|| serve::chunk(sse::HEARTBEAT));

/// This server's attached streams, spread over as many shards as it has cores, each written by
/// its own task.
pub(super) struct Shards {
    shards: Box<[Arc<Shard>]>,
    next: AtomicUsize,
    handbacks: HandbackFamily,
    waiting: Waiting,
}

/// Streams handed back to their task, by why.
type HandbackFamily = Family<[(&'static str, &'static str); 1], Counter>;

/// Why a stream was handed back to its task.
#[derive(Clone, Copy)]
enum Reason {
    /// Its socket did not take all it was given.
    SlowClient,
    /// Its organizations must be read again.
    Memberships,
    /// Its shard fell behind the fan-out.
    ShardBehind,
}

impl Reason {
    fn label(self) -> [(&'static str, &'static str); 1] {
        let reason = match self {
            Self::SlowClient => "slow_client",
            Self::Memberships => "memberships",
            Self::ShardBehind => "shard_behind",
        };
        [("reason", reason)]
    }
}

struct Shard {
    streams: Mutex<Slab<Arc<Attached>>>,
    handbacks: HandbackFamily,
    /// Subscribed when the server starts, so that the shard hears every event a stream could
    /// be attached for; taken by the shard's writer.
    events: Mutex<Option<broadcast::Receiver<Arc<Fanned>>>>,
}

impl Shards {
    pub(super) fn new(events: &broadcast::Sender<Arc<Fanned>>) -> Self {
        let count = std::thread::available_parallelism().map_or(1, usize::from);
        let handbacks = HandbackFamily::default();
        let shards = (0..count)
            .map(|_| {
                let events = Mutex::new(Some(events.subscribe()));
                Arc::new(Shard { streams: Mutex::default(), handbacks: handbacks.clone(), events })
            })
            .collect();
        Self { shards, next: AtomicUsize::new(0), handbacks, waiting: Waiting::default() }
    }

    pub(super) fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "sse_handbacks",
            "Event streams the fan-out handed back to their own task: slow_client (its socket was full), \
             memberships (its organizations had to be read again), shard_behind (the fan-out got a whole backlog ahead)",
            self.handbacks.clone(),
        );
        registry.register(
            "sse_writes_waiting",
            "Event streams waiting for their client to read what they were sent (clients that are slow or gone quiet)",
            self.waiting.0.clone(),
        );
    }

    /// Streams waiting for their client to read what they were sent.
    pub(super) fn writes_waiting(&self) -> usize {
        usize::try_from(self.waiting.0.get()).unwrap_or(0)
    }

    /// Starts the shards' writers. They stop when the event channel closes (the server is
    /// stopping), or when the returned set is dropped.
    pub(super) fn start(&self) -> JoinSet<()> {
        let mut writers = JoinSet::new();
        for shard in &self.shards {
            if let Some(events) = lock(&shard.events).take() {
                writers.spawn(Arc::clone(shard).write(events));
            }
        }
        writers
    }

    /// Streams attached now.
    pub(super) fn attached(&self) -> usize {
        let attached = |shard: &Shard| {
            let streams = lock(&shard.streams);
            streams.iter().filter(|(_, stream)| matches!(*lock(&stream.state), State::Attached(_))).count()
        };
        self.shards.iter().map(|shard| attached(shard)).sum()
    }

    fn register(&self, stream: &Arc<Attached>) -> Registration {
        let shard = &self.shards[self.next.fetch_add(1, Ordering::Relaxed) % self.shards.len()];
        let key = lock(&shard.streams).insert(Arc::clone(stream));
        Registration { shard: Arc::clone(shard), key, stream: Arc::clone(stream) }
    }
}

impl Shard {
    /// Writes each event to the shard's attached streams, until the event channel closes.
    async fn write(self: Arc<Self>, mut events: broadcast::Receiver<Arc<Fanned>>) {
        let mut batch = Vec::new();
        let mut streams = Vec::new();
        loop {
            let mut lagged = match events.recv().await {
                Ok(fanned) => {
                    batch.push(fanned);
                    false
                }
                Err(RecvError::Lagged(_)) => true,
                Err(RecvError::Closed) => return,
            };
            // Whatever else came meanwhile goes with it: one write per stream.
            while !lagged {
                match events.try_recv() {
                    Ok(fanned) => batch.push(fanned),
                    Err(TryRecvError::Lagged(_)) => lagged = true,
                    Err(_) => break,
                }
            }
            // The streams as they are now; a stream that comes later has these in its receiver.
            streams.extend(lock(&self.streams).iter().map(|(_, stream)| Arc::clone(stream)));
            if lagged {
                tracing::info!(
                    streams = streams.len(),
                    "the fan-out got ahead of a shard; its streams catch up themselves"
                );
            }
            let mut chunks = Vec::with_capacity(batch.len());
            for (index, stream) in streams.iter().enumerate() {
                let handed_back = match lagged {
                    true => {
                        stream.hand_back(&mut lock(&stream.state), Bytes::new(), false).then_some(Reason::ShardBehind)
                    }
                    false => stream.deliver(&batch, &mut chunks),
                };
                if let Some(reason) = handed_back {
                    self.handbacks.get_or_create(&reason.label()).inc();
                }
                // Writing to every stream takes a while (tens of milliseconds for thousands): the
                // thread's other tasks, requests among them, get their turn in between.
                if index % YIELD_EVERY == YIELD_EVERY - 1 {
                    tokio::task::yield_now().await;
                }
            }
            streams.clear();
            batch.clear();
        }
    }
}

/// An event stream with a place in a shard.
struct Attached {
    socket: Socket,
    state: Mutex<State>,
    /// Wakes the stream's task when its shard hands it back.
    handed_back: Notify,
}

enum State {
    /// Its shard writes its events; the filter says which, and where the stream is.
    Attached(Filter),
    /// Its task sends what it has; the shard leaves it alone.
    Detached,
    /// Handed back by its shard; its task has yet to take it.
    HandedBack(Handback),
}

/// Who sends a stream's events next.
enum Turn {
    /// Its task, from the stream.
    Own(EventStream),
    /// Its shard, while the task keeps the rest.
    Shard(Parked),
}

struct Handback {
    filter: Filter,
    /// What the shard could not write of its last chunks; it goes first.
    unsent: Bytes,
    /// The user's organizations must be read again.
    reload_orgs: bool,
}

impl Attached {
    /// Writes the events of `batch` the stream may see, if it is attached. Hands it back to its
    /// task when its socket does not take them all, or when an event leaves its organizations
    /// unknown (what comes after it may not be for the ones it knew), and says why.
    fn deliver<'a>(&self, batch: &'a [Arc<Fanned>], chunks: &mut Vec<IoSlice<'a>>) -> Option<Reason> {
        let mut state = lock(&self.state);
        let State::Attached(filter) = &mut *state else { return None };
        chunks.clear();
        let mut reload_orgs = false;
        for fanned in batch {
            filter.seen = filter.seen.max(fanned.event.id);
            if fanned.event.id <= filter.last || !filter.visible(&fanned.event) {
                continue;
            }
            filter.last = fanned.event.id;
            chunks.push(IoSlice::new(&fanned.chunk));
            if filter.apply_membership(&fanned.event) {
                reload_orgs = true;
                break;
            }
        }
        let written = match chunks.as_slice() {
            [] => return None,
            [one] => self.socket.try_write(one),
            many => self.socket.try_write_vectored(many),
        };
        // Full, or failed: the task finds out which when it writes the rest.
        let written = written.unwrap_or(0);
        let total: usize = chunks.iter().map(|chunk| chunk.len()).sum();
        let reason = if written < total { Reason::SlowClient } else { Reason::Memberships };
        if written < total || reload_orgs {
            self.hand_back(&mut state, unsent(chunks, written), reload_orgs);
            return Some(reason);
        }
        None
    }

    /// Gives the stream back to its task, if it is attached, with `unsent` to write first. A
    /// stream handed back already keeps its hand-back (its filter and unsent bytes) until its
    /// task takes it.
    fn hand_back(&self, state: &mut State, unsent: Bytes, reload_orgs: bool) -> bool {
        match mem::replace(state, State::Detached) {
            State::Attached(filter) => {
                *state = State::HandedBack(Handback { filter, unsent, reload_orgs });
                self.handed_back.notify_one();
                true
            }
            other => {
                *state = other;
                false
            }
        }
    }

    /// Attaches `stream`, which has nothing due, unless the fan-out broadcast more meanwhile.
    fn attach(&self, mut stream: EventStream) -> Turn {
        let mut state = lock(&self.state);
        let received = match stream.live.try_recv() {
            Err(TryRecvError::Empty) => {
                *state = State::Attached(stream.filter);
                return Turn::Shard(stream.parked);
            }
            Ok(fanned) => Ok(fanned),
            Err(TryRecvError::Lagged(missed)) => Err(RecvError::Lagged(missed)),
            Err(TryRecvError::Closed) => Err(RecvError::Closed),
        };
        stream.peeked = Some(received);
        Turn::Own(stream)
    }

    fn take_back(&self) -> Option<Handback> {
        let mut state = lock(&self.state);
        match mem::replace(&mut *state, State::Detached) {
            State::HandedBack(handback) => Some(handback),
            other => {
                *state = other;
                None
            }
        }
    }

    /// Sends the heartbeat comment to the stream, if it is attached. A socket too full to take
    /// any of it needs none (the client has plenty to read); one that takes only part of it
    /// hands the stream back with the rest.
    fn heartbeat(&self) -> io::Result<Option<Reason>> {
        let mut state = lock(&self.state);
        if !matches!(*state, State::Attached(_)) {
            return Ok(None);
        }
        match self.socket.try_write(&HEARTBEAT) {
            Ok(written) if written < HEARTBEAT.len() => {
                self.hand_back(&mut state, HEARTBEAT.slice(written..), false);
                Ok(Some(Reason::SlowClient))
            }
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A stream's place in its shard, given up when the stream ends. The stream is detached first,
/// so that once this is dropped nothing more is written to its socket.
struct Registration {
    shard: Arc<Shard>,
    key: usize,
    stream: Arc<Attached>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        *lock(&self.stream.state) = State::Detached;
        lock(&self.shard.streams).try_remove(self.key);
    }
}

/// Sends `stream` to `socket` until it ends or the server stops (or the client leaves: the
/// connection then drops this): by itself while it has something to send, attached to a shard
/// while it has not. A heartbeat comment goes every `every`.
pub(super) async fn write(mut stream: EventStream, socket: Socket, every: Duration) -> io::Result<()> {
    let state = stream.parked.state.clone();
    // The server stopping, or the stream's session or token revoked.
    let ended = stream.parked.slot.ended.clone();
    let closing = &ended;
    let attached = Arc::new(Attached { socket, state: Mutex::new(State::Detached), handed_back: Notify::new() });
    let _registration = state.live.attached.register(&attached);
    let socket = &attached.socket;
    let waiting = &state.live.attached.waiting;
    let mut heartbeat = tokio::time::interval_at(Instant::now() + every, every);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        // Its own turn: it sends what is due, until it can be attached.
        let parked = loop {
            let (due, beat) = {
                // What is due is not given up for a heartbeat: it may be half read. Nor is the
                // heartbeat written meanwhile: `due` may hold a database connection, and a client
                // that is not reading would keep it from the pool.
                let mut due = pin!(stream.due());
                let mut beat = false;
                loop {
                    tokio::select! {
                        due = &mut due => break (due, beat),
                        _ = heartbeat.tick() => beat = true,
                        () = closing.cancelled() => return Ok(()),
                    }
                }
            };
            if beat && waiting.send(socket, HEARTBEAT.clone(), closing).await? {
                stream.waited_for_client();
            }
            match due {
                Due::Event(frame) => {
                    if waiting.send(socket, serve::chunked(frame), closing).await? {
                        stream.waited_for_client();
                    }
                }
                Due::End => return Ok(()),
                Due::Nothing => match attached.attach(stream) {
                    Turn::Shard(parked) => break parked,
                    Turn::Own(own) => stream = own,
                },
            }
        };
        // Its shard's turn, until it hands the stream back.
        let handback = loop {
            tokio::select! {
                () = attached.handed_back.notified() => if let Some(handback) = attached.take_back() {
                    break handback;
                },
                _ = heartbeat.tick() => if let Some(reason) = attached.heartbeat()? {
                    state.live.attached.handbacks.get_or_create(&reason.label()).inc();
                },
                () = closing.cancelled() => return Ok(()),
            }
        };
        // Listening again before the rest is written: a client that stays too slow while the
        // fan-out gets a whole backlog ahead is told to resync as soon as it reads again.
        stream = parked.resume(handback.filter, handback.reload_orgs);
        if waiting.send(socket, handback.unsent, closing).await? {
            stream.waited_for_client();
        }
    }
}

/// Writes that wait for their client to read.
#[derive(Clone, Default)]
struct Waiting(Gauge);

impl Waiting {
    /// Writes all of `bytes` (see [`serve::write_all`]); true when the client made it wait,
    /// counted among the waiting meanwhile.
    async fn send(&self, socket: &Socket, bytes: impl Buf, closing: &CancellationToken) -> io::Result<bool> {
        let mut write = pin!(serve::write_all(socket, bytes, closing));
        if let Some(written) = write.as_mut().now_or_never() {
            return written.map(|()| false);
        }
        let _counted = Counted::new(&self.0);
        write.await.map(|()| true)
    }
}

/// One more on a gauge while it lives: counted out also when the client leaves and the write
/// is dropped.
struct Counted<'a>(&'a Gauge);

impl<'a> Counted<'a> {
    fn new(gauge: &'a Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// What is left of `chunks` after their first `written` bytes.
fn unsent(chunks: &[IoSlice<'_>], mut written: usize) -> Bytes {
    let mut rest = BytesMut::new();
    for chunk in chunks {
        let skip = written.min(chunk.len());
        written -= skip;
        rest.extend_from_slice(&chunk[skip..]);
    }
    rest.freeze()
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_left_unsent_starts_where_the_write_stopped() {
        let chunks = [IoSlice::new(b"abc"), IoSlice::new(b"de"), IoSlice::new(b"fgh")];
        assert_eq!(unsent(&chunks, 0), "abcdefgh");
        assert_eq!(unsent(&chunks, 2), "cdefgh");
        assert_eq!(unsent(&chunks, 3), "defgh");
        assert_eq!(unsent(&chunks, 4), "efgh");
        assert_eq!(unsent(&chunks, 7), "h");
        assert_eq!(unsent(&chunks, 8), "");
    }

    /// A shard that falls behind twice before the stream's task wakes hands the stream back
    /// once: the second time must not drop the first hand-back, or the task wakes to nothing
    /// and the stream goes silent for good.
    #[tokio::test]
    async fn a_stream_handed_back_twice_keeps_its_first_hand_back() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let _client = tokio::net::TcpStream::connect(listener.local_addr().expect("addr")).await.expect("connect");
        let (server_side, _) = listener.accept().await.expect("accept");
        let attached = Attached {
            socket: Socket::new(server_side),
            state: Mutex::new(State::Detached),
            handed_back: Notify::new(),
        };
        let filter = Filter { user: uuid::Uuid::now_v7(), orgs: Vec::new(), last: 41, seen: 41 };
        *lock(&attached.state) = State::Attached(filter);

        assert!(attached.hand_back(&mut lock(&attached.state), Bytes::from_static(b"rest"), false));
        assert!(!attached.hand_back(&mut lock(&attached.state), Bytes::new(), false), "handed back already");
        assert!(!attached.hand_back(&mut lock(&attached.state), Bytes::new(), true));

        let handback = attached.take_back().expect("the first hand-back is still there");
        assert_eq!((handback.filter.last, &handback.unsent[..], handback.reload_orgs), (41, &b"rest"[..], false));
        assert!(attached.take_back().is_none(), "taken once");
        // One wake-up is waiting for the task, for the one hand-back.
        tokio::time::timeout(Duration::from_secs(30), attached.handed_back.notified()).await.expect("woken");
    }

    #[test]
    fn the_heartbeat_is_one_chunk() {
        assert_eq!(*HEARTBEAT, serve::chunk(b": heartbeat\n\n"));
        assert_eq!(&HEARTBEAT[..], b"d\r\n: heartbeat\n\n\r\n");
    }
}
