//! When stderr is the journal's stream but the journal's native socket is not there (as on a
//! build machine without journald), log lines carry their syslog priority (`<3>` error, `<4>`
//! warning, `<6>` info), so `journalctl -p warning` keeps only warnings and errors; nowhere
//! else. systemd says which stream is the journal's through `JOURNAL_STREAM=device:inode`;
//! here stderr is a file of the test's own and the variable names that file, as systemd would
//! name its socket. Logging through the native socket, with fields, is tested with the
//! installed package in a booted container (tests/install/run.sh, phase "journal").

use std::fs::File;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_pistats");

/// Runs `pistats ARGS` for at most `seconds` (SIGINT stops it cleanly) with stderr into a
/// file; with `JOURNAL_STREAM` naming that file when `journal`, else naming another one.
/// Returns the log.
fn log_of(args: &[&str], seconds: u32, journal: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stderr");
    let stderr = File::create(&path).unwrap();
    let other = File::create(dir.path().join("other")).unwrap();
    let named = if journal { &stderr } else { &other };
    let meta = named.metadata().unwrap();
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    let status = Command::new("timeout")
        .args(["-s", "INT", &seconds.to_string(), BIN])
        .args(["--config", "/dev/null"])
        .args(args)
        .env("JOURNAL_STREAM", stream)
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .status()
        .expect("run pistats");
    assert!(status.code().is_some(), "{status:?}");
    std::fs::read_to_string(&path).unwrap()
}

/// A daemon that serves, but whose port is taken for a while: it logs info lines and a
/// warning about the port (with `serve = "while-connected"` it keeps retrying).
fn busy_port_args(port: &str) -> Vec<&str> {
    vec![
        "--host",
        "127.0.0.1",
        "--port",
        port,
        "--serve",
        "while-connected",
        "--interface",
        "lo",
        "--interval",
        "250ms",
    ]
}

#[test]
fn journal_lines_carry_their_priority() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let log = log_of(&busy_port_args(&port), 2, true);
    let lines: Vec<&str> = log.lines().collect();
    assert!(!lines.is_empty(), "no log");
    for line in &lines {
        let level = line.get(3..).unwrap_or_default().trim_start();
        let expected = if level.starts_with("ERROR") {
            "<3>"
        } else if level.starts_with("WARN") {
            "<4>"
        } else if level.starts_with("INFO") {
            "<6>"
        } else {
            "<7>"
        };
        assert!(line.starts_with(expected), "{line:?} in\n{log}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<4>") && l.contains("retrying")),
        "no warning about the taken port in\n{log}"
    );
    assert!(lines.iter().any(|l| l.starts_with("<6>")), "{log}");
    // journald adds its own timestamps: the line starts with the priority, then the level.
    assert!(
        lines
            .iter()
            .all(|l| l[3..].trim_start().starts_with(char::is_uppercase)),
        "{log}"
    );

    // A fatal error is priority 3.
    let log = log_of(
        &["--tls-cert", "/nonexistent", "--tls-key", "/nonexistent"],
        5,
        true,
    );
    assert!(
        log.lines()
            .any(|l| l.starts_with("<3>") && l.contains("/nonexistent")),
        "{log}"
    );
    drop(taken);
}

/// A `JOURNAL_STREAM` inherited by a process whose stderr goes elsewhere does not count
/// (systemd.exec(5)): no prefixes, and the usual timestamps.
#[test]
fn no_priority_prefix_when_stderr_is_not_the_journal() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let log = log_of(&busy_port_args(&port), 2, false);
    assert!(log.contains("retrying"), "{log}");
    assert!(!log.lines().any(|l| l.starts_with('<')), "{log}");
    assert!(
        log.lines()
            .all(|l| l.starts_with(|c: char| c.is_ascii_digit())),
        "timestamps first: {log}"
    );
}
