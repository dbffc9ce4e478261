//! The broadcast hub: collects once per tick on a dedicated thread, serializes once, and
//! publishes the result through a `tokio::sync::watch` channel that every WebSocket client,
//! REST handler and the metrics endpoint read from. A watch channel keeps only the latest
//! value, so a slow reader can never make the hub queue documents or wait.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;

use crate::stats::model::{Connectivity, StatsDocument};
use crate::stats::{Collector, Context};

/// sysinfo needs this much time between two CPU samples for a meaningful usage figure.
const CPU_PRIMING_DELAY: Duration = Duration::from_millis(250);

/// One tick's result, shared by every reader.
#[derive(Debug)]
pub struct Snapshot {
    pub seq: u64,
    pub collected_at: Instant,
    pub document: StatsDocument,
    /// The document serialized once.
    pub json: Bytes,
    /// The same bytes as a WebSocket text frame; cloning it does not copy them.
    pub frame: Message,
    pub collection_time: Duration,
}

/// A compact point of the dashboard's history charts.
#[derive(Debug, Clone, Serialize, PartialEq)]
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
    fn from_document(doc: &StatsDocument, t: u64) -> HistoryPoint {
        use crate::stats::wire::round1;
        // An unread memory section is NaN here, which serializes as null: a gap, not a 0.
        let memory = doc.memory.as_ref();
        HistoryPoint {
            t,
            cpu: round1(doc.cpu.usage_percent),
            mem: memory.map_or(f64::NAN, |m| round1(m.used_percent())),
            swap: memory.map_or(f64::NAN, |m| round1(m.swap_used_percent())),
            temp: doc.temperature.pi_cpu_celsius.map(round1),
            net_recv: doc.network.rates.map(|r| round1(r.recv_bytes_per_sec)),
            net_sent: doc.network.rates.map(|r| round1(r.sent_bytes_per_sec)),
            disk_read: doc.disk.io_rates.map(|r| round1(r.read_bytes_per_sec)),
            disk_write: doc.disk.io_rates.map(|r| round1(r.write_bytes_per_sec)),
            per_core: doc.cpu.per_core_usage.iter().copied().map(round1).collect(),
            clients: doc.connected_clients,
        }
    }
}

/// Counters about the daemon itself, for `/metrics` and logs.
#[derive(Debug, Default)]
pub struct Counters {
    pub clients: AtomicU64,
    pub collections: AtomicU64,
    pub dropped_slow_clients: AtomicU64,
    pub refused_clients: AtomicU64,
}

pub struct Hub {
    latest: watch::Sender<Option<Arc<Snapshot>>>,
    history: Mutex<VecDeque<HistoryPoint>>,
    history_len: usize,
    interval: Duration,
    pub counters: Counters,
    pub started: SystemTime,
}

impl Hub {
    pub fn new(interval: Duration, history_len: usize) -> Arc<Hub> {
        Arc::new(Hub {
            latest: watch::Sender::new(None),
            history: Mutex::new(VecDeque::with_capacity(history_len)),
            history_len,
            interval,
            counters: Counters::default(),
            started: SystemTime::now(),
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

    /// History points from the last `window`, oldest first.
    pub fn history(&self, window: Duration) -> Vec<HistoryPoint> {
        let cutoff = unix_millis(SystemTime::now()).saturating_sub(window.as_millis() as u64);
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let start = history.partition_point(|p| p.t < cutoff);
        history.range(start..).cloned().collect()
    }

    /// Serializes `document` once and makes it the latest snapshot.
    pub fn publish(&self, document: StatsDocument, collected_at: Instant, took: Duration) {
        let json = match serde_json::to_string(&document) {
            Ok(json) => json,
            Err(err) => {
                tracing::error!("cannot serialize stats document: {err}");
                return;
            }
        };
        let point = HistoryPoint::from_document(&document, unix_millis(SystemTime::now()));
        {
            let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
            if history.len() == self.history_len {
                history.pop_front();
            }
            if self.history_len > 0 {
                history.push_back(point);
            }
        }
        let seq = self.counters.collections.fetch_add(1, Ordering::Relaxed) + 1;
        let text = Utf8Bytes::from(json);
        let json = Bytes::from(text.clone());
        let frame = Message::Text(text);
        self.latest.send_replace(Some(Arc::new(Snapshot {
            seq,
            collected_at,
            document,
            json,
            frame,
            collection_time: took,
        })));
    }
}

pub fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

/// Runs the collector on its own thread until `cancel` fires. Ticks follow absolute deadlines
/// (start + n × interval), so the cadence does not drift by the collection time; a tick missed
/// because the machine stalled is skipped rather than bunched up.
pub fn spawn_collector(
    hub: Arc<Hub>,
    mut collector: Collector,
    connectivity: watch::Receiver<Connectivity>,
    cancel: CancellationToken,
) -> thread::JoinHandle<()> {
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    tokio::spawn(async move {
        cancel.cancelled().await;
        drop(stop_tx);
    });
    thread::Builder::new()
        .name("collector".into())
        .spawn(move || {
            if stop_rx.recv_timeout(CPU_PRIMING_DELAY) == Err(RecvTimeoutError::Disconnected) {
                return;
            }
            let interval = hub.interval();
            let mut deadline = Instant::now();
            loop {
                let started = Instant::now();
                let ctx = Context {
                    connected_clients: hub.clients(),
                    connectivity: Some(connectivity.borrow().clone()),
                };
                let document = collector.collect(ctx);
                hub.publish(document, started, started.elapsed());

                deadline += interval;
                let now = Instant::now();
                if deadline < now {
                    let behind = now - deadline;
                    let skipped = behind.as_nanos() / interval.as_nanos() + 1;
                    tracing::warn!("collector fell {behind:?} behind; skipping {skipped} tick(s)");
                    deadline += interval * skipped as u32;
                }
                match stop_rx.recv_timeout(deadline - now) {
                    Err(RecvTimeoutError::Timeout) => continue,
                    _ => break,
                }
            }
            tracing::debug!("collector stopped");
        })
        .expect("spawning the collector thread")
}
