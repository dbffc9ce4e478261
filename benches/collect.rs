//! Collection cost per snapshot: CPU time (this thread's, so sleeping does not count) and
//! wall time of `Collector::collect` plus serialization, over many ticks.
//!
//! Run: `cargo bench --bench collect` (optionally `-- 500` for the number of ticks).

mod common;

use std::time::{Duration, Instant};

use common::{invoked_by_cargo_bench, thread_cpu_time};

use pistats::config::Config;
use pistats::stats::{Collector, Context};

fn main() {
    if !invoked_by_cargo_bench("collect") {
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
