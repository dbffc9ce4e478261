use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::history::{LinkState, MountFill, Sample};

const T0: u64 = 1_700_000_040;

fn at(i: u64) -> Sample {
    Sample::new(
        Duration::from_secs(i),
        UNIX_EPOCH + Duration::from_secs(T0 + i),
    )
}

fn kinds(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

/// Feeds samples made by `f` (tick → sample) and returns every event, in order.
fn run(detector: &mut Detector, samples: impl IntoIterator<Item = Sample>) -> Vec<Event> {
    samples
        .into_iter()
        .flat_map(|s| detector.observe(&s))
        .collect()
}

/// `get_throttled` as the Pi 4 fixture tree has it (`sys/devices/platform/soc/soc:firmware/`,
/// copied from a Pi 4 on a weak supply): under-voltage and throttling, now and since boot.
fn fixture_throttled() -> u32 {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/pi4/sys/devices/platform/soc/soc:firmware/get_throttled"
    );
    u32::from_str_radix(std::fs::read_to_string(path).unwrap().trim(), 16).unwrap()
}

#[test]
fn throttle_flags_flipping_give_events_in_order() {
    let live = fixture_throttled();
    assert_eq!(live, 0x50005);
    let mut d = Detector::new(DetectorConfig::default());
    let values = [
        0,
        live,
        live,
        0x50004,
        0x50000,
        0x50000 | 0x8,
        0x50000,
        0x70000,
    ];
    let events = run(
        &mut d,
        values.iter().enumerate().map(|(i, v)| {
            let mut s = at(i as u64);
            s.throttled = Some(*v);
            s
        }),
    );
    assert_eq!(
        kinds(&events),
        [
            "undervoltage_detected",
            "throttled_set",
            "undervoltage_cleared",
            "throttled_cleared",
            "soft_temperature_limit_set",
            "soft_temperature_limit_cleared",
            // Bit 17 appeared with bit 1 clear: capped and released between two readings.
            "frequency_capped_set",
            "frequency_capped_cleared",
        ]
    );
    assert_eq!(events[0].severity, Severity::Critical);
    assert_eq!(events[0].t, UNIX_EPOCH + Duration::from_secs(T0 + 1));
    assert_eq!(
        events[0].values["throttled"],
        EventValue::Text("0x50005".into())
    );
    assert!(events[6].message.contains("between two readings"));
    assert_eq!(events[2].severity, Severity::Info);
}

#[test]
fn a_condition_present_at_start_is_reported_and_a_failed_reading_clears_nothing() {
    let mut d = Detector::new(DetectorConfig::default());
    let mut s = at(0);
    s.throttled = Some(0x50005);
    assert_eq!(
        kinds(&d.observe(&s)),
        ["undervoltage_detected", "throttled_set"]
    );
    // Not readable this tick: no "cleared".
    assert!(d.observe(&at(1)).is_empty());
    let mut s = at(2);
    s.throttled = Some(0x50005);
    assert!(d.observe(&s).is_empty());
}

#[test]
fn temperature_uses_hysteresis() {
    let mut d = Detector::new(DetectorConfig::default());
    let temps = [79.0, 80.0, 81.0, 78.0, 79.9, 76.0, 75.0, 74.0, 80.5];
    let events = run(
        &mut d,
        temps.iter().enumerate().map(|(i, t)| {
            let mut s = at(i as u64);
            s.temperature = Some(*t);
            s
        }),
    );
    assert_eq!(
        kinds(&events),
        ["temperature_high", "temperature_normal", "temperature_high"]
    );
    assert_eq!(events[0].values["temperature"], EventValue::Number(80.0));
    assert_eq!(events[1].values["temperature"], EventValue::Number(75.0));
    assert_eq!(events[1].t, UNIX_EPOCH + Duration::from_secs(T0 + 6));
}

#[test]
fn mounts_above_the_fill_level_and_back() {
    let mut d = Detector::new(DetectorConfig::default());
    let mount = |m: &str, p: f64| MountFill {
        mountpoint: m.into(),
        used_percent: p,
    };
    let steps = [
        vec![mount("/", 89.0), mount("/boot", 95.0)],
        vec![mount("/", 91.0), mount("/boot", 95.0)],
        vec![mount("/", 86.0)],
        vec![mount("/", 85.0)],
        vec![],
        vec![mount("/", 90.0), mount("/boot", 95.0)],
    ];
    let events = run(
        &mut d,
        steps.into_iter().enumerate().map(|(i, m)| {
            let mut s = at(i as u64);
            s.mounts = m;
            s
        }),
    );
    let described: Vec<(&str, &EventValue)> = events
        .iter()
        .map(|e| (e.kind.as_str(), &e.values["mountpoint"]))
        .collect();
    let text = |s: &str| EventValue::Text(s.into());
    assert_eq!(
        described,
        [
            ("mount_full", &text("/boot")),
            ("mount_full", &text("/")),
            ("mount_ok", &text("/")),
            // /boot went away (unmounted) and came back still full: reported again.
            ("mount_full", &text("/")),
            ("mount_full", &text("/boot")),
        ]
    );
}

#[test]
fn interface_changes_carry_the_reason() {
    let mut d = Detector::new(DetectorConfig::default());
    let link = |connected: bool, reason: Option<&str>| LinkState {
        interface: "wlan0".into(),
        connected,
        reason: reason.map(Into::into),
    };
    let steps = [
        link(true, None),
        link(true, None),
        link(false, Some("supplicant-timeout")),
        link(false, None),
        link(true, None),
    ];
    let events = run(
        &mut d,
        steps.into_iter().enumerate().map(|(i, l)| {
            let mut s = at(i as u64);
            s.link = Some(l);
            s
        }),
    );
    assert_eq!(
        kinds(&events),
        ["interface_disconnected", "interface_connected"]
    );
    assert_eq!(events[0].message, "wlan0 disconnected (supplicant-timeout)");
    assert_eq!(
        events[0].values["reason"],
        EventValue::Text("supplicant-timeout".into())
    );
    assert_eq!(events[0].severity, Severity::Warning);

    // Started while down: that is news.
    let mut d = Detector::new(DetectorConfig::default());
    let mut s = at(0);
    s.link = Some(link(false, None));
    assert_eq!(kinds(&d.observe(&s)), ["interface_disconnected"]);
}

#[test]
fn wall_clock_steps_against_the_monotonic_clock() {
    let mut d = Detector::new(DetectorConfig::default());
    let wall = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
    let samples = [
        Sample::new(Duration::from_secs(100), wall(T0)),
        Sample::new(Duration::from_secs(101), wall(T0 + 1)),
        // NTP after fake-hwclock: an hour forward.
        Sample::new(Duration::from_secs(102), wall(T0 + 3602)),
        // A tick that took 1.5 s longer than planned is not a step: both clocks saw it.
        Sample::new(
            Duration::from_millis(104_500),
            wall(T0 + 3602) + Duration::from_millis(2500),
        ),
        // And back an hour.
        Sample::new(
            Duration::from_millis(105_500),
            wall(T0 + 5) + Duration::from_millis(500),
        ),
        // Within the tolerance: slewing, not a step.
        Sample::new(
            Duration::from_millis(106_500),
            wall(T0 + 7) + Duration::from_millis(500),
        ),
    ];
    let events = run(&mut d, samples);
    assert_eq!(kinds(&events), ["clock_stepped", "clock_stepped"]);
    assert_eq!(events[0].values["step_seconds"], EventValue::Number(3600.0));
    assert_eq!(events[0].message, "Wall clock stepped forward by 3600.0 s");
    assert_eq!(
        events[1].values["step_seconds"],
        EventValue::Number(-3600.0)
    );
    assert_eq!(events[1].message, "Wall clock stepped backward by 3600.0 s");
}

#[test]
fn start_up_events_from_what_the_store_found() {
    let d = Detector::new(DetectorConfig::default());
    let now = UNIX_EPOCH + Duration::from_secs(T0);
    let facts = |previous| StartupFacts {
        wall: now,
        version: "1.2.3".into(),
        boot_id: Some("boot-2".into()),
        previous,
    };
    let first = d.startup(&facts(None));
    assert_eq!(kinds(&first), ["started"]);
    assert_eq!(first[0].message, "pistats 1.2.3 started");

    let clean_same_boot = PreviousRun {
        clean: true,
        boot_id: Some("boot-2".into()),
        last_saved: Some(now),
    };
    assert_eq!(
        kinds(&d.startup(&facts(Some(clean_same_boot)))),
        ["started"]
    );

    let killed_by_power_loss = PreviousRun {
        clean: false,
        boot_id: Some("boot-1".into()),
        last_saved: Some(now - Duration::from_secs(600)),
    };
    let events = d.startup(&facts(Some(killed_by_power_loss)));
    assert_eq!(kinds(&events), ["rebooted", "unclean_stop", "started"]);
    assert_eq!(
        events[0].values["previous_boot_id"],
        EventValue::Text("boot-1".into())
    );
    assert_eq!(events[1].severity, Severity::Warning);
    assert!(
        events[1].message.contains("unclean stop"),
        "{}",
        events[1].message
    );

    let stop = d.stopping(now);
    assert_eq!(stop.kind, EventKind::StoppedCleanly);
}

#[test]
fn the_log_keeps_the_newest_and_numbers_them() {
    let mut log = EventLog::new(EVENT_CAPACITY);
    let d = Detector::new(DetectorConfig::default());
    for i in 0..EVENT_CAPACITY as u64 + 5 {
        log.push(d.stopping(UNIX_EPOCH + Duration::from_secs(T0 + i)));
    }
    assert_eq!(log.len(), EVENT_CAPACITY);
    assert_eq!(log.iter().next().unwrap().seq, 6);
    assert_eq!(log.iter().last().unwrap().seq, EVENT_CAPACITY as u64 + 5);
    let after: Vec<u64> = log.after(2001).map(|e| e.seq).collect();
    assert_eq!(after, [2002, 2003, 2004, 2005]);
    assert_eq!(log.after(0).count(), EVENT_CAPACITY);
}

#[test]
fn queries_filter_by_time_and_return_the_newest_last() {
    let mut log = EventLog::new(100);
    let d = Detector::new(DetectorConfig::default());
    for i in 0..10 {
        log.push(d.stopping(UNIX_EPOCH + Duration::from_secs(T0 + i * 60)));
    }
    let since = UNIX_EPOCH + Duration::from_secs(T0 + 5 * 60);
    let view = log.query(Some(since), 3);
    let seqs: Vec<u64> = view.events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [8, 9, 10]);
    let view = log.query(Some(since), 100);
    assert_eq!(view.events.len(), 5);
    assert_eq!(log.query(None, 0).events.len(), 0);

    let json = serde_json::to_value(log.query(None, 1)).unwrap();
    let e = &json["events"][0];
    assert_eq!(e["t"], "2023-11-14T22:23:00.000000+00:00");
    assert_eq!(e["t_ms"], (T0 + 540) * 1000);
    assert_eq!(e["kind"], "stopped");
    assert_eq!(e["severity"], "info");
    assert_eq!(e["seq"], 10);
    assert_eq!(e["message"], "pistats stopped");
    assert_eq!(e["values"], serde_json::json!({}));
}

#[test]
fn rfc3339_parses_what_clients_send() {
    let t = |s| parse_rfc3339(s).map(|t| t.duration_since(UNIX_EPOCH).unwrap());
    assert_eq!(t("1970-01-01T00:00:00Z"), Ok(Duration::ZERO));
    assert_eq!(t("2023-11-14T22:14:00Z"), Ok(Duration::from_secs(T0)));
    assert_eq!(t("2023-11-14T23:14:00+01:00"), Ok(Duration::from_secs(T0)));
    assert_eq!(
        t("2023-11-14t21:44:00.25-00:30"),
        Ok(Duration::from_millis(T0 * 1000 + 250))
    );
    assert_eq!(
        t("2024-02-29T00:00:00Z"),
        Ok(Duration::from_secs(1_709_164_800))
    );
    // What pistats itself writes reads back.
    let now = UNIX_EPOCH + Duration::from_micros(1_764_124_270_123_456);
    assert_eq!(parse_rfc3339(&crate::stats::wire::iso8601(now)), Ok(now));
    for bad in [
        "",
        "yesterday",
        "2023-11-14",
        "2023-11-14T22:14:00",
        "2023-13-14T22:14:00Z",
        "2023-11-14T24:00:00Z",
        "2023-11-14T22:14:00.Z",
        "2023-11-14T22:14:00+1:00",
        "1969-12-31T23:59:59Z",
        "2023-11-14T22:14:00Zjunk",
        "２023-11-14T22:14:00Z",
    ] {
        assert!(parse_rfc3339(bad).is_err(), "{bad:?}");
    }
    let _ = SystemTime::now();
}

#[test]
fn kind_names_are_unique_and_round_trip() {
    let mut names: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
    for k in EventKind::ALL {
        assert_eq!(EventKind::from_name(k.as_str()), Some(*k));
    }
    names.sort();
    names.dedup();
    assert_eq!(names.len(), EventKind::ALL.len());
}

/// The compact values serialize exactly as the map they replace did: one JSON object, keys in
/// order, a key set twice keeping its last value.
#[test]
fn event_values_serialize_like_a_sorted_map() {
    let mut values = EventValues::new();
    let mut map = std::collections::BTreeMap::new();
    for (key, value) in [
        ("threshold", EventValue::Number(80.0)),
        ("alert", EventValue::Text("hot".into())),
        ("value", EventValue::Number(81.5)),
        ("metric", EventValue::Text("temperature".into())),
        ("value", EventValue::Number(82.0)),
    ] {
        values.insert(key.to_owned(), value.clone());
        map.insert(key.to_owned(), value);
    }
    assert_eq!(
        serde_json::to_string(&values).unwrap(),
        serde_json::to_string(&map).unwrap()
    );
    assert_eq!(values.len(), 4);
    assert_eq!(values["value"], EventValue::Number(82.0));
    assert_eq!(values.get("missing"), None);
    let keys: Vec<&str> = values.iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ["alert", "metric", "threshold", "value"]);
}

#[test]
fn known_value_names_are_not_allocated_and_an_entry_stays_small() {
    let mut values = EventValues::new();
    values.insert("throttled".into(), "0x50005".into());
    values.insert("a_name_of_its_own".into(), EventValue::Number(1.0));
    assert!(matches!(values.0[1].0, Key::Known(_)), "{values:?}");
    assert_eq!(values.0[0].0, Key::Other("a_name_of_its_own".into()));
    assert_eq!(
        values.iter().map(|(k, _)| k).collect::<Vec<_>>(),
        ["a_name_of_its_own", "throttled"]
    );
    // A known name costs no more than the boxed name it replaces.
    assert_eq!(std::mem::size_of::<Key>(), std::mem::size_of::<Box<str>>());
}
