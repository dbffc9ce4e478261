//! Property tests for the config parser: whatever bytes a user (or a broken editor) leaves in
//! `/etc/pistats/config.toml`, loading it yields a config or a `ConfigError` naming the file,
//! never a panic, and every accepted config satisfies the limits the daemon relies on.

use std::path::Path;
use std::time::Duration;

use pistats::config::{Config, ConfigError, Origin, MAX_DURATION, MIN_INTERVAL};
use proptest::prelude::*;

const KEYS: &[&str] = &[
    "host",
    "port",
    "interval",
    "ping_interval",
    "ping_timeout",
    "send_timeout",
    "top_processes",
    "history",
    "assets_dir",
    "log_level",
    "serve",
    "interface",
    "token",
    "allowed_origins",
    "max_clients",
    "max_clients_per_ip",
    "max_message_size",
    "hide_process_names",
    "tls_cert",
    "tls_key",
    "proc_root",
    "sys_root",
    "vcgencmd",
    "bogus_key",
];

/// A TOML value of any shape, biased towards the edge cases of the settings' types.
fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        prop_oneof![
            Just(0i64),
            Just(-1),
            Just(65535),
            Just(65536),
            Just(i64::MAX)
        ]
        .prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        any::<bool>().prop_map(|b| b.to_string()),
        "[0-9]{0,25}(\\.[0-9]{0,4})?(ms|s|m|min|h|d|)".prop_map(|s| format!("{s:?}")),
        "[ -~]{0,24}".prop_map(|s| format!("{s:?}")),
        prop_oneof![
            Just("\"127.0.0.1\""),
            Just("\"::1\""),
            Just("\"while-connected\""),
            Just("\"always\""),
            Just("\"debug\""),
            Just("[]"),
            Just("[\"http://a\", 3]"),
            Just("{}"),
            Just("\"\""),
        ]
        .prop_map(str::to_owned),
    ]
}

fn toml_document() -> impl Strategy<Value = String> {
    prop::collection::vec((prop::sample::select(KEYS), toml_value()), 0..8).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(k, v)| format!("{k} = {v}\n"))
            .collect()
    })
}

fn check(text: &str) {
    match Config::from_toml(text, Path::new("/etc/pistats/config.toml")) {
        Ok(config) => {
            assert!(config.interval >= MIN_INTERVAL && config.interval <= MAX_DURATION);
            for d in [
                config.ping_interval,
                config.ping_timeout,
                config.send_timeout,
            ] {
                assert!(d > Duration::ZERO && d <= MAX_DURATION, "{d:?}");
            }
            assert!(config.history <= MAX_DURATION);
            assert!(config.max_clients >= 1 && config.max_clients_per_ip >= 1);
            assert!(!config.interface.is_empty() && config.interface.len() <= 15);
            // Deadlines derived from any accepted setting must be representable.
            let now = std::time::Instant::now();
            assert!(now.checked_add(config.interval).is_some());
            assert!(now.checked_add(config.history).is_some());
        }
        Err(ConfigError::Parse { path, message }) => {
            assert_eq!(path, Path::new("/etc/pistats/config.toml"));
            assert!(!message.is_empty());
        }
        Err(ConfigError::Invalid {
            key,
            origin,
            message,
        }) => {
            assert!(KEYS.contains(&key), "unexpected key {key}");
            assert!(!message.is_empty());
            // A bad value in the file is located in the file, on a line that exists.
            match origin {
                Origin::File { path, line } => {
                    assert_eq!(path, Path::new("/etc/pistats/config.toml"));
                    assert!(line >= 1 && line <= text.lines().count(), "line {line}");
                }
                other => panic!("value from the file attributed to {other}"),
            }
        }
        Err(other) => panic!("unexpected error kind: {other}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn structured_documents_never_panic(text in toml_document()) {
        check(&text);
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        check(&text);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        check(&String::from_utf8_lossy(&bytes));
    }

    /// Every interval from the minimum up to an hour, in any unit, is accepted as written.
    #[test]
    fn valid_intervals_round_trip(ms in 250u64..3_600_000) {
        let config = Config::from_toml(&format!("interval = \"{ms}ms\""), Path::new("c.toml"))
            .expect("valid interval");
        prop_assert_eq!(config.interval, Duration::from_millis(ms));
    }
}

#[test]
fn overflowing_durations_are_refused_by_name() {
    for (key, value) in [
        ("interval", "\"100000000000h\""),
        ("ping_interval", "1e300"),
        ("send_timeout", "\"25h\""),
        ("history", "\"9999999999999999999s\""),
    ] {
        let err =
            Config::from_toml(&format!("{key} = {value}"), Path::new("c.toml")).expect_err(value);
        let text = err.to_string();
        // Every error names the file; this one must also name the key and its line.
        assert!(text.starts_with("c.toml, line 1: "), "{text}");
        assert!(
            text.contains(&format!("{key} must be a duration from")),
            "{text}"
        );
    }
}
