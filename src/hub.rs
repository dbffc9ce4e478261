//! The broadcast hub: collects once per tick on a dedicated thread, serializes once, and
//! publishes the result through a `tokio::sync::watch` channel that the WebSocket broadcaster
//! (which writes it to every client, see `http::fanout`), REST handlers and the metrics
//! endpoint read from. A watch channel keeps only the latest value, so a slow reader can
//! never make the hub queue documents or wait.
//!
//! Each tick is stamped once ([`Stamp`]): wall time for what clients see (`t` in history
//! points), monotonic time for everything that orders or measures. A Pi has no RTC, and
//! fake-hwclock and NTP step its wall clock by hours; history is kept in tick order and its
//! windows are cut by monotonic time, so a step neither reorders nor empties them.
//!
//! The hub also holds what the history subsystem records ([`Records`]: the tiers and the events
//! timeline) so that HTTP handlers read them and other subsystems (alerts) follow the events:
//! [`Hub::subscribe_events`] tells the newest event number, [`Hub::events_after`] gives the
//! events since the last one a follower saw.
//!
//! # Unwatched ticks
//!
//! Scanning every process (`/proc/PID/stat` of each) is most of a tick's cost and only a
//! viewer needs it. The collector scans while a WebSocket client is connected, and on the tick
//! after a REST or `/metrics` request asked for the document ([`Hub::latest_full`], which
//! waits for that tick); other ticks collect only what history, events and alerts read and
//! carry the last full collection's other figures (see [`crate::stats::Context::full`]).
//!
//! Nor is the document serialized on a tick nobody watches: history, events, alerts and the
//! network watch read its typed values, and a REST or `/metrics` reader that comes along
//! serializes it then, once ([`Snapshot::json`]). While a WebSocket client is connected the
//! collector serializes it as before, so that clients never wait for it.
//!
//! What must see every tick (the history's push and events detector, the alert rules) runs on
//! the collector thread right after the publish ([`Hub::on_tick`]), a few microseconds of
//! work under their own locks, instead of in tasks woken by the watch channel: an unwatched
//! tick then wakes no runtime thread at all.
//!
//! Nor does an unwatched tick allocate. Once the latest snapshot has replaced the one before,
//! nobody holds that one any more (a reader clones the latest and drops it when done), so the
//! next tick collects into it ([`Collector::collect_into`]), keeping its buffers, instead of
//! building and dropping a document every second. A snapshot still held by a reader is left
//! to it, and that tick allocates a new one.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::events::{Event, EventLog, EventsView};
use crate::history::{Day, History, HistoryView, Range};
use crate::stats::model::{Connectivity, StatsDocument};
use crate::stats::{Collector, Context};

/// sysinfo needs this much time between two CPU samples for a meaningful usage figure.
const CPU_PRIMING_DELAY: Duration = Duration::from_millis(250);

/// When a tick happened, read once per tick from both clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Wall time, for clients; it can step backwards or forwards.
    pub wall: SystemTime,
    /// Monotonic time, for ordering, windows and ages.
    pub mono: Instant,
}

impl Stamp {
    pub fn now() -> Stamp {
        Stamp {
            wall: SystemTime::now(),
            mono: Instant::now(),
        }
    }
}

/// One tick's result, shared by every reader.
#[derive(Debug)]
pub struct Snapshot {
    /// This snapshot's number: 1 for the first, one more for each after.
    pub seq: u64,
    pub collected_at: Instant,
    pub document: StatsDocument,
    /// The document serialized, at most once: by the collector while someone watches, else by
    /// the first reader that needs the bytes.
    encoded: OnceLock<Encoded>,
    pub collection_time: Duration,
}

#[derive(Debug)]
struct Encoded {
    json: Bytes,
    /// The document as one complete WebSocket text frame (header and payload), made by the
    /// first client to send it, then written as is to every plain client.
    frame: OnceLock<Bytes>,
    /// The same for `permessage-deflate` clients: compressed once, then shared by all of them.
    deflated: OnceLock<Bytes>,
}

impl Snapshot {
    fn new(seq: u64, document: StatsDocument, collected_at: Instant, took: Duration) -> Snapshot {
        Snapshot {
            seq,
            collected_at,
            document,
            encoded: OnceLock::new(),
            collection_time: took,
        }
    }

    /// Snapshot `seq` of `document`, collected now.
    #[cfg(test)]
    pub(crate) fn for_tests(seq: u64, document: StatsDocument) -> Snapshot {
        Snapshot::new(seq, document, Instant::now(), Duration::ZERO)
    }

    /// Whether this is a full collection (processes scanned, details read on this tick).
    pub fn is_full(&self) -> bool {
        self.document.processes.scanned_at == Some(self.document.collected_at)
    }

    /// The document as JSON (serialized on first use).
    pub fn json(&self) -> Bytes {
        self.encoded().json.clone()
    }

    /// The document as one complete text frame, built once.
    pub fn frame(&self) -> Bytes {
        let encoded = self.encoded();
        encoded
            .frame
            .get_or_init(|| crate::http::text_frame(&encoded.json, false))
            .clone()
    }

    /// The document as one complete compressed text frame (RSV1 set, RFC 7692), compressed
    /// and built once.
    pub fn deflated(&self) -> Bytes {
        let encoded = self.encoded();
        encoded
            .deflated
            .get_or_init(|| crate::http::text_frame(&crate::http::deflate(&encoded.json), true))
            .clone()
    }

    fn encoded(&self) -> &Encoded {
        self.encoded.get_or_init(|| {
            let json = serde_json::to_string(&self.document).unwrap_or_else(|err| {
                // Not expected (every map key is a string); a reader gets an empty object.
                tracing::error!("cannot serialize stats document: {err}");
                "{}".to_owned()
            });
            Encoded {
                json: Bytes::from(json),
                frame: OnceLock::new(),
                deflated: OnceLock::new(),
            }
        })
    }
}

/// A compact point of the dashboard's history charts.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct HistoryPoint {
    /// Unix time in milliseconds.
    pub t: u64,
    pub cpu: f64,
    pub mem: f64,
    pub swap: f64,
    pub temp: Option<f64>,
    pub net_recv: Option<f64>,
    pub net_sent: Option<f64>,
    pub disk_read: Option<f64>,
    pub disk_write: Option<f64>,
    pub per_core: Vec<f64>,
    pub clients: u64,
}

impl HistoryPoint {
    /// Makes this the point of `doc` at `t`, keeping the per-core buffer.
    fn refill(&mut self, doc: &StatsDocument, t: u64) {
        use crate::stats::wire::round1;
        // An unread memory section is NaN here, which serializes as null: a gap, not a 0.
        let memory = doc.memory.as_ref();
        self.t = t;
        self.cpu = round1(doc.cpu.usage_percent);
        self.mem = memory.map_or(f64::NAN, |m| round1(m.used_percent()));
        self.swap = memory.map_or(f64::NAN, |m| round1(m.swap_used_percent()));
        self.temp = doc.temperature.pi_cpu_celsius.map(round1);
        self.net_recv = doc.network.rates.map(|r| round1(r.recv_bytes_per_sec));
        self.net_sent = doc.network.rates.map(|r| round1(r.sent_bytes_per_sec));
        self.disk_read = doc.disk.io_rates.map(|r| round1(r.read_bytes_per_sec));
        self.disk_write = doc.disk.io_rates.map(|r| round1(r.write_bytes_per_sec));
        self.per_core.clear();
        self.per_core
            .extend(doc.cpu.per_core_usage.iter().copied().map(round1));
        self.clients = doc.connected_clients;
    }
}

/// Counters about the daemon itself, for `/metrics` and logs.
#[derive(Debug, Default)]
pub struct Counters {
    pub clients: AtomicU64,
    /// Signalled whenever `clients` changes, for those that show the count without polling it
    /// (the systemd status line).
    pub clients_changed: tokio::sync::Notify,
    pub collections: AtomicU64,
    pub dropped_slow_clients: AtomicU64,
    pub refused_clients: AtomicU64,
}

/// A history point with the monotonic time of its tick, which cuts the windows.
#[derive(Debug)]
struct Entry {
    at: Instant,
    point: HistoryPoint,
}

/// The long-term history and the events timeline: written by the history subsystem, read by
/// HTTP handlers and event followers. Locks are held for a push or a query, never for I/O
/// that can block for long.
pub struct Records {
    /// `None` until the history subsystem has restored (or created) it.
    pub history: RwLock<Option<History>>,
    pub events: RwLock<EventLog>,
    /// The newest event's `seq` (0: none yet).
    newest_event: watch::Sender<u64>,
}

impl Records {
    fn new() -> Records {
        Records {
            history: RwLock::new(None),
            events: RwLock::new(EventLog::new(0)),
            newest_event: watch::Sender::new(0),
        }
    }

    /// Tells event followers that events up to `seq` exist.
    pub fn announce(&self, seq: u64) {
        self.newest_event.send_if_modified(|newest| {
            let changed = seq > *newest;
            *newest = (*newest).max(seq);
            changed
        });
    }
}

/// Per-tick work run on the collector thread after each publish (see [`Hub::on_tick`]).
pub type TickObserver = Box<dyn FnMut(&Hub, &Snapshot) + Send>;

/// Names an observer registered with [`Hub::on_tick`], to remove it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObserverId(u64);

#[derive(Default)]
struct Observers {
    next: u64,
    list: Vec<(ObserverId, TickObserver)>,
}

pub struct Hub {
    latest: watch::Sender<Option<Arc<Snapshot>>>,
    /// Run in registration order after each publish, under this lock.
    observers: Mutex<Observers>,
    pub records: Records,
    /// A REST or metrics reader asked for a document: the next tick scans processes.
    processes_wanted: AtomicBool,
    /// In tick order, oldest first.
    history: Mutex<VecDeque<Entry>>,
    history_len: usize,
    interval: Duration,
    pub counters: Counters,
    pub started: SystemTime,
    /// Alert rules and their state (see [`crate::alerts`]).
    pub alerts: Arc<crate::alerts::Board>,
}

impl Hub {
    pub fn new(interval: Duration, history_len: usize) -> Arc<Hub> {
        Arc::new(Hub {
            latest: watch::Sender::new(None),
            observers: Mutex::default(),
            records: Records::new(),
            processes_wanted: AtomicBool::new(false),
            history: Mutex::new(VecDeque::with_capacity(history_len)),
            history_len,
            interval,
            counters: Counters::default(),
            started: SystemTime::now(),
            alerts: Arc::default(),
        })
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// A receiver that sees every new snapshot (the current one counts as seen).
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Snapshot>>> {
        self.latest.subscribe()
    }

    pub fn latest(&self) -> Option<Arc<Snapshot>> {
        self.latest.borrow().clone()
    }

    pub fn clients(&self) -> u64 {
        self.counters.clients.load(Ordering::Relaxed)
    }

    /// Age of the latest snapshot; `None` before the first.
    pub fn snapshot_age(&self) -> Option<Duration> {
        self.latest
            .borrow()
            .as_ref()
            .map(|s| s.collected_at.elapsed())
    }

    /// Whether the collector is keeping up: the latest snapshot is at most three intervals old.
    pub fn is_fresh(&self) -> bool {
        self.snapshot_age()
            .is_some_and(|age| age <= self.interval * 3 + Duration::from_secs(1))
    }

    /// Runs `observer` on every snapshot published from now on, on the publishing (collector)
    /// thread, until [`Hub::stop_observing`]. It must not block: it delays the next tick. Where
    /// panics unwind, one that panics is logged and removed and the collector carries on (the
    /// release profile aborts on any panic, and systemd restarts the service).
    pub fn on_tick(&self, observer: TickObserver) -> ObserverId {
        let mut observers = self.observers.lock().unwrap_or_else(|e| e.into_inner());
        let id = ObserverId(observers.next);
        observers.next += 1;
        observers.list.push((id, observer));
        id
    }

    /// Removes an observer; once this returns it is not running and never runs again.
    pub fn stop_observing(&self, id: ObserverId) {
        let removed = {
            let mut observers = self.observers.lock().unwrap_or_else(|e| e.into_inner());
            let index = observers.list.iter().position(|(i, _)| *i == id);
            index.map(|index| observers.list.remove(index))
        };
        // Dropped outside the lock: what it owns may take a while to drop.
        drop(removed);
    }

    fn observe(&self, snapshot: &Snapshot) {
        let mut observers = self.observers.lock().unwrap_or_else(|e| e.into_inner());
        observers.list.retain_mut(|(_, observer)| {
            let run =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| observer(self, snapshot)));
            if run.is_err() {
                tracing::error!("a per-tick observer panicked; it is removed");
            }
            run.is_ok()
        });
    }

    /// A reader that is not a WebSocket client (REST, `/metrics`) wants the document: the next
    /// tick scans processes. Asking again before that tick changes nothing, so a scrape every
    /// 15 s costs one scan per scrape, not a scan on every tick from then on.
    pub fn want_processes(&self) {
        self.processes_wanted.store(true, Ordering::Relaxed);
    }

    /// The latest snapshot with the whole document, for a reader that is not a WebSocket
    /// client (REST, `/metrics`): the latest if it is full (someone watches), else the next
    /// tick's, which this asks to be full ([`Hub::want_processes`]), waiting for it at most
    /// `max_wait`; then the latest as it is (its `processes.scanned_at` says how old the
    /// repeated figures are). `None` before the first snapshot.
    pub async fn latest_full(&self, max_wait: Duration) -> Option<Arc<Snapshot>> {
        // Subscribed before asking, so the full tick cannot slip by unseen.
        let mut snapshots = self.subscribe();
        let latest = snapshots.borrow_and_update().clone()?;
        if latest.is_full() {
            return Some(latest);
        }
        self.want_processes();
        let next_full = async {
            while snapshots.changed().await.is_ok() {
                let next = snapshots.borrow_and_update().clone();
                if let Some(full) = next.filter(|s| s.is_full()) {
                    return Some(full);
                }
            }
            None
        };
        match tokio::time::timeout(max_wait, next_full).await {
            Ok(Some(full)) => Some(full),
            _ => self.latest(),
        }
    }

    /// Whether this tick scans processes: a client watches, or a reader asked since the last
    /// tick (the request is consumed).
    fn scan_processes(&self) -> bool {
        let asked = self.processes_wanted.swap(false, Ordering::Relaxed);
        asked || self.clients() > 0
    }

    /// `GET /api/v1/history?range=`: `None` until the history subsystem has started.
    pub fn history_range(&self, range: Range, max_points: usize) -> Option<HistoryView> {
        let history = self
            .records
            .history
            .read()
            .unwrap_or_else(|e| e.into_inner());
        history.as_ref().map(|h| h.query(range, max_points))
    }

    /// Runs `f` on the events timeline (e.g. to serialize a query while it is borrowed).
    pub fn with_events<T>(&self, f: impl FnOnce(&EventLog) -> T) -> T {
        f(&self
            .records
            .events
            .read()
            .unwrap_or_else(|e| e.into_inner()))
    }

    /// `GET /api/v1/events`: the newest `limit` events at or after `since`, as JSON.
    pub fn events_json(&self, since: Option<SystemTime>, limit: usize) -> Bytes {
        self.with_events(|log| {
            let view: EventsView<'_> = log.query(since, limit);
            Bytes::from(serde_json::to_vec(&view).unwrap_or_default())
        })
    }

    /// A receiver of the newest event's `seq`; it changes whenever events are recorded.
    pub fn subscribe_events(&self) -> watch::Receiver<u64> {
        self.records.newest_event.subscribe()
    }

    /// Appends `events` to the timeline, numbering them, and tells event followers; returns
    /// them as recorded. The history subsystem records what its detector sees, the alerts
    /// subsystem its firing and clearing.
    pub fn record_events(&self, events: impl IntoIterator<Item = Event>) -> Vec<Event> {
        let mut log = self
            .records
            .events
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let recorded: Vec<Event> = events.into_iter().map(|e| log.push(e).clone()).collect();
        drop(log);
        if let Some(newest) = recorded.last() {
            self.records.announce(newest.seq);
        }
        recorded
    }

    /// Events numbered after `seq`, oldest first: how a follower catches up.
    pub fn events_after(&self, seq: u64) -> Vec<Event> {
        self.with_events(|log| log.after(seq).cloned().collect())
    }

    /// History points from the last `window`, in tick order (oldest first).
    pub fn history(&self, window: Duration) -> Vec<HistoryPoint> {
        self.history_until(Instant::now(), window)
    }

    /// History points collected in the `window` before `now` (monotonic), in tick order.
    fn history_until(&self, now: Instant, window: Duration) -> Vec<HistoryPoint> {
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        // Entries are pushed in tick order and monotonic time never goes back: sorted.
        let start = match now.checked_sub(window) {
            Some(cutoff) => history.partition_point(|e| e.at < cutoff),
            None => 0,
        };
        history.range(start..).map(|e| e.point.clone()).collect()
    }

    /// Adds each disk's bytes written today and per day from the history's ledger, as they
    /// will be once the history records this document (right after it is published, by the
    /// same document's `collected_at`, so both agree on the day at midnight). Reads a few
    /// entries under the history's read lock; nothing while the history is being restored.
    pub fn fill_disk_days(&self, document: &mut StatsDocument) {
        if document.disk.devices.is_empty() {
            return;
        }
        let history = self
            .records
            .history
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let Some(ledger) = history.as_ref().map(History::disk_days) else {
            return;
        };
        let day = Day::local(document.collected_at);
        for (name, device) in &mut document.disk.devices {
            device.written = ledger.preview(name, device.io.write_bytes, day);
        }
    }

    /// Makes `document`, collected at `stamp`, the latest snapshot (serialized here while a
    /// client watches), then runs the per-tick observers on it.
    pub fn publish(&self, document: StatsDocument, stamp: Stamp, took: Duration) {
        let snapshot = Snapshot::new(0, document, stamp.mono, took);
        self.publish_snapshot(Arc::new(snapshot), stamp);
    }

    /// One tick of the collector thread: collects into `spare` (a snapshot of an earlier tick
    /// that nobody reads any more, whose buffers are reused) or else a new one, publishes it,
    /// and returns the snapshot it replaced when nobody else holds that one either, for the
    /// next tick. With no client watching, the snapshot before the latest is held by no one,
    /// and a tick allocates nothing.
    pub(crate) fn tick(
        &self,
        collector: &mut Collector,
        ctx: Context,
        spare: Option<Arc<Snapshot>>,
    ) -> Option<Arc<Snapshot>> {
        let stamp = Stamp::now();
        let mut snapshot = spare.filter(is_unshared).unwrap_or_else(|| {
            Arc::new(Snapshot::new(
                0,
                StatsDocument::default(),
                stamp.mono,
                Duration::ZERO,
            ))
        });
        let fresh = Arc::get_mut(&mut snapshot).expect("held by no one else");
        collector.collect_into(ctx, &mut fresh.document);
        self.fill_disk_days(&mut fresh.document);
        fresh.collection_time = stamp.mono.elapsed();
        self.publish_snapshot(snapshot, stamp)
    }

    /// Numbers `snapshot` (held by no one else) and makes it the latest, then runs the
    /// per-tick observers on it; returns the snapshot it replaced if nobody holds that one.
    fn publish_snapshot(&self, mut snapshot: Arc<Snapshot>, stamp: Stamp) -> Option<Arc<Snapshot>> {
        let seq = self.counters.collections.fetch_add(1, Ordering::Relaxed) + 1;
        let fresh = Arc::get_mut(&mut snapshot).expect("held by no one else");
        fresh.seq = seq;
        fresh.collected_at = stamp.mono;
        fresh.encoded = OnceLock::new();
        if self.history_len > 0 {
            let t = unix_millis(stamp.wall);
            let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
            // A full ring's oldest entry is refilled, keeping its per-core buffer.
            let oldest = if history.len() == self.history_len {
                history.pop_front()
            } else {
                None
            };
            let mut entry = oldest.unwrap_or_else(|| Entry {
                at: stamp.mono,
                point: HistoryPoint::default(),
            });
            entry.at = stamp.mono;
            entry.point.refill(&snapshot.document, t);
            history.push_back(entry);
        }
        if self.clients() > 0 {
            // Watched: serialize here, off the clients' tasks.
            snapshot.encoded();
        }
        let replaced = self.latest.send_replace(Some(snapshot.clone()));
        self.observe(&snapshot);
        replaced.filter(is_unshared)
    }
}

/// Whether this is the only handle on a snapshot (readers clone it and drop it when done).
fn is_unshared(snapshot: &Arc<Snapshot>) -> bool {
    Arc::strong_count(snapshot) == 1 && Arc::weak_count(snapshot) == 0
}

pub fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

/// Starts the hub and its collector thread, which collects once per interval until `cancel`
/// fires; the tracker waits for the thread to finish. Ticks follow absolute deadlines
/// (start + n × interval), so the cadence does not drift by the collection time; a tick
/// missed because the machine stalled is skipped rather than bunched up. The collector runs
/// on a thread of its own because reading /proc and /sys blocks.
pub fn spawn(
    config: &Config,
    connectivity: watch::Receiver<Connectivity>,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> Arc<Hub> {
    let hub = Hub::new(config.interval, config.history_len());
    let collector = Collector::new(config);
    // `done` is dropped by the thread when it ends, however it ends.
    let stop = Arc::new(Stop::default());
    let (done, mut finished) = oneshot::channel::<()>();
    let shared = hub.clone();
    let stopped = stop.clone();
    let thread = thread::Builder::new()
        .name("collector".into())
        .spawn(move || {
            let _done = done;
            collect(&shared, collector, connectivity, &stopped);
            tracing::debug!("collector stopped");
        })
        .expect("spawning the collector thread");
    let thread = thread.thread().clone();
    tracker.spawn(async move {
        let ended = tokio::select! {
            _ = cancel.cancelled() => false,
            _ = &mut finished => true,
        };
        stop.raise(&thread);
        if !ended {
            let _ = finished.await;
        }
    });
    hub
}

/// Tells the collector thread to stop, and wakes it from its wait between ticks.
///
/// A flag and `park_timeout` rather than a channel's `recv_timeout`: the wait is most of what
/// an unwatched tick does besides reading, and a channel's registration and wake-up
/// bookkeeping took a few per cent of the collector's time.
#[derive(Default)]
struct Stop(AtomicBool);

impl Stop {
    fn raise(&self, collector: &thread::Thread) {
        self.0.store(true, Ordering::Release);
        collector.unpark();
    }

    /// Sleeps until `deadline`; true if told to stop first.
    fn wait_until(&self, deadline: Instant) -> bool {
        loop {
            if self.0.load(Ordering::Acquire) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            // Returns early on `unpark` (or spuriously): the loop looks again.
            thread::park_timeout(deadline - now);
        }
    }
}

/// The collector loop, until told to stop.
fn collect(
    hub: &Hub,
    mut collector: Collector,
    mut connectivity: watch::Receiver<Connectivity>,
    stop: &Stop,
) {
    if stop.wait_until(Instant::now() + CPU_PRIMING_DELAY) {
        return;
    }
    let interval = hub.interval();
    let mut deadline = Instant::now();
    // The watched interface's state, shared by the documents until the watch changes.
    let mut shared_connectivity = Arc::new(connectivity.borrow_and_update().clone());
    let mut spare = None;
    loop {
        if connectivity.has_changed().unwrap_or(false) {
            shared_connectivity = Arc::new(connectivity.borrow_and_update().clone());
        }
        let ctx = Context {
            connected_clients: hub.clients(),
            connectivity: Some(shared_connectivity.clone()),
            full: hub.scan_processes(),
        };
        spare = hub.tick(&mut collector, ctx, spare.take());

        deadline += interval;
        let now = Instant::now();
        if deadline < now {
            let behind = now - deadline;
            let skipped = behind.as_nanos() / interval.as_nanos() + 1;
            tracing::warn!("collector fell {behind:?} behind; skipping {skipped} tick(s)");
            deadline += interval * skipped as u32;
        }
        if stop.wait_until(deadline) {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::stats::model::Wifi;

    /// The library tests' global allocator: the system's, counting the allocations a thread
    /// makes while it asks to ([`allocations_in`]).
    mod counting {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;

        pub struct Counting;

        thread_local! {
            /// `Some(n)` while the thread counts. Const-initialized and without a destructor,
            /// so reading it never allocates.
            static COUNT: Cell<Option<u64>> = const { Cell::new(None) };
        }

        fn count() {
            let _ = COUNT.try_with(|c| c.set(c.get().map(|n| n + 1)));
        }

        // SAFETY: every call is passed on to the system allocator unchanged.
        unsafe impl GlobalAlloc for Counting {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                count();
                unsafe { System.alloc(layout) }
            }
            unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
                count();
                unsafe { System.alloc_zeroed(layout) }
            }
            unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
                count();
                unsafe { System.realloc(ptr, layout, new_size) }
            }
            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                unsafe { System.dealloc(ptr, layout) }
            }
        }

        #[global_allocator]
        static GLOBAL: Counting = Counting;

        /// Runs `f` and returns how many allocations (and reallocations) it made on this thread.
        pub fn allocations_in(f: impl FnOnce()) -> u64 {
            COUNT.set(Some(0));
            f();
            COUNT.replace(None).expect("counting")
        }
    }

    /// An unwatched tick as the collector thread runs it (collect into the spare snapshot,
    /// the disk ledger's preview, publish, the history's push, the events detector, and alert
    /// rules of every kind of value) makes no allocation once the collector has settled: on the fixture trees of each Pi (SD card,
    /// throttle flags, PMIC, thermal zones, Wi-Fi figures in `/proc/net/wireless`), on a Pi 4's
    /// whose Wi-Fi signal moves every tick, and on this machine's own `/proc` and `/sys`,
    /// whose counters move between ticks.
    #[test]
    fn an_unwatched_tick_allocates_nothing() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut roots: Vec<(String, PathBuf, PathBuf)> = ["pi3", "pi4", "pi5", "pizerow", "cm4"]
            .iter()
            .map(|b| {
                (
                    b.to_string(),
                    fixtures.join(b).join("proc"),
                    fixtures.join(b).join("sys"),
                )
            })
            .collect();
        roots.push(("this machine".into(), "/proc".into(), "/sys".into()));
        // The Pi 4's `/proc`, with a signal level that the loop below changes every tick.
        let moving = tempfile::tempdir().unwrap();
        copy_tree(&fixtures.join("pi4/proc"), moving.path());
        let wireless = moving.path().join("net/wireless");
        let level = |dbm: i32| {
            let text = std::fs::read_to_string(fixtures.join("pi4/proc/net/wireless")).unwrap();
            std::fs::write(&wireless, text.replace("-40.", &format!("{dbm}."))).unwrap();
        };
        roots.push((
            "pi4, signal moving".into(),
            moving.path().to_owned(),
            fixtures.join("pi4/sys"),
        ));
        // One that fires at once (while the collector settles), the others stay quiet.
        let rules = "[[alert]]\nname = \"busy\"\nmetric = \"cpu\"\nabove = 0\n\n\
                     [[alert]]\nname = \"hot\"\nmetric = \"temperature\"\nabove = 95\n\n\
                     [[alert]]\nname = \"full\"\nmetric = \"disk\"\nmount = \"/\"\nabove = 99\n\n\
                     [[alert]]\nname = \"weak\"\nmetric = \"wifi_signal\"\nbelow = -90\n\n\
                     [[alert]]\nname = \"power\"\nmetric = \"undervoltage\"\n";
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let _entered = runtime.enter();
        for (board, proc_root, sys_root) in roots {
            let moves = proc_root == moving.path();
            let config = Config {
                proc_root,
                sys_root,
                vcgencmd: PathBuf::from("/nonexistent"),
                ..Config::from_toml(rules, Path::new("alerts.toml")).unwrap()
            };
            // A ring of three points fills within the settling ticks.
            let hub = Hub::new(config.interval, 3);
            let mut collector = Collector::new(&config);
            let cores = collector
                .collect(Context::default())
                .cpu
                .per_core_usage
                .len();
            crate::history::record_in_ram(&hub, cores);
            let (cancel, tracker) = (CancellationToken::new(), TaskTracker::new());
            crate::alerts::spawn(&config, &hub, Default::default(), cancel.clone(), &tracker);
            let wifi = Arc::new(Connectivity {
                source: "networkmanager",
                interface: "wlan0".into(),
                state: "activated".into(),
                connected: true,
                wifi: Some(Wifi {
                    ssid: Some("home".into()),
                    quality_percent: Some(70),
                    ..Wifi::default()
                }),
                ..Connectivity::default()
            });
            let ctx = || Context {
                connected_clients: 0,
                connectivity: Some(wifi.clone()),
                full: false,
            };
            let signal = |hub: &Hub| {
                let latest = hub.latest().unwrap();
                let wifi = latest.document.connectivity.as_ref().unwrap().wifi.clone();
                wifi.unwrap().signal_dbm
            };
            let mut spare = None;
            let mut allocations = 0;
            for tick in 0..25 {
                if moves {
                    level(-50 - tick % 7);
                }
                allocations += counting::allocations_in(|| {
                    spare = hub.tick(&mut collector, ctx(), spare.take());
                });
                // The first ticks settle: buffers grow, the history's ring fills.
                if tick < 5 {
                    allocations = 0;
                }
                if moves {
                    assert_eq!(signal(&hub), Some(-50 - tick % 7), "{board}");
                }
            }
            assert_eq!(allocations, 0, "{board}: allocations in 20 unwatched ticks");
            let latest = hub.latest().unwrap();
            assert_eq!(latest.seq, 25, "{board}");
            assert!(!latest.document.cpu.per_core_usage.is_empty(), "{board}");
            if board == "pi4" {
                assert_eq!(signal(&hub), Some(-40), "the kernel's figure");
            }
            let nm = wifi.wifi.as_ref().unwrap();
            assert_eq!(
                nm.signal_dbm, None,
                "{board}: the shared state is not changed"
            );
            let firing = hub.alerts.firing();
            assert!(
                firing.contains(&("busy".to_owned(), true)),
                "{board}: {firing:?}"
            );
            assert_eq!(firing.len(), 5, "{board}");
            cancel.cancel();
        }
    }

    fn copy_tree(from: &Path, to: &Path) {
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                std::fs::create_dir_all(&target).unwrap();
                copy_tree(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }

    #[test]
    fn tick_observers_run_in_order_and_one_that_panics_is_removed() {
        let hub = Hub::new(Duration::from_secs(1), 0);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (a, b) = (seen.clone(), seen.clone());
        hub.on_tick(Box::new(move |_, _| a.lock().unwrap().push("a")));
        hub.on_tick(Box::new(|_, _| panic!("observer fails")));
        let last = hub.on_tick(Box::new(move |_, _| b.lock().unwrap().push("b")));
        let doc = document();
        hub.publish(doc.clone(), Stamp::now(), Duration::ZERO);
        hub.publish(doc.clone(), Stamp::now(), Duration::ZERO);
        hub.stop_observing(last);
        hub.publish(doc, Stamp::now(), Duration::ZERO);
        assert_eq!(*seen.lock().unwrap(), ["a", "b", "a", "b", "a"]);
        assert!(hub.latest().is_some(), "the publish itself went through");
    }

    /// Hands out one stamp per tick: monotonic time advances by the interval, wall time by the
    /// interval plus whatever step is injected.
    struct SteppingClock {
        wall: SystemTime,
        mono: Instant,
        interval: Duration,
    }

    impl SteppingClock {
        fn tick(&mut self) -> Stamp {
            self.wall += self.interval;
            self.mono += self.interval;
            Stamp {
                wall: self.wall,
                mono: self.mono,
            }
        }

        fn step_back(&mut self, by: Duration) {
            self.wall -= by;
        }

        fn step_forward(&mut self, by: Duration) {
            self.wall += by;
        }
    }

    fn document() -> StatsDocument {
        let ctx = Context {
            connected_clients: 0,
            connectivity: None,
            full: true,
        };
        Collector::new(&Config::default()).collect(ctx)
    }

    #[test]
    fn history_keeps_moving_when_the_wall_clock_steps() {
        const HOUR: Duration = Duration::from_secs(3600);
        let interval = Duration::from_secs(1);
        let hub = Hub::new(interval, 100);
        let doc = document();
        let mut clock = SteppingClock {
            wall: UNIX_EPOCH + Duration::from_secs(1_750_000_000),
            mono: Instant::now(),
            interval,
        };
        let mut stamps = Vec::new();
        let tick = |clock: &mut SteppingClock, stamps: &mut Vec<Stamp>, n| {
            for _ in 0..n {
                let stamp = clock.tick();
                hub.publish(doc.clone(), stamp, Duration::ZERO);
                stamps.push(stamp);
            }
        };
        tick(&mut clock, &mut stamps, 10);
        clock.step_back(HOUR);
        tick(&mut clock, &mut stamps, 10);
        clock.step_forward(2 * HOUR);
        tick(&mut clock, &mut stamps, 10);
        let now = stamps.last().unwrap().mono;
        let t = |stamps: &[Stamp]| {
            stamps
                .iter()
                .map(|s| unix_millis(s.wall))
                .collect::<Vec<_>>()
        };
        let points = |window| {
            hub.history_until(now, window)
                .iter()
                .map(|p| p.t)
                .collect::<Vec<_>>()
        };

        // The last 5 s after a forward step: 6 ticks, not none.
        assert_eq!(points(Duration::from_secs(5)), t(&stamps[24..]));
        // A window across both steps: every tick in it, in tick order, though `t` jumps.
        assert_eq!(points(Duration::from_secs(15)), t(&stamps[14..]));
        assert!(stamps[10].wall < stamps[9].wall);
        // After a backward step, the points before it do not crowd out the new ones.
        assert_eq!(points(Duration::from_secs(60)), t(&stamps));
        assert_eq!(hub.counters.collections.load(Ordering::Relaxed), 30);

        // Ticks keep coming after the steps: the window slides on.
        clock.step_back(HOUR);
        tick(&mut clock, &mut stamps, 3);
        let now = stamps.last().unwrap().mono;
        let latest: Vec<u64> = hub
            .history_until(now, Duration::from_secs(2))
            .iter()
            .map(|p| p.t)
            .collect();
        assert_eq!(latest, t(&stamps[30..]));
    }

    #[test]
    fn processes_are_scanned_while_watched_and_once_per_request() {
        let hub = Hub::new(Duration::from_secs(1), 0);
        assert!(!hub.scan_processes(), "nobody watches");
        hub.want_processes();
        hub.want_processes();
        assert!(hub.scan_processes(), "the tick after a request");
        assert!(
            !hub.scan_processes(),
            "a request buys one scan, not all later ticks"
        );
        hub.counters.clients.store(1, Ordering::Relaxed);
        assert!(hub.scan_processes());
        assert!(hub.scan_processes());
    }

    /// A REST reader of an unwatched daemon gets the next tick's full document, which it
    /// asked for, not the latest one's repeated figures; and the latest as it is if that
    /// tick does not come in time.
    #[tokio::test]
    async fn readers_wait_for_the_full_tick_they_asked_for() {
        let hub = Arc::new(Hub::new(Duration::from_secs(1), 0));
        let repeated = |mut doc: StatsDocument| {
            Arc::make_mut(&mut doc.processes).scanned_at =
                Some(doc.collected_at - Duration::from_secs(60));
            doc
        };
        assert!(hub.latest_full(Duration::from_millis(10)).await.is_none());
        hub.publish(repeated(document()), Stamp::now(), Duration::ZERO);
        assert!(!hub.latest().unwrap().is_full());

        let reader = tokio::spawn({
            let hub = hub.clone();
            async move { hub.latest_full(Duration::from_secs(30)).await }
        });
        // The collector's side: the next tick is full because the reader asked.
        while !hub.processes_wanted.load(Ordering::Relaxed) {
            tokio::task::yield_now().await;
        }
        assert!(hub.scan_processes());
        hub.publish(repeated(document()), Stamp::now(), Duration::ZERO);
        let full = document();
        let collected = full.collected_at;
        hub.publish(full, Stamp::now(), Duration::ZERO);
        let got = reader.await.unwrap().expect("a snapshot");
        assert!(got.is_full());
        assert_eq!(got.document.collected_at, collected);
        // Full and latest: no wait, no request.
        let again = hub.latest_full(Duration::from_secs(30)).await.unwrap();
        assert_eq!(again.document.collected_at, collected);
        assert!(!hub.scan_processes());

        hub.publish(repeated(document()), Stamp::now(), Duration::ZERO);
        let late = hub.latest_full(Duration::from_millis(20)).await.unwrap();
        assert!(!late.is_full(), "no full tick in time: the latest");
        assert!(hub.scan_processes(), "still asked for");
    }

    #[test]
    fn the_document_is_serialized_only_when_watched_or_read() {
        let hub = Hub::new(Duration::from_secs(1), 0);
        let doc = document();
        let expected = serde_json::to_vec(&doc).unwrap();
        hub.publish(doc.clone(), Stamp::now(), Duration::ZERO);
        let unwatched = hub.latest().unwrap();
        assert!(
            unwatched.encoded.get().is_none(),
            "nobody watches: not serialized"
        );
        // A REST reader serializes it, once; the frame carries the same bytes after its header.
        assert!(unwatched.json() == expected, "the document's JSON");
        let frame = unwatched.frame();
        assert!(
            frame.ends_with(&expected),
            "the frame's payload is the JSON"
        );
        assert_eq!(frame[0], 0x81, "one text frame, FIN set, no RSV1");

        hub.counters.clients.store(1, Ordering::Relaxed);
        hub.publish(doc, Stamp::now(), Duration::ZERO);
        let watched = hub.latest().unwrap();
        assert!(
            watched.encoded.get().is_some(),
            "watched: serialized by the collector"
        );
        assert!(watched.json() == expected, "the document's JSON");
    }

    #[test]
    fn event_followers_see_new_events_and_catch_up_by_seq() {
        use crate::events::{Detector, DetectorConfig, EventLog, StartupFacts};
        let hub = Hub::new(Duration::from_secs(1), 0);
        let mut newest = hub.subscribe_events();
        assert_eq!(*newest.borrow_and_update(), 0);
        *hub.records.events.write().unwrap() = EventLog::new(10);
        let facts = StartupFacts {
            wall: SystemTime::now(),
            version: "1".into(),
            boot_id: None,
            previous: None,
        };
        let detector = Detector::new(DetectorConfig::default());
        let seq = {
            let mut log = hub.records.events.write().unwrap();
            for event in detector.startup(&facts) {
                log.push(event);
            }
            log.push(detector.stopping(SystemTime::now())).seq
        };
        hub.records.announce(seq);
        assert!(newest.has_changed().unwrap());
        assert_eq!(*newest.borrow_and_update(), 2);
        let kinds = |after| {
            hub.events_after(after)
                .iter()
                .map(|e| e.kind.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(kinds(0), ["started", "stopped"]);
        assert_eq!(kinds(1), ["stopped"]);
        assert!(kinds(2).is_empty());
        // Announcing an older number changes nothing.
        hub.records.announce(1);
        assert!(!newest.has_changed().unwrap());
    }

    #[test]
    fn history_holds_at_most_its_length() {
        let hub = Hub::new(Duration::from_secs(1), 4);
        let doc = document();
        let start = Instant::now();
        for i in 0..10u64 {
            let stamp = Stamp {
                wall: UNIX_EPOCH + Duration::from_secs(i),
                mono: start + Duration::from_secs(i),
            };
            hub.publish(doc.clone(), stamp, Duration::ZERO);
        }
        let t: Vec<u64> = hub
            .history_until(start + Duration::from_secs(9), Duration::from_secs(3600))
            .iter()
            .map(|p| p.t)
            .collect();
        assert_eq!(t, [6000, 7000, 8000, 9000]);
        assert!(Hub::new(Duration::from_secs(1), 0)
            .history(Duration::MAX)
            .is_empty());
    }
}
