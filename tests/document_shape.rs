//! The seed JSON format is a wire contract: `pistats snapshot` on the Pi 4 fixture tree must
//! produce the same keys, in the same order and nesting, as the recorded key tree in
//! `tests/fixtures/wire/keys.txt` (recorded from the document before the snapshot became typed).
//! Keys may only be added (listed in [`ADDED`]), never renamed, moved or dropped.
//!
//! Re-record after an intended addition with `PISTATS_BLESS=1 cargo test --test document_shape`.

use std::fmt;
use std::path::Path;
use std::process::Command;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/wire/keys.txt");

/// Keys added to the seed format since the key tree was recorded (`disk.devices.*` has no
/// entry in the Pi 4 fixture, which lacks `/proc/diskstats`; its shape is tested on the Pi 5
/// tree in `stats::storage`).
const ADDED: &[&str] = &[
    "degraded",
    "degraded[]",
    "disk.devices",
    "disk.devices.*",
    "disk.devices.*.read_bytes",
    "disk.devices.*.written_bytes",
    "disk.devices.*.read_count",
    "disk.devices.*.write_count",
    "disk.devices.*.card",
    "disk.devices.*.card.type",
    "disk.devices.*.card.name",
    "disk.devices.*.card.manufacturer_id",
    "disk.devices.*.card.oem_id",
    "disk.devices.*.card.date",
    "disk.devices.*.card.serial",
    "disk.devices.*.card.life_time_raw",
    "disk.devices.*.card.life_time_a",
    "disk.devices.*.card.life_time_b",
    "disk.devices.*.card.life_time_used_percent",
    "disk.devices.*.card.pre_eol",
    "disk.devices.*.written_today_bytes",
    "disk.devices.*.written_per_day",
    "disk.devices.*.written_per_day[]",
    "disk.devices.*.written_per_day[].date",
    "disk.devices.*.written_per_day[].bytes",
    "temperature.fans",
    "temperature.fans[].name",
    "temperature.fans[].label",
    "temperature.fans[].rpm",
    "temperature.fans[].pwm_percent",
    "temperature.fans[].cooling_state",
    "temperature.fans[].cooling_max_state",
    "temperature.fans[]",
    "pi.undervoltage_detection",
    "pi.pmic",
    "processes.scanned_at",
];

/// Maps whose keys are data (interface and sensor names), not schema.
const DATA_MAPS: &[&str] = &["network.interfaces", "temperature.sensors", "disk.devices"];

/// Records each key path once, in document order; array elements become `path[]`.
struct Tree<'a> {
    out: &'a mut Vec<String>,
    path: String,
}

impl Tree<'_> {
    fn record(&mut self, path: String) {
        if !self.out.contains(&path) {
            self.out.push(path);
        }
    }
}

impl<'de> DeserializeSeed<'de> for Tree<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Tree<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("JSON")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            let key = if DATA_MAPS.contains(&self.path.as_str()) {
                "*".to_owned()
            } else {
                key
            };
            let path = if self.path.is_empty() {
                key
            } else {
                format!("{}.{key}", self.path)
            };
            self.record(path.clone());
            map.next_value_seed(Tree {
                out: self.out,
                path,
            })?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        let path = format!("{}[]", self.path);
        let mut any = false;
        while seq
            .next_element_seed(Tree {
                out: self.out,
                path: path.clone(),
            })?
            .is_some()
        {
            any = true;
        }
        if any {
            self.record(path);
        }
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

fn key_tree(json: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut d = serde_json::Deserializer::from_str(json);
    Tree {
        out: &mut out,
        path: String::new(),
    }
    .deserialize(&mut d)
    .expect("valid JSON");
    out
}

#[test]
fn fixture_document_keeps_the_seed_key_tree() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pistats.toml");
    std::fs::write(&config, "").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pistats"))
        .arg("--config")
        .arg(&config)
        .arg("--proc-root")
        .arg(fixtures.join("pi4/proc"))
        .arg("--sys-root")
        .arg(fixtures.join("pi4/sys"))
        .arg("--vcgencmd")
        .arg(fixtures.join("bin/vcgencmd"))
        .args(["--interface", "lo", "snapshot"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let json = String::from_utf8(out.stdout).unwrap();
    let keys = key_tree(&json);
    if std::env::var_os("PISTATS_BLESS").is_some() {
        std::fs::write(KEYS, keys.join("\n") + "\n").unwrap();
    }
    let recorded: Vec<String> = std::fs::read_to_string(KEYS)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let now: Vec<&String> = keys
        .iter()
        .filter(|k| !ADDED.contains(&k.as_str()))
        .collect();
    let before: Vec<&String> = recorded
        .iter()
        .filter(|k| !ADDED.contains(&k.as_str()))
        .collect();
    assert_eq!(now, before, "the document's key tree changed:\n{json}");
}

#[test]
fn key_tree_follows_document_order() {
    let keys = key_tree(r#"{"b":{"z":1,"a":[{"x":1},{"y":2}]},"m":{},"n":[]}"#);
    assert_eq!(
        keys,
        ["b", "b.z", "b.a", "b.a[].x", "b.a[].y", "b.a[]", "m", "n"]
    );
}
