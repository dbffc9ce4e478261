//! Fans, from the two places the kernel reports them:
//!
//! - hwmon devices with a tachometer or PWM output (`fanN_input` in RPM, `pwmN` 0–255), e.g.
//!   the Pi 5 fan connector (`pwm-fan` driver, hwmon name `pwmfan`, device `cooling_fan`);
//! - thermal cooling devices that are fans (`type` `pwm-fan`, `gpio-fan`, `rpi-poe-fan`, …)
//!   with `cur_state`/`max_state`, e.g. a Pi 4 fan shim on `gpio-fan` or the PoE HAT fan,
//!   which have no tachometer.
//!
//! A `pwm-fan` registers both; they point at the same platform device (`device` link), so
//! the two halves are merged into one [`Fan`].

use std::path::{Path, PathBuf};

use super::model::Fan;
use super::procfs::{read_f64, read_number, read_trimmed, sorted_entries};

/// Every fan, hwmon fans first (by hwmon index), then cooling-device-only fans.
pub fn read_fans(sys_root: &Path) -> Vec<Fan> {
    let mut fans: Vec<(Option<PathBuf>, Fan)> = Vec::new();
    for hwmon in sorted_entries(&sys_root.join("class/hwmon")) {
        let Some(chip) = read_trimmed(&hwmon.join("name")) else {
            continue;
        };
        let device = device_of(&hwmon);
        for channel in fan_channels(&hwmon) {
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
    for cdev in sorted_entries(&sys_root.join("class/thermal")) {
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
        let device = device_of(&cdev);
        let merged = device.as_ref().and_then(|d| {
            fans.iter_mut()
                .find(|(dev, fan)| dev.as_ref() == Some(d) && fan.cooling_max_state.is_none())
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

/// The channel numbers N of `fanN_input` / `pwmN` files, ascending.
fn fan_channels(hwmon: &Path) -> Vec<u32> {
    let mut channels: Vec<u32> = sorted_entries(hwmon)
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

/// Where a class device's `device` link leads, resolved (hwmon and cooling device of one
/// `pwm-fan` share it).
fn device_of(class_dev: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(class_dev.join("device")).ok()
}
