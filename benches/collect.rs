//! Collection cost per snapshot: CPU time (this thread's, so sleeping does not count) and
//! wall time of `Collector::collect` plus serialization, over many ticks.
//!
//! Run: `cargo bench --bench collect` (optionally `-- 500` for the number of ticks).

use std::time::{Duration, Instant};

use pistats::config::Config;
use pistats::stats::{Collector, Context};

fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// `cargo bench` runs a benchmark with `--bench`; `cargo test --all-targets` builds it in the
/// test profile and runs it without. Measuring a debug build proves nothing and takes the
/// test suite's time, so without `--bench` the benchmark only says how to run it.
fn invoked_by_cargo_bench() -> bool {
    if std::env::args().any(|a| a == "--bench") {
        return true;
    }
    eprintln!("collect: a benchmark; run it with `cargo bench --bench collect`");
    false
}

fn main() {
    if !invoked_by_cargo_bench() {
        return;
    }
    let ticks: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(300);
    let config = Config::default();
    let mut collector = Collector::new(&config);
    std::thread::sleep(Duration::from_millis(250));
    // Warm up (first rates, caches).
    for _ in 0..3 {
        collector.collect(Context::default());
    }
    let mut cpu = Vec::with_capacity(ticks);
    let mut wall = Vec::with_capacity(ticks);
    let mut bytes = 0;
    for _ in 0..ticks {
        let (c0, w0) = (thread_cpu_time(), Instant::now());
        let doc = collector.collect(Context::default());
        let json = serde_json::to_string(&doc).unwrap();
        cpu.push(thread_cpu_time() - c0);
        wall.push(w0.elapsed());
        bytes = json.len();
        // Real ticks are apart; let process CPU counters move a little.
        std::thread::sleep(Duration::from_millis(10));
    }
    cpu.sort();
    wall.sort();
    let pct = |v: &[Duration], p: f64| v[((v.len() - 1) as f64 * p) as usize];
    let mean = |v: &[Duration]| v.iter().sum::<Duration>() / v.len() as u32;
    let processes = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .map(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .bytes()
                            .all(|b| b.is_ascii_digit())
                    })
                    .unwrap_or(false)
            })
            .count()
        })
        .unwrap_or(0);
    println!(
        "collect+serialize over {ticks} ticks ({processes} processes, document {bytes} bytes)"
    );
    println!(
        "  CPU time:  mean {:?}  p50 {:?}  p99 {:?}",
        mean(&cpu),
        pct(&cpu, 0.5),
        pct(&cpu, 0.99)
    );
    println!(
        "  wall time: mean {:?}  p50 {:?}  p99 {:?}",
        mean(&wall),
        pct(&wall, 0.5),
        pct(&wall, 0.99)
    );
}
