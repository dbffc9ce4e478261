//! The history subsystem: restores the tiers and events from `state_dir`, records every
//! snapshot the hub publishes into both, and saves them every `persist_interval` and at a
//! clean stop.
//!
//! It records every snapshot the hub publishes on the collector thread ([`Hub::on_tick`]),
//! building one [`Sample`] from its typed values: a few microseconds a tick, and no task to
//! wake. A save holds the history's and the events' read locks only while it encodes what is
//! new into a buffer, and writes and syncs it after releasing them ([`Store::encode_save`],
//! [`Store::write`]): an event never waits for the disk, and a sample taken during an encode
//! is held and pushed on the next tick. The [`History`] and the
//! [`EventLog`] live in the hub's [`Records`](crate::hub::Records), where HTTP handlers read
//! them and event followers are told about new events.
//!
//! A state directory that cannot be used (read-only file system, a file in its place,
//! permissions) is logged once and the subsystem carries on in RAM only: the service keeps
//! serving, only the restart loses history.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::store::{Restored, Store, StoreError};
use super::{History, HistoryConfig, LinkState, MountFill, Sample};
use crate::config::Config;
use crate::events::{Detector, DetectorConfig, Event, EventLog, StartupFacts, EVENT_CAPACITY};
use crate::hub::{Hub, ObserverId, Snapshot};
use crate::stats::model::StatsDocument;

/// Starts the history subsystem; the tracker waits for its final save.
pub fn spawn(config: &Config, hub: &Arc<Hub>, cancel: CancellationToken, tracker: &TaskTracker) {
    let settings = Settings {
        history: config.history_tiers(),
        detector: DetectorConfig {
            temperature_warning: config.temperature_warning,
            mount_fill_percent: config.mount_fill_warning,
            ..DetectorConfig::default()
        },
        state_dir: config.state_dir.clone(),
        persist_interval: config.persist_interval,
        boot_id: read_boot_id(&config.proc_root),
    };
    let hub = hub.clone();
    let snapshots = hub.subscribe();
    tracker.spawn(run(settings, hub, snapshots, cancel));
}

struct Settings {
    history: HistoryConfig,
    detector: DetectorConfig,
    state_dir: Option<std::path::PathBuf>,
    persist_interval: Duration,
    boot_id: Option<String>,
}

/// `/proc/sys/kernel/random/boot_id`: a new one means the system rebooted.
fn read_boot_id(proc_root: &Path) -> Option<String> {
    std::fs::read_to_string(proc_root.join("sys/kernel/random/boot_id"))
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty() && s.len() <= 64)
}

async fn run(
    settings: Settings,
    hub: Arc<Hub>,
    mut snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
    cancel: CancellationToken,
) {
    // The number of per-core series comes from the first snapshot.
    let first = tokio::select! {
        _ = cancel.cancelled() => return,
        first = snapshots.wait_for(Option::is_some) => match first {
            Ok(snapshot) => snapshot.clone().expect("waited for a snapshot"),
            Err(_) => return,
        },
    };
    let cores = first.document.cpu.per_core_usage.len();
    let settings = Arc::new(settings);
    let restore = {
        let settings = settings.clone();
        tokio::task::spawn_blocking(move || restore(&settings, cores))
    };
    let Ok((mut store, restored)) = restore.await else {
        tracing::error!("history: restoring the state panicked; history is off");
        return;
    };
    let Restored {
        mut history,
        mut events,
        previous,
        ..
    } = restored;
    // Both boot ids known and different; without one, a counter that went down still tells.
    let rebooted = match (
        previous.as_ref().and_then(|p| p.boot_id.as_deref()),
        &settings.boot_id,
    ) {
        (Some(saved), Some(now)) => saved != now,
        _ => false,
    };
    if rebooted {
        // The disk counters restarted with the system: the next reading counts in full.
        history.disk_days_mut().counters_restarted();
    }
    let detector = Detector::new(settings.detector);
    let facts = StartupFacts {
        wall: SystemTime::now(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        boot_id: settings.boot_id.clone(),
        previous,
    };
    for event in detector.startup(&facts) {
        log_event(events.push(event));
    }
    *hub.records
        .history
        .write()
        .unwrap_or_else(|e| e.into_inner()) = Some(history);
    let newest = {
        let mut timeline = hub
            .records
            .events
            .write()
            .unwrap_or_else(|e| e.into_inner());
        // Events recorded while the state was read (an alert firing on the first tick) are
        // newer than everything restored: they go after it, renumbered, instead of being lost.
        for early in timeline.iter() {
            events.push(early.clone());
        }
        *timeline = events;
        timeline.next_seq() - 1
    };
    hub.records.announce(newest);

    // The history's timeline starts at the first snapshot.
    let recorder = Recorder::new(detector, first.collected_at);
    drop(snapshots);
    lock(&recorder).record(&hub, &first);
    let observer = Recorder::observe(&recorder, &hub);
    // A tick published while the state was read, if the observer has not recorded a newer
    // one since it was registered (each snapshot is recorded once, in order).
    if let Some(latest) = hub.latest() {
        lock(&recorder).record(&hub, &latest);
    }
    let mut persist = tokio::time::interval_at(
        tokio::time::Instant::now() + settings.persist_interval,
        settings.persist_interval,
    );
    persist.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = persist.tick() => {
                if let Some(s) = store.take() {
                    store = save(&hub, s, &settings, false).await;
                }
            }
        }
    }
    hub.stop_observing(observer);
    let stopped = {
        let mut recorder = lock(&recorder);
        recorder.flush(&hub);
        recorder.detector.stopping(SystemTime::now())
    };
    push_events(&hub, [stopped]);
    if let Some(s) = store.take() {
        save(&hub, s, &settings, true).await;
    }
}

/// Records every tick into a history kept in RAM (the default tiers) and its events into the
/// timeline, as the daemon does without a state directory.
#[cfg(test)]
pub(crate) fn record_in_ram(hub: &Hub, cores: usize) -> ObserverId {
    *hub.records.history.write().unwrap() =
        Some(History::new(HistoryConfig::default(), cores).unwrap());
    *hub.records.events.write().unwrap() = EventLog::new(EVENT_CAPACITY);
    let recorder = Recorder::new(Detector::new(DetectorConfig::default()), Instant::now());
    Recorder::observe(&recorder, hub)
}

/// Most samples held back while a save encodes the history (milliseconds; the write that
/// follows holds no lock); past this, samples are dropped, with a warning.
const PENDING_MAX: usize = 120;

/// What records each tick, on the collector thread ([`Hub::on_tick`]).
struct Recorder {
    detector: Detector,
    /// Reused for every tick.
    sample: Sample,
    origin: Instant,
    /// Samples taken while a save encoded the history, pushed in order once it is free: the
    /// collector never waits for a save.
    pending: Vec<Sample>,
    /// When the last recorded snapshot was collected: one that is not newer is not recorded
    /// again (the start-up ticks and the observer's may overlap).
    last: Option<Instant>,
}

fn lock(recorder: &Mutex<Recorder>) -> MutexGuard<'_, Recorder> {
    recorder.lock().unwrap_or_else(|e| e.into_inner())
}

impl Recorder {
    /// A recorder whose timeline starts at `origin` (the first snapshot's collection).
    fn new(detector: Detector, origin: Instant) -> Arc<Mutex<Recorder>> {
        Arc::new(Mutex::new(Recorder {
            detector,
            sample: Sample::new(Duration::ZERO, SystemTime::now()),
            origin,
            pending: Vec::new(),
            last: None,
        }))
    }

    /// Records every snapshot the hub publishes from now on, on the collector thread.
    /// Registered without the recorder's lock held: the collector takes the hub's observer
    /// lock, then this one.
    fn observe(recorder: &Arc<Mutex<Recorder>>, hub: &Hub) -> ObserverId {
        let shared = recorder.clone();
        hub.on_tick(Box::new(move |hub, snapshot| {
            lock(&shared).record(hub, snapshot);
        }))
    }

    /// Feeds one snapshot to the history and the detector; events are recorded at once.
    fn record(&mut self, hub: &Hub, snapshot: &Snapshot) {
        if self.last.is_some_and(|last| snapshot.collected_at <= last) {
            return;
        }
        self.last = Some(snapshot.collected_at);
        fill_sample(
            &mut self.sample,
            &snapshot.document,
            snapshot.collected_at.saturating_duration_since(self.origin),
        );
        let history = match hub.records.history.try_write() {
            Ok(history) => Some(history),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        };
        match history {
            Some(mut history) => {
                if let Some(history) = history.as_mut() {
                    for held in self.pending.drain(..) {
                        history.push(&held);
                    }
                    history.push(&self.sample);
                }
            }
            None if self.pending.len() < PENDING_MAX => self.pending.push(self.sample.clone()),
            None => {
                if self.pending.len() == PENDING_MAX {
                    tracing::warn!(
                        "history: a save has held the history for {PENDING_MAX} ticks; \
                         dropping samples until it ends"
                    );
                    // Counted once: the warning is not repeated every tick.
                    self.pending.push(self.sample.clone());
                }
            }
        }
        let events = self.detector.observe(&self.sample);
        if !events.is_empty() {
            push_events(hub, events);
        }
    }

    /// Pushes the samples held back by a save (waiting for the lock).
    fn flush(&mut self, hub: &Hub) {
        if self.pending.is_empty() {
            return;
        }
        let mut history = hub
            .records
            .history
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(history) = history.as_mut() {
            for held in self.pending.drain(..) {
                history.push(&held);
            }
        }
    }
}

/// Loads the state (or starts empty) and marks the run; `None` store: RAM only.
fn restore(settings: &Settings, cores: usize) -> (Option<Store>, Restored) {
    let empty = |config| Restored {
        history: History::new(config, cores).unwrap_or_else(|_| {
            History::new(HistoryConfig::default(), cores).expect("the defaults are valid")
        }),
        events: EventLog::new(EVENT_CAPACITY),
        previous: None,
        moved_aside: None,
    };
    let config = match settings.history.validate() {
        Ok(()) => settings.history,
        Err(err) => {
            tracing::warn!("history: {err}; using the default tiers");
            HistoryConfig::default()
        }
    };
    let Some(dir) = &settings.state_dir else {
        tracing::info!("history: kept in RAM only (no state_dir)");
        return (None, empty(config));
    };
    let mut store = Store::new(dir);
    let restored = match store.load(config, cores, EVENT_CAPACITY) {
        Ok(restored) => restored,
        Err(err) => {
            tracing::warn!("history: {err}; keeping history in RAM only");
            return (None, empty(config));
        }
    };
    if let Err(err) = store.mark_running(settings.boot_id.as_deref()) {
        tracing::warn!(
            "history: state directory {} is not writable ({err}); keeping history in RAM only",
            dir.display()
        );
        return (None, restored);
    }
    let tiers = restored.history.tiers();
    match &restored.moved_aside {
        Some((path, why)) => tracing::warn!(
            "history: the state file was unusable ({why}) and moved to {}; starting empty",
            path.display()
        ),
        None if restored.previous.is_some() => tracing::info!(
            "history: restored {} 1-minute and {} 15-minute points and {} events from {}{}",
            tiers[1].len(),
            tiers[2].len(),
            restored.events.len(),
            store.state_path().display(),
            match restored.history.shelved_bytes() {
                0 => String::new(),
                bytes => format!(
                    "; {} KiB of older points kept in an unnamed file beside it, not in RAM",
                    bytes.div_ceil(1024)
                ),
            }
        ),
        None => tracing::info!(
            "history: no saved state in {}; starting empty",
            dir.display()
        ),
    }
    (Some(store), restored)
}

fn push_events(hub: &Hub, events: impl IntoIterator<Item = Event>) {
    for event in hub.record_events(events) {
        log_event(&event);
    }
}

fn log_event(event: &Event) {
    tracing::info!("event {}: {}", event.kind, event.message);
}

/// Saves on a blocking thread; hands the store back unless a final save.
async fn save(hub: &Arc<Hub>, store: Store, settings: &Settings, last: bool) -> Option<Store> {
    let hub = hub.clone();
    let boot_id = settings.boot_id.clone();
    let result =
        tokio::task::spawn_blocking(move || save_now(&hub, store, boot_id.as_deref(), last)).await;
    match result {
        Ok((store, Ok(written))) => {
            tracing::debug!(
                "history: saved {} bytes to {}",
                written.unwrap_or(0),
                store.dir().display()
            );
            Some(store)
        }
        Ok((store, Err(err))) => {
            // Logged each time: a save fails at most once per persist_interval. The store then
            // knows nothing on disk, so the next save is a whole snapshot.
            tracing::warn!("history: cannot save: {err}; will retry");
            Some(store)
        }
        Err(err) => {
            tracing::error!("history: the save panicked ({err}); history stays in RAM only");
            None
        }
    }
}

/// One save, blocking: encodes under the history's and the events' read locks, then writes
/// and syncs with both released, so neither a tick's push nor an event waits for the disk.
/// `None` written: no history yet.
fn save_now(
    hub: &Hub,
    mut store: Store,
    boot_id: Option<&str>,
    last: bool,
) -> (Store, Result<Option<usize>, StoreError>) {
    let encoded = {
        let history = hub
            .records
            .history
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let events = hub.records.events.read().unwrap_or_else(|e| e.into_inner());
        history
            .as_ref()
            .map(|history| store.encode_save(history, &events, boot_id, SystemTime::now()))
    };
    let result = encoded.map(|e| store.write(e)).transpose();
    let result = result.and_then(|written| {
        if last {
            store.mark_stopped()?;
        }
        Ok(written)
    });
    (store, result)
}

/// One snapshot's typed values as a history sample (reusing the sample's allocations).
pub fn fill_sample(sample: &mut Sample, doc: &StatsDocument, mono: Duration) {
    sample.mono = mono;
    sample.wall = doc.collected_at;
    sample.cpu = Some(doc.cpu.usage_percent);
    sample.cores.clear();
    sample.cores.extend_from_slice(&doc.cpu.per_core_usage);
    sample.memory = doc.memory.as_ref().map(|m| m.used_percent());
    sample.swap = doc
        .memory
        .as_ref()
        .filter(|m| m.swap_total > 0)
        .map(|m| m.swap_used_percent());
    sample.temperature = doc.temperature.pi_cpu_celsius;
    sample.load1 = doc.system.load_average.map(|l| l[0]);
    sample.net_recv = doc.network.rates.map(|r| r.recv_bytes_per_sec);
    sample.net_sent = doc.network.rates.map(|r| r.sent_bytes_per_sec);
    sample.disk_read = doc.disk.io_rates.map(|r| r.read_bytes_per_sec);
    sample.disk_write = doc.disk.io_rates.map(|r| r.write_bytes_per_sec);
    sample.root_disk = doc.disk.root_usage_percent();
    sample.clients = Some(doc.connected_clients as f64);
    // dBm from NetworkManager or /proc/net/wireless; unknown (not zero) when not wireless.
    sample.wifi_signal = doc
        .connectivity
        .as_ref()
        .and_then(|c| c.wifi.as_ref())
        .and_then(|w| w.signal_dbm)
        .map(f64::from);
    sample.throttled = doc.pi.as_ref().and_then(|pi| pi.throttled_raw);
    // The same mounts tick after tick: update the figures without copying the names again.
    let measured = doc.disk.partitions.as_deref().unwrap_or_default();
    let measured = || measured.iter().filter(|p| p.total > 0);
    let same = sample.mounts.len() == measured().count()
        && sample
            .mounts
            .iter()
            .zip(measured())
            .all(|(a, b)| a.mountpoint == *b.mountpoint);
    if same {
        for (fill, p) in sample.mounts.iter_mut().zip(measured()) {
            fill.used_percent = p.used_percent();
        }
    } else {
        sample.mounts.clear();
        sample.mounts.extend(measured().map(|p| MountFill {
            mountpoint: p.mountpoint.to_string(),
            used_percent: p.used_percent(),
        }));
    }
    // The names are shared with the document: refilling copies no text.
    sample.disk_writes.clear();
    sample.disk_writes.extend(
        doc.disk
            .devices
            .iter()
            .map(|(name, dev)| (name.clone(), dev.io.write_bytes)),
    );
    // The same interface tick after tick: its name is copied into the buffer it already has.
    match (
        &mut sample.link,
        doc.connectivity.as_deref().filter(|c| c.source != "none"),
    ) {
        (Some(link), Some(c)) => {
            link.interface.clone_from(&c.interface);
            link.connected = c.connected;
            link.reason = None;
        }
        (link, c) => {
            *link = c.map(|c| LinkState {
                interface: c.interface.clone(),
                connected: c.connected,
                reason: None,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::Stamp;
    use crate::stats::model::{Connectivity, Wifi};
    use crate::stats::wire_golden::document;

    #[test]
    fn a_tick_during_a_save_is_held_and_pushed_in_order_on_the_next() {
        let hub = Hub::new(Duration::from_secs(1), 0);
        let doc = document();
        let cores = doc.cpu.per_core_usage.len();
        *hub.records.history.write().unwrap() =
            Some(History::new(HistoryConfig::default(), cores).unwrap());
        let recorder = Recorder::new(Detector::new(DetectorConfig::default()), Instant::now());
        let id = Recorder::observe(&recorder, &hub);
        let raw = |hub: &Hub| {
            hub.records
                .history
                .read()
                .unwrap()
                .as_ref()
                .unwrap()
                .tiers()[0]
                .len()
        };
        let start = Instant::now();
        let publish = |n: u64| {
            let stamp = Stamp {
                wall: SystemTime::now(),
                mono: start + Duration::from_secs(n),
            };
            hub.publish(doc.clone(), stamp, Duration::ZERO);
        };
        publish(1);
        assert_eq!(raw(&hub), 1);
        {
            // A save reads the history: the tick neither waits nor is lost.
            let _saving = hub.records.history.read().unwrap();
            publish(2);
            assert_eq!(lock(&recorder).pending.len(), 1);
        }
        publish(3);
        assert_eq!(raw(&hub), 3);
        assert!(lock(&recorder).pending.is_empty());
        hub.stop_observing(id);
        publish(4);
        assert_eq!(raw(&hub), 3, "nothing recorded once stopped");
    }

    /// How long a step that must not wait for the blocked write may take before the test
    /// calls it stuck: far beyond any scheduling delay, and only reached on failure.
    const STUCK: Duration = Duration::from_secs(30);

    #[test]
    fn events_and_ticks_do_not_wait_for_a_saves_write_and_land_in_the_next_save() {
        let dir = tempfile::tempdir().unwrap();
        let hub = Hub::new(Duration::from_secs(1), 0);
        let doc = document();
        let cores = doc.cpu.per_core_usage.len();
        *hub.records.history.write().unwrap() =
            Some(History::new(HistoryConfig::default(), cores).unwrap());
        *hub.records.events.write().unwrap() = EventLog::new(EVENT_CAPACITY);
        let recorder = Recorder::new(Detector::new(DetectorConfig::default()), Instant::now());
        Recorder::observe(&recorder, &hub);
        let start = Instant::now();
        let publish = move |hub: &Hub, n: u64| {
            let stamp = Stamp {
                wall: SystemTime::now(),
                mono: start + Duration::from_secs(n),
            };
            hub.publish(document(), stamp, Duration::ZERO);
        };
        let fine_rows = |hub: &Hub| {
            hub.records
                .history
                .read()
                .unwrap()
                .as_ref()
                .unwrap()
                .tiers()[1]
                .len()
        };
        for n in 1..=3 {
            publish(&hub, n);
        }
        let mut store = Store::new(dir.path());
        store
            .load(HistoryConfig::default(), cores, EVENT_CAPACITY)
            .unwrap();
        let (store, first) = save_now(&hub, store, None, false);
        assert!(first.unwrap().unwrap() > 0, "the first save is a snapshot");

        // The next save stops inside its write until released.
        let (entered_tx, entered) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let (entered_tx, released) = (Mutex::new(entered_tx), Mutex::new(released));
        let mut store = store;
        store.before_write(move || {
            entered_tx.lock().unwrap().send(()).unwrap();
            // Bounded: a test that fails elsewhere does not leave this thread behind for good.
            let _ = released.lock().unwrap().recv_timeout(STUCK);
        });
        let saving = {
            let hub = hub.clone();
            std::thread::spawn(move || save_now(&hub, store, None, false))
        };
        entered
            .recv_timeout(STUCK)
            .expect("the save reached its write");

        // While it writes: an event is recorded, and a tick in the next minute is pushed at
        // once (it seals the first minute's row), not held back.
        let (done_tx, done) = std::sync::mpsc::channel();
        let during = {
            let hub = hub.clone();
            std::thread::spawn(move || {
                let event = Detector::new(DetectorConfig::default()).stopping(SystemTime::now());
                let seq = hub.record_events([event])[0].seq;
                done_tx.send("event").unwrap();
                publish(&hub, 61);
                done_tx.send("tick").unwrap();
                seq
            })
        };
        for step in ["event", "tick"] {
            assert_eq!(
                done.recv_timeout(STUCK),
                Ok(step),
                "the {step} waited for the save's write"
            );
        }
        let seq = during.join().unwrap();
        assert!(lock(&recorder).pending.is_empty(), "the tick was not held");
        assert_eq!(fine_rows(&hub), 1, "the tick sealed the first minute");

        release.send(()).unwrap();
        let (mut store, blocked) = saving.join().unwrap();
        assert!(blocked.unwrap().is_some());
        let restore = || {
            Store::new(dir.path())
                .load(HistoryConfig::default(), cores, EVENT_CAPACITY)
                .unwrap()
        };
        let before = restore();
        assert!(before.events.iter().all(|e| e.seq != seq));
        assert_eq!(before.history.tiers()[1].len(), 0);

        // What was recorded during the blocked write is in the next save.
        store.before_write(|| {});
        let (_, next) = save_now(&hub, store, None, false);
        assert!(next.unwrap().unwrap() > 0);
        let after = restore();
        assert!(after.events.iter().any(|e| e.seq == seq), "the event");
        assert_eq!(after.history.tiers()[1].len(), 1, "the sealed minute");
        let open = |h: &History| h.tiers()[1].open_bucket().map(|(b, _, _)| b);
        let live = open(hub.records.history.read().unwrap().as_ref().unwrap());
        assert_eq!(open(&after.history), live, "the tick's minute");
        assert_eq!(open(&before.history).map(|b| b + 1), live);
    }

    #[test]
    fn the_wifi_signal_series_follows_the_documents_signal_dbm() {
        let mut doc = document();
        let mut sample = Sample::new(Duration::ZERO, SystemTime::UNIX_EPOCH);
        fill_sample(&mut sample, &doc, Duration::from_secs(1));
        assert_eq!(sample.wifi_signal, None, "the golden document is wired");
        doc.connectivity = Some(Arc::new(Connectivity {
            source: "kernel",
            interface: "wlan0".into(),
            connected: true,
            wifi: Some(Wifi {
                signal_dbm: Some(-67),
                quality_percent: Some(61),
                ..Wifi::default()
            }),
            ..Connectivity::default()
        }));
        fill_sample(&mut sample, &doc, Duration::from_secs(2));
        assert_eq!(sample.wifi_signal, Some(-67.0));
        // Associated through NetworkManager without a dBm figure: unknown, not 0.
        if let Some(w) = doc
            .connectivity
            .as_mut()
            .and_then(|c| Arc::make_mut(c).wifi.as_mut())
        {
            w.signal_dbm = None;
        }
        fill_sample(&mut sample, &doc, Duration::from_secs(3));
        assert_eq!(sample.wifi_signal, None);
    }

    #[test]
    fn the_disk_counters_follow_the_documents_devices() {
        use crate::stats::model::{DiskDevice, DiskIo};
        let mut doc = document();
        let disk = |write_bytes| DiskDevice {
            io: DiskIo {
                write_bytes,
                ..DiskIo::default()
            },
            ..DiskDevice::default()
        };
        let mut sample = Sample::new(Duration::ZERO, SystemTime::UNIX_EPOCH);
        doc.disk.devices.insert("mmcblk0".into(), disk(10));
        fill_sample(&mut sample, &doc, Duration::from_secs(1));
        assert_eq!(sample.disk_writes, [("mmcblk0".into(), 10)]);
        doc.disk.devices.insert("mmcblk0".into(), disk(20));
        fill_sample(&mut sample, &doc, Duration::from_secs(2));
        assert_eq!(sample.disk_writes, [("mmcblk0".into(), 20)]);
        doc.disk.devices.insert("sda".into(), disk(5));
        fill_sample(&mut sample, &doc, Duration::from_secs(3));
        assert_eq!(
            sample.disk_writes,
            [("mmcblk0".into(), 20), ("sda".into(), 5)]
        );
        doc.disk.devices.remove("mmcblk0");
        fill_sample(&mut sample, &doc, Duration::from_secs(4));
        assert_eq!(sample.disk_writes, [("sda".into(), 5)]);
    }
}
