//! Fans, from the two places the kernel reports them:
//!
//! - hwmon devices with a tachometer or PWM output (`fanN_input` in RPM, `pwmN` 0–255), e.g.
//!   the Pi 5 fan connector (`pwm-fan` driver, hwmon name `pwmfan`, device `cooling_fan`);
//! - thermal cooling devices that are fans (`type` `pwm-fan`, `gpio-fan`, `rpi-poe-fan`, …)
//!   with `cur_state`/`max_state`, e.g. a Pi 4 fan shim on `gpio-fan` or the PoE HAT fan,
//!   which have no tachometer.
//!
//! A `pwm-fan` or `gpio-fan` registers both, so the two halves are merged into one [`Fan`]:
//! by their `device` links where both have one, else by driver (hwmon `pwmfan` / `gpio_fan`
//! and cooling type `pwm-fan` / `gpio-fan`; thermal_core registers cooling devices without
//! a parent, under `devices/virtual/thermal`), first with first.

use std::path::{Path, PathBuf};

use super::model::Fan;
use super::procfs::{read_f64, read_number, read_trimmed, Listings};

/// Every fan, hwmon fans first (by hwmon index), then cooling-device-only fans.
pub fn read_fans(sys_root: &Path, listings: &mut Listings) -> Vec<Fan> {
    let mut fans: Vec<(Option<PathBuf>, Fan)> = Vec::new();
    for hwmon in listings.entries(&sys_root.join("class/hwmon")).iter() {
        // Most hwmon devices (the SoC's temperature, the Pi's undervoltage alarm) have no fan:
        // their name and device link are not needed.
        let channels = fan_channels(&listings.entries(hwmon));
        if channels.is_empty() {
            continue;
        }
        let Some(chip) = read_trimmed(&hwmon.join("name")) else {
            continue;
        };
        let device = device_of(hwmon);
        for channel in channels {
            let rpm = read_f64(&hwmon.join(format!("fan{channel}_input"))).filter(|v| *v >= 0.0);
            let pwm = read_f64(&hwmon.join(format!("pwm{channel}")))
                .filter(|v| (0.0..=255.0).contains(v))
                .map(|v| v * 100.0 / 255.0);
            if rpm.is_none() && pwm.is_none() {
                continue;
            }
            let label = read_trimmed(&hwmon.join(format!("fan{channel}_label")))
                .filter(|l| !l.is_empty())
                .unwrap_or_else(|| format!("fan{channel}"));
            fans.push((
                device.clone(),
                Fan {
                    name: chip.clone(),
                    label,
                    rpm,
                    pwm_percent: pwm,
                    ..Fan::default()
                },
            ));
        }
    }
    for cdev in listings.entries(&sys_root.join("class/thermal")).iter() {
        let Some(file) = cdev.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !file.starts_with("cooling_device") {
            continue;
        }
        let Some(kind) = read_trimmed(&cdev.join("type")) else {
            continue;
        };
        if !kind.contains("fan") {
            continue;
        }
        let max: Option<u64> = read_number(&cdev.join("max_state"));
        let state: Option<u64> =
            read_number(&cdev.join("cur_state")).filter(|s| max.is_none_or(|m| *s <= m));
        let device = device_of(cdev);
        let kind_key = driver_key(&kind);
        let merged = fans
            .iter_mut()
            .filter(|(_, fan)| fan.cooling_max_state.is_none())
            .find(|(dev, fan)| match (&device, dev) {
                (Some(cdev_device), Some(hwmon_device)) => cdev_device == hwmon_device,
                _ => driver_key(&fan.name) == kind_key,
            });
        match merged {
            Some((_, fan)) => {
                fan.cooling_state = state;
                fan.cooling_max_state = max;
            }
            None => fans.push((
                device,
                Fan {
                    name: kind,
                    label: file.to_owned(),
                    cooling_state: state,
                    cooling_max_state: max,
                    ..Fan::default()
                },
            )),
        }
    }
    fans.into_iter().map(|(_, fan)| fan).collect()
}

/// The channel numbers N of `fanN_input` / `pwmN` files among a hwmon device's `entries`,
/// ascending.
fn fan_channels(entries: &[PathBuf]) -> Vec<u32> {
    let mut channels: Vec<u32> = entries
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
        .filter_map(|name| {
            let n = name
                .strip_prefix("fan")
                .and_then(|r| r.strip_suffix("_input"))
                .or_else(|| name.strip_prefix("pwm"))?;
            n.parse().ok()
        })
        .collect();
    channels.sort_unstable();
    channels.dedup();
    channels
}

/// `pwm-fan`, `pwmfan`, `gpio_fan` → `pwmfan`, `gpiofan`.
fn driver_key(name: &str) -> String {
    name.chars().filter(|c| !matches!(c, '-' | '_')).collect()
}

/// Where a class device's `device` link leads, resolved (hwmon and cooling device of one
/// `pwm-fan` share it).
fn device_of(class_dev: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(class_dev.join("device")).ok()
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn sys(board: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(board)
            .join("sys")
    }

    #[test]
    fn pi5_fan_is_one_entry_with_speed_duty_and_state() {
        let fans = read_fans(&sys("pi5"), &mut Listings::default());
        assert_eq!(
            fans,
            [Fan {
                name: "pwmfan".into(),
                label: "fan1".into(),
                rpm: Some(2946.0),
                pwm_percent: Some(75.0 * 100.0 / 255.0),
                cooling_state: Some(1),
                cooling_max_state: Some(4),
            }]
        );
    }

    #[test]
    fn pi4_gpio_fan_shim_merges_with_its_cooling_device() {
        let fans = read_fans(&sys("pi4"), &mut Listings::default());
        assert_eq!(fans.len(), 1, "{fans:?}");
        assert_eq!(fans[0].name, "gpio_fan");
        assert_eq!(fans[0].rpm, Some(5000.0));
        assert_eq!(fans[0].pwm_percent, Some(100.0));
        assert_eq!(
            (fans[0].cooling_state, fans[0].cooling_max_state),
            (Some(1), Some(1))
        );
    }

    #[test]
    fn no_fan_on_a_pi_zero() {
        assert!(read_fans(&sys("pizerow"), &mut Listings::default()).is_empty());
    }

    #[test]
    fn a_cooling_device_alone_is_a_fan_and_other_cooling_devices_are_not() {
        let tmp = tempfile::tempdir().unwrap();
        let write = |rel: &str, text: &str| {
            let path = tmp.path().join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        };
        // The PoE HAT fan (rpi-poe-fan) has no tachometer; a CPU frequency cooling device
        // is not a fan.
        write("class/thermal/cooling_device0/type", "rpi-poe-fan\n");
        write("class/thermal/cooling_device0/cur_state", "2\n");
        write("class/thermal/cooling_device0/max_state", "4\n");
        write("class/thermal/cooling_device1/type", "cpufreq-cpu0\n");
        write("class/thermal/cooling_device1/cur_state", "0\n");
        write("class/thermal/cooling_device1/max_state", "3\n");
        // A state above the maximum is garbage, not a reading.
        write("class/thermal/cooling_device2/type", "pwm-fan\n");
        write("class/thermal/cooling_device2/cur_state", "9\n");
        write("class/thermal/cooling_device2/max_state", "4\n");
        let fans = read_fans(tmp.path(), &mut Listings::default());
        assert_eq!(fans.len(), 2, "{fans:?}");
        assert_eq!(fans[0].name, "rpi-poe-fan");
        assert_eq!(fans[0].label, "cooling_device0");
        assert_eq!(
            (fans[0].cooling_state, fans[0].cooling_max_state),
            (Some(2), Some(4))
        );
        assert_eq!(fans[0].rpm, None);
        assert_eq!(
            (fans[1].cooling_state, fans[1].cooling_max_state),
            (None, Some(4))
        );
    }
}
