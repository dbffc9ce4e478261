//! Helpers shared by the benchmarks: the guard that keeps a benchmark from measuring a debug
//! build, this thread's CPU time, and the open-file limit (shared with the tests).
// Each benchmark uses only some of these.
#![allow(dead_code, unused_imports)]

use std::time::Duration;

#[path = "../../tests/common/rlimit.rs"]
mod rlimit;
pub use rlimit::raise_fd_limit;

/// `cargo bench` runs a benchmark with `--bench`; `cargo test --all-targets` builds it in the
/// test profile and runs it without. Measuring a debug build proves nothing and takes the
/// test suite's time, so without `--bench` the benchmark `name` only says how to run it.
pub fn invoked_by_cargo_bench(name: &str) -> bool {
    if std::env::args().any(|a| a == "--bench") {
        return true;
    }
    eprintln!("{name}: a benchmark; run it with `cargo bench --bench {name}`");
    false
}

/// CPU time of the calling thread (sleeping does not count).
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
