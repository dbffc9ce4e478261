//! The stats document: the wire contract shared by the WebSocket feed, `GET /api/v1/stats`
//! and `pistats snapshot`.
//!
//! Section and field names follow the original Python broadcaster's "Data Format" exactly, so
//! existing clients of `ws://PI:8765` keep working. Everything not in that format is an
//! addition (never a rename). Sizes in the original sections are GiB floats (`*_gb`), percents are
//! 0–100 floats, timestamps are ISO 8601. Anything that cannot be read is `null`.

use std::collections::BTreeMap;

use serde::Serialize;

/// One complete stats document, produced once per tick.
#[derive(Debug, Clone, Serialize)]
pub struct StatsDocument {
    /// ISO 8601 time of collection, UTC with an explicit `+00:00` offset.
    pub timestamp: String,
    pub system: SystemInfo,
    pub cpu: CpuInfo,
    pub memory: MemoryInfo,
    pub swap: SwapInfo,
    pub disk: DiskInfo,
    pub network: NetworkInfo,
    pub processes: ProcessInfo,
    pub temperature: TemperatureInfo,
    pub battery: Option<BatteryInfo>,
    /// Raspberry Pi firmware health: throttling, voltages, clocks (null off a Pi).
    pub pi: Option<PiHealth>,
    /// State of the watched network interface (see `[network]` in the config).
    pub connectivity: Option<Connectivity>,
    // The five keys of the Python broadcaster's first, flat format, kept for its clients.
    pub cpu_usage_percent: Option<f64>,
    pub ram_usage_percent: Option<f64>,
    pub disk_usage_percent: Option<f64>,
    pub temperature_celsius: Option<f64>,
    pub connected_clients: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SystemInfo {
    pub boot_time: Option<String>,
    pub uptime_seconds: f64,
    /// Python `timedelta` style: `2:30:00`, `3 days, 2:30:00`.
    pub uptime_human: String,
    pub load_average: [f64; 3],
    pub connected_clients: u64,
    pub hostname: Option<String>,
    /// Board model from the device tree, e.g. `Raspberry Pi 4 Model B Rev 1.4`.
    pub model: Option<String>,
    pub kernel: Option<String>,
    pub os: Option<String>,
    pub pistats_version: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct CpuInfo {
    pub usage_percent: f64,
    pub count_physical: Option<usize>,
    pub count_logical: usize,
    pub frequency_mhz: Frequency,
    pub per_core_usage: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Frequency {
    pub current: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemoryInfo {
    pub total_gb: f64,
    pub available_gb: f64,
    pub used_gb: f64,
    pub free_gb: f64,
    pub used_percent: f64,
    pub cached_gb: f64,
    pub buffers_gb: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SwapInfo {
    pub total_gb: f64,
    pub used_gb: f64,
    pub free_gb: f64,
    pub used_percent: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DiskInfo {
    pub root_usage_percent: Option<f64>,
    pub partitions: Vec<Partition>,
    pub io_counters: Option<DiskIo>,
    /// Bytes per second since the previous tick (null on the first tick).
    pub io_rates: Option<IoRates>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Partition {
    pub device: String,
    pub mountpoint: String,
    pub fstype: String,
    pub total_gb: f64,
    pub used_gb: f64,
    pub free_gb: f64,
    pub used_percent: f64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct DiskIo {
    pub read_count: u64,
    pub write_count: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
}

/// Rates in bytes per second: `read`/`write` for disks, `recv`/`sent` for network.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct IoRates {
    pub read_bytes_per_sec: f64,
    pub write_bytes_per_sec: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct NetworkInfo {
    /// Sum over every interface except loopback.
    pub io_counters: NetIo,
    /// Bytes per second summed over every interface except loopback.
    pub rates: Option<NetRates>,
    pub interfaces: BTreeMap<String, Interface>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct NetIo {
    pub bytes_sent: u64,
    pub bytes_recv: u64,
    pub packets_sent: u64,
    pub packets_recv: u64,
    pub errin: u64,
    pub errout: u64,
    pub dropin: u64,
    pub dropout: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct NetRates {
    pub recv_bytes_per_sec: f64,
    pub sent_bytes_per_sec: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Interface {
    pub is_up: bool,
    pub mac: Option<String>,
    pub mtu: Option<u32>,
    pub speed_mbps: Option<u32>,
    pub addresses: Vec<Address>,
    pub io_counters: NetIo,
    pub rates: Option<NetRates>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Address {
    /// `ipv4` or `ipv6`.
    pub family: &'static str,
    pub address: String,
    pub prefix_len: u8,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProcessInfo {
    pub total_count: usize,
    pub top_cpu_usage: Vec<TopProcess>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TopProcess {
    pub pid: u32,
    /// `null` when `hide_process_names` is set.
    pub name: Option<String>,
    /// Percent of one core, like psutil (can exceed 100 on multi-core machines).
    pub cpu_percent: f64,
    pub memory_percent: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TemperatureInfo {
    pub pi_cpu_celsius: Option<f64>,
    /// psutil layout: sensor chip name → readings.
    pub sensors: BTreeMap<String, Vec<SensorReading>>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SensorReading {
    pub label: String,
    pub current: f64,
    pub high: Option<f64>,
    pub critical: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BatteryInfo {
    pub percent: f64,
    pub power_plugged: Option<bool>,
    /// Seconds left on battery; null when charging or unknown.
    pub secsleft: Option<u64>,
}

/// Raspberry Pi firmware health, decoded from `get_throttled` and friends.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PiHealth {
    /// Raw `get_throttled` bit field, as `0x50005`.
    pub throttled_raw: Option<String>,
    pub throttled: Option<ThrottleFlags>,
    pub core_volts: Option<f64>,
    pub arm_clock_mhz: Option<f64>,
    pub core_clock_mhz: Option<f64>,
    pub revision: Option<String>,
    pub serial: Option<String>,
    /// Where the values came from: `sysfs` or `vcgencmd`.
    pub source: &'static str,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Default)]
pub struct ThrottleFlags {
    pub under_voltage: bool,
    pub arm_frequency_capped: bool,
    pub throttled: bool,
    pub soft_temperature_limit: bool,
    pub under_voltage_occurred: bool,
    pub arm_frequency_capping_occurred: bool,
    pub throttling_occurred: bool,
    pub soft_temperature_limit_occurred: bool,
}

/// What pistats knows about the watched interface.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Connectivity {
    /// `networkmanager`, `kernel` or `none`.
    pub source: &'static str,
    pub interface: String,
    /// NetworkManager device state name (`activated`, `disconnected`, …) or kernel operstate.
    pub state: String,
    pub connected: bool,
    pub addresses: Vec<String>,
}
