//! The collector: builds one typed [`StatsDocument`] per tick from `getifaddrs` (interface
//! addresses) and direct `/proc`/`/sys` reads (CPU usage: [`cpu`]; processes: [`processes`];
//! memory, I/O counters, mounts, sensors, battery: [`procfs`]; fans: [`fans`]; SD/eMMC cards:
//! [`storage`]; Pi firmware state: [`pi`]; the watched interface's Wi-Fi figures:
//! [`live_wifi`]). [`wire`] turns it into the seed JSON format.
//!
//! It is synchronous on purpose: it runs on its own thread (see [`crate::hub`]) so file reads
//! never stall the async runtime. CPU usage needs a previous sample, so [`Collector::new`]
//! primes one. Nothing read here may panic, whatever the files contain; a source that cannot
//! be read is `None` and listed in [`StatsDocument::degraded`].

pub mod cpu;
pub mod fans;
#[cfg(test)]
mod fuzz;
pub(crate) mod ifaddrs;
pub mod live_wifi;
pub mod model;
pub mod pi;
pub mod processes;
pub mod procfs;
pub mod storage;
pub mod wire;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use sysinfo::{CpuRefreshKind, System};

use crate::config::Config;
use model::*;

/// How long the ranking of processes by memory is reused. Ranking needs every process's
/// resident size (a `statm` read each); memory hogs change slowly, so that is done this often
/// and, in between, only the ranked processes are read again.
const MEMORY_RANK_MAX_AGE: Duration = Duration::from_secs(10);

/// How long a CPU frequency read from /proc/cpuinfo is reused.
const CPUINFO_FREQUENCY_MAX_AGE: Duration = Duration::from_secs(5);

/// Static facts read once at start.
#[derive(Debug, Clone)]
struct HostFacts {
    hostname: Option<Arc<str>>,
    model: Option<Arc<str>>,
    kernel: Option<Arc<str>>,
    os: Option<Arc<str>>,
    count_physical: Option<usize>,
}

/// Counters of the previous tick, for rates.
#[derive(Debug, Clone)]
struct Previous {
    at: Instant,
    disk: Option<DiskIo>,
    /// In `/proc/net/dev`'s order, which the next tick's mostly repeats.
    net: Vec<(Arc<str>, NetIo)>,
}

/// Inputs of a collection that come from the rest of the daemon.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub connected_clients: u64,
    /// Shared with every document until it changes (or the kernel's Wi-Fi figures do).
    pub connectivity: Option<Arc<Connectivity>>,
    /// Collect the whole document this tick. Otherwise only what history, events and alerts
    /// read is collected (CPU and memory use, I/O counters and rates, mounts, the SoC
    /// temperature, throttle flags, Wi-Fi signal) and the rest repeats the last full
    /// collection's figures ([`Details`]; the processes with their `scanned_at`). The first
    /// collection is always full. Nobody watching means nobody reads the rest, and the process
    /// scan alone is most of a tick's cost.
    pub full: bool,
}

/// The parts of a document only a reader needs, kept from the last full collection for the
/// ticks that do not collect them (see [`Context::full`]): slow-moving or static figures whose
/// reading costs several files or a netlink dump each. What holds heap data is shared with the
/// documents (an [`Arc`]), so repeating it copies no list.
#[derive(Debug, Clone)]
struct Details {
    frequency: Frequency,
    boot_time: Option<SystemTime>,
    /// Link facts and addresses per interface (counters and rates are always fresh).
    interfaces: BTreeMap<Arc<str>, Interface>,
    /// When `interfaces`' link facts and addresses were read (see [`Collector::links_current`]).
    links_read: Instant,
    sensors: Arc<BTreeMap<String, Vec<SensorReading>>>,
    fans: Arc<[Fan]>,
    battery: Option<BatteryInfo>,
    /// The firmware's figures other than the throttle flags (see [`pi::PiReader::read_throttle`]).
    pi: Option<PiHealth>,
    processes: Arc<ProcessInfo>,
}

/// Makes `map` hold one entry per name in `source`, valued by `value(position, name, item)`
/// in `source`'s order (a name listed twice keeps its first key and its last value). A
/// `BTreeMap` keeps no nodes through a `clear`, so entries already there are updated in place
/// and only names that come or go change its nodes: a tick whose disks or interfaces are the
/// last tick's allocates nothing.
fn refill<T, V>(
    map: &mut BTreeMap<Arc<str>, V>,
    source: &[(Arc<str>, T)],
    mut value: impl FnMut(usize, &Arc<str>, &T) -> V,
) {
    for (at, (name, item)) in source.iter().enumerate() {
        let fresh = value(at, name, item);
        match map.get_mut(&**name) {
            Some(slot) => *slot = fresh,
            None => {
                map.insert(name.clone(), fresh);
            }
        }
    }
    // The names are shared from tick to tick: a pointer comparison settles most.
    map.retain(|kept, _| {
        source
            .iter()
            .any(|(name, _)| Arc::ptr_eq(name, kept) || name == kept)
    });
}

/// The kernel's link and address notifications, where `sys_root` shows the running kernel's
/// interfaces (a fixture tree's files do not change with them).
fn subscribe_link_changes(sys_root: &std::path::Path) -> Option<ifaddrs::LinkChanges> {
    if sys_root != std::path::Path::new("/sys") {
        return None;
    }
    ifaddrs::LinkChanges::open()
        .inspect_err(|err| {
            tracing::debug!(
                "no rtnetlink notifications ({err}): interfaces are read on every full tick"
            );
        })
        .ok()
}

/// The `/proc` files read on every tick, kept open (see [`procfs::KeptFile`]).
struct ProcFiles {
    /// The running kernel's `/proc/stat`, whatever `proc_root` is: CPU figures come from the
    /// same kernel as the process scan (which lists the machine's own `/proc`), as they did
    /// when sysinfo computed them.
    cpu_stat: procfs::KeptFile,
    meminfo: procfs::KeptFile,
    loadavg: procfs::KeptFile,
    /// `uptime`, until it is found to be procfs's: that file is the kernel's boot-time clock,
    /// which is then read instead (see [`Self::uptime`]).
    uptime: Option<procfs::KeptFile>,
    uptime_checked: bool,
    stat: procfs::KeptFile,
    net_dev: procfs::KeptFile,
    diskstats: procfs::KeptFile,
    mounts: procfs::MountTable,
    /// Whether `loadavg` is procfs's, found at its first read: only then is its last field
    /// the last PID of this process's namespace (procfs renders it for the reader, whichever
    /// mount it is read through), which the process scan relies on.
    loadavg_is_procfs: Option<bool>,
}

impl ProcFiles {
    fn new(proc_root: &std::path::Path) -> ProcFiles {
        let records = |name: &str| procfs::KeptFile::records(proc_root.join(name));
        let whole = |name: &str| procfs::KeptFile::whole(proc_root.join(name));
        ProcFiles {
            cpu_stat: procfs::KeptFile::whole(PathBuf::from("/proc/stat")),
            meminfo: whole("meminfo"),
            loadavg: whole("loadavg"),
            uptime: Some(whole("uptime")),
            uptime_checked: false,
            stat: whole("stat"),
            net_dev: records("net/dev"),
            diskstats: records("diskstats"),
            mounts: procfs::MountTable::new(proc_root.join("self/mounts")),
            loadavg_is_procfs: None,
        }
    }

    /// Time since boot. procfs renders `uptime` from `CLOCK_BOOTTIME` (in the reader's time
    /// namespace, as `clock_gettime` is), so once the file is found to be procfs's it is let go
    /// and the clock read instead: no read a tick. A fixture tree's file is read on every
    /// call; one that cannot be read or parsed gives the clock too.
    fn uptime(&mut self) -> Duration {
        let Some(file) = self.uptime.as_mut() else {
            return boot_clock();
        };
        let read = file.read_text().and_then(|t| procfs::parse_uptime(&t));
        if let (false, Some(open)) = (self.uptime_checked, file.file()) {
            self.uptime_checked = true;
            if procfs::is_procfs(open) {
                self.uptime = None;
            }
        }
        read.unwrap_or_else(boot_clock)
    }

    /// The load averages and the last PID handed out, from one read of `loadavg` (each
    /// `None` when unreadable; the last PID also when the file is not procfs's).
    fn loadavg(&mut self) -> (Option<[f64; 3]>, Option<u32>) {
        let Some(text) = self.loadavg.read_bytes() else {
            return (None, None);
        };
        let (load, last_pid) = procfs::parse_loadavg_line(text);
        let file = self.loadavg.file();
        let kernel = *self
            .loadavg_is_procfs
            .get_or_insert_with(|| file.is_some_and(procfs::is_procfs));
        (load, last_pid.filter(|_| kernel))
    }
}

/// How often a tick that is not full looks for the SoC's thermal zone while it has none.
const ZONE_RELIST: Duration = Duration::from_secs(60);

/// The longest a full tick repeats the interfaces' link facts and addresses without an
/// rtnetlink notification: a safety net for a change the kernel does not announce (a driver
/// that renegotiates its speed without a carrier change, say).
const LINKS_MAX_AGE: Duration = Duration::from_secs(60);

pub struct Collector {
    system: System,
    /// CPU usage, aggregate and per core; its last sample also spans the processes' shares.
    /// sysinfo keeps only the CPU list (and the frequency where cpufreq is missing).
    cpu: cpu::CpuMeter,
    files: ProcFiles,
    sys_root: PathBuf,
    top_processes: usize,
    hide_process_names: bool,
    facts: HostFacts,
    pi: pi::PiReader,
    previous: Option<Previous>,
    cpufreq: procfs::CpuFreq,
    /// The last frequency read from /proc/cpuinfo (machines without cpufreq), and when.
    cpuinfo_frequency: Option<(Instant, u64)>,
    /// PIDs with the most resident memory at the last ranking, and when it was made.
    memory_rank: Option<(Instant, Vec<u32>)>,
    /// Every process's CPU time, scanned on full ticks.
    process_table: processes::ProcessTable,
    /// The last full collection's details, repeated on ticks that are not full.
    details: Option<Details>,
    /// The SoC's thermal zone's `temp`, found on full ticks and read alone on the others.
    cpu_zone: Option<procfs::KeptFile>,
    /// When the thermal zones were last listed (to find `cpu_zone`).
    zones_listed: Instant,
    /// The sysfs directories of sensors, fans and batteries, listed once a minute.
    listings: procfs::Listings,
    /// Whether a `/proc/diskstats` name is a whole disk (`SYS/block/NAME` exists): a `stat`
    /// per disk and tick otherwise. Forgotten on full ticks, so a re-plugged disk is seen.
    /// The names are the documents' (shared, not copied every tick).
    whole_disk: BTreeMap<Arc<str>, bool>,
    /// This tick's whole disks and their counters, refilled every tick.
    disks: Vec<(Arc<str>, DiskIo)>,
    /// The counters of the tick before [`Previous`]'s, refilled with the next tick's.
    net_spare: Vec<(Arc<str>, NetIo)>,
    /// The watched interface's state with the kernel's Wi-Fi figures.
    live_wifi: live_wifi::LiveWifi,
    cards: storage::CardCache,
    /// Link and address notifications from the kernel, so that a full tick reads the
    /// interfaces' link facts (four sysfs files each) and addresses (a `getifaddrs` dump) only
    /// after something changed. `None` when `sys_root` is not the running kernel's `/sys`, or
    /// the subscription failed: then every full tick reads them.
    link_changes: Option<ifaddrs::LinkChanges>,
}

impl Collector {
    /// Creates a collector and primes the CPU and process samples that usage needs.
    pub fn new(config: &Config) -> Collector {
        let mut system = System::new();
        system.refresh_cpu_list(CpuRefreshKind::nothing().with_cpu_usage().with_frequency());
        let pi = pi::PiReader::new(&config.proc_root, &config.sys_root, &config.vcgencmd);
        let facts = HostFacts {
            hostname: System::host_name().map(Arc::from),
            model: pi.model().map(Arc::from),
            kernel: System::kernel_version().map(Arc::from),
            os: System::long_os_version().map(Arc::from),
            count_physical: System::physical_core_count(),
        };
        let cpufreq = procfs::CpuFreq::new(&config.sys_root, system.cpus().len());
        let mut files = ProcFiles::new(&config.proc_root);
        let mut cpu = cpu::CpuMeter::default();
        cpu.sample(files.cpu_stat.read_bytes(), Instant::now());
        // The processes run from the running kernel's `/proc`, whatever `proc_root` is.
        let mut process_table = processes::ProcessTable::new(std::path::Path::new("/proc"));
        let (_, last_pid) = files.loadavg();
        process_table.scan(last_pid, cpu.total_ticks(), system.cpus().len());
        Collector {
            system,
            cpu,
            files,
            sys_root: config.sys_root.clone(),
            top_processes: config.top_processes,
            hide_process_names: config.hide_process_names,
            facts,
            pi,
            previous: None,
            cpufreq,
            cpuinfo_frequency: None,
            memory_rank: None,
            process_table,
            details: None,
            cpu_zone: None,
            zones_listed: Instant::now(),
            listings: procfs::Listings::default(),
            whole_disk: BTreeMap::new(),
            disks: Vec::new(),
            net_spare: Vec::new(),
            live_wifi: live_wifi::LiveWifi::new(&config.proc_root),
            cards: storage::CardCache::default(),
            link_changes: subscribe_link_changes(&config.sys_root),
        }
    }

    /// Whether the interfaces' link facts and addresses of the last full tick still hold: on
    /// ticks that are not full (nobody looks at them, and history needs only the counters),
    /// and on full ticks when the kernel announced no link or address change since they were
    /// read, within [`LINKS_MAX_AGE`], and `io` names no interface they lack.
    fn links_current(&self, full: bool, io: Option<&[(Arc<str>, NetIo)]>, now: Instant) -> bool {
        let Some(details) = &self.details else {
            return false;
        };
        if !full {
            return true;
        }
        // Drained on every full tick, so that a notification counts once.
        let changed = self.link_changes.as_ref().is_none_or(|c| c.pending());
        !changed
            && now.saturating_duration_since(details.links_read) < LINKS_MAX_AGE
            && io.is_some_and(|io| {
                io.iter()
                    .all(|(name, _)| details.interfaces.contains_key(name))
            })
    }

    /// Collects one snapshot: complete when `ctx.full` or on the first call, else with the
    /// last full collection's [`Details`].
    pub fn collect(&mut self, ctx: Context) -> StatsDocument {
        let mut document = StatsDocument::default();
        self.collect_into(ctx, &mut document);
        document
    }

    /// [`collect`](Collector::collect) into a document of an earlier tick, replacing all of
    /// it while keeping its buffers (the per-core figures, partitions, and the disk and
    /// interface maps while their names stay the same): a tick that no one watches then
    /// allocates nothing.
    pub fn collect_into(&mut self, ctx: Context, document: &mut StatsDocument) {
        let now = Instant::now();
        let wall = SystemTime::now();
        let full = ctx.full || self.details.is_none();
        if full {
            self.whole_disk.clear();
        }
        let degraded = &mut document.degraded;
        degraded.clear();
        let mut check = |source: Source, read: bool| {
            if !read {
                degraded.push(source);
            }
        };
        self.cpu(full, now, &mut document.cpu);
        let memory = self
            .files
            .meminfo
            .read_bytes()
            .and_then(procfs::parse_meminfo);
        check(Source::Memory, memory.is_some());
        let sys_root = &self.sys_root;
        let whole_disk = &mut self.whole_disk;
        let disks = &mut self.disks;
        let disks_read = self.files.diskstats.read_bytes().map(|t| {
            procfs::parse_diskstats_per_disk_into(t, disks, |name| {
                if let Some((name, &whole)) = whole_disk.get_key_value(name) {
                    return whole.then(|| name.clone());
                }
                let whole = !name.contains('/') && sys_root.join("block").join(name).exists();
                let name: Arc<str> = Arc::from(name);
                whole_disk.insert(name.clone(), whole);
                whole.then_some(name)
            })
        });
        if disks_read.is_none() {
            disks.clear();
        }
        let disk_io = disks_read.map(|()| procfs::sum_disks(disks));
        check(Source::DiskIo, disk_io.is_some());
        let known = self.previous.as_ref().map_or(&[][..], |p| &p.net);
        // Read into the counters of the tick before the last, which the rates no longer need.
        let mut net_now = std::mem::take(&mut self.net_spare);
        let net_read = self
            .files
            .net_dev
            .read_bytes()
            .map(|t| procfs::parse_net_dev_into(t, known, &mut net_now));
        if net_read.is_none() {
            net_now.clear();
        }
        let net_io = net_read.map(|()| &net_now[..]);
        check(Source::Network, net_io.is_some());
        let elapsed = self
            .previous
            .as_ref()
            .map(|p| now.duration_since(p.at).as_secs_f64())
            .filter(|s| *s > 0.0);
        self.disk(disk_io, elapsed, &mut document.disk);
        check(Source::Partitions, document.disk.partitions.is_some());
        let links_current = self.links_current(full, net_io, now);
        self.network(net_io, elapsed, links_current, &mut document.network);
        // One read a tick for the load averages and, before the scan, the process scan's last
        // PID (a process created after this read changes it for the next scan).
        let (load_average, last_pid) = self.files.loadavg();
        let processes = match &self.details {
            Some(last) if !full => last.processes.clone(),
            _ => Arc::new(self.processes(last_pid, memory.map(|m| m.total), wall)),
        };
        check(Source::Processes, processes.total_count.is_some());
        let temperature = self.temperature(full);
        let previous = self.previous.replace(Previous {
            at: now,
            disk: disk_io,
            net: net_now,
        });
        self.net_spare = previous.map(|p| p.net).unwrap_or_default();

        let boot_time = match &self.details {
            Some(last) if !full => last.boot_time,
            _ => self
                .files
                .stat
                .read_text()
                .and_then(|t| procfs::parse_btime(&t)),
        };
        check(Source::BootTime, boot_time.is_some());
        check(Source::LoadAverage, load_average.is_some());
        let uptime = self.files.uptime();
        let (battery, pi) = match &self.details {
            Some(last) if !full => (
                last.battery.clone(),
                match &last.pi {
                    Some(pi) => self.pi.read_throttle(pi),
                    None => self.pi.read(),
                },
            ),
            _ => (
                procfs::read_battery(&self.sys_root, &mut self.listings),
                self.pi.read(),
            ),
        };
        if full {
            self.details = Some(Details {
                frequency: document.cpu.frequency_mhz,
                boot_time,
                interfaces: document.network.interfaces.clone(),
                links_read: match &self.details {
                    Some(last) if links_current => last.links_read,
                    _ => now,
                },
                sensors: temperature.sensors.clone(),
                fans: temperature.fans.clone(),
                battery: battery.clone(),
                pi: pi.clone(),
                processes: processes.clone(),
            });
        }
        document.collected_at = wall;
        document.system = SystemInfo {
            boot_time,
            uptime,
            load_average,
            hostname: self.facts.hostname.clone(),
            model: self.facts.model.clone(),
            kernel: self.facts.kernel.clone(),
            os: self.facts.os.clone(),
            pistats_version: env!("CARGO_PKG_VERSION"),
        };
        document.connected_clients = ctx.connected_clients;
        document.memory = memory;
        document.processes = processes;
        document.temperature = temperature;
        document.battery = battery;
        document.pi = pi;
        let recycled = document.connectivity.take();
        document.connectivity = ctx.connectivity.map(|c| self.live_wifi.apply(c, recycled));
    }

    /// The SoC temperature on every tick; the other sensors and the fans on full ticks. A full
    /// tick lists the thermal zones again and keeps the SoC zone's `temp` open for the others.
    fn temperature(&mut self, full: bool) -> TemperatureInfo {
        if !full && self.details.is_some() {
            let mut celsius = self.read_cpu_zone();
            // The zone was not there at the last full tick (a thermal driver loaded late) or
            // went away (renumbered): look again, at most every ZONE_RELIST, so that history,
            // events and alerts get the temperature without anyone watching.
            if celsius.is_none() && self.zones_listed.elapsed() >= ZONE_RELIST {
                self.listings.forget();
                self.list_zones();
                celsius = self.read_cpu_zone();
            }
            let last = self.details.as_ref().expect("checked");
            return TemperatureInfo {
                pi_cpu_celsius: celsius,
                sensors: Arc::clone(&last.sensors),
                fans: Arc::clone(&last.fans),
            };
        }
        let (zones, cpu_zone) = self.list_zones();
        TemperatureInfo {
            pi_cpu_celsius: cpu_zone.map(|z| zones[z].1),
            sensors: Arc::new(procfs::read_sensors(
                &self.sys_root,
                &zones,
                &mut self.listings,
            )),
            fans: fans::read_fans(&self.sys_root, &mut self.listings).into(),
        }
    }

    /// Lists the thermal zones and keeps the SoC's `temp` open for the ticks that read it
    /// alone; returns every zone's (type, °C) and which one is the SoC's.
    fn list_zones(&mut self) -> (Vec<(String, f64)>, Option<usize>) {
        self.zones_listed = Instant::now();
        let zones = procfs::thermal_zones(&self.sys_root, &mut self.listings);
        let cpu_zone = procfs::pi_cpu_zone(zones.iter().map(|(kind, _, _)| kind.as_str()));
        self.cpu_zone = cpu_zone.map(|z| procfs::KeptFile::whole(zones[z].2.clone()));
        let zones = zones.into_iter().map(|(k, c, _)| (k, c)).collect();
        (zones, cpu_zone)
    }

    /// The SoC temperature from the kept zone file, in °C.
    fn read_cpu_zone(&mut self) -> Option<f64> {
        self.cpu_zone
            .as_mut()
            .and_then(procfs::KeptFile::read_f64)
            .map(|milli| milli / 1000.0)
    }

    fn cpu(&mut self, full: bool, now: Instant, info: &mut CpuInfo) {
        self.cpu.sample(self.files.cpu_stat.read_bytes(), now);
        info.frequency_mhz = match &self.details {
            Some(last) if !full => last.frequency,
            _ => self.frequency(),
        };
        info.usage_percent = f64::from(self.cpu.usage_percent());
        info.count_physical = self.facts.count_physical;
        info.count_logical = self.system.cpus().len();
        info.per_core_usage.clear();
        info.per_core_usage
            .extend(self.cpu.per_core().map(f64::from));
    }

    fn frequency(&mut self) -> Frequency {
        let (current, min, max) = self.cpufreq.read();
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
        Frequency { current, min, max }
    }

    /// The disk section from this tick's `disks`; `info` is an earlier tick's, refilled.
    fn disk(&mut self, io: Option<DiskIo>, elapsed: Option<f64>, info: &mut DiskInfo) {
        let previous = self.previous.as_ref().and_then(|p| p.disk);
        let io_rates = match (io, previous, elapsed) {
            (Some(now), Some(before), Some(secs)) => Some(IoRates {
                read_bytes_per_sec: rate(now.read_bytes, before.read_bytes, secs),
                write_bytes_per_sec: rate(now.write_bytes, before.write_bytes, secs),
            }),
            _ => None,
        };
        let mut partitions = info.partitions.take().unwrap_or_default();
        info.partitions = self
            .files
            .mounts
            .measure_into(&mut partitions)
            .then_some(partitions);
        info.io_counters = io;
        info.io_rates = io_rates;
        refill(&mut info.devices, &self.disks, |_, name, io| DiskDevice {
            io: *io,
            card: self.cards.card(&self.sys_root, name),
            written: None,
        });
    }

    /// Counters and rates per interface and in all, on every tick. Link facts and addresses
    /// (four `/sys` files an interface and a netlink dump) are the last full tick's when
    /// `links_current` (see [`Self::links_current`]), else read; an interface that appeared
    /// since is read in any case.
    fn network(
        &mut self,
        io: Option<&[(Arc<str>, NetIo)]>,
        elapsed: Option<f64>,
        links_current: bool,
        info: &mut NetworkInfo,
    ) {
        let Some(io) = io else {
            info.io_counters = None;
            info.rates = None;
            info.interfaces.clear();
            return;
        };
        let last = self.details.as_ref().filter(|_| links_current);
        let mut addresses_by_interface = match last {
            Some(_) => Default::default(),
            None => ifaddrs::interface_addresses(),
        };
        let previous = self.previous.as_ref().map_or(&[][..], |p| &p.net);
        let net_rates = |at: usize, name: &Arc<str>, now: &NetIo| -> Option<NetRates> {
            let (_, before) = procfs::named(previous, name.as_bytes(), at)?;
            let secs = elapsed?;
            Some(NetRates {
                recv_bytes_per_sec: rate(now.bytes_recv, before.bytes_recv, secs),
                sent_bytes_per_sec: rate(now.bytes_sent, before.bytes_sent, secs),
            })
        };
        let mut total = NetIo::default();
        let mut total_rates: Option<NetRates> = elapsed.map(|_| NetRates::default());
        let sys_root = &self.sys_root;
        refill(&mut info.interfaces, io, |at, name, counters| {
            let rates = net_rates(at, name, counters);
            if &**name != "lo" {
                total.saturating_add(counters);
                if let Some(t) = total_rates.as_mut() {
                    let r = rates.unwrap_or_default();
                    t.recv_bytes_per_sec += r.recv_bytes_per_sec;
                    t.sent_bytes_per_sec += r.sent_bytes_per_sec;
                }
            }
            if let Some(known) = last.and_then(|l| l.interfaces.get(name)) {
                return Interface {
                    io_counters: *counters,
                    rates,
                    ..known.clone()
                };
            }
            let (is_up, mtu, speed_mbps, mac) = procfs::read_link(sys_root, name);
            let mut addresses: Vec<Address> = addresses_by_interface
                .remove(&**name)
                .unwrap_or_default()
                .into_iter()
                .map(|(address, prefix_len)| Address {
                    family: if address.is_ipv4() { "ipv4" } else { "ipv6" },
                    address: address.to_string(),
                    prefix_len,
                })
                .collect();
            addresses.sort();
            Interface {
                is_up,
                mac: mac.map(Arc::from),
                mtu,
                speed_mbps,
                addresses: addresses.into(),
                io_counters: *counters,
                rates,
            }
        });
        info.io_counters = Some(total);
        info.rates = total_rates;
    }

    fn processes(
        &mut self,
        last_pid: Option<u32>,
        total_memory: Option<u64>,
        wall: SystemTime,
    ) -> ProcessInfo {
        let rank_memory = self
            .memory_rank
            .as_ref()
            .is_none_or(|(at, _)| at.elapsed() >= MEMORY_RANK_MAX_AGE);
        self.process_table
            .scan(last_pid, self.cpu.total_ticks(), self.system.cpus().len());
        let table = &self.process_table;
        if rank_memory {
            let mut by_memory: Vec<_> = table.processes().collect();
            by_memory.sort_by(|a, b| b.rss_pages.cmp(&a.rss_pages).then(a.pid.cmp(&b.pid)));
            let pids = by_memory
                .iter()
                .take(self.top_processes)
                .map(|p| p.pid)
                .collect();
            self.memory_rank = Some((Instant::now(), pids));
        }
        // From the scan's `stat` line (its `rss` is `statm`'s resident figure): no file per
        // listed process. `None` when total memory is unknown.
        let page_size = procfs::page_size();
        let rss_percent = |p: &processes::Process| {
            total_memory.map(|total| ratio_percent(p.rss_pages.saturating_mul(page_size), total))
        };
        let item = |p: &processes::Process, memory_percent: Option<f64>| TopProcess {
            pid: p.pid,
            name: (!self.hide_process_names).then(|| p.name.clone()),
            cpu_percent: f64::from(p.cpu_usage),
            memory_percent,
        };
        // The ranked processes that still run, with their current size, largest first.
        let mut top_memory_usage: Vec<TopProcess> = self
            .memory_rank
            .as_ref()
            .map(|(_, pids)| pids.as_slice())
            .unwrap_or_default()
            .iter()
            .filter_map(|&pid| table.get(pid))
            .map(|p| item(p, rss_percent(p)))
            .collect();
        top_memory_usage.sort_by(|a, b| {
            b.memory_percent
                .unwrap_or(-1.0)
                .total_cmp(&a.memory_percent.unwrap_or(-1.0))
                .then(a.pid.cmp(&b.pid))
        });
        // Threads are not listed; kernel threads count, as in psutil. At least this process
        // exists: an empty table means /proc could not be listed.
        let mut top: Vec<_> = table.processes().collect();
        let total_count = (!top.is_empty()).then_some(top.len());
        top.sort_by(|a, b| b.cpu_usage.total_cmp(&a.cpu_usage).then(a.pid.cmp(&b.pid)));
        top.truncate(self.top_processes);
        ProcessInfo {
            total_count,
            top_cpu_usage: top.into_iter().map(|p| item(p, rss_percent(p))).collect(),
            top_memory_usage,
            scanned_at: Some(wall),
        }
    }
}

/// Time since boot from `CLOCK_BOOTTIME` (counts suspend, like `/proc/uptime`).
fn boot_clock() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0).min(999_999_999),
    )
}

/// How far a counter moved between two readings. A counter that went backwards from below
/// 2^32 wrapped (32-bit kernels, e.g. armhf's `/proc/net/dev`, wrap every 4 GiB); from above,
/// it was reset (interface re-created) and the movement is unknown, so 0.
fn counter_delta(now: u64, before: u64) -> u64 {
    const WRAP: u64 = 1 << 32;
    match now.checked_sub(before) {
        Some(delta) => delta,
        None if before < WRAP => now + (WRAP - before),
        None => 0,
    }
}

/// Per second, unrounded.
fn rate(now: u64, before: u64, secs: f64) -> f64 {
    counter_delta(now, before) as f64 / secs
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn rates_never_go_negative() {
        assert_eq!(rate(100, 200, 1.0), (u64::from(u32::MAX) - 99) as f64);
        assert_eq!(rate(3000, 1000, 2.0), 1000.0);
        assert_eq!(rate(5, u64::from(u32::MAX) + 10, 1.0), 0.0);
    }

    #[test]
    fn a_32_bit_counter_wrap_gives_the_wrapped_delta() {
        // 100 bytes before the wrap, 400 after it: 500 bytes moved.
        let before = u64::from(u32::MAX) - 99;
        assert_eq!(counter_delta(400, before), 500);
        assert_eq!(rate(400, before, 0.5), 1000.0);
        // A 64-bit counter far past 2^32 going back is a reset, not a wrap.
        assert_eq!(counter_delta(10, 1 << 40), 0);
    }

    /// These values in /proc/uptime used to panic the collector (and, with panic = abort,
    /// the daemon) through `Duration::from_secs_f64`.
    /// Ranked over every process on this machine: no process read here, this test's own
    /// included, has more resident memory than the first of the list.
    #[test]
    fn top_memory_usage_ranks_the_largest_processes() {
        let config = Config {
            top_processes: 5,
            ..Config::default()
        };
        let mut collector = Collector::new(&config);
        // Touched, so it is resident: this process is not small.
        let ballast = vec![1u8; 64 << 20];
        for _ in 0..2 {
            let doc = collector.collect(Context::default());
            let top = &doc.processes.top_memory_usage;
            assert!(!top.is_empty() && top.len() <= 5, "{top:?}");
            let percents: Vec<f64> = top.iter().map(|p| p.memory_percent.unwrap()).collect();
            assert!(percents.windows(2).all(|w| w[0] >= w[1]), "{percents:?}");
            let total = doc.memory.unwrap().total;
            let own = procfs::read_rss(std::path::Path::new("/proc"), std::process::id()).unwrap();
            // Sizes move between the reads: a little slack.
            let largest = percents[0] + 1.0;
            assert!(ratio_percent(own, total) <= largest, "{top:?}");
            for p in &doc.processes.top_cpu_usage {
                assert!(
                    p.memory_percent.unwrap_or(0.0) <= largest,
                    "{p:?} vs {top:?}"
                );
            }
        }
        assert_eq!(ballast.iter().map(|&b| u64::from(b)).sum::<u64>(), 64 << 20);
    }

    #[test]
    fn hostile_uptime_falls_back_to_the_boot_clock() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            proc_root: dir.path().to_owned(),
            sys_root: dir.path().to_owned(),
            ..Config::default()
        };
        let mut collector = Collector::new(&config);
        for bad in ["-5.00 1.00\n", "NaN 1\n", "inf 1\n", "1e20 1\n", "\u{fffd}"] {
            std::fs::write(dir.path().join("uptime"), bad).unwrap();
            let doc = collector.collect(Context::default());
            let uptime = doc.system.uptime;
            assert!(uptime > Duration::ZERO && uptime < boot_clock() + Duration::from_secs(5));
            serde_json::to_string(&doc).unwrap();
        }
        std::fs::write(dir.path().join("uptime"), "93784.51 362118.60\n").unwrap();
        let doc = collector.collect(Context::default());
        assert_eq!(doc.system.uptime, Duration::from_secs_f64(93784.51));
    }

    /// A thermal zone that appears after the last full tick (a driver loaded late) is found
    /// by the ticks nobody watches, within a minute, so history and alerts get the
    /// temperature. The tree is the Pi 4's `thermal_zone0` layout (`type` "cpu-thermal",
    /// `temp` in millidegrees).
    #[test]
    fn unwatched_ticks_find_a_thermal_zone_that_appears_later() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            sys_root: dir.path().to_owned(),
            ..Config::default()
        };
        let mut collector = Collector::new(&config);
        let full = Context {
            full: true,
            ..Context::default()
        };
        assert_eq!(collector.collect(full).temperature.pi_cpu_celsius, None);
        let zone = dir.path().join("class/thermal/thermal_zone0");
        std::fs::create_dir_all(&zone).unwrap();
        std::fs::write(zone.join("type"), "cpu-thermal\n").unwrap();
        std::fs::write(zone.join("temp"), "51234\n").unwrap();
        let doc = collector.collect(Context::default());
        assert_eq!(
            doc.temperature.pi_cpu_celsius, None,
            "not listed every tick"
        );
        collector.zones_listed -= ZONE_RELIST;
        let doc = collector.collect(Context::default());
        assert_eq!(doc.temperature.pi_cpu_celsius, Some(51.234));
        std::fs::write(zone.join("temp"), "52000\n").unwrap();
        let doc = collector.collect(Context::default());
        assert_eq!(
            doc.temperature.pi_cpu_celsius,
            Some(52.0),
            "then read alone"
        );
    }

    #[test]
    fn boot_clock_is_running() {
        assert!(boot_clock() > Duration::ZERO);
    }

    /// With the real `/proc`, uptime is read from the file once, then from the clock it is
    /// rendered from; the two agree.
    #[test]
    fn procfs_uptime_is_read_from_the_boot_clock() {
        let mut files = ProcFiles::new(Path::new("/proc"));
        let first = files.uptime();
        assert!(files.uptime.is_none(), "the file is let go");
        let from_file = procfs::parse_uptime(&std::fs::read_to_string("/proc/uptime").unwrap());
        let second = files.uptime();
        let from_file = from_file.unwrap();
        assert!(first <= second);
        assert!(
            second.abs_diff(from_file) < Duration::from_secs(1),
            "{second:?} against {from_file:?}"
        );
        // A fixture tree's file stays and is read each time.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("uptime"), "12.5 3.0\n").unwrap();
        let mut fixture = ProcFiles::new(dir.path());
        assert_eq!(fixture.uptime(), Duration::from_millis(12_500));
        std::fs::write(dir.path().join("uptime"), "13.5 3.0\n").unwrap();
        assert_eq!(fixture.uptime(), Duration::from_millis(13_500));
    }
}

/// The wire format, byte for byte, against `tests/fixtures/wire/document.json`: recorded from
/// the document model that carried rounded GiB and ISO strings, for the same raw inputs.
/// The recorded wire document and the fixtures it is built from, shared with the tests of
/// the other renderings of a document (`/metrics`).
#[cfg(test)]
pub(crate) mod wire_golden {
    use std::time::UNIX_EPOCH;

    use super::*;

    const GOLDEN: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/wire/document.json"
    );

    /// The Pi 4 fixture's `/proc/meminfo` (a real 4 GB Pi 4), with 3 MiB of swap in use.
    pub(crate) fn meminfo() -> Memory {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/pi4/proc/meminfo"
        ))
        .unwrap()
        .replace("SwapFree:         102396 kB", "SwapFree:          99324 kB");
        procfs::parse_meminfo(&text).unwrap()
    }

    /// The Pi's one SoC sensor, unlabelled, with its trip point.
    pub(crate) fn cpu_thermal() -> BTreeMap<String, Vec<SensorReading>> {
        BTreeMap::from([(
            "cpu_thermal".to_owned(),
            vec![SensorReading {
                label: String::new(),
                current: 48.312,
                high: Some(80.0),
                critical: None,
            }],
        )])
    }

    pub(crate) fn document() -> StatsDocument {
        let wall = UNIX_EPOCH + Duration::new(1_752_489_000, 123_456_789);
        let uptime = Duration::from_secs_f64(93784.51);
        let m = meminfo();
        let partition = Partition {
            device: "/dev/mmcblk0p2".into(),
            mountpoint: "/".into(),
            fstype: "ext4".into(),
            total: 31_037_616_128,
            used: 12_345_678_901,
            free: 17_123_456_789,
        };
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
            "eth0".into(),
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
                ]
                .into(),
                io_counters: eth0,
                rates: Some(rates),
            },
        );
        StatsDocument {
            collected_at: wall,
            system: SystemInfo {
                boot_time: wall.checked_sub(uptime),
                uptime,
                load_average: Some([0.42, 0.31, 0.25]),
                hostname: Some("raspberrypi".into()),
                model: Some("Raspberry Pi 4 Model B Rev 1.4".into()),
                kernel: Some("6.6.51+rpt-rpi-v8".into()),
                os: Some("Linux 12 (bookworm)".into()),
                pistats_version: "0.1.0",
            },
            cpu: CpuInfo {
                usage_percent: f64::from(45.25_f32),
                count_physical: Some(4),
                count_logical: 4,
                frequency_mhz: Frequency {
                    current: Some(1500.0),
                    min: Some(600.0),
                    max: Some(1500.0),
                },
                per_core_usage: [42.1234_f32, 3.05, 0.0, 100.0]
                    .into_iter()
                    .map(f64::from)
                    .collect(),
            },
            memory: Some(m),
            disk: DiskInfo {
                partitions: Some(vec![partition]),
                io_counters: Some(DiskIo {
                    read_count: 100,
                    write_count: 50,
                    read_bytes: 800 * 512,
                    write_bytes: 400 * 512,
                }),
                io_rates: Some(IoRates {
                    read_bytes_per_sec: rate(409_600, 400_000, 0.998),
                    write_bytes_per_sec: rate(204_800, 204_800, 0.998),
                }),
                devices: BTreeMap::new(),
            },
            network: NetworkInfo {
                io_counters: Some(eth0),
                rates: Some(rates),
                interfaces,
            },
            processes: Arc::new(ProcessInfo {
                total_count: Some(187),
                top_cpu_usage: vec![
                    TopProcess {
                        pid: 2210,
                        name: Some("pistats".into()),
                        cpu_percent: f64::from(12.345_f32),
                        memory_percent: Some(ratio_percent(8_392_704, m.total)),
                    },
                    TopProcess {
                        pid: 1,
                        name: None,
                        cpu_percent: f64::from(0.04_f32),
                        memory_percent: Some(ratio_percent(12_345_344, m.total)),
                    },
                ],
                top_memory_usage: vec![TopProcess {
                    pid: 731,
                    name: Some("chromium".into()),
                    cpu_percent: f64::from(3.21_f32),
                    memory_percent: Some(ratio_percent(1_234_567_168, m.total)),
                }],
                scanned_at: None,
            }),
            temperature: TemperatureInfo {
                pi_cpu_celsius: Some(48.312),
                sensors: Arc::new(cpu_thermal()),
                fans: Arc::from([]),
            },
            battery: Some(BatteryInfo {
                percent: 87.0,
                power_plugged: Some(false),
                secsleft: Some(7200),
            }),
            pi: Some(PiHealth {
                throttled_raw: Some(0x50005),
                throttled: Some(pi::decode_throttled(0x50005)),
                core_volts: Some(0.85),
                arm_clock_mhz: Some(1500.0),
                core_clock_mhz: Some(500.0),
                revision: Some("c03114".into()),
                serial: Some("10000000a1b2c3d4".into()),
                source: "sysfs",
                undervoltage_detection: true,
                pmic: Arc::default(),
            }),
            connectivity: Some(Arc::new(Connectivity {
                source: "kernel",
                interface: "wlan0".into(),
                state: "up".into(),
                connected: true,
                addresses: vec!["192.168.1.21/24".into()],
                ..Connectivity::default()
            })),
            connected_clients: 2,
            degraded: Vec::new(),
        }
    }

    #[test]
    fn wire_format_is_unchanged() {
        // The additions since the recording are empty in this document; without them the
        // bytes must be exactly the recorded ones.
        let json = serde_json::to_string_pretty(&document()).unwrap();
        let mut json_before_additions = json.clone();
        for addition in [
            ",\n    \"devices\": {}",
            ",\n    \"fans\": []",
            ",\n    \"undervoltage_detection\": true,\n    \"pmic\": []",
        ] {
            assert_eq!(json.matches(addition).count(), 1, "{addition} in {json}");
            json_before_additions = json_before_additions.replace(addition, "");
        }
        let json = json_before_additions;
        let golden = std::fs::read_to_string(GOLDEN).unwrap();
        // Additions since the recording, each in its place: the list of degraded sources,
        // last; the top processes by memory; the connectivity's reason and Wi-Fi link.
        let added = |text: String, after: &str, addition: &str| {
            assert_eq!(text.matches(after).count(), 1, "{after:?}");
            text.replace(after, &format!("{after}{addition}"))
        };
        let expected = golden
            .trim_end()
            .strip_suffix("\n}")
            .map(|body| format!("{body},\n  \"degraded\": []\n}}"))
            .unwrap();
        let expected = added(
            expected,
            "        \"memory_percent\": 0.31\n      }\n    ]",
            ",\n    \"top_memory_usage\": [\n      {\n        \"pid\": 731,\n        \
             \"name\": \"chromium\",\n        \"cpu_percent\": 3.2,\n        \
             \"memory_percent\": 31.04\n      }\n    ]",
        );
        let expected = added(
            expected,
            "      \"192.168.1.21/24\"\n    ]",
            ",\n    \"reason\": null,\n    \"wifi\": null",
        );
        assert_eq!(json, expected);
    }

    #[test]
    fn unscanned_ticks_repeat_the_last_scan_with_its_time() {
        let mut collector = Collector::new(&Config::default());
        let ctx = |scan| Context {
            full: scan,
            ..Context::default()
        };
        // The first collection scans even when not asked: no made-up figures, ever.
        let first = collector.collect(ctx(false)).processes;
        assert!(first.total_count.is_some());
        let scanned = first.scanned_at.expect("scanned");
        std::thread::sleep(Duration::from_millis(20));
        let repeated = collector.collect(ctx(false));
        assert_eq!(repeated.processes.scanned_at, Some(scanned));
        assert_eq!(repeated.processes.total_count, first.total_count);
        assert!(repeated.collected_at > scanned);
        let fresh = collector.collect(ctx(true)).processes;
        assert!(fresh.scanned_at.unwrap() > scanned);
    }

    #[test]
    fn processes_say_when_they_were_scanned() {
        let mut doc = document();
        Arc::make_mut(&mut doc.processes).scanned_at =
            Some(UNIX_EPOCH + Duration::from_millis(1_764_124_200_500));
        let v: serde_json::Value = serde_json::to_value(&doc).unwrap();
        assert_eq!(
            v["processes"]["scanned_at"],
            "2025-11-26T02:30:00.500000+00:00"
        );
    }

    #[test]
    fn unread_values_are_null_not_zero() {
        let mut doc = document();
        doc.memory = None;
        doc.system.load_average = None;
        doc.system.boot_time = None;
        Arc::make_mut(&mut doc.processes).total_count = None;
        doc.network = NetworkInfo::default();
        doc.disk.partitions = None;
        doc.degraded = vec![Source::Memory, Source::LoadAverage];
        let v: serde_json::Value = serde_json::to_value(&doc).unwrap();
        for key in [
            "total_gb",
            "available_gb",
            "used_gb",
            "free_gb",
            "used_percent",
        ] {
            assert!(v["memory"][key].is_null(), "memory.{key}: {}", v["memory"]);
        }
        for key in ["total_gb", "used_gb", "free_gb", "used_percent"] {
            assert!(v["swap"][key].is_null(), "swap.{key}");
        }
        assert!(v["ram_usage_percent"].is_null());
        assert!(v["system"]["load_average"].is_null());
        assert!(v["system"]["boot_time"].is_null());
        assert!(v["processes"]["total_count"].is_null());
        assert!(v["network"]["io_counters"].is_null());
        assert_eq!(v["disk"]["partitions"], serde_json::json!([]));
        assert!(v["disk_usage_percent"].is_null());
        assert_eq!(v["degraded"], serde_json::json!(["memory", "load_average"]));
    }

    /// Under NetworkManager (a percentage, no dBm) the document's signal is the kernel's,
    /// read on every tick; NetworkManager's quality stays. From the Pi 4 fixture's
    /// `/proc/net/wireless` (wlan0 at -40 dBm).
    #[test]
    fn the_wifi_signal_is_the_kernels_on_every_tick() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pi4");
        let config = Config {
            proc_root: PathBuf::from(root).join("proc"),
            sys_root: PathBuf::from(root).join("sys"),
            ..Config::default()
        };
        let mut collector = Collector::new(&config);
        let watched = |interface: &str, source: &'static str| Context {
            connectivity: Some(Arc::new(Connectivity {
                source,
                interface: interface.into(),
                connected: true,
                wifi: Some(Wifi {
                    ssid: Some("home".into()),
                    quality_percent: Some(81),
                    ..Wifi::default()
                }),
                ..Connectivity::default()
            })),
            ..Context::default()
        };
        let wifi = |doc: StatsDocument| doc.connectivity.unwrap().wifi.clone().unwrap();
        let nm = wifi(collector.collect(watched("wlan0", "networkmanager")));
        assert_eq!((nm.signal_dbm, nm.quality_percent), (Some(-40), Some(81)));
        assert_eq!(nm.ssid.as_deref(), Some("home"));
        let kernel = wifi(collector.collect(watched("wlan1", "kernel")));
        // wlan1: link 32 of cfg80211's 70, -78 dBm
        assert_eq!(
            (kernel.signal_dbm, kernel.quality_percent),
            (Some(-78), Some(46))
        );
        // Not listed (not associated): the source's figures as they were.
        let absent = wifi(collector.collect(watched("wlan9", "networkmanager")));
        assert_eq!(
            (absent.signal_dbm, absent.quality_percent),
            (None, Some(81))
        );
        // Not wireless: nothing read, nothing added, nothing copied.
        let mut wired = watched("eth0", "networkmanager");
        Arc::make_mut(wired.connectivity.as_mut().unwrap()).wifi = None;
        let given = wired.connectivity.clone().unwrap();
        let document = collector.collect(wired).connectivity.unwrap();
        assert!(document.wifi.is_none());
        assert!(Arc::ptr_eq(&document, &given));
        // The kernel's figures are already the source's: shared, not copied.
        let mut current = watched("wlan0", "networkmanager");
        let wifi = Arc::make_mut(current.connectivity.as_mut().unwrap());
        wifi.wifi.as_mut().unwrap().signal_dbm = Some(-40);
        let given = current.connectivity.clone().unwrap();
        let document = collector.collect(current).connectivity.unwrap();
        assert!(Arc::ptr_eq(&document, &given));
    }

    /// Ticks that are not full read again what history, events and alerts use (here the SoC
    /// zone and the throttle flags) and repeat the rest from the last full tick (here an hwmon
    /// sensor and a link's MTU), which a full tick then reads again. On a copy of the Pi 4
    /// fixture tree.
    #[test]
    fn unwatched_ticks_read_only_what_history_needs() {
        let tmp = tempfile::tempdir().unwrap();
        let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pi4");
        let copied = std::process::Command::new("cp")
            .arg("-a")
            .arg(fixture)
            .arg(tmp.path())
            .status()
            .unwrap();
        assert!(copied.success());
        let root = tmp.path().join("pi4");
        let config = Config {
            proc_root: root.join("proc"),
            sys_root: root.join("sys"),
            vcgencmd: tmp.path().join("no-vcgencmd"),
            ..Config::default()
        };
        let mut collector = Collector::new(&config);
        let ctx = |full| Context {
            full,
            ..Context::default()
        };
        let sys =
            |path: &str, text: &str| std::fs::write(root.join("sys").join(path), text).unwrap();
        let read = |doc: &StatsDocument| {
            (
                doc.temperature.pi_cpu_celsius,
                doc.pi.as_ref().unwrap().throttled_raw.unwrap(),
                doc.temperature.sensors["cpu_thermal"][0].current,
                doc.network.interfaces["eth0"].mtu,
            )
        };
        let first = collector.collect(ctx(false));
        assert_eq!(read(&first), (Some(48.312), 0x50005, 48.312, Some(1500)));
        sys("class/thermal/thermal_zone0/temp", "61500\n");
        sys("devices/platform/soc/soc:firmware/get_throttled", "0\n");
        sys("class/hwmon/hwmon0/temp1_input", "61500\n");
        sys("class/net/eth0/mtu", "9000\n");
        let unwatched = collector.collect(ctx(false));
        assert_eq!(read(&unwatched), (Some(61.5), 0, 48.312, Some(1500)));
        assert_eq!(unwatched.processes.scanned_at, first.processes.scanned_at);
        let watched = collector.collect(ctx(true));
        assert_eq!(read(&watched), (Some(61.5), 0, 61.5, Some(9000)));
    }

    /// One read of `loadavg` gives both the load averages and the scan's last PID, the latter
    /// only from procfs: a fixture tree's copied line never moves, so relying on it would
    /// leave new processes unlisted for up to a minute.
    #[test]
    fn the_last_pid_comes_only_from_procfs() {
        let mut kernel = ProcFiles::new(std::path::Path::new("/proc"));
        let (load, last_pid) = kernel.loadavg();
        assert!(load.is_some() && last_pid.is_some());
        assert_eq!(kernel.loadavg_is_procfs, Some(true));

        let fixture = std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/pi4/proc"
        ));
        let mut copied = ProcFiles::new(fixture);
        assert_eq!(copied.loadavg(), (Some([0.42, 0.31, 0.25]), None));
        assert_eq!(copied.loadavg_is_procfs, Some(false));
        // On a fixture tree every full tick lists `/proc` (the constructor's scan listed once).
        let config = Config {
            proc_root: fixture.to_owned(),
            sys_root: fixture.with_file_name("sys"),
            vcgencmd: fixture.join("no-vcgencmd"),
            ..Config::default()
        };
        let mut collector = Collector::new(&config);
        let full = Context {
            full: true,
            ..Context::default()
        };
        for _ in 0..3 {
            let doc = collector.collect(full.clone());
            assert_eq!(doc.system.load_average, Some([0.42, 0.31, 0.25]));
        }
        assert_eq!(collector.process_table.listings(), 4);
    }

    /// A fd-starved collector (every file open fails) publishes nulls and says which sources
    /// failed, instead of a machine with 0 bytes of memory.
    #[test]
    fn unreadable_proc_is_degraded_not_zero() {
        let empty = tempfile::tempdir().unwrap();
        let config = Config {
            proc_root: empty.path().to_owned(),
            sys_root: empty.path().to_owned(),
            ..Config::default()
        };
        let mut collector = Collector::new(&config);
        let doc = collector.collect(Context::default());
        assert!(doc.memory.is_none());
        assert!(doc.system.load_average.is_none());
        assert!(doc.system.boot_time.is_none());
        assert!(doc.disk.partitions.is_none());
        assert!(doc.network.io_counters.is_none());
        // Every source but the process table, which is listed from the machine's own /proc.
        for source in Source::ALL.into_iter().filter(|&s| s != Source::Processes) {
            assert!(
                doc.degraded.contains(&source),
                "{source:?} in {:?}",
                doc.degraded
            );
        }
        // The kernel's clock stands in for /proc/uptime.
        assert!(doc.system.uptime > Duration::ZERO);
        let text = crate::metrics::render(&doc, &crate::metrics::OwnMetrics::default());
        assert!(!text.contains("pistats_memory_total_bytes"), "{text}");
        assert!(
            text.contains("pistats_collection_degraded{source=\"memory\"} 1"),
            "{text}"
        );
    }
}
