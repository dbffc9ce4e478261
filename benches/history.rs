//! Cost of the long-term history and the events detector: RAM with a year loaded, CPU per tick,
//! the state file's size and write time, and query times.
//!
//! Run: `cargo bench --bench history` (`-- CORES` to change the core count, default 4; `-- pi`
//! for the idle-Pi profile instead of white noise, see [`fill_pi`]; `-- ram` to keep the
//! aggregate tiers' sealed blocks on the heap, as with `state_dir = ""`, instead of in a file).

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{invoked_by_cargo_bench, thread_cpu_time};

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
    status_kib("VmRSS:")
}

/// Resident anonymous memory: the heap and stacks, without the code pages the history and
/// detector code touch (file-backed, shared with the page cache).
fn anon_kib() -> u64 {
    status_kib("RssAnon:")
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field))
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

/// What the synthetic samples look like.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Profile {
    /// Every series uniform white noise every second, each core independent: the worst case
    /// for the tiers' coding, and the default.
    Noise,
    /// A mostly idle Pi 4 as its kernel reports it ([`fill_pi`]).
    Pi,
}

/// The generator and what the Pi profile carries from one second to the next.
struct Gen {
    rng: Lcg,
    profile: Profile,
    load: f64,
    used_kib: f64,
    temperature: f64,
}

impl Gen {
    fn new(profile: Profile) -> Gen {
        Gen {
            rng: Lcg(42),
            profile,
            load: 0.1,
            used_kib: 350.0 * 1024.0,
            temperature: 45.0,
        }
    }
}

/// Fills `sample` with the profile's values for second `i`.
fn fill(sample: &mut Sample, i: u64, gen: &mut Gen, start: SystemTime) {
    sample.mono = Duration::from_secs(i);
    sample.wall = start + Duration::from_secs(i);
    match gen.profile {
        Profile::Noise => fill_noise(sample, &mut gen.rng),
        Profile::Pi => fill_pi(sample, i, gen),
    }
    sample.throttled = Some(if i % 86_400 == 3600 { 0x50005 } else { 0x50000 });
}

fn fill_noise(sample: &mut Sample, rng: &mut Lcg) {
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
}

/// A mostly idle Pi 4 (4 GB, Wi-Fi, SD card), with the resolution its kernel reports:
///
/// - per core: whole percents (`/proc/stat` counts 100 jiffies a second per core), mostly 0–1 %
///   with a 10–30 % spike in 2 % of the seconds; the first minute of every hour is busy (a
///   timer job: 40–100 % on every core). `cpu` is the cores' mean, as the aggregate line is;
/// - memory: used KiB of 3,884,000 as a mean-reverting walk around 350 MiB (±128 KiB a second),
///   200 MiB more during the busy minute; swap at 0 %;
/// - temperature: follows 45 °C + 3 °C over the day (+8 °C while busy) with thermal lag,
///   in steps of 0.487 °C as the BCM2711 sensor reports;
/// - load1: the kernel's exponential average, updated every 5 s from 0–1 runnable tasks (3
///   while busy), printed with two decimals as `/proc/loadavg` does;
/// - network: 0–5 packets of 60–300 bytes a second received (mDNS, ARP, beacons' traffic),
///   half that sent; 200 kB/s down while busy;
/// - disk: no reads; 1–4 pages of 4 KiB written every 5 s (ext4's commit interval, journald),
///   1–2 MB/s while busy; root file system 37.5 % growing by half a percent over the year;
/// - one dashboard client from 19:00 to 19:30 every day; Wi-Fi signal −58 ± 1 dBm.
///
/// The throttle flags and so the events are the same as the noise profile's.
fn fill_pi(sample: &mut Sample, i: u64, gen: &mut Gen) {
    let rng = &mut gen.rng;
    let busy = i % 3600 < 60;
    let day = (i % 86_400) as f64 / 86_400.0;
    let mut sum = 0.0;
    for core in sample.cores.iter_mut() {
        let jiffies = if busy {
            40.0 + (60.0 * rng.next()).floor()
        } else if rng.next() < 0.02 {
            10.0 + (20.0 * rng.next()).floor()
        } else {
            (2.0 * rng.next() * rng.next()).floor()
        };
        *core = jiffies;
        sum += jiffies;
    }
    let cores = sample.cores.len().max(1) as f64;
    sample.cpu = Some(sum / cores);
    let target = if busy { 550.0 } else { 350.0 } * 1024.0;
    gen.used_kib += (target - gen.used_kib) * 0.05 + 256.0 * (rng.next() - 0.5);
    sample.memory = Some((gen.used_kib.round() / 3_884_000.0 * 100.0).clamp(0.0, 100.0));
    sample.swap = Some(0.0);
    let warm = 45.0 + 3.0 * (std::f64::consts::TAU * day).sin() + if busy { 8.0 } else { 0.0 };
    gen.temperature += (warm - gen.temperature) * 0.01;
    sample.temperature = Some((gen.temperature / 0.487 + rng.next() - 0.5).round() * 0.487);
    if i % 5 == 0 {
        let running = if busy {
            3.0
        } else if rng.next() < 0.15 {
            1.0
        } else {
            0.0
        };
        let decay = (-5.0f64 / 60.0).exp();
        gen.load = gen.load * decay + running * (1.0 - decay);
    }
    sample.load1 = Some((gen.load * 100.0).round() / 100.0);
    let packets = |rng: &mut Lcg, n: f64| {
        let count = (n * rng.next()).floor() as u32;
        (0..count)
            .map(|_| 60.0 + (240.0 * rng.next()).floor())
            .sum::<f64>()
    };
    sample.net_recv = Some(packets(rng, 6.0) + if busy { 200_000.0 } else { 0.0 });
    sample.net_sent = Some(packets(rng, 3.0));
    sample.disk_read = Some(0.0);
    sample.disk_write = Some(if busy {
        4096.0 * (250.0 + (250.0 * rng.next()).floor())
    } else if i % 5 == 0 {
        4096.0 * (1.0 + (4.0 * rng.next()).floor())
    } else {
        0.0
    });
    sample.root_disk = Some(37.5 + 0.5 * i as f64 / (365.0 * 86_400.0));
    let evening = (19 * 3600..19 * 3600 + 1800).contains(&(i % 86_400));
    sample.clients = Some(if evening { 1.0 } else { 0.0 });
    sample.wifi_signal = Some(-58.0 + (3.0 * rng.next()).floor() - 1.0);
}

fn main() {
    // `cargo test --all-targets` runs benchmarks too, without `--bench`: a year of samples in
    // a debug build would take minutes of the test suite.
    if !invoked_by_cargo_bench("history") {
        return;
    }
    let cores: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(4);
    let profile = if std::env::args().any(|a| a == "pi") {
        Profile::Pi
    } else {
        Profile::Noise
    };
    let config = HistoryConfig::default();
    let year = 365 * 86_400u64;
    let start = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut rng = Gen::new(profile);
    let mut sample = Sample::new(Duration::ZERO, start);
    sample.cores = vec![0.0; cores];
    sample.mounts = vec![MountFill {
        mountpoint: "/".into(),
        used_percent: 37.5,
    }];

    // The state directory, on the build's disk (tmpfs would write no block bytes). As the
    // daemon with its default `state_dir`, the aggregate tiers' sealed blocks are kept in a
    // file there; `ram` keeps them on the heap, as with `state_dir = ""`.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join(format!("history-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let shelve = !std::env::args().any(|a| a == "ram");

    let (rss0, anon0) = (rss_kib(), anon_kib());
    println!("before: {}", heap());
    let mut history = History::new(config, cores).unwrap();
    if shelve {
        history.shelve_in(&dir).unwrap();
    }
    let (_, shelf_written0) = proc_io();
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
    let (rss_year, anon_year) = (rss_kib(), anon_kib());
    let (_, shelf_written1) = proc_io();
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
    let (rss1, anon1) = (rss_kib(), anon_kib());
    println!(
        "cores: {cores}, profile {profile:?}, sealed blocks {}; a year of 1 Hz samples folded in {filled:.1?}",
        if shelve {
            format!(
                "in a file ({:.2} MiB held there; {:.1} KiB a day written to the disk while the \
                 year was folded, /proc/self/io write_bytes)",
                history.shelved_bytes() as f64 / 1048576.0,
                (shelf_written1 - shelf_written0) as f64 / 365.0 / 1024.0
            )
        } else {
            "on the heap (`ram`)".to_owned()
        }
    );
    println!(
        "history RAM: {:.2} MiB held by the tiers; RSS {:.2} → {:.2} MiB after the year \
         (+{:.2} MiB), {:.2} MiB with 2,000 events (+{:.2} MiB); anonymous +{:.2} MiB after the \
         year, +{:.2} MiB with the events",
        history.heap_bytes() as f64 / 1048576.0,
        rss0 as f64 / 1024.0,
        rss_year as f64 / 1024.0,
        (rss_year - rss0) as f64 / 1024.0,
        rss1 as f64 / 1024.0,
        (rss1 - rss0) as f64 / 1024.0,
        (anon_year - anon0) as f64 / 1024.0,
        (anon1 - anon0) as f64 / 1024.0
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
                    .extend([("mmcblk0".into(), 0), ("sda".into(), 0)]);
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

    // The state file, in the same directory.
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
