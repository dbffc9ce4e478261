//! Cost of the alert rules per tick: `Engine::observe` (read every rule's value from the typed
//! snapshot and advance its state) for the Debian package's six Pi-aware rules, on a snapshot
//! of the Pi 4 fixture tree, with the clock advancing one second per tick so `for` timers run.
//!
//! Run: `cargo bench --bench alerts` (optionally `-- 1000000` for the number of ticks).

use std::path::Path;
use std::time::{Duration, Instant};

use pistats::alerts::rules::{Engine, Facts};
use pistats::config::Config;
use pistats::stats::{Collector, Context};

fn invoked_by_cargo_bench() -> bool {
    if std::env::args().any(|a| a == "--bench") {
        return true;
    }
    eprintln!("alerts: a benchmark; run it with `cargo bench --bench alerts`");
    false
}

fn main() {
    if !invoked_by_cargo_bench() {
        return;
    }
    let ticks: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let packaged = include_str!("../debian/config.toml");
    let rules = Config::from_toml(packaged, Path::new("debian/config.toml"))
        .expect("the packaged config is valid")
        .alerting
        .rules;
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pi4");
    let config = Config {
        proc_root: format!("{fixtures}/proc").into(),
        sys_root: format!("{fixtures}/sys").into(),
        vcgencmd: "/nonexistent".into(),
        ..Config::default()
    };
    let doc = Collector::new(&config).collect(Context {
        connected_clients: 0,
        connectivity: None,
        full: true,
    });
    let mut engine = Engine::new(rules);
    let t0 = Instant::now();
    let start = Instant::now();
    let mut changes = 0usize;
    for n in 0..ticks {
        changes += engine
            .observe(t0 + Duration::from_secs(n), &doc, &Facts::default())
            .len();
    }
    let took = start.elapsed();
    println!(
        "{} rules, {ticks} ticks: {:.0} ns per tick ({changes} changes)",
        engine.rules().len(),
        took.as_nanos() as f64 / ticks as f64
    );
}
