//! `RUST_LOG` refines the configured `log_level` with a default level and `target=level`
//! directives; one that does not parse is reported and the configured level kept. The real
//! daemon, on a free loopback port, stopped with SIGINT after two seconds.

use std::process::Command;
use std::thread;

const BIN: &str = env!("CARGO_BIN_EXE_pistats");

/// What the daemon logged with `RUST_LOG` set to `rust_log` (unset when `None`).
fn daemon_log(rust_log: Option<&str>) -> String {
    let daemon = format!(
        "timeout -s INT 2 {BIN} --config /dev/null --host 127.0.0.1 --port 0 --interval 250ms 2>&1"
    );
    let mut command = Command::new("sh");
    command
        .args(["-c", &daemon])
        .env_remove("RUST_LOG")
        .env_remove("JOURNAL_STREAM")
        .env("NO_COLOR", "1");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PISTATS_") {
            command.env_remove(name);
        }
    }
    if let Some(value) = rust_log {
        command.env("RUST_LOG", value);
    }
    let out = command.output().expect("run the daemon");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn rust_log_sets_levels_per_target_and_a_bad_one_is_reported() {
    // The four runs at once: two seconds, not eight.
    let runs: Vec<_> = [
        None,
        Some("pistats=debug"),
        Some("warn"),
        Some("pistats=loud"),
    ]
    .into_iter()
    .map(|rust_log| thread::spawn(move || (rust_log, daemon_log(rust_log))))
    .collect();
    for run in runs {
        let (rust_log, log) = run.join().expect("run");
        let listening = log.contains("listening on");
        // Logged at debug when the collector thread ends, at shutdown.
        let debug = log.contains("collector stopped");
        let reported = log.contains("RUST_LOG=\"pistats=loud\" ignored");
        match rust_log {
            // The configured level (info).
            None => assert!(listening && !debug && !reported, "{log}"),
            Some("pistats=debug") => assert!(listening && debug, "{log}"),
            Some("warn") => assert!(!listening && !debug, "{log}"),
            // Not a level: the configured one, and a warning saying so.
            _ => assert!(listening && !debug && reported, "{log}"),
        }
    }
}
