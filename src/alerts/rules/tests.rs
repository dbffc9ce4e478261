use std::time::{Duration, Instant};

use super::*;
use crate::events::Severity;

fn rule(condition: Condition, for_: u64, repeat: Option<u64>) -> Rule {
    Rule {
        name: "r".into(),
        metric: Metric::Temperature,
        condition,
        for_: Duration::from_secs(for_),
        repeat: repeat.map(Duration::from_secs),
        severity: Severity::Warning,
    }
}

/// Feeds one value per second and returns, per tick, the change (if any).
fn run(rule: Rule, values: &[Option<f64>]) -> Vec<Option<Change>> {
    let mut engine = Engine::new(vec![rule]);
    let t0 = Instant::now();
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let changes = engine.evaluate(t0 + Duration::from_secs(i as u64), &[*v]);
            assert!(changes.len() <= 1);
            changes.first().map(|c| c.change)
        })
        .collect()
}

fn some(values: &[f64]) -> Vec<Option<f64>> {
    values.iter().copied().map(Some).collect()
}

use Change::{Cleared, Firing, Reminder};

#[test]
fn fires_at_the_line_without_for() {
    let above = Condition::Above {
        level: 80.0,
        clear: 80.0,
    };
    let got = run(rule(above, 0, None), &some(&[79.9, 80.0, 81.0, 79.9, 79.0]));
    assert_eq!(got, [None, Some(Firing), None, Some(Cleared), None]);
}

#[test]
fn for_needs_the_condition_to_hold_throughout() {
    let above = Condition::Above {
        level: 80.0,
        clear: 80.0,
    };
    // Crosses at t=1, dips at t=3 (restart), holds from t=4: fires 3 s later at t=7.
    let values = some(&[70.0, 85.0, 85.0, 79.0, 85.0, 85.0, 85.0, 85.0, 85.0]);
    let got = run(rule(above, 3, None), &values);
    assert_eq!(
        got,
        [None, None, None, None, None, None, None, Some(Firing), None]
    );
}

#[test]
fn hysteresis_stops_a_hovering_value_from_flapping() {
    // Hovers around 80 between 79 and 81: with clear = 75 it fires once and stays firing.
    let hovering = some(&[79.0, 80.5, 79.5, 80.2, 79.0, 80.9, 76.0, 74.9, 80.0]);
    let with = run(
        rule(
            Condition::Above {
                level: 80.0,
                clear: 75.0,
            },
            0,
            None,
        ),
        &hovering,
    );
    assert_eq!(
        with,
        [
            None,
            Some(Firing),
            None,
            None,
            None,
            None,
            None,
            Some(Cleared),
            Some(Firing)
        ]
    );
    // Without hysteresis the same values flap on nearly every tick.
    let without = run(
        rule(
            Condition::Above {
                level: 80.0,
                clear: 80.0,
            },
            0,
            None,
        ),
        &hovering,
    );
    let flaps = without.iter().filter(|c| c.is_some()).count();
    assert_eq!(flaps, 7, "{without:?}");
}

#[test]
fn below_rules_mirror_above() {
    // Wi-Fi-like: fires at ≤ -80, clears above -70.
    let below = Condition::Below {
        level: -80.0,
        clear: -70.0,
    };
    let got = run(
        rule(below, 0, None),
        &some(&[-60.0, -80.0, -75.0, -71.0, -70.0, -69.0]),
    );
    assert_eq!(got, [None, Some(Firing), None, None, None, Some(Cleared)]);
}

#[test]
fn repeat_reminds_while_firing() {
    let mut r = rule(Condition::Set, 0, Some(60));
    r.metric = Metric::Undervoltage;
    let mut values = vec![Some(0.0), Some(1.0)];
    values.extend(std::iter::repeat_n(Some(1.0), 130));
    values.push(Some(0.0));
    let got = run(r, &values);
    let changes: Vec<(usize, Change)> = got
        .iter()
        .enumerate()
        .filter_map(|(t, c)| c.map(|c| (t, c)))
        .collect();
    // Fired at t=1, reminders at 61 and 121, cleared at 132.
    assert_eq!(
        changes,
        [(1, Firing), (61, Reminder), (121, Reminder), (132, Cleared)]
    );
}

#[test]
fn unknown_values_neither_fire_nor_clear() {
    let above = Condition::Above {
        level: 80.0,
        clear: 80.0,
    };
    // Pending at t=1 restarts after the gap; a firing alert stays firing through a gap.
    let values = [
        Some(90.0),
        Some(90.0),
        None,
        Some(90.0),
        Some(90.0),
        Some(90.0),
        None,
        None,
        Some(10.0),
    ];
    let got = run(rule(above, 2, None), &values);
    assert_eq!(
        got,
        [
            None,
            None,
            None,
            None,
            None,
            Some(Firing),
            None,
            None,
            Some(Cleared)
        ]
    );
    let nan = run(
        rule(above, 0, None),
        &[Some(f64::NAN), Some(90.0), Some(f64::NAN)],
    );
    assert_eq!(nan, [None, Some(Firing), None]);
}

#[test]
fn a_clock_that_does_not_advance_never_fires_a_for_rule_early() {
    let above = Condition::Above {
        level: 80.0,
        clear: 80.0,
    };
    let mut engine = Engine::new(vec![rule(above, 5, None)]);
    let t = Instant::now();
    for _ in 0..100 {
        assert!(engine.evaluate(t, &[Some(99.0)]).is_empty());
    }
    assert_eq!(engine.states()[0], State::Pending { since: t });
    let fired = engine.evaluate(t + Duration::from_secs(5), &[Some(99.0)]);
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].value, 99.0);
}

/// The Pi 4 fixture tree (tests/fixtures/pi4, a Pi 4's /sys and /proc layout) with its
/// firmware's `get_throttled` rewritten between ticks: the undervoltage rule fires on the
/// collector's real reading and clears when the firmware clears the bit.
#[test]
fn undervoltage_from_the_pi_fixture_tree_fires_and_clears() {
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pi4");
    let dir = tempfile::tempdir().unwrap();
    let copied = std::process::Command::new("cp")
        .args(["-r", &format!("{fixture}/proc"), &format!("{fixture}/sys")])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(copied.success());
    let firmware = dir.path().join("sys/devices/platform/soc/soc:firmware");
    let throttled = firmware.join("get_throttled");
    // The rpi_volt hwmon alarm reports the same condition; the kernel keeps the two in step.
    let alarm = firmware.join("raspberrypi-hwmon/hwmon/hwmon1/in0_lcrit_alarm");
    let config = crate::config::Config {
        proc_root: dir.path().join("proc"),
        sys_root: dir.path().join("sys"),
        vcgencmd: dir.path().join("no-vcgencmd"),
        ..Default::default()
    };
    let mut collector = crate::stats::Collector::new(&config);
    let mut r = rule(Condition::Set, 0, None);
    r.metric = Metric::Undervoltage;
    let mut engine = Engine::new(vec![r]);
    let t0 = Instant::now();
    let mut tick = |n: u64, bits: &str| {
        std::fs::write(&throttled, bits).unwrap();
        let low = u32::from_str_radix(bits.trim(), 16).unwrap() & 1;
        std::fs::write(&alarm, format!("{low}\n")).unwrap();
        let doc = collector.collect(crate::stats::Context {
            connected_clients: 0,
            connectivity: None,
            full: true,
        });
        let changes = engine.observe(t0 + Duration::from_secs(n), &doc, &Facts::default());
        changes.first().map(|c| c.change)
    };
    // 0x50000: under-voltage occurred earlier but is not present: nothing fires.
    assert_eq!(tick(0, "50000\n"), None);
    assert_eq!(tick(1, "50005\n"), Some(Firing));
    assert_eq!(tick(2, "50005\n"), None);
    assert_eq!(tick(3, "50000\n"), Some(Cleared));
}

/// Documents from the Pi 4 fixture tree with the watched interface as given.
struct Link {
    collector: crate::stats::Collector,
}

impl Link {
    fn new() -> Link {
        let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pi4");
        let config = crate::config::Config {
            proc_root: format!("{fixture}/proc").into(),
            sys_root: format!("{fixture}/sys").into(),
            vcgencmd: "/nonexistent/vcgencmd".into(),
            ..Default::default()
        };
        Link {
            collector: crate::stats::Collector::new(&config),
        }
    }

    /// A document whose watched interface is `connected` (or not) with this Wi-Fi detail
    /// (`None`: not wireless): signal and quality like the fixture's /proc/net/wireless has
    /// them for a strong (-40 dBm) and a weak (-78 dBm) link, or as NetworkManager reports them
    /// (a percentage and no dBm). The interface, `wlan9`, is one that file does not list, so
    /// the collector keeps the figures given here instead of reading the kernel's.
    fn doc(&mut self, connected: bool, wifi: Option<(Option<i32>, Option<u8>)>) -> StatsDocument {
        use crate::stats::model::{Connectivity, Wifi};
        let connectivity = Connectivity {
            source: "kernel",
            interface: "wlan9".into(),
            state: if connected { "up" } else { "down" }.into(),
            connected,
            wifi: wifi.map(|(signal_dbm, quality_percent)| Wifi {
                signal_dbm,
                quality_percent,
                ..Default::default()
            }),
            ..Default::default()
        };
        self.collector.collect(crate::stats::Context {
            connected_clients: 0,
            connectivity: Some(std::sync::Arc::new(connectivity)),
            full: false,
        })
    }
}

/// `wifi_signal`: fires on a weak link, clears past `clear`; while the interface is down or
/// not wireless the value is unknown, so a dropped link neither fires it nor clears it, and
/// reconnecting to a weak link does not fire it a second time.
#[test]
fn wifi_signal_fires_on_a_weak_connected_link_only() {
    let mut link = Link::new();
    let mut r = rule(
        Condition::Below {
            level: -75.0,
            clear: -70.0,
        },
        0,
        None,
    );
    r.metric = Metric::WifiSignal;
    let mut engine = Engine::new(vec![r]);
    let t0 = Instant::now();
    let mut n = 0;
    let mut tick = |doc: StatsDocument| {
        n += 1;
        let changes = engine.observe(t0 + Duration::from_secs(n), &doc, &Facts::default());
        (changes.first().map(|c| c.change), engine.values()[0])
    };
    let strong = Some((Some(-40), Some(70)));
    let weak = Some((Some(-78), Some(32)));
    assert_eq!(tick(link.doc(true, strong)), (None, Some(-40.0)));
    assert_eq!(tick(link.doc(true, weak)), (Some(Firing), Some(-78.0)));
    // Down (the kernel may still list a level), then up without Wi-Fi: unknown, still firing.
    assert_eq!(
        tick(link.doc(false, Some((Some(-95), Some(0))))),
        (None, None)
    );
    assert_eq!(tick(link.doc(true, None)), (None, None));
    assert_eq!(tick(link.doc(true, weak)), (None, Some(-78.0)));
    // Hysteresis: -72 is above the line but not past `clear`.
    assert_eq!(tick(link.doc(true, Some((Some(-72), Some(50))))).0, None);
    assert_eq!(tick(link.doc(true, strong)).0, Some(Cleared));
    // A disconnected interface with a terrible last reading never fires.
    for _ in 0..3 {
        assert_eq!(
            tick(link.doc(false, Some((Some(-99), Some(0))))),
            (None, None)
        );
    }
    assert_eq!(engine.states()[0], State::Ok);
}

/// Where only NetworkManager's percentage is known (the kernel lists no level for the
/// interface): `wifi_quality` fires on it, and `wifi_signal` (dBm) stays unknown instead of
/// reading a missing level as 0 dBm.
#[test]
fn wifi_quality_works_where_only_the_percentage_is_known() {
    let mut link = Link::new();
    let mut quality = rule(
        Condition::Below {
            level: 30.0,
            clear: 40.0,
        },
        0,
        None,
    );
    quality.metric = Metric::WifiQuality;
    let mut signal = rule(
        Condition::Below {
            level: -75.0,
            clear: -75.0,
        },
        0,
        None,
    );
    signal.metric = Metric::WifiSignal;
    let mut engine = Engine::new(vec![quality, signal]);
    let t0 = Instant::now();
    let doc = link.doc(true, Some((None, Some(20))));
    let changes = engine.observe(t0, &doc, &Facts::default());
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!((changes[0].rule, changes[0].change), (0, Firing));
    assert_eq!(engine.values(), [Some(20.0), None]);
    let doc = link.doc(true, Some((None, Some(45))));
    let changes = engine.observe(t0 + Duration::from_secs(1), &doc, &Facts::default());
    assert_eq!(changes.first().map(|c| c.change), Some(Cleared));
}
