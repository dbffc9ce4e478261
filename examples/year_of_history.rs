//! Writes a state directory holding a year of synthetic history, ending now, for measuring
//! the dashboard and the API with a full history (`tests/browser/range-switch-bench.sh`,
//! docs/benchmarks.md).
//!
//! Run: `cargo run --release --example year_of_history -- DIR [CORES]` (CORES defaults to this
//! machine's count, so the daemon restores every per-core series), then
//! `pistats --state-dir DIR`.
//!
//! One sample a minute is folded in: the tiers kept on disk are 1-minute buckets (7 days) and
//! 15-minute buckets (a year), so a minute's sample fills them as a second's would.

use std::time::{Duration, SystemTime};

use pistats::events::{EventLog, EVENT_CAPACITY};
use pistats::history::store::Store;
use pistats::history::{History, HistoryConfig, MountFill, Sample};

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: year_of_history DIR [CORES]");
        std::process::exit(2);
    };
    let cores = args
        .next()
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(4, |n| n.get()));
    let year = 365 * 86_400u64;
    let step = 60u64;
    let now = SystemTime::now();
    let start = now - Duration::from_secs(year);
    let mut history = History::new(HistoryConfig::default(), cores).expect("default tiers");
    let mut sample = Sample::new(Duration::ZERO, start);
    sample.cores = vec![0.0; cores];
    sample.mounts = vec![MountFill {
        mountpoint: "/".into(),
        used_percent: 37.5,
    }];
    // A deterministic generator, so that runs compare; a daily cycle plus noise.
    let mut state = 42u64;
    let mut next = || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    for i in (0..year).step_by(step as usize) {
        let day = ((i % 86_400) as f64 / 86_400.0 * std::f64::consts::TAU).sin();
        sample.mono = Duration::from_secs(i);
        sample.wall = start + Duration::from_secs(i);
        sample.cpu = Some(15.0 + 10.0 * day + 20.0 * next());
        for core in sample.cores.iter_mut() {
            *core = 100.0 * next();
        }
        sample.memory = Some(40.0 + 5.0 * next());
        sample.swap = Some(1.0);
        sample.temperature = Some(50.0 + 5.0 * day + 5.0 * next());
        sample.load1 = Some(0.5 + next());
        sample.net_recv = Some(20_000.0 * next());
        sample.net_sent = Some(5_000.0 * next());
        sample.disk_read = Some(1_000.0 * next());
        sample.disk_write = Some(40_000.0 * next());
        sample.root_disk = Some(30.0 + 10.0 * i as f64 / year as f64);
        sample.clients = Some((3.0 * next()).floor());
        sample.wifi_signal = Some(-60.0 + 5.0 * next());
        sample.throttled = Some(if i % (7 * 86_400) < step {
            0x50005
        } else {
            0x50000
        });
        history.push(&sample);
    }
    std::fs::create_dir_all(&dir).expect("create the state directory");
    let bytes = Store::new(&dir)
        .snapshot(&history, &EventLog::new(EVENT_CAPACITY), None, now)
        .expect("write the state file");
    println!("{dir}: a year of history for {cores} cores, {bytes} bytes");
}
