//! One tick's collected data, typed and unrounded: bytes as `u64`, times as [`SystemTime`] and
//! [`Duration`], counters as read, percents and rates as computed. Nothing here is formatted
//! for a reader; [`super::wire`] turns a [`StatsDocument`] into the seed JSON format (GiB with
//! 2 decimals, ISO 8601 strings) and [`crate::metrics`] into Prometheus samples (bytes,
//! seconds), both from the same raw values.
//!
//! A value that could not be read is `None` (and its source is listed in
//! [`StatsDocument::degraded`]), never a zero standing in for it.
//!
//! What a tick that is not full repeats from the last full one (host facts, link facts and
//! addresses, other sensors, fans, the process lists) is held in an [`Arc`]: every document
//! shares it instead of copying it, so an unwatched tick allocates none of it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

/// One complete snapshot, produced once per tick. Serializes as the seed-format document
/// (see [`super::wire`]).
#[derive(Debug, Clone)]
pub struct StatsDocument {
    /// When the collection started (wall clock).
    pub collected_at: SystemTime,
    pub system: SystemInfo,
    pub cpu: CpuInfo,
    /// `None` when `/proc/meminfo` could not be read.
    pub memory: Option<Memory>,
    pub disk: DiskInfo,
    pub network: NetworkInfo,
    /// Shared with the documents that repeat the same scan (see [`ProcessInfo::scanned_at`]).
    pub processes: Arc<ProcessInfo>,
    pub temperature: TemperatureInfo,
    pub battery: Option<BatteryInfo>,
    /// Raspberry Pi firmware health: throttling, voltages, clocks (`None` off a Pi).
    pub pi: Option<PiHealth>,
    /// State of the watched network interface (see `[network]` in the config).
    /// Shared by the documents while it does not change.
    pub connectivity: Option<Arc<Connectivity>>,
    pub connected_clients: u64,
    /// Sources that failed this tick; their values are `None`/empty, not zero.
    pub degraded: Vec<Source>,
}

/// A document with nothing collected yet: what the collector fills on its first tick.
impl Default for StatsDocument {
    fn default() -> StatsDocument {
        StatsDocument {
            collected_at: SystemTime::UNIX_EPOCH,
            system: SystemInfo::default(),
            cpu: CpuInfo::default(),
            memory: None,
            disk: DiskInfo::default(),
            network: NetworkInfo::default(),
            processes: Arc::default(),
            temperature: TemperatureInfo::default(),
            battery: None,
            pi: None,
            connectivity: None,
            connected_clients: 0,
            degraded: Vec::new(),
        }
    }
}

/// A source of the collector that can fail on a tick (file unreadable, fd exhaustion, garbage).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// `/proc/meminfo`: the memory and swap sections.
    Memory,
    /// `/proc/loadavg`.
    LoadAverage,
    /// `/proc/stat` `btime`: the boot time.
    BootTime,
    /// `/proc/net/dev`: network counters.
    Network,
    /// `/proc/diskstats`: disk I/O counters.
    DiskIo,
    /// `/proc/self/mounts`: the partition list.
    Partitions,
    /// The process table under `/proc`.
    Processes,
}

impl Source {
    pub const ALL: [Source; 7] = [
        Source::Memory,
        Source::LoadAverage,
        Source::BootTime,
        Source::Network,
        Source::DiskIo,
        Source::Partitions,
        Source::Processes,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Memory => "memory",
            Source::LoadAverage => "load_average",
            Source::BootTime => "boot_time",
            Source::Network => "network",
            Source::DiskIo => "disk_io",
            Source::Partitions => "partitions",
            Source::Processes => "processes",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct SystemInfo {
    /// From `/proc/stat` `btime`: stable, unlike `now − uptime`.
    pub boot_time: Option<SystemTime>,
    /// From `/proc/uptime`, else the kernel's boot-time clock.
    pub uptime: Duration,
    pub load_average: Option<[f64; 3]>,
    pub hostname: Option<Arc<str>>,
    /// Board model from the device tree, e.g. `Raspberry Pi 4 Model B Rev 1.4`.
    pub model: Option<Arc<str>>,
    pub kernel: Option<Arc<str>>,
    pub os: Option<Arc<str>>,
    pub pistats_version: &'static str,
}

#[derive(Debug, Clone, Default)]
pub struct CpuInfo {
    /// Busy time over the last interval, all cores, 0–100.
    pub usage_percent: f64,
    pub count_physical: Option<usize>,
    pub count_logical: usize,
    pub frequency_mhz: Frequency,
    pub per_core_usage: Vec<f64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Frequency {
    pub current: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// The fields of `/proc/meminfo` that pistats uses, in bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    pub total: u64,
    pub free: u64,
    pub available: u64,
    pub buffers: u64,
    /// `Cached` + `SReclaimable`, as psutil (and `free`) count it.
    pub cached: u64,
    pub swap_total: u64,
    pub swap_free: u64,
}

impl Memory {
    /// psutil's `used`: total minus free, buffers and cache.
    pub fn used(&self) -> u64 {
        self.total.saturating_sub(
            self.free
                .saturating_add(self.buffers)
                .saturating_add(self.cached),
        )
    }

    /// RAM not available to new programs, 0–100 (psutil's `percent`).
    pub fn used_percent(&self) -> f64 {
        ratio_percent(self.total.saturating_sub(self.available), self.total)
    }

    pub fn swap_used(&self) -> u64 {
        self.swap_total.saturating_sub(self.swap_free)
    }

    pub fn swap_used_percent(&self) -> f64 {
        ratio_percent(self.swap_used(), self.swap_total)
    }
}

/// `part / whole` in percent; 0 for an empty whole (no swap configured is 0 % used).
pub fn ratio_percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

#[derive(Debug, Clone, Default)]
pub struct DiskInfo {
    /// `None` when `/proc/self/mounts` could not be read.
    pub partitions: Option<Vec<Partition>>,
    pub io_counters: Option<DiskIo>,
    /// Bytes per second since the previous tick (`None` on the first tick).
    pub io_rates: Option<IoRates>,
    /// Per whole disk (`mmcblk0`, `sda`, `nvme0n1`): counters since boot and, for SD/eMMC,
    /// the card's identity and wear. Empty when `/proc/diskstats` was unreadable.
    pub devices: BTreeMap<Arc<str>, DiskDevice>,
}

/// One whole disk: its `/proc/diskstats` counters and, for an MMC device, its card.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DiskDevice {
    pub io: DiskIo,
    /// Bytes written today and on the last 30 days, from the history's ledger
    /// ([`crate::history::DiskDays`]); `None` until the history knows the device.
    pub written: Option<crate::history::Written>,
    /// `None` for disks that are not on the MMC bus (USB, NVMe) or whose card is unreadable.
    pub card: Option<Arc<MmcCard>>,
}

/// An SD card or eMMC as `drivers/mmc/core` describes it in `/sys/block/mmcblkN/device/`.
/// Strings are as the kernel prints them; wear is decoded by the methods.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MmcCard {
    /// `SD`, `MMC` (eMMC), `SDIO` or `SDcombo`.
    pub kind: String,
    /// Product name from the CID register, e.g. `SC32G`.
    pub name: Option<String>,
    /// JEDEC/SD-3C manufacturer ID as printed, e.g. `0x000003`.
    pub manufacturer_id: Option<String>,
    /// OEM/application ID as printed, e.g. `0x5344`.
    pub oem_id: Option<String>,
    /// Manufacturing date `MM/YYYY`.
    pub date: Option<String>,
    pub serial: Option<String>,
    /// eMMC `DEVICE_LIFE_TIME_EST_TYP_A` and `_B` (EXT_CSD 268/269); SD cards have none.
    pub life_time: Option<(u8, u8)>,
    /// eMMC `PRE_EOL_INFO` (EXT_CSD 267); SD cards have none.
    pub pre_eol_info: Option<u8>,
}

impl MmcCard {
    /// The upper bound of the worse of the two life time estimates, in percent of the rated
    /// erase cycles used: 0x01 is 0–10 % (10), 0x0A 90–100 % (100), 0x0B exceeded (also 100,
    /// see [`life_time_words`]). `None` when not reported or undefined (0x00).
    pub fn life_time_used_percent(&self) -> Option<u8> {
        let (a, b) = self.life_time?;
        [a, b].into_iter().filter_map(life_time_upper_percent).max()
    }

    /// `normal`, `warning` (80 % of reserved blocks consumed) or `urgent` (90 %).
    pub fn pre_eol_words(&self) -> Option<&'static str> {
        match self.pre_eol_info? {
            0x01 => Some("normal"),
            0x02 => Some("warning: 80 % of reserved blocks consumed"),
            0x03 => Some("urgent: 90 % of reserved blocks consumed"),
            _ => None,
        }
    }
}

/// JESD84-B51 `DEVICE_LIFE_TIME_EST_TYP_*`: 0x01..=0x0A are 10 % steps, 0x0B is "exceeded".
pub fn life_time_upper_percent(raw: u8) -> Option<u8> {
    match raw {
        0x01..=0x0A => Some(raw * 10),
        0x0B => Some(100),
        _ => None,
    }
}

/// One life time estimate in words: `0-10 % used` … `90-100 % used`, `exceeded`.
pub fn life_time_words(raw: u8) -> Option<String> {
    match raw {
        0x01..=0x0A => Some(format!("{}-{} % used", (raw - 1) * 10, raw * 10)),
        0x0B => Some("exceeded".to_owned()),
        _ => None,
    }
}

impl DiskInfo {
    /// Space used on `/`, 0–100.
    pub fn root_usage_percent(&self) -> Option<f64> {
        self.partitions
            .as_deref()?
            .iter()
            .find(|p| &*p.mountpoint == "/")
            .map(Partition::used_percent)
    }
}

/// One mounted block-device file system, with its space in bytes as psutil reports it:
/// `used` counts blocks in use, `free` what unprivileged users may still write. The names
/// are shared with the parsed mount table, which is kept until the mounts change.
#[derive(Debug, Clone, PartialEq)]
pub struct Partition {
    pub device: Arc<str>,
    pub mountpoint: Arc<str>,
    pub fstype: Arc<str>,
    pub total: u64,
    pub used: u64,
    pub free: u64,
}

impl Partition {
    /// `used / (used + free)`, like psutil (reserved blocks count as neither).
    pub fn used_percent(&self) -> f64 {
        ratio_percent(self.used, self.used.saturating_add(self.free))
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct DiskIo {
    pub read_count: u64,
    pub write_count: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
}

/// Disk rates in bytes per second.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct IoRates {
    pub read_bytes_per_sec: f64,
    pub write_bytes_per_sec: f64,
}

#[derive(Debug, Clone, Default)]
pub struct NetworkInfo {
    /// Sum over every interface except loopback; `None` when `/proc/net/dev` was unreadable.
    pub io_counters: Option<NetIo>,
    /// Bytes per second summed over every interface except loopback.
    pub rates: Option<NetRates>,
    pub interfaces: BTreeMap<Arc<str>, Interface>,
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

impl NetIo {
    /// Adds `other` field by field, saturating: a sum never wraps silently.
    pub fn saturating_add(&mut self, other: &NetIo) {
        self.bytes_sent = self.bytes_sent.saturating_add(other.bytes_sent);
        self.bytes_recv = self.bytes_recv.saturating_add(other.bytes_recv);
        self.packets_sent = self.packets_sent.saturating_add(other.packets_sent);
        self.packets_recv = self.packets_recv.saturating_add(other.packets_recv);
        self.errin = self.errin.saturating_add(other.errin);
        self.errout = self.errout.saturating_add(other.errout);
        self.dropin = self.dropin.saturating_add(other.dropin);
        self.dropout = self.dropout.saturating_add(other.dropout);
    }
}

/// Network rates in bytes per second.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NetRates {
    pub recv_bytes_per_sec: f64,
    pub sent_bytes_per_sec: f64,
}

#[derive(Debug, Clone)]
pub struct Interface {
    pub is_up: bool,
    pub mac: Option<Arc<str>>,
    pub mtu: Option<u32>,
    pub speed_mbps: Option<u32>,
    /// Read on full ticks; shared by the documents until the next one.
    pub addresses: Arc<[Address]>,
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

#[derive(Debug, Clone, Default)]
pub struct ProcessInfo {
    /// `None` when the process table could not be read.
    pub total_count: Option<usize>,
    pub top_cpu_usage: Vec<TopProcess>,
    /// The processes with the most resident memory, largest first (same item shape).
    pub top_memory_usage: Vec<TopProcess>,
    /// When these figures were scanned: the process table is scanned only while someone
    /// watches (see [`crate::hub`]), other ticks repeat the last scan. `None` in documents
    /// built without a collector.
    pub scanned_at: Option<SystemTime>,
}

#[derive(Debug, Clone)]
pub struct TopProcess {
    pub pid: u32,
    /// `None` when `hide_process_names` is set.
    pub name: Option<String>,
    /// Percent of one core, like psutil (can exceed 100 on multi-core machines).
    pub cpu_percent: f64,
    /// Resident memory in percent of total RAM; `None` when unreadable.
    pub memory_percent: Option<f64>,
}

#[derive(Debug, Clone, Default)]
pub struct TemperatureInfo {
    pub pi_cpu_celsius: Option<f64>,
    /// psutil layout: sensor chip name → readings.
    /// Read on full ticks; shared by the documents until the next one.
    pub sensors: Arc<BTreeMap<String, Vec<SensorReading>>>,
    /// Fans: hwmon tachometers (`fan*_input`, e.g. the Pi 5 fan) and fan cooling devices
    /// (`pwm-fan`, `gpio-fan`, e.g. Pi 4 fan shims and the PoE HAT); one entry per fan.
    pub fans: Arc<[Fan]>,
}

/// One fan. A fan driven by `pwm-fan` shows up both as an hwmon device (speed, PWM duty)
/// and as a thermal cooling device (state); both halves are merged into one entry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fan {
    /// hwmon chip name (`pwmfan`) or, without one, the cooling device type (`pwm-fan`).
    pub name: String,
    /// `fan1_label`, else `fan1`; `cooling_device0` for a cooling device alone.
    pub label: String,
    /// Tachometer reading; `None` without a tachometer.
    pub rpm: Option<f64>,
    /// PWM duty cycle (`pwm1`, 0–255) in percent.
    pub pwm_percent: Option<f64>,
    /// Thermal cooling state, 0 (off) to `max_state` (full speed).
    pub cooling_state: Option<u64>,
    pub cooling_max_state: Option<u64>,
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
    /// Raw `get_throttled` bit field; serialized as the firmware's tools print it, `0x50005`.
    #[serde(serialize_with = "hex_bits")]
    pub throttled_raw: Option<u32>,
    pub throttled: Option<ThrottleFlags>,
    pub core_volts: Option<f64>,
    pub arm_clock_mhz: Option<f64>,
    pub core_clock_mhz: Option<f64>,
    pub revision: Option<Arc<str>>,
    pub serial: Option<Arc<str>>,
    /// Where the values came from: `sysfs` or `vcgencmd`.
    pub source: &'static str,
    /// Whether the board has an under-voltage detector (see [`ThrottleFlags`]).
    pub undervoltage_detection: bool,
    /// Pi 5 PMIC rails (voltage and current), refreshed with the other firmware values;
    /// empty on other boards or when the firmware does not answer. Shared by the readings
    /// until the next `vcgencmd` round.
    pub pmic: Arc<[PmicRail]>,
}

/// `get_throttled`'s bits as `vcgencmd get_throttled` prints them (`0x50005`), written
/// straight into the output.
fn hex_bits<S: serde::Serializer>(bits: &Option<u32>, out: S) -> Result<S::Ok, S::Error> {
    match bits {
        Some(bits) => out.collect_str(&format_args!("{bits:#x}")),
        None => out.serialize_none(),
    }
}

/// One PMIC rail of a Pi 5, from `vcgencmd pmic_read_adc` (`VDD_CORE_V volt(…)=0.72V`,
/// `VDD_CORE_A current(…)=2.91A`): the `_V` and `_A` channels of a rail joined.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PmicRail {
    /// The channel name without its `_V`/`_A` suffix, e.g. `VDD_CORE`, `EXT5V`.
    pub rail: String,
    pub volts: Option<f64>,
    pub amps: Option<f64>,
}

/// `get_throttled` decoded. The two under-voltage flags are `None` on boards without an
/// under-voltage detector (Pi Zero / Zero W, Compute Modules): a zero bit there means "not
/// measured", not "supply OK".
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Default)]
pub struct ThrottleFlags {
    pub under_voltage: Option<bool>,
    pub arm_frequency_capped: bool,
    pub throttled: bool,
    pub soft_temperature_limit: bool,
    pub under_voltage_occurred: Option<bool>,
    pub arm_frequency_capping_occurred: bool,
    pub throttling_occurred: bool,
    pub soft_temperature_limit_occurred: bool,
}

/// What pistats knows about the watched interface.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Connectivity {
    /// `networkmanager`, `kernel` or `none`.
    pub source: &'static str,
    pub interface: String,
    /// NetworkManager device state name (`activated`, `disconnected`, …) or kernel operstate.
    pub state: String,
    pub connected: bool,
    pub addresses: Vec<String>,
    /// Why the interface is not connected, in NetworkManager's words (`supplicant timeout`,
    /// `carrier lost`, …); `None` while connected or when the source does not say.
    pub reason: Option<String>,
    /// Wireless link detail; `None` when the interface is not wireless (or absent).
    pub wifi: Option<Wifi>,
}

/// Written out so that `clone_from` keeps the text buffers it already has: the collector
/// refreshes a copy with the kernel's Wi-Fi figures every tick (see [`super::live_wifi`]).
impl Clone for Connectivity {
    fn clone(&self) -> Connectivity {
        Connectivity {
            source: self.source,
            interface: self.interface.clone(),
            state: self.state.clone(),
            connected: self.connected,
            addresses: self.addresses.clone(),
            reason: self.reason.clone(),
            wifi: self.wifi.clone(),
        }
    }

    fn clone_from(&mut self, other: &Connectivity) {
        // Taken apart, so that a field added later cannot be left out here.
        let Connectivity {
            source,
            interface,
            state,
            connected,
            addresses,
            reason,
            wifi,
        } = other;
        self.source = source;
        self.interface.clone_from(interface);
        self.state.clone_from(state);
        self.connected = *connected;
        self.addresses.clone_from(addresses);
        self.reason.clone_from(reason);
        self.wifi.clone_from(wifi);
    }
}

/// The Wi-Fi link of a wireless interface. Every field is `None` when the source does not
/// know it (not associated, or the kernel fallback, which only knows signal and quality):
/// never a guess.
///
/// Integers keep the whole view `Eq`, so the watcher can tell a change from a repeat.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Wifi {
    /// Network name, lossily decoded from its bytes.
    pub ssid: Option<String>,
    /// The access point's MAC address, upper case (`AA:BB:CC:DD:EE:FF`).
    pub bssid: Option<String>,
    /// Received signal level in dBm (kernel only: NetworkManager reports a percentage).
    pub signal_dbm: Option<i32>,
    /// Link quality, 0–100.
    pub quality_percent: Option<u8>,
    pub frequency_mhz: Option<u32>,
    /// `2.4 GHz`, `5 GHz` or `6 GHz`, from the frequency.
    pub band: Option<&'static str>,
    /// Transmit bit rate; kept in kbit/s as NetworkManager reports it, shown in Mbit/s.
    #[serde(rename = "bitrate_mbps", serialize_with = "kbps_as_mbps")]
    pub bitrate_kbps: Option<u32>,
    /// `open`, `WEP`, `WPA`, `WPA2`, `WPA3`, `WPA2/WPA3`, `OWE`, with `Enterprise` for 802.1X.
    pub security: Option<String>,
}

/// Written out for `clone_from`, as [`Connectivity`]'s.
impl Clone for Wifi {
    fn clone(&self) -> Wifi {
        Wifi {
            ssid: self.ssid.clone(),
            bssid: self.bssid.clone(),
            signal_dbm: self.signal_dbm,
            quality_percent: self.quality_percent,
            frequency_mhz: self.frequency_mhz,
            band: self.band,
            bitrate_kbps: self.bitrate_kbps,
            security: self.security.clone(),
        }
    }

    fn clone_from(&mut self, other: &Wifi) {
        let Wifi {
            ssid,
            bssid,
            signal_dbm,
            quality_percent,
            frequency_mhz,
            band,
            bitrate_kbps,
            security,
        } = other;
        self.ssid.clone_from(ssid);
        self.bssid.clone_from(bssid);
        self.signal_dbm = *signal_dbm;
        self.quality_percent = *quality_percent;
        self.frequency_mhz = *frequency_mhz;
        self.band = *band;
        self.bitrate_kbps = *bitrate_kbps;
        self.security.clone_from(security);
    }
}

impl Wifi {
    pub fn bitrate_mbps(&self) -> Option<f64> {
        self.bitrate_kbps.map(|k| f64::from(k) / 1000.0)
    }
}

fn kbps_as_mbps<S: serde::Serializer>(kbps: &Option<u32>, s: S) -> Result<S::Ok, S::Error> {
    match kbps {
        Some(k) => s.serialize_some(&(f64::from(*k) / 1000.0)),
        None => s.serialize_none(),
    }
}
