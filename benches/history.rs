//! Cost of the long-term history and the events detector: RAM with a year loaded, CPU per tick,
//! the state file's size and write time, and query times.
//!
//! Run: `cargo bench --bench history` (`-- CORES` to change the core count, default 4).

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::thread_cpu_time;

use pistats::events::{Detector, DetectorConfig, EventLog, EVENT_CAPACITY};
use pistats::history::store::{self, Store};
use pistats::history::{Day, History, HistoryConfig, MountFill, Range, Sample};

/// `wchar` (bytes handed to write) and `write_bytes` (bytes sent to the block device).
fn proc_io() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/self/io").unwrap();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap()
    };
    (field("wchar:"), field("write_bytes:"))
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The allocator's view (glibc): bytes in use, free bytes it keeps in its heap, bytes in
/// mmapped chunks. Where added RSS goes that the tiers do not hold.
#[cfg(target_env = "gnu")]
fn heap() -> String {
    // SAFETY: mallinfo2 only reads the allocator's counters.
    let m = unsafe { libc::mallinfo2() };
    format!(
        "heap in use {:.2} MiB, free in the heap {:.2} MiB, mmapped {:.2} MiB",
        m.uordblks as f64 / 1048576.0,
        m.fordblks as f64 / 1048576.0,
        m.hblkhd as f64 / 1048576.0
    )
}

#[cfg(not(target_env = "gnu"))]
fn heap() -> String {
    "heap figures: glibc only".to_owned()
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
    println!("before: {}", heap());
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
    let rss_year = rss_kib();
    println!("after the year: {}", heap());
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
        "history RAM: {:.2} MiB held by the tiers; RSS {:.2} → {:.2} MiB after the year \
         (+{:.2} MiB), {:.2} MiB with 2,000 events (+{:.2} MiB)",
        history.heap_bytes() as f64 / 1048576.0,
        rss0 as f64 / 1024.0,
        rss_year as f64 / 1024.0,
        (rss_year - rss0) as f64 / 1024.0,
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

    // The per-disk day ledger: pushes with two disks against pushes without, interleaved
    // (one tick a second, so days roll over), and the collector's preview of both disks.
    let round = 500_000u64;
    let (mut plain, mut disks) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..3 {
        for with in [false, true] {
            sample.disk_writes.clear();
            if with {
                sample
                    .disk_writes
                    .extend([("mmcblk0".to_owned(), 0), ("sda".to_owned(), 0)]);
            }
            let c0 = thread_cpu_time();
            for j in 0..round {
                fill(&mut sample, i + j, &mut rng, start);
                for (k, (_, counter)) in sample.disk_writes.iter_mut().enumerate() {
                    *counter = (i + j) * 4096 * (k as u64 + 1);
                }
                history.push(&sample);
            }
            i += round;
            let took = thread_cpu_time() - c0;
            if with {
                disks += took;
            } else {
                plain += took;
            }
        }
    }
    let c0 = thread_cpu_time();
    let mut kept = 0;
    for j in 0..round {
        let day = Day::local(start + Duration::from_secs(i + j));
        for name in ["mmcblk0", "sda"] {
            kept += history
                .disk_days()
                .preview(name, (i + j) * 4096, day)
                .map_or(0, |w| w.per_day.len());
        }
    }
    let preview = (thread_cpu_time() - c0) / round as u32;
    println!(
        "per tick: history push (fill included) without disks {:?}, with two disks {:?}; \
         collector preview of two disks {preview:?} ({kept} days seen)",
        plain / (3 * round) as u32,
        disks / (3 * round) as u32,
    );

    // The state file, in a directory on the build's disk (tmpfs would write no block bytes).
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join(format!("history-bench-{}", std::process::id()));
    let mut store = Store::new(&dir);
    store.mark_running(Some("bench")).unwrap();
    let c0 = Instant::now();
    let bytes = store::encode(&history, &events, Some("bench"), SystemTime::now());
    let encode = c0.elapsed();
    let mut saves = Vec::new();
    let mut size = 0;
    for _ in 0..5 {
        let c0 = Instant::now();
        size = store
            .snapshot(&history, &events, Some("bench"), SystemTime::now())
            .unwrap();
        saves.push(c0.elapsed());
    }
    saves.sort();
    let c0 = Instant::now();
    let restored = store.load(config, cores, EVENT_CAPACITY).unwrap();
    let load = c0.elapsed();
    assert_eq!(restored.events.len(), EVENT_CAPACITY);
    assert!(restored.moved_aside.is_none());
    drop(restored);
    println!(
        "snapshot: {size} bytes ({:.2} MiB; encode {encode:.1?}, write + fsync + rename p50 {:.1?}, load {load:.1?})",
        bytes.len() as f64 / 1048576.0,
        saves[2],
    );

    // A week of saves every 15 minutes (journal appends, snapshots when it reaches 1 MiB).
    let days = 7u64;
    let (wchar0, block0) = proc_io();
    let mut written = 0;
    let mut appends = Vec::new();
    let mut snapshots = 0;
    for save in 0..days * 96 {
        for j in 0..900 {
            fill(&mut sample, i + save * 900 + j, &mut rng, start);
            history.push(&sample);
            for e in detector.observe(&sample) {
                events.push(e);
            }
        }
        let c0 = Instant::now();
        let n = store
            .save(&history, &events, Some("bench"), SystemTime::now())
            .unwrap();
        if n > 100_000 {
            snapshots += 1;
        } else {
            appends.push((n, c0.elapsed()));
        }
        written += n;
    }
    let (wchar1, block1) = proc_io();
    appends.sort_by_key(|a| a.1);
    let mean_append = appends.iter().map(|a| a.0).sum::<usize>() / appends.len();
    println!(
        "saves every 15 min for {days} days: {} appends of {mean_append} bytes on average (p50 {:.1?}),          {snapshots} snapshots; {:.2} MiB/day written by the store, /proc/self/io: wchar {:.2} MiB/day,          write_bytes {:.2} MiB/day",
        appends.len(),
        appends[appends.len() / 2].1,
        written as f64 / days as f64 / 1048576.0,
        (wchar1 - wchar0) as f64 / days as f64 / 1048576.0,
        (block1 - block0) as f64 / days as f64 / 1048576.0,
    );
    let _ = std::fs::remove_dir_all(&dir);

    // 1,500: the answer's bound (and the default); 400: what a phone's dashboard asks for
    // (`points=`, about its charts' width in CSS pixels).
    for max in [1500, 400] {
        for range in Range::ALL {
            let c0 = Instant::now();
            let json = serde_json::to_vec(&history.query(range, max)).unwrap();
            let took = c0.elapsed();
            let points = history.query(range, max).len();
            println!(
                "query {range:>3} ≤ {max}: {points} points, {} KiB JSON, {took:.1?}",
                json.len() / 1024
            );
        }
    }
}
