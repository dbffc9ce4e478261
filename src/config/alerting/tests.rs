use std::path::Path;
use std::time::Duration;

use super::*;
use crate::config::Config;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, Path::new("test.toml"))
}

fn error(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn rules_read_with_defaults_and_hysteresis() {
    let c = parse(
        r#"
port = 9000

[[alert]]
name = "hot"
metric = "temperature"
above = 80
clear = 75
for = "1m"
repeat = "30m"
severity = "critical"

[[alert]]
name = "data-full"
metric = "disk"
mount = "/data"
above = 90.5

[[alert]]
name = "undervoltage"
metric = "undervoltage"
"#,
    )
    .unwrap();
    assert_eq!(c.port, 9000);
    let rules = &c.alerting.rules;
    assert_eq!(rules.len(), 3);
    assert_eq!(
        rules[0].condition,
        Condition::Above {
            level: 80.0,
            clear: 75.0
        }
    );
    assert_eq!(rules[0].for_, Duration::from_secs(60));
    assert_eq!(rules[0].repeat, Some(Duration::from_secs(1800)));
    assert_eq!(rules[0].severity, Severity::Critical);
    assert_eq!(
        rules[1].metric,
        Metric::Disk {
            mount: "/data".into()
        }
    );
    assert_eq!(
        rules[1].condition,
        Condition::Above {
            level: 90.5,
            clear: 90.5
        }
    );
    assert_eq!(rules[1].severity, Severity::Warning);
    assert_eq!(rules[1].for_, Duration::ZERO);
    assert_eq!(rules[2].condition, Condition::Set);
}

#[test]
fn rule_errors_name_line_key_and_rule() {
    let cases: &[(&str, usize, &str)] = &[
        ("[[alert]]\nname = \"a\"\nmetric = \"temprature\"\nabove = 1", 3, "metric must be one of"),
        ("[[alert]]\nname = \"a\"\nmetric = \"cpu\"\nabove = 101", 4, "above must be a number from 0 to 100"),
        ("[[alert]]\nname = \"a\"\nmetric = \"cpu\"\nabove = 90\nclear = 95", 5, "clear (95) must not be above"),
        ("[[alert]]\nname = \"a\"\nmetric = \"cpu\"\nbelow = 10\nclear = 5", 5, "must not be below"),
        ("[[alert]]\nname = \"a\"\nmetric = \"cpu\"\nabove = 90\nbelow = 5", 5, "both set"),
        ("[[alert]]\nname = \"a\"\nmetric = \"cpu\"", 1, "needs a threshold"),
        ("[[alert]]\nname = \"a\"\nmetric = \"throttled\"\nabove = 1", 4, "is a flag"),
        ("[[alert]]\nname = \"a\"\nmetric = \"cpu\"\nabove = 9\nfor = \"2 days\"", 5, "for must be a duration"),
        ("[[alert]]\nname = \"a\"\nmetric = \"cpu\"\nabove = 9\nrepeat = \"5s\"", 5, "repeat must be a duration from 1m"),
        ("[[alert]]\nname = \"a\"\nmetric = \"cpu\"\nabove = 9\nseverity = \"loud\"", 5, "severity must be one of"),
        ("[[alert]]\nname = \"a\"\nmetric = \"cpu\"\nabove = 9\nfro = \"1m\"", 5, "unknown key `fro` (did you mean `for`?)"),
        ("[[alert]]\nname = \"a b\"\nmetric = \"cpu\"\nabove = 9", 2, "name must be 1 to 64 letters"),
        ("[[alert]]\nmetric = \"cpu\"\nabove = 9", 1, "name is missing"),
        ("[[alert]]\nname = \"a\"\nmetric = \"cpu\"\nmount = \"/\"\nabove = 9", 1, "mount only applies"),
        ("[[alert]]\nname = \"a\"\nmetric = \"wifi_signal\"\nbelow = 75", 4, "below must be a number from -120 to 0"),
        ("[[alert]]\nname = \"a\"\nmetric = \"wifi_quality\"\nbelow = 130", 4, "below must be a number from 0 to 100"),
        (
            "[[alert]]\nname = \"a\"\nmetric = \"cpu\"\nabove = 9\n[[alert]]\nname = \"a\"\nmetric = \"swap\"\nabove = 9",
            5,
            "two [[alert]] tables are named \"a\"",
        ),
    ];
    for (text, line, phrase) in cases {
        let err = error(text);
        assert!(
            err.contains(&format!("test.toml, line {line}")),
            "{text}\n→ {err}"
        );
        assert!(err.contains(phrase), "{text}\n→ {err}");
    }
    // The rule is named in its errors.
    assert!(error(cases[1].0).contains("[[alert]] \"a\""));
}

/// Wi-Fi signal in dBm (negative) with a clear level, and the quality in percent.
#[test]
fn wifi_rules_read_in_their_units() {
    let c = parse(
        "[[alert]]\nname = \"weak-wifi\"\nmetric = \"wifi_signal\"\nbelow = -75\nclear = -70\nfor = \"30s\"\n\n\
         [[alert]]\nname = \"poor-wifi\"\nmetric = \"wifi_quality\"\nbelow = 30\n",
    )
    .unwrap();
    let rules = &c.alerting.rules;
    assert_eq!(rules[0].metric, Metric::WifiSignal);
    assert_eq!(
        rules[0].condition,
        Condition::Below {
            level: -75.0,
            clear: -70.0
        }
    );
    assert_eq!(rules[1].metric, Metric::WifiQuality);
}

#[test]
fn notifiers_read_and_reject_bad_values() {
    let c = parse(
        r#"
[[notify]]
kind = "ntfy"
url = "https://ntfy.sh/my-pi"
token = "tk_abc"
priority = 5
tags = ["pi"]

[[notify]]
kind = "webhook"
name = "home"
url = "http://127.0.0.1:9/hook"
headers = { X-Api-Key = "k1" }
timeout = "3s"
retries = 0
"#,
    )
    .unwrap();
    let n = &c.alerting.notifiers;
    assert_eq!(n[0].name, "ntfy-1");
    assert_eq!(n[0].kind, NotifyKind::Ntfy);
    assert_eq!(n[0].token.as_ref().unwrap().expose(), "tk_abc");
    assert_eq!(n[0].retries, DEFAULT_NOTIFY_RETRIES);
    assert_eq!(n[1].name, "home");
    assert_eq!(n[1].headers[0].0.as_str(), "x-api-key");
    assert_eq!(n[1].timeout, Duration::from_secs(3));
    assert_eq!(n[1].retries, 0);
    // Secrets never show in Debug output.
    assert!(!format!("{c:?}").contains("tk_abc"));
    assert!(!format!("{c:?}").contains("k1"));

    for (text, phrase) in [
        (
            "[[notify]]\nkind = \"sms\"\nurl = \"http://x\"",
            "kind must be \"ntfy\" or \"webhook\"",
        ),
        (
            "[[notify]]\nkind = \"ntfy\"\nurl = \"ftp://x/y\"",
            "url must be an http:// or https:// URL",
        ),
        ("[[notify]]\nkind = \"ntfy\"", "url is missing"),
        (
            "[[notify]]\nkind = \"webhook\"\nurl = \"http://x\"\npriority = 3",
            "priority only applies",
        ),
        (
            "[[notify]]\nkind = \"ntfy\"\nurl = \"http://x\"\npriority = 9",
            "priority must be a number from 1 to 5",
        ),
        (
            "[[notify]]\nkind = \"ntfy\"\nurl = \"http://x\"\ntoken = \"a\"\ntoken_file = \"/t\"",
            "both set",
        ),
        (
            "[[notify]]\nkind = \"ntfy\"\nurl = \"http://x\"\ntoken_file = \"/nonexistent/t\"",
            "cannot read token_file",
        ),
        (
            "[[notify]]\nkind = \"ntfy\"\nurl = \"http://x\"\nretries = 11",
            "retries must be a number from 0 to 10",
        ),
        (
            "[[notify]]\nkind = \"ntfy\"\nurl = \"http://x\"\nurll = 1",
            "did you mean `url`",
        ),
    ] {
        let err = error(text);
        assert!(err.contains(phrase), "{text}\n→ {err}");
        assert!(err.contains("test.toml, line"), "{err}");
    }
    // An invalid inline secret is not echoed.
    let err = error("[[notify]]\nkind = \"ntfy\"\nurl = \"http://x\"\ntoken = \"sécret\"");
    assert!(err.contains("not shown") && !err.contains("cret"), "{err}");
}

#[test]
fn secrets_come_from_files_and_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ntfy.token");
    std::fs::write(&file, "tk_from_file\n").unwrap();
    let text = format!(
        "[[notify]]\nkind = \"ntfy\"\nurl = \"http://x/t\"\ntoken_file = \"{}\"\n\n[mqtt]\nurl = \"mqtts://broker.lan\"\nusername = \"pi\"\npassword_file = \"{}\"",
        file.display(),
        file.display()
    );
    let c = parse(&text).unwrap();
    assert_eq!(
        c.alerting.notifiers[0].token.as_ref().unwrap().expose(),
        "tk_from_file"
    );
    let mqtt = c.alerting.mqtt.unwrap();
    assert_eq!(
        (mqtt.host.as_str(), mqtt.port, mqtt.tls),
        ("broker.lan", 8883, true)
    );
    assert_eq!(mqtt.password.unwrap().expose(), "tk_from_file");
    assert!(mqtt.discovery);
    assert_eq!(mqtt.discovery_prefix, "homeassistant");
    assert_eq!(mqtt.interval, DEFAULT_MQTT_INTERVAL);

    // A relative path is a credential; without $CREDENTIALS_DIRECTORY that is an error that
    // says so (the test process never sets it).
    if std::env::var_os("CREDENTIALS_DIRECTORY").is_none() {
        let err = error("[mqtt]\nurl = \"mqtt://b\"\npassword_file = \"mqtt.pass\"");
        assert!(err.contains("CREDENTIALS_DIRECTORY"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }
}

#[test]
fn mqtt_reads_and_rejects() {
    let c = parse("[mqtt]\nurl = \"mqtt://127.0.0.1:1884\"\ndiscovery = false\ninterval = \"30s\"\ntopic = \"home/pi\"").unwrap();
    let m = c.alerting.mqtt.unwrap();
    assert_eq!((m.host.as_str(), m.port, m.tls), ("127.0.0.1", 1884, false));
    assert!(!m.discovery);
    assert_eq!(m.interval, Duration::from_secs(30));
    assert_eq!(m.topic.as_deref(), Some("home/pi"));
    for (text, phrase) in [
        (
            "[mqtt]\nurl = \"http://b\"",
            "url must be an mqtt:// or mqtts:// URL",
        ),
        (
            "[mqtt]\nurl = \"mqtt://b\"\ninterval = \"100ms\"",
            "interval must be a duration from 1s to 1h",
        ),
        (
            "[mqtt]\nurl = \"mqtt://b\"\ntopic = \"a/#\"",
            "topic must be",
        ),
        (
            "[mqtt]\nurl = \"mqtt://b\"\ndiscovery_prefx = \"x\"",
            "did you mean `discovery_prefix`",
        ),
        ("[mqtt]\nusername = \"u\"", "url is missing"),
        ("mqtt = 3", "invalid"),
    ] {
        let err = error(text);
        assert!(err.contains(phrase), "{text}\n→ {err}");
    }
}

/// The Debian package enables the Pi-aware rules.
#[test]
fn packaged_config_enables_the_pi_aware_rules() {
    let c = parse(include_str!("../../../debian/config.toml")).unwrap();
    let rules: Vec<(&str, &str, Condition, u64)> = c
        .alerting
        .rules
        .iter()
        .map(|r| {
            (
                r.name.as_str(),
                r.metric.name(),
                r.condition,
                r.for_.as_secs(),
            )
        })
        .collect();
    let above = |level, clear| Condition::Above { level, clear };
    assert_eq!(
        rules,
        [
            ("undervoltage", "undervoltage", Condition::Set, 0),
            ("throttled", "throttled", Condition::Set, 0),
            ("temperature", "temperature", above(80.0, 75.0), 60),
            ("root-disk", "disk", above(90.0, 85.0), 0),
            ("memory", "memory", above(95.0, 90.0), 300),
            ("unclean-restart", "unclean_restart", Condition::Set, 0),
        ]
    );
    assert!(c.alerting.notifiers.is_empty() && c.alerting.mqtt.is_none());
}

/// A syntax error on a line that holds a secret does not echo the line.
#[test]
fn syntax_errors_do_not_echo_secrets() {
    for text in [
        "[[notify]]\nkind = \"ntfy\"\nurl = \"http://x\"\ntoken = \"hunter\u{7}2\"",
        "token = \"hunter\u{7}2\"",
        "[mqtt]\nurl = \"mqtt://b\"\npassword = \"hunter\u{7}2",
    ] {
        let err = error(text);
        assert!(!err.contains("hunter"), "{err}");
        assert!(err.contains("not shown"), "{err}");
    }
}
