//! The seed JSON format, derived from the typed snapshot at the edge.
//!
//! Section and field names follow the original Python broadcaster's "Data Format" exactly, so
//! existing clients of `ws://PI:8765` keep working; everything not in that format is an
//! addition (never a rename). Sizes in the original sections are GiB with 2 decimals (`*_gb`),
//! percents and rates have 1 decimal, timestamps are ISO 8601 with an explicit `+00:00`.
//! Anything that could not be read is `null`.
//!
//! The structs here borrow from the [`StatsDocument`], so serializing copies no strings.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};

use super::model::{self, StatsDocument};

const GIB: f64 = (1u64 << 30) as f64;

impl Serialize for StatsDocument {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Document::from(self).serialize(serializer)
    }
}

#[derive(Serialize)]
struct Document<'a> {
    timestamp: String,
    system: System<'a>,
    cpu: Cpu,
    memory: Memory,
    swap: Swap,
    disk: Disk<'a>,
    network: Network<'a>,
    processes: Processes<'a>,
    temperature: Temperature<'a>,
    battery: &'a Option<model::BatteryInfo>,
    pi: &'a Option<model::PiHealth>,
    connectivity: Option<&'a model::Connectivity>,
    // The five keys of the Python broadcaster's first, flat format, kept for its clients.
    cpu_usage_percent: Option<f64>,
    ram_usage_percent: Option<f64>,
    disk_usage_percent: Option<f64>,
    temperature_celsius: Option<f64>,
    connected_clients: u64,
    /// Addition: the sources that could not be read this tick (empty when all were).
    degraded: &'a [model::Source],
}

impl<'a> From<&'a StatsDocument> for Document<'a> {
    fn from(doc: &'a StatsDocument) -> Document<'a> {
        let cpu = Cpu::from(&doc.cpu);
        let memory = Memory::from(doc.memory.as_ref());
        let disk = Disk::from(&doc.disk);
        Document {
            timestamp: iso8601(doc.collected_at),
            system: System::new(&doc.system, doc.connected_clients),
            cpu_usage_percent: Some(cpu.usage_percent),
            ram_usage_percent: memory.used_percent,
            disk_usage_percent: disk.root_usage_percent,
            temperature_celsius: doc.temperature.pi_cpu_celsius.map(round1),
            connected_clients: doc.connected_clients,
            cpu,
            swap: Swap::from(doc.memory.as_ref()),
            memory,
            disk,
            network: Network::from(&doc.network),
            processes: Processes::from(&*doc.processes),
            temperature: Temperature {
                pi_cpu_celsius: doc.temperature.pi_cpu_celsius.map(round1),
                sensors: &doc.temperature.sensors,
                fans: doc.temperature.fans.iter().map(Fan::from).collect(),
            },
            battery: &doc.battery,
            pi: &doc.pi,
            connectivity: doc.connectivity.as_deref(),
            degraded: &doc.degraded,
        }
    }
}

#[derive(Serialize)]
struct System<'a> {
    boot_time: Option<String>,
    uptime_seconds: f64,
    /// Python `timedelta` style: `2:30:00`, `3 days, 2:30:00`.
    uptime_human: String,
    load_average: Option<[f64; 3]>,
    connected_clients: u64,
    hostname: Option<&'a str>,
    model: Option<&'a str>,
    kernel: Option<&'a str>,
    os: Option<&'a str>,
    pistats_version: &'a str,
}

impl<'a> System<'a> {
    fn new(s: &'a model::SystemInfo, connected_clients: u64) -> System<'a> {
        System {
            boot_time: s.boot_time.map(iso8601),
            uptime_seconds: round2(s.uptime.as_secs_f64()),
            uptime_human: uptime_human(s.uptime.as_secs()),
            load_average: s.load_average,
            connected_clients,
            hostname: s.hostname.as_deref(),
            model: s.model.as_deref(),
            kernel: s.kernel.as_deref(),
            os: s.os.as_deref(),
            pistats_version: s.pistats_version,
        }
    }
}

#[derive(Serialize)]
struct Cpu {
    usage_percent: f64,
    count_physical: Option<usize>,
    count_logical: usize,
    frequency_mhz: model::Frequency,
    per_core_usage: Vec<f64>,
}

impl From<&model::CpuInfo> for Cpu {
    fn from(c: &model::CpuInfo) -> Cpu {
        Cpu {
            usage_percent: round1(c.usage_percent),
            count_physical: c.count_physical,
            count_logical: c.count_logical,
            frequency_mhz: c.frequency_mhz,
            per_core_usage: c.per_core_usage.iter().copied().map(round1).collect(),
        }
    }
}

#[derive(Serialize)]
struct Memory {
    total_gb: Option<f64>,
    available_gb: Option<f64>,
    used_gb: Option<f64>,
    free_gb: Option<f64>,
    used_percent: Option<f64>,
    cached_gb: Option<f64>,
    buffers_gb: Option<f64>,
}

impl From<Option<&model::Memory>> for Memory {
    fn from(m: Option<&model::Memory>) -> Memory {
        let gb = |pick: fn(&model::Memory) -> u64| m.map(|m| gib(pick(m)));
        Memory {
            total_gb: gb(|m| m.total),
            available_gb: gb(|m| m.available),
            used_gb: gb(model::Memory::used),
            free_gb: gb(|m| m.free),
            used_percent: m.map(|m| round1(m.used_percent())),
            cached_gb: gb(|m| m.cached),
            buffers_gb: gb(|m| m.buffers),
        }
    }
}

#[derive(Serialize)]
struct Swap {
    total_gb: Option<f64>,
    used_gb: Option<f64>,
    free_gb: Option<f64>,
    used_percent: Option<f64>,
}

impl From<Option<&model::Memory>> for Swap {
    fn from(m: Option<&model::Memory>) -> Swap {
        Swap {
            total_gb: m.map(|m| gib(m.swap_total)),
            used_gb: m.map(|m| gib(m.swap_used())),
            free_gb: m.map(|m| gib(m.swap_free)),
            used_percent: m.map(|m| round1(m.swap_used_percent())),
        }
    }
}

#[derive(Serialize)]
struct Disk<'a> {
    root_usage_percent: Option<f64>,
    /// Empty (and `partitions` listed in `degraded`) when the mount table was unreadable.
    partitions: Vec<Partition<'a>>,
    io_counters: Option<model::DiskIo>,
    io_rates: Option<IoRates>,
    /// Addition: per whole disk, counters since boot and the SD/eMMC card.
    devices: BTreeMap<&'a str, DiskDevice<'a>>,
}

#[derive(Serialize)]
struct DiskDevice<'a> {
    read_bytes: u64,
    written_bytes: u64,
    read_count: u64,
    write_count: u64,
    card: Option<Card<'a>>,
    /// Addition: bytes written since local midnight; null until the history knows the disk.
    written_today_bytes: Option<u64>,
    /// Addition: bytes written on each of the last 30 closed days, oldest first.
    written_per_day: Vec<DayBytes>,
}

#[derive(Serialize)]
struct DayBytes {
    /// `YYYY-MM-DD`, local calendar date.
    date: crate::history::Day,
    bytes: u64,
}

#[derive(Serialize)]
struct Card<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    name: &'a Option<String>,
    manufacturer_id: &'a Option<String>,
    oem_id: &'a Option<String>,
    date: &'a Option<String>,
    serial: &'a Option<String>,
    /// The kernel's `life_time`, as printed (`0x01 0x02`); null on SD cards.
    life_time_raw: Option<String>,
    life_time_a: Option<String>,
    life_time_b: Option<String>,
    life_time_used_percent: Option<u8>,
    pre_eol: Option<&'static str>,
}

impl<'a> From<&'a model::MmcCard> for Card<'a> {
    fn from(c: &'a model::MmcCard) -> Card<'a> {
        Card {
            kind: &c.kind,
            name: &c.name,
            manufacturer_id: &c.manufacturer_id,
            oem_id: &c.oem_id,
            date: &c.date,
            serial: &c.serial,
            life_time_raw: c.life_time.map(|(a, b)| format!("{a:#04x} {b:#04x}")),
            life_time_a: c.life_time.and_then(|(a, _)| model::life_time_words(a)),
            life_time_b: c.life_time.and_then(|(_, b)| model::life_time_words(b)),
            life_time_used_percent: c.life_time_used_percent(),
            pre_eol: c.pre_eol_words(),
        }
    }
}

impl<'a> From<&'a model::DiskInfo> for Disk<'a> {
    fn from(d: &'a model::DiskInfo) -> Disk<'a> {
        Disk {
            root_usage_percent: d.root_usage_percent().map(round1),
            partitions: d
                .partitions
                .iter()
                .flatten()
                .map(|p| Partition {
                    device: &p.device,
                    mountpoint: &p.mountpoint,
                    fstype: &p.fstype,
                    total_gb: gib(p.total),
                    used_gb: gib(p.used),
                    free_gb: gib(p.free),
                    used_percent: round1(p.used_percent()),
                })
                .collect(),
            io_counters: d.io_counters,
            io_rates: d.io_rates.map(|r| IoRates {
                read_bytes_per_sec: round1(r.read_bytes_per_sec),
                write_bytes_per_sec: round1(r.write_bytes_per_sec),
            }),
            devices: d
                .devices
                .iter()
                .map(|(name, dev)| {
                    let device = DiskDevice {
                        read_bytes: dev.io.read_bytes,
                        written_bytes: dev.io.write_bytes,
                        read_count: dev.io.read_count,
                        write_count: dev.io.write_count,
                        card: dev.card.as_deref().map(Card::from),
                        written_today_bytes: dev.written.as_ref().map(|w| w.today),
                        written_per_day: dev
                            .written
                            .iter()
                            .flat_map(|w| &w.per_day)
                            .map(|&(date, bytes)| DayBytes { date, bytes })
                            .collect(),
                    };
                    (&**name, device)
                })
                .collect(),
        }
    }
}

#[derive(Serialize)]
struct Partition<'a> {
    device: &'a str,
    mountpoint: &'a str,
    fstype: &'a str,
    total_gb: f64,
    used_gb: f64,
    free_gb: f64,
    used_percent: f64,
}

#[derive(Serialize)]
struct IoRates {
    read_bytes_per_sec: f64,
    write_bytes_per_sec: f64,
}

#[derive(Serialize)]
struct Network<'a> {
    io_counters: Option<model::NetIo>,
    rates: Option<NetRates>,
    interfaces: BTreeMap<&'a str, Interface<'a>>,
}

impl<'a> From<&'a model::NetworkInfo> for Network<'a> {
    fn from(n: &'a model::NetworkInfo) -> Network<'a> {
        Network {
            io_counters: n.io_counters,
            rates: n.rates.map(NetRates::from),
            interfaces: n
                .interfaces
                .iter()
                .map(|(name, i)| {
                    let interface = Interface {
                        is_up: i.is_up,
                        mac: i.mac.as_deref(),
                        mtu: i.mtu,
                        speed_mbps: i.speed_mbps,
                        addresses: &i.addresses,
                        io_counters: i.io_counters,
                        rates: i.rates.map(NetRates::from),
                    };
                    (&**name, interface)
                })
                .collect(),
        }
    }
}

#[derive(Serialize)]
struct NetRates {
    recv_bytes_per_sec: f64,
    sent_bytes_per_sec: f64,
}

impl From<model::NetRates> for NetRates {
    fn from(r: model::NetRates) -> NetRates {
        NetRates {
            recv_bytes_per_sec: round1(r.recv_bytes_per_sec),
            sent_bytes_per_sec: round1(r.sent_bytes_per_sec),
        }
    }
}

#[derive(Serialize)]
struct Interface<'a> {
    is_up: bool,
    mac: Option<&'a str>,
    mtu: Option<u32>,
    speed_mbps: Option<u32>,
    addresses: &'a [model::Address],
    io_counters: model::NetIo,
    rates: Option<NetRates>,
}

#[derive(Serialize)]
struct Processes<'a> {
    total_count: Option<usize>,
    top_cpu_usage: Vec<TopProcess<'a>>,
    top_memory_usage: Vec<TopProcess<'a>>,
    /// Added: when the figures were scanned (older than `timestamp` on unwatched ticks).
    #[serde(skip_serializing_if = "Option::is_none")]
    scanned_at: Option<String>,
}

fn top_processes(list: &[model::TopProcess]) -> Vec<TopProcess<'_>> {
    list.iter()
        .map(|t| TopProcess {
            pid: t.pid,
            name: &t.name,
            cpu_percent: round1(t.cpu_percent),
            memory_percent: t.memory_percent.map(round2),
        })
        .collect()
}

impl<'a> From<&'a model::ProcessInfo> for Processes<'a> {
    fn from(p: &'a model::ProcessInfo) -> Processes<'a> {
        Processes {
            total_count: p.total_count,
            top_cpu_usage: top_processes(&p.top_cpu_usage),
            top_memory_usage: top_processes(&p.top_memory_usage),
            scanned_at: p.scanned_at.map(iso8601),
        }
    }
}

#[derive(Serialize)]
struct TopProcess<'a> {
    pid: u32,
    name: &'a Option<String>,
    cpu_percent: f64,
    memory_percent: Option<f64>,
}

#[derive(Serialize)]
struct Temperature<'a> {
    pi_cpu_celsius: Option<f64>,
    /// psutil layout: sensor chip name → readings, as read.
    sensors: &'a BTreeMap<String, Vec<model::SensorReading>>,
    /// Addition: every fan (see [`model::Fan`]).
    fans: Vec<Fan<'a>>,
}

#[derive(Serialize)]
struct Fan<'a> {
    name: &'a str,
    label: &'a str,
    rpm: Option<f64>,
    pwm_percent: Option<f64>,
    cooling_state: Option<u64>,
    cooling_max_state: Option<u64>,
}

impl<'a> From<&'a model::Fan> for Fan<'a> {
    fn from(f: &'a model::Fan) -> Fan<'a> {
        Fan {
            name: &f.name,
            label: &f.label,
            rpm: f.rpm,
            pwm_percent: f.pwm_percent.map(round1),
            cooling_state: f.cooling_state,
            cooling_max_state: f.cooling_max_state,
        }
    }
}

fn gib(bytes: u64) -> f64 {
    round2(bytes as f64 / GIB)
}

/// One decimal, as the seed format shows percents and rates.
pub fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// Two decimals, as the seed format shows GiB and seconds.
pub fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Python's `str(timedelta(seconds=s))`: `2:30:00`, `1 day, 0:00:05`.
pub fn uptime_human(total: u64) -> String {
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
    use std::time::Duration;

    use super::*;

    #[test]
    fn uptime_human_matches_python_timedelta() {
        assert_eq!(uptime_human(9000), "2:30:00");
        assert_eq!(uptime_human(5), "0:00:05");
        assert_eq!(uptime_human(86_405), "1 day, 0:00:05");
        assert_eq!(uptime_human(3 * 86_400 + 3661), "3 days, 1:01:01");
    }

    #[test]
    fn iso8601_formats_known_instants() {
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00.000000+00:00");
        let t = UNIX_EPOCH + Duration::new(1_752_489_000, 123_456_000);
        assert_eq!(iso8601(t), "2025-07-14T10:30:00.123456+00:00");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(iso8601(leap), "2000-02-29T00:00:00.000000+00:00");
        // The largest representable time formats instead of overflowing.
        assert!(iso8601(UNIX_EPOCH + Duration::from_secs(u64::MAX / 2)).ends_with("+00:00"));
    }
}
