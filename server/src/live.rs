//! Live streams (SSE): a user's event stream and a run's log stream.
//!
//! Both read from the database, so they resume from `Last-Event-ID` without gap or duplicate
//! and never depend on a signal arriving. Events: one fan-out task per server reads new rows of
//! `events` when the bus says there are some (and every second regardless) and broadcasts them
//! to this server's streams through a bounded ring; each stream passes on what its user may see.
//! A stream whose client is too slow for the events (the stream waited for the client to read
//! while it was a whole ring behind the fan-out) gets a `resync` event and ends, as soon as it
//! can tell: the client reconnects with its last id and catches up from the database, and the
//! server holds nothing for it meanwhile. A stream that fell behind while its client kept up
//! (the server was busy, or a burst came) listens again and catches up from the database; if
//! its client then makes it wait before it is less than a ring behind, it is told to resync
//! all the same, so that a client that stopped reading hears the same thing however the server
//! was scheduled meanwhile. A stream opened with `Last-Event-ID` catches up at its client's
//! pace: its client asked for that backlog.
//!
//! Logs: a log stream reads its run's lines from the database when it is woken for its run (the
//! bus says the run has new lines, or the fan-out broadcast the run's change of state), and every
//! second regardless, at the pace the client reads, so it never falls behind; it ends with an
//! `end` event carrying the run's outcome. Other runs' lines and other events wake it not. When the server stops, every
//! stream ends (the event channel closes, and the others see `closing`), and its client resumes.
//! The retention janitor deletes old events but never the newest backlog ([`crate::janitor`]); a
//! client resuming from an id that was deleted goes on from the next event still stored.
//! Events go out as frames encoded once by the fan-out ([`crate::http::sse`]). An event stream
//! on a lean connection spends its idle time attached to the fan-out, which writes its events
//! straight to its socket ([`direct`]).

mod direct;

use std::{
    collections::{HashMap, HashSet, VecDeque},
    io,
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::body::Bytes;
use futures::{Stream, StreamExt};
use prometheus_client::metrics::{counter::Counter, family::Family};
use sea_orm::{ColumnTrait, DbErr, EntityTrait, QueryFilter};
use serde_json::json;
use tokio::sync::{
    broadcast::{
        self,
        error::{RecvError, TryRecvError},
    },
    watch,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    bus::Signal,
    config::LiveSettings,
    entity::{events, memberships, run_logs, runs},
    events as event_log,
    http::{
        serve::{self, Socket},
        sse,
    },
    runs::status as run_status,
    state::AppState,
};

/// Readers look on this timer too, in case a signal was lost (Redis restarting, say).
const FALLBACK_POLL: Duration = Duration::from_secs(1);
/// Rows read per query.
const PAGE: u64 = 500;

/// An event as the fan-out hands it to every stream: encoded once, not once per stream.
struct Fanned {
    event: events::Model,
    /// Its SSE frame, for a stream's body.
    frame: Bytes,
    /// The same as an HTTP/1.1 chunk, for a stream written directly.
    chunk: Bytes,
}

impl Fanned {
    fn new(event: events::Model) -> Self {
        let frame = sse_frame(&event);
        let chunk = serve::chunk(&frame);
        Self { event, frame, chunk }
    }
}

pub struct Live {
    /// Taken when the server stops: every event stream sees its channel close and ends.
    events: Mutex<Option<broadcast::Sender<Arc<Fanned>>>>,
    /// Each user's open streams.
    open: Mutex<HashMap<Uuid, Vec<Open>>>,
    /// Numbers the streams, to find one in `open`.
    next_key: AtomicU64,
    max_per_user: usize,
    /// Cancelled when the server stops; log streams and streams written directly end on it.
    closing: CancellationToken,
    /// The event streams the fan-out writes to directly.
    attached: direct::Shards,
    /// The id of the last event broadcast.
    head: AtomicI64,
    /// Cancelled once the fan-out knows where the event log ends. A stream opened before then
    /// could miss the events stored between its own look at the log and the fan-out's.
    fan_out_started: CancellationToken,
    /// How many events the ring holds: a stream further behind than this has to catch up from
    /// the database.
    ring: i64,
    /// Wakes the log streams of one run.
    log_wakers: LogWakers,
}

/// The open log streams' wake-ups, by run: a stream waits for its own run only.
#[derive(Default)]
struct LogWakers {
    runs: Mutex<HashMap<Uuid, watch::Sender<()>>>,
    /// Log streams woken, by why: `run` (for their own run) or `poll` (the fall-back timer).
    wakes: Family<[(&'static str, &'static str); 1], Counter>,
}

impl LogWakers {
    /// A wake-up for a stream of `run`'s log, until [`Self::release`].
    fn watch(&self, run: Uuid) -> watch::Receiver<()> {
        let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        runs.entry(run).or_insert_with(|| watch::channel(()).0).subscribe()
    }

    /// A stream of `run` ends; its wake-up, `wake`, goes with it.
    fn release(&self, run: Uuid, wake: watch::Receiver<()>) {
        let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        drop(wake);
        if runs.get(&run).is_some_and(|sender| sender.receiver_count() == 0) {
            runs.remove(&run);
        }
    }

    fn wake(&self, run: Uuid) {
        if let Some(sender) = self.runs.lock().unwrap_or_else(|p| p.into_inner()).get(&run) {
            sender.send_replace(());
        }
    }

    /// Wakes every log stream: a signal may have been missed.
    fn wake_all(&self) {
        for sender in self.runs.lock().unwrap_or_else(|p| p.into_inner()).values() {
            sender.send_replace(());
        }
    }

    fn woken(&self, cause: &'static str) {
        self.wakes.get_or_create(&[("cause", cause)]).inc();
    }
}

/// What a stream was opened with: it ends when that stops working.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Credential {
    /// A browser session, by id.
    Session(Uuid),
    /// A personal API token, by id.
    Token(Uuid),
}

/// One open stream, as its user's list holds it.
struct Open {
    key: u64,
    credential: Credential,
    ended: CancellationToken,
}

/// A user's hold on one of their stream places; released when the stream ends.
pub struct Slot {
    state: AppState,
    user: Uuid,
    key: u64,
    /// Cancelled when the server stops, or when the stream's credential is revoked.
    ended: CancellationToken,
}

impl Slot {
    /// Cancelled when the stream must end: the server is stopping, or its credential was revoked.
    pub fn ended(&self) -> &CancellationToken {
        &self.ended
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.state.live.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(streams) = open.get_mut(&self.user) {
            streams.retain(|stream| stream.key != self.key);
            if streams.is_empty() {
                open.remove(&self.user);
            }
        }
    }
}

impl Live {
    pub fn new(settings: &LiveSettings) -> Self {
        let events = broadcast::channel(settings.backlog).0;
        Self {
            attached: direct::Shards::new(&events),
            events: Mutex::new(Some(events)),
            open: Mutex::new(HashMap::new()),
            next_key: AtomicU64::new(0),
            max_per_user: settings.max_streams_per_user,
            closing: CancellationToken::new(),
            head: AtomicI64::new(0),
            fan_out_started: CancellationToken::new(),
            ring: i64::try_from(settings.backlog).unwrap_or(i64::MAX),
            log_wakers: LogWakers::default(),
        }
    }

    /// Ends every stream: the server is stopping. Their clients reconnect (to another server,
    /// or to this one when it is back) from their last id.
    pub fn close(&self) {
        self.sender().take();
        self.closing.cancel();
    }

    fn sender(&self) -> std::sync::MutexGuard<'_, Option<broadcast::Sender<Arc<Fanned>>>> {
        self.events.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This server's events from now on; closed at once when the server is stopping.
    fn subscribe(&self) -> broadcast::Receiver<Arc<Fanned>> {
        match &*self.sender() {
            Some(sender) => sender.subscribe(),
            None => broadcast::channel(1).1,
        }
    }

    fn publish(&self, event: Fanned) {
        self.head.fetch_max(event.event.id, Ordering::Relaxed);
        // A run's change of state may end its log streams.
        if event.event.kind == "run"
            && let Some(run) = event.event.payload["id"].as_str().and_then(|id| id.parse().ok())
        {
            self.log_wakers.wake(run);
        }
        if let Some(sender) = &*self.sender() {
            let _ = sender.send(Arc::new(event));
        }
    }

    /// Takes one of `user`'s stream places, if one is free, for a stream opened with
    /// `credential`.
    pub fn acquire(state: &AppState, user: Uuid, credential: Credential) -> Option<Slot> {
        let live = &state.live;
        let mut open = live.open.lock().unwrap_or_else(|p| p.into_inner());
        let streams = open.entry(user).or_default();
        if streams.len() >= live.max_per_user {
            return None;
        }
        let key = live.next_key.fetch_add(1, Ordering::Relaxed);
        let ended = live.closing.child_token();
        streams.push(Open { key, credential, ended: ended.clone() });
        Some(Slot { state: state.clone(), user, key, ended })
    }

    /// The credentials of the streams open on this server, `user`'s only when given.
    pub fn credentials(&self, user: Option<Uuid>) -> HashSet<Credential> {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let streams = |streams: &Vec<Open>| streams.iter().map(|stream| stream.credential).collect::<Vec<_>>();
        match user {
            Some(user) => open.get(&user).map(streams).unwrap_or_default().into_iter().collect(),
            None => open.values().flat_map(streams).collect(),
        }
    }

    /// Ends the streams opened with one of `revoked`.
    pub fn end_streams(&self, revoked: &HashSet<Credential>) {
        if revoked.is_empty() {
            return;
        }
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        for stream in open.values().flatten().filter(|stream| revoked.contains(&stream.credential)) {
            stream.ended.cancel();
        }
    }

    /// Registers the live streams' metrics.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.attached.register_metrics(registry);
        registry.register(
            "sse_log_wakes",
            "Run log streams woken to look for new lines: run (their own run has new lines or changed state), \
             poll (the fall-back timer)",
            self.log_wakers.wakes.clone(),
        );
    }

    /// Event streams the fan-out writes to directly now.
    pub fn attached_streams(&self) -> usize {
        self.attached.attached()
    }

    /// Streams waiting for their client to read what they were sent.
    pub fn writes_waiting(&self) -> usize {
        self.attached.writes_waiting()
    }

    /// Streams open on this server.
    pub fn open_streams(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).values().map(Vec::len).sum()
    }
}

/// Starts broadcasting new events to this server's streams, until `stop`. Call before the
/// server takes requests: it returns once the fan-out knows where the event log ends, so that a
/// stream opened after it misses nothing.
pub async fn start_fan_out(state: AppState, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    let signals = state.bus.subscribe();
    tokio::spawn(wake_log_streams(state.clone(), state.bus.subscribe(), stop.clone()));
    // Almost always read at once. If the database does not answer, the server starts anyway and
    // the fan-out keeps trying in the background.
    let first = event_log::latest_id(&state.db).await;
    if first.is_ok() {
        state.live.fan_out_started.cancel();
    }
    tokio::spawn(async move {
        let mut cursor = first;
        let cursor = loop {
            match cursor {
                Ok(id) => {
                    state.live.fan_out_started.cancel();
                    break id;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the event log yet");
                    tokio::select! {
                        () = tokio::time::sleep(FALLBACK_POLL) => {}
                        () = stop.cancelled() => return,
                    }
                    cursor = event_log::latest_id(&state.db).await;
                }
            }
        };
        fan_out(state, signals, cursor, stop).await;
    })
}

/// Wakes the log streams of each run the bus says has new lines, until `stop`.
async fn wake_log_streams(state: AppState, mut signals: broadcast::Receiver<Signal>, stop: CancellationToken) {
    loop {
        let signal = tokio::select! {
            signal = signals.recv() => signal,
            () = stop.cancelled() => return,
        };
        match signal {
            Ok(Signal::Logs(run)) => state.live.log_wakers.wake(run),
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => state.live.log_wakers.wake_all(),
            Err(RecvError::Closed) => return,
        }
    }
}

/// Broadcasts the events after `cursor`, and each new one, until `stop`.
async fn fan_out(state: AppState, mut signals: broadcast::Receiver<Signal>, mut cursor: i64, stop: CancellationToken) {
    // Stopped with the fan-out (they end by themselves when the server closes its streams).
    let _writers = state.live.attached.start();
    loop {
        loop {
            match event_log::after(&state.db, cursor, PAGE).await {
                Ok(batch) => {
                    let full = batch.len() as u64 == PAGE;
                    for event in batch {
                        cursor = event.id;
                        state.live.publish(Fanned::new(event));
                    }
                    if !full {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read new events");
                    break;
                }
            }
        }
        tokio::select! {
            () = wait_for(&mut signals, |signal| signal == Signal::Events) => {}
            () = tokio::time::sleep(FALLBACK_POLL) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// Completes on a signal `wanted` accepts, or when the receiver fell behind (which may hide one).
async fn wait_for(signals: &mut broadcast::Receiver<Signal>, wanted: impl Fn(Signal) -> bool) {
    loop {
        match signals.recv().await {
            Ok(signal) if wanted(signal) => return,
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => return,
            Err(RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}

async fn org_ids(state: &AppState, user: Uuid) -> Result<Vec<Uuid>, DbErr> {
    Ok(memberships::Entity::find()
        .filter(memberships::Column::UserId.eq(user))
        .all(&state.db)
        .await?
        .into_iter()
        .map(|m| m.org_id)
        .collect())
}

fn sse_frame(event: &events::Model) -> Bytes {
    sse::frame(event.id, &event.kind, &event.payload.to_string())
}

fn failed(id: i64, what: &str, e: &DbErr) -> Bytes {
    tracing::warn!(error = %e, "{what}");
    resync_event(id, "The server could not read the stream's source; reconnect to continue.")
}

fn resync_event(id: i64, message: &str) -> Bytes {
    sse::frame(id, "resync", &json!({ "message": message }).to_string())
}

/// How long a stream opened before the fan-out knows where the event log ends waits for it.
const FAN_OUT_START_WAIT: Duration = Duration::from_secs(10);

/// Why an event stream could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The fan-out cannot read the event log yet (the database did not answer at start).
    #[error("the event fan-out has not started")]
    Starting,
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// The user's event stream, after event `after` (or from now). Opened only once the fan-out
/// knows where the event log ends (it waits a little for that, then gives up with
/// [`OpenError::Starting`]): nothing stored after the stream's start then escapes both.
pub async fn event_stream(
    state: AppState,
    slot: Slot,
    user: Uuid,
    after: Option<i64>,
) -> Result<EventStream, OpenError> {
    tokio::time::timeout(FAN_OUT_START_WAIT, state.live.fan_out_started.cancelled())
        .await
        .map_err(|_| OpenError::Starting)?;
    // Listen before looking, so that nothing falls between the two.
    let live = state.live.subscribe();
    let orgs = org_ids(&state, user).await?;
    let (last, caught_up) = match after {
        Some(id) => (id, false),
        None => (event_log::latest_id(&state.db).await?, true),
    };
    let filter = Filter { user, orgs, last, seen: last };
    Ok(EventStream::new(Parked { state, slot }, filter, live, caught_up))
}

/// Which events a user's stream passes on, and where it is.
struct Filter {
    user: Uuid,
    orgs: Vec<Uuid>,
    /// The id of the last event sent.
    last: i64,
    /// The id of the last event the stream went past, sent or not for this user: where the
    /// stream is in the fan-out's events.
    seen: i64,
}

impl Filter {
    /// How far the stream is behind the newest event broadcast.
    fn behind(&self, head: i64) -> i64 {
        head.saturating_sub(self.last.max(self.seen))
    }

    fn visible(&self, event: &events::Model) -> bool {
        event.user_id == Some(self.user) || event.org_id.is_some_and(|org| self.orgs.contains(&org))
    }

    /// Applies a membership event for this user to its organizations; true when the event does
    /// not say enough to do so, and they must be read again.
    fn apply_membership(&mut self, event: &events::Model) -> bool {
        if event.user_id != Some(self.user) || event.kind != "membership" {
            return false;
        }
        let org = event.payload["org_id"].as_str().and_then(|id| id.parse::<Uuid>().ok());
        match (org, event.payload["member"].as_bool()) {
            (Some(org), Some(true)) if !self.orgs.contains(&org) => self.orgs.push(org),
            (Some(org), Some(false)) => self.orgs.retain(|known| *known != org),
            (Some(_), Some(true)) => {}
            _ => return true,
        }
        false
    }
}

/// What a stream holds while it is attached to the fan-out, which has its [`Filter`].
struct Parked {
    state: AppState,
    slot: Slot,
}

impl Parked {
    /// The stream again, handed back at `filter`: it catches up from the database.
    fn resume(self, filter: Filter, reload_orgs: bool) -> EventStream {
        let live = self.state.live.subscribe();
        EventStream { reload_orgs, owed: true, ..EventStream::new(self, filter, live, false) }
    }
}

/// A user's event stream: what it has to send, from the database while it catches up, then
/// from this server's fan-out.
pub struct EventStream {
    parked: Parked,
    filter: Filter,
    caught_up: bool,
    /// What it catches up on the fan-out broadcast already (it fell behind, or was handed
    /// back), rather than what its client asked for with `Last-Event-ID`.
    owed: bool,
    backlog: VecDeque<events::Model>,
    live: broadcast::Receiver<Arc<Fanned>>,
    /// Taken off `live` while looking whether the stream could be attached.
    peeked: Option<Result<Arc<Fanned>, RecvError>>,
    /// The user's organizations must be read again before anything else is sent.
    reload_orgs: bool,
    /// Since `live` was subscribed, the stream waited for its client to read: if `live` lagged,
    /// the client is too slow for the events.
    waited_on_client: bool,
    /// Hyper writes the stream's body, and cannot say whether it waited for the client: a
    /// stream that lags once caught up is taken to have a client too slow for the events.
    written_by_hyper: bool,
    /// Its client made it wait while it was a whole ring behind the fan-out: it is told to
    /// resync before it sends anything more.
    too_slow: bool,
    done: bool,
}

impl EventStream {
    fn new(parked: Parked, filter: Filter, live: broadcast::Receiver<Arc<Fanned>>, caught_up: bool) -> Self {
        let backlog = VecDeque::new();
        Self {
            parked,
            filter,
            caught_up,
            owed: false,
            backlog,
            live,
            peeked: None,
            reload_orgs: false,
            waited_on_client: false,
            written_by_hyper: false,
            too_slow: false,
            done: false,
        }
    }

    /// The stream as a body's events.
    pub fn into_stream(self) -> impl Stream<Item = Bytes> {
        let ended = self.parked.slot.ended.clone();
        let stream = Self { written_by_hyper: true, ..self };
        futures::stream::unfold(stream, |mut stream| async move {
            let event = stream.next().await?;
            Some((event, stream))
        })
        .take_until(ended.cancelled_owned())
    }

    /// Writes the stream to the client's connection itself, as HTTP/1.1 chunks, with the
    /// heartbeat comment every `heartbeat`; while it has nothing of its own to send, the
    /// fan-out writes its events (see [`direct`]).
    pub async fn write_to(self, socket: Socket, heartbeat: Duration) -> io::Result<()> {
        direct::write(self, socket, heartbeat).await
    }

    /// A change of the user's memberships changes which organizations' events they see. The
    /// event says which and how; one that does not is answered by reading them again.
    async fn note(&mut self, event: &events::Model) -> Result<(), DbErr> {
        if self.filter.apply_membership(event) {
            self.reload_orgs().await?;
        }
        Ok(())
    }

    /// Boxed: that query's future is large, and it is rarely needed; an idle stream's state
    /// stays small.
    async fn reload_orgs(&mut self) -> Result<(), DbErr> {
        self.filter.orgs = Box::pin(org_ids(&self.parked.state, self.filter.user)).await?;
        self.reload_orgs = false;
        Ok(())
    }

    /// The next event to send, waiting for the fan-out when nothing else is due.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            match self.due().await {
                Due::Event(frame) => return Some(frame),
                Due::End => return None,
                Due::Nothing => self.peeked = Some(self.live.recv().await),
            }
        }
    }

    /// What the stream has to send before anything more comes from the fan-out.
    async fn due(&mut self) -> Due {
        if self.done {
            return Due::End;
        }
        if self.too_slow {
            return self.resync();
        }
        if self.reload_orgs
            && let Err(e) = self.reload_orgs().await
        {
            self.done = true;
            return Due::Event(failed(self.filter.last, "cannot reload memberships", &e));
        }
        loop {
            if let Some(end) = self.too_slow_to_catch_up() {
                return end;
            }
            if let Some(event) = self.backlog.pop_front() {
                self.filter.last = event.id;
                if let Err(e) = self.note(&event).await {
                    self.done = true;
                    return Due::Event(failed(self.filter.last, "cannot reload memberships", &e));
                }
                return Due::Event(sse_frame(&event));
            }
            if !self.caught_up {
                // Between pages: a client too slow for the events hears so now, not after it
                // was fed everything it missed.
                if let Some(end) = self.check_lag() {
                    return end;
                }
                // Everything broadcast so far is stored: a page that is not full went past it.
                let head = self.parked.state.live.head.load(Ordering::Relaxed);
                // Boxed, like the memberships' query.
                let filter = &self.filter;
                let page = Box::pin(event_log::visible_after(
                    &self.parked.state.db,
                    filter.user,
                    &filter.orgs,
                    filter.last,
                    PAGE,
                ));
                match page.await {
                    Ok(page) => {
                        self.caught_up = (page.len() as u64) < PAGE;
                        if self.caught_up {
                            self.filter.seen = self.filter.seen.max(head);
                        }
                        self.backlog.extend(page);
                        continue;
                    }
                    Err(e) => {
                        self.done = true;
                        return Due::Event(failed(self.filter.last, "cannot read the event log", &e));
                    }
                }
            }
            // Caught up: what comes next was broadcast after the stream listened again.
            self.owed = false;
            let Some(received) = self.peeked.take() else { return Due::Nothing };
            match received {
                // Sent already, from the database.
                Ok(fanned) if fanned.event.id <= self.filter.last => {}
                Ok(fanned) => {
                    self.filter.seen = self.filter.seen.max(fanned.event.id);
                    if !self.filter.visible(&fanned.event) {
                        continue;
                    }
                    self.filter.last = fanned.event.id;
                    if let Err(e) = self.note(&fanned.event).await {
                        self.done = true;
                        return Due::Event(failed(self.filter.last, "cannot reload memberships", &e));
                    }
                    return Due::Event(fanned.frame.clone());
                }
                Err(RecvError::Lagged(missed)) => {
                    if let Some(end) = self.lagged(missed) {
                        return end;
                    }
                }
                Err(RecvError::Closed) => return Due::End,
            }
        }
    }

    /// Looks, without waiting, whether the fan-out got a whole ring ahead of the stream, passing
    /// over what the stream has sent already; what is left to say, if that ends the stream.
    fn check_lag(&mut self) -> Option<Due> {
        loop {
            match &self.peeked {
                Some(Ok(fanned)) if fanned.event.id <= self.filter.last => self.peeked = None,
                // Not sent yet (it comes after the catch-up), or the channel closed.
                Some(Ok(_) | Err(RecvError::Closed)) => return None,
                Some(Err(RecvError::Lagged(missed))) => {
                    let missed = *missed;
                    self.peeked = None;
                    return self.lagged(missed);
                }
                None => {}
            }
            self.peeked = Some(match self.live.try_recv() {
                Ok(fanned) => Ok(fanned),
                Err(TryRecvError::Empty) => return None,
                Err(TryRecvError::Lagged(missed)) => Err(RecvError::Lagged(missed)),
                Err(TryRecvError::Closed) => Err(RecvError::Closed),
            });
        }
    }

    /// The fan-out got a whole ring ahead. If the stream waited for its client meanwhile, the
    /// client is too slow: it is told to resync, and the stream ends. Otherwise (the server was
    /// busy, a burst came, or the stream was catching up from the database anyway) the stream
    /// listens again and catches up from the database, which has every event the ring dropped
    /// (listening first, so that nothing falls between the two).
    fn lagged(&mut self, missed: u64) -> Option<Due> {
        let slow_client = self.waited_on_client || (self.written_by_hyper && self.caught_up);
        if !slow_client {
            tracing::debug!(user = %self.filter.user, missed, "an event stream fell behind its fan-out; it catches up");
            self.live = self.parked.state.live.subscribe();
            self.caught_up = false;
            self.owed = true;
            return None;
        }
        tracing::info!(user = %self.filter.user, missed, "an event stream's client is too slow; telling it to resync");
        Some(self.resync())
    }

    /// A stream catching up on what the fan-out broadcast already, whose client made it wait,
    /// and whose next event is a whole ring behind, has a client too slow for the events: had
    /// it been listening from there, its receiver would have lagged. It is told to resync, and
    /// ends. (Event ids can skip a number, so this errs towards a resync, never away from one.)
    fn too_slow_to_catch_up(&mut self) -> Option<Due> {
        if !(self.owed && self.waited_on_client) {
            return None;
        }
        let next = self.backlog.front()?;
        let live = &self.parked.state.live;
        let behind = live.head.load(Ordering::Relaxed).saturating_sub(next.id - 1);
        if behind <= live.ring {
            return None;
        }
        tracing::info!(user = %self.filter.user, behind, "an event stream's client is too slow to catch up; telling it to resync");
        Some(self.resync())
    }

    /// Its client made it wait for a write. If the stream is a whole ring behind the fan-out
    /// meanwhile, and owes its client what was broadcast (rather than a backlog the client
    /// asked for), the client is too slow for the events: the stream is told to resync before
    /// it sends anything more. This is the criterion itself, applied where it is known; a
    /// receiver lagging is only one way to learn it, and a stream that listened again lately,
    /// or read ahead from the database, may never see its receiver lag.
    fn waited_for_client(&mut self) {
        self.waited_on_client = true;
        if !(self.owed || self.caught_up) || self.too_slow {
            return;
        }
        let live = &self.parked.state.live;
        let behind = self.filter.behind(live.head.load(Ordering::Relaxed));
        if behind > live.ring {
            tracing::info!(user = %self.filter.user, behind, "an event stream's client made it wait a whole ring behind; telling it to resync");
            self.too_slow = true;
        }
    }

    fn resync(&mut self) -> Due {
        self.done = true;
        self.backlog.clear();
        Due::Event(resync_event(self.filter.last, "This stream fell behind. Reconnect with Last-Event-ID to catch up."))
    }
}

/// What an event stream has to send.
enum Due {
    Event(Bytes),
    /// Nothing, until the fan-out broadcasts more.
    Nothing,
    /// The stream is over.
    End,
}

/// A run's log, after line `after`, then live, then `end`.
pub fn log_stream(state: AppState, slot: Slot, run: Uuid, after: i64) -> impl Stream<Item = Bytes> {
    let wake = Some(state.live.log_wakers.watch(run));
    let ended = slot.ended.clone();
    let stream = LogStream { state, _slot: slot, run, last: after, lines: VecDeque::new(), wake, done: false };
    futures::stream::unfold(stream, |mut stream| async move {
        let event = stream.next().await?;
        Some((event, stream))
    })
    .take_until(ended.cancelled_owned())
}

struct LogStream {
    state: AppState,
    _slot: Slot,
    run: Uuid,
    last: i64,
    lines: VecDeque<run_logs::Model>,
    /// Woken for this run; taken when the stream ends.
    wake: Option<watch::Receiver<()>>,
    done: bool,
}

impl Drop for LogStream {
    fn drop(&mut self) {
        if let Some(wake) = self.wake.take() {
            self.state.live.log_wakers.release(self.run, wake);
        }
    }
}

impl LogStream {
    async fn read(&mut self) -> Result<bool, DbErr> {
        let page = crate::runs::logs(&self.state, self.run, self.last, PAGE).await?;
        let found = !page.is_empty();
        self.lines.extend(page);
        Ok(found)
    }

    async fn next(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        loop {
            if let Some(line) = self.lines.pop_front() {
                self.last = line.seq;
                let data = json!({ "seq": line.seq, "stream": line.stream, "text": line.text, "at": line.at });
                return Some(sse::frame(line.seq, "line", &data.to_string()));
            }
            match self.read().await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    self.done = true;
                    return Some(failed(self.last, "cannot read run logs", &e));
                }
            }
            // Nothing new: has the run ended? Its last lines are stored before it ends, so
            // one more look after seeing the end finds any that came in between.
            let run = runs::Entity::find_by_id(self.run).one(&self.state.db).await;
            match run {
                Ok(Some(run)) if run_status::is_terminal(&run.status) => match self.read().await {
                    Ok(true) => continue,
                    Ok(false) => {
                        self.done = true;
                        let outcome = json!({ "status": run.status, "reason": run.reason, "exit_code": run.exit_code });
                        return Some(sse::frame(self.last, "end", &outcome.to_string()));
                    }
                    Err(e) => {
                        self.done = true;
                        return Some(failed(self.last, "cannot read run logs", &e));
                    }
                },
                Ok(_) => {}
                Err(e) => {
                    self.done = true;
                    return Some(failed(self.last, "cannot read the run", &e));
                }
            }
            let woken = async {
                let woke = match &mut self.wake {
                    Some(wake) => wake.changed().await.is_ok(),
                    None => false,
                };
                if !woke {
                    std::future::pending::<()>().await;
                }
            };
            let cause = tokio::select! {
                () = woken => "run",
                () = tokio::time::sleep(FALLBACK_POLL) => "poll",
            };
            self.state.live.log_wakers.woken(cause);
        }
    }
}
