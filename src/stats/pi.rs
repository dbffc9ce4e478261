//! Raspberry Pi firmware health: throttling, clocks, core voltage, board identity.
//!
//! Everything the kernel exposes is read from files on each tick: the firmware driver's
//! `get_throttled` node, the `rpi_volt` hwmon alarm, cpufreq. Only the core voltage and core
//! clock (and the throttle bits on kernels without the sysfs node) need `vcgencmd`; it is run
//! at most once per [`FIRMWARE_REFRESH`], on a short-lived thread of its own with a
//! [`VCGENCMD_TIMEOUT`] per call, so a wedged firmware mailbox holds up no tick for longer
//! than [`FIRST_REFRESH_WAIT`], and only while its round is new.
//!
//! The Pi 5's PMIC rail voltages and currents are known to the firmware only: no kernel
//! driver exposes them (the Pi 5's hwmon devices are `cpu_thermal`, `rp1_adc`, `rpi_volt`,
//! `pwmfan` and, with an SSD, `nvme`). They are read with `vcgencmd pmic_read_adc` in the same
//! rate-limited round, never per tick.
//!
//! Honest capability: the Pi Zero / Zero W and the Compute Modules have no under-voltage
//! detector (the firmware's bit 0 stays 0 whatever the supply does), so on them the
//! under-voltage flags are `None`, not "OK". The board is told by its device-tree `model`
//! and `compatible` strings: the `rpi_volt` hwmon node cannot tell, since the firmware driver
//! registers it on every board, the Zero included (its alarm simply never fires there).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use super::model::{PiHealth, PmicRail, ThrottleFlags};
use super::procfs::{read_f64, read_text, read_trimmed, KeptFile};

/// How long `vcgencmd` values are reused before it is run again.
pub const FIRMWARE_REFRESH: Duration = Duration::from_secs(10);
/// Longest a single `vcgencmd` call may take before it is killed.
pub const VCGENCMD_TIMEOUT: Duration = Duration::from_secs(1);
/// Cached `vcgencmd` values older than this are dropped (reported as null) rather than shown
/// as current, e.g. when a refresh thread is stuck in an unkillable firmware call.
const FIRMWARE_MAX_AGE: Duration = Duration::from_secs(3 * FIRMWARE_REFRESH.as_secs());
/// A read whose cached values are missing or too old waits this long for the round it starts
/// (or that started at most this long ago): so a one-shot `pistats snapshot` shows firmware
/// values, and so does a scrape after minutes nobody watched. Other reads never wait, and a
/// round stuck for longer holds up nobody.
const FIRST_REFRESH_WAIT: Duration = Duration::from_millis(1500);
const POLL_STEP: Duration = Duration::from_millis(5);

/// `get_throttled` bits, in the order of [`ThrottleFlags`]' fields.
const UNDER_VOLTAGE: u32 = 1 << 0;
const ARM_FREQUENCY_CAPPED: u32 = 1 << 1;
const THROTTLED: u32 = 1 << 2;
const SOFT_TEMPERATURE_LIMIT: u32 = 1 << 3;
const UNDER_VOLTAGE_OCCURRED: u32 = 1 << 16;
const ARM_FREQUENCY_CAPPING_OCCURRED: u32 = 1 << 17;
const THROTTLING_OCCURRED: u32 = 1 << 18;
const SOFT_TEMPERATURE_LIMIT_OCCURRED: u32 = 1 << 19;

/// Decodes the firmware's `get_throttled` bit field.
pub fn decode_throttled(bits: u32) -> ThrottleFlags {
    let set = |mask: u32| bits & mask != 0;
    ThrottleFlags {
        under_voltage: Some(set(UNDER_VOLTAGE)),
        arm_frequency_capped: set(ARM_FREQUENCY_CAPPED),
        throttled: set(THROTTLED),
        soft_temperature_limit: set(SOFT_TEMPERATURE_LIMIT),
        under_voltage_occurred: Some(set(UNDER_VOLTAGE_OCCURRED)),
        arm_frequency_capping_occurred: set(ARM_FREQUENCY_CAPPING_OCCURRED),
        throttling_occurred: set(THROTTLING_OCCURRED),
        soft_temperature_limit_occurred: set(SOFT_TEMPERATURE_LIMIT_OCCURRED),
    }
}

/// Reads Pi health from `/proc`, `/sys` and, where unavoidable, `vcgencmd`.
///
/// Board detection and identity (model, revision, serial) are read once in [`PiReader::new`];
/// they cannot change while the system runs.
pub struct PiReader {
    is_pi: bool,
    undervoltage_detection: bool,
    model: Option<String>,
    /// Shared with every health reading: identity never changes while the system runs.
    revision: Option<Arc<str>>,
    serial: Option<Arc<str>>,
    /// `get_throttled` and the under-voltage alarm, kept open: read on every tick.
    throttled: KeptFile,
    undervoltage_alarm: Option<KeptFile>,
    arm_freq_path: PathBuf,
    firmware: Firmware,
}

impl PiReader {
    pub fn new(proc_root: &Path, sys_root: &Path, vcgencmd: &Path) -> PiReader {
        let device_tree = proc_root.join("device-tree");
        let model = read_device_tree_string(&device_tree.join("model"));
        let cpuinfo = read_text(&proc_root.join("cpuinfo")).unwrap_or_default();
        let cpuinfo_field = |key: &str| {
            cpuinfo.lines().find_map(|line| {
                let (k, v) = line.split_once(':')?;
                (k.trim() == key && !v.trim().is_empty()).then(|| v.trim().to_owned())
            })
        };
        let revision = cpuinfo_field("Revision")
            .or_else(|| read_device_tree_revision(&device_tree.join("system/linux,revision")));
        let cpuinfo_model = cpuinfo_field("Model");
        let is_pi = model.as_deref().is_some_and(is_pi_model)
            || (cpuinfo_field("Revision").is_some()
                && cpuinfo_model.as_deref().is_some_and(is_pi_model));
        let serial = cpuinfo_field("Serial")
            .or_else(|| read_device_tree_string(&device_tree.join("serial-number")));
        let compatible = read_device_tree_list(&device_tree.join("compatible"));
        let model_name = model.as_deref().or(cpuinfo_model.as_deref()).unwrap_or("");
        let undervoltage_detection = has_undervoltage_detector(model_name, &compatible);
        let pmic = is_pi5(model_name, &compatible);
        let firmware_dir = find_firmware_dir(sys_root);
        PiReader {
            is_pi,
            undervoltage_detection,
            model: model.or(cpuinfo_model.filter(|_| is_pi)),
            revision: revision.map(Arc::from),
            serial: serial.map(Arc::from),
            throttled: KeptFile::whole(firmware_dir.join("get_throttled")),
            undervoltage_alarm: find_undervoltage_alarm(sys_root, &firmware_dir)
                .map(KeptFile::whole),
            arm_freq_path: sys_root.join("devices/system/cpu/cpu0/cpufreq/scaling_cur_freq"),
            firmware: Firmware::new(vcgencmd.to_owned(), FIRMWARE_REFRESH, pmic),
        }
    }

    /// The board model from the device tree (any board that has one), e.g.
    /// `Raspberry Pi 4 Model B Rev 1.4`; on a Pi without a device tree in `/proc`, the
    /// `Model` line of `/proc/cpuinfo`.
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// Whether this board was detected as a Raspberry Pi.
    pub fn is_pi(&self) -> bool {
        self.is_pi
    }

    /// Current health, or `None` when this is not a Raspberry Pi. Never blocks for long: a call
    /// that finds the firmware's figures missing or too old may wait (at most
    /// [`FIRST_REFRESH_WAIT`]) for a fresh `vcgencmd` round.
    pub fn read(&mut self) -> Option<PiHealth> {
        self.read_with(None)
    }

    /// What history, events and alerts need, for a tick nobody watches: the throttle flags,
    /// read as [`read`](PiReader::read) reads them; the firmware's other figures (core volts
    /// and clock, PMIC rails: a `vcgencmd` run each, every [`FIRMWARE_REFRESH`]) and the ARM
    /// clock are `last`'s. Where sysfs lacks the flags (Pi 3), `vcgencmd` runs for them, and
    /// the firmware's other figures come fresh from the same round.
    pub fn read_throttle(&mut self, last: &PiHealth) -> Option<PiHealth> {
        self.read_with(Some(last))
    }

    fn read_with(&mut self, last: Option<&PiHealth>) -> Option<PiHealth> {
        if !self.is_pi {
            return None;
        }
        let sysfs_bits = self.throttled.read_text().and_then(|t| parse_hex(&t));
        let firmware = match last {
            Some(last) if sysfs_bits.is_some() => FirmwareValues {
                throttled: None,
                core_volts: last.core_volts,
                core_clock_mhz: last.core_clock_mhz,
                pmic: last.pmic.clone(),
            },
            _ => self.firmware.values(sysfs_bits.is_none()),
        };
        let (bits, source) = match sysfs_bits {
            Some(bits) => (Some(bits), "sysfs"),
            None => (firmware.throttled, "vcgencmd"),
        };
        let mut throttled = bits.map(decode_throttled);
        // raspberrypi-hwmon asks the firmware for get_throttled every ~2 s and clears the
        // sticky bits when it does; its alarm is therefore the freshest "under-voltage
        // lately" signal there is, and the only one when neither source above answers.
        if let Some(alarm) = self
            .undervoltage_alarm
            .as_mut()
            .filter(|_| self.undervoltage_detection)
            .and_then(|alarm| alarm.read_text()?.trim().parse::<u8>().ok())
        {
            let flags = throttled.get_or_insert_with(|| ThrottleFlags {
                under_voltage: Some(false),
                under_voltage_occurred: Some(false),
                ..ThrottleFlags::default()
            });
            if alarm != 0 {
                flags.under_voltage = Some(true);
                flags.under_voltage_occurred = Some(true);
            }
        }
        if !self.undervoltage_detection {
            if let Some(flags) = throttled.as_mut() {
                flags.under_voltage = None;
                flags.under_voltage_occurred = None;
            }
        }
        let arm_clock_mhz = match last {
            Some(last) => last.arm_clock_mhz,
            None => read_f64(&self.arm_freq_path).map(|khz| khz / 1000.0),
        };
        Some(PiHealth {
            throttled_raw: bits,
            throttled,
            core_volts: firmware.core_volts,
            arm_clock_mhz,
            core_clock_mhz: firmware.core_clock_mhz,
            revision: self.revision.clone(),
            serial: self.serial.clone(),
            source,
            undervoltage_detection: self.undervoltage_detection,
            pmic: firmware.pmic,
        })
    }

    /// Whether the board has an under-voltage detector (see the module docs).
    pub fn undervoltage_detection(&self) -> bool {
        self.undervoltage_detection
    }
}

/// The Pi Zero (bcm2835, `raspberrypi,model-zero`, `model-zero-w`) powers its SoC from plain
/// regulators, and the Compute Modules leave the supply to the carrier board: neither has the
/// comparator the firmware's under-voltage bit reports.
fn has_undervoltage_detector(model: &str, compatible: &[String]) -> bool {
    let zero_model = model.starts_with("Raspberry Pi Zero") && !model.contains("Zero 2");
    let cm_model = model.contains("Compute Module");
    let listed = compatible.iter().any(|c| {
        matches!(
            c.as_str(),
            "raspberrypi,model-zero" | "raspberrypi,model-zero-w" | "raspberrypi,compute-module"
        ) || (c.starts_with("raspberrypi,") && c.ends_with("compute-module"))
    });
    !(zero_model || cm_model || listed)
}

/// Raspberry Pi 5 (and Compute Module 5, same PMIC): `raspberrypi,5-model-b`,
/// `raspberrypi,5-compute-module`, or a model string saying so.
fn is_pi5(model: &str, compatible: &[String]) -> bool {
    model.starts_with("Raspberry Pi 5")
        || model.starts_with("Raspberry Pi Compute Module 5")
        || compatible.iter().any(|c| c.starts_with("raspberrypi,5-"))
}

/// The firmware driver's platform device, which carries `get_throttled`: `soc:firmware` on
/// the Pi 1–4 (`/soc/firmware` in their device trees) and `soc@107c000000:firmware` on the
/// Pi 5 (`bcm2712.dtsi`). The driver's directory links to it whatever its name.
fn find_firmware_dir(sys_root: &Path) -> PathBuf {
    let classic = sys_root.join("devices/platform/soc/soc:firmware");
    if classic.is_dir() {
        return classic;
    }
    let mut candidates: Vec<PathBuf> =
        super::procfs::sorted_entries(&sys_root.join("bus/platform/drivers/raspberrypi-firmware"))
            .into_iter()
            .filter(|p| p.join("get_throttled").is_file())
            .collect();
    candidates.extend(
        super::procfs::sorted_entries(&sys_root.join("devices/platform"))
            .into_iter()
            .flat_map(|soc| super::procfs::sorted_entries(&soc))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(":firmware"))
            }),
    );
    candidates.into_iter().next().unwrap_or(classic)
}

/// A NUL-separated device-tree string list, e.g. `compatible`.
fn read_device_tree_list(path: &Path) -> Vec<String> {
    let Ok(bytes) = fs::read(path) else {
        return Vec::new();
    };
    bytes
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).trim().to_owned())
        .collect()
}

fn is_pi_model(model: &str) -> bool {
    model.starts_with("Raspberry Pi")
}

/// Device-tree strings are NUL-terminated (and `compatible`-style ones NUL-separated).
fn read_device_tree_string(path: &Path) -> Option<String> {
    let bytes = fs::read(path).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim_end_matches('\0').trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// `system/linux,revision` is a big-endian u32; cpuinfo prints it as bare lowercase hex.
fn read_device_tree_revision(path: &Path) -> Option<String> {
    let bytes: [u8; 4] = fs::read(path).ok()?.try_into().ok()?;
    Some(format!("{:x}", u32::from_be_bytes(bytes)))
}

/// The `rpi_volt` hwmon device's alarm: first where the firmware node puts it, then by name
/// among all hwmon devices (its index differs between boots and kernels).
fn find_undervoltage_alarm(sys_root: &Path, firmware_dir: &Path) -> Option<PathBuf> {
    let dirs = [
        firmware_dir.join("raspberrypi-hwmon/hwmon"),
        sys_root.join("class/hwmon"),
    ];
    for dir in dirs {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        let mut candidates: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| read_trimmed(&p.join("name")).as_deref() == Some("rpi_volt"))
            .map(|p| p.join("in0_lcrit_alarm"))
            .filter(|p| p.is_file())
            .collect();
        candidates.sort();
        if let Some(path) = candidates.into_iter().next() {
            return Some(path);
        }
    }
    None
}

fn parse_hex(text: &str) -> Option<u32> {
    let text = text.trim();
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    u32::from_str_radix(digits, 16).ok()
}

/// Values only the firmware can tell, via `vcgencmd`.
#[derive(Debug, Clone, Default, PartialEq)]
struct FirmwareValues {
    core_volts: Option<f64>,
    core_clock_mhz: Option<f64>,
    throttled: Option<u32>,
    pmic: Arc<[PmicRail]>,
}

#[derive(Default)]
struct FirmwareState {
    values: FirmwareValues,
    /// When the last refresh finished.
    updated: Option<Instant>,
    /// When the running refresh started (one at a time).
    running_since: Option<Instant>,
    refreshes: u64,
    /// Failures are logged once, not every period.
    warnings: u64,
}

impl FirmwareState {
    /// Whether a read should wait for the running round: the values are missing or too old,
    /// and the round is new (one stuck in the firmware is not waited for again and again).
    fn worth_waiting_for(&self) -> bool {
        let stale = self.updated.is_none_or(|t| t.elapsed() > FIRMWARE_MAX_AGE);
        let new_round = self
            .running_since
            .is_some_and(|since| since.elapsed() < FIRST_REFRESH_WAIT);
        stale && new_round
    }
}

/// The cached `vcgencmd` fallback. Refreshes run on a thread spawned per refresh; reads only
/// look at the cache.
struct Firmware {
    vcgencmd: PathBuf,
    refresh: Duration,
    /// Also read the PMIC (Pi 5).
    pmic: bool,
    shared: Arc<(Mutex<FirmwareState>, Condvar)>,
}

impl Firmware {
    fn new(vcgencmd: PathBuf, refresh: Duration, pmic: bool) -> Firmware {
        Firmware {
            vcgencmd,
            refresh,
            pmic,
            shared: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, FirmwareState> {
        // A panic on a refresh thread must not take the collector down with it.
        self.shared.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached values; starts a refresh when they are due.
    fn values(&self, want_throttled: bool) -> FirmwareValues {
        let mut state = self.lock();
        let due = match state.updated {
            Some(t) => t.elapsed() >= self.refresh,
            None => true,
        };
        if due && state.running_since.is_none() {
            state.running_since = Some(Instant::now());
            let shared = Arc::clone(&self.shared);
            let vcgencmd = self.vcgencmd.clone();
            let want_pmic = self.pmic;
            let spawned = thread::Builder::new()
                .name("vcgencmd".into())
                .spawn(move || refresh(&shared, &vcgencmd, want_throttled, want_pmic));
            if let Err(err) = spawned {
                state.running_since = None;
                if state.warnings == 0 {
                    state.warnings += 1;
                    tracing::warn!("cannot start a thread for vcgencmd: {err}");
                }
            }
        }
        // The first read waits a little for the first round, and so does the first after a
        // quiet spell: ticks nobody watches do not ask (they repeat the last full tick's
        // figures), so a scrape every minute finds the cache a minute old. Only for a round
        // that is new: one stuck in the firmware must not slow every tick.
        if state.worth_waiting_for() {
            let before = state.refreshes;
            let deadline = Instant::now() + FIRST_REFRESH_WAIT;
            while state.refreshes == before && state.running_since.is_some() {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                state = self
                    .shared
                    .1
                    .wait_timeout(state, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
        match state.updated {
            Some(t) if t.elapsed() <= FIRMWARE_MAX_AGE => state.values.clone(),
            _ => FirmwareValues::default(),
        }
    }
}

/// One `vcgencmd` round: the first failure ends it, so a hanging binary costs one timeout.
fn refresh(
    shared: &(Mutex<FirmwareState>, Condvar),
    vcgencmd: &Path,
    want_throttled: bool,
    want_pmic: bool,
) {
    let result = (|| -> Result<FirmwareValues, String> {
        if !vcgencmd.is_file() {
            return Err(format!("{} not found", vcgencmd.display()));
        }
        let volts = run_vcgencmd(vcgencmd, &["measure_volts", "core"])?;
        let clock = run_vcgencmd(vcgencmd, &["measure_clock", "core"])?;
        let throttled = if want_throttled {
            let out = run_vcgencmd(vcgencmd, &["get_throttled"])?;
            Some(
                value_after_eq(&out)
                    .and_then(parse_hex)
                    .ok_or_else(|| format!("unexpected `vcgencmd get_throttled` output {out:?}"))?,
            )
        } else {
            None
        };
        // Older firmware lacks the command; the other values still count.
        let pmic = if want_pmic {
            run_vcgencmd(vcgencmd, &["pmic_read_adc"])
                .map(|out| parse_pmic(&out).into())
                .unwrap_or_default()
        } else {
            Arc::default()
        };
        Ok(FirmwareValues {
            pmic,
            core_volts: Some(parse_volts(&volts).ok_or_else(|| {
                format!("unexpected `vcgencmd measure_volts core` output {volts:?}")
            })?),
            core_clock_mhz: Some(parse_clock_mhz(&clock).ok_or_else(|| {
                format!("unexpected `vcgencmd measure_clock core` output {clock:?}")
            })?),
            throttled,
        })
    })();
    let (lock, done) = shared;
    let mut state = lock.lock().unwrap_or_else(|e| e.into_inner());
    match result {
        Ok(values) => state.values = values,
        Err(err) => {
            state.values = FirmwareValues::default();
            if state.warnings == 0 {
                state.warnings += 1;
                tracing::warn!(
                    "{err}; Pi core voltage and core clock will be null \
                     (this is reported once)"
                );
            }
        }
    }
    state.updated = Some(Instant::now());
    state.running_since = None;
    state.refreshes += 1;
    done.notify_all();
}

/// Runs `vcgencmd ARGS` with [`VCGENCMD_TIMEOUT`]; kills it when it takes longer.
fn run_vcgencmd(vcgencmd: &Path, args: &[&str]) -> Result<String, String> {
    let describe = || format!("`{} {}`", vcgencmd.display(), args.join(" "));
    let mut child = Command::new(vcgencmd)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{} failed to start: {e}", describe()))?;
    let status = wait_with_timeout(&mut child, VCGENCMD_TIMEOUT)
        .map_err(|e| format!("{} failed: {e}", describe()))?;
    let Some(status) = status else {
        return Err(format!(
            "{} did not answer within {VCGENCMD_TIMEOUT:?} and was killed",
            describe()
        ));
    };
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        stdout
            .read_to_string(&mut out)
            .map_err(|e| format!("{} output unreadable: {e}", describe()))?;
    }
    if !status.success() {
        return Err(format!("{} exited with {status}", describe()));
    }
    Ok(out.trim().to_owned())
}

/// `Ok(None)` when the child was killed after `timeout`.
fn wait_with_timeout(
    child: &mut Child,
    timeout: Duration,
) -> std::io::Result<Option<std::process::ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            // Kill and reap, so no zombie is left behind.
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        thread::sleep(POLL_STEP);
    }
}

fn value_after_eq(out: &str) -> Option<&str> {
    out.lines()
        .find_map(|l| l.split_once('='))
        .map(|(_, v)| v.trim())
}

/// `vcgencmd pmic_read_adc` output, one channel a line:
/// `   VDD_CORE_A current(7)=2.91000000A` and `   VDD_CORE_V volt(15)=0.72000000V`. The `_A`
/// and `_V` channels of a rail are joined, in the order rails first appear; lines that do not
/// parse are left out.
pub fn parse_pmic(out: &str) -> Vec<PmicRail> {
    let mut rails: Vec<PmicRail> = Vec::new();
    for line in out.lines() {
        let Some((channel, value)) = line.split_once('=') else {
            continue;
        };
        let mut words = channel.split_whitespace();
        let (Some(name), Some(kind)) = (words.next(), words.next()) else {
            continue;
        };
        let (rail, is_volts) = if kind.starts_with("volt") {
            (name.strip_suffix("_V").unwrap_or(name), true)
        } else if kind.starts_with("current") {
            (name.strip_suffix("_A").unwrap_or(name), false)
        } else {
            continue;
        };
        let Some(number) = value
            .trim()
            .trim_end_matches(['V', 'A'])
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
        else {
            continue;
        };
        let index = match rails.iter().position(|r| r.rail == rail) {
            Some(i) => i,
            None => {
                rails.push(PmicRail {
                    rail: rail.to_owned(),
                    volts: None,
                    amps: None,
                });
                rails.len() - 1
            }
        };
        if is_volts {
            rails[index].volts = Some(number);
        } else {
            rails[index].amps = Some(number);
        }
    }
    rails
}

/// `volt=0.8500V`
fn parse_volts(out: &str) -> Option<f64> {
    let volts: f64 = value_after_eq(out)?.trim_end_matches('V').parse().ok()?;
    volts.is_finite().then_some(volts)
}

/// `frequency(1)=500000000` (Hz)
fn parse_clock_mhz(out: &str) -> Option<f64> {
    let hz: f64 = value_after_eq(out)?.parse().ok()?;
    hz.is_finite().then_some(hz / 1_000_000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
    }

    fn board(name: &str) -> (PathBuf, PathBuf) {
        let dir = fixtures().join(name);
        (dir.join("proc"), dir.join("sys"))
    }

    /// A `vcgencmd` that records each call in `calls`, by wrapping the fixture script.
    fn counting_vcgencmd(dir: &Path, script: &str) -> (PathBuf, PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let calls = dir.join("calls");
        let wrapper = dir.join("vcgencmd");
        let target = fixtures().join("bin").join(script);
        fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexport VCGENCMD_CALLS='{}'\nexec '{}' \"$@\"\n",
                calls.display(),
                target.display()
            ),
        )
        .unwrap();
        fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
        (wrapper, calls)
    }

    fn calls(path: &Path) -> Vec<String> {
        fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn decodes_every_bit() {
        let flags = decode_throttled(0x50005);
        assert_eq!(
            flags,
            ThrottleFlags {
                under_voltage: Some(true),
                throttled: true,
                under_voltage_occurred: Some(true),
                throttling_occurred: true,
                ..Default::default()
            }
        );
        let clear = ThrottleFlags {
            under_voltage: Some(false),
            under_voltage_occurred: Some(false),
            ..Default::default()
        };
        let all = decode_throttled(0xf000f);
        assert!(
            all.arm_frequency_capped
                && all.soft_temperature_limit
                && all.arm_frequency_capping_occurred
                && all.soft_temperature_limit_occurred
        );
        assert_eq!(decode_throttled(0), clear);
        // Bits the firmware may add later are ignored, not misread.
        assert_eq!(decode_throttled(0x100000), clear);
    }

    #[test]
    fn parses_vcgencmd_and_sysfs_formats() {
        assert_eq!(parse_volts("volt=0.8500V"), Some(0.85));
        assert_eq!(parse_clock_mhz("frequency(1)=500000000"), Some(500.0));
        assert_eq!(parse_clock_mhz("frequency(1)=0"), Some(0.0));
        assert_eq!(
            value_after_eq("throttled=0x50005").and_then(parse_hex),
            Some(0x50005)
        );
        assert_eq!(parse_hex("50005\n"), Some(0x50005));
        assert_eq!(parse_hex("0x0"), Some(0));
        assert_eq!(parse_volts("VCHI initialization failed"), None);
        assert_eq!(parse_hex("zz"), None);
    }

    #[test]
    fn pi4_reads_sysfs_and_asks_vcgencmd_only_for_voltage_and_clock() {
        let tmp = tempfile::tempdir().unwrap();
        let (vcgencmd, calls_file) = counting_vcgencmd(tmp.path(), "vcgencmd");
        let (proc_root, sys_root) = board("pi4");
        let mut reader = PiReader::new(&proc_root, &sys_root, &vcgencmd);
        assert!(reader.is_pi());
        assert_eq!(reader.model(), Some("Raspberry Pi 4 Model B Rev 1.4"));

        let health = reader.read().expect("a Pi 4 is a Pi");
        assert_eq!(health.source, "sysfs");
        assert_eq!(health.throttled_raw, Some(0x50005));
        let flags = health.throttled.unwrap();
        assert_eq!(flags.under_voltage, Some(true));
        assert_eq!(flags.under_voltage_occurred, Some(true));
        assert!(flags.throttled && flags.throttling_occurred);
        assert!(health.undervoltage_detection);
        assert!(health.pmic.is_empty(), "a Pi 4 has no PMIC to ask");
        assert!(!flags.arm_frequency_capped && !flags.soft_temperature_limit);
        assert_eq!(health.arm_clock_mhz, Some(1500.0));
        assert_eq!(health.core_volts, Some(0.85));
        assert_eq!(health.core_clock_mhz, Some(500.0));
        assert_eq!(health.revision.as_deref(), Some("c03114"));
        assert_eq!(health.serial.as_deref(), Some("10000000a1b2c3d4"));

        // Further ticks within the refresh period reuse the cache: no more processes.
        for _ in 0..5 {
            assert_eq!(reader.read().unwrap(), health);
        }
        assert_eq!(
            calls(&calls_file),
            ["measure_volts core", "measure_clock core"],
            "get_throttled must come from sysfs, and vcgencmd only once per period"
        );
    }

    #[test]
    fn cache_is_refreshed_after_the_period() {
        let tmp = tempfile::tempdir().unwrap();
        let (vcgencmd, calls_file) = counting_vcgencmd(tmp.path(), "vcgencmd");
        let (proc_root, sys_root) = board("pi4");
        let mut reader = PiReader::new(&proc_root, &sys_root, &vcgencmd);
        reader.firmware.refresh = Duration::from_millis(50);
        reader.read().unwrap();
        assert_eq!(calls(&calls_file).len(), 2);
        thread::sleep(Duration::from_millis(100));
        // This read starts the second round in the background and returns the cached values.
        assert_eq!(reader.read().unwrap().core_volts, Some(0.85));
        let deadline = Instant::now() + Duration::from_secs(10);
        while calls(&calls_file).len() < 4 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(calls(&calls_file).len(), 4);
    }

    /// A full read after a quiet spell (nobody watched, so nothing asked the firmware for
    /// minutes) still has the firmware's figures, freshly read.
    #[test]
    fn a_read_after_a_quiet_spell_has_the_firmware_figures() {
        let tmp = tempfile::tempdir().unwrap();
        let (vcgencmd, calls_file) = counting_vcgencmd(tmp.path(), "vcgencmd");
        let (proc_root, sys_root) = board("pi4");
        let mut reader = PiReader::new(&proc_root, &sys_root, &vcgencmd);
        let full = reader.read().unwrap();
        assert_eq!(full.core_volts, Some(0.85));
        let quiet = Instant::now()
            .checked_sub(FIRMWARE_MAX_AGE * 2)
            .expect("uptime longer than a minute");
        reader.firmware.lock().updated = Some(quiet);
        let later = reader.read().unwrap();
        assert_eq!(later.core_volts, Some(0.85));
        assert_eq!(later.core_clock_mhz, full.core_clock_mhz);
        assert_eq!(calls(&calls_file).len(), 4, "a second round ran for it");
        assert!(reader.firmware.lock().updated > Some(quiet));
    }

    /// Reads wait only for a new round over missing or old values: not when the values are
    /// fresh, and not for a round stuck in the firmware, which would slow every tick.
    #[test]
    fn reads_wait_only_for_a_new_round_over_old_values() {
        let ago = |d: Duration| Instant::now().checked_sub(d).expect("uptime");
        let state = |updated: Option<Instant>, running_since: Option<Instant>| FirmwareState {
            values: FirmwareValues::default(),
            updated,
            running_since,
            refreshes: 1,
            warnings: 0,
        };
        let old = Some(ago(FIRMWARE_MAX_AGE * 2));
        let new_round = Some(Instant::now());
        let stuck = Some(ago(FIRMWARE_MAX_AGE));
        assert!(state(None, new_round).worth_waiting_for());
        assert!(state(old, new_round).worth_waiting_for());
        assert!(!state(old, stuck).worth_waiting_for());
        assert!(!state(old, None).worth_waiting_for());
        assert!(!state(Some(Instant::now()), new_round).worth_waiting_for());
    }

    #[test]
    fn without_sysfs_the_throttle_bits_come_from_vcgencmd() {
        let tmp = tempfile::tempdir().unwrap();
        let (vcgencmd, calls_file) = counting_vcgencmd(tmp.path(), "vcgencmd");
        let (proc_root, sys_root) = board("pi3");
        let mut reader = PiReader::new(&proc_root, &sys_root, &vcgencmd);
        assert!(reader.is_pi(), "cpuinfo Revision + Model identify a Pi");
        assert_eq!(reader.model(), Some("Raspberry Pi 3 Model B Rev 1.2"));
        let health = reader.read().unwrap();
        assert_eq!(health.source, "vcgencmd");
        assert_eq!(health.throttled_raw, Some(0x50005));
        assert_eq!(health.throttled, Some(decode_throttled(0x50005)));
        assert_eq!(health.arm_clock_mhz, Some(1200.0));
        assert_eq!(health.revision.as_deref(), Some("a02082"));
        assert_eq!(health.serial.as_deref(), Some("00000000f1e2d3c4"));
        assert_eq!(
            calls(&calls_file),
            ["measure_volts core", "measure_clock core", "get_throttled"]
        );
    }

    /// Unwatched ticks read the throttle flags only: with the firmware's figures always due,
    /// `read_throttle` runs no `vcgencmd` where sysfs has the flags (Pi 4) and only what the
    /// flags need where it has not (Pi 3); the other figures are the last full read's.
    #[test]
    fn throttle_reads_run_vcgencmd_only_for_the_flags() {
        let tmp = tempfile::tempdir().unwrap();
        let (vcgencmd, calls_file) = counting_vcgencmd(tmp.path(), "vcgencmd");
        let (proc_root, sys_root) = board("pi4");
        let mut reader = PiReader::new(&proc_root, &sys_root, &vcgencmd);
        let full = reader.read().unwrap();
        reader.firmware.refresh = Duration::ZERO;
        for _ in 0..5 {
            assert_eq!(reader.read_throttle(&full).unwrap(), full);
        }
        thread::sleep(Duration::from_millis(200));
        assert_eq!(
            calls(&calls_file),
            ["measure_volts core", "measure_clock core"]
        );
        // A full read after them refreshes as before.
        reader.read().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while calls(&calls_file).len() < 4 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(calls(&calls_file).len(), 4);

        let tmp = tempfile::tempdir().unwrap();
        let (vcgencmd, calls_file) = counting_vcgencmd(tmp.path(), "vcgencmd");
        let (proc_root, sys_root) = board("pi3");
        let mut reader = PiReader::new(&proc_root, &sys_root, &vcgencmd);
        let full = reader.read().unwrap();
        let light = reader.read_throttle(&full).unwrap();
        assert_eq!(light.source, "vcgencmd");
        assert_eq!(light.throttled, full.throttled);
        assert!(calls(&calls_file).contains(&"get_throttled".to_owned()));
    }

    #[test]
    fn not_a_pi_reads_nothing_and_runs_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let (vcgencmd, calls_file) = counting_vcgencmd(tmp.path(), "vcgencmd");
        let (proc_root, sys_root) = board("x86");
        let mut reader = PiReader::new(&proc_root, &sys_root, &vcgencmd);
        assert!(!reader.is_pi());
        assert_eq!(reader.model(), None);
        assert_eq!(reader.read(), None);
        assert!(calls(&calls_file).is_empty());
    }

    #[test]
    fn hanging_vcgencmd_is_killed_and_gives_nulls() {
        let tmp = tempfile::tempdir().unwrap();
        let (vcgencmd, calls_file) = counting_vcgencmd(tmp.path(), "vcgencmd-hang");
        let (proc_root, sys_root) = board("pi3");
        let mut reader = PiReader::new(&proc_root, &sys_root, &vcgencmd);
        let health = reader.read().expect("read returns despite the hang");
        assert_eq!(health.core_volts, None);
        assert_eq!(health.core_clock_mhz, None);
        assert_eq!(health.throttled_raw, None);
        assert_eq!(health.throttled, None);
        // The kernel values are still there.
        assert_eq!(health.arm_clock_mhz, Some(1200.0));
        let deadline = Instant::now() + Duration::from_secs(10);
        while reader.firmware.lock().refreshes == 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        // The round stopped at the first timeout, and the hung process is gone (killed and
        // reaped, not a zombie).
        let recorded = calls(&calls_file);
        assert_eq!(recorded.len(), 1, "{recorded:?}");
        let pid = recorded[0].split_whitespace().next().unwrap();
        assert!(
            !Path::new("/proc").join(pid).exists(),
            "hung vcgencmd (pid {pid}) was not killed"
        );
        assert_eq!(reader.firmware.lock().warnings, 1);
    }

    #[test]
    fn missing_or_failing_vcgencmd_gives_nulls_and_warns_once() {
        for script in ["does-not-exist", "vcgencmd-broken"] {
            let (proc_root, sys_root) = board("pi4");
            let vcgencmd = fixtures().join("bin").join(script);
            let mut reader = PiReader::new(&proc_root, &sys_root, &vcgencmd);
            reader.firmware.refresh = Duration::ZERO;
            let health = reader.read().unwrap();
            assert_eq!(health.core_volts, None, "{script}");
            assert_eq!(health.core_clock_mhz, None, "{script}");
            // sysfs still answers.
            assert_eq!(health.throttled_raw, Some(0x50005), "{script}");
            // Keep failing for a few more rounds: still one warning.
            let deadline = Instant::now() + Duration::from_secs(10);
            while reader.firmware.lock().refreshes < 3 && Instant::now() < deadline {
                reader.read();
                thread::sleep(Duration::from_millis(10));
            }
            let state = reader.firmware.lock();
            assert!(state.refreshes >= 3, "{script}");
            assert_eq!(state.warnings, 1, "{script}");
        }
    }

    #[test]
    fn hwmon_alarm_alone_reports_under_voltage() {
        // A kernel with raspberrypi-hwmon but without the get_throttled node, and no
        // vcgencmd: only the alarm is known.
        let tmp = tempfile::tempdir().unwrap();
        let (proc_root, pi4_sys) = board("pi4");
        let hwmon = tmp.path().join("sys/class/hwmon/hwmon3");
        fs::create_dir_all(&hwmon).unwrap();
        fs::write(hwmon.join("name"), "rpi_volt\n").unwrap();
        fs::write(hwmon.join("in0_lcrit_alarm"), "1\n").unwrap();
        let other = tmp.path().join("sys/class/hwmon/hwmon0");
        fs::create_dir_all(&other).unwrap();
        fs::write(other.join("name"), "cpu_thermal\n").unwrap();
        let sys_root = tmp.path().join("sys");
        let mut reader = PiReader::new(&proc_root, &sys_root, Path::new("/nonexistent"));
        let health = reader.read().unwrap();
        assert_eq!(health.source, "vcgencmd");
        assert_eq!(health.throttled_raw, None);
        let flags = health.throttled.unwrap();
        assert_eq!(
            (flags.under_voltage, flags.under_voltage_occurred),
            (Some(true), Some(true))
        );
        assert!(!flags.throttled);

        // With the sysfs bits, the alarm is found under the firmware node too.
        let reader = PiReader::new(&proc_root, &pi4_sys, Path::new("/nonexistent"));
        assert!(reader
            .undervoltage_alarm
            .as_ref()
            .is_some_and(|f| f.path().starts_with(&pi4_sys)));
    }

    #[test]
    fn pi_zero_w_has_no_under_voltage_verdict() {
        let (proc_root, sys_root) = board("pizerow");
        let mut reader = PiReader::new(&proc_root, &sys_root, Path::new("/nonexistent"));
        assert!(reader.is_pi());
        assert!(!reader.undervoltage_detection());
        let health = reader.read().unwrap();
        assert_eq!(health.source, "sysfs");
        assert_eq!(health.throttled_raw, Some(0));
        let flags = health.throttled.unwrap();
        // Not "OK": unknown.
        assert_eq!(flags.under_voltage, None);
        assert_eq!(flags.under_voltage_occurred, None);
        // The other flags are measured on every board.
        assert_eq!((flags.throttled, flags.throttling_occurred), (false, false));
        let json = serde_json::to_value(&health).unwrap();
        assert!(json["throttled"]["under_voltage"].is_null(), "{json}");
        assert_eq!(json["throttled"]["throttled"], false);
        assert_eq!(json["undervoltage_detection"], false);
    }

    #[test]
    fn boards_with_and_without_a_detector() {
        let list = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for (model, compatible, expected) in [
            (
                "Raspberry Pi Zero Rev 1.3",
                list(&["raspberrypi,model-zero"]),
                false,
            ),
            ("Raspberry Pi Zero W Rev 1.1", list(&[]), false),
            (
                "",
                list(&["raspberrypi,model-zero-w", "brcm,bcm2835"]),
                false,
            ),
            ("Raspberry Pi Compute Module 4 Rev 1.0", list(&[]), false),
            (
                "",
                list(&["raspberrypi,4-compute-module", "brcm,bcm2711"]),
                false,
            ),
            (
                "",
                list(&["raspberrypi,compute-module", "brcm,bcm2835"]),
                false,
            ),
            (
                "Raspberry Pi 4 Model B Rev 1.4",
                list(&["raspberrypi,4-model-b"]),
                true,
            ),
            (
                "Raspberry Pi 5 Model B Rev 1.0",
                list(&["raspberrypi,5-model-b"]),
                true,
            ),
            (
                "Raspberry Pi Zero 2 W Rev 1.0",
                list(&["raspberrypi,model-zero-2-w"]),
                true,
            ),
        ] {
            assert_eq!(
                has_undervoltage_detector(model, &compatible),
                expected,
                "{model:?} {compatible:?}"
            );
        }
    }

    #[test]
    fn pi5_reads_throttle_bits_from_its_firmware_node_and_pmic_rails() {
        let tmp = tempfile::tempdir().unwrap();
        let (vcgencmd, calls_file) = counting_vcgencmd(tmp.path(), "vcgencmd-pi5");
        let (proc_root, sys_root) = board("pi5");
        let mut reader = PiReader::new(&proc_root, &sys_root, &vcgencmd);
        assert!(reader.undervoltage_detection());
        let health = reader.read().unwrap();
        // soc@107c000000:firmware, not soc:firmware: no get_throttled fork.
        assert_eq!(health.source, "sysfs");
        assert_eq!(health.throttled.unwrap().under_voltage, Some(false));
        assert_eq!(health.core_volts, Some(0.7209));
        let rail = |name: &str| health.pmic.iter().find(|r| r.rail == name).cloned();
        assert_eq!(health.pmic.len(), 14, "{:?}", health.pmic);
        assert_eq!(
            rail("VDD_CORE"),
            Some(PmicRail {
                rail: "VDD_CORE".into(),
                volts: Some(0.72088),
                amps: Some(0.7044),
            })
        );
        assert_eq!(rail("EXT5V").and_then(|r| r.volts), Some(5.1167));
        assert_eq!(rail("EXT5V").and_then(|r| r.amps), None);
        for _ in 0..3 {
            reader.read();
        }
        assert_eq!(
            calls(&calls_file),
            ["measure_volts core", "measure_clock core", "pmic_read_adc"],
            "one firmware round per period"
        );
    }

    #[test]
    fn pmic_output_that_does_not_parse_is_left_out() {
        assert_eq!(parse_pmic(""), []);
        assert_eq!(
            parse_pmic("error=1 error_msg=\"Command not registered\""),
            []
        );
        let rails =
            parse_pmic("  X_V volt(1)=NaNV\n  Y_A current(2)=0.5A\n  junk\n  Z_V volt(3)=\n");
        assert_eq!(
            rails,
            [PmicRail {
                rail: "Y".into(),
                volts: None,
                amps: Some(0.5),
            }]
        );
    }
}
