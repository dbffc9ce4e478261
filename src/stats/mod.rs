//! The collector: builds one [`StatsDocument`] per tick from sysinfo (CPU, processes, disks,
//! interface addresses) and direct `/proc`/`/sys` reads (memory, I/O counters, sensors,
//! battery, Pi firmware state).
//!
//! It is synchronous on purpose: it runs on its own thread (see [`crate::hub`]) so file reads
//! never stall the async runtime. CPU usage needs a previous sample, so [`Collector::new`]
//! primes one.

mod ifaddrs;
pub mod model;
pub mod pi;
pub mod procfs;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sysinfo::{CpuRefreshKind, ProcessRefreshKind, ProcessesToUpdate, System};

use crate::config::Config;
use model::*;

const GIB: f64 = (1u64 << 30) as f64;
/// How long a CPU frequency read from /proc/cpuinfo is reused.
const CPUINFO_FREQUENCY_MAX_AGE: Duration = Duration::from_secs(5);

/// Static facts read once at start.
#[derive(Debug, Clone)]
struct HostFacts {
    hostname: Option<String>,
    model: Option<String>,
    kernel: Option<String>,
    os: Option<String>,
    count_physical: Option<usize>,
}

/// Counters of the previous tick, for rates.
#[derive(Debug, Clone)]
struct Previous {
    at: Instant,
    disk: Option<DiskIo>,
    net: BTreeMap<String, NetIo>,
}

/// Inputs of a collection that come from the rest of the daemon.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub connected_clients: u64,
    pub connectivity: Option<Connectivity>,
}

pub struct Collector {
    system: System,
    proc_root: PathBuf,
    sys_root: PathBuf,
    top_processes: usize,
    hide_process_names: bool,
    facts: HostFacts,
    pi: pi::PiReader,
    previous: Option<Previous>,
    /// The last frequency read from /proc/cpuinfo (machines without cpufreq), and when.
    cpuinfo_frequency: Option<(Instant, u64)>,
}

impl Collector {
    /// Creates a collector and primes the CPU and process samples that usage needs.
    pub fn new(config: &Config) -> Collector {
        let mut system = System::new();
        system.refresh_cpu_list(CpuRefreshKind::nothing().with_cpu_usage().with_frequency());
        system.refresh_processes_specifics(ProcessesToUpdate::All, true, process_refresh());
        let pi = pi::PiReader::new(&config.proc_root, &config.sys_root, &config.vcgencmd);
        let facts = HostFacts {
            hostname: System::host_name(),
            model: pi.model().map(str::to_owned),
            kernel: System::kernel_version(),
            os: System::long_os_version(),
            count_physical: System::physical_core_count(),
        };
        Collector {
            system,
            proc_root: config.proc_root.clone(),
            sys_root: config.sys_root.clone(),
            top_processes: config.top_processes,
            hide_process_names: config.hide_process_names,
            facts,
            pi,
            previous: None,
            cpuinfo_frequency: None,
        }
    }

    /// Collects one complete document.
    pub fn collect(&mut self, ctx: Context) -> StatsDocument {
        let now = Instant::now();
        let wall = SystemTime::now();
        let cpu = self.cpu();
        let memory_info = procfs::read_meminfo(&self.proc_root).unwrap_or_default();
        let (memory, swap) = memory_sections(&memory_info);
        let disk_io = procfs::read_diskstats(&self.proc_root, &self.sys_root);
        let net_io: BTreeMap<String, NetIo> =
            procfs::read_net_dev(&self.proc_root).into_iter().collect();
        let elapsed = self
            .previous
            .as_ref()
            .map(|p| now.duration_since(p.at).as_secs_f64())
            .filter(|s| *s > 0.0);
        let disk = self.disk(disk_io, elapsed);
        let network = self.network(&net_io, elapsed);
        let processes = self.processes(memory_info.total);
        let zones = procfs::read_thermal_zones(&self.sys_root);
        let temperature = TemperatureInfo {
            pi_cpu_celsius: procfs::pi_cpu_celsius(&zones).map(round1),
            sensors: procfs::read_sensors(&self.sys_root, &zones),
        };
        self.previous = Some(Previous {
            at: now,
            disk: disk_io,
            net: net_io,
        });

        let uptime =
            procfs::read_uptime(&self.proc_root).unwrap_or_else(|| System::uptime() as f64);
        let boot_time = wall.checked_sub(Duration::from_secs_f64(uptime));
        StatsDocument {
            timestamp: iso8601(wall),
            system: SystemInfo {
                boot_time: boot_time.map(iso8601),
                uptime_seconds: round2(uptime),
                uptime_human: uptime_human(uptime),
                load_average: procfs::read_loadavg(&self.proc_root).unwrap_or_default(),
                connected_clients: ctx.connected_clients,
                hostname: self.facts.hostname.clone(),
                model: self.facts.model.clone(),
                kernel: self.facts.kernel.clone(),
                os: self.facts.os.clone(),
                pistats_version: env!("CARGO_PKG_VERSION"),
            },
            cpu_usage_percent: Some(cpu.usage_percent),
            ram_usage_percent: (memory_info.total > 0).then_some(memory.used_percent),
            disk_usage_percent: disk.root_usage_percent,
            temperature_celsius: temperature.pi_cpu_celsius,
            connected_clients: ctx.connected_clients,
            cpu,
            memory,
            swap,
            disk,
            network,
            processes,
            temperature,
            battery: procfs::read_battery(&self.sys_root),
            pi: self.pi.read(),
            connectivity: ctx.connectivity,
        }
    }

    fn cpu(&mut self) -> CpuInfo {
        self.system
            .refresh_cpu_specifics(CpuRefreshKind::nothing().with_cpu_usage());
        let cpus = self.system.cpus();
        let (current, min, max) = procfs::read_cpufreq(&self.sys_root, cpus.len());
        // Without cpufreq (VMs, some boards) /proc/cpuinfo's figure is the best there is. The
        // kernel formats that whole file on every read, so it is read every few seconds only.
        let current = current.or_else(|| {
            let fresh = self
                .cpuinfo_frequency
                .filter(|(at, _)| at.elapsed() < CPUINFO_FREQUENCY_MAX_AGE);
            let mhz = match fresh {
                Some((_, mhz)) => mhz,
                None => {
                    self.system
                        .refresh_cpu_specifics(CpuRefreshKind::nothing().with_frequency());
                    let mhz = self.system.cpus().first().map_or(0, |c| c.frequency());
                    self.cpuinfo_frequency = Some((Instant::now(), mhz));
                    mhz
                }
            };
            (mhz > 0).then_some(mhz as f64)
        });
        CpuInfo {
            usage_percent: round1(self.system.global_cpu_usage() as f64),
            count_physical: self.facts.count_physical,
            count_logical: self.system.cpus().len(),
            frequency_mhz: Frequency { current, min, max },
            per_core_usage: self
                .system
                .cpus()
                .iter()
                .map(|c| round1(c.cpu_usage() as f64))
                .collect(),
        }
    }

    fn disk(&mut self, io: Option<DiskIo>, elapsed: Option<f64>) -> DiskInfo {
        let partitions: Vec<Partition> = procfs::read_mounts(&self.proc_root)
            .into_iter()
            .map(|m| Partition {
                total_gb: gib(m.total),
                used_gb: gib(m.used),
                free_gb: gib(m.free),
                used_percent: percent(m.used, m.used + m.free),
                device: m.device,
                mountpoint: m.mountpoint,
                fstype: m.fstype,
            })
            .collect();
        let previous = self.previous.as_ref().and_then(|p| p.disk);
        let io_rates = match (io, previous, elapsed) {
            (Some(now), Some(before), Some(secs)) => Some(IoRates {
                read_bytes_per_sec: rate(now.read_bytes, before.read_bytes, secs),
                write_bytes_per_sec: rate(now.write_bytes, before.write_bytes, secs),
            }),
            _ => None,
        };
        DiskInfo {
            root_usage_percent: partitions
                .iter()
                .find(|p| p.mountpoint == "/")
                .map(|p| p.used_percent),
            partitions,
            io_counters: io,
            io_rates,
        }
    }

    fn network(&mut self, io: &BTreeMap<String, NetIo>, elapsed: Option<f64>) -> NetworkInfo {
        let mut addresses_by_interface = ifaddrs::interface_addresses();
        let previous = self.previous.as_ref().map(|p| &p.net);
        let net_rates = |name: &str, now: &NetIo| -> Option<NetRates> {
            let before = previous?.get(name)?;
            let secs = elapsed?;
            Some(NetRates {
                recv_bytes_per_sec: rate(now.bytes_recv, before.bytes_recv, secs),
                sent_bytes_per_sec: rate(now.bytes_sent, before.bytes_sent, secs),
            })
        };
        let mut total = NetIo::default();
        let mut total_rates: Option<NetRates> = elapsed.map(|_| NetRates::default());
        let mut interfaces = BTreeMap::new();
        for (name, counters) in io {
            let rates = net_rates(name, counters);
            if name != "lo" {
                add_net(&mut total, counters);
                if let Some(t) = total_rates.as_mut() {
                    let r = rates.unwrap_or_default();
                    t.recv_bytes_per_sec += r.recv_bytes_per_sec;
                    t.sent_bytes_per_sec += r.sent_bytes_per_sec;
                }
            }
            let (is_up, mtu, speed_mbps, mac) = procfs::read_link(&self.sys_root, name);
            let mut addresses: Vec<Address> = addresses_by_interface
                .remove(name)
                .unwrap_or_default()
                .into_iter()
                .map(|(address, prefix_len)| Address {
                    family: if address.is_ipv4() { "ipv4" } else { "ipv6" },
                    address: address.to_string(),
                    prefix_len,
                })
                .collect();
            addresses.sort();
            interfaces.insert(
                name.clone(),
                Interface {
                    is_up,
                    mac,
                    mtu,
                    speed_mbps,
                    addresses,
                    io_counters: *counters,
                    rates,
                },
            );
        }
        NetworkInfo {
            io_counters: total,
            rates: total_rates,
            interfaces,
        }
    }

    fn processes(&mut self, total_memory: u64) -> ProcessInfo {
        self.system
            .refresh_processes_specifics(ProcessesToUpdate::All, true, process_refresh());
        let processes = self.system.processes();
        // Threads are not listed (`without_tasks`); kernel threads count, as in psutil.
        let mut top: Vec<_> = processes.values().collect();
        let total_count = top.len();
        top.sort_by(|a, b| {
            b.cpu_usage()
                .total_cmp(&a.cpu_usage())
                .then(a.pid().cmp(&b.pid()))
        });
        top.truncate(self.top_processes);
        ProcessInfo {
            total_count,
            top_cpu_usage: top
                .into_iter()
                .map(|p| TopProcess {
                    pid: p.pid().as_u32(),
                    name: (!self.hide_process_names)
                        .then(|| p.name().to_string_lossy().into_owned()),
                    cpu_percent: round1(p.cpu_usage() as f64),
                    memory_percent: procfs::read_rss(&self.proc_root, p.pid().as_u32())
                        .filter(|_| total_memory > 0)
                        .map_or(0.0, |rss| round2(rss as f64 * 100.0 / total_memory as f64)),
                })
                .collect(),
        }
    }
}

/// CPU times only: memory is read for the few listed processes, not for every process on
/// every tick (one file open per process and tick is most of the collector's cost).
fn process_refresh() -> ProcessRefreshKind {
    ProcessRefreshKind::nothing().with_cpu().without_tasks()
}

fn memory_sections(m: &procfs::MemInfo) -> (MemoryInfo, SwapInfo) {
    let used = m.total.saturating_sub(m.free + m.buffers + m.cached);
    let swap_used = m.swap_total.saturating_sub(m.swap_free);
    (
        MemoryInfo {
            total_gb: gib(m.total),
            available_gb: gib(m.available),
            used_gb: gib(used),
            free_gb: gib(m.free),
            used_percent: percent(m.total.saturating_sub(m.available), m.total),
            cached_gb: gib(m.cached),
            buffers_gb: gib(m.buffers),
        },
        SwapInfo {
            total_gb: gib(m.swap_total),
            used_gb: gib(swap_used),
            free_gb: gib(m.swap_free),
            used_percent: percent(swap_used, m.swap_total),
        },
    )
}

fn add_net(total: &mut NetIo, c: &NetIo) {
    total.bytes_sent += c.bytes_sent;
    total.bytes_recv += c.bytes_recv;
    total.packets_sent += c.packets_sent;
    total.packets_recv += c.packets_recv;
    total.errin += c.errin;
    total.errout += c.errout;
    total.dropin += c.dropin;
    total.dropout += c.dropout;
}

/// Bytes per second; a counter that went backwards (reset, interface re-created) gives 0.
fn rate(now: u64, before: u64, secs: f64) -> f64 {
    round1(now.saturating_sub(before) as f64 / secs)
}

fn gib(bytes: u64) -> f64 {
    round2(bytes as f64 / GIB)
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        round1(part as f64 * 100.0 / whole as f64)
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Python's `str(timedelta(seconds=int(s)))`: `2:30:00`, `1 day, 0:00:05`.
pub fn uptime_human(seconds: f64) -> String {
    let total = seconds.max(0.0) as u64;
    let (days, rest) = (total / 86_400, total % 86_400);
    let hms = format!("{}:{:02}:{:02}", rest / 3600, rest % 3600 / 60, rest % 60);
    match days {
        0 => hms,
        1 => format!("1 day, {hms}"),
        d => format!("{d} days, {hms}"),
    }
}

/// ISO 8601 UTC with microseconds and an explicit offset: `2025-07-14T10:30:00.123456+00:00`.
/// Python's `datetime.fromisoformat` and JavaScript's `Date` both parse it.
pub fn iso8601(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}+00:00",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_micros()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_human_matches_python_timedelta() {
        assert_eq!(uptime_human(9000.45), "2:30:00");
        assert_eq!(uptime_human(5.0), "0:00:05");
        assert_eq!(uptime_human(86_405.0), "1 day, 0:00:05");
        assert_eq!(uptime_human(3.0 * 86_400.0 + 3661.0), "3 days, 1:01:01");
    }

    #[test]
    fn iso8601_formats_known_instants() {
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00.000000+00:00");
        let t = UNIX_EPOCH + Duration::new(1_752_489_000, 123_456_000);
        assert_eq!(iso8601(t), "2025-07-14T10:30:00.123456+00:00");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(iso8601(leap), "2000-02-29T00:00:00.000000+00:00");
    }

    #[test]
    fn rates_never_go_negative() {
        assert_eq!(rate(100, 200, 1.0), 0.0);
        assert_eq!(rate(3000, 1000, 2.0), 1000.0);
    }

    #[test]
    fn memory_used_percent_follows_available() {
        let m = procfs::MemInfo {
            total: 1000,
            free: 100,
            available: 600,
            buffers: 50,
            cached: 300,
            swap_total: 0,
            swap_free: 0,
        };
        let (mem, swap) = memory_sections(&m);
        assert_eq!(mem.used_percent, 40.0);
        assert_eq!(swap.used_percent, 0.0);
    }
}

/// The wire format, byte for byte, from known raw inputs (see `tests/fixtures/wire/`).
#[cfg(test)]
mod wire_golden {
    use super::*;

    pub(crate) const GOLDEN: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/wire/document.json"
    );

    pub(crate) fn meminfo() -> procfs::MemInfo {
        // The Pi 4 fixture's meminfo with 3 MiB of swap in use.
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/pi4/proc/meminfo"
        ))
        .unwrap()
        .replace("SwapFree:         102396 kB", "SwapFree:          99324 kB");
        procfs::parse_meminfo(&text)
    }

    fn document() -> StatsDocument {
        let wall = UNIX_EPOCH + Duration::new(1_752_489_000, 123_456_789);
        let uptime = 93784.51;
        let m = meminfo();
        let (memory, swap) = memory_sections(&m);
        let mount = procfs::Mount {
            device: "/dev/mmcblk0p2".into(),
            mountpoint: "/".into(),
            fstype: "ext4".into(),
            total: 31_037_616_128,
            used: 12_345_678_901,
            free: 17_123_456_789,
        };
        let partitions = vec![Partition {
            total_gb: gib(mount.total),
            used_gb: gib(mount.used),
            free_gb: gib(mount.free),
            used_percent: percent(mount.used, mount.used + mount.free),
            device: mount.device,
            mountpoint: mount.mountpoint,
            fstype: mount.fstype,
        }];
        let eth0 = NetIo {
            bytes_sent: 123_456_789,
            bytes_recv: 987_654_321,
            packets_sent: 301_234,
            packets_recv: 812_345,
            errin: 1,
            errout: 0,
            dropin: 3,
            dropout: 0,
        };
        let rates = NetRates {
            recv_bytes_per_sec: rate(987_654_321, 987_000_000, 1.003),
            sent_bytes_per_sec: rate(123_456_789, 123_400_000, 1.003),
        };
        let mut interfaces = BTreeMap::new();
        interfaces.insert(
            "eth0".to_owned(),
            Interface {
                is_up: true,
                mac: Some("dc:a6:32:01:02:03".into()),
                mtu: Some(1500),
                speed_mbps: Some(1000),
                addresses: vec![
                    Address {
                        family: "ipv4",
                        address: "192.168.1.20".into(),
                        prefix_len: 24,
                    },
                    Address {
                        family: "ipv6",
                        address: "fe80::1".into(),
                        prefix_len: 64,
                    },
                ],
                io_counters: eth0,
                rates: Some(rates),
            },
        );
        let mut sensors = BTreeMap::new();
        sensors.insert(
            "cpu_thermal".to_owned(),
            vec![SensorReading {
                label: String::new(),
                current: 48.312,
                high: Some(80.0),
                critical: None,
            }],
        );
        let disk_io = DiskIo {
            read_count: 100,
            write_count: 50,
            read_bytes: 800 * 512,
            write_bytes: 400 * 512,
        };
        let io_rates = IoRates {
            read_bytes_per_sec: rate(409_600, 400_000, 0.998),
            write_bytes_per_sec: rate(204_800, 204_800, 0.998),
        };
        let cpu = CpuInfo {
            usage_percent: round1(45.25_f32 as f64),
            count_physical: Some(4),
            count_logical: 4,
            frequency_mhz: Frequency {
                current: Some(1_500_000.0 / 1000.0),
                min: Some(600.0),
                max: Some(1500.0),
            },
            per_core_usage: [42.1234_f32, 3.05, 0.0, 100.0]
                .iter()
                .map(|c| round1(*c as f64))
                .collect(),
        };
        let pi_cpu = Some(round1(48.312));
        StatsDocument {
            timestamp: iso8601(wall),
            system: SystemInfo {
                boot_time: wall
                    .checked_sub(Duration::from_secs_f64(uptime))
                    .map(iso8601),
                uptime_seconds: round2(uptime),
                uptime_human: uptime_human(uptime),
                load_average: [0.42, 0.31, 0.25],
                connected_clients: 2,
                hostname: Some("raspberrypi".into()),
                model: Some("Raspberry Pi 4 Model B Rev 1.4".into()),
                kernel: Some("6.6.51+rpt-rpi-v8".into()),
                os: Some("Linux 12 (bookworm)".into()),
                pistats_version: "0.1.0",
            },
            cpu_usage_percent: Some(cpu.usage_percent),
            ram_usage_percent: Some(memory.used_percent),
            disk_usage_percent: Some(partitions[0].used_percent),
            temperature_celsius: pi_cpu,
            connected_clients: 2,
            cpu,
            memory,
            swap,
            disk: DiskInfo {
                root_usage_percent: Some(partitions[0].used_percent),
                partitions,
                io_counters: Some(disk_io),
                io_rates: Some(io_rates),
            },
            network: NetworkInfo {
                io_counters: eth0,
                rates: Some(rates),
                interfaces,
            },
            processes: ProcessInfo {
                total_count: 187,
                top_cpu_usage: vec![
                    TopProcess {
                        pid: 2210,
                        name: Some("pistats".into()),
                        cpu_percent: round1(12.345_f32 as f64),
                        memory_percent: round2(8_392_704.0 * 100.0 / m.total as f64),
                    },
                    TopProcess {
                        pid: 1,
                        name: None,
                        cpu_percent: round1(0.04_f32 as f64),
                        memory_percent: round2(12_345_344.0 * 100.0 / m.total as f64),
                    },
                ],
            },
            temperature: TemperatureInfo {
                pi_cpu_celsius: pi_cpu,
                sensors,
            },
            battery: Some(BatteryInfo {
                percent: 87.0,
                power_plugged: Some(false),
                secsleft: Some(7200),
            }),
            pi: Some(PiHealth {
                throttled_raw: Some("0x50005".into()),
                throttled: Some(pi::decode_throttled(0x50005)),
                core_volts: Some(0.85),
                arm_clock_mhz: Some(1500.0),
                core_clock_mhz: Some(500.0),
                revision: Some("c03114".into()),
                serial: Some("10000000a1b2c3d4".into()),
                source: "sysfs",
            }),
            connectivity: Some(Connectivity {
                source: "kernel",
                interface: "wlan0".into(),
                state: "up".into(),
                connected: true,
                addresses: vec!["192.168.1.21/24".into()],
            }),
        }
    }

    #[test]
    fn wire_format_is_unchanged() {
        let json = serde_json::to_string_pretty(&document()).unwrap();
        if std::env::var_os("PISTATS_BLESS").is_some() {
            std::fs::write(GOLDEN, format!("{json}\n")).unwrap();
        }
        assert_eq!(json, std::fs::read_to_string(GOLDEN).unwrap().trim_end());
    }
}
