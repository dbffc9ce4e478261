//! Property tests: no reader of `/proc` or `/sys` panics, whatever the file holds (truncated,
//! negative, NaN, infinite, huge, wrapping, not UTF-8), and what it returns is sane. The
//! daemon is built with `panic = "abort"`, so a panic here would end every client's feed.

use std::fs;
use std::path::Path;

use proptest::prelude::*;

use super::model::Memory;
use super::procfs::*;
use super::*;

/// Numbers the way hostile files write them.
fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|n| n.to_string()),
        Just("NaN".to_owned()),
        Just("-inf".to_owned()),
        Just("inf".to_owned()),
        Just("1e20".to_owned()),
        Just("-5.00".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just(u64::MAX.to_string()),
        Just((u64::from(u32::MAX) + 1).to_string()),
        Just(String::new()),
        "[0-9a-fx.+-]{0,24}",
    ]
}

/// A line of fields: some numbers, some words, some garbage.
fn line() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![number(), "[A-Za-z_:/]{1,12}", "\\PC{0,8}"],
        0..20,
    )
    .prop_map(|fields| fields.join(" "))
}

/// File contents: structured lines, or raw bytes that need not be UTF-8, possibly truncated.
fn contents() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(line(), 0..12).prop_map(|l| l.join("\n").into_bytes()),
        prop::collection::vec(any::<u8>(), 0..512),
        (
            prop::collection::vec(line(), 1..6),
            any::<prop::sample::Index>()
        )
            .prop_map(|(lines, cut)| {
                let text = lines.join("\n").into_bytes();
                let at = cut.index(text.len() + 1);
                text[..at].to_vec()
            }),
    ]
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

fn sane_memory(m: &Memory) {
    assert!(m.total > 0);
    assert!(m.used() <= m.total);
    assert!((0.0..=100.0).contains(&m.used_percent()), "{m:?}");
    assert!((0.0..=100.0).contains(&m.swap_used_percent()), "{m:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn text_parsers_never_panic(bytes in contents()) {
        let t = text(&bytes);
        for m in [parse_meminfo(&bytes), parse_meminfo(&t)].iter().flatten() {
            sane_memory(m);
        }
        let known = parse_net_dev(&bytes, &[]);
        prop_assert_eq!(parse_net_dev(&bytes, &known), known);
        let _ = parse_net_dev(&t, &[]);
        let _ = parse_diskstats(&t, |_| true);
        if let Some(up) = parse_uptime(&t) {
            prop_assert!(up.as_secs_f64().is_finite());
        }
        let _ = parse_btime(&t);
        let _ = parse_last_pid(&t);
        if let Some(load) = parse_loadavg(&t) {
            prop_assert!(load.iter().all(|v| v.is_finite() && *v >= 0.0), "{load:?}");
        }
        // The same figures as str::parse reads, whatever the text.
        let mut by_str = t
            .split_ascii_whitespace()
            .map(|v| v.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0));
        let by_str = (|| Some([by_str.next()??, by_str.next()??, by_str.next()??]))();
        prop_assert_eq!(parse_loadavg(&t), by_str);
        let _ = parse_mounts(&bytes);
        for rail in super::pi::parse_pmic(&t) {
            prop_assert!(rail.volts.is_none_or(f64::is_finite) && rail.amps.is_none_or(f64::is_finite));
            prop_assert!(rail.volts.is_some() || rail.amps.is_some(), "{:?}", rail);
        }
        let _ = super::storage::parse_life_time(&t);
        let _ = super::storage::parse_hex_byte(&t);
        let per_disk = parse_diskstats_per_disk(&t, |_| Some(()));
        prop_assert_eq!(sum_disks(&per_disk), parse_diskstats(&t, |_| true));
        // The memchr-based lines are str::lines' wherever no line ends in `\r`.
        let unix = t.replace('\r', "");
        prop_assert!(byte_lines(unix.as_bytes()).eq(unix.lines().map(str::as_bytes)));
        // The same disks as a reading by `str` methods finds (on lines `str::lines` splits
        // alike).
        let by_str: Vec<(String, u64, u64)> = unix
            .lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split([' ', '\t']).filter(|f| !f.is_empty()).collect();
                let name = *f.get(2)?;
                let n = |i: usize| {
                    let v = f.get(i)?;
                    v.bytes().all(|b| b.is_ascii_digit()).then(|| v.parse::<u64>().ok())?
                };
                let skipped = ["loop", "ram", "zram"].iter().any(|p| name.starts_with(p));
                (f.len() >= 10 && !skipped).then_some(())?;
                // Reads, sectors read, writes, sectors written.
                let [reads, _, _, written] = [n(3)?, n(5)?, n(7)?, n(9)?];
                Some((name.to_owned(), reads, written.saturating_mul(512)))
            })
            .collect();
        let by_bytes: Vec<(String, u64, u64)> = parse_diskstats_per_disk(&unix, |n| Some(n.to_owned()))
            .into_iter()
            .map(|(name, io)| (name, io.read_count, io.write_bytes))
            .collect();
        prop_assert_eq!(by_bytes, by_str);
    }

    #[test]
    fn emmc_wear_decodes_every_byte(a in any::<u8>(), b in any::<u8>(), eol in any::<u8>()) {
        let raw = format!("{a:#04x} {b:#04x}");
        prop_assert_eq!(super::storage::parse_life_time(&raw), Some((a, b)));
        let card = super::model::MmcCard {
            life_time: Some((a, b)),
            pre_eol_info: Some(eol),
            ..Default::default()
        };
        if let Some(p) = card.life_time_used_percent() {
            prop_assert!((10..=100).contains(&p));
        } else {
            prop_assert!(!(1..=11).contains(&a) && !(1..=11).contains(&b));
        }
        prop_assert_eq!(card.pre_eol_words().is_some(), (1..=3).contains(&eol));
    }

    #[test]
    fn uptime_parses_or_refuses(value in number(), idle in number()) {
        let text = format!("{value} {idle}\n");
        // The first field (the idle time when the uptime is empty).
        let first = text.split_whitespace().next().and_then(|f| f.parse::<f64>().ok());
        match (parse_uptime(&text), first) {
            (Some(up), Some(v)) => {
                prop_assert!(v >= 0.0 && v.is_finite());
                prop_assert!((up.as_secs_f64() - v).abs() <= v * 1e-9 + 1e-9);
            }
            (Some(up), None) => prop_assert!(false, "{:?} from {:?}", up, text),
            (None, Some(v)) => prop_assert!(
                v.is_nan() || v < 0.0 || v.is_infinite() || v >= u64::MAX as f64,
                "{} refused",
                v
            ),
            (None, None) => {}
        }
    }

    #[test]
    fn meminfo_fields_never_wrap(values in prop::collection::vec(number(), 7)) {
        let keys = ["MemTotal", "MemFree", "MemAvailable", "Buffers", "Cached", "SReclaimable", "SwapFree"];
        let t: String = keys
            .iter()
            .zip(&values)
            .map(|(k, v)| format!("{k}: {v} kB\n"))
            .collect::<String>() + "SwapTotal: 1024 kB\n";
        if let Some(m) = parse_meminfo(&t) {
            sane_memory(&m);
            prop_assert_eq!(Some(m.total), values[0].parse::<u64>().ok().and_then(|k| k.checked_mul(1024)));
        }
    }

    #[test]
    fn net_dev_counters_are_taken_as_read(counters in prop::collection::vec(any::<u64>(), 16)) {
        let fields: Vec<String> = counters.iter().map(u64::to_string).collect();
        let t = format!("h1\nh2\n  eth0: {}\n", fields.join(" "));
        let v = parse_net_dev(&t, &[]);
        prop_assert_eq!(v.len(), 1);
        prop_assert_eq!(v[0].1.bytes_recv, counters[0]);
        prop_assert_eq!(v[0].1.bytes_sent, counters[8]);
        let mut total = NetIo::default();
        total.saturating_add(&v[0].1);
        total.saturating_add(&v[0].1);
        prop_assert_eq!(total.bytes_recv, counters[0].saturating_mul(2));
    }

    #[test]
    fn counter_deltas_never_overflow(now in any::<u64>(), before in any::<u64>(), ms in 1u64..10_000) {
        let r = rate(now, before, ms as f64 / 1000.0);
        prop_assert!(r.is_finite() && r >= 0.0);
        if now >= before {
            prop_assert_eq!(counter_delta(now, before), now - before);
        }
    }

}

proptest! {
    // Each case starts a collector (a process table scan): fewer, costlier cases.
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    /// Every file reader, and the whole collector, over a tree of hostile files.
    #[test]
    fn readers_and_collector_survive_hostile_trees(files in prop::collection::vec(contents(), 28)) {
        let dir = tempfile::tempdir().unwrap();
        let proc_root = dir.path().join("proc");
        let sys_root = dir.path().join("sys");
        let paths = [
            "proc/meminfo", "proc/uptime", "proc/loadavg", "proc/stat", "proc/net/dev",
            "proc/diskstats", "proc/self/mounts", "proc/cpuinfo", "proc/1/statm",
            "sys/class/thermal/thermal_zone0/temp", "sys/class/thermal/thermal_zone0/type",
            "sys/class/hwmon/hwmon0/temp1_input",
            "sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq",
            "sys/class/power_supply/BAT0/capacity",
            "sys/class/power_supply/BAT0/energy_now",
            "sys/devices/platform/soc/soc:firmware/get_throttled",
            "sys/class/hwmon/hwmon0/fan1_input", "sys/class/hwmon/hwmon0/pwm1",
            "sys/class/thermal/cooling_device0/cur_state",
            "sys/class/thermal/cooling_device0/max_state",
            "sys/class/thermal/cooling_device0/type",
            "sys/block/mmcblk0/device/type", "sys/block/mmcblk0/device/name",
            "sys/block/mmcblk0/device/life_time", "sys/block/mmcblk0/device/pre_eol_info",
            "sys/block/mmcblk0/device/date", "sys/class/hwmon/hwmon0/fan1_label",
            "proc/device-tree/compatible",
        ];
        for (path, bytes) in paths.iter().zip(&files) {
            write(dir.path(), path, bytes);
        }
        write(dir.path(), "sys/class/hwmon/hwmon0/name", b"cpu_thermal\n");
        write(dir.path(), "sys/class/power_supply/BAT0/type", b"Battery\n");
        write(dir.path(), "sys/class/power_supply/BAT0/status", b"Discharging\n");
        write(dir.path(), "sys/class/power_supply/BAT0/power_now", &files[4]);
        write(dir.path(), "sys/class/net/eth0/flags", &files[5]);
        write(dir.path(), "sys/class/net/eth0/speed", &files[6]);
        write(dir.path(), "sys/class/net/eth0/mtu", &files[7]);
        write(dir.path(), "proc/device-tree/model", b"Raspberry Pi 4 Model B Rev 1.4\0");
        write(dir.path(), "sys/class/thermal/cooling_device1/type", b"pwm-fan\n");
        write(dir.path(), "sys/class/thermal/cooling_device1/cur_state", &files[8]);
        write(dir.path(), "sys/class/thermal/cooling_device1/max_state", &files[9]);
        write(dir.path(), "sys/block/mmcblk1/device/type", b"MMC\n");
        write(dir.path(), "sys/block/mmcblk1/device/life_time", &files[10]);

        if let Some(m) = read_meminfo(&proc_root) {
            sane_memory(&m);
        }
        let _ = read_uptime(&proc_root);
        let _ = read_boot_time(&proc_root);
        let _ = read_loadavg(&proc_root);
        let _ = read_net_dev(&proc_root);
        let _ = read_diskstats(&proc_root, &sys_root);
        let _ = read_mounts(&proc_root);
        let _ = read_rss(&proc_root, 1);
        let (cur, min, max) = CpuFreq::new(&sys_root, 4).read();
        prop_assert!([cur, min, max].iter().flatten().all(|v| v.is_finite()));
        let zones = read_thermal_zones(&sys_root);
        prop_assert!(zones.iter().all(|(_, c)| c.is_finite()));
        let mut listings = Listings::default();
        let sensors = read_sensors(&sys_root, &zones, &mut listings);
        prop_assert!(sensors.values().flatten().all(|r| r.current.is_finite()));
        if let Some(b) = read_battery(&sys_root, &mut listings) {
            prop_assert!(b.percent.is_finite());
        }
        let _ = read_link(&sys_root, "eth0");
        for fan in super::fans::read_fans(&sys_root, &mut listings) {
            prop_assert!(fan.rpm.is_none_or(|v| v.is_finite() && v >= 0.0), "{:?}", fan);
            prop_assert!(fan.pwm_percent.is_none_or(|v| (0.0..=100.0).contains(&v)), "{:?}", fan);
            if let (Some(state), Some(max)) = (fan.cooling_state, fan.cooling_max_state) {
                prop_assert!(state <= max);
            }
        }
        if let Some(card) = super::storage::read_card(&sys_root, "mmcblk0") {
            prop_assert!(card.life_time_used_percent().is_none_or(|p| p <= 100));
        }

        let config = Config {
            proc_root: proc_root.clone(),
            sys_root: sys_root.clone(),
            vcgencmd: dir.path().join("no-vcgencmd"),
            ..Config::default()
        };
        let mut collector = Collector::new(&config);
        for _ in 0..2 {
            let doc = collector.collect(Context::default());
            let json = serde_json::to_string(&doc).unwrap();
            let _ = crate::metrics::render(&doc, &crate::metrics::OwnMetrics::default());
            let is_document = json.starts_with(r#"{"timestamp":"#);
            prop_assert!(is_document, "{}", json);
        }
    }
}
