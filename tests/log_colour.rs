//! Log lines carry terminal colour codes only when stderr is a terminal, and never with
//! `NO_COLOR` set: in a file, a pipe or the journal they are noise. The terminal is a real
//! pseudo-terminal from `script` (util-linux; Debian's essential bsdutils, so always there).

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_pistats");

/// Runs the daemon on a free loopback port for two seconds (SIGINT stops it cleanly) and
/// returns what it logged; through a pseudo-terminal when `tty`.
fn daemon_log(tty: bool, no_color: Option<&str>) -> String {
    let daemon = format!(
        "timeout -s INT 2 {BIN} --config /dev/null --host 127.0.0.1 --port 0 --interval 250ms"
    );
    let mut command = if tty {
        let mut script = Command::new("script");
        // The pty carries stdout and stderr alike; `script` copies it to its stdout.
        script.args(["-qec", &daemon, "/dev/null"]);
        script
    } else {
        let mut sh = Command::new("sh");
        sh.args(["-c", &format!("{daemon} 2>&1")]);
        sh
    };
    command
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .env_remove("JOURNAL_STREAM");
    if let Some(value) = no_color {
        command.env("NO_COLOR", value);
    }
    let out = command.output().expect("run the daemon");
    let log = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(log.contains("listening on"), "no log: {log:?}");
    log
}

#[test]
fn colour_only_on_a_terminal_without_no_color() {
    assert!(
        daemon_log(true, None).contains("\x1b["),
        "a terminal gets colour"
    );
    assert!(
        !daemon_log(true, Some("1")).contains("\x1b["),
        "NO_COLOR=1 on a terminal"
    );
    // An empty NO_COLOR does not count (no-color.org).
    assert!(daemon_log(true, Some("")).contains("\x1b["));
}

#[test]
fn no_colour_in_a_pipe() {
    let log = daemon_log(false, None);
    assert!(!log.contains('\x1b'), "{log:?}");
}
