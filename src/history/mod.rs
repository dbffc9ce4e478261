//! Long-term history: a year of downsampled statistics in about 1.1 MiB compressed, most of it
//! kept in a file rather than in RAM when there is a state directory.
//!
//! Three tiers, each bounded by its retention:
//!
//! | tier    | resolution                 | kept (default) | per point                    |
//! |---------|----------------------------|----------------|------------------------------|
//! | raw     | the collection interval    | 1 hour         | the value                    |
//! | fine    | 1-minute buckets           | 7 days         | min / mean / max per series  |
//! | coarse  | 15-minute buckets          | 1 year         | min / mean / max per series  |
//!
//! Every sample is folded into all three tiers at once (an open bucket per aggregate tier), so
//! the coarse tier's min and max are exact, not a min of rounded means. Values are stored as
//! 16-bit codes ([`Series`] says which encoding each series uses): fixed point in 0.01 steps for
//! percents, °C, load and Wi-Fi signal, a 16-bit float (the top half of an `f32`, ~0.4 %
//! relative precision) for byte rates, whose range is too wide for fixed point.
//!
//! Each tier keeps its newest 256 rows as plain codes and compresses older rows in blocks of
//! 256 (per-column differences + Rice codes, see `block`): with the defaults that is 1.24 MiB
//! instead of 4.66 MiB for a year of even white noise, and
//! queries decode only the blocks their window touches (a year: 137 blocks; the 1y query with
//! its JSON takes ~18 ms instead of ~16 ms, see docs/benchmarks.md).
//!
//! With a state directory ([`History::shelve_in`], done by [`store::Store::load`]) the
//! aggregate tiers' sealed blocks are written to an unnamed file there ([`shelf`]) and read
//! back, one `pread` per block, when a query or a save needs them: what stays on the heap is
//! the raw tier, one block's worth of plain rows per tier and the open buckets, about 0.15 MiB
//! with the defaults (plus about 50 bytes per block kept in the file: 7 KiB for a year).
//!
//! # Time
//!
//! A Pi without a real-time clock boots with a stale wall clock that NTP later steps, forwards
//! or backwards. History is therefore ordered and windowed on a *timeline*: milliseconds that
//! advance with the monotonic clock while the daemon runs, and across a restart by the wall-clock
//! gap (never by a negative one). A wall-clock step moves nothing already recorded; when points
//! are shown, their time is the latest sample's wall time minus their distance on the timeline.
//!
//! # How the daemon uses it
//!
//! ```no_run
//! # use std::time::{Duration, SystemTime};
//! use pistats::history::{History, HistoryConfig, Range, Sample};
//! let mut history = History::new(HistoryConfig::default(), 4).unwrap();
//! // Every tick: one Sample (reuse it; its Vecs keep their capacity).
//! let mut sample = Sample::new(Duration::from_secs(1), SystemTime::now());
//! sample.cpu = Some(12.5);
//! history.push(&sample);
//! // GET /api/v1/history?range=24h
//! let json = serde_json::to_vec(&history.query(Range::Day, 1500)).unwrap();
//! ```
//!
//! The history also keeps each disk's bytes written per local day ([`disk_days`], fed by the
//! samples' cumulative write counters), which the hub shows in the document.
//!
//! Persistence (the aggregate tiers, the disk days and the events, not the raw points) is in [`store`]. The
//! whole life cycle, as the daemon runs it ([`spawn`], the history subsystem):
//!
//! ```text
//! start   let mut store = Store::new(state_dir);
//!         let Restored { history, events, previous, .. } = store.load(config, cores, EVENT_CAPACITY)?;
//!         store.mark_running(boot_id)            // Err: log it, keep running RAM-only
//!         detector.startup(&StartupFacts { previous, .. }) → events.push(…)
//! tick    history.push(&sample); detector.observe(&sample) → events.push(…)
//! every persist_interval: store.save(&history, &events, boot_id, now)   // a few KiB appended
//! stop    events.push(detector.stopping(now)); store.save(…); store.mark_stopped()
//! query   history.query(range, max_points)  ·  events.query(since, limit)  → serde_json
//! ```

mod block;
pub mod disk_days;
mod series;
mod service;
mod shelf;
pub mod store;
mod tier;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

pub use disk_days::{Day, DiskDays, Written};
pub use series::{Series, SCALAR_SERIES};
#[cfg(test)]
pub(crate) use service::record_in_ram;
pub use service::{fill_sample, spawn};
use tier::Tier;

/// Most CPU cores that get a series of their own; more are ignored (a Pi has 4).
pub const MAX_CORES: usize = 64;

/// One tick's values, built by the daemon from the collector's typed values. The same sample
/// feeds the events [`Detector`](crate::events::Detector).
///
/// `None` means "not known this tick" (no sensor, first tick without rates); it is not zero.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Monotonic clock reading (any origin, e.g. `CLOCK_BOOTTIME`): orders samples and measures
    /// windows. It must not go backwards while the daemon runs.
    pub mono: Duration,
    /// Wall-clock time of collection, used only to label points and events.
    pub wall: SystemTime,
    /// Total CPU usage, percent.
    pub cpu: Option<f64>,
    /// Per-core usage, percent.
    pub cores: Vec<f64>,
    pub memory: Option<f64>,
    pub swap: Option<f64>,
    /// Pi CPU temperature, °C.
    pub temperature: Option<f64>,
    pub load1: Option<f64>,
    /// Bytes per second, all interfaces but loopback.
    pub net_recv: Option<f64>,
    pub net_sent: Option<f64>,
    /// Bytes per second, all disks.
    pub disk_read: Option<f64>,
    pub disk_write: Option<f64>,
    /// Root file system used, percent.
    pub root_disk: Option<f64>,
    pub clients: Option<f64>,
    /// Wi-Fi signal of the watched interface when it is wireless, dBm
    /// (`connectivity.wifi.signal_dbm`).
    pub wifi_signal: Option<f64>,
    /// Raw `get_throttled` bits (`None` off a Pi).
    pub throttled: Option<u32>,
    /// Fill of every mounted file system, for the events detector (history keeps the root's).
    pub mounts: Vec<MountFill>,
    /// The watched interface, for the events detector.
    pub link: Option<LinkState>,
    /// Each whole disk's cumulative written bytes (`/proc/diskstats`), for the per-day ledger.
    pub disk_writes: Vec<(Arc<str>, u64)>,
}

impl Sample {
    /// A sample with every value unknown.
    pub fn new(mono: Duration, wall: SystemTime) -> Sample {
        Sample {
            mono,
            wall,
            cpu: None,
            cores: Vec::new(),
            memory: None,
            swap: None,
            temperature: None,
            load1: None,
            net_recv: None,
            net_sent: None,
            disk_read: None,
            disk_write: None,
            root_disk: None,
            clients: None,
            wifi_signal: None,
            throttled: None,
            mounts: Vec::new(),
            link: None,
            disk_writes: Vec::new(),
        }
    }

    fn scalar(&self, series: Series) -> Option<f64> {
        match series {
            Series::Cpu => self.cpu,
            Series::Memory => self.memory,
            Series::Swap => self.swap,
            Series::Temperature => self.temperature,
            Series::Load1 => self.load1,
            Series::NetRecv => self.net_recv,
            Series::NetSent => self.net_sent,
            Series::DiskRead => self.disk_read,
            Series::DiskWrite => self.disk_write,
            Series::RootDisk => self.root_disk,
            Series::Clients => self.clients,
            Series::WifiSignal => self.wifi_signal,
        }
    }
}

/// One mounted file system's fill.
#[derive(Debug, Clone, PartialEq)]
pub struct MountFill {
    pub mountpoint: String,
    pub used_percent: f64,
}

/// The watched interface as NetworkManager or the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkState {
    pub interface: String,
    pub connected: bool,
    /// NetworkManager's state reason (`carrier-changed`, `supplicant-timeout`, …) when known.
    pub reason: Option<String>,
}

/// Resolution and retention of the history tiers.
///
/// Bounds (checked by [`HistoryConfig::validate`]): `interval` 100 ms ..= 1 h; `raw_keep`
/// 0 ..= 24 h and at most 100,000 points; each aggregate tier a bucket of 1 s ..= 1 day that is
/// at least the interval, kept 1 bucket ..= 10 years and at most 1,000,000 buckets; the coarse
/// bucket no finer than the fine one. A tier holds 256 rows of 8 + 1 + 2 × series (raw) or
/// 6 × series (aggregates) bytes plus the compressed rest (about a quarter of that size on
/// white noise, at most 17/16 of it, and the raw tier's reused block buffers up to 1/16
/// more); a raw tier of at most 512 points is a plain ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryConfig {
    /// The collection interval: the raw tier's resolution.
    pub interval: Duration,
    /// How long raw points are kept (not persisted).
    pub raw_keep: Duration,
    pub fine: TierConfig,
    pub coarse: TierConfig,
}

/// One aggregate tier: buckets of `bucket`, kept for `keep`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierConfig {
    pub bucket: Duration,
    pub keep: Duration,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            interval: Duration::from_secs(1),
            raw_keep: Duration::from_secs(3600),
            fine: TierConfig {
                bucket: Duration::from_secs(60),
                keep: Duration::from_secs(7 * 86_400),
            },
            coarse: TierConfig {
                bucket: Duration::from_secs(15 * 60),
                keep: Duration::from_secs(365 * 86_400),
            },
        }
    }
}

/// Why a [`HistoryConfig`] was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HistoryConfigError {
    #[error("history interval must be between 100 ms and 1 h")]
    Interval,
    #[error("raw history must be kept at most 24 h and 100000 points")]
    RawKeep,
    #[error(
        "{tier} history: bucket must be between 1 s and 1 day and not shorter than the interval"
    )]
    Bucket { tier: &'static str },
    #[error("{tier} history: must keep at least one bucket, at most 10 years and 1000000 buckets")]
    Keep { tier: &'static str },
    #[error("coarse history buckets must not be finer than fine ones")]
    Order,
}

/// Most raw points the long-term history keeps (`history_raw` / `interval`).
pub const MAX_RAW_POINTS: u128 = 100_000;
const MAX_BUCKETS: u128 = 1_000_000;
const TEN_YEARS: Duration = Duration::from_secs(10 * 366 * 86_400);

impl HistoryConfig {
    pub fn validate(&self) -> Result<(), HistoryConfigError> {
        if self.interval < Duration::from_millis(100) || self.interval > Duration::from_secs(3600) {
            return Err(HistoryConfigError::Interval);
        }
        if self.raw_keep > Duration::from_secs(86_400)
            || self.raw_keep.as_millis() / self.interval.as_millis() > MAX_RAW_POINTS
        {
            return Err(HistoryConfigError::RawKeep);
        }
        for (tier, t) in [("fine", self.fine), ("coarse", self.coarse)] {
            if t.bucket < Duration::from_secs(1)
                || t.bucket > Duration::from_secs(86_400)
                || t.bucket < self.interval
                || t.bucket.subsec_millis() != 0
            {
                return Err(HistoryConfigError::Bucket { tier });
            }
            if t.keep < t.bucket
                || t.keep > TEN_YEARS
                || t.keep.as_millis() / t.bucket.as_millis() > MAX_BUCKETS
            {
                return Err(HistoryConfigError::Keep { tier });
            }
        }
        if self.coarse.bucket < self.fine.bucket {
            return Err(HistoryConfigError::Order);
        }
        Ok(())
    }

    fn raw_points(&self) -> usize {
        // One spare so that a full hour is still covered when ticks drift by a few ms.
        (self.raw_keep.as_millis() / self.interval.as_millis()) as usize + 1
    }
}

/// The `range=` of `GET /api/v1/history`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    TenMinutes,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Range {
    pub const ALL: [Range; 6] = [
        Range::TenMinutes,
        Range::Hour,
        Range::Day,
        Range::Week,
        Range::Month,
        Range::Year,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Range::TenMinutes => "10m",
            Range::Hour => "1h",
            Range::Day => "24h",
            Range::Week => "7d",
            Range::Month => "30d",
            Range::Year => "1y",
        }
    }

    pub fn span(self) -> Duration {
        Duration::from_secs(match self {
            Range::TenMinutes => 600,
            Range::Hour => 3600,
            Range::Day => 86_400,
            Range::Week => 7 * 86_400,
            Range::Month => 30 * 86_400,
            Range::Year => 365 * 86_400,
        })
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown `range=` value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("range must be one of 10m, 1h, 24h, 7d, 30d, 1y")]
pub struct RangeError;

impl FromStr for Range {
    type Err = RangeError;
    fn from_str(s: &str) -> Result<Range, RangeError> {
        Range::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or(RangeError)
    }
}

/// Where the timeline stood at the last sample: restored across restarts by the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Clock {
    /// Timeline position of the last sample, ms.
    timeline: u64,
    /// Its wall time, unix ms (0 when unknown).
    wall_ms: u64,
}

/// The three tiers plus the timeline. The rings are allocated in [`History::new`]; compressed
/// blocks come and go as aggregate rows age (one allocation per 256 rows).
#[derive(Debug)]
pub struct History {
    config: HistoryConfig,
    cores: usize,
    /// raw, fine, coarse.
    tiers: [Tier; 3],
    last: Option<Clock>,
    /// Monotonic reading and timeline position that the running daemon counts from.
    anchor: Option<(Duration, u64)>,
    /// Bytes written per disk per day (saved with the tiers).
    disk_days: DiskDays,
}

impl History {
    /// Preallocates every tier for `cores` per-core series (capped at [`MAX_CORES`]).
    pub fn new(config: HistoryConfig, cores: usize) -> Result<History, HistoryConfigError> {
        config.validate()?;
        let cores = cores.min(MAX_CORES);
        let width = SCALAR_SERIES.len() + cores;
        let fine = config.fine;
        let coarse = config.coarse;
        let buckets = |t: TierConfig| (t.keep.as_millis() / t.bucket.as_millis()) as usize;
        Ok(History {
            config,
            cores,
            tiers: [
                Tier::new(0, config.raw_points(), width),
                Tier::new(fine.bucket.as_millis() as u64, buckets(fine), width),
                Tier::new(coarse.bucket.as_millis() as u64, buckets(coarse), width),
            ],
            last: None,
            anchor: None,
            disk_days: DiskDays::new(),
        })
    }

    /// The same history with no compressed blocks, to check compression against.
    #[cfg(test)]
    pub(crate) fn uncompressed(config: HistoryConfig, cores: usize) -> History {
        let mut h = History::new(config, cores).unwrap();
        let width = h.tiers[0].width();
        h.tiers[0] = Tier::plain(0, config.raw_points(), width);
        for (tier, t) in h.tiers[1..].iter_mut().zip([config.fine, config.coarse]) {
            let bucket = t.bucket.as_millis() as u64;
            *tier = Tier::plain(bucket, (t.keep.as_millis() as u64 / bucket) as usize, width);
        }
        h
    }

    pub fn config(&self) -> &HistoryConfig {
        &self.config
    }

    /// Number of per-core series.
    pub fn cores(&self) -> usize {
        self.cores
    }

    /// Bytes held by the tiers: the rings (allocated up front) and the compressed blocks.
    pub fn heap_bytes(&self) -> usize {
        self.tiers.iter().map(Tier::heap_bytes).sum()
    }

    /// Keeps the aggregate tiers' sealed blocks in an unnamed file in `dir` rather than on the
    /// heap ([`shelf`]): those already sealed and those to come. The raw tier stays on the heap.
    /// A history already keeping them in a file keeps that one.
    pub fn shelve_in(&mut self, dir: &std::path::Path) -> std::io::Result<()> {
        if self.shelved() {
            return Ok(());
        }
        let shelf = std::sync::Arc::new(shelf::Shelf::create(dir)?);
        for tier in &mut self.tiers[1..] {
            tier.shelve_in(shelf.clone());
        }
        Ok(())
    }

    fn shelved(&self) -> bool {
        self.tiers[1..].iter().any(Tier::shelved)
    }

    /// Bytes of the aggregate tiers' blocks in the block file (0 without one).
    pub fn shelved_bytes(&self) -> usize {
        self.tiers.iter().map(Tier::shelved_bytes).sum()
    }

    /// Folds one tick into every tier. Allocates only when 256 aggregate rows are compressed.
    pub fn push(&mut self, sample: &Sample) {
        let timeline = self.timeline_of(sample);
        let wall_ms = unix_ms(sample.wall);
        self.last = Some(Clock { timeline, wall_ms });
        let flags = sample.throttled.map(series::throttle_bits);
        let mut values = [None; SCALAR_SERIES.len() + MAX_CORES];
        for (slot, series) in values.iter_mut().zip(SCALAR_SERIES) {
            *slot = sample.scalar(series).filter(|v| v.is_finite());
        }
        for (slot, core) in values[SCALAR_SERIES.len()..]
            .iter_mut()
            .zip(&sample.cores)
            .take(self.cores)
        {
            *slot = Some(*core).filter(|v| v.is_finite());
        }
        let values = &values[..SCALAR_SERIES.len() + self.cores];
        for tier in &mut self.tiers {
            tier.push(timeline, values, flags);
        }
        if !sample.disk_writes.is_empty() {
            self.disk_days.observe(
                Day::local(sample.wall),
                sample.disk_writes.iter().map(|(n, c)| (&**n, *c)),
            );
        }
    }

    /// Bytes written per disk today and on the last 30 days.
    pub fn disk_days(&self) -> &DiskDays {
        &self.disk_days
    }

    pub fn disk_days_mut(&mut self) -> &mut DiskDays {
        &mut self.disk_days
    }

    /// The timeline position of `sample`: monotonic while running; after a restore, the saved
    /// position plus the wall-clock gap (a negative gap counts as none).
    fn timeline_of(&mut self, sample: &Sample) -> u64 {
        let (mono0, tl0) = *self.anchor.get_or_insert_with(|| {
            let tl = match self.last {
                Some(last) => {
                    last.timeline + unix_ms(sample.wall).saturating_sub(last.wall_ms).max(1)
                }
                None => unix_ms(sample.wall),
            };
            (sample.mono, tl)
        });
        let tl = tl0 + sample.mono.saturating_sub(mono0).as_millis() as u64;
        // A monotonic clock that went backwards is a caller bug; keep the order anyway.
        tl.max(self.last.map_or(0, |l| l.timeline))
    }

    /// Points of the last `range`, at most `max_points` (neighbours are merged to fit, keeping the
    /// min of mins and max of maxes). The finest tier that keeps `range` answers; the part of the
    /// window it does not cover yet (raw points are not persisted) comes from coarser tiers.
    ///
    /// Merged points cover equal, aligned stretches of the timeline (a multiple of the tier's
    /// resolution), so a refresh a minute later merges the same rows into the same points and
    /// the chart does not shimmer; the merged mean weighs each row by the time it covers.
    pub fn query(&self, range: Range, max_points: usize) -> HistoryView {
        let span_ms = range.span().as_millis() as u64;
        let keeps = [
            self.config.raw_keep,
            self.config.fine.keep,
            self.config.coarse.keep,
        ];
        let first = keeps.iter().position(|k| *k >= range.span()).unwrap_or(2);
        let mut view = HistoryView {
            range,
            resolution_ms: match first {
                0 => self.config.interval.as_millis() as u64,
                i => self.tiers[i].bucket_ms(),
            },
            width: self.tiers[0].width(),
            cores: self.cores,
            interval_ms: self.config.interval.as_millis() as u32,
            row_ms: 0,
            now_wall: 0,
            now_timeline: 0,
            timeline: Vec::new(),
            flags: Vec::new(),
            weights: Vec::new(),
            values: Vec::new(),
        };
        let Some(last) = self.last else {
            return view;
        };
        view.now_wall = last.wall_ms;
        view.now_timeline = last.timeline;
        let start = last.timeline.saturating_sub(span_ms);
        // Coarsest first, each tier only up to where the finer one begins.
        let mut end = u64::MAX;
        let mut parts: Vec<(usize, u64, u64)> = Vec::new();
        for i in first..3 {
            let Some(oldest) = self.tiers[i].oldest() else {
                continue;
            };
            parts.push((i, start, end));
            end = end.min(oldest);
            if oldest <= start {
                break;
            }
        }
        for (i, from, until) in parts.into_iter().rev() {
            // What one row of this tier stands for, to weigh it when rows are merged.
            view.row_ms = match i {
                0 => view.interval_ms,
                _ => self.tiers[i].bucket_ms() as u32,
            };
            self.tiers[i].collect(from, until, &mut view);
        }
        view.merge_to(max_points.max(1));
        view
    }

    pub(crate) fn tiers(&self) -> &[Tier; 3] {
        &self.tiers
    }

    pub(crate) fn tiers_mut(&mut self) -> &mut [Tier; 3] {
        &mut self.tiers
    }

    /// Timeline position and wall time (unix ms) of the last sample, for the store.
    pub(crate) fn clock(&self) -> Option<(u64, u64)> {
        self.last.map(|c| (c.timeline, c.wall_ms))
    }

    /// Restores the clock from the store; the next sample continues the timeline.
    pub(crate) fn restore_clock(&mut self, timeline: u64, wall_ms: u64) {
        self.last = Some(Clock { timeline, wall_ms });
        self.anchor = None;
    }
}

pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

/// The answer to a history query: points oldest first, each with `t` (unix ms) and
/// `[min, mean, max]` per series (`null` when the series was not known in that bucket).
///
/// JSON: `{"range":"24h","resolution_ms":60000,"points":[{"t":…,"cpu":[1.2,5.0,31.4],…,
/// "per_core":[[…],…],"throttled":0}]}`. `throttled` is the OR of the `get_throttled` bits
/// 0–3 seen in the bucket (1 under-voltage, 2 frequency capped, 4 throttled, 8 soft
/// temperature limit): "any time set in the bucket"; `null` off a Pi.
#[derive(Debug, Clone)]
pub struct HistoryView {
    range: Range,
    resolution_ms: u64,
    width: usize,
    cores: usize,
    /// The collection interval, ms.
    interval_ms: u32,
    /// The time a row pushed by [`push_point`](Self::push_point) covers, ms: the interval for
    /// raw rows, the bucket for aggregate ones (set per tier by [`History::query`]).
    row_ms: u32,
    now_wall: u64,
    now_timeline: u64,
    timeline: Vec<u64>,
    flags: Vec<u8>,
    /// The time each point covers, ms: how much its mean counts when points are merged.
    weights: Vec<u32>,
    /// `width` × 3 codes-decoded values per point; NaN = unknown.
    values: Vec<f32>,
}

impl HistoryView {
    pub fn len(&self) -> usize {
        self.timeline.len()
    }

    pub fn is_empty(&self) -> bool {
        self.timeline.is_empty()
    }

    /// Wall time (unix ms) of point `i`: the latest sample's wall time minus the point's distance
    /// on the timeline, so points stay in order whatever the wall clock did.
    pub fn t(&self, i: usize) -> u64 {
        self.now_wall
            .saturating_sub(self.now_timeline.saturating_sub(self.timeline[i]))
    }

    /// `[min, mean, max]` of `series` at point `i`, `None` when unknown.
    pub fn get(&self, i: usize, series: Series) -> Option<[f32; 3]> {
        self.triple(i, series as usize)
    }

    /// `[min, mean, max]` of core `core` at point `i`.
    pub fn core(&self, i: usize, core: usize) -> Option<[f32; 3]> {
        (core < self.cores)
            .then(|| self.triple(i, SCALAR_SERIES.len() + core))
            .flatten()
    }

    /// Throttle bits seen in point `i` (see the type's docs), `None` off a Pi.
    pub fn throttled(&self, i: usize) -> Option<u8> {
        series::flags_out(self.flags[i])
    }

    fn triple(&self, i: usize, s: usize) -> Option<[f32; 3]> {
        let at = (i * self.width + s) * 3;
        let v = [self.values[at], self.values[at + 1], self.values[at + 2]];
        (!v[1].is_nan()).then_some(v)
    }

    pub(crate) fn push_point(
        &mut self,
        timeline: u64,
        flags: u8,
        triples: impl Iterator<Item = f32>,
    ) {
        self.push_weighted(timeline, flags, self.row_ms, triples);
    }

    /// The open bucket of an aggregate tier: it covers only the `samples` ticks seen so far.
    pub(crate) fn push_open_point(
        &mut self,
        timeline: u64,
        flags: u8,
        samples: u32,
        triples: impl Iterator<Item = f32>,
    ) {
        let weight = samples.saturating_mul(self.interval_ms).min(self.row_ms);
        self.push_weighted(timeline, flags, weight.max(1), triples);
    }

    fn push_weighted(
        &mut self,
        timeline: u64,
        flags: u8,
        weight: u32,
        triples: impl Iterator<Item = f32>,
    ) {
        self.timeline.push(timeline);
        self.flags.push(flags);
        self.weights.push(weight);
        self.values.extend(triples);
    }

    /// The length of the merged points' stretch of timeline: a multiple of the resolution whose
    /// aligned stretches hold every point in at most `max` (≥ 2) groups, the smallest of the
    /// first few tried. The points span less than `covered`; with `(max - 1)` stretches per
    /// `covered` they touch at most `max` of them, so the last candidate always fits.
    fn group_ms(&self, max: usize) -> u64 {
        let (first, last) = (self.timeline[0], self.timeline[self.len() - 1]);
        let step = self.resolution_ms.max(1);
        let covered = last.saturating_sub(first) + step;
        let k = |per: usize| covered.div_ceil(step * per as u64).max(1);
        let (fewest, sure) = (k(max), k(max - 1));
        for k in [fewest, fewest + 1] {
            let w = step * k;
            if k >= sure || self.groups(w) <= max {
                return w;
            }
        }
        step * sure
    }

    /// How many aligned stretches of `w` the points fall in (they are in timeline order).
    fn groups(&self, w: u64) -> usize {
        let mut groups = 0;
        let mut current = None;
        for &t in &self.timeline {
            if current != Some(t / w) {
                current = Some(t / w);
                groups += 1;
            }
        }
        groups
    }

    /// Merges neighbours so that at most `max` points remain: each merged point covers one
    /// aligned stretch of [`group_ms`](Self::group_ms), with the min of the mins, the max of
    /// the maxes, the mean of the means weighted by the time each covers (rows of different
    /// tiers, or an open bucket, cover different times), and the OR of the throttle flags.
    fn merge_to(&mut self, max: usize) {
        let n = self.len();
        if n <= max {
            return;
        }
        // One point: everything, wherever the stretches' edges would fall.
        let (w, stretch) = if max == 1 {
            let step = self.resolution_ms.max(1);
            let covered = self.timeline[n - 1].saturating_sub(self.timeline[0]) + step;
            (covered.div_ceil(step) * step, u64::MAX)
        } else {
            let w = self.group_ms(max);
            (w, w)
        };
        let stride = self.width * 3;
        let mut out = 0;
        let mut start = 0;
        while start < n {
            let group = self.timeline[start] / stretch;
            let mut end = start + 1;
            while end < n && self.timeline[end] / stretch == group {
                end += 1;
            }
            let mut flags = self.flags[start];
            let mut weight = 0u32;
            for j in start..end {
                flags = series::merge_flags(flags, self.flags[j]);
                weight = weight.saturating_add(self.weights[j]);
            }
            for s in 0..self.width {
                let (mut lo, mut sum, mut hi, mut total) = (f32::NAN, 0.0f64, f32::NAN, 0.0f64);
                for j in start..end {
                    let at = j * stride + s * 3;
                    let mean = self.values[at + 1];
                    if mean.is_nan() {
                        continue;
                    }
                    let w = f64::from(self.weights[j]);
                    lo = lo.min(self.values[at]);
                    hi = hi.max(self.values[at + 2]);
                    sum += f64::from(mean) * w;
                    total += w;
                }
                let mean = if total > 0.0 {
                    // Rounding must not put the mean outside [min, max] (NaN-safe, unlike clamp).
                    ((sum / total) as f32).max(lo).min(hi)
                } else {
                    f32::NAN
                };
                let at = out * stride + s * 3;
                self.values[at] = lo;
                self.values[at + 1] = mean;
                self.values[at + 2] = hi;
            }
            // The merged point sits where its newest member does: the chart's right edge stays.
            self.timeline[out] = self.timeline[end - 1];
            self.flags[out] = flags;
            self.weights[out] = weight;
            out += 1;
            start = end;
        }
        self.timeline.truncate(out);
        self.flags.truncate(out);
        self.weights.truncate(out);
        self.values.truncate(out * stride);
        self.resolution_ms = w;
    }
}

impl Serialize for HistoryView {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("range", self.range.as_str())?;
        map.serialize_entry("resolution_ms", &self.resolution_ms)?;
        map.serialize_entry("points", &Points(self))?;
        map.end()
    }
}

struct Points<'a>(&'a HistoryView);
struct Point<'a>(&'a HistoryView, usize);
struct Cores<'a>(&'a HistoryView, usize);
struct Triple(Option<[f32; 3]>, Series);

impl Serialize for Points<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for i in 0..self.0.len() {
            seq.serialize_element(&Point(self.0, i))?;
        }
        seq.end()
    }
}

impl Serialize for Point<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Point(view, i) = *self;
        let mut map = serializer.serialize_map(Some(SCALAR_SERIES.len() + 3))?;
        map.serialize_entry("t", &view.t(i))?;
        for series in SCALAR_SERIES {
            map.serialize_entry(series.name(), &Triple(view.get(i, series), series))?;
        }
        map.serialize_entry("per_core", &Cores(view, i))?;
        map.serialize_entry("throttled", &view.throttled(i))?;
        map.end()
    }
}

impl Serialize for Cores<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Cores(view, i) = *self;
        let mut seq = serializer.serialize_seq(Some(view.cores))?;
        for c in 0..view.cores {
            seq.serialize_element(&Triple(view.core(i, c), Series::Cpu))?;
        }
        seq.end()
    }
}

impl Serialize for Triple {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            None => serializer.serialize_none(),
            Some(v) => {
                let mut seq = serializer.serialize_seq(Some(3))?;
                for x in v {
                    seq.serialize_element(&self.1.round_for_output(x))?;
                }
                seq.end()
            }
        }
    }
}

#[cfg(test)]
mod tests;
