//! Cost of the long-term history and the events detector: RAM with a year loaded, CPU per tick,
//! the state file's size and write time, and query times.
//!
//! Run: `cargo bench --bench history` (`-- CORES` to change the core count, default 4).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pistats::events::{Detector, DetectorConfig, EventLog, EVENT_CAPACITY};
use pistats::history::store::{self, Store};
use pistats::history::{History, HistoryConfig, MountFill, Range, Sample};

fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A small deterministic generator, so that runs compare.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Fills `sample` with plausible values for second `i`.
fn fill(sample: &mut Sample, i: u64, rng: &mut Lcg, start: SystemTime) {
    sample.mono = Duration::from_secs(i);
    sample.wall = start + Duration::from_secs(i);
    sample.cpu = Some(5.0 + 30.0 * rng.next());
    for core in sample.cores.iter_mut() {
        *core = 100.0 * rng.next();
    }
    sample.memory = Some(40.0 + 5.0 * rng.next());
    sample.swap = Some(1.0);
    sample.temperature = Some(48.0 + 10.0 * rng.next());
    sample.load1 = Some(0.5 + rng.next());
    sample.net_recv = Some(20_000.0 * rng.next());
    sample.net_sent = Some(5_000.0 * rng.next());
    sample.disk_read = Some(0.0);
    sample.disk_write = Some(40_000.0 * rng.next());
    sample.root_disk = Some(37.5);
    sample.clients = Some(0.0);
    sample.wifi_signal = Some(-60.0 + 5.0 * rng.next());
    sample.throttled = Some(if i % 86_400 == 3600 { 0x50005 } else { 0x50000 });
}

fn main() {
    let cores: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(4);
    let config = HistoryConfig::default();
    let year = 365 * 86_400u64;
    let start = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut rng = Lcg(42);
    let mut sample = Sample::new(Duration::ZERO, start);
    sample.cores = vec![0.0; cores];
    sample.mounts = vec![MountFill {
        mountpoint: "/".into(),
        used_percent: 37.5,
    }];

    let rss0 = rss_kib();
    let mut history = History::new(config, cores).unwrap();
    let mut events = EventLog::new(EVENT_CAPACITY);
    let mut detector = Detector::new(DetectorConfig::default());
    let t_fill = Instant::now();
    for i in 0..year {
        fill(&mut sample, i, &mut rng, start);
        history.push(&sample);
        for e in detector.observe(&sample) {
            events.push(e);
        }
    }
    // A full timeline: 2,000 events with typical messages and values.
    let mut i = year;
    while events.len() < EVENT_CAPACITY {
        fill(&mut sample, i, &mut rng, start);
        sample.throttled = Some(if i % 2 == 0 { 0x50005 } else { 0x50000 });
        history.push(&sample);
        for e in detector.observe(&sample) {
            events.push(e);
        }
        i += 1;
    }
    let filled = t_fill.elapsed();
    let rss1 = rss_kib();
    println!("cores: {cores}; a year of 1 Hz samples folded in {filled:.1?}");
    println!(
        "history RAM: {:.2} MiB allocated by the tiers; RSS {:.2} → {:.2} MiB (+{:.2} MiB with 2,000 events)",
        history.heap_bytes() as f64 / 1048576.0,
        rss0 as f64 / 1024.0,
        rss1 as f64 / 1024.0,
        (rss1 - rss0) as f64 / 1024.0
    );

    // CPU per tick with a year loaded (rings full: every push evicts).
    let ticks = 2_000_000u64;
    let c0 = thread_cpu_time();
    for j in 0..ticks {
        fill(&mut sample, i + j, &mut rng, start);
    }
    let fill_only = thread_cpu_time() - c0;
    let c0 = thread_cpu_time();
    for j in 0..ticks {
        fill(&mut sample, i + j, &mut rng, start);
        history.push(&sample);
    }
    let push = (thread_cpu_time() - c0).saturating_sub(fill_only) / ticks as u32;
    i += ticks;
    let c0 = thread_cpu_time();
    let mut seen = 0;
    for j in 0..ticks {
        fill(&mut sample, i + j, &mut rng, start);
        seen += detector.observe(&sample).len();
    }
    let observe = (thread_cpu_time() - c0).saturating_sub(fill_only) / ticks as u32;
    println!(
        "per tick: history push {push:?}, detector {observe:?} ({seen} events); at 1 Hz: {:.5} % of one core",
        (push + observe).as_secs_f64() * 100.0
    );

    // The state file.
    let dir = std::env::temp_dir().join(format!("pistats-bench-{}", std::process::id()));
    let store = Store::new(&dir);
    store.mark_running(Some("bench")).unwrap();
    let c0 = Instant::now();
    let bytes = store::encode(&history, &events, Some("bench"), SystemTime::now());
    let encode = c0.elapsed();
    let mut saves = Vec::new();
    let mut size = 0;
    for _ in 0..5 {
        let c0 = Instant::now();
        size = store
            .save(&history, &events, Some("bench"), SystemTime::now())
            .unwrap();
        saves.push(c0.elapsed());
    }
    saves.sort();
    let c0 = Instant::now();
    let restored = store.load(config, cores, EVENT_CAPACITY).unwrap();
    let load = c0.elapsed();
    assert_eq!(restored.events.len(), EVENT_CAPACITY);
    assert!(restored.moved_aside.is_none());
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "state file: {size} bytes ({:.2} MiB; encode {encode:.1?}, save with fsync p50 {:.1?}, load {load:.1?}); \
         every 15 min: {:.0} MiB/day",
        bytes.len() as f64 / 1048576.0,
        saves[2],
        size as f64 * 96.0 / 1048576.0
    );

    for range in Range::ALL {
        let c0 = Instant::now();
        let json = serde_json::to_vec(&history.query(range, 1500)).unwrap();
        let took = c0.elapsed();
        let points = history.query(range, 1500).len();
        println!(
            "query {range:>3}: {points} points, {} KiB JSON, {took:.1?}",
            json.len() / 1024
        );
    }
}
