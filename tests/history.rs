//! Long-term history and events through the real daemon: restarts (clean and killed), a
//! corrupt state file, an unusable state directory, and Pi firmware flags that change between
//! ticks.
//!
//! The daemon reads a copy of the Pi 4 fixture tree (`tests/fixtures/pi4`, recorded from a
//! Raspberry Pi 4 Model B), so a test can rewrite the firmware's `get_throttled` node, the
//! thermal zone and the boot id between ticks, as the kernel would.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::{fixtures, Daemon, WAIT};
use serde_json::Value;

/// A private copy of the Pi 4 tree and a state directory.
struct Pi {
    _dir: tempfile::TempDir,
    root: PathBuf,
    state: PathBuf,
}

impl Pi {
    fn new() -> Pi {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("pi4");
        let ok = Command::new("cp")
            .arg("-a")
            .arg(fixtures().join("pi4"))
            .arg(&root)
            .status()
            .unwrap()
            .success();
        assert!(ok, "copying the fixture tree");
        let state = dir.path().join("state");
        let pi = Pi {
            _dir: dir,
            root,
            state,
        };
        pi.set_boot_id("8d2e0a4c-1111-4c3e-9a3b-2f0d7c1e5a01");
        pi.set_throttled(0);
        pi
    }

    fn set_throttled(&self, bits: u32) {
        write(
            &self
                .root
                .join("sys/devices/platform/soc/soc:firmware/get_throttled"),
            &format!("{bits:x}\n"),
        );
    }

    fn set_temperature(&self, celsius: u32) {
        write(
            &self
                .root
                .join("sys/devices/virtual/thermal/thermal_zone0/temp"),
            &format!("{}\n", celsius * 1000),
        );
    }

    fn set_boot_id(&self, id: &str) {
        let dir = self.root.join("proc/sys/kernel/random");
        std::fs::create_dir_all(&dir).unwrap();
        write(&dir.join("boot_id"), &format!("{id}\n"));
    }

    /// The daemon on this tree, collecting every 250 ms, with `state_dir` at `state`.
    fn start_with_state(&self, state: &Path, args: &[&str]) -> Daemon {
        self.start_with_config(state, "", args)
    }

    fn start_with_config(&self, state: &Path, config: &str, args: &[&str]) -> Daemon {
        let vcgencmd = fixtures().join("bin/vcgencmd");
        let mut all = vec![
            "--interval",
            "250ms",
            "--state-dir",
            state.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        Daemon::start_on_tree(&self.root, &vcgencmd, config, &all)
    }

    fn start(&self, args: &[&str]) -> Daemon {
        self.start_with_state(&self.state, args)
    }
}

/// Rewrites a file the way the kernel's attributes change: in place.
fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn get_json(daemon: &Daemon, path: &str) -> (u16, Value) {
    let response = daemon.get(path);
    let json = serde_json::from_str(&response.body).unwrap_or(Value::Null);
    (response.status, json)
}

/// Polls `path` until `check` accepts the JSON, at most [`WAIT`].
fn wait_json<T>(daemon: &Daemon, path: &str, mut check: impl FnMut(&Value) -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, json) = get_json(daemon, path);
        if status == 200 {
            if let Some(found) = check(&json) {
                return found;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{path} never became what the test waits for; last answer {status}: {json}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Event kinds in the order the daemon recorded them (`seq`), leaving out those about this
/// machine's network interfaces and mounts (the fixture tree does not replace them).
fn kinds(events: &Value) -> Vec<String> {
    let list = events["events"].as_array().expect("an events list");
    let seqs: Vec<u64> = list.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "newest last: {seqs:?}"
    );
    list.iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .filter(|k| !k.starts_with("interface_") && !k.starts_with("mount_"))
        .collect()
}

fn events_of(daemon: &Daemon) -> Vec<String> {
    kinds(&get_json(daemon, "/api/v1/events?limit=2000").1)
}

/// The highest temperature any point of `range` saw (its bucket maximum).
fn max_temperature(history: &Value) -> Option<f64> {
    history["points"]
        .as_array()?
        .iter()
        .filter_map(|p| p["temp"][2].as_f64())
        .reduce(f64::max)
}

/// Waits for the history to hold a tick at `celsius` in the 1-minute tier (`range=7d`).
fn wait_for_temperature(daemon: &Daemon, celsius: f64) {
    wait_json(daemon, "/api/v1/history?range=7d", |h| {
        (max_temperature(h) == Some(celsius)).then_some(())
    });
}

fn stop(daemon: &mut Daemon) {
    daemon.signal("TERM");
    let status = daemon.wait_exit(WAIT).expect("exits after SIGTERM");
    assert!(status.success(), "{status:?}");
}

#[test]
fn history_and_events_survive_a_clean_restart() {
    let pi = Pi::new();
    pi.set_temperature(71);
    let mut first = pi.start(&[]);
    wait_for_temperature(&first, 71.0);
    stop(&mut first);
    assert!(first.log().iter().any(|l| l.contains("event stopped")));
    assert!(pi.state.join("history.bin").is_file());
    drop(first);

    // A cooler Pi after a reboot: a 71 °C maximum can only come from the restored state.
    pi.set_temperature(40);
    pi.set_boot_id("3f1b9c77-2222-4d0e-8c1a-6b5e4d3c2b10");
    let second = pi.start(&[]);
    second.wait_for_log("history: restored");
    let history = wait_json(&second, "/api/v1/history?range=7d", |h| {
        h["points"].as_array().filter(|p| !p.is_empty()).cloned()
    });
    assert!(
        history.iter().any(|p| p["temp"][2].as_f64() == Some(71.0)),
        "points from before the restart are gone: {history:?}"
    );
    // The short ranges are answered too, with the raw points of this run.
    let (status, hour) = get_json(&second, "/api/v1/history?range=1h");
    assert_eq!(status, 200, "{hour}");
    assert_eq!(hour["range"], "1h");
    assert_eq!(hour["resolution_ms"], 250);

    let events = events_of(&second);
    assert_eq!(
        events,
        ["started", "stopped", "rebooted", "started"],
        "a clean stop, a new boot id, no unclean stop"
    );
}

#[test]
fn a_killed_daemon_is_reported_as_an_unclean_stop_and_keeps_its_last_save() {
    let pi = Pi::new();
    pi.set_temperature(66);
    let mut first = pi.start(&["--persist-interval", "1s"]);
    wait_for_temperature(&first, 66.0);
    // At least one save after the 66 °C ticks: one persist interval and a tick of slack.
    thread::sleep(Duration::from_millis(1500));
    first.signal("KILL");
    first.wait_exit(WAIT).expect("killed");
    drop(first);

    pi.set_temperature(45);
    let second = pi.start(&[]);
    let events = wait_json(&second, "/api/v1/events", |e| {
        let kinds = kinds(e);
        kinds
            .contains(&"unclean_stop".to_owned())
            .then_some(e.clone())
    });
    let kinds = kinds(&events);
    assert_eq!(
        kinds[kinds.len() - 2..],
        ["unclean_stop", "started"],
        "{kinds:?}"
    );
    let unclean = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "unclean_stop")
        .unwrap();
    assert_eq!(unclean["severity"], "warning");
    assert!(unclean["values"]["last_saved"].is_string(), "{unclean}");
    // What the periodic save had written survived the kill.
    let (_, history) = get_json(&second, "/api/v1/history?range=7d");
    assert_eq!(max_temperature(&history), Some(66.0), "{history}");
}

/// The packaged rule for a restart after an unclean stop fires from the event the history
/// subsystem records when it restores a killed run's state, and not on a first start.
#[test]
fn an_unclean_stop_fires_the_unclean_restart_alert() {
    const RULE: &str = "[[alert]]\nname = \"unclean-restart\"\nmetric = \"unclean_restart\"\n";
    let alert_events = |events: &Value| -> Vec<Value> {
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "alert_firing" && e["values"]["alert"] == "unclean-restart")
            .cloned()
            .collect()
    };
    let pi = Pi::new();
    let mut first = pi.start_with_config(&pi.state, RULE, &["--persist-interval", "1s"]);
    let started = wait_json(&first, "/api/v1/events", |e| {
        kinds(e)
            .contains(&"started".to_owned())
            .then_some(e.clone())
    });
    // A few ticks after the start: the rule had its chance to misfire.
    thread::sleep(Duration::from_millis(1500));
    let (_, events) = get_json(&first, "/api/v1/events");
    assert!(alert_events(&events).is_empty(), "{started}\n{events}");
    first.signal("KILL");
    first.wait_exit(WAIT).expect("killed");
    drop(first);

    let second = pi.start_with_config(&pi.state, RULE, &[]);
    let fired = wait_json(&second, "/api/v1/events", |e| {
        let fired = alert_events(e);
        (!fired.is_empty()).then_some(fired)
    });
    assert_eq!(fired.len(), 1, "{fired:?}");
    let (status, alerts) = get_json(&second, "/api/v1/alerts");
    assert_eq!(status, 200);
    assert!(alerts.to_string().contains("unclean-restart"), "{alerts}");
}

#[test]
fn a_corrupt_state_file_is_moved_aside_and_the_daemon_serves() {
    let pi = Pi::new();
    std::fs::create_dir_all(&pi.state).unwrap();
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(pi.state.join("history.bin"), &garbage).unwrap();

    let mut daemon = pi.start(&[]);
    daemon.wait_for_log("moved to");
    let aside: Vec<PathBuf> = std::fs::read_dir(&pi.state)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains("history.bin.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(std::fs::read(&aside[0]).unwrap(), garbage, "kept as it was");
    assert_eq!(daemon.get("/api/v1/stats").status, 200);
    wait_json(&daemon, "/api/v1/history?range=1h", |h| {
        h["points"].as_array().filter(|p| !p.is_empty()).map(|_| ())
    });
    assert_eq!(events_of(&daemon), ["started"]);

    // The next clean stop writes a good file in its place.
    stop(&mut daemon);
    drop(daemon);
    let again = pi.start(&[]);
    again.wait_for_log("history: restored");
}

#[test]
fn an_unusable_state_dir_means_ram_only_and_the_daemon_serves() {
    let pi = Pi::new();
    // A file where the directory should be: nothing can be created under it.
    std::fs::write(&pi.state, "not a directory").unwrap();
    let mut daemon = pi.start(&[]);
    daemon.wait_for_log("keeping history in RAM only");
    assert_eq!(daemon.get("/api/v1/stats").status, 200);
    wait_json(&daemon, "/api/v1/history?range=10m", |h| {
        (h["points"].as_array()?.len() >= 2).then_some(())
    });
    assert_eq!(events_of(&daemon), ["started"]);
    stop(&mut daemon);
    assert_eq!(
        std::fs::read_to_string(&pi.state).unwrap(),
        "not a directory"
    );
}

#[test]
#[ignore = "needs root: mounts a read-only file system in a private mount namespace"]
fn a_read_only_state_dir_means_ram_only_and_the_daemon_serves() {
    common::need_root("mount a read-only tmpfs");
    let pi = Pi::new();
    std::fs::create_dir_all(&pi.state).unwrap();
    // The daemon's own mount namespace, with a read-only tmpfs on the state directory.
    let script = format!(
        "mount -t tmpfs -o ro tmpfs '{}' && exec \"$@\"",
        pi.state.display()
    );
    let tree = common::daemon::tree_args(&pi.root, None);
    let mut args = vec![
        "--port",
        "0",
        "--interval",
        "250ms",
        "--state-dir",
        pi.state.to_str().unwrap(),
    ];
    args.extend(tree.iter().map(String::as_str));
    let mut served = common::Served::start(
        &["unshare", "-m", "sh", "-c", &script, "sh"],
        "unix:path=/nonexistent",
        &args,
    );
    served.wait_for_log("keeping history in RAM only");
    let addr: std::net::SocketAddr = served.wait_for_events(1, 0).parse().unwrap();
    assert_eq!(common::http_get(addr, "/api/v1/stats", &[]).status, 200);
    served.signal("TERM");
    served.wait_exit(WAIT).expect("exits after SIGTERM");
}

#[test]
fn throttle_flags_flipping_between_ticks_become_events_in_order() {
    let pi = Pi::new();
    let daemon = pi.start(&[]);
    let wait_for = |kind: &str| {
        wait_json(&daemon, "/api/v1/events?limit=2000", |e| {
            kinds(e).iter().any(|k| k == kind).then_some(())
        })
    };
    wait_for("started");
    // Under-voltage now (bit 0) and since boot (bit 16), as `vcgencmd get_throttled` says 0x10001.
    pi.set_throttled(0x10001);
    wait_for("undervoltage_detected");
    // Throttled and capped while the supply recovers; the sticky bits stay set.
    pi.set_throttled(0x50006);
    wait_for("throttled_set");
    pi.set_throttled(0x50000);
    wait_for("throttled_cleared");

    let throttle: Vec<String> = events_of(&daemon)
        .into_iter()
        .filter(|k| {
            ["undervoltage", "throttled", "frequency_capped"]
                .iter()
                .any(|p| k.starts_with(p))
        })
        .collect();
    assert_eq!(
        throttle,
        [
            "undervoltage_detected",
            "undervoltage_cleared",
            "frequency_capped_set",
            "throttled_set",
            "frequency_capped_cleared",
            "throttled_cleared",
        ]
    );
    // The 1-minute tier remembers that each flag was set in the bucket.
    let (_, history) = get_json(&daemon, "/api/v1/history?range=7d");
    let flags = history["points"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["throttled"].as_u64())
        .fold(0, |a, b| a | b);
    assert_eq!(flags & 0b111, 0b111, "{history}");
}

/// `[min, mean, max]` of every point of `series`, and the points' times.
fn triples(history: &Value, series: &str) -> Vec<(u64, [f64; 3])> {
    history["points"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| {
            let v = p[series].as_array()?;
            let v: Vec<f64> = v.iter().map(|x| x.as_f64().unwrap()).collect();
            Some((p["t"].as_u64().unwrap(), [v[0], v[1], v[2]]))
        })
        .collect()
}

#[test]
fn points_asks_for_fewer_merged_points_keeping_the_extremes() {
    let pi = Pi::new();
    pi.set_temperature(40);
    let daemon = pi.start(&[]);
    // A spike of a second and under-voltage in its middle, between calm ticks.
    wait_json(&daemon, "/api/v1/history?range=10m", |h| {
        (h["points"].as_array()?.len() >= 8).then_some(())
    });
    pi.set_temperature(85);
    thread::sleep(Duration::from_millis(500));
    pi.set_throttled(0x1);
    thread::sleep(Duration::from_millis(300));
    pi.set_throttled(0);
    thread::sleep(Duration::from_millis(500));
    pi.set_temperature(40);
    let full = wait_json(&daemon, "/api/v1/history?range=10m", |h| {
        let t = triples(h, "temp");
        (t.len() >= 30 && t.last()?.1[2] == 40.0).then(|| h.clone())
    });
    let merged = get_json(&daemon, "/api/v1/history?range=10m&points=5").1;
    let (full_t, merged_t) = (triples(&full, "temp"), triples(&merged, "temp"));
    assert!(
        (2..=5).contains(&merged_t.len()),
        "at most 5 points: {merged}"
    );
    let step = full["resolution_ms"].as_u64().unwrap();
    let merged_step = merged["resolution_ms"].as_u64().unwrap();
    assert_eq!(step, 250, "raw points at the interval");
    assert!(
        merged_step > step && merged_step % step == 0,
        "{merged_step}"
    );
    // The merged answer came later: it holds every tick the full one has (10 minutes have not
    // passed), so its extremes are exactly the full one's.
    let extremes = |t: &[(u64, [f64; 3])]| {
        t.iter().fold((f64::MAX, f64::MIN), |(lo, hi), (_, v)| {
            (lo.min(v[0]), hi.max(v[2]))
        })
    };
    assert_eq!(extremes(&merged_t), (40.0, 85.0), "{merged}");
    assert_eq!(extremes(&full_t), (40.0, 85.0), "{full}");
    for (_, [lo, mean, hi]) in &merged_t {
        assert!(lo <= mean && mean <= hi, "{merged}");
    }
    // The spike's point says so, and its throttle bits hold the under-voltage.
    let any_flags = |h: &Value| {
        h["points"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["throttled"].as_u64())
            .fold(0, |a, b| a | b)
    };
    assert_eq!(any_flags(&merged) & 1, 1, "{merged}");
    assert_eq!(any_flags(&full) & 1, 1, "{full}");
    assert!(merged_t.iter().any(|(_, v)| v[1] > 40.0 && v[1] < 85.0));
    // Newest last, as without points=; the same keys in every point.
    assert!(merged_t.windows(2).all(|w| w[0].0 < w[1].0));
    let keys = |h: &Value| {
        let mut k: Vec<String> = h["points"][0]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        k.sort();
        k
    };
    assert_eq!(keys(&merged), keys(&full));
    assert_eq!(merged["range"], "10m");
}

#[test]
fn bad_history_and_events_queries_are_refused() {
    let pi = Pi::new();
    let daemon = pi.start(&["--token", "s3cret"]);
    for path in [
        "/api/v1/history?range=2h&token=s3cret",
        "/api/v1/history?range=1h&seconds=60&token=s3cret",
        "/api/v1/history?range=1h&points=0&token=s3cret",
        "/api/v1/history?range=1h&points=1501&token=s3cret",
        "/api/v1/history?range=1h&points=many&token=s3cret",
        "/api/v1/history?range=1h&points=-5&token=s3cret",
        "/api/v1/history?seconds=60&points=10&token=s3cret",
        "/api/v1/events?since=yesterday&token=s3cret",
        "/api/v1/events?limit=0&token=s3cret",
        "/api/v1/events?limit=2001&token=s3cret",
        "/api/v1/events?limit=-1&token=s3cret",
    ] {
        let (status, json) = get_json(&daemon, path);
        assert_eq!(status, 400, "{path}: {json}");
        assert!(json["error"].is_string(), "{path}: {json}");
    }
    for path in ["/api/v1/events", "/api/v1/history?range=1h"] {
        assert_eq!(daemon.get(path).status, 401, "{path}");
    }
    // `since` keeps the events at or after it; a future one keeps none.
    let all = wait_json(&daemon, "/api/v1/events?token=s3cret", |e| {
        (!kinds(e).is_empty()).then(|| e.clone())
    });
    let first = all["events"][0]["t"].as_str().unwrap().to_owned();
    let (status, since) = get_json(
        &daemon,
        &format!(
            "/api/v1/events?token=s3cret&since={}",
            first.replace('+', "%2B")
        ),
    );
    assert_eq!(status, 200);
    assert!(!kinds(&since).is_empty(), "{since}");
    let (_, future) = get_json(
        &daemon,
        "/api/v1/events?token=s3cret&since=2999-01-01T00:00:00Z",
    );
    assert!(kinds(&future).is_empty(), "{future}");
    // The old `seconds=` form answers as before.
    let (status, old) = get_json(&daemon, "/api/v1/history?seconds=60&token=s3cret");
    assert_eq!(status, 200);
    assert_eq!(old["interval_ms"], 250);
}

/// `proc/diskstats` with one whole disk, `mmcblk0`, that has written `sectors` 512-byte
/// sectors since boot (the line's shape is the Pi Zero W fixture's, recorded from a Pi).
fn set_written_sectors(pi: &Pi, sectors: u64) {
    write(
        &pi.root.join("proc/diskstats"),
        &format!(
            " 179       0 mmcblk0 10233 4120 712844 48120 5211 6120 {sectors} 182211 0 61220 230331 0 0 0 0 0 0\n \
             179       2 mmcblk0p2 9979 3108 700882 46950 5209 6120 {sectors} 182201 0 60410 229151 0 0 0 0 0 0\n"
        ),
    );
}

/// What the ledger counted for mmcblk0 in all (today and the closed days, so that a test
/// running across midnight counts the same), once it reaches `want`.
fn wait_written(daemon: &Daemon, want: u64) -> Value {
    wait_json(daemon, "/api/v1/stats", |doc| {
        let dev = &doc["disk"]["devices"]["mmcblk0"];
        let today = dev["written_today_bytes"].as_u64()?;
        let closed: u64 = dev["written_per_day"]
            .as_array()?
            .iter()
            .map(|d| d["bytes"].as_u64().unwrap())
            .sum();
        (today + closed == want).then(|| dev.clone())
    })
}

#[test]
fn bytes_written_today_grow_and_survive_a_restart_and_a_reboot() {
    let pi = Pi::new();
    set_written_sectors(&pi, 302_212);
    let mut first = pi.start(&[]);
    // Writes since boot happened on unknown days: they are not today's.
    let dev = wait_written(&first, 0);
    assert_eq!(dev["written_per_day"], serde_json::json!([]));
    set_written_sectors(&pi, 304_212);
    wait_written(&first, 2000 * 512);
    let metrics = first.get("/metrics").body;
    assert!(
        metrics.contains(r#"pistats_disk_written_today_bytes{device="mmcblk0"} "#),
        "{metrics}"
    );
    stop(&mut first);
    drop(first);

    // Written while the daemon was stopped, same boot: counted on the first tick back.
    set_written_sectors(&pi, 305_212);
    let mut second = pi.start(&[]);
    second.wait_for_log("history: restored");
    wait_written(&second, 3000 * 512);
    stop(&mut second);
    drop(second);

    // A reboot (a new boot id): the counter restarted from 0, and all it counted since is
    // new, even though it is now above the last reading of the previous boot.
    pi.set_boot_id("3f1b9c77-2222-4d0e-8c1a-6b5e4d3c2b10");
    set_written_sectors(&pi, 400_000);
    let third = pi.start(&[]);
    let dev = wait_written(&third, (3000 + 400_000) * 512);
    for day in dev["written_per_day"].as_array().unwrap() {
        let date = day["date"].as_str().unwrap();
        assert!(date.len() == 10 && date.as_bytes()[4] == b'-', "{date}");
    }
}

/// The daemon on `pi`'s tree with `TZ` set, so that its local date is chosen by the test.
fn start_in_zone(pi: &Pi, tz: &str) -> Daemon {
    let tree = common::daemon::tree_args(&pi.root, Some(&fixtures().join("bin/vcgencmd")));
    let mut args: Vec<&str> = tree.iter().map(String::as_str).collect();
    args.extend([
        "--interval",
        "250ms",
        "--state-dir",
        pi.state.to_str().unwrap(),
    ]);
    Daemon::start_with_env("", &args, &[("TZ", std::ffi::OsStr::new(tz))])
}

#[test]
fn a_new_local_date_closes_the_day_into_written_per_day() {
    let pi = Pi::new();
    set_written_sectors(&pi, 302_212);
    // UTC-12, then UTC+14: 26 hours later in local time, so at least one date later.
    let mut first = start_in_zone(&pi, "UTC+12");
    wait_written(&first, 0);
    set_written_sectors(&pi, 304_212);
    wait_written(&first, 2000 * 512);
    // Whether the first run itself crossed midnight (then it closed a day of its own).
    let crossed = first.get("/api/v1/stats").json()["disk"]["devices"]["mmcblk0"]
        ["written_per_day"]
        != serde_json::json!([]);
    stop(&mut first);
    drop(first);

    set_written_sectors(&pi, 304_712);
    let second = start_in_zone(&pi, "UTC-14");
    let dev = wait_written(&second, 2500 * 512);
    let days = dev["written_per_day"].as_array().unwrap();
    let dates: Vec<&str> = days.iter().map(|d| d["date"].as_str().unwrap()).collect();
    assert!(
        dates.windows(2).all(|w| w[0] < w[1]),
        "oldest first: {dates:?}"
    );
    if !crossed {
        assert_eq!(days.len(), 1, "{dev}");
        assert_eq!(days[0]["bytes"], 2000 * 512);
        assert_eq!(
            dev["written_today_bytes"],
            500 * 512,
            "written while stopped"
        );
        let metrics = second.get("/metrics").body;
        assert!(
            metrics
                .lines()
                .any(|l| l == r#"pistats_disk_written_today_bytes{device="mmcblk0"} 256000"#),
            "{metrics}"
        );
    }
}

/// A state directory holding a year of history for the Pi 4 tree's 4 cores, written by the
/// library as a daemon would have saved it: a sample every 5 minutes, so that both aggregate
/// tiers are full (10,080 1-minute rows, a year of 15-minute rows).
fn write_a_year(state: &Path) {
    use pistats::events::{EventLog, EVENT_CAPACITY};
    use pistats::history::store::Store;
    use pistats::history::{History, HistoryConfig, Sample};
    use std::time::SystemTime;

    let year = 365 * 86_400u64;
    let now = SystemTime::now();
    let start = now - Duration::from_secs(year);
    let mut history = History::new(HistoryConfig::default(), 4).unwrap();
    let mut sample = Sample::new(Duration::ZERO, start);
    sample.cores = vec![0.0; 4];
    for i in (0..year).step_by(300) {
        sample.mono = Duration::from_secs(i);
        sample.wall = start + Duration::from_secs(i);
        // The day of the year as the CPU figure: every point says when it was taken.
        sample.cpu = Some((i / 86_400) as f64 / 10.0);
        sample.temperature = Some(40.0 + (i % 7) as f64);
        history.push(&sample);
    }
    std::fs::create_dir_all(state).unwrap();
    Store::new(state)
        .snapshot(&history, &EventLog::new(EVENT_CAPACITY), None, now)
        .unwrap();
}

#[test]
fn a_restored_year_is_kept_in_a_file_not_in_ram_and_served_whole() {
    let pi = Pi::new();
    write_a_year(&pi.state);
    let daemon = pi.start(&[]);
    daemon.wait_for_log("KiB of older points kept in an unnamed file beside it, not in RAM");
    let line = daemon
        .log()
        .into_iter()
        .find(|l| l.contains("history: restored"))
        .unwrap();
    // 35,040 quarters, one fewer when the year's first sample is not on a quarter's edge.
    assert!(
        line.contains(" 10080 1-minute and 35040 15-minute points")
            || line.contains(" 10080 1-minute and 35039 15-minute points"),
        "{line}"
    );

    // The file is open in the daemon and has no name: nothing new is listed in the directory.
    let state = pi.state.canonicalize().unwrap();
    let unnamed: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", daemon.pid()))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|t| t.to_string_lossy().into_owned())
        .filter(|t| t.starts_with(state.to_str().unwrap()) && t.ends_with("(deleted)"))
        .collect();
    assert_eq!(unnamed.len(), 1, "{unnamed:?}");
    let names: Vec<_> = std::fs::read_dir(&pi.state)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().into_string().unwrap())
        .filter(|n| !["history.bin", "running"].contains(&n.as_str()))
        .collect();
    assert!(names.is_empty(), "{names:?}");

    // A year, read back from the file (35,040 rows merged into 1,500 points): every day of
    // it, in order, the oldest a year ago.
    let points = wait_json(&daemon, "/api/v1/history?range=1y&points=1500", |h| {
        h["points"].as_array().filter(|p| !p.is_empty()).cloned()
    });
    let newest = points[points.len() - 1]["t"].as_u64().unwrap();
    // Those the daemon collected itself (the last minutes) say nothing about the year.
    let days: Vec<f64> = points
        .iter()
        .filter(|p| p["t"].as_u64().unwrap() + 30 * 60_000 < newest)
        .filter_map(|p| p["cpu"][1].as_f64())
        .collect();
    assert!(days.len() >= 1_400, "{} points", days.len());
    assert!(days.windows(2).all(|d| d[0] <= d[1]), "out of order");
    assert!(
        days[0] <= 0.1 && days[days.len() - 1] >= 36.3,
        "{:?}…{:?}",
        days.first(),
        days.last()
    );
    let span = newest - points[0]["t"].as_u64().unwrap();
    assert!(span > 364 * 86_400_000, "{span} ms");
    // The week from the 1-minute tier, also from the file.
    let (_, week) = get_json(&daemon, "/api/v1/history?range=7d&points=1500");
    assert!(week["points"].as_array().unwrap().len() >= 1_400, "{week}");
}
