//! Direct readers for the parts of `/proc` and `/sys` that sysinfo does not cover (or covers
//! with more work than needed). Each takes the root to read from, so tests can point them at
//! fixture trees of a Raspberry Pi. Every reader returns `None`/empty when its source is
//! missing: a missing sensor is normal, never an error.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use super::model::{BatteryInfo, DiskIo, NetIo, SensorReading};

/// Reads a small text file, trimmed; `None` if absent or unreadable.
pub fn read_trimmed(path: &Path) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    Some(
        text.trim_matches(|c: char| c.is_whitespace() || c == '\0')
            .to_owned(),
    )
}

/// Reads a file holding one number.
pub fn read_number<T: std::str::FromStr>(path: &Path) -> Option<T> {
    read_trimmed(path)?.parse().ok()
}

/// The fields of `/proc/meminfo` that the document uses, in bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MemInfo {
    pub total: u64,
    pub free: u64,
    pub available: u64,
    pub buffers: u64,
    /// `Cached` + `SReclaimable`, as psutil (and `free`) count it.
    pub cached: u64,
    pub swap_total: u64,
    pub swap_free: u64,
}

pub fn parse_meminfo(text: &str) -> MemInfo {
    let mut m = MemInfo::default();
    let mut available = None;
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let (Some(key), Some(value)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Ok(kib) = value.parse::<u64>() else {
            continue;
        };
        let bytes = kib * 1024;
        match key {
            "MemTotal:" => m.total = bytes,
            "MemFree:" => m.free = bytes,
            "MemAvailable:" => available = Some(bytes),
            "Buffers:" => m.buffers = bytes,
            "Cached:" | "SReclaimable:" => m.cached += bytes,
            "SwapTotal:" => m.swap_total = bytes,
            "SwapFree:" => m.swap_free = bytes,
            _ => {}
        }
    }
    // Kernels before 3.14 lack MemAvailable; estimate it the way psutil does.
    m.available = available.unwrap_or(m.free + m.buffers + m.cached);
    m
}

pub fn read_meminfo(proc_root: &Path) -> Option<MemInfo> {
    let text = fs::read_to_string(proc_root.join("meminfo")).ok()?;
    Some(parse_meminfo(&text)).filter(|m| m.total > 0)
}

/// Per-interface counters from `/proc/net/dev`.
pub fn parse_net_dev(text: &str) -> Vec<(String, NetIo)> {
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let v: Vec<u64> = rest
                .split_whitespace()
                .map(|f| f.parse().unwrap_or(0))
                .collect();
            if v.len() < 16 {
                return None;
            }
            Some((
                name.trim().to_owned(),
                NetIo {
                    bytes_recv: v[0],
                    packets_recv: v[1],
                    errin: v[2],
                    dropin: v[3],
                    bytes_sent: v[8],
                    packets_sent: v[9],
                    errout: v[10],
                    dropout: v[11],
                },
            ))
        })
        .collect()
}

pub fn read_net_dev(proc_root: &Path) -> Vec<(String, NetIo)> {
    fs::read_to_string(proc_root.join("net/dev"))
        .map(|text| parse_net_dev(&text))
        .unwrap_or_default()
}

/// Sums `/proc/diskstats` over whole disks (those listed in `/sys/block`), leaving out
/// partitions (already counted in their disk) and loop/ram devices (not real I/O).
pub fn parse_diskstats(text: &str, is_whole_disk: impl Fn(&str) -> bool) -> DiskIo {
    const SECTOR: u64 = 512;
    let mut io = DiskIo::default();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 {
            continue;
        }
        let name = f[2];
        if name.starts_with("loop") || name.starts_with("ram") || !is_whole_disk(name) {
            continue;
        }
        let n = |i: usize| f[i].parse::<u64>().unwrap_or(0);
        io.read_count += n(3);
        io.read_bytes += n(5) * SECTOR;
        io.write_count += n(7);
        io.write_bytes += n(9) * SECTOR;
    }
    io
}

pub fn read_diskstats(proc_root: &Path, sys_root: &Path) -> Option<DiskIo> {
    let text = fs::read_to_string(proc_root.join("diskstats")).ok()?;
    let block = sys_root.join("block");
    Some(parse_diskstats(&text, |name| block.join(name).exists()))
}

/// `/proc/uptime`'s first field, in seconds.
pub fn read_uptime(proc_root: &Path) -> Option<f64> {
    read_trimmed(&proc_root.join("uptime"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A process's resident set size in bytes, from `/proc/PID/statm` (psutil's `rss`).
pub fn read_rss(proc_root: &Path, pid: u32) -> Option<u64> {
    let text = read_trimmed(&proc_root.join(format!("{pid}/statm")))?;
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

fn page_size() -> u64 {
    static PAGE_SIZE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    // SAFETY: sysconf has no preconditions.
    *PAGE_SIZE.get_or_init(|| match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as u64,
        _ => 4096,
    })
}

pub fn read_loadavg(proc_root: &Path) -> Option<[f64; 3]> {
    let text = read_trimmed(&proc_root.join("loadavg"))?;
    let mut f = text.split_whitespace().map(|v| v.parse::<f64>().ok());
    Some([f.next()??, f.next()??, f.next()??])
}

/// CPU frequency in MHz: current (mean over CPUs), min and max, from cpufreq.
pub fn read_cpufreq(sys_root: &Path, cpus: usize) -> (Option<f64>, Option<f64>, Option<f64>) {
    let cpu_dir = sys_root.join("devices/system/cpu");
    let khz = |cpu: usize, file: &str| {
        read_number::<f64>(&cpu_dir.join(format!("cpu{cpu}/cpufreq/{file}")))
    };
    let current: Vec<f64> = (0..cpus)
        .filter_map(|cpu| khz(cpu, "scaling_cur_freq"))
        .collect();
    let mean = (!current.is_empty()).then(|| current.iter().sum::<f64>() / current.len() as f64);
    (
        mean.map(|k| k / 1000.0),
        khz(0, "cpuinfo_min_freq").map(|k| k / 1000.0),
        khz(0, "cpuinfo_max_freq").map(|k| k / 1000.0),
    )
}

fn sorted_entries(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    entries.sort();
    entries
}

/// Thermal zones as (type, °C). On a Pi the SoC's zone is `cpu-thermal`.
pub fn read_thermal_zones(sys_root: &Path) -> Vec<(String, f64)> {
    sorted_entries(&sys_root.join("class/thermal"))
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("thermal_zone"))
        })
        .filter_map(|zone| {
            let kind = read_trimmed(&zone.join("type"))?;
            let milli = read_number::<f64>(&zone.join("temp"))?;
            Some((kind, milli / 1000.0))
        })
        .collect()
}

/// The SoC temperature: the zone named like the CPU, else the first zone.
pub fn pi_cpu_celsius(zones: &[(String, f64)]) -> Option<f64> {
    zones
        .iter()
        .find(|(kind, _)| {
            matches!(
                kind.as_str(),
                "cpu-thermal" | "cpu_thermal" | "soc_thermal" | "x86_pkg_temp"
            )
        })
        .or_else(|| zones.first())
        .map(|(_, c)| *c)
}

/// Every hwmon temperature input plus every thermal zone, grouped by chip name like psutil's
/// `sensors_temperatures()`.
pub fn read_sensors(
    sys_root: &Path,
    zones: &[(String, f64)],
) -> BTreeMap<String, Vec<SensorReading>> {
    let mut sensors: BTreeMap<String, Vec<SensorReading>> = BTreeMap::new();
    for hwmon in sorted_entries(&sys_root.join("class/hwmon")) {
        let Some(chip) = read_trimmed(&hwmon.join("name")) else {
            continue;
        };
        for input in sorted_entries(&hwmon) {
            let Some(file) = input.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(prefix) = file
                .strip_suffix("_input")
                .filter(|p| p.starts_with("temp"))
            else {
                continue;
            };
            let Some(current) = read_number::<f64>(&input) else {
                continue;
            };
            let milli = |suffix: &str| {
                read_number::<f64>(&hwmon.join(format!("{prefix}_{suffix}"))).map(|v| v / 1000.0)
            };
            sensors
                .entry(chip.clone())
                .or_default()
                .push(SensorReading {
                    label: read_trimmed(&hwmon.join(format!("{prefix}_label"))).unwrap_or_default(),
                    current: current / 1000.0,
                    high: milli("max"),
                    critical: milli("crit"),
                });
        }
    }
    for (kind, celsius) in zones {
        // A Pi's cpu-thermal zone also appears as an hwmon chip of the same name.
        let chip = kind.replace('-', "_");
        if sensors.contains_key(&chip) || sensors.contains_key(kind) {
            continue;
        }
        sensors.entry(chip).or_default().push(SensorReading {
            label: String::new(),
            current: *celsius,
            high: None,
            critical: None,
        });
    }
    sensors
}

/// The first battery under `/sys/class/power_supply`, with mains state; `None` without one.
pub fn read_battery(sys_root: &Path) -> Option<BatteryInfo> {
    let supplies = sorted_entries(&sys_root.join("class/power_supply"));
    let kind = |p: &Path| read_trimmed(&p.join("type")).unwrap_or_default();
    let battery = supplies.iter().find(|p| kind(p) == "Battery")?;
    let percent = read_number::<f64>(&battery.join("capacity"))?;
    let status = read_trimmed(&battery.join("status")).unwrap_or_default();
    let mains_online = supplies
        .iter()
        .filter(|p| matches!(kind(p).as_str(), "Mains" | "USB"))
        .filter_map(|p| read_number::<u8>(&p.join("online")))
        .max()
        .map(|v| v == 1);
    let power_plugged = mains_online.or(match status.as_str() {
        "Charging" | "Full" => Some(true),
        "Discharging" => Some(false),
        _ => None,
    });
    let num = |f: &str| read_number::<f64>(&battery.join(f));
    let secsleft = if power_plugged == Some(false) {
        let (now, rate) = match (num("energy_now"), num("power_now")) {
            (Some(e), Some(p)) => (e, p),
            _ => (num("charge_now")?, num("current_now")?),
        };
        (rate > 0.0).then(|| (now / rate * 3600.0) as u64)
    } else {
        None
    };
    Some(BatteryInfo {
        percent,
        power_plugged,
        secsleft,
    })
}

/// One mounted file system's space, as psutil reports it: `used` counts blocks in use
/// (reserved blocks excluded from `free`), `percent` is `used / (used + free)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    pub device: String,
    pub mountpoint: String,
    pub fstype: String,
    pub total: u64,
    pub used: u64,
    pub free: u64,
}

/// Block-device mounts from `/proc/self/mounts` (like psutil's `disk_partitions(all=False)`),
/// one entry per mount point, with their space from `statvfs`.
pub fn read_mounts(proc_root: &Path) -> Vec<Mount> {
    let Ok(text) = fs::read_to_string(proc_root.join("self/mounts")) else {
        return Vec::new();
    };
    let mut seen = std::collections::HashSet::new();
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (device, mountpoint, fstype) = (f.next()?, f.next()?, f.next()?);
            if !device.starts_with("/dev/") {
                return None;
            }
            let mountpoint = unescape_mount(mountpoint);
            if !seen.insert(mountpoint.clone()) {
                return None;
            }
            let (total, used, free) = statvfs(&mountpoint)?;
            Some(Mount {
                device: device.to_owned(),
                mountpoint,
                fstype: fstype.to_owned(),
                total,
                used,
                free,
            })
        })
        .collect()
}

/// `/proc/mounts` writes space, tab, newline and backslash as octal escapes.
fn unescape_mount(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(pos) = rest.find('\\') {
        out.push_str(&rest[..pos]);
        let code = rest.get(pos + 1..pos + 4);
        match code.and_then(|c| u8::from_str_radix(c, 8).ok()) {
            Some(byte) => {
                out.push(byte as char);
                rest = &rest[pos + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[pos + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// (total, used, free-for-users) in bytes.
// The block counts are 32-bit on armhf, so the casts are not redundant everywhere.
#[allow(clippy::unnecessary_cast)]
fn statvfs(path: &str) -> Option<(u64, u64, u64)> {
    let c_path = std::ffi::CString::new(path).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: c_path is a valid NUL-terminated string and st points to writable memory of the
    // right type; statvfs only writes into it.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    let st = unsafe { st.assume_init() };
    let frsize = st.f_frsize as u64;
    let total = st.f_blocks as u64 * frsize;
    let used = (st.f_blocks as u64).saturating_sub(st.f_bfree as u64) * frsize;
    let free = st.f_bavail as u64 * frsize;
    (total > 0).then_some((total, used, free))
}

/// Link details from `/sys/class/net/IF`: (is_up, mtu, speed in Mb/s, MAC).
pub fn read_link(sys_root: &Path, name: &str) -> (bool, Option<u32>, Option<u32>, Option<String>) {
    let dir = sys_root.join("class/net").join(name);
    let flags = read_trimmed(&dir.join("flags"))
        .and_then(|f| u32::from_str_radix(f.trim_start_matches("0x"), 16).ok());
    let is_up = flags.is_some_and(|f| f & 1 == 1); // IFF_UP
    let speed = read_number::<i64>(&dir.join("speed"))
        .filter(|s| *s > 0)
        .and_then(|s| u32::try_from(s).ok());
    let mac = read_trimmed(&dir.join("address")).filter(|m| !m.is_empty());
    (is_up, read_number(&dir.join("mtu")), speed, mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_counts_reclaimable_as_cached() {
        let m = parse_meminfo(
            "MemTotal:  1000 kB\nMemFree: 100 kB\nMemAvailable: 600 kB\nBuffers: 50 kB\n\
             Cached: 300 kB\nSwapCached: 7 kB\nSReclaimable: 20 kB\nSwapTotal: 400 kB\nSwapFree: 300 kB\n",
        );
        assert_eq!(m.total, 1000 * 1024);
        assert_eq!(m.available, 600 * 1024);
        assert_eq!(m.cached, 320 * 1024);
        assert_eq!(m.swap_total - m.swap_free, 100 * 1024);
    }

    #[test]
    fn meminfo_without_available_estimates_it() {
        let m =
            parse_meminfo("MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 300 kB\n");
        assert_eq!(m.available, 450 * 1024);
    }

    #[test]
    fn net_dev_reads_errors_and_drops() {
        let text = "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier compressed\n\
            wlan0: 1000 10 1 2 0 0 0 0 2000 20 3 4 0 0 0 0\n    lo: 5 1 0 0 0 0 0 0 5 1 0 0 0 0 0 0\n";
        let v = parse_net_dev(text);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].0, "wlan0");
        let io = v[0].1;
        assert_eq!((io.bytes_recv, io.bytes_sent), (1000, 2000));
        assert_eq!((io.errin, io.dropin, io.errout, io.dropout), (1, 2, 3, 4));
    }

    #[test]
    fn diskstats_skips_partitions_and_loops() {
        let text = " 179 0 mmcblk0 100 0 800 0 50 0 400 0 0 0 0\n 179 1 mmcblk0p1 7 0 56 0 1 0 8 0 0 0 0\n 7 0 loop0 9 0 9 0 9 0 9 0 0 0 0\n";
        let io = parse_diskstats(text, |n| n == "mmcblk0" || n == "loop0");
        assert_eq!(io.read_count, 100);
        assert_eq!(io.read_bytes, 800 * 512);
        assert_eq!(io.write_count, 50);
        assert_eq!(io.write_bytes, 400 * 512);
    }

    #[test]
    fn cpu_zone_preferred_over_first() {
        let zones = vec![
            ("acpitz".to_owned(), 30.0),
            ("cpu-thermal".to_owned(), 48.3),
        ];
        assert_eq!(pi_cpu_celsius(&zones), Some(48.3));
        assert_eq!(pi_cpu_celsius(&zones[..1]), Some(30.0));
        assert_eq!(pi_cpu_celsius(&[]), None);
    }

    #[test]
    fn mount_escapes_are_decoded() {
        assert_eq!(unescape_mount("/media/my\\040disk"), "/media/my disk");
        assert_eq!(unescape_mount("/plain"), "/plain");
        assert_eq!(unescape_mount("/odd\\x"), "/odd\\x");
    }

    #[test]
    fn root_mount_matches_statvfs_of_root() {
        let mounts = read_mounts(Path::new("/proc"));
        if let Some(root) = mounts.iter().find(|m| m.mountpoint == "/") {
            assert!(root.total >= root.used + root.free / 2);
            assert!(root.device.starts_with("/dev/"));
        }
    }

    #[test]
    fn missing_roots_give_nothing() {
        let nowhere = Path::new("/nonexistent-pistats-root");
        assert!(read_meminfo(nowhere).is_none());
        assert!(read_net_dev(nowhere).is_empty());
        assert!(read_battery(nowhere).is_none());
        assert!(read_sensors(nowhere, &[]).is_empty());
        assert_eq!(read_cpufreq(nowhere, 4), (None, None, None));
    }
}
