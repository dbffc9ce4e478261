//! Prometheus metrics of the latest snapshot: the metric families (this file) written through
//! the text exposition format ([`exposition`]).
//!
//! Rendered from the snapshot the collector already built, so a scrape costs no second
//! collection and always agrees with what WebSocket clients saw. Values come from the typed,
//! unrounded snapshot (bytes as read, times as [`std::time::SystemTime`]), not from the
//! rounded JSON. Names follow node_exporter's conventions with a `pistats_` prefix: base units
//! in the name (`_bytes`, `_seconds`, `_hertz`, `_celsius`, `_volts`), `_total` only on
//! counters. A value that could not be read is an absent series, never a made-up zero.

mod exposition;

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::stats::model::{Source, StatsDocument, Wifi};
use exposition::Exposition;

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The daemon's own counters, kept by the server rather than the collector.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OwnMetrics {
    /// WebSocket clients connected now.
    pub clients: u64,
    /// How long the last collection took.
    pub collection_seconds: f64,
    pub collections_total: u64,
    /// Clients dropped because their socket did not take a document in time.
    pub dropped_slow_clients_total: u64,
    /// Connections refused by the client limits.
    pub refused_clients_total: u64,
    /// Unix time the daemon started.
    pub start_time_seconds: f64,
}

/// Renders every metric family from `doc` and `own`.
pub fn render(doc: &StatsDocument, own: &OwnMetrics) -> String {
    let mut e = Exposition::default();
    system(&mut e, doc);
    cpu(&mut e, doc);
    memory(&mut e, doc);
    disk(&mut e, doc);
    network(&mut e, doc);
    sensors(&mut e, doc);
    pi(&mut e, doc);
    power_and_connectivity(&mut e, doc);
    collection(&mut e, doc);
    daemon(&mut e, own);
    e.out
}

/// `pistats_alert_firing{alert="…"}`: 1 while the rule fires, else 0; one series per rule
/// (nothing without rules). Appended to [`render`]'s output by the server.
pub fn render_alerts(rules: &[(String, bool)]) -> String {
    let mut e = Exposition::default();
    if !rules.is_empty() {
        let mut family = e.gauge(
            "pistats_alert_firing",
            "Whether the alert rule of this name is firing (1) or not (0).",
        );
        for (name, firing) in rules {
            family.sample(&[("alert", name.as_str())], u64::from(*firing));
        }
    }
    e.out
}

/// Seconds since the Unix epoch; `None` for a time before it (a clock set to 1970 on a Pi
/// without RTC is still after it).
fn unix_seconds(t: SystemTime) -> Option<f64> {
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs_f64())
}

fn system(e: &mut Exposition, doc: &StatsDocument) {
    let s = &doc.system;
    let mut labels = Vec::new();
    for (name, value) in [
        ("hostname", &s.hostname),
        ("model", &s.model),
        ("kernel", &s.kernel),
        ("os", &s.os),
    ] {
        if let Some(value) = value {
            labels.push((name, &**value));
        }
    }
    e.gauge(
        "pistats_system_info",
        "Host name, board model, kernel and OS of this machine; always 1.",
    )
    .sample(&labels, 1u64);
    e.gauge("pistats_uptime_seconds", "Time since boot.")
        .sample(&[], s.uptime.as_secs_f64());
    e.gauge("pistats_boot_time_seconds", "Unix time of the last boot.")
        .sample_opt(&[], s.boot_time.and_then(unix_seconds));
    let mut f = e.gauge(
        "pistats_load_average",
        "Average number of runnable and uninterruptible tasks.",
    );
    if let Some(load) = s.load_average {
        for (period, value) in ["1m", "5m", "15m"].iter().zip(load) {
            f.sample(&[("period", period)], value);
        }
    }
    drop(f);
    e.gauge("pistats_processes", "Number of processes.")
        .sample_opt(&[], doc.processes.total_count.map(|n| n as u64));
    e.gauge(
        "pistats_collection_timestamp_seconds",
        "Unix time at which the exposed document was collected.",
    )
    .sample_opt(&[], unix_seconds(doc.collected_at));
}

fn cpu(e: &mut Exposition, doc: &StatsDocument) {
    let c = &doc.cpu;
    e.gauge(
        "pistats_cpu_usage_percent",
        "CPU busy time over the last interval, all cores (0-100).",
    )
    .sample(&[], c.usage_percent);
    let mut f = e.gauge(
        "pistats_cpu_core_usage_percent",
        "CPU busy time over the last interval, per core (0-100).",
    );
    for (core, value) in c.per_core_usage.iter().enumerate() {
        f.sample(&[("core", &core.to_string())], *value);
    }
    drop(f);
    let mut f = e.gauge(
        "pistats_cpu_frequency_hertz",
        "CPU clock: current, and the minimum and maximum allowed.",
    );
    let freq = &c.frequency_mhz;
    for (kind, mhz) in [
        ("current", freq.current),
        ("min", freq.min),
        ("max", freq.max),
    ] {
        f.sample_opt(&[("kind", kind)], mhz.map(|m| m * 1e6));
    }
    drop(f);
    let mut f = e.gauge("pistats_cpu_cores", "Number of CPU cores.");
    f.sample(&[("kind", "logical")], c.count_logical as u64);
    f.sample_opt(&[("kind", "physical")], c.count_physical.map(|n| n as u64));
}

fn memory(e: &mut Exposition, doc: &StatsDocument) {
    let Some(m) = &doc.memory else {
        return;
    };
    for (name, help, bytes) in [
        ("pistats_memory_total_bytes", "Total RAM.", m.total),
        (
            "pistats_memory_available_bytes",
            "RAM available to start new programs without swapping.",
            m.available,
        ),
        ("pistats_memory_used_bytes", "RAM in use.", m.used()),
        ("pistats_memory_free_bytes", "RAM not used at all.", m.free),
        (
            "pistats_memory_cached_bytes",
            "RAM used by the page cache.",
            m.cached,
        ),
        (
            "pistats_memory_buffers_bytes",
            "RAM used by kernel buffers.",
            m.buffers,
        ),
    ] {
        e.gauge(name, help).sample(&[], bytes);
    }
    e.gauge("pistats_memory_used_percent", "RAM in use (0-100).")
        .sample(&[], m.used_percent());
    for (name, help, bytes) in [
        (
            "pistats_swap_total_bytes",
            "Total swap space.",
            m.swap_total,
        ),
        (
            "pistats_swap_used_bytes",
            "Swap space in use.",
            m.swap_used(),
        ),
        ("pistats_swap_free_bytes", "Swap space free.", m.swap_free),
    ] {
        e.gauge(name, help).sample(&[], bytes);
    }
    e.gauge("pistats_swap_used_percent", "Swap space in use (0-100).")
        .sample(&[], m.swap_used_percent());
}

fn disk(e: &mut Exposition, doc: &StatsDocument) {
    let d = &doc.disk;
    e.gauge(
        "pistats_root_filesystem_used_percent",
        "Space used on the root file system (0-100).",
    )
    .sample_opt(&[], d.root_usage_percent());
    type Pick = fn(&crate::stats::model::Partition) -> exposition::Value;
    let families: [(&str, &str, Pick); 4] = [
        ("pistats_filesystem_size_bytes", "File system size.", |p| {
            p.total.into()
        }),
        (
            "pistats_filesystem_used_bytes",
            "File system space used.",
            |p| p.used.into(),
        ),
        (
            "pistats_filesystem_free_bytes",
            "File system space free.",
            |p| p.free.into(),
        ),
        (
            "pistats_filesystem_used_percent",
            "File system space used (0-100).",
            |p| p.used_percent().into(),
        ),
    ];
    for (name, help, pick) in families {
        let mut f = e.gauge(name, help);
        for p in d.partitions.iter().flatten() {
            let labels = [
                ("device", &*p.device),
                ("mountpoint", &*p.mountpoint),
                ("fstype", &*p.fstype),
            ];
            f.sample(&labels, pick(p));
        }
    }
    if let Some(io) = d.io_counters {
        for (name, help, value) in [
            (
                "pistats_disk_reads_completed_total",
                "Reads completed, all disks.",
                io.read_count,
            ),
            (
                "pistats_disk_writes_completed_total",
                "Writes completed, all disks.",
                io.write_count,
            ),
            (
                "pistats_disk_read_bytes_total",
                "Bytes read, all disks.",
                io.read_bytes,
            ),
            (
                "pistats_disk_written_bytes_total",
                "Bytes written, all disks.",
                io.write_bytes,
            ),
        ] {
            e.counter(name, help).sample(&[], value);
        }
    }
    type DiskPick = fn(&crate::stats::model::DiskIo) -> u64;
    let families: [(&str, &str, DiskPick); 4] = [
        (
            "pistats_disk_device_reads_completed_total",
            "Reads completed, per disk, since boot.",
            |io| io.read_count,
        ),
        (
            "pistats_disk_device_writes_completed_total",
            "Writes completed, per disk, since boot.",
            |io| io.write_count,
        ),
        (
            "pistats_disk_device_read_bytes_total",
            "Bytes read, per disk, since boot.",
            |io| io.read_bytes,
        ),
        (
            "pistats_disk_device_written_bytes_total",
            "Bytes written, per disk, since boot.",
            |io| io.write_bytes,
        ),
    ];
    for (name, help, pick) in families {
        let mut f = e.counter(name, help);
        for (device, dev) in &d.devices {
            f.sample(&[("device", &**device)], pick(&dev.io));
        }
    }
    let mut today = e.gauge(
        "pistats_disk_written_today_bytes",
        "Bytes written, per disk, since local midnight, or since first seen that day (kept across restarts with the history).",
    );
    for (device, dev) in &d.devices {
        if let Some(written) = &dev.written {
            today.sample(&[("device", &**device)], written.today);
        }
    }
    let cards: Vec<_> = d
        .devices
        .iter()
        .filter_map(|(device, dev)| Some((&**device, dev.card.as_ref()?)))
        .collect();
    let mut info = e.gauge(
        "pistats_mmc_card_info",
        "SD card or eMMC identity from its CID register; always 1.",
    );
    for (device, card) in &cards {
        let mut labels = vec![("device", *device), ("type", card.kind.as_str())];
        for (name, value) in [
            ("name", &card.name),
            ("manufacturer_id", &card.manufacturer_id),
            ("oem_id", &card.oem_id),
            ("date", &card.date),
        ] {
            if let Some(value) = value {
                labels.push((name, value.as_str()));
            }
        }
        info.sample(&labels, 1u64);
    }
    let mut life = e.gauge(
        "pistats_mmc_life_time_used_percent",
        "eMMC wear estimate: upper bound of the rated erase cycles used (10-100; 100 also when exceeded).",
    );
    for (device, card) in &cards {
        if let Some((a, b)) = card.life_time {
            for (kind, raw) in [("A", a), ("B", b)] {
                life.sample_opt(
                    &[("device", *device), ("type", kind)],
                    crate::stats::model::life_time_upper_percent(raw).map(u64::from),
                );
            }
        }
    }
    let mut eol = e.gauge(
        "pistats_mmc_pre_eol_info",
        "eMMC reserved-block state: 1 normal, 2 warning (80 % consumed), 3 urgent (90 %).",
    );
    for (device, card) in &cards {
        eol.sample_opt(&[("device", *device)], card.pre_eol_info.map(u64::from));
    }
}

fn network(e: &mut Exposition, doc: &StatsDocument) {
    let ifaces = &doc.network.interfaces;
    type Pick = fn(&crate::stats::model::NetIo) -> u64;
    let counters: [(&str, &str, Pick); 8] = [
        (
            "pistats_network_receive_bytes_total",
            "Bytes received.",
            |n| n.bytes_recv,
        ),
        ("pistats_network_transmit_bytes_total", "Bytes sent.", |n| {
            n.bytes_sent
        }),
        (
            "pistats_network_receive_packets_total",
            "Packets received.",
            |n| n.packets_recv,
        ),
        (
            "pistats_network_transmit_packets_total",
            "Packets sent.",
            |n| n.packets_sent,
        ),
        (
            "pistats_network_receive_errors_total",
            "Receive errors.",
            |n| n.errin,
        ),
        (
            "pistats_network_transmit_errors_total",
            "Transmit errors.",
            |n| n.errout,
        ),
        (
            "pistats_network_receive_dropped_total",
            "Received packets dropped.",
            |n| n.dropin,
        ),
        (
            "pistats_network_transmit_dropped_total",
            "Outgoing packets dropped.",
            |n| n.dropout,
        ),
    ];
    for (name, help, pick) in counters {
        let mut f = e.counter(name, help);
        for (iface, i) in ifaces {
            f.sample(&[("interface", iface)], pick(&i.io_counters));
        }
    }
    let mut f = e.gauge(
        "pistats_network_interface_up",
        "Whether the interface is up (1) or down (0).",
    );
    for (iface, i) in ifaces {
        f.sample(&[("interface", iface)], i.is_up);
    }
    drop(f);
    let mut f = e.gauge("pistats_network_mtu_bytes", "Interface MTU.");
    for (iface, i) in ifaces {
        f.sample_opt(&[("interface", iface)], i.mtu.map(u64::from));
    }
    drop(f);
    let mut f = e.gauge(
        "pistats_network_speed_bytes",
        "Link speed in bytes per second.",
    );
    for (iface, i) in ifaces {
        let bytes_per_sec = i.speed_mbps.map(|mbps| u64::from(mbps) * 125_000);
        f.sample_opt(&[("interface", iface)], bytes_per_sec);
    }
    drop(f);
    let mut f = e.gauge(
        "pistats_network_address_info",
        "Addresses assigned to each interface; always 1.",
    );
    for (iface, i) in ifaces {
        for a in i.addresses.iter() {
            let address = format!("{}/{}", a.address, a.prefix_len);
            f.sample(
                &[
                    ("interface", iface),
                    ("family", a.family),
                    ("address", &address),
                ],
                1u64,
            );
        }
    }
}

fn sensors(e: &mut Exposition, doc: &StatsDocument) {
    let t = &doc.temperature;
    e.gauge(
        "pistats_pi_cpu_temperature_celsius",
        "SoC temperature as reported for the CPU.",
    )
    .sample_opt(&[], t.pi_cpu_celsius);
    // Chips may report several unlabelled readings; number them so each series is unique.
    let mut readings = Vec::new();
    for (sensor, list) in t.sensors.iter() {
        let mut seen = HashSet::new();
        for (i, r) in list.iter().enumerate() {
            let mut label = if r.label.is_empty() {
                format!("temp{}", i + 1)
            } else {
                r.label.clone()
            };
            if !seen.insert(label.clone()) {
                label = format!("{label} #{}", i + 1);
                seen.insert(label.clone());
            }
            readings.push((sensor.as_str(), label, r));
        }
    }
    type Pick = fn(&crate::stats::model::SensorReading) -> Option<f64>;
    let families: [(&str, &str, Pick); 3] = [
        (
            "pistats_temperature_celsius",
            "Temperature sensor reading.",
            |r| Some(r.current),
        ),
        (
            "pistats_temperature_high_celsius",
            "Temperature a sensor considers high.",
            |r| r.high,
        ),
        (
            "pistats_temperature_critical_celsius",
            "Temperature a sensor considers critical.",
            |r| r.critical,
        ),
    ];
    for (name, help, pick) in families {
        let mut f = e.gauge(name, help);
        for (sensor, label, r) in &readings {
            f.sample_opt(&[("sensor", sensor), ("label", label)], pick(r));
        }
    }
    type FanPick = fn(&crate::stats::model::Fan) -> Option<f64>;
    let families: [(&str, &str, FanPick); 4] = [
        ("pistats_fan_speed_rpm", "Fan tachometer reading.", |f| {
            f.rpm
        }),
        (
            "pistats_fan_pwm_percent",
            "Fan PWM duty cycle (0-100).",
            |f| f.pwm_percent,
        ),
        (
            "pistats_fan_cooling_state",
            "Fan cooling device state, 0 (off) to pistats_fan_cooling_max_state.",
            |f| f.cooling_state.map(|v| v as f64),
        ),
        (
            "pistats_fan_cooling_max_state",
            "Highest cooling state of the fan (full speed).",
            |f| f.cooling_max_state.map(|v| v as f64),
        ),
    ];
    for (name, help, pick) in families {
        let mut family = e.gauge(name, help);
        for fan in t.fans.iter() {
            family.sample_opt(
                &[("fan", fan.name.as_str()), ("label", fan.label.as_str())],
                pick(fan),
            );
        }
    }
}

fn pi(e: &mut Exposition, doc: &StatsDocument) {
    let Some(pi) = &doc.pi else {
        return;
    };
    let mut labels = vec![("source", pi.source)];
    if let Some(revision) = &pi.revision {
        labels.push(("revision", revision));
    }
    if let Some(serial) = &pi.serial {
        labels.push(("serial", serial));
    }
    e.gauge(
        "pistats_pi_info",
        "Raspberry Pi board revision and serial number; always 1.",
    )
    .sample(&labels, 1u64);
    if let Some(t) = pi.throttled {
        let mut f = e.gauge(
            "pistats_pi_throttled",
            "Firmware get_throttled flags: 1 when set. *_occurred flags are sticky since boot.",
        );
        // Boards without an under-voltage detector have no under-voltage series at all.
        for (flag, set) in [
            ("under_voltage", t.under_voltage),
            ("arm_frequency_capped", Some(t.arm_frequency_capped)),
            ("throttled", Some(t.throttled)),
            ("soft_temperature_limit", Some(t.soft_temperature_limit)),
            ("under_voltage_occurred", t.under_voltage_occurred),
            (
                "arm_frequency_capping_occurred",
                Some(t.arm_frequency_capping_occurred),
            ),
            ("throttling_occurred", Some(t.throttling_occurred)),
            (
                "soft_temperature_limit_occurred",
                Some(t.soft_temperature_limit_occurred),
            ),
        ] {
            f.sample_opt(&[("flag", flag)], set);
        }
    }
    e.gauge(
        "pistats_pi_undervoltage_detection",
        "1 when the board has an under-voltage detector; 0 on Pi Zero / Zero W and Compute Modules.",
    )
    .sample(&[], pi.undervoltage_detection);
    let mut volts = e.gauge(
        "pistats_pi_pmic_volts",
        "Pi 5 PMIC rail voltage, from the firmware (refreshed every 10 s).",
    );
    for rail in pi.pmic.iter() {
        volts.sample_opt(&[("rail", rail.rail.as_str())], rail.volts);
    }
    let mut amps = e.gauge(
        "pistats_pi_pmic_amperes",
        "Pi 5 PMIC rail current, from the firmware (refreshed every 10 s).",
    );
    for rail in pi.pmic.iter() {
        amps.sample_opt(&[("rail", rail.rail.as_str())], rail.amps);
    }
    e.gauge("pistats_pi_core_volts", "VideoCore core voltage.")
        .sample_opt(&[], pi.core_volts);
    e.gauge("pistats_pi_arm_clock_hertz", "ARM CPU clock.")
        .sample_opt(&[], pi.arm_clock_mhz.map(|m| m * 1e6));
    e.gauge("pistats_pi_core_clock_hertz", "VideoCore core clock.")
        .sample_opt(&[], pi.core_clock_mhz.map(|m| m * 1e6));
}

fn power_and_connectivity(e: &mut Exposition, doc: &StatsDocument) {
    if let Some(b) = &doc.battery {
        e.gauge("pistats_battery_percent", "Battery charge (0-100).")
            .sample(&[], b.percent);
        e.gauge(
            "pistats_battery_power_plugged",
            "Whether external power is connected (1) or not (0).",
        )
        .sample_opt(&[], b.power_plugged);
        e.gauge(
            "pistats_battery_time_left_seconds",
            "Estimated time left on battery.",
        )
        .sample_opt(&[], b.secsleft);
    }
    if let Some(c) = &doc.connectivity {
        e.gauge(
            "pistats_connectivity_connected",
            "Whether the watched interface is connected (1) or not (0).",
        )
        .sample(
            &[("interface", &c.interface), ("source", c.source)],
            c.connected,
        );
        if let Some(w) = &c.wifi {
            wifi(e, &c.interface, w);
        }
    }
}

/// The Wi-Fi link of the watched interface, in base units (Hz, bytes/s) except the signal,
/// whose unit is dBm by convention (as node_exporter's `node_wifi_station_signal_dbm`).
fn wifi(e: &mut Exposition, interface: &str, w: &Wifi) {
    let labels = [("interface", interface)];
    e.gauge(
        "pistats_wifi_signal_dbm",
        "Received Wi-Fi signal level in dBm.",
    )
    .sample_opt(&labels, w.signal_dbm.map(f64::from));
    e.gauge(
        "pistats_wifi_quality_percent",
        "Wi-Fi link quality (0-100).",
    )
    .sample_opt(&labels, w.quality_percent.map(f64::from));
    e.gauge(
        "pistats_wifi_bitrate_bytes_per_second",
        "Wi-Fi transmit bit rate, in bytes per second like every rate here.",
    )
    .sample_opt(&labels, w.bitrate_kbps.map(|k| u64::from(k) * 125));
    e.gauge(
        "pistats_wifi_frequency_hertz",
        "Centre frequency of the Wi-Fi channel.",
    )
    .sample_opt(&labels, w.frequency_mhz.map(|m| u64::from(m) * 1_000_000));
    let mut info = vec![("interface", interface)];
    for (name, value) in [
        ("ssid", w.ssid.as_deref()),
        ("bssid", w.bssid.as_deref()),
        ("band", w.band),
        ("security", w.security.as_deref()),
    ] {
        if let Some(value) = value {
            info.push((name, value));
        }
    }
    e.gauge(
        "pistats_wifi_info",
        "The Wi-Fi network and access point of the watched interface (always 1).",
    )
    .sample(&info, 1u64);
}

fn collection(e: &mut Exposition, doc: &StatsDocument) {
    let mut f = e.gauge(
        "pistats_collection_degraded",
        "Whether a source could not be read for the exposed document (1) or was read (0).",
    );
    for source in Source::ALL {
        f.sample(
            &[("source", source.as_str())],
            doc.degraded.contains(&source),
        );
    }
}

fn daemon(e: &mut Exposition, own: &OwnMetrics) {
    e.gauge("pistats_clients", "WebSocket clients connected.")
        .sample(&[], own.clients);
    e.gauge(
        "pistats_collection_duration_seconds",
        "Time the last stats collection took.",
    )
    .sample(&[], own.collection_seconds);
    e.counter(
        "pistats_collections_total",
        "Stats collections since start.",
    )
    .sample(&[], own.collections_total);
    e.counter(
        "pistats_dropped_slow_clients_total",
        "WebSocket clients dropped for not keeping up.",
    )
    .sample(&[], own.dropped_slow_clients_total);
    e.counter(
        "pistats_refused_clients_total",
        "Connections refused by the client limits.",
    )
    .sample(&[], own.refused_clients_total);
    e.gauge(
        "pistats_start_time_seconds",
        "Unix time the daemon started.",
    )
    .sample(&[], own.start_time_seconds);
    e.gauge("pistats_build_info", "pistats version; always 1.")
        .sample(&[("version", env!("CARGO_PKG_VERSION"))], 1u64);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    use super::exposition::escape_label_value;
    use super::*;
    use crate::history::{Day, Written};
    use crate::stats::model::*;
    use crate::stats::wire_golden::{cpu_thermal, meminfo};

    fn document() -> StatsDocument {
        let mut interfaces = BTreeMap::new();
        let io = NetIo {
            bytes_sent: 20,
            bytes_recv: 9_007_199_254_740_993, // 2^53 + 1: must stay exact
            packets_sent: 2,
            packets_recv: 3,
            ..Default::default()
        };
        interfaces.insert(
            "eth0".into(),
            Interface {
                is_up: true,
                mac: None,
                mtu: Some(1500),
                speed_mbps: None,
                addresses: vec![Address {
                    family: "ipv4",
                    address: "192.168.1.20".to_owned(),
                    prefix_len: 24,
                }]
                .into(),
                io_counters: io,
                rates: None,
            },
        );
        interfaces.insert(
            "wlan0".into(),
            Interface {
                is_up: false,
                mac: None,
                mtu: None,
                speed_mbps: None,
                addresses: Arc::from([]),
                io_counters: NetIo::default(),
                rates: None,
            },
        );
        StatsDocument {
            collected_at: UNIX_EPOCH + Duration::from_millis(1_752_489_000_500),
            system: SystemInfo {
                boot_time: Some(UNIX_EPOCH + Duration::from_secs(1_752_480_000)),
                uptime: Duration::from_millis(9_000_500),
                load_average: Some([0.15, 0.25, 0.35]),
                hostname: Some("pi\"kitchen\"\\\nnext".into()),
                model: Some("Raspberry Pi 4 Model B Rev 1.4".into()),
                kernel: None,
                os: None,
                pistats_version: "0.1.0",
            },
            cpu: CpuInfo {
                usage_percent: 45.2,
                count_physical: None,
                count_logical: 2,
                frequency_mhz: Frequency {
                    current: Some(1500.0),
                    min: None,
                    max: Some(1800.0),
                },
                per_core_usage: vec![42.1, f64::NAN],
            },
            memory: Some(meminfo()),
            disk: DiskInfo {
                partitions: Some(vec![
                    Partition {
                        device: "/dev/mmcblk0p2".into(),
                        mountpoint: "/".into(),
                        fstype: "ext4".into(),
                        total: 1 << 30,
                        used: 1 << 29,
                        free: 1 << 29,
                    };
                    2 // a bind mount listed twice
                ]),
                io_counters: None,
                io_rates: None,
                devices: BTreeMap::from([
                    (
                        "mmcblk0".into(),
                        DiskDevice {
                            io: DiskIo {
                                read_count: 10,
                                write_count: 20,
                                read_bytes: 4096,
                                write_bytes: 1 << 40,
                            },
                            card: Some(Arc::new(MmcCard {
                                kind: "MMC".to_owned(),
                                name: Some("BJTD4R".to_owned()),
                                manufacturer_id: Some("0x000015".to_owned()),
                                oem_id: Some("0x0100".to_owned()),
                                date: Some("01/2021".to_owned()),
                                serial: None,
                                life_time: Some((0x02, 0x0B)),
                                pre_eol_info: Some(0x01),
                            })),
                            written: Some(Written {
                                today: 123_456_789,
                                per_day: vec![(Day(20_000), 5)],
                            }),
                        },
                    ),
                    ("sda".into(), DiskDevice::default()),
                ]),
            },
            network: NetworkInfo {
                io_counters: Some(io),
                rates: None,
                interfaces,
            },
            processes: Arc::new(ProcessInfo {
                total_count: Some(156),
                top_cpu_usage: vec![],
                top_memory_usage: vec![],
                scanned_at: None,
            }),
            temperature: TemperatureInfo {
                pi_cpu_celsius: Some(48.312),
                sensors: Arc::new(cpu_thermal()),
                fans: Arc::from([
                    Fan {
                        name: "pwmfan".to_owned(),
                        label: "fan1".to_owned(),
                        rpm: Some(2950.0),
                        pwm_percent: Some(30.0),
                        cooling_state: Some(1),
                        cooling_max_state: Some(4),
                    },
                    Fan {
                        name: "gpio-fan".to_owned(),
                        label: "cooling_device0".to_owned(),
                        cooling_state: Some(0),
                        cooling_max_state: Some(1),
                        ..Fan::default()
                    },
                ]),
            },
            battery: None,
            pi: Some(PiHealth {
                throttled_raw: Some(0x50005),
                throttled: Some(ThrottleFlags {
                    under_voltage: Some(true),
                    throttled: true,
                    under_voltage_occurred: Some(true),
                    throttling_occurred: true,
                    ..Default::default()
                }),
                core_volts: Some(0.85),
                arm_clock_mhz: Some(1500.0),
                core_clock_mhz: None,
                revision: Some("c03114".into()),
                serial: None,
                source: "sysfs",
                undervoltage_detection: true,
                pmic: vec![PmicRail {
                    rail: "VDD_CORE".to_owned(),
                    volts: Some(0.72),
                    amps: Some(2.91),
                }]
                .into(),
            }),
            connectivity: Some(Arc::new(Connectivity {
                source: "kernel",
                interface: "wlan0".to_owned(),
                state: "down".to_owned(),
                connected: false,
                addresses: vec![],
                wifi: Some(Wifi {
                    ssid: Some("café \"net\"".to_owned()),
                    signal_dbm: Some(-61),
                    quality_percent: Some(70),
                    frequency_mhz: Some(5180),
                    band: Some("5 GHz"),
                    bitrate_kbps: Some(72_200),
                    ..Wifi::default()
                }),
                ..Connectivity::default()
            })),
            connected_clients: 2,
            degraded: vec![Source::DiskIo],
        }
    }

    fn own() -> OwnMetrics {
        OwnMetrics {
            clients: 2,
            collection_seconds: 0.0125,
            collections_total: 42,
            dropped_slow_clients_total: 1,
            refused_clients_total: 0,
            start_time_seconds: 1_752_480_000.0,
        }
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    fn has(text: &str, line: &str) -> bool {
        text.lines().any(|l| l == line)
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label_value(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label_value("a\nb"), r"a\nb");
        let text = render(&document(), &own());
        assert!(
            has(
                &text,
                r#"pistats_system_info{hostname="pi\"kitchen\"\\\nnext",model="Raspberry Pi 4 Model B Rev 1.4"} 1"#
            ),
            "{text}"
        );
        assert!(text.ends_with('\n'));
        // No raw newline leaks into a sample line: every line is a comment or a sample.
        for line in lines(&text) {
            assert!(
                line.starts_with("# ") || line.starts_with("pistats_"),
                "{line:?}"
            );
        }
    }

    #[test]
    fn nulls_are_omitted_not_zeroed() {
        let text = render(&document(), &own());
        // Frequency min is null, current and max are known.
        assert!(has(
            &text,
            r#"pistats_cpu_frequency_hertz{kind="current"} 1500000000"#
        ));
        assert!(has(
            &text,
            r#"pistats_cpu_frequency_hertz{kind="max"} 1800000000"#
        ));
        assert!(!text.contains(r#"kind="min""#));
        // NaN core usage is dropped, the other core stays.
        assert!(has(
            &text,
            r#"pistats_cpu_core_usage_percent{core="0"} 42.1"#
        ));
        assert!(!text.contains(r#"core="1""#));
        // Every sample of a family null: the family is gone, header included.
        assert!(!text.contains("pistats_pi_core_clock_hertz"));
        assert!(!text.contains("pistats_network_speed_bytes"));
        assert!(!text.contains("pistats_disk_read_bytes_total"));
        assert!(!text.contains("pistats_temperature_critical_celsius"));
        assert!(!text.contains("pistats_battery_percent"));
        // Null label values leave the label out.
        assert!(!text.contains("kernel="));
        assert!(!text.contains("serial="));
        // Off a Pi, no Pi families at all.
        let mut doc = document();
        doc.pi = None;
        doc.connectivity = None;
        let text = render(&doc, &own());
        assert!(!text.contains("pistats_pi_throttled"));
        assert!(!text.contains("pistats_pi_info"));
        assert!(!text.contains("pistats_connectivity_connected"));
        assert!(!text.contains("pistats_wifi_"));
        assert!(text.contains("pistats_pi_cpu_temperature_celsius 48.312"));
    }

    #[test]
    fn values_units_and_types() {
        let text = render(&document(), &own());
        for line in [
            "# TYPE pistats_network_receive_bytes_total counter",
            r#"pistats_network_receive_bytes_total{interface="eth0"} 9007199254740993"#,
            r#"pistats_network_receive_bytes_total{interface="wlan0"} 0"#,
            "# TYPE pistats_collections_total counter",
            "pistats_collections_total 42",
            "# TYPE pistats_dropped_slow_clients_total counter",
            "# TYPE pistats_refused_clients_total counter",
            "pistats_refused_clients_total 0",
            "# TYPE pistats_cpu_usage_percent gauge",
            "pistats_cpu_usage_percent 45.2",
            "# TYPE pistats_memory_total_bytes gauge",
            // MemTotal 3884096 kB, exactly; not GiB rounded to 2 decimals and back.
            "pistats_memory_total_bytes 3977314304",
            "pistats_memory_buffers_bytes 42225664",
            "pistats_memory_available_bytes 3483889664",
            "pistats_swap_total_bytes 104853504",
            // 3 MiB of swap: 0.00 GiB in the JSON, but not 0 here.
            "pistats_swap_used_bytes 3145728",
            r#"pistats_collection_degraded{source="disk_io"} 1"#,
            r#"pistats_collection_degraded{source="memory"} 0"#,
            r#"pistats_load_average{period="15m"} 0.35"#,
            "pistats_uptime_seconds 9000.5",
            "pistats_boot_time_seconds 1752480000",
            "pistats_collection_timestamp_seconds 1752489000.5",
            "pistats_processes 156",
            r#"pistats_cpu_cores{kind="logical"} 2"#,
            r#"pistats_network_interface_up{interface="eth0"} 1"#,
            r#"pistats_network_interface_up{interface="wlan0"} 0"#,
            r#"pistats_network_mtu_bytes{interface="eth0"} 1500"#,
            r#"pistats_network_address_info{interface="eth0",family="ipv4",address="192.168.1.20/24"} 1"#,
            r#"pistats_temperature_celsius{sensor="cpu_thermal",label="temp1"} 48.312"#,
            r#"pistats_temperature_high_celsius{sensor="cpu_thermal",label="temp1"} 80"#,
            r#"pistats_pi_throttled{flag="under_voltage"} 1"#,
            r#"pistats_pi_throttled{flag="arm_frequency_capped"} 0"#,
            r#"pistats_pi_throttled{flag="throttling_occurred"} 1"#,
            r#"pistats_pi_info{source="sysfs",revision="c03114"} 1"#,
            "pistats_pi_core_volts 0.85",
            "pistats_pi_arm_clock_hertz 1500000000",
            "pistats_pi_undervoltage_detection 1",
            r#"pistats_pi_pmic_volts{rail="VDD_CORE"} 0.72"#,
            r#"pistats_pi_pmic_amperes{rail="VDD_CORE"} 2.91"#,
            r#"pistats_fan_speed_rpm{fan="pwmfan",label="fan1"} 2950"#,
            r#"pistats_fan_pwm_percent{fan="pwmfan",label="fan1"} 30"#,
            r#"pistats_fan_cooling_state{fan="pwmfan",label="fan1"} 1"#,
            r#"pistats_fan_cooling_max_state{fan="pwmfan",label="fan1"} 4"#,
            r#"pistats_fan_cooling_state{fan="gpio-fan",label="cooling_device0"} 0"#,
            "# TYPE pistats_disk_device_written_bytes_total counter",
            r#"pistats_disk_device_written_bytes_total{device="mmcblk0"} 1099511627776"#,
            r#"pistats_disk_device_written_bytes_total{device="sda"} 0"#,
            r#"pistats_disk_device_reads_completed_total{device="mmcblk0"} 10"#,
            "# TYPE pistats_disk_written_today_bytes gauge",
            r#"pistats_disk_written_today_bytes{device="mmcblk0"} 123456789"#,
            r#"pistats_mmc_card_info{device="mmcblk0",type="MMC",name="BJTD4R",manufacturer_id="0x000015",oem_id="0x0100",date="01/2021"} 1"#,
            r#"pistats_mmc_life_time_used_percent{device="mmcblk0",type="A"} 20"#,
            r#"pistats_mmc_life_time_used_percent{device="mmcblk0",type="B"} 100"#,
            r#"pistats_mmc_pre_eol_info{device="mmcblk0"} 1"#,
            r#"pistats_connectivity_connected{interface="wlan0",source="kernel"} 0"#,
            r#"pistats_wifi_signal_dbm{interface="wlan0"} -61"#,
            r#"pistats_wifi_quality_percent{interface="wlan0"} 70"#,
            r#"pistats_wifi_bitrate_bytes_per_second{interface="wlan0"} 9025000"#,
            r#"pistats_wifi_frequency_hertz{interface="wlan0"} 5180000000"#,
            r#"pistats_wifi_info{interface="wlan0",ssid="café \"net\"",band="5 GHz"} 1"#,
            r#"pistats_filesystem_size_bytes{device="/dev/mmcblk0p2",mountpoint="/",fstype="ext4"} 1073741824"#,
            "pistats_root_filesystem_used_percent 50",
            "pistats_clients 2",
            "pistats_collection_duration_seconds 0.0125",
            "pistats_start_time_seconds 1752480000",
            concat!(
                r#"pistats_build_info{version=""#,
                env!("CARGO_PKG_VERSION"),
                r#""} 1"#
            ),
        ] {
            assert!(has(&text, line), "missing {line:?} in\n{text}");
        }
        // Every TYPE is counter or gauge, and counters (only) end in _total.
        for line in lines(&text).iter().filter(|l| l.starts_with("# TYPE ")) {
            let mut parts = line.split(' ').skip(2);
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
            assert!(kind == "counter" || kind == "gauge", "{line}");
        }
    }

    #[test]
    fn families_are_grouped_with_one_header_and_unique_series() {
        let text = render(&document(), &own());
        let mut finished = HashSet::new();
        let mut current: Option<String> = None;
        let mut series = HashSet::new();
        let mut helps = HashSet::new();
        for line in lines(&text) {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap().to_owned();
                assert!(helps.insert(name.clone()), "second HELP for {name}");
                if let Some(prev) = current.replace(name.clone()) {
                    finished.insert(prev);
                }
                assert!(!finished.contains(&name), "{name} split in two");
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert_eq!(Some(name), current.as_deref(), "TYPE must follow its HELP");
                continue;
            }
            let name = line.split(['{', ' ']).next().unwrap();
            assert_eq!(Some(name), current.as_deref(), "{line} outside its family");
            let key = line.rsplit_once(' ').unwrap().0.to_owned();
            assert!(series.insert(key), "duplicate series {line}");
        }
        // The bind mount listed twice produced one series per family.
        assert_eq!(
            text.matches("pistats_filesystem_used_bytes{").count(),
            1,
            "{text}"
        );
    }

    #[test]
    fn unlabelled_sensor_readings_get_distinct_labels() {
        let mut doc = document();
        let reading = |label: &str, current| SensorReading {
            label: label.to_owned(),
            current,
            high: None,
            critical: None,
        };
        Arc::make_mut(&mut doc.temperature.sensors).insert(
            "coretemp".to_owned(),
            vec![
                reading("", 40.0),
                reading("", 41.0),
                reading("Core 0", 42.0),
                reading("Core 0", 43.0),
            ],
        );
        let text = render(&doc, &own());
        for line in [
            r#"pistats_temperature_celsius{sensor="coretemp",label="temp1"} 40"#,
            r#"pistats_temperature_celsius{sensor="coretemp",label="temp2"} 41"#,
            r#"pistats_temperature_celsius{sensor="coretemp",label="Core 0"} 42"#,
            r#"pistats_temperature_celsius{sensor="coretemp",label="Core 0 #4"} 43"#,
        ] {
            assert!(has(&text, line), "missing {line:?} in\n{text}");
        }
    }
}
